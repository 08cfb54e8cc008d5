//! Contract fixes found by an independent client written from proto-spec/
//! alone: each test pins one rule of the spec over the real server, including
//! the ambiguities the spec now settles one way (proto-spec "Settled cases").

mod common;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use roomcast::auth::Claims;
use roomcast::ids::{RoomId, UserId};
use roomcast::proto::client::{self as c, ClientFrame};
use roomcast::proto::types::Role;
use roomcast::proto::{ErrorCode, ServerFrame};
use roomcast_client::{ConnError, Connection};
use serde_json::json;

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn code<T: std::fmt::Debug>(r: Result<T, ConnError>) -> ErrorCode {
    match r {
        Err(ConnError::Server(e)) => e.code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

fn signed(header: Header, sub: &str) -> String {
    let claims = Claims {
        sub: sub.into(),
        exp: roomcast::ids::now_ms() / 1000 + 600,
        iat: None,
        tenant: None,
    };
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// The first frame after a raw `hello`-less or bad-`hello` exchange.
async fn first_answer(server: &TestServer, frame: serde_json::Value) -> ServerFrame {
    let mut raw = Raw::connect(server.tcp).await;
    raw.send_map(frame).await;
    raw.next().await.expect("an answer")
}

/// Waits for `typing {user, on: false}` in `room`, skipping everything else.
async fn typing_off(c: &mut Connection, room: &RoomId, user: &str) {
    loop {
        let f = tokio::time::timeout(WAIT, c.next_event())
            .await
            .unwrap_or_else(|_| panic!("typing off for {user} within WAIT"))
            .expect("open");
        if let ServerFrame::Typing(t) = f {
            if &t.room == room && t.user.as_str() == user && !t.on {
                return;
            }
        }
    }
}

async fn typing_on(c: &mut Connection, room: &RoomId, user: &str) {
    loop {
        let f = tokio::time::timeout(WAIT, c.next_event())
            .await
            .expect("typing on within WAIT")
            .expect("open");
        if let ServerFrame::Typing(t) = f {
            if &t.room == room && t.user.as_str() == user && t.on {
                return;
            }
        }
    }
}

#[tokio::test]
async fn typing_ends_with_a_push_on_leave_room_kick_and_ban() {
    let mut server = TestServer::start_with(|c| {
        c.no_rate_limits = true;
        c.typing_ttl_ms = 600_000; // expiry must not be what ends it
    })
    .await;
    let mut alice = client(server.tcp, "alice").await;
    let room = alice.create_room("r", false).await.unwrap();
    alice.join(&room).await.unwrap();
    for (user, op) in [("bob", "leave_room"), ("carol", "kick"), ("dave", "ban")] {
        let typist = client(server.tcp, user).await;
        typist.join(&room).await.unwrap();
        typist
            .send_frame(&ClientFrame::Typing(c::Typing {
                id: None,
                room: room.clone(),
                on: true,
            }))
            .unwrap();
        typing_on(&mut alice, &room, user).await;
        let r = room.clone();
        let ru = move |id| c::RoomUser {
            id,
            room: r,
            user: uid(user),
        };
        match op {
            "leave_room" => {
                let r = room.clone();
                typist
                    .call(|id| ClientFrame::LeaveRoom(c::RoomOnly { id, room: r }))
                    .await
                    .unwrap();
            }
            "kick" => {
                alice.call(|id| ClientFrame::Kick(ru(id))).await.unwrap();
            }
            _ => {
                alice.call(|id| ClientFrame::Ban(ru(id))).await.unwrap();
            }
        }
        typing_off(&mut alice, &room, user).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn set_role_on_a_non_member_is_not_found_before_the_role_is_checked() {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let alice = client(server.tcp, "alice").await;
    let room = alice.create_room("r", false).await.unwrap();
    let set = |user: &str, role| {
        let (room, user) = (room.clone(), uid(user));
        move |id| {
            ClientFrame::SetRole(c::SetRole {
                id,
                room,
                user,
                role,
            })
        }
    };
    assert_eq!(
        code(alice.call(set("stranger", Role::Owner)).await),
        ErrorCode::NotFound
    );
    let bob = client(server.tcp, "bob").await;
    bob.join(&room).await.unwrap();
    assert_eq!(
        code(alice.call(set("bob", Role::Owner)).await),
        ErrorCode::BadRequest,
        "a member made owner: use transfer"
    );
    server.stop().await;
}

#[tokio::test]
async fn decode_errors_start_with_the_field_and_say_nothing_of_the_library() {
    let mut server = TestServer::start().await;
    let mut raw = Raw::connect(server.tcp).await;
    raw.hello("alice").await;
    raw.send_map(json!({"t": "create_room", "id": 1})).await;
    let e = assert_error(raw.next().await, "bad_request", false);
    assert_eq!(e.message, "name: missing field");
    assert_eq!(e.id, Some(1));
    raw.send_map(json!({"t": "join", "id": 2, "room": 7})).await;
    let e = assert_error(raw.next().await, "bad_request", false);
    assert!(e.message.starts_with("room: "), "{}", e.message);
    // A room id that is a path segment.
    for dots in [".", ".."] {
        raw.send_map(json!({"t": "join", "id": 3, "room": dots}))
            .await;
        let e = assert_error(raw.next().await, "bad_request", false);
        assert!(e.message.starts_with("room: "), "{}", e.message);
    }
    server.stop().await;
}

#[tokio::test]
async fn hello_without_a_token_is_unauthorized_and_an_unknown_type_first_is_unknown_type() {
    let mut server = TestServer::start().await;
    let f = first_answer(&server, json!({"t": "hello", "v": 1})).await;
    let e = assert_error(Some(f), "unauthorized", true);
    assert_eq!(e.message, "token: missing");
    let f = first_answer(&server, json!({"t": "teleport", "id": 5})).await;
    assert_error(Some(f), "unknown_type", true);
    let f = first_answer(&server, json!({"t": "ping", "id": 5})).await;
    assert_error(Some(f), "unauthorized", true);
    server.stop().await;
}

#[tokio::test]
async fn tokens_with_crit_headers_or_misleading_subjects_are_refused() {
    let mut server = TestServer::start().await;
    let mut crit = Header::new(Algorithm::HS256);
    crit.crit = Some(vec!["x-must-understand".into()]);
    for token in [
        signed(crit, "alice"),
        signed(Header::new(Algorithm::HS256), "admin\u{202E}nimda"),
        signed(Header::new(Algorithm::HS256), "\u{200B}\u{200B}"),
    ] {
        let f = first_answer(&server, json!({"t": "hello", "v": 1, "token": token})).await;
        let e = assert_error(Some(f), "unauthorized", true);
        assert!(!e.message.contains("Error"), "{}", e.message);
    }
    // The same signature path works for an honest token.
    let token = signed(Header::new(Algorithm::HS256), "alice");
    assert!(matches!(
        first_answer(&server, json!({"t": "hello", "v": 1, "token": token})).await,
        ServerFrame::Welcome(_)
    ));
    server.stop().await;
}

#[tokio::test]
async fn misleading_names_and_emoji_are_refused_and_names_trim_unicode_spaces() {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let alice = client(server.tcp, "alice").await;
    let create = |name: &str| {
        let name = name.to_string();
        move |id| {
            ClientFrame::CreateRoom(c::CreateRoom {
                id,
                name,
                private: false,
                room: None,
                description: None,
            })
        }
    };
    for bad in ["team\u{202E}lanretni", "\u{200B}\u{2060}", "\u{3164}"] {
        assert_eq!(
            code(alice.call(create(bad)).await),
            ErrorCode::BadRequest,
            "{bad:?}"
        );
    }
    // Trimming removes Unicode White_Space at both ends (here an ideographic
    // space and a no-break space), nothing else.
    let ServerFrame::Created(made) = alice
        .call(create("\u{3000} General\u{00A0}"))
        .await
        .unwrap()
    else {
        panic!()
    };
    let room = made.room;
    alice.join(&room).await.unwrap();
    let seq = alice.send(&room, "hi", None).await.unwrap().seq;
    let react = |emoji: &str| {
        let (room, emoji) = (room.clone(), emoji.to_string());
        move |id| {
            ClientFrame::React(c::React {
                id,
                room,
                seq,
                emoji,
                on: true,
            })
        }
    };
    for bad in ["\u{200D}", "\u{FE0F}", "👍\u{202E}"] {
        assert_eq!(
            code(alice.call(react(bad)).await),
            ErrorCode::BadRequest,
            "{bad:?}"
        );
    }
    alice.call(react("👍")).await.unwrap();
    let listed = match alice
        .call(|id| {
            ClientFrame::PublicRooms(c::PublicRooms {
                id,
                prefix: Some("gen".into()),
                after: None,
                limit: None,
            })
        })
        .await
        .unwrap()
    {
        ServerFrame::PublicRooms(p) => p.rooms,
        other => panic!("{other:?}"),
    };
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "General");
    server.stop().await;
}

#[tokio::test]
async fn a_huge_directory_prefix_is_a_bad_request_and_the_store_keeps_working() {
    let mut server = TestServer::start().await;
    let alice = client(server.tcp, "alice").await;
    let directory = |prefix: String| {
        move |id| {
            ClientFrame::PublicRooms(c::PublicRooms {
                id,
                prefix: Some(prefix),
                after: None,
                limit: None,
            })
        }
    };
    // 65,536 bytes made the embedded store panic (`internal`, retried forever).
    let e = match alice.call(directory("a".repeat(65_536))).await {
        Err(ConnError::Server(e)) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.starts_with("prefix: "), "{}", e.message);
    assert_eq!(
        code(alice.call(directory("x".repeat(101))).await),
        ErrorCode::BadRequest
    );
    alice.call(directory("x".repeat(100))).await.unwrap();
    alice.create_room("still here", false).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn settled_cases_of_the_spec() {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let alice = client(server.tcp, "alice").await;
    let room = alice.create_room("r", false).await.unwrap();
    alice.join(&room).await.unwrap();

    // The owner who is the only member cannot leave_room: delete_room instead.
    let r = room.clone();
    let e = match alice
        .call(|id| ClientFrame::LeaveRoom(c::RoomOnly { id, room: r }))
        .await
    {
        Err(ConnError::Server(e)) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(e.message.contains("delete"), "{}", e.message);

    // favorite of a room that does not exist: ok (favorites are not checked).
    let ghost = RoomId::new("no-such-room").unwrap();
    let g = ghost.clone();
    alice
        .call(|id| {
            ClientFrame::Favorite(c::Favorite {
                id,
                room: Some(g),
                user: None,
                on: true,
            })
        })
        .await
        .unwrap();

    // receipts for a seq beyond the latest: empty lists, not an error.
    let seq = alice.send(&room, "one", None).await.unwrap().seq;
    let r = room.clone();
    match alice
        .call(|id| {
            ClientFrame::Receipts(c::Receipts {
                id,
                room: r,
                seq: seq + 100,
            })
        })
        .await
        .unwrap()
    {
        ServerFrame::Receipts(rc) => {
            assert!(rc.readers.is_empty() && rc.delivered.is_empty(), "{rc:?}")
        }
        other => panic!("{other:?}"),
    }

    // join {since} at the top of the u64 range: no overflow, nothing replayed.
    let bob = client(server.tcp, "bob").await;
    let joined = bob.join_since(&room, u64::MAX).await.unwrap();
    assert_eq!((joined.seq, joined.complete), (seq, Some(true)));
    server.stop().await;
}

/// A WebSocket upgrade request over a raw socket; returns the socket after the
/// response head and the head itself.
async fn ws_upgrade(server: &TestServer, extra: &str) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.http).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, s.read(&mut byte))
            .await
            .expect("response within WAIT")
            .unwrap();
        assert_eq!(n, 1, "response head: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    (s, String::from_utf8(head).unwrap())
}

#[tokio::test]
async fn two_origin_headers_are_refused() {
    let mut server = TestServer::start().await;
    let (_, head) = ws_upgrade(&server, "Origin: https://a.example\r\n").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (_, head) = ws_upgrade(
        &server,
        "Origin: https://a.example\r\nOrigin: https://evil.example\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    server.stop().await;
}

/// A slow consumer that keeps sending (here: pings) while it reads must still
/// receive its `slow_consumer` error: the server reads and discards its input
/// after the close instead of closing with input unread, which makes the
/// kernel reset the connection and drop the frames still queued for the
/// client, the error among them.
#[tokio::test]
async fn slow_consumer_reaches_a_client_that_keeps_sending() {
    use tokio::io::AsyncWriteExt;
    let mut server = TestServer::start_with(|c| {
        c.no_rate_limits = true;
        c.outbox_bytes = 16 * 1024;
    })
    .await;
    let alice = client(server.tcp, "alice").await;
    let room = alice.create_room("big", false).await.unwrap();
    let body = "x".repeat(4000);
    for _ in 0..10 {
        let acks =
            futures_util::future::join_all((0..20).map(|_| alice.send(&room, &body, None))).await;
        for a in acks {
            a.unwrap();
        }
    }
    let mut slow = Raw::connect_small_window(&server, Transport::Tcp).await;
    slow.hello("sloth").await;
    // Pipelined history pages (about 800 KB each) overflow a 16 KiB outbox at
    // the second reply: slow_consumer.
    for id in 1..=8 {
        slow.send_map(json!({"t": "history", "id": id, "room": room.as_str(), "limit": 200}))
            .await;
    }
    let ping = {
        let payload = rmp_serde::to_vec_named(&json!({"t": "ping"})).unwrap();
        let mut b = (payload.len() as u32).to_be_bytes().to_vec();
        b.extend(payload);
        b
    };
    // Read everything, writing a ping before each read, until the error.
    let mut last = None;
    loop {
        let _ = slow.tx.write_all(&ping).await;
        match slow.next().await {
            Some(ServerFrame::Error(e)) => {
                last = Some(ServerFrame::Error(e));
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    assert_error(last, "slow_consumer", true);
    assert!(slow.next().await.is_none(), "then the server closes");
    server.stop().await;
}
