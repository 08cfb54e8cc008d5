//! Opening one connection over each transport: a stream of inbound frame
//! payloads plus a task that writes outbound frames. Outbound frames always
//! arrive here length-prefixed (the TCP framing); byte-stream transports
//! write them as they are, WebSocket sends each frame's payload as one binary
//! message (`proto-spec/transports.md`).

use crate::conn::ConnError;
use crate::tls::{self, Trust};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{SinkExt, StreamExt};
use roomcast_protocol::frame::split_frames;
use roomcast_protocol::{FrameCodec, DEFAULT_MAX_FRAME};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::codec::FramedRead;

/// Where and how to connect.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// Plain TCP (server `--tcp`).
    Tcp(SocketAddr),
    /// TLS over TCP (server `--tls-tcp`). `server_name` is checked only with [`Trust::Roots`].
    Tls {
        addr: SocketAddr,
        server_name: String,
        trust: Trust,
    },
    /// QUIC (server `--quic`), ALPN `roomcast/1`, one bidirectional stream.
    Quic {
        addr: SocketAddr,
        server_name: String,
        trust: Trust,
    },
    /// The WebSocket bridge, e.g. `ws://127.0.0.1:7480/ws` (binary messages).
    Ws(String),
    /// The WebSocket bridge over TLS (server `--https`), e.g.
    /// `wss://chat.example.com:7481/ws`; the URL's host is the server name.
    Wss { url: String, trust: Trust },
}

impl Endpoint {
    /// The transport's short name (`tcp`, `tls`, `quic`, `ws`), for logs.
    pub fn transport(&self) -> &'static str {
        match self {
            Endpoint::Tcp(_) => "tcp",
            Endpoint::Tls { .. } => "tls",
            Endpoint::Quic { .. } => "quic",
            Endpoint::Ws(_) => "ws",
            Endpoint::Wss { .. } => "wss",
        }
    }
}

/// Inbound payloads; the stream ends when the connection does.
pub(crate) type Payloads = BoxStream<'static, Bytes>;

/// The largest server frame accepted. Server frames are not bounded by
/// `max_frame` (a history page can be several MB); the spec asks for at least 16 MiB.
pub const MAX_INBOUND: usize = 16 * DEFAULT_MAX_FRAME;

/// Opens the transport. The writer task ends (and closes the write side) when
/// `out` is closed or `close` turns true; dropping the returned stream closes
/// the read side.
pub(crate) async fn open(
    endpoint: &Endpoint,
    out: mpsc::UnboundedReceiver<Bytes>,
    close: watch::Receiver<bool>,
) -> Result<Payloads, ConnError> {
    match endpoint {
        Endpoint::Tcp(addr) => {
            let socket = TcpStream::connect(addr).await?;
            socket.set_nodelay(true)?;
            let (r, w) = socket.into_split();
            Ok(bytes_transport(r, w, out, close, ()))
        }
        Endpoint::Tls {
            addr,
            server_name,
            trust,
        } => {
            let config = tls::client_config(trust, &[tls::ALPN]).map_err(other)?;
            let name = rustls::pki_types::ServerName::try_from(server_name.clone())
                .map_err(|e| other(format!("server name {server_name:?}: {e}")))?;
            let socket = TcpStream::connect(addr).await?;
            socket.set_nodelay(true)?;
            let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, socket)
                .await?;
            let (r, w) = tokio::io::split(stream);
            Ok(bytes_transport(r, w, out, close, ()))
        }
        Endpoint::Quic {
            addr,
            server_name,
            trust,
        } => {
            let (connection, endpoint, send, recv) =
                quic_connect(*addr, server_name, trust).await?;
            Ok(bytes_transport(
                recv,
                send,
                out,
                close,
                (connection, endpoint),
            ))
        }
        Endpoint::Ws(url) => {
            let socket = ws_socket(url, 80).await?;
            ws_connect(url, socket, out, close).await
        }
        Endpoint::Wss { url, trust } => {
            let socket = ws_socket(url, 443).await?;
            let uri: tungstenite::http::Uri = url.parse().map_err(other)?;
            let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| other(format!("server name {host:?}: {e}")))?;
            let config = tls::client_config(trust, &[b"http/1.1"]).map_err(other)?;
            let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, socket)
                .await?;
            ws_connect(url, stream, out, close).await
        }
    }
}

