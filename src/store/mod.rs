//! The `MessageStore` seam: what the room routers need from durable storage.
//!
//! The embedded implementation (`embedded`, fjall) is the default; a ScyllaDB
//! implementation plugs in behind the same trait. Writes arrive as batches of
//! [`Mutation`]s that must be applied atomically and durably (per the fsync
//! policy) before the returned future resolves: only then do routers
//! acknowledge and fan out.
//!
//! A room's data: its metadata; members (role, read pointer, delivery mark);
//! bans; invites; the **event log** (every stream event by seq, stored as the
//! encoded push payload so resume replays bytes without re-encoding); the
//! **message table** (each message's latest state by its seq, for history);
//! `local_id`s for idempotency; and deletions (for exact unread counts).

pub mod embedded;
mod keys;
mod model;

pub use crate::proto::types::{Role, RoomKind};
pub use model::{
    unread, Invite, MemberState, MessageState, RoomMeta, RoomOverview, MAX_OWN_UNREAD,
};

use crate::ids::{RoomId, UserId};
use async_trait::async_trait;
use bytes::Bytes;

/// One write; a batch of them is applied atomically.
#[derive(Clone, Debug, PartialEq)]
pub enum Mutation {
    PutRoom(RoomMeta),
    /// Directory entry of a public room (key: lowercased name, then the id).
    PutPublic {
        name: String,
        room: RoomId,
    },
    DelPublic {
        name: String,
        room: RoomId,
    },
    /// Upserts a member (and the user's room index).
    PutMember {
        room: RoomId,
        user: UserId,
        state: MemberState,
    },
    DelMember {
        room: RoomId,
        user: UserId,
    },
    PutBan {
        room: RoomId,
        user: UserId,
    },
    DelBan {
        room: RoomId,
        user: UserId,
    },
    /// A stream event: the encoded push payload of `msg`/`edit`/`delete`/`reaction`.
    AppendEvent {
        room: RoomId,
        seq: u64,
        payload: Bytes,
    },
    /// Redaction: replaces the payload of a stored stream event (the original
    /// `msg` or an earlier `edit` of a message that was edited or deleted).
    /// Afterwards the old payload must not be readable through this trait; an
    /// LSM may keep the old bytes on disk until compaction.
    RewriteEvent {
        room: RoomId,
        seq: u64,
        payload: Bytes,
    },
    /// A message's latest state (on creation and after each edit, delete, reaction).
    PutMessage(Box<MessageState>),
    PutLocalId {
        room: RoomId,
        user: UserId,
        local_id: String,
        seq: u64,
        ts: u64,
    },
    PutDeletion {
        room: RoomId,
        seq: u64,
        sender: UserId,
    },
    PutInvite(Invite),
    PutFavorite {
        user: UserId,
        room: Option<RoomId>,
        peer: Option<UserId>,
        on: bool,
    },
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
    /// Highest stored event seq (0 for an empty room).
    pub last_seq: u64,
    /// Lowest stored event seq (0 for an empty room); events below it were removed by retention.
    pub first_seq: u64,
    pub members: Vec<(UserId, MemberState)>,
    pub bans: Vec<UserId>,
    pub invites: Vec<Invite>,
    /// Messages ever created in the room (the `n` of the newest message).
    pub msg_total: u64,
    pub last_msg_seq: u64,
    /// Deleted messages: (seq, sender).
    pub deletions: Vec<(u64, UserId)>,
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

    /// Loads what a router needs to own a room; `None` if it never existed. A deleted
    /// room loads with `meta.deleted` set (its id is never reused).
    async fn load_room(&self, room: &RoomId, recent: usize) -> StoreResult<Option<LoadedRoom>>;

    /// Finds the message a user sent with `local_id` in a room: `(seq, ts)`.
    async fn find_local_id(
        &self,
        room: &RoomId,
        user: &UserId,
        local_id: &str,
    ) -> StoreResult<Option<(u64, u64)>>;

    /// One message's latest state.
    async fn message(&self, room: &RoomId, seq: u64) -> StoreResult<Option<MessageState>>;

    /// Messages created at or before `seq` (the `n` of the newest such message).
    async fn msg_count_at(&self, room: &RoomId, seq: u64) -> StoreResult<u64>;

    /// Up to `limit` messages with `seq < before` (all if `None`), oldest first, in their
    /// latest state, and whether older ones exist.
    async fn history(
        &self,
        room: &RoomId,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<(Vec<MessageState>, bool)>;

    /// Encoded stream events with `after < seq <= upto`, ascending, at most `limit`.
    async fn events(
        &self,
        room: &RoomId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Bytes)>>;

    /// Everything `rooms {}` shows for a user, one entry per room they are a member of.
    async fn user_rooms(&self, user: &UserId) -> StoreResult<Vec<RoomOverview>>;

    /// The ids of the rooms a user is a member of (cheap: keys only).
    async fn member_rooms(&self, user: &UserId) -> StoreResult<Vec<RoomId>>;

    /// Public rooms whose lowercased name starts with `prefix`, after the cursor.
    async fn public_rooms(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Vec<RoomMeta>, Option<String>)>;

    /// A user's favorite rooms and people.
    async fn favorites(&self, user: &UserId) -> StoreResult<(Vec<RoomId>, Vec<UserId>)>;

    /// Makes everything applied so far durable (fsync), for shutdown.
    async fn flush(&self) -> StoreResult<()>;

    /// Readiness probe (`GET /ready`): a real read through the store. Stores
    /// with a background writer also check that it is running.
    async fn ping(&self) -> StoreResult<()> {
        let probe = RoomId::new("ready-probe").map_err(StoreError::Embedded)?;
        self.message(&probe, 0).await.map(|_| ())
    }
}
