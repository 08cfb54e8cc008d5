//! What sessions ask of a room's shard, and where the answer goes.

use crate::conn::outbox::{InFlight, Outbox};
use crate::ids::{SessionId, UserId};
use crate::proto::types::{Attachment, MessageKind, Role};
use crate::proto::{ServerFrame, WireError};
use crate::store::{HistoryRange, RoomMeta};
use std::sync::atomic::{AtomicBool, Ordering};

/// Where a reply goes: the requesting connection's outbox and the request id.
/// While a `ReplyTo` lives, the request counts against the connection's
/// in-flight bound (`--max-in-flight`).
///
/// A request is never left without an answer by a fault: a `ReplyTo` dropped
/// unanswered while its thread unwinds a panic (the command a shard was
/// serving) or while the shard supervisor discards a failed shard's state
/// ([`abandoning`]: queued, batched and in-flight requests) answers
/// `internal` with `retry_after_ms` ([`RETRY_AFTER_FAULT_MS`]). Everywhere
/// else dropping it unanswered stays silent (e.g. a typing request without
/// `id`, a connection that is gone).
pub struct ReplyTo {
    pub id: u64,
    ticket: InFlight,
    /// Set by the first frame sent for the request (`&self`: the shard passes
    /// `&ReplyTo` across awaits, so a `Cell` would not do).
    answered: AtomicBool,
}

/// The `retry_after_ms` of a request interrupted by a shard fault. The shard
/// is serving again before the answer is sent; this only spreads the
/// retries of a room's clients a little.
pub const RETRY_AFTER_FAULT_MS: u64 = 250;

thread_local! {
    static ABANDONING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (which drops a failed shard's state) so that every `ReplyTo`
/// dropped unanswered inside it answers `internal` with a retry hint.
pub(crate) fn abandoning<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            ABANDONING.with(|a| a.set(self.0));
        }
    }
    let _reset = Reset(ABANDONING.with(|a| a.replace(true)));
    f()
}

impl ReplyTo {
    pub fn new(id: u64, outbox: &Outbox) -> ReplyTo {
        ReplyTo {
            id,
            ticket: outbox.in_flight(),
            answered: AtomicBool::new(false),
        }
    }

    pub fn outbox(&self) -> &Outbox {
        self.ticket.outbox()
    }

    /// Sends a frame for this request. Several frames may be sent (a `joined`
    /// and its replay); any of them counts as the answer.
    pub fn send(&self, frame: &ServerFrame) {
        self.answered.store(true, Ordering::Relaxed);
        self.ticket.outbox().send(frame);
    }

    pub fn error(&self, e: WireError) {
        let frame = ServerFrame::error(Some(self.id), e);
        self.send(&frame);
    }

    pub fn ok(&self, room: &crate::ids::RoomId, seq: Option<u64>) {
        let frame = ServerFrame::ok(self.id, Some(room.clone()), seq);
        self.send(&frame);
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if *self.answered.get_mut() || !(std::thread::panicking() || ABANDONING.with(|a| a.get())) {
            return;
        }
        crate::metrics::error_sent(crate::proto::ErrorCode::Internal);
        let e = WireError::new(
            crate::proto::ErrorCode::Internal,
            "a server fault interrupted this request; retry it (a send with the same local_id is stored once)",
        )
        .with_retry(RETRY_AFTER_FAULT_MS);
        self.ticket
            .outbox()
            .send(&ServerFrame::error(Some(self.id), e));
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
        range: HistoryRange,
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

    /// Commands whose requests may write to the store (refused while the
    /// shard's pending batch is full). A disconnect's delivery mark is never refused.
    pub fn writes(&self) -> bool {
        use Command::*;
        matches!(
            self,
            Create { .. }
                | StartDirect { .. }
                | Join { .. }
                | LeaveRoom { .. }
                | Send { .. }
                | Edit { .. }
                | Delete { .. }
                | React { .. }
                | Read { .. }
                | Update { .. }
                | DeleteRoom { .. }
                | Admin { .. }
                | CreateInvite { .. }
                | RevokeInvite { .. }
        )
    }

    /// Commands that must not load a room that is not in memory.
    pub fn needs_loaded_room(&self) -> bool {
        matches!(self, Command::Presence { .. } | Command::Disconnect { .. })
    }
}
