//! What is particular to each transport: one room shared by members on every
//! transport, and the bad input each transport can carry (TLS handshake
//! garbage, a QUIC stream reset mid-frame or an abrupt close, WebSocket text
//! and oversize messages, WebSocket ping/pong and origins). Each is answered
//! as docs/TRANSPORTS.md says, and the server keeps serving the others.

mod common;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use roomcast::proto::ServerFrame;
use roomcast_client::Trust;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, Message};

/// Polls `/health` until it reports `n` connections (cleanup is asynchronous).
async fn wait_for_connections(server: &TestServer, n: usize) {
    let want = format!(r#""connections":{n}"#);
    let poll = async {
        loop {
            let mut s = tokio::net::TcpStream::connect(server.http).await.unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut resp = String::new();
            s.read_to_string(&mut resp).await.unwrap();
            if resp.contains(&want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, poll)
        .await
        .unwrap_or_else(|_| panic!("{n} connections within WAIT"));
}

fn frame(v: serde_json::Value) -> Vec<u8> {
    let payload = rmp_serde::to_vec_named(&v).unwrap();
    let mut b = (payload.len() as u32).to_be_bytes().to_vec();
    b.extend(payload);
    b
}

#[tokio::test]
async fn members_on_every_transport_see_one_ordered_stream() {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let mut members = Vec::new();
    for t in Transport::ALL {
        members.push((t, client_on(&server, t, &format!("user-{t:?}")).await));
    }
    let room = members[0].1.create_room("mixed", false).await.unwrap();
    for (_, c) in &members {
        c.join(&room).await.unwrap();
    }
    const EACH: usize = 25;
    let sends = members.iter().map(|(t, c)| {
        let room = room.clone();
        async move {
            for i in 0..EACH {
                c.send(&room, &format!("{t:?}:{i}"), None).await.unwrap();
            }
        }
    });
    futures_util::future::join_all(sends).await;
    let total = EACH * members.len();
    let mut streams = Vec::new();
    for (t, c) in &mut members {
        let mut got = Vec::new();
        while got.len() < total {
            match tokio::time::timeout(WAIT, c.next_event()).await.unwrap() {
                Some(ServerFrame::Msg(m)) => got.push((m.seq, m.from.to_string(), m.body)),
                Some(_) => {}
                None => panic!("{t:?} closed"),
            }
        }
        let seqs: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>(), "{t:?}");
        streams.push(got);
    }
    for s in &streams[1..] {
        assert_eq!(s, &streams[0], "identical delivery on every transport");
    }
    server.stop().await;
}

#[tokio::test]
async fn tls_handshake_garbage_is_refused_and_others_are_served() {
    let mut server = TestServer::start().await;
    for garbage in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        frame(json!({"t": "hello", "v": 1, "token": token("a")})),
        vec![0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0],
    ] {
        let mut s = tokio::net::TcpStream::connect(server.tls).await.unwrap();
        s.write_all(&garbage).await.unwrap();
        let mut reply = Vec::new();
        // A TLS alert record (if any), then EOF or a reset; never a protocol frame.
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut reply))
            .await
            .expect("closed within WAIT");
        assert!(
            reply.is_empty() || reply[0] == 0x15,
            "an alert or nothing: {reply:?}"
        );
    }
    let c = client_on(&server, Transport::Tls, "alice").await;
    c.ping().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn tls_and_quic_refuse_a_wrong_pin_and_accept_the_printed_one() {
    let mut server = TestServer::start().await;
    for t in [Transport::Tls, Transport::Quic] {
        let mut ep = server.endpoint(t);
        match &mut ep {
            roomcast_client::Endpoint::Tls { trust, .. }
            | roomcast_client::Endpoint::Quic { trust, .. } => *trust = Trust::Pin([7; 32]),
            _ => unreachable!(),
        }
        assert!(
            roomcast_client::Connection::connect_to(&ep).await.is_err(),
            "{t:?}"
        );
        client_on(&server, t, "alice").await.ping().await.unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn generated_certificate_is_reused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut first = TestServer::start_with(|c| c.data_dir = path.clone()).await;
    first.stop().await;
    let mut second = TestServer::start_with(|c| c.data_dir = path.clone()).await;
    assert_eq!(first.fingerprint, second.fingerprint);
    assert_eq!(second.fingerprint.len(), 64);
    second.stop().await;
}

/// A raw QUIC connection with its one stream, pinned to the test server.
async fn quic_raw(
    server: &TestServer,
) -> (
    quinn::Endpoint,
    quinn::Connection,
    quinn::SendStream,
    quinn::RecvStream,
) {
    let pin = roomcast_client::parse_pin(&server.fingerprint).unwrap();
    let tls = roomcast_client::tls::client_config(&Trust::Pin(pin), &[roomcast_client::tls::ALPN])
        .unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = endpoint
        .connect(server.quic, "localhost")
        .unwrap()
        .await
        .unwrap();
    let (send, recv) = conn.open_bi().await.unwrap();
    (endpoint, conn, send, recv)
}

#[tokio::test]
async fn quic_stream_reset_mid_frame_is_a_dropped_connection() {
    let mut server = TestServer::start().await;
    let other = client_on(&server, Transport::Quic, "bob").await;
    let (_endpoint, conn, mut send, _recv) = quic_raw(&server).await;
    send.write_all(&frame(
        json!({"t": "hello", "v": 1, "token": token("alice"), "id": 1}),
    ))
    .await
    .unwrap();
    // Half a frame, then a reset.
    let half = frame(json!({"t": "ping", "id": 2, "pad": "x".repeat(100)}));
    send.write_all(&half[..half.len() / 2]).await.unwrap();
    send.reset(42u32.into()).unwrap();
    // The server cleans up and closes the connection.
    let closed = tokio::time::timeout(WAIT, conn.closed())
        .await
        .expect("closed within WAIT");
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(_)),
        "{closed:?}"
    );
    wait_for_connections(&server, 1).await;
    other.ping().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn quic_abrupt_close_cleans_up_like_a_dropped_tcp_connection() {
    let mut server = TestServer::start().await;
    let alice = client_on(&server, Transport::Tcp, "alice").await;
    let room = alice.create_room("r", false).await.unwrap();
    let (endpoint, conn, mut send, mut recv) = quic_raw(&server).await;
    send.write_all(&frame(
        json!({"t": "hello", "v": 1, "token": token("bob"), "id": 1}),
    ))
    .await
    .unwrap();
    send.write_all(&frame(json!({"t": "join", "id": 2, "room": room.as_str()})))
        .await
        .unwrap();
    let mut frames =
        tokio_util::codec::FramedRead::new(&mut recv, roomcast::proto::FrameCodec::new(1 << 20));
    let mut joined = false;
    while !joined {
        let f = tokio::time::timeout(WAIT, frames.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        joined = matches!(ServerFrame::decode(&f), Ok(ServerFrame::Joined(_)));
    }
    wait_for_connections(&server, 2).await;
    // Close without finishing the stream or saying goodbye.
    conn.close(99u32.into(), b"gone");
    drop(endpoint);
    wait_for_connections(&server, 1).await;
    // The room still works for the rest.
    alice.join(&room).await.unwrap();
    alice.send(&room, "still here", None).await.unwrap();
    server.stop().await;
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn ws_raw(server: &TestServer, origin: Option<&str>) -> Result<Ws, tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/ws", server.http)
        .into_client_request()
        .unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    let socket = tokio::net::TcpStream::connect(server.http).await.unwrap();
    tokio_tungstenite::client_async(req, socket)
        .await
        .map(|(ws, _)| ws)
}

fn payload(v: serde_json::Value) -> Message {
    Message::Binary(Bytes::from(rmp_serde::to_vec_named(&v).unwrap()))
}

/// Sends `hello` as `user`, then `join {room}` (replies are left to the caller).
async fn ws_hello_and_join<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    user: &str,
    room: &str,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(payload(
        json!({"t": "hello", "v": 1, "token": token(user), "id": 1}),
    ))
    .await
    .unwrap();
    ws.send(payload(json!({"t": "join", "id": 2, "room": room})))
        .await
        .unwrap();
}

