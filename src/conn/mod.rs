//! A connection, whatever its transport: the read loop that feeds the
//! sans-IO [`Session`](crate::session::Session), the dispatch of its requests
//! to limits and routers, the writer that drains its outbox, and cleanup.
//!
//! The seam is [`serve_frames`]: any stream of frame payloads in, any writer
//! task draining an [`OutboxReceiver`] out. Byte-stream transports (TCP, TLS,
//! a QUIC stream) use [`serve`], which frames the bytes with
//! [`FrameCodec`] and writes with [`writer::run`]; the WebSocket bridge maps
//! one binary message to one payload and has its own writer. Deadlines,
//! limits, slow-consumer cut-off, shutdown and cleanup live here and in the
//! session, so they are the same on every transport.

pub mod dispatch;
pub mod outbox;
pub mod writer;

use crate::ids::SessionId;
use crate::metrics::{SessionGuard, Transport};
use crate::proto::{FrameCodec, FrameError, ServerFrame, WireError};
use crate::server::Core;
use crate::session::{Output, Session, SessionLimits};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use outbox::{Outbox, OutboxReceiver};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// Initial read buffer; it grows to the largest frame seen.
const READ_BUFFER: usize = 512;

/// Serves one byte-stream connection (TCP, TLS, a QUIC stream) until it
/// closes. `shutdown` asks it to leave with `shutting_down`.
pub async fn serve<R, W>(
    core: Arc<Core>,
    reader: R,
    writer: W,
    shutdown: CancellationToken,
    transport: Transport,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let frames =
        FramedRead::with_capacity(reader, FrameCodec::new(core.config.max_frame), READ_BUFFER);
    serve_frames(
        core,
        frames,
        |rx| writer::run(writer, rx, transport),
        shutdown,
        transport,
    )
    .await;
}

/// Serves one connection given as a stream of frame payloads and a writer
/// task. The stream ends (or yields an I/O error) when the peer is gone; a
/// [`FrameError::TooLarge`] is answered with `frame_too_large` and a close.
/// `write` is started at once with the outbox's drain side and must return
/// once the outbox is closed (after flushing) or killed.
pub async fn serve_frames<S, F, Fut>(
    core: Arc<Core>,
    frames: S,
    write: F,
    shutdown: CancellationToken,
    transport: Transport,
) where
    S: Stream<Item = Result<Bytes, FrameError>> + Unpin,
    F: FnOnce(OutboxReceiver) -> Fut,
    Fut: Future<Output = ()>,
{
    let session_id = core.next_session_id();
    let (outbox, out_rx) = Outbox::new(session_id, core.config.outbox_bytes);
    let reading = read_loop(&core, session_id, frames, &outbox, &shutdown, transport);
    let writing = write(out_rx);
    tokio::join!(reading, writing);
}

async fn read_loop<S>(
    core: &Arc<Core>,
    session_id: SessionId,
    mut frames: S,
    outbox: &Outbox,
    shutdown: &CancellationToken,
    transport: Transport,
) where
    S: Stream<Item = Result<Bytes, FrameError>> + Unpin,
{
    let mut session = Session::new(
        session_id,
        SessionLimits::from_config(&core.config),
        Instant::now(),
    );
    let mut admitted = false;
    let mut _session_metric = None;
    loop {
        let deadline = tokio::time::Instant::from_std(session.deadline());
        let out = tokio::select! {
            biased;
            _ = outbox.killed() => break,
            _ = shutdown.cancelled() => {
                let retry = core.reconnect_hint_ms();
                outbox.close_with(&ServerFrame::closing(
                    WireError::new(crate::proto::ErrorCode::ShuttingDown, "server is shutting down; reconnect")
                        .with_retry(retry),
                ));
                break;
            }
            _ = tokio::time::sleep_until(deadline) => session.handle_timeout(Instant::now()),
            item = frames.next() => match item {
                Some(Ok(payload)) => session.handle_frame(&payload, Instant::now(), &core.auth),
                Some(Err(FrameError::TooLarge { len, .. })) => session.handle_oversize(len),
                Some(Err(FrameError::Io(e))) => {
                    tracing::debug!(session = %session_id, error = %e, "read failed");
                    break;
                }
                None => {
                    tracing::debug!(session = %session_id, "peer closed");
                    break;
                }
            },
        };
        match out {
            Output::None => {}
            Output::Reply(frame) => {
                outbox.send(&frame);
            }
            Output::Admit { id, user, sync } => {
                // Boxed: the rare, large futures stay off every idle connection's state.
                match Box::pin(dispatch::admit(core, session_id, &user)).await {
                    Ok(()) => {
                        admitted = true;
                        _session_metric = Some(SessionGuard::open(transport));
                        outbox.send(&session.welcome(id, user.clone()));
                        if sync {
                            Box::pin(dispatch::sync(core, &user, outbox)).await;
                        }
                    }
                    Err(e) => {
                        outbox.close_with(&ServerFrame::closing(e));
                        break;
                    }
                }
            }
            Output::Request(req) => {
                if let Some(user) = session.user() {
                    Box::pin(dispatch::request(core, session_id, user, outbox, req)).await;
                }
            }
            Output::Close(e) => {
                tracing::debug!(session = %session_id, code = %e.code, "closing: {}", e.message);
                outbox.close_with(&ServerFrame::closing(e));
                break;
            }
        }
        if let Some(status) = session.poll_status() {
            if let Some(user) = session.user().filter(|_| admitted) {
                Box::pin(dispatch::auto_status(core, session_id, user, status)).await;
            }
        }
    }
    let user = session.user().filter(|_| admitted);
    Box::pin(dispatch::closed(core, session_id, user, session.joined())).await;
    outbox.close();
}
