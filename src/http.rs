//! The HTTP listener: `GET /health`, and `GET /ws`, the WebSocket bridge
//! ([`crate::transport::ws`]); the REST API mounts here.

use crate::server::Core;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub fn router(core: Arc<Core>) -> Router {
    Router::new().route("/health", get(health)).with_state(core)
}

async fn health(State(core): State<Arc<Core>>) -> (StatusCode, Json<serde_json::Value>) {
    let down = core.shutting_down.load(Ordering::Relaxed);
    let status = if down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
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

pub async fn serve(
    core: Arc<Core>,
    listener: TcpListener,
    bridge: crate::transport::ws::Bridge,
    shutdown: CancellationToken,
) {
    let app = router(core).merge(crate::transport::ws::router(bridge));
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "http server failed");
    }
}
