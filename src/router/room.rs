//! One room's live state, owned by exactly one shard: metadata, members,
//! bans, invites, subscribed sessions, seq counters, the idempotency window,
//! recently touched messages, and ephemeral state (typing, pending read pushes).

use super::dedupe::{DedupeWindow, Seen};
use crate::conn::outbox::Outbox;
use crate::ids::{SessionId, UserId};
use crate::proto::types::Role;
use crate::store::{Invite, LoadedRoom, MemberState, MessageState, RoomMeta};
use bytes::Bytes;
use indexmap::IndexMap;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Instant;

/// Recently touched message states kept per room (edits and reactions hit them).
const HOT_MESSAGES: usize = 1024;
/// Seqs of unknown outcome the live stream may hold at per room ([`Room::held`]);
/// past it a failed send's seq is passed over at once.
pub const MAX_HELD_SEQS: usize = 64;

pub struct Sub {
    pub user: UserId,
    pub outbox: Outbox,
    /// While a resume replay runs: live chunks held back until the replay is out.
    pub held: Option<Vec<Bytes>>,
}

pub struct Room {
    pub meta: RoomMeta,
    /// Fan-out pushes and their bytes since the shard last reported them to
    /// `/metrics` (plain adds here; one atomic add per shard tick).
    pub fanned: (u64, u64),
    /// Highest seq committed and fanned out.
    pub last_seq: u64,
    /// Next seq to allocate.
    pub next_seq: u64,
    /// Lowest seq still stored (0: none yet); older events were removed by retention.
    pub first_seq: u64,
    pub members: HashMap<UserId, MemberState>,
    pub bans: HashSet<UserId>,
    pub invites: HashMap<String, Invite>,
    /// Sessions receiving this room's pushes.
    pub subscribers: IndexMap<SessionId, Sub>,
    pub dedupe: DedupeWindow,
    /// Whether the window holds every local_id of the room (no store lookup needed on a miss).
    pub dedupe_complete: bool,
    /// Messages ever allocated (the `n` of the newest).
    pub msg_total: u64,
    pub last_msg_seq: u64,
    /// Deleted messages: (seq, sender).
    pub deletions: Vec<(u64, UserId)>,
    hot: HashMap<u64, MessageState>,
    hot_order: VecDeque<u64>,
    /// Who is typing, until when.
    pub typing: HashMap<UserId, tokio::time::Instant>,
    /// Read pointer moves not yet pushed (coalesced per tick).
    pub pending_reads: HashMap<UserId, u64>,
    /// Presence changes of members not yet pushed (coalesced per tick).
    pub pending_presence: HashMap<UserId, crate::proto::types::UserPresence>,
    /// Committed events (local or from other nodes) waiting for a lower seq, and since when.
    pub pending: BTreeMap<u64, Bytes>,
    pub gap_since: Option<tokio::time::Instant>,
    /// Seqs of sends whose write failed with an unknown outcome (it may
    /// still land) and that the sender's retry with the same `local_id` will
    /// commit at the same seq: live delivery holds at them (later events wait
    /// in `pending`) so that the retried message is pushed once, in seq order.
    /// A known failure burns them; `--gap-timeout-ms` bounds the wait.
    pub held: BTreeSet<u64>,
    /// Whether this node receives the room's traffic from other nodes.
    pub bus_subscribed: bool,
    /// Store writes for this room not yet completed.
    pub inflight: usize,
    /// A write failed: reload from the store once nothing is in flight.
    pub needs_reload: bool,
    pub last_active: Instant,
}

impl Room {
    pub fn new(meta: RoomMeta, dedupe_window: usize) -> Self {
        Self {
            meta,
            fanned: (0, 0),
            last_seq: 0,
            next_seq: 1,
            first_seq: 0,
            members: HashMap::new(),
            bans: HashSet::new(),
            invites: HashMap::new(),
            subscribers: IndexMap::new(),
            dedupe: DedupeWindow::new(dedupe_window),
            dedupe_complete: true,
            msg_total: 0,
            last_msg_seq: 0,
            deletions: Vec::new(),
            hot: HashMap::new(),
            hot_order: VecDeque::new(),
            typing: HashMap::new(),
            pending_reads: HashMap::new(),
            pending_presence: HashMap::new(),
            pending: BTreeMap::new(),
            gap_since: None,
            held: BTreeSet::new(),
            bus_subscribed: false,
            inflight: 0,
            needs_reload: false,
            last_active: Instant::now(),
        }
    }

