//! The ScyllaDB store: the same [`MessageStore`] contract on a database shared
//! by every node (`docs/STORAGE.md`).
//!
//! - `schema.rs`: versioned CQL schema, applied at startup and by `roomcast migrate`.
//! - this file: connecting, prepared statements, the write path (`apply`).
//! - `read.rs`: the read paths (room load, history, events, lists).
//!
//! Writes: a batch is split per room; each room's mutations become CQL
//! statements grouped per partition. Rows derived from an event go first
//! (concurrently, one unlogged batch per partition), then each event's
//! partition in one unlogged batch (the event row and the derived rows that
//! share its partition, atomically). Every statement is idempotent and marked
//! so; seq-ordered cells carry `USING TIMESTAMP` derived from the seq, so a
//! replay converges. Retriable failures are retried here within the deadline.

mod read;
pub mod schema;

use super::{
    HistoryRange, LoadedRoom, MessageState, MessageStore, Mutation, Page, PageReq, RoomMeta,
    RoomOverview, StoreError, StoreResult,
};
use crate::config::{Config, CqlConsistency};
use crate::ids::{RoomId, UserId};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::frame::types::Consistency;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Everything the ScyllaDB store needs from the server config.
#[derive(Clone, Debug)]
pub struct ScyllaConfig {
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub replication: String,
    pub consistency: CqlConsistency,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls_ca: Option<std::path::PathBuf>,
    pub request_timeout: Duration,
    pub max_inflight: usize,
}

impl ScyllaConfig {
    pub fn from_config(c: &Config) -> anyhow::Result<Self> {
        let nodes: Vec<String> = c
            .scylla_nodes
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        anyhow::ensure!(
            !nodes.is_empty(),
            "scylla_nodes: give at least one host:port"
        );
        anyhow::ensure!(
            !c.scylla_keyspace.is_empty()
                && c.scylla_keyspace.len() <= 48
                && c.scylla_keyspace
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
            "scylla_keyspace: lowercase letters, digits and _ only (at most 48)"
        );
        schema::replication(&c.scylla_replication).map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(
            c.scylla_username.is_some() == c.scylla_password.is_some(),
            "scylla_username and scylla_password go together"
        );
        Ok(Self {
            nodes,
            keyspace: c.scylla_keyspace.clone(),
            replication: c.scylla_replication.clone(),
            consistency: c.scylla_consistency,
            username: c.scylla_username.clone(),
            password: c.scylla_password.clone(),
            tls_ca: c.scylla_tls_ca.clone(),
            request_timeout: c.store_timeout(),
            max_inflight: c.scylla_max_inflight,
        })
    }
}

fn consistency(c: CqlConsistency) -> Consistency {
    match c {
        CqlConsistency::One => Consistency::One,
        CqlConsistency::Quorum => Consistency::Quorum,
        CqlConsistency::LocalQuorum => Consistency::LocalQuorum,
        CqlConsistency::All => Consistency::All,
        CqlConsistency::LocalOne => Consistency::LocalOne,
        CqlConsistency::EachQuorum => Consistency::EachQuorum,
    }
}

/// Counters of the store, for the `/metrics` endpoint.
#[derive(Default, Debug)]
pub struct StoreMetrics {
    pub commits: AtomicU64,
    pub commit_micros: AtomicU64,
    pub statements: AtomicU64,
    pub batches: AtomicU64,
    pub retries: AtomicU64,
    pub errors_unavailable: AtomicU64,
    pub errors_timeout: AtomicU64,
    pub errors_other: AtomicU64,
    pub history_coalesced: AtomicU64,
}

/// Maps a driver error to the store's error kinds.
pub(crate) fn cql_err(e: impl Into<CqlFailure>) -> StoreError {
    e.into().0
}

pub(crate) struct CqlFailure(StoreError);

const RETRY_MS: u64 = 500;

impl From<ExecutionError> for CqlFailure {
    fn from(e: ExecutionError) -> Self {
        let unavailable = |why: String| StoreError::Unavailable {
            why,
            retry_after_ms: RETRY_MS,
        };
        CqlFailure(match &e {
            ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, msg)) => match db {
                DbError::WriteTimeout { .. } => {
                    StoreError::Timeout(format!("write timeout: {msg}"))
                }
                DbError::Unavailable { .. }
                | DbError::Overloaded
                | DbError::IsBootstrapping
                | DbError::ReadTimeout { .. }
                | DbError::RateLimitReached { .. } => unavailable(format!("{db:?}: {msg}")),
                _ => StoreError::Backend(e.to_string()),
            },
            ExecutionError::LastAttemptError(RequestAttemptError::BrokenConnectionError(_)) => {
                StoreError::Timeout(e.to_string())
            }
            ExecutionError::RequestTimeout(_) => StoreError::Timeout(e.to_string()),
            ExecutionError::ConnectionPoolError(_) | ExecutionError::EmptyPlan => {
                unavailable(e.to_string())
            }
            _ => StoreError::Backend(e.to_string()),
        })
    }
}

// Paged reads: a failed request keeps its kind (a read timeout or an
// overloaded node is `unavailable`, not an internal error).
impl From<scylla::errors::PagerExecutionError> for CqlFailure {
    fn from(e: scylla::errors::PagerExecutionError) -> Self {
        use scylla::errors::{NextPageError, PagerExecutionError};
        match e {
            PagerExecutionError::NextPageError(NextPageError::RequestFailure(r)) => {
                r.into_execution_error().into()
            }
            e => CqlFailure(StoreError::Backend(e.to_string())),
        }
    }
}

