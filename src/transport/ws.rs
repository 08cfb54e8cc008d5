//! The WebSocket bridge for browsers: `GET /ws` on the HTTP listener (axum's
//! built-in WebSocket; docs/TRANSPORTS.md records why).
//!
//! Each binary message carries exactly one frame's MessagePack map, without
//! the length header. Inbound, a binary message is one payload for
//! [`conn::serve_frames`]; a message above `max_frame` is refused from its
//! header (`frame_too_large`, then close 1009); a text message closes the
//! connection with 1003. Outbound, the outbox's chunks (length-prefixed frames
//! back to back, shared by every subscriber) are split into one binary message
//! per frame without copying. WebSocket pings are sent every heartbeat and
//! answered automatically, but only protocol frames count as activity, so the
//! hello and idle deadlines are the same as on TCP. Per-message compression
//! is not offered (the implementation has none).

use crate::conn::outbox::{OutItem, OutboxReceiver};
use crate::conn::{self, writer::CLOSE_FLUSH};
use crate::proto::frame::split_frames;
use crate::proto::{self, ErrorCode, FrameError, ServerFrame, WireError};
use crate::server::Core;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, Stream, StreamExt};
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_tungstenite::tungstenite;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Items taken from the outbox per wake-up.
const BATCH: usize = 256;

/// What the `/ws` handler needs besides the core: the connection tracker and
/// shutdown token shared with the other transports.
#[derive(Clone)]
pub struct Bridge {
    pub core: Arc<Core>,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

pub fn router(bridge: Bridge) -> Router {
    Router::new().route("/ws", get(upgrade)).with_state(bridge)
}

fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true; // not a browser
    };
    allowed
        .iter()
        .any(|a| a == "*" || origin.as_bytes().eq_ignore_ascii_case(a.as_bytes()))
}

async fn upgrade(State(b): State<Bridge>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    if !origin_allowed(&b.core.config.ws_allowed_origins, &headers) {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let max = b.core.config.max_frame;
    let permit = b.core.permits.clone().try_acquire_owned().ok();
    // Small buffers: tungstenite's defaults (128 KiB each way) would cost an idle
    // browser connection ~140 KiB; ours grow only while a large frame is in flight.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(16 * 1024 + max.saturating_mul(2))
        .on_upgrade(move |socket| {
            let Bridge {
                core,
                tracker,
                shutdown,
            } = b;
            tracker.track_future(async move {
                let Some(_permit) = permit else {
                    return refuse_busy(socket, core.reconnect_hint_ms()).await;
                };
                core.connections.fetch_add(1, Ordering::Relaxed);
                serve(core.clone(), socket, shutdown).await;
                core.connections.fetch_sub(1, Ordering::Relaxed);
            })
        })
}

async fn serve(core: Arc<Core>, socket: WebSocket, shutdown: CancellationToken) {
    let (sink, stream) = socket.split();
    // The close code the writer sends, chosen by what the reader saw.
    let close = Arc::new(AtomicU16::new(close_code::NORMAL));
    let frames = Payloads {
        inner: stream,
        close: close.clone(),
        done: false,
    };
    let ping_every = core.config.heartbeat();
    let stop = shutdown.clone();
    conn::serve_frames(
        core,
        frames,
        move |rx| write_loop(sink, rx, close, ping_every, stop),
        shutdown,
    )
    .await;
}

/// Binary messages in, frame payloads out; see the module docs for the rest.
struct Payloads {
    inner: SplitStream<WebSocket>,
    close: Arc<AtomicU16>,
    done: bool,
}

impl Stream for Payloads {
    type Item = Result<Bytes, FrameError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let item = match self.inner.poll_next_unpin(cx) {
                Poll::Ready(item) => item,
                Poll::Pending => return Poll::Pending,
            };
            return Poll::Ready(Some(match item {
                Some(Ok(Message::Binary(b))) => Ok(b),
                // Answered by the WebSocket layer; not protocol activity.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Text(_))) => {
                    self.done = true;
                    self.close.store(close_code::UNSUPPORTED, Ordering::Relaxed);
                    Err(FrameError::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "text message (roomcast speaks binary messages only)",
                    )))
                }
                Some(Err(e)) => map_error(e, &self.close),
                // The peer closed (or the socket ended).
                None | Some(Ok(Message::Close(_))) => {
                    self.done = true;
                    return Poll::Ready(None);
                }
            }));
        }
    }
}

fn map_error(e: axum::Error, close: &AtomicU16) -> Result<Bytes, FrameError> {
    Err(frame_error(e, close))
}

fn frame_error(e: axum::Error, close: &AtomicU16) -> FrameError {
    match e.into_inner().downcast::<tungstenite::Error>() {
        Ok(e) => match *e {
            tungstenite::Error::Capacity(tungstenite::error::CapacityError::MessageTooLong {
                size,
                max_size,
            }) => {
                close.store(close_code::SIZE, Ordering::Relaxed);
                FrameError::TooLarge {
                    len: size,
                    max: max_size,
                }
            }
            tungstenite::Error::Protocol(p) => {
                close.store(close_code::PROTOCOL, Ordering::Relaxed);
                FrameError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, p))
            }
            other => FrameError::Io(std::io::Error::other(other)),
        },
        Err(other) => FrameError::Io(std::io::Error::other(other)),
    }
}

