//! Process-wide metrics, exported at `GET /metrics` in the Prometheus text
//! format (docs/OPERATIONS.md lists each one).
//!
//! The hot paths only add to relaxed atomics in the [`METRICS`] static: no
//! registry lookups, no labels resolved per event, no samples buffered.
//! Counts bumped on every fan-out or socket write are [`Striped`] (one cache
//! line per thread); the rest change once per connection, per store batch or
//! per refusal. A scrape reads them all and encodes them with
//! `prometheus-client` (a [`Collector`] called at scrape time). One process
//! is one node: tests that run several servers in one process see their sum.

pub mod cells;

use crate::proto::ErrorCode;
use crate::ratelimit::Action;
use crate::store::scylla::StoreMetrics;
use cells::{Histogram, Striped};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The transport of a connection, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
    Quic,
    Ws,
}

impl Transport {
    pub const ALL: [Transport; 4] = [
        Transport::Tcp,
        Transport::Tls,
        Transport::Quic,
        Transport::Ws,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Quic => "quic",
            Transport::Ws => "ws",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Connect => "connect",
        Action::Send => "send",
        Action::Join => "join",
        Action::CreateRoom => "create_room",
        Action::History => "history",
        Action::Typing => "typing",
        Action::Other => "other",
    }
}

const CODES: usize = ErrorCode::ALL.len();

/// Store commit latency bounds, in ns (50 µs to 2.5 s).
const COMMIT_NS: [u64; 12] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    100_000_000,
    500_000_000,
    2_500_000_000,
];
/// Redis round-trip bounds, in ns (100 µs to 2.5 s).
const REDIS_NS: [u64; 10] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    50_000_000,
    250_000_000,
    2_500_000_000,
];
/// Mutations per store batch.
const BATCH: [u64; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 512, 2048];
/// Password hashing and verification time, in ns (1 ms to 1 s).
const HASH_NS: [u64; 8] = [
    1_000_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];

pub struct Metrics {
    pub connections: [AtomicI64; 4],
    pub connections_accepted: [AtomicU64; 4],
    pub sessions: [AtomicI64; 4],
    pub rooms_loaded: AtomicI64,
    pub messages_committed: Striped,
    pub events_committed: Striped,
    pub deliveries: Striped,
    pub fanout_bytes: Striped,
    pub bytes_out: [Striped; 4],
    pub ephemeral_drops: Striped,
    pub slow_consumer_disconnects: AtomicU64,
    pub rate_limited: [AtomicU64; 7],
    pub errors: [AtomicU64; CODES],
    pub store_commit: Histogram<12>,
    pub store_batch: Histogram<10>,
    pub store_commit_failures: AtomicU64,
    pub redis_roundtrip: Histogram<10>,
    pub redis_errors: AtomicU64,
    pub bus_published: AtomicU64,
    pub bus_published_bytes: AtomicU64,
    pub bus_received: AtomicU64,
    pub bus_received_bytes: AtomicU64,
    /// Multi-node: node lease renewals that succeeded / failed (src/cluster/registry.rs).
    pub node_lease_renewals: AtomicU64,
    pub node_lease_failures: AtomicU64,
    /// Multi-node: 1 while this node holds its lease, as of its last renewal attempt.
    pub node_lease_held: AtomicI64,
    /// Multi-node: nodes in the live set, as of the last renewal attempt.
    pub cluster_live_nodes: AtomicI64,
    /// Built-in accounts: outcomes by kind ([`AccountEvent`]).
    pub accounts: [AtomicU64; AccountEvent::ALL.len()],
    pub password_hashing: Histogram<8>,
}

/// What the built-in accounts count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountEvent {
    Registered,
    LoginOk,
    LoginFailed,
    LoginRateLimited,
    Refreshed,
    RefreshRefused,
    PasswordChanged,
    BcryptUpgraded,
}

