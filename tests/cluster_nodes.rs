//! Node membership against a real `redis-server` (src/cluster/): leases
//! registered, renewed and dropped; a node that leaves gracefully disappears
//! at once, a node killed with SIGKILL after its lease; a duplicate node id
//! is superseded by the newer process; `/ready` is true only while the lease
//! is held (Redis down: false; back: true); `/api/info` lists the live nodes
//! and `/metrics` counts renewals. Without redis-server: SKIP (a failure
//! under ROOMCAST_REQUIRE_REDIS=1). No timing is asserted: every wait is a
//! poll with a generous deadline.

mod common;

use common::process::ServerProcess;
use common::redis::RedisServer;
use roomcast::cluster::registry::{RegistryError, LIVE_KEY};
use roomcast::cluster::{NodeId, NodeInfo, NodeSettings, Registry};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const API_KEY: &str = "cluster-test-api-key-0123456789";

fn info(id: &str, incarnation: u64) -> NodeInfo {
    NodeInfo {
        id: NodeId::new(id).unwrap(),
        incarnation,
        tcp: format!("127.0.0.1:{incarnation}"),
        http: "127.0.0.1:2".into(),
        quic: "127.0.0.1:3".into(),
        version: "test".into(),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Polls `f` until it holds, failing after `limit` with `what`.
async fn eventually(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        tokio::time::sleep(ms(50)).await;
    }
}

fn ids(r: &Registry) -> Vec<String> {
    r.live().ids().map(|i| i.to_string()).collect()
}

#[tokio::test]
async fn leases_are_registered_renewed_and_dropped() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let conn = roomcast::redis::connect(&redis.target(), None)
        .await
        .unwrap();
    let s = NodeSettings {
        lease: ms(900),
        renew: ms(200),
    };
    let a = Registry::join(conn.clone(), info("a", 10), s)
        .await
        .unwrap();
    let b = Registry::join(conn.clone(), info("b", 10), s)
        .await
        .unwrap();
    assert!(a.holds_lease() && b.holds_lease());
    // b saw a at once (its first renewal listed it); a sees b at its next renewal.
    assert_eq!(ids(&b), ["a", "b"]);
    eventually("a sees b", ms(5000), async || ids(&a) == ["a", "b"]).await;
    // The watch channel carries the same set.
    assert_eq!(a.watch().borrow().nodes.len(), 2);
    // The addresses travel with the lease.
    assert!(a
        .live()
        .nodes
        .iter()
        .any(|n| n.id.as_str() == "b" && n.tcp == "127.0.0.1:10"));

    // A graceful leave removes the registration at once...
    b.leave().await;
    assert!(!b.holds_lease());
    let mut raw = conn.clone();
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(LIVE_KEY)
        .arg("b")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(score, None, "b is still registered after leaving");
    eventually("a sees b leave", ms(5000), async || ids(&a) == ["a"]).await;

    // An older incarnation of a live id is refused at startup; a newer one
    // takes the id over and the old process stops claiming its lease.
    match Registry::join(conn.clone(), info("a", 9), s).await {
        Err(RegistryError::Superseded { incarnation, .. }) => assert_eq!(incarnation, 10),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("an older incarnation joined"),
    }
    let a2 = Registry::join(conn.clone(), info("a", 11), s)
        .await
        .unwrap();
    eventually("the old a sees it was superseded", ms(5000), async || {
        !a.holds_lease()
    })
    .await;
    assert!(a2.holds_lease());
    assert_eq!(ids(&a2), ["a"]);
    let renewals = || async {
        let mut raw = conn.clone();
        let info: Option<String> = redis::cmd("HGET")
            .arg(roomcast::cluster::registry::INFO_KEY)
            .arg("a")
            .query_async(&mut raw)
            .await
            .unwrap();
        info.unwrap_or_default()
    };
    assert!(
        renewals().await.starts_with("11 "),
        "the newer incarnation is registered"
    );

    // Redis gone: the lease runs out. Redis back (empty): registered again.
    redis.kill();
    eventually("the lease runs out without Redis", ms(10_000), async || {
        !a2.holds_lease()
    })
    .await;
    assert!(a2.live().nodes.is_empty());
    redis.restart();
    eventually("the lease is held again", ms(15_000), async || {
        a2.holds_lease()
    })
    .await;
    eventually("a registered again", ms(5000), async || ids(&a2) == ["a"]).await;

    a2.leave().await;
    // The superseded process stopped renewing: once the newer one left, the
    // old incarnation does not come back (it would, renewing every 200 ms).
    tokio::time::sleep(ms(800)).await;
    assert_eq!(
        renewals().await,
        "",
        "the superseded incarnation registered again"
    );
    assert!(!a.holds_lease());
}

