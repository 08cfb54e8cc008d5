//! Wire error codes: the one table every failure is converted to.
//!
//! The string of each code is part of the v1 contract (`proto-spec/README.md`,
//! "Error codes"). `closes()` says whether the server closes the connection
//! after sending it; `reconnect()` whether a client should reconnect.

use serde::{Deserialize, Serialize};
use std::fmt;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Missing, bad, expired or unsigned token; or a request before `hello`.
    Unauthorized,
    /// Authenticated but not allowed (e.g. a private room you are not a member of).
    Forbidden,
    /// The room (or other target) does not exist.
    NotFound,
    /// Malformed frame, wrong field type, invalid value. The connection stays usable.
    BadRequest,
    /// Declared frame length above `max_frame`. Closes.
    FrameTooLarge,
    /// A frame with a `t` this server does not know.
    UnknownType,
    /// Too many requests; `retry_after_ms` says when to retry.
    RateLimited,
    /// The connection's outbound queue overflowed. Closes; resume from the last seq.
    SlowConsumer,
    /// A server-side fault. Safe to retry (sends are idempotent with `local_id`).
    Internal,
    /// `hello.v` is not a protocol version this server speaks. Closes.
    UnsupportedVersion,
    /// No `hello` within the hello deadline. Closes.
    HelloTimeout,
    /// No frame from the client within the idle timeout (2 x heartbeat). Closes.
    IdleTimeout,
    /// The server is shutting down. Closes; reconnect after `retry_after_ms`.
    ShuttingDown,
    /// The server is at its connection cap. Closes; reconnect after `retry_after_ms`.
    ServerBusy,
    /// A backend (the message store, or Redis in multi-node deployments) cannot answer,
    /// is overloaded or missed its deadline; nothing was acknowledged. Retry after
    /// `retry_after_ms` (a send with the same `local_id` never duplicates).
    Unavailable,
    /// The target already exists (e.g. `create_room` with a room id in use).
    Conflict,
    /// A per-user, per-room or per-address cap was reached (rooms created,
    /// memberships, joined rooms, invites, favorites, connections); nothing was
    /// done. Retrying helps only after something is freed. On `hello` it closes.
    LimitExceeded,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::BadRequest,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnknownType,
        ErrorCode::RateLimited,
        ErrorCode::SlowConsumer,
        ErrorCode::Internal,
        ErrorCode::UnsupportedVersion,
        ErrorCode::HelloTimeout,
        ErrorCode::IdleTimeout,
        ErrorCode::ShuttingDown,
        ErrorCode::ServerBusy,
        ErrorCode::Unavailable,
        ErrorCode::Conflict,
        ErrorCode::LimitExceeded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::Internal => "internal",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::HelloTimeout => "hello_timeout",
            ErrorCode::IdleTimeout => "idle_timeout",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::ServerBusy => "server_busy",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Conflict => "conflict",
            ErrorCode::LimitExceeded => "limit_exceeded",
        }
    }

    /// Whether a client should reconnect after the server closed with this code.
    pub fn reconnect(self) -> bool {
        matches!(
            self,
            ErrorCode::SlowConsumer
                | ErrorCode::IdleTimeout
                | ErrorCode::ShuttingDown
                | ErrorCode::ServerBusy
                | ErrorCode::Internal
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure on its way to the wire: a code, a human message, an optional retry hint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_ms: Option<u64>,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn with_retry(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_match_as_str() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
