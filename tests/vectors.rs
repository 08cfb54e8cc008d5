//! `proto-spec/vectors.json` is the v1 wire contract in machine-readable form:
//! every frame type as exact bytes, plus invalid inputs and the error code the
//! server answers them with. This file both produces it and holds the code to it.
//!
//! - `ROOMCAST_BLESS=1 cargo test --test vectors` regenerates the file from the
//!   typed frames below, encoded with `roomcast::proto::encode`.
//! - Otherwise the file must equal what the code produces now (a change to the
//!   encoding fails here with a diff), and every vector in it is checked against
//!   the codec: valid frames decode and re-encode to the same bytes, invalid
//!   ones get their documented error code.
//!
//! Also: every `ErrorCode` appears in the error table of `proto-spec/README.md`.

use bytes::BytesMut;
use roomcast::auth::Authenticator;
use roomcast::ids::{RoomId, SessionId, UserId};
use roomcast::proto::server::{
    Created, DeleteEvent, Direct, EditEvent, ErrorFrame, FavoritesReply, HistoryPage, InviteInfo,
    InviteReply, InvitesReply, Joined, Left, MemberInfo, MemberJoined, MemberLeft, MembersReply,
    Message, OkReply, Pong, PresenceFrame, PublicRoom, PublicRoomsReply, ReactionEvent, ReadAck,
    ReadPush, ReceiptsReply, RoleChanged, RoomDeleted, RoomSummary, RoomUpdated, RoomsReply, Sent,
    TypingPush, Welcome,
};
use roomcast::proto::types::{
    Attachment, LeaveReason, MessageKind, ReactionCount, Role, RoomKind, Status, UserPresence,
};
use roomcast::proto::{
    client, encode, ClientFrame, ErrorCode, FrameCodec, FrameError, ServerFrame, DEFAULT_MAX_FRAME,
};
use roomcast::session::{Output, Session, SessionLimits};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;
use tokio_util::codec::Decoder;

const README: &str = include_str!("../proto-spec/README.md");

const C2S: &str = "client_to_server";
const S2C: &str = "server_to_client";

/// An HS256 JWT for `{"sub":"alice","exp":4102444800}` signed with the secret
/// `roomcast-vector-secret`. Illustrative only: no real server uses that secret.
const TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.d75faPxYuV1rhhZWXm9B92HC00kk_jsKxFKcS4P7R2o";

/// 2026-01-01T00:00:00Z in ms: the `ts` of the sample messages.
const TS: u64 = 1_767_225_600_000;

/// An invite code as the server makes them (24 hex digits).
const INVITE: &str = "9f2c4e6a8b0d1f3e5a7c9e1b";

/// A `public_rooms` cursor as the server makes them: opaque hex (here of the
/// key `general\0r0123456789abcdef01234567`).
const CURSOR: &str = "67656e6572616c0072303132333435363738396162636465663031323334353637";

/// The direct room of `alice` and `bob`: "d" + 40 hex digits of SHA-256.
const DIRECT_ALICE_BOB: &str = "d884a452152d3bf048cc051df8f708aff3f854a3d";

fn image_attachment() -> Attachment {
    Attachment {
        url: "https://files.example.com/u/alice/view.jpg".into(),
        name: "view.jpg".into(),
        mime: "image/jpeg".into(),
        size: 482_113,
        width: Some(1600),
        height: Some(1200),
    }
}

fn file_attachment() -> Attachment {
    Attachment {
        url: "https://files.example.com/u/alice/q3.pdf".into(),
        name: "Q3 report.pdf".into(),
        mime: "application/pdf".into(),
        size: 1_048_576,
        width: None,
        height: None,
    }
}

fn room_user(id: u64, u: &str) -> client::RoomUser {
    client::RoomUser {
        id,
        room: room("general"),
        user: user(u),
    }
}

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto-spec/vectors.json")
}

fn blessing() -> bool {
    std::env::var("ROOMCAST_BLESS").is_ok_and(|v| v == "1")
}

fn room(s: &str) -> RoomId {
    RoomId::new(s).unwrap()
}

