//! Favorites (rooms and people) and presence of users.

use super::call::{call, unexpected, ID};
use super::extract::{AuthUser, Path, Query};
use super::{reply, ApiResult, Tags};
use crate::http::error::{ApiError, ErrorBody};
use crate::ids::{RoomId, UserId};
use crate::proto::client::{self as c, ClientFrame};
use crate::proto::types::UserPresence;
use crate::proto::ServerFrame;
use crate::server::Core;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<Arc<Core>> {
    OpenApiRouter::new()
        .routes(routes!(favorites))
        .routes(routes!(favorite_room, unfavorite_room))
        .routes(routes!(favorite_user, unfavorite_user))
        .routes(routes!(presence))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Favorites {
    pub rooms: Vec<RoomId>,
    pub users: Vec<UserId>,
}

/// My favorite rooms and people.
#[utoipa::path(get, path = "/v1/favorites", tag = Tags::FAVORITES,
    responses((status = 200, body = Favorites), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn favorites(State(core): State<Arc<Core>>, AuthUser(user): AuthUser) -> ApiResult {
    let r = call(
        &core,
        &user,
        ClientFrame::Favorites(c::Favorites { id: ID }),
    )
    .await?;
    match r.frame {
        ServerFrame::Favorites(f) => {
            let body = Favorites {
                rooms: f.rooms,
                users: f.users,
            };
            Ok(reply(StatusCode::OK, r.limit, None, &body))
        }
        other => Err(unexpected(&other)),
    }
}

async fn set(
    core: &Arc<Core>,
    user: &UserId,
    room: Option<RoomId>,
    peer: Option<UserId>,
    on: bool,
) -> ApiResult {
    let frame = ClientFrame::Favorite(c::Favorite {
        id: ID,
        room,
        user: peer,
        on,
    });
    let r = call(core, user, frame).await?;
    match r.frame {
        ServerFrame::Ok(_) => Ok(reply(StatusCode::NO_CONTENT, r.limit, None, &())),
        other => Err(unexpected(&other)),
    }
}

/// Mark a room as a favorite.
#[utoipa::path(put, path = "/v1/favorites/rooms/{room}", tag = Tags::FAVORITES,
    params(("room" = RoomId, Path)),
    responses((status = 204, description = "Done"), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn favorite_room(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path(room): Path<RoomId>,
) -> ApiResult {
    set(&core, &user, Some(room), None, true).await
}

/// Unmark a favorite room.
#[utoipa::path(delete, path = "/v1/favorites/rooms/{room}", tag = Tags::FAVORITES,
    params(("room" = RoomId, Path)),
    responses((status = 204, description = "Done"), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn unfavorite_room(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path(room): Path<RoomId>,
) -> ApiResult {
    set(&core, &user, Some(room), None, false).await
}

/// Mark a person as a favorite.
#[utoipa::path(put, path = "/v1/favorites/users/{user}", tag = Tags::FAVORITES,
    params(("user" = UserId, Path)),
    responses((status = 204, description = "Done"), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn favorite_user(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path(peer): Path<UserId>,
) -> ApiResult {
    set(&core, &user, None, Some(peer), true).await
}

/// Unmark a favorite person.
#[utoipa::path(delete, path = "/v1/favorites/users/{user}", tag = Tags::FAVORITES,
    params(("user" = UserId, Path)),
    responses((status = 204, description = "Done"), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn unfavorite_user(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path(peer): Path<UserId>,
) -> ApiResult {
    set(&core, &user, None, Some(peer), false).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PresenceQuery {
    /// User ids, comma-separated (1 to 1000).
    pub users: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PresenceList {
    pub users: Vec<UserPresence>,
}

/// Presence of users: status and last seen.
#[utoipa::path(get, path = "/v1/presence", tag = Tags::FAVORITES, params(PresenceQuery),
    responses((status = 200, body = PresenceList), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn presence(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Query(q): Query<PresenceQuery>,
) -> ApiResult {
    let users = q
        .users
        .split(',')
        .map(|u| UserId::new(u.trim()).map_err(|e| ApiError::bad_request(format!("users: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let frame = ClientFrame::Presence(c::Presence {
        id: ID,
        status: None,
        users,
    });
    let r = call(&core, &user, frame).await?;
    match r.frame {
        ServerFrame::Presence(p) => Ok(reply(
            StatusCode::OK,
            r.limit,
            None,
            &PresenceList { users: p.users },
        )),
        other => Err(unexpected(&other)),
    }
}
