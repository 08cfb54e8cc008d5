//! Reconnect delays: exponential, bounded, with jitter, never sooner than the
//! server's `retry_after_ms` (spec: "Error codes", last paragraph).

use rand::Rng;
use std::time::Duration;

/// Reconnect policy. Attempt `n` (0 for the first reconnect after a drop)
/// waits a uniformly random time in `[d/2, d]` where
/// `d = min(max, initial × multiplier^n)`, and at least the server's
/// `retry_after_ms` when it gave one (`shutting_down`, `server_busy`,
/// `rate_limited` on `hello`).
#[derive(Clone, Debug)]
pub struct Backoff {
    /// The base delay of the first reconnect (default 500 ms).
    pub initial: Duration,
    /// The largest base delay (default 30 s).
    pub max: Duration,
    /// Growth per failed attempt (default 2).
    pub multiplier: f64,
    /// Give up after this many consecutive failed attempts (`Event::Closed`);
    /// `None` (default): never give up.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The base delay of attempt `attempt`, before jitter.
    pub fn base(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.max(1.0).powi(attempt.min(64) as i32);
        let secs = (self.initial.as_secs_f64() * factor).min(self.max.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }

    /// The jittered delay of attempt `attempt`, at least `retry_after`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let base = self.base(attempt);
        let jittered = if base.is_zero() {
            base
        } else {
            rand::rng().random_range(base / 2..=base)
        };
        jittered.max(retry_after.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_bound_with_jitter_and_honours_retry_after() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            max_attempts: None,
        };
        assert_eq!(b.base(0), Duration::from_millis(100));
        assert_eq!(b.base(3), Duration::from_millis(800));
        assert_eq!(b.base(10), Duration::from_secs(1));
        assert_eq!(b.base(u32::MAX), Duration::from_secs(1));
        for attempt in 0..8 {
            let d = b.delay(attempt, None);
            assert!(d >= b.base(attempt) / 2 && d <= b.base(attempt), "{d:?}");
        }
        let hinted = b.delay(0, Some(Duration::from_secs(3)));
        assert_eq!(hinted, Duration::from_secs(3));
    }
}
