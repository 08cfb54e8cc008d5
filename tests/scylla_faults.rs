//! Fault injection between the server and a real CQL node (`--store scylla`).
//!
//! A `scylla-proxy` sits between the server's ScyllaDB store and the CQL node
//! (Cassandra in CI, or one ScyllaDB node). It forwards every frame unchanged
//! until a test gives it rules; the rules match the commit point of a send
//! (the prepared `UPDATE … stream … SET event` of the stream table, found by
//! its prepared-statement id in EXECUTE and BATCH frames) or every prepared
//! read, and answer them with a forged write timeout, `unavailable`,
//! `overloaded` or read timeout, or forward them late.
//!
//! Over the real protocol the tests check what docs/STORAGE.md promises: a
//! send whose commit point failed is never acknowledged and never pushed; the
//! server answers `unavailable` with `retry_after_ms` once it gives up; a
//! retry with the same `local_id` after the fault clears yields exactly one
//! message, at the same seq when the first outcome was unknown (write timeout,
//! a write that went past the deadline) and at the next seq when nothing was
//! written (`unavailable`, `overloaded`: one burnt seq); live subscribers get
//! acknowledged messages only, each once and in seq order, a retried send of
//! unknown outcome included (the live stream holds at its seq until the retry
//! commits it); and reads
//! that fail answer `unavailable` too. The store's counters on `/metrics`
//! (`roomcast_scylla_*`) move with that traffic and those faults. No timing is
//! asserted: only outcomes.
//!
//! Needs a CQL node (tests/common/cql.rs); without one they print SKIP.

mod common;

use common::*;
use roomcast::ids::RoomId;
use roomcast::proto::ErrorCode;
use roomcast::store::scylla::commit_point_cql;
use roomcast_client::{ConnError, Connection};
use scylla_proxy::{
    Condition, Node, Proxy, Reaction, RequestFrame, RequestOpcode, RequestReaction, RequestRule,
    RunningProxy, ShardAwareness, TargetShard,
};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;

/// The server's store deadline in these tests (`store_timeout_ms`): long
/// enough for a loaded CQL node, short enough that giving up is quick.
const STORE_TIMEOUT_MS: u64 = 4_000;
/// Bound on any one protocol call (the server answers within its deadline).
const CALL: Duration = Duration::from_secs(60);

type Hits = mpsc::UnboundedReceiver<(RequestFrame, Option<TargetShard>)>;

/// A proxy in front of the one CQL node, forwarding normally until rules are set.
struct FaultyCql {
    proxy: Option<RunningProxy>,
    /// Contact point of the proxy (same IP as the node: the driver keeps the
    /// IP the node reports in `system.local` and the port it connected to).
    addr: SocketAddr,
    real: SocketAddr,
}

impl FaultyCql {
    /// None (after printing SKIP) without a node or with several nodes.
    async fn start() -> Option<FaultyCql> {
        // RUST_LOG=roomcast=debug shows the store's retries and errors.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let nodes = common::cql::require()?;
        let list: Vec<&str> = nodes.split(',').map(str::trim).collect();
        if list.len() != 1 {
            // The driver would find the other nodes itself and bypass the proxy.
            eprintln!("SKIP: fault injection proxies exactly one CQL node, got {nodes}");
            return None;
        }
        let real = tokio::net::lookup_host(list[0])
            .await
            .unwrap_or_else(|e| panic!("resolve the CQL node {}: {e}", list[0]))
            .next()
            .unwrap_or_else(|| panic!("the CQL node {} resolves to no address", list[0]));
        let port = std::net::TcpListener::bind((real.ip(), 0))
            .and_then(|l| l.local_addr())
            .expect("a free port for the proxy")
            .port();
        let addr = SocketAddr::new(real.ip(), port);
        let node = Node::builder()
            .real_address(real)
            .proxy_address(addr)
            .shard_awareness(ShardAwareness::QueryNode)
            .build();
        let proxy = Proxy::builder()
            .with_node(node)
            .build()
            .run()
            .await
            .expect("start scylla-proxy");
        Some(FaultyCql {
            proxy: Some(proxy),
            addr,
            real,
        })
    }

    fn set(&mut self, rules: Vec<RequestRule>) {
        if let Some(p) = self.proxy.as_mut() {
            p.running_nodes[0].change_request_rules(Some(rules));
        }
    }