impl AccountEvent {
    pub const ALL: [AccountEvent; 8] = [
        AccountEvent::Registered,
        AccountEvent::LoginOk,
        AccountEvent::LoginFailed,
        AccountEvent::LoginRateLimited,
        AccountEvent::Refreshed,
        AccountEvent::RefreshRefused,
        AccountEvent::PasswordChanged,
        AccountEvent::BcryptUpgraded,
    ];

    fn as_str(self) -> &'static str {
        match self {
            AccountEvent::Registered => "registered",
            AccountEvent::LoginOk => "login_ok",
            AccountEvent::LoginFailed => "login_failed",
            AccountEvent::LoginRateLimited => "login_rate_limited",
            AccountEvent::Refreshed => "refreshed",
            AccountEvent::RefreshRefused => "refresh_refused",
            AccountEvent::PasswordChanged => "password_changed",
            AccountEvent::BcryptUpgraded => "bcrypt_upgraded",
        }
    }
}

pub static METRICS: Metrics = Metrics {
    connections: [const { AtomicI64::new(0) }; 4],
    connections_accepted: [const { AtomicU64::new(0) }; 4],
    sessions: [const { AtomicI64::new(0) }; 4],
    rooms_loaded: AtomicI64::new(0),
    messages_committed: Striped::new(),
    events_committed: Striped::new(),
    deliveries: Striped::new(),
    fanout_bytes: Striped::new(),
    bytes_out: [const { Striped::new() }; 4],
    ephemeral_drops: Striped::new(),
    slow_consumer_disconnects: AtomicU64::new(0),
    rate_limited: [const { AtomicU64::new(0) }; 7],
    errors: [const { AtomicU64::new(0) }; CODES],
    store_commit: Histogram::new(COMMIT_NS, 1e9),
    store_batch: Histogram::new(BATCH, 1.0),
    store_commit_failures: AtomicU64::new(0),
    redis_roundtrip: Histogram::new(REDIS_NS, 1e9),
    redis_errors: AtomicU64::new(0),
    bus_published: AtomicU64::new(0),
    bus_published_bytes: AtomicU64::new(0),
    bus_received: AtomicU64::new(0),
    bus_received_bytes: AtomicU64::new(0),
    node_lease_renewals: AtomicU64::new(0),
    node_lease_failures: AtomicU64::new(0),
    node_lease_held: AtomicI64::new(0),
    cluster_live_nodes: AtomicI64::new(0),
    accounts: [const { AtomicU64::new(0) }; AccountEvent::ALL.len()],
    password_hashing: Histogram::new(HASH_NS, 1e9),
};

#[inline]
pub(crate) fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Counts a connection open on `transport` for as long as it lives.
pub struct ConnectionGuard(Transport);