fn user(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

/// Hand-built MessagePack, so invalid and non-canonical payloads are exact.
mod mp {
    pub fn map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        rmp::encode::write_map_len(&mut out, entries.len() as u32).unwrap();
        for (k, v) in entries {
            rmp::encode::write_str(&mut out, k).unwrap();
            out.extend_from_slice(v);
        }
        out
    }

    pub fn s(v: &str) -> Vec<u8> {
        let mut out = Vec::new();
        rmp::encode::write_str(&mut out, v).unwrap();
        out
    }

    pub fn u(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        rmp::encode::write_uint(&mut out, v).unwrap();
        out
    }

    pub fn b(v: bool) -> Vec<u8> {
        vec![if v { 0xc3 } else { 0xc2 }]
    }

    pub fn arr(items: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        rmp::encode::write_array_len(&mut out, items.len() as u32).unwrap();
        for i in items {
            out.extend_from_slice(i);
        }
        out
    }

    /// An attachment map with the given mime, size and URL.
    pub fn attachment(url: &str, mime: &str, size: u64) -> Vec<u8> {
        map(&[
            ("url", s(url)),
            ("name", s("x.bin")),
            ("mime", s(mime)),
            ("size", u(size)),
        ])
    }

    /// `depth` arrays, each holding the next; the innermost is empty.
    pub fn nested_arrays(depth: usize) -> Vec<u8> {
        let mut out = vec![0x91; depth - 1];
        out.push(0x90);
        out
    }
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn vector(name: &str, direction: &str, bytes: &[u8]) -> serde_json::Map<String, Value> {
    let mut v = serde_json::Map::new();
    v.insert("name".into(), json!(name));
    v.insert("direction".into(), json!(direction));
    v.insert("hex".into(), json!(hex::encode(bytes)));
    v
}

/// A valid frame as the Rust encoder writes it (canonical bytes).
fn valid<T: serde::Serialize>(name: &str, direction: &str, frame: &T) -> Value {
    let bytes = encode(frame);
    let decoded = serde_json::to_value(frame).unwrap();
    let from_wire: Value = rmp_serde::from_slice(&bytes[4..]).unwrap();
    assert_eq!(
        decoded, from_wire,
        "{name}: serde view and wire view differ"
    );
    let mut v = vector(name, direction, &bytes);
    v.insert("decoded".into(), decoded);
    Value::Object(v)
}

/// A client frame the server accepts but would itself encode differently
/// (key order, unknown keys, defaulted fields): `canonical_hex` is its encoding.
fn accepted(name: &str, note: &str, payload: Vec<u8>) -> Value {
    let bytes = framed(&payload);
    let frame = ClientFrame::decode(&payload).unwrap();
    let canonical = encode(&frame);
    assert_ne!(&canonical[..], &bytes[..], "{name}: already canonical");
    let mut v = vector(name, C2S, &bytes);
    v.insert(
        "decoded".into(),
        rmp_serde::from_slice::<Value>(&payload).unwrap(),
    );
    v.insert("canonical_hex".into(), json!(hex::encode(&canonical)));
    v.insert("note".into(), json!(note));
    Value::Object(v)
}

/// An invalid client input and the error code the server answers with. `bytes`
/// is the whole input, header included; `decoded` is set when the payload is a
/// well-formed MessagePack map (the error is about its contents).
fn invalid(name: &str, note: &str, bytes: Vec<u8>, decoded: bool, error: ErrorCode) -> Value {
    let mut v = vector(name, C2S, &bytes);
    if decoded {
        v.insert(
            "decoded".into(),
            rmp_serde::from_slice::<Value>(&bytes[4..]).unwrap(),
        );
    }
    v.insert("error".into(), json!(error.as_str()));
    v.insert("note".into(), json!(note));
    Value::Object(v)
}

fn sample_messages() -> (Message, Message) {
    let first = Message {
        room: room("general"),
        seq: 41,
        from: user("bob"),
        body: "hi all".into(),
        ts: TS - 5_000,
        local_id: None,
        kind: MessageKind::Text,
        attachments: vec![],
        reply_to: None,
        edited_at: None,
        deleted: false,
        reactions: vec![],
    };
    let second = Message {
        room: room("general"),
        seq: 42,
        from: user("alice"),
        body: "hello, world ✓".into(),
        ts: TS,
        local_id: Some("c1-0001".into()),
        kind: MessageKind::Text,
        attachments: vec![],
        reply_to: None,
        edited_at: None,
        deleted: false,
        reactions: vec![],
    };
    (first, second)
}

/// Messages of the chat domain: an image replying to 41, a file without a
/// caption, and 42 / 41 in their latest state (edited with reactions; deleted).
fn chat_messages(first: &Message, second: &Message) -> (Message, Message, Message, Message) {
    let image_reply = Message {
        room: room("general"),
        seq: 46,
        from: user("bob"),
        body: "the view".into(),
        ts: TS + 70_000,
        local_id: Some("b7-0100".into()),
        kind: MessageKind::Image,
        attachments: vec![image_attachment()],
        reply_to: Some(42),
        edited_at: None,
        deleted: false,
        reactions: vec![],
    };
    let file_msg = Message {
        room: room("general"),
        seq: 47,
        from: user("alice"),
        body: String::new(),
        ts: TS + 80_000,
        local_id: None,
        kind: MessageKind::File,
        attachments: vec![file_attachment()],
        reply_to: None,
        edited_at: None,
        deleted: false,
        reactions: vec![],
    };
    let edited = Message {
        body: "hello, world ✓✓".into(),
        edited_at: Some(TS + 30_000),
        reactions: vec![ReactionCount {
            emoji: "👍".into(),
            count: 1,
            me: false,
        }],
        ..second.clone()
    };
    let tombstone = Message {
        body: String::new(),
        deleted: true,
        ..first.clone()
    };
    (image_reply, file_msg, edited, tombstone)
}

fn room_summaries(last: &Message) -> Vec<RoomSummary> {
    vec![
        RoomSummary {
            room: room("general"),
            name: "General".into(),
            kind: RoomKind::Room,
            private: false,
            role: Role::Owner,
            unread: 1,
            last: Some(last.clone()),
            favorite: true,
            peer: None,
            read_seq: 40,
        },
        RoomSummary {
            room: room(DIRECT_ALICE_BOB),
            name: String::new(),
            kind: RoomKind::Direct,
            private: true,
            role: Role::Member,
            unread: 0,
            last: None,
            favorite: false,
            peer: Some(user("bob")),
            read_seq: 0,
        },
    ]
}

fn invite_info(expires_at: Option<u64>, max_uses: Option<u32>, uses: u32) -> InviteInfo {
    InviteInfo {
        code: INVITE.into(),
        room: room("team"),
        created_by: user("alice"),
        expires_at,
        max_uses,
        uses,
    }
}

/// The whole vector file, from the code.
fn generate() -> Value {
    use client::{CreateRoom, Hello, History, Join, Leave, Ping};
    let general = || room("general");
    let mut out = Vec::new();

    // Client frames, canonical.
    for (name, frame) in [
        (
            "hello",
            ClientFrame::Hello(Hello {
                id: None,
                v: 1,
                token: TOKEN.into(),
                sync: false,
            }),
        ),
        (
            "hello_with_id",
            ClientFrame::Hello(Hello {
                id: Some(1),
                v: 1,
                token: TOKEN.into(),
                sync: false,
            }),
        ),
        (
            "hello_with_sync",
            ClientFrame::Hello(Hello {
                id: Some(1),
                v: 1,
                token: TOKEN.into(),
                sync: true,
            }),
        ),
        (
            "create_room",
            ClientFrame::CreateRoom(CreateRoom {
                id: 2,
                name: "General chat".into(),
                private: false,
                description: None,
                room: None,
            }),
        ),
        (
            "create_room_private",
            ClientFrame::CreateRoom(CreateRoom {
                id: 2,
                name: "Team ✓".into(),
                private: true,
                description: None,
                room: None,
            }),
        ),
        (
            "create_room_with_description",
            ClientFrame::CreateRoom(CreateRoom {
                id: 2,
                name: "General chat".into(),
                private: false,
                description: Some("Anything goes.\nBe kind.".into()),
                room: None,
            }),
        ),
        (
            "create_room_with_room_id",
            ClientFrame::CreateRoom(CreateRoom {
                id: 2,
                name: "Team ✓".into(),
                private: true,
                description: None,
                room: Some(room("team")),
            }),
        ),
        (
            "join",
            ClientFrame::Join(Join {
                id: 3,
                room: general(),
                since: None,
                invite: None,
            }),
        ),
        (
            "join_with_since",
            ClientFrame::Join(Join {
                id: 3,
                room: general(),
                since: Some(40),
                invite: None,
            }),
        ),
        (
            "join_with_invite",
            ClientFrame::Join(Join {
                id: 3,
                room: room("team"),
                since: None,
                invite: Some(INVITE.into()),
            }),
        ),
        (
            "leave",
            ClientFrame::Leave(Leave {
                id: 4,
                room: general(),
            }),
        ),
        (
            "send",
            ClientFrame::Send(client::Send {
                id: 5,
                room: general(),
                body: "hi all".into(),
                local_id: None,
                kind: MessageKind::Text,
                attachments: vec![],
                reply_to: None,
            }),
        ),
        (
            "send_with_local_id",
            ClientFrame::Send(client::Send {
                id: 5,
                room: general(),
                body: "hello, world ✓".into(),
                local_id: Some("c1-0001".into()),
                kind: MessageKind::Text,
                attachments: vec![],
                reply_to: None,
            }),
        ),
        (
            "send_reply",
            ClientFrame::Send(client::Send {
                id: 5,
                room: general(),
                body: "agreed".into(),
                local_id: None,
                kind: MessageKind::Text,
                attachments: vec![],
                reply_to: Some(41),
            }),
        ),
        (
            "send_image",
            ClientFrame::Send(client::Send {
                id: 5,
                room: general(),
                body: "the view".into(),
                local_id: Some("c1-0002".into()),
                kind: MessageKind::Image,
                attachments: vec![image_attachment()],
                reply_to: None,
            }),
        ),
        (
            "send_file_no_caption",
            ClientFrame::Send(client::Send {
                id: 5,
                room: general(),
                body: String::new(),
                local_id: None,
                kind: MessageKind::File,
                attachments: vec![file_attachment()],
                reply_to: None,
            }),
        ),
        (
            "history",
            ClientFrame::History(History {
                id: 6,
                room: general(),
                before: None,
                after: None,
                limit: None,
            }),
        ),
        (
            "history_with_before_and_limit",
            ClientFrame::History(History {
                id: 6,
                room: general(),
                before: Some(43),
                after: None,
                limit: Some(2),
            }),
        ),
        (
            "history_with_after_and_limit",
            ClientFrame::History(History {
                id: 6,
                room: general(),
                before: None,
                after: Some(40),
                limit: Some(2),
            }),
        ),
        ("ping", ClientFrame::Ping(Ping { id: None })),
        ("ping_with_id", ClientFrame::Ping(Ping { id: Some(7) })),
        (
            "edit",
            ClientFrame::Edit(client::Edit {
                id: 8,
                room: general(),
                seq: 42,
                body: "hello, world ✓✓".into(),
            }),
        ),
        (
            "delete",
            ClientFrame::Delete(client::Delete {
                id: 9,
                room: general(),
                seq: 41,
            }),
        ),
        (
            "react",
            ClientFrame::React(client::React {
                id: 10,
                room: general(),
                seq: 42,
                emoji: "👍".into(),
                on: true,
            }),
        ),
        (
            "react_off_shortcode",
            ClientFrame::React(client::React {
                id: 10,
                room: general(),
                seq: 42,
                emoji: ":tada:".into(),
                on: false,
            }),
        ),
        (
            "read",
            ClientFrame::Read(client::Read {
                id: 11,
                room: general(),
                seq: 45,
            }),
        ),
        (
            "receipts",
            ClientFrame::Receipts(client::Receipts {
                id: 12,
                room: general(),
                seq: 42,
            }),
        ),
        (
            "typing",
            ClientFrame::Typing(client::Typing {
                id: None,
                room: general(),
                on: true,
            }),
        ),
        (
            "typing_off_with_id",
            ClientFrame::Typing(client::Typing {
                id: Some(13),
                room: general(),
                on: false,
            }),
        ),
        (
            "presence_set_away",
            ClientFrame::Presence(client::Presence {
                id: 14,
                status: Some(Status::Away),
                users: vec![],
            }),
        ),
        (
            "presence_query",
            ClientFrame::Presence(client::Presence {
                id: 14,
                status: None,
                users: vec![user("bob"), user("carol")],
            }),
        ),
        ("rooms", ClientFrame::Rooms(client::Rooms { id: 15 })),
        (
            "public_rooms",
            ClientFrame::PublicRooms(client::PublicRooms {
                id: 16,
                prefix: None,
                after: None,
                limit: None,
            }),
        ),
        (
            "public_rooms_with_prefix_after_limit",
            ClientFrame::PublicRooms(client::PublicRooms {
                id: 16,
                prefix: Some("Gen".into()),
                after: Some(CURSOR.into()),
                limit: Some(20),
            }),
        ),
        (
            "members",
            ClientFrame::Members(client::Members {
                id: 17,
                room: general(),
            }),
        ),
        (
            "update_room",
            ClientFrame::UpdateRoom(client::UpdateRoom {
                id: 18,
                room: general(),
                name: Some("General".into()),
                description: Some("Company-wide".into()),
                private: Some(false),
            }),
        ),
        (
            "update_room_private_only",
            ClientFrame::UpdateRoom(client::UpdateRoom {
                id: 18,
                room: general(),
                name: None,
                description: None,
                private: Some(true),
            }),
        ),
        (
            "delete_room",
            ClientFrame::DeleteRoom(client::RoomOnly {
                id: 19,
                room: general(),
            }),
        ),
        (
            "leave_room",
            ClientFrame::LeaveRoom(client::RoomOnly {
                id: 20,
                room: general(),
            }),
        ),
        ("kick", ClientFrame::Kick(room_user(21, "bob"))),
        ("ban", ClientFrame::Ban(room_user(22, "bob"))),
        ("unban", ClientFrame::Unban(room_user(23, "bob"))),
        (
            "set_role",
            ClientFrame::SetRole(client::SetRole {
                id: 24,
                room: general(),
                user: user("bob"),
                role: Role::Admin,
            }),
        ),
        ("transfer", ClientFrame::Transfer(room_user(25, "bob"))),
        (
            "create_invite",
            ClientFrame::CreateInvite(client::CreateInvite {
                id: 26,
                room: room("team"),
                expires_in_s: None,
                max_uses: None,
            }),
        ),
        (
            "create_invite_with_expiry_and_max_uses",
            ClientFrame::CreateInvite(client::CreateInvite {
                id: 26,
                room: room("team"),
                expires_in_s: Some(86_400),
                max_uses: Some(5),
            }),
        ),
        (
            "invites",
            ClientFrame::Invites(client::RoomOnly {
                id: 27,
                room: room("team"),
            }),
        ),
        (
            "revoke_invite",
            ClientFrame::RevokeInvite(client::RevokeInvite {
                id: 28,
                room: room("team"),
                code: INVITE.into(),
            }),
        ),
        (
            "start_direct",
            ClientFrame::StartDirect(client::StartDirect {
                id: 29,
                user: user("bob"),
            }),
        ),
        (
            "favorite_room",
            ClientFrame::Favorite(client::Favorite {
                id: 30,
                room: Some(general()),
                user: None,
                on: true,
            }),
        ),
        (
            "favorite_user_off",
            ClientFrame::Favorite(client::Favorite {
                id: 30,
                room: None,
                user: Some(user("bob")),
                on: false,
            }),
        ),
        (
            "favorites",
            ClientFrame::Favorites(client::Favorites { id: 31 }),
        ),
    ] {
        out.push(valid(name, C2S, &frame));
    }

    // Client frames the server accepts in a non-canonical form.
    out.push(accepted(
        "create_room_private_omitted",
        "private is optional (default false); the Rust encoder always writes it",
        mp::map(&[
            ("t", mp::s("create_room")),
            ("id", mp::u(2)),
            ("name", mp::s("General chat")),
        ]),
    ));
    out.push(accepted(
        "join_t_not_first",
        "key order does not matter",
        mp::map(&[
            ("id", mp::u(3)),
            ("room", mp::s("general")),
            ("t", mp::s("join")),
        ]),
    ));
    out.push(accepted(
        "ping_unknown_keys_max_depth",
        "unknown keys are ignored; nesting depth 16 (the map plus 15 arrays) is the limit",
        mp::map(&[
            ("t", mp::s("ping")),
            ("id", mp::u(7)),
            ("x-extension", mp::nested_arrays(15)),
        ]),
    ));
    out.push(accepted(
        "send_id_as_uint64",
        "integers may use any MessagePack width; the server writes the shortest",
        {
            let mut id = vec![0xcf];
            id.extend_from_slice(&5u64.to_be_bytes());
            mp::map(&[
                ("t", mp::s("send")),
                ("id", id),
                ("room", mp::s("general")),
                ("body", mp::s("hi all")),
            ])
        },
    ));

    out.push(accepted(
        "react_on_omitted",
        "on is optional (default true: add); the Rust encoder always writes it",
        mp::map(&[
            ("t", mp::s("react")),
            ("id", mp::u(10)),
            ("room", mp::s("general")),
            ("seq", mp::u(42)),
            ("emoji", mp::s("👍")),
        ]),
    ));
    out.push(accepted(
        "typing_on_omitted",
        "on is optional (default true); the Rust encoder always writes it",
        mp::map(&[("t", mp::s("typing")), ("room", mp::s("general"))]),
    ));
    out.push(accepted(
        "favorite_on_omitted",
        "on is optional (default true); the Rust encoder always writes it",
        mp::map(&[
            ("t", mp::s("favorite")),
            ("id", mp::u(30)),
            ("room", mp::s("general")),
        ]),
    ));
    out.push(accepted(
        "send_kind_text_and_empty_lists_explicit",
        "kind text and an empty attachments array are the defaults; the Rust encoder omits them",
        mp::map(&[
            ("t", mp::s("send")),
            ("id", mp::u(5)),
            ("room", mp::s("general")),
            ("body", mp::s("hi all")),
            ("kind", mp::s("text")),
            ("attachments", mp::arr(&[])),
        ]),
    ));
    out.push(accepted(
        "hello_sync_false_explicit",
        "sync false is the default; the Rust encoder omits it",
        mp::map(&[
            ("t", mp::s("hello")),
            ("id", mp::u(1)),
            ("v", mp::u(1)),
            ("token", mp::s(TOKEN)),
            ("sync", mp::b(false)),
        ]),
    ));

    // Server frames.
    let (first, second) = sample_messages();
    let (image_reply, file_msg, edited, tombstone) = chat_messages(&first, &second);
    let welcome = |id| {
        ServerFrame::Welcome(Welcome {
            id,
            v: 1,
            user: user("alice"),
            session: "s1".into(),
            heartbeat_ms: 15_000,
            max_frame: DEFAULT_MAX_FRAME as u64,
            server: "roomcast/0.1.0".into(),
        })
    };
    for (name, frame) in [
        ("welcome", welcome(None)),
        ("welcome_with_id", welcome(Some(1))),
        (
            "created",
            ServerFrame::Created(Created {
                id: 2,
                room: room("r0123456789abcdef01234567"),
                name: "General chat".into(),
                private: false,
            }),
        ),
        (
            "joined",
            ServerFrame::Joined(Joined {
                id: 3,
                room: general(),
                seq: 41,
                complete: None,
                role: Role::Member,
                online: Some(vec![user("alice"), user("bob")]),
                online_count: 2,
                members: 5,
            }),
        ),
        (
            "joined_resume_complete",
            ServerFrame::Joined(Joined {
                id: 3,
                room: general(),
                seq: 41,
                complete: Some(true),
                role: Role::Owner,
                online: Some(vec![user("alice"), user("bob")]),
                online_count: 2,
                members: 5,
            }),
        ),
        (
            "joined_large_room_resume_cut_by_retention",
            ServerFrame::Joined(Joined {
                id: 3,
                room: room("lobby"),
                seq: 90_210,
                complete: Some(false),
                role: Role::Admin,
                online: None,
                online_count: 312,
                members: 4_096,
            }),
        ),
        (
            "left",
            ServerFrame::Left(Left {
                id: 4,
                room: general(),
            }),
        ),
        (
            "sent",
            ServerFrame::Sent(Sent {
                id: 5,
                room: general(),
                seq: 41,
                ts: TS - 5_000,
                local_id: None,
            }),
        ),
        (
            "sent_with_local_id",
            ServerFrame::Sent(Sent {
                id: 5,
                room: general(),
                seq: 42,
                ts: TS,
                local_id: Some("c1-0001".into()),
            }),
        ),
        ("msg", ServerFrame::Msg(first.clone())),
        ("msg_with_local_id", ServerFrame::Msg(second.clone())),
        ("msg_image_reply", ServerFrame::Msg(image_reply)),
        ("msg_file", ServerFrame::Msg(file_msg.clone())),
        (
            "history_page_two_messages",
            ServerFrame::History(HistoryPage {
                id: 6,
                room: general(),
                messages: vec![first.clone(), second.clone()],
                more: true,
            }),
        ),
        (
            "history_page_latest_state",
            ServerFrame::History(HistoryPage {
                id: 6,
                room: general(),
                messages: vec![tombstone, edited],
                more: true,
            }),
        ),
        (
            "history_page_empty",
            ServerFrame::History(HistoryPage {
                id: 6,
                room: general(),
                messages: vec![],
                more: false,
            }),
        ),
        ("pong", ServerFrame::Pong(Pong { id: None })),
        ("pong_with_id", ServerFrame::Pong(Pong { id: Some(7) })),
        (
            "error_bad_request",
            ServerFrame::Error(ErrorFrame {
                id: Some(3),
                code: ErrorCode::BadRequest,
                message: "room: room id may only contain A-Z a-z 0-9 _ . : -".into(),
                retry_after_ms: None,
                close: false,
            }),
        ),
        (
            "error_rate_limited",
            ServerFrame::Error(ErrorFrame {
                id: Some(5),
                code: ErrorCode::RateLimited,
                message: "Send rate limit; retry in 100 ms".into(),
                retry_after_ms: Some(100),
                close: false,
            }),
        ),
        (
            "error_shutting_down_closes",
            ServerFrame::Error(ErrorFrame {
                id: None,
                code: ErrorCode::ShuttingDown,
                message: "server is shutting down; reconnect".into(),
                retry_after_ms: Some(2_500),
                close: true,
            }),
        ),
        (
            "error_forbidden",
            ServerFrame::Error(ErrorFrame {
                id: Some(21),
                code: ErrorCode::Forbidden,
                message: "you can only act on members with a lower role".into(),
                retry_after_ms: None,
                close: false,
            }),
        ),
        (
            "direct",
            ServerFrame::Direct(Direct {
                id: 29,
                room: room(DIRECT_ALICE_BOB),
                peer: user("bob"),
            }),
        ),
        (
            "edit_event",
            ServerFrame::Edit(EditEvent {
                room: general(),
                seq: 43,
                target: 42,
                from: user("alice"),
                body: "hello, world ✓✓".into(),
                ts: TS + 30_000,
            }),
        ),
        (
            "delete_event",
            ServerFrame::Delete(DeleteEvent {
                room: general(),
                seq: 44,
                target: 41,
                by: user("alice"),
                ts: TS + 40_000,
            }),
        ),
        (
            "reaction",
            ServerFrame::Reaction(ReactionEvent {
                room: general(),
                seq: 45,
                target: 42,
                user: user("bob"),
                emoji: "👍".into(),
                on: true,
                ts: TS + 50_000,
            }),
        ),
        (
            "ok",
            ServerFrame::Ok(OkReply {
                id: 30,
                room: None,
                seq: None,
            }),
        ),
        (
            "ok_with_room",
            ServerFrame::Ok(OkReply {
                id: 21,
                room: Some(general()),
                seq: None,
            }),
        ),
        (
            "ok_with_room_and_seq",
            ServerFrame::Ok(OkReply {
                id: 8,
                room: Some(general()),
                seq: Some(43),
            }),
        ),
        (
            "read_push",
            ServerFrame::Read(ReadPush {
                room: general(),
                user: user("bob"),
                seq: 42,
            }),
        ),
        (
            "read_ack",
            ServerFrame::ReadAck(ReadAck {
                id: 11,
                room: general(),
                seq: 45,
                unread: 0,
            }),
        ),
        (
            "receipts_reply",
            ServerFrame::Receipts(ReceiptsReply {
                id: 12,
                room: general(),
                seq: 42,
                readers: vec![user("alice"), user("bob")],
                delivered: vec![user("alice"), user("bob"), user("carol")],
            }),
        ),
        (
            "typing_push",
            ServerFrame::Typing(TypingPush {
                room: general(),
                user: user("bob"),
                on: true,
            }),
        ),
        (
            "presence_push",
            ServerFrame::Presence(PresenceFrame {
                id: None,
                users: vec![UserPresence {
                    user: user("bob"),
                    status: Status::Away,
                    last_seen: Some(TS + 60_000),
                }],
            }),
        ),
        (
            "presence_reply",
            ServerFrame::Presence(PresenceFrame {
                id: Some(14),
                users: vec![
                    UserPresence {
                        user: user("bob"),
                        status: Status::Online,
                        last_seen: Some(TS + 60_000),
                    },
                    UserPresence {
                        user: user("carol"),
                        status: Status::Offline,
                        last_seen: None,
                    },
                ],
            }),
        ),
        (
            "presence_reply_empty",
            ServerFrame::Presence(PresenceFrame {
                id: Some(14),
                users: vec![],
            }),
        ),
        (
            "rooms_reply",
            ServerFrame::Rooms(RoomsReply {
                id: Some(15),
                rooms: room_summaries(&first),
            }),
        ),
        (
            "rooms_sync_snapshot",
            ServerFrame::Rooms(RoomsReply {
                id: None,
                rooms: room_summaries(&first),
            }),
        ),
        (
            "rooms_empty",
            ServerFrame::Rooms(RoomsReply {
                id: Some(15),
                rooms: vec![],
            }),
        ),
        (
            "public_rooms_page",
            ServerFrame::PublicRooms(PublicRoomsReply {
                id: 16,
                rooms: vec![
                    PublicRoom {
                        room: general(),
                        name: "General".into(),
                        description: "Company-wide".into(),
                        members: 5,
                    },
                    PublicRoom {
                        room: room("r0123456789abcdef01234567"),
                        name: "General chat".into(),
                        description: String::new(),
                        members: 1,
                    },
                ],
                next: Some(CURSOR.into()),
            }),
        ),
        (
            "public_rooms_last_page",
            ServerFrame::PublicRooms(PublicRoomsReply {
                id: 16,
                rooms: vec![],
                next: None,
            }),
        ),
        (
            "members_reply",
            ServerFrame::Members(MembersReply {
                id: 17,
                room: general(),
                members: vec![
                    MemberInfo {
                        user: user("alice"),
                        role: Role::Owner,
                        read_seq: 42,
                    },
                    MemberInfo {
                        user: user("bob"),
                        role: Role::Member,
                        read_seq: 41,
                    },
                ],
            }),
        ),
        (
            "invite",
            ServerFrame::Invite(InviteReply {
                id: 26,
                invite: invite_info(None, None, 0),
            }),
        ),
        (
            "invite_with_expiry_and_max_uses",
            ServerFrame::Invite(InviteReply {
                id: 26,
                invite: invite_info(Some(TS + 86_400_000), Some(5), 0),
            }),
        ),
        (
            "invites_reply",
            ServerFrame::Invites(InvitesReply {
                id: 27,
                room: room("team"),
                invites: vec![invite_info(Some(TS + 86_400_000), Some(5), 2)],
            }),
        ),
        (
            "favorites_reply",
            ServerFrame::Favorites(FavoritesReply {
                id: 31,
                rooms: vec![general()],
                users: vec![user("bob")],
            }),
        ),
        (
            "member_joined",
            ServerFrame::MemberJoined(MemberJoined {
                room: general(),
                user: user("carol"),
                role: Role::Member,
            }),
        ),
        (
            "member_left",
            ServerFrame::MemberLeft(MemberLeft {
                room: general(),
                user: user("carol"),
                reason: LeaveReason::Left,
            }),
        ),
        (
            "member_left_kicked",
            ServerFrame::MemberLeft(MemberLeft {
                room: general(),
                user: user("bob"),
                reason: LeaveReason::Kicked,
            }),
        ),
        (
            "member_left_banned",
            ServerFrame::MemberLeft(MemberLeft {
                room: general(),
                user: user("bob"),
                reason: LeaveReason::Banned,
            }),
        ),
        (
            "role_changed",
            ServerFrame::RoleChanged(RoleChanged {
                room: general(),
                user: user("bob"),
                role: Role::Admin,
            }),
        ),
        (
            "room_updated",
            ServerFrame::RoomUpdated(RoomUpdated {
                room: general(),
                name: "General".into(),
                description: String::new(),
                private: false,
            }),
        ),
        (
            "room_deleted",
            ServerFrame::RoomDeleted(RoomDeleted { room: general() }),
        ),
    ] {
        out.push(valid(name, S2C, &frame));
    }

    // Invalid client inputs.
    let ping = mp::map(&[("t", mp::s("ping"))]);
    out.push(invalid(
        "oversize_header",
        "only the 4-byte header: it declares 1 MiB + 1 bytes, over the default max_frame; rejected before any payload is read, then close",
        ((DEFAULT_MAX_FRAME + 1) as u32).to_be_bytes().to_vec(),
        false,
        ErrorCode::FrameTooLarge,
    ));
    out.push(invalid(
        "empty_payload",
        "a zero-length frame",
        framed(&[]),
        false,
        ErrorCode::BadRequest,
    ));
    out.push(invalid(
        "non_map_payload",
        "an array [1, 2] instead of a map",
        framed(&[0x92, 0x01, 0x02]),
        false,
        ErrorCode::BadRequest,
    ));
    out.push(invalid(
        "integer_key",
        "{1: 2}: top-level keys must be strings",
        framed(&[0x81, 0x01, 0x02]),
        false,
        ErrorCode::BadRequest,
    ));
    out.push(invalid(
        "truncated_map",
        "a map declaring 2 entries that holds 1",
        framed(&[0x82, 0xa1, b't', 0xa4, b'p', b'i', b'n', b'g']),
        false,
        ErrorCode::BadRequest,
    ));
    out.push(invalid(
        "trailing_bytes",
        "{\"t\": \"ping\"} followed by one more byte inside the frame",
        framed(&[ping.as_slice(), &[0x00]].concat()),
        false,
        ErrorCode::BadRequest,
    ));
    out.push(invalid(
        "reserved_marker_c1",
        "{\"t\": <0xc1>}: 0xc1 is never valid MessagePack",
        framed(&[0x81, 0xa1, b't', 0xc1]),
        false,
        ErrorCode::BadRequest,
    ));
    out.push(invalid(
        "unknown_type",
        "a t this server does not know; the error carries the id (5)",
        framed(&mp::map(&[("t", mp::s("subscribe")), ("id", mp::u(5))])),
        true,
        ErrorCode::UnknownType,
    ));
    out.push(invalid(
        "wrong_field_type_room_integer",
        "room must be a string",
        framed(&mp::map(&[
            ("t", mp::s("join")),
            ("id", mp::u(4)),
            ("room", mp::u(5)),
        ])),
        true,
        ErrorCode::BadRequest,
    ));
    out.push(invalid(
        "missing_t",
        "no frame type",
        framed(&mp::map(&[("id", mp::u(3)), ("room", mp::s("general"))])),
        true,
        ErrorCode::BadRequest,
    ));
    out.push(invalid(
        "missing_required_field",
        "join without room",
        framed(&mp::map(&[("t", mp::s("join")), ("id", mp::u(3))])),
        true,
        ErrorCode::BadRequest,
    ));
    out.push(invalid(
        "nesting_too_deep",
        "the map plus 16 nested arrays: depth 17, the limit is 16",
        framed(&mp::map(&[
            ("t", mp::s("ping")),
            ("x-extension", mp::nested_arrays(16)),
        ])),
        true,
        ErrorCode::BadRequest,
    ));
    out.push(invalid(
        "invalid_utf8_in_body",
        "body is a str holding the byte 0xff",
        framed(&mp::map(&[
            ("t", mp::s("send")),
            ("id", mp::u(5)),
            ("room", mp::s("general")),
            ("body", vec![0xa1, 0xff]),
        ])),
        false,
        ErrorCode::BadRequest,
    ));
    out.push(invalid(
        "room_id_bad_characters",
        "room ids are 1..64 bytes of [A-Za-z0-9_.:-]",
        framed(&mp::map(&[
            ("t", mp::s("join")),
            ("id", mp::u(3)),
            ("room", mp::s("general chat")),
        ])),
        true,
        ErrorCode::BadRequest,
    ));
    out.push(invalid(
        "send_empty_body",
        "body must hold 1..max_body_chars characters",
        framed(&mp::map(&[
            ("t", mp::s("send")),
            ("id", mp::u(5)),
            ("room", mp::s("general")),
            ("body", mp::s("")),
        ])),
        true,
        ErrorCode::BadRequest,
    ));
    out.push(invalid(
        "send_local_id_too_long",
        "local_id must be 1..64 bytes (this one is 65)",
        framed(&mp::map(&[
            ("t", mp::s("send")),
            ("id", mp::u(5)),
            ("room", mp::s("general")),
            ("body", mp::s("hi")),
            ("local_id", mp::s(&"x".repeat(65))),
        ])),
        true,
        ErrorCode::BadRequest,
    ));
    out.push(invalid(
        "history_limit_too_large",
        "limit must be 1..200",
        framed(&mp::map(&[
            ("t", mp::s("history")),
            ("id", mp::u(6)),
            ("room", mp::s("general")),
            ("limit", mp::u(201)),
        ])),
        true,
        ErrorCode::BadRequest,
    ));
    out.push(invalid(
        "history_before_zero",
        "before must be at least 1",
        framed(&mp::map(&[
            ("t", mp::s("history")),
            ("id", mp::u(6)),
            ("room", mp::s("general")),
            ("before", mp::u(0)),
        ])),
        true,
        ErrorCode::BadRequest,
    ));
    out.push(invalid(
        "history_before_and_after",
        "before and after together",
        framed(&mp::map(&[
            ("t", mp::s("history")),
            ("id", mp::u(6)),
            ("room", mp::s("general")),
            ("before", mp::u(43)),
            ("after", mp::u(40)),
        ])),
        true,
        ErrorCode::BadRequest,
    ));
    out.push(invalid(
        "hello_unsupported_version",
        "hello.v must be 1; closes",
        framed(&mp::map(&[
            ("t", mp::s("hello")),
            ("v", mp::u(2)),
            ("token", mp::s(TOKEN)),
        ])),
        true,
        ErrorCode::UnsupportedVersion,
    ));

    let bad = |name: &str, note: &str, entries: &[(&str, Vec<u8>)]| {
        invalid(
            name,
            note,
            framed(&mp::map(entries)),
            true,
            ErrorCode::BadRequest,
        )
    };
    fn send(extra: &[(&'static str, Vec<u8>)]) -> Vec<(&'static str, Vec<u8>)> {
        let mut e = vec![
            ("t", mp::s("send")),
            ("id", mp::u(5)),
            ("room", mp::s("general")),
        ];
        e.extend(extra.iter().cloned());
        e
    }
    out.push(bad(
        "send_text_with_attachments",
        "a text message carries no attachments (use kind file or image)",
        &send(&[
            ("body", mp::s("see attached")),
            (
                "attachments",
                mp::arr(&[mp::attachment(
                    "https://x.example/a.pdf",
                    "application/pdf",
                    10,
                )]),
            ),
        ]),
    ));
    out.push(bad(
        "send_file_without_attachments",
        "file and image messages carry 1..10 attachments",
        &send(&[("body", mp::s("")), ("kind", mp::s("file"))]),
    ));
    out.push(bad(
        "send_image_with_non_image_mime",
        "every attachment of an image message has an image/* mime type",
        &send(&[
            ("body", mp::s("")),
            ("kind", mp::s("image")),
            (
                "attachments",
                mp::arr(&[mp::attachment(
                    "https://x.example/a.pdf",
                    "application/pdf",
                    10,
                )]),
            ),
        ]),
    ));
    out.push(bad(
        "send_attachment_mime_uppercase",
        "mime is a lowercase type/subtype",
        &send(&[
            ("body", mp::s("")),
            ("kind", mp::s("file")),
            (
                "attachments",
                mp::arr(&[mp::attachment(
                    "https://x.example/a.pdf",
                    "Application/PDF",
                    10,
                )]),
            ),
        ]),
    ));
    out.push(bad(
        "send_attachment_url_not_http",
        "url is an http(s) URL of at most 2048 bytes",
        &send(&[
            ("body", mp::s("")),
            ("kind", mp::s("file")),
            (
                "attachments",
                mp::arr(&[mp::attachment(
                    "ftp://x.example/a.pdf",
                    "application/pdf",
                    10,
                )]),
            ),
        ]),
    ));
    out.push(bad(
        "send_attachment_too_large",
        "size is at most max_attachment_bytes (default 100 MiB = 104857600); this one is 1 byte over",
        &send(&[
            ("body", mp::s("")),
            ("kind", mp::s("file")),
            (
                "attachments",
                mp::arr(&[mp::attachment(
                    "https://x.example/big.iso",
                    "application/octet-stream",
                    100 * 1024 * 1024 + 1,
                )]),
            ),
        ]),
    ));
    out.push(bad(
        "send_too_many_attachments",
        "at most 10 attachments per message (this one has 11)",
        &send(&[
            ("body", mp::s("")),
            ("kind", mp::s("file")),
            (
                "attachments",
                mp::arr(&vec![
                    mp::attachment(
                        "https://x.example/a.txt",
                        "text/plain",
                        1
                    );
                    11
                ]),
            ),
        ]),
    ));
    out.push(bad(
        "send_unknown_kind",
        "kind is text, file or image",
        &send(&[("body", mp::s("hi")), ("kind", mp::s("video"))]),
    ));
    out.push(bad(
        "send_control_character_in_body",
        "control characters other than newline and tab are refused, not stripped (here U+0007)",
        &send(&[("body", mp::s("ding\u{7}"))]),
    ));
    out.push(bad(
        "send_reply_to_zero",
        "reply_to is the seq of a message, at least 1",
        &send(&[("body", mp::s("hi")), ("reply_to", mp::u(0))]),
    ));
    out.push(bad(
        "react_invalid_emoji",
        "emoji is up to 8 characters of emoji (no letters, digits or spaces) or a :shortcode:",
        &[
            ("t", mp::s("react")),
            ("id", mp::u(10)),
            ("room", mp::s("general")),
            ("seq", mp::u(42)),
            ("emoji", mp::s("ok")),
        ],
    ));
    out.push(bad(
        "react_bad_shortcode",
        "a shortcode is :name: with a-z 0-9 _ + - (up to 32)",
        &[
            ("t", mp::s("react")),
            ("id", mp::u(10)),
            ("room", mp::s("general")),
            ("seq", mp::u(42)),
            ("emoji", mp::s(":Tada:")),
        ],
    ));
    out.push(bad(
        "favorite_room_and_user",
        "favorite names exactly one of room or user",
        &[
            ("t", mp::s("favorite")),
            ("id", mp::u(30)),
            ("room", mp::s("general")),
            ("user", mp::s("bob")),
        ],
    ));
    out.push(bad(
        "favorite_neither",
        "favorite names exactly one of room or user",
        &[("t", mp::s("favorite")), ("id", mp::u(30))],
    ));
    out.push(bad(
        "presence_status_offline",
        "a client sets online or away; offline comes from disconnecting",
        &[
            ("t", mp::s("presence")),
            ("id", mp::u(14)),
            ("status", mp::s("offline")),
        ],
    ));
    out.push(bad(
        "presence_empty",
        "presence needs status (to set) or users (to query)",
        &[("t", mp::s("presence")), ("id", mp::u(14))],
    ));
    out.push(bad(
        "public_rooms_limit_too_large",
        "limit must be 1..100",
        &[
            ("t", mp::s("public_rooms")),
            ("id", mp::u(16)),
            ("limit", mp::u(101)),
        ],
    ));
    out.push(bad(
        "public_rooms_bad_cursor",
        "after must be a next cursor from a previous page (hex)",
        &[
            ("t", mp::s("public_rooms")),
            ("id", mp::u(16)),
            ("after", mp::s("not-a-cursor")),
        ],
    ));
    out.push(bad(
        "create_room_blank_name",
        "the name is trimmed, then must be 1..100 characters",
        &[
            ("t", mp::s("create_room")),
            ("id", mp::u(2)),
            ("name", mp::s("   ")),
        ],
    ));
    out.push(bad(
        "create_room_description_too_long",
        "description is at most 1000 characters (this one is 1001)",
        &[
            ("t", mp::s("create_room")),
            ("id", mp::u(2)),
            ("name", mp::s("General chat")),
            ("description", mp::s(&"d".repeat(1001))),
        ],
    ));
    out.push(bad(
        "update_room_nothing_to_change",
        "update_room needs at least one of name, description, private",
        &[
            ("t", mp::s("update_room")),
            ("id", mp::u(18)),
            ("room", mp::s("general")),
        ],
    ));
    out.push(bad(
        "set_role_unknown_role",
        "role is admin or member here (owner: use transfer)",
        &[
            ("t", mp::s("set_role")),
            ("id", mp::u(24)),
            ("room", mp::s("general")),
            ("user", mp::s("bob")),
            ("role", mp::s("moderator")),
        ],
    ));
    out.push(bad(
        "create_invite_zero_max_uses",
        "max_uses and expires_in_s are positive when given",
        &[
            ("t", mp::s("create_invite")),
            ("id", mp::u(26)),
            ("room", mp::s("team")),
            ("max_uses", mp::u(0)),
        ],
    ));
    out.push(bad(
        "join_invite_too_long",
        "an invite code is 1..64 bytes (this one is 65)",
        &[
            ("t", mp::s("join")),
            ("id", mp::u(3)),
            ("room", mp::s("team")),
            ("invite", mp::s(&"a".repeat(65))),
        ],
    ));
    out.push(bad(
        "start_direct_with_self",
        "sent by alice: a direct room needs another user",
        &[
            ("t", mp::s("start_direct")),
            ("id", mp::u(29)),
            ("user", mp::s("alice")),
        ],
    ));

    let mut names = std::collections::HashSet::new();
    for v in &out {
        assert!(
            names.insert(v["name"].clone()),
            "duplicate vector name {}",
            v["name"]
        );
    }
    json!({"version": 1, "vectors": out})
}

/// The file layout, with its fields in reading order (a `serde_json::Map` may sort them).
#[derive(serde::Serialize)]
struct FileOut<'a> {
    version: u32,
    vectors: Vec<VectorOut<'a>>,
}

#[derive(serde::Serialize)]
struct VectorOut<'a> {
    name: &'a Value,
    direction: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a Value>,
    hex: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    canonical_hex: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decoded: Option<&'a Value>,
}

impl<'a> From<&'a Value> for FileOut<'a> {
    fn from(file: &'a Value) -> Self {
        let vectors = list(file)
            .iter()
            .map(|v| {
                let known = [
                    "name",
                    "direction",
                    "note",
                    "hex",
                    "canonical_hex",
                    "error",
                    "decoded",
                ];
                for k in v.as_object().unwrap().keys() {
                    assert!(known.contains(&k.as_str()), "unexpected vector field {k}");
                }
                VectorOut {
                    name: &v["name"],
                    direction: &v["direction"],
                    note: v.get("note"),
                    hex: &v["hex"],
                    canonical_hex: v.get("canonical_hex"),
                    error: v.get("error"),
                    decoded: v.get("decoded"),
                }
            })
            .collect();
        FileOut {
            version: 1,
            vectors,
        }
    }
}