    fn clear(&mut self) {
        if let Some(p) = self.proxy.as_mut() {
            p.turn_off_rules();
        }
    }

    async fn finish(&mut self) {
        if let Some(p) = self.proxy.take() {
            // Connections the server dropped mid-frame are reported here; they are
            // not what the tests check.
            let _ = tokio::time::timeout(Duration::from_secs(10), p.finish()).await;
        }
    }

    /// The prepared id of the commit-point statement in `keyspace`, asked of
    /// the node directly (the id is derived from the statement's text).
    async fn commit_point_id(&self, keyspace: &str) -> Vec<u8> {
        let session = scylla::client::session_builder::SessionBuilder::new()
            .known_node_addr(self.real)
            .build()
            .await
            .expect("a direct session to the CQL node");
        let ps = session
            .prepare(commit_point_cql(keyspace))
            .await
            .expect("prepare the commit-point statement");
        ps.get_id().to_vec()
    }
}

/// EXECUTE or BATCH frames that carry the commit-point statement.
fn commit_point(id: &[u8]) -> Condition {
    Condition::RequestOpcode(RequestOpcode::Execute)
        .or(Condition::RequestOpcode(RequestOpcode::Batch))
        .and(Condition::BodyContainsCaseSensitive(id.into()))
}

/// Every prepared statement (the store prepares all it runs) and every batch.
fn any_prepared() -> Condition {
    Condition::RequestOpcode(RequestOpcode::Execute)
        .or(Condition::RequestOpcode(RequestOpcode::Batch))
}

async fn start_server(cql: &FaultyCql, keyspace: &str) -> TestServer {
    // Create the schema first, directly on the node and with a generous
    // deadline (DDL on a loaded node is slow); the server's own migration at
    // startup then only finds it in place, within its short test deadline.
    let mut direct = common::cql::store_config(&cql.real.to_string(), keyspace);
    direct.request_timeout = Duration::from_secs(60);
    roomcast::store::scylla::ScyllaStore::connect(&direct)
        .await
        .expect("create the test keyspace on the CQL node");
    let nodes = cql.addr.to_string();
    TestServer::start_with(|c| {
        common::cql::use_scylla(c, &nodes, keyspace);
        c.store_timeout_ms = STORE_TIMEOUT_MS;
    })
    .await
}

fn assert_unavailable(r: Result<impl std::fmt::Debug, ConnError>, what: &str) {
    match r {
        Err(ConnError::Server(e)) => {
            eprintln!("{what}: {} ({:?} ms)", e.message, e.retry_after_ms);
            assert_eq!(e.code, ErrorCode::Unavailable, "{what}: {}", e.message);
            assert!(
                e.retry_after_ms.is_some_and(|ms| ms > 0),
                "{what}: unavailable carries retry_after_ms: {e:?}"
            );
            assert!(!e.close, "{what}: the connection stays open");
        }
        other => panic!("{what}: expected unavailable, got {other:?}"),
    }
}

async fn send(c: &Connection, room: &RoomId, body: &str, lid: &str) -> Result<u64, ConnError> {
    tokio::time::timeout(CALL, c.send(room, body, Some(lid)))
        .await
        .unwrap_or_else(|_| panic!("send {body}: no answer within {CALL:?}"))
        .map(|s| s.seq)
}

type Scrape = std::collections::HashMap<String, f64>;

/// `GET /metrics` as `name{labels} -> value` (as tests/ops.rs reads it).
async fn scrape(server: &TestServer) -> Scrape {
    let text = reqwest::get(format!("http://{}/metrics", server.http))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse::<f64>().ok()?))
        })
        .collect()
}

/// How much `key` grew between two scrapes (it must be in both).
fn grew(before: &Scrape, after: &Scrape, key: &str) -> f64 {
    let v = |m: &Scrape| {
        *m.get(key)
            .unwrap_or_else(|| panic!("{key} missing from /metrics"))
    };
    v(after) - v(before)
}

/// A fault on the commit point, and what a retry after it clears must yield.
struct Case {
    name: &'static str,
    reaction: RequestReaction,
    /// The first attempt's outcome is unknown to the server (it may have
    /// landed): the retry re-applies the same seq. Otherwise nothing was
    /// written and the first seq is burnt.
    unknown: bool,
}

