//! The sans-IO session (`src/session/`) driven by an arbitrary sequence of
//! operations: frame payloads (the protocol vectors as they are, patched or
//! truncated, or raw bytes), valid `hello`s, time passing, the driver's
//! timer firing, oversize headers and status polls — what a transport driver
//! can feed it. Besides "no panic", it checks the driver's contract: at most
//! one admission and only before anything else, no request or reply before
//! it, nothing after a close, a timer that never fires in the past without
//! closing (a driver would spin), and the limits validation promises.
//!
//! The input is `arbitrary`-derived (quinn's fuzz/ does the same); its frames
//! come from `proto-spec/vectors.json` at run time, so no seed files are needed.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use roomcast::auth::Authenticator;
use roomcast::ids::SessionId;
use roomcast::proto::client::{ClientFrame, Hello};
use roomcast::proto::{encode, ServerFrame};
use roomcast::session::{Output, Session, SessionLimits, MAX_DIRECTORY_LIMIT, MAX_HISTORY_LIMIT};
use roomcast_fuzz::{client_vectors, vector_token, VECTOR_SECRET};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Arbitrary, Debug)]
enum Op {
    /// A client vector's payload as it is.
    Vector(u8),
    /// A client vector's payload with `bytes` written over it from `at`.
    Patched { vector: u8, at: u16, bytes: Vec<u8> },
    /// A client vector's payload cut to `len` bytes.
    Truncated { vector: u8, len: u16 },
    /// Arbitrary payload bytes.
    Raw(Vec<u8>),
    /// A `hello` with a valid token (or another protocol version).
    Hello {
        id: Option<u64>,
        sync: bool,
        v: bool,
    },
    /// Time passes.
    Advance { ms: u32 },
    /// The driver's timer fires: at the session's deadline, or now.
    Timeout { at_deadline: bool },
    /// A length header above `max_frame`.
    Oversize(u32),
    /// The driver takes the automatic status change.
    PollStatus,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Inactivity before the session turns away by itself.
    away_after_s: Option<u8>,
    ops: Vec<Op>,
}

const MAX_BODY_CHARS: usize = 100;

fn auth() -> &'static Authenticator {
    static A: OnceLock<Authenticator> = OnceLock::new();
    A.get_or_init(|| Authenticator::hs256(VECTOR_SECRET))
}

fn vector(i: u8) -> &'static [u8] {
    let v = client_vectors();
    v[usize::from(i) % v.len()].payload()
}

/// What the driver has seen so far.
#[derive(Default)]
struct Seen {
    admitted: bool,
    closed: bool,
}

fn check(out: &Output, s: &Session, seen: &mut Seen) {
    if seen.closed {
        assert_eq!(*out, Output::None, "output after the close");
        return;
    }
    match out {
        Output::None => {}
        Output::Admit { .. } => {
            assert!(!seen.admitted, "admitted twice");
            seen.admitted = true;
            assert!(s.user().is_some());
        }
        Output::Reply(reply) => {
            assert!(seen.admitted, "a reply before hello: {reply:?}");
            if let ServerFrame::Error(e) = reply {
                assert!(!e.close, "a closing error must come as Output::Close");
                assert!(!e.message.is_empty());
            }
        }
        Output::Request(frame) => {
            assert!(seen.admitted, "a request before hello");
            validated(frame);
        }
        Output::Close(e) => {
            seen.closed = true;
            assert!(!e.message.is_empty());
        }
    }
    assert_eq!(s.is_closed(), seen.closed);
    assert_eq!(s.user().is_some(), seen.admitted && !seen.closed);
}

/// What validation promises the dispatcher about a request it lets through.
fn validated(frame: &ClientFrame) {
    match frame {
        ClientFrame::Hello(_) => panic!("hello dispatched as a request"),
        ClientFrame::History(h) => {
            assert!(matches!(h.limit, Some(1..=MAX_HISTORY_LIMIT)), "{h:?}");
            assert_ne!(h.before, Some(0));
        }
        ClientFrame::PublicRooms(p) => {
            assert!(matches!(p.limit, Some(1..=MAX_DIRECTORY_LIMIT)), "{p:?}");
        }
        ClientFrame::Send(m) => {
            assert!(m.body.chars().count() <= MAX_BODY_CHARS);
            assert_ne!(m.reply_to, Some(0));
        }
        ClientFrame::Edit(e) => assert!(e.body.chars().count() <= MAX_BODY_CHARS),
        ClientFrame::CreateRoom(c) => assert!(!c.name.is_empty(), "{c:?}"),
        _ => {}
    }
}

fuzz_target!(|input: Input| {
    let limits = SessionLimits {
        hello_timeout: Duration::from_secs(10),
        heartbeat: Duration::from_secs(15),
        idle_timeout: Duration::from_secs(30),
        max_frame: 4096,
        max_body_chars: MAX_BODY_CHARS,
        max_attachment_bytes: 1 << 20,
        away_after: input
            .away_after_s
            .map(|s| Duration::from_secs(u64::from(s))),
        ping_rate: Some(roomcast::config::RateSpec {
            per_second: 2.0,
            burst: 20,
        }),
        max_joined: 16,
    };
    let mut now = Instant::now();
    let mut s = Session::new(SessionId(1), limits, now);
    let mut seen = Seen::default();
    for op in input.ops {
        let out = match op {
            Op::Vector(i) => s.handle_frame(vector(i), now, auth()),
            Op::Patched {
                vector: i,
                at,
                bytes,
            } => {
                let mut p = vector(i).to_vec();
                let at = usize::from(at).min(p.len());
                let end = (at + bytes.len()).min(p.len());
                p[at..end].copy_from_slice(&bytes[..end - at]);
                p.extend_from_slice(&bytes[end - at..]);
                s.handle_frame(&p, now, auth())
            }
            Op::Truncated { vector: i, len } => {
                let p = vector(i);
                s.handle_frame(&p[..usize::from(len).min(p.len())], now, auth())
            }
            Op::Raw(bytes) => s.handle_frame(&bytes, now, auth()),
            Op::Hello { id, sync, v } => {
                let frame = encode(&ClientFrame::Hello(Hello {
                    id,
                    v: if v { 1 } else { 2 },
                    token: vector_token().to_string(),
                    sync,
                }));
                s.handle_frame(&frame[4..], now, auth())
            }
            Op::Advance { ms } => {
                now += Duration::from_millis(u64::from(ms));
                Output::None
            }
            Op::Timeout { at_deadline } => {
                if at_deadline {
                    now = now.max(s.deadline());
                }
                let out = s.handle_timeout(now);
                if out == Output::None && !s.is_closed() {
                    assert!(s.deadline() > now, "a timer that would fire again at once");
                }
                out
            }
            Op::Oversize(len) => s.handle_oversize(len as usize),
            Op::PollStatus => {
                if s.poll_status().is_some() {
                    assert_eq!(s.poll_status(), None, "a status change reported twice");
                }
                Output::None
            }
        };
        check(&out, &s, &mut seen);
    }
});
