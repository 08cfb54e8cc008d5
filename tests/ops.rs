//! Operations over real HTTP against the real server: `/metrics` values move
//! with protocol traffic, `/ready` turns 503 when shutdown begins (and when
//! Redis is down), `/health` stays 200, and `--log-format json` writes JSON.
//!
//! Metrics are process-wide: only `metrics_move_with_traffic` opens protocol
//! connections in this test binary, and every check is on a difference.

mod common;

use common::redis::RedisServer;
use common::*;
use roomcast::ids::RoomId;
use roomcast::proto::client::ClientFrame;
use std::collections::HashMap;
use std::time::{Duration, Instant};

type Scrape = HashMap<String, f64>;

async fn scrape(server: &TestServer) -> Scrape {
    let resp = reqwest::get(format!("http://{}/metrics", server.http))
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    parse(&resp.text().await.unwrap())
}

/// `name{labels} value` lines into a map; `# HELP`/`# TYPE` skipped.
fn parse(text: &str) -> Scrape {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l}"));
            (
                k.to_string(),
                v.parse::<f64>().unwrap_or_else(|_| panic!("bad value {l}")),
            )
        })
        .collect()
}

fn get(m: &Scrape, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("{key} missing from /metrics"))
}

fn delta(before: &Scrape, after: &Scrape, key: &str) -> f64 {
    get(after, key) - get(before, key)
}

