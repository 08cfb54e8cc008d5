//! How the tool reaches the server: TCP, TLS over TCP, QUIC or WebSocket.
//!
//! Every transport ends as a [`Stream`] of the v1 *byte framing* (4-byte
//! big-endian length, then the map), so [`crate::conn`] and every scenario
//! scan frames in place the same way whatever carries them:
//!
//! - TCP: the socket itself.
//! - TLS: tokio-rustls over the TCP socket; the certificate is pinned by
//!   SHA-256 (`--pin`) or, for loopback benchmarking, accepted blindly
//!   (`--insecure`). Same framing inside.
//! - QUIC: quinn, ALPN `roomcast/1`, one bidirectional stream carrying the
//!   same framing. Connections share a few client endpoints (one UDP socket
//!   each, one per source address, at most [`QUIC_ENDPOINTS`]).
//! - WebSocket: `GET /ws` on the HTTP listener (tokio-tungstenite, or yawc
//!   offering permessage-deflate with `--ws-compression`); one binary
//!   message is one frame payload without the length prefix. [`WsStream`]
//!   re-adds the prefix while copying each message into the caller's read
//!   buffer, and splits written bytes back into one message per frame.
//!
//! Sockets are spread over loopback source addresses 127.0.0.1..=127.0.0.N so
//! one machine can open more than 64k TCP connections.

use crate::wire::{self, HEADER_LEN};
use bytes::Bytes;
use futures_util::{Sink, Stream as _};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// QUIC client endpoints (UDP sockets) connections are spread over, at most.
pub const QUIC_ENDPOINTS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Plain TCP with the v1 framing (`--tcp`, default 127.0.0.1:7400).
    Tcp,
    /// TCP + TLS with the v1 framing inside (`--tls-tcp`, off by default on the server).
    Tls,
    /// QUIC, one bidirectional stream, ALPN roomcast/1 (`--quic`, default 127.0.0.1:7401/udp).
    Quic,
    /// WebSocket binary messages on `GET /ws` (`--http`, default 127.0.0.1:7480).
    Ws,
}

impl Transport {
    /// The server's default address for this transport (TLS has none: it is
    /// off unless `--tls-tcp` is set; 7403 is what `loadtest/scripts/perf.sh` uses).
    pub fn default_addr(self) -> SocketAddr {
        let port = match self {
            Transport::Tcp => 7400,
            Transport::Quic => 7401,
            Transport::Tls => 7403,
            Transport::Ws => 7480,
        };
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Quic => "quic",
            Transport::Ws => "ws",
        }
    }

    fn uses_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Quic)
    }
}

/// How the tool trusts the server's certificate (TLS and QUIC).
#[derive(Clone, Debug)]
pub enum Trust {
    /// Exactly the certificate whose DER hashes (SHA-256) to this; the
    /// handshake signature is still verified.
    Pin([u8; 32]),
    /// Any certificate (`--insecure`: loopback benchmarking only).
    Insecure,
}

/// Where and how to connect, and which loopback source addresses to cycle through.
#[derive(Clone)]
pub struct Target {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// Number of source addresses 127.0.0.1 ..= 127.0.0.N to spread connections over
    /// (each has its own ~28k ephemeral ports); 0 lets the kernel choose.
    pub source_addrs: u8,
    tls: Option<Arc<rustls::ClientConfig>>,
    quic: Option<Arc<QuicPool>>,
    /// WebSocket: offer permessage-deflate (yawc's client instead of tungstenite).
    ws_compression: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("transport", &self.transport)
            .field("addr", &self.addr)
            .field("source_addrs", &self.source_addrs)
            .finish()
    }
}

/// A connected byte stream of the v1 framing, whatever the transport.
/// The TLS, QUIC and WebSocket states are boxed so a TCP connection stays small.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Quic(Box<QuicStream>),
    Ws(Box<WsStream>),
}

