//! Frames the server sends: replies (carrying the request's `id`) and pushes
//! (no `id`). One struct per frame type, matching `proto-spec/README.md`.

use super::error::{ErrorCode, WireError};
use super::types::{
    is_false, Attachment, LeaveReason, MessageKind, ReactionCount, Role, RoomKind, UserPresence,
};
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

/// Reply to `start_direct`: the direct room of the two users.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Direct {
    pub id: u64,
    pub room: RoomId,
    pub peer: UserId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Joined {
    pub id: u64,
    pub room: RoomId,
    /// The room's latest seq at the moment of joining: every later event is pushed.
    pub seq: u64,
    /// With `join {since}`: whether every event after `since` is replayed (false: some were
    /// removed by retention; read older ones with `history`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
    pub role: Role,
    /// Members online now, for rooms of at most `presence_list_max` members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<Vec<UserId>>,
    /// How many members are online (always present).
    pub online_count: u32,
    pub members: u32,
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

/// A message, as pushed live (`t: "msg"`) and as returned in history pages (in its
/// latest state: edited, deleted, reactions).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub room: RoomId,
    pub seq: u64,
    pub from: UserId,
    pub body: String,
    pub ts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_id: Option<String>,
    #[serde(default, skip_serializing_if = "MessageKind::is_text")]
    pub kind: MessageKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    /// When the body was last edited (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<u64>,
    /// A tombstone: body and attachments are gone.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionCount>,
}

/// Stream event: a message's body was edited (`t: "edit"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditEvent {
    pub room: RoomId,
    pub seq: u64,
    pub target: u64,
    pub from: UserId,
    pub body: String,
    pub ts: u64,
}

/// Stream event: a message was deleted (`t: "delete"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteEvent {
    pub room: RoomId,
    pub seq: u64,
    pub target: u64,
    pub by: UserId,
    pub ts: u64,
}

/// Stream event: a reaction was added or removed (`t: "reaction"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionEvent {
    pub room: RoomId,
    pub seq: u64,
    pub target: u64,
    pub user: UserId,
    pub emoji: String,
    pub on: bool,
    pub ts: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub id: u64,
    pub room: RoomId,
    /// Oldest first (ascending seq).
    pub messages: Vec<Message>,
    /// Paging back (`before`, or neither): whether older messages exist
    /// before `messages[0]`. Paging forward (`after`): whether newer
    /// messages exist after the last one.
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
    /// Ids in it are shown as the client knows them (`ids::serialize_text`).
    #[serde(serialize_with = "crate::ids::serialize_text")]
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

/// Generic success for requests with nothing else to say. `seq` is the stream seq the
/// change took, when it took one (edit, delete, react).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OkReply {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// Push: a member's read pointer moved (coalesced).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadPush {
    pub room: RoomId,
    pub user: UserId,
    pub seq: u64,
}

/// Reply to `read`: my pointer and unread count after the move.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadAck {
    pub id: u64,
    pub room: RoomId,
    pub seq: u64,
    pub unread: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReceiptsReply {
    pub id: u64,
    pub room: RoomId,
    pub seq: u64,
    /// Members whose read pointer is at or past `seq`.
    pub readers: Vec<UserId>,
    /// Members to whose sessions `seq` has been delivered.
    pub delivered: Vec<UserId>,
}

/// Push: typing started or stopped (ephemeral, no seq).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TypingPush {
    pub room: RoomId,
    pub user: UserId,
    pub on: bool,
}

/// Push (no id) of one user's presence change; reply (with id) to a query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PresenceFrame {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub users: Vec<UserPresence>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomSummary {
    pub room: RoomId,
    pub name: String,
    pub kind: RoomKind,
    pub private: bool,
    pub role: Role,
    pub unread: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Message>,
    pub favorite: bool,
    /// For direct rooms: the other user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<UserId>,
    pub read_seq: u64,
}

