//! What a [`crate::Client`] reports on its event stream ([`crate::Events`]).

use crate::error::Error;
use roomcast_protocol::ids::{RoomId, UserId};
use roomcast_protocol::server::{
    DeleteEvent, EditEvent, ErrorFrame, MemberJoined, MemberLeft, Message, ReactionEvent, ReadPush,
    RoleChanged, RoomDeleted, RoomSummary, RoomUpdated, Sent, TypingPush,
};
use roomcast_protocol::types::UserPresence;
use roomcast_protocol::ErrorCode;
use std::time::Duration;

/// One thing that happened. Stream events (`Message`, `Edit`, `Delete`,
/// `Reaction`) arrive exactly once per room and in seq order, across
/// reconnects; everything else is as the server pushed it.
#[derive(Debug)]
pub enum Event {
    /// A connection is up and authenticated. `reconnect` is false for the first one.
    Connected {
        user: UserId,
        session: String,
        reconnect: bool,
    },
    /// The connection is gone; the client reconnects after `retry_in`.
    /// `code` is the server's closing error, if it sent one (`slow_consumer`,
    /// `shutting_down`, `idle_timeout`, ...); `None` for a dropped transport.
    Disconnected {
        code: Option<ErrorCode>,
        message: String,
        retry_in: Duration,
    },
    /// A reconnect attempt failed (refused, unreachable, bad token); the
    /// next one is in `retry_in`.
    ReconnectFailed {
        error: Box<Error>,
        retry_in: Duration,
    },
    /// A room was re-joined after a reconnect and every event in
    /// `from < seq <= to` has been delivered (before this event). `complete`
    /// is false when server retention had removed some of them (read their
    /// latest state with `history`).
    Resumed {
        room: RoomId,
        from: u64,
        to: u64,
        complete: bool,
    },
    /// Re-joining a room after a reconnect was refused (deleted, kicked,
    /// banned); the client no longer follows it.
    JoinFailed {
        room: RoomId,
        error: Box<Error>,
    },
    Message(Message),
    Edit(EditEvent),
    Delete(DeleteEvent),
    Reaction(ReactionEvent),
    Typing(TypingPush),
    /// A user's presence changed.
    Presence(UserPresence),
    /// A member's read pointer moved (coalesced by the server).
    Read(ReadPush),
    MemberJoined(MemberJoined),
    MemberLeft(MemberLeft),
    RoleChanged(RoleChanged),
    RoomUpdated(RoomUpdated),
    RoomDeleted(RoomDeleted),
    /// The room list pushed after `welcome` (`ClientConfig::sync_rooms`).
    RoomList(Vec<RoomSummary>),
    /// A queued send was acknowledged and nobody awaited it (a message loaded
    /// from the queue file, or whose `PendingSend` was dropped).
    SendAcked(Sent),
    /// A queued send was refused for good (`forbidden`, `bad_request`, ...)
    /// and nobody awaited it; it left the queue.
    SendFailed {
        local_id: String,
        room: RoomId,
        error: Box<Error>,
    },
    /// An `error` push without an id that does not close the connection.
    ServerError(ErrorFrame),
    /// The client stopped for good: shut down, a fatal server answer
    /// (`unsupported_version`), or `Backoff::max_attempts` reached. Last event.
    Closed {
        reason: String,
    },
}