impl Target {
    /// A target for `transport` at `addr`. TLS and QUIC need `trust`.
    pub fn new(
        transport: Transport,
        addr: SocketAddr,
        source_addrs: u8,
        trust: Option<Trust>,
    ) -> anyhow::Result<Target> {
        let tls = if transport.uses_tls() {
            let trust = trust.ok_or_else(|| {
                anyhow::anyhow!(
                    "--transport {} needs the server's certificate: --pin SHA256 (the \
                     `sha256=...` on the server's startup line) or --insecure",
                    transport.name()
                )
            })?;
            Some(Arc::new(client_config(&trust)?))
        } else {
            None
        };
        let quic = match (transport, &tls) {
            (Transport::Quic, Some(tls)) => {
                let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls.clone())
                    .map_err(|e| anyhow::anyhow!("QUIC client config: {e}"))?;
                let mut config = quinn::ClientConfig::new(Arc::new(crypto));
                let mut transport = quinn::TransportConfig::default();
                // The server sends keep-alives; the client needs no streams from it.
                // No idle timeout of our own: the server's (twice its heartbeat)
                // applies; quinn's 30 s default would cut idle connections to a
                // server whose heartbeat is 30 s or more.
                transport.max_idle_timeout(None);
                transport.max_concurrent_uni_streams(0u8.into());
                transport.max_concurrent_bidi_streams(0u8.into());
                config.transport_config(Arc::new(transport));
                let endpoints = usize::from(source_addrs).clamp(1, QUIC_ENDPOINTS);
                Some(Arc::new(QuicPool {
                    config,
                    endpoints: (0..endpoints).map(|_| OnceLock::new()).collect(),
                }))
            }
            _ => None,
        };
        Ok(Target {
            transport,
            addr,
            source_addrs,
            tls,
            quic,
            ws_compression: false,
        })
    }

    /// WebSocket connections offer permessage-deflate (level 1).
    pub fn with_ws_compression(mut self, on: bool) -> Target {
        self.ws_compression = on;
        self
    }

    /// A plain TCP target (tests, the relay).
    pub fn tcp(addr: SocketAddr, source_addrs: u8) -> Target {
        Target {
            transport: Transport::Tcp,
            addr,
            source_addrs,
            tls: None,
            quic: None,
            ws_compression: false,
        }
    }

    fn loopback_source(&self, n: usize) -> Option<SocketAddr> {
        (self.source_addrs > 0 && self.addr.ip().is_loopback() && self.addr.is_ipv4()).then(|| {
            let host = 1 + (n % usize::from(self.source_addrs)) as u8;
            SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), 0))
        })
    }

    async fn tcp_connect(&self, n: usize) -> io::Result<TcpStream> {
        let socket = match self.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(src) = self.loopback_source(n) {
            socket.bind(src)?;
        }
        let s = socket.connect(self.addr).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    /// Opens connection number `n` (its source address is `127.0.0.(1 + n % N)` on
    /// loopback). `read_buffer` sizes the transport's own receive buffer where it
    /// has one (WebSocket), so idle connections stay small.
    pub async fn connect(&self, n: usize, read_buffer: usize) -> io::Result<Stream> {
        match self.transport {
            Transport::Tcp => Ok(Stream::Tcp(self.tcp_connect(n).await?)),
            Transport::Tls => {
                let tcp = self.tcp_connect(n).await?;
                let config = self.tls.clone().ok_or_else(|| no_config("TLS"))?;
                let name = ServerName::IpAddress(self.addr.ip().into());
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await?;
                Ok(Stream::Tls(Box::new(tls)))
            }
            Transport::Quic => {
                let pool = self.quic.as_ref().ok_or_else(|| no_config("QUIC"))?;
                let endpoint = pool.endpoint(n, self)?;
                let connection = endpoint
                    .connect_with(pool.config.clone(), self.addr, "localhost")
                    .map_err(io::Error::other)?
                    .await
                    .map_err(quic_error)?;
                // Opening a stream sends nothing: the server sees it with the `hello`.
                let (send, recv) = connection.open_bi().await.map_err(quic_error)?;
                Ok(Stream::Quic(Box::new(QuicStream {
                    send,
                    recv,
                    _connection: connection,
                })))
            }
            Transport::Ws => {
                let tcp = self.tcp_connect(n).await?;
                let url = format!("ws://{}/ws", self.addr);
                let ws = if self.ws_compression {
                    let url = url::Url::parse(&url).map_err(io::Error::other)?;
                    let options = yawc::Options::default()
                        .with_compression_level(yawc::CompressionLevel::fast())
                        .with_read_buffer_capacity(read_buffer.max(1024))
                        .with_limits(crate::conn::MAX_FRAME + 1, crate::conn::MAX_FRAME + 1);
                    let ws = yawc::WebSocket::handshake(url, tcp, options)
                        .await
                        .map_err(io::Error::other)?;
                    Ws::Deflate(Box::new(ws))
                } else {
                    let mut config = WebSocketConfig::default();
                    // tungstenite allocates its read buffer up front (128 KiB by default).
                    config.read_buffer_size = read_buffer.max(1024);
                    let (ws, _) =
                        tokio_tungstenite::client_async_with_config(url, tcp, Some(config))
                            .await
                            .map_err(ws_error)?;
                    Ws::Plain(ws)
                };
                Ok(Stream::Ws(Box::new(WsStream {
                    ws,
                    pending: Bytes::new(),
                    header: [0; HEADER_LEN],
                    header_at: HEADER_LEN,
                    partial: Vec::new(),
                    closed: false,
                    failed: None,
                })))
            }
        }
    }
}

