//! Write batches and their completion: the batch a wake-up builds, the
//! in-flight store commits (completed in submission order), acknowledgements,
//! and, after a fault, finishing the writes a failed shard had submitted.

use super::fanout::{flush_chunk, Chunks};
use super::{sent, Ack, Done, Shard, Slot, Then, FAULT_DRAIN, MAX_CHUNK};
use crate::ids::RoomId;
use crate::proto::{ErrorCode, WireError};
use crate::router::cluster::Notice;
use crate::router::command::abandoning;
use crate::router::room::MAX_HELD_SEQS;
use crate::store::{Mutation, StoreError, StoreResult, TIMEOUT_RETRY_MS};

/// Requests the batch waiting for a commit slot may hold, per allowed commit.
const PENDING_PER_COMMIT: usize = 64;
use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, StreamExt};
use std::collections::HashSet;
use std::time::Instant;

impl Shard {
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

    /// Submits the batch being built, unless `--shard-max-commits` commits
    /// are in flight: then it waits (bounded by [`pending_full`](Self::pending_full)
    /// and [`expire_pending`](Self::expire_pending)) for one to complete.
    pub(super) fn submit(&mut self) {
        if self.batch.is_empty() {
            debug_assert!(self.done.is_empty());
            return;
        }
        if self.inflight.len() >= self.cfg.max_commits {
            return;
        }
        self.batch_since = None;
        let batch = std::mem::take(&mut self.batch);
        let done = std::mem::take(&mut self.done);
        let rooms = self.batch_rooms.take();
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

    /// Queues a write for `room` whose completion is `done`.
    pub(in crate::router) fn write(
        &mut self,
        room: &RoomId,
        mutations: impl IntoIterator<Item = Mutation>,
        done: Option<Done>,
    ) {
        if self.batch.is_empty() {
            self.batch_since = Some(Instant::now());
        }
        self.batch.extend(mutations);
        if let Some(d) = done {
            self.done.push(d);
        }
        self.batch_rooms.insert(room);
    }

    /// Whether the batch waiting for a commit slot holds as many requests as
    /// it may (64 per allowed commit): new writes are refused until it drains.
    pub(super) fn pending_full(&self) -> bool {
        self.done.len() >= PENDING_PER_COMMIT * self.cfg.max_commits
    }

    /// A batch that has waited for a commit slot longer than the store
    /// deadline is given up: nothing of it was sent to the store, so its
    /// requests get `unavailable` with a retry hint (a retried send with the
    /// same `local_id` is a new send), its seqs are burnt, and its rooms
    /// reload from the store like after any failed write.
    pub(super) fn expire_pending(&mut self) {
        let Some(since) = self.batch_since else {
            return;
        };
        if since.elapsed() < self.cfg.commit_window || self.inflight.len() < self.cfg.max_commits {
            return;
        }
        tracing::warn!(
            shard = self.index,
            requests = self.done.len(),
            "the store did not take a write batch within its deadline; answering unavailable"
        );
        self.batch_since = None;
        self.batch.clear();
        let done = std::mem::take(&mut self.done);
        let rooms = self.batch_rooms.take();
        for room in &rooms {
            if let Some(Slot::Active(r)) = self.rooms.get_mut(room) {
                r.inflight += 1;
            }
        }
        let overloaded = StoreError::Unavailable {
            why: "the store is not keeping up with this shard's writes".into(),
            retry_after_ms: TIMEOUT_RETRY_MS,
        };
        self.complete(done, rooms, Err(overloaded));
    }

    pub(super) fn complete(
        &mut self,
        done: Vec<Done>,
        rooms: Vec<RoomId>,
        result: StoreResult<()>,
    ) {
        if let Err(e) = &result {
            tracing::error!(shard = self.index, error = %e, "store write failed");
        }
        let ok = result.is_ok();
        let failure = result.err();
        let outbox_limit = self.cfg.outbox_bytes;
        let (mut messages, mut events) = (0u64, 0u64);
        // Each room's new pushes of this batch, back to back.
        let mut chunks = Chunks::default();
        // Multi-node: what to publish per room, and new messages for offline notices.
        let mut published = Chunks::default();
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
                        // (A retried send of unknown outcome fills the seq held for it.)
                        r.held.remove(&seq);
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
                            let p = published.of(&room_id);
                            p.extend_from_slice(&seq.to_be_bytes());
                            p.extend_from_slice(&framed);
                            if let Some(n) = notice {
                                match notices.iter_mut().find(|(id, _)| *id == room_id) {
                                    Some((_, v)) => v.push(n),
                                    None => notices.push((room_id.clone(), vec![n])),
                                }
                            }
                        }
                        let chunk = chunks.of(&room_id);
                        r.deliver(seq, framed, chunk);
                        if chunk.len() >= MAX_CHUNK {
                            flush_chunk(&mut self.rooms, &mut chunks, &room_id, outbox_limit);
                        }
                    } else {
                        let unknown = failure.as_ref().is_none_or(|f| f.outcome_unknown());
                        // A send of unknown outcome keeps its seq for the retry with
                        // its local_id: live delivery holds at it (bounded per room
                        // and by --gap-timeout-ms), so the retried message is pushed
                        // once and in order. Any other failed seq is burnt: never
                        // reused, passed over by live delivery.
                        let hold = unknown
                            && retry.is_some()
                            && seq > r.last_seq
                            && matches!(
                                &ack,
                                Ack::Sent {
                                    local_id: Some(_),
                                    ..
                                }
                            )
                            && (r.held.contains(&seq) || r.held.len() < MAX_HELD_SEQS);
                        if hold {
                            r.held.insert(seq);
                        } else {
                            r.held.remove(&seq);
                            let chunk = chunks.of(&room_id);
                            r.deliver(seq, Bytes::new(), chunk);
                        }
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
                        // (Its presence look-up goes off the loop; the session is added
                        // when that is back, after this batch's pushes went out.)
                        self.subscribe(&room_id, session, user, since, reply);
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
                        crate::proto::encode_into(chunks.of(&room_id), &push);
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
        while let Some(room) = chunks.any_room() {
            flush_chunk(&mut self.rooms, &mut chunks, &room, outbox_limit);
        }
        crate::metrics::committed(messages, events);
        if let Some(c) = &self.cluster {
            for (room, events) in published.into_list() {
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
}

/// The rooms written by the batch being built, in first-write order, with an
/// O(1) membership test (a batch may touch hundreds of small rooms).
#[derive(Default)]
pub(super) struct BatchRooms {
    list: Vec<RoomId>,
    seen: HashSet<RoomId>,
}

impl BatchRooms {
    fn insert(&mut self, room: &RoomId) {
        if !self.seen.contains(room) {
            self.seen.insert(room.clone());
            self.list.push(room.clone());
        }
    }

    fn take(&mut self) -> Vec<RoomId> {
        self.seen.clear();
        std::mem::take(&mut self.list)
    }

    pub(super) fn clear(&mut self) {
        self.seen.clear();
        self.list.clear();
    }
}
