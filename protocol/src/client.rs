//! Frames a client sends (one struct per request type, matching
//! `proto-spec/README.md` one to one).
//!
//! The server decodes in two steps: a small header (`t`, `id`) first, then the
//! request struct for that `t` from the same bytes, so an unknown `t` is told
//! apart from a known one with bad fields, and the error can carry the `id`.

use super::error::WireError;
use super::types::{is_false, Attachment, MessageKind, Role, Status};
use super::validate;
use crate::ids::{RoomId, UserId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Protocol version; this server speaks 1.
    pub v: u32,
    /// A JWT (HS256, RS256 or ES256 as the server is configured). A missing
    /// token decodes as empty, so the server answers `unauthorized` (not
    /// `bad_request`), as for any other unusable token.
    #[serde(default)]
    pub token: String,
    /// Ask for a `rooms` snapshot right after `welcome` (one round trip to render the room list).
    #[serde(default, skip_serializing_if = "is_false")]
    pub sync: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateRoom {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub private: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A room id of the creator's choosing (default: a random one); `conflict` if taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Join {
    pub id: u64,
    pub room: RoomId,
    /// Resume: replay every stream event with a seq above this, then go live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// An invite code for a private room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Leave {
    pub id: u64,
    pub room: RoomId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Send {
    pub id: u64,
    pub room: RoomId,
    pub body: String,
    /// Client-chosen idempotency key: a resend with the same `(room, sender, local_id)`
    /// returns the original `sent` instead of storing a duplicate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_id: Option<String>,
    #[serde(default, skip_serializing_if = "MessageKind::is_text")]
    pub kind: MessageKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Seq of a message in the same room this one replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub id: u64,
    pub room: RoomId,
    /// Return messages with `seq < before` (default: the newest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// Return messages with `seq > after`, oldest first (paging forward);
    /// not together with `before`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Page size, 1..=200 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
}

/// `edit {room, seq, body}`: the author changes a text body within the edit window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edit {
    pub id: u64,
    pub room: RoomId,
    pub seq: u64,
    pub body: String,
}

/// `delete {room, seq}`: the author or a room admin leaves a tombstone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delete {
    pub id: u64,
    pub room: RoomId,
    pub seq: u64,
}

/// `react {room, seq, emoji, on}`: add (default) or remove one reaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct React {
    pub id: u64,
    pub room: RoomId,
    pub seq: u64,
    pub emoji: String,
    #[serde(default = "yes")]
    pub on: bool,
}

fn yes() -> bool {
    true
}

/// `read {room, seq}`: move my read pointer forward to `seq`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Read {
    pub id: u64,
    pub room: RoomId,
    pub seq: u64,
}

/// `receipts {room, seq}`: who has read up to `seq`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Receipts {
    pub id: u64,
    pub room: RoomId,
    pub seq: u64,
}

/// `typing {room, on}`: ephemeral; no reply unless it is refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Typing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub room: RoomId,
    #[serde(default = "yes")]
    pub on: bool,
}

/// `presence {status}` sets my status (`online` or `away`); `presence {users}` queries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserId>,
}

/// `rooms {}`: my rooms with role, unread count, last message and favorite flag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rooms {
    pub id: u64,
}

/// `public_rooms {prefix?, after?, limit?}`: the public room directory, by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublicRooms {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The `next` cursor of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `members {room}`: the member list with roles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Members {
    pub id: u64,
    pub room: RoomId,
}

/// `update_room {room, name?, description?, private?}` (owner).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateRoom {
    pub id: u64,
    pub room: RoomId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<bool>,
}

/// A request naming just a room: `delete_room`, `leave_room`, `invites`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomOnly {
    pub id: u64,
    pub room: RoomId,
}

/// A request naming a room and a user: `kick`, `ban`, `unban`, `transfer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomUser {
    pub id: u64,
    pub room: RoomId,
    pub user: UserId,
}

/// `set_role {room, user, role}` (owner; `admin` or `member`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetRole {
    pub id: u64,
    pub room: RoomId,
    pub user: UserId,
    pub role: Role,
}