fn no_config(what: &str) -> io::Error {
    io::Error::other(format!("{what} is not configured on this target"))
}

/// A quinn connection failure as an `io::Error` whose kind keeps "refused"
/// (QUIC has no RST: an absent server shows up as a handshake timeout).
fn quic_error(e: quinn::ConnectionError) -> io::Error {
    use quinn::ConnectionError as E;
    let kind = match &e {
        E::TimedOut => io::ErrorKind::TimedOut,
        E::ConnectionClosed(_) | E::ApplicationClosed(_) | E::Reset => {
            io::ErrorKind::ConnectionReset
        }
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

fn ws_error(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

/// QUIC client endpoints, created on first use (quinn needs a runtime).
struct QuicPool {
    config: quinn::ClientConfig,
    endpoints: Vec<OnceLock<io::Result<quinn::Endpoint>>>,
}

impl QuicPool {
    fn endpoint(&self, n: usize, target: &Target) -> io::Result<quinn::Endpoint> {
        let k = n % self.endpoints.len();
        let made = self.endpoints[k].get_or_init(|| {
            let bind = target
                .loopback_source(k)
                .unwrap_or_else(|| match target.addr {
                    SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                    SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
                });
            quic_endpoint(bind)
        });
        match made {
            Ok(e) => Ok(e.clone()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }
}

/// The kernel's default UDP receive buffer (~208 KiB) overflows under fan-out to
/// hundreds of connections on one socket (drops show as `RcvbufErrors` in
/// /proc/net/snmp, then as QUIC loss recovery): ask for this much (capped by
/// `net.core.rmem_max`).
pub const QUIC_RECV_BUFFER: usize = 4 << 20;

fn quic_endpoint(bind: SocketAddr) -> io::Result<quinn::Endpoint> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(bind),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    let _ = socket.set_recv_buffer_size(QUIC_RECV_BUFFER);
    let _ = socket.set_send_buffer_size(QUIC_RECV_BUFFER);
    socket.bind(&bind.into())?;
    let runtime =
        quinn::default_runtime().ok_or_else(|| io::Error::other("no async runtime for QUIC"))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket.into(),
        runtime,
    )
}

/// One QUIC connection's only stream.
pub struct QuicStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// Kept so the connection lives as long as the stream (dropping it closes).
    _connection: quinn::Connection,
}

/// A WebSocket connection seen as the v1 byte framing.
///
/// Reading: each binary message is copied into the caller's buffer behind a
/// 4-byte length header; a message that does not fit continues on the next
/// read (`pending` is tungstenite's own `Bytes`, sliced, never copied twice),
/// so the tool allocates nothing per message. Writing: the bytes written are
/// whole length-prefixed frames (the tool encodes them so); each becomes one
/// binary message without its header. A trailing partial frame waits in
/// `partial`.
pub struct WsStream {
    ws: Ws,
    /// The rest of the message being copied out.
    pending: Bytes,
    /// Its length header, and how much of it was already copied out.
    header: [u8; HEADER_LEN],
    header_at: usize,
    partial: Vec<u8>,
    closed: bool,
    failed: Option<io::Error>,
}

/// The WebSocket client under [`WsStream`]: tungstenite, or yawc when the
/// tool offers permessage-deflate (`--ws-compression`). (It lives inside the
/// boxed [`WsStream`]; boxing tungstenite too would add a pointer chase on
/// the common path for nothing.)
#[allow(clippy::large_enum_variant)]
enum Ws {
    Plain(WebSocketStream<TcpStream>),
    Deflate(Box<yawc::WebSocket<TcpStream>>),
}

/// What a WebSocket message means to the byte framing.
enum WsMsg {
    Binary(Bytes),
    Text,
    Close,
    /// Pings (answered by the library), pongs, raw frames.
    Other,
}

impl Ws {
    fn poll_next_msg(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<WsMsg>> {
        match self {
            Ws::Plain(ws) => Poll::Ready(match ready!(Pin::new(ws).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => Ok(WsMsg::Close),
                Some(Ok(Message::Binary(b))) => Ok(WsMsg::Binary(b)),
                Some(Ok(Message::Text(_))) => Ok(WsMsg::Text),
                Some(Ok(_)) => Ok(WsMsg::Other),
                Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                )) => Ok(WsMsg::Close),
                Some(Err(e)) => Err(ws_error(e)),
            }),
            Ws::Deflate(ws) => Poll::Ready(match ready!(ws.poll_next_frame(cx)) {
                Ok(f) => match f.opcode() {
                    yawc::frame::OpCode::Binary => Ok(WsMsg::Binary(f.into_payload())),
                    yawc::frame::OpCode::Text => Ok(WsMsg::Text),
                    yawc::frame::OpCode::Close => Ok(WsMsg::Close),
                    _ => Ok(WsMsg::Other),
                },
                Err(yawc::WebSocketError::ConnectionClosed) => Ok(WsMsg::Close),
                Err(yawc::WebSocketError::IoError(e)) => Err(e),
                Err(e) => Err(io::Error::other(e)),
            }),
        }
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Ws::Plain(ws) => Pin::new(ws).poll_ready(cx).map_err(ws_error),
            Ws::Deflate(ws) => Pin::new(ws.as_mut())
                .poll_ready(cx)
                .map_err(io::Error::other),
        }
    }

    fn start_send(&mut self, payload: Bytes) -> io::Result<()> {
        match self {
            Ws::Plain(ws) => Pin::new(ws)
                .start_send(Message::Binary(payload))
                .map_err(ws_error),
            Ws::Deflate(ws) => Pin::new(ws.as_mut())
                .start_send(yawc::frame::Frame::binary(payload))
                .map_err(io::Error::other),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Ws::Plain(ws) => Pin::new(ws).poll_flush(cx).map_err(ws_error),
            Ws::Deflate(ws) => Pin::new(ws.as_mut())
                .poll_flush(cx)
                .map_err(io::Error::other),
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Ws::Plain(ws) => Pin::new(ws).poll_close(cx).map_err(ws_error),
            Ws::Deflate(ws) => Pin::new(ws.as_mut())
                .poll_close(cx)
                .map_err(io::Error::other),
        }
    }
}

