//! Shared helpers: the real server in-process on port 0, tokens, raw sockets,
//! and [`Transport`] with [`each_transport!`] to run a test over TCP, TLS,
//! QUIC and WebSocket.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod cql;
pub mod http;
pub mod process;
pub mod redis;

use bytes::Bytes;
use futures_util::StreamExt;
use roomcast::auth::Authenticator;
use roomcast::config::Config;
use roomcast::proto::{FrameCodec, ServerFrame};
use roomcast::server::Server;
use roomcast_client::{Connection, Endpoint, Trust};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "test-secret-test-secret-test-secret";
pub const WAIT: Duration = Duration::from_secs(10);

/// The transports a test can run over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
    Quic,
    Ws,
}

impl Transport {
    pub const ALL: [Transport; 4] = [
        Transport::Tcp,
        Transport::Tls,
        Transport::Quic,
        Transport::Ws,
    ];
}

/// Instantiates each named `async fn NAME(t: Transport)` as four tests,
/// `tcp::NAME`, `tls::NAME`, `quic::NAME` and `ws::NAME`.
macro_rules! each_transport {
    ($($name:ident),* $(,)?) => {
        each_transport!(@mod tcp, Tcp, $($name),*);
        each_transport!(@mod tls, Tls, $($name),*);
        each_transport!(@mod quic, Quic, $($name),*);
        each_transport!(@mod ws, Ws, $($name),*);
    };
    (@mod $m:ident, $t:ident, $($name:ident),*) => {
        mod $m {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::common::Transport::$t).await
                }
            )*
        }
    };
}
pub(crate) use each_transport;

pub struct TestServer {
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    /// The HTTPS listener: the HTTP routes over TLS (`wss://…/ws`).
    pub https: SocketAddr,
    pub tls: SocketAddr,
    pub quic: SocketAddr,
    /// SHA-256 of the server's (generated) certificate, for pinning.
    pub fingerprint: String,
    pub shutdown: CancellationToken,
    pub task: Option<JoinHandle<anyhow::Result<()>>>,
    pub dir: tempfile::TempDir,
    /// With ROOMCAST_TEST_STORE=scylla: drops the server's keyspace.
    pub keyspace: Option<cql::KeyspaceGuard>,
}

/// ROOMCAST_TEST_STORE=scylla: the same suites on the ScyllaDB store (a CQL
/// node). One keyspace per data dir, so a server restarted on the same dir
/// (a config made again with this) finds its data again. The guard drops the
/// keyspace once the last guard of it goes: keep it while the data dir is in use.
#[must_use = "the keyspace is dropped when the guard is"]
pub fn apply_test_store(config: &mut Config) -> Option<cql::KeyspaceGuard> {
    if std::env::var("ROOMCAST_TEST_STORE").is_ok_and(|v| v == "scylla")
        && config.store == roomcast::config::StoreKind::Embedded
    {
        let nodes = cql::nodes()
            .expect("ROOMCAST_TEST_STORE=scylla needs a CQL node (scripts/cql-node.sh start)");
        let keyspace = cql::keyspace_for(&config.data_dir);
        cql::use_scylla(config, &nodes, &keyspace);
        return Some(cql::KeyspaceGuard::new(&nodes, &keyspace));
    }
    None
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::for_tests(dir.path());
        f(&mut config);
        let keyspace = apply_test_store(&mut config);
        let server = Server::bind(config).await.expect("bind");
        let tcp = server.tcp_addr().expect("tcp addr");
        let http = server.http_addr().expect("http addr");
        let tls = server.tls_addr().expect("tls addr").expect("tls enabled");
        let https = server
            .https_addr()
            .expect("https addr")
            .expect("https enabled");
        let quic = server.quic_addr().expect("quic addr");
        let fingerprint = server.tls_fingerprint().to_string();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        TestServer {
            tcp,
            http,
            https,
            tls,
            quic,
            fingerprint,
            shutdown,
            task: Some(task),
            dir,
            keyspace,
        }
    }

    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("server stops within 30 s")
                .expect("server task")
                .expect("server run");
        }
    }
}

