//! `mixed`: a chat profile. Each client holds one connection and, at
//! `--rate` requests per second, picks join / send / history / leave by the
//! `--mix` weights (a send or leave with no room joined becomes a join). It
//! receives the pushes of the rooms it is in, with the same seq checks as the
//! other scenarios; `lost` is not computed because membership keeps changing.
//! Latency is per request kind, request to reply.

use super::{room_name, run_id, user_id};
use crate::clock;
use crate::conn::{Conn, ConnError};
use crate::opts::{Common, MixedArgs};
use crate::procfs::CpuMeter;
use crate::progress::Progress;
use crate::report::{Report, ServerUsage};
use crate::stats::{Receiver, Shared};
use crate::tokens::Tokens;
use crate::transport::Target;
use crate::wire::{self, Kind};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Small deterministic PRNG (xorshift64*): no dependency, no allocation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Join,
    Send,
    History,
    Leave,
}

struct Ctx {
    target: Target,
    common: Common,
    args: MixedArgs,
    weights: [u32; 4],
    tokens: Tokens,
    stats: Arc<Shared>,
    rooms: Vec<String>,
    setup: Semaphore,
}

pub async fn run(common: &Common, args: &MixedArgs) -> anyhow::Result<Report> {
    let target = common.target()?;
    let weights = args.weights()?;
    anyhow::ensure!(
        args.clients > 0 && args.rooms > 0,
        "--clients and --rooms must be positive"
    );
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    anyhow::ensure!(
        args.body_bytes >= wire::STAMP_LEN,
        "--body-bytes must be at least {}",
        wire::STAMP_LEN
    );
    super::check_fd_limit(args.clients, common.transport)?;
    let tokens = Tokens::new(common.secret.as_deref(), common.token_cmd.as_deref())?;
    let mut admin = Conn::open(&target, 0, 4096).await?;
    admin
        .hello(&tokens.get(&user_id(common, "admin")).await?)
        .await?;
    let run = run_id();
    let mut rooms = Vec::new();
    for k in 0..args.rooms {
        rooms.push(admin.create_room(&room_name("mixed", &run, k)).await?);
    }
    admin.shutdown().await;
    let stats = Arc::new(Shared::default());
    let ctx = Arc::new(Ctx {
        target,
        common: common.clone(),
        args: args.clone(),
        weights,
        tokens,
        stats: stats.clone(),
        rooms,
        setup: Semaphore::new(common.connect_concurrency.max(1)),
    });
    let progress = Progress::start("mixed", stats.clone(), args.clients as u64, common.quiet);
    let tool_cpu = CpuMeter::start("self");
    let server_cpu = common.server_pid.map(|p| CpuMeter::start(p.to_string()));
    let t0 = Instant::now();
    let deadline = t0 + args.duration;
    let tasks: Vec<_> = (0..args.clients)
        .map(|i| tokio::spawn(client(ctx.clone(), i, deadline)))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    progress.stop();
    let elapsed = t0.elapsed().as_secs_f64();
    let mut report = Report {
        scenario: "mixed".into(),
        transport: format!("{:?}", common.transport).to_lowercase(),
        target: common.addr().to_string(),
        params: serde_json::to_value(args)?,
        elapsed_s: elapsed,
        tool_cpu_percent: tool_cpu.percent(),
        ..Report::default()
    };
    if let Some(pid) = common.server_pid {
        report.server = Some(ServerUsage {
            pid,
            cpu_percent: server_cpu.and_then(|m| m.percent()),
            rss_after_kib: crate::procfs::rss_kib(&pid.to_string()),
            ..ServerUsage::default()
        });
    }
    report.take_stats(&stats);
    report.deliveries.per_second = report.deliveries.received as f64 / elapsed.max(1e-9);
    report.publishes.acked_per_second = report.publishes.acked as f64 / elapsed.max(1e-9);
    report.extra.insert(
        "requests_per_second".into(),
        stats.requests.load(Relaxed) as f64 / elapsed.max(1e-9),
    );
    Ok(report)
}