impl WsStream {
    /// Copies as much of the current message as fits; true when it is all out.
    fn drain_into(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.header_at < HEADER_LEN {
            let n = (HEADER_LEN - self.header_at).min(buf.remaining());
            buf.put_slice(&self.header[self.header_at..self.header_at + n]);
            self.header_at += n;
            if self.header_at < HEADER_LEN {
                return false;
            }
        }
        let n = self.pending.len().min(buf.remaining());
        if n > 0 {
            buf.put_slice(&self.pending[..n]);
            if n == self.pending.len() {
                self.pending = Bytes::new();
            } else {
                let _ = self.pending.split_to(n);
            }
        }
        self.pending.is_empty()
    }

    fn poll_read_ws(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let start = buf.filled().len();
        if let Some(e) = self.failed.take() {
            return Poll::Ready(Err(e));
        }
        if !self.drain_into(buf) {
            return Poll::Ready(Ok(()));
        }
        // Copy every message already received, until the buffer is full.
        while !self.closed && buf.remaining() > 0 {
            let next = match self.ws.poll_next_msg(cx) {
                Poll::Pending if buf.filled().len() > start => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
                Poll::Ready(m) => m,
            };
            match next {
                Ok(WsMsg::Close) => self.closed = true,
                Ok(WsMsg::Binary(b)) => {
                    self.header = (b.len() as u32).to_be_bytes();
                    self.header_at = 0;
                    self.pending = b;
                    if !self.drain_into(buf) {
                        break;
                    }
                }
                Ok(WsMsg::Text) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text WebSocket message (the protocol uses binary messages)",
                    )))
                }
                // Pings are answered by the library itself; pongs and raw frames carry nothing.
                Ok(WsMsg::Other) => {}
                Err(e) if buf.filled().len() > start => {
                    // Hand out what was read first; the error comes with the next read.
                    self.failed = Some(e);
                    break;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_ready_ws(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.ws.poll_ready(cx)
    }

    fn send_ws(&mut self, payload: &[u8]) -> io::Result<()> {
        self.ws.start_send(Bytes::copy_from_slice(payload))
    }

    fn poll_write_ws(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if !self.partial.is_empty() {
            // Rare: a frame split across two writes; complete it first.
            ready!(self.poll_ready_ws(cx))?;
            let have = self.partial.len();
            let need = wire::frame_need(&self.partial).map_or(HEADER_LEN - have, |n| n - have);
            let take = need.min(buf.len());
            self.partial.extend_from_slice(&buf[..take]);
            if wire::frame_need(&self.partial) == Some(self.partial.len()) {
                let frame = std::mem::take(&mut self.partial);
                self.send_ws(&frame[HEADER_LEN..])?;
            }
            return Poll::Ready(Ok(take));
        }
        let mut used = 0;
        while used < buf.len() {
            let rest = &buf[used..];
            match wire::frame_need(rest) {
                Some(n) if n <= rest.len() => {
                    // Only whole frames are consumed: wait for room before taking one.
                    match self.poll_ready_ws(cx) {
                        Poll::Ready(r) => r?,
                        Poll::Pending if used > 0 => break,
                        Poll::Pending => return Poll::Pending,
                    }
                    self.send_ws(&rest[HEADER_LEN..n])?;
                    used += n;
                }
                _ if used > 0 => break,
                _ => {
                    self.partial.extend_from_slice(rest);
                    used = rest.len();
                }
            }
        }
        Poll::Ready(Ok(used))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Quic(s) => AsyncRead::poll_read(Pin::new(&mut s.recv), cx, buf),
            Stream::Ws(s) => s.poll_read_ws(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Quic(s) => AsyncWrite::poll_write(Pin::new(&mut s.send), cx, buf),
            Stream::Ws(s) => s.poll_write_ws(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Quic(s) => AsyncWrite::poll_flush(Pin::new(&mut s.send), cx),
            Stream::Ws(s) => s.ws.poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Quic(s) => AsyncWrite::poll_shutdown(Pin::new(&mut s.send), cx),
            Stream::Ws(s) => s.ws.poll_close(cx),
        }
    }
}

/// The rustls client config for `trust`: ring only, ALPN `roomcast/1`.
pub fn client_config(trust: &Trust) -> anyhow::Result<rustls::ClientConfig> {
    roomcast::tls::install_default_provider();
    match trust {
        Trust::Pin(pin) => {
            // The SDK's pin verifier: the same check real clients make.
            roomcast_client::tls::client_config(
                &roomcast_client::Trust::Pin(*pin),
                &[roomcast_client::tls::ALPN],
            )
            .map_err(|e| anyhow::anyhow!("tls: {e}"))
        }
        Trust::Insecure => {
            let provider = roomcast::tls::provider();
            let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(rustls::DEFAULT_VERSIONS)
                .map_err(|e| anyhow::anyhow!("tls versions: {e}"))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
                .with_no_client_auth();
            config.alpn_protocols = vec![roomcast::tls::ALPN.to_vec()];
            Ok(config)
        }
    }
}

/// `--insecure`: any certificate, but the handshake signature is still checked.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