/// Scrapes until `ok` holds (values fed by periodic work lag a little).
async fn scrape_until(server: &TestServer, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let until = Instant::now() + WAIT;
    loop {
        let m = scrape(server).await;
        if ok(&m) {
            return m;
        }
        assert!(
            Instant::now() < until,
            "{what}: not reached within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_move_with_traffic() {
    let mut server = TestServer::start_with(|c| {
        // A burst of 3 sends, then (practically) none: the 4th is refused.
        c.limit_send = "0.01:3".parse().unwrap();
    })
    .await;
    let before = scrape(&server).await;
    for key in [
        r#"roomcast_connections{transport="tcp"}"#,
        r#"roomcast_sessions{transport="ws"}"#,
        "roomcast_rooms_loaded",
        r#"roomcast_errors_total{code="not_found"}"#,
        "roomcast_store_commit_seconds_count",
        r#"roomcast_store_commit_seconds_bucket{le="+Inf"}"#,
        "roomcast_redis_roundtrip_seconds_count",
        r#"roomcast_bus_messages_total{direction="in"}"#,
    ] {
        get(&before, key);
    }

    let alice = client_on(&server, Transport::Tcp, "alice").await;
    let mut bob = client_on(&server, Transport::Ws, "bob").await;
    let room = alice.create_room("ops", false).await.unwrap();
    alice.join(&room).await.unwrap();
    bob.join(&room).await.unwrap();
    for i in 0..3 {
        alice.send(&room, &format!("m{i}"), None).await.unwrap();
    }
    let refused = alice.send(&room, "one too many", None).await;
    assert!(refused.is_err(), "the 4th send is rate limited");
    for _ in 0..3 {
        next_msg(&mut bob).await;
    }
    let missing = RoomId::new("no-such-room").unwrap();
    assert!(bob.join(&missing).await.is_err());

    let during = scrape_until(&server, "rooms loaded", |m| {
        get(m, "roomcast_rooms_loaded") >= get(&before, "roomcast_rooms_loaded") + 1.0
    })
    .await;
    for t in ["tcp", "ws"] {
        for m in ["roomcast_connections", "roomcast_sessions"] {
            let key = format!(r#"{m}{{transport="{t}"}}"#);
            assert!(delta(&before, &during, &key) >= 1.0, "{key}");
        }
        let key = format!(r#"roomcast_bytes_out_total{{transport="{t}"}}"#);
        assert!(delta(&before, &during, &key) > 0.0, "{key}");
        let key = format!(r#"roomcast_connections_accepted_total{{transport="{t}"}}"#);
        assert!(delta(&before, &during, &key) >= 1.0, "{key}");
    }
    assert!(delta(&before, &during, "roomcast_messages_committed_total") >= 3.0);
    assert!(delta(&before, &during, "roomcast_events_committed_total") >= 3.0);
    // 3 messages to 2 subscribers, in at least one chunk each per subscriber.
    assert!(delta(&before, &during, "roomcast_deliveries_total") >= 2.0);
    assert!(delta(&before, &during, "roomcast_fanout_bytes_total") > 0.0);
    assert!(
        delta(
            &before,
            &during,
            r#"roomcast_rate_limited_total{action="send"}"#
        ) >= 1.0
    );
    assert!(
        delta(
            &before,
            &during,
            r#"roomcast_errors_total{code="rate_limited"}"#
        ) >= 1.0
    );
    assert!(
        delta(
            &before,
            &during,
            r#"roomcast_errors_total{code="not_found"}"#
        ) >= 1.0
    );
    // create_room, two joins, three sends: at least 3 committed batches.
    assert!(delta(&before, &during, "roomcast_store_commit_seconds_count") >= 3.0);
    assert!(delta(&before, &during, "roomcast_store_batch_mutations_count") >= 3.0);
    assert!(delta(&before, &during, "roomcast_store_batch_mutations_sum") >= 3.0);

    drop(alice);
    drop(bob);
    scrape_until(&server, "connections closed", |m| {
        ["tcp", "ws"].iter().all(|t| {
            let c = format!(r#"roomcast_connections{{transport="{t}"}}"#);
            let s = format!(r#"roomcast_sessions{{transport="{t}"}}"#);
            get(m, &c) == get(&before, &c) && get(m, &s) == get(&before, &s)
        })
    })
    .await;
    server.stop().await;
}

async fn get_json(url: String) -> (u16, serde_json::Value) {
    let resp = reqwest::get(&url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

#[tokio::test]
async fn ready_turns_503_when_shutdown_begins_and_health_stays_200() {
    let mut server = TestServer::start_with(|c| c.shutdown_drain_ms = 5_000).await;
    let (status, body) = get_json(format!("http://{}/ready", server.http)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["checks"]["store"], "ok");
    assert!(body["checks"].get("redis").is_none(), "no Redis configured");
    let (status, body) = get_json(format!("http://{}/health", server.http)).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));

    server.shutdown.cancel();
    let until = Instant::now() + WAIT;
    let body = loop {
        let (status, body) = get_json(format!("http://{}/ready", server.http)).await;
        if status == 503 {
            break body;
        }
        assert!(
            Instant::now() < until,
            "/ready still {status} after shutdown began"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body["ready"], false);
    assert_eq!(body["reason"], "shutting_down");
    // Still alive while draining.
    let (status, body) = get_json(format!("http://{}/health", server.http)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "shutting_down");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_checks_redis_and_the_bus_is_counted() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let node = |url: String| {
        move |c: &mut roomcast::config::Config| {
            c.redis = Some(url);
            c.unsafe_node_local_store = true;
        }
    };
    let mut a = TestServer::start_with(node(url.clone())).await;
    let mut b = TestServer::start_with(node(url)).await;
    let (status, body) = get_json(format!("http://{}/ready", a.http)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["redis"], "ok");
    let before = scrape(&a).await;

    // A message crosses from node a to node b through the Redis bus.
    let alice = client_on(&a, Transport::Tcp, "alice").await;
    let mut bob = client_on(&b, Transport::Tcp, "bob").await;
    // The room on both nodes (node-local stores), with the same id.
    let room = RoomId::new("bus-room").unwrap();
    for c in [&alice, &bob] {
        let r = room.clone();
        c.call(|id| {
            ClientFrame::CreateRoom(roomcast::proto::client::CreateRoom {
                id,
                name: "bus".into(),
                private: false,
                description: None,
                room: Some(r),
            })
        })
        .await
        .unwrap();
    }
    alice.join(&room).await.unwrap();
    bob.join(&room).await.unwrap();
    alice.send(&room, "across", None).await.unwrap();
    assert_eq!(next_msg(&mut bob).await.body, "across");
    let after = scrape_until(&a, "bus traffic", |m| {
        delta(&before, m, r#"roomcast_bus_messages_total{direction="in"}"#) >= 1.0
    })
    .await;
    assert!(
        delta(
            &before,
            &after,
            r#"roomcast_bus_messages_total{direction="out"}"#
        ) >= 1.0
    );
    assert!(
        delta(
            &before,
            &after,
            r#"roomcast_bus_bytes_total{direction="out"}"#
        ) > 0.0
    );
    assert!(delta(&before, &after, "roomcast_redis_roundtrip_seconds_count") >= 1.0);
    drop(alice);
    drop(bob);

    redis.kill();
    let until = Instant::now() + WAIT * 2;
    let body = loop {
        let (status, body) = get_json(format!("http://{}/ready", a.http)).await;
        if status == 503 {
            break body;
        }
        assert!(
            Instant::now() < until,
            "/ready still {status} with Redis down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["reason"], "backend_down");
    assert_eq!(body["checks"]["store"], "ok");
    assert!(
        body["checks"]["redis"]
            .as_str()
            .unwrap()
            .starts_with("down"),
        "{body}"
    );
    a.stop().await;
    b.stop().await;
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["serve", "--log-format", "json"])
        .args([
            "--tcp",
            "127.0.0.1:0",
            "--quic",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn roomcast");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    // The certificate line is logged at startup, before the listening line.
    let first = lines.next().expect("a log line").expect("utf-8");
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("not JSON ({e}): {first}"));
    assert_eq!(v["level"], "INFO", "{first}");
    assert!(v["timestamp"].is_string(), "{first}");
    assert!(v["message"].is_string(), "{first}");
}
