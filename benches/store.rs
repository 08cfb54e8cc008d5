//! The real embedded store (`EmbeddedStore`, fjall, group-commit thread)
//! through the `MessageStore` trait, as the room shards call it.
//!
//! - append: `apply` of a batch of 64 messages (100-byte bodies, a `local_id`
//!   each, spread over 100 rooms like a shard's batch; per message the
//!   `PutLocalId` + `AppendEvent` + `PutMessage` a `send` writes), under
//!   `FsyncPolicy::Never` and `FsyncPolicy::Always`. The batch is built
//!   outside the timed part; the timed part is the committer round trip
//!   (channel, fjall batch commit, fdatasync for `Always`, oneshot back).
//! - history: the last 50 messages of a room holding 100,000 messages.
//!
//! Run: `cargo bench --bench store -- --noplot`. Throughput is in messages
//! (one element = one message appended, or one message returned by history).

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use roomcast::config::FsyncPolicy;
use roomcast::ids::{RoomId, UserId};
use roomcast::proto::{self, ServerFrame};
use roomcast::store::embedded::EmbeddedStore;
use roomcast::store::{HistoryRange, MessageState, MessageStore, Mutation};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const BATCH: usize = 64;
const ROOMS: usize = 100;
const HISTORY_ROOM_MESSAGES: u64 = 100_000;

fn body_100() -> String {
    "the quick brown fox jumps over the lazy dog 0123456789 "
        .chars()
        .cycle()
        .take(100)
        .collect()
}

/// Builds batches of appends, advancing the per-room seq counters. Each
/// message is written as the shard writes a `send` (router/messages.rs): the
/// encoded `msg` push as a stream event, the message state, and its
/// `local_id` record.
struct Appends {
    rooms: Vec<RoomId>,
    next_seq: Vec<u64>,
    cursor: usize,
    from: UserId,
    body: String,
}

impl Appends {
    fn new(rooms: usize) -> Self {
        Self {
            rooms: (0..rooms)
                .map(|i| RoomId::new(&format!("r{i:024x}")).unwrap())
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

fn append(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let mut g = c.benchmark_group("store/append_batch64");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for (name, policy) in [
        ("fsync_never", FsyncPolicy::Never),
        ("fsync_always", FsyncPolicy::Always),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), policy).unwrap();
        let mut appends = Appends::new(ROOMS);
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_batched(
                || appends.batch(BATCH),
                |batch| rt.block_on(store.apply(batch)).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn history(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), FsyncPolicy::Never).unwrap();
    let mut appends = Appends::new(1);
    let room = appends.rooms[0].clone();
    let start = Instant::now();
    let mut left = HISTORY_ROOM_MESSAGES as usize;
    while left > 0 {
        let n = left.min(1000);
        rt.block_on(store.apply(appends.batch(n))).unwrap();
        left -= n;
    }
    rt.block_on(store.flush()).unwrap();
    eprintln!(
        "store: prefilled {HISTORY_ROOM_MESSAGES} messages in one room in {:.2?} \
         (batches of 1000, fsync never); they sit in fjall's 64 MiB memtable + journal",
        start.elapsed()
    );
    let (page, more) = rt
        .block_on(store.history(&room, HistoryRange::Newest, 50))
        .unwrap();
    assert_eq!(page.len(), 50);
    assert_eq!(page[49].seq, HISTORY_ROOM_MESSAGES);
    assert!(more);

    let mut g = c.benchmark_group("store/history_last50_of_100k");
    g.throughput(Throughput::Elements(50));
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("newest_page", |b| {
        b.iter(|| {
            rt.block_on(store.history(black_box(&room), HistoryRange::Newest, 50))
                .unwrap()
        })
    });
    g.bench_function("page_before_seq_50000", |b| {
        b.iter(|| {
            rt.block_on(store.history(black_box(&room), HistoryRange::Before(50_000), 50))
                .unwrap()
        })
    });
    g.bench_function("page_after_seq_50000", |b| {
        b.iter(|| {
            rt.block_on(store.history(black_box(&room), HistoryRange::After(50_000), 50))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = append, history
}
criterion_main!(benches);