/// The vectors every test checks: freshly written when blessing, else the file.
fn vectors() -> &'static Value {
    static FILE: OnceLock<Value> = OnceLock::new();
    FILE.get_or_init(|| {
        let path = vectors_path();
        if blessing() {
            let mut text = serde_json::to_string_pretty(&FileOut::from(&generate())).unwrap();
            text.push('\n');
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{} is missing or unreadable ({e}); it is the protocol contract. \
                 Regenerate it with `ROOMCAST_BLESS=1 cargo test --test vectors`",
                path.display()
            )
        });
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
    })
}

fn list(file: &Value) -> &Vec<Value> {
    assert_eq!(file["version"], json!(1), "vectors.json: version must be 1");
    file["vectors"]
        .as_array()
        .expect("vectors.json: `vectors` must be an array")
}

fn field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("vector {}: `{key}` must be a string", v["name"]))
}

/// Splits one whole frame with the server's own codec; the input must hold
/// exactly one frame.
fn payload_of(name: &str, bytes: &[u8]) -> bytes::Bytes {
    let mut buf = BytesMut::from(bytes);
    let payload = FrameCodec::new(DEFAULT_MAX_FRAME)
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("{name}: framing failed: {e}"))
        .unwrap_or_else(|| panic!("{name}: incomplete frame"));
    assert!(buf.is_empty(), "{name}: bytes after the frame");
    payload
}

