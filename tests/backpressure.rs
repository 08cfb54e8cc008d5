//! A slow store over real sockets (issue 11): the shard loop never waits on a
//! store read, a room keeps its order while its read is out, and a store that
//! cannot keep up with commits pushes back with `unavailable` and a retry
//! hint, never losing or duplicating an acknowledged message.
//!
//! The slowness comes from the test-only store wrapper (`src/store/delayed.rs`,
//! the hidden `--test-store-read-delay-ms` / `--test-store-write-delay-ms`).
//! Nothing here asserts a duration: the reads are made slow enough (seconds)
//! that the order of the answers shows what waited on what.

mod common;

use common::*;
use roomcast::config::Config;
use roomcast::ids::RoomId;
use roomcast::proto::ServerFrame;
use roomcast::server::Server;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A read delay far above anything else a request here waits for.
const SLOW_READ_MS: u64 = 2_000;

/// A server started by hand on an existing data dir.
struct Running {
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn start(dir: &std::path::Path, f: impl FnOnce(&mut Config)) -> Running {
        let mut config = Config::for_tests(dir);
        config.no_rate_limits = true;
        f(&mut config);
        apply_test_store(&mut config);
        let server = Server::bind(config).await.expect("bind");
        let addr = server.tcp_addr().expect("tcp addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        Running {
            addr,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("server stops within 30 s")
            .expect("server task")
            .expect("server run");
    }
}

/// Rooms A and B with one message each (seq 1), written by a first server;
/// then a second server on the same data dir, one shard, slow store reads.
/// Message 1 of A is therefore not in any cache: a reaction to it reads the
/// store.
async fn two_rooms_with_slow_reads() -> (tempfile::TempDir, Running, RoomId, RoomId) {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Running::start(dir.path(), |_| {}).await;
    let alice = client(first.addr, "alice").await;
    let a = alice.create_room("room a", false).await.unwrap();
    let b = alice.create_room("room b", false).await.unwrap();
    for room in [&a, &b] {
        alice.send(room, "old", None).await.unwrap();
    }
    alice.close();
    first.stop().await;
    let second = Running::start(dir.path(), |c| {
        c.shards = 1;
        c.test_store_read_delay_ms = SLOW_READ_MS;
    })
    .await;
    (dir, second, a, b)
}

async fn joined(raw: &mut Raw, id: u64, room: &RoomId) {
    raw.send_map(json!({"t": "join", "id": id, "room": room.as_str()}))
        .await;
    loop {
        match raw.next().await {
            Some(ServerFrame::Joined(j)) if j.id == id => return,
            Some(ServerFrame::Error(e)) => panic!("join: {e:?}"),
            Some(_) => {}
            None => panic!("closed while joining"),
        }
    }
}

/// (a) A reaction in room A waits for a slow read of an uncached message; a
/// send in room B of the same shard, made after it, is answered first.
#[tokio::test]
async fn a_slow_read_in_one_room_does_not_hold_up_another_room_of_the_shard() {
    let (_dir, server, a, b) = two_rooms_with_slow_reads().await;
    let mut raw = Raw::connect(server.addr).await;
    raw.hello("alice").await;
    joined(&mut raw, 1, &a).await;
    joined(&mut raw, 2, &b).await;
    raw.send_map(json!({"t": "react", "id": 3, "room": a.as_str(), "seq": 1, "emoji": "👍"}))
        .await;
    raw.send_map(json!({"t": "send", "id": 4, "room": b.as_str(), "body": "meanwhile"}))
        .await;
    let mut replies = Vec::new();
    while replies.len() < 2 {
        match raw.next().await.expect("open") {
            ServerFrame::Error(e) => panic!("{e:?}"),
            f => {
                if let Some(id) = f.reply_id() {
                    replies.push((id, f));
                }
            }
        }
    }
    assert_eq!(
        replies[0].0, 4,
        "room B's send was answered before room A's slow reaction: {replies:?}"
    );
    assert!(matches!(replies[0].1, ServerFrame::Sent(_)), "{replies:?}");
    assert!(matches!(replies[1].1, ServerFrame::Ok(_)), "{replies:?}");
    server.stop().await;
}

/// (b) Within one room, order holds across a parked read: a reaction to an
/// uncached message, then a send, then an edit are answered and pushed in
/// that order.
#[tokio::test]
async fn a_room_keeps_its_order_across_a_slow_read() {
    let (_dir, server, a, _b) = two_rooms_with_slow_reads().await;
    let mut raw = Raw::connect(server.addr).await;
    raw.hello("alice").await;
    joined(&mut raw, 1, &a).await;
    raw.send_map(json!({"t": "react", "id": 10, "room": a.as_str(), "seq": 1, "emoji": "👍"}))
        .await;
    raw.send_map(
        json!({"t": "send", "id": 11, "room": a.as_str(), "body": "new", "local_id": "n1"}),
    )
    .await;
    raw.send_map(json!({"t": "edit", "id": 12, "room": a.as_str(), "seq": 1, "body": "edited"}))
        .await;
    let (mut replies, mut pushes) = (Vec::new(), Vec::new());
    while replies.len() < 3 || pushes.len() < 3 {
        let f = raw.next().await.expect("open");
        if let ServerFrame::Error(e) = &f {
            panic!("{e:?}");
        }
        if let Some(seq) = f.stream_seq() {
            let kind = match &f {
                ServerFrame::Reaction(_) => "reaction",
                ServerFrame::Msg(_) => "msg",
                ServerFrame::Edit(_) => "edit",
                other => panic!("unexpected push {other:?}"),
            };
            pushes.push((kind, seq));
        } else if let Some(id) = f.reply_id() {
            replies.push(id);
        }
    }
    assert_eq!(replies, vec![10, 11, 12], "replies in request order");
    let kinds: Vec<&str> = pushes.iter().map(|p| p.0).collect();
    assert_eq!(kinds, vec!["reaction", "msg", "edit"], "pushes: {pushes:?}");
    assert!(
        pushes.windows(2).all(|w| w[0].1 < w[1].1),
        "seqs rise: {pushes:?}"
    );
    server.stop().await;
}

/// Resident memory of this process (the server runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// (c) With slow commits and one commit in flight per shard, a burst of
/// sends gets `sent` or `unavailable` with a retry hint; retrying the refused
/// ones with the same `local_id` stores every message exactly once.
#[tokio::test]
async fn a_slow_store_pushes_back_and_retries_store_each_message_once() {
    const CONNS: usize = 4;
    const PER_CONN: usize = 60;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Running::start(dir.path(), |c| {
        c.shards = 1;
        c.shard_max_commits = 1;
        c.test_store_write_delay_ms = 300;
    })
    .await;
    let owner = client(server.addr, "owner").await;
    let room = owner.create_room("burst", false).await.unwrap();
    let mut raws = Vec::new();
    for i in 0..CONNS {
        let mut raw = Raw::connect(server.addr).await;
        raw.hello(&format!("u{i}")).await;
        joined(&mut raw, 1, &room).await;
        raws.push(raw);
    }
    let rss_before = rss_kib();
    // The burst: every connection pipelines its sends at once.
    for (c, raw) in raws.iter_mut().enumerate() {
        for i in 0..PER_CONN {
            let lid = format!("c{c}-{i}");
            raw.send_map(json!({"t": "send", "id": 100 + i, "room": room.as_str(), "body": lid, "local_id": lid}))
                .await;
        }
    }
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut refused: Vec<(usize, String, u64)> = Vec::new();
    for (c, raw) in raws.iter_mut().enumerate() {
        let mut answered = 0;
        while answered < PER_CONN {
            match raw.next().await.expect("open") {
                ServerFrame::Sent(s) => {
                    answered += 1;
                    let lid = s.local_id.expect("local_id echoed");
                    assert!(acked.insert(lid, s.seq).is_none(), "acked twice");
                }
                ServerFrame::Error(e) => {
                    answered += 1;
                    assert_eq!(e.code.as_str(), "unavailable", "{e:?}");
                    let retry = e
                        .retry_after_ms
                        .expect("unavailable carries retry_after_ms");
                    let i = e.id.expect("error of a request") - 100;
                    refused.push((c, format!("c{c}-{i}"), retry));
                }
                _ => {}
            }
        }
    }
    let rss_peak = rss_kib();
    println!(
        "burst of {}: {} acked, {} refused with unavailable; RSS {} KiB before, {} KiB after",
        CONNS * PER_CONN,
        acked.len(),
        refused.len(),
        rss_before,
        rss_peak
    );
    assert!(
        !refused.is_empty(),
        "with one slow commit in flight, a burst of {} sends must be pushed back",
        CONNS * PER_CONN
    );
    // Retry the refused ones (same local_id), pipelined again, until each is
    // acknowledged.
    let mut id = 10_000u64;
    let mut rounds = 0;
    while !refused.is_empty() {
        rounds += 1;
        assert!(rounds <= 100, "retries keep being refused");
        let wait = refused.iter().map(|r| r.2).max().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(wait.min(1_000))).await;
        let mut by_conn: HashMap<usize, HashMap<u64, String>> = HashMap::new();
        for (c, lid, _) in refused.drain(..) {
            id += 1;
            raws[c]
                .send_map(json!({"t": "send", "id": id, "room": room.as_str(), "body": lid, "local_id": lid}))
                .await;
            by_conn.entry(c).or_default().insert(id, lid);
        }
        for (c, mut left) in by_conn {
            while !left.is_empty() {
                match raws[c].next().await.expect("open") {
                    ServerFrame::Sent(s) => {
                        if let Some(lid) = left.remove(&s.id) {
                            assert!(acked.insert(lid, s.seq).is_none(), "acked twice");
                        }
                    }
                    ServerFrame::Error(e) => {
                        assert_eq!(e.code.as_str(), "unavailable", "{e:?}");
                        let lid = e.id.and_then(|i| left.remove(&i)).expect("a retry's error");
                        refused.push((c, lid, e.retry_after_ms.expect("retry hint")));
                    }
                    _ => {}
                }
            }
        }
    }
    println!("every refused send stored after {rounds} retry rounds");
    assert_eq!(acked.len(), CONNS * PER_CONN);
    // History holds each message exactly once, at its acknowledged seq.
    let mut stored: HashMap<String, u64> = HashMap::new();
    let mut before = None;
    loop {
        let page = owner.history(&room, before, Some(100)).await.unwrap();
        for m in &page.messages {
            if let Some(lid) = &m.local_id {
                assert!(
                    stored.insert(lid.clone(), m.seq).is_none(),
                    "{lid} stored twice"
                );
            }
        }
        match (page.more, page.messages.iter().map(|m| m.seq).min()) {
            (true, Some(min)) => before = Some(min),
            _ => break,
        }
    }
    assert_eq!(stored, acked, "history is exactly what was acknowledged");
    owner.close();
    server.stop().await;
}