/// `create_invite {room, expires_in_s?, max_uses?}` (admin or owner).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateInvite {
    pub id: u64,
    pub room: RoomId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u32>,
}

/// `revoke_invite {room, code}` (admin or owner).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RevokeInvite {
    pub id: u64,
    pub room: RoomId,
    pub code: String,
}

/// `start_direct {user}`: the one direct room of me and `user`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StartDirect {
    pub id: u64,
    pub user: UserId,
}

/// `favorite {room | user, on}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Favorite {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    #[serde(default = "yes")]
    pub on: bool,
}

/// `favorites {}`: my favorite rooms and people.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Favorites {
    pub id: u64,
}

/// Every frame a v1 client may send. Serializes with `t` first.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ClientFrame {
    Hello(Hello),
    CreateRoom(CreateRoom),
    Join(Join),
    Leave(Leave),
    Send(Send),
    History(History),
    Ping(Ping),
    Edit(Edit),
    Delete(Delete),
    React(React),
    Read(Read),
    Receipts(Receipts),
    Typing(Typing),
    Presence(Presence),
    Rooms(Rooms),
    PublicRooms(PublicRooms),
    Members(Members),
    UpdateRoom(UpdateRoom),
    DeleteRoom(RoomOnly),
    LeaveRoom(RoomOnly),
    Kick(RoomUser),
    Ban(RoomUser),
    Unban(RoomUser),
    SetRole(SetRole),
    Transfer(RoomUser),
    CreateInvite(CreateInvite),
    Invites(RoomOnly),
    RevokeInvite(RevokeInvite),
    StartDirect(StartDirect),
    Favorite(Favorite),
    Favorites(Favorites),
}

/// Why a payload could not be decoded into a [`ClientFrame`]; `id` is set when
/// the header was readable, so the error reply can carry it.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    pub id: Option<u64>,
    pub error: WireError,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    t: Option<&'a str>,
    #[serde(default)]
    id: Option<u64>,
}

fn body<'de, T: Deserialize<'de>>(payload: &'de [u8], id: Option<u64>) -> Result<T, DecodeError> {
    // The fast path: a plain decode. Only a failure pays for the field path.
    if let Ok(v) = rmp_serde::from_slice(payload) {
        return Ok(v);
    }
    let mut de = rmp_serde::Deserializer::from_read_ref(payload);
    match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            Err(DecodeError {
                id,
                error: WireError::bad_request(field_message(&path, e.into_inner())),
            })
        }
    }
}

/// A decode failure in our words, starting with the field's path: serde's
/// data-model messages (`invalid type: …, expected …`, our own value checks)
/// are kept; the MessagePack reader's I/O and marker errors are replaced, so
/// no library internals reach the client. A missing field is reported on the
/// field itself (`room: missing field`), not on the frame.
fn field_message(path: &str, e: rmp_serde::decode::Error) -> String {
    use rmp_serde::decode::Error as E;
    let msg = match e {
        E::Syntax(m) => m,
        E::Utf8Error(_) => "invalid UTF-8 in a string".into(),
        E::TypeMismatch(_) => "wrong MessagePack type".into(),
        E::OutOfRange => "number out of range".into(),
        E::LengthMismatch(_) => "wrong number of elements".into(),
        E::DepthLimitExceeded => "nested too deeply".into(),
        E::InvalidMarkerRead(_) | E::InvalidDataRead(_) | E::Uncategorized(_) => {
            "malformed value".into()
        }
    };
    if let Some(name) = msg
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return if path == "." {
            format!("{name}: missing field")
        } else {
            format!("{path}.{name}: missing field")
        };
    }
    if path == "." {
        msg
    } else {
        format!("{path}: {msg}")
    }
}