#[test]
fn vectors_file_matches_the_code() {
    let file = list(vectors());
    let code_value = generate();
    let code = list(&code_value);
    let name = |v: &Value| v["name"].as_str().unwrap_or("?").to_string();
    let mut problems = Vec::new();
    for want in code {
        match file.iter().find(|v| name(v) == name(want)) {
            None => problems.push(format!("- {}: missing from the file", name(want))),
            Some(have) if have != want => {
                let keys: std::collections::BTreeSet<&String> = want
                    .as_object()
                    .unwrap()
                    .keys()
                    .chain(have.as_object().map(|m| m.keys()).into_iter().flatten())
                    .collect();
                for k in keys {
                    if have.get(k) != want.get(k) {
                        problems.push(format!(
                            "- {}.{k}:\n    file: {}\n    code: {}",
                            name(want),
                            have.get(k).map_or("(absent)".into(), Value::to_string),
                            want.get(k).map_or("(absent)".into(), Value::to_string),
                        ));
                    }
                }
            }
            Some(_) => {}
        }
    }
    for have in file {
        if !code.iter().any(|v| name(v) == name(have)) {
            problems.push(format!("- {}: in the file, not in the code", name(have)));
        }
    }
    let order_file: Vec<String> = file.iter().map(name).collect();
    let order_code: Vec<String> = code.iter().map(name).collect();
    if problems.is_empty() && order_file != order_code {
        problems.push("- same vectors, different order".into());
    }
    assert!(
        problems.is_empty(),
        "proto-spec/vectors.json differs from what the code encodes:\n{}\n\
         If the change is intended, it is a protocol change: update proto-spec/README.md \
         and CHANGELOG.md, then run `ROOMCAST_BLESS=1 cargo test --test vectors`.",
        problems.join("\n")
    );
}

