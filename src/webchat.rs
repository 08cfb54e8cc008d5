//! The web chat: the single-page app of `web/chat/` (built on the browser
//! SDK, `web/sdk/`), served at `/` on the HTTP and HTTPS listeners unless
//! `--web-chat false`. Its three built files are committed in
//! `web/chat/dist/` and embedded with `include_bytes!`, so running the
//! server needs no Node.js; CI rebuilds them and fails if the committed
//! build differs from the sources.
//!
//! `include_bytes!` rather than `rust-embed`: three files known at compile
//! time need no proc macro, directory walking or extra dependencies.
//!
//! `GET /chat-config.json` tells the page how people sign in on this server:
//! `{"accounts": bool, "dev_token": bool}`; the first is `--accounts`
//! (register and log in forms on `/v1/auth`), the second
//! `--web-chat-dev-token` (a form to paste a JWT). With neither, the page
//! explains that tokens come from the operator's identity provider. A JSON
//! route rather than values written into `index.html`: the HTML stays a
//! constant embedded file with one ETag, the strict CSP needs no inline
//! script, and the answer is testable on its own.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// One embedded file, with its validator computed once.
struct Asset {
    bytes: &'static [u8],
    content_type: &'static str,
    etag: OnceLock<HeaderValue>,
}

macro_rules! asset {
    ($file:literal, $type:literal) => {
        Asset {
            bytes: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/web/chat/dist/",
                $file
            )),
            content_type: $type,
            etag: OnceLock::new(),
        }
    };
}

static INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");
static APP_JS: Asset = asset!("app.js", "text/javascript; charset=utf-8");
static APP_CSS: Asset = asset!("app.css", "text/css; charset=utf-8");

/// Scripts and styles from this origin only; the WebSocket to this host (any
/// scheme, since `ws://` and `wss://` listeners differ in port); no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: https:; connect-src 'self' ws: wss:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// How the page offers sign-in (`GET /chat-config.json`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SignIn {
    /// Built-in accounts are on (`--accounts`): register and log in forms.
    pub accounts: bool,
    /// A form to paste a JWT (`--web-chat-dev-token`).
    pub dev_token: bool,
}

/// The chat's routes, or none when `enabled` is false.
pub fn router(enabled: bool, sign_in: SignIn) -> Router {
    if !enabled {
        return Router::new();
    }
    Router::new()
        .route("/", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route(
            "/app.js",
            get(|h: HeaderMap| async move { serve(&APP_JS, &h) }),
        )
        .route(
            "/app.css",
            get(|h: HeaderMap| async move { serve(&APP_CSS, &h) }),
        )
        .route(
            "/chat-config.json",
            get(move || async move { config(sign_in) }),
        )
}

fn config(sign_in: SignIn) -> Response {
    let body = json!({ "accounts": sign_in.accounts, "dev_token": sign_in.dev_token });
    // Flags change with a restart, and a stale answer would show the wrong forms.
    let headers = [
        (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    (headers, Json(body)).into_response()
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let etag = asset.etag.get_or_init(|| {
        let digest = Sha256::digest(asset.bytes);
        let tag = format!("\"{}\"", hex::encode(&digest[..12]));
        HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"chat\""))
    });
    let mut headers = HeaderMap::new();
    headers.insert(ETAG, etag.clone());
    // Revalidate every time: a new server version ships new files under the same names.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if request.get(IF_NONE_MATCH) == Some(etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    (headers, asset.bytes).into_response()
}
