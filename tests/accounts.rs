//! Built-in accounts over real HTTP against the real server: off by default,
//! register, login, wrong password, refresh with rotation and reuse
//! detection, logout, password change, profile, token expiry, the issued
//! token on the TCP protocol, login rate limits, bcrypt import, persistence.

mod common;

use common::*;
use reqwest::{Client, StatusCode};
use roomcast::accounts::store::AccountStore;
use roomcast::config::{Config, FsyncPolicy};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

fn with_accounts(c: &mut Config) {
    c.accounts = true;
}

struct Http {
    client: Client,
    base: String,
}

impl Http {
    fn new(addr: SocketAddr) -> Http {
        Http::from(addr, None)
    }

    /// A client whose connections come from `local` (another 127.x address).
    fn from(addr: SocketAddr, local: Option<&str>) -> Http {
        let mut b = Client::builder();
        if let Some(ip) = local {
            b = b.local_address(Some(ip.parse().unwrap()));
        }
        Http {
            client: b.build().unwrap(),
            base: format!("http://{addr}"),
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let resp = req.send().await.expect("request");
        let (status, headers) = (resp.status(), resp.headers().clone());
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, headers, body)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, b) = self
            .send(self.client.post(format!("{}{path}", self.base)).json(&body))
            .await;
        (s, b)
    }

    async fn me(&self, token: &str) -> (StatusCode, Value) {
        let (s, _, b) = self
            .send(
                self.client
                    .get(format!("{}/v1/me", self.base))
                    .bearer_auth(token),
            )
            .await;
        (s, b)
    }

    async fn login(&self, user: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            "/v1/auth/login",
            json!({"username": user, "password": password}),
        )
        .await
    }
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
        .to_string()
}