impl ClientFrame {
    /// Decodes one frame payload (the bytes after the length header).
    pub fn decode(payload: &[u8]) -> Result<ClientFrame, DecodeError> {
        validate::check(payload).map_err(|m| DecodeError {
            id: None,
            error: WireError::bad_request(m),
        })?;
        let head: Head<'_> = body(payload, None)?;
        let id = head.id;
        let t = head.t.ok_or_else(|| DecodeError {
            id,
            error: WireError::bad_request("t: missing frame type"),
        })?;
        Ok(match t {
            "hello" => ClientFrame::Hello(body(payload, id)?),
            "create_room" => ClientFrame::CreateRoom(body(payload, id)?),
            "join" => ClientFrame::Join(body(payload, id)?),
            "leave" => ClientFrame::Leave(body(payload, id)?),
            "send" => ClientFrame::Send(body(payload, id)?),
            "history" => ClientFrame::History(body(payload, id)?),
            "ping" => ClientFrame::Ping(body(payload, id)?),
            "edit" => ClientFrame::Edit(body(payload, id)?),
            "delete" => ClientFrame::Delete(body(payload, id)?),
            "react" => ClientFrame::React(body(payload, id)?),
            "read" => ClientFrame::Read(body(payload, id)?),
            "receipts" => ClientFrame::Receipts(body(payload, id)?),
            "typing" => ClientFrame::Typing(body(payload, id)?),
            "presence" => ClientFrame::Presence(body(payload, id)?),
            "rooms" => ClientFrame::Rooms(body(payload, id)?),
            "public_rooms" => ClientFrame::PublicRooms(body(payload, id)?),
            "members" => ClientFrame::Members(body(payload, id)?),
            "update_room" => ClientFrame::UpdateRoom(body(payload, id)?),
            "delete_room" => ClientFrame::DeleteRoom(body(payload, id)?),
            "leave_room" => ClientFrame::LeaveRoom(body(payload, id)?),
            "kick" => ClientFrame::Kick(body(payload, id)?),
            "ban" => ClientFrame::Ban(body(payload, id)?),
            "unban" => ClientFrame::Unban(body(payload, id)?),
            "set_role" => ClientFrame::SetRole(body(payload, id)?),
            "transfer" => ClientFrame::Transfer(body(payload, id)?),
            "create_invite" => ClientFrame::CreateInvite(body(payload, id)?),
            "invites" => ClientFrame::Invites(body(payload, id)?),
            "revoke_invite" => ClientFrame::RevokeInvite(body(payload, id)?),
            "start_direct" => ClientFrame::StartDirect(body(payload, id)?),
            "favorite" => ClientFrame::Favorite(body(payload, id)?),
            "favorites" => ClientFrame::Favorites(body(payload, id)?),
            other => {
                return Err(DecodeError {
                    id,
                    error: WireError::new(
                        super::ErrorCode::UnknownType,
                        format!("unknown frame type {other:?}"),
                    ),
                })
            }
        })
    }

