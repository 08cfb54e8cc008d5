//! Off-loop I/O. The shard loop serves many rooms and never awaits a store
//! read or a Redis call: [`Shard::start_io`] spawns the call as a task, and
//! its result comes back through the shard's inbox ([`ShardMsg::Io`]) with the
//! continuation that finishes the command. While a room has an operation
//! out, its later commands are parked, in order, in a bounded per-room queue
//! ([`Busy`]) and replayed when the result has been handled; the shard's
//! other rooms keep running meanwhile.
//!
//! The operations: a message's state for an edit, delete, reaction or reply
//! that is not in the room's hot cache; a `local_id` older than the dedupe
//! window; a message count for a read pointer; the multi-node seq allocation
//! (Redis); and a subscription's cluster subscribe and presence look-up.

use super::{not_found, PendingSubscribe, Shard, ShardMsg};
use crate::conn::outbox::Outbox;
use crate::ids::RoomId;
use crate::proto::{ErrorCode, WireError};
use crate::router::command::{abandoning, Command};
use crate::store::{MessageState, StoreError};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a finished I/O operation does next: run on the shard with its result.
pub type Continuation = Box<dyn FnOnce(&mut Shard) + Send>;

/// Commands parked for one room while it has an operation out (or is loading).
pub const MAX_PARKED_PER_ROOM: usize = 1024;
/// Commands parked in all the rooms of one shard.
pub const MAX_PARKED_PER_SHARD: usize = 8192;
/// `retry_after_ms` of a command refused because too many are parked or
/// waiting for a commit.
pub const OVERLOAD_RETRY_MS: u64 = 200;

/// Tokens of I/O operations, unique in the process: a result that arrives at
/// a shard restarted after a fault never matches an operation of the new one.
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// A room with an I/O operation out.
pub(super) struct Busy {
    token: u64,
    /// The connection of the request being served (told to resume after a fault).
    outbox: Option<Outbox>,
    /// Later work for the room, in arrival order.
    queue: VecDeque<Parked>,
}

/// Work waiting for a room's operation to finish.
pub(super) enum Parked {
    Command(Command),
    /// A subscription whose membership write completed.
    Subscribe(PendingSubscribe),
}

impl Parked {
    pub(super) fn outbox(&self) -> Option<&Outbox> {
        match self {
            Parked::Command(c) => c.reply().map(|r| r.outbox()),
            Parked::Subscribe(s) => Some(s.4.outbox()),
        }
    }
}

/// The answer to a command refused because the shard holds too much work.
pub(super) fn overloaded(what: &str) -> WireError {
    WireError::new(
        ErrorCode::Unavailable,
        format!("the server is overloaded ({what}); retry (sends with the same local_id)"),
    )
    .with_retry(OVERLOAD_RETRY_MS)
}

fn read_failed(e: StoreError) -> WireError {
    tracing::error!(error = %e, "store read failed");
    e.to_wire("the read")
}

impl Shard {
    /// Whether `room` has an operation out (its commands park).
    pub(super) fn is_busy(&self, room: &RoomId) -> bool {
        self.busy.contains_key(room)
    }

    /// Every outbox with a request held by an operation or parked (for `fail_sessions`).
    pub(super) fn busy_outboxes(&self) -> impl Iterator<Item = &Outbox> {
        self.busy.values().flat_map(|b| {
            b.outbox
                .iter()
                .chain(b.queue.iter().filter_map(Parked::outbox))
        })
    }

    /// Parks `work` behind the room's operation or, over the bounds, answers
    /// `unavailable`. Work without a request (a disconnect, a subscription
    /// already stored) always parks: it is bounded by the requests that made it.
    pub(super) fn park(&mut self, room: &RoomId, work: Parked) {
        let Some(busy) = self.busy.get_mut(room) else {
            // Not reached (callers park only behind an operation); serve it then.
            return match work {
                Parked::Command(cmd) => self.command(room.clone(), cmd),
                Parked::Subscribe((room, session, user, since, reply)) => {
                    self.subscribe(&room, session, user, since, reply)
                }
            };
        };
        if let Parked::Command(cmd) = &work {
            if let Some(reply) = cmd.reply() {
                if busy.queue.len() >= MAX_PARKED_PER_ROOM {
                    return reply.error(overloaded("too many requests wait for this room"));
                }
                if self.parked >= MAX_PARKED_PER_SHARD {
                    return reply.error(overloaded("too many requests wait for their rooms"));
                }
            }
        }
        busy.queue.push_back(work);
        self.parked += 1;
    }

