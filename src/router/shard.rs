//! A room shard: one task that owns a subset of rooms (by hash) and serves
//! every command for them, so room state needs no locks.
//!
//! Per wake-up the shard drains its inbox, turns the commands into one batch
//! of store mutations plus the completions that wait on it, and submits the
//! batch. Batches complete in submission order; on completion the shard
//! acknowledges, then appends each room's new stream events (already encoded
//! once) into one chunk and hands that chunk to every subscriber's outbox.
//!
//! The commands themselves live in `members.rs`, `messages.rs`, `reads.rs`
//! and `ephemeral.rs`; resume replay in `replay.rs`.

use super::cluster::{Cluster, Notice};
use super::command::{abandoning, Command, ReplyTo};
use super::room::{Room, Sub};
use crate::ids::{now_ms, RoomId, SessionId, UserId};
use crate::presence::Presence;
use crate::proto::server::{Direct, Joined};
use crate::proto::types::{Role, RoomKind};
use crate::proto::{ErrorCode, ServerFrame, WireError};
use crate::store::{LoadedRoom, MemberState, MessageStore, Mutation, RoomMeta, StoreResult};
use bytes::{Bytes, BytesMut};
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
type PendingSubscribe = (RoomId, SessionId, UserId, Option<u64>, ReplyTo);

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
    batch_rooms: Vec<RoomId>,
    inflight: FuturesOrdered<Inflight>,
    pending_subscribes: Vec<PendingSubscribe>,
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
            batch_rooms: Vec::new(),
            inflight: FuturesOrdered::new(),
            pending_subscribes: Vec::new(),
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
        // This shard's rooms as last added to the process-wide gauge.
        let mut rooms_reported = 0usize;
        loop {
            if stopping.is_some() && self.inflight.is_empty() && self.batch.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                Some((done, rooms, result)) = self.inflight.next(), if !self.inflight.is_empty() => {
                    self.complete(done, rooms, result);
                    for (room, session, user, since, reply) in std::mem::take(&mut self.pending_subscribes) {
                        self.subscribe(&room, session, user, since, reply).await;
                    }
                    self.submit();
                }
                n = rx.recv_many(&mut inbox, INBOX_BATCH), if stopping.is_none() => {
                    if n == 0 {
                        stopping = Some(oneshot::channel().0);
                        continue;
                    }
                    for msg in inbox.drain(..) {
                        match msg {
                            ShardMsg::Room(room, cmd) => self.command(room, cmd).await,
                            ShardMsg::Loaded(room, result) => self.loaded(room, result).await,
                            ShardMsg::ReplayDone(room, session) => self.replay_done(&room, session),
                            ShardMsg::Remote { room, ephemeral, payload } => {
                                self.remote(&room, ephemeral, payload)
                            }
                            ShardMsg::Shutdown(tx) => stopping = Some(tx),
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
        for (.., reply) in &self.pending_subscribes {
            add(reply.outbox());
        }
        // Every request still held (queued for a loading room, batched, waiting
        // for its resend's original) is answered `internal` with a retry hint
        // first, so it arrives before the closing error.
        abandoning(|| {
            self.rooms.clear();
            self.done.clear();
            self.batch.clear();
            self.batch_rooms.clear();
            self.pending_subscribes.clear();
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

    /// After a panic, before the next shard starts on the same inbox: waits
    /// (at most [`FAULT_DRAIN`]) for the store writes this shard had already
    /// submitted, so that the next shard loads its rooms with them: no seq is
    /// given out twice, and a retried `send` finds its `local_id` and gets the
    /// original `sent`. Their requests are answered `internal` with a retry
    /// hint whether the write succeeded or not (the state that would turn the
    /// result into replies and pushes is not trusted). Returns the writes
    /// that finished.
    pub async fn finish_writes(&mut self) -> usize {
        use futures_util::FutureExt;
        let mut finished = 0;
        let inflight = &mut self.inflight;
        let drain = std::panic::AssertUnwindSafe(async {
            while let Some((done, _rooms, _result)) = inflight.next().await {
                finished += 1;
                abandoning(|| drop(done));
            }
        })
        .catch_unwind();
        if !matches!(tokio::time::timeout(FAULT_DRAIN, drain).await, Ok(Ok(()))) {
            tracing::error!(
                shard = self.index,
                "store writes of a failed shard did not finish; the next shard may not see them"
            );
        }
        abandoning(|| self.inflight = FuturesOrdered::new());
        finished
    }

    fn submit(&mut self) {
        if self.batch.is_empty() {
            debug_assert!(self.done.is_empty());
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let done = std::mem::take(&mut self.done);
        let rooms = std::mem::take(&mut self.batch_rooms);
        for room in &rooms {
            if let Some(Slot::Active(r)) = self.rooms.get_mut(room) {
                r.inflight += 1;
            }
        }
        let store = self.store.clone();
        self.inflight.push_back(Box::pin(async move {
            let (mutations, start) = (batch.len(), Instant::now());
            let result = store.apply(batch).await;
            crate::metrics::store_commit(mutations, start.elapsed(), result.is_ok());
            (done, rooms, result)
        }));
    }

    /// The active room, if loaded (and not deleted).
    pub(super) fn active(&mut self, room: &RoomId) -> Option<&mut Room> {
        match self.rooms.get_mut(room) {
            Some(Slot::Active(r)) if !r.meta.deleted => Some(r),
            _ => None,
        }
    }

    /// Queues a write for `room` whose completion is `done`.
    pub(super) fn write(
        &mut self,
        room: &RoomId,
        mutations: impl IntoIterator<Item = Mutation>,
        done: Option<Done>,
    ) {
        self.batch.extend(mutations);
        if let Some(d) = done {
            self.done.push(d);
        }
        if !self.batch_rooms.contains(room) {
            self.batch_rooms.push(room.clone());
        }
    }

    async fn command(&mut self, room_id: RoomId, cmd: Command) {
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
                    self.on_active(room_id, cmd).await;
                }
                Some(Slot::Loading(queue)) => queue.push(cmd),
                None if cmd.needs_loaded_room() => {}
                None => self.start_load(room_id, cmd),
            },
        }
    }

    fn start_load(&mut self, room_id: RoomId, first: Command) {
        self.rooms
            .insert(room_id.clone(), Slot::Loading(vec![first]));
        self.spawn_load(room_id);
    }

    fn spawn_load(&self, room_id: RoomId) {
        let store = self.store.clone();
        let tx = self.tx.clone();
        let recent = self.cfg.dedupe_window;
        tokio::spawn(async move {
            let result = store.load_room(&room_id, recent).await;
            if let Some(tx) = tx.upgrade() {
                let _ = tx.send(ShardMsg::Loaded(room_id, result)).await;
            }
        });
    }

    async fn loaded(&mut self, room_id: RoomId, result: StoreResult<Option<LoadedRoom>>) {
        let queue = match self.rooms.remove(&room_id) {
            Some(Slot::Loading(q)) => q,
            Some(Slot::Active(mut room)) => {
                // A reload after a failed write: refresh, keep the subscribers.
                match result {
                    Ok(Some(l)) => room.refresh_from(Room::from_loaded(l, self.cfg.dedupe_window)),
                    Ok(None) => room.meta.deleted = true,
                    Err(e) => {
                        tracing::error!(room = %room_id, error = %e, "reloading room failed; retrying");
                        room.needs_reload = true;
                    }
                }
                self.rooms.insert(room_id, Slot::Active(room));
                return;
            }
            None => return,
        };
        match result {
            Ok(Some(loaded)) => {
                let room = Room::from_loaded(loaded, self.cfg.dedupe_window);
                self.rooms
                    .insert(room_id.clone(), Slot::Active(Box::new(room)));
                for cmd in queue {
                    // Through `command`: a room loaded as deleted answers as such.
                    Box::pin(self.command(room_id.clone(), cmd)).await;
                }
            }
            Ok(None) => {
                let mut rest = Vec::new();
                for cmd in queue {
                    match cmd {
                        Command::StartDirect { user, peer, reply }
                            if !self.rooms.contains_key(&room_id) =>
                        {
                            self.create_direct(room_id.clone(), user, peer, reply);
                        }
                        Command::Create { meta, reply } if !self.rooms.contains_key(&room_id) => {
                            self.create(room_id.clone(), meta, reply);
                        }
                        other => rest.push(other),
                    }
                }
                for cmd in rest {
                    if self.rooms.contains_key(&room_id) {
                        self.on_active(room_id.clone(), cmd).await;
                    } else if let Some(r) = cmd.reply() {
                        r.error(not_found(&room_id));
                    }
                }
            }
            Err(e) => {
                tracing::error!(room = %room_id, error = %e, "loading room failed");
                let wire = e.to_wire("loading the room");
                for cmd in queue {
                    if let Some(r) = cmd.reply() {
                        r.error(wire.clone());
                    }
                }
            }
        }
    }

    fn create(&mut self, room_id: RoomId, meta: RoomMeta, reply: ReplyTo) {
        if self.rooms.contains_key(&room_id) {
            reply.error(WireError::new(
                ErrorCode::Internal,
                "room id collision; retry",
            ));
            return;
        }
        let owner = meta.created_by.clone();
        let mut room = Room::new(meta.clone(), self.cfg.dedupe_window);
        let state = MemberState::new(Role::Owner, meta.created_at);
        room.members.insert(owner.clone(), state.clone());
        self.rooms
            .insert(room_id.clone(), Slot::Active(Box::new(room)));
        let mut muts = vec![
            Mutation::PutRoom(meta.clone()),
            Mutation::PutMember {
                room: room_id.clone(),
                user: owner,
                role: state.role,
                joined_at: state.joined_at,
            },
        ];
        if !meta.private {
            muts.push(Mutation::PutPublic {
                name: meta.name.clone(),
                room: room_id.clone(),
            });
        }
        let frame = ServerFrame::Created(crate::proto::server::Created {
            id: reply.id,
            room: room_id.clone(),
            name: meta.name,
            private: meta.private,
        });
        let done = Done::Reply {
            room: room_id.clone(),
            reply: Some(reply),
            frame: Some(Box::new(frame)),
            push: None,
            then: Then::Nothing,
        };
        self.write(&room_id, muts, Some(done));
    }

    fn create_direct(&mut self, room_id: RoomId, user: UserId, peer: UserId, reply: ReplyTo) {
        let now = now_ms();
        let meta = RoomMeta {
            id: room_id.clone(),
            name: String::new(),
            description: String::new(),
            private: true,
            kind: RoomKind::Direct,
            created_by: user.clone(),
            created_at: now,
            deleted: false,
            members: 2,
        };
        let mut room = Room::new(meta.clone(), self.cfg.dedupe_window);
        let mut muts = vec![Mutation::PutRoom(meta)];
        for u in [&user, &peer] {
            let state = MemberState::new(Role::Member, now);
            room.members.insert(u.clone(), state.clone());
            muts.push(Mutation::PutMember {
                room: room_id.clone(),
                user: u.clone(),
                role: state.role,
                joined_at: state.joined_at,
            });
        }
        self.rooms
            .insert(room_id.clone(), Slot::Active(Box::new(room)));
        let frame = ServerFrame::Direct(Direct {
            id: reply.id,
            room: room_id.clone(),
            peer,
        });
        let done = Done::Reply {
            room: room_id.clone(),
            reply: Some(reply),
            frame: Some(Box::new(frame)),
            push: None,
            then: Then::Nothing,
        };
        self.write(&room_id, muts, Some(done));
    }

    async fn on_active(&mut self, room_id: RoomId, cmd: Command) {
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
            } => {
                self.join(&room_id, session, user, since, invite, reply)
                    .await
            }
            Command::Leave { session, reply } => {
                self.unsubscribe(&room_id, session);
                reply.send(&ServerFrame::Left(crate::proto::server::Left {
                    id: reply.id,
                    room: room_id,
                }));
            }
            Command::Disconnect { session } => self.unsubscribe(&room_id, session),
            Command::LeaveRoom { user, reply } => self.leave_room(&room_id, user, reply),
            Command::Send { user, msg, reply } => self.send(&room_id, user, msg, reply).await,
            Command::Edit {
                user,
                seq,
                body,
                reply,
            } => self.edit(&room_id, user, seq, body, reply).await,
            Command::Delete { user, seq, reply } => self.delete(&room_id, user, seq, reply).await,
            Command::React {
                user,
                seq,
                emoji,
                on,
                reply,
            } => self.react(&room_id, user, seq, emoji, on, reply).await,
            Command::History {
                user,
                range,
                limit,
                reply,
            } => self.history(&room_id, user, range, limit, reply),
            Command::Read { user, seq, reply } => self.read(&room_id, user, seq, reply).await,
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

    /// Subscribes a session (the membership is in place) and answers `joined`;
    /// with `since`, replays the stored events after it before going live.
    pub(super) async fn subscribe(
        &mut self,
        room_id: &RoomId,
        session: SessionId,
        user: UserId,
        since: Option<u64>,
        reply: ReplyTo,
    ) {
        let presence_list_max = self.cfg.presence_list_max;
        self.cluster_subscribe(room_id).await;
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        let role = room.role(&user).unwrap_or(Role::Member);
        let last = room.last_seq;
        let member_ids: Vec<UserId> = room.members.keys().cloned().collect();
        let members = member_ids.len() as u32;
        let replay_from = since.filter(|s| *s < last);
        let complete = since.map(|s| room.first_seq <= 1 || s.saturating_add(1) >= room.first_seq);
        room.subscribers.insert(
            session,
            Sub {
                user: user.clone(),
                outbox: reply.outbox().clone(),
                held: replay_from.map(|_| Vec::new()),
            },
        );
        // Who is online (the presence seam answers for every node).
        let statuses = self.presence.get_many(&member_ids).await;
        let online: Vec<UserId> = statuses
            .into_iter()
            .filter(|p| p.status != crate::proto::types::Status::Offline)
            .map(|p| p.user)
            .collect();
        let online_count = online.len() as u32;
        reply.send(&ServerFrame::Joined(Joined {
            id: reply.id,
            room: room_id.clone(),
            seq: last,
            complete,
            role,
            online: (member_ids.len() <= presence_list_max).then_some(online),
            online_count,
            members,
        }));
        if let Some(from) = replay_from {
            self.spawn_replay(room_id.clone(), session, reply.outbox().clone(), from, last);
        }
    }

    /// Multi-node: before a room's first local subscriber, start receiving its
    /// traffic from other nodes and catch up with the seq they reached.
    async fn cluster_subscribe(&mut self, room_id: &RoomId) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        match self.active(room_id) {
            Some(room) if !room.bus_subscribed => {}
            _ => return,
        }
        if let Err(e) = cluster.subscribe(room_id).await {
            tracing::warn!(room = %room_id, error = %e, "cluster subscribe failed; live traffic from other nodes may be missed");
            return;
        }
        let current = cluster.current_seq(room_id).await;
        let Some(room) = self.active(room_id) else {
            return;
        };
        room.bus_subscribed = true;
        if let Ok(cur) = current {
            // Events up to `cur` happened elsewhere while nobody here listened: they are
            // in the shared store (history), not pushed.
            if cur > room.last_seq && room.pending.is_empty() {
                room.last_seq = cur;
                room.next_seq = room.next_seq.max(cur + 1);
            }
        }
    }

    /// Traffic from another node for a room with local subscribers.
    fn remote(&mut self, room_id: &RoomId, ephemeral: bool, payload: Bytes) {
        let outbox_limit = self.cfg.outbox_bytes;
        let Some(room) = self.active(room_id) else {
            return;
        };
        if ephemeral {
            room.fan_out_ephemeral(&payload, None);
            return;
        }
        let mut chunk = BytesMut::new();
        let mut rest = payload;
        while rest.len() >= 8 + crate::proto::HEADER_LEN {
            let seq = u64::from_be_bytes([
                rest[0], rest[1], rest[2], rest[3], rest[4], rest[5], rest[6], rest[7],
            ]);
            let len = u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize;
            let end = 8 + crate::proto::HEADER_LEN + len;
            if rest.len() < end {
                tracing::warn!(room = %room_id, "truncated event from another node");
                break;
            }
            let framed = rest.slice(8..end);
            rest = rest.slice(end..);
            room.deliver(seq, framed, &mut chunk);
        }
        if !chunk.is_empty() {
            room.fan_out(&chunk.freeze(), outbox_limit);
        }
    }

    /// Multi-node housekeeping on the tick: skip gaps that never filled, stop
    /// receiving rooms nobody here listens to.
    pub(super) fn cluster_tick(&mut self) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let gap_timeout = self.cfg.gap_timeout;
        let outbox_limit = self.cfg.outbox_bytes;
        let now = tokio::time::Instant::now();
        for (room_id, slot) in self.rooms.iter_mut() {
            let Slot::Active(room) = slot else { continue };
            if room
                .gap_since
                .is_some_and(|t| now.duration_since(t) >= gap_timeout)
            {
                let mut chunk = BytesMut::new();
                room.skip_gap(&mut chunk);
                if !chunk.is_empty() {
                    room.fan_out(&chunk.freeze(), outbox_limit);
                }
            }
            if room.bus_subscribed && room.subscribers.is_empty() {
                room.bus_subscribed = false;
                cluster.unsubscribe(room_id);
            }
        }
    }

    /// Allocates the next seq of a room: locally on a single node, through the
    /// cluster (shared by every node) otherwise.
    pub(super) async fn alloc_seq(&mut self, room_id: &RoomId) -> Result<u64, WireError> {
        let cluster = self.cluster.clone();
        let Some(room) = self.active(room_id) else {
            return Err(not_found(room_id));
        };
        let Some(cluster) = cluster else {
            let seq = room.next_seq;
            room.next_seq += 1;
            return Ok(seq);
        };
        let floor = room.next_seq - 1;
        let seq = cluster.alloc_seq(room_id, floor).await.map_err(|e| {
            tracing::warn!(room = %room_id, error = %e, "seq allocation failed");
            WireError::new(
                ErrorCode::Unavailable,
                "the cluster backend (Redis) is unavailable; retry",
            )
            .with_retry(1000)
        })?;
        if let Some(room) = self.active(room_id) {
            room.next_seq = room.next_seq.max(seq + 1);
        }
        Ok(seq)
    }

    /// Ends one session's subscription; records what its user has been delivered.
    pub(super) fn unsubscribe(&mut self, room_id: &RoomId, session: SessionId) {
        let Some(room) = self.active(room_id) else {
            return;
        };
        let Some(sub) = room.subscribers.swap_remove(&session) else {
            return;
        };
        let last = room.last_seq;
        if !room.user_is_subscribed(&sub.user) {
            // Their last session here is gone: so is their typing indicator.
            self.end_typing(room_id, &sub.user);
            let Some(room) = self.active(room_id) else {
                return;
            };
            if let Some(m) = room.members.get_mut(&sub.user) {
                if m.delivered_seq < last {
                    m.delivered_seq = last;
                    let put = Mutation::SetDelivered {
                        room: room_id.clone(),
                        user: sub.user,
                        seq: last,
                    };
                    self.write(room_id, [put], None);
                }
            }
        }
    }

    fn complete(&mut self, done: Vec<Done>, rooms: Vec<RoomId>, result: StoreResult<()>) {
        if let Err(e) = &result {
            tracing::error!(shard = self.index, error = %e, "store write failed");
        }
        let ok = result.is_ok();
        let failure = result.err();
        let outbox_limit = self.cfg.outbox_bytes;
        let (mut messages, mut events) = (0u64, 0u64);
        // Each room's new pushes of this batch, back to back.
        let mut chunks: Vec<(RoomId, BytesMut)> = Vec::new();
        // Multi-node: what to publish per room, and new messages for offline notices.
        let mut published: Vec<(RoomId, BytesMut)> = Vec::new();
        let mut notices: Vec<(RoomId, Vec<Notice>)> = Vec::new();
        for d in done {
            let room_id = match &d {
                Done::Event { room, .. }
                | Done::Subscribe { room, .. }
                | Done::Reply { room, .. } => room.clone(),
            };
            match d {
                Done::Event {
                    seq,
                    framed,
                    ack,
                    notice,
                    retry,
                    ..
                } => {
                    let Some(Slot::Active(r)) = self.rooms.get_mut(&room_id) else {
                        continue;
                    };
                    if ok {
                        events += 1;
                        match ack {
                            Ack::Sent {
                                reply,
                                ts,
                                local_id,
                                from,
                            } => {
                                messages += 1;
                                let waiters = match &local_id {
                                    Some(lid) => r.dedupe.commit(&from, lid),
                                    None => Vec::new(),
                                };
                                reply.send(&sent(reply.id, &room_id, seq, ts, local_id.clone()));
                                for w in waiters {
                                    w.send(&sent(w.id, &room_id, seq, ts, local_id.clone()));
                                }
                            }
                            Ack::Ok(reply) => reply.ok(&room_id, Some(seq)),
                        }
                        if self.cluster.is_some() {
                            let p = chunk_for(&mut published, &room_id);
                            p.extend_from_slice(&seq.to_be_bytes());
                            p.extend_from_slice(&framed);
                            if let Some(n) = notice {
                                match notices.iter_mut().find(|(id, _)| *id == room_id) {
                                    Some((_, v)) => v.push(n),
                                    None => notices.push((room_id.clone(), vec![n])),
                                }
                            }
                        }
                        let chunk = chunk_for(&mut chunks, &room_id);
                        r.deliver(seq, framed, chunk);
                        if chunk.len() >= MAX_CHUNK {
                            flush_chunk(&mut self.rooms, &mut chunks, &room_id, outbox_limit);
                        }
                    } else {
                        // The seq is burnt: never reused, skipped by live delivery.
                        let chunk = chunk_for(&mut chunks, &room_id);
                        r.deliver(seq, Bytes::new(), chunk);
                        let unknown = failure.as_ref().is_none_or(|f| f.outcome_unknown());
                        let e = match &failure {
                            Some(f) => f.to_wire("the change"),
                            None => WireError::new(
                                ErrorCode::Internal,
                                "could not store the change; retry",
                            ),
                        };
                        match ack {
                            Ack::Sent {
                                reply,
                                local_id,
                                from,
                                ..
                            } => {
                                if let Some(lid) = &local_id {
                                    let waiters = match retry {
                                        Some(retry) if unknown => {
                                            r.dedupe.uncertain(&from, lid, framed, retry)
                                        }
                                        _ => r.dedupe.forget(&from, lid),
                                    };
                                    for w in waiters {
                                        w.error(e.clone());
                                    }
                                }
                                reply.error(e);
                            }
                            Ack::Ok(reply) => reply.error(e),
                        }
                    }
                }
                Done::Subscribe {
                    session,
                    user,
                    since,
                    reply,
                    ..
                } => {
                    // Deliver what this batch already committed before the joiner is
                    // added, so `joined.seq` and the pushes that follow line up exactly.
                    flush_chunk(&mut self.rooms, &mut chunks, &room_id, outbox_limit);
                    if ok {
                        // `subscribe` awaits presence; run it on the next turn of the loop.
                        self.pending_subscribes.push((
                            room_id.clone(),
                            session,
                            user,
                            since,
                            reply,
                        ));
                    } else {
                        reply.error(match &failure {
                            Some(f) => f.to_wire("the membership"),
                            None => WireError::new(
                                ErrorCode::Internal,
                                "could not store the membership; retry",
                            ),
                        });
                    }
                }
                Done::Reply {
                    reply,
                    frame,
                    push,
                    then,
                    ..
                } => {
                    if !ok {
                        if let Some(reply) = reply {
                            reply.error(match &failure {
                                Some(f) => f.to_wire("the change"),
                                None => WireError::new(
                                    ErrorCode::Internal,
                                    "could not store the change; retry",
                                ),
                            });
                        }
                        continue;
                    }
                    if let (Some(reply), Some(frame)) = (&reply, &frame) {
                        reply.send(frame);
                    }
                    if let Some(push) = push {
                        crate::proto::encode_into(chunk_for(&mut chunks, &room_id), &push);
                        if let Some(c) = &self.cluster {
                            c.publish_ephemeral(&room_id, crate::proto::encode(&push));
                        }
                    }
                    match then {
                        Then::Nothing => {}
                        Then::DropUser(user) => {
                            flush_chunk(&mut self.rooms, &mut chunks, &room_id, outbox_limit);
                            if let Some(Slot::Active(r)) = self.rooms.get_mut(&room_id) {
                                r.drop_user(&user);
                            }
                        }
                        Then::DropAll => {
                            flush_chunk(&mut self.rooms, &mut chunks, &room_id, outbox_limit);
                            if let Some(Slot::Active(r)) = self.rooms.get_mut(&room_id) {
                                r.subscribers.clear();
                            }
                        }
                    }
                }
            }
        }
        while let Some((room, _)) = chunks.first() {
            let room = room.clone();
            flush_chunk(&mut self.rooms, &mut chunks, &room, outbox_limit);
        }
        crate::metrics::committed(messages, events);
        if let Some(c) = &self.cluster {
            for (room, events) in published {
                c.publish_events(&room, events.freeze());
            }
            for (room, messages) in notices {
                if let Some(Slot::Active(r)) = self.rooms.get(&room) {
                    c.notify_offline(&room, r.members.keys().cloned().collect(), messages);
                }
            }
        }
        for room_id in rooms {
            let reload = match self.rooms.get_mut(&room_id) {
                Some(Slot::Active(r)) => {
                    r.inflight = r.inflight.saturating_sub(1);
                    if !ok {
                        r.needs_reload = true;
                    }
                    r.inflight == 0 && r.needs_reload
                }
                _ => false,
            };
            if reload {
                // Re-read the truth (seqs, members) after a failed write.
                if let Some(Slot::Active(r)) = self.rooms.get_mut(&room_id) {
                    r.needs_reload = false;
                }
                self.spawn_load(room_id);
            }
        }
    }

    /// Moves the rooms' fan-out counts to `/metrics` (on the tick, before
    /// unloading, at exit).
    fn report_fanout(&mut self) {
        let (mut pushes, mut bytes) = (0, 0);
        for slot in self.rooms.values_mut() {
            if let Slot::Active(r) = slot {
                let (p, b) = std::mem::take(&mut r.fanned);
                pushes += p;
                bytes += b;
            }
        }
        crate::metrics::fanned_out(pushes, bytes);
    }

    fn unload_idle(&mut self) {
        self.report_fanout();
        let now = Instant::now();
        let idle = self.cfg.idle_unload;
        self.rooms.retain(|_, slot| match slot {
            Slot::Active(r) => {
                !(r.subscribers.is_empty()
                    && r.inflight == 0
                    && now.duration_since(r.last_active) >= idle)
            }
            Slot::Loading(_) => true,
        });
    }
}

fn chunk_for<'a>(chunks: &'a mut Vec<(RoomId, BytesMut)>, room: &RoomId) -> &'a mut BytesMut {
    match chunks.iter().position(|(id, _)| id == room) {
        Some(i) => &mut chunks[i].1,
        None => {
            chunks.push((room.clone(), BytesMut::with_capacity(256)));
            let last = chunks.len() - 1;
            &mut chunks[last].1
        }
    }
}

pub(super) fn flush_chunk(
    rooms: &mut HashMap<RoomId, Slot>,
    chunks: &mut Vec<(RoomId, BytesMut)>,
    room: &RoomId,
    outbox_limit: usize,
) {
    let Some(pos) = chunks.iter().position(|(id, _)| id == room) else {
        return;
    };
    let (_, chunk) = chunks.swap_remove(pos);
    if let Some(Slot::Active(r)) = rooms.get_mut(room) {
        r.fan_out(&chunk.freeze(), outbox_limit);
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
