//! Rate limits in Redis: one GCRA cell per user and action, decided atomically
//! by `lua/gcra.lua`, so limits hold across every node.

use super::Conn;
use super::{timed, FailurePolicy};
use crate::ids::{now_ms, UserId};
use crate::ratelimit::{Action, Decision, Limits, RateLimiter};
use async_trait::async_trait;
use redis::Script;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub struct RedisRateLimiter {
    conn: Conn,
    script: Script,
    limits: Limits,
    failure: FailurePolicy,
    /// Redis failures seen (for logs without flooding them).
    failures: AtomicU64,
}

impl RedisRateLimiter {
    pub fn new(conn: Conn, limits: Limits, failure: FailurePolicy) -> Self {
        Self {
            conn,
            script: Script::new(include_str!("lua/gcra.lua")),
            limits,
            failure,
            failures: AtomicU64::new(0),
        }
    }

    fn key(user: &UserId, action: Action) -> String {
        format!("rc:rl:{{{user}}}:{action:?}")
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, user: &UserId, action: Action) -> Decision {
        let Some(spec) = self.limits.get(action) else {
            return Decision::Allow;
        };
        let interval_ms = 1000.0 / spec.per_second;
        let mut conn = self.conn.clone();
        let mut call = self.script.key(Self::key(user, action));
        call.arg(now_ms()).arg(interval_ms).arg(spec.burst);
        let result: Result<(u8, u64), _> = timed(call.invoke_async(&mut conn)).await;
        match result {
            Ok((1, _)) => Decision::Allow,
            Ok((_, retry_ms)) => Decision::Deny {
                retry_after: Duration::from_millis(retry_ms.max(1)),
            },
            Err(e) => {
                if self.failures.fetch_add(1, Ordering::Relaxed) % 1000 == 0 {
                    tracing::warn!(error = %e, policy = ?self.failure, "rate limiter: redis unavailable");
                }
                match self.failure {
                    FailurePolicy::Open => Decision::Allow,
                    FailurePolicy::Closed => Decision::Deny {
                        retry_after: Duration::from_secs(1),
                    },
                }
            }
        }
    }
}
