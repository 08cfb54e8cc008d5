//! Rooms × members × publishers: the engine behind `fanout`, `bigroom`,
//! `latency` and `idle`.
//!
//! Phases: *setup* (create the rooms, then every member connects, says hello
//! and joins, `--connect-concurrency` at a time), *run* (publishers send,
//! everyone receives; with no publishers the connections are just held), and
//! *stop* (after the last publisher's last ack, wait up to `--drain` for the
//! remaining deliveries). Every member is one task owning one connection;
//! publishers are members too and receive their own messages.
//!
//! Accounting: `expected = Σ_rooms acked publishes(room) × members joined(room)`.

use super::{room_name, run_id, user_id, Phase};
use crate::clock::{self, ns_of};
use crate::conn::{Conn, ConnError};
use crate::opts::{Common, RoomsArgs};
use crate::procfs::{self, CpuMeter};
use crate::progress::Progress;
use crate::report::{Report, RssSample, ServerUsage};
use crate::stats::{Local, Receiver, Shared};
use crate::tokens::Tokens;
use crate::transport::Target;
use crate::wire::{self, Kind};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify, Semaphore};

/// Publisher request ids start here, far above the few setup/ping ids.
const PUBLISH_ID_BASE: u64 = 1 << 32;
/// Rooms created per admin user (the server's default quota is 500 owned rooms).
const ROOMS_PER_ADMIN: usize = 400;
/// A publisher stops filling its write buffer past this many bytes per wake-up.
const WRITE_BATCH: usize = 64 * 1024;

struct Ctx {
    target: Target,
    common: Common,
    args: RoomsArgs,
    tokens: Tokens,
    stats: Arc<Shared>,
    rooms: Vec<String>,
    room_members: Vec<AtomicU64>,
    room_acked: Vec<AtomicU64>,
    publishers: usize,
    publishers_done: AtomicU64,
    settled: AtomicU64,
    changed: Notify,
    setup: Semaphore,
}