type Sink = SplitSink<WebSocket, Message>;

/// Drains the outbox into binary messages (one per frame, zero-copy) until the
/// outbox is closed or killed, pinging every `ping_every`; then sends the
/// closing `slow_consumer` frame if it was cut off, and a Close.
async fn write_loop(
    mut sink: Sink,
    mut rx: OutboxReceiver,
    close: Arc<AtomicU16>,
    ping_every: Duration,
    shutdown: CancellationToken,
) {
    let kill = rx.kill_token();
    let mut items: Vec<OutItem> = Vec::with_capacity(BATCH);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = false;
    'run: while !closing {
        let n = tokio::select! {
            biased;
            _ = kill.cancelled() => break,
            n = rx.recv_many(&mut items, BATCH) => n,
            _ = ping.tick() => {
                if !send_or_kill(&mut sink, &kill, Message::Ping(Bytes::new())).await {
                    break;
                }
                continue;
            }
        };
        if n == 0 {
            break;
        }
        let mut frames = Vec::new();
        for item in items.drain(..) {
            match item {
                OutItem::Frames(b) => {
                    rx.taken(b.len());
                    if !closing {
                        frames.push(b);
                    }
                }
                OutItem::Close => closing = true,
            }
        }
        for payload in frames.into_iter().flat_map(split_frames) {
            let fed = if closing {
                // Last frames: bounded in time, not interrupted by the kill token.
                matches!(
                    tokio::time::timeout(CLOSE_FLUSH, sink.feed(Message::Binary(payload))).await,
                    Ok(Ok(()))
                )
            } else {
                tokio::select! {
                    biased;
                    _ = kill.cancelled() => break 'run,
                    r = sink.feed(Message::Binary(payload)) => r.is_ok(),
                }
            };
            if !fed {
                kill.cancel();
                return;
            }
        }
        let flushed = if closing {
            matches!(
                tokio::time::timeout(CLOSE_FLUSH, sink.flush()).await,
                Ok(Ok(()))
            )
        } else {
            tokio::select! {
                biased;
                _ = kill.cancelled() => break,
                r = sink.flush() => r.is_ok(),
            }
        };
        if !flushed {
            kill.cancel();
            return;
        }
    }
    let code = if rx.is_slow() {
        let frame = ServerFrame::closing(WireError::new(
            ErrorCode::SlowConsumer,
            "outbound queue overflowed; reconnect and resume from your last seq",
        ));
        for payload in split_frames(proto::encode(&frame)) {
            let _ = tokio::time::timeout(CLOSE_FLUSH, sink.send(Message::Binary(payload))).await;
        }
        close_code::AGAIN
    } else {
        match close.load(Ordering::Relaxed) {
            close_code::NORMAL if shutdown.is_cancelled() => close_code::AWAY,
            c => c,
        }
    };
    finish(&mut sink, code).await;
    kill.cancel();
}

async fn send_or_kill(sink: &mut Sink, kill: &CancellationToken, msg: Message) -> bool {
    let ok = tokio::select! {
        biased;
        _ = kill.cancelled() => return false,
        r = sink.send(msg) => r.is_ok(),
    };
    if !ok {
        kill.cancel();
    }
    ok
}

/// Sends a Close with `code` and closes the sink, bounded in time.
async fn finish(sink: &mut Sink, code: u16) {
    let frame = CloseFrame {
        code,
        reason: close_reason(code).into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = sink.send(Message::Close(Some(frame))).await;
        let _ = sink.close().await;
    })
    .await;
}

/// The reason text sent with each close code (documented in proto-spec/transports.md).
fn close_reason(code: u16) -> &'static str {
    match code {
        close_code::UNSUPPORTED => "binary messages only",
        close_code::SIZE => "message exceeds max_frame",
        close_code::PROTOCOL => "websocket protocol error",
        close_code::AGAIN => "reconnect later",
        close_code::AWAY => "server is shutting down",
        _ => "closed",
    }
}

/// Answers an upgrade over the connection cap with `server_busy` and close 1013.
async fn refuse_busy(socket: WebSocket, retry_ms: u64) {
    let (mut sink, _stream) = socket.split();
    let frame = ServerFrame::closing(
        WireError::new(ErrorCode::ServerBusy, "server is at its connection limit")
            .with_retry(retry_ms),
    );
    for payload in split_frames(proto::encode(&frame)) {
        let _ =
            tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Binary(payload))).await;
    }
    finish(&mut sink, close_code::AGAIN).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn origins() {
        let mut h = HeaderMap::new();
        let list = vec!["https://app.example.com".to_string()];
        assert!(origin_allowed(&list, &h), "no Origin: not a browser");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!origin_allowed(&list, &h));
        assert!(origin_allowed(&["*".to_string()], &h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://APP.example.com"),
        );
        assert!(origin_allowed(&list, &h));
    }
}