impl From<scylla::errors::NextRowError> for CqlFailure {
    fn from(e: scylla::errors::NextRowError) -> Self {
        use scylla::errors::{NextPageError, NextRowError};
        match e {
            NextRowError::NextPageError(NextPageError::RequestFailure(r)) => {
                r.into_execution_error().into()
            }
            e => CqlFailure(StoreError::Backend(e.to_string())),
        }
    }
}

macro_rules! into_failure {
    ($($t:ty),*) => {$(
        impl From<$t> for CqlFailure {
            fn from(e: $t) -> Self {
                CqlFailure(StoreError::Backend(e.to_string()))
            }
        }
    )*};
}
into_failure!(
    scylla::errors::IntoRowsResultError,
    scylla::errors::RowsError,
    scylla::errors::DeserializationError,
    scylla::errors::PrepareError,
    scylla::errors::NewSessionError,
    scylla::errors::UseKeyspaceError,
    scylla::deserialize::TypeCheckError
);

/// The CQL of a stream event's commit point: the event row of `stream`.
/// Public so the fault-injection tests (tests/scylla_faults.rs) can prepare
/// the same text, learn its prepared-statement id (the server derives it from
/// the text) and fault exactly these writes on the wire.
#[doc(hidden)]
pub fn commit_point_cql(ks: &str) -> String {
    format!("UPDATE {ks}.stream USING TIMESTAMP ? SET event = ? WHERE room = ? AND bucket = ? AND seq = ?")
}

/// The prepared statements, one per query shape.
pub(crate) struct Stmts {
    put_room: PreparedStatement,
    get_room: PreparedStatement,
    put_dir: PreparedStatement,
    put_dir_head: PreparedStatement,
    del_dir: PreparedStatement,
    dir_page: PreparedStatement,
    dir_page_after: PreparedStatement,
    dir_heads: PreparedStatement,
    tenant_dir_heads: PreparedStatement,
    put_member: PreparedStatement,
    set_role: PreparedStatement,
    del_member: PreparedStatement,
    put_user_room: PreparedStatement,
    del_user_room: PreparedStatement,
    set_read: PreparedStatement,
    clear_own: PreparedStatement,
    set_delivered: PreparedStatement,
    add_own: PreparedStatement,
    put_ban: PreparedStatement,
    del_ban: PreparedStatement,
    put_bucket: PreparedStatement,
    put_event: PreparedStatement,
    put_message: PreparedStatement,
    edit_message: PreparedStatement,
    delete_message: PreparedStatement,
    clear_reactions: PreparedStatement,
    react_on: PreparedStatement,
    react_off: PreparedStatement,
    put_deletion: PreparedStatement,
    put_local_id: PreparedStatement,
    get_local_id: PreparedStatement,
    put_invite: PreparedStatement,
    put_favorite: PreparedStatement,
    del_favorite: PreparedStatement,
    get_favorites: PreparedStatement,
    has_favorite: PreparedStatement,
    members_of: PreparedStatement,
    member_of: PreparedStatement,
    reads_of: PreparedStatement,
    read_of: PreparedStatement,
    bans_of: PreparedStatement,
    invites_of: PreparedStatement,
    deletions_of: PreparedStatement,
    deletions_after: PreparedStatement,
    buckets_desc_upto: PreparedStatement,
    buckets_asc_from: PreparedStatement,
    stream_row: PreparedStatement,
    event_at: PreparedStatement,
    events_desc: PreparedStatement,
    stream_desc_below: PreparedStatement,
    stream_asc_above: PreparedStatement,
    stream_range_asc: PreparedStatement,
    user_rooms_first: PreparedStatement,
    user_rooms_after: PreparedStatement,
}

