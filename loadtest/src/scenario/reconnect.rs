//! `reconnect-storm`: N clients connected, the server restarts, how fast are
//! all N back?
//!
//! 1. *Setup*: `--connections` clients connect and say `hello`
//!    (`--connect-concurrency` at a time), then hold their connection (reading,
//!    and pinging every heartbeat/2).
//! 2. *Restart*: with `--restart-cmd` the tool runs it (`sh -c`), otherwise the
//!    operator restarts the server; the tool waits up to `--wait` for it to go away.
//! 3. *Storm*: each client, on losing its connection, reconnects on its own the
//!    way a well-behaved SDK does: a closing `error` with `retry_after_ms`
//!    (`shutting_down`, `server_busy`) is honoured with jitter (a uniform wait in
//!    `[retry_after, retry_after × (1 + --jitter)]`); any other failure (refused,
//!    reset, timeout) backs off exponentially from `--backoff-initial` to
//!    `--backoff-max` ("equal jitter": half fixed, half random). Each attempt
//!    (connect + `hello` + `welcome`) is bounded by `--attempt-timeout`, the
//!    whole storm by `--duration` after the first disconnect.
//!
//! Reported (`extra`): `reconnected`, `outage_s` (first disconnect → first
//! client back), `time_to_all_reconnected_s` (first disconnect → last client
//! back), `ramp_s` (first → last back), `handshakes_per_second` (reconnected ÷
//! ramp), `attempts`; errors by code (every failed attempt and every
//! disconnect cause); latencies `reconnect` (a client's disconnect → its
//! `welcome`), `handshake` (successful attempts) and `connect` (setup).
//! A client not back by the end counts in `connections_failed`.

use super::user_id;
use crate::clock;
use crate::conn::{Conn, ConnError};
use crate::opts::{Common, ReconnectArgs};
use crate::progress::Progress;
use crate::report::Report;
use crate::stats::Shared;
use crate::tokens::Tokens;
use crate::transport::Target;
use crate::wire::{self, Kind};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch, Notify, Semaphore};

/// Timestamps are `clock::now_ns()`; 0 = not yet.
#[derive(Default)]
struct Marks {
    settled: AtomicU64,
    gone: AtomicU64,
    back: AtomicU64,
    given_up: AtomicU64,
    attempts: AtomicU64,
    first_gone_ns: AtomicU64,
    first_back_ns: AtomicU64,
    last_back_ns: AtomicU64,
}

fn set_min(a: &AtomicU64, v: u64) {
    let _ = a.fetch_update(Relaxed, Relaxed, |cur| (cur == 0 || v < cur).then_some(v));
}

struct Ctx {
    target: Target,
    args: ReconnectArgs,
    tokens: Vec<String>,
    stats: Arc<Shared>,
    marks: Marks,
    changed: Notify,
    setup: Semaphore,
    setup_timeout: Duration,
    /// When the storm must be over (set at the first disconnect).
    deadline_ns: AtomicU64,
}

impl Ctx {
    fn bump(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
        self.changed.notify_waiters();
    }
}

/// Runs the scenario; the operator (or `--restart-cmd`) restarts the server.
pub async fn run(common: &Common, args: &ReconnectArgs) -> anyhow::Result<Report> {
    run_with(common, args, None).await
}

