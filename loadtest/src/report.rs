//! The end-of-run report: one struct, printed as a human summary and written
//! as JSON (`--json FILE`).

use crate::stats::Shared;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

/// Percentiles of one latency histogram, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        Some(Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1e6,
        })
    }
}

/// Delivery accounting. `expected` is known only when membership is fixed
/// (every scenario but `mixed`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Deliveries {
    pub expected: Option<u64>,
    pub received: u64,
    /// expected - received (never negative; see `extra`).
    pub lost: Option<u64>,
    /// received - expected when positive (sends committed but never acknowledged).
    pub extra: Option<u64>,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Pushes for a room the receiver did not follow.
    pub stray: u64,
    /// Socket reads that returned data, on receiving connections.
    pub reads: u64,
    /// `received` / the time from the start of publishing to the last delivery.
    pub per_second: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Publishes {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    /// `acked` / the time from the start of publishing to the last ack.
    pub acked_per_second: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerUsage {
    pub pid: u32,
    /// CPU used during the measured window, percent of one core.
    pub cpu_percent: Option<f64>,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    /// (after - before) / connections, for `idle`.
    pub rss_per_connection_kib: Option<f64>,
    /// RSS sampled every `--rss-every` while publishing (seconds since the start
    /// of publishing, KiB).
    pub rss_samples: Vec<RssSample>,
    /// The largest sample (before, after and every sample in between).
    pub rss_peak_kib: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct RssSample {
    pub t_s: f64,
    pub kib: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    pub transport: String,
    pub target: String,
    /// The scenario's parameters as given.
    pub params: serde_json::Value,
    pub connections: u64,
    pub connections_failed: u64,
    /// Seconds from the start of the measured phase to its last event.
    pub elapsed_s: f64,
    pub publishes: Publishes,
    pub deliveries: Deliveries,
    /// Errors by code (server codes, or io / closed / timeout / connect_refused / bad_frame).
    pub errors: BTreeMap<String, u64>,
    pub latency: BTreeMap<String, Latency>,
    /// This tool's own CPU during the measured window, percent of one core.
    pub tool_cpu_percent: Option<f64>,
    pub tool_rss_kib: Option<u64>,
    pub server: Option<ServerUsage>,
    /// Scenario-specific figures (handshakes/s, requests/s by kind, ...).
    pub extra: BTreeMap<String, f64>,
}

impl Report {
    /// Fills the counters, errors and latencies from the shared stats.
    pub fn take_stats(&mut self, s: &Shared) {
        self.publishes.sent = s.published.load(Relaxed);
        self.publishes.acked = s.acked.load(Relaxed);
        self.publishes.failed = s.publish_errors.load(Relaxed);
        self.deliveries.received = s.delivered.load(Relaxed);
        self.deliveries.duplicates = s.duplicates.load(Relaxed);
        self.deliveries.out_of_order = s.out_of_order.load(Relaxed);
        self.deliveries.stray = s.stray.load(Relaxed);
        self.deliveries.reads = s.reads.load(Relaxed);
        self.connections = s.conns_ready.load(Relaxed);
        self.connections_failed = s.conns_failed.load(Relaxed);
        if let Ok(e) = s.errors.lock() {
            self.errors = e.clone();
        }
        if let Some(l) = s.delivery_latency.lock().ok().and_then(|h| Latency::of(&h)) {
            self.latency.insert("delivery".into(), l);
        }
        if let Some(l) = s.ack_latency.lock().ok().and_then(|h| Latency::of(&h)) {
            self.latency.insert("ack".into(), l);
        }
        if let Ok(named) = s.named.lock() {
            for (k, h) in named.iter() {
                if let Some(l) = Latency::of(h) {
                    self.latency.insert(k.clone(), l);
                }
            }
        }
        self.tool_rss_kib = crate::procfs::rss_kib("self");
    }

    /// Sets `expected`, `lost` and `extra` from the expected delivery count.
    pub fn set_expected(&mut self, expected: u64) {
        let d = &mut self.deliveries;
        d.expected = Some(expected);
        d.lost = Some(expected.saturating_sub(d.received));
        d.extra = Some(d.received.saturating_sub(expected));
    }

    /// Whether the run is clean: nothing lost, duplicated, reordered or failed.
    pub fn is_clean(&self) -> bool {
        let d = &self.deliveries;
        d.lost.unwrap_or(0) == 0
            && d.duplicates == 0
            && d.out_of_order == 0
            && self.publishes.failed == 0
            && self.publishes.acked == self.publishes.sent
            && self.connections_failed == 0
    }

    /// The human summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== roomcast-load {} over {} to {} ==",
            self.scenario, self.transport, self.target
        );
        let _ = writeln!(
            s,
            "connections   {} ready, {} failed; measured window {:.2} s",
            self.connections, self.connections_failed, self.elapsed_s
        );
        let p = &self.publishes;
        if p.sent > 0 {
            let _ = writeln!(
                s,
                "publishes     {} sent, {} acknowledged, {} failed  ->  {} acked publishes/s",
                p.sent,
                p.acked,
                p.failed,
                human(p.acked_per_second)
            );
        }
        let d = &self.deliveries;
        if d.received > 0 || d.expected.is_some_and(|e| e > 0) {
            let expected = d.expected.map_or("n/a".into(), |e| e.to_string());
            let lost = d.lost.map_or("n/a".into(), |e| e.to_string());
            let _ = writeln!(
                s,
                "deliveries    {} received of {} expected; lost {}, duplicates {}, out of order {}{}  ->  {} deliveries/s",
                d.received,
                expected,
                lost,
                d.duplicates,
                d.out_of_order,
                match d.extra {
                    Some(x) if x > 0 => format!(", extra {x}"),
                    _ => String::new(),
                },
                human(d.per_second)
            );
            if d.reads > 0 {
                let _ = writeln!(
                    s,
                    "reads         {} socket reads with data, {:.1} deliveries per read",
                    d.reads,
                    d.received as f64 / d.reads as f64
                );
            }
        }
        for (name, l) in &self.latency {
            let _ = writeln!(
                s,
                "latency {:<9} n={} p50 {:.3} ms  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                name, l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
            );
        }
        for (k, v) in &self.extra {
            let _ = writeln!(s, "{k:<28} {}", human(*v));
        }
        if self.errors.is_empty() {
            let _ = writeln!(s, "errors        none");
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(s, "errors        {}", list.join(" "));
        }
        if let Some(cpu) = self.tool_cpu_percent {
            let _ = writeln!(
                s,
                "load tool     cpu {cpu:.0}% of a core, rss {} KiB",
                self.tool_rss_kib.unwrap_or(0)
            );
        }
        if let Some(sv) = &self.server {
            let _ = write!(s, "server pid {}", sv.pid);
            if let Some(c) = sv.cpu_percent {
                let _ = write!(s, "  cpu {c:.0}% of a core");
            }
            if let (Some(b), Some(a)) = (sv.rss_before_kib, sv.rss_after_kib) {
                let _ = write!(s, "  rss {b} -> {a} KiB");
            }
            if let Some(per) = sv.rss_per_connection_kib {
                let _ = write!(s, "  = {per:.2} KiB per connection");
            }
            if let Some(peak) = sv.rss_peak_kib {
                let _ = write!(s, "  peak {peak} KiB");
            }
            let _ = writeln!(s);
            if !sv.rss_samples.is_empty() {
                // At most 12 samples on the line, evenly spread; the JSON has all.
                let step = sv.rss_samples.len().div_ceil(12);
                let shown: Vec<String> = sv
                    .rss_samples
                    .iter()
                    .step_by(step)
                    .map(|r| format!("{:.0}s {}M", r.t_s, r.kib / 1024))
                    .collect();
                let _ = writeln!(s, "server rss    {}", shown.join("  "));
            }
        }
        s
    }
}

/// 1234567.0 -> "1.23M".
pub fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}
