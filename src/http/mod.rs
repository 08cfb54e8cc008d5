//! The HTTP listener: `GET /health`; `GET /ws`, the WebSocket bridge
//! ([`crate::transport::ws`]); the REST API (`/v1`, `/api`, [`api`]) with its
//! OpenAPI document (`/openapi.json`, `/docs`, [`openapi`]); the operations
//! routes of [`crate::http_ops`] (`/metrics`, `/ready`, the accounts); CORS
//! ([`cors`], `--cors-origins`). The same routes
//! are served over TLS on the optional HTTPS listener ([`TlsListener`]).

pub mod api;
pub mod cors;
pub mod error;
pub mod openapi;

use crate::server::Core;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::serve::Listener;
use axum::{Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Every HTTP route but `/ws`. Each part merges in with one line.
pub fn router(core: Arc<Core>) -> Router {
    let body_limit = core.config.http_max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .merge(openapi::router().layer(DefaultBodyLimit::max(body_limit)))
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::no_method)
        .with_state(core)
}

/// Liveness: 200 while the process serves HTTP, shutting down or not
/// (readiness, which turns 503 at shutdown, is `/ready` in [`crate::http_ops`]).
async fn health(State(core): State<Arc<Core>>) -> (StatusCode, Json<serde_json::Value>) {
    let down = core.shutting_down.load(Ordering::Relaxed);
    let status = StatusCode::OK;
    (
        status,
        Json(json!({
            "status": if down { "shutting_down" } else { "ok" },
            "version": env!("CARGO_PKG_VERSION"),
            "connections": core.connections.load(Ordering::Relaxed),
            "shards": core.router.shard_count(),
        })),
    )
}

/// Serves the routes on `listener` (plain [`TcpListener`] or [`TlsListener`])
/// until `shutdown`.
pub async fn serve<L>(
    core: Arc<Core>,
    listener: L,
    bridge: crate::transport::ws::Bridge,
    shutdown: CancellationToken,
) where
    L: Listener<Addr = SocketAddr>,
{
    let limits = crate::transport::http::HttpLimits::from_config(&core.config);
    let sign_in = crate::webchat::SignIn {
        accounts: core.accounts.is_some(),
        dev_token: core.config.web_chat_dev_token,
    };
    let mut app = crate::webchat::router(core.config.web_chat, sign_in)
        .merge(router(core.clone()))
        .merge(crate::http_ops::router(core.clone()));
    // CORS on every route but `/ws`, whose origins are `--ws-allowed-origins`.
    if let Some(cors) = cors::layer(&core.config.cors_origins) {
        app = app.layer(cors);
    }
    let app = app.merge(crate::transport::ws::router(bridge));
    crate::transport::http::serve(listener, app, limits, shutdown).await;
}

/// The HTTPS listener (`--https`): TLS handshakes run in their own tasks,
/// bounded by the hello timeout, never in the accept loop; finished streams
/// are handed to the HTTP server through a channel. A failed handshake is
/// logged at debug and the socket closed.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

/// Finished handshakes waiting for the HTTP server to take them.
const READY_QUEUE: usize = 1024;

impl TlsListener {
    pub fn start(
        listener: TcpListener,
        acceptor: TlsAcceptor,
        handshake_timeout: Duration,
        shutdown: CancellationToken,
    ) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(READY_QUEUE);
        tokio::spawn(async move {
            loop {
                let (socket, peer) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors, mostly: back off instead of spinning.
                            tracing::warn!(error = %e, "https accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let (acceptor, tx, stop) = (acceptor.clone(), tx.clone(), shutdown.clone());
                tokio::spawn(async move {
                    let handshake = tokio::select! {
                        _ = stop.cancelled() => return,
                        r = tokio::time::timeout(handshake_timeout, acceptor.accept(socket)) => r,
                    };
                    match handshake {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "https handshake failed"),
                        Err(_) => tracing::debug!(%peer, "https handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // Shutting down: the HTTP server stops asking once it is told to.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
