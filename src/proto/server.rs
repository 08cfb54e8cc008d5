//! Frames the server sends: replies (carrying the request's `id`) and pushes
//! (no `id`). One struct per frame type, matching `proto-spec/README.md`.

use super::error::{ErrorCode, WireError};
use crate::ids::{RoomId, UserId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub v: u32,
    pub user: UserId,
    pub session: String,
    pub heartbeat_ms: u64,
    pub max_frame: u64,
    pub server: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Created {
    pub id: u64,
    pub room: RoomId,
    pub name: String,
    pub private: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Joined {
    pub id: u64,
    pub room: RoomId,
    /// The room's latest seq at the moment of joining: every later message is pushed.
    pub seq: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Left {
    pub id: u64,
    pub room: RoomId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    pub id: u64,
    pub room: RoomId,
    pub seq: u64,
    pub ts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_id: Option<String>,
}

/// A stored message, as pushed live (`t: "msg"`) and as returned in history pages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub room: RoomId,
    pub seq: u64,
    pub from: UserId,
    pub body: String,
    pub ts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub id: u64,
    pub room: RoomId,
    /// Oldest first (ascending seq).
    pub messages: Vec<Message>,
    /// Whether older messages exist before `messages[0]`.
    pub more: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorFrame {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// True when the server closes the connection right after this frame.
    #[serde(default)]
    pub close: bool,
}

impl ErrorFrame {
    pub fn from_wire(id: Option<u64>, e: WireError, close: bool) -> Self {
        Self {
            id,
            code: e.code,
            message: e.message,
            retry_after_ms: e.retry_after_ms,
            close,
        }
    }
}

/// Every frame a v1 server may send. Serializes with `t` first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ServerFrame {
    Welcome(Welcome),
    Created(Created),
    Joined(Joined),
    Left(Left),
    Sent(Sent),
    Msg(Message),
    History(HistoryPage),
    Pong(Pong),
    Error(ErrorFrame),
}

impl ServerFrame {
    pub fn error(id: Option<u64>, e: WireError) -> Self {
        ServerFrame::Error(ErrorFrame::from_wire(id, e, false))
    }

    pub fn closing(e: WireError) -> Self {
        ServerFrame::Error(ErrorFrame::from_wire(None, e, true))
    }

    /// Decodes a server frame payload (client side).
    pub fn decode(payload: &[u8]) -> Result<ServerFrame, rmp_serde::decode::Error> {
        rmp_serde::from_slice(payload)
    }
}
