//! The REST API: `/v1/...` for users (Bearer JWT) and `/api/...` for app
//! backends (`X-Api-Key`), one file per resource group. Every handler turns
//! its request into the protocol request and runs it through the same
//! dispatch and room shards as the sockets ([`call`]). JSON is snake_case,
//! like the protocol; conventions in docs/HTTP_API.md.

pub mod call;
pub mod extract;
pub mod favorites;
pub mod invites;
pub mod members;
pub mod messages;
pub mod rooms;
pub mod server;

use crate::config::RateSpec;
use crate::http::error::{rate_limit_headers, ApiError};
use crate::server::Core;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;

/// What every handler answers.
pub type ApiResult = Result<Response, ApiError>;

/// The rate limit that applied to a request (for the `RateLimit-*` headers).
pub type Limit = Option<RateSpec>;

/// OpenAPI tags, one per resource group.
pub struct Tags;
impl Tags {
    pub const ROOMS: &'static str = "rooms";
    pub const MEMBERS: &'static str = "members";
    pub const INVITES: &'static str = "invites";
    pub const MESSAGES: &'static str = "messages";
    pub const FAVORITES: &'static str = "favorites";
    pub const SERVER: &'static str = "server";
}

/// A JSON answer with its status, the rate-limit headers of the request's
/// limit and, for a creation, the new resource's `Location`.
pub fn reply<T: Serialize>(
    status: StatusCode,
    limit: Limit,
    location: Option<String>,
    body: &T,
) -> Response {
    let mut headers = HeaderMap::new();
    if let Some(spec) = limit {
        rate_limit_headers(&mut headers, spec);
    }
    if let Some(loc) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(axum::http::header::LOCATION, loc);
    }
    if status == StatusCode::NO_CONTENT {
        return (status, headers).into_response();
    }
    // Ids in their public form: a tenant's clients never see the scope.
    (status, headers, crate::tenant::json(body)).into_response()
}

/// Every REST route, with its OpenAPI description.
pub fn routes() -> OpenApiRouter<Arc<Core>> {
    OpenApiRouter::new()
        .merge(rooms::routes())
        .merge(members::routes())
        .merge(invites::routes())
        .merge(messages::routes())
        .merge(favorites::routes())
        .merge(server::routes())
}
