//! Bad input never panics: every vector in `proto-spec/vectors.json`, mutated
//! many thousand times (bit flips, byte changes, truncation, insertion,
//! duplicated slices, rewritten length headers), goes through the codec, the
//! structural check and decoder, and an authenticated sans-IO `Session`; the
//! server frames also through the SDK-side `ServerFrame::decode`. Each input
//! must be accepted or answered with a documented error code, never a panic.
//! Deterministic (seeded), so a failure reproduces; a stable-toolchain
//! stand-in for a fuzzer that runs in every CI build.

use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roomcast::auth::Authenticator;
use roomcast::ids::SessionId;
use roomcast::proto::{
    client, encode, ClientFrame, ErrorCode, FrameCodec, ServerFrame, DEFAULT_MAX_FRAME,
};
use roomcast::session::{Output, Session, SessionLimits};
use std::time::Instant;
use tokio_util::codec::Decoder;

/// Mutations per vector: 400 by default (about 60k inputs, ~10 s in a debug
/// build); `ROOMCAST_ROBUSTNESS_ROUNDS=20000 cargo test --release --test
/// robustness` for a long run.
fn rounds() -> usize {
    std::env::var("ROOMCAST_ROBUSTNESS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

fn vectors() -> Vec<(String, String, Vec<u8>)> {
    let text = include_str!("../proto-spec/vectors.json");
    let v: serde_json::Value = serde_json::from_str(text).expect("vectors.json");
    v["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .map(|x| {
            (
                x["name"].as_str().unwrap_or_default().to_string(),
                x["direction"].as_str().unwrap_or_default().to_string(),
                hex::decode(x["hex"].as_str().unwrap_or_default()).expect("hex"),
            )
        })
        .collect()
}

/// One random mutation of `b` (which includes the 4-byte length header).
fn mutate(rng: &mut StdRng, b: &[u8]) -> Vec<u8> {
    let mut m = b.to_vec();
    let steps = rng.random_range(1..=4);
    for _ in 0..steps {
        let len = m.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                m[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                // Interesting MessagePack markers more often than plain noise.
                const MARKERS: [u8; 12] = [
                    0xc0, 0xc1, 0xc4, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0x8f, 0x9f, 0xff,
                ];
                m[i] = if rng.random_bool(0.5) {
                    MARKERS[rng.random_range(0..MARKERS.len())]
                } else {
                    rng.random()
                };
            }
            2 if len > 0 => m.truncate(rng.random_range(0..len)),
            3 => {
                let at = rng.random_range(0..=len);
                let n = rng.random_range(1..16);
                let junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                m.splice(at..at, junk);
            }
            4 if len > 1 => {
                let a = rng.random_range(0..len);
                let b = rng.random_range(a..len);
                let slice = m[a..=b].to_vec();
                let at = rng.random_range(0..=m.len());
                m.splice(at..at, slice);
            }
            5 if len >= 4 => {
                // A header that lies about the payload (or tells the truth after the other steps).
                let payload = (m.len() - 4) as u32;
                let claimed = match rng.random_range(0..4) {
                    0 => payload,
                    1 => payload.saturating_add(rng.random_range(1..64)),
                    2 => payload.saturating_sub(rng.random_range(1..64)),
                    _ => rng.random(),
                };
                m[..4].copy_from_slice(&claimed.to_be_bytes());
            }
            _ => {
                if len > 4 {
                    // Keep the header honest so the map itself is what is tested.
                    let payload = (m.len() - 4) as u32;
                    m[..4].copy_from_slice(&payload.to_be_bytes());
                }
            }
        }
    }
    m
}

fn authenticated_session(auth: &Authenticator, now: Instant) -> Session {
    let config = roomcast::config::Config::for_tests("/nonexistent");
    let mut s = Session::new(SessionId(1), SessionLimits::from_config(&config), now);
    let hello = encode(&ClientFrame::Hello(client::Hello {
        id: None,
        v: 1,
        token: auth.mint("alice", 600).expect("token"),
        sync: false,
    }));
    let out = s.handle_frame(&hello[4..], now, auth);
    assert!(matches!(out, Output::Admit { .. }), "{out:?}");
    s
}