#[test]
fn client_vectors_decode_and_reencode() {
    let mut n = 0;
    for v in list(vectors()) {
        if v["direction"] != C2S || v.get("error").is_some() {
            continue;
        }
        n += 1;
        let name = field(v, "name");
        let bytes = hex::decode(field(v, "hex")).unwrap();
        let payload = payload_of(name, &bytes);
        let frame = ClientFrame::decode(&payload)
            .unwrap_or_else(|e| panic!("{name}: the server refuses it: {e:?}"));
        let canonical = match v.get("canonical_hex") {
            Some(c) => hex::decode(c.as_str().unwrap()).unwrap(),
            None => bytes.clone(),
        };
        assert_eq!(
            hex::encode(encode(&frame)),
            hex::encode(&canonical),
            "{name}: re-encoding differs"
        );
        let wire: Value = rmp_serde::from_slice(&payload).unwrap();
        assert_eq!(
            v["decoded"], wire,
            "{name}: `decoded` differs from the bytes"
        );
        if v.get("canonical_hex").is_none() {
            assert_eq!(
                v["decoded"],
                serde_json::to_value(&frame).unwrap(),
                "{name}"
            );
        }
    }
    assert!(n > 0, "no valid client vectors");
}

#[test]
fn server_vectors_decode_and_reencode() {
    let mut n = 0;
    for v in list(vectors()) {
        if v["direction"] != S2C {
            continue;
        }
        n += 1;
        let name = field(v, "name");
        assert!(v.get("error").is_none(), "{name}: server vectors are valid");
        let bytes = hex::decode(field(v, "hex")).unwrap();
        let payload = payload_of(name, &bytes);
        let frame = ServerFrame::decode(&payload)
            .unwrap_or_else(|e| panic!("{name}: does not decode: {e}"));
        assert_eq!(
            hex::encode(encode(&frame)),
            field(v, "hex"),
            "{name}: re-encoding differs"
        );
        let wire: Value = rmp_serde::from_slice(&payload).unwrap();
        assert_eq!(
            v["decoded"], wire,
            "{name}: `decoded` differs from the bytes"
        );
    }
    assert!(n > 0, "no server vectors");
}

