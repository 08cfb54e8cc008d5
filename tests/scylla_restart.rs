//! The CQL node crashes and comes back under traffic (`--store scylla`): while
//! it is away sends are answered `unavailable` with a retry hint and nothing
//! is acknowledged that is not stored; once it is back the server serves again
//! without a restart of its own, and every acknowledged message is in history
//! exactly once, in seq order, and was pushed live to a member exactly once.
//!
//! The test starts a CQL node of its own (`scripts/cql-node.sh` with a private
//! directory), because it kills it: the shared node of the other suites stays
//! up. It runs where the other CQL suites run (a node is configured, or
//! ROOMCAST_REQUIRE_CQL=1); otherwise it prints SKIP.

mod common;

use common::process::ServerProcess;
use common::*;
use roomcast::ids::RoomId;
use roomcast::proto::{ErrorCode, ServerFrame};
use roomcast_client::{ConnError, Connection};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// A CQL node of this test's own, stopped (and its data deleted) when dropped.
struct PrivateCqlNode {
    dir: tempfile::TempDir,
    addr: String,
}

impl PrivateCqlNode {
    fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/cql-node.sh")
    }

    fn run(dir: &std::path::Path, cmd: &str) -> String {
        let out = Command::new("bash")
            .arg(Self::script())
            .arg(cmd)
            .env("ROOMCAST_CQL_DIR", dir)
            .env("ROOMCAST_CQL_HEAP", "512M")
            // A write acknowledged by this single node must survive its crash:
            // fsync before each acknowledgement (the scripts' default, periodic
            // sync, acknowledges first and can lose the last 10 s to a crash).
            .env("ROOMCAST_CQL_COMMITLOG_SYNC", "batch")
            .output()
            .expect("run scripts/cql-node.sh");
        assert!(
            out.status.success(),
            "cql-node.sh {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn start() -> PrivateCqlNode {
        let dir = tempfile::tempdir().unwrap();
        let addr = Self::run(dir.path(), "start");
        PrivateCqlNode { dir, addr }
    }

    /// SIGKILL, then the same node again on the same ports and data.
    fn restart(&self) {
        let again = Self::run(self.dir.path(), "restart");
        assert_eq!(again, self.addr, "restarted on the same address");
    }
}

impl Drop for PrivateCqlNode {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Self::script())
            .arg("stop")
            .env("ROOMCAST_CQL_DIR", self.dir.path())
            .status();
    }
}

/// Sends `body` (its own `local_id`) until acknowledged, retrying what a
/// store outage answers; returns the seq and how many attempts were refused.
async fn send_until_acked(c: &Connection, room: &RoomId, body: &str) -> (u64, u32) {
    let mut refused = 0;
    for _ in 0..600 {
        match c.send(room, body, Some(body)).await {
            Ok(s) => return (s.seq, refused),
            Err(ConnError::Server(e)) if e.code == ErrorCode::Unavailable => {
                assert!(
                    e.retry_after_ms.is_some(),
                    "unavailable carries a retry hint"
                );
                refused += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("send {body}: {e}"),
        }
    }
    panic!("send {body} never acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cql_node_crash_under_traffic_loses_and_duplicates_nothing() {
    if common::cql::require().is_none() {
        return;
    }
    let node = tokio::task::spawn_blocking(PrivateCqlNode::start)
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let keyspace = common::cql::fresh_keyspace("restart");
    let server = ServerProcess::spawn(
        &[
            "--no-rate-limits",
            "--store",
            "scylla",
            "--scylla-nodes",
            &node.addr,
            "--scylla-keyspace",
            &keyspace,
            "--store-timeout-ms",
            "2000",
        ],
        data.path(),
    );
    let sender = Arc::new(client(server.tcp, "sender").await);
    let room = sender.create_room("outage", false).await.unwrap();
    sender.join(&room).await.unwrap();
    let mut member = client(server.tcp, "member").await;
    member.join(&room).await.unwrap();

    // Traffic: one message after another, each retried until acknowledged.
    const TOTAL: usize = 60;
    let traffic = {
        let (sender, room) = (sender.clone(), room.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut refused = 0;
            for k in 0..TOTAL {
                let body = format!("m{k:03}");
                let (seq, r) = send_until_acked(&sender, &room, &body).await;
                refused += r;
                acked.push((seq, body));
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            (acked, refused)
        })
    };

    // The crash, a little way into the traffic.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let node = tokio::task::spawn_blocking(move || {
        node.restart();
        node
    })
    .await
    .unwrap();
    let (acked, refused) = traffic.await.unwrap();
    eprintln!(
        "{} acknowledged, {refused} attempts answered unavailable during the outage",
        acked.len()
    );
    assert!(
        refused > 0,
        "the outage was seen: some sends were refused while the node was down"
    );
    let seqs: Vec<u64> = acked.iter().map(|(s, _)| *s).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "one order: {seqs:?}");

    // History: every acknowledged message once, at its acknowledged seq.
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let page = sender.history_after(&room, after, Some(100)).await.unwrap();
        let Some(last) = page.messages.last() else {
            break;
        };
        after = last.seq;
        stored.extend(page.messages.iter().map(|m| (m.seq, m.body.clone())));
        if !page.more {
            break;
        }
    }
    assert_eq!(stored, acked, "history = what was acknowledged, once each");

    // Live: the member got each acknowledged message exactly once.
    let mut pushed: HashMap<String, u32> = HashMap::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while pushed.len() < acked.len() && tokio::time::Instant::now() < until {
        match tokio::time::timeout(Duration::from_secs(5), next_stream_event(&mut member)).await {
            Ok(ServerFrame::Msg(m)) => *pushed.entry(m.body).or_default() += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let missing: Vec<&String> = acked
        .iter()
        .map(|(_, b)| b)
        .filter(|b| !pushed.contains_key(*b))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never pushed: {missing:?}"
    );
    assert!(pushed.values().all(|n| *n == 1), "pushed twice: {pushed:?}");
    drop(server);
    drop(node);
}
