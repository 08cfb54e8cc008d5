//! Every documented error code, driven over raw connections on every
//! transport (TCP, TLS, QUIC, WebSocket): bad input gets its answer, never a
//! panic or a silent drop, and the server keeps serving. Transport-specific bad
//! input (TLS garbage, QUIC resets, WebSocket text) is in tests/transports.rs.

mod common;

use base64::Engine;
use common::*;
use roomcast::proto::ServerFrame;
use serde_json::json;
use std::time::Duration;

each_transport!(
    bad_tokens_are_unauthorized_and_close,
    malformed_frames_get_bad_request_and_the_connection_stays_usable,
    oversize_frames_are_refused_from_the_header,
    hello_deadline_and_idle_timeout_close,
    rate_limits_answer_with_a_retry_hint,
    connection_cap_answers_server_busy,
    shutdown_tells_clients_to_reconnect,
);

/// A frame declaring `len` payload bytes: only its header on byte streams (the
/// server must refuse it from the header), a whole message on WebSocket.
fn oversize(t: Transport, len: u32) -> Vec<u8> {
    let mut b = len.to_be_bytes().to_vec();
    if t == Transport::Ws {
        b.resize(4 + len as usize, 0x90);
    }
    b
}

async fn bad_tokens_are_unauthorized_and_close(t: Transport) {
    let mut server = TestServer::start().await;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = roomcast::ids::now_ms() / 1000 + 600;
    let unsigned = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(format!(r#"{{"sub":"mallory","exp":{exp}}}"#))
    );
    let wrong_key = roomcast::auth::Authenticator::hs256(b"some-other-secret-entirely")
        .mint("mallory", 60)
        .unwrap();
    let expired = {
        let claims = roomcast::auth::Claims {
            sub: "alice".into(),
            exp: exp - 7200,
            iat: None,
            tenant: None,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    for tok in [unsigned, wrong_key, expired, "not-a-jwt".to_string()] {
        let mut raw = Peer::connect(&server, t).await;
        raw.send_map(json!({"t": "hello", "v": 1, "token": tok, "id": 1}))
            .await;
        assert_error(raw.next().await, "unauthorized", true);
        assert!(raw.next().await.is_none(), "closed after unauthorized");
    }
    // Anything but hello first is refused too.
    let mut raw = Peer::connect(&server, t).await;
    raw.send_map(json!({"t": "join", "id": 1, "room": "r"}))
        .await;
    assert_error(raw.next().await, "unauthorized", true);
    // An unsupported protocol version.
    let mut raw = Peer::connect(&server, t).await;
    raw.send_map(json!({"t": "hello", "v": 99, "token": token("a")}))
        .await;
    assert_error(raw.next().await, "unsupported_version", true);
    server.stop().await;
}

async fn malformed_frames_get_bad_request_and_the_connection_stays_usable(t: Transport) {
    let mut server = TestServer::start().await;
    let mut raw = Peer::connect(&server, t).await;
    raw.hello("alice").await;
    let cases: Vec<Vec<u8>> = vec![
        vec![0xc1],                                          // reserved marker
        vec![0x93, 0x01, 0x02, 0x03],                        // an array, not a map
        vec![0x81, 0x01, 0x02],                              // integer key
        vec![0x82, 0xa1, b't'],                              // truncated
        vec![],                                              // empty payload
        rmp_serde::to_vec_named(&json!({"id": 3})).unwrap(), // no t
    ];
    for payload in cases {
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend(&payload);
        raw.write(&frame).await;
        assert_error(raw.next().await, "bad_request", false);
    }
    // Wrong field types name the field and keep the id.
    raw.send_map(json!({"t": "send", "id": 41, "room": "r", "body": 12}))
        .await;
    let e = assert_error(raw.next().await, "bad_request", false);
    assert_eq!(e.id, Some(41));
    assert!(e.message.contains("body"), "{}", e.message);
    raw.send_map(json!({"t": "send", "id": 42, "room": "r", "body": "x".repeat(5001)}))
        .await;
    let e = assert_error(raw.next().await, "bad_request", false);
    assert!(e.message.contains("5000"), "{}", e.message);
    raw.send_map(json!({"t": "teleport", "id": 43})).await;
    let e = assert_error(raw.next().await, "unknown_type", false);
    assert_eq!(e.id, Some(43));
    raw.send_map(json!({"t": "hello", "v": 1, "token": token("alice"), "id": 44}))
        .await;
    assert_error(raw.next().await, "bad_request", false);
    // Unknown keys are ignored; the connection still works.
    raw.send_map(json!({"t": "ping", "id": 45, "future_field": {"x": [1, 2]}}))
        .await;
    assert!(matches!(raw.next().await, Some(ServerFrame::Pong(p)) if p.id == Some(45)));
    server.stop().await;
}

async fn oversize_frames_are_refused_from_the_header(t: Transport) {
    let mut server = TestServer::start_with(|c| c.max_frame = 1024).await;
    let mut raw = Peer::connect(&server, t).await;
    raw.hello("alice").await;
    // Only the header is sent: the server must not wait for the 2 GB body.
    let len = if t == Transport::Ws {
        2000
    } else {
        0x8000_0000
    };
    raw.write(&oversize(t, len)).await;
    assert_error(raw.next().await, "frame_too_large", true);
    assert!(raw.next().await.is_none());
    // Before hello too.
    let mut raw = Peer::connect(&server, t).await;
    raw.write(&oversize(t, 2000)).await;
    assert_error(raw.next().await, "frame_too_large", true);
    // Others are unaffected.
    let alice = client_on(&server, t, "alice").await;
    alice.ping().await.unwrap();
    server.stop().await;
}

async fn hello_deadline_and_idle_timeout_close(t: Transport) {
    let mut server = TestServer::start_with(|c| {
        // Margins for loaded CI machines: a TLS/QUIC handshake plus hello well
        // within the deadline, pings (every 150 ms) well within 2 x heartbeat.
        c.hello_timeout_ms = 500;
        c.heartbeat_ms = 400;
    })
    .await;
    let mut silent = Peer::connect(&server, t).await;
    if t == Transport::Quic {
        // No stream was opened, so there is nothing to carry the frame: the
        // connection is closed with QUIC application error 1 (hello_timeout).
        assert!(silent.next().await.is_none());
    } else {
        assert_error(silent.next().await, "hello_timeout", true);
        assert!(silent.next().await.is_none());
    }

    let mut idle = Peer::connect(&server, t).await;
    idle.hello("alice").await;
    // Heartbeats keep it open past the idle timeout...
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        idle.send_map(json!({"t": "ping", "id": i})).await;
        assert!(matches!(idle.next().await, Some(ServerFrame::Pong(_))));
    }
    // ...silence closes it after 2 x heartbeat.
    assert_error(idle.next().await, "idle_timeout", true);
    server.stop().await;
}

async fn rate_limits_answer_with_a_retry_hint(t: Transport) {
    let mut server = TestServer::start_with(|c| c.limit_send = "2:3".parse().unwrap()).await;
    let alice = client_on(&server, t, "alice").await;
    let room = alice.create_room("r", false).await.unwrap();
    alice.join(&room).await.unwrap();
    for _ in 0..3 {
        alice.send(&room, "ok", None).await.unwrap();
    }
    let err = alice.send(&room, "too fast", None).await.unwrap_err();
    let roomcast_client::ConnError::Server(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.code.as_str(), "rate_limited");
    assert!(!e.close);
    let retry = e.retry_after_ms.expect("retry_after_ms");
    assert!((1..=500).contains(&retry), "{retry}");
    tokio::time::sleep(Duration::from_millis(retry)).await;
    alice.send(&room, "later", None).await.unwrap();
    // The refused message was not stored.
    assert_eq!(
        alice
            .history(&room, None, None)
            .await
            .unwrap()
            .messages
            .len(),
        4
    );
    server.stop().await;
}

async fn connection_cap_answers_server_busy(t: Transport) {
    let mut server = TestServer::start_with(|c| c.max_connections = 1).await;
    let first = client_on(&server, t, "alice").await;
    let mut second = Peer::connect(&server, t).await;
    if t == Transport::Quic {
        // The server answers on the client's stream, which exists once used.
        second
            .send_map(json!({"t": "hello", "v": 1, "token": token("bob")}))
            .await;
    }
    let e = assert_error(second.next().await, "server_busy", true);
    assert!(e.retry_after_ms.is_some());
    first.ping().await.unwrap();
    server.stop().await;
}

async fn shutdown_tells_clients_to_reconnect(t: Transport) {
    let mut server = TestServer::start().await;
    let mut raw = Peer::connect(&server, t).await;
    raw.hello("alice").await;
    server.shutdown.cancel();
    let e = assert_error(raw.next().await, "shutting_down", true);
    assert!(e.retry_after_ms.unwrap() >= 1000);
    assert!(raw.next().await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn slow_consumers_are_cut_off_without_slowing_the_room_tcp() {
    slow_consumers_are_cut_off_without_slowing_the_room(Transport::Tcp).await
}

#[tokio::test]
async fn slow_consumers_are_cut_off_without_slowing_the_room_tls() {
    slow_consumers_are_cut_off_without_slowing_the_room(Transport::Tls).await
}

#[tokio::test]
async fn slow_consumers_are_cut_off_without_slowing_the_room_quic() {
    slow_consumers_are_cut_off_without_slowing_the_room(Transport::Quic).await
}

// (WebSocket: tests/transports.rs, ws_slow_consumers_are_cut_off_with_1013.)
async fn slow_consumers_are_cut_off_without_slowing_the_room(t: Transport) {
    let mut server = TestServer::start_with(|c| {
        c.no_rate_limits = true;
        c.outbox_bytes = 256 * 1024;
    })
    .await;
    let mut alice = client(server.tcp, "alice").await;
    let room = alice.create_room("firehose", false).await.unwrap();
    alice.join(&room).await.unwrap();

    // A member that never reads, with a tiny receive buffer or window.
    let mut sloth = Raw::connect_small_window(&server, t).await;
    sloth.hello("sloth").await;
    sloth
        .send_map(json!({"t": "join", "id": 1, "room": room.as_str()}))
        .await;
    assert!(matches!(sloth.next().await, Some(ServerFrame::Joined(_))));
    let mut slow = Some(sloth);

    // The publisher is never blocked: every send is acknowledged.
    let body = "x".repeat(1000);
    let mut sent = 0u64;
    let mut drain = None;
    for batch in 0..80 {
        // Past the 256 KiB queue plus what the transport buffers (a TCP send
        // buffer grows to 4 MiB here; QUIC's window is 16 KiB), the member is
        // cut off.
        let cut_off = if t == Transport::Quic { 10 } else { 60 };
        if batch == cut_off {
            // Read what it was sent while the publisher goes on (the server gives a cut-off client CLOSE_FLUSH to
            // take its last frames, which a loaded machine could exceed).
            let mut slow = slow.take().expect("once");
            drain = Some(tokio::spawn(async move { slow.drain_to_eof().await }));
        }
        let acks =
            futures_util::future::join_all((0..100).map(|_| alice.send(&room, &body, None))).await;
        for a in acks {
            if let Err(e) = a {
                while let Some(ev) = alice.next_event().await {
                    if !matches!(ev, ServerFrame::Msg(_)) {
                        eprintln!("{ev:?}");
                    }
                }
                panic!("{e:?}");
            }
            sent += 1;
        }
    }
    // The slow member gets a prefix of the stream, in order, then slow_consumer and EOF.
    let frames = drain.expect("drained").await.expect("drain task");
    let (last, msgs) = frames.split_last().expect("some frames");
    assert_error(Some(last.clone()), "slow_consumer", true);
    let seqs: Vec<u64> = msgs
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Msg(m) => Some(m.seq),
            // Ephemeral pushes (read pointers, member changes) may interleave.
            ServerFrame::Read(_) | ServerFrame::MemberJoined(_) => None,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no gaps"
    );
    assert!(
        (seqs.len() as u64) < sent,
        "cut off before the end ({} of {sent})",
        seqs.len()
    );
    server.stop().await;
}

#[tokio::test]
async fn health_endpoint_answers() {
    let mut server = TestServer::start().await;
    let _alice = client(server.tcp, "alice").await;
    let mut s = tokio::net::TcpStream::connect(server.http).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(r#""status":"ok""#), "{resp}");
    assert!(resp.contains(r#""connections":1"#), "{resp}");
    server.stop().await;
}