/// Whether the error code is in proto-spec/README.md (looked up once per code).
fn documented(code: ErrorCode) -> bool {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static SEEN: Mutex<Option<HashMap<&'static str, bool>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    *seen
        .get_or_insert_with(HashMap::new)
        .entry(code.as_str())
        .or_insert_with(|| {
            include_str!("../proto-spec/README.md").contains(&format!("`{}`", code.as_str()))
        })
}

#[test]
fn mutated_client_frames_get_an_answer_never_a_panic() {
    let auth = Authenticator::hs256(b"robustness-test-secret-0123456789");
    let now = Instant::now();
    let mut rng = StdRng::seed_from_u64(0x726f_6f6d_6361_7374);
    let mut session = authenticated_session(&auth, now);
    let mut fresh = Session::new(
        SessionId(2),
        SessionLimits::from_config(&roomcast::config::Config::for_tests("/nonexistent")),
        now,
    );
    let (mut accepted, mut refused) = (0usize, 0usize);
    for (name, direction, bytes) in vectors() {
        if direction != "client_to_server" {
            continue;
        }
        for round in 0..rounds() {
            let input = mutate(&mut rng, &bytes);
            // The codec: a frame, not yet complete, or a size error; never a panic.
            let mut buf = BytesMut::from(&input[..]);
            let payload = match FrameCodec::new(DEFAULT_MAX_FRAME).decode(&mut buf) {
                Ok(Some(p)) => p,
                Ok(None) | Err(_) => continue,
            };
            // The decoder alone: any error carries a documented code.
            if let Err(e) = ClientFrame::decode(&payload) {
                assert!(documented(e.error.code), "{name} #{round}: {:?}", e.error);
            }
            // An authenticated session, and one still waiting for hello.
            for s in [&mut session, &mut fresh] {
                if s.is_closed() {
                    continue;
                }
                match s.handle_frame(&payload, now, &auth) {
                    Output::Reply(ServerFrame::Error(e)) => {
                        assert!(documented(e.code), "{name} #{round}: {e:?}");
                        refused += 1;
                    }
                    Output::Close(e) => {
                        assert!(documented(e.code), "{name} #{round}: {e:?}");
                        refused += 1;
                    }
                    _ => accepted += 1,
                }
            }
            if session.is_closed() {
                session = authenticated_session(&auth, now);
            }
            if fresh.is_closed() {
                fresh = Session::new(
                    SessionId(2),
                    SessionLimits::from_config(&roomcast::config::Config::for_tests(
                        "/nonexistent",
                    )),
                    now,
                );
            }
        }
    }
    // Both outcomes happen: the mutations are neither all harmless nor all fatal.
    assert!(
        accepted > 100 && refused > 1_000,
        "accepted {accepted}, refused {refused}"
    );
}

#[test]
fn mutated_server_frames_decode_or_fail_cleanly_in_the_sdk() {
    let mut rng = StdRng::seed_from_u64(0x7364_6b5f_7369_6465);
    let (mut ok, mut err) = (0usize, 0usize);
    for (_, direction, bytes) in vectors() {
        if direction != "server_to_client" {
            continue;
        }
        for _ in 0..rounds() {
            let input = mutate(&mut rng, &bytes);
            if input.len() < 4 {
                continue;
            }
            match ServerFrame::decode(&input[4..]) {
                Ok(_) => ok += 1,
                Err(_) => err += 1,
            }
        }
    }
    assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
}

#[test]
fn random_byte_streams_through_the_codec() {
    let mut rng = StdRng::seed_from_u64(42);
    let mut codec = FrameCodec::new(64 * 1024);
    for _ in 0..20_000 {
        let n = rng.random_range(0..256);
        let mut buf = BytesMut::from(&(0..n).map(|_| rng.random::<u8>()).collect::<Vec<u8>>()[..]);
        // Drain whatever frames the noise happens to contain, then stop at
        // the first error or incomplete frame, as a connection would.
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
    }
}