impl TestServer {
    /// How a client reaches this server over `t` (TLS and QUIC pin the certificate).
    pub fn endpoint(&self, t: Transport) -> Endpoint {
        let pin = || Trust::Pin(roomcast_client::parse_pin(&self.fingerprint).expect("pin"));
        match t {
            Transport::Tcp => Endpoint::Tcp(self.tcp),
            Transport::Tls => Endpoint::Tls {
                addr: self.tls,
                server_name: "localhost".into(),
                trust: pin(),
            },
            Transport::Quic => Endpoint::Quic {
                addr: self.quic,
                server_name: "localhost".into(),
                trust: pin(),
            },
            Transport::Ws => Endpoint::Ws(format!("ws://{}/ws", self.http)),
        }
    }
}

/// A connected, authenticated client over `t`.
pub async fn client_on(server: &TestServer, t: Transport, user: &str) -> Connection {
    let (c, _) = Connection::connect_to_with_token(&server.endpoint(t), &token(user))
        .await
        .unwrap_or_else(|e| panic!("connect and hello over {t:?}: {e}"));
    c
}

/// A frame-level raw connection over any transport, for malformed input:
/// payloads in (each framed as the transport does it), frames out.
pub struct Peer {
    pub client: Connection,
}

impl Peer {
    pub async fn connect(server: &TestServer, t: Transport) -> Peer {
        let client = Connection::connect_to(&server.endpoint(t))
            .await
            .unwrap_or_else(|e| panic!("connect over {t:?}: {e}"));
        Peer { client }
    }

    /// Raw bytes. On WebSocket they must be whole length-prefixed frames.
    pub async fn write(&mut self, bytes: &[u8]) {
        self.client
            .send_raw(Bytes::copy_from_slice(bytes))
            .expect("write");
    }

    pub async fn send_map(&mut self, v: serde_json::Value) {
        let payload = rmp_serde::to_vec_named(&v).expect("encode");
        let mut b = (payload.len() as u32).to_be_bytes().to_vec();
        b.extend(payload);
        self.write(&b).await;
    }

    /// Next frame, or None once the connection closed; panics after WAIT.
    pub async fn next(&mut self) -> Option<ServerFrame> {
        tokio::time::timeout(WAIT, self.client.next_event())
            .await
            .expect("frame within WAIT")
    }

    /// Reads until the connection closes, returning every frame.
    pub async fn drain_to_eof(&mut self) -> Vec<ServerFrame> {
        let mut out = Vec::new();
        while let Some(f) = self.next().await {
            out.push(f);
        }
        out
    }

    pub async fn hello(&mut self, user: &str) {
        self.send_map(serde_json::json!({"t": "hello", "v": 1, "token": token(user), "id": 0}))
            .await;
        match self.next().await {
            Some(ServerFrame::Welcome(_)) => {}
            other => panic!("expected welcome, got {other:?}"),
        }
    }
}

pub fn token(user: &str) -> String {
    Authenticator::hs256(SECRET.as_bytes())
        .mint(user, 3600)
        .expect("mint")
}

pub async fn client(addr: SocketAddr, user: &str) -> roomcast_client::Connection {
    let (c, _) = roomcast_client::Connection::connect_with_token(addr, &token(user))
        .await
        .expect("connect and hello");
    c
}

