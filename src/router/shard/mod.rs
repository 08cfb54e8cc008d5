//! A room shard: one task that owns a subset of rooms (by hash) and serves
//! every command for them, so room state needs no locks.
//!
//! Per wake-up the shard drains its inbox, turns the commands into one batch
//! of store mutations plus the completions that wait on it, and submits the
//! batch. Batches complete in submission order; on completion the shard
//! acknowledges, then appends each room's new stream events (already encoded
//! once) into one chunk and hands that chunk to every subscriber's outbox.
//!
//! The loop never awaits I/O: a store read or Redis call a command needs is
//! spawned, and the room's later commands park until its result is back
//! (`io.rs`). Commits in flight are bounded (`--shard-max-commits`); beyond,
//! writes wait in one bounded pending batch (`commit.rs`).
//!
//! Files: `mod.rs` the loop and dispatch; `lifecycle.rs` room load, create,
//! unload; `commit.rs` batches, commits, acks; `fanout.rs` chunks and
//! traffic from other nodes; `subscribe.rs` subscriptions; `io.rs` off-loop
//! I/O and parking. The commands themselves live in `members.rs`,
//! `messages.rs`, `reads.rs` and `ephemeral.rs`; resume replay in `replay.rs`.

mod commit;
mod fanout;
mod io;
mod lifecycle;
mod subscribe;

use super::cluster::{Cluster, Notice};
use super::command::{abandoning, Command, ReplyTo};
use super::room::Room;
use crate::ids::{RoomId, SessionId, UserId};
use crate::presence::Presence;
use crate::proto::{ErrorCode, ServerFrame, WireError};
use crate::store::{LoadedRoom, MessageStore, Mutation, StoreResult};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Messages into a shard.
pub enum ShardMsg {
    Room(RoomId, Command),
    Loaded(RoomId, StoreResult<Option<LoadedRoom>>),
    /// Traffic of a room from another node: stream events (`[seq u64][frame]…`) or
    /// ephemeral frames.
    Remote {
        room: RoomId,
        ephemeral: bool,
        payload: Bytes,
    },
    /// A resume replay for this session finished pushing stored events.
    ReplayDone(RoomId, SessionId),
    /// An off-loop I/O operation of a room finished: `then` finishes its
    /// command (see `io.rs`).
    Io {
        room: RoomId,
        token: u64,
        then: io::Continuation,
    },
    /// Finish in-flight writes, then stop.
    Shutdown(oneshot::Sender<()>),
    /// Unit tests of the supervisor: a fault inside the shard.
    #[cfg(test)]
    Panic,
}

#[derive(Clone, Debug)]
pub struct ShardConfig {
    pub dedupe_window: usize,
    /// A room with no subscribers and no writes in flight is unloaded after this long.
    pub idle_unload: Duration,
    /// Authors may edit a message for this long.
    pub edit_window: Duration,
    /// Sending a message moves the sender's read pointer to it.
    pub read_on_send: bool,
    /// Joining a room moves the member's read pointer to its latest seq.
    pub read_on_join: bool,
    /// A typing indicator ends after this long without a refresh.
    pub typing_ttl: Duration,
    /// Rooms with at most this many members list who is online in `joined`.
    pub presence_list_max: usize,
    /// The connections' outbound queue bound (for held-back replays).
    pub outbox_bytes: usize,
    /// Multi-node: how long a seq gap may stay open before it is skipped.
    pub gap_timeout: Duration,
    /// Usable (not revoked, expired or used up) invites a room may hold.
    pub max_invites_per_room: usize,
    /// The system sender (`--system-user`, public id): may send into any room
    /// without being a member (the server API publishes as it).
    pub system_user: String,
    /// Store commits in flight at most (`--shard-max-commits`).
    pub max_commits: usize,
    /// How long a batch may wait for a commit slot (the store deadline).
    pub commit_window: Duration,
}

pub(super) enum Slot {
    Loading(Vec<Command>),
    Active(Box<Room>),
}

/// Acknowledgement of a stream event once stored.
pub(super) enum Ack {
    Sent {
        reply: ReplyTo,
        ts: u64,
        local_id: Option<String>,
        from: UserId,
    },
    Ok(ReplyTo),
}

/// After a reply's write is stored, also do this.
pub(super) enum Then {
    Nothing,
    /// End every subscription of this user (left, kicked, banned).
    DropUser(UserId),
    /// End every subscription (room deleted).
    DropAll,
}

