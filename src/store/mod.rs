//! The `MessageStore` seam: what the room routers need from durable storage.
//!
//! Two implementations: `embedded` (fjall, the default, one process) and
//! `scylla` (ScyllaDB, shared by every node). Both honour the same contract,
//! written for a database shared by several writers (`docs/STORAGE.md`):
//!
//! - **Per-room, ordered commits.** [`MessageStore::apply`] takes mutations of
//!   one or more rooms. Within a room they are applied in order; there is no
//!   atomicity across rooms or tables. A caller submits a room's batches one
//!   after another and acknowledges only what resolved `Ok`.
//! - **The event row is the commit point.** A stream event (`AppendEvent`,
//!   one seq) is written after every row derived from it (message state,
//!   reactions, read pointers, `local_id`, indexes). Derived rows have
//!   deterministic keys and, where cells can race, versions derived from the
//!   seq ([`Mutation::EditMessage::at`], [`Mutation::React::at`], a read
//!   pointer's own seq), so a replayed or retried batch converges to the same
//!   state, and two writers converge whatever order their writes land in.
//! - **Burnt seqs.** A seq, once handed out, is never reused, also after a
//!   failed or timed-out write (on ScyllaDB a timed-out write can still land).
//!   A seq without an event row is a gap: `events` and `history` skip it.
//! - **Cell-level updates.** Reactions, read pointers, delivery marks, own
//!   unread messages and member roles change cell by cell, never by rewriting
//!   a whole message or member row.
//! - **Paged reads.** Every read that can grow takes a [`PageReq`] and returns
//!   a [`Page`] with an opaque [`Cursor`]; a cursor that this store did not
//!   make is [`StoreError::BadCursor`] (the wire's `bad_request`). History and
//!   the event log are paged by seq.
//! - **Typed errors.** [`StoreError::Unavailable`] (nothing done; retry after
//!   the hint) and [`StoreError::Timeout`] (outcome unknown: the write may
//!   still land) both become the wire's `unavailable` with `retry_after_ms`;
//!   an implementation retries idempotent writes itself within the deadline
//!   before giving up, and resolves `Ok` only once the write is committed at
//!   the configured consistency (embedded: durable per the fsync policy).
//! - **Deadlines.** Every call is bounded ([`deadline::Deadlined`] wraps any
//!   store with the configured request timeout).
//!
//! A room's data: its metadata; members (role, joined) and their read state
//! (read pointer, delivery mark, own unread messages); bans; invites; the
//! **event log** (every stream event by seq, stored as the encoded push payload
//! so resume replays bytes without re-encoding); the **message state** (each
//! message's latest state by its seq, for history); `local_id`s for
//! idempotency; and deletions (for exact unread counts).

pub mod deadline;
pub mod delayed;
pub mod embedded;
pub(crate) mod keys;
mod model;
pub mod scylla;

pub use crate::proto::types::{Role, RoomKind};
pub use model::{
    unread, Invite, MemberState, MessageState, RoomMeta, RoomOverview, MAX_OWN_UNREAD,
};

use crate::ids::{RoomId, UserId};
use crate::proto::{ErrorCode, WireError};
use async_trait::async_trait;
use bytes::Bytes;

