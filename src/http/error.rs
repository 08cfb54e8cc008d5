//! REST errors: the protocol's error codes as JSON bodies, with one HTTP
//! status per code ([`status_of`], the single conversion), plus the answers
//! for malformed requests (bad JSON, path, query, unknown route or method),
//! so no request ever gets a plain-text framework default.

use crate::proto::{ErrorCode, WireError};
use crate::ratelimit::Action;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// The body of every REST error.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The protocol's error code (`proto-spec/README.md`, "Error codes").
    pub error: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// With `rate_limited`, `unavailable`, `shutting_down`: when to retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// The HTTP status of each protocol error code (docs/HTTP_API.md has the table).
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        // A quota: not allowed until the user frees something.
        ErrorCode::Forbidden | ErrorCode::LimitExceeded => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::BadRequest | ErrorCode::UnknownType | ErrorCode::UnsupportedVersion => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::FrameTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::ShuttingDown | ErrorCode::ServerBusy | ErrorCode::Unavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        // Connection-level codes a REST request never meets; a timeout if it did.
        ErrorCode::SlowConsumer | ErrorCode::HelloTimeout | ErrorCode::IdleTimeout => {
            StatusCode::REQUEST_TIMEOUT
        }
    }
}

/// A failed REST request: the protocol error, and for a refused rate-limited
/// request the action whose limit refused it (for the `RateLimit-*` headers).
#[derive(Debug)]
pub struct ApiError {
    pub error: WireError,
    pub limit: Option<(Action, Option<crate::config::RateSpec>)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError::new(code, message).into()
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
}

impl From<WireError> for ApiError {
    fn from(error: WireError) -> Self {
        ApiError { error, limit: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.error.code);
        let mut headers = HeaderMap::new();
        if let Some(ms) = self.error.retry_after_ms {
            // Whole seconds, rounded up: waiting exactly this long is enough.
            let secs = ms.div_ceil(1000).max(1);
            headers.insert("retry-after", HeaderValue::from(secs));
            if self.error.code == ErrorCode::RateLimited {
                headers.insert("ratelimit-remaining", HeaderValue::from(0));
                headers.insert("x-ratelimit-remaining", HeaderValue::from(0));
                headers.insert("ratelimit-reset", HeaderValue::from(secs));
                headers.insert("x-ratelimit-reset", HeaderValue::from(secs));
            }
        }
        if let Some((_, Some(spec))) = self.limit {
            rate_limit_headers(&mut headers, spec);
        }
        let body = ErrorBody {
            error: self.error.code,
            // Ids in it as the caller knows them (tenants: `crate::tenant`).
            message: crate::proto::ids::strip_scopes(&self.error.message).into_owned(),
            retry_after_ms: self.error.retry_after_ms,
        };
        (status, headers, axum::Json(body)).into_response()
    }
}

/// `RateLimit-Limit` / `X-RateLimit-Limit` (the burst) and `RateLimit-Policy`
/// (burst per the seconds the bucket takes to refill), on every response of a
/// rate-limited endpoint.
pub fn rate_limit_headers(headers: &mut HeaderMap, spec: crate::config::RateSpec) {
    let window = (spec.burst as f64 / spec.per_second).ceil().max(1.0) as u64;
    headers.insert("ratelimit-limit", HeaderValue::from(spec.burst));
    headers.insert("x-ratelimit-limit", HeaderValue::from(spec.burst));
    if let Ok(v) = HeaderValue::from_str(&format!("{};w={window}", spec.burst)) {
        headers.insert("ratelimit-policy", v);
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let code = match &r {
            JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ErrorCode::FrameTooLarge
            }
            _ => ErrorCode::BadRequest,
        };
        ApiError::new(code, format!("body: {}", r.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request(format!("path: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(format!("query: {}", r.body_text()))
    }
}

/// Unknown paths: a JSON `not_found`.
pub async fn no_route() -> ApiError {
    ApiError::not_found("no such endpoint (the API is described at /openapi.json)")
}

/// A known path with a method it does not serve: `405` with a JSON body.
pub async fn no_method() -> Response {
    let body = ErrorBody {
        error: ErrorCode::BadRequest,
        message: "method not allowed on this path".into(),
        retry_after_ms: None,
    };
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}
