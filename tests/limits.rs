//! Every client is bounded: the attacks of the hardening issue, re-run against
//! the real server (proto-spec/README.md, "Resource limits and flow control"). Each would have grown server memory
//! without bound, held sockets forever or locked other users out; here each
//! must end in a documented answer, within generous deadlines.

mod common;

use common::*;
use roomcast::proto::ServerFrame;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until EOF or reset; the bytes read. Panics after WAIT.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection within WAIT");
    out
}

async fn ws_handshake(server: &TestServer) -> TcpStream {
    let mut s = TcpStream::connect(server.http).await.expect("connect");
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.expect("handshake answer");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// A masked client Ping with a 125-byte payload.
fn ws_ping() -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x89, 0x80 | 125];
    f.extend_from_slice(&mask);
    f.extend((0..125).map(|i| b'x' ^ mask[i % 4]));
    f
}

/// The close code of the first Close frame in `bytes` (server frames are unmasked).
fn close_code(mut bytes: &[u8]) -> Option<u16> {
    while bytes.len() >= 2 {
        let (op, len) = (bytes[0] & 0x0f, (bytes[1] & 0x7f) as usize);
        let (head, len) = match len {
            126 => (4, u16::from_be_bytes([bytes[2], bytes[3]]) as usize),
            127 => (
                10,
                u64::from_be_bytes(bytes[2..10].try_into().ok()?) as usize,
            ),
            n => (2, n),
        };
        if op == 0x8 && len >= 2 {
            return Some(u16::from_be_bytes([bytes[head], bytes[head + 1]]));
        }
        bytes = bytes.get(head + len..)?;
    }
    None
}

/// The next reply (a frame with a request id), skipping pushes.
async fn reply(raw: &mut Raw) -> Option<ServerFrame> {
    loop {
        let f = raw.next().await?;
        if f.reply_id().is_some() || matches!(f, ServerFrame::Error(_)) {
            return Some(f);
        }
    }
}

#[tokio::test]
async fn websocket_ping_flood_before_hello_is_closed_with_1008() {
    let server = TestServer::start().await;
    let mut s = ws_handshake(&server).await;
    // 10,000 Pings (1.3 MB) without reading: each would queue a Pong.
    let flood: Vec<u8> = ws_ping().repeat(10_000);
    let _ = tokio::time::timeout(WAIT, s.write_all(&flood)).await;
    let bytes = read_to_close(&mut s).await;
    assert_eq!(close_code(&bytes), Some(1008), "{} bytes read", bytes.len());
    // At most the budget's Pongs came back, not thousands.
    let pongs = bytes.windows(2).filter(|w| w == &[0x8a, 125]).count();
    assert!(pongs <= 5, "{pongs} pongs");
}

#[tokio::test]
async fn idle_and_trickling_http_connections_are_closed() {
    let server = TestServer::start_with(|c| c.http_header_timeout_ms = 300).await;
    // Sends nothing at all.
    let mut idle = TcpStream::connect(server.http).await.expect("connect");
    // Sends a header line every 100 ms, never finishing the request.
    let mut trickle = TcpStream::connect(server.http).await.expect("connect");
    let trickling = async {
        trickle
            .write_all(b"GET /health HTTP/1.1\r\n")
            .await
            .expect("write");
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickle.write_all(b"X-Slow: yes\r\n").await.is_err() {
                return true;
            }
            let mut b = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), trickle.read(&mut b)).await
            {
                return true;
            }
        }
        false
    };
    assert!(trickling.await, "a trickling client is cut off within 10 s");
    assert!(read_to_close(&mut idle).await.is_empty());
    // A keep-alive connection idle after its response is closed the same way.
    let mut ka = TcpStream::connect(server.http).await.expect("connect");
    ka.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut ka).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn http_connections_over_their_cap_get_503() {
    let server = TestServer::start_with(|c| c.max_http_connections = 2).await;
    let a = TcpStream::connect(server.http).await.expect("connect");
    let _b = TcpStream::connect(server.http).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = TcpStream::connect(server.http).await.expect("connect");
    let answer = read_to_close(&mut c).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("\"error\":\"server_busy\""), "{text}");
    drop(a);
    // The slot is given back: a request is served again.
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut d = TcpStream::connect(server.http).await.expect("connect");
        d.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        if read_to_close(&mut d).await.starts_with(b"HTTP/1.1 200") {
            ok = true;
            break;
        }
    }
    assert!(ok, "a freed slot serves requests again");
}

