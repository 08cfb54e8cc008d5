//! The real server in-process (restartable on the same ports and data dir),
//! tokens, a cuttable TCP proxy, and SDK configs with fast backoff.
#![allow(dead_code)]

use roomcast::auth::Authenticator;
use roomcast::config::Config;
use roomcast::server::Server;
use roomcast_client::{Backoff, ClientConfig, Endpoint, Event, Trust};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "test-secret-test-secret-test-secret";
pub const WAIT: Duration = Duration::from_secs(20);

pub fn token(user: &str) -> String {
    Authenticator::hs256(SECRET.as_bytes())
        .mint(user, 3600)
        .expect("mint")
}

/// Addresses of a running server.
#[derive(Clone, Copy, Debug)]
pub struct Addrs {
    pub tcp: SocketAddr,
    pub quic: SocketAddr,
    pub http: SocketAddr,
}

/// A server on its own runtime, so [`Srv::kill`] can drop every one of its
/// tasks at once (as a crash would), releasing the store for a restart.
pub struct Srv {
    pub addrs: Addrs,
    pub pin: [u8; 32],
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Srv {
    /// Starts a server on `dir`; on `addrs` if given (a restart), else port 0.
    pub async fn start(dir: &Path, addrs: Option<Addrs>, tweak: impl Fn(&mut Config)) -> Srv {
        let mut last_err = None;
        for _ in 0..100 {
            let mut config = Config::for_tests(dir);
            config.no_rate_limits = true;
            if let Some(a) = addrs {
                config.tcp = a.tcp;
                config.quic = a.quic;
                config.http = a.http;
            }
            tweak(&mut config);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let bound = runtime.spawn(Server::bind(config)).await.unwrap();
            match bound {
                Ok(server) => {
                    let addrs = Addrs {
                        tcp: server.tcp_addr().unwrap(),
                        quic: server.quic_addr().unwrap(),
                        http: server.http_addr().unwrap(),
                    };
                    let pin = roomcast_client::parse_pin(server.tls_fingerprint()).unwrap();
                    let shutdown = CancellationToken::new();
                    let task = runtime.spawn(server.run(shutdown.clone()));
                    return Srv {
                        addrs,
                        pin,
                        shutdown,
                        task: Some(task),
                        runtime: Some(runtime),
                    };
                }
                // A restart on the same ports / data dir may race the old one's release.
                Err(e) => {
                    last_err = Some(e);
                    runtime.shutdown_background();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("server bind: {last_err:?}");
    }

    /// Graceful shutdown: clients get `shutting_down` with `retry_after_ms`.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("stops within 30 s")
                .expect("task")
                .expect("run");
        }
    }

    /// No shutdown path: every task of the server is dropped where it stands.
    pub async fn kill(&mut self) {
        self.task.take();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    pub fn endpoint(&self, transport: &str) -> Endpoint {
        match transport {
            "tcp" => Endpoint::Tcp(self.addrs.tcp),
            "quic" => Endpoint::Quic {
                addr: self.addrs.quic,
                server_name: "localhost".into(),
                trust: Trust::Pin(self.pin),
            },
            "ws" => Endpoint::Ws(format!("ws://{}/ws", self.addrs.http)),
            other => panic!("transport {other}"),
        }
    }
}

/// A client config with fast, bounded reconnects (tests must not wait 30 s).
pub fn config(endpoint: Endpoint, user: &str) -> ClientConfig {
    let mut c = ClientConfig::new(endpoint, token(user));
    c.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(300),
        multiplier: 2.0,
        max_attempts: Some(400),
    };
    c.request_timeout = WAIT;
    c.queue_capacity = 5000;
    c
}

/// A TCP proxy whose connections can be cut at any moment.
pub struct Proxy {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let c = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let pump = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(pump.abort_handle());
            }
        });
        Proxy {
            addr,
            conns,
            accept,
        }
    }

    /// Drops every proxied connection mid-stream (both sockets close).
    pub fn cut(&self) -> usize {
        let mut conns = self.conns.lock().unwrap();
        let n = conns.len();
        for c in conns.drain(..) {
            c.abort();
        }
        n
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Next event within WAIT, skipping nothing.
pub async fn next(events: &mut roomcast_client::Events) -> Event {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("event within WAIT")
        .expect("events open")
}

/// Collects `Message` bodies until `n` arrived; also returns how many
/// `Resumed` / `Disconnected` events were seen. Bounded by WAIT per event.
pub async fn collect_messages(
    events: &mut roomcast_client::Events,
    n: usize,
) -> (
    Vec<(u64, String)>,
    usize,
    usize,
    Vec<Option<roomcast::proto::ErrorCode>>,
) {
    let (mut msgs, mut resumed, mut disconnects, mut codes) = (Vec::new(), 0, 0, Vec::new());
    while msgs.len() < n {
        match next(events).await {
            Event::Message(m) => msgs.push((m.seq, m.body)),
            Event::Resumed { .. } => resumed += 1,
            Event::Disconnected { code, .. } => {
                disconnects += 1;
                codes.push(code);
            }
            Event::Closed { reason } => panic!("client closed: {reason}"),
            _ => {}
        }
    }
    (msgs, resumed, disconnects, codes)
}

/// Every message of a room, oldest first, by paging history back.
pub async fn full_history(
    c: &roomcast_client::Client,
    room: &roomcast::proto::ids::RoomId,
) -> Vec<roomcast::proto::server::Message> {
    let mut all = Vec::new();
    let mut before = None;
    for _ in 0..1000 {
        let page = c.history(room, before, Some(200)).await.expect("history");
        let more = page.more;
        before = page.messages.first().map(|m| m.seq);
        let mut msgs = page.messages;
        msgs.extend(all);
        all = msgs;
        if !more || before.is_none() {
            break;
        }
    }
    all
}

/// Asserts seqs strictly increase (in order, no duplicates).
pub fn assert_ordered(msgs: &[(u64, String)]) {
    for w in msgs.windows(2) {
        assert!(
            w[0].0 < w[1].0,
            "out of order or duplicate: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
}