/// Work that waits for a store batch to commit.
pub(super) enum Done {
    /// A stream event stored with `seq`; `framed` is its encoded push (header included).
    Event {
        room: RoomId,
        seq: u64,
        framed: Bytes,
        ack: Ack,
        notice: Option<Notice>,
        /// A send's own mutations, kept for an idempotent retry if the outcome is unknown.
        retry: Option<Vec<Mutation>>,
    },
    /// Subscribe after the membership write.
    Subscribe {
        room: RoomId,
        session: SessionId,
        user: UserId,
        since: Option<u64>,
        reply: ReplyTo,
    },
    /// Reply and/or push once the write is durable.
    Reply {
        room: RoomId,
        reply: Option<ReplyTo>,
        frame: Option<Box<ServerFrame>>,
        push: Option<Box<ServerFrame>>,
        then: Then,
    },
}

type Inflight = BoxFuture<'static, (Vec<Done>, Vec<RoomId>, StoreResult<()>)>;

/// A subscription whose membership write completed, waiting to be set up.
pub(super) type PendingSubscribe = (RoomId, SessionId, UserId, Option<u64>, ReplyTo);

/// A room's fan-out chunk is handed out once it reaches this size.
const MAX_CHUNK: usize = 64 * 1024;
/// Most inbox messages handled per wake-up (the shard's work budget).
const INBOX_BATCH: usize = 512;
/// Ephemeral work (coalesced read pushes, typing expiry) runs this often.
const TICK: Duration = Duration::from_millis(250);
/// After a panic: how long the supervisor waits for the store writes the
/// failed shard had already submitted ([`Shard::finish_writes`]).
const FAULT_DRAIN: Duration = Duration::from_secs(10);

pub struct Shard {
    pub(super) index: usize,
    pub(super) cfg: ShardConfig,
    pub(super) store: Arc<dyn MessageStore>,
    pub(super) presence: Arc<dyn Presence>,
    pub(super) cluster: Option<Arc<dyn Cluster>>,
    /// For load and replay completions to come back in.
    pub(super) tx: mpsc::WeakSender<ShardMsg>,
    pub(super) rooms: HashMap<RoomId, Slot>,
    pub(super) batch: Vec<Mutation>,
    pub(super) done: Vec<Done>,
    /// Rooms written by the batch being built.
    batch_rooms: commit::BatchRooms,
    /// When the batch being built got its first write.
    batch_since: Option<Instant>,
    inflight: FuturesOrdered<Inflight>,
    /// Rooms with an off-loop operation out, and the work parked behind it.
    busy: HashMap<RoomId, io::Busy>,
    /// Commands parked in this shard (behind an operation or a room load).
    parked: usize,
}

impl Shard {
    pub fn new(
        index: usize,
        cfg: ShardConfig,
        store: Arc<dyn MessageStore>,
        presence: Arc<dyn Presence>,
        cluster: Option<Arc<dyn Cluster>>,
        tx: mpsc::WeakSender<ShardMsg>,
    ) -> Self {
        Self {
            index,
            cfg,
            store,
            presence,
            cluster,
            tx,
            rooms: HashMap::new(),
            batch: Vec::new(),
            done: Vec::new(),
            batch_rooms: commit::BatchRooms::default(),
            batch_since: None,
            inflight: FuturesOrdered::new(),
            busy: HashMap::new(),
            parked: 0,
        }
    }

