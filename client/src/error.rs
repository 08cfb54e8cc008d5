//! The SDK's error type: what a [`crate::Client`] call can fail with.

use crate::conn::ConnError;
use roomcast_protocol::server::ErrorFrame;
use roomcast_protocol::{ErrorCode, ServerFrame};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server refused the request (`code` says why; see the error table
    /// in `proto-spec/README.md`).
    #[error("server error {}: {}", .0.code, .0.message)]
    Server(ErrorFrame),
    /// The connection dropped before the reply, for a request that is not
    /// safe to repeat (`create_room`, `edit`, ...): it may or may not have
    /// been applied. Sends never fail this way: they wait in the queue.
    #[error("disconnected before the reply")]
    Disconnected,
    /// No connection, or no reply, within `ClientConfig::request_timeout`.
    #[error("timed out")]
    Timeout,
    /// The offline queue holds `ClientConfig::queue_capacity` unacknowledged sends.
    #[error("offline queue full ({0} messages)")]
    QueueFull(usize),
    /// The encoded `send` frame is larger than the server's `max_frame`.
    #[error("message of {bytes} bytes exceeds the server's max_frame {max}")]
    TooLarge { bytes: usize, max: usize },
    /// The client was shut down, or stopped for good (see `Event::Closed`).
    #[error("client closed")]
    Closed,
    /// The first connection failed (`Client::connect`).
    #[error("connect: {0}")]
    Connect(#[source] ConnError),
    /// The token provider failed.
    #[error("token: {0}")]
    Token(String),
    /// Reading or writing the offline queue file (`ClientConfig::queue_file`).
    #[error("queue file: {0}")]
    QueueFile(#[source] std::io::Error),
    /// The server answered with a frame of another type than the request's reply.
    #[error("unexpected reply: {0:?}")]
    Unexpected(Box<ServerFrame>),
}

impl Error {
    /// The wire error code, for [`Error::Server`].
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server(e) => Some(e.code),
            _ => None,
        }
    }
}

impl From<ConnError> for Error {
    fn from(e: ConnError) -> Self {
        match e {
            ConnError::Server(e) => Error::Server(e),
            ConnError::Closed | ConnError::Io(_) => Error::Disconnected,
            ConnError::Unexpected(f) => Error::Unexpected(f),
        }
    }
}

/// Whether a refused `send` should wait and go out again (the message stays
/// queued) rather than fail: transient server conditions.
pub(crate) fn send_retryable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Internal
            | ErrorCode::RateLimited
            | ErrorCode::Unavailable
            | ErrorCode::ShuttingDown
            | ErrorCode::ServerBusy
            | ErrorCode::SlowConsumer
            | ErrorCode::IdleTimeout
    )
}