async fn client(ctx: Arc<Ctx>, i: usize, deadline: Instant) {
    let stats = &ctx.stats;
    let setup = async {
        let _permit = ctx.setup.acquire().await;
        let token = ctx
            .tokens
            .get(&user_id(&ctx.common, &i.to_string()))
            .await
            .map_err(|e| ConnError::Server("token".into(), e.to_string(), true))?;
        tokio::time::timeout(ctx.common.setup_timeout, async {
            let mut c = Conn::open(&ctx.target, i, 16 * 1024).await?;
            c.hello(&token).await?;
            Ok(c)
        })
        .await
        .unwrap_or(Err(ConnError::Timeout))
    };
    let mut conn = match setup.await {
        Ok(c) => c,
        Err(e) => {
            stats.error(&e.code());
            stats.conns_failed.fetch_add(1, Relaxed);
            return;
        }
    };
    stats.conns_ready.fetch_add(1, Relaxed);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    let interval = Duration::from_secs_f64(1.0 / ctx.args.rate);
    let mut next = Instant::now() + interval.mul_f64(rng.below(1000) as f64 / 1000.0);
    let mut rx = Receiver::default();
    let mut joined: Vec<usize> = Vec::new();
    let mut body = wire::body_template(ctx.args.body_bytes);
    let total: u32 = ctx.weights.iter().sum();
    let result: Result<(), ConnError> = async {
        loop {
            // Receive pushes until the next request is due.
            while Instant::now() < next {
                tokio::select! {
                    read = conn.fill() => {
                        if !read? {
                            return Err(ConnError::Closed);
                        }
                        let now_ns = clock::now_ns();
                        while let Some(r) = conn.next_frame()? {
                            let f = wire::parse(conn.payload(r))?;
                            match f.kind {
                                Kind::Msg => rx.on_msg(&f, now_ns),
                                Kind::Error => {
                                    stats.error(f.code_str());
                                    if f.close {
                                        return Err(ConnError::Closed);
                                    }
                                }
                                _ => {}
                            }
                        }
                        rx.local.flush(stats);
                    }
                    _ = tokio::time::sleep_until(next.into()) => {}
                }
            }
            if Instant::now() >= deadline {
                return Ok(());
            }
            next += interval;
            let mut pick = (rng.next() % u64::from(total)) as u32;
            let mut op = Op::Join;
            for (w, o) in ctx
                .weights
                .iter()
                .zip([Op::Join, Op::Send, Op::History, Op::Leave])
            {
                if pick < *w {
                    op = o;
                    break;
                }
                pick -= w;
            }
            if joined.is_empty() && matches!(op, Op::Send | Op::Leave) {
                op = Op::Join;
            }
            if op == Op::Join && joined.len() == ctx.rooms.len() {
                op = Op::Send;
            }
            let id = conn.next_id();
            let start = clock::now_ns();
            let (name, want, room_idx) = match op {
                Op::Join => {
                    let mut r = rng.below(ctx.rooms.len());
                    while joined.contains(&r) {
                        r = (r + 1) % ctx.rooms.len();
                    }
                    wire::join(&mut conn.wbuf, id, &ctx.rooms[r]);
                    ("join", Kind::Joined, r)
                }
                Op::Send => {
                    let r = joined[rng.below(joined.len())];
                    wire::stamp_body(&mut body, start);
                    wire::send(&mut conn.wbuf, id, &ctx.rooms[r], &body);
                    rx.local.published += 1;
                    ("send", Kind::Sent, r)
                }
                Op::History => {
                    let r = rng.below(ctx.rooms.len());
                    wire::history(&mut conn.wbuf, id, &ctx.rooms[r], ctx.args.history_limit);
                    ("history", Kind::History, r)
                }
                Op::Leave => {
                    let r = joined[rng.below(joined.len())];
                    wire::leave(&mut conn.wbuf, id, &ctx.rooms[r]);
                    ("leave", Kind::Left, r)
                }
            };
            let reply = conn
                .call(id, want, |f| {
                    if f.kind == Kind::Msg {
                        rx.on_msg(f, clock::now_ns());
                    }
                })
                .await;
            let done = clock::now_ns();
            match reply {
                Ok(reply) => {
                    stats.record_named(name, done.saturating_sub(start));
                    rx.local.requests += 1;
                    match op {
                        Op::Join => {
                            joined.push(room_idx);
                            rx.follow(&ctx.rooms[room_idx], room_idx, reply.seq);
                        }
                        Op::Leave => {
                            joined.retain(|r| *r != room_idx);
                            rx.unfollow(&ctx.rooms[room_idx]);
                        }
                        Op::Send => {
                            rx.local.acked += 1;
                            rx.local.last_ack_ns = done;
                        }
                        Op::History => {}
                    }
                }
                Err(ConnError::Server(code, _, close)) => {
                    stats.error(&code);
                    if op == Op::Send {
                        rx.local.publish_errors += 1;
                    }
                    if close {
                        return Err(ConnError::Closed);
                    }
                }
                Err(e) => return Err(e),
            }
            rx.local.flush(stats);
        }
    }
    .await;
    rx.local.flush(stats);
    if let Err(e) = result {
        if !matches!(e, ConnError::Closed) || Instant::now() < deadline {
            stats.error(&e.code());
        }
    }
    conn.shutdown().await;
}