/// Runs the scenario to its end and returns the report.
pub async fn run(scenario: &str, common: &Common, args: &RoomsArgs) -> anyhow::Result<Report> {
    let target = common.target()?;
    anyhow::ensure!(
        args.rooms > 0 && args.members > 0,
        "--rooms and --members must be positive"
    );
    anyhow::ensure!(
        args.publishers <= args.members,
        "--publishers ({}) cannot exceed --members ({})",
        args.publishers,
        args.members
    );
    anyhow::ensure!(args.inflight > 0, "--inflight must be positive");
    anyhow::ensure!(
        args.body_bytes >= wire::STAMP_LEN,
        "--body-bytes must be at least {} (the send timestamp)",
        wire::STAMP_LEN
    );
    let total = args.rooms * args.members;
    super::check_fd_limit(total, common.transport)?;
    let tokens = Tokens::new(common.secret.as_deref(), common.token_cmd.as_deref())?;
    let stats = Arc::new(Shared::default());
    let server_pid = common.server_pid.map(|p| p.to_string());
    let rss_before = server_pid.as_deref().and_then(procfs::rss_kib);
    let tool_rss_before = procfs::rss_kib("self");

    // Rooms, created by admin connections: one admin per ROOMS_PER_ADMIN rooms,
    // under the server's default per-user quotas (500 rooms owned, 2,000
    // memberships), so small-room runs of 10,000 rooms need no server flags.
    let run = run_id();
    let mut rooms = Vec::with_capacity(args.rooms);
    for (a, chunk) in (0..args.rooms)
        .collect::<Vec<_>>()
        .chunks(ROOMS_PER_ADMIN)
        .enumerate()
    {
        let name = if a == 0 {
            "admin".to_string()
        } else {
            format!("admin{a}")
        };
        let mut admin = Conn::open(&target, 0, 4096).await?;
        admin
            .hello(&tokens.get(&user_id(common, &name)).await?)
            .await?;
        for &k in chunk {
            rooms.push(admin.create_room(&room_name(scenario, &run, k)).await?);
        }
        admin.shutdown().await;
    }

    let ctx = Arc::new(Ctx {
        target,
        common: common.clone(),
        args: args.clone(),
        tokens,
        stats: stats.clone(),
        room_members: rooms.iter().map(|_| AtomicU64::new(0)).collect(),
        room_acked: rooms.iter().map(|_| AtomicU64::new(0)).collect(),
        rooms,
        publishers: args.rooms * args.publishers,
        publishers_done: AtomicU64::new(0),
        settled: AtomicU64::new(0),
        changed: Notify::new(),
        setup: Semaphore::new(common.connect_concurrency.max(1)),
    });
    let progress = Progress::start(
        static_name(scenario),
        stats.clone(),
        total as u64,
        common.quiet,
    );
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        tasks.push(tokio::spawn(member(ctx.clone(), i, phase_rx.clone())));
    }
    drop(phase_rx);
    wait_until(&ctx, || ctx.settled.load(Relaxed) as usize >= total).await;

    let mut report = Report {
        scenario: scenario.to_string(),
        transport: format!("{:?}", common.transport).to_lowercase(),
        target: common.addr().to_string(),
        params: serde_json::to_value(args)?,
        ..Report::default()
    };
    let joined = stats.conns_ready.load(Relaxed);
    let mut rss_setup = None;
    if ctx.publishers == 0 {
        // Idle: let the server settle, then read its memory.
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_setup = server_pid.as_deref().and_then(procfs::rss_kib);
        if let (Some(a), Some(b)) = (procfs::rss_kib("self"), tool_rss_before) {
            report.extra.insert(
                "tool_rss_per_connection_kib".into(),
                a.saturating_sub(b) as f64 / joined.max(1) as f64,
            );
        }
    }

    if let Some(cmd) = &common.on_run {
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .status()
            .await?;
        anyhow::ensure!(status.success(), "--on-run {cmd:?} failed: {status}");
    }

    // Run.
    let t0 = Instant::now();
    let t0_ns = ns_of(t0);
    let tool_cpu = CpuMeter::start("self");
    let server_cpu = server_pid.as_deref().map(CpuMeter::start);
    let _ = phase_tx.send(Phase::Run);
    let sampler = server_pid
        .clone()
        .filter(|_| ctx.publishers > 0)
        .map(|pid| tokio::spawn(sample_rss(pid, args.rss_every, t0, phase_tx.subscribe())));
    let mut expected = 0u64;
    if ctx.publishers > 0 {
        let guard = args.duration + common.setup_timeout * 2;
        let finished = tokio::time::timeout(
            guard,
            wait_until(&ctx, || {
                ctx.publishers_done.load(Relaxed) as usize >= ctx.publishers
            }),
        )
        .await;
        if finished.is_err() {
            stats.error("publishers_stuck");
        }
        for (acked, members) in ctx.room_acked.iter().zip(&ctx.room_members) {
            expected += acked.load(Relaxed) * members.load(Relaxed);
        }
        let drain_end = Instant::now() + args.drain;
        while stats.delivered.load(Relaxed) < expected && Instant::now() < drain_end {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    } else {
        let open = stats.conns_open.load(Relaxed) as f64;
        report.extra.insert("open_at_start_of_hold".into(), open);
        tokio::time::sleep(args.duration).await;
        let open = stats.conns_open.load(Relaxed) as f64;
        report.extra.insert("open_at_end_of_hold".into(), open);
    }
    report.tool_cpu_percent = tool_cpu.percent();
    let server_cpu = server_cpu.and_then(|m| m.percent());
    let rss_after = server_pid.as_deref().and_then(procfs::rss_kib);
    let _ = phase_tx.send(Phase::Stop);
    let rss_samples = match sampler {
        Some(s) => s.await.unwrap_or_default(),
        None => Vec::new(),
    };
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    progress.stop();

    report.take_stats(&stats);
    let elapsed_to = |ns: u64| {
        if ns > t0_ns {
            (ns - t0_ns) as f64 / 1e9
        } else {
            t0.elapsed().as_secs_f64()
        }
    };
    let delivery_s = elapsed_to(stats.last_delivery_ns.load(Relaxed));
    let ack_s = elapsed_to(stats.last_ack_ns.load(Relaxed));
    report.elapsed_s = if ctx.publishers > 0 {
        delivery_s.max(ack_s)
    } else {
        t0.elapsed().as_secs_f64()
    };
    report.publishes.acked_per_second = report.publishes.acked as f64 / ack_s.max(1e-9);
    report.deliveries.per_second = report.deliveries.received as f64 / delivery_s.max(1e-9);
    if ctx.publishers > 0 {
        report.set_expected(expected);
    }
    if let Some(pid) = common.server_pid {
        let after = if ctx.publishers == 0 {
            rss_setup
        } else {
            rss_after
        };
        report.server = Some(ServerUsage {
            pid,
            cpu_percent: server_cpu,
            rss_before_kib: rss_before,
            rss_after_kib: after,
            rss_per_connection_kib: match (rss_before, after) {
                (Some(b), Some(a)) if ctx.publishers == 0 => {
                    Some(a.saturating_sub(b) as f64 / joined.max(1) as f64)
                }
                _ => None,
            },
            rss_peak_kib: rss_samples
                .iter()
                .map(|r| r.kib)
                .chain(rss_before)
                .chain(after)
                .max(),
            rss_samples,
        });
        if let (Some(a), true) = (rss_after, ctx.publishers == 0) {
            report
                .extra
                .insert("server_rss_after_hold_kib".into(), a as f64);
        }
    }
    Ok(report)
}