impl Stmts {
    async fn prepare(s: &Session, ks: &str) -> StoreResult<Self> {
        let p = |q: String, idempotent: bool| async move {
            let mut st = s.prepare(q).await.map_err(cql_err)?;
            st.set_is_idempotent(idempotent);
            Ok::<_, StoreError>(st)
        };
        let msg_cols = "seq, n, msg, body, attachments, edited_at, deleted, reactions, edits";
        Ok(Self {
            put_room: p(format!("INSERT INTO {ks}.rooms (room, meta) VALUES (?, ?)"), true).await?,
            get_room: p(format!("SELECT meta FROM {ks}.rooms WHERE room = ?"), true).await?,
            put_dir: p(format!("INSERT INTO {ks}.directory (head, name, room) VALUES (?, ?, ?)"), true).await?,
            put_dir_head: p(format!("INSERT INTO {ks}.directory_heads (k, head) VALUES (?, ?)"), true).await?,
            del_dir: p(format!("DELETE FROM {ks}.directory WHERE head = ? AND name = ? AND room = ?"), true).await?,
            dir_page: p(format!("SELECT name, room FROM {ks}.directory WHERE head = ? AND name >= ? LIMIT ?"), true).await?,
            dir_page_after: p(format!("SELECT name, room FROM {ks}.directory WHERE head = ? AND (name, room) > (?, ?) LIMIT ?"), true).await?,
            dir_heads: p(format!("SELECT head FROM {ks}.directory_heads WHERE k = 0 AND head >= ?"), true).await?,
            tenant_dir_heads: p(format!("SELECT head FROM {ks}.directory_heads WHERE k = 1 AND head >= ? AND head < ?"), true).await?,
            put_member: p(format!("INSERT INTO {ks}.members (room, user, role, joined_at) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"), true).await?,
            set_role: p(format!("UPDATE {ks}.members SET role = ? WHERE room = ? AND user = ?"), true).await?,
            del_member: p(format!("DELETE FROM {ks}.members WHERE room = ? AND user = ?"), true).await?,
            put_user_room: p(format!("INSERT INTO {ks}.rooms_by_user (user, room) VALUES (?, ?) USING TIMESTAMP ?"), true).await?,
            del_user_room: p(format!("DELETE FROM {ks}.rooms_by_user WHERE user = ? AND room = ?"), true).await?,
            set_read: p(format!("UPDATE {ks}.read_state USING TIMESTAMP ? SET read_seq = ?, read_n = ? WHERE room = ? AND user = ?"), true).await?,
            clear_own: p(format!("UPDATE {ks}.read_state USING TIMESTAMP ? SET own_unread = {{}} WHERE room = ? AND user = ?"), true).await?,
            set_delivered: p(format!("UPDATE {ks}.read_state USING TIMESTAMP ? SET delivered_seq = ? WHERE room = ? AND user = ?"), true).await?,
            add_own: p(format!("UPDATE {ks}.read_state USING TIMESTAMP ? SET own_unread = own_unread + ? WHERE room = ? AND user = ?"), true).await?,
            put_ban: p(format!("INSERT INTO {ks}.bans (room, user) VALUES (?, ?)"), true).await?,
            del_ban: p(format!("DELETE FROM {ks}.bans WHERE room = ? AND user = ?"), true).await?,
            put_bucket: p(format!("INSERT INTO {ks}.buckets (room, bucket) VALUES (?, ?)"), true).await?,
            put_event: p(commit_point_cql(ks), true).await?,
            put_message: p(format!("UPDATE {ks}.stream USING TIMESTAMP ? SET n = ?, msg = ?, body = ?, attachments = ?, deleted = false WHERE room = ? AND bucket = ? AND seq = ?"), true).await?,
            edit_message: p(format!("UPDATE {ks}.stream USING TIMESTAMP ? SET body = ?, edited_at = ?, edits[?] = ? WHERE room = ? AND bucket = ? AND seq = ?"), true).await?,
            delete_message: p(format!("UPDATE {ks}.stream USING TIMESTAMP ? SET body = '', attachments = null, deleted = true WHERE room = ? AND bucket = ? AND seq = ?"), true).await?,
            clear_reactions: p(format!("DELETE reactions FROM {ks}.stream USING TIMESTAMP ? WHERE room = ? AND bucket = ? AND seq = ?"), true).await?,
            react_on: p(format!("UPDATE {ks}.stream USING TIMESTAMP ? SET reactions[?] = ? WHERE room = ? AND bucket = ? AND seq = ?"), true).await?,
            react_off: p(format!("DELETE reactions[?] FROM {ks}.stream USING TIMESTAMP ? WHERE room = ? AND bucket = ? AND seq = ?"), true).await?,
            put_deletion: p(format!("INSERT INTO {ks}.deletions (room, seq, sender) VALUES (?, ?, ?)"), true).await?,
            put_local_id: p(format!("INSERT INTO {ks}.local_ids (room, user, local_id, seq, ts) VALUES (?, ?, ?, ?, ?)"), true).await?,
            get_local_id: p(format!("SELECT seq, ts FROM {ks}.local_ids WHERE room = ? AND user = ? AND local_id = ?"), true).await?,
            put_invite: p(format!("INSERT INTO {ks}.invites (room, code, invite) VALUES (?, ?, ?)"), true).await?,
            put_favorite: p(format!("INSERT INTO {ks}.favorites (user, kind, target) VALUES (?, ?, ?)"), true).await?,
            del_favorite: p(format!("DELETE FROM {ks}.favorites WHERE user = ? AND kind = ? AND target = ?"), true).await?,
            get_favorites: p(format!("SELECT kind, target FROM {ks}.favorites WHERE user = ?"), true).await?,
            has_favorite: p(format!("SELECT target FROM {ks}.favorites WHERE user = ? AND kind = 'r' AND target = ?"), true).await?,
            members_of: p(format!("SELECT user, role, joined_at FROM {ks}.members WHERE room = ?"), true).await?,
            member_of: p(format!("SELECT role, joined_at FROM {ks}.members WHERE room = ? AND user = ?"), true).await?,
            reads_of: p(format!("SELECT user, read_seq, read_n, delivered_seq, own_unread FROM {ks}.read_state WHERE room = ?"), true).await?,
            read_of: p(format!("SELECT read_seq, read_n, delivered_seq, own_unread FROM {ks}.read_state WHERE room = ? AND user = ?"), true).await?,
            bans_of: p(format!("SELECT user FROM {ks}.bans WHERE room = ?"), true).await?,
            invites_of: p(format!("SELECT invite FROM {ks}.invites WHERE room = ?"), true).await?,
            deletions_of: p(format!("SELECT seq, sender FROM {ks}.deletions WHERE room = ?"), true).await?,
            deletions_after: p(format!("SELECT sender FROM {ks}.deletions WHERE room = ? AND seq > ?"), true).await?,
            buckets_desc_upto: p(format!("SELECT bucket FROM {ks}.buckets WHERE room = ? AND bucket <= ? ORDER BY bucket DESC"), true).await?,
            buckets_asc_from: p(format!("SELECT bucket FROM {ks}.buckets WHERE room = ? AND bucket >= ? AND bucket <= ? ORDER BY bucket ASC"), true).await?,
            event_at: p(format!("SELECT event FROM {ks}.stream WHERE room = ? AND bucket = ? AND seq = ?"), true).await?,
            events_desc: p(format!("SELECT seq, event FROM {ks}.stream WHERE room = ? AND bucket = ? ORDER BY seq DESC"), true).await?,
            stream_row: p(format!("SELECT {msg_cols} FROM {ks}.stream WHERE room = ? AND bucket = ? AND seq = ?"), true).await?,
            stream_desc_below: p(format!("SELECT {msg_cols} FROM {ks}.stream WHERE room = ? AND bucket = ? AND seq < ? ORDER BY seq DESC"), true).await?,
            stream_asc_above: p(format!("SELECT {msg_cols} FROM {ks}.stream WHERE room = ? AND bucket = ? AND seq > ? ORDER BY seq ASC"), true).await?,
            stream_range_asc: p(format!("SELECT seq, event FROM {ks}.stream WHERE room = ? AND bucket = ? AND seq > ? AND seq <= ? ORDER BY seq ASC LIMIT ?"), true).await?,
            user_rooms_first: p(format!("SELECT room FROM {ks}.rooms_by_user WHERE user = ? LIMIT ?"), true).await?,
            user_rooms_after: p(format!("SELECT room FROM {ks}.rooms_by_user WHERE user = ? AND room > ? LIMIT ?"), true).await?,
        })
    }
}