/// A node: the server process and its data directory (node-local store).
struct Node {
    process: ServerProcess,
    http: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Node {
    fn spawn(redis: &str, id: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let process = ServerProcess::spawn(
            &[
                "--fsync",
                "never",
                "--redis",
                redis,
                "--unsafe-node-local-store",
                "--node-id",
                id,
                "--node-lease-ms",
                "1500",
                "--node-renew-ms",
                "300",
                "--api-keys",
                API_KEY,
            ],
            dir.path(),
        );
        Node {
            http: process.http,
            process,
            _dir: dir,
        }
    }

    fn kill9(&mut self) {
        self.process.kill9();
    }

    /// SIGTERM, then waits for the process to exit.
    fn terminate(&mut self) {
        self.process.terminate();
    }

    async fn get(&self, path: &str) -> (u16, serde_json::Value, String) {
        let r = reqwest::Client::new()
            .get(format!("http://{}{path}", self.http))
            .header("x-api-key", API_KEY)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_default(),
            text,
        )
    }

    async fn live(&self) -> Vec<String> {
        let (status, info, _) = self.get("/api/info").await;
        assert_eq!(status, 200, "{info}");
        info["live_nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect()
    }
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_see_each_other_come_and_go() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| Node::spawn(&redis.url(), &format!("node-{i}")))
        .collect();
    let all = ["node-0", "node-1", "node-2"];
    for n in &nodes {
        eventually("every node lists all three", ms(15_000), async || {
            n.live().await == all
        })
        .await;
        let (status, ready, _) = n.get("/ready").await;
        assert_eq!(status, 200, "{ready}");
        assert_eq!(ready["checks"]["node_lease"], "ok", "{ready}");
    }
    let (_, info, _) = nodes[0].get("/api/info").await;
    assert_eq!(info["node_id"], "node-0");
    assert_eq!(info["node_lease_held"], true);
    let n1 = &info["live_nodes"][1];
    assert!(
        n1["http"].as_str().unwrap().parse::<SocketAddr>().is_ok(),
        "{info}"
    );
    let (_, _, metrics) = nodes[0].get("/metrics").await;
    assert!(
        metric(
            &metrics,
            "roomcast_node_lease_renewals_total{outcome=\"ok\"}"
        ) >= 1.0
    );
    assert_eq!(metric(&metrics, "roomcast_node_lease_held"), 1.0);
    assert_eq!(metric(&metrics, "roomcast_cluster_live_nodes"), 3.0);

    // SIGKILL: the node leaves the live set when its lease runs out.
    // (Times are printed, never asserted: docs/MULTINODE.md quotes them.)
    let killed = Instant::now();
    nodes[2].kill9();
    for n in &nodes[..2] {
        eventually("the killed node's lease runs out", ms(15_000), async || {
            n.live().await == ["node-0", "node-1"]
        })
        .await;
    }
    eprintln!(
        "SIGKILL: both peers dropped the node {:?} after the kill (lease 1500 ms, renew 300 ms)",
        killed.elapsed()
    );

    // SIGTERM: the node deregisters before it exits.
    let stopped = Instant::now();
    nodes[1].terminate();
    let exited = stopped.elapsed();
    let conn = roomcast::redis::connect(&redis.target(), None)
        .await
        .unwrap();
    let mut raw = conn.clone();
    let left: Vec<String> = redis::cmd("ZRANGE")
        .arg(LIVE_KEY)
        .arg(0)
        .arg(-1)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(left, ["node-0"], "node-1 deregistered at shutdown");
    eventually("node-0 sees node-1 leave", ms(15_000), async || {
        nodes[0].live().await == ["node-0"]
    })
    .await;
    eprintln!(
        "SIGTERM: the node exited after {exited:?}; its peer saw it leave {:?} after the signal",
        stopped.elapsed()
    );

    // Redis down: the lease runs out and the node is not ready; Redis back:
    // registered again, ready again.
    let redis_gone = Instant::now();
    redis.kill();
    eventually("not ready without its lease", ms(20_000), async || {
        let (status, ready, _) = nodes[0].get("/ready").await;
        status == 503
            && ready["checks"]["node_lease"]
                .as_str()
                .is_some_and(|l| l.starts_with("lost"))
    })
    .await;
    eprintln!("Redis killed: /ready 503 after {:?}", redis_gone.elapsed());
    let (_, _, metrics) = nodes[0].get("/metrics").await;
    assert!(
        metric(
            &metrics,
            "roomcast_node_lease_renewals_total{outcome=\"failed\"}"
        ) >= 1.0
    );
    assert_eq!(metric(&metrics, "roomcast_node_lease_held"), 0.0);
    let redis_back = Instant::now();
    redis.restart();
    eventually("ready again once Redis is back", ms(30_000), async || {
        nodes[0].get("/ready").await.0 == 200
    })
    .await;
    eprintln!(
        "Redis restarted: /ready 200 after {:?}",
        redis_back.elapsed()
    );
    eventually("registered again", ms(15_000), async || {
        nodes[0].live().await == ["node-0"]
    })
    .await;
}
