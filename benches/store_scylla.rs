//! The ScyllaDB store (`ScyllaStore`) against a real CQL node, through the
//! `MessageStore` trait as the room shards call it: the same workload as
//! `benches/store.rs` runs on the embedded store, so the two read side by side.
//!
//! - append: `apply` of a batch of 64 messages (100-byte bodies, a `local_id`
//!   each, spread over 100 rooms like a shard's batch; per message the
//!   `PutLocalId` + `AppendEvent` + `PutMessage` a `send` writes), one batch at
//!   a time (`sequential`) and eight batches at once (`concurrent8`, as eight
//!   shards or eight commits in flight would).
//! - history: pages of 50 of a room holding 20,000 messages.
//!
//! Needs a CQL node: `ROOMCAST_SCYLLA_NODES` or `ROOMCAST_CQL_NODE`
//! (`export ROOMCAST_CQL_NODE=$(scripts/cql-node.sh start)`). Without one it
//! prints `SKIP` and exits 0; it also skips unless run by `cargo bench` (so
//! `cargo test --all-targets` only builds it). It works in a keyspace of its
//! own and drops it at the end.
//!
//! Run: `cargo bench --bench store_scylla -- --noplot`.

use criterion::{BatchSize, Criterion, Throughput};
use roomcast::config::CqlConsistency;
use roomcast::ids::{RoomId, UserId};
use roomcast::proto::{self, ServerFrame};
use roomcast::store::scylla::{ScyllaConfig, ScyllaStore};
use roomcast::store::{HistoryRange, MessageState, MessageStore, Mutation};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const BATCH: usize = 64;
const ROOMS: usize = 100;
const CONCURRENT: usize = 8;
const HISTORY_ROOM_MESSAGES: u64 = 20_000;

fn body_100() -> String {
    "the quick brown fox jumps over the lazy dog 0123456789 "
        .chars()
        .cycle()
        .take(100)
        .collect()
}

/// Builds batches of appends as the shard writes a `send` (router/messages.rs).
struct Appends {
    rooms: Vec<RoomId>,
    next_seq: Vec<u64>,
    cursor: usize,
    from: UserId,
    body: String,
}

impl Appends {
    fn new(tag: &str, rooms: usize) -> Self {
        Self {
            rooms: (0..rooms)
                .map(|i| RoomId::new(&format!("{tag}{i:020x}")).unwrap())
                .collect(),
            next_seq: vec![1; rooms],
            cursor: 0,
            from: UserId::new("user-4242").unwrap(),
            body: body_100(),
        }
    }

    fn batch(&mut self, n: usize) -> Vec<Mutation> {
        let mut out = Vec::with_capacity(3 * n);
        for _ in 0..n {
            let r = self.cursor % self.rooms.len();
            self.cursor += 1;
            let seq = self.next_seq[r];
            self.next_seq[r] += 1;
            let ts = 1_767_225_600_000 + seq;
            let local_id = format!("c-{seq:010}");
            let state = MessageState {
                room: self.rooms[r].clone(),
                seq,
                n: seq,
                from: self.from.clone(),
                body: self.body.clone(),
                ts,
                local_id: Some(local_id.clone()),
                kind: Default::default(),
                attachments: Vec::new(),
                reply_to: None,
                edited_at: None,
                deleted: false,
                reactions: BTreeMap::new(),
                cell_at: BTreeMap::new(),
                edits: Vec::new(),
            };
            let framed = proto::encode(&ServerFrame::Msg(state.view(None)));
            out.push(Mutation::PutLocalId {
                room: state.room.clone(),
                user: state.from.clone(),
                local_id,
                seq,
                ts,
            });
            out.push(Mutation::AppendEvent {
                room: state.room.clone(),
                seq,
                payload: framed.slice(proto::HEADER_LEN..),
            });
            out.push(Mutation::PutMessage(Box::new(state)));
        }
        out
    }
}

fn nodes() -> Option<String> {
    ["ROOMCAST_SCYLLA_NODES", "ROOMCAST_CQL_NODE"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty())
}

