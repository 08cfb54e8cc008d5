//! Redis: presence, rate limits and cross-node fan-out for multi-node
//! deployments (`serve --redis URL`). Every call has a deadline, so a slow or
//! unreachable Redis never hangs a connection or a shard; what happens then
//! is configured per use (rate limits: fail open or closed; seq allocation:
//! `unavailable`, nothing acknowledged; publishing: retried in order).
//!
//! Scripts live in `lua/` with a KEYS/ARGV header; they run with EVALSHA and
//! fall back to EVAL after a Redis restart (`redis::Script`).

pub mod bus;
pub mod conn;
pub mod offline;
pub mod presence;
pub mod ratelimit;

pub use conn::{connect, Conn, Target};
use std::time::Duration;

/// Deadline of one Redis call made on a request path.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis url: {0}")]
    Url(String),
}

/// Runs one Redis future with [`CALL_TIMEOUT`].
pub async fn timed<T>(
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, RedisError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(RedisError::Timeout(CALL_TIMEOUT)),
    }
}

/// What rate limiting does when Redis cannot answer.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Allow the request (and log): availability over strictness.
    Open,
    /// Refuse with `rate_limited` and a short retry hint.
    Closed,
}