impl ConnectionGuard {
    pub fn open(t: Transport) -> Self {
        inc(&METRICS.connections_accepted[t.index()]);
        METRICS.connections[t.index()].fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(t)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        METRICS.connections[self.0.index()].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts an authenticated session (after `welcome`) for as long as it lives.
pub struct SessionGuard(Transport);

impl SessionGuard {
    pub fn open(t: Transport) -> Self {
        METRICS.sessions[t.index()].fetch_add(1, Ordering::Relaxed);
        SessionGuard(t)
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        METRICS.sessions[self.0.index()].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Fan-out pushes to subscribers' outboxes and their bytes, as a room shard
/// reports them (rooms count with plain adds; the shard reports per tick).
pub fn fanned_out(pushes: u64, bytes: u64) {
    if pushes > 0 {
        METRICS.deliveries.add(pushes);
        METRICS.fanout_bytes.add(bytes);
    }
}

/// A store batch of `mutations` finished after `took`.
pub fn store_commit(mutations: usize, took: std::time::Duration, ok: bool) {
    METRICS.store_batch.observe(mutations as u64);
    METRICS.store_commit.observe_duration(took);
    if !ok {
        inc(&METRICS.store_commit_failures);
    }
}

/// A completed store batch made `messages` sends and `events` stream events durable.
#[inline]
pub fn committed(messages: u64, events: u64) {
    if events > 0 {
        METRICS.messages_committed.add(messages);
        METRICS.events_committed.add(events);
    }
}

/// A shard reports its loaded rooms: moves the process-wide gauge from what it
/// reported last (`before`) to `now`, and returns `now`.
pub fn rooms_loaded(before: usize, now: usize) -> usize {
    if before != now {
        METRICS
            .rooms_loaded
            .fetch_add(now as i64 - before as i64, Ordering::Relaxed);
    }
    now
}

/// An error sent to a client (reply or close), by code.
pub fn error_sent(code: ErrorCode) {
    if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
        inc(&METRICS.errors[i]);
    }
}

pub fn rate_limited(action: Action) {
    inc(&METRICS.rate_limited[action as usize]);
}

pub fn slow_consumer() {
    inc(&METRICS.slow_consumer_disconnects);
}

pub fn account(e: AccountEvent) {
    if let Some(i) = AccountEvent::ALL.iter().position(|x| *x == e) {
        inc(&METRICS.accounts[i]);
    }
}

/// Times a Redis command or pipeline.
pub async fn redis_timed<T, E>(f: impl std::future::Future<Output = Result<T, E>>) -> Result<T, E> {
    let start = std::time::Instant::now();
    let r = f.await;
    METRICS.redis_roundtrip.observe_duration(start.elapsed());
    if r.is_err() {
        inc(&METRICS.redis_errors);
    }
    r
}

pub fn bus_published(n: usize, bytes: usize) {
    METRICS.bus_published.fetch_add(n as u64, Ordering::Relaxed);
    METRICS
        .bus_published_bytes
        .fetch_add(bytes as u64, Ordering::Relaxed);
}

pub fn bus_received(bytes: usize) {
    inc(&METRICS.bus_received);
    METRICS
        .bus_received_bytes
        .fetch_add(bytes as u64, Ordering::Relaxed);
}

/// The ScyllaDB stores of this process (one per server; tests run several),
/// read at scrape time. A store that is gone drops out.
static SCYLLA_STORES: Mutex<Vec<Weak<StoreMetrics>>> = Mutex::new(Vec::new());

/// Exports a ScyllaDB store's counters on `/metrics` for as long as it lives.
pub fn register_scylla_store(m: &Arc<StoreMetrics>) {
    if let Ok(mut v) = SCYLLA_STORES.lock() {
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(m));
    }
}

/// The counters of every live ScyllaDB store, summed (all zero without one).
fn scylla_totals() -> [u64; 9] {
    let mut t = [0u64; 9];
    if let Ok(v) = SCYLLA_STORES.lock() {
        for m in v.iter().filter_map(Weak::upgrade) {
            let vals = [
                &m.commits,
                &m.commit_micros,
                &m.statements,
                &m.batches,
                &m.retries,
                &m.errors_unavailable,
                &m.errors_timeout,
                &m.errors_other,
                &m.history_coalesced,
            ];
            for (acc, a) in t.iter_mut().zip(vals) {
                *acc += load(a);
            }
        }
    }
    t
}

/// `GET /metrics` content type.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Encodes every metric in the Prometheus text format (0.0.4).
pub fn render() -> Result<String, std::fmt::Error> {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Scrape));
    let mut out = String::with_capacity(8 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// Reads [`METRICS`] at scrape time.
#[derive(Debug)]
struct Scrape;

type Labels = [(&'static str, &'static str); 1];

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

fn counters(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, u64)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        m.encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
    }
    Ok(())
}

fn gauges(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, i64)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in series {
        m.encode_family(&labels)?.encode_gauge(&v)?;
    }
    Ok(())
}