    /// Serves the inbox until shutdown (or until every sender is gone). The
    /// inbox is borrowed, not owned, so that it outlives a panic of this
    /// shard: the supervisor (`Router::start`) then starts a fresh shard on it.
    pub async fn run(&mut self, rx: &mut mpsc::Receiver<ShardMsg>) {
        let mut inbox = Vec::with_capacity(INBOX_BATCH);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        let mut stopping: Option<oneshot::Sender<()>> = None;
        // Every sender is gone (no operation's result can come back either).
        let mut closed = false;
        // This shard's rooms as last added to the process-wide gauge.
        let mut rooms_reported = 0usize;
        loop {
            if stopping.is_some()
                && self.inflight.is_empty()
                && self.batch.is_empty()
                && (self.busy.is_empty() || closed)
            {
                break;
            }
            tokio::select! {
                biased;
                Some((done, rooms, result)) = self.inflight.next(), if !self.inflight.is_empty() => {
                    self.complete(done, rooms, result);
                    self.submit();
                }
                // While stopping, only the results of operations still out are awaited.
                n = rx.recv_many(&mut inbox, INBOX_BATCH), if !closed && (stopping.is_none() || !self.busy.is_empty()) => {
                    if n == 0 {
                        closed = true;
                        stopping.get_or_insert_with(|| oneshot::channel().0);
                        continue;
                    }
                    for msg in inbox.drain(..) {
                        match msg {
                            ShardMsg::Room(room, cmd) => self.command(room, cmd),
                            ShardMsg::Loaded(room, result) => self.loaded(room, result),
                            ShardMsg::Io { room, token, then } => self.io_done(room, token, then),
                            ShardMsg::ReplayDone(room, session) => self.replay_done(&room, session),
                            ShardMsg::Remote { room, ephemeral, payload } => {
                                self.remote(&room, ephemeral, payload)
                            }
                            ShardMsg::Shutdown(tx) => {
                                stopping = Some(tx);
                            }
                            #[cfg(test)]
                            ShardMsg::Panic => panic!("injected shard fault"),
                        }
                    }
                    self.submit();
                }
                _ = tick.tick() => {
                    ticks += 1;
                    self.report_fanout();
                    rooms_reported = crate::metrics::rooms_loaded(rooms_reported, self.rooms.len());
                    self.tick();
                    self.cluster_tick();
                    self.expire_pending();
                    self.submit();
                    if ticks % (self.cfg.idle_unload.as_millis() as u64 / TICK.as_millis() as u64).max(1) == 0 {
                        self.unload_idle();
                    }
                }
            }
        }
        self.report_fanout();
        crate::metrics::rooms_loaded(rooms_reported, 0);
        if let Some(tx) = stopping {
            let _ = tx.send(());
        }
        tracing::debug!(shard = self.index, "shard stopped");
    }

    /// After a panic: every connection that had a subscription or a request
    /// here is closed with `internal`, so its client reconnects and resumes
    /// (`join {since}`) from the stored state the next shard reloads. The
    /// state of this shard is not trusted beyond finding those connections.
    pub fn fail_sessions(&mut self) -> usize {
        let mut outboxes: HashMap<SessionId, crate::conn::outbox::Outbox> = HashMap::new();
        let mut add = |o: &crate::conn::outbox::Outbox| {
            outboxes.entry(o.session()).or_insert_with(|| o.clone());
        };
        for slot in self.rooms.values() {
            match slot {
                Slot::Active(room) => room.subscribers.values().for_each(|s| add(&s.outbox)),
                Slot::Loading(queue) => queue
                    .iter()
                    .filter_map(Command::reply)
                    .for_each(|r| add(r.outbox())),
            }
        }
        for d in &self.done {
            match d {
                Done::Event {
                    ack: Ack::Sent { reply, .. } | Ack::Ok(reply),
                    ..
                }
                | Done::Subscribe { reply, .. }
                | Done::Reply {
                    reply: Some(reply), ..
                } => add(reply.outbox()),
                Done::Reply { reply: None, .. } => {}
            }
        }
        for o in self.busy_outboxes() {
            add(o);
        }
        // Every request still held (queued for a loading room, batched, waiting
        // for its resend's original) is answered `internal` with a retry hint
        // first, so it arrives before the closing error.
        abandoning(|| {
            self.rooms.clear();
            self.done.clear();
            self.batch.clear();
            self.batch_rooms.clear();
            self.batch_since = None;
            self.busy.clear();
            self.parked = 0;
        });
        let frame = ServerFrame::closing(WireError::new(
            ErrorCode::Internal,
            "a server fault interrupted a room of this connection; reconnect and resume from your last seq",
        ));
        for outbox in outboxes.values() {
            outbox.close_with(&frame);
        }
        outboxes.len()
    }

    /// The active room, if loaded (and not deleted).
    pub(super) fn active(&mut self, room: &RoomId) -> Option<&mut Room> {
        match self.rooms.get_mut(room) {
            Some(Slot::Active(r)) if !r.meta.deleted => Some(r),
            _ => None,
        }
    }