#[tokio::test]
async fn a_client_that_does_not_read_is_held_back_not_queued_for() {
    // Rate limits off, so that every ping is answered; a small outbound queue.
    let server = TestServer::start_with(|c| {
        c.no_rate_limits = true;
        c.outbox_bytes = 4096;
    })
    .await;
    let mut raw = Raw::connect(server.tcp).await;
    raw.hello("alice").await;
    // 200,000 pings (6.6 MB of requests, 3.6 MB of answers) written while
    // nothing is read for the first second: far more than the outbound queue
    // and the socket buffers hold. Without flow control the server read them
    // all and cut the connection off as a slow consumer.
    const N: u64 = 200_000;
    let mut requests = Vec::new();
    for id in 1..=N {
        let payload = rmp_serde::to_vec_named(&json!({"t": "ping", "id": id})).unwrap();
        requests.extend((payload.len() as u32).to_be_bytes());
        requests.extend(payload);
    }
    let Raw { rx, mut tx, .. } = raw;
    let writer = tokio::spawn(async move {
        tx.write_all(&requests).await.expect("write");
        tx
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut rx = rx;
    let mut next_id = 1;
    while next_id <= N {
        let frame = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut rx))
            .await
            .expect("a frame within WAIT")
            .expect("not closed")
            .expect("a frame");
        match ServerFrame::decode(&frame).expect("decodable") {
            ServerFrame::Pong(p) => {
                assert_eq!(p.id, Some(next_id), "answers in order, none lost");
                next_id += 1;
            }
            other => panic!("expected pong {next_id}, got {other:?}"),
        }
    }
    let _tx = writer.await.expect("writer");
}

#[tokio::test]
async fn pings_have_a_rate_with_a_retry_hint() {
    let server = TestServer::start_with(|c| c.limit_ping = "1:3".parse().unwrap()).await;
    let mut raw = Raw::connect(server.tcp).await;
    raw.hello("alice").await;
    for id in 1..=4 {
        raw.send_map(json!({"t": "ping", "id": id})).await;
    }
    for id in 1..=3 {
        match raw.next().await {
            Some(ServerFrame::Pong(p)) => assert_eq!(p.id, Some(id)),
            other => panic!("expected pong, got {other:?}"),
        }
    }
    let e = assert_error(raw.next().await, "rate_limited", false);
    assert_eq!(e.id, Some(4));
    assert!(e.retry_after_ms.is_some_and(|ms| (1..=1000).contains(&ms)));
}