fn histogram<const N: usize>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &Histogram<N>,
) -> std::fmt::Result {
    let (sum, count, buckets) = h.snapshot();
    e.encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &METRICS;
        let by_transport = |f: &dyn Fn(usize) -> i64| {
            Transport::ALL.map(|t| ([("transport", t.as_str())], f(t.index())))
        };
        gauges(
            &mut e,
            "roomcast_connections",
            "Open client connections",
            by_transport(&|i| m.connections[i].load(Ordering::Relaxed)),
        )?;
        counters(
            &mut e,
            "roomcast_connections_accepted",
            "Client connections accepted",
            Transport::ALL.map(|t| {
                (
                    [("transport", t.as_str())],
                    load(&m.connections_accepted[t.index()]),
                )
            }),
        )?;
        gauges(
            &mut e,
            "roomcast_sessions",
            "Authenticated sessions (after welcome)",
            by_transport(&|i| m.sessions[i].load(Ordering::Relaxed)),
        )?;
        gauge(
            &mut e,
            "roomcast_rooms_loaded",
            "Rooms held in memory by the room shards",
            m.rooms_loaded.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "roomcast_messages_committed",
            "Messages (send) made durable in the store",
            m.messages_committed.get(),
        )?;
        counter(
            &mut e,
            "roomcast_events_committed",
            "Stream events (messages, edits, deletes, reactions) made durable",
            m.events_committed.get(),
        )?;
        counter(
            &mut e,
            "roomcast_deliveries",
            "Stream-event chunks handed to subscribers' outboxes (one per subscriber per fan-out)",
            m.deliveries.get(),
        )?;
        counter(
            &mut e,
            "roomcast_fanout_bytes",
            "Bytes handed to subscribers' outboxes by stream-event fan-out",
            m.fanout_bytes.get(),
        )?;
        counters(
            &mut e,
            "roomcast_bytes_out",
            "Bytes written to client connections",
            Transport::ALL.map(|t| ([("transport", t.as_str())], m.bytes_out[t.index()].get())),
        )?;
        counter(
            &mut e,
            "roomcast_ephemeral_drops",
            "Typing, presence and read pushes dropped for connections that are behind",
            m.ephemeral_drops.get(),
        )?;
        counter(
            &mut e,
            "roomcast_slow_consumer_disconnects",
            "Connections closed because their outbound queue overflowed",
            load(&m.slow_consumer_disconnects),
        )?;
        counters(
            &mut e,
            "roomcast_rate_limited",
            "Requests refused by a rate limit, by action",
            Action::ALL.map(|a| {
                (
                    [("action", action_name(a))],
                    load(&m.rate_limited[a as usize]),
                )
            }),
        )?;
        counters(
            &mut e,
            "roomcast_errors",
            "Error frames sent to clients, by code",
            ErrorCode::ALL
                .iter()
                .enumerate()
                .map(|(i, c)| ([("code", c.as_str())], load(&m.errors[i]))),
        )?;
        histogram(
            &mut e,
            "roomcast_store_commit_seconds",
            "Time a room shard's store batch took to commit",
            &m.store_commit,
        )?;
        histogram(
            &mut e,
            "roomcast_store_batch_mutations",
            "Mutations per store batch submitted by a room shard",
            &m.store_batch,
        )?;
        counter(
            &mut e,
            "roomcast_store_commit_failures",
            "Store batches that failed to commit",
            load(&m.store_commit_failures),
        )?;
        let [commits, micros, statements, batches, retries, unavailable, timeout, other, coalesced] =
            scylla_totals();
        counter(
            &mut e,
            "roomcast_scylla_commits",
            "ScyllaDB store: apply calls (one per store batch), failed ones included",
            commits,
        )?;
        e.encode_descriptor(
            "roomcast_scylla_commit_seconds",
            "ScyllaDB store: time spent in apply calls, summed",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, f64>(&(micros as f64 / 1e6), None)?;
        counter(
            &mut e,
            "roomcast_scylla_statements",
            "ScyllaDB store: CQL write statements run (alone or in a batch)",
            statements,
        )?;
        counter(
            &mut e,
            "roomcast_scylla_partition_batches",
            "ScyllaDB store: unlogged single-partition batches run",
            batches,
        )?;
        counter(
            &mut e,
            "roomcast_scylla_retries",
            "ScyllaDB store: idempotent requests retried after unavailable/overloaded/timeout",
            retries,
        )?;
        counters(
            &mut e,
            "roomcast_scylla_errors",
            "ScyllaDB store: requests that failed after retries, by kind",
            [
                ([("kind", "unavailable")], unavailable),
                ([("kind", "timeout")], timeout),
                ([("kind", "other")], other),
            ],
        )?;
        counter(
            &mut e,
            "roomcast_scylla_history_coalesced",
            "ScyllaDB store: history reads served by an identical read already in flight",
            coalesced,
        )?;
        histogram(
            &mut e,
            "roomcast_redis_roundtrip_seconds",
            "Redis command and pipeline round trips (multi-node)",
            &m.redis_roundtrip,
        )?;
        counter(
            &mut e,
            "roomcast_redis_errors",
            "Redis commands that failed or timed out",
            load(&m.redis_errors),
        )?;
        counters(
            &mut e,
            "roomcast_bus_messages",
            "Cross-node messages on the Redis bus, by direction",
            [
                ([("direction", "out")], load(&m.bus_published)),
                ([("direction", "in")], load(&m.bus_received)),
            ],
        )?;
        counters(
            &mut e,
            "roomcast_bus_bytes",
            "Cross-node bytes on the Redis bus, by direction",
            [
                ([("direction", "out")], load(&m.bus_published_bytes)),
                ([("direction", "in")], load(&m.bus_received_bytes)),
            ],
        )?;
        counters(
            &mut e,
            "roomcast_node_lease_renewals",
            "Multi-node: node lease renewals in Redis, by outcome",
            [
                ([("outcome", "ok")], load(&m.node_lease_renewals)),
                ([("outcome", "failed")], load(&m.node_lease_failures)),
            ],
        )?;
        gauge(
            &mut e,
            "roomcast_node_lease_held",
            "Multi-node: 1 while this node holds its lease in Redis (as of its last renewal attempt)",
            m.node_lease_held.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut e,
            "roomcast_cluster_live_nodes",
            "Multi-node: nodes in the live set, this one included while it holds its lease",
            m.cluster_live_nodes.load(Ordering::Relaxed),
        )?;
        counters(
            &mut e,
            "roomcast_accounts",
            "Built-in accounts: outcomes by event",
            AccountEvent::ALL.map(|a| ([("event", a.as_str())], load(&m.accounts[a as usize]))),
        )?;
        histogram(
            &mut e,
            "roomcast_password_hash_seconds",
            "Built-in accounts: time to hash or verify a password",
            &m.password_hashing,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let _c = ConnectionGuard::open(Transport::Ws);
        error_sent(ErrorCode::Forbidden);
        METRICS.store_commit.observe(1_000_000);
        let text = render().unwrap();
        assert!(text.contains("# TYPE roomcast_connections gauge"), "{text}");
        assert!(
            text.contains(r#"roomcast_connections{transport="ws"} "#),
            "{text}"
        );
        assert!(
            text.contains(r#"roomcast_errors_total{code="forbidden"} "#),
            "{text}"
        );
        assert!(
            text.contains(r#"roomcast_store_commit_seconds_bucket{le="0.001"} "#),
            "{text}"
        );
        assert!(
            text.contains(r#"roomcast_store_commit_seconds_bucket{le="+Inf"} "#),
            "{text}"
        );
        // A registered ScyllaDB store's counters, summed at scrape time.
        let store = Arc::new(StoreMetrics::default());
        register_scylla_store(&store);
        store.errors_timeout.fetch_add(7, Ordering::Relaxed);
        let text = render().unwrap();
        assert!(
            text.contains(r#"roomcast_scylla_errors_total{kind="timeout"} 7"#),
            "{text}"
        );
        assert!(
            text.contains("roomcast_scylla_commit_seconds_total 0"),
            "{text}"
        );
        drop(store);
        let text = render().unwrap();
        assert!(
            text.contains(r#"roomcast_scylla_errors_total{kind="timeout"} 0"#),
            "a dropped store drops out: {text}"
        );
    }
}
