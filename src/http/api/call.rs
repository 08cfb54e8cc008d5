//! How a REST request reaches the rooms: it becomes the protocol request
//! ([`ClientFrame`]), passes the same field rules ([`check_request`]) and the
//! same dispatch ([`dispatch::request`]: rate limits, then the room's shard,
//! which checks permissions and idempotency), and its one reply comes back
//! through a per-request reply sink: an [`Outbox`] of its own, read until the
//! frame answering the request arrives or the deadline passes.
//!
//! There is no second code path: what a REST call may do, and what it
//! changes, is exactly what the same request over a socket would. Messages it
//! sends are fanned out to live subscribers by the shard like any other.

use crate::conn::dispatch;
use crate::conn::outbox::{OutItem, Outbox, OutboxReceiver};
use crate::http::error::ApiError;
use crate::ids::UserId;
use crate::proto::client::ClientFrame;
use crate::proto::{ErrorCode, ServerFrame, WireError};
use crate::ratelimit::Action;
use crate::router::Command;
use crate::server::Core;
use crate::session::{check_request, SessionLimits};
use std::sync::Arc;
use tokio::time::Instant;

/// The request id every REST call uses on its own sink.
pub const ID: u64 = 1;

/// A successful call: the reply frame, and the rate limit that applied (for headers).
pub struct Reply {
    pub frame: ServerFrame,
    pub limit: Option<crate::config::RateSpec>,
}

/// The rate-limit action of a request and its configured rate, if limited.
fn limit_of(core: &Core, frame: &ClientFrame) -> Option<(Action, Option<crate::config::RateSpec>)> {
    let action = dispatch::action_of(frame)?;
    let spec = crate::ratelimit::Limits::from_config(&core.config).get(action);
    Some((action, spec))
}

/// Runs one protocol request for `user` and waits for its reply.
pub async fn call(
    core: &Arc<Core>,
    user: &UserId,
    mut frame: ClientFrame,
) -> Result<Reply, ApiError> {
    let limit = limit_of(core, &frame);
    let with_limit = |e: WireError| ApiError { error: e, limit };
    let limits = SessionLimits::from_config(&core.config);
    check_request(&mut frame, user, &limits).map_err(with_limit)?;
    let session = core.next_session_id();
    // The sink: big enough for the largest reply (a full history page), and
    // whatever a joined subscription receives before it is dropped below.
    let (outbox, mut rx) = Outbox::new(session, core.config.outbox_bytes);
    let joined = match &frame {
        ClientFrame::Join(j) => Some(j.room.clone()),
        _ => None,
    };
    dispatch::request(core, session, user, &outbox, frame).await;
    drop(outbox);
    let deadline =
        Instant::now() + std::time::Duration::from_millis(core.config.http_request_timeout_ms);
    let reply = wait(&mut rx, deadline).await;
    if let Some(room) = joined {
        // A REST join makes a member, not a live subscriber: end the subscription
        // the shard made for this request's sink, as a closed connection would.
        let _ = core
            .router
            .send(room, Command::Disconnect { session })
            .await;
    }
    match reply {
        Ok(ServerFrame::Error(e)) => Err(with_limit(WireError {
            code: e.code,
            message: e.message,
            retry_after_ms: e.retry_after_ms,
        })),
        Ok(frame) => Ok(Reply {
            frame,
            limit: limit.and_then(|(_, spec)| spec),
        }),
        Err(e) => Err(with_limit(e)),
    }
}

/// Reads the sink until the reply to [`ID`] (pushes to a subscription made by a
/// join are skipped), the sink closes without one, or the deadline.
async fn wait(rx: &mut OutboxReceiver, deadline: Instant) -> Result<ServerFrame, WireError> {
    let mut items = Vec::new();
    loop {
        items.clear();
        let n = match tokio::time::timeout_at(deadline, rx.recv_many(&mut items, 64)).await {
            Ok(n) => n,
            Err(_) => {
                return Err(WireError::new(
                    ErrorCode::Unavailable,
                    "the room did not answer in time; retry",
                )
                .with_retry(1000))
            }
        };
        if n == 0 {
            return Err(WireError::new(
                ErrorCode::Internal,
                "the request ended without an answer; retry",
            ));
        }
        for item in items.drain(..) {
            let OutItem::Frames(bytes) = item else {
                continue;
            };
            rx.taken(bytes.len());
            let mut rest = &bytes[..];
            while rest.len() >= 4 {
                let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let Some(payload) = rest.get(4..4 + len) else {
                    break;
                };
                rest = &rest[4 + len..];
                match ServerFrame::decode(payload) {
                    Ok(f) if f.reply_id() == Some(ID) => return Ok(f),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "undecodable reply on a REST sink");
                        return Err(WireError::new(ErrorCode::Internal, "bad internal reply"));
                    }
                }
            }
        }
    }
}

/// Turns an unexpected reply frame into an internal error (a bug, logged).
pub fn unexpected(frame: &ServerFrame) -> ApiError {
    tracing::error!(?frame, "unexpected reply to a REST call");
    ApiError::new(ErrorCode::Internal, "unexpected reply")
}
