//! A connection, whatever its transport: the read loop that feeds the
//! sans-IO [`Session`](crate::session::Session), the dispatch of its requests
//! to limits and routers, the writer that drains its outbox, and cleanup.
//!
//! Transports (TCP, TLS, QUIC streams) hand over any `AsyncRead` +
//! `AsyncWrite` pair to [`serve`]; nothing below knows which one it is.

mod dispatch;
pub mod outbox;
pub mod writer;

use crate::ids::SessionId;
use crate::proto::{FrameCodec, FrameError, ServerFrame, WireError};
use crate::server::Core;
use crate::session::{Output, Session, SessionLimits};
use futures_util::StreamExt;
use outbox::Outbox;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// Initial read buffer; it grows to the largest frame seen.
const READ_BUFFER: usize = 512;

/// Serves one connection until it closes. `shutdown` asks it to leave with
/// `shutting_down`.
pub async fn serve<R, W>(core: Arc<Core>, reader: R, writer: W, shutdown: CancellationToken)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let session_id = core.next_session_id();
    let (outbox, out_rx) = Outbox::new(session_id, core.config.outbox_bytes);
    let reading = read_loop(&core, session_id, reader, &outbox, &shutdown);
    let writing = writer::run(writer, out_rx);
    tokio::join!(reading, writing);
}

async fn read_loop<R: AsyncRead + Unpin>(
    core: &Arc<Core>,
    session_id: SessionId,
    reader: R,
    outbox: &Outbox,
    shutdown: &CancellationToken,
) {
    let mut frames =
        FramedRead::with_capacity(reader, FrameCodec::new(core.config.max_frame), READ_BUFFER);
    let mut session = Session::new(
        session_id,
        SessionLimits::from_config(&core.config),
        Instant::now(),
    );
    let mut admitted = false;
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
            Output::Admit { id, user } => match dispatch::admit(core, session_id, &user).await {
                Ok(()) => {
                    admitted = true;
                    outbox.send(&session.welcome(id, user));
                }
                Err(e) => {
                    outbox.close_with(&ServerFrame::closing(e));
                    break;
                }
            },
            Output::Request(req) => {
                if let Some(user) = session.user() {
                    dispatch::request(core, session_id, user, outbox, req).await;
                }
            }
            Output::Close(e) => {
                tracing::debug!(session = %session_id, code = %e.code, "closing: {}", e.message);
                outbox.close_with(&ServerFrame::closing(e));
                break;
            }
        }
    }
    for room in session.joined() {
        let _ = core
            .router
            .send(
                room.clone(),
                crate::router::Command::Disconnect {
                    session: session_id,
                },
            )
            .await;
    }
    if admitted {
        if let Some(user) = session.user() {
            core.presence.disconnected(user, session_id).await;
        }
    }
    outbox.close();
}
