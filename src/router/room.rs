//! One room's live state, owned by exactly one shard: metadata, members,
//! subscribed sessions, seq counters and the idempotency window.

use super::dedupe::{DedupeWindow, Seen};
use crate::conn::outbox::Outbox;
use crate::ids::{SessionId, UserId};
use crate::store::{LoadedRoom, Role, RoomMeta};
use bytes::Bytes;
use indexmap::IndexMap;
use std::collections::HashMap;
use std::time::Instant;

pub struct Room {
    pub meta: RoomMeta,
    /// Highest seq committed and fanned out.
    pub last_seq: u64,
    /// Next seq to allocate.
    pub next_seq: u64,
    pub members: HashMap<UserId, Role>,
    /// Sessions receiving this room's pushes.
    pub subscribers: IndexMap<SessionId, Outbox>,
    pub dedupe: DedupeWindow,
    /// Whether the window holds every local_id of the room (no store lookup needed on a miss).
    pub dedupe_complete: bool,
    /// Store writes for this room not yet completed.
    pub inflight: usize,
    pub last_active: Instant,
}

impl Room {
    pub fn new(meta: RoomMeta, dedupe_window: usize) -> Self {
        let mut members = HashMap::new();
        members.insert(meta.created_by.clone(), Role::Owner);
        Self {
            meta,
            last_seq: 0,
            next_seq: 1,
            members,
            subscribers: IndexMap::new(),
            dedupe: DedupeWindow::new(dedupe_window),
            dedupe_complete: true,
            inflight: 0,
            last_active: Instant::now(),
        }
    }

    pub fn from_loaded(l: LoadedRoom, dedupe_window: usize) -> Self {
        let mut dedupe = DedupeWindow::new(dedupe_window);
        let mut complete = l.recent_is_complete;
        for r in l.recent_local_ids {
            complete &= dedupe.insert(
                r.from,
                r.local_id,
                Seen::Committed {
                    seq: r.seq,
                    ts: r.ts,
                },
            );
        }
        Self {
            meta: l.meta,
            last_seq: l.last_seq,
            next_seq: l.last_seq + 1,
            members: l.members.into_iter().collect(),
            subscribers: IndexMap::new(),
            dedupe,
            dedupe_complete: complete,
            inflight: 0,
            last_active: Instant::now(),
        }
    }

    pub fn is_member(&self, user: &UserId) -> bool {
        self.members.contains_key(user)
    }

    /// Whether `user` may read this room (history) — members, or anyone for public rooms.
    pub fn can_read(&self, user: &UserId) -> bool {
        !self.meta.private || self.is_member(user)
    }

    /// Hands the same bytes to every subscriber; drops those whose outbox refused
    /// them (slow or closed). Never waits.
    pub fn fan_out(&mut self, frames: &Bytes) {
        let mut dead: Vec<SessionId> = Vec::new();
        for (session, outbox) in &self.subscribers {
            if !outbox.push(frames.clone()) {
                dead.push(*session);
            }
        }
        for s in dead {
            self.subscribers.swap_remove(&s);
        }
    }
}
