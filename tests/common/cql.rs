//! The CQL node for the ScyllaDB store's tests: `ROOMCAST_SCYLLA_NODES` (a real
//! ScyllaDB cluster), else `ROOMCAST_CQL_NODE`, else the node that
//! `scripts/cql-node.sh start` is running. Without one the caller is told to
//! skip, unless ROOMCAST_REQUIRE_CQL=1 (CI), where a missing node fails the test.

use roomcast::config::{Config, CqlConsistency, StoreKind};
use roomcast::store::scylla::{ScyllaConfig, ScyllaStore};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
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

/// A store in a fresh keyspace, with the guard that drops the keyspace.
pub async fn store(nodes: &str, tag: &str) -> (ScyllaStore, KeyspaceGuard) {
    let ks = KeyspaceGuard::fresh(nodes, tag);
    let store = ScyllaStore::connect(&store_config(nodes, ks.name()))
        .await
        .expect("connect to the CQL node");
    (store, ks)
}

/// Guards alive per keyspace name: a server restarted on the same data dir
/// takes a second guard of the same keyspace before the first one goes.
static GUARDED: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

/// Drops a test's keyspace on the CQL node when the last guard of that name
/// is dropped, also when the test panics. A CQL node keeps every table's
/// memtables and metadata on its heap, so a long CI run that leaves
/// keyspaces behind slows the node down and finally runs it out of heap.
/// Every test that creates a keyspace holds one of these.
pub struct KeyspaceGuard {
    nodes: String,
    name: String,
}

impl KeyspaceGuard {
    /// A guard of keyspace `name` on `nodes` (the keyspace may not exist yet).
    pub fn new(nodes: &str, name: &str) -> KeyspaceGuard {
        let mut g = GUARDED.lock().unwrap_or_else(|e| e.into_inner());
        *g.get_or_insert_with(HashMap::new)
            .entry(name.to_string())
            .or_default() += 1;
        KeyspaceGuard {
            nodes: nodes.to_string(),
            name: name.to_string(),
        }
    }

    /// A guard of a fresh keyspace name ([`fresh_keyspace`]).
    pub fn fresh(nodes: &str, tag: &str) -> KeyspaceGuard {
        Self::new(nodes, &fresh_keyspace(tag))
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for KeyspaceGuard {
    fn drop(&mut self) {
        let last = {
            let mut g = GUARDED.lock().unwrap_or_else(|e| e.into_inner());
            let map = g.get_or_insert_with(HashMap::new);
            match map.get_mut(&self.name) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                _ => {
                    map.remove(&self.name);
                    true
                }
            }
        };
        if last {
            drop_keyspace(&self.nodes, &self.name);
        }
    }
}

/// `DROP KEYSPACE IF EXISTS`, on a thread of its own with its own runtime:
/// `Drop` cannot await, and the test's runtime may be single-threaded.
pub fn drop_keyspace(nodes: &str, keyspace: &str) {
    let (nodes, keyspace) = (nodes.to_string(), keyspace.to_string());
    let run = move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return eprintln!("dropping keyspace {keyspace}: no runtime: {e}"),
        };
        rt.block_on(async {
            let session = scylla::client::session_builder::SessionBuilder::new()
                .known_nodes(nodes.split(',').map(str::trim))
                .build()
                .await;
            let session = match session {
                Ok(s) => s,
                Err(e) => return eprintln!("dropping keyspace {keyspace}: {e}"),
            };
            let q = format!("DROP KEYSPACE IF EXISTS {keyspace}");
            match tokio::time::timeout(Duration::from_secs(60), session.query_unpaged(q, ())).await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => eprintln!("dropping keyspace {keyspace}: {e}"),
                Err(_) => eprintln!("dropping keyspace {keyspace}: no answer within 60 s"),
            }
        });
    };
    if let Err(e) = std::thread::Builder::new()
        .name("drop-keyspace".into())
        .spawn(run)
        .map(|t| t.join())
    {
        eprintln!("dropping keyspace: {e}");
    }
}

/// Points a test server's config at the CQL node, in a fresh keyspace.
pub fn use_scylla(c: &mut Config, nodes: &str, keyspace: &str) {
    c.store = StoreKind::Scylla;
    c.scylla_nodes = nodes.to_string();
    c.scylla_keyspace = keyspace.to_string();
    c.scylla_replication = "simple:1".into();
    c.store_timeout_ms = 10_000;
}