    pub fn from_loaded(l: LoadedRoom, dedupe_window: usize) -> Self {
        let mut room = Room::new(l.meta, dedupe_window);
        let mut complete = l.recent_is_complete;
        for r in l.recent_local_ids {
            complete &= room.dedupe.insert(
                r.from,
                r.local_id,
                Seen::Committed {
                    seq: r.seq,
                    ts: r.ts,
                },
            );
        }
        room.dedupe_complete = complete;
        room.last_seq = l.last_seq;
        room.next_seq = l.last_seq + 1;
        room.first_seq = l.first_seq;
        room.members = l.members.into_iter().collect();
        room.bans = l.bans.into_iter().collect();
        room.invites = l.invites.into_iter().map(|i| (i.code.clone(), i)).collect();
        room.msg_total = l.msg_total;
        room.last_msg_seq = l.last_msg_seq;
        room.deletions = l.deletions;
        room
    }

    /// Replaces the stored part of the state after a reload, keeping live subscribers.
    /// Seqs only move forward: a seq handed out before the reload stays burnt
    /// (its write may still land), and the dedupe window keeps every pair it
    /// had (pending, unknown outcome, committed), so retries stay idempotent.
    pub fn refresh_from(&mut self, mut fresh: Room) {
        let subscribers = std::mem::take(&mut self.subscribers);
        let typing = std::mem::take(&mut self.typing);
        let bus_subscribed = self.bus_subscribed;
        let (last_seq, next_seq) = (self.last_seq, self.next_seq);
        let pending = std::mem::take(&mut self.pending);
        let held = std::mem::take(&mut self.held);
        let gap_since = self.gap_since;
        // The node's own window wins over the store's view: sends in flight or of
        // unknown outcome, and ones committed after the reload's read began, keep
        // their seq (a retry must not become a second message).
        for (user, local_id, seen) in self.dedupe.take_all() {
            fresh.dedupe_complete &= fresh.dedupe.insert(user, local_id, seen);
        }
        *self = fresh;
        self.subscribers = subscribers;
        self.typing = typing;
        self.bus_subscribed = bus_subscribed;
        // While live delivery holds at a seq of unknown outcome, it keeps its
        // own position: the store may already hold that seq (a late landing)
        // or later ones whose pushes wait behind it.
        self.last_seq = if held.is_empty() {
            self.last_seq.max(last_seq)
        } else {
            last_seq
        };
        self.held = held;
        self.next_seq = self.next_seq.max(next_seq).max(self.last_seq + 1);
        if self.pending.is_empty() {
            self.pending = pending;
            self.gap_since = gap_since;
        }
    }

    pub fn role(&self, user: &UserId) -> Option<Role> {
        self.members.get(user).map(|m| m.role)
    }

    pub fn is_member(&self, user: &UserId) -> bool {
        self.members.contains_key(user)
    }

    /// Whether `user` may read this room (history, members): members, or anyone
    /// not banned for public rooms.
    pub fn can_read(&self, user: &UserId) -> bool {
        self.is_member(user) || (!self.meta.private && !self.bans.contains(user))
    }

    pub fn hot(&self, seq: u64) -> Option<&MessageState> {
        self.hot.get(&seq)
    }

    pub fn put_hot(&mut self, m: MessageState) {
        let seq = m.seq;
        if self.hot.insert(seq, m).is_none() {
            self.hot_order.push_back(seq);
        }
        // Entries may only leave once nothing is in flight: the cache is the
        // authority for states not yet committed.
        while self.inflight == 0 && self.hot_order.len() > HOT_MESSAGES {
            if let Some(old) = self.hot_order.pop_front() {
                self.hot.remove(&old);
            }
        }
    }

