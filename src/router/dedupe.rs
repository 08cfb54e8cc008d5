//! The per-room window of recent `(sender, local_id)` pairs that makes `send`
//! idempotent without a store read on the hot path.

use super::command::ReplyTo;
use crate::ids::UserId;
use crate::store::Mutation;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

pub enum Seen {
    /// Stored: answer with the original seq and ts.
    Committed { seq: u64, ts: u64 },
    /// In flight: answer when it commits.
    Pending {
        seq: u64,
        ts: u64,
        waiters: Vec<ReplyTo>,
    },
    /// Its write failed with an unknown outcome (it may still land): a retry with
    /// the same local_id re-applies `retry` (same seq) instead of sending anew.
    Uncertain {
        seq: u64,
        ts: u64,
        framed: Bytes,
        retry: Vec<Mutation>,
    },
}

pub struct DedupeWindow {
    cap: usize,
    order: VecDeque<(UserId, String)>,
    map: HashMap<(UserId, String), Seen>,
}

impl DedupeWindow {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            order: VecDeque::new(),
            map: HashMap::new(),
        }
    }

    pub fn get_mut(&mut self, user: &UserId, local_id: &str) -> Option<&mut Seen> {
        // The key must be owned to look up a tuple; this runs only for sends with a local_id.
        self.map.get_mut(&(user.clone(), local_id.to_string()))
    }

    /// Records a pair; returns false if the window evicted older pairs to make room.
    pub fn insert(&mut self, user: UserId, local_id: String, seen: Seen) -> bool {
        let key = (user, local_id);
        if self.map.insert(key.clone(), seen).is_none() {
            self.order.push_back(key);
        }
        let mut complete = true;
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
                complete = false;
            }
        }
        complete
    }

    /// Marks a pending pair committed; returns its waiters.
    pub fn commit(&mut self, user: &UserId, local_id: &str) -> Vec<ReplyTo> {
        match self.get_mut(user, local_id) {
            Some(seen) => match std::mem::replace(seen, Seen::Committed { seq: 0, ts: 0 }) {
                Seen::Pending { seq, ts, waiters } => {
                    *seen = Seen::Committed { seq, ts };
                    waiters
                }
                committed => {
                    *seen = committed;
                    Vec::new()
                }
            },
            None => Vec::new(),
        }
    }

    /// A pending pair's write failed with an unknown outcome: keep it for an
    /// idempotent retry; returns its waiters.
    pub fn uncertain(
        &mut self,
        user: &UserId,
        local_id: &str,
        framed: Bytes,
        retry: Vec<Mutation>,
    ) -> Vec<ReplyTo> {
        match self.get_mut(user, local_id) {
            Some(seen) => match std::mem::replace(seen, Seen::Committed { seq: 0, ts: 0 }) {
                Seen::Pending { seq, ts, waiters } => {
                    *seen = Seen::Uncertain {
                        seq,
                        ts,
                        framed,
                        retry,
                    };
                    waiters
                }
                other => {
                    *seen = other;
                    Vec::new()
                }
            },
            None => Vec::new(),
        }
    }

    /// Every pair, oldest first, emptying the window: a reload of the room
    /// carries them into the reloaded window, because the store read may have
    /// started before sends in flight (pending), of unknown outcome
    /// (uncertain) or just committed were written.
    pub fn take_all(&mut self) -> Vec<(UserId, String, Seen)> {
        let mut out = Vec::with_capacity(self.order.len());
        for k in std::mem::take(&mut self.order) {
            if let Some(s) = self.map.remove(&k) {
                out.push((k.0, k.1, s));
            }
        }
        self.map.clear();
        out
    }

    /// Forgets a pair whose write failed; returns its waiters.
    pub fn forget(&mut self, user: &UserId, local_id: &str) -> Vec<ReplyTo> {
        let key = (user.clone(), local_id.to_string());
        self.order.retain(|k| k != &key);
        match self.map.remove(&key) {
            Some(Seen::Pending { waiters, .. }) => waiters,
            _ => Vec::new(),
        }
    }
}
