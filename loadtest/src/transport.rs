//! How the tool reaches the server. TCP today; TLS, QUIC and WebSocket plug in
//! here (a new [`Transport`] variant and a [`Stream`] variant) when the
//! transports issue lands, and every scenario uses them unchanged.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Plain TCP with the v1 framing.
    Tcp,
    /// TCP + TLS (not yet: waits for the transports issue).
    Tls,
    /// QUIC, one bidirectional stream (not yet).
    Quic,
    /// WebSocket binary messages on `/ws` (not yet).
    Ws,
}

impl Transport {
    /// Fails with a clear message for transports this build cannot drive yet.
    pub fn check(self) -> anyhow::Result<()> {
        match self {
            Transport::Tcp => Ok(()),
            other => anyhow::bail!(
                "transport {other:?} is not implemented in roomcast-load yet (it arrives with the \
                 transports issue); use --transport tcp"
            ),
        }
    }
}

/// Where and how to connect, and which loopback source addresses to cycle through.
#[derive(Clone, Debug)]
pub struct Target {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// Number of source addresses 127.0.0.1 ..= 127.0.0.N to spread connections over
    /// (each has its own ~28k ephemeral ports); 0 lets the kernel choose.
    pub source_addrs: u8,
}

/// A connected byte stream, whatever the transport.
pub enum Stream {
    Tcp(TcpStream),
}

impl Target {
    /// Opens connection number `n` (its source address is `127.0.0.(1 + n % N)` on loopback).
    pub async fn connect(&self, n: usize) -> io::Result<Stream> {
        match self.transport {
            Transport::Tcp => {
                let socket = match self.addr {
                    SocketAddr::V4(_) => TcpSocket::new_v4()?,
                    SocketAddr::V6(_) => TcpSocket::new_v6()?,
                };
                if self.source_addrs > 0 && self.addr.ip().is_loopback() && self.addr.is_ipv4() {
                    let host = 1 + (n % usize::from(self.source_addrs)) as u8;
                    socket.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), 0)))?;
                }
                let s = socket.connect(self.addr).await?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            other => Err(io::Error::other(format!(
                "transport {other:?} not implemented"
            ))),
        }
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
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
