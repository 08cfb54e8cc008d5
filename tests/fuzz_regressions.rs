//! Inputs the fuzz targets in `fuzz/` (docs/FUZZING.md) found to fail, kept
//! as plain tests so they never come back. Each test names the target and
//! the artifact it came from, and replays the input the way the target does.

use roomcast::auth::Authenticator;
use roomcast::ids::SessionId;
use roomcast::proto::{ErrorCode, WireError};
use roomcast::session::{Output, Session, SessionLimits};
use std::time::{Duration, Instant};

fn limits() -> SessionLimits {
    SessionLimits {
        hello_timeout: Duration::from_secs(10),
        heartbeat: Duration::from_secs(15),
        idle_timeout: Duration::from_secs(30),
        max_frame: 4096,
        max_body_chars: 100,
        max_attachment_bytes: 1 << 20,
        away_after: None,
        ping_rate: None,
        max_joined: 16,
    }
}

/// session_ops, crash-ce21ef001433d6e7cab7d369d317d9f0e16fb6f8: a frame that
/// closes the session before `hello` (here a `join`, as vector 77), then an
/// oversize header. The session answered the oversize with a second `Close`,
/// although after a close every input is ignored; a driver that did not stop
/// at the first one would have sent two closing errors.
#[test]
fn no_second_close_after_an_oversize_header() {
    let auth = Authenticator::hs256(b"fuzz-regressions-secret-0123456789");
    let now = Instant::now();
    let mut s = Session::new(SessionId(1), limits(), now);
    let join = roomcast::proto::encode(&serde_json::json!({"t": "join", "id": 1, "room": "r"}));
    let out = s.handle_frame(&join[4..], now, &auth);
    assert!(
        matches!(
            out,
            Output::Close(WireError {
                code: ErrorCode::Unauthorized,
                ..
            })
        ),
        "{out:?}"
    );
    assert!(s.is_closed());
    assert_eq!(s.handle_oversize(0), Output::None);
    assert_eq!(s.handle_oversize(usize::MAX), Output::None);
    assert_eq!(
        s.handle_timeout(now + Duration::from_secs(3600)),
        Output::None
    );
}

/// frame_decode, crash-84584cb6a5a120244bfa467ff351b12fbcf8aba5 (found by a
/// long run, 2026-12-08): a `join` whose room id carries the tenant separator
/// (`g` U+001F `neral`). It decodes, since ids inside a server are scoped that
/// way, and its wire form is the public part (`neral`), so the target's
/// encode + decode round trip failed. What matters is that no server serves
/// it: the boundary refuses an already scoped id as `bad_request`, with and
/// without tenants, so a client can never name another tenant's room.
#[test]
fn a_client_id_carrying_the_tenant_separator_is_refused() {
    use roomcast::ids::UserId;
    use roomcast::proto::ClientFrame;
    let payload = b"\x84\xa1t\xa4join\xa2id\x03\xa4room\xa7g\x1fneral\xa5si\xa5si2";
    let frame = ClientFrame::decode(payload).expect("it decodes");
    for user in [
        UserId::new("alice").unwrap(),
        UserId::new("acme\u{1f}alice").unwrap(),
    ] {
        let err = roomcast::tenant::scope_request(&mut frame.clone(), &user)
            .expect_err("a scoped id from a client is refused");
        assert_eq!(err.code, ErrorCode::BadRequest, "{}", err.message);
    }
}