/// The server's RSS every `every` until the run stops (overload: memory over time).
async fn sample_rss(
    pid: String,
    every: Duration,
    t0: Instant,
    mut phase: watch::Receiver<Phase>,
) -> Vec<RssSample> {
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(kib) = procfs::rss_kib(&pid) {
                    out.push(RssSample { t_s: t0.elapsed().as_secs_f64(), kib });
                }
            }
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() == Phase::Stop {
                    break;
                }
            }
        }
    }
    out
}

fn static_name(s: &str) -> &'static str {
    match s {
        "fanout" => "fanout",
        "bigroom" => "bigroom",
        "latency" => "latency",
        "idle" => "idle",
        "smallrooms" => "smallrooms",
        "direct" => "direct",
        "overload" => "overload",
        _ => "rooms",
    }
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

async fn setup(ctx: &Ctx, i: usize, room: &str) -> Result<(Conn, u64, u64), ConnError> {
    let _permit = ctx.setup.acquire().await;
    let token = ctx
        .tokens
        .get(&user_id(&ctx.common, &i.to_string()))
        .await
        .map_err(|e| ConnError::Server("token".into(), e.to_string(), true))?;
    tokio::time::timeout(ctx.common.setup_timeout, async {
        let start = clock::now_ns();
        let mut c = Conn::open(&ctx.target, i, ctx.args.read_buffer).await?;
        // Counted open until setup fails or times out (the guard's drop).
        let open = OpenGuard::new(&ctx.stats);
        let hb = c.hello(&token).await?;
        ctx.stats
            .record_named("handshake", clock::now_ns().saturating_sub(start));
        let seq = c.join(room).await?;
        open.keep();
        Ok((c, seq, hb))
    })
    .await
    .map_err(|_| ConnError::Timeout)?
}

/// Counts a connection in `conns_open` from its opening; uncounts it when
/// dropped before [`OpenGuard::keep`] (setup failed or timed out).
struct OpenGuard<'a> {
    stats: &'a Shared,
    kept: bool,
}

impl<'a> OpenGuard<'a> {
    fn new(stats: &'a Shared) -> Self {
        stats.conns_open.fetch_add(1, Relaxed);
        OpenGuard { stats, kept: false }
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.stats.conns_open.fetch_sub(1, Relaxed);
        }
    }
}

