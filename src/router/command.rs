//! What sessions ask of a room's shard, and where the answer goes.

use crate::conn::outbox::Outbox;
use crate::ids::{SessionId, UserId};
use crate::proto::{ServerFrame, WireError};
use crate::store::RoomMeta;

/// Where a reply goes: the requesting connection's outbox and the request id.
#[derive(Clone)]
pub struct ReplyTo {
    pub id: u64,
    pub outbox: Outbox,
}

impl ReplyTo {
    pub fn send(&self, frame: &ServerFrame) {
        self.outbox.send(frame);
    }

    pub fn error(&self, e: WireError) {
        self.outbox.send(&ServerFrame::error(Some(self.id), e));
    }
}

/// A command for one room.
pub enum Command {
    Create {
        meta: RoomMeta,
        reply: ReplyTo,
    },
    Join {
        session: SessionId,
        user: UserId,
        reply: ReplyTo,
    },
    Leave {
        session: SessionId,
        reply: ReplyTo,
    },
    Send {
        user: UserId,
        body: String,
        local_id: Option<String>,
        reply: ReplyTo,
    },
    History {
        user: UserId,
        before: Option<u64>,
        limit: u32,
        reply: ReplyTo,
    },
    /// The session closed: drop its subscription, no reply.
    Disconnect {
        session: SessionId,
    },
}

impl Command {
    pub fn reply(&self) -> Option<&ReplyTo> {
        match self {
            Command::Create { reply, .. }
            | Command::Join { reply, .. }
            | Command::Leave { reply, .. }
            | Command::Send { reply, .. }
            | Command::History { reply, .. } => Some(reply),
            Command::Disconnect { .. } => None,
        }
    }
}
