//! The CQL node for the ScyllaDB store's tests: `ROOMCAST_SCYLLA_NODES` (a real
//! ScyllaDB cluster), else `ROOMCAST_CQL_NODE`, else the node that
//! `scripts/cql-node.sh start` is running. Without one the caller is told to
//! skip, unless ROOMCAST_REQUIRE_CQL=1 (CI), where a missing node fails the test.

use roomcast::config::{Config, CqlConsistency, StoreKind};
use roomcast::store::scylla::{ScyllaConfig, ScyllaStore};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The contact points of the CQL database to test against, if any.
pub fn nodes() -> Option<String> {
    for var in ["ROOMCAST_SCYLLA_NODES", "ROOMCAST_CQL_NODE"] {
        if let Ok(v) = std::env::var(var) {
            if !v.trim().is_empty() {
                return Some(v.trim().to_string());
            }
        }
    }
    let dir = std::env::var("ROOMCAST_CQL_DIR").unwrap_or_else(|_| {
        format!(
            "{}/roomcast-cql-node",
            std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".into())
        )
    });
    std::fs::read_to_string(format!("{dir}/addr"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The nodes, or None after printing SKIP (a failure under ROOMCAST_REQUIRE_CQL=1).
pub fn require() -> Option<String> {
    match nodes() {
        Some(n) => Some(n),
        None => {
            if std::env::var("ROOMCAST_REQUIRE_CQL").is_ok_and(|v| v == "1") {
                panic!("ROOMCAST_REQUIRE_CQL=1 but no CQL node: run scripts/cql-node.sh start or set ROOMCAST_CQL_NODE");
            }
            eprintln!("SKIP: no CQL node (scripts/cql-node.sh start, or ROOMCAST_CQL_NODE / ROOMCAST_SCYLLA_NODES)");
            None
        }
    }
}

/// A keyspace of its own for each test, so tests never see each other's rows.
pub fn fresh_keyspace(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "rc_{tag}_{}_{}_{}",
        std::process::id(),
        nanos % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A keyspace named after a data dir (FNV-1a of its path), for servers restarted on it.
pub fn keyspace_for(dir: &std::path::Path) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dir.to_string_lossy().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("rc_srv_{h:016x}")
}

pub fn store_config(nodes: &str, keyspace: &str) -> ScyllaConfig {
    ScyllaConfig {
        nodes: nodes.split(',').map(str::to_string).collect(),
        keyspace: keyspace.to_string(),
        replication: "simple:1".into(),
        consistency: CqlConsistency::LocalQuorum,
        username: None,
        password: None,
        tls_ca: None,
        request_timeout: Duration::from_secs(10),
        max_inflight: 256,
    }
}

pub async fn store(nodes: &str, tag: &str) -> ScyllaStore {
    ScyllaStore::connect(&store_config(nodes, &fresh_keyspace(tag)))
        .await
        .expect("connect to the CQL node")
}

/// Points a test server's config at the CQL node, in a fresh keyspace.
pub fn use_scylla(c: &mut Config, nodes: &str, keyspace: &str) {
    c.store = StoreKind::Scylla;
    c.scylla_nodes = nodes.to_string();
    c.scylla_keyspace = keyspace.to_string();
    c.scylla_replication = "simple:1".into();
    c.store_timeout_ms = 10_000;
}
