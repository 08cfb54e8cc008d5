//! The WebSocket bridge for browsers: `GET /ws` on the HTTP listener (yawc;
//! docs/TRANSPORTS.md records why).
//!
//! Each binary message carries exactly one frame's MessagePack map, without
//! the length header. Inbound, a binary message is one payload for
//! [`conn::serve_frames`]; a message above `max_frame` is answered with
//! `frame_too_large` and close 1009 (one above twice `max_frame` is refused
//! by the WebSocket layer from its header, with close 1009 alone); a text
//! message closes the connection with 1003. Outbound, the outbox's chunks
//! (length-prefixed frames back to back, shared by every subscriber) are split
//! into one binary message per frame without copying. WebSocket pings are sent
//! every heartbeat and answered automatically, but only protocol frames count
//! as activity, so the hello and idle deadlines are the same as on TCP.
//!
//! Per-message compression (RFC 7692) is off unless `ws_compression` is set;
//! then it is negotiated with clients that offer it, without context takeover
//! in either direction by default (deflate state is borrowed from one pool per
//! message, so an idle compressed connection costs what an uncompressed one
//! does), and messages under `ws_compression_min_bytes` are sent as they are.

use super::ws_opcodes::ReservedOpcodes;
use crate::config::RateSpec;
use crate::conn::outbox::{OutItem, OutboxReceiver};
use crate::conn::{self, writer::CLOSE_FLUSH};
use crate::metrics::{ConnectionGuard, Transport, METRICS};
use crate::proto::frame::split_frames;
use crate::proto::{self, ErrorCode, FrameError, ServerFrame, WireError};
use crate::ratelimit::{Decision, Gcra};
use crate::server::Core;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use yawc::close::CloseCode;
use yawc::frame::{Frame, OpCode};
use yawc::{CompressionLevel, DeflatePool, Options, Role, WebSocket, WebSocketError};

/// Items taken from the outbox per wake-up.
const BATCH: usize = 256;

/// WebSocket close codes roomcast sends (proto-spec/transports.md).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const UNSUPPORTED: u16 = 1003;
    pub const POLICY: u16 = 1008;
    pub const SIZE: u16 = 1009;
    pub const AGAIN: u16 = 1013;
}

/// What the `/ws` handler needs besides the core: the connection tracker and
/// shutdown token shared with the other transports, and the WebSocket options
/// (built once; they hold the shared deflate pool).
#[derive(Clone)]
pub struct Bridge {
    pub core: Arc<Core>,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
    options: Options,
}

impl Bridge {
    pub fn new(core: Arc<Core>, tracker: TaskTracker, shutdown: CancellationToken) -> Bridge {
        let options = options(&core.config);
        Bridge {
            core,
            tracker,
            shutdown,
            options,
        }
    }
}

/// Bytes of outgoing messages collected before a write (see `options`).
const WRITE_BATCH_BYTES: usize = 16 * 1024;

/// Deflate state kept for reuse: enough for the messages compressed at the
/// same moment (about one per runtime worker), not one per connection.
const DEFLATE_POOL: usize = 64;

fn options(config: &crate::config::Config) -> Options {
    let max = config.max_frame;
    // Messages up to twice `max_frame` are read so that they can be answered
    // with `frame_too_large`; beyond that the WebSocket layer closes with 1009
    // from the header. Small buffers: an idle browser costs what TCP costs;
    // they grow only while a large message is in flight.
    let limit = max.saturating_mul(2).saturating_add(1);
    let options = Options::default()
        .with_limits(limit, limit)
        .with_read_buffer_capacity(2 * 1024)
        .with_write_buffer_capacity(1024)
        // Frames collect up to this many bytes before a write: a fan-out
        // batch goes out in few large writes (8 KiB by default).
        .with_backpressure_boundary(WRITE_BATCH_BYTES);
    if !config.ws_compression {
        return options.without_compression();
    }
    let options = options
        .with_compression_level(CompressionLevel::new(config.ws_compression_level))
        .with_compression_threshold(config.ws_compression_min_bytes);
    if config.ws_compression_context_takeover {
        options
    } else {
        options
            .server_no_context_takeover()
            .client_no_context_takeover()
            .with_deflate_pool(DeflatePool::new(DEFLATE_POOL))
    }
}

pub fn router(bridge: Bridge) -> Router {
    Router::new().route("/ws", get(upgrade)).with_state(bridge)
}

fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    // RFC 6454 §7.3: a request carries at most one Origin; two are a forgery
    // attempt (a check could read one and a proxy or the browser the other).
    if headers.get_all(header::ORIGIN).iter().nth(1).is_some() {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true; // not a browser
    };
    allowed
        .iter()
        .any(|a| a == "*" || origin.as_bytes().eq_ignore_ascii_case(a.as_bytes()))
}

async fn upgrade(
    State(b): State<Bridge>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> Response {
    if !origin_allowed(&b.core.config.ws_allowed_origins, req.headers()) {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    // The upgraded connection is taken here, not by yawc, so that its bytes
    // pass through `ReservedOpcodes` (ws_opcodes.rs) before yawc reads them.
    // yawc still checks the handshake, answers it and negotiates compression;
    // its own upgrade future (left without a connection) is dropped.
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return (StatusCode::BAD_REQUEST, "bad websocket upgrade").into_response();
    };
    let (response, _) = match WebSocket::upgrade_with_options(&mut req, b.options.clone()) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade refused");
            return (StatusCode::BAD_REQUEST, "bad websocket upgrade").into_response();
        }
    };
    let extensions = response
        .headers()
        .get(header::SEC_WEBSOCKET_EXTENSIONS)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let permit = b.core.permits.clone().try_acquire_owned().ok();
    let Bridge {
        core,
        tracker,
        shutdown,
        options,
    } = b;
    tracker.spawn(async move {
        let io = match on_upgrade.await {
            Ok(upgraded) => ReservedOpcodes::new(TokioIo::new(upgraded)),
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        let ws = WebSocket::from_stream_with_extensions(
            io,
            Role::Server,
            extensions.as_deref(),
            options,
        );
        let socket = match ws {
            Ok(ws) => Socket(ws),
            Err(e) => {
                tracing::debug!(error = %e, "websocket setup failed");
                return;
            }
        };
        let Some(_permit) = permit else {
            return refuse_busy(socket, core.reconnect_hint_ms()).await;
        };
        core.connections.fetch_add(1, Ordering::Relaxed);
        let _open = ConnectionGuard::open(Transport::Ws);
        serve(core.clone(), peer.ip(), socket, shutdown).await;
        core.connections.fetch_sub(1, Ordering::Relaxed);
    });
    response.map(axum::body::Body::new)
}

/// The upgraded connection as yawc reads it.
type Upgraded = ReservedOpcodes<TokioIo<hyper::upgrade::Upgraded>>;