    /// Deleted messages after `seq` that `user` did not send.
    pub fn deleted_by_others_after(&self, user: &UserId, seq: u64) -> u64 {
        self.deletions
            .iter()
            .filter(|(s, from)| *s > seq && from != user)
            .count() as u64
    }

    pub fn unread(&self, user: &UserId) -> u64 {
        match self.members.get(user) {
            Some(m) => crate::store::unread(
                self.msg_total,
                m,
                self.deleted_by_others_after(user, m.read_seq),
            ),
            None => 0,
        }
    }

    pub fn user_is_subscribed(&self, user: &UserId) -> bool {
        self.subscribers.values().any(|s| &s.user == user)
    }

    /// Hands the same bytes to every subscriber (held back for those replaying);
    /// drops those whose outbox refused them (slow or closed). Never waits.
    pub fn fan_out(&mut self, frames: &Bytes, outbox_limit: usize) {
        let n = self.subscribers.len() as u64;
        self.fanned.0 += n;
        self.fanned.1 += n * frames.len() as u64;
        self.subscribers.retain(|_, sub| match &mut sub.held {
            None => sub.outbox.push(frames.clone()),
            Some(held) => {
                held.push(frames.clone());
                let bytes: usize = held.iter().map(Bytes::len).sum();
                if bytes > outbox_limit {
                    sub.outbox.kill_slow();
                    false
                } else {
                    true
                }
            }
        });
    }

    /// Ephemeral pushes (typing, presence): dropped for connections that are behind,
    /// never a reason to disconnect; not sent to `except`'s own sessions.
    pub fn fan_out_ephemeral(&self, frames: &Bytes, except: Option<&UserId>) {
        for sub in self.subscribers.values() {
            if sub.held.is_none() && except != Some(&sub.user) {
                sub.outbox.push_droppable(frames.clone());
            }
        }
    }

    /// Takes a committed stream event in seq order: appends it (and any buffered
    /// successors) to `out` once every lower seq is through; buffers it otherwise.
    /// Late or duplicate seqs are dropped.
    pub fn deliver(&mut self, seq: u64, framed: Bytes, out: &mut bytes::BytesMut) {
        if seq <= self.last_seq {
            return;
        }
        self.next_seq = self.next_seq.max(seq + 1);
        if seq != self.last_seq + 1 {
            self.pending.insert(seq, framed);
            self.gap_since.get_or_insert_with(tokio::time::Instant::now);
            return;
        }
        out.extend_from_slice(&framed);
        self.advance(seq);
        self.drain_pending(out);
    }

    fn advance(&mut self, seq: u64) {
        self.last_seq = seq;
        if self.first_seq == 0 {
            self.first_seq = seq;
        }
    }

    fn drain_pending(&mut self, out: &mut bytes::BytesMut) {
        while let Some(framed) = self.pending.remove(&(self.last_seq + 1)) {
            out.extend_from_slice(&framed);
            self.advance(self.last_seq + 1);
        }
        if self.pending.is_empty() {
            self.gap_since = None;
        } else {
            self.gap_since = Some(tokio::time::Instant::now());
        }
    }

    /// A gap has lasted too long (its seq was allocated by a node that died
    /// before committing it): give up on it and deliver what follows.
    pub fn skip_gap(&mut self, out: &mut bytes::BytesMut) {
        if let Some((&first, _)) = self.pending.iter().next() {
            tracing::warn!(room = %self.meta.id, from = self.last_seq + 1, to = first - 1, "skipping a seq gap that was never filled");
            self.last_seq = first - 1;
            let last = self.last_seq;
            // A held seq passed over here is not pushed if its retry commits later.
            self.held.retain(|&s| s > last);
            self.drain_pending(out);
        }
    }

    /// Removes every subscription of `user`; returns how many there were.
    pub fn drop_user(&mut self, user: &UserId) -> usize {
        let before = self.subscribers.len();
        self.subscribers.retain(|_, s| &s.user != user);
        before - self.subscribers.len()
    }
}
