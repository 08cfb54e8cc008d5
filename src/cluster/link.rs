//! A direct node-to-node link for forwarding requests to a room's owner
//! (docs/MULTINODE.md, "Forwarding to the owner").
//!
//! The wire is the client protocol's framing: a 4-byte big-endian length,
//! then a MessagePack array `[id, kind, body]` (`kind` 0: request, 1:
//! response; `body` opaque bytes). Requests carry a correlation id chosen by
//! the sender; the response echoes it, so many requests share one
//! connection and answers may come in any order.
//!
//! - [`client::Link`]: one peer's link. A bounded send queue, one TCP
//!   connection reconnected with exponential backoff, a deadline per
//!   request. A request written on a connection that then drops fails
//!   `Disconnected` (its outcome is unknown: the caller retries
//!   idempotently); one still queued waits for the next connection until its
//!   deadline.
//! - [`server::serve`]: accepts peers' links and answers each request with a
//!   handler, a bounded number at once per connection (then it stops
//!   reading: back-pressure reaches the sender's queue).
//!
//! Not yet used by the server (no shard forwards through it, no setting
//! starts it): it is built and measured first, as the issue asks.

pub mod client;
pub mod server;

pub use client::Link;
pub use server::serve;

use bytes::{Bytes, BytesMut};
use std::time::Duration;
use tokio_util::codec::{Encoder, LengthDelimitedCodec};

/// Limits and timings of a link (both ends).
#[derive(Clone, Copy, Debug)]
pub struct LinkSettings {
    /// Largest frame (MessagePack payload) sent or accepted.
    pub max_frame: usize,
    /// Requests queued for sending per peer; more are refused `Busy`.
    pub queue: usize,
    /// Requests awaiting an answer per peer (queued or written).
    pub max_pending: usize,
    /// Requests a server handles at once per connection.
    pub server_in_flight: usize,
    /// Peer connections a server accepts at once.
    pub max_peers: usize,
    pub connect_timeout: Duration,
    /// First reconnection delay, doubled per failure up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for LinkSettings {
    fn default() -> LinkSettings {
        LinkSettings {
            max_frame: 1 << 20,
            queue: 1024,
            max_pending: 4096,
            server_in_flight: 256,
            max_peers: super::membership::MAX_NODES,
            connect_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// Why a request got no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The send queue or the pending map is full ([`LinkSettings::queue`],
    /// [`LinkSettings::max_pending`]): the peer is slow or unreachable.
    #[error("link to the peer is busy")]
    Busy,
    /// The request is larger than [`LinkSettings::max_frame`].
    #[error("request too large for the link")]
    TooLarge,
    /// No answer before the deadline (the peer may still handle it).
    #[error("no answer from the peer in time")]
    Timeout,
    /// The connection dropped after the request was written: outcome unknown.
    #[error("link to the peer dropped")]
    Disconnected,
    /// The link was closed.
    #[error("link closed")]
    Closed,
}

const KIND_REQUEST: u8 = 0;
const KIND_RESPONSE: u8 = 1;

fn codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(max_frame)
        .new_codec()
}

/// Appends one frame to `out`.
fn encode(
    codec: &mut LengthDelimitedCodec,
    id: u64,
    kind: u8,
    body: &Bytes,
    out: &mut BytesMut,
) -> Result<(), LinkError> {
    let payload = rmp_serde::to_vec(&(id, kind, body)).map_err(|_| LinkError::TooLarge)?;
    codec
        .encode(Bytes::from(payload), out)
        .map_err(|_| LinkError::TooLarge)
}

/// Decodes one frame's payload: `(id, kind, body)`.
fn decode(payload: &[u8]) -> Option<(u64, u8, Bytes)> {
    rmp_serde::from_slice(payload).ok()
}
