//! Messages: history (oldest first, latest state), one message, send (with
//! `local_id` idempotency), edit, delete, react and unreact; the read pointer
//! and who-read receipts.

use super::call::{call, unexpected, ID};
use super::extract::{AuthUser, Json, Path, Query};
use super::rooms::{done, Done};
use super::{reply, ApiResult, Tags};
use crate::http::error::{ApiError, ErrorBody};
use crate::ids::{RoomId, UserId};
use crate::proto::client::{self as c, ClientFrame};
use crate::proto::server::Message;
use crate::proto::types::{Attachment, MessageKind};
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
        .routes(routes!(history, send))
        .routes(routes!(get_message, edit, delete))
        .routes(routes!(react, unreact))
        .routes(routes!(mark_read))
        .routes(routes!(receipts))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Messages with a seq below this (default: the newest); paging back.
    #[param(minimum = 1)]
    pub before: Option<u64>,
    /// Messages with a seq above this, oldest first; paging forward. Not
    /// together with `before` (`bad_request`).
    #[param(minimum = 0)]
    pub after: Option<u64>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    pub room: RoomId,
    /// Oldest first, each in its latest state (edited, deleted, reactions).
    pub messages: Vec<Message>,
    /// Whether more messages exist in the direction of the read: paging back
    /// (`before`, or neither), older ones (ask again with `before` = the first
    /// seq here); paging forward (`after`), newer ones (ask again with
    /// `after` = the last seq here).
    pub more: bool,
}

/// A page of history through the room's shard, as `user`: `GET /v1/rooms/{room}/messages`
/// and `GET /api/rooms/{room}/messages`.
pub async fn history_as(
    core: &Arc<Core>,
    user: &UserId,
    room: RoomId,
    q: HistoryQuery,
) -> ApiResult {
    let (page, limit) = page(core, user, room, q.before, q.after, q.limit).await?;
    Ok(reply(StatusCode::OK, limit, None, &page))
}

async fn page(
    core: &Arc<Core>,
    user: &UserId,
    room: RoomId,
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<u32>,
) -> Result<(MessagePage, super::Limit), ApiError> {
    let frame = ClientFrame::History(c::History {
        id: ID,
        room,
        before,
        after,
        limit,
    });
    let r = call(core, user, frame).await?;
    match r.frame {
        ServerFrame::History(h) => Ok((
            MessagePage {
                room: h.room,
                messages: h.messages,
                more: h.more,
            },
            r.limit,
        )),
        other => Err(unexpected(&other)),
    }
}

