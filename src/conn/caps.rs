//! Counted caps on connections: per source address before `hello`
//! (`--max-unauthenticated-per-addr`) and per user after it
//! (`--max-connections-per-user`). A [`Slot`] holds one unit of a key's count
//! and gives it back when dropped; keys at zero leave the map, so the map
//! holds only keys with live connections.

use dashmap::DashMap;
use std::hash::Hash;
use std::sync::Arc;

pub struct Caps<K: Eq + Hash + Clone> {
    counts: DashMap<K, usize>,
    max: usize,
}

impl<K: Eq + Hash + Clone> Caps<K> {
    pub fn new(max: usize) -> Arc<Caps<K>> {
        Arc::new(Caps {
            counts: DashMap::new(),
            max,
        })
    }

    /// Takes a slot for `key`, or `None` when it already has `max`.
    pub fn try_acquire(self: &Arc<Self>, key: K) -> Option<Slot<K>> {
        let mut count = self.counts.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        drop(count);
        Some(Slot {
            caps: self.clone(),
            key,
        })
    }

    /// Live slots of `key`.
    pub fn count(&self, key: &K) -> usize {
        self.counts.get(key).map_or(0, |c| *c)
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

/// One counted connection; see [`Caps`].
pub struct Slot<K: Eq + Hash + Clone> {
    caps: Arc<Caps<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        self.caps.counts.remove_if_mut(&self.key, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_and_free() {
        let caps = Caps::new(2);
        let a = caps.try_acquire("x").unwrap();
        let b = caps.try_acquire("x").unwrap();
        assert!(caps.try_acquire("x").is_none());
        assert!(caps.try_acquire("y").is_some(), "keys are independent");
        drop(a);
        assert_eq!(caps.count(&"x"), 1);
        let _c = caps.try_acquire("x").unwrap();
        drop(b);
        drop(_c);
        assert!(caps.counts.is_empty(), "keys at zero leave the map");
    }
}