type HistoryKey = (RoomId, HistoryRange, usize);
type HistoryResult = StoreResult<Arc<(Vec<MessageState>, bool)>>;
type SharedHistory = Shared<BoxFuture<'static, HistoryResult>>;

pub struct ScyllaStore {
    pub(crate) session: Arc<Session>,
    pub(crate) st: Arc<Stmts>,
    /// Caps this node's requests in flight (`--scylla-max-inflight`).
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) deadline: Duration,
    pub metrics: Arc<StoreMetrics>,
    /// Identical history reads in flight, shared by every caller.
    history_inflight: Arc<Mutex<HashMap<HistoryKey, SharedHistory>>>,
}

/// A statement with its bound values, for a partition's batch.
struct Stmt {
    ps: PreparedStatement,
    values: Vec<CqlValue>,
}

/// The few CQL value types the write path binds.
#[derive(Clone, Debug)]
enum CqlValue {
    Text(String),
    Int(i32),
    Big(i64),
    Blob(Vec<u8>),
    Set(Vec<i64>),
}

impl scylla::serialize::value::SerializeValue for CqlValue {
    fn serialize<'b>(
        &self,
        typ: &scylla::cluster::metadata::ColumnType,
        writer: scylla::serialize::writers::CellWriter<'b>,
    ) -> Result<
        scylla::serialize::writers::WrittenCellProof<'b>,
        scylla::serialize::SerializationError,
    > {
        match self {
            CqlValue::Text(s) => s.serialize(typ, writer),
            CqlValue::Int(n) => n.serialize(typ, writer),
            CqlValue::Big(n) => n.serialize(typ, writer),
            CqlValue::Blob(b) => b.serialize(typ, writer),
            CqlValue::Set(v) => v.serialize(typ, writer),
        }
    }
}

fn t(s: &str) -> CqlValue {
    CqlValue::Text(s.to_string())
}
fn b(n: u64) -> CqlValue {
    CqlValue::Big(n as i64)
}
/// A seq as a cell timestamp: seq-ordered cells converge to the highest seq.
fn ts(seq: u64) -> CqlValue {
    CqlValue::Big(seq as i64)
}
pub(crate) fn bucket(seq: u64) -> i64 {
    (seq / schema::BUCKET_SEQS) as i64
}
pub(crate) fn role_str(r: crate::store::Role) -> &'static str {
    use crate::store::Role;
    match r {
        Role::Owner => "owner",
        Role::Admin => "admin",
        Role::Member => "member",
    }
}