/// One write. Each is idempotent: applying it twice leaves the same state.
#[derive(Clone, Debug, PartialEq)]
pub enum Mutation {
    /// The room's metadata row (creation, update, deletion, member count).
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
    /// Adds a member (and the user's room index) with a role; read state is separate.
    PutMember {
        room: RoomId,
        user: UserId,
        role: Role,
        joined_at: u64,
    },
    /// Changes one member's role (one cell).
    SetRole {
        room: RoomId,
        user: UserId,
        role: Role,
    },
    /// Removes a member and the user's room index entry.
    DelMember {
        room: RoomId,
        user: UserId,
    },
    /// Moves a read pointer forward (never back: the higher `read_seq` wins),
    /// dropping own unread messages at or below it.
    SetRead {
        room: RoomId,
        user: UserId,
        read_seq: u64,
        read_n: u64,
    },
    /// Moves a delivery mark forward (the higher seq wins).
    SetDelivered {
        room: RoomId,
        user: UserId,
        seq: u64,
    },
    /// One of the member's own messages after their read pointer.
    AddOwnUnread {
        room: RoomId,
        user: UserId,
        seq: u64,
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
    /// The commit point of its seq: written after the rows derived from it.
    AppendEvent {
        room: RoomId,
        seq: u64,
        payload: Bytes,
    },
    /// Redaction: replaces the payload of a stored stream event (the original
    /// `msg` or an earlier `edit` of a message that was edited or deleted), by
    /// the edit or delete at seq `at` (the highest `at` wins). Afterwards the
    /// old payload must not be readable through this trait; an LSM may keep the
    /// old bytes on disk until compaction.
    RewriteEvent {
        room: RoomId,
        seq: u64,
        payload: Bytes,
        at: u64,
    },
    /// A new message, at its own seq.
    PutMessage(Box<MessageState>),
    /// An edit of message `seq` by the event at seq `at` (the highest `at` wins).
    EditMessage {
        room: RoomId,
        seq: u64,
        body: String,
        edited_at: u64,
        at: u64,
    },
    /// Deletes message `seq` (by the event at seq `at`): clears body,
    /// attachments and reactions, and records the deletion.
    DeleteMessage {
        room: RoomId,
        seq: u64,
        sender: UserId,
        at: u64,
    },
    /// Adds or removes one user's reaction on message `seq` (by the event at seq `at`).
    React {
        room: RoomId,
        seq: u64,
        emoji: String,
        user: UserId,
        on: bool,
        at: u64,
    },
    PutLocalId {
        room: RoomId,
        user: UserId,
        local_id: String,
        seq: u64,
        ts: u64,
    },
    PutInvite(Invite),
    PutFavorite {
        user: UserId,
        room: Option<RoomId>,
        peer: Option<UserId>,
        on: bool,
    },
}

impl Mutation {
    /// The room whose commit this mutation belongs to (`None`: a user's row).
    pub fn room(&self) -> Option<&RoomId> {
        use Mutation::*;
        match self {
            PutRoom(m) => Some(&m.id),
            PutMessage(m) => Some(&m.room),
            PutInvite(i) => Some(&i.room),
            PutPublic { room, .. }
            | DelPublic { room, .. }
            | PutMember { room, .. }
            | SetRole { room, .. }
            | DelMember { room, .. }
            | SetRead { room, .. }
            | SetDelivered { room, .. }
            | AddOwnUnread { room, .. }
            | PutBan { room, .. }
            | DelBan { room, .. }
            | AppendEvent { room, .. }
            | RewriteEvent { room, .. }
            | EditMessage { room, .. }
            | DeleteMessage { room, .. }
            | React { room, .. }
            | PutLocalId { room, .. } => Some(room),
            PutFavorite { .. } => None,
        }
    }
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

/// Which messages of a room a `history` read returns (always oldest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HistoryRange {
    /// The newest messages.
    Newest,
    /// The newest messages with `seq < before` (paging back).
    Before(u64),
    /// The oldest messages with `seq > after` (paging forward).
    After(u64),
}

/// An opaque position in a paged read. Only the store that made it reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor(pub String);

/// Which page of a growing read: after `after` (from the start if `None`), at most `limit`.
#[derive(Clone, Debug, Default)]
pub struct PageReq {
    pub after: Option<Cursor>,
    pub limit: usize,
}

impl PageReq {
    pub fn first(limit: usize) -> Self {
        Self { after: None, limit }
    }
}

/// One page; `next` is set when more may follow.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

/// Page size the server uses when it reads a whole list page by page.
pub const LIST_PAGE: usize = 256;

/// Cursors carry a version, the store kind and the read they belong to, so a
/// cursor from another store, another read or a client's imagination is refused.
/// On the wire a cursor is opaque hex (`proto-spec`: `public_rooms.after`).
pub(crate) fn make_cursor(store: &str, read: &str, pos: &[u8]) -> Cursor {
    let mut raw = format!("c1.{store}.{read}.").into_bytes();
    raw.extend_from_slice(pos);
    Cursor(hex::encode(raw))
}

pub(crate) fn open_cursor(c: &Cursor, store: &str, read: &str) -> StoreResult<Vec<u8>> {
    let tag = format!("c1.{store}.{read}.");
    match hex::decode(&c.0) {
        Ok(raw) if raw.starts_with(tag.as_bytes()) => Ok(raw[tag.len()..].to_vec()),
        _ => Err(StoreError::BadCursor(
            "after: not a cursor of this list (use the `next` of the previous page)".into(),
        )),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or is overloaded; nothing was done.
    #[error("store unavailable: {why}")]
    Unavailable { why: String, retry_after_ms: u64 },
    /// The call ran past its deadline; a write may or may not land later.
    #[error("store call timed out: {0}")]
    Timeout(String),
    /// A cursor this store did not make.
    #[error("{0}")]
    BadCursor(String),
    /// Any other backend failure (fjall I/O, a CQL error that retrying will not fix).
    #[error("store backend: {0}")]
    Backend(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("store is shut down")]
    Closed,
}

/// Retry hint for a timed-out call.
pub const TIMEOUT_RETRY_MS: u64 = 1000;

impl StoreError {
    /// The one place a store failure becomes a wire error.
    pub fn to_wire(&self, what: &str) -> WireError {
        match self {
            StoreError::Unavailable { retry_after_ms, .. } => WireError::new(
                ErrorCode::Unavailable,
                format!("the message store is unavailable; {what} was not done, retry"),
            )
            .with_retry(*retry_after_ms),
            StoreError::Timeout(_) => WireError::new(
                ErrorCode::Unavailable,
                format!("the message store did not answer in time; retry {what} (sends with the same local_id)"),
            )
            .with_retry(TIMEOUT_RETRY_MS),
            StoreError::BadCursor(m) => WireError::bad_request(m.clone()),
            StoreError::Backend(_) | StoreError::Corrupt(_) | StoreError::Closed => {
                WireError::new(ErrorCode::Internal, format!("{what} failed in the store; retry"))
            }
        }
    }

    /// Whether the outcome of a write is unknown (it may still land).
    pub fn outcome_unknown(&self) -> bool {
        !matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::BadCursor(_)
        )
    }
}

impl Clone for StoreError {
    fn clone(&self) -> Self {
        match self {
            StoreError::Unavailable {
                why,
                retry_after_ms,
            } => StoreError::Unavailable {
                why: why.clone(),
                retry_after_ms: *retry_after_ms,
            },
            StoreError::Timeout(s) => StoreError::Timeout(s.clone()),
            StoreError::BadCursor(s) => StoreError::BadCursor(s.clone()),
            StoreError::Backend(s) => StoreError::Backend(s.clone()),
            StoreError::Corrupt(s) => StoreError::Corrupt(s.clone()),
            StoreError::Closed => StoreError::Closed,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Applies the mutations: per room in order, derived rows before each event
    /// row (the commit point). Resolves `Ok` once all are committed (embedded:
    /// durable per the fsync policy; ScyllaDB: at the configured consistency).
    /// On `Err` some may have landed: every mutation is idempotent, so the
    /// caller may apply the same batch again, and never reuses its seqs.
    async fn apply(&self, batch: Vec<Mutation>) -> StoreResult<()>;

    /// Loads what a router needs to own a room; `None` if it never existed. A deleted
    /// room loads with `meta.deleted` set (its id is never reused).
    async fn load_room(&self, room: &RoomId, recent: usize) -> StoreResult<Option<LoadedRoom>>;

    /// Finds the message a user sent with `local_id` in a room: `(seq, ts)`, only if
    /// its event row (the commit point) exists.
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

    /// Up to `limit` messages of `range`, oldest first, in their latest state,
    /// and whether more exist past the page in the direction of the read:
    /// older ones before the first (`Newest`, `Before`), newer ones after the
    /// last (`After`). Paged by seq: the next page back is `Before(first seq
    /// of this page)`, the next page forward `After(last seq of this page)`.
    async fn history(
        &self,
        room: &RoomId,
        range: HistoryRange,
        limit: usize,
    ) -> StoreResult<(Vec<MessageState>, bool)>;

    /// Encoded stream events with `after < seq <= upto`, ascending, at most `limit`
    /// (gaps skipped). Paged by seq: the next page is `after = last seq returned`.
    async fn events(
        &self,
        room: &RoomId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Bytes)>>;

    /// Everything `rooms {}` shows for a user, one entry per room they are a member of.
    async fn user_rooms(&self, user: &UserId, page: PageReq) -> StoreResult<Page<RoomOverview>>;

    /// The ids of the rooms a user is a member of (cheap: keys only).
    async fn member_rooms(&self, user: &UserId, page: PageReq) -> StoreResult<Page<RoomId>>;

    /// Public rooms of `tenant` (`None`: rooms of no tenant) whose lowercased
    /// name starts with `prefix`, in name order. Reads only that tenant's
    /// part of the directory: a page costs the same however many public
    /// rooms other tenants have. A cursor is refused on another tenant's list.
    async fn public_rooms(
        &self,
        tenant: Option<&str>,
        prefix: &str,
        page: PageReq,
    ) -> StoreResult<Page<RoomMeta>>;

    /// A user's favorite rooms and people.
    async fn favorites(&self, user: &UserId) -> StoreResult<(Vec<RoomId>, Vec<UserId>)>;

    /// Makes everything applied so far durable (fsync), for shutdown.
    async fn flush(&self) -> StoreResult<()>;

    /// Readiness probe (`GET /ready`): a real read through the store. Stores
    /// with a background writer also check that it is running.
    async fn ping(&self) -> StoreResult<()> {
        let probe = RoomId::new("ready-probe").map_err(StoreError::Backend)?;
        self.message(&probe, 0).await.map(|_| ())
    }
}

/// Reads every page of a paged list (for callers that need the whole list, bounded by `max`).
pub async fn read_all<T, F, Fut>(max: usize, mut page: F) -> StoreResult<Vec<T>>
where
    F: FnMut(PageReq) -> Fut,
    Fut: std::future::Future<Output = StoreResult<Page<T>>>,
{
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let p = page(PageReq {
            after,
            limit: LIST_PAGE.min(max.saturating_sub(out.len()).max(1)),
        })
        .await?;
        out.extend(p.items);
        match p.next {
            Some(c) if out.len() < max => after = Some(c),
            _ => return Ok(out),
        }
    }
}