#[tokio::test]
async fn failed_commit_points_are_never_acknowledged_and_retries_do_not_duplicate() {
    let Some(mut cql) = FaultyCql::start().await else {
        return;
    };
    // Dropped at the end, also when the test fails.
    let guard = common::cql::KeyspaceGuard::fresh(&cql.real.to_string(), "faults_w");
    let keyspace = guard.name().to_string();
    let mut server = start_server(&cql, &keyspace).await;
    let id = cql.commit_point_id(&keyspace).await;

    let alice = client_on(&server, Transport::Tcp, "alice").await;
    let mut bob = client_on(&server, Transport::Tcp, "bob").await;
    let room = alice.create_room("faults", false).await.expect("create");
    alice.join(&room).await.expect("alice joins");
    bob.join(&room).await.expect("bob joins");
    // Metrics are process-wide (both tests of this file add to them): every
    // check below is a lower bound on a difference.
    let m0 = scrape(&server).await;
    let mut last = send(&alice, &room, "before", "lid-before")
        .await
        .expect("a send through the proxy without rules");
    let mut expected = vec![(last, "before".to_string())];
    let mut unknown_seqs = Vec::new();

    let forge = RequestReaction::forge;
    let cases = [
        Case {
            name: "write_timeout",
            reaction: forge().write_timeout(),
            unknown: true,
        },
        Case {
            name: "unavailable",
            reaction: forge().unavailable(),
            unknown: false,
        },
        Case {
            name: "overloaded",
            reaction: forge().overloaded(),
            unknown: false,
        },
        Case {
            // Forwarded to the node after the store's deadline: the server gives
            // up (outcome unknown) and the write lands later.
            name: "delayed_past_the_deadline",
            reaction: RequestReaction::delay(Duration::from_millis(STORE_TIMEOUT_MS + 2_000)),
            unknown: true,
        },
    ];
    // When the late write of the delayed case reaches the node, at the latest.
    let mut late_write_lands = tokio::time::Instant::now();
    for case in cases {
        if let Some(d) = case.reaction.to_addressee.as_ref().and_then(|a| a.delay) {
            late_write_lands = tokio::time::Instant::now() + d;
        }
        let (tx, mut hits): (_, Hits) = mpsc::unbounded_channel();
        cql.set(vec![RequestRule(
            commit_point(&id),
            case.reaction.with_feedback_when_performed(tx),
        )]);
        let body = format!("body-{}", case.name);
        let lid = format!("lid-{}", case.name);
        assert_unavailable(
            send(&alice, &room, &body, &lid).await,
            &format!("send under {}", case.name),
        );
        assert!(
            hits.try_recv().is_ok(),
            "{}: the proxy saw and faulted the commit point",
            case.name
        );
        cql.clear();
        let seq = send(&alice, &room, &body, &lid)
            .await
            .unwrap_or_else(|e| panic!("{}: retry after the fault cleared: {e}", case.name));
        let want = if case.unknown { last + 1 } else { last + 2 };
        assert_eq!(
            seq, want,
            "{}: the retry's seq (same seq when the outcome was unknown, one burnt seq otherwise)",
            case.name
        );
        // A second retry is answered from the dedupe window: still that seq.
        assert_eq!(send(&alice, &room, &body, &lid).await.ok(), Some(seq));
        if case.unknown {
            unknown_seqs.push(seq);
        }
        expected.push((seq, body));
        last = seq;
    }

    // A delay below the deadline: slow, acknowledged once.
    cql.set(vec![RequestRule(
        commit_point(&id),
        RequestReaction::delay(Duration::from_millis(500)),
    )]);
    let seq = send(&alice, &room, "slow", "lid-slow")
        .await
        .expect("a slow commit point within the deadline is acknowledged");
    assert_eq!(seq, last + 1);
    expected.push((seq, "slow".to_string()));
    cql.clear();
    let end = send(&alice, &room, "end", "lid-end").await.expect("end");
    expected.push((end, "end".to_string()));

    // Bob saw acknowledged messages only, each once, in seq order, the
    // retried sends of unknown outcome too: the room's live stream held at
    // their seqs until the retry committed them (docs/STORAGE.md).
    let mut pushed = Vec::new();
    loop {
        let m = next_msg(&mut bob).await;
        let done = m.body == "end";
        pushed.push((m.seq, m.body));
        if done {
            break;
        }
    }
    assert_eq!(pushed, expected, "live pushes");
    assert!(!unknown_seqs.is_empty());

    // History holds each exactly once; the only gaps are the burnt seqs. Read it
    // after the delayed write has been forwarded (plus a margin), so a late
    // landing would show as a second copy.
    tokio::time::sleep_until(late_write_lands + Duration::from_secs(1)).await;
    let page = tokio::time::timeout(CALL, alice.history(&room, None, Some(100)))
        .await
        .expect("history answers")
        .expect("history");
    let stored: Vec<(u64, String)> = page
        .messages
        .iter()
        .map(|m| (m.seq, m.body.clone()))
        .collect();
    assert_eq!(stored, expected, "history after the faults");

    // The store's counters on /metrics moved with the traffic and the faults.
    let m1 = scrape(&server).await;
    let sends = expected.len() as f64;
    assert!(grew(&m0, &m1, "roomcast_scylla_commits_total") >= sends);
    assert!(grew(&m0, &m1, "roomcast_scylla_commit_seconds_total") > 0.0);
    // Per send at least the message's event partition (event + message row, one
    // batch) and its local_id row.
    assert!(grew(&m0, &m1, "roomcast_scylla_statements_total") >= 3.0 * sends);
    assert!(grew(&m0, &m1, "roomcast_scylla_partition_batches_total") >= sends);
    assert!(grew(&m0, &m1, "roomcast_scylla_retries_total") >= 3.0);
    for (kind, at_least) in [("timeout", 1.0), ("unavailable", 2.0)] {
        let key = format!(r#"roomcast_scylla_errors_total{{kind="{kind}"}}"#);
        assert!(grew(&m0, &m1, &key) >= at_least, "{key}");
    }
    grew(&m0, &m1, r#"roomcast_scylla_errors_total{kind="other"}"#);
    grew(&m0, &m1, "roomcast_scylla_history_coalesced_total");
    // write_timeout, unavailable, overloaded, past the deadline: 4 failed batches.
    assert!(grew(&m0, &m1, "roomcast_store_commit_failures_total") >= 4.0);
    assert!(grew(&m0, &m1, r#"roomcast_errors_total{code="unavailable"}"#) >= 4.0);

    server.stop().await;
    cql.finish().await;
}

#[tokio::test]
async fn reads_with_injected_errors_answer_unavailable() {
    let Some(mut cql) = FaultyCql::start().await else {
        return;
    };
    // Dropped at the end, also when the test fails.
    let guard = common::cql::KeyspaceGuard::fresh(&cql.real.to_string(), "faults_r");
    let keyspace = guard.name().to_string();
    let mut server = start_server(&cql, &keyspace).await;
    let alice = client_on(&server, Transport::Tcp, "alice").await;
    let room = alice.create_room("reads", false).await.expect("create");
    alice.join(&room).await.expect("join");
    let seq = send(&alice, &room, "kept", "lid-kept").await.expect("send");
    let m0 = scrape(&server).await;

    let forge = RequestReaction::forge;
    for (name, reaction) in [
        ("read_timeout", forge().read_timeout()),
        ("unavailable", forge().unavailable()),
        ("overloaded", forge().overloaded()),
    ] {
        let (tx, mut hits): (_, Hits) = mpsc::unbounded_channel();
        cql.set(vec![RequestRule(
            any_prepared(),
            reaction.with_feedback_when_performed(tx),
        )]);
        let r = tokio::time::timeout(CALL, alice.history(&room, None, Some(50)))
            .await
            .unwrap_or_else(|_| panic!("history under {name}: no answer within {CALL:?}"));
        assert_unavailable(r, &format!("history under {name}"));
        assert!(
            hits.try_recv().is_ok(),
            "{name}: the proxy faulted the read"
        );
        cql.clear();
        let page = tokio::time::timeout(CALL, alice.history(&room, None, Some(50)))
            .await
            .expect("history answers")
            .unwrap_or_else(|e| panic!("history after {name} cleared: {e}"));
        let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![seq], "after {name}");
    }
    // Read timeouts, unavailable and overloaded all count as unavailable.
    let m1 = scrape(&server).await;
    let key = r#"roomcast_scylla_errors_total{kind="unavailable"}"#;
    assert!(grew(&m0, &m1, key) >= 3.0, "{key}");
    assert!(grew(&m0, &m1, "roomcast_scylla_retries_total") >= 3.0);

    server.stop().await;
    cql.finish().await;
}