#[tokio::test]
async fn accounts_are_off_by_default_and_nothing_is_reachable() {
    let mut server = TestServer::start().await;
    let client = Client::new();
    for (method, path) in [
        ("POST", "/v1/auth/register"),
        ("POST", "/v1/auth/login"),
        ("POST", "/v1/auth/refresh"),
        ("POST", "/v1/auth/logout"),
        ("POST", "/v1/auth/password"),
        ("GET", "/v1/me"),
    ] {
        let url = format!("http://{}{path}", server.http);
        let req = match method {
            "GET" => client.get(url).bearer_auth(token("alice")),
            _ => client
                .post(url)
                .json(&json!({"username": "alice", "password": "password1"})),
        };
        let status = req.send().await.unwrap().status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn register_login_refresh_logout_and_profile() {
    let mut server = TestServer::start_with(with_accounts).await;
    let http = Http::new(server.http);

    // Register: 201, Location, a token pair.
    let (status, headers, reg) = http
        .send(http.client.post(format!("{}/v1/auth/register", http.base)).json(
            &json!({"username": "Alice", "password": "correct horse", "display_name": "Alice A."}),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    assert_eq!(headers["location"], "/v1/me");
    assert_eq!(reg["user"], "alice", "user names are lower-cased");
    assert_eq!(reg["token_type"], "Bearer");
    assert_eq!(reg["expires_in"], 900);
    let (status, body) = http
        .post(
            "/v1/auth/register",
            json!({"username": "alice", "password": "another one"}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");

    // Malformed requests get JSON errors, never plain text.
    let (status, _, body) = http
        .send(
            http.client
                .post(format!("{}/v1/auth/login", http.base))
                .body("{not json"),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = http
        .post(
            "/v1/auth/login",
            json!({"username": "alice", "password": "x", "admin": true}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = http
        .post(
            "/v1/auth/login",
            json!({"username": "alice", "password": "x".repeat(20_000)}),
        )
        .await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "bad_request");
    let (status, _, body) = http
        .send(http.client.get(format!("{}/v1/auth/login", http.base)))
        .await;
    assert_error(status, &body, StatusCode::METHOD_NOT_ALLOWED, "bad_request");
    let (status, body) = http
        .post(
            "/v1/auth/register",
            json!({"username": "bob", "password": "short"}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = http
        .post(
            "/v1/auth/register",
            json!({"username": "no spaces", "password": "long enough"}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");

    // Wrong password and unknown user: the same answer.
    let (status, wrong) = http.login("alice", "wrong horse").await;
    assert_error(status, &wrong, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, unknown) = http.login("nobody", "wrong horse").await;
    assert_error(status, &unknown, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(wrong["message"], unknown["message"]);

    let (status, tokens) = http.login("alice", "correct horse").await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = s(&tokens, "access_token");

    // The access token is a protocol token: hello over TCP, then act.
    let (conn, welcome) = roomcast_client::Connection::connect_with_token(server.tcp, &access)
        .await
        .expect("the issued token opens a TCP session");
    assert_eq!(welcome.user.as_str(), "alice");
    conn.create_room("from accounts", false).await.unwrap();
    drop(conn);

    // Profile.
    let (status, me) = http.me(&access).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        (me["user"].as_str(), me["display_name"].as_str()),
        (Some("alice"), Some("Alice A."))
    );
    let patch = |body: Value| {
        http.send(
            http.client
                .patch(format!("{}/v1/me", http.base))
                .bearer_auth(&access)
                .json(&body),
        )
    };
    let (status, _, me) = patch(json!({"avatar_url": "https://img.example/a.png"})).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["avatar_url"], "https://img.example/a.png");
    assert_eq!(me["display_name"], "Alice A.", "absent fields are kept");
    let (status, _, me) = patch(json!({"display_name": null})).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["display_name"], Value::Null, "null clears");
    let (status, _, body) = patch(json!({"avatar_url": "javascript:alert(1)"})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = http.me("not-a-token").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, _, body) = http
        .send(http.client.get(format!("{}/v1/me", http.base)))
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");

    // Refresh rotates: the new pair works, the old refresh token is spent,
    // and presenting it again revokes every refresh token of the account.
    let r1 = s(&tokens, "refresh_token");
    let (status, t2) = http
        .post("/v1/auth/refresh", json!({"refresh_token": r1}))
        .await;
    assert_eq!(status, StatusCode::OK, "{t2}");
    let r2 = s(&t2, "refresh_token");
    assert_ne!(r1, r2);
    assert_eq!(http.me(&s(&t2, "access_token")).await.0, StatusCode::OK);
    let (status, body) = http
        .post("/v1/auth/refresh", json!({"refresh_token": r1}))
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = http
        .post("/v1/auth/refresh", json!({"refresh_token": r2}))
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");

    // Logout revokes a refresh token.
    let (_, t3) = http.login("alice", "correct horse").await;
    let r3 = s(&t3, "refresh_token");
    let (status, body) = http
        .post("/v1/auth/logout", json!({"refresh_token": r3}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = http
        .post("/v1/auth/refresh", json!({"refresh_token": r3}))
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");

    // A password change needs the current one, revokes refresh tokens, and
    // the old password stops working.
    let (_, t4) = http.login("alice", "correct horse").await;
    let password = |current: &str, new: &str, token: &str| {
        http.send(
            http.client
                .post(format!("{}/v1/auth/password", http.base))
                .bearer_auth(token.to_string())
                .json(&json!({"current_password": current, "new_password": new})),
        )
    };
    let (status, _, body) =
        password("wrong horse", "battery staple", &s(&t4, "access_token")).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, _, t5) =
        password("correct horse", "battery staple", &s(&t4, "access_token")).await;
    assert_eq!(status, StatusCode::OK, "{t5}");
    let (status, body) = http
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": s(&t4, "refresh_token")}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, _) = http
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": s(&t5, "refresh_token")}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the pair issued with the change works"
    );
    assert_eq!(
        http.login("alice", "correct horse").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        http.login("alice", "battery staple").await.0,
        StatusCode::OK
    );
    server.stop().await;
}

#[tokio::test]
async fn accounts_persist_across_restarts() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let start = |dir: std::path::PathBuf| {
        TestServer::start_with(move |c| {
            c.accounts = true;
            c.data_dir = dir;
        })
    };
    let mut server = start(dir.clone()).await;
    let http = Http::new(server.http);
    let (status, body) = http
        .post(
            "/v1/auth/register",
            json!({"username": "carol", "password": "persistent"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    server.stop().await;

    let mut server = start(dir).await;
    let http = Http::new(server.http);
    let (status, body) = http.login("carol", "persistent").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = http
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": s(&body, "refresh_token")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn tokens_expire() {
    let mut server = TestServer::start_with(|c| {
        c.accounts = true;
        c.access_token_ttl_secs = 60;
        c.refresh_token_ttl_secs = 1;
    })
    .await;
    let http = Http::new(server.http);
    let (status, t) = http
        .post(
            "/v1/auth/register",
            json!({"username": "dave", "password": "short-lived"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    assert_eq!(t["expires_in"], 60);

    // The access token's lifetime is the configured one.
    use base64::Engine;
    let payload = s(&t, "access_token").split('.').nth(1).unwrap().to_string();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "dave");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60
    );

    // An expired access token (past the verifier's leeway) is refused.
    let now = roomcast::ids::now_ms() / 1000;
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "dave", "iat": now - 7200, "exp": now - 3600}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let (status, body) = http.me(&expired).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(
        roomcast_client::Connection::connect_with_token(server.tcp, &expired)
            .await
            .is_err(),
        "the protocol refuses it too"
    );

    // The refresh token lives 1 s.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = http
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": s(&t, "refresh_token")}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(s(&body, "message").contains("expired"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn logins_are_rate_limited_per_account_and_per_address() {
    let mut server = TestServer::start_with(|c| {
        c.accounts = true;
        // A burst of 3 attempts, then (practically) none.
        c.limit_login = "0.01:3".parse().unwrap();
    })
    .await;
    let http = Http::from(server.http, Some("127.0.0.2"));
    for user in ["erin", "frank"] {
        let (status, body) = http
            .post(
                "/v1/auth/register",
                json!({"username": user, "password": "the password"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // The registrations came from 127.0.0.2 too; logins go from elsewhere.
    let a = Http::from(server.http, Some("127.0.0.3"));
    for _ in 0..3 {
        assert_eq!(a.login("erin", "guess").await.0, StatusCode::UNAUTHORIZED);
    }
    let (status, headers, body) = a
        .send(
            a.client
                .post(format!("{}/v1/auth/login", a.base))
                .json(&json!({"username": "erin", "password": "the password"})),
        )
        .await;
    assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(body["retry_after_ms"].as_u64().unwrap() > 0, "{body}");
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );

    // Per address: another account from the same address is limited too.
    assert_eq!(
        a.login("frank", "the password").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Per account: erin from a fresh address is still limited; frank is not.
    let b = Http::from(server.http, Some("127.0.0.4"));
    assert_eq!(
        b.login("erin", "the password").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(b.login("frank", "the password").await.0, StatusCode::OK);
    server.stop().await;
}

/// `htpasswd -bnBC 4 "" "imported pass"`: a bcrypt hash from another system.
const BCRYPT: &str = "$2y$04$EM4g10RgaH.EjbJ4TZduXuqYkq1b5s5AgdHJsHQ7S85piAEQB8VvW";

fn stored_hash(data_dir: &Path, user: &str) -> String {
    let store =
        roomcast::store::embedded::EmbeddedStore::open(&data_dir.join("store"), FsyncPolicy::Never)
            .unwrap();
    let accounts = AccountStore::open(store.database(), FsyncPolicy::Never).unwrap();
    accounts
        .get_blocking(user)
        .unwrap()
        .expect("account")
        .password
}

#[tokio::test]
async fn bcrypt_hashes_import_verify_once_and_are_rehashed() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("old-users.jsonl");
    std::fs::write(
        &file,
        format!(
            "{}\n\n{}\n",
            json!({"user": "olduser", "bcrypt": BCRYPT, "display_name": "Old User"}),
            json!({"user": "other", "bcrypt": BCRYPT}),
        ),
    )
    .unwrap();
    let import = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .arg("import-accounts")
            .arg(&file)
            .arg("--data-dir")
            .arg(data.path())
            .output()
            .expect("run roomcast import-accounts")
    };
    let out = import();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 2 accounts"));
    let again = import();
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("imported 0 accounts (2 already existed")
    );
    assert_eq!(stored_hash(data.path(), "olduser"), BCRYPT);

    let dir = data.path().to_path_buf();
    let start = |dir: std::path::PathBuf| {
        TestServer::start_with(move |c| {
            c.accounts = true;
            c.data_dir = dir;
        })
    };
    let mut server = start(dir.clone()).await;
    let http = Http::new(server.http);
    assert_eq!(
        http.login("olduser", "imported pasS").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, t) = http.login("olduser", "imported pass").await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let (_, me) = http.me(&s(&t, "access_token")).await;
    assert_eq!(me["display_name"], "Old User");
    let metrics = http
        .client
        .get(format!("{}/metrics", http.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let upgraded: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"roomcast_accounts_total{event="bcrypt_upgraded"} "#))
        .expect("the accounts counter")
        .parse()
        .unwrap();
    assert!(upgraded >= 1.0, "{metrics}");
    server.stop().await;

    let upgraded = stored_hash(&dir, "olduser");
    assert!(upgraded.starts_with("$argon2id$"), "re-hashed: {upgraded}");
    assert_eq!(stored_hash(&dir, "other"), BCRYPT, "not logged in yet");

    let mut server = start(dir).await;
    let http = Http::new(server.http);
    assert_eq!(
        http.login("olduser", "imported pass").await.0,
        StatusCode::OK
    );
    server.stop().await;
}
