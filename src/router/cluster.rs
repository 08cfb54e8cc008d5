//! The seam between the room routers and other nodes: seq allocation shared
//! by every node, publication of committed events, and per-room subscriptions.
//! Implemented over Redis in `crate::redis::bus`; absent on a single node.

use crate::ids::{RoomId, UserId};
use async_trait::async_trait;
use bytes::Bytes;

#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// Allocates the next seq of `room`, strictly above every seq allocated by any
    /// node and above `floor` (the highest this node knows).
    async fn alloc_seq(&self, room: &RoomId, floor: u64) -> Result<u64, String>;

    /// The highest seq allocated for `room` by any node (0 if none).
    async fn current_seq(&self, room: &RoomId) -> Result<u64, String>;

    /// Publishes committed stream events, `[seq u64 BE][frame]…` in seq order.
    /// Never waits; delivery is retried in order while Redis is away.
    fn publish_events(&self, room: &RoomId, events: Bytes);

    /// Publishes ephemeral pushes (typing, read pointers, membership changes).
    fn publish_ephemeral(&self, room: &RoomId, frames: Bytes);

    /// Starts receiving a room's traffic from other nodes; resolves once active.
    async fn subscribe(&self, room: &RoomId) -> Result<(), String>;

    /// Stops receiving a room's traffic (batched, never waits).
    fn unsubscribe(&self, room: &RoomId);

    /// Hands new messages to the offline-notification sink (members not online
    /// anywhere get a `message.created` event).
    fn notify_offline(&self, room: &RoomId, members: Vec<UserId>, messages: Vec<Notice>);
}

/// What a push-notification service needs about a new message.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Notice {
    pub seq: u64,
    pub from: UserId,
    pub ts: u64,
    /// The first 200 characters of the body.
    pub preview: String,
    pub kind: crate::proto::types::MessageKind,
}