/// One simulated member: set up, then receive (and publish, if it is a publisher) until stopped.
async fn member(ctx: Arc<Ctx>, i: usize, mut phase: watch::Receiver<Phase>) {
    let nrooms = ctx.rooms.len();
    let room_idx = i % nrooms;
    let slot = i / nrooms;
    let publisher = slot < ctx.args.publishers;
    let settle = |ctx: &Ctx| {
        ctx.settled.fetch_add(1, Relaxed);
        ctx.changed.notify_waiters();
    };
    let (mut conn, seq, hb) = match setup(&ctx, i, &ctx.rooms[room_idx]).await {
        Ok(x) => x,
        Err(e) => {
            ctx.stats.error(&e.code());
            ctx.stats.conns_failed.fetch_add(1, Relaxed);
            if publisher {
                ctx.publishers_done.fetch_add(1, Relaxed);
            }
            settle(&ctx);
            return;
        }
    };
    ctx.room_members[room_idx].fetch_add(1, Relaxed);
    ctx.stats.conns_ready.fetch_add(1, Relaxed);
    settle(&ctx);

    let mut rx = Receiver::default();
    rx.follow(&ctx.rooms[room_idx], room_idx, seq);
    let mut publ = publisher.then(|| {
        let index = slot * nrooms + room_idx;
        Publisher::new(&ctx, room_idx, index)
    });
    let ping_every = Duration::from_millis((hb / 2).max(100));
    let mut next_ping = Instant::now() + ping_every;
    let mut running = false;
    let mut stopping = false;
    let result: Result<(), ConnError> = async {
        loop {
            match *phase.borrow_and_update() {
                Phase::Stop => {
                    stopping = true;
                    return Ok(());
                }
                Phase::Run if !running => {
                    running = true;
                    if let Some(p) = &mut publ {
                        p.start(Instant::now());
                    }
                }
                _ => {}
            }
            let now = Instant::now();
            let mut wake = next_ping;
            if let Some(p) = &mut publ {
                p.pump(now, &mut conn.wbuf, &mut rx.local);
                if p.finished(now) && !p.reported {
                    p.reported = true;
                    ctx.room_acked[room_idx].fetch_add(p.acked, Relaxed);
                    rx.local.flush(&ctx.stats);
                    ctx.publishers_done.fetch_add(1, Relaxed);
                    ctx.changed.notify_waiters();
                }
                wake = wake.min(p.wake(now));
            }
            if now >= next_ping {
                let id = conn.next_id();
                wire::ping(&mut conn.wbuf, id);
            }
            if !conn.wbuf.is_empty() {
                conn.flush().await?;
                next_ping = now + ping_every;
                wake = wake.min(next_ping);
            }
            tokio::select! {
                biased;
                changed = phase.changed() => {
                    if changed.is_err() {
                        stopping = true;
                        return Ok(());
                    }
                }
                read = conn.fill() => {
                    if !read? {
                        return Err(ConnError::Closed);
                    }
                    rx.local.reads += 1;
                    let now_ns = clock::now_ns();
                    while let Some(r) = conn.next_frame()? {
                        let f = wire::parse(conn.payload(r))?;
                        match f.kind {
                            Kind::Msg => rx.on_msg(&f, now_ns),
                            Kind::Sent => {
                                if let (Some(p), Some(id)) = (&mut publ, f.id) {
                                    p.on_ack(id, now_ns, &mut rx.local);
                                }
                            }
                            Kind::Error => {
                                ctx.stats.error(f.code_str());
                                if let (Some(p), Some(id)) = (&mut publ, f.id) {
                                    p.on_error(id, &mut rx.local);
                                }
                                if f.close {
                                    rx.local.flush(&ctx.stats);
                                    return Err(ConnError::Server(
                                        String::new(),
                                        f.message_str().to_string(),
                                        true,
                                    ));
                                }
                            }
                            _ => {}
                        }
                    }
                    rx.local.flush(&ctx.stats);
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }
    .await;
    rx.local.flush(&ctx.stats);
    if let Err(e) = result {
        // Closing server errors were counted by code when they arrived.
        if !stopping && !matches!(e, ConnError::Server(..)) {
            ctx.stats.error(&e.code());
        }
    }
    if let Some(p) = &publ {
        if !p.reported {
            ctx.room_acked[room_idx].fetch_add(p.acked, Relaxed);
            ctx.publishers_done.fetch_add(1, Relaxed);
            ctx.changed.notify_waiters();
        }
    }
    ctx.stats.conns_open.fetch_sub(1, Relaxed);
    conn.shutdown().await;
}

/// The publishing side of a member: a bounded window of sends in flight,
/// at full speed or on a fixed schedule.
struct Publisher {
    room: String,
    body: Vec<u8>,
    window: usize,
    limit: u64,
    duration: Duration,
    /// Between two sends of this publisher when rate-limited.
    interval: Option<Duration>,
    /// Start offset, so rate-limited publishers do not send in lockstep.
    offset: Duration,
    started: bool,
    deadline: Instant,
    next_due: Instant,
    next_id: u64,
    sent: u64,
    acked: u64,
    inflight: usize,
    /// Send timestamp of each id in flight, indexed by id % window.
    ring: Vec<u64>,
    reported: bool,
}

impl Publisher {
    fn new(ctx: &Ctx, room_idx: usize, index: usize) -> Publisher {
        let a = &ctx.args;
        let interval =
            (a.rate > 0.0).then(|| Duration::from_secs_f64(ctx.publishers as f64 / a.rate));
        let offset = interval.map_or(Duration::ZERO, |iv| {
            iv.mul_f64(index as f64 / ctx.publishers.max(1) as f64)
        });
        let now = Instant::now();
        Publisher {
            room: ctx.rooms[room_idx].clone(),
            body: wire::body_template(a.body_bytes),
            window: a.inflight,
            limit: a.messages,
            duration: a.duration,
            interval,
            offset,
            started: false,
            deadline: now,
            next_due: now,
            next_id: PUBLISH_ID_BASE,
            sent: 0,
            acked: 0,
            inflight: 0,
            ring: vec![0; a.inflight],
            reported: false,
        }
    }

    fn start(&mut self, now: Instant) {
        self.started = true;
        self.deadline = now + self.duration;
        self.next_due = now + self.offset;
    }

    fn sending_over(&self, now: Instant) -> bool {
        self.sent >= self.limit || now >= self.deadline
    }

    fn finished(&self, now: Instant) -> bool {
        self.started && self.sending_over(now) && self.inflight == 0
    }

    /// When the task must wake up to send, if no read wakes it first.
    fn wake(&self, now: Instant) -> Instant {
        let far = now + Duration::from_secs(3600);
        if !self.started || self.sending_over(now) {
            return far;
        }
        match self.interval {
            Some(_) if self.inflight < self.window => self.next_due.min(self.deadline),
            _ => self.deadline,
        }
    }

    /// Encodes every send now allowed (window and schedule) into `wbuf`.
    fn pump(&mut self, now: Instant, wbuf: &mut Vec<u8>, local: &mut Local) {
        if !self.started || self.sending_over(now) {
            return;
        }
        let now_ns = ns_of(now);
        while self.inflight < self.window && self.sent < self.limit && wbuf.len() < WRITE_BATCH {
            // Rate-limited sends carry their *intended* time, so a late send shows up as
            // latency instead of being hidden (no coordinated omission).
            let stamp = match self.interval {
                None => now_ns,
                Some(iv) => {
                    if self.next_due > now {
                        break;
                    }
                    let due = self.next_due;
                    self.next_due += iv;
                    ns_of(due)
                }
            };
            wire::stamp_body(&mut self.body, stamp);
            let id = self.next_id;
            self.next_id += 1;
            wire::send(wbuf, id, &self.room, &self.body);
            let slot = (id % self.window as u64) as usize;
            self.ring[slot] = stamp;
            self.sent += 1;
            self.inflight += 1;
            local.published += 1;
        }
    }

    fn owns(&self, id: u64) -> bool {
        id >= PUBLISH_ID_BASE && id < self.next_id && self.inflight > 0
    }

    fn on_ack(&mut self, id: u64, now_ns: u64, local: &mut Local) {
        if !self.owns(id) {
            return;
        }
        self.inflight -= 1;
        self.acked += 1;
        local.acked += 1;
        local.last_ack_ns = now_ns;
        let sent = self.ring[(id % self.window as u64) as usize];
        local.ack_ns.push(now_ns.saturating_sub(sent));
    }

    fn on_error(&mut self, id: u64, local: &mut Local) {
        if self.owns(id) {
            self.inflight -= 1;
            local.publish_errors += 1;
        }
    }
}
