//! Per-room stream position: which rooms to re-join, the last seq seen in
//! each (the `since` of the resume), de-duplication by seq, and when a
//! resume has caught up. Sans-IO: the driver feeds it, tests drive it directly.

use roomcast_protocol::ids::RoomId;
use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
struct RoomState {
    /// The highest stream seq delivered to the app (`None`: not known yet).
    last_seq: Option<u64>,
    /// Whether the app follows the room (re-joined on every reconnect).
    subscribed: bool,
    /// A resume in progress: `(from, to, complete)`.
    resuming: Option<(u64, u64, bool)>,
}

/// A resume that has caught up: every event in `from < seq <= to` was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CaughtUp {
    pub room: RoomId,
    pub from: u64,
    pub to: u64,
    pub complete: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Rooms {
    rooms: HashMap<RoomId, RoomState>,
}

impl Rooms {
    /// The app joins `room`: follow it; returns the `since` to join with.
    pub fn follow(&mut self, room: &RoomId) -> Option<u64> {
        let st = self.rooms.entry(room.clone()).or_default();
        st.subscribed = true;
        st.last_seq
    }

    /// The app (or the server) ended the subscription: stop re-joining it.
    /// The last seq is kept, so a later join resumes from it.
    pub fn unfollow(&mut self, room: &RoomId) {
        if let Some(st) = self.rooms.get_mut(room) {
            st.subscribed = false;
            st.resuming = None;
        }
    }

    pub fn last_seq(&self, room: &RoomId) -> Option<u64> {
        self.rooms.get(room).and_then(|s| s.last_seq)
    }

    /// Sets where a room starts when the app joined it without `since`
    /// (`joined.seq`): later events are new, none before it is replayed.
    pub fn start_at(&mut self, room: &RoomId, seq: u64) {
        let st = self.rooms.entry(room.clone()).or_default();
        st.last_seq = Some(st.last_seq.map_or(seq, |s| s.max(seq)));
    }

    /// Rooms to re-join on a new connection, with their `since`.
    pub fn to_rejoin(&self) -> Vec<(RoomId, Option<u64>)> {
        let mut v: Vec<_> = self
            .rooms
            .iter()
            .filter(|(_, s)| s.subscribed)
            .map(|(r, s)| (r.clone(), s.last_seq))
            .collect();
        v.sort();
        v
    }

    /// A stream event arrived: true if it is new (deliver it), false for a
    /// duplicate (seq at or below the last seen).
    pub fn accept(&mut self, room: &RoomId, seq: u64) -> bool {
        let st = self.rooms.entry(room.clone()).or_default();
        match st.last_seq {
            Some(last) if seq <= last => false,
            _ => {
                st.last_seq = Some(seq);
                true
            }
        }
    }

    /// A re-join `join {since: from}` answered `joined {seq: to}`: the replay
    /// of `from+1 ..= to` follows (some of it may have arrived already).
    pub fn resuming(&mut self, room: &RoomId, from: u64, to: u64, complete: bool) {
        let st = self.rooms.entry(room.clone()).or_default();
        st.resuming = Some((from, to, complete));
    }

    /// Whether `room`'s resume has caught up (call after `resuming` and after
    /// each accepted event); returns it once.
    pub fn caught_up(&mut self, room: &RoomId) -> Option<CaughtUp> {
        let st = self.rooms.get_mut(room)?;
        let (from, to, complete) = st.resuming?;
        if st.last_seq.unwrap_or(0) >= to || to <= from {
            st.resuming = None;
            return Some(CaughtUp {
                room: room.clone(),
                from,
                to,
                complete,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RoomId {
        RoomId::new(s).unwrap()
    }

    #[test]
    fn dedupes_by_seq_and_tracks_the_resume() {
        let mut rooms = Rooms::default();
        assert_eq!(rooms.follow(&r("a")), None);
        rooms.start_at(&r("a"), 10);
        assert!(!rooms.accept(&r("a"), 10));
        assert!(rooms.accept(&r("a"), 11));
        assert!(!rooms.accept(&r("a"), 11));
        assert_eq!(rooms.to_rejoin(), vec![(r("a"), Some(11))]);
        // Reconnect: the replay of 12..=13 races the `joined` reply.
        assert!(rooms.accept(&r("a"), 12));
        rooms.resuming(&r("a"), 11, 13, true);
        assert_eq!(rooms.caught_up(&r("a")), None);
        assert!(rooms.accept(&r("a"), 13));
        let done = rooms.caught_up(&r("a")).unwrap();
        assert_eq!((done.from, done.to, done.complete), (11, 13, true));
        assert_eq!(rooms.caught_up(&r("a")), None, "reported once");
        rooms.unfollow(&r("a"));
        assert!(rooms.to_rejoin().is_empty());
        assert_eq!(rooms.follow(&r("a")), Some(13), "a later join resumes");
    }

    #[test]
    fn nothing_to_replay_catches_up_at_once() {
        let mut rooms = Rooms::default();
        rooms.follow(&r("a"));
        rooms.start_at(&r("a"), 5);
        rooms.resuming(&r("a"), 5, 5, true);
        assert!(rooms.caught_up(&r("a")).is_some());
    }
}
