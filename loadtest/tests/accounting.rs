//! The load tool against the real server, in-process on port 0: tiny runs of
//! each accounting-bearing scenario must come out exact (nothing lost,
//! duplicated or reordered; every publish acknowledged). No timing assertions.

use roomcast::config::Config;
use roomcast::server::Server;
use roomcast_load::scenario::{mixed, rooms, storm};
use roomcast_load::{Common, MixedArgs, RoomsArgs, StormArgs};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "test-secret-test-secret-test-secret";

struct TestServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start() -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::for_tests(dir.path());
    config.jwt_secret = Some(SECRET.into());
    config.no_rate_limits = true;
    let server = Server::bind(config).await.expect("bind");
    let addr = server.tcp_addr().expect("tcp addr");
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.run(stop.clone()));
    TestServer {
        addr,
        stop,
        task,
        _dir: dir,
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
}

fn assert_exact(r: &roomcast_load::Report, publishes: u64, per_publish: u64) {
    assert_eq!(r.connections_failed, 0, "{}", r.summary());
    assert!(r.errors.is_empty(), "{}", r.summary());
    assert_eq!(r.publishes.sent, publishes, "{}", r.summary());
    assert_eq!(r.publishes.acked, publishes, "{}", r.summary());
    assert_eq!(r.publishes.failed, 0);
    let d = &r.deliveries;
    assert_eq!(d.expected, Some(publishes * per_publish), "{}", r.summary());
    assert_eq!(d.received, publishes * per_publish, "{}", r.summary());
    assert_eq!((d.lost, d.extra), (Some(0), Some(0)));
    assert_eq!((d.duplicates, d.out_of_order, d.stray), (0, 0, 0));
    assert!(r.is_clean());
    assert_eq!(
        r.latency.get("delivery").map(|l| l.count),
        Some(publishes * per_publish)
    );
    assert_eq!(r.latency.get("ack").map(|l| l.count), Some(publishes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_and_latency_account_exactly() {
    let server = start().await;
    let common = Common::for_target(server.addr, SECRET);

    // Fan-out: 3 rooms x 5 members, 2 publishers per room, 200 sends each, window 16.
    let mut a = RoomsArgs::defaults();
    a.rooms = 3;
    a.members = 5;
    a.publishers = 2;
    a.inflight = 16;
    a.messages = 200;
    a.duration = Duration::from_secs(30);
    a.drain = Duration::from_secs(10);
    let r = rooms::run("fanout", &common, &a).await.expect("fanout");
    assert_eq!(r.connections, 15);
    assert_exact(&r, 3 * 2 * 200, 5);
    let d = &r.deliveries;
    assert!(
        d.reads > 0 && d.reads <= d.received,
        "reads with data: {} for {} deliveries",
        d.reads,
        d.received
    );

    // Latency: 400 publishes/s in total for 0.5 s into 2 rooms of 4, bounded by count.
    let mut a = RoomsArgs::defaults();
    a.rooms = 2;
    a.members = 4;
    a.rate = 400.0;
    a.inflight = 1024;
    a.messages = 50;
    a.duration = Duration::from_secs(30);
    a.drain = Duration::from_secs(10);
    let r = rooms::run("latency", &common, &a).await.expect("latency");
    assert_exact(&r, 2 * 50, 4);

    // A bounded-by-time run stops by itself, and whatever was acked is delivered.
    let mut a = RoomsArgs::defaults();
    a.rooms = 1;
    a.members = 3;
    a.inflight = 4;
    a.duration = Duration::from_millis(200);
    a.drain = Duration::from_secs(10);
    let r = rooms::run("fanout", &common, &a)
        .await
        .expect("timed fanout");
    assert!(r.publishes.acked > 0);
    assert_exact(&r, r.publishes.acked, 3);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_storm_and_mixed_run_clean() {
    let server = start().await;
    let common = Common::for_target(server.addr, SECRET);

    let mut a = RoomsArgs::defaults();
    a.rooms = 2;
    a.members = 10;
    a.publishers = 0;
    a.duration = Duration::from_millis(50);
    let r = rooms::run("idle", &common, &a).await.expect("idle");
    assert_eq!((r.connections, r.connections_failed), (20, 0));
    assert!(r.errors.is_empty(), "{}", r.summary());
    assert_eq!(r.extra.get("open_at_start_of_hold"), Some(&20.0));
    assert_eq!(r.extra.get("open_at_end_of_hold"), Some(&20.0));

    let mut s = StormArgs::defaults();
    s.connections = 40;
    s.concurrency = 8;
    let r = storm::run(&common, &s).await.expect("storm");
    assert_eq!((r.connections, r.connections_failed), (40, 0));
    assert_eq!(r.latency.get("handshake").map(|l| l.count), Some(40));

    let mut m = MixedArgs::defaults();
    m.clients = 10;
    m.rooms = 3;
    m.rate = 50.0;
    m.duration = Duration::from_millis(400);
    let r = mixed::run(&common, &m).await.expect("mixed");
    assert_eq!(r.connections_failed, 0);
    assert!(r.errors.is_empty(), "{}", r.summary());
    assert!(r.extra["requests_per_second"] > 0.0);
    assert_eq!(r.publishes.acked, r.publishes.sent, "{}", r.summary());
    assert_eq!((r.deliveries.duplicates, r.deliveries.out_of_order), (0, 0));

    server.stop().await;
}
