//! The `MessageStore` seam: what the room routers need from durable storage.
//!
//! The embedded implementation (`embedded`, fjall) is the default; a ScyllaDB
//! implementation plugs in behind the same trait. Writes arrive as batches of
//! [`Mutation`]s that must be applied atomically and durably (per the fsync
//! policy) before the returned future resolves: only then do routers
//! acknowledge and fan out.

pub mod embedded;
mod keys;

use crate::ids::{RoomId, UserId};
use crate::proto::server::Message;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A member's role in a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMeta {
    pub id: RoomId,
    pub name: String,
    pub private: bool,
    pub created_by: UserId,
    pub created_at: u64,
}

/// One write; a batch of them is applied atomically.
#[derive(Clone, Debug, PartialEq)]
pub enum Mutation {
    CreateRoom(RoomMeta),
    SetMember {
        room: RoomId,
        user: UserId,
        role: Role,
    },
    AppendMessage(Message),
}

/// A sent message's idempotency record: `(sender, local_id)` → its seq and ts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalIdRecord {
    pub from: UserId,
    pub local_id: String,
    pub seq: u64,
    pub ts: u64,
}

/// What a router needs to take ownership of a room.
#[derive(Clone, Debug)]
pub struct LoadedRoom {
    pub meta: RoomMeta,
    /// Highest stored seq (0 for an empty room).
    pub last_seq: u64,
    pub members: Vec<(UserId, Role)>,
    /// `local_id` records of the newest messages, oldest first.
    pub recent_local_ids: Vec<LocalIdRecord>,
    /// Whether `recent_local_ids` covers every message of the room.
    pub recent_is_complete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("embedded store: {0}")]
    Embedded(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("store is shut down")]
    Closed,
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Applies the mutations atomically; resolves once they are durable per the
    /// configured policy. Implementations group concurrent calls into one commit.
    async fn apply(&self, batch: Vec<Mutation>) -> StoreResult<()>;

    /// Loads a room's metadata, last seq, members and the `local_id`s of its
    /// newest `recent` messages; `None` if the room does not exist.
    async fn load_room(&self, room: &RoomId, recent: usize) -> StoreResult<Option<LoadedRoom>>;

    /// Finds the message a user sent with `local_id` in a room: `(seq, ts)`.
    async fn find_local_id(
        &self,
        room: &RoomId,
        user: &UserId,
        local_id: &str,
    ) -> StoreResult<Option<(u64, u64)>>;

    /// Up to `limit` messages with `seq < before` (all if `None`), oldest first,
    /// and whether older ones exist.
    async fn history(
        &self,
        room: &RoomId,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<(Vec<Message>, bool)>;

    /// Makes everything applied so far durable (fsync), for shutdown.
    async fn flush(&self) -> StoreResult<()>;
}