/// As [`run`]; `connected` is signalled once every client is set up, so an
/// embedding program (a test) can restart the server itself.
pub async fn run_with(
    common: &Common,
    args: &ReconnectArgs,
    connected: Option<oneshot::Sender<()>>,
) -> anyhow::Result<Report> {
    let target = common.target()?;
    anyhow::ensure!(args.connections > 0, "--connections must be positive");
    anyhow::ensure!(
        args.backoff_initial > Duration::ZERO && args.backoff_max >= args.backoff_initial,
        "--backoff-initial must be positive and at most --backoff-max"
    );
    super::check_fd_limit(args.connections, common.transport)?;
    let tokens = Tokens::new(common.secret.as_deref(), common.token_cmd.as_deref())?;
    let mut minted = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        minted.push(tokens.get(&user_id(common, &i.to_string())).await?);
    }
    let stats = Arc::new(Shared::default());
    let ctx = Arc::new(Ctx {
        target,
        args: args.clone(),
        tokens: minted,
        stats: stats.clone(),
        marks: Marks::default(),
        changed: Notify::new(),
        setup: Semaphore::new(common.connect_concurrency.max(1)),
        setup_timeout: common.setup_timeout,
        deadline_ns: AtomicU64::new(u64::MAX),
    });
    let progress = Progress::start(
        "reconnect-storm",
        stats.clone(),
        args.connections as u64,
        common.quiet,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks: Vec<_> = (0..args.connections)
        .map(|i| tokio::spawn(client(ctx.clone(), i, stop_rx.clone())))
        .collect();
    drop(stop_rx);
    let n = args.connections as u64;
    let m = &ctx.marks;
    wait_until(&ctx, || m.settled.load(Relaxed) >= n).await;
    let ready = stats.conns_ready.load(Relaxed);
    let mut report = Report {
        scenario: "reconnect-storm".into(),
        transport: common.transport.name().into(),
        target: common.addr().to_string(),
        params: serde_json::to_value(args)?,
        ..Report::default()
    };
    if ready == 0 {
        let _ = stop_tx.send(true);
        progress.stop();
        report.take_stats(&stats);
        anyhow::bail!("no client could connect: {:?}", report.errors);
    }
    if let Some(tx) = connected {
        let _ = tx.send(());
    }

    // The restart.
    let mut restart = None;
    match &args.restart_cmd {
        Some(cmd) => {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c").arg(cmd).stdin(std::process::Stdio::null());
            restart = Some(tokio::spawn(async move { c.status().await }));
        }
        None if !common.quiet => eprintln!(
            "\nreconnect-storm: {ready} clients connected; restart the server now \
             (waiting up to {:?} for it to go away)",
            args.wait
        ),
        None => {}
    }
    let gone = tokio::time::timeout(
        args.wait,
        wait_until(&ctx, || m.first_gone_ns.load(Relaxed) != 0),
    )
    .await;
    if gone.is_ok() {
        // Every held client either comes back or gives up by its deadline.
        let guard = args.duration + args.attempt_timeout + Duration::from_secs(5);
        let _ = tokio::time::timeout(
            guard,
            wait_until(&ctx, || {
                m.back.load(Relaxed) + m.given_up.load(Relaxed) >= ready
            }),
        )
        .await;
    } else {
        stats.error("server_did_not_go_away");
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    progress.stop();
    if let Some(r) = restart {
        match r.await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => {
                eprintln!("reconnect-storm: --restart-cmd exited with {status}");
                stats.error("restart_cmd_failed");
            }
            _ => stats.error("restart_cmd_failed"),
        }
    }

    report.take_stats(&stats);
    let back = m.back.load(Relaxed);
    report.connections = ready;
    report.connections_failed = n - back;
    let (first_gone, first_back, last_back) = (
        m.first_gone_ns.load(Relaxed),
        m.first_back_ns.load(Relaxed),
        m.last_back_ns.load(Relaxed),
    );
    let secs = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e9;
    let x = &mut report.extra;
    x.insert("reconnected".into(), back as f64);
    x.insert("disconnected".into(), m.gone.load(Relaxed) as f64);
    x.insert("attempts".into(), m.attempts.load(Relaxed) as f64);
    if first_gone != 0 && first_back != 0 {
        let ramp = secs(first_back, last_back);
        x.insert("outage_s".into(), secs(first_gone, first_back));
        x.insert(
            "time_to_all_reconnected_s".into(),
            secs(first_gone, last_back),
        );
        x.insert("ramp_s".into(), ramp);
        x.insert("handshakes_per_second".into(), back as f64 / ramp.max(1e-3));
        report.elapsed_s = secs(first_gone, last_back);
    }
    Ok(report)
}

async fn wait_until(ctx: &Ctx, done: impl Fn() -> bool) {
    loop {
        let notified = ctx.changed.notified();
        if done() {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
    }
}

/// Why an attempt or a held connection ended.
struct Failure {
    code: String,
    retry_after_ms: Option<u64>,
}

impl From<ConnError> for Failure {
    fn from(e: ConnError) -> Self {
        Failure {
            code: e.code(),
            retry_after_ms: None,
        }
    }
}

/// Connect + `hello` + `welcome`, keeping a closing error's `retry_after_ms`.
async fn handshake(ctx: &Ctx, i: usize) -> Result<(Conn, u64), Failure> {
    let mut conn = Conn::open(&ctx.target, i, 1024)
        .await
        .map_err(ConnError::Io)?;
    let id = conn.next_id();
    wire::hello(&mut conn.wbuf, id, &ctx.tokens[i]);
    conn.flush().await.map_err(ConnError::Io)?;
    loop {
        while let Some(r) = conn.next_frame().map_err(ConnError::Wire)? {
            let f = wire::parse(conn.payload(r)).map_err(ConnError::Wire)?;
            let hb = match f.kind {
                Kind::Welcome if f.id == Some(id) => f.heartbeat_ms,
                Kind::Error if f.id == Some(id) || f.close => {
                    return Err(Failure {
                        code: f.code_str().to_string(),
                        retry_after_ms: f.retry_after_ms,
                    })
                }
                _ => continue,
            };
            return Ok((conn, hb));
        }
        if !conn.fill().await.map_err(ConnError::Io)? {
            return Err(ConnError::Closed.into());
        }
    }
}

/// Holds a connection (reading, pinging) until it ends (`Err`) or the run stops (`Ok`).
async fn hold(conn: &mut Conn, hb: u64, stop: &mut watch::Receiver<bool>) -> Result<(), Failure> {
    let every = Duration::from_millis((hb / 2).max(100));
    let mut next_ping = tokio::time::Instant::now() + every;
    loop {
        if *stop.borrow_and_update() {
            return Ok(());
        }
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            read = conn.fill() => {
                if !read.map_err(ConnError::Io)? {
                    return Err(ConnError::Closed.into());
                }
                while let Some(r) = conn.next_frame().map_err(ConnError::Wire)? {
                    let f = wire::parse(conn.payload(r)).map_err(ConnError::Wire)?;
                    if f.kind == Kind::Error && f.close {
                        return Err(Failure {
                            code: f.code_str().to_string(),
                            retry_after_ms: f.retry_after_ms,
                        });
                    }
                }
            }
            _ = tokio::time::sleep_until(next_ping) => {
                let id = conn.next_id();
                wire::ping(&mut conn.wbuf, id);
                conn.flush().await.map_err(ConnError::Io)?;
                next_ping += every;
            }
        }
    }
}