/// What the server answers a payload with: the codec's error, else the
/// session's (a `hello` goes to a new session, anything else to an
/// authenticated one). Returns the code and whether it closes.
fn server_answer(name: &str, payload: &[u8]) -> (ErrorCode, bool) {
    let frame = match ClientFrame::decode(payload) {
        Err(e) => return (e.error.code, false),
        Ok(f) => f,
    };
    let config = roomcast::config::Config::for_tests("/nonexistent");
    let limits = SessionLimits::from_config(&config);
    let auth = Authenticator::hs256(b"vectors-test-secret-0123456789");
    let now = Instant::now();
    let mut session = Session::new(SessionId(1), limits, now);
    if !matches!(frame, ClientFrame::Hello(_)) {
        let hello = encode(&ClientFrame::Hello(client::Hello {
            id: None,
            v: 1,
            token: auth.mint("alice", 600).unwrap(),
            sync: false,
        }));
        let out = session.handle_frame(&hello[4..], now, &auth);
        assert!(matches!(out, Output::Admit { .. }), "{out:?}");
    }
    match session.handle_frame(payload, now, &auth) {
        Output::Close(e) => (e.code, true),
        Output::Reply(ServerFrame::Error(e)) => (e.code, e.close),
        other => panic!("{name}: the server accepts it: {other:?}"),
    }
}