fn config(nodes: &str, keyspace: &str) -> ScyllaConfig {
    ScyllaConfig {
        nodes: nodes.split(',').map(|s| s.trim().to_string()).collect(),
        keyspace: keyspace.to_string(),
        replication: "simple:1".into(),
        consistency: CqlConsistency::LocalQuorum,
        username: None,
        password: None,
        tls_ca: None,
        request_timeout: Duration::from_secs(30),
        max_inflight: 256,
    }
}

fn append(c: &mut Criterion, rt: &Runtime, store: &Arc<ScyllaStore>) {
    let mut g = c.benchmark_group("store_scylla/append_batch64");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(8));
    let mut appends = Appends::new("s", ROOMS);
    g.bench_function("sequential", |b| {
        b.iter_batched(
            || appends.batch(BATCH),
            |batch| rt.block_on(store.apply(batch)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("store_scylla/append_batch64x8");
    g.throughput(Throughput::Elements((BATCH * CONCURRENT) as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    let mut appends = Appends::new("c", ROOMS * CONCURRENT);
    g.bench_function("concurrent8", |b| {
        b.iter_batched(
            || (0..CONCURRENT).map(|_| appends.batch(BATCH)).collect(),
            |batches: Vec<Vec<Mutation>>| {
                rt.block_on(async {
                    let tasks: Vec<_> = batches
                        .into_iter()
                        .map(|batch| {
                            let store = store.clone();
                            tokio::spawn(async move { store.apply(batch).await })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap().unwrap();
                    }
                })
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn history(c: &mut Criterion, rt: &Runtime, store: &Arc<ScyllaStore>) {
    let mut appends = Appends::new("h", 1);
    let room = appends.rooms[0].clone();
    let start = Instant::now();
    let mut left = HISTORY_ROOM_MESSAGES as usize;
    while left > 0 {
        let n = left.min(BATCH);
        rt.block_on(store.apply(appends.batch(n))).unwrap();
        left -= n;
    }
    eprintln!(
        "store_scylla: prefilled {HISTORY_ROOM_MESSAGES} messages in one room in {:.2?} (batches of {BATCH})",
        start.elapsed()
    );
    let (page, more) = rt
        .block_on(store.history(&room, HistoryRange::Newest, 50))
        .unwrap();
    assert_eq!(page.len(), 50);
    assert_eq!(page[49].seq, HISTORY_ROOM_MESSAGES);
    assert!(more);

    let mut g = c.benchmark_group("store_scylla/history_last50_of_20k");
    g.throughput(Throughput::Elements(50));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("newest_page", |b| {
        b.iter(|| {
            rt.block_on(store.history(black_box(&room), HistoryRange::Newest, 50))
                .unwrap()
        })
    });
    g.bench_function("page_before_seq_10000", |b| {
        b.iter(|| {
            rt.block_on(store.history(black_box(&room), HistoryRange::Before(10_000), 50))
                .unwrap()
        })
    });
    g.bench_function("page_after_seq_10000", |b| {
        b.iter(|| {
            rt.block_on(store.history(black_box(&room), HistoryRange::After(10_000), 50))
                .unwrap()
        })
    });
    g.finish();
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs bench
    // binaries without it, and this one needs minutes and a database.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("SKIP: store_scylla runs under `cargo bench` only");
        return;
    }
    let Some(nodes) = nodes() else {
        eprintln!(
            "SKIP: store_scylla needs a CQL node: ROOMCAST_CQL_NODE=$(scripts/cql-node.sh start) \
             or ROOMCAST_SCYLLA_NODES"
        );
        return;
    };
    let rt = Runtime::new().unwrap();
    let keyspace = format!("rc_bench_{}", std::process::id());
    let cfg = config(&nodes, &keyspace);
    let store = Arc::new(
        rt.block_on(ScyllaStore::connect(&cfg))
            .unwrap_or_else(|e| panic!("connect to the CQL node {nodes}: {e}")),
    );
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .configure_from_args();
    append(&mut c, &rt, &store);
    history(&mut c, &rt, &store);
    c.final_summary();
    drop(store);
    rt.block_on(async {
        let session = ScyllaStore::session(&cfg).await?;
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
            .await?;
        anyhow::Ok(())
    })
    .unwrap_or_else(|e| eprintln!("dropping keyspace {keyspace}: {e}"));
}
