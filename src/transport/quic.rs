//! QUIC (quinn): one endpoint on `--quic`, ALPN `roomcast/1`. A client opens
//! one bidirectional stream and speaks exactly the TCP framing on it; the
//! stream is served by [`conn::serve`] like a TCP socket. No other streams are
//! allowed (the peer may open one bidirectional and zero unidirectional
//! streams) and datagrams are off; see proto-spec/transports.md.
//!
//! The QUIC idle timeout is the protocol's (2 x heartbeat) and the server
//! sends keep-alives every heartbeat, so a client whose path dies, or that
//! vanishes without closing, errors its stream within the idle timeout and is
//! cleaned up exactly like a dropped TCP connection. Connection migration is on
//! (quinn's default). The handshake and the wait for the stream run in the
//! connection's task, never in the accept loop.

use crate::conn;
use crate::metrics::{ConnectionGuard, Transport};
use crate::server::Core;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Application close code: the connection is done (after the protocol's own
/// closing frame, if any).
pub const CLOSE_DONE: u32 = 0;
/// Application close code: no request stream was opened before the hello timeout.
pub const CLOSE_NO_STREAM: u32 = 1;
/// Application close code: the server is shutting down (sent to handshakes in flight).
pub const CLOSE_SHUTDOWN: u32 = 2;

/// The quinn server config: the shared rustls config (TLS 1.3, ALPN
/// `roomcast/1`) and transport parameters aligned with the heartbeat.
pub fn server_config(
    tls: rustls::ServerConfig,
    heartbeat: Duration,
    idle_timeout: Duration,
) -> anyhow::Result<quinn::ServerConfig> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| anyhow::anyhow!("quic tls config: {e}"))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(idle_timeout)
                .map_err(|e| anyhow::anyhow!("quic idle timeout: {e}"))?,
        ))
        .keep_alive_interval(Some(heartbeat))
        .max_concurrent_bidi_streams(1u32.into())
        .max_concurrent_uni_streams(0u32.into())
        .datagram_receive_buffer_size(None);
    config.transport_config(Arc::new(transport));
    config.migration(true);
    Ok(config)
}

pub fn bind(config: quinn::ServerConfig, addr: SocketAddr) -> anyhow::Result<quinn::Endpoint> {
    quinn::Endpoint::server(config, addr).map_err(|e| anyhow::anyhow!("binding QUIC {addr}: {e}"))
}

pub async fn accept_loop(
    core: Arc<Core>,
    endpoint: quinn::Endpoint,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let incoming = tokio::select! {
            _ = shutdown.cancelled() => return,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => return,
            },
        };
        let permit = core.permits.clone().try_acquire_owned().ok();
        tracker.spawn(serve(core.clone(), incoming, permit, shutdown.clone()));
    }
}

async fn serve(
    core: Arc<Core>,
    incoming: quinn::Incoming,
    permit: Option<OwnedSemaphorePermit>,
    shutdown: CancellationToken,
) {
    let peer = incoming.remote_address();
    let hello_timeout = core.config.hello_timeout();
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "quic accept failed");
            return;
        }
    };
    let connection = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = tokio::time::timeout(hello_timeout, connecting) => match r {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "quic handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "quic handshake timed out");
                return;
            }
        },
    };
    let stream = tokio::select! {
        _ = shutdown.cancelled() => {
            connection.close(CLOSE_SHUTDOWN.into(), b"server is shutting down");
            return;
        }
        r = tokio::time::timeout(hello_timeout, connection.accept_bi()) => r,
    };
    let (mut send, recv) = match stream {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "quic connection closed before its stream");
            return;
        }
        Err(_) => {
            connection.close(
                CLOSE_NO_STREAM.into(),
                b"no stream before the hello timeout",
            );
            return;
        }
    };
    match permit {
        None => super::tcp::refuse_busy(&mut send, core.reconnect_hint_ms()).await,
        Some(_permit) => {
            core.connections.fetch_add(1, Ordering::Relaxed);
            let _open = ConnectionGuard::open(Transport::Quic);
            tracing::debug!(%peer, "quic connection");
            conn::serve(
                core.clone(),
                peer.ip(),
                recv,
                &mut send,
                shutdown,
                Transport::Quic,
            )
            .await;
            core.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
    // The writer finished the stream; let the peer acknowledge the last
    // frames before the connection is closed (which would discard them).
    let _ = tokio::time::timeout(conn::writer::CLOSE_FLUSH, send.stopped()).await;
    connection.close(CLOSE_DONE.into(), b"closed");
}
