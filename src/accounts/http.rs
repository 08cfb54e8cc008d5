//! The accounts' HTTP routes (mounted only with `--accounts true`):
//!
//! | route | auth | body | answer |
//! |---|---|---|---|
//! | `POST /v1/auth/register` | none | `{username, password, display_name?}` | 201 tokens |
//! | `POST /v1/auth/login` | none | `{username, password}` | 200 tokens |
//! | `POST /v1/auth/refresh` | none | `{refresh_token}` | 200 tokens (the old one is spent) |
//! | `POST /v1/auth/logout` | none | `{refresh_token}` | 204 |
//! | `POST /v1/auth/password` | Bearer | `{current_password, new_password}` | 200 tokens |
//! | `GET /v1/me` | Bearer | | 200 profile |
//! | `PATCH /v1/me` | Bearer | `{display_name?, avatar_url?}` (null clears) | 200 profile |
//!
//! Bodies are JSON (snake_case, unknown fields refused), at most
//! [`MAX_BODY`] bytes. Every failure is `{"error": code, "message": ...}`
//! with a code of the protocol's table (`retry_after_ms` and `Retry-After`
//! on `rate_limited` and `unavailable`).

use super::{AccountError, ProfileUpdate};
use crate::ids::UserId;
use crate::proto::ErrorCode;
use crate::server::Core;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Largest request body accepted, in bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// An error answer: status, code, message, optional retry hint.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        let message = e.to_string();
        let (status, code, retry) = match e {
            AccountError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest, None),
            AccountError::Unauthorized(_) => {
                (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, None)
            }
            AccountError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound, None),
            AccountError::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict, None),
            AccountError::RateLimited(d) => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                // Rounded up: waiting exactly the hint must be enough.
                Some((d.as_micros().div_ceil(1000) as u64).max(1)),
            ),
            AccountError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                Some(1000),
            ),
            AccountError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, None)
            }
        };
        ApiError {
            status,
            code,
            message,
            retry_after_ms: retry,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code.as_str(), "message": self.message });
        if let Some(ms) = self.retry_after_ms {
            body["retry_after_ms"] = json!(ms);
        }
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(ms) = self.retry_after_ms {
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, msg)
}

/// Reads and decodes a JSON body, answering every failure with a JSON error.
async fn json_body<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BadRequest,
            format!("request body above {MAX_BODY} bytes"),
        )
    })?;
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            bad_request(format!("invalid JSON body: {inner}"))
        } else {
            bad_request(format!("invalid JSON body at {path}: {inner}"))
        }
    })
}

/// The user of a `Authorization: Bearer <JWT>` header.
fn bearer(core: &Core, headers: &HeaderMap) -> Result<UserId, ApiError> {
    let unauthorized =
        |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, m);
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("missing Authorization: Bearer token"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| unauthorized("Authorization must be a Bearer token"))?;
    core.auth
        .verify(token.trim())
        .map_err(|e| unauthorized(&format!("{e}")))
}

fn accounts(core: &Core) -> Result<&super::Accounts, ApiError> {
    core.accounts.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "accounts are off",
        )
    })
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::BadRequest,
        "method not allowed on this path",
    )
}

fn route(m: MethodRouter<Arc<Core>>) -> MethodRouter<Arc<Core>> {
    m.fallback(method_not_allowed)
}

/// The routes, or an empty router when accounts are off (so they are 404).
pub fn router(core: Arc<Core>) -> Router {
    if core.accounts.is_none() {
        return Router::new();
    }
    Router::new()
        .route("/v1/auth/register", route(post(register)))
        .route("/v1/auth/login", route(post(login)))
        .route("/v1/auth/refresh", route(post(refresh)))
        .route("/v1/auth/logout", route(post(logout)))
        .route("/v1/auth/password", route(post(change_password)))
        .route("/v1/me", route(get(me).patch(update_me)))
        .with_state(core)
}

type Peer = ConnectInfo<std::net::SocketAddr>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    username: String,
    password: String,
    #[serde(default)]
    display_name: Option<String>,
}

async fn register(
    State(core): State<Arc<Core>>,
    ConnectInfo(peer): Peer,
    req: Request,
) -> Result<Response, ApiError> {
    let a = accounts(&core)?;
    let b: RegisterBody = json_body(req.into_body()).await?;
    let tokens = a
        .register(&b.username, b.password, b.display_name, peer.ip())
        .await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, "/v1/me")],
        Json(tokens),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(
    State(core): State<Arc<Core>>,
    ConnectInfo(peer): Peer,
    req: Request,
) -> Result<Response, ApiError> {
    let a = accounts(&core)?;
    let b: LoginBody = json_body(req.into_body()).await?;
    Ok(Json(a.login(&b.username, b.password, peer.ip()).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: String,
}

async fn refresh(State(core): State<Arc<Core>>, req: Request) -> Result<Response, ApiError> {
    let a = accounts(&core)?;
    let b: RefreshBody = json_body(req.into_body()).await?;
    Ok(Json(a.refresh(&b.refresh_token).await?).into_response())
}

async fn logout(State(core): State<Arc<Core>>, req: Request) -> Result<Response, ApiError> {
    let a = accounts(&core)?;
    let b: RefreshBody = json_body(req.into_body()).await?;
    a.logout(&b.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(core): State<Arc<Core>>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let a = accounts(&core)?;
    let user = bearer(&core, &headers)?;
    let b: PasswordBody = json_body(req.into_body()).await?;
    let tokens = a
        .change_password(&user, b.current_password, b.new_password, peer.ip())
        .await?;
    Ok(Json(tokens).into_response())
}

async fn me(State(core): State<Arc<Core>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let a = accounts(&core)?;
    let user = bearer(&core, &headers)?;
    Ok(Json(a.profile(&user).await?).into_response())
}

/// `null` clears a field; an absent field is left as it is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    #[serde(default, deserialize_with = "present")]
    display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    avatar_url: Option<Option<String>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

async fn update_me(
    State(core): State<Arc<Core>>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let a = accounts(&core)?;
    let user = bearer(&core, &headers)?;
    let b: ProfileBody = json_body(req.into_body()).await?;
    let update = ProfileUpdate {
        display_name: b.display_name,
        avatar_url: b.avatar_url,
    };
    Ok(Json(a.update_profile(&user, update).await?).into_response())
}
