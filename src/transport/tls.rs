//! TLS over TCP: the handshake runs inside the connection's task, bounded by
//! the hello timeout, with the acceptor (and its rustls config) built once at
//! startup. After the handshake the connection is served exactly like plain
//! TCP. A failed handshake (garbage, wrong protocol, timeout) is logged at
//! debug and the socket closed; rustls answers garbage with a TLS alert.

use crate::conn;
use crate::metrics::{ConnectionGuard, Transport};
use crate::server::Core;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The acceptor for the TLS-over-TCP listener, from the shared server config.
pub fn acceptor(config: Arc<rustls::ServerConfig>) -> TlsAcceptor {
    TlsAcceptor::from(config)
}

/// Handshakes, then serves (or refuses with `server_busy` if `permit` is None).
pub async fn serve(
    core: Arc<Core>,
    socket: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    permit: Option<OwnedSemaphorePermit>,
    shutdown: CancellationToken,
) {
    let handshake = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = tokio::time::timeout(core.config.hello_timeout(), acceptor.accept(socket)) => r,
    };
    let stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "tls handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "tls handshake timed out");
            return;
        }
    };
    let Some(_permit) = permit else {
        return super::tcp::refuse_busy(stream, core.reconnect_hint_ms()).await;
    };
    core.connections.fetch_add(1, Ordering::Relaxed);
    let _open = ConnectionGuard::open(Transport::Tls);
    tracing::debug!(%peer, "tls connection");
    let (r, w) = tokio::io::split(stream);
    conn::serve(core.clone(), peer.ip(), r, w, shutdown, Transport::Tls).await;
    core.connections.fetch_sub(1, Ordering::Relaxed);
}