type RawRead = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
type RawWrite = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// A raw connection over any byte stream (TCP, TLS, a QUIC stream): frames
/// in, bytes out, and it reads only when asked (for slow consumers).
pub struct Raw {
    pub rx: FramedRead<RawRead, FrameCodec>,
    pub tx: RawWrite,
    /// What must outlive the streams (a QUIC connection and its endpoint).
    _keep: Option<Box<dyn std::any::Any + Send>>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).await.expect("connect");
        Self::from_stream(s)
    }

    pub fn from_stream(s: TcpStream) -> Raw {
        let (r, w) = s.into_split();
        Self::from_io(Box::new(r), Box::new(w), None)
    }

    pub fn from_io(r: RawRead, w: RawWrite, keep: Option<Box<dyn std::any::Any + Send>>) -> Raw {
        Raw {
            rx: FramedRead::new(r, FrameCodec::new(64 * 1024 * 1024)),
            tx: w,
            _keep: keep,
        }
    }

    /// A byte-stream connection over `t` (TCP, TLS or QUIC) whose receive
    /// side holds little: a 4 KiB socket buffer, a 16 KiB QUIC window, so a
    /// client that stops reading pushes back on the server at once.
    pub async fn connect_small_window(server: &TestServer, t: Transport) -> Raw {
        let pin = || Trust::Pin(roomcast_client::parse_pin(&server.fingerprint).expect("pin"));
        let small_tcp = |addr: SocketAddr| async move {
            let sock = tokio::net::TcpSocket::new_v4().expect("socket");
            sock.set_recv_buffer_size(4096).expect("rcvbuf");
            sock.connect(addr).await.expect("connect")
        };
        match t {
            Transport::Tcp => Self::from_stream(small_tcp(server.tcp).await),
            Transport::Tls => {
                let config =
                    roomcast_client::tls::client_config(&pin(), &[roomcast_client::tls::ALPN])
                        .expect("tls config");
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
                let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                    .connect(name, small_tcp(server.tls).await)
                    .await
                    .expect("tls handshake");
                let (r, w) = tokio::io::split(stream);
                Self::from_io(Box::new(r), Box::new(w), None)
            }
            Transport::Quic => {
                let tls =
                    roomcast_client::tls::client_config(&pin(), &[roomcast_client::tls::ALPN])
                        .expect("tls config");
                let crypto =
                    quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
                let mut config = quinn::ClientConfig::new(std::sync::Arc::new(crypto));
                let mut transport = quinn::TransportConfig::default();
                transport
                    .stream_receive_window(16_384u32.into())
                    .receive_window(16_384u32.into());
                config.transport_config(std::sync::Arc::new(transport));
                let mut endpoint =
                    quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).expect("endpoint");
                endpoint.set_default_client_config(config);
                let conn = endpoint
                    .connect(server.quic, "localhost")
                    .expect("connect")
                    .await
                    .expect("quic handshake");
                let (send, recv) = conn.open_bi().await.expect("stream");
                Self::from_io(
                    Box::new(recv),
                    Box::new(send),
                    Some(Box::new((conn, endpoint))),
                )
            }
            Transport::Ws => panic!("WebSocket has its own raw client (tests/transports.rs)"),
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.tx.write_all(bytes).await.expect("write");
    }

    pub async fn send_map(&mut self, v: serde_json::Value) {
        let payload = rmp_serde::to_vec_named(&v).expect("encode");
        let mut b = (payload.len() as u32).to_be_bytes().to_vec();
        b.extend(payload);
        self.write(&b).await;
    }

    /// Next frame, or None at EOF; panics after WAIT.
    pub async fn next(&mut self) -> Option<ServerFrame> {
        let item = tokio::time::timeout(WAIT, self.rx.next())
            .await
            .expect("frame within WAIT");
        item.map(|r| {
            let payload: Bytes = r.unwrap_or_else(|e| panic!("frame: {e}"));
            ServerFrame::decode(&payload).expect("decodable server frame")
        })
    }

    /// Reads until EOF, returning every frame.
    pub async fn drain_to_eof(&mut self) -> Vec<ServerFrame> {
        let mut out = Vec::new();
        while let Some(f) = self.next().await {
            out.push(f);
        }
        out
    }

    pub async fn hello(&mut self, user: &str) {
        self.send_map(serde_json::json!({"t": "hello", "v": 1, "token": token(user), "id": 0}))
            .await;
        match self.next().await {
            Some(ServerFrame::Welcome(_)) => {}
            other => panic!("expected welcome, got {other:?}"),
        }
    }
}

/// Asserts the frame is an error with this code (and closing flag).
pub fn assert_error(
    f: Option<ServerFrame>,
    code: &str,
    close: bool,
) -> roomcast::proto::server::ErrorFrame {
    match f {
        Some(ServerFrame::Error(e)) => {
            assert_eq!(e.code.as_str(), code, "message: {}", e.message);
            assert_eq!(e.close, close, "close flag for {code}");
            e
        }
        other => panic!("expected error {code}, got {other:?}"),
    }
}

/// Waits for the next `msg` push on a client, skipping nothing else silently.
pub async fn next_msg(c: &mut roomcast_client::Connection) -> roomcast::proto::server::Message {
    match next_stream_event(c).await {
        ServerFrame::Msg(m) => m,
        other => panic!("expected msg, got {other:?}"),
    }
}

/// Waits for the next stream event push (`msg`, `edit`, `delete`, `reaction`),
/// skipping ephemeral and membership pushes (read pointers, typing, presence,
/// member changes), which clients may interleave freely.
pub async fn next_stream_event(c: &mut roomcast_client::Connection) -> ServerFrame {
    loop {
        let f = tokio::time::timeout(WAIT, c.next_event())
            .await
            .expect("push within WAIT")
            .expect("connection open");
        if f.stream_seq().is_some() || matches!(f, ServerFrame::Error(_)) {
            return f;
        }
    }
}