/// A small per-client PRNG (xorshift64*) for jitter; no shared state.
struct Jitter(u64);

impl Jitter {
    fn new(i: usize) -> Jitter {
        Jitter((clock::now_ns() ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

async fn client(ctx: Arc<Ctx>, i: usize, mut stop: watch::Receiver<bool>) {
    let (stats, m, a) = (&ctx.stats, &ctx.marks, &ctx.args);
    let start = clock::now_ns();
    let first = {
        let _permit = ctx.setup.acquire().await;
        tokio::time::timeout(ctx.setup_timeout, handshake(&ctx, i)).await
    };
    let (mut conn, mut hb) = match first {
        Ok(Ok(x)) => x,
        Ok(Err(f)) => {
            stats.error(&f.code);
            stats.conns_failed.fetch_add(1, Relaxed);
            ctx.bump(&m.settled);
            return;
        }
        Err(_) => {
            stats.error("timeout");
            stats.conns_failed.fetch_add(1, Relaxed);
            ctx.bump(&m.settled);
            return;
        }
    };
    stats.record_named("connect", clock::now_ns().saturating_sub(start));
    stats.conns_ready.fetch_add(1, Relaxed);
    stats.conns_open.fetch_add(1, Relaxed);
    ctx.bump(&m.settled);

    let mut rng = Jitter::new(i);
    // Once for the restart; a client that is back and loses its connection
    // again (a second restart) counts the error and stops: one storm per run.
    for round in 0..2 {
        let ended = hold(&mut conn, hb, &mut stop).await;
        stats.conns_open.fetch_sub(1, Relaxed);
        let Err(cause) = ended else {
            conn.shutdown().await;
            return;
        };
        drop(conn);
        stats.error(&cause.code);
        if round == 1 {
            return;
        }
        let gone = clock::now_ns();
        set_min(&m.first_gone_ns, gone);
        let _ = ctx.deadline_ns.fetch_update(Relaxed, Relaxed, |d| {
            (d == u64::MAX).then(|| gone + a.duration.as_nanos() as u64)
        });
        ctx.bump(&m.gone);
        let deadline = ctx.deadline_ns.load(Relaxed);
        let mut backoff = a.backoff_initial;
        let mut wait = next_wait(&mut rng, &cause, &mut backoff, a);
        let got = loop {
            let now = clock::now_ns();
            if now + (wait.as_nanos() as u64) >= deadline || *stop.borrow() {
                break None;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => break None,
            }
            m.attempts.fetch_add(1, Relaxed);
            let t = clock::now_ns();
            let attempt = tokio::time::timeout(a.attempt_timeout, handshake(&ctx, i))
                .await
                .unwrap_or_else(|_| {
                    Err(Failure {
                        code: "timeout".into(),
                        retry_after_ms: None,
                    })
                });
            match attempt {
                Ok(x) => {
                    let now = clock::now_ns();
                    stats.record_named("handshake", now.saturating_sub(t));
                    stats.record_named("reconnect", now.saturating_sub(gone));
                    break Some(x);
                }
                Err(f) => {
                    stats.error(&f.code);
                    wait = next_wait(&mut rng, &f, &mut backoff, a);
                }
            }
        };
        let Some((c, h)) = got else {
            ctx.bump(&m.given_up);
            return;
        };
        let now = clock::now_ns();
        set_min(&m.first_back_ns, now);
        m.last_back_ns.fetch_max(now, Relaxed);
        stats.conns_open.fetch_add(1, Relaxed);
        ctx.bump(&m.back);
        (conn, hb) = (c, h);
    }
}

/// The wait before the next attempt: the server's `retry_after_ms` with jitter
/// if it gave one, else exponential backoff with equal jitter.
fn next_wait(rng: &mut Jitter, f: &Failure, backoff: &mut Duration, a: &ReconnectArgs) -> Duration {
    match f.retry_after_ms {
        Some(ms) => Duration::from_millis(ms).mul_f64(1.0 + a.jitter * rng.unit()),
        None => {
            let b = *backoff;
            *backoff = (b * 2).min(a.backoff_max);
            b / 2 + (b / 2).mul_f64(rng.unit())
        }
    }
}
