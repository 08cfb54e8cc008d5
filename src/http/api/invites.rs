//! Invites to private rooms: create, list, revoke (admin or owner).

use super::call::{call, unexpected, ID};
use super::extract::{AuthUser, Json, Path};
use super::rooms::{done, Done};
use super::{reply, ApiResult, Tags};
use crate::http::error::ErrorBody;
use crate::ids::RoomId;
use crate::proto::client::{ClientFrame, CreateInvite, RevokeInvite, RoomOnly};
use crate::proto::server::InviteInfo;
use crate::proto::ServerFrame;
use crate::server::Core;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<Arc<Core>> {
    OpenApiRouter::new()
        .routes(routes!(create_invite, list_invites))
        .routes(routes!(revoke_invite))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvite {
    /// Lifetime in seconds (default: no expiry).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub expires_in_s: Option<u64>,
    /// How many joins it admits (default: unlimited).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_uses: Option<u32>,
}

/// Create an invite code (admin or owner).
#[utoipa::path(post, path = "/v1/rooms/{room}/invites", tag = Tags::INVITES,
    params(("room" = RoomId, Path)), request_body = NewInvite,
    responses(
        (status = 201, body = InviteInfo, headers(("location" = String, description = "/v1/rooms/{room}/invites/{code}"))),
        (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn create_invite(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path(room): Path<RoomId>,
    Json(b): Json<NewInvite>,
) -> ApiResult {
    let frame = ClientFrame::CreateInvite(CreateInvite {
        id: ID,
        room,
        expires_in_s: b.expires_in_s,
        max_uses: b.max_uses,
    });
    let r = call(&core, &user, frame).await?;
    match r.frame {
        ServerFrame::Invite(i) => {
            let location = format!("/v1/rooms/{}/invites/{}", i.invite.room, i.invite.code);
            Ok(reply(
                StatusCode::CREATED,
                r.limit,
                Some(location),
                &i.invite,
            ))
        }
        other => Err(unexpected(&other)),
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InviteList {
    pub room: RoomId,
    pub invites: Vec<InviteInfo>,
}

/// The room's live invites (admin or owner).
#[utoipa::path(get, path = "/v1/rooms/{room}/invites", tag = Tags::INVITES,
    params(("room" = RoomId, Path)),
    responses((status = 200, body = InviteList), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn list_invites(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path(room): Path<RoomId>,
) -> ApiResult {
    let r = call(
        &core,
        &user,
        ClientFrame::Invites(RoomOnly { id: ID, room }),
    )
    .await?;
    match r.frame {
        ServerFrame::Invites(i) => {
            let body = InviteList {
                room: i.room,
                invites: i.invites,
            };
            Ok(reply(StatusCode::OK, r.limit, None, &body))
        }
        other => Err(unexpected(&other)),
    }
}

/// Revoke an invite code (admin or owner).
#[utoipa::path(delete, path = "/v1/rooms/{room}/invites/{code}", tag = Tags::INVITES,
    params(("room" = RoomId, Path), ("code" = String, Path)),
    responses((status = 200, body = Done), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn revoke_invite(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path((room, code)): Path<(RoomId, String)>,
) -> ApiResult {
    let frame = ClientFrame::RevokeInvite(RevokeInvite {
        id: ID,
        room: room.clone(),
        code,
    });
    done(&core, &user, frame, room).await
}
