//! Identifiers: rooms and users come from the protocol crate; sessions are
//! the server's own.

pub use roomcast_protocol::ids::{now_ms, RoomId, UserId, MAX_ROOM_ID_LEN, MAX_USER_ID_LEN};
use std::fmt;

/// A connection's session id, unique within one server process.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{:x}", self.0)
    }
}
