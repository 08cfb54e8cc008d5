//! The HTTP listener's connection loop (plain or TLS): every connection takes
//! a permit of its own cap (`--max-http-connections`; over it: `503` and
//! close), must send each request's headers within `--http-header-timeout-ms`
//! (counted from the connection's start or the end of its previous response,
//! so it is also the keep-alive idle timeout), and is served by hyper's HTTP/1
//! with upgrades (the WebSocket bridge). A connection that upgrades gives its
//! permit back: the WebSocket counts against `--max-connections` instead.
//! On shutdown the loop stops accepting and asks every connection to finish
//! its request and close.

use axum::extract::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

/// Largest request head (request line and headers) read into memory.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The answer to a connection over the cap.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 83\r\n\r\n{\"error\":\"server_busy\",\"message\":\"too many HTTP connections\",\"retry_after_ms\":1000}";

/// Limits of the loop (from the configuration).
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

impl HttpLimits {
    pub fn from_config(c: &crate::config::Config) -> HttpLimits {
        HttpLimits {
            max_connections: c.max_http_connections,
            header_timeout: Duration::from_millis(c.http_header_timeout_ms),
        }
    }
}

/// Serves `app` on `listener` until `shutdown`, then waits for the connections
/// to finish (the caller bounds the wait).
pub async fn serve<L>(listener: L, app: Router, limits: HttpLimits, shutdown: CancellationToken)
where
    L: Listener<Addr = SocketAddr>,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    let mut listener = listener;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    loop {
        let (io, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracker.spawn(refuse(io));
            continue;
        };
        let app = app.clone();
        let builder = builder.clone();
        let stop = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let mut app = app.clone();
                async move { app.call(req.map(axum::body::Body::new)).await }
            });
            let conn = builder
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "http connection ended");
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Answers a connection over the cap with `503` (best effort, bounded) and closes it.
async fn refuse<I: tokio::io::AsyncWrite + Unpin>(mut io: I) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = io.write_all(BUSY).await;
        let _ = io.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn busy_answer_is_well_formed() {
        let text = std::str::from_utf8(super::BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        let _: serde_json::Value = serde_json::from_str(body).unwrap();
    }
}
