//! The embedded web chat (`src/webchat.rs`): served at `/` with its assets,
//! security headers and revalidation, and absent with `--web-chat false`.
//! The chat itself is tested in Chromium by `web/e2e/` (`.ci/run`).

mod common;

use common::TestServer;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 GET; returns (status, headers lowercased, body).
async fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&buf[..split]).to_lowercase();
    let status = head[9..12].parse().expect("status");
    (status, head, buf[split + 4..].to_vec())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

#[tokio::test]
async fn serves_the_chat_with_its_assets() {
    let mut server = TestServer::start().await;
    let (status, head, body) = get(server.http, "/", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = String::from_utf8(body).expect("utf-8");
    assert!(
        html.contains("app.js") && html.contains("app.css"),
        "{html}"
    );
    let csp = header(&head, "content-security-policy").expect("csp");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));

    let (status, head, body) = get(server.http, "/app.js", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&head, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(body.len() > 1000, "the bundled app");
    let etag = header(&head, "etag").expect("etag").to_string();
    let (status, _, body) = get(
        server.http,
        "/app.js",
        &format!("If-None-Match: {etag}\r\n"),
    )
    .await;
    assert_eq!(status, 304, "unchanged: revalidated without a body");
    assert!(body.is_empty());

    let (status, head, _) = get(server.http, "/app.css", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&head, "content-type"),
        Some("text/css; charset=utf-8")
    );
    let (status, _, _) = get(server.http, "/health", "").await;
    assert_eq!(status, 200, "the other routes are still there");
    server.stop().await;
}

#[tokio::test]
async fn off_with_the_flag() {
    let mut server = TestServer::start_with(|c| c.web_chat = false).await;
    let (status, _, _) = get(server.http, "/", "").await;
    assert_eq!(status, 404);
    let (status, _, _) = get(server.http, "/app.js", "").await;
    assert_eq!(status, 404);
    server.stop().await;
}

/// `/chat-config.json` tells the page which sign-in forms to show.
#[tokio::test]
async fn the_config_names_the_sign_in_modes() {
    let parse =
        |body: Vec<u8>| -> serde_json::Value { serde_json::from_slice(&body).expect("json") };
    let mut server = TestServer::start().await;
    let (status, head, body) = get(server.http, "/chat-config.json", "").await;
    assert_eq!(status, 200);
    assert_eq!(header(&head, "content-type"), Some("application/json"));
    assert_eq!(header(&head, "cache-control"), Some("no-store"));
    assert_eq!(
        parse(body),
        serde_json::json!({"accounts": false, "dev_token": false}),
        "by default: neither form, the page explains where tokens come from"
    );
    server.stop().await;

    let mut server = TestServer::start_with(|c| {
        c.accounts = true;
        c.web_chat_dev_token = true;
    })
    .await;
    let (_, _, body) = get(server.http, "/chat-config.json", "").await;
    assert_eq!(
        parse(body),
        serde_json::json!({"accounts": true, "dev_token": true})
    );
    server.stop().await;

    let mut server = TestServer::start_with(|c| c.web_chat = false).await;
    let (status, _, _) = get(server.http, "/chat-config.json", "").await;
    assert_eq!(status, 404, "no chat, no config");
    server.stop().await;
}
