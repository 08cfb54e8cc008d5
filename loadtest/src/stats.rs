//! Live counters shared by every connection task, and the per-connection
//! state that feeds them. Hot paths count into a task-local [`Local`] and
//! fold it into the shared atomics once per read batch, not once per frame.

use crate::wire::{self, Frame};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// A latency histogram in nanoseconds, 1 µs .. 1 h, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3).expect("static histogram bounds")
}

/// Counters every task adds to; read by the progress line and the report.
pub struct Shared {
    pub conns_open: AtomicU64,
    pub conns_ready: AtomicU64,
    pub conns_failed: AtomicU64,
    /// Sends written to the socket.
    pub published: AtomicU64,
    /// Sends acknowledged (`sent`).
    pub acked: AtomicU64,
    /// Sends answered with an error.
    pub publish_errors: AtomicU64,
    /// `msg` pushes received (all receivers).
    pub delivered: AtomicU64,
    pub duplicates: AtomicU64,
    pub out_of_order: AtomicU64,
    /// `msg` pushes for a room the connection is not tracking.
    pub stray: AtomicU64,
    /// Completed requests (mixed scenario).
    pub requests: AtomicU64,
    /// Socket reads that returned data on receiving connections (deliveries
    /// per read tells how well the server batches, and what the tool pays per
    /// system call).
    pub reads: AtomicU64,
    pub last_delivery_ns: AtomicU64,
    pub last_ack_ns: AtomicU64,
    pub errors: Mutex<BTreeMap<String, u64>>,
    pub delivery_latency: Mutex<Histogram<u64>>,
    pub ack_latency: Mutex<Histogram<u64>>,
    /// Other named latencies (handshake, join, history, ...).
    pub named: Mutex<BTreeMap<String, Histogram<u64>>>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            conns_open: AtomicU64::new(0),
            conns_ready: AtomicU64::new(0),
            conns_failed: AtomicU64::new(0),
            published: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            stray: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            last_ack_ns: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            delivery_latency: Mutex::new(new_histogram()),
            ack_latency: Mutex::new(new_histogram()),
            named: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Shared {
    /// Counts one error under `code` (server error codes, or `io`, `closed`, `timeout`, ...).
    pub fn error(&self, code: &str) {
        if let Ok(mut m) = self.errors.lock() {
            *m.entry(code.to_string()).or_default() += 1;
        }
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.lock().map(|m| m.values().sum()).unwrap_or(0)
    }

    /// Records one sample (ns) into the named histogram.
    pub fn record_named(&self, name: &str, ns: u64) {
        if let Ok(mut m) = self.named.lock() {
            m.entry(name.to_string())
                .or_insert_with(new_histogram)
                .saturating_record(ns);
        }
    }
}

/// A task's counts since its last flush.
#[derive(Default)]
pub struct Local {
    pub published: u64,
    pub acked: u64,
    pub publish_errors: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub stray: u64,
    pub requests: u64,
    pub reads: u64,
    pub last_delivery_ns: u64,
    pub last_ack_ns: u64,
    pub delivery_ns: Vec<u64>,
    pub ack_ns: Vec<u64>,
}

impl Local {
    /// Folds the counts into `s` and resets them (keeps the sample buffers' capacity).
    pub fn flush(&mut self, s: &Shared) {
        macro_rules! add {
            ($($f:ident),*) => {$(
                if self.$f > 0 {
                    s.$f.fetch_add(self.$f, Relaxed);
                    self.$f = 0;
                }
            )*};
        }
        add!(
            published,
            acked,
            publish_errors,
            delivered,
            duplicates,
            out_of_order,
            stray,
            requests,
            reads
        );
        if self.last_delivery_ns > 0 {
            s.last_delivery_ns.fetch_max(self.last_delivery_ns, Relaxed);
        }
        if self.last_ack_ns > 0 {
            s.last_ack_ns.fetch_max(self.last_ack_ns, Relaxed);
        }
        if !self.delivery_ns.is_empty() {
            if let Ok(mut h) = s.delivery_latency.lock() {
                for v in self.delivery_ns.drain(..) {
                    h.saturating_record(v);
                }
            }
        }
        if !self.ack_ns.is_empty() {
            if let Ok(mut h) = s.ack_latency.lock() {
                for v in self.ack_ns.drain(..) {
                    h.saturating_record(v);
                }
            }
        }
    }
}

/// Per-room seq tracking for one receiving connection.
pub struct Track {
    pub room: Box<str>,
    /// Index of the room in the scenario's room list.
    pub index: usize,
    pub last_seq: u64,
}

/// The receive side of one connection: which rooms it follows and their seqs.
#[derive(Default)]
pub struct Receiver {
    pub tracks: Vec<Track>,
    pub local: Local,
}

impl Receiver {
    pub fn follow(&mut self, room: &str, index: usize, seq: u64) {
        self.tracks.retain(|t| &*t.room != room);
        self.tracks.push(Track {
            room: room.into(),
            index,
            last_seq: seq,
        });
    }

    pub fn unfollow(&mut self, room: &str) {
        self.tracks.retain(|t| &*t.room != room);
    }

    /// Accounts one `msg` push received at `now_ns`: seq must be exactly the
    /// previous + 1; lower is a duplicate, higher is out of order (a gap).
    #[inline]
    pub fn on_msg(&mut self, f: &Frame<'_>, now_ns: u64) {
        let Some(t) = self.tracks.iter_mut().find(|t| t.room.as_bytes() == f.room) else {
            self.local.stray += 1;
            return;
        };
        if f.seq != t.last_seq + 1 {
            if f.seq <= t.last_seq {
                self.local.duplicates += 1;
            } else {
                self.local.out_of_order += 1;
            }
        }
        t.last_seq = t.last_seq.max(f.seq);
        self.local.delivered += 1;
        self.local.last_delivery_ns = now_ns;
        if let Some(sent) = wire::body_stamp(f.body) {
            self.local.delivery_ns.push(now_ns.saturating_sub(sent));
        }
    }
}
