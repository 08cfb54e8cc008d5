//! Opening a [`Client`](super::Client) connection over each transport: a
//! stream of inbound frame payloads plus a task that writes outbound frames.
//! Outbound frames always arrive here length-prefixed (the TCP framing);
//! byte-stream transports write them as they are, WebSocket sends each frame's
//! payload as one binary message.

use super::ClientError;
use crate::proto::frame::split_frames;
use crate::proto::{FrameCodec, DEFAULT_MAX_FRAME};
use crate::tls::{self, Trust};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::codec::FramedRead;

/// Where and how to connect.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// Plain TCP (`--tcp`).
    Tcp(SocketAddr),
    /// TLS over TCP (`--tls-tcp`). `server_name` is checked only with [`Trust::Roots`].
    Tls {
        addr: SocketAddr,
        server_name: String,
        trust: Trust,
    },
    /// QUIC (`--quic`), ALPN `roomcast/1`, one bidirectional stream.
    Quic {
        addr: SocketAddr,
        server_name: String,
        trust: Trust,
    },
    /// The WebSocket bridge, e.g. `ws://127.0.0.1:7480/ws` (binary messages).
    Ws(String),
}

/// Inbound payloads; the stream ends when the connection does.
pub(super) type Payloads = BoxStream<'static, Bytes>;

/// Accept anything the server may send (it never exceeds 4x its own max frame).
const MAX_INBOUND: usize = 4 * DEFAULT_MAX_FRAME;

pub(super) async fn open(
    endpoint: &Endpoint,
    out: mpsc::UnboundedReceiver<Bytes>,
) -> Result<Payloads, ClientError> {
    match endpoint {
        Endpoint::Tcp(addr) => {
            let socket = TcpStream::connect(addr).await?;
            socket.set_nodelay(true)?;
            let (r, w) = socket.into_split();
            Ok(bytes_transport(r, w, out, ()))
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
            Ok(bytes_transport(r, w, out, ()))
        }
        Endpoint::Quic {
            addr,
            server_name,
            trust,
        } => {
            let (connection, endpoint, send, recv) =
                quic_connect(*addr, server_name, trust).await?;
            Ok(bytes_transport(recv, send, out, (connection, endpoint)))
        }
        Endpoint::Ws(url) => ws_connect(url, out).await,
    }
}

fn other(e: impl ToString) -> ClientError {
    ClientError::Io(std::io::Error::other(e.to_string()))
}

/// Frames a byte stream; `keep` lives as long as the writer task (QUIC
/// connection and endpoint handles).
fn bytes_transport<R, W, K>(
    r: R,
    mut w: W,
    mut out: mpsc::UnboundedReceiver<Bytes>,
    keep: K,
) -> Payloads
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
    K: Send + 'static,
{
    tokio::spawn(async move {
        let _keep = keep;
        let mut batch = Vec::new();
        while out.recv_many(&mut batch, 64).await > 0 {
            for b in batch.drain(..) {
                if w.write_all(&b).await.is_err() {
                    return;
                }
            }
        }
        let _ = w.shutdown().await;
    });
    FramedRead::new(r, FrameCodec::new(MAX_INBOUND))
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
    ClientError,
> {
    let tls = tls::client_config(trust, &[tls::ALPN]).map_err(other)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(other)?;
    let config = quinn::ClientConfig::new(Arc::new(crypto));
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
        .map_err(|e| ClientError::Io(e.into()))?;
    let (send, recv) = connection
        .open_bi()
        .await
        .map_err(|e| ClientError::Io(e.into()))?;
    Ok((connection, endpoint, send, recv))
}

async fn ws_connect(
    url: &str,
    mut out: mpsc::UnboundedReceiver<Bytes>,
) -> Result<Payloads, ClientError> {
    let uri: tungstenite::http::Uri = url.parse().map_err(other)?;
    let host = uri.host().ok_or_else(|| other("ws url without a host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let socket = TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
    socket.set_nodelay(true)?;
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_INBOUND))
        .max_frame_size(Some(MAX_INBOUND));
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, socket, Some(config))
        .await
        .map_err(other)?;
    let (mut sink, stream) = ws.split();
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while out.recv_many(&mut batch, 64).await > 0 {
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
        .take_while(|m| std::future::ready(matches!(m, Ok(m) if !m.is_close())))
        .filter_map(|m| {
            std::future::ready(match m {
                Ok(Message::Binary(b)) => Some(b),
                _ => None,
            })
        })
        .boxed())
}
