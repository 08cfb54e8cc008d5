//! A room shard: one task that owns a subset of rooms (by hash) and serves
//! every command for them, so room state needs no locks.
//!
//! Per wake-up the shard drains its inbox, turns the commands into one batch
//! of store mutations plus the completions that wait on it, and submits the
//! batch. Batches complete in submission order; on completion the shard
//! acknowledges senders, then encodes each room's new messages once into one
//! chunk and hands that chunk to every subscriber's outbox.

use super::command::{Command, ReplyTo};
use super::dedupe::Seen;
use super::room::Room;
use crate::ids::{now_ms, RoomId, SessionId, UserId};
use crate::proto::server::{Created, HistoryPage, Joined, Left, Message, Sent};
use crate::proto::{self, ErrorCode, ServerFrame, WireError};
use crate::store::{LoadedRoom, MessageStore, Mutation, Role, StoreResult};
use bytes::BytesMut;
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
    /// Finish in-flight writes, then stop.
    Shutdown(oneshot::Sender<()>),
}

#[derive(Clone, Debug)]
pub struct ShardConfig {
    pub dedupe_window: usize,
    /// A room with no subscribers and no writes in flight is unloaded after this long.
    pub idle_unload: Duration,
}

enum Slot {
    Loading(Vec<Command>),
    Active(Box<Room>),
}

/// Work that waits for a store batch to commit.
enum Done {
    Created {
        room: RoomId,
        reply: ReplyTo,
    },
    Joined {
        room: RoomId,
        session: SessionId,
        user: UserId,
        reply: ReplyTo,
    },
    Message {
        msg: Message,
        reply: ReplyTo,
    },
}

type Inflight = BoxFuture<'static, (Vec<Done>, StoreResult<()>)>;

/// A room's fan-out chunk is handed out once it reaches this size, so one
/// push never carries more than about this much to an outbox.
const MAX_CHUNK: usize = 64 * 1024;

/// Most inbox messages handled per wake-up (the shard's work budget).
const INBOX_BATCH: usize = 512;

pub struct Shard {
    index: usize,
    cfg: ShardConfig,
    store: Arc<dyn MessageStore>,
    rx: mpsc::Receiver<ShardMsg>,
    /// For load completions to come back in.
    tx: mpsc::WeakSender<ShardMsg>,
    rooms: HashMap<RoomId, Slot>,
    batch: Vec<Mutation>,
    done: Vec<Done>,
    inflight: FuturesOrdered<Inflight>,
}

impl Shard {
    pub fn new(
        index: usize,
        cfg: ShardConfig,
        store: Arc<dyn MessageStore>,
        rx: mpsc::Receiver<ShardMsg>,
        tx: mpsc::WeakSender<ShardMsg>,
    ) -> Self {
        Self {
            index,
            cfg,
            store,
            rx,
            tx,
            rooms: HashMap::new(),
            batch: Vec::new(),
            done: Vec::new(),
            inflight: FuturesOrdered::new(),
        }
    }

