//! Plain TCP: the accept loop. Each accepted socket gets a connection permit
//! (the connection cap) and its own task; nothing slow runs in the loop.

use crate::conn;
use crate::proto::{self, ErrorCode, ServerFrame, WireError};
use crate::server::Core;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub async fn accept_loop(
    core: Arc<Core>,
    listener: TcpListener,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(core.config.max_connections));
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
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracker.spawn(refuse_busy(socket, core.reconnect_hint_ms()));
            continue;
        };
        let core = core.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            core.connections.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "tcp connection");
            let (r, w) = socket.into_split();
            conn::serve(core.clone(), r, w, shutdown).await;
            core.connections.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

async fn refuse_busy(mut socket: TcpStream, retry_ms: u64) {
    let frame = ServerFrame::closing(
        WireError::new(ErrorCode::ServerBusy, "server is at its connection limit")
            .with_retry(retry_ms),
    );
    let bytes = proto::encode(&frame);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = socket.write_all(&bytes).await;
        let _ = socket.shutdown().await;
    })
    .await;
}
