//! The cells metrics are kept in: process-wide, const-initialised, written
//! with relaxed atomics and read only at scrape time.
//!
//! - [`Striped`]: a counter split into cache-line-padded slots, one per
//!   thread (round-robin over [`STRIPES`]), for counts bumped on every
//!   fan-out or socket write by many threads at once: each thread adds to
//!   its own line, so the counter never bounces between cores; a scrape sums
//!   the slots.
//! - [`Histogram`]: fixed buckets in integer base units (nanoseconds, items),
//!   for events that happen once per store batch or Redis round trip.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Slots per striped counter: more than the cores of the machines we run on,
/// so threads rarely share one (sharing is still correct, only slower).
pub const STRIPES: usize = 16;

#[repr(align(128))]
struct Slot(AtomicU64);

pub struct Striped {
    slots: [Slot; STRIPES],
}

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn stripe() -> usize {
    STRIPE.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
        s.set(v);
        v
    })
}

impl Striped {
    pub const fn new() -> Self {
        Self {
            slots: [const { Slot(AtomicU64::new(0)) }; STRIPES],
        }
    }

    #[inline]
    pub fn add(&self, n: u64) {
        self.slots[stripe()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The sum over every slot (a scrape).
    pub fn get(&self) -> u64 {
        self.slots
            .iter()
            .fold(0u64, |a, s| a.wrapping_add(s.0.load(Ordering::Relaxed)))
    }
}

impl Default for Striped {
    fn default() -> Self {
        Self::new()
    }
}

/// A histogram with `N` fixed upper bounds in integer base units; values above
/// the last bound count only in `+Inf`.
pub struct Histogram<const N: usize> {
    /// Upper bounds, ascending, in base units.
    bounds: [u64; N],
    /// Base units per exported unit (1e9 for nanoseconds exported as seconds).
    scale: f64,
    /// Per bucket, not cumulative (cumulated at scrape time).
    buckets: [AtomicU64; N],
    count: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    pub const fn new(bounds: [u64; N], scale: f64) -> Self {
        Self {
            bounds,
            scale,
            buckets: [const { AtomicU64::new(0) }; N],
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: u64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(v, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, d: std::time::Duration) {
        self.observe(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// (sum, count, cumulative buckets) in exported units, for encoding.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum.load(Ordering::Relaxed) as f64 / self.scale;
        let mut acc = 0u64;
        let mut buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .zip(&self.buckets)
            .map(|(b, c)| {
                acc += c.load(Ordering::Relaxed);
                (*b as f64 / self.scale, acc)
            })
            .collect();
        // Read after the buckets: +Inf is never below the last bucket.
        buckets.push((f64::INFINITY, count.max(acc)));
        (sum, count.max(acc), buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striped_sums_across_threads() {
        static C: Striped = Striped::new();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..1000 {
                        C.add(2);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(C.get(), 16_000);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new([10, 100], 1.0);
        for v in [1, 10, 11, 500] {
            h.observe(v);
        }
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(sum, 522.0);
        assert_eq!(count, 4);
        assert_eq!(buckets, vec![(10.0, 2), (100.0, 3), (f64::INFINITY, 4)]);
    }
}