    /// Serves one command of a room: parked while the room has an I/O
    /// operation out or is loading, run otherwise.
    pub(super) fn command(&mut self, room_id: RoomId, cmd: Command) {
        if self.is_busy(&room_id) && !matches!(cmd, Command::Presence { .. }) {
            return self.park(&room_id, io::Parked::Command(cmd));
        }
        if cmd.writes() && self.pending_full() {
            if let Some(reply) = cmd.reply() {
                return reply.error(io::overloaded("too many writes wait for the store"));
            }
        }
        match cmd {
            Command::Create { .. } | Command::StartDirect { .. }
                if !self.rooms.contains_key(&room_id) =>
            {
                // Unknown here: check the store first; a missing room is created (see `loaded`).
                self.start_load(room_id, cmd);
            }
            cmd => match self.rooms.get_mut(&room_id) {
                Some(Slot::Active(room)) => {
                    room.last_active = Instant::now();
                    if room.meta.deleted {
                        match &cmd {
                            // A deleted room's id is never reused (as when loaded from the store).
                            Command::Create { reply, .. } => reply.error(WireError::new(
                                ErrorCode::Conflict,
                                format!("room {room_id} existed and was deleted"),
                            )),
                            cmd => {
                                if let Some(r) = cmd.reply() {
                                    r.error(not_found(&room_id));
                                }
                            }
                        }
                        return;
                    }
                    self.on_active(room_id, cmd);
                }
                Some(Slot::Loading(queue)) => {
                    if let Some(reply) = cmd.reply() {
                        if queue.len() >= io::MAX_PARKED_PER_ROOM {
                            return reply
                                .error(io::overloaded("too many requests wait for this room"));
                        }
                        if self.parked >= io::MAX_PARKED_PER_SHARD {
                            return reply
                                .error(io::overloaded("too many requests wait for their rooms"));
                        }
                    }
                    queue.push(cmd);
                    self.parked += 1;
                }
                None if cmd.needs_loaded_room() => {}
                None => self.start_load(room_id, cmd),
            },
        }
    }

    fn on_active(&mut self, room_id: RoomId, cmd: Command) {
        match cmd {
            Command::Create { reply, .. } => reply.error(WireError::new(
                ErrorCode::Conflict,
                format!("room {room_id} already exists"),
            )),
            Command::StartDirect { user, peer, reply } => {
                self.start_direct(&room_id, user, peer, reply)
            }
            Command::Join {
                session,
                user,
                since,
                invite,
                reply,
            } => self.join(&room_id, session, user, since, invite, reply),
            Command::Leave { session, reply } => {
                self.unsubscribe(&room_id, session);
                reply.send(&ServerFrame::Left(crate::proto::server::Left {
                    id: reply.id,
                    room: room_id,
                }));
            }
            Command::Disconnect { session } => self.unsubscribe(&room_id, session),
            Command::LeaveRoom { user, reply } => self.leave_room(&room_id, user, reply),
            Command::Send { user, msg, reply } => self.send(&room_id, user, msg, reply),
            Command::Edit {
                user,
                seq,
                body,
                reply,
            } => self.edit(&room_id, user, seq, body, reply),
            Command::Delete { user, seq, reply } => self.delete(&room_id, user, seq, reply),
            Command::React {
                user,
                seq,
                emoji,
                on,
                reply,
            } => self.react(&room_id, user, seq, emoji, on, reply),
            Command::History {
                user,
                range,
                limit,
                reply,
            } => self.history(&room_id, user, range, limit, reply),
            Command::Read { user, seq, reply } => self.read(&room_id, user, seq, reply),
            Command::Receipts { user, seq, reply } => self.receipts(&room_id, user, seq, reply),
            Command::Members { user, reply } => self.members(&room_id, user, reply),
            Command::Typing {
                session: _,
                user,
                on,
                reply,
            } => self.typing(&room_id, user, on, reply),
            Command::Update {
                user,
                name,
                description,
                private,
                reply,
            } => self.update_room(&room_id, user, name, description, private, reply),
            Command::DeleteRoom { user, reply } => self.delete_room(&room_id, user, reply),
            Command::Admin {
                user,
                target,
                op,
                reply,
            } => self.admin(&room_id, user, target, op, reply),
            Command::CreateInvite {
                user,
                expires_in_s,
                max_uses,
                reply,
            } => self.create_invite(&room_id, user, expires_in_s, max_uses, reply),
            Command::Invites { user, reply } => self.invites(&room_id, user, reply),
            Command::RevokeInvite { user, code, reply } => {
                self.revoke_invite(&room_id, user, code, reply)
            }
            Command::Presence { frame } => self.presence_push(&room_id, &frame),
        }
    }
}

pub(super) fn sent(
    id: u64,
    room: &RoomId,
    seq: u64,
    ts: u64,
    local_id: Option<String>,
) -> ServerFrame {
    ServerFrame::Sent(crate::proto::server::Sent {
        id,
        room: room.clone(),
        seq,
        ts,
        local_id,
    })
}

pub(super) fn not_found(room: &RoomId) -> WireError {
    WireError::new(ErrorCode::NotFound, format!("no room {room}"))
}

pub(super) fn forbidden(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::Forbidden, msg)
}