#[tokio::test]
async fn connections_per_user_are_capped() {
    let server = TestServer::start_with(|c| c.max_connections_per_user = 2).await;
    let mut a = Raw::connect(server.tcp).await;
    a.hello("alice").await;
    let mut b = Raw::connect(server.tcp).await;
    b.hello("alice").await;
    let mut c = Raw::connect(server.tcp).await;
    c.send_map(json!({"t": "hello", "v": 1, "token": token("alice"), "id": 0}))
        .await;
    assert_error(c.next().await, "limit_exceeded", true);
    assert!(c.next().await.is_none(), "closed");
    // Other users are not affected; a closed connection frees its slot.
    Raw::connect(server.tcp).await.hello("bob").await;
    drop(a);
    let mut ok = false;
    for _ in 0..50 {
        let mut d = Raw::connect(server.tcp).await;
        d.send_map(json!({"t": "hello", "v": 1, "token": token("alice"), "id": 0}))
            .await;
        if let Some(ServerFrame::Welcome(_)) = d.next().await {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "a closed connection gives its slot back");
}

#[tokio::test]
async fn unauthenticated_connections_per_address_are_capped() {
    let server = TestServer::start_with(|c| c.max_unauthenticated_per_addr = 3).await;
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(Raw::connect(server.tcp).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = Raw::connect(server.tcp).await;
    assert_error(over.next().await, "limit_exceeded", true);
    // The waiting ones are still served; once they said hello, others may come.
    for (i, w) in waiting.iter_mut().enumerate() {
        w.hello(&format!("u{i}")).await;
    }
    Raw::connect(server.tcp).await.hello("late").await;
}

#[tokio::test]
async fn rooms_memberships_favorites_and_invites_have_quotas() {
    let server = TestServer::start_with(|c| {
        c.max_rooms_per_user = 2;
        c.max_memberships_per_user = 3;
        c.max_favorites_per_user = 1;
        c.max_invites_per_room = 2;
        c.no_rate_limits = true;
    })
    .await;
    let mut a = Raw::connect(server.tcp).await;
    a.hello("alice").await;
    for (id, room) in [(1, "r1"), (2, "r2")] {
        a.send_map(json!({"t": "create_room", "id": id, "name": room, "room": room}))
            .await;
        assert!(matches!(reply(&mut a).await, Some(ServerFrame::Created(_))));
    }
    a.send_map(json!({"t": "create_room", "id": 3, "name": "r3", "room": "r3"}))
        .await;
    let e = assert_error(reply(&mut a).await, "limit_exceeded", false);
    assert_eq!(e.id, Some(3));

    // Memberships: bob owns one room and joins alice's two; a third join is over.
    let mut b = Raw::connect(server.tcp).await;
    b.hello("bob").await;
    b.send_map(json!({"t": "create_room", "id": 1, "name": "b1", "room": "b1"}))
        .await;
    assert!(matches!(reply(&mut b).await, Some(ServerFrame::Created(_))));
    for (id, room) in [(2, "r1"), (3, "r2")] {
        b.send_map(json!({"t": "join", "id": id, "room": room}))
            .await;
        assert!(matches!(reply(&mut b).await, Some(ServerFrame::Joined(_))));
    }
    a.send_map(json!({"t": "create_room", "id": 4, "name": "x", "room": "x"}))
        .await;
    assert_error(reply(&mut a).await, "limit_exceeded", false);
    b.send_map(json!({"t": "start_direct", "id": 4, "user": "carol"}))
        .await;
    assert_error(reply(&mut b).await, "limit_exceeded", false);
    // Joining a room one is already a member of is not a new membership.
    b.send_map(json!({"t": "leave", "id": 5, "room": "r1"}))
        .await;
    let _ = reply(&mut b).await;
    b.send_map(json!({"t": "join", "id": 6, "room": "r1"}))
        .await;
    assert!(matches!(reply(&mut b).await, Some(ServerFrame::Joined(_))));

    // Favorites.
    a.send_map(json!({"t": "favorite", "id": 7, "room": "r1", "on": true}))
        .await;
    assert!(matches!(reply(&mut a).await, Some(ServerFrame::Ok(_))));
    a.send_map(json!({"t": "favorite", "id": 8, "room": "r1", "on": true}))
        .await;
    assert!(
        matches!(reply(&mut a).await, Some(ServerFrame::Ok(_))),
        "again is fine"
    );
    a.send_map(json!({"t": "favorite", "id": 9, "room": "r2", "on": true}))
        .await;
    assert_error(reply(&mut a).await, "limit_exceeded", false);

    // Invites: two usable ones, then revoke one to make room.
    let mut codes = Vec::new();
    for id in [10, 11] {
        a.send_map(json!({"t": "create_invite", "id": id, "room": "r1"}))
            .await;
        match reply(&mut a).await {
            Some(ServerFrame::Invite(i)) => codes.push(i.invite.code),
            other => panic!("expected invite, got {other:?}"),
        }
    }
    a.send_map(json!({"t": "create_invite", "id": 12, "room": "r1"}))
        .await;
    assert_error(reply(&mut a).await, "limit_exceeded", false);
    a.send_map(json!({"t": "revoke_invite", "id": 13, "room": "r1", "code": codes[0]}))
        .await;
    assert!(matches!(reply(&mut a).await, Some(ServerFrame::Ok(_))));
    a.send_map(json!({"t": "create_invite", "id": 14, "room": "r1"}))
        .await;
    assert!(matches!(reply(&mut a).await, Some(ServerFrame::Invite(_))));
}

#[tokio::test]
async fn a_client_pipelining_sends_past_its_in_flight_bound_is_held_back_and_loses_nothing() {
    // proto-spec/README.md, "Resource limits and flow control": at most
    // `--max-in-flight` requests awaiting replies per connection; past it the
    // connection is not read (no error, no disconnect).
    const MAX_IN_FLIGHT: usize = 4;
    let server = TestServer::start_with(|c| {
        c.no_rate_limits = true;
        c.max_in_flight = MAX_IN_FLIGHT;
        c.outbox_bytes = 256 * 1024;
    })
    .await;
    let mut alice = client(server.tcp, "alice").await;
    let room = alice.create_room("pipeline", false).await.unwrap();
    alice.join(&room).await.unwrap();

    // The publisher's receive side holds little (4 KiB socket buffer): once it
    // stops reading, its acks and its own pushes back up and the server must
    // stop reading its requests.
    let mut publisher = Raw::connect_small_window(&server, Transport::Tcp).await;
    publisher.hello("bob").await;
    publisher
        .send_map(json!({"t": "join", "id": 1, "room": room.as_str()}))
        .await;
    assert!(matches!(
        publisher.next().await,
        Some(ServerFrame::Joined(_))
    ));

    // Every send carries a local_id: a held-back send is read later, never
    // refused, so each gets exactly one `sent` and one seq. 10,000 sends of
    // 1 KB answered with ~11 MB of acks and pushes: more than the server's
    // socket send buffer (it grows to 4 MiB on loopback) and its queue hold.
    const N: u64 = 10_000;
    let mut requests = Vec::new();
    for id in 1..=N {
        let payload = rmp_serde::to_vec_named(&json!({
            "t": "send", "id": 100 + id, "room": room.as_str(),
            "body": format!("m{id:05} {}", "x".repeat(1000)), "local_id": format!("l{id}"),
        }))
        .unwrap();
        requests.extend((payload.len() as u32).to_be_bytes());
        requests.extend(payload);
    }
    let Raw { rx, mut tx, .. } = publisher;
    let writer = tokio::spawn(async move {
        tx.write_all(&requests).await.expect("write");
        tx
    });

    // While the publisher reads nothing, the room sees only what the server
    // read before its bounds filled: far fewer than N.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut seen = Vec::new();
    while let Ok(m) = tokio::time::timeout(Duration::from_millis(300), next_msg(&mut alice)).await {
        seen.push(m);
    }
    assert!(
        (seen.len() as u64) < N / 2,
        "the server stopped reading the publisher: {} of {N} sends went through while it read nothing",
        seen.len()
    );

    // The publisher reads again: every send is acknowledged once, in order,
    // with consecutive seqs, and the connection stays open.
    let mut rx = rx;
    let (mut next_ack, mut own_pushes) = (1u64, 0u64);
    let mut seqs = Vec::with_capacity(N as usize);
    while next_ack <= N {
        let frame = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut rx))
            .await
            .expect("a frame within WAIT")
            .expect("not closed: held back, not disconnected")
            .expect("a frame");
        match ServerFrame::decode(&frame).expect("decodable") {
            ServerFrame::Sent(s) => {
                assert_eq!(s.id, 100 + next_ack, "acks in request order");
                assert_eq!(s.local_id.as_deref(), Some(format!("l{next_ack}").as_str()));
                seqs.push(s.seq);
                next_ack += 1;
            }
            ServerFrame::Msg(_) => own_pushes += 1,
            ServerFrame::Error(e) => panic!("no send is refused: {e:?}"),
            // Read pointers (read on send) and presence are pushed too.
            _ => {}
        }
    }
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "one seq per send, none skipped or repeated"
    );
    // The other member gets every message exactly once, in seq order.
    while (seen.len() as u64) < N {
        seen.push(next_msg(&mut alice).await);
    }
    let got: Vec<u64> = seen.iter().map(|m| m.seq).collect();
    assert_eq!(got, seqs, "every acked message delivered once, in order");
    for (i, m) in seen.iter().enumerate() {
        assert!(m.body.starts_with(&format!("m{:05} ", i + 1)), "{}", m.body);
    }
    assert!(own_pushes <= N);
    let _tx = writer.await.expect("writer");
}
