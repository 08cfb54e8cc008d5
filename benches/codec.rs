//! Wire codec hot paths: encoding a pushed `msg` frame, decoding a client
//! `send` frame, and the structural check that runs before serde.
//!
//! Run: `cargo bench --bench codec -- --noplot`. Throughput is in frames
//! (one element = one frame encoded, decoded or checked).

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use roomcast::proto::client::{ClientFrame, Send};
use roomcast::proto::server::{Message, ServerFrame};
use roomcast::proto::{self, validate};
use serde_json::json;
use std::hint::black_box;
use std::time::Duration;

/// A 100-byte printable message body.
fn body_100() -> String {
    let s: String = "the quick brown fox jumps over the lazy dog 0123456789 "
        .chars()
        .cycle()
        .take(100)
        .collect();
    assert_eq!(s.len(), 100);
    s
}

/// A plain text message as pushed live. Built through serde so that optional
/// fields added to `Message` later keep their defaults here.
fn msg_frame() -> ServerFrame {
    let msg: Message = serde_json::from_value(json!({
        "room": "r5f1c2a9e0b3d4c7a8e6f1b2c",
        "seq": 123_456,
        "from": "user-4242",
        "body": body_100(),
        "ts": 1_767_225_600_000u64,
        "local_id": "c-01HZX3K9Q7",
    }))
    .unwrap();
    ServerFrame::Msg(msg)
}

/// The payload (no length header) of a client `send` frame, as a client encodes it.
fn send_payload() -> Vec<u8> {
    rmp_serde::to_vec_named(&json!({
        "t": "send",
        "id": 77,
        "room": "r5f1c2a9e0b3d4c7a8e6f1b2c",
        "body": body_100(),
        "local_id": "c-01HZX3K9Q7",
    }))
    .unwrap()
}

fn encode(c: &mut Criterion) {
    let frame = msg_frame();
    let encoded = proto::encode(&frame);
    eprintln!(
        "codec: msg frame with a 100-byte body encodes to {} bytes (header included)",
        encoded.len()
    );
    let mut g = c.benchmark_group("codec/encode_msg");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode", |b| b.iter(|| proto::encode(black_box(&frame))));
    let mut buf = BytesMut::with_capacity(4096);
    g.bench_function("encode_into_reused", |b| {
        b.iter(|| {
            buf.clear();
            proto::encode_into(&mut buf, black_box(&frame));
            black_box(buf.len())
        })
    });
    g.finish();
}

fn decode(c: &mut Criterion) {
    let payload = send_payload();
    eprintln!("codec: client send payload is {} bytes", payload.len());
    assert!(matches!(
        ClientFrame::decode(&payload),
        Ok(ClientFrame::Send(_))
    ));
    let mut g = c.benchmark_group("codec/decode_send");
    g.throughput(Throughput::Elements(1));
    g.bench_function("client_frame_decode", |b| {
        b.iter(|| ClientFrame::decode(black_box(&payload)))
    });
    g.bench_function("validate_check_only", |b| {
        b.iter(|| validate::check(black_box(&payload)))
    });
    // Baseline, not a server path: one plain rmp_serde pass into the request
    // struct, to show what the check + header pass + path tracking cost.
    g.bench_function("baseline_rmp_serde_from_slice", |b| {
        b.iter(|| rmp_serde::from_slice::<Send>(black_box(&payload)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = encode, decode
}
criterion_main!(benches);