fn other(e: impl ToString) -> ConnError {
    ConnError::Io(std::io::Error::other(e.to_string()))
}

/// Resolves when `close` turns true (or its sender is gone).
async fn closed(close: &mut watch::Receiver<bool>) {
    let _ = close.wait_for(|c| *c).await;
}

/// Frames a byte stream; `keep` lives as long as the writer task (QUIC
/// connection and endpoint handles).
fn bytes_transport<R, W, K>(
    r: R,
    mut w: W,
    mut out: mpsc::UnboundedReceiver<Bytes>,
    mut close: watch::Receiver<bool>,
    keep: K,
) -> Payloads
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
    K: Send + 'static,
{
    let mut reader_close = close.clone();
    tokio::spawn(async move {
        let _keep = keep;
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                n = out.recv_many(&mut batch, 64) => if n == 0 { break },
                _ = closed(&mut close) => break,
            }
            for b in batch.drain(..) {
                if w.write_all(&b).await.is_err() {
                    return;
                }
            }
        }
        let _ = w.shutdown().await;
    });
    FramedRead::new(r, FrameCodec::new(MAX_INBOUND))
        .take_until(async move { closed(&mut reader_close).await })
        .take_while(|r| std::future::ready(r.is_ok()))
        .filter_map(|r| std::future::ready(r.ok()))
        .boxed()
}

async fn quic_connect(
    addr: SocketAddr,
    server_name: &str,
    trust: &Trust,
) -> Result<
    (
        quinn::Connection,
        quinn::Endpoint,
        quinn::SendStream,
        quinn::RecvStream,
    ),
    ConnError,
> {
    let tls = tls::client_config(trust, &[tls::ALPN]).map_err(other)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(other)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    // No idle timeout of our own: the server's (twice its heartbeat, kept
    // alive by its keep-alives) applies. quinn's default of 30 s would cut
    // connections to a server whose heartbeat is 30 s or more.
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(None);
    config.transport_config(Arc::new(transport));
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(bind)?;
    endpoint.set_default_client_config(config);
    let connection = endpoint
        .connect(addr, server_name)
        .map_err(other)?
        .await
        .map_err(|e| ConnError::Io(e.into()))?;
    let (send, recv) = connection
        .open_bi()
        .await
        .map_err(|e| ConnError::Io(e.into()))?;
    Ok((connection, endpoint, send, recv))
}

/// The TCP connection for a `ws://` or `wss://` URL (`default_port` if none).
async fn ws_socket(url: &str, default_port: u16) -> Result<TcpStream, ConnError> {
    let uri: tungstenite::http::Uri = url.parse().map_err(other)?;
    let host = uri.host().ok_or_else(|| other("ws url without a host"))?;
    let port = uri.port_u16().unwrap_or(default_port);
    let socket = TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
    socket.set_nodelay(true)?;
    Ok(socket)
}

async fn ws_connect<S>(
    url: &str,
    socket: S,
    mut out: mpsc::UnboundedReceiver<Bytes>,
    mut close: watch::Receiver<bool>,
) -> Result<Payloads, ConnError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_INBOUND))
        .max_frame_size(Some(MAX_INBOUND));
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, socket, Some(config))
        .await
        .map_err(other)?;
    let (mut sink, stream) = ws.split();
    let mut reader_close = close.clone();
    tokio::spawn(async move {
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                n = out.recv_many(&mut batch, 64) => if n == 0 { break },
                _ = closed(&mut close) => break,
            }
            for payload in batch.drain(..).flat_map(split_frames) {
                if sink.feed(Message::Binary(payload)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    Ok(stream
        .take_until(async move { closed(&mut reader_close).await })
        .take_while(|m| std::future::ready(matches!(m, Ok(m) if !m.is_close())))
        .filter_map(|m| {
            std::future::ready(match m {
                Ok(Message::Binary(b)) => Some(b),
                _ => None,
            })
        })
        .boxed())
}
