//! The load tool over every transport against the real server, in-process on
//! port 0: a tiny fan-out must account exactly over TCP, TLS (pinned), QUIC
//! (pinned) and WebSocket; `--insecure` and a wrong pin behave; a reconnect
//! storm across a graceful server restart brings every client back. No timing
//! assertions.

use roomcast::config::Config;
use roomcast::server::Server;
use roomcast_load::scenario::{reconnect, rooms};
use roomcast_load::transport::Transport;
use roomcast_load::{Common, ReconnectArgs, RoomsArgs};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "test-secret-test-secret-test-secret";

struct TestServer {
    tcp: SocketAddr,
    tls: SocketAddr,
    quic: SocketAddr,
    http: SocketAddr,
    pin: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(dir: &Path, tcp: Option<SocketAddr>) -> TestServer {
    let mut config = Config::for_tests(dir);
    config.jwt_secret = Some(SECRET.into());
    config.no_rate_limits = true;
    config.tls_tcp = Some(([127, 0, 0, 1], 0).into());
    // Offered to clients that ask (--ws-compression); others are served plain.
    config.ws_compression = true;
    config.ws_compression_min_bytes = 64;
    if let Some(tcp) = tcp {
        config.tcp = tcp;
    }
    let server = Server::bind(config).await.expect("bind");
    let stop = CancellationToken::new();
    TestServer {
        tcp: server.tcp_addr().expect("tcp addr"),
        tls: server.tls_addr().expect("tls addr").expect("tls listener"),
        quic: server.quic_addr().expect("quic addr"),
        http: server.http_addr().expect("http addr"),
        pin: server.tls_fingerprint().to_string(),
        stop: stop.clone(),
        task: tokio::spawn(server.run(stop)),
    }
}

impl TestServer {
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("server stops")
            .expect("server task")
            .expect("server run");
    }

    fn common(&self, transport: Transport) -> Common {
        let addr = match transport {
            Transport::Tcp => self.tcp,
            Transport::Tls => self.tls,
            Transport::Quic => self.quic,
            Transport::Ws => self.http,
        };
        let mut c = Common::for_target(addr, SECRET);
        c.transport = transport;
        c.pin = Some(self.pin.clone());
        c
    }
}

fn tiny_fanout() -> RoomsArgs {
    // 2 rooms x 4 members, 1 publisher per room, 100 sends each, window 8.
    let mut a = RoomsArgs::defaults();
    a.rooms = 2;
    a.members = 4;
    a.publishers = 1;
    a.inflight = 8;
    a.messages = 100;
    a.duration = Duration::from_secs(30);
    a.drain = Duration::from_secs(10);
    a.read_buffer = 2048;
    a
}

fn assert_exact(r: &roomcast_load::Report, publishes: u64, per_publish: u64) {
    assert_eq!(r.connections_failed, 0, "{}", r.summary());
    assert!(r.errors.is_empty(), "{}", r.summary());
    assert_eq!(r.publishes.acked, publishes, "{}", r.summary());
    let d = &r.deliveries;
    assert_eq!(d.received, publishes * per_publish, "{}", r.summary());
    assert_eq!((d.lost, d.extra), (Some(0), Some(0)), "{}", r.summary());
    assert_eq!((d.duplicates, d.out_of_order, d.stray), (0, 0, 0));
    assert!(r.is_clean(), "{}", r.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_is_exact_over_every_transport() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), None).await;
    for t in [
        Transport::Tcp,
        Transport::Tls,
        Transport::Quic,
        Transport::Ws,
    ] {
        let r = rooms::run("fanout", &server.common(t), &tiny_fanout())
            .await
            .unwrap_or_else(|e| panic!("fanout over {t:?}: {e:#}"));
        assert_eq!(r.transport, t.name());
        assert_eq!(r.connections, 8, "{t:?}");
        assert_exact(&r, 2 * 100, 4);
    }

    // WebSocket with permessage-deflate offered and agreed: the same accounting.
    let mut c = server.common(Transport::Ws);
    c.ws_compression = true;
    let r = rooms::run("fanout", &c, &tiny_fanout())
        .await
        .expect("fanout over compressed ws");
    assert_exact(&r, 2 * 100, 4);

    // Idle connections over WebSocket and QUIC hold and close cleanly.
    for t in [Transport::Ws, Transport::Quic] {
        let mut a = tiny_fanout();
        a.publishers = 0;
        a.read_buffer = 1024;
        a.duration = Duration::from_millis(50);
        let r = rooms::run("idle", &server.common(t), &a)
            .await
            .expect("idle");
        assert_eq!((r.connections, r.connections_failed), (8, 0), "{t:?}");
        assert!(r.errors.is_empty(), "{t:?}: {}", r.summary());
    }

    // --insecure accepts the self-signed certificate; a wrong pin is refused.
    let mut c = server.common(Transport::Tls);
    c.pin = None;
    c.insecure = true;
    let r = rooms::run("fanout", &c, &tiny_fanout())
        .await
        .expect("insecure");
    assert_exact(&r, 2 * 100, 4);
    let mut c = server.common(Transport::Quic);
    c.pin = Some("00".repeat(32));
    assert!(rooms::run("fanout", &c, &tiny_fanout()).await.is_err());
    let mut c = server.common(Transport::Tls);
    c.pin = None;
    let e = rooms::run("fanout", &c, &tiny_fanout())
        .await
        .expect_err("tls without a pin");
    assert!(format!("{e:#}").contains("--pin"), "{e:#}");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_storm_brings_every_client_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), None).await;
    let common = server.common(Transport::Tcp);
    let mut a = ReconnectArgs::defaults();
    a.connections = 20;
    a.wait = Duration::from_secs(30);
    a.duration = Duration::from_secs(30);
    a.backoff_initial = Duration::from_millis(20);
    a.backoff_max = Duration::from_millis(200);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let storm = tokio::spawn(async move { reconnect::run_with(&common, &a, Some(tx)).await });
    rx.await.expect("all connected");
    // A graceful restart on the same address: `shutting_down` with retry_after_ms.
    let tcp = server.tcp;
    server.stop().await;
    let server = start(dir.path(), Some(tcp)).await;
    let r = storm.await.expect("storm task").expect("storm");
    assert_eq!(
        (r.connections, r.connections_failed),
        (20, 0),
        "{}",
        r.summary()
    );
    assert_eq!(r.extra["reconnected"], 20.0, "{}", r.summary());
    assert_eq!(
        r.errors.get("shutting_down").copied(),
        Some(20),
        "{}",
        r.summary()
    );
    assert_eq!(r.latency.get("reconnect").map(|l| l.count), Some(20));
    assert!(r.extra.contains_key("time_to_all_reconnected_s"));
    server.stop().await;
}
