//! The server API for app backends (`/api/...`, `X-Api-Key`): the backend owns
//! identity, so it acts *as* a user it names, and every action runs as that
//! user's protocol request through the same rules (membership, permissions,
//! rate limits, `local_id` idempotency). Plus disconnecting a user's
//! connections and node information.

use super::extract::{Backend, Json, Path, Query};
use super::members::{join_as, leave_as, presence_as, JoinWith, Joined, RoomPresence};
use super::messages::{
    history_as, send_as, sent_as, HistoryQuery, MessagePage, NewMessage, SentMessage,
};
use super::rooms::{create_as, room_as, CreatedRoom, Done, NewRoom};
use super::{ApiResult, Tags};
use crate::http::error::{ApiError, ErrorBody};
use crate::ids::{RoomId, UserId};
use crate::proto::types::{Attachment, MessageKind};
use crate::server::Core;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most rooms in one broadcast.
pub const MAX_BROADCAST_ROOMS: usize = 100;

pub fn routes() -> OpenApiRouter<Arc<Core>> {
    OpenApiRouter::new()
        .routes(routes!(create_room))
        .routes(routes!(publish))
        .routes(routes!(broadcast))
        .routes(routes!(add_member, remove_member))
        .routes(routes!(room_info))
        .routes(routes!(room_presence))
        .routes(routes!(room_history))
        .routes(routes!(disconnect))
        .routes(routes!(info))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendRoom {
    /// The owner: the room is created as this user.
    pub owner: UserId,
    pub name: String,
    #[serde(default)]
    pub private: bool,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub room: Option<RoomId>,
}

/// Create a room owned by a user.
#[utoipa::path(post, path = "/api/rooms", tag = Tags::SERVER, request_body = BackendRoom,
    responses(
        (status = 201, body = CreatedRoom, headers(("location" = String, description = "/v1/rooms/{room}"))),
        (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
async fn create_room(
    State(core): State<Arc<Core>>,
    backend: Backend,
    Json(b): Json<BackendRoom>,
) -> ApiResult {
    let owner = backend.user(b.owner)?;
    let room = NewRoom {
        name: b.name,
        private: b.private,
        description: b.description,
        room: b.room,
    };
    create_as(&core, &owner, room).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Publication {
    /// The sender: a user who is a member of the room, or the system sender
    /// (`system`, or the server's `--system-user`), who needs no membership
    /// and is not rate-limited.
    pub user: UserId,
    pub body: String,
    /// Idempotency key: publishing again with the same one returns the original message.
    #[serde(default)]
    pub local_id: Option<String>,
    #[serde(default)]
    pub kind: MessageKind,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    #[schema(minimum = 1)]
    pub reply_to: Option<u64>,
}

impl Publication {
    fn message(self) -> (UserId, NewMessage) {
        (
            self.user,
            NewMessage {
                body: self.body,
                local_id: self.local_id,
                kind: self.kind,
                attachments: self.attachments,
                reply_to: self.reply_to,
            },
        )
    }
}

/// Publish a message into a room as a user or as the system sender.
#[utoipa::path(post, path = "/api/rooms/{room}/messages", tag = Tags::SERVER,
    params(("room" = RoomId, Path)), request_body = Publication,
    responses(
        (status = 201, body = SentMessage, headers(("location" = String, description = "/v1/rooms/{room}/messages/{seq}"))),
        (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
async fn publish(
    State(core): State<Arc<Core>>,
    backend: Backend,
    Path(room): Path<RoomId>,
    Json(p): Json<Publication>,
) -> ApiResult {
    let (user, msg) = p.message();
    send_as(&core, &backend.user(user)?, room, msg).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Broadcast {
    /// 1 to 100 rooms.
    pub rooms: Vec<RoomId>,
    /// The sender: a member of every room, or the system sender (`system`).
    pub user: UserId,
    pub body: String,
    /// Idempotency key, per room.
    #[serde(default)]
    pub local_id: Option<String>,
    #[serde(default)]
    pub kind: MessageKind,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BroadcastResult {
    pub room: RoomId,
    /// Present when the message was stored in this room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<SentMessage>,
    /// Present when this room refused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BroadcastResults {
    /// One result per room, in the order given.
    pub results: Vec<BroadcastResult>,
}

/// Publish one message into several rooms as a user (each room on its own:
/// some may refuse). The `local_id` applies per room.
#[utoipa::path(post, path = "/api/broadcast", tag = Tags::SERVER, request_body = Broadcast,
    responses((status = 200, body = BroadcastResults), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
async fn broadcast(
    State(core): State<Arc<Core>>,
    backend: Backend,
    Json(b): Json<Broadcast>,
) -> ApiResult {
    let user = backend.user(b.user)?;
    if b.rooms.is_empty() || b.rooms.len() > MAX_BROADCAST_ROOMS {
        return Err(ApiError::bad_request(format!(
            "rooms: give 1 to {MAX_BROADCAST_ROOMS}"
        )));
    }
    let msg = NewMessage {
        body: b.body,
        local_id: b.local_id,
        kind: b.kind,
        attachments: b.attachments,
        reply_to: None,
    };
    let mut results = Vec::with_capacity(b.rooms.len());
    for room in b.rooms {
        results.push(
            match sent_as(&core, &user, room.clone(), msg.clone()).await {
                Ok((sent, _)) => BroadcastResult {
                    room,
                    sent: Some(sent),
                    error: None,
                },
                Err(e) => BroadcastResult {
                    room,
                    sent: None,
                    error: Some(ErrorBody {
                        error: e.error.code,
                        message: e.error.message,
                        retry_after_ms: e.error.retry_after_ms,
                    }),
                },
            },
        );
    }
    Ok((
        StatusCode::OK,
        crate::tenant::json(&BroadcastResults { results }),
    )
        .into_response())
}

/// Add a user to a room: they join it as they could themselves (a public room,
/// or a private one with an invite code in the body).
#[utoipa::path(put, path = "/api/rooms/{room}/members/{user}", tag = Tags::SERVER,
    params(("room" = RoomId, Path), ("user" = UserId, Path)), request_body = JoinWith,
    responses((status = 200, body = Joined), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
async fn add_member(
    State(core): State<Arc<Core>>,
    backend: Backend,
    Path((room, user)): Path<(RoomId, UserId)>,
    Json(b): Json<JoinWith>,
) -> ApiResult {
    join_as(&core, &backend.user(user)?, room, b.invite).await
}

/// Remove a user from a room: they leave it.
#[utoipa::path(delete, path = "/api/rooms/{room}/members/{user}", tag = Tags::SERVER,
    params(("room" = RoomId, Path), ("user" = UserId, Path)),
    responses((status = 200, body = Done), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
async fn remove_member(
    State(core): State<Arc<Core>>,
    backend: Backend,
    Path((room, user)): Path<(RoomId, UserId)>,
) -> ApiResult {
    leave_as(&core, &backend.user(user)?, room).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsUser {
    /// The member on whose behalf to read (reads are checked as theirs).
    #[serde(rename = "as")]
    #[param(rename = "as")]
    pub as_user: UserId,
}

/// A room (name, kind, privacy, last message, unread count, role), read as
/// one of its members: as in that member's room list.
#[utoipa::path(get, path = "/api/rooms/{room}", tag = Tags::SERVER,
    params(("room" = RoomId, Path), AsUser),
    responses((status = 200, body = crate::proto::server::RoomSummary), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
async fn room_info(
    State(core): State<Arc<Core>>,
    backend: Backend,
    Path(room): Path<RoomId>,
    Query(q): Query<AsUser>,
) -> ApiResult {
    room_as(&core, &backend.user(q.as_user)?, room).await
}

/// Presence summary of a room, read as one of its members.
#[utoipa::path(get, path = "/api/rooms/{room}/presence", tag = Tags::SERVER,
    params(("room" = RoomId, Path), AsUser),
    responses((status = 200, body = RoomPresence), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
async fn room_presence(
    State(core): State<Arc<Core>>,
    backend: Backend,
    Path(room): Path<RoomId>,
    Query(q): Query<AsUser>,
) -> ApiResult {
    presence_as(&core, &backend.user(q.as_user)?, room).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryAs {
    /// The member on whose behalf to read.
    #[serde(rename = "as")]
    #[param(rename = "as")]
    pub as_user: UserId,
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

/// History of a room, read as one of its members.
#[utoipa::path(get, path = "/api/rooms/{room}/messages", tag = Tags::SERVER,
    params(("room" = RoomId, Path), HistoryAs),
    responses((status = 200, body = MessagePage), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
async fn room_history(
    State(core): State<Arc<Core>>,
    backend: Backend,
    Path(room): Path<RoomId>,
    Query(q): Query<HistoryAs>,
) -> ApiResult {
    let as_user = backend.user(q.as_user)?;
    let page = HistoryQuery {
        before: q.before,
        after: q.after,
        limit: q.limit,
    };
    history_as(&core, &as_user, room, page).await
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Disconnected {
    pub user: UserId,
    /// Connections of the user on this node that were told to close (with
    /// `--redis`, the other nodes close theirs too, uncounted).
    pub disconnected: u64,
}

/// Disconnect every protocol connection (TCP, TLS, QUIC, WebSocket) of a user,
/// on every node: each gets an `error` frame `unauthorized` with `close: true`
/// and is closed. Not a ban: a client with a valid token may connect again.
#[utoipa::path(post, path = "/api/users/{user}/disconnect", tag = Tags::SERVER,
    params(("user" = UserId, Path)),
    responses((status = 200, body = Disconnected), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
async fn disconnect(
    State(core): State<Arc<Core>>,
    backend: Backend,
    Path(user): Path<UserId>,
) -> ApiResult {
    let user = backend.user(user)?;
    let n = core.registry.disconnect(&user);
    if let Some(bus) = &core.bus {
        bus.publish_disconnect(&user);
    }
    tracing::info!(%user, connections = n, "server API: disconnect");
    let body = Disconnected {
        user,
        disconnected: n as u64,
    };
    Ok((StatusCode::OK, crate::tenant::json(&body)).into_response())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    pub version: String,
    /// Open protocol connections on this node.
    pub connections: u64,
    pub shards: u64,
    pub shutting_down: bool,
    /// Whether this node shares presence and fan-out through Redis.
    pub multi_node: bool,
    /// Multi-node: this node's id in the cluster (`--node-id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Multi-node: whether this node holds its lease in Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_lease_held: Option<bool>,
    /// Multi-node: the live nodes (this one included while it holds its
    /// lease), sorted by id; empty on a single node.
    pub live_nodes: Vec<LiveNode>,
}

/// A node in the cluster's live set.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LiveNode {
    pub id: String,
    /// Its start time (ms since the Unix epoch): tells restarts apart.
    pub incarnation: u64,
    /// Its listener addresses, as it bound them.
    pub tcp: String,
    pub http: String,
    pub quic: String,
    pub version: String,
}

/// This node: version, connections, shards; with `--redis`, its cluster id,
/// lease and the live nodes.
#[utoipa::path(get, path = "/api/info", tag = Tags::SERVER,
    responses((status = 200, body = NodeInfo), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
async fn info(State(core): State<Arc<Core>>, _: Backend) -> ApiResult {
    let body = NodeInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        connections: core.connections.load(Ordering::Relaxed) as u64,
        shards: core.router.shard_count() as u64,
        shutting_down: core.shutting_down.load(Ordering::Relaxed),
        multi_node: core.bus.is_some(),
        node_id: core.nodes.as_ref().map(|n| n.me().id.to_string()),
        node_lease_held: core.nodes.as_ref().map(|n| n.holds_lease()),
        live_nodes: core
            .nodes
            .as_ref()
            .map(|n| n.live().nodes)
            .unwrap_or_default()
            .into_iter()
            .map(|n| LiveNode {
                id: n.id.to_string(),
                incarnation: n.incarnation,
                tcp: n.tcp,
                http: n.http,
                quic: n.quic,
                version: n.version,
            })
            .collect(),
    };
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}
