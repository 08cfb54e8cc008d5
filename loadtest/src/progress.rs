//! The live progress line on stderr, once per second: connections, rates,
//! errors. On a terminal it rewrites one line; otherwise it prints one line
//! per second (readable in logs).

use crate::report::human;
use crate::stats::Shared;
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Starts the ticker; abort the handle (or drop it via [`Progress::stop`]) to end it.
pub struct Progress {
    task: Option<JoinHandle<()>>,
    tty: bool,
}

impl Progress {
    pub fn start(name: &'static str, stats: Arc<Shared>, target_conns: u64, quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        if quiet {
            return Self { task: None, tty };
        }
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut last = (0u64, 0u64, 0u64, 0u64, Instant::now());
            loop {
                tick.tick().await;
                let now = Instant::now();
                let secs = now.duration_since(last.4).as_secs_f64().max(1e-9);
                let published = stats.published.load(Relaxed);
                let acked = stats.acked.load(Relaxed);
                let delivered = stats.delivered.load(Relaxed);
                let requests = stats.requests.load(Relaxed);
                let line = format!(
                    "[{name} {:>4.0}s] conns {}/{} (failed {}) | pub {}/s ack {}/s | deliv {}/s | req {}/s | dup {} ooo {} | errors {}",
                    now.duration_since(start).as_secs_f64(),
                    stats.conns_ready.load(Relaxed),
                    target_conns,
                    stats.conns_failed.load(Relaxed),
                    human((published - last.0) as f64 / secs),
                    human((acked - last.1) as f64 / secs),
                    human((delivered - last.2) as f64 / secs),
                    human((requests - last.3) as f64 / secs),
                    stats.duplicates.load(Relaxed),
                    stats.out_of_order.load(Relaxed),
                    stats.errors_total(),
                );
                last = (published, acked, delivered, requests, now);
                let mut err = std::io::stderr().lock();
                if tty {
                    let _ = write!(err, "\r\x1b[2K{line}");
                } else {
                    let _ = writeln!(err, "{line}");
                }
                let _ = err.flush();
            }
        });
        Self {
            task: Some(task),
            tty,
        }
    }

    pub fn stop(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            if self.tty {
                eprintln!();
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
