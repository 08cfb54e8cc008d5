//! The Redis driver of [`Membership`]: registers this node with a lease,
//! renews it every `--node-renew-ms` (sooner while renewals fail), learns
//! the live set from each renewal's reply, and deregisters at graceful
//! shutdown. All the deciding is in [`Membership`]; this file only moves
//! replies and time into it.
//!
//! Keys (one hash tag, so one slot on a Redis Cluster; `lua/node_lease.lua`):
//! `rc:{nodes}:live` (sorted set, node id → lease expiry in Redis's clock)
//! and `rc:{nodes}:info` (hash, node id → incarnation and [`NodeInfo`] JSON).

use super::membership::{Lease, LiveSet, Membership, Renewal};
use super::node::{NodeInfo, NodeSettings};
use crate::metrics::{inc, METRICS};
use crate::redis::{Conn, RedisError};
use redis::Script;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const LIVE_KEY: &str = "rc:{nodes}:live";
pub const INFO_KEY: &str = "rc:{nodes}:info";

/// Longest a single renewal may take before it counts as failed.
const RENEW_CALL_LIMIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The first registration failed: Redis unreachable or erroring (`--redis`).
    #[error("node {node}: lease in Redis: {source}")]
    Redis {
        node: String,
        #[source]
        source: RedisError,
    },
    /// Another live process registered the same `--node-id` with a later start.
    #[error("node id {node} is already registered by a newer process (incarnation {incarnation}); give each node its own --node-id")]
    Superseded { node: String, incarnation: u64 },
    /// A reply that `node_lease.lua` never produces (a different script under the same keys).
    #[error("unexpected reply from the node lease script: {0}")]
    Reply(String),
}

/// This node's registration and its view of the live set.
pub struct Registry {
    conn: Conn,
    script: Script,
    state: Mutex<Membership>,
    live_tx: watch::Sender<LiveSet>,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Whether the lease was held at the previous renewal outcome (for logs).
    was_held: AtomicBool,
}

impl Registry {
    /// Registers this node (the first renewal must succeed, so a wrong Redis
    /// URL or a duplicate node id fails at startup) and starts renewing.
    pub async fn join(
        conn: Conn,
        me: NodeInfo,
        settings: NodeSettings,
    ) -> Result<Arc<Registry>, RegistryError> {
        let (live_tx, _) = watch::channel(LiveSet::default());
        let node = me.id.to_string();
        let reg = Arc::new(Registry {
            conn,
            script: Script::new(include_str!("../redis/lua/node_lease.lua")),
            state: Mutex::new(Membership::new(me, settings)),
            live_tx,
            stop: CancellationToken::new(),
            task: Mutex::new(None),
            was_held: AtomicBool::new(false),
        });
        let sent = Instant::now();
        match reg.renew_once().await {
            Ok(Renewal::Superseded { incarnation }) => {
                return Err(RegistryError::Superseded { node, incarnation });
            }
            Ok(r) => reg.apply(sent, Ok(r)),
            Err(RegistryError::Redis { source, .. }) => {
                return Err(RegistryError::Redis { node, source });
            }
            Err(e) => return Err(e),
        }
        let task = tokio::spawn(reg.clone().renew_loop(sent));
        *lock(&reg.task) = Some(task);
        Ok(reg)
    }

    pub fn me(&self) -> NodeInfo {
        lock(&self.state).me().clone()
    }

    pub fn settings(&self) -> NodeSettings {
        lock(&self.state).settings()
    }

    /// Whether this node holds its lease now (`/ready`).
    pub fn holds_lease(&self) -> bool {
        lock(&self.state).holds_lease(Instant::now())
    }

    /// How long this node's lease still runs.
    pub fn lease_left(&self) -> Duration {
        lock(&self.state).lease_left(Instant::now())
    }

    /// The live set now.
    pub fn live(&self) -> LiveSet {
        lock(&self.state).live(Instant::now())
    }

    /// The live set, updated after every renewal.
    pub fn watch(&self) -> watch::Receiver<LiveSet> {
        self.live_tx.subscribe()
    }

    /// Graceful shutdown: stops renewing and removes this node's registration,
    /// so the others see it leave at once instead of after its lease.
    pub async fn leave(&self) {
        self.stop.cancel();
        let task = lock(&self.task).take();
        if let Some(t) = task {
            let _ = t.await;
        }
        let me = self.me();
        let mut conn = self.conn.clone();
        let mut inv = self.script.key(LIVE_KEY);
        inv.key(INFO_KEY)
            .arg("leave")
            .arg(me.id.as_str())
            .arg(me.incarnation);
        let call = inv.invoke_async::<Vec<String>>(&mut conn);
        match tokio::time::timeout(RENEW_CALL_LIMIT, call).await {
            Ok(Ok(_)) => tracing::info!(node = %me.id, "left the cluster"),
            Ok(Err(e)) => tracing::warn!(node = %me.id, error = %e, "leaving the cluster"),
            Err(_) => tracing::warn!(node = %me.id, "leaving the cluster: Redis did not answer"),
        }
        // Whatever Redis did, this node no longer claims to be alive.
        let mut st = lock(&self.state);
        st.on_renewal(Instant::now(), Renewal::Superseded { incarnation: 0 });
        METRICS.node_lease_held.store(0, Ordering::Relaxed);
    }

