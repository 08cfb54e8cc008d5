//! Operations endpoints on the HTTP listener: `GET /metrics` (Prometheus
//! text format, [`crate::metrics`]) and `GET /ready` (readiness: 200 while
//! the store and, when configured, Redis answer and this node holds its
//! cluster lease; 503 once shutdown has begun). `GET /health` (liveness) lives in [`crate::http`]. The built-in
//! accounts' routes ([`crate::accounts::http`]) are merged here when enabled.

use crate::server::Core;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long one readiness check may take before it counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .with_state(core.clone())
        .merge(crate::accounts::http::router(core))
}

async fn metrics() -> Response {
    match crate::metrics::render() {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed").into_response(),
    }
}

async fn ready(State(core): State<Arc<Core>>) -> (StatusCode, Json<serde_json::Value>) {
    if core.shutting_down.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": "shutting_down" })),
        );
    }
    let store = match tokio::time::timeout(PROBE_TIMEOUT, core.store.ping()).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => format!("down: {e}"),
        Err(_) => "down: timed out".to_string(),
    };
    let redis = match &core.redis {
        None => None,
        Some(conn) => {
            let mut conn = conn.clone();
            let cmd = redis::cmd("PING");
            let ping = cmd.query_async::<String>(&mut conn);
            Some(match tokio::time::timeout(PROBE_TIMEOUT, ping).await {
                Ok(Ok(_)) => "ok".to_string(),
                Ok(Err(e)) => format!("down: {e}"),
                Err(_) => "down: timed out".to_string(),
            })
        }
    };
    // A node is a cluster member only while it holds its lease: the other
    // nodes count it alive exactly then (docs/MULTINODE.md).
    let lease = core.nodes.as_ref().map(|n| {
        if n.holds_lease() {
            "ok".to_string()
        } else {
            "lost: not renewed in Redis within --node-lease-ms".to_string()
        }
    });
    let ok = store == "ok"
        && redis.as_deref().is_none_or(|r| r == "ok")
        && lease.as_deref().is_none_or(|l| l == "ok");
    let mut checks = json!({ "store": store });
    if let Some(r) = redis {
        checks["redis"] = json!(r);
    }
    if let Some(l) = lease {
        checks["node_lease"] = json!(l);
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({ "ready": ok, "checks": checks });
    if !ok {
        body["reason"] = json!("backend_down");
    }
    (status, Json(body))
}
