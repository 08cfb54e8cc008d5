//! What WebSocket compression (`--ws-compression true`) costs per message sent
//! to one subscriber, next to the encoding that uncompressed delivery shares
//! among all subscribers: raw DEFLATE of one `msg` frame's payload with a
//! reset state (no context takeover, as the bridge agrees by default) at the
//! bridge's default level 1, and for comparison level 6.
//!
//! Run: `cargo bench --bench ws_deflate -- --noplot`. One element = one message.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flate2::{Compress, Compression, FlushCompress};
use roomcast::proto::server::{Message, ServerFrame};
use roomcast::proto::{self, frame::split_frames};
use serde_json::json;
use std::hint::black_box;
use std::time::Duration;

fn msg_payload(body_len: usize) -> Vec<u8> {
    let body: String = "the quick brown fox jumps over the lazy dog 0123456789 "
        .chars()
        .cycle()
        .take(body_len)
        .collect();
    let msg: Message = serde_json::from_value(json!({
        "room": "r5f1c2a9e0b3d4c7a8e6f1b2c",
        "seq": 123_456,
        "from": "user-4242",
        "body": body,
        "ts": 1_767_225_600_000u64,
        "local_id": "c-01HZX3K9Q7",
    }))
    .expect("a valid message");
    let framed = proto::encode(&ServerFrame::Msg(msg));
    split_frames(framed).next().expect("one frame").to_vec()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws_deflate");
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    for body in [100usize, 1000] {
        let payload = msg_payload(body);
        for level in [1u32, 6] {
            let mut z = Compress::new(Compression::new(level), false);
            let mut out = Vec::with_capacity(payload.len() + 64);
            // Print the ratio once, for the record.
            z.compress_vec(&payload, &mut out, FlushCompress::Sync)
                .expect("deflate");
            eprintln!(
                "msg with {body}-byte body: {} -> {} bytes at level {level}",
                payload.len(),
                out.len() - 4
            );
            g.bench_function(format!("msg_body{body}_level{level}"), |b| {
                b.iter(|| {
                    z.reset();
                    out.clear();
                    z.compress_vec(black_box(&payload), &mut out, FlushCompress::Sync)
                        .expect("deflate");
                    black_box(out.len())
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