/// yawc's socket with its errors kept: its own `Stream` ends on any error,
/// and the bridge needs to tell an oversize message from a dropped peer.
/// Generic over the byte stream only so that the fuzz target can drive the
/// inbound half over memory ([`inbound`]); the server uses [`Upgraded`].
struct Socket<S = Upgraded>(WebSocket<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for Socket<S> {
    type Item = Result<Frame, WebSocketError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().0.poll_next_frame(cx) {
            Poll::Ready(Err(WebSocketError::ConnectionClosed)) => Poll::Ready(None),
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Frame> for Socket<S> {
    type Error = WebSocketError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().0.poll_ready_unpin(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Frame) -> Result<(), Self::Error> {
        self.get_mut().0.start_send_unpin(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().0.poll_flush_unpin(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().0.poll_close_unpin(cx)
    }
}

async fn serve(core: Arc<Core>, peer: IpAddr, socket: Socket, shutdown: CancellationToken) {
    let (sink, stream) = socket.split();
    // The close code the writer sends, chosen by what the reader saw.
    let close = Arc::new(AtomicU16::new(close_code::NORMAL));
    let frames = Payloads::new(stream, close.clone(), core.config.max_frame);
    let ping_every = core.config.heartbeat();
    let stop = shutdown.clone();
    conn::serve_frames(
        core,
        peer,
        frames,
        move |rx| write_loop(sink, rx, close, ping_every, stop),
        shutdown,
        Transport::Ws,
    )
    .await;
}

/// Control frames (Ping, Pong) a connection may send before its first binary
/// message (`hello`): a browser sends none, only Pongs to the server's pings.
const CONTROL_BEFORE_HELLO: u32 = 4;
/// After it: a burst, then a steady rate per second.
const CONTROL_BURST: u32 = 16;
const CONTROL_PER_SECOND: f64 = 2.0;

/// The budget of control frames. Every Ping the peer sends makes the WebSocket
/// layer queue a Pong, whether or not the peer reads: without a budget, a peer
/// that floods Pings and never reads grows that queue without bound.
struct ControlBudget {
    before_hello: u32,
    rate: Option<Gcra>,
}

impl ControlBudget {
    fn new() -> Self {
        ControlBudget {
            before_hello: CONTROL_BEFORE_HELLO,
            rate: None,
        }
    }

    /// The first binary message arrived: the steady budget applies from now.
    fn greeted(&mut self) {
        if self.rate.is_none() {
            self.rate = Some(Gcra::new(RateSpec {
                per_second: CONTROL_PER_SECOND,
                burst: CONTROL_BURST,
            }));
        }
    }

    /// Takes one control frame; false when over budget.
    fn take(&mut self, now: std::time::Instant) -> bool {
        match &mut self.rate {
            Some(g) => matches!(g.check(now), Decision::Allow),
            None => match self.before_hello.checked_sub(1) {
                Some(left) => {
                    self.before_hello = left;
                    true
                }
                None => false,
            },
        }
    }
}

/// Binary messages in, frame payloads out; see the module docs for the rest.
pub struct Payloads<S = Upgraded> {
    inner: SplitStream<Socket<S>>,
    close: Arc<AtomicU16>,
    max: usize,
    done: bool,
    control: ControlBudget,
}

/// The bridge's inbound half over a byte stream that already carries
/// WebSocket frames (what `/ws` reads after the HTTP upgrade), with the
/// options `/ws` uses for `config` and, if `extensions` names
/// permessage-deflate, compression as negotiated. Yields exactly the payloads
/// and errors [`conn::serve_frames`] would get; [`Payloads::close_code`] is
/// the close code the writer would then send. The server builds the same
/// thing in its upgrade handler; this exists for `fuzz/` (`ws_frames`).
pub fn inbound<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    config: &crate::config::Config,
    extensions: Option<&str>,
) -> Result<Payloads<ReservedOpcodes<S>>, WebSocketError> {
    let io = ReservedOpcodes::new(io);
    let ws = WebSocket::from_stream_with_extensions(io, Role::Server, extensions, options(config))?;
    let (_sink, stream) = Socket(ws).split();
    let close = Arc::new(AtomicU16::new(close_code::NORMAL));
    Ok(Payloads::new(stream, close, config.max_frame))
}

impl<S: AsyncRead + AsyncWrite + Unpin> Payloads<S> {
    fn new(inner: SplitStream<Socket<S>>, close: Arc<AtomicU16>, max: usize) -> Self {
        Payloads {
            inner,
            close,
            max,
            done: false,
            control: ControlBudget::new(),
        }
    }

    /// The close code chosen by what was read so far (1000 until an error).
    pub fn close_code(&self) -> u16 {
        self.close.load(Ordering::Relaxed)
    }

    fn fail(&mut self, code: u16, e: FrameError) -> Poll<Option<Result<Bytes, FrameError>>> {
        self.done = true;
        self.close.store(code, Ordering::Relaxed);
        Poll::Ready(Some(Err(e)))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for Payloads<S> {
    type Item = Result<Bytes, FrameError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let frame = match self.inner.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(e))) => {
                    let (code, err) = frame_error(e);
                    return self.fail(code, err);
                }
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            };
            match frame.opcode() {
                OpCode::Binary if frame.payload().len() > self.max => {
                    let (len, max) = (frame.payload().len(), self.max);
                    return self.fail(close_code::SIZE, FrameError::TooLarge { len, max });
                }
                OpCode::Binary => {
                    self.control.greeted();
                    return Poll::Ready(Some(Ok(frame.into_payload())));
                }
                // Answered by the WebSocket layer; not protocol activity, but
                // each one counts against the control budget.
                OpCode::Ping | OpCode::Pong => {
                    if self.control.take(std::time::Instant::now()) {
                        continue;
                    }
                    return self.fail(
                        close_code::POLICY,
                        FrameError::Io(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "too many control frames",
                        )),
                    );
                }
                OpCode::Text => {
                    return self.fail(
                        close_code::UNSUPPORTED,
                        FrameError::Io(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "text message (roomcast speaks binary messages only)",
                        )),
                    )
                }
                // The peer closed (the WebSocket layer has answered it).
                OpCode::Close | OpCode::Continuation => {
                    self.done = true;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

/// Maps a WebSocket-layer error to the close code and the connection's error.
/// (For these the WebSocket layer has already queued its own Close.)
fn frame_error(e: WebSocketError) -> (u16, FrameError) {
    let code = match e {
        WebSocketError::FrameTooLarge => close_code::SIZE,
        WebSocketError::IoError(e) => return (close_code::NORMAL, FrameError::Io(e)),
        _ => close_code::PROTOCOL,
    };
    let kind = std::io::ErrorKind::InvalidData;
    (
        code,
        FrameError::Io(std::io::Error::new(kind, e.to_string())),
    )
}

type WsSink = SplitSink<Socket, Frame>;

/// Drains the outbox into binary messages (one per frame, zero-copy) until the
/// outbox is closed or killed, pinging every `ping_every`; then sends the
/// closing `slow_consumer` frame if it was cut off, and a Close.
async fn write_loop(
    mut sink: WsSink,
    mut rx: OutboxReceiver,
    close: Arc<AtomicU16>,
    ping_every: Duration,
    shutdown: CancellationToken,
) {
    let kill = rx.kill_token();
    // Grown by the first batch, not reserved up front: 256 slots are 8 KiB
    // that an idle connection would hold for nothing (as in `conn::writer`).
    let mut items: Vec<OutItem> = Vec::new();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = false;
    'run: while !closing {
        let n = tokio::select! {
            biased;
            _ = kill.cancelled() => break,
            n = rx.recv_many(&mut items, BATCH) => n,
            _ = ping.tick() => {
                if !send_or_kill(&mut sink, &kill, Frame::ping(Bytes::new())).await {
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
        if items.capacity() > BATCH {
            items = Vec::new();
        }
        for payload in frames.into_iter().flat_map(split_frames) {
            METRICS.bytes_out[Transport::Ws as usize].add(payload.len() as u64);
            let fed = if closing {
                // Last frames: bounded in time, not interrupted by the kill token.
                matches!(
                    tokio::time::timeout(CLOSE_FLUSH, sink.feed(Frame::binary(payload))).await,
                    Ok(Ok(()))
                )
            } else {
                if rx.is_dead() {
                    break 'run;
                }
                // The feed first: it is ready at once unless the socket pushes
                // back, and then the kill token is polled (its lock taken) too.
                tokio::select! {
                    biased;
                    r = sink.feed(Frame::binary(payload)) => r.is_ok(),
                    _ = kill.cancelled() => break 'run,
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
        crate::metrics::error_sent(ErrorCode::SlowConsumer);
        let frame = ServerFrame::closing(WireError::new(
            ErrorCode::SlowConsumer,
            "outbound queue overflowed; reconnect and resume from your last seq",
        ));
        for payload in split_frames(proto::encode(&frame)) {
            let _ = tokio::time::timeout(CLOSE_FLUSH, sink.send(Frame::binary(payload))).await;
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

async fn send_or_kill(sink: &mut WsSink, kill: &CancellationToken, frame: Frame) -> bool {
    let ok = tokio::select! {
        biased;
        _ = kill.cancelled() => return false,
        r = sink.send(frame) => r.is_ok(),
    };
    if !ok {
        kill.cancel();
    }
    ok
}

/// Sends a Close with `code` and closes the sink, bounded in time.
async fn finish(sink: &mut WsSink, code: u16) {
    let frame = Frame::close(CloseCode::from(code), close_reason(code));
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = sink.send(frame).await;
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
        close_code::POLICY => "too many control frames",
        close_code::AGAIN => "reconnect later",
        close_code::AWAY => "server is shutting down",
        _ => "closed",
    }
}

/// Answers an upgrade over the connection cap with `server_busy` and close 1013.
async fn refuse_busy(socket: Socket, retry_ms: u64) {
    let (mut sink, _stream) = socket.split();
    let frame = ServerFrame::closing(
        WireError::new(ErrorCode::ServerBusy, "server is at its connection limit")
            .with_retry(retry_ms),
    );
    for payload in split_frames(proto::encode(&frame)) {
        let _ =
            tokio::time::timeout(Duration::from_secs(1), sink.send(Frame::binary(payload))).await;
    }
    finish(&mut sink, close_code::AGAIN).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn control_frames_have_a_budget() {
        let t0 = std::time::Instant::now();
        let mut b = ControlBudget::new();
        for _ in 0..CONTROL_BEFORE_HELLO {
            assert!(b.take(t0));
        }
        assert!(!b.take(t0), "a small budget before hello");
        b.greeted();
        for _ in 0..CONTROL_BURST {
            assert!(b.take(t0));
        }
        assert!(!b.take(t0), "then a burst");
        assert!(b.take(t0 + Duration::from_millis(500)), "then a rate");
    }

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