    /// The type name as it appears in `t`.
    pub fn type_name(&self) -> &'static str {
        use ClientFrame::*;
        match self {
            Hello(_) => "hello",
            CreateRoom(_) => "create_room",
            Join(_) => "join",
            Leave(_) => "leave",
            Send(_) => "send",
            History(_) => "history",
            Ping(_) => "ping",
            Edit(_) => "edit",
            Delete(_) => "delete",
            React(_) => "react",
            Read(_) => "read",
            Receipts(_) => "receipts",
            Typing(_) => "typing",
            Presence(_) => "presence",
            Rooms(_) => "rooms",
            PublicRooms(_) => "public_rooms",
            Members(_) => "members",
            UpdateRoom(_) => "update_room",
            DeleteRoom(_) => "delete_room",
            LeaveRoom(_) => "leave_room",
            Kick(_) => "kick",
            Ban(_) => "ban",
            Unban(_) => "unban",
            SetRole(_) => "set_role",
            Transfer(_) => "transfer",
            CreateInvite(_) => "create_invite",
            Invites(_) => "invites",
            RevokeInvite(_) => "revoke_invite",
            StartDirect(_) => "start_direct",
            Favorite(_) => "favorite",
            Favorites(_) => "favorites",
        }
    }

    /// The request id, if the frame has one.
    pub fn id(&self) -> Option<u64> {
        use ClientFrame::*;
        match self {
            Hello(f) => f.id,
            Ping(f) => f.id,
            Typing(f) => f.id,
            CreateRoom(f) => Some(f.id),
            Join(f) => Some(f.id),
            Leave(f) => Some(f.id),
            Send(f) => Some(f.id),
            History(f) => Some(f.id),
            Edit(f) => Some(f.id),
            Delete(f) => Some(f.id),
            React(f) => Some(f.id),
            Read(f) => Some(f.id),
            Receipts(f) => Some(f.id),
            Presence(f) => Some(f.id),
            Rooms(f) => Some(f.id),
            PublicRooms(f) => Some(f.id),
            Members(f) => Some(f.id),
            UpdateRoom(f) => Some(f.id),
            DeleteRoom(f) | LeaveRoom(f) | Invites(f) => Some(f.id),
            Kick(f) | Ban(f) | Unban(f) | Transfer(f) => Some(f.id),
            SetRole(f) => Some(f.id),
            CreateInvite(f) => Some(f.id),
            RevokeInvite(f) => Some(f.id),
            StartDirect(f) => Some(f.id),
            Favorite(f) => Some(f.id),
            Favorites(f) => Some(f.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn payload(v: serde_json::Value) -> Vec<u8> {
        rmp_serde::to_vec_named(&v).unwrap()
    }

    #[test]
    fn decodes_and_ignores_unknown_keys() {
        let f = ClientFrame::decode(&payload(serde_json::json!({
            "t": "send", "id": 3, "room": "general", "body": "hi", "extra": [1, 2]
        })))
        .unwrap();
        match f {
            ClientFrame::Send(s) => {
                assert_eq!(s.id, 3);
                assert_eq!(s.room.as_str(), "general");
                assert_eq!(s.local_id, None);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_type_keeps_the_id() {
        let e =
            ClientFrame::decode(&payload(serde_json::json!({"t": "nope", "id": 9}))).unwrap_err();
        assert_eq!(e.id, Some(9));
        assert_eq!(e.error.code, ErrorCode::UnknownType);
    }

    #[test]
    fn wrong_field_types_name_the_field() {
        let e = ClientFrame::decode(&payload(
            serde_json::json!({"t": "join", "id": 4, "room": 5}),
        ))
        .unwrap_err();
        assert_eq!(e.id, Some(4));
        assert_eq!(e.error.code, ErrorCode::BadRequest);
        assert!(e.error.message.starts_with("room"), "{}", e.error.message);
        let e =
            ClientFrame::decode(&payload(serde_json::json!({"t": "join", "id": 4}))).unwrap_err();
        assert_eq!(e.error.message, "room: missing field");
        let e = ClientFrame::decode(&payload(serde_json::json!({
            "t": "send", "id": 4, "room": "r", "body": "", "kind": "file",
            "attachments": [{"name": "a", "mime": "a/b", "size": 1}]
        })))
        .unwrap_err();
        assert_eq!(e.error.message, "attachments[0].url: missing field");
        let e = ClientFrame::decode(&payload(
            serde_json::json!({"t": "join", "id": 4, "room": "bad room"}),
        ))
        .unwrap_err();
        assert!(e.error.message.contains("room"), "{}", e.error.message);
    }

    #[test]
    fn invalid_utf8_is_a_bad_request() {
        // {"t": "send", "id": 1, "room": "r", "body": <0xff>}
        let mut p = vec![
            0x84, 0xa1, b't', 0xa4, b's', b'e', b'n', b'd', 0xa2, b'i', b'd', 0x01,
        ];
        p.extend([
            0xa4, b'r', b'o', b'o', b'm', 0xa1, b'r', 0xa4, b'b', b'o', b'd', b'y', 0xa1, 0xff,
        ]);
        let e = ClientFrame::decode(&p).unwrap_err();
        assert_eq!(e.error.code, ErrorCode::BadRequest);
        assert!(e.error.message.contains("body"), "{}", e.error.message);
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let f = ClientFrame::History(History {
            id: 1,
            room: RoomId::new("r1").unwrap(),
            before: Some(10),
            after: None,
            limit: None,
        });
        let bytes = rmp_serde::to_vec_named(&f).unwrap();
        assert_eq!(ClientFrame::decode(&bytes).unwrap(), f);
    }
}
