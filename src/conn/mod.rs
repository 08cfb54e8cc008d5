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

pub mod caps;
pub mod dispatch;
pub mod outbox;
pub mod quotas;
pub mod registry;
pub mod writer;

use crate::ids::SessionId;
use crate::metrics::{SessionGuard, Transport};
use crate::proto::{ErrorCode, FrameCodec, FrameError, ServerFrame, WireError};
use crate::server::Core;
use crate::session::{Output, Session, SessionLimits};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use outbox::{Outbox, OutboxReceiver};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// Initial read buffer; it grows to the largest frame seen.
const READ_BUFFER: usize = 512;
/// After the last frame is written and the write side shut down, how long
/// the connection reads and discards what the peer still sends, waiting for
/// its close. Closing a socket with unread input makes the kernel reset the
/// connection and drop the frames the peer has not taken yet: the closing
/// error (`slow_consumer`, `unauthorized`, ...) would be lost.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves one byte-stream connection (TCP, TLS, a QUIC stream) until it
/// closes. `shutdown` asks it to leave with `shutting_down`. `peer` is the
/// client's address (for the per-address cap before `hello`).
pub async fn serve<R, W>(
    core: Arc<Core>,
    peer: IpAddr,
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
        peer,
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
    peer: IpAddr,
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
    let mut frames = frames;
    let reading = read_loop(
        &core,
        session_id,
        peer,
        &mut frames,
        &outbox,
        &shutdown,
        transport,
    );
    let writing = write(out_rx);
    tokio::join!(reading, writing);
    // The writer has flushed and shut the write side down (FIN): read and
    // discard until the peer closes too, or LINGER passes. (Not while the
    // server shuts down: it must not wait on clients.)
    if !shutdown.is_cancelled() {
        let _ = tokio::time::timeout(LINGER, async {
            while let Some(Ok(_)) = frames.next().await {}
        })
        .await;
    }
}

async fn read_loop<S>(
    core: &Arc<Core>,
    session_id: SessionId,
    peer: IpAddr,
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
    // Before `hello`, the connection counts against its address's cap; after
    // it, against its user's.
    let Some(addr_slot) = core.unauthenticated.try_acquire(peer) else {
        tracing::debug!(session = %session_id, %peer, "refused: too many connections awaiting hello from this address");
        outbox.close_with(&ServerFrame::closing(WireError::new(
            ErrorCode::LimitExceeded,
            format!(
                "too many connections from your address are waiting to say hello (at most {})",
                core.unauthenticated.max()
            ),
        )));
        outbox.close();
        return;
    };
    let mut addr_slot = Some(addr_slot);
    let mut _user_slot = None;
    // Cancelled by the server API's disconnect (`conn::registry`).
    let disconnect = CancellationToken::new();
    let mut _registered = None;
    let mut admitted = false;
    let max_in_flight = core.config.max_in_flight;
    let mut _session_metric = None;
    loop {
        let deadline = tokio::time::Instant::from_std(session.deadline());
        // Flow control: while replies are owed or unread, the client is not read.
        let backlogged = outbox.backlogged(max_in_flight);
        let out = tokio::select! {
            biased;
            _ = outbox.killed() => break,
            _ = shutdown.cancelled() => {
                let retry = core.reconnect_hint_ms();
                outbox.close_with(&ServerFrame::closing(
                    WireError::new(ErrorCode::ShuttingDown, "server is shutting down; reconnect")
                        .with_retry(retry),
                ));
                break;
            }
            _ = disconnect.cancelled() => {
                tracing::info!(session = %session_id, "disconnected through the server API");
                outbox.close_with(&ServerFrame::closing(WireError::new(
                    ErrorCode::Unauthorized,
                    "disconnected by the server",
                )));
                break;
            }
            _ = tokio::time::sleep_until(deadline) => session.handle_timeout(Instant::now()),
            _ = outbox.room_for_requests(max_in_flight), if backlogged => continue,
            item = frames.next(), if !backlogged => match item {
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
                let Some(slot) = core.user_connections.try_acquire(user.clone()) else {
                    outbox.close_with(&ServerFrame::closing(WireError::new(
                        ErrorCode::LimitExceeded,
                        format!(
                            "you have {} connections open, the most allowed; close one first",
                            core.user_connections.max()
                        ),
                    )));
                    break;
                };
                _user_slot = Some(slot);
                drop(addr_slot.take());
                // Boxed: the rare, large futures stay off every idle connection's state.
                match Box::pin(dispatch::admit(core, session_id, &user)).await {
                    Ok(()) => {
                        admitted = true;
                        _registered = Some(core.registry.register(
                            user.clone(),
                            session_id,
                            disconnect.clone(),
                        ));
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
