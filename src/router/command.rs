//! What sessions ask of a room's shard, and where the answer goes.

use crate::conn::outbox::{InFlight, Outbox};
use crate::ids::{SessionId, UserId};
use crate::proto::types::{Attachment, MessageKind, Role};
use crate::proto::{ServerFrame, WireError};
use crate::store::RoomMeta;

/// Where a reply goes: the requesting connection's outbox and the request id.
/// While a `ReplyTo` (or a clone) lives, the request counts against the
/// connection's in-flight bound (`--max-in-flight`).
#[derive(Clone)]
pub struct ReplyTo {
    pub id: u64,
    ticket: InFlight,
}

impl ReplyTo {
    pub fn new(id: u64, outbox: &Outbox) -> ReplyTo {
        ReplyTo {
            id,
            ticket: outbox.in_flight(),
        }
    }

    pub fn outbox(&self) -> &Outbox {
        self.ticket.outbox()
    }

    pub fn send(&self, frame: &ServerFrame) {
        self.outbox().send(frame);
    }

    pub fn error(&self, e: WireError) {
        self.outbox().send(&ServerFrame::error(Some(self.id), e));
    }

    pub fn ok(&self, room: &crate::ids::RoomId, seq: Option<u64>) {
        self.send(&ServerFrame::ok(self.id, Some(room.clone()), seq));
    }
}

/// A new message, validated by the session.
pub struct NewMessage {
    pub body: String,
    pub local_id: Option<String>,
    pub kind: MessageKind,
    pub attachments: Vec<Attachment>,
    pub reply_to: Option<u64>,
}

/// Membership administration by `actor` on `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminOp {
    Kick,
    Ban,
    Unban,
    Transfer,
    SetRole(Role),
}

/// A command for one room. `user` is always the authenticated requester.
pub enum Command {
    Create {
        meta: RoomMeta,
        reply: ReplyTo,
    },
    StartDirect {
        user: UserId,
        peer: UserId,
        reply: ReplyTo,
    },
    Join {
        session: SessionId,
        user: UserId,
        since: Option<u64>,
        invite: Option<String>,
        reply: ReplyTo,
    },
    /// Unsubscribe one session (membership stays).
    Leave {
        session: SessionId,
        reply: ReplyTo,
    },
    /// End the membership.
    LeaveRoom {
        user: UserId,
        reply: ReplyTo,
    },
    Send {
        user: UserId,
        msg: NewMessage,
        reply: ReplyTo,
    },
    Edit {
        user: UserId,
        seq: u64,
        body: String,
        reply: ReplyTo,
    },
    Delete {
        user: UserId,
        seq: u64,
        reply: ReplyTo,
    },
    React {
        user: UserId,
        seq: u64,
        emoji: String,
        on: bool,
        reply: ReplyTo,
    },
    History {
        user: UserId,
        before: Option<u64>,
        limit: u32,
        reply: ReplyTo,
    },
    Read {
        user: UserId,
        seq: u64,
        reply: ReplyTo,
    },
    Receipts {
        user: UserId,
        seq: u64,
        reply: ReplyTo,
    },
    Members {
        user: UserId,
        reply: ReplyTo,
    },
    Typing {
        session: SessionId,
        user: UserId,
        on: bool,
        reply: Option<ReplyTo>,
    },
    Update {
        user: UserId,
        name: Option<String>,
        description: Option<String>,
        private: Option<bool>,
        reply: ReplyTo,
    },
    DeleteRoom {
        user: UserId,
        reply: ReplyTo,
    },
    Admin {
        user: UserId,
        target: UserId,
        op: AdminOp,
        reply: ReplyTo,
    },
    CreateInvite {
        user: UserId,
        expires_in_s: Option<u64>,
        max_uses: Option<u32>,
        reply: ReplyTo,
    },
    Invites {
        user: UserId,
        reply: ReplyTo,
    },
    RevokeInvite {
        user: UserId,
        code: String,
        reply: ReplyTo,
    },
    /// A presence change of a member, for the room's subscribers (never loads the room).
    Presence {
        frame: ServerFrame,
    },
    /// The session closed: drop its subscription, no reply.
    Disconnect {
        session: SessionId,
    },
}

impl Command {
    pub fn reply(&self) -> Option<&ReplyTo> {
        use Command::*;
        match self {
            Create { reply, .. }
            | StartDirect { reply, .. }
            | Join { reply, .. }
            | Leave { reply, .. }
            | LeaveRoom { reply, .. }
            | Send { reply, .. }
            | Edit { reply, .. }
            | Delete { reply, .. }
            | React { reply, .. }
            | History { reply, .. }
            | Read { reply, .. }
            | Receipts { reply, .. }
            | Members { reply, .. }
            | Update { reply, .. }
            | DeleteRoom { reply, .. }
            | Admin { reply, .. }
            | CreateInvite { reply, .. }
            | Invites { reply, .. }
            | RevokeInvite { reply, .. } => Some(reply),
            Typing { reply, .. } => reply.as_ref(),
            Presence { .. } | Disconnect { .. } => None,
        }
    }

    /// Commands that must not load a room that is not in memory.
    pub fn needs_loaded_room(&self) -> bool {
        matches!(self, Command::Presence { .. } | Command::Disconnect { .. })
    }
}