/// History, newest page first; page back with `before`, or forward from a
/// seq with `after`.
#[utoipa::path(get, path = "/v1/rooms/{room}/messages", tag = Tags::MESSAGES,
    params(("room" = RoomId, Path), HistoryQuery),
    responses((status = 200, body = MessagePage), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn history(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path(room): Path<RoomId>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult {
    history_as(&core, &user, room, q).await
}

/// One message in its latest state.
#[utoipa::path(get, path = "/v1/rooms/{room}/messages/{seq}", tag = Tags::MESSAGES,
    params(("room" = RoomId, Path), ("seq" = u64, Path, minimum = 1)),
    responses((status = 200, body = Message), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn get_message(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path((room, seq)): Path<(RoomId, u64)>,
) -> ApiResult {
    let before = seq
        .checked_add(1)
        .filter(|_| seq > 0)
        .ok_or_else(|| ApiError::bad_request("seq: must be 1 to 2^64-2"))?;
    let (page, limit) = page(&core, &user, room.clone(), Some(before), None, Some(1)).await?;
    let msg = page
        .messages
        .into_iter()
        .find(|m| m.seq == seq)
        .ok_or_else(|| ApiError::not_found(format!("no message {seq} in room {room}")))?;
    Ok(reply(StatusCode::OK, limit, None, &msg))
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// Up to `--max-body-chars` characters; may be empty for files and images (a caption).
    pub body: String,
    /// Your idempotency key (1 to 64 bytes): a retry with the same one returns the
    /// original message's seq and ts and stores nothing new.
    #[serde(default)]
    pub local_id: Option<String>,
    #[serde(default)]
    pub kind: MessageKind,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// Seq of the message in this room this one replies to.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub reply_to: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SentMessage {
    pub room: RoomId,
    pub seq: u64,
    pub ts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_id: Option<String>,
}

/// Sends as `user`: `POST /v1/rooms/{room}/messages` and the server API's publish
/// and broadcast.
pub async fn sent_as(
    core: &Arc<Core>,
    user: &UserId,
    room: RoomId,
    m: NewMessage,
) -> Result<(SentMessage, super::Limit), ApiError> {
    let frame = ClientFrame::Send(c::Send {
        id: ID,
        room,
        body: m.body,
        local_id: m.local_id,
        kind: m.kind,
        attachments: m.attachments,
        reply_to: m.reply_to,
    });
    let r = call(core, user, frame).await?;
    match r.frame {
        ServerFrame::Sent(s) => Ok((
            SentMessage {
                room: s.room,
                seq: s.seq,
                ts: s.ts,
                local_id: s.local_id,
            },
            r.limit,
        )),
        other => Err(unexpected(&other)),
    }
}

/// [`sent_as`], answered `201` with a `Location`.
pub async fn send_as(core: &Arc<Core>, user: &UserId, room: RoomId, m: NewMessage) -> ApiResult {
    let (sent, limit) = sent_as(core, user, room, m).await?;
    let location = format!("/v1/rooms/{}/messages/{}", sent.room, sent.seq);
    Ok(reply(StatusCode::CREATED, limit, Some(location), &sent))
}

/// Send a message; it is stored before this answers, and pushed to the room's live subscribers.
#[utoipa::path(post, path = "/v1/rooms/{room}/messages", tag = Tags::MESSAGES,
    params(("room" = RoomId, Path)), request_body = NewMessage,
    responses(
        (status = 201, body = SentMessage, headers(("location" = String, description = "/v1/rooms/{room}/messages/{seq}"))),
        (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn send(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path(room): Path<RoomId>,
    Json(m): Json<NewMessage>,
) -> ApiResult {
    send_as(&core, &user, room, m).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBody {
    pub body: String,
}

/// Edit your own message's body within the edit window.
#[utoipa::path(patch, path = "/v1/rooms/{room}/messages/{seq}", tag = Tags::MESSAGES,
    params(("room" = RoomId, Path), ("seq" = u64, Path)), request_body = NewBody,
    responses((status = 200, body = Done), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn edit(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path((room, seq)): Path<(RoomId, u64)>,
    Json(b): Json<NewBody>,
) -> ApiResult {
    let frame = ClientFrame::Edit(c::Edit {
        id: ID,
        room: room.clone(),
        seq,
        body: b.body,
    });
    done(&core, &user, frame, room).await
}

/// Delete a message (its author, or an admin): it stays as a tombstone.
#[utoipa::path(delete, path = "/v1/rooms/{room}/messages/{seq}", tag = Tags::MESSAGES,
    params(("room" = RoomId, Path), ("seq" = u64, Path)),
    responses((status = 200, body = Done), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn delete(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path((room, seq)): Path<(RoomId, u64)>,
) -> ApiResult {
    let frame = ClientFrame::Delete(c::Delete {
        id: ID,
        room: room.clone(),
        seq,
    });
    done(&core, &user, frame, room).await
}

async fn reaction(
    core: &Arc<Core>,
    user: &UserId,
    room: RoomId,
    seq: u64,
    emoji: String,
    on: bool,
) -> ApiResult {
    let frame = ClientFrame::React(c::React {
        id: ID,
        room: room.clone(),
        seq,
        emoji,
        on,
    });
    done(core, user, frame, room).await
}

/// Add your reaction (an emoji, or a `:shortcode:`; URL-encoded in the path).
#[utoipa::path(put, path = "/v1/rooms/{room}/messages/{seq}/reactions/{emoji}", tag = Tags::MESSAGES,
    params(("room" = RoomId, Path), ("seq" = u64, Path), ("emoji" = String, Path)),
    responses((status = 200, body = Done), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn react(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path((room, seq, emoji)): Path<(RoomId, u64, String)>,
) -> ApiResult {
    reaction(&core, &user, room, seq, emoji, true).await
}

/// Remove your reaction.
#[utoipa::path(delete, path = "/v1/rooms/{room}/messages/{seq}/reactions/{emoji}", tag = Tags::MESSAGES,
    params(("room" = RoomId, Path), ("seq" = u64, Path), ("emoji" = String, Path)),
    responses((status = 200, body = Done), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn unreact(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path((room, seq, emoji)): Path<(RoomId, u64, String)>,
) -> ApiResult {
    reaction(&core, &user, room, seq, emoji, false).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadUpTo {
    /// Move my read pointer forward to this seq (it never moves back).
    pub seq: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReadState {
    pub room: RoomId,
    pub seq: u64,
    pub unread: u64,
}

/// Mark the room read up to `seq`; answers my pointer and unread count.
#[utoipa::path(put, path = "/v1/rooms/{room}/read", tag = Tags::MESSAGES,
    params(("room" = RoomId, Path)), request_body = ReadUpTo,
    responses((status = 200, body = ReadState), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn mark_read(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path(room): Path<RoomId>,
    Json(b): Json<ReadUpTo>,
) -> ApiResult {
    let frame = ClientFrame::Read(c::Read {
        id: ID,
        room,
        seq: b.seq,
    });
    let r = call(&core, &user, frame).await?;
    match r.frame {
        ServerFrame::ReadAck(a) => {
            let body = ReadState {
                room: a.room,
                seq: a.seq,
                unread: a.unread,
            };
            Ok(reply(StatusCode::OK, r.limit, None, &body))
        }
        other => Err(unexpected(&other)),
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Receipts {
    pub room: RoomId,
    pub seq: u64,
    /// Members whose read pointer is at or past `seq`.
    pub readers: Vec<UserId>,
    /// Members to whose sessions `seq` has been delivered.
    pub delivered: Vec<UserId>,
}

/// Who has read (and who has received) a message.
#[utoipa::path(get, path = "/v1/rooms/{room}/messages/{seq}/receipts", tag = Tags::MESSAGES,
    params(("room" = RoomId, Path), ("seq" = u64, Path)),
    responses((status = 200, body = Receipts), (status = "4XX", body = ErrorBody)),
    security(("user_jwt" = [])))]
async fn receipts(
    State(core): State<Arc<Core>>,
    AuthUser(user): AuthUser,
    Path((room, seq)): Path<(RoomId, u64)>,
) -> ApiResult {
    let frame = ClientFrame::Receipts(c::Receipts { id: ID, room, seq });
    let r = call(&core, &user, frame).await?;
    match r.frame {
        ServerFrame::Receipts(x) => {
            let body = Receipts {
                room: x.room,
                seq: x.seq,
                readers: x.readers,
                delivered: x.delivered,
            };
            Ok(reply(StatusCode::OK, r.limit, None, &body))
        }
        other => Err(unexpected(&other)),
    }
}
