//! `connect-storm`: how many handshakes (TCP connect, `hello`, `welcome`) the
//! server completes per second. `--concurrency` workers each run handshakes
//! back to back until `--connections` are done or `--duration` passed.

use super::user_id;
use crate::clock;
use crate::conn::Conn;
use crate::opts::{Common, StormArgs};
use crate::procfs::CpuMeter;
use crate::progress::Progress;
use crate::report::{Report, ServerUsage};
use crate::stats::Shared;
use crate::tokens::Tokens;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub async fn run(common: &Common, args: &StormArgs) -> anyhow::Result<Report> {
    let target = Arc::new(common.target()?);
    anyhow::ensure!(
        args.connections > 0 && args.concurrency > 0,
        "--connections and --concurrency must be positive"
    );
    super::check_fd_limit(
        if args.hold {
            args.connections
        } else {
            args.concurrency
        },
        common.transport,
    )?;
    let tokens = Arc::new(Tokens::new(
        common.secret.as_deref(),
        common.token_cmd.as_deref(),
    )?);
    // Tokens are minted before the clock starts: the storm measures the server, not HMAC.
    let mut minted = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        minted.push(tokens.get(&user_id(common, &i.to_string())).await?);
    }
    let minted = Arc::new(minted);
    let stats = Arc::new(Shared::default());
    let next = Arc::new(AtomicUsize::new(0));
    let held = Arc::new(Mutex::new(Vec::new()));
    let progress = Progress::start(
        "connect-storm",
        stats.clone(),
        args.connections as u64,
        common.quiet,
    );
    let tool_cpu = CpuMeter::start("self");
    let server_cpu = common.server_pid.map(|p| CpuMeter::start(p.to_string()));
    let t0 = Instant::now();
    let deadline = t0 + args.duration;
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.min(args.connections) {
        let (target, minted, stats, next, held) = (
            target.clone(),
            minted.clone(),
            stats.clone(),
            next.clone(),
            held.clone(),
        );
        let (hold, timeout) = (args.hold, common.setup_timeout);
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= minted.len() || Instant::now() >= deadline {
                    return;
                }
                let start = clock::now_ns();
                let r = tokio::time::timeout(timeout, async {
                    let mut c = Conn::open(&target, i, 512).await?;
                    c.hello(&minted[i]).await?;
                    Ok::<_, crate::conn::ConnError>(c)
                })
                .await
                .unwrap_or(Err(crate::conn::ConnError::Timeout));
                match r {
                    Ok(mut c) => {
                        stats.record_named("handshake", clock::now_ns().saturating_sub(start));
                        stats.conns_ready.fetch_add(1, Relaxed);
                        if hold {
                            if let Ok(mut h) = held.lock() {
                                h.push(c);
                            }
                        } else {
                            c.shutdown().await;
                        }
                    }
                    Err(e) => {
                        stats.error(&e.code());
                        stats.conns_failed.fetch_add(1, Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let mut report = Report {
        scenario: "connect-storm".into(),
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
    progress.stop();
    if let Ok(mut h) = held.lock() {
        h.clear();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    report.take_stats(&stats);
    report.extra.insert(
        "handshakes_per_second".into(),
        report.connections as f64 / elapsed.max(1e-9),
    );
    Ok(report)
}