/// Reply to `rooms`, and the snapshot pushed after `welcome` for `hello {sync: true}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomsReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub rooms: Vec<RoomSummary>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublicRoom {
    pub room: RoomId,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub members: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublicRoomsReply {
    pub id: u64,
    pub rooms: Vec<PublicRoom>,
    /// Cursor for the next page (`public_rooms {after}`); absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub user: UserId,
    pub role: Role,
    pub read_seq: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MembersReply {
    pub id: u64,
    pub room: RoomId,
    pub members: Vec<MemberInfo>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteInfo {
    pub code: String,
    pub room: RoomId,
    pub created_by: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u32>,
    pub uses: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InviteReply {
    pub id: u64,
    #[serde(flatten)]
    pub invite: InviteInfo,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvitesReply {
    pub id: u64,
    pub room: RoomId,
    pub invites: Vec<InviteInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FavoritesReply {
    pub id: u64,
    pub rooms: Vec<RoomId>,
    pub users: Vec<UserId>,
}

/// Push: someone became a member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberJoined {
    pub room: RoomId,
    pub user: UserId,
    pub role: Role,
}

/// Push: someone stopped being a member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberLeft {
    pub room: RoomId,
    pub user: UserId,
    pub reason: LeaveReason,
}

/// Push: a member's role changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleChanged {
    pub room: RoomId,
    pub user: UserId,
    pub role: Role,
}

/// Push: name, description or privacy changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomUpdated {
    pub room: RoomId,
    pub name: String,
    pub description: String,
    pub private: bool,
}

/// Push: the room was deleted; the subscription is over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomDeleted {
    pub room: RoomId,
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
    Direct(Direct),
    Edit(EditEvent),
    Delete(DeleteEvent),
    Reaction(ReactionEvent),
    Ok(OkReply),
    Read(ReadPush),
    ReadAck(ReadAck),
    Receipts(ReceiptsReply),
    Typing(TypingPush),
    Presence(PresenceFrame),
    Rooms(RoomsReply),
    PublicRooms(PublicRoomsReply),
    Members(MembersReply),
    Invite(InviteReply),
    Invites(InvitesReply),
    Favorites(FavoritesReply),
    MemberJoined(MemberJoined),
    MemberLeft(MemberLeft),
    RoleChanged(RoleChanged),
    RoomUpdated(RoomUpdated),
    RoomDeleted(RoomDeleted),
}

impl ServerFrame {
    pub fn error(id: Option<u64>, e: WireError) -> Self {
        ServerFrame::Error(ErrorFrame::from_wire(id, e, false))
    }

    pub fn ok(id: u64, room: Option<RoomId>, seq: Option<u64>) -> Self {
        ServerFrame::Ok(OkReply { id, room, seq })
    }

    /// The `id` of a reply; `None` for pushes.
    pub fn reply_id(&self) -> Option<u64> {
        use ServerFrame::*;
        match self {
            Welcome(f) => f.id,
            Created(f) => Some(f.id),
            Joined(f) => Some(f.id),
            Left(f) => Some(f.id),
            Sent(f) => Some(f.id),
            History(f) => Some(f.id),
            Pong(f) => f.id,
            Error(f) => f.id,
            Direct(f) => Some(f.id),
            Ok(f) => Some(f.id),
            ReadAck(f) => Some(f.id),
            Receipts(f) => Some(f.id),
            Presence(f) => f.id,
            Rooms(f) => f.id,
            PublicRooms(f) => Some(f.id),
            Members(f) => Some(f.id),
            Invite(f) => Some(f.id),
            Invites(f) => Some(f.id),
            Favorites(f) => Some(f.id),
            Msg(_) | Edit(_) | Delete(_) | Reaction(_) | Read(_) | Typing(_) | MemberJoined(_)
            | MemberLeft(_) | RoleChanged(_) | RoomUpdated(_) | RoomDeleted(_) => None,
        }
    }

    /// The stream seq of a stream event push (`msg`, `edit`, `delete`, `reaction`).
    pub fn stream_seq(&self) -> Option<u64> {
        match self {
            ServerFrame::Msg(m) => Some(m.seq),
            ServerFrame::Edit(e) => Some(e.seq),
            ServerFrame::Delete(e) => Some(e.seq),
            ServerFrame::Reaction(e) => Some(e.seq),
            _ => None,
        }
    }

    pub fn closing(e: WireError) -> Self {
        ServerFrame::Error(ErrorFrame::from_wire(None, e, true))
    }

    /// Decodes a server frame payload (client side).
    pub fn decode(payload: &[u8]) -> Result<ServerFrame, rmp_serde::decode::Error> {
        rmp_serde::from_slice(payload)
    }
}