    async fn renew_loop(self: Arc<Self>, mut last_sent: Instant) {
        loop {
            let next = lock(&self.state).next_renewal(last_sent);
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep_until(next.into()) => {}
            }
            last_sent = Instant::now();
            let r = self.renew_once().await;
            if self.stop.is_cancelled() {
                return;
            }
            self.apply(last_sent, r);
            if lock(&self.state).is_superseded() {
                // Final: a newer process owns this id now. Renewing on would
                // re-register the old incarnation after a Redis data loss.
                return;
            }
        }
    }

    fn apply(&self, sent: Instant, r: Result<Renewal, RegistryError>) {
        let now = Instant::now();
        let mut st = lock(&self.state);
        match r {
            Ok(renewal) => {
                if let Renewal::Superseded { incarnation } = renewal {
                    tracing::error!(node = %st.me().id, incarnation,
                        "a newer process registered this node id: this node no longer holds its lease");
                }
                inc(&METRICS.node_lease_renewals);
                st.on_renewal(sent, renewal);
            }
            Err(e) => {
                inc(&METRICS.node_lease_failures);
                st.on_renewal_failed();
                tracing::warn!(node = %st.me().id, error = %e,
                    failures = st.consecutive_failures(),
                    lease_left_ms = st.lease_left(now).as_millis() as u64,
                    "node lease renewal failed");
            }
        }
        let held = st.holds_lease(now);
        let held_before = self.was_held.swap(held, Ordering::Relaxed);
        if held_before && !held {
            tracing::error!(node = %st.me().id, "node lease lost: not ready until renewed");
        } else if !held_before && held {
            tracing::info!(node = %st.me().id, lease_ms = st.settings().lease.as_millis() as u64, "node lease held");
        }
        let changes = st.changes(now);
        if !changes.is_empty() {
            tracing::info!(joined = ?changes.joined, left = ?changes.left, "cluster live set changed");
        }
        let live = st.live(now);
        METRICS
            .node_lease_held
            .store(held as i64, Ordering::Relaxed);
        METRICS
            .cluster_live_nodes
            .store(live.nodes.len() as i64, Ordering::Relaxed);
        drop(st);
        self.live_tx.send_replace(live);
    }

    async fn renew_once(&self) -> Result<Renewal, RegistryError> {
        let (me, lease) = {
            let st = lock(&self.state);
            (st.me().clone(), st.settings().lease)
        };
        let info = serde_json::to_string(&me).map_err(|e| RegistryError::Reply(e.to_string()))?;
        let mut conn = self.conn.clone();
        let mut inv = self.script.key(LIVE_KEY);
        inv.key(INFO_KEY)
            .arg("renew")
            .arg(me.id.as_str())
            .arg(me.incarnation)
            .arg(info)
            .arg(lease.as_millis() as u64);
        let call = inv.invoke_async::<Vec<String>>(&mut conn);
        let redis_err = |source| RegistryError::Redis {
            node: me.id.to_string(),
            source,
        };
        let reply = match tokio::time::timeout(RENEW_CALL_LIMIT, call).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(redis_err(RedisError::Redis(e))),
            Err(_) => return Err(redis_err(RedisError::Timeout(RENEW_CALL_LIMIT))),
        };
        parse_reply(&reply)
    }
}

/// Parses `node_lease.lua`'s renew reply.
fn parse_reply(reply: &[String]) -> Result<Renewal, RegistryError> {
    match reply.first().map(String::as_str) {
        Some("superseded") => {
            let incarnation = reply
                .get(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| RegistryError::Reply(format!("{reply:?}")))?;
            Ok(Renewal::Superseded { incarnation })
        }
        Some("ok") if (reply.len() - 1) % 3 == 0 => {
            let mut leases = Vec::with_capacity((reply.len() - 1) / 3);
            for t in reply[1..].chunks_exact(3) {
                let Ok(ms) = t[1].parse::<u64>() else {
                    return Err(RegistryError::Reply(format!("lease {:?}", t[1])));
                };
                // "<incarnation> <json>": the JSON carries the incarnation too.
                let json = t[2].split_once(' ').map_or("", |(_, j)| j);
                match serde_json::from_str::<NodeInfo>(json) {
                    Ok(info) => leases.push(Lease {
                        info,
                        remaining: Duration::from_millis(ms),
                    }),
                    // A node of another version with fields this one cannot read:
                    // it is alive, but this node cannot place rooms on it.
                    Err(e) => tracing::warn!(node = %t[0], error = %e, "unreadable node info"),
                }
            }
            Ok(Renewal::Renewed(leases))
        }
        _ => Err(RegistryError::Reply(format!("{reply:?}"))),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn replies_parse() {
        let info = r#"{"id":"a","incarnation":5,"tcp":"t","http":"h","quic":"q","version":"v"}"#;
        let r = parse_reply(&s(&["ok", "a", "900", &format!("5 {info}")])).unwrap();
        let Renewal::Renewed(l) = r else {
            panic!("{r:?}")
        };
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].info.incarnation, 5);
        assert_eq!(l[0].remaining, Duration::from_millis(900));
        // Unreadable info is skipped, not an error.
        let r = parse_reply(&s(&["ok", "b", "900", "5 {"])).unwrap();
        assert_eq!(r, Renewal::Renewed(vec![]));
        assert_eq!(
            parse_reply(&s(&["superseded", "9"])).unwrap(),
            Renewal::Superseded { incarnation: 9 }
        );
        assert!(parse_reply(&s(&["ok", "a"])).is_err());
        assert!(parse_reply(&s(&["ok", "a", "x", "1 {}"])).is_err());
        assert!(parse_reply(&s(&[])).is_err());
    }
}
