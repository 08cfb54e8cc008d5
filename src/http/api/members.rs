//! Membership: join (with an invite) and leave; members with presence, paged;
//! a room's presence summary; kick, ban, unban, set role, transfer.

use super::call::{call, unexpected, ID};
use super::extract::{AuthUser, Json, Path, Query};
use super::rooms::{done, Done};
use super::{reply, ApiResult, Limit, Tags};
use crate::http::error::{ApiError, ErrorBody};
use crate::ids::{RoomId, UserId};
use crate::proto::client::{ClientFrame, Join, Members, RoomOnly, RoomUser, SetRole};
use crate::proto::server::MemberInfo;
use crate::proto::types::{Role, Status, UserPresence};
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
        .routes(routes!(join))
        .routes(routes!(leave))
        .routes(routes!(members))
        .routes(routes!(room_presence))
        .routes(routes!(kick))
        .routes(routes!(set_role))
        .routes(routes!(ban, unban))
        .routes(routes!(transfer))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinWith {
    /// An invite code, for a private room.
    #[serde(default)]
    pub invite: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Joined {
    pub room: RoomId,
    /// The room's latest seq.
    pub seq: u64,
    pub role: Role,
    pub members: u32,
    pub online_count: u32,
}

/// Makes `user` a member (public room, or with an invite): `POST /v1/rooms/{room}/join`
/// and `PUT /api/rooms/{room}/members/{user}`.
pub async fn join_as(
    core: &Arc<Core>,
    user: &UserId,
    room: RoomId,
    invite: Option<String>,
) -> ApiResult {
    let frame = ClientFrame::Join(Join {
        id: ID,
        room,
        since: None,
        invite,
    });
    let r = call(core, user, frame).await?;
    match r.frame {
        ServerFrame::Joined(j) => {
            let body = Joined {
                room: j.room,
                seq: j.seq,
                role: j.role,
                members: j.members,
                online_count: j.online_count,
            };
            Ok(reply(StatusCode::OK, r.limit, None, &body))
        }
        other => Err(unexpected(&other)),
    }
}

/// Become a member of a public room, or of a private one with an invite code.
/// Joining a room you are a member of is fine. No live subscription: use a socket for pushes.
#[utoipa::path(post, path = "/v1/rooms/{room}/join", tag = Tags::MEMBERS,
    params(("room" = RoomId, Path)), request_body = JoinWith,
    responses((status = 200, body = Joined), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn join(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path(room): Path<RoomId>,
    Json(b): Json<JoinWith>,
) -> ApiResult {
    join_as(&core, &user, room, b.invite).await
}

/// Ends `user`'s membership: `POST /v1/rooms/{room}/leave` and `DELETE /api/rooms/{room}/members/{user}`.
pub async fn leave_as(core: &Arc<Core>, user: &UserId, room: RoomId) -> ApiResult {
    let frame = ClientFrame::LeaveRoom(RoomOnly {
        id: ID,
        room: room.clone(),
    });
    done(core, user, frame, room).await
}

/// Stop being a member (an owner transfers the room first).
#[utoipa::path(post, path = "/v1/rooms/{room}/leave", tag = Tags::MEMBERS,
    params(("room" = RoomId, Path)),
    responses((status = 200, body = Done), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn leave(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path(room): Path<RoomId>,
) -> ApiResult {
    leave_as(&core, &user, room).await
}

/// The member list through the room's shard (which checks that `user` may see it).
pub async fn member_list(
    core: &Arc<Core>,
    user: &UserId,
    room: RoomId,
) -> Result<(Vec<MemberInfo>, Limit), ApiError> {
    let r = call(core, user, ClientFrame::Members(Members { id: ID, room })).await?;
    match r.frame {
        ServerFrame::Members(m) => Ok((m.members, r.limit)),
        other => Err(unexpected(&other)),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MembersQuery {
    /// The `next` cursor of the previous page (a user id: members sort by id).
    pub after: Option<String>,
    /// Page size, 1 to 200 (default 100).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub user: UserId,
    pub role: Role,
    pub read_seq: u64,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MembersPage {
    pub room: RoomId,
    pub members: Vec<Member>,
    /// Cursor of the next page (`?after=`); absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Members with role, read pointer and presence, by user id, paged.
#[utoipa::path(get, path = "/v1/rooms/{room}/members", tag = Tags::MEMBERS,
    params(("room" = RoomId, Path), MembersQuery),
    responses((status = 200, body = MembersPage), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn members(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path(room): Path<RoomId>,
    Query(q): Query<MembersQuery>,
) -> ApiResult {
    let limit = q.limit.unwrap_or(100);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request("limit: must be 1 to 200"));
    }
    let (mut list, rl) = member_list(&core, &user, room.clone()).await?;
    list.sort_by(|a, b| a.user.cmp(&b.user));
    let start = match &q.after {
        Some(after) => list.partition_point(|m| m.user.as_str() <= after.as_str()),
        None => 0,
    };
    let page: Vec<MemberInfo> = list
        .iter()
        .skip(start)
        .take(limit as usize)
        .cloned()
        .collect();
    let next = (start + page.len() < list.len())
        .then(|| page.last().map(|m| m.user.to_string()))
        .flatten();
    // Ids from the reply are as the client knows them: presence is asked in
    // the caller's tenant.
    let ids: Vec<UserId> = page
        .iter()
        .map(|m| crate::tenant::like(&user, m.user.clone()))
        .collect();
    let presence = core.presence.get_many(&ids).await;
    let members = page
        .into_iter()
        .zip(presence)
        .map(|(m, p): (MemberInfo, UserPresence)| Member {
            user: m.user,
            role: m.role,
            read_seq: m.read_seq,
            status: p.status,
            last_seen: p.last_seen,
        })
        .collect();
    Ok(reply(
        StatusCode::OK,
        rl,
        None,
        &MembersPage {
            room,
            members,
            next,
        },
    ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoomPresence {
    pub room: RoomId,
    pub members: u32,
    pub online_count: u32,
    /// Who is online (or away), for rooms of at most `--presence-list-max` members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<Vec<UserId>>,
}

/// How many members are online, and who for small rooms: `GET /v1/rooms/{room}/presence`
/// and `GET /api/rooms/{room}/presence`.
pub async fn presence_as(core: &Arc<Core>, user: &UserId, room: RoomId) -> ApiResult {
    let (list, rl) = member_list(core, user, room.clone()).await?;
    let ids: Vec<UserId> = list
        .into_iter()
        .map(|m| crate::tenant::like(user, m.user))
        .collect();
    let statuses = core.presence.get_many(&ids).await;
    let online: Vec<UserId> = statuses
        .into_iter()
        .filter(|p| p.status != Status::Offline)
        .map(|p| p.user)
        .collect();
    let body = RoomPresence {
        room,
        members: ids.len() as u32,
        online_count: online.len() as u32,
        online: (ids.len() <= core.config.presence_list_max).then_some(online),
    };
    Ok(reply(StatusCode::OK, rl, None, &body))
}

/// The room's presence summary.
#[utoipa::path(get, path = "/v1/rooms/{room}/presence", tag = Tags::MEMBERS,
    params(("room" = RoomId, Path)),
    responses((status = 200, body = RoomPresence), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn room_presence(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path(room): Path<RoomId>,
) -> ApiResult {
    presence_as(&core, &user, room).await
}

fn room_user(room: &RoomId, target: UserId) -> RoomUser {
    RoomUser {
        id: ID,
        room: room.clone(),
        user: target,
    }
}

/// Remove a member (admin or owner; only members below your role).
#[utoipa::path(delete, path = "/v1/rooms/{room}/members/{user}", tag = Tags::MEMBERS,
    params(("room" = RoomId, Path), ("user" = UserId, Path)),
    responses((status = 200, body = Done), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn kick(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path((room, target)): Path<(RoomId, UserId)>,
) -> ApiResult {
    let frame = ClientFrame::Kick(room_user(&room, target));
    done(&core, &user, frame, room).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    /// `admin` or `member`.
    pub role: Role,
}

/// Set a member's role to `admin` or `member` (owner).
#[utoipa::path(put, path = "/v1/rooms/{room}/members/{user}/role", tag = Tags::MEMBERS,
    params(("room" = RoomId, Path), ("user" = UserId, Path)), request_body = NewRole,
    responses((status = 200, body = Done), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn set_role(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path((room, target)): Path<(RoomId, UserId)>,
    Json(b): Json<NewRole>,
) -> ApiResult {
    let frame = ClientFrame::SetRole(SetRole {
        id: ID,
        room: room.clone(),
        user: target,
        role: b.role,
    });
    done(&core, &user, frame, room).await
}

/// Ban a user (admin or owner): removes them and keeps them out.
#[utoipa::path(put, path = "/v1/rooms/{room}/bans/{user}", tag = Tags::MEMBERS,
    params(("room" = RoomId, Path), ("user" = UserId, Path)),
    responses((status = 200, body = Done), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn ban(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path((room, target)): Path<(RoomId, UserId)>,
) -> ApiResult {
    let frame = ClientFrame::Ban(room_user(&room, target));
    done(&core, &user, frame, room).await
}

/// Lift a ban (admin or owner).
#[utoipa::path(delete, path = "/v1/rooms/{room}/bans/{user}", tag = Tags::MEMBERS,
    params(("room" = RoomId, Path), ("user" = UserId, Path)),
    responses((status = 200, body = Done), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn unban(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path((room, target)): Path<(RoomId, UserId)>,
) -> ApiResult {
    let frame = ClientFrame::Unban(room_user(&room, target));
    done(&core, &user, frame, room).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferTo {
    /// The member who becomes owner.
    pub user: UserId,
}

/// Hand the room to another member (owner).
#[utoipa::path(post, path = "/v1/rooms/{room}/transfer", tag = Tags::MEMBERS,
    params(("room" = RoomId, Path)), request_body = TransferTo,
    responses((status = 200, body = Done), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn transfer(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path(room): Path<RoomId>,
    Json(b): Json<TransferTo>,
) -> ApiResult {
    let frame = ClientFrame::Transfer(room_user(&room, b.user));
    done(&core, &user, frame, room).await
}