#[test]
fn error_vectors_get_their_error_code() {
    let mut n = 0;
    for v in list(vectors()) {
        let Some(want) = v.get("error") else {
            continue;
        };
        n += 1;
        let name = field(v, "name");
        assert_eq!(
            v["direction"], C2S,
            "{name}: error vectors are client input"
        );
        let want = want.as_str().unwrap();
        let bytes = hex::decode(field(v, "hex")).unwrap();
        if want == ErrorCode::FrameTooLarge.as_str() {
            let mut buf = BytesMut::from(&bytes[..]);
            let r = FrameCodec::new(DEFAULT_MAX_FRAME).decode(&mut buf);
            assert!(
                matches!(r, Err(FrameError::TooLarge { .. })),
                "{name}: {r:?}"
            );
            continue;
        }
        let payload = payload_of(name, &bytes);
        if let Some(decoded) = v.get("decoded") {
            let wire: Value = rmp_serde::from_slice(&payload).unwrap();
            assert_eq!(decoded, &wire, "{name}: `decoded` differs from the bytes");
        }
        let (code, _) = server_answer(name, &payload);
        assert_eq!(code.as_str(), want, "{name}");
    }
    assert!(n > 0, "no error vectors");
}

#[test]
fn vectors_cover_every_frame_type() {
    let valid: Vec<(&str, &str)> = list(vectors())
        .iter()
        .filter(|v| v.get("error").is_none())
        .map(|v| (field(v, "direction"), v["decoded"]["t"].as_str().unwrap()))
        .collect();
    // Every `t` of `ClientFrame::decode`: a valid vector of each decodes to that type.
    let client_types = [
        "hello",
        "create_room",
        "join",
        "leave",
        "send",
        "history",
        "ping",
        "edit",
        "delete",
        "react",
        "read",
        "receipts",
        "typing",
        "presence",
        "rooms",
        "public_rooms",
        "members",
        "update_room",
        "delete_room",
        "leave_room",
        "kick",
        "ban",
        "unban",
        "set_role",
        "transfer",
        "create_invite",
        "invites",
        "revoke_invite",
        "start_direct",
        "favorite",
        "favorites",
    ];
    let server_types = [
        "welcome",
        "created",
        "joined",
        "left",
        "sent",
        "msg",
        "history",
        "pong",
        "error",
        "direct",
        "edit",
        "delete",
        "reaction",
        "ok",
        "read",
        "read_ack",
        "receipts",
        "typing",
        "presence",
        "rooms",
        "public_rooms",
        "members",
        "invite",
        "invites",
        "favorites",
        "member_joined",
        "member_left",
        "role_changed",
        "room_updated",
        "room_deleted",
    ];
    for t in client_types {
        assert!(valid.contains(&(C2S, t)), "no client vector for {t}");
    }
    for t in server_types {
        assert!(valid.contains(&(S2C, t)), "no server vector for {t}");
    }
    // The lists above are the enums, no more and no less: every type a vector
    // decodes to is listed, and each list has as many entries as its enum has variants.
    let mut seen_client = std::collections::BTreeSet::new();
    let mut seen_server = std::collections::BTreeSet::new();
    for v in list(vectors()) {
        if v.get("error").is_some() {
            continue;
        }
        let bytes = hex::decode(field(v, "hex")).unwrap();
        let payload = payload_of(field(v, "name"), &bytes);
        if v["direction"] == C2S {
            seen_client.insert(client_type_name(&ClientFrame::decode(&payload).unwrap()));
        } else {
            let frame = ServerFrame::decode(&payload).unwrap();
            seen_server.insert(server_type_name(&frame));
        }
    }
    assert_eq!(
        seen_client,
        client_types.into_iter().collect(),
        "client frame types with vectors vs the list"
    );
    assert_eq!(
        seen_server,
        server_types.into_iter().collect(),
        "server frame types with vectors vs the list"
    );
}