/// Partition of a statement: (table, key), so statements of one partition batch together.
type PartKey = (&'static str, String);

/// One room's mutations as CQL, in two phases: derived rows, then event partitions.
#[derive(Default)]
struct Plan {
    derived: Vec<(PartKey, Stmt)>,
    events: Vec<(PartKey, Stmt)>,
}

impl ScyllaStore {
    /// Connects, applies the schema (idempotent) and prepares every statement.
    pub async fn connect(cfg: &ScyllaConfig) -> anyhow::Result<Self> {
        let session = Self::session(cfg).await?;
        let v = schema::migrate(&session, cfg).await?;
        tracing::info!(keyspace = %cfg.keyspace, schema = v, nodes = ?cfg.nodes, "connected to ScyllaDB");
        Self::with_session(session, cfg).await
    }

    /// Opens a session only (for `roomcast migrate` and the tests' probes).
    pub async fn session(cfg: &ScyllaConfig) -> anyhow::Result<Session> {
        let profile = ExecutionProfile::builder()
            .consistency(consistency(cfg.consistency))
            .request_timeout(Some(cfg.request_timeout))
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&cfg.nodes)
            .default_execution_profile_handle(profile.into_handle())
            // Client-side, monotonic timestamps: of two writes of one row in flight
            // at once (a room's batches overlap), the later-issued one wins.
            .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
            .connection_timeout(cfg.request_timeout.min(Duration::from_secs(10)));
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            builder = builder.user(u, p);
        }
        if let Some(ca) = &cfg.tls_ca {
            builder = tls(builder, ca)?;
        }
        builder
            .build()
            .await
            .map_err(|e| anyhow::anyhow!("connecting to ScyllaDB at {}: {e}", cfg.nodes.join(",")))
    }

    /// Prepares the statements on a session whose keyspace holds the current schema.
    pub async fn with_session(session: Session, cfg: &ScyllaConfig) -> anyhow::Result<Self> {
        schema::check(&session, &cfg.keyspace).await?;
        let st = Stmts::prepare(&session, &cfg.keyspace).await?;
        Ok(Self {
            session: Arc::new(session),
            st: Arc::new(st),
            permits: Arc::new(Semaphore::new(cfg.max_inflight)),
            deadline: cfg.request_timeout,
            metrics: Arc::new(StoreMetrics::default()),
            history_inflight: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn plan(&self, muts: &[&Mutation]) -> StoreResult<Plan> {
        let st = &self.st;
        let mut plan = Plan::default();
        for m in muts {
            let mut derived = |table: &'static str,
                               key: String,
                               ps: &PreparedStatement,
                               values: Vec<CqlValue>| {
                plan.derived.push((
                    (table, key),
                    Stmt {
                        ps: ps.clone(),
                        values,
                    },
                ));
            };
            match m {
                Mutation::PutRoom(meta) => derived(
                    "rooms",
                    meta.id.to_string(),
                    &st.put_room,
                    vec![
                        t(meta.id.as_str()),
                        CqlValue::Blob(super::keys::encode(meta)),
                    ],
                ),
                Mutation::PutPublic { name, room } => {
                    let (head, lower) = dir_key(room.tenant(), name);
                    let k = dir_heads_partition(room.tenant());
                    derived(
                        "directory_heads",
                        k.to_string(),
                        &st.put_dir_head,
                        vec![CqlValue::Int(k), t(&head)],
                    );
                    derived(
                        "directory",
                        head.clone(),
                        &st.put_dir,
                        vec![t(&head), t(&lower), t(room.as_str())],
                    );
                }
                Mutation::DelPublic { name, room } => {
                    let (head, lower) = dir_key(room.tenant(), name);
                    derived(
                        "directory",
                        head.clone(),
                        &st.del_dir,
                        vec![t(&head), t(&lower), t(room.as_str())],
                    );
                }
                Mutation::PutMember {
                    room,
                    user,
                    role,
                    joined_at,
                } => {
                    // The end of the join's millisecond: later than a leave in that same
                    // millisecond or before it, so a quick rejoin is never shadowed.
                    let at =
                        CqlValue::Big(joined_at.saturating_mul(1000).saturating_add(999) as i64);
                    derived(
                        "members",
                        room.to_string(),
                        &st.put_member,
                        vec![
                            t(room.as_str()),
                            t(user.as_str()),
                            t(role_str(*role)),
                            b(*joined_at),
                            at.clone(),
                        ],
                    );
                    derived(
                        "rooms_by_user",
                        user.to_string(),
                        &st.put_user_room,
                        vec![t(user.as_str()), t(room.as_str()), at],
                    );
                }
                Mutation::SetRole { room, user, role } => derived(
                    "members",
                    room.to_string(),
                    &st.set_role,
                    vec![t(role_str(*role)), t(room.as_str()), t(user.as_str())],
                ),
                Mutation::DelMember { room, user } => {
                    derived(
                        "members",
                        room.to_string(),
                        &st.del_member,
                        vec![t(room.as_str()), t(user.as_str())],
                    );
                    derived(
                        "rooms_by_user",
                        user.to_string(),
                        &st.del_user_room,
                        vec![t(user.as_str()), t(room.as_str())],
                    );
                }
                Mutation::SetRead {
                    room,
                    user,
                    read_seq,
                    read_n,
                } => {
                    let key = room.to_string();
                    derived(
                        "read_state",
                        key.clone(),
                        &st.set_read,
                        vec![
                            ts(*read_seq),
                            b(*read_seq),
                            b(*read_n),
                            t(room.as_str()),
                            t(user.as_str()),
                        ],
                    );
                    // A collection overwrite tombstones at ts-1: own unread seqs below the pointer go.
                    derived(
                        "read_state",
                        key,
                        &st.clear_own,
                        vec![ts(*read_seq), t(room.as_str()), t(user.as_str())],
                    );
                }
                Mutation::SetDelivered { room, user, seq } => derived(
                    "read_state",
                    room.to_string(),
                    &st.set_delivered,
                    vec![ts(*seq), b(*seq), t(room.as_str()), t(user.as_str())],
                ),
                Mutation::AddOwnUnread { room, user, seq } => derived(
                    "read_state",
                    room.to_string(),
                    &st.add_own,
                    vec![
                        ts(*seq),
                        CqlValue::Set(vec![*seq as i64]),
                        t(room.as_str()),
                        t(user.as_str()),
                    ],
                ),
                Mutation::PutBan { room, user } => derived(
                    "bans",
                    room.to_string(),
                    &st.put_ban,
                    vec![t(room.as_str()), t(user.as_str())],
                ),
                Mutation::DelBan { room, user } => derived(
                    "bans",
                    room.to_string(),
                    &st.del_ban,
                    vec![t(room.as_str()), t(user.as_str())],
                ),
                Mutation::AppendEvent { room, seq, payload } => {
                    derived(
                        "buckets",
                        room.to_string(),
                        &st.put_bucket,
                        vec![t(room.as_str()), CqlValue::Big(bucket(*seq))],
                    );
                    plan.events.push((
                        ("stream", format!("{room}\0{}", bucket(*seq))),
                        Stmt {
                            ps: st.put_event.clone(),
                            values: vec![
                                ts(*seq),
                                CqlValue::Blob(payload.to_vec()),
                                t(room.as_str()),
                                CqlValue::Big(bucket(*seq)),
                                b(*seq),
                            ],
                        },
                    ));
                }
                Mutation::RewriteEvent {
                    room,
                    seq,
                    payload,
                    at,
                } => derived(
                    "stream",
                    format!("{room}\0{}", bucket(*seq)),
                    &st.put_event,
                    vec![
                        // Later than the event's own write (at its seq), so a
                        // replayed append never brings the old text back.
                        ts(*at),
                        CqlValue::Blob(payload.to_vec()),
                        t(room.as_str()),
                        CqlValue::Big(bucket(*seq)),
                        b(*seq),
                    ],
                ),
                Mutation::PutMessage(msg) => {
                    let key = format!("{}\0{}", msg.room, bucket(msg.seq));
                    derived(
                        "buckets",
                        msg.room.to_string(),
                        &st.put_bucket,
                        vec![t(msg.room.as_str()), CqlValue::Big(bucket(msg.seq))],
                    );
                    derived(
                        "stream",
                        key,
                        &st.put_message,
                        vec![
                            ts(msg.seq),
                            b(msg.n),
                            // Body and attachments live in cells of their own.
                            CqlValue::Blob(super::keys::encode(&MessageState {
                                body: String::new(),
                                attachments: Vec::new(),
                                ..(**msg).clone()
                            })),
                            t(&msg.body),
                            CqlValue::Blob(super::keys::encode(&msg.attachments)),
                            t(msg.room.as_str()),
                            CqlValue::Big(bucket(msg.seq)),
                            b(msg.seq),
                        ],
                    );
                }
                Mutation::EditMessage {
                    room,
                    seq,
                    body,
                    edited_at,
                    at,
                } => derived(
                    "stream",
                    format!("{room}\0{}", bucket(*seq)),
                    &st.edit_message,
                    vec![
                        ts(*at),
                        t(body),
                        b(*edited_at),
                        b(*at),
                        b(*edited_at),
                        t(room.as_str()),
                        CqlValue::Big(bucket(*seq)),
                        b(*seq),
                    ],
                ),
                Mutation::DeleteMessage {
                    room,
                    seq,
                    sender,
                    at,
                } => {
                    let key = format!("{room}\0{}", bucket(*seq));
                    let row = [t(room.as_str()), CqlValue::Big(bucket(*seq)), b(*seq)];
                    let mut v = vec![ts(*at)];
                    v.extend(row.iter().cloned());
                    derived("stream", key.clone(), &st.delete_message, v.clone());
                    derived("stream", key, &st.clear_reactions, v);
                    derived(
                        "deletions",
                        room.to_string(),
                        &st.put_deletion,
                        vec![t(room.as_str()), b(*seq), t(sender.as_str())],
                    );
                }
                Mutation::React {
                    room,
                    seq,
                    emoji,
                    user,
                    on,
                    at,
                } => {
                    let key = format!("{room}\0{}", bucket(*seq));
                    let cell = t(&format!("{emoji}\0{user}"));
                    let row = [t(room.as_str()), CqlValue::Big(bucket(*seq)), b(*seq)];
                    if *on {
                        let mut v = vec![ts(*at), cell, b(*at)];
                        v.extend(row);
                        derived("stream", key, &st.react_on, v);
                    } else {
                        let mut v = vec![cell, ts(*at)];
                        v.extend(row);
                        derived("stream", key, &st.react_off, v);
                    }
                }
                Mutation::PutLocalId {
                    room,
                    user,
                    local_id,
                    seq,
                    ts: sent_at,
                } => derived(
                    "local_ids",
                    format!("{room}\0{user}\0{local_id}"),
                    &st.put_local_id,
                    vec![
                        t(room.as_str()),
                        t(user.as_str()),
                        t(local_id),
                        b(*seq),
                        b(*sent_at),
                    ],
                ),
                Mutation::PutInvite(inv) => derived(
                    "invites",
                    inv.room.to_string(),
                    &st.put_invite,
                    vec![
                        t(inv.room.as_str()),
                        t(&inv.code),
                        CqlValue::Blob(super::keys::encode(inv)),
                    ],
                ),
                Mutation::PutFavorite {
                    user,
                    room,
                    peer,
                    on,
                } => {
                    let (kind, target) = match (room, peer) {
                        (Some(r), _) => ("r", r.to_string()),
                        (None, Some(u)) => ("u", u.to_string()),
                        (None, None) => continue,
                    };
                    let ps = if *on {
                        &st.put_favorite
                    } else {
                        &st.del_favorite
                    };
                    derived(
                        "favorites",
                        user.to_string(),
                        ps,
                        vec![t(user.as_str()), t(kind), t(&target)],
                    );
                }
            }
        }
        // Derived rows that share an event's partition go in that event's batch:
        // one atomic single-partition write with the commit point.
        let event_parts: Vec<PartKey> = plan.events.iter().map(|(k, _)| k.clone()).collect();
        let (same, other): (Vec<_>, Vec<_>) = std::mem::take(&mut plan.derived)
            .into_iter()
            .partition(|(k, _)| event_parts.contains(k));
        plan.derived = other;
        let events = std::mem::take(&mut plan.events);
        plan.events = same.into_iter().chain(events).collect();
        Ok(plan)
    }

    /// Runs statements grouped per partition: one unlogged batch per partition
    /// (a single statement runs alone), the partitions concurrently.
    async fn run_grouped(&self, stmts: Vec<(PartKey, Stmt)>) -> StoreResult<()> {
        let mut groups: Vec<(PartKey, Vec<Stmt>)> = Vec::new();
        for (k, s) in stmts {
            match groups.iter_mut().find(|(g, _)| *g == k) {
                Some((_, v)) => v.push(s),
                None => groups.push((k, vec![s])),
            }
        }
        let runs = groups.into_iter().map(|(_, g)| self.run_partition(g));
        for r in futures_util::future::join_all(runs).await {
            r?;
        }
        Ok(())
    }

    async fn run_partition(&self, group: Vec<Stmt>) -> StoreResult<()> {
        self.metrics
            .statements
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        self.retrying(|| async {
            let _permit = self.permit().await?;
            if group.len() == 1 {
                let s = &group[0];
                self.session
                    .execute_unpaged(&s.ps, &s.values)
                    .await
                    .map_err(cql_err)?;
            } else {
                self.metrics.batches.fetch_add(1, Ordering::Relaxed);
                let mut batch = Batch::new(BatchType::Unlogged);
                for s in &group {
                    batch.append_statement(s.ps.clone());
                }
                batch.set_is_idempotent(group.iter().all(|s| s.ps.get_is_idempotent()));
                let values: Vec<&Vec<CqlValue>> = group.iter().map(|s| &s.values).collect();
                self.session.batch(&batch, values).await.map_err(cql_err)?;
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn permit(&self) -> StoreResult<tokio::sync::SemaphorePermit<'_>> {
        match tokio::time::timeout(self.deadline, self.permits.acquire()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => Err(StoreError::Unavailable {
                why: "too many ScyllaDB requests in flight".into(),
                retry_after_ms: RETRY_MS,
            }),
        }
    }

    /// Retries an idempotent operation on retriable failures (unavailable,
    /// overloaded, timeouts) with backoff, within the store's deadline.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut op: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = StoreResult<T>>,
    {
        let start = Instant::now();
        let mut backoff = Duration::from_millis(20);
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e @ (StoreError::Unavailable { .. } | StoreError::Timeout(_)))
                    if start.elapsed() + backoff < self.deadline / 2 =>
                {
                    self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "retrying an idempotent ScyllaDB request");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(self.counted(e)),
            }
        }
    }

    /// Counts a request that failed for good, by kind (`/metrics`).
    pub(crate) fn counted(&self, e: StoreError) -> StoreError {
        let counter = match &e {
            StoreError::Unavailable { .. } => &self.metrics.errors_unavailable,
            StoreError::Timeout(_) => &self.metrics.errors_timeout,
            _ => &self.metrics.errors_other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        e
    }

    async fn apply_room(&self, muts: Vec<&Mutation>) -> StoreResult<()> {
        let plan = self.plan(&muts)?;
        self.run_grouped(plan.derived).await?;
        self.run_grouped(plan.events).await
    }
}

/// `roomcast migrate`: connects and applies every schema version not yet applied.
pub async fn migrate(cfg: &ScyllaConfig) -> anyhow::Result<i64> {
    let session = ScyllaStore::session(cfg).await?;
    Ok(schema::migrate(&session, cfg).await?)
}

/// Directory key: the partition and the lowercased name. The partition
/// (`head`) is the first character of the lowercased name, after the room's
/// tenant and U+001F for a room of a tenant: each tenant's directory has
/// partitions of its own.
pub(crate) fn dir_key(tenant: Option<&str>, name: &str) -> (String, String) {
    let lower = name.to_lowercase();
    let mut head = dir_base(tenant);
    head.extend(lower.chars().next());
    (head, lower)
}

/// The start of every directory partition of `tenant` (empty: no tenant).
pub(crate) fn dir_base(tenant: Option<&str>) -> String {
    tenant.map(|t| format!("{t}\u{1f}")).unwrap_or_default()
}

/// The `directory_heads` partition listing a directory partition: 0 for
/// rooms of no tenant, 1 for tenants' (clustered by head, so by tenant).
pub(crate) fn dir_heads_partition(tenant: Option<&str>) -> i32 {
    i32::from(tenant.is_some())
}

#[cfg(feature = "scylla-tls")]
fn tls(builder: SessionBuilder, ca: &std::path::Path) -> anyhow::Result<SessionBuilder> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .map_err(|e| anyhow::anyhow!("scylla_tls_ca {}: {e}", ca.display()))?
    {
        let cert = cert.map_err(|e| anyhow::anyhow!("scylla_tls_ca {}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| anyhow::anyhow!("scylla_tls_ca {}: {e}", ca.display()))?;
    }
    // The ring provider explicitly: the driver's rustls feature also builds aws-lc-rs.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(builder.tls_context(Some(Arc::new(config))))
}

#[cfg(not(feature = "scylla-tls"))]
fn tls(_builder: SessionBuilder, ca: &std::path::Path) -> anyhow::Result<SessionBuilder> {
    anyhow::bail!(
        "scylla_tls_ca {}: this roomcast was built without TLS to ScyllaDB; \
         rebuild with `--features scylla-tls`",
        ca.display()
    )
}

#[async_trait]
impl MessageStore for ScyllaStore {
    async fn apply(&self, batch: Vec<Mutation>) -> StoreResult<()> {
        let started = Instant::now();
        // Per room, in order; rooms (and users' rows) independently.
        let mut rooms: Vec<(Option<RoomId>, Vec<&Mutation>)> = Vec::new();
        for m in &batch {
            let key = m.room().cloned();
            match rooms.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(m),
                None => rooms.push((key, vec![m])),
            }
        }
        let runs = rooms.into_iter().map(|(_, muts)| self.apply_room(muts));
        let results = futures_util::future::join_all(runs).await;
        self.metrics.commits.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .commit_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        results.into_iter().collect()
    }

    async fn load_room(&self, room: &RoomId, recent: usize) -> StoreResult<Option<LoadedRoom>> {
        read::load_room(self, room, recent).await
    }

    async fn find_local_id(
        &self,
        room: &RoomId,
        user: &UserId,
        local_id: &str,
    ) -> StoreResult<Option<(u64, u64)>> {
        read::find_local_id(self, room, user, local_id).await
    }

    async fn message(&self, room: &RoomId, seq: u64) -> StoreResult<Option<MessageState>> {
        read::message(self, room, seq).await
    }

    async fn msg_count_at(&self, room: &RoomId, seq: u64) -> StoreResult<u64> {
        Ok(read::latest_message_at_or_below(self, room, seq)
            .await?
            .map_or(0, |m| m.n))
    }

    async fn history(
        &self,
        room: &RoomId,
        range: HistoryRange,
        limit: usize,
    ) -> StoreResult<(Vec<MessageState>, bool)> {
        // A reconnect storm asks for the same page many times: one query serves all.
        let key = (room.clone(), range, limit);
        let fut = {
            let mut map = self
                .history_inflight
                .lock()
                .map_err(|_| StoreError::Backend("history coalescing lock poisoned".into()))?;
            match map.get(&key) {
                Some(f) => {
                    self.metrics
                        .history_coalesced
                        .fetch_add(1, Ordering::Relaxed);
                    f.clone()
                }
                None => {
                    let store = self.clone_handle();
                    let room = room.clone();
                    let inflight = self.history_inflight.clone();
                    let k = key.clone();
                    let f: BoxFuture<'static, HistoryResult> = Box::pin(async move {
                        let r = read::history(&store, &room, range, limit)
                            .await
                            .map(Arc::new);
                        if let Ok(mut m) = inflight.lock() {
                            m.remove(&k);
                        }
                        r
                    });
                    let shared = f.shared();
                    map.insert(key, shared.clone());
                    shared
                }
            }
        };
        let r = fut.await?;
        Ok((r.0.clone(), r.1))
    }

    async fn events(
        &self,
        room: &RoomId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Bytes)>> {
        read::events(self, room, after, upto, limit).await
    }

    async fn user_rooms(&self, user: &UserId, page: PageReq) -> StoreResult<Page<RoomOverview>> {
        read::user_rooms(self, user, page).await
    }

    async fn member_rooms(&self, user: &UserId, page: PageReq) -> StoreResult<Page<RoomId>> {
        read::member_rooms(self, user, page).await
    }

    async fn public_rooms(
        &self,
        tenant: Option<&str>,
        prefix: &str,
        page: PageReq,
    ) -> StoreResult<Page<RoomMeta>> {
        read::public_rooms(self, tenant, prefix, page).await
    }

    async fn favorites(&self, user: &UserId) -> StoreResult<(Vec<RoomId>, Vec<UserId>)> {
        read::favorites(self, user).await
    }

    async fn flush(&self) -> StoreResult<()> {
        // Every acknowledged write is already committed at the configured consistency.
        Ok(())
    }
}

impl ScyllaStore {
    /// A second handle on the same session and statements (for spawned reads).
    fn clone_handle(&self) -> ScyllaStore {
        ScyllaStore {
            session: self.session.clone(),
            st: self.st.clone(),
            permits: self.permits.clone(),
            deadline: self.deadline,
            metrics: self.metrics.clone(),
            history_inflight: self.history_inflight.clone(),
        }
    }
}