    /// Starts `io` off the loop. When it resolves, `then` runs on the shard
    /// with its result; until then the room's later commands park. `outbox` is
    /// the connection of the request served. The room must not be busy.
    pub(in crate::router) fn start_io<T, F, C>(
        &mut self,
        room: &RoomId,
        outbox: Option<&Outbox>,
        io: F,
        then: C,
    ) where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
        C: FnOnce(&mut Shard, T) + Send + 'static,
    {
        debug_assert!(!self.is_busy(room), "one operation per room at a time");
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        let Some(tx) = self.tx.upgrade() else {
            // The router is gone (shutdown): nothing will read the result.
            return;
        };
        self.busy.insert(
            room.clone(),
            Busy {
                token,
                outbox: outbox.cloned(),
                queue: VecDeque::new(),
            },
        );
        let room = room.clone();
        tokio::spawn(async move {
            let result = io.await;
            let then: Continuation = Box::new(move |shard: &mut Shard| then(shard, result));
            // Holding a sender keeps the inbox open until this result is in.
            let _ = tx.send(ShardMsg::Io { room, token, then }).await;
        });
    }

    /// An operation's result came back: finish its command, then replay the
    /// room's parked work in order (until one of it starts another operation).
    pub(super) fn io_done(&mut self, room: RoomId, token: u64, then: Continuation) {
        let busy = match self.busy.remove(&room) {
            Some(b) if b.token == token => b,
            other => {
                if let Some(b) = other {
                    self.busy.insert(room, b);
                }
                // Started by a shard that failed since: its state is gone, so
                // the request is answered `internal` with a retry hint.
                abandoning(|| drop(then));
                return;
            }
        };
        then(self);
        self.replay_parked(&room, busy.queue);
    }

    fn replay_parked(&mut self, room: &RoomId, mut queue: VecDeque<Parked>) {
        while let Some(work) = queue.pop_front() {
            if let Some(busy) = self.busy.get_mut(room) {
                // Busy again: the rest waits behind the new operation, still first.
                queue.push_front(work);
                while let Some(w) = queue.pop_back() {
                    busy.queue.push_front(w);
                }
                return;
            }
            self.parked -= 1;
            match work {
                Parked::Command(cmd) => self.command(room.clone(), cmd),
                Parked::Subscribe((room, session, user, since, reply)) => {
                    self.subscribe(&room, session, user, since, reply)
                }
            }
        }
    }

    /// A message's current state: from the room's hot cache (authoritative
    /// for changes not yet committed) at once, else read from the store off
    /// the loop. `then` gets it either way.
    pub(in crate::router) fn with_message(
        &mut self,
        room_id: &RoomId,
        seq: u64,
        outbox: &Outbox,
        then: impl FnOnce(&mut Shard, Result<Option<MessageState>, WireError>) + Send + 'static,
    ) {
        if let Some(m) = self.active(room_id).and_then(|r| r.hot(seq)) {
            let m = m.clone();
            return then(self, Ok(Some(m)));
        }
        let store = self.store.clone();
        let room = room_id.clone();
        self.start_io(
            room_id,
            Some(outbox),
            async move { store.message(&room, seq).await.map_err(read_failed) },
            then,
        );
    }

    /// Allocates the next seq of a room and hands it to `then`: at once on a
    /// single node; through the cluster (shared by every node, a Redis round
    /// trip off the loop) otherwise.
    pub(in crate::router) fn with_seq(
        &mut self,
        room_id: &RoomId,
        outbox: &Outbox,
        then: impl FnOnce(&mut Shard, Result<u64, WireError>) + Send + 'static,
    ) {
        let cluster = self.cluster.clone();
        let Some(room) = self.active(room_id) else {
            return then(self, Err(not_found(room_id)));
        };
        let Some(cluster) = cluster else {
            let seq = room.next_seq;
            room.next_seq += 1;
            return then(self, Ok(seq));
        };
        let floor = room.next_seq - 1;
        let room = room_id.clone();
        self.start_io(
            room_id,
            Some(outbox),
            async move {
                cluster.alloc_seq(&room, floor).await.map_err(|e| {
                    tracing::warn!(room = %room, error = %e, "seq allocation failed");
                    WireError::new(
                        ErrorCode::Unavailable,
                        "the cluster backend (Redis) is unavailable; retry",
                    )
                    .with_retry(1000)
                })
            },
            {
                let room_id = room_id.clone();
                move |shard: &mut Shard, seq: Result<u64, WireError>| {
                    if let (Ok(seq), Some(room)) = (&seq, shard.active(&room_id)) {
                        room.next_seq = room.next_seq.max(seq + 1);
                    }
                    then(shard, seq)
                }
            },
        );
    }
}
