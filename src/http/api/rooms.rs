//! Rooms: create, my rooms, one room, update, delete; the public directory;
//! direct rooms. Each handler is one protocol request ([`super::call`]).

use super::call::{call, unexpected, ID};
use super::extract::{AuthUser, Json, Path, Query};
use super::{reply, ApiResult, Tags};
use crate::http::error::{ApiError, ErrorBody};
use crate::ids::{RoomId, UserId};
use crate::proto::client::{
    ClientFrame, CreateRoom, PublicRooms, RoomOnly, Rooms, StartDirect, UpdateRoom,
};
use crate::proto::server::{PublicRoom, RoomSummary};
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
        .routes(routes!(create_room, my_rooms))
        .routes(routes!(get_room, update_room, delete_room))
        .routes(routes!(directory))
        .routes(routes!(start_direct))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRoom {
    /// 1 to 100 characters, trimmed, one line.
    pub name: String,
    #[serde(default)]
    pub private: bool,
    /// Up to 1000 characters.
    #[serde(default)]
    pub description: Option<String>,
    /// A room id of your choosing (default: a random one); `409 conflict` if taken.
    #[serde(default)]
    pub room: Option<RoomId>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedRoom {
    pub room: RoomId,
    pub name: String,
    pub private: bool,
}

/// Creates a room as `user` (its owner): the logic behind `POST /v1/rooms` and `POST /api/rooms`.
pub async fn create_as(core: &Arc<Core>, user: &UserId, b: NewRoom) -> ApiResult {
    let frame = ClientFrame::CreateRoom(CreateRoom {
        id: ID,
        name: b.name,
        private: b.private,
        description: b.description,
        room: b.room,
    });
    let r = call(core, user, frame).await?;
    match r.frame {
        ServerFrame::Created(c) => {
            let location = format!("/v1/rooms/{}", c.room);
            let body = CreatedRoom {
                room: c.room,
                name: c.name,
                private: c.private,
            };
            Ok(reply(StatusCode::CREATED, r.limit, Some(location), &body))
        }
        other => Err(unexpected(&other)),
    }
}

/// Create a room (you become its owner).
#[utoipa::path(post, path = "/v1/rooms", tag = Tags::ROOMS, request_body = NewRoom,
    responses(
        (status = 201, description = "Created", body = CreatedRoom,
            headers(("location" = String, description = "/v1/rooms/{room}"))),
        (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn create_room(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Json(b): Json<NewRoom>,
) -> ApiResult {
    create_as(&core, &user, b).await
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoomList {
    /// Most recent activity first.
    pub rooms: Vec<RoomSummary>,
}

async fn room_list(
    core: &Arc<Core>,
    user: &UserId,
) -> Result<(Vec<RoomSummary>, super::Limit), ApiError> {
    let r = call(core, user, ClientFrame::Rooms(Rooms { id: ID })).await?;
    match r.frame {
        ServerFrame::Rooms(list) => Ok((list.rooms, r.limit)),
        other => Err(unexpected(&other)),
    }
}

/// My rooms: role, unread count, last message, favorite flag, read pointer.
#[utoipa::path(get, path = "/v1/rooms", tag = Tags::ROOMS,
    responses((status = 200, body = RoomList), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn my_rooms(State(core): State<Arc<Core>>, AuthUser(user): AuthUser) -> ApiResult {
    let (rooms, limit) = room_list(&core, &user).await?;
    Ok(reply(StatusCode::OK, limit, None, &RoomList { rooms }))
}

/// One of my rooms, as in my room list (`404` if I am not a member).
#[utoipa::path(get, path = "/v1/rooms/{room}", tag = Tags::ROOMS,
    params(("room" = RoomId, Path)),
    responses((status = 200, body = RoomSummary), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn get_room(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path(room): Path<RoomId>,
) -> ApiResult {
    room_as(&core, &user, room).await
}

/// `room` as in `user`'s room list (`/v1/rooms/{room}`, `/api/rooms/{room}`).
pub async fn room_as(core: &Arc<Core>, user: &UserId, room: RoomId) -> ApiResult {
    let (rooms, limit) = room_list(core, user).await?;
    let summary = rooms
        .into_iter()
        .find(|r| r.room == room)
        .ok_or_else(|| ApiError::not_found(format!("not a member of room {room}")))?;
    Ok(reply(StatusCode::OK, limit, None, &summary))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoomChanges {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub private: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Done {
    pub room: RoomId,
    /// The stream seq the change took, when it took one (edit, delete, reaction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// Runs a request answered by `ok {room, seq?}` and answers `200` with it.
pub async fn done(core: &Arc<Core>, user: &UserId, frame: ClientFrame, room: RoomId) -> ApiResult {
    let r = call(core, user, frame).await?;
    match r.frame {
        ServerFrame::Ok(ok) => {
            let body = Done {
                room: ok.room.unwrap_or(room),
                seq: ok.seq,
            };
            Ok(reply(StatusCode::OK, r.limit, None, &body))
        }
        other => Err(unexpected(&other)),
    }
}

/// Change name, description or privacy (owner).
#[utoipa::path(patch, path = "/v1/rooms/{room}", tag = Tags::ROOMS,
    params(("room" = RoomId, Path)), request_body = RoomChanges,
    responses((status = 200, body = Done), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn update_room(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path(room): Path<RoomId>,
    Json(b): Json<RoomChanges>,
) -> ApiResult {
    let frame = ClientFrame::UpdateRoom(UpdateRoom {
        id: ID,
        room: room.clone(),
        name: b.name,
        description: b.description,
        private: b.private,
    });
    done(&core, &user, frame, room).await
}

/// Delete a room (owner).
#[utoipa::path(delete, path = "/v1/rooms/{room}", tag = Tags::ROOMS,
    params(("room" = RoomId, Path)),
    responses((status = 200, body = Done), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn delete_room(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path(room): Path<RoomId>,
) -> ApiResult {
    let frame = ClientFrame::DeleteRoom(RoomOnly {
        id: ID,
        room: room.clone(),
    });
    done(&core, &user, frame, room).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DirectoryQuery {
    /// Names starting with this (case-insensitive).
    pub prefix: Option<String>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Directory {
    pub rooms: Vec<PublicRoom>,
    /// Cursor of the next page (`?after=`); absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The public room directory, by name, with cursor paging.
#[utoipa::path(get, path = "/v1/directory", tag = Tags::ROOMS, params(DirectoryQuery),
    responses((status = 200, body = Directory), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn directory(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Query(q): Query<DirectoryQuery>,
) -> ApiResult {
    let frame = ClientFrame::PublicRooms(PublicRooms {
        id: ID,
        prefix: q.prefix,
        after: q.after,
        limit: q.limit,
    });
    let r = call(&core, &user, frame).await?;
    match r.frame {
        ServerFrame::PublicRooms(p) => {
            let body = Directory {
                rooms: p.rooms,
                next: p.next,
            };
            Ok(reply(StatusCode::OK, r.limit, None, &body))
        }
        other => Err(unexpected(&other)),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectWith {
    pub user: UserId,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DirectRoom {
    pub room: RoomId,
    pub peer: UserId,
}

/// The one direct room of me and `user` (made on first use; the same room every time).
#[utoipa::path(post, path = "/v1/direct", tag = Tags::ROOMS, request_body = DirectWith,
    responses(
        (status = 200, body = DirectRoom, headers(("location" = String, description = "/v1/rooms/{room}"))),
        (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn start_direct(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Json(b): Json<DirectWith>,
) -> ApiResult {
    let frame = ClientFrame::StartDirect(StartDirect {
        id: ID,
        user: b.user,
    });
    let r = call(&core, &user, frame).await?;
    match r.frame {
        ServerFrame::Direct(d) => {
            let location = format!("/v1/rooms/{}", d.room);
            let body = DirectRoom {
                room: d.room,
                peer: d.peer,
            };
            Ok(reply(StatusCode::OK, r.limit, Some(location), &body))
        }
        other => Err(unexpected(&other)),
    }
}
