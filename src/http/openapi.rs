//! The OpenAPI 3.1 document of the REST API, generated from the handlers and
//! types (utoipa): served at `/openapi.json`, with a Swagger UI page at
//! `/docs` whose assets are compiled into the binary (works offline).

use crate::http::api;
use crate::http::error::ErrorBody;
use crate::server::Core;
use axum::Router;
use std::sync::Arc;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "roomcast HTTP API",
        description = "REST/JSON access to roomcast rooms: `/v1` for users (Bearer JWT, the \
            protocol's tokens), `/api` for app backends (`X-Api-Key`). Every request runs \
            through the same rules as the real-time protocol. Conventions and the error \
            table: docs/HTTP_API.md.",
        license(name = "Apache-2.0")
    ),
    modifiers(&Security),
    components(schemas(ErrorBody)),
    tags(
        (name = "rooms", description = "Rooms, my room list, the directory, direct rooms"),
        (name = "members", description = "Joining, leaving, members, presence, administration"),
        (name = "invites", description = "Invite codes of private rooms"),
        (name = "messages", description = "History, sending, edits, reactions, reads"),
        (name = "favorites", description = "Favorites and presence of users"),
        (name = "server", description = "The server API for app backends (API key)"),
    )
)]
struct Doc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "user_jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

/// The REST routes and their document.
pub fn split() -> (Router<Arc<Core>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(Doc::openapi())
        .merge(api::routes())
        .split_for_parts()
}

/// The REST API, `/openapi.json` and the `/docs` page.
pub fn router() -> Router<Arc<Core>> {
    let (routes, doc) = split();
    routes.merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
}
