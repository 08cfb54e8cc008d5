//! Acknowledged messages survive `kill -9`: a child server process is killed
//! mid-stream and restarted on the same data dir.

mod common;

use common::process::ServerProcess;
use common::*;
use std::path::Path;
use std::time::Duration;

/// The store a child server uses: the embedded one, or ScyllaDB at (nodes, keyspace).
type Scylla<'a> = Option<(&'a str, &'a str)>;

fn spawn(data_dir: &Path, fsync: &str, scylla: Scylla) -> ServerProcess {
    let mut args = vec!["--fsync", fsync, "--no-rate-limits"];
    if let Some((nodes, keyspace)) = scylla {
        args.extend([
            "--store",
            "scylla",
            "--scylla-nodes",
            nodes,
            "--scylla-keyspace",
            keyspace,
        ]);
    }
    ServerProcess::spawn(&args, data_dir)
}

fn kill9(mut s: ServerProcess) {
    s.kill9();
}

async fn crash_keeps_acknowledged_messages(fsync: &str, scylla: Scylla<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn(dir.path(), fsync, scylla);
    let alice = client(server.tcp, "alice").await;
    let room = alice.create_room("durable", true).await.unwrap();
    alice.join(&room).await.unwrap();

    // Several pipelined senders, so commits are grouped; the kill lands while
    // sends are still in flight.
    let alice = std::sync::Arc::new(alice);
    let mut acked = Vec::new();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (alice, room) = (alice.clone(), room.clone());
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..1000 {
                match alice
                    .send(&room, &format!("{t}:{i}"), Some(&format!("{t}:{i}")))
                    .await
                {
                    Ok(s) => acks.push((s.seq, format!("{t}:{i}"))),
                    Err(_) => break,
                }
            }
            acks
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill9(server);
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    eprintln!("{fsync}: {} acknowledged before the kill", acked.len());
    assert!(
        acked.len() > 10,
        "some sends were acknowledged before the kill ({})",
        acked.len()
    );

    let server = spawn(dir.path(), fsync, scylla);
    let alice = client(server.tcp, "alice").await;
    let joined = alice.join(&room).await.unwrap();
    let mut stored = std::collections::HashMap::new();
    let mut before = None;
    loop {
        let page = alice.history(&room, before, Some(200)).await.unwrap();
        for m in &page.messages {
            stored.insert(m.seq, m.body.clone());
        }
        if !page.more {
            break;
        }
        before = page.messages.first().map(|m| m.seq);
    }
    for (seq, body) in &acked {
        assert_eq!(
            stored.get(seq),
            Some(body),
            "acknowledged seq {seq} is in history"
        );
    }
    let max = *stored.keys().max().unwrap();
    assert_eq!(joined.seq, max);
    let next = alice.send(&room, "after restart", None).await.unwrap();
    if scylla.is_none() {
        // One group commit at a time: seqs are dense from 1 and continue.
        assert_eq!(stored.len() as u64, max);
        assert_eq!(next.seq, max + 1);
    } else {
        // Batches in flight at the kill may land or not, each on its own: unacknowledged
        // seqs may be gaps, never reused.
        assert!(next.seq > max);
    }
    // Retrying an acknowledged local_id after the crash returns the original ack.
    let (seq, body) = &acked[0];
    assert_eq!(alice.send(&room, body, Some(body)).await.unwrap().seq, *seq);
    kill9(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_acknowledged_messages_fsync_always() {
    crash_keeps_acknowledged_messages("always", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_acknowledged_messages_fsync_never() {
    crash_keeps_acknowledged_messages("never", None).await;
}

/// The same on the ScyllaDB store (a CQL node): nothing acknowledged is lost, seqs are not reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_acknowledged_messages_scylla() {
    let Some(nodes) = cql::require() else {
        return;
    };
    let keyspace = cql::KeyspaceGuard::fresh(&nodes, "dur");
    crash_keeps_acknowledged_messages("never", Some((&nodes, keyspace.name()))).await;
}