/// The `t` of a client frame, checked against `type_name()`. Exhaustive on
/// purpose: a new `ClientFrame` variant does not compile here until it is added.
fn client_type_name(f: &ClientFrame) -> &'static str {
    use ClientFrame::*;
    let t = match f {
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
    };
    assert_eq!(t, f.type_name());
    t
}

/// The `t` of a server frame. Exhaustive on purpose: a new `ServerFrame`
/// variant does not compile here until it is added (and then needs a vector).
fn server_type_name(f: &ServerFrame) -> &'static str {
    use ServerFrame::*;
    match f {
        Welcome(_) => "welcome",
        Created(_) => "created",
        Joined(_) => "joined",
        Left(_) => "left",
        Sent(_) => "sent",
        Msg(_) => "msg",
        History(_) => "history",
        Pong(_) => "pong",
        Error(_) => "error",
        Direct(_) => "direct",
        Edit(_) => "edit",
        Delete(_) => "delete",
        Reaction(_) => "reaction",
        Ok(_) => "ok",
        Read(_) => "read",
        ReadAck(_) => "read_ack",
        Receipts(_) => "receipts",
        Typing(_) => "typing",
        Presence(_) => "presence",
        Rooms(_) => "rooms",
        PublicRooms(_) => "public_rooms",
        Members(_) => "members",
        Invite(_) => "invite",
        Invites(_) => "invites",
        Favorites(_) => "favorites",
        MemberJoined(_) => "member_joined",
        MemberLeft(_) => "member_left",
        RoleChanged(_) => "role_changed",
        RoomUpdated(_) => "room_updated",
        RoomDeleted(_) => "room_deleted",
    }
}

/// Whether a server frame is a reply (carries the request's `id`) per the
/// code; the README's server frame headings say "reply" or "push" to match.
#[test]
fn server_vectors_replies_and_pushes_match_the_readme() {
    for v in list(vectors()) {
        if v["direction"] != S2C {
            continue;
        }
        let name = field(v, "name");
        let bytes = hex::decode(field(v, "hex")).unwrap();
        let frame = ServerFrame::decode(&payload_of(name, &bytes)).unwrap();
        assert_eq!(
            frame.reply_id().is_some(),
            v["decoded"].get("id").is_some(),
            "{name}: reply_id() and the id key disagree"
        );
    }
}

/// `direct_room_id` is what the README says: "d" + the first 40 hex digits of
/// SHA-256 over both user ids, sorted, each prefixed with its u32 big-endian length.
#[test]
fn direct_room_id_follows_the_spec() {
    use sha2::{Digest, Sha256};
    let spec = |a: &str, b: &str| {
        let mut ids = [a, b];
        ids.sort();
        let mut h = Sha256::new();
        for u in ids {
            h.update((u.len() as u32).to_be_bytes());
            h.update(u.as_bytes());
        }
        format!("d{}", &hex::encode(h.finalize())[..40])
    };
    for (a, b) in [
        ("alice", "bob"),
        ("bob", "alice"),
        ("ab", "c"),
        ("a", "bc"),
        ("zoë", "Zed"),
    ] {
        let id = roomcast::router::direct_room_id(&user(a), &user(b));
        assert_eq!(id.as_str(), spec(a, b), "{a} + {b}");
    }
    assert_eq!(spec("alice", "bob"), DIRECT_ALICE_BOB);
    assert_ne!(
        spec("ab", "c"),
        spec("a", "bc"),
        "length prefixes keep ids apart"
    );
}

/// The codes in the "Error codes" table of the README: rows `| `code` | ...`.
fn readme_error_table() -> Vec<&'static str> {
    let section = README
        .split("\n## ")
        .find(|s| s.starts_with("Error codes"))
        .expect("proto-spec/README.md has no `## Error codes` section");
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |").map(|(code, _)| code))
        .collect()
}

#[test]
fn every_error_code_is_in_the_readme_table() {
    let table = readme_error_table();
    for code in ErrorCode::ALL {
        assert!(
            table.contains(&code.as_str()),
            "error code `{code}` is missing from the error table in proto-spec/README.md"
        );
    }
    for code in &table {
        assert!(
            ErrorCode::ALL.iter().any(|c| c.as_str() == *code),
            "proto-spec/README.md documents `{code}`, which src/proto/error.rs does not have"
        );
    }
}
