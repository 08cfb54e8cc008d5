//! Request extractors of the REST API: JSON body, path and query with JSON
//! errors ([`ApiError`]) instead of axum's plain-text rejections, and the two
//! kinds of caller: a user with a JWT ([`AuthUser`], `/v1`) and an app backend
//! with an API key ([`Backend`], `/api`). Neither credential opens the other API.

use crate::http::error::ApiError;
use crate::ids::UserId;
use crate::proto::ErrorCode;
use crate::server::Core;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// A JSON body (`Content-Type: application/json`), refused as `bad_request`.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Json(v))
    }
}

/// Path parameters, refused as `bad_request`.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(v) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(v))
    }
}

/// Query parameters, refused as `bad_request`.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(v) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(v))
    }
}

/// The one value of a header; none when absent or repeated (ambiguous credentials).
fn single<'a>(parts: &'a Parts, name: &str) -> Option<&'a axum::http::HeaderValue> {
    let mut values = parts.headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, message)
}

/// The user of a `/v1` request: `Authorization: Bearer <JWT>`, the same tokens
/// as the protocol's `hello`. API keys are not JWTs and fail here.
pub struct AuthUser(pub UserId);

impl FromRequestParts<Arc<Core>> for AuthUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, core: &Arc<Core>) -> Result<Self, ApiError> {
        let value = single(parts, axum::http::header::AUTHORIZATION.as_str())
            .ok_or_else(|| unauthorized("give one Authorization: Bearer <token>"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("Authorization must be Bearer <token>"))?;
        core.auth
            .verify(token)
            .map(AuthUser)
            .map_err(|e| unauthorized(e.to_string()))
    }
}

/// An app backend on `/api`: `X-Api-Key: <key>`, one of `--api-keys`. JWTs are
/// never keys, and an `Authorization` header does not count. With tenants,
/// each key is of one tenant (`TENANT:KEY`) and acts only inside it.
pub struct Backend {
    pub tenant: Option<String>,
}

impl Backend {
    /// A user id the backend names, in the key's tenant (`bad_request` for an
    /// id that is already scoped: no client may send one).
    pub fn user(&self, user: UserId) -> Result<UserId, ApiError> {
        crate::tenant::scope_user(self.tenant.as_deref(), user).map_err(ApiError::from)
    }
}

/// Compares in time independent of where the strings differ.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<Arc<Core>> for Backend {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, core: &Arc<Core>) -> Result<Self, ApiError> {
        let keys = &core.config.api_keys;
        if keys.is_empty() {
            return Err(unauthorized(
                "the server API is off: no --api-keys configured",
            ));
        }
        let given = single(parts, "x-api-key")
            .ok_or_else(|| unauthorized("give one X-Api-Key"))?
            .as_bytes();
        // Every key is compared, so the time does not tell which one matched.
        let mut matched = None;
        for entry in keys {
            let entry = entry.trim();
            let (tenant, key) = match core.config.tenants {
                // Checked at startup (`Config::validate`).
                true => match crate::tenant::api_key(entry) {
                    Ok((t, k)) => (Some(t), k),
                    Err(_) => continue,
                },
                false => (None, entry),
            };
            if same_key(key.as_bytes(), given) {
                matched = Some(tenant.map(str::to_string));
            }
        }
        match matched {
            Some(tenant) => Ok(Backend { tenant }),
            None => Err(unauthorized("unknown API key")),
        }
    }
}
