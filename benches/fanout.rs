//! Fan-out of one encoded message to N in-process subscribers through the
//! real `Outbox::push` path (atomic byte accounting, kill-token check, tokio
//! unbounded channel send).
//!
//! `Room::fan_out` (router/room.rs) is not public (`router::room` is a private
//! module), so this bench reproduces its loop: an `IndexMap<SessionId, Outbox>`
//! of subscribers, `push(frames.clone())` to each, collect refusals. Receivers
//! are drained outside the timed part (`iter_custom`), well before any queue
//! nears its 4 MiB bound, so no push is refused.
//!
//! Run: `cargo bench --bench fanout -- --noplot`. Throughput is in deliveries
//! (one element = one frame pushed to one subscriber's outbox).
//!
//! Two groups, run in one sitting: `fanout/outbox_push` is the loop without
//! metrics (as before `/metrics` existed), `fanout/outbox_push_metrics` adds
//! what `Room::fan_out` now does per fan-out for `/metrics` (two plain adds
//! to the room's counters; the shard moves them to the atomics once per
//! tick), so their ratio is the hot-path cost of metrics.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use indexmap::IndexMap;
use roomcast::conn::outbox::{OutItem, Outbox, OutboxReceiver};
use roomcast::ids::SessionId;
use roomcast::proto::{self, server::Message, ServerFrame};
use std::hint::black_box;
use std::time::{Duration, Instant};

const OUTBOX_LIMIT: usize = 4 << 20;

fn encoded_msg() -> Bytes {
    let body: String = "the quick brown fox jumps over the lazy dog 0123456789 "
        .chars()
        .cycle()
        .take(100)
        .collect();
    // Built through serde so optional fields added to `Message` keep their defaults.
    let msg: Message = serde_json::from_value(serde_json::json!({
        "room": "r5f1c2a9e0b3d4c7a8e6f1b2c",
        "seq": 123_456,
        "from": "user-4242",
        "body": body,
        "ts": 1_767_225_600_000u64,
        "local_id": "c-01HZX3K9Q7",
    }))
    .unwrap();
    proto::encode(&ServerFrame::Msg(msg))
}

fn drain(receivers: &mut [OutboxReceiver]) {
    for rx in receivers.iter_mut() {
        while let Some(item) = rx.try_recv() {
            if let OutItem::Frames(b) = item {
                rx.taken(b.len());
            }
        }
    }
}

fn fanout(c: &mut Criterion) {
    fanout_group(c, "fanout/outbox_push", false);
    fanout_group(c, "fanout/outbox_push_metrics", true);
}

fn fanout_group(c: &mut Criterion, name: &str, metrics: bool) {
    let frames = encoded_msg();
    let mut g = c.benchmark_group(name);
    for &n in &[1usize, 100, 10_000] {
        let mut subscribers: IndexMap<SessionId, Outbox> = IndexMap::with_capacity(n);
        let mut receivers = Vec::with_capacity(n);
        for i in 0..n as u64 {
            let (out, rx) = Outbox::new(SessionId(i), OUTBOX_LIMIT);
            subscribers.insert(SessionId(i), out);
            receivers.push(rx);
        }
        // Rounds between drains: enough to amortise the timer for small N, few
        // enough that a queue holds at most ~2 MiB (half its bound) and that
        // N x rounds queued items stay a few hundred thousand.
        let rounds_per_drain = (65_536 / n).max(16).min((2 << 20) / frames.len()) as u64;
        let mut refused = 0usize;
        // Room::fanned: pushes and bytes since the last report.
        let mut fanned = (0u64, 0u64);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    let k = rounds_per_drain.min(iters - done);
                    let start = Instant::now();
                    for _ in 0..k {
                        // The body of Room::fan_out.
                        if metrics {
                            let n = black_box(subscribers.len()) as u64;
                            fanned.0 += n;
                            fanned.1 += n * frames.len() as u64;
                        }
                        let mut dead: Vec<SessionId> = Vec::new();
                        for (session, outbox) in &subscribers {
                            if !outbox.push(black_box(&frames).clone()) {
                                dead.push(*session);
                            }
                        }
                        refused += dead.len();
                    }
                    timed += start.elapsed();
                    drain(&mut receivers);
                    done += k;
                }
                timed
            })
        });
        assert_eq!(refused, 0, "no outbox may overflow in this bench");
        black_box(fanned);
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = fanout
}
criterion_main!(benches);
