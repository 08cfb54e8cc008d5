//! TCP, plain or with TLS: the accept loop. Each accepted socket gets a
//! connection permit (the connection cap, shared by every transport) and its
//! own task; nothing slow runs in the loop (TLS handshakes run in the task, see
//! [`super::tls`]).

use crate::conn;
use crate::metrics::{ConnectionGuard, Transport};
use crate::proto::{self, ErrorCode, ServerFrame, WireError};
use crate::server::Core;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What runs on top of the accepted TCP socket.
#[derive(Clone)]
pub enum Layer {
    Plain,
    Tls(TlsAcceptor),
}

pub async fn accept_loop(
    core: Arc<Core>,
    listener: TcpListener,
    layer: Layer,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Usually EMFILE / ENFILE: back off instead of spinning.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let permit = core.permits.clone().try_acquire_owned().ok();
        let core = core.clone();
        let shutdown = shutdown.clone();
        match layer.clone() {
            Layer::Plain => {
                tracker.spawn(async move {
                    let Some(_permit) = permit else {
                        return refuse_busy(socket, core.reconnect_hint_ms()).await;
                    };
                    core.connections.fetch_add(1, Ordering::Relaxed);
                    let _open = ConnectionGuard::open(Transport::Tcp);
                    tracing::debug!(%peer, "tcp connection");
                    let (r, w) = socket.into_split();
                    conn::serve(core.clone(), peer.ip(), r, w, shutdown, Transport::Tcp).await;
                    core.connections.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Layer::Tls(acceptor) => {
                tracker.spawn(super::tls::serve(
                    core, socket, peer, acceptor, permit, shutdown,
                ));
            }
        }
    }
}

/// Answers a connection over the cap with a closing `server_busy` and closes it.
pub async fn refuse_busy<W: AsyncWrite + Unpin>(mut w: W, retry_ms: u64) {
    let frame = ServerFrame::closing(
        WireError::new(ErrorCode::ServerBusy, "server is at its connection limit")
            .with_retry(retry_ms),
    );
    let bytes = proto::encode(&frame);
    crate::metrics::error_sent(ErrorCode::ServerBusy);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = w.write_all(&bytes).await;
        let _ = w.shutdown().await;
    })
    .await;
}