    pub async fn run(mut self) {
        let mut inbox = Vec::with_capacity(INBOX_BATCH);
        let mut sweep = tokio::time::interval(self.cfg.idle_unload.max(Duration::from_millis(100)));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping: Option<oneshot::Sender<()>> = None;
        loop {
            if stopping.is_some() && self.inflight.is_empty() && self.batch.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                Some((done, result)) = self.inflight.next(), if !self.inflight.is_empty() => {
                    self.complete(done, result);
                }
                n = self.rx.recv_many(&mut inbox, INBOX_BATCH), if stopping.is_none() => {
                    if n == 0 {
                        stopping = Some(oneshot::channel().0);
                        continue;
                    }
                    for msg in inbox.drain(..) {
                        match msg {
                            ShardMsg::Room(room, cmd) => self.command(room, cmd).await,
                            ShardMsg::Loaded(room, result) => self.loaded(room, result).await,
                            ShardMsg::Shutdown(tx) => stopping = Some(tx),
                        }
                    }
                    self.submit();
                }
                _ = sweep.tick() => self.unload_idle(),
            }
        }
        if let Some(tx) = stopping {
            let _ = tx.send(());
        }
        tracing::debug!(shard = self.index, "shard stopped");
    }

    fn submit(&mut self) {
        if self.batch.is_empty() {
            debug_assert!(self.done.is_empty());
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let done = std::mem::take(&mut self.done);
        let store = self.store.clone();
        self.inflight.push_back(Box::pin(async move {
            let result = store.apply(batch).await;
            (done, result)
        }));
    }

    async fn command(&mut self, room_id: RoomId, cmd: Command) {
        if let Command::Create { meta, reply } = cmd {
            return self.create(room_id, meta, reply);
        }
        match self.rooms.get_mut(&room_id) {
            Some(Slot::Active(room)) => {
                room.last_active = Instant::now();
                self.on_active(room_id, cmd).await;
            }
            Some(Slot::Loading(queue)) => queue.push(cmd),
            None => {
                if let Command::Disconnect { .. } = cmd {
                    return;
                }
                self.rooms.insert(room_id.clone(), Slot::Loading(vec![cmd]));
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
        }
    }

    async fn loaded(&mut self, room_id: RoomId, result: StoreResult<Option<LoadedRoom>>) {
        let queue = match self.rooms.remove(&room_id) {
            Some(Slot::Loading(q)) => q,
            Some(active) => {
                self.rooms.insert(room_id, active);
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
                    self.on_active(room_id.clone(), cmd).await;
                }
            }
            Ok(None) => {
                for cmd in queue {
                    if let Some(r) = cmd.reply() {
                        r.error(WireError::new(
                            ErrorCode::NotFound,
                            format!("no room {room_id}"),
                        ));
                    }
                }
            }
            Err(e) => {
                tracing::error!(room = %room_id, error = %e, "loading room failed");
                for cmd in queue {
                    if let Some(r) = cmd.reply() {
                        r.error(WireError::new(
                            ErrorCode::Internal,
                            "could not load the room; retry",
                        ));
                    }
                }
            }
        }
    }

    fn create(&mut self, room_id: RoomId, meta: crate::store::RoomMeta, reply: ReplyTo) {
        if self.rooms.contains_key(&room_id) {
            reply.error(WireError::new(
                ErrorCode::Internal,
                "room id collision; retry",
            ));
            return;
        }
        let owner = meta.created_by.clone();
        let mut room = Room::new(meta.clone(), self.cfg.dedupe_window);
        room.inflight += 1;
        self.rooms
            .insert(room_id.clone(), Slot::Active(Box::new(room)));
        self.batch.push(Mutation::CreateRoom(meta));
        self.batch.push(Mutation::SetMember {
            room: room_id.clone(),
            user: owner,
            role: Role::Owner,
        });
        self.done.push(Done::Created {
            room: room_id,
            reply,
        });
    }

    async fn on_active(&mut self, room_id: RoomId, cmd: Command) {
        let Some(Slot::Active(room)) = self.rooms.get_mut(&room_id) else {
            return;
        };
        match cmd {
            Command::Create { reply, .. } => {
                reply.error(WireError::new(
                    ErrorCode::Internal,
                    "room id collision; retry",
                ));
            }
            Command::Join {
                session,
                user,
                reply,
            } => {
                if room.is_member(&user) {
                    room.subscribers.insert(session, reply.outbox.clone());
                    reply.send(&ServerFrame::Joined(Joined {
                        id: reply.id,
                        room: room_id,
                        seq: room.last_seq,
                    }));
                } else if room.meta.private {
                    reply.error(WireError::new(
                        ErrorCode::Forbidden,
                        format!("{room_id} is private; you need an invite"),
                    ));
                } else {
                    // First join of a public room: record the membership, subscribe once it is stored.
                    room.members.insert(user.clone(), Role::Member);
                    room.inflight += 1;
                    self.batch.push(Mutation::SetMember {
                        room: room_id.clone(),
                        user: user.clone(),
                        role: Role::Member,
                    });
                    self.done.push(Done::Joined {
                        room: room_id,
                        session,
                        user,
                        reply,
                    });
                }
            }
            Command::Leave { session, reply } => {
                room.subscribers.swap_remove(&session);
                reply.send(&ServerFrame::Left(Left {
                    id: reply.id,
                    room: room_id,
                }));
            }
            Command::Disconnect { session } => {
                room.subscribers.swap_remove(&session);
            }
            Command::History {
                user,
                before,
                limit,
                reply,
            } => {
                if !room.can_read(&user) {
                    reply.error(WireError::new(
                        ErrorCode::Forbidden,
                        format!("{room_id} is private"),
                    ));
                    return;
                }
                let store = self.store.clone();
                tokio::spawn(async move {
                    match store.history(&room_id, before, limit as usize).await {
                        Ok((messages, more)) => {
                            reply.send(&ServerFrame::History(HistoryPage {
                                id: reply.id,
                                room: room_id,
                                messages,
                                more,
                            }));
                        }
                        Err(e) => {
                            tracing::error!(room = %room_id, error = %e, "history read failed");
                            reply.error(WireError::new(
                                ErrorCode::Internal,
                                "history read failed; retry",
                            ));
                        }
                    }
                });
            }
            Command::Send {
                user,
                body,
                local_id,
                reply,
            } => {
                if !room.is_member(&user) {
                    let why = if room.meta.private {
                        "is private"
                    } else {
                        "must be joined before sending"
                    };
                    reply.error(WireError::new(
                        ErrorCode::Forbidden,
                        format!("{room_id} {why}"),
                    ));
                    return;
                }
                if let Some(lid) = &local_id {
                    match room.dedupe.get_mut(&user, lid) {
                        Some(Seen::Committed { seq, ts }) => {
                            reply.send(&sent(reply.id, &room_id, *seq, *ts, local_id.clone()));
                            return;
                        }
                        Some(Seen::Pending { waiters, .. }) => {
                            waiters.push(reply);
                            return;
                        }
                        None if !room.dedupe_complete => {
                            // Older than the window: ask the store. Rare (a retry after
                            // thousands of newer messages), so awaiting inline is fine.
                            match self.store.find_local_id(&room_id, &user, lid).await {
                                Ok(Some((seq, ts))) => {
                                    reply.send(&sent(
                                        reply.id,
                                        &room_id,
                                        seq,
                                        ts,
                                        local_id.clone(),
                                    ));
                                    return;
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    tracing::error!(room = %room_id, error = %e, "local_id lookup failed");
                                    reply.error(WireError::new(
                                        ErrorCode::Internal,
                                        "store lookup failed; retry",
                                    ));
                                    return;
                                }
                            }
                        }
                        None => {}
                    }
                }
                // The lookup above may have awaited: fetch the room again.
                let Some(Slot::Active(room)) = self.rooms.get_mut(&room_id) else {
                    reply.error(WireError::new(ErrorCode::Internal, "room unloaded; retry"));
                    return;
                };
                let seq = room.next_seq;
                room.next_seq += 1;
                room.inflight += 1;
                let ts = now_ms();
                if let Some(lid) = &local_id {
                    let complete = room.dedupe.insert(
                        user.clone(),
                        lid.clone(),
                        Seen::Pending {
                            seq,
                            ts,
                            waiters: Vec::new(),
                        },
                    );
                    room.dedupe_complete &= complete;
                }
                let msg = Message {
                    room: room_id,
                    seq,
                    from: user,
                    body,
                    ts,
                    local_id,
                };
                self.batch.push(Mutation::AppendMessage(msg.clone()));
                self.done.push(Done::Message { msg, reply });
            }
        }
    }

    fn complete(&mut self, done: Vec<Done>, result: StoreResult<()>) {
        if let Err(e) = &result {
            tracing::error!(shard = self.index, error = %e, "store write failed");
        }
        let ok = result.is_ok();
        // Each room's new messages of this batch, encoded once, back to back.
        let mut chunks: Vec<(RoomId, BytesMut)> = Vec::new();
        for d in done {
            match d {
                Done::Created { room, reply } => {
                    let Some(Slot::Active(r)) = self.rooms.get_mut(&room) else {
                        continue;
                    };
                    r.inflight -= 1;
                    if ok {
                        reply.send(&ServerFrame::Created(Created {
                            id: reply.id,
                            room: room.clone(),
                            name: r.meta.name.clone(),
                            private: r.meta.private,
                        }));
                    } else {
                        reply.error(WireError::new(
                            ErrorCode::Internal,
                            "could not store the room; retry",
                        ));
                        if r.inflight == 0 {
                            self.rooms.remove(&room);
                        }
                    }
                }
                Done::Joined {
                    room,
                    session,
                    user,
                    reply,
                } => {
                    // Deliver what this batch already committed before the joiner is added,
                    // so `joined.seq` and the pushes that follow line up exactly.
                    flush_chunk(&mut self.rooms, &mut chunks, &room);
                    let Some(Slot::Active(r)) = self.rooms.get_mut(&room) else {
                        continue;
                    };
                    r.inflight -= 1;
                    if ok {
                        r.subscribers.insert(session, reply.outbox.clone());
                        reply.send(&ServerFrame::Joined(Joined {
                            id: reply.id,
                            room,
                            seq: r.last_seq,
                        }));
                    } else {
                        r.members.remove(&user);
                        reply.error(WireError::new(
                            ErrorCode::Internal,
                            "could not store the membership; retry",
                        ));
                    }
                }
                Done::Message { msg, reply } => {
                    let mut full = None;
                    let Some(Slot::Active(r)) = self.rooms.get_mut(&msg.room) else {
                        continue;
                    };
                    r.inflight -= 1;
                    if ok {
                        r.last_seq = r.last_seq.max(msg.seq);
                        let waiters = match &msg.local_id {
                            Some(lid) => r.dedupe.commit(&msg.from, lid),
                            None => Vec::new(),
                        };
                        reply.send(&sent(
                            reply.id,
                            &msg.room,
                            msg.seq,
                            msg.ts,
                            msg.local_id.clone(),
                        ));
                        for w in waiters {
                            w.send(&sent(
                                w.id,
                                &msg.room,
                                msg.seq,
                                msg.ts,
                                msg.local_id.clone(),
                            ));
                        }
                        let room_id = msg.room.clone();
                        let chunk = match chunks.iter_mut().position(|(id, _)| *id == room_id) {
                            Some(i) => &mut chunks[i].1,
                            None => {
                                chunks.push((room_id.clone(), BytesMut::with_capacity(256)));
                                &mut chunks.last_mut().expect("just pushed").1
                            }
                        };
                        proto::encode_into(chunk, &ServerFrame::Msg(msg));
                        if chunk.len() >= MAX_CHUNK {
                            full = Some(room_id);
                        }
                    } else {
                        let waiters = match &msg.local_id {
                            Some(lid) => r.dedupe.forget(&msg.from, lid),
                            None => Vec::new(),
                        };
                        let e = WireError::new(
                            ErrorCode::Internal,
                            "could not store the message; retry with the same local_id",
                        );
                        reply.error(e.clone());
                        for w in waiters {
                            w.error(e.clone());
                        }
                    }
                    // With nothing in flight, the next seq follows the last stored one,
                    // so a failed write leaves no gap.
                    if r.inflight == 0 {
                        r.next_seq = r.last_seq + 1;
                    }
                    if let Some(room) = full {
                        flush_chunk(&mut self.rooms, &mut chunks, &room);
                    }
                }
            }
        }
        while let Some((room, _)) = chunks.first() {
            let room = room.clone();
            flush_chunk(&mut self.rooms, &mut chunks, &room);
        }
    }

    fn unload_idle(&mut self) {
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

fn flush_chunk(
    rooms: &mut HashMap<RoomId, Slot>,
    chunks: &mut Vec<(RoomId, BytesMut)>,
    room: &RoomId,
) {
    let Some(pos) = chunks.iter().position(|(id, _)| id == room) else {
        return;
    };
    let (_, chunk) = chunks.swap_remove(pos);
    if let Some(Slot::Active(r)) = rooms.get_mut(room) {
        r.fan_out(&chunk.freeze());
    }
}

fn sent(id: u64, room: &RoomId, seq: u64, ts: u64, local_id: Option<String>) -> ServerFrame {
    ServerFrame::Sent(Sent {
        id,
        room: room.clone(),
        seq,
        ts,
        local_id,
    })
}