/// Reads until a Close, returning the binary frames decoded and the close code.
async fn ws_until_close(ws: &mut Ws) -> (Vec<ServerFrame>, Option<u16>) {
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("WAIT") {
            Some(Ok(Message::Binary(b))) => frames.push(ServerFrame::decode(&b).unwrap()),
            Some(Ok(Message::Close(c))) => return (frames, c.map(|c| u16::from(c.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (frames, None),
        }
    }
}

#[tokio::test]
async fn ws_text_messages_are_closed_with_1003() {
    let mut server = TestServer::start().await;
    let other = client_on(&server, Transport::Ws, "bob").await;
    let mut ws = ws_raw(&server, None).await.unwrap();
    ws.send(Message::Text(r#"{"t":"hello"}"#.into()))
        .await
        .unwrap();
    let (frames, code) = ws_until_close(&mut ws).await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(code, Some(1003));
    other.ping().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn ws_oversize_messages_get_frame_too_large_and_1009() {
    let mut server = TestServer::start_with(|c| c.max_frame = 1024).await;
    let mut ws = ws_raw(&server, None).await.unwrap();
    ws.send(payload(
        json!({"t": "hello", "v": 1, "token": token("alice"), "id": 1}),
    ))
    .await
    .unwrap();
    ws.send(Message::Binary(Bytes::from(vec![0x90; 2000])))
        .await
        .unwrap();
    let (frames, code) = ws_until_close(&mut ws).await;
    assert!(matches!(frames.first(), Some(ServerFrame::Welcome(_))));
    assert_error(frames.last().cloned(), "frame_too_large", true);
    assert_eq!(code, Some(1009));
    client_on(&server, Transport::Ws, "bob")
        .await
        .ping()
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn ws_pings_are_answered_and_sent() {
    let mut server = TestServer::start_with(|c| c.heartbeat_ms = 200).await;
    let mut ws = ws_raw(&server, None).await.unwrap();
    ws.send(payload(
        json!({"t": "hello", "v": 1, "token": token("alice"), "id": 1}),
    ))
    .await
    .unwrap();
    ws.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    let (mut pong, mut ping) = (false, false);
    while !(pong && ping) {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Pong(p))) => pong |= &p[..] == b"are you there",
            Some(Ok(Message::Ping(_))) => ping = true,
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn ws_origins_outside_the_allowed_list_are_forbidden() {
    let mut server = TestServer::start_with(|c| {
        c.ws_allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;
    match ws_raw(&server, Some("https://evil.example")).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    ws_raw(&server, Some("https://app.example.com"))
        .await
        .unwrap();
    ws_raw(&server, None).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn ws_slow_consumers_are_cut_off_with_1013() {
    let mut server = TestServer::start_with(|c| {
        c.no_rate_limits = true;
        c.outbox_bytes = 256 * 1024;
    })
    .await;
    let alice = client_on(&server, Transport::Tcp, "alice").await;
    let room = alice.create_room("firehose", false).await.unwrap();
    alice.join(&room).await.unwrap();
    // A browser that joins and then stops reading.
    let mut ws = ws_raw(&server, None).await.unwrap();
    ws_hello_and_join(&mut ws, "sloth", room.as_str()).await;
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("WAIT") {
            Some(Ok(Message::Binary(b)))
                if matches!(ServerFrame::decode(&b), Ok(ServerFrame::Joined(_))) =>
            {
                break
            }
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    // The publisher is never blocked while the browser does not read.
    let body = "z".repeat(1000);
    for _ in 0..80 {
        for a in
            futures_util::future::join_all((0..100).map(|_| alice.send(&room, &body, None))).await
        {
            a.unwrap();
        }
    }
    let (frames, code) = ws_until_close(&mut ws).await;
    let seqs: Vec<u64> = frames.iter().filter_map(ServerFrame::stream_seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "a gapless prefix"
    );
    assert!(
        matches!(frames.last(), Some(ServerFrame::Error(e)) if e.code.as_str() == "slow_consumer"),
        "slow_consumer before the close: {:?}",
        frames.last()
    );
    assert_eq!(code, Some(1013));
    server.stop().await;
}

/// A WebSocket client written out by hand, to see what goes over the wire:
/// the negotiated extension and the RSV1 (compressed) bit of each message.
struct RawWs {
    s: tokio::net::TcpStream,
    buf: Vec<u8>,
    /// The server's `Sec-WebSocket-Extensions` answer, if any.
    extensions: Option<String>,
    /// One inflater for the connection: with context takeover the server's
    /// messages refer back to earlier ones.
    inflater: flate2::Decompress,
}

/// One message as received: compressed on the wire or not, and its payload
/// after inflating.
struct RawMessage {
    opcode: u8,
    compressed: bool,
    wire_len: usize,
    payload: Vec<u8>,
}

impl RawWs {
    async fn connect(server: &TestServer, offer: Option<&str>) -> RawWs {
        let mut s = tokio::net::TcpStream::connect(server.http).await.unwrap();
        let ext = offer
            .map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "eof during the upgrade");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let extensions = head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("sec-websocket-extensions:")
                .map(|v| v.trim().to_string())
        });
        let buf = buf.split_off(end);
        RawWs {
            s,
            buf,
            extensions,
            inflater: flate2::Decompress::new(false),
        }
    }

    /// Sends one masked binary message, deflated (RSV1) if `compress`.
    async fn send(&mut self, v: serde_json::Value, compress: bool) {
        let mut payload = rmp_serde::to_vec_named(&v).unwrap();
        let mut first = 0x82u8; // FIN + binary
        if compress {
            payload = deflate(&payload);
            first |= 0x40;
        }
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend((n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend((n as u64).to_be_bytes());
            }
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        f.extend(mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.s.write_all(&f).await.unwrap();
    }

    async fn fill(&mut self, n: usize) {
        while self.buf.len() < n {
            let mut chunk = [0u8; 8192];
            let got = tokio::time::timeout(WAIT, self.s.read(&mut chunk))
                .await
                .expect("WAIT")
                .unwrap();
            assert!(got > 0, "eof");
            self.buf.extend_from_slice(&chunk[..got]);
        }
    }

    async fn next(&mut self) -> RawMessage {
        self.fill(2).await;
        let (b0, b1) = (self.buf[0], self.buf[1]);
        assert_eq!(b1 & 0x80, 0, "server frames are not masked");
        assert_ne!(b0 & 0x80, 0, "one frame per message");
        let (len, at) = match b1 & 0x7f {
            126 => {
                self.fill(4).await;
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                self.fill(10).await;
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        self.fill(at + len).await;
        let wire: Vec<u8> = self.buf.drain(..at + len).skip(at).collect();
        let compressed = b0 & 0x40 != 0;
        let payload = if compressed {
            inflate(&mut self.inflater, &wire)
        } else {
            wire.clone()
        };
        RawMessage {
            opcode: b0 & 0x0f,
            compressed,
            wire_len: wire.len(),
            payload,
        }
    }

    /// The next protocol frame (binary message), skipping pings.
    async fn frame(&mut self) -> (ServerFrame, RawMessage) {
        loop {
            let m = self.next().await;
            if m.opcode == 2 {
                return (ServerFrame::decode(&m.payload).unwrap(), m);
            }
            assert_eq!(m.opcode, 9, "only pings besides binary messages");
        }
    }
}

/// Raw DEFLATE of one message, as RFC 7692 sends it (the final empty stored
/// block's 00 00 ff ff left off).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, flate2::FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(d: &mut flate2::Decompress, data: &[u8]) -> Vec<u8> {
    let mut input = data.to_vec();
    input.extend([0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(64 * 1024);
    d.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
        .unwrap();
    out
}

#[tokio::test]
async fn ws_compression_is_negotiated_when_enabled_and_used_above_the_threshold() {
    let mut server = TestServer::start_with(|c| {
        c.ws_compression = true;
        c.ws_compression_min_bytes = 256;
        c.no_rate_limits = true;
    })
    .await;
    // A browser's usual offer; the server answers without context takeover.
    let mut ws = RawWs::connect(&server, Some("permessage-deflate; client_max_window_bits")).await;
    let ext = ws.extensions.clone().expect("extension agreed");
    assert!(ext.starts_with("permessage-deflate"), "{ext}");
    assert!(ext.contains("server_no_context_takeover"), "{ext}");
    assert!(ext.contains("client_no_context_takeover"), "{ext}");

    // Client messages may be compressed or not, message by message.
    ws.send(
        json!({"t": "hello", "v": 1, "token": token("alice"), "id": 1}),
        true,
    )
    .await;
    let (welcome, m) = ws.frame().await;
    assert!(matches!(welcome, ServerFrame::Welcome(_)), "{welcome:?}");
    assert!(!m.compressed, "a small frame goes out as it is");
    ws.send(json!({"t": "create_room", "id": 2, "name": "zip"}), false)
        .await;
    let (created, _) = ws.frame().await;
    let ServerFrame::Created(created) = created else {
        panic!("{created:?}")
    };
    let room = created.room.as_str().to_string();
    ws.send(json!({"t": "join", "id": 3, "room": room}), true)
        .await;
    loop {
        if let (ServerFrame::Joined(_), _) = ws.frame().await {
            break;
        }
    }
    // A large, repetitive message comes back deflated; each message is
    // compressed on its own, so the second is as small as the first.
    let body = "all work and no play makes jack a dull boy. ".repeat(40);
    let mut sizes = Vec::new();
    for (i, id) in [4u64, 5].into_iter().enumerate() {
        ws.send(
            json!({"t": "send", "id": id, "room": room, "body": body}),
            i == 0,
        )
        .await;
        loop {
            let (f, m) = ws.frame().await;
            if let ServerFrame::Msg(msg) = f {
                assert_eq!(msg.body, body);
                assert!(m.compressed, "above the threshold: compressed");
                assert!(
                    m.wire_len * 4 < m.payload.len(),
                    "{} -> {}",
                    m.payload.len(),
                    m.wire_len
                );
                sizes.push(m.wire_len);
                break;
            }
        }
    }
    // (With context takeover the second would be a few bytes referring back.)
    assert!(
        sizes[1] * 2 > sizes[0],
        "no context carried between messages: {sizes:?}"
    );
    // An uncompressing browser on the same server is served plainly.
    let mut plain = RawWs::connect(&server, None).await;
    assert_eq!(plain.extensions, None);
    plain
        .send(
            json!({"t": "hello", "v": 1, "token": token("bob"), "id": 1}),
            false,
        )
        .await;
    let (welcome, _) = plain.frame().await;
    assert!(matches!(welcome, ServerFrame::Welcome(_)));
    server.stop().await;
}

#[tokio::test]
async fn ws_compression_is_off_by_default_and_a_compressed_message_is_a_protocol_error() {
    let mut server = TestServer::start().await;
    let mut ws = RawWs::connect(&server, Some("permessage-deflate; client_max_window_bits")).await;
    assert_eq!(ws.extensions, None, "not offered by default");
    ws.send(
        json!({"t": "hello", "v": 1, "token": token("alice"), "id": 1}),
        true,
    )
    .await;
    let m = ws.next().await;
    assert_eq!(m.opcode, 8, "close");
    assert_eq!(u16::from_be_bytes([m.payload[0], m.payload[1]]), 1002);
    client_on(&server, Transport::Ws, "bob")
        .await
        .ping()
        .await
        .unwrap();
    server.stop().await;
}

/// RFC 6455 §5.2: reserved opcodes and reserved bits fail the connection with
/// 1002 (protocol error). yawc alone answered reserved opcodes with 1003
/// (src/transport/ws_opcodes.rs); the first Close on the wire is what counts.
#[tokio::test]
async fn ws_reserved_opcodes_and_bits_close_with_1002() {
    let mut server = TestServer::start().await;
    // 0x3/0x7 data and 0xB/0xF control opcodes, then RSV2 and RSV3 on a binary frame.
    for (i, first) in [0x83u8, 0x87, 0x8B, 0x8F, 0xA2, 0x92]
        .into_iter()
        .enumerate()
    {
        for greeted in [false, true] {
            let mut ws = RawWs::connect(&server, None).await;
            if greeted {
                let user = format!("u{i}");
                ws.send(
                    json!({"t": "hello", "v": 1, "token": token(&user), "id": 1}),
                    false,
                )
                .await;
                let (welcome, _) = ws.frame().await;
                assert!(matches!(welcome, ServerFrame::Welcome(_)), "{welcome:?}");
            }
            // A masked two-byte payload, behind a Ping the server must still answer.
            let mut f = vec![0x89, 0x80, 0, 0, 0, 0];
            f.extend([first, 0x82, 1, 2, 3, 4, 0x10, 0x20]);
            ws.s.write_all(&f).await.unwrap();
            let close = loop {
                let m = ws.next().await;
                if m.opcode == 8 {
                    break m;
                }
                assert!(
                    m.opcode == 9 || m.opcode == 10,
                    "{first:#x}: opcode {}",
                    m.opcode
                );
            };
            let code = u16::from_be_bytes([close.payload[0], close.payload[1]]);
            assert_eq!(code, 1002, "first byte {first:#x}, after hello: {greeted}");
        }
    }
    client_on(&server, Transport::Ws, "bob")
        .await
        .ping()
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn ws_compression_with_context_takeover_refers_back_to_earlier_messages() {
    let mut server = TestServer::start_with(|c| {
        c.ws_compression = true;
        c.ws_compression_context_takeover = true;
        c.no_rate_limits = true;
    })
    .await;
    let mut ws = RawWs::connect(&server, Some("permessage-deflate")).await;
    let ext = ws.extensions.clone().expect("extension agreed");
    assert!(!ext.contains("no_context_takeover"), "{ext}");
    ws.send(
        json!({"t": "hello", "v": 1, "token": token("alice"), "id": 1}),
        false,
    )
    .await;
    ws.frame().await;
    ws.send(json!({"t": "create_room", "id": 2, "name": "zip"}), false)
        .await;
    let ServerFrame::Created(created) = ws.frame().await.0 else {
        panic!("created")
    };
    let room = created.room.as_str().to_string();
    ws.send(json!({"t": "join", "id": 3, "room": room}), false)
        .await;
    while !matches!(ws.frame().await.0, ServerFrame::Joined(_)) {}
    let body = "a fairly long message that is sent twice, word for word. ".repeat(10);
    let mut sizes = Vec::new();
    for id in [4u64, 5] {
        ws.send(
            json!({"t": "send", "id": id, "room": room, "body": body}),
            false,
        )
        .await;
        loop {
            let (f, m) = ws.frame().await;
            if let ServerFrame::Msg(msg) = f {
                assert_eq!(msg.body, body);
                assert!(m.compressed);
                sizes.push(m.wire_len);
                break;
            }
        }
    }
    // The second refers back to the first (and inflates to the same body).
    assert!(sizes[1] * 2 < sizes[0], "{sizes:?}");
    server.stop().await;
}

/// A TLS connection to the HTTPS listener, pinning the server's certificate.
async fn https_connect(
    server: &TestServer,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let trust = Trust::Pin(roomcast_client::parse_pin(&server.fingerprint).unwrap());
    let config = roomcast_client::tls::client_config(&trust, &[b"http/1.1"]).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let socket = tokio::net::TcpStream::connect(server.https).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, socket)
        .await
        .expect("tls handshake with the https listener")
}

#[tokio::test]
async fn wss_and_https_serve_the_http_routes_over_tls() {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let alice = client_on(&server, Transport::Tcp, "alice").await;
    let room = alice.create_room("secure", false).await.unwrap();
    alice.join(&room).await.unwrap();

    // A browser on an https page: wss://HOST/ws, the same binary messages.
    let (mut ws, _) =
        tokio_tungstenite::client_async("wss://localhost/ws", https_connect(&server).await)
            .await
            .expect("websocket over tls");
    ws_hello_and_join(&mut ws, "bob", room.as_str()).await;
    let mut joined = false;
    let mut got = None;
    while got.is_none() {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("WAIT") {
            Some(Ok(Message::Binary(b))) => match ServerFrame::decode(&b).unwrap() {
                ServerFrame::Joined(_) => {
                    joined = true;
                    alice.send(&room, "over tls", None).await.unwrap();
                }
                ServerFrame::Msg(m) => got = Some(m.body),
                _ => {}
            },
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(joined);
    assert_eq!(got.as_deref(), Some("over tls"));

    // The Rust SDK over wss://, pinning the same certificate.
    let wss = roomcast_client::Endpoint::Wss {
        url: format!("wss://127.0.0.1:{}/ws", server.https.port()),
        trust: Trust::Pin(roomcast_client::parse_pin(&server.fingerprint).unwrap()),
    };
    let (mut carol, _) = roomcast_client::Connection::connect_to_with_token(&wss, &token("carol"))
        .await
        .expect("sdk over wss");
    carol.join(&room).await.unwrap();
    alice.send(&room, "to the sdk", None).await.unwrap();
    assert_eq!(next_msg(&mut carol).await.body, "to the sdk");

    // https://HOST/health.
    let mut s = https_connect(&server).await;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp).await;
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(r#""status":"ok""#), "{resp}");

    // Plain HTTP on the HTTPS port is refused by the TLS layer; others are served.
    let mut plain = tokio::net::TcpStream::connect(server.https).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut buf)).await;
    assert!(
        !String::from_utf8_lossy(&buf).contains("200"),
        "no HTTP answer in clear"
    );
    alice.ping().await.unwrap();
    let _ = https_connect(&server).await;
    server.stop().await;
}
