//! The rate-limit seam and its in-memory default (GCRA, one cell per user and
//! action). A Redis-backed limiter plugs in behind [`RateLimiter`] for
//! multi-node deployments.

use crate::config::{Config, RateSpec};
use crate::ids::UserId;
use async_trait::async_trait;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What is being limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Connect,
    Send,
    Join,
    CreateRoom,
    History,
    Typing,
    /// Everything else: edits, reactions, reads, lists, administration.
    Other,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::Connect,
        Action::Send,
        Action::Join,
        Action::CreateRoom,
        Action::History,
        Action::Typing,
        Action::Other,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused; the next attempt can succeed after this long.
    Deny {
        retry_after: Duration,
    },
}

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    async fn check(&self, user: &UserId, action: Action) -> Decision;
}

/// Logs what the wrapped limiter would refuse, and allows it (`--rate-limit-dry-run`).
pub struct DryRun(pub std::sync::Arc<dyn RateLimiter>);

#[async_trait]
impl RateLimiter for DryRun {
    async fn check(&self, user: &UserId, action: Action) -> Decision {
        if let Decision::Deny { retry_after } = self.0.check(user, action).await {
            tracing::info!(%user, ?action, retry_ms = retry_after.as_millis() as u64, "rate limit (dry run): would refuse");
        }
        Decision::Allow
    }
}

/// Per-action limits, `None` meaning unlimited.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits([Option<RateSpec>; 7]);

impl Limits {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn from_config(c: &Config) -> Self {
        if c.no_rate_limits {
            return Self::none();
        }
        let mut l = Self::none();
        l.set(Action::Connect, c.limit_connect);
        l.set(Action::Send, c.limit_send);
        l.set(Action::Join, c.limit_join);
        l.set(Action::CreateRoom, c.limit_create_room);
        l.set(Action::History, c.limit_history);
        l.set(Action::Typing, c.limit_typing);
        l.set(Action::Other, c.limit_other);
        l
    }

    pub fn set(&mut self, action: Action, spec: RateSpec) {
        self.0[action.index()] = Some(spec);
    }

    pub fn get(&self, action: Action) -> Option<RateSpec> {
        self.0[action.index()]
    }
}

/// One GCRA cell owned by its caller (a connection's `ping` rate, a WebSocket's
/// control frames): sans-IO, time is an argument.
#[derive(Clone, Copy, Debug)]
pub struct Gcra {
    /// Theoretical arrival time; `None` until the first check.
    tat: Option<Instant>,
    interval: Duration,
    capacity: Duration,
}

impl Gcra {
    pub fn new(spec: RateSpec) -> Gcra {
        let interval = Duration::from_secs_f64(1.0 / spec.per_second);
        Gcra {
            tat: None,
            interval,
            capacity: interval.saturating_mul(spec.burst),
        }
    }

    /// Takes one token at `now`, or says how long until one is free.
    pub fn check(&mut self, now: Instant) -> Decision {
        let tat = self.tat.map_or(now, |t| t.max(now));
        let new_tat = tat + self.interval;
        let ahead = new_tat.saturating_duration_since(now);
        if ahead > self.capacity {
            Decision::Deny {
                retry_after: ahead - self.capacity,
            }
        } else {
            self.tat = Some(new_tat);
            Decision::Allow
        }
    }
}

/// GCRA in memory: each (user, action) keeps only its theoretical arrival time.
pub struct MemoryRateLimiter {
    limits: Limits,
    epoch: Instant,
    /// Theoretical arrival time per cell, in ns since `epoch`.
    cells: DashMap<(UserId, Action), u64>,
    checks: AtomicU64,
}

/// Every this many checks, cells that are fully replenished are dropped.
const SWEEP_EVERY: u64 = 8192;

impl MemoryRateLimiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            epoch: Instant::now(),
            cells: DashMap::new(),
            checks: AtomicU64::new(0),
        }
    }

    /// The decision at `now` (exposed for deterministic tests).
    pub fn check_at(&self, user: &UserId, action: Action, now: Instant) -> Decision {
        let Some(spec) = self.limits.get(action) else {
            return Decision::Allow;
        };
        let now_ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.cells.retain(|_, tat| *tat > now_ns);
        }
        let interval = (1e9 / spec.per_second) as u64;
        let capacity = interval.saturating_mul(u64::from(spec.burst));
        let mut cell = self.cells.entry((user.clone(), action)).or_insert(now_ns);
        let tat = (*cell).max(now_ns);
        let new_tat = tat + interval;
        let ahead = new_tat - now_ns;
        if ahead > capacity {
            Decision::Deny {
                retry_after: Duration::from_nanos(ahead - capacity),
            }
        } else {
            *cell = new_tat;
            Decision::Allow
        }
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, user: &UserId, action: Action) -> Decision {
        self.check_at(user, action, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_cell_burst_then_rate() {
        let mut g = Gcra::new("2:3".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(g.check(t0), Decision::Allow);
        }
        let Decision::Deny { retry_after } = g.check(t0) else {
            panic!("a fourth at once is over the burst");
        };
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_millis(500));
        assert_eq!(g.check(t0 + retry_after), Decision::Allow);
        assert!(matches!(g.check(t0 + retry_after), Decision::Deny { .. }));
    }

    #[test]
    fn burst_then_steady_rate() {
        let mut limits = Limits::none();
        limits.set(Action::Send, "10:3".parse().unwrap());
        let l = MemoryRateLimiter::new(limits);
        let u = UserId::new("u").unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check_at(&u, Action::Send, t0), Decision::Allow);
        }
        let Decision::Deny { retry_after } = l.check_at(&u, Action::Send, t0) else {
            panic!("fourth in the same instant must be refused");
        };
        assert!(retry_after <= Duration::from_millis(100) && retry_after > Duration::ZERO);
        assert_eq!(
            l.check_at(&u, Action::Send, t0 + retry_after),
            Decision::Allow
        );
        // Other actions and users are independent; unlimited actions always pass.
        assert_eq!(
            l.check_at(&UserId::new("v").unwrap(), Action::Send, t0),
            Decision::Allow
        );
        for _ in 0..100 {
            assert_eq!(l.check_at(&u, Action::Join, t0), Decision::Allow);
        }
    }
}
