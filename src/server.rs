//! Wiring: builds the shared [`Core`] (auth, routers, store, limits,
//! presence), binds the listeners, runs them, and shuts everything down in
//! order: stop accepting, tell clients to reconnect, wait for connections,
//! drain the routers' writes, sync the store.

use crate::accounts::{store::AccountStore, Accounts};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::config::StoreKind;
use crate::conn::caps::Caps;
use crate::presence::{MemoryPresence, Presence, UserPresence};
use crate::ratelimit::{DryRun, Limits, MemoryRateLimiter, RateLimiter};
use crate::redis::bus::{Inbound, RedisBus};
use crate::redis::offline::OfflineNotifier;
use crate::redis::presence::RedisPresence;
use crate::redis::ratelimit::RedisRateLimiter;
use crate::router::cluster::Cluster;
use crate::router::shard::ShardConfig;
use crate::router::Router;
use crate::store::deadline::Deadlined;
use crate::store::embedded::EmbeddedStore;
use crate::store::MessageStore;
use crate::transport::tcp::Layer;
use crate::{http, tls, transport};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Everything a connection needs, shared by all of them.
pub struct Core {
    pub config: Config,
    pub auth: Authenticator,
    pub router: Router,
    pub store: Arc<dyn MessageStore>,
    pub limiter: Arc<dyn RateLimiter>,
    pub presence: Arc<dyn Presence>,
    /// Multi-node: the Redis bus (presence changes go to other nodes through it).
    pub bus: Option<Arc<RedisBus>>,
    /// Multi-node: a Redis connection for readiness probes (`GET /ready`).
    pub redis: Option<crate::redis::Conn>,
    /// Multi-node: this node's registration (lease) and the live set.
    pub nodes: Option<Arc<crate::cluster::Registry>>,
    /// Built-in accounts (`--accounts true`), in the embedded store.
    pub accounts: Option<Arc<crate::accounts::Accounts>>,
    pub connections: AtomicUsize,
    /// The connection cap (`max_connections`), shared by every transport.
    pub permits: Arc<Semaphore>,
    pub shutting_down: AtomicBool,
    /// Connections that have not completed `hello`, per source address.
    pub unauthenticated: Arc<Caps<IpAddr>>,
    /// Connections per user on this node.
    pub user_connections: Arc<Caps<crate::ids::UserId>>,
    sessions: AtomicU64,
    /// Admitted sessions per user on this node (the server API's disconnect).
    pub registry: Arc<crate::conn::registry::Registry>,
}

impl Core {
    pub fn next_session_id(&self) -> crate::ids::SessionId {
        crate::ids::SessionId(self.sessions.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// A jittered reconnect delay for clients told to go away (1 to 5 s), so
    /// they do not all come back at once.
    pub fn reconnect_hint_ms(&self) -> u64 {
        1000 + rand::random::<u64>() % 4000
    }
}

pub struct Server {
    core: Arc<Core>,
    tcp: TcpListener,
    /// The TLS-over-TCP listener (`--tls-tcp`), with its acceptor.
    tls: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    quic: quinn::Endpoint,
    http: TcpListener,
    /// The HTTPS listener (`--https`), with its acceptor.
    https: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    fingerprint: String,
    shards: Vec<JoinHandle<()>>,
    /// Background tasks (Redis presence upkeep, publishing); cancelled last.
    background: CancellationToken,
    /// TEST ONLY: the delays of the slow-store wrapper, when the hidden
    /// `--test-store-*-delay-ms` flags enabled it.
    test_store_delays: Option<crate::store::delayed::Delays>,
}

/// Opens the configured message store, behind the per-call deadline.
/// Opens the configured message store behind its deadline; with the embedded
/// store also returns its fjall database, where the built-in accounts live.
/// (TEST ONLY: and the delays of the slow-store wrapper, if enabled.)
async fn open_store(
    config: &Config,
) -> anyhow::Result<(
    Arc<dyn MessageStore>,
    Option<fjall::Database>,
    Option<crate::store::delayed::Delays>,
)> {
    let (inner, db): (Arc<dyn MessageStore>, _) = match config.store {
        StoreKind::Embedded => {
            let store_dir = config.data_dir.join("store");
            let embedded = EmbeddedStore::open(&store_dir, config.fsync).map_err(|e| {
                anyhow::anyhow!(
                    "opening the store in {}: {e} (is another roomcast using this data dir?)",
                    store_dir.display()
                )
            })?;
            let db = embedded.database();
            (Arc::new(embedded), Some(db))
        }
        StoreKind::Scylla => {
            let cfg = crate::store::scylla::ScyllaConfig::from_config(config)?;
            let store = crate::store::scylla::ScyllaStore::connect(&cfg).await?;
            // Its counters go out on /metrics (roomcast_scylla_*) while it lives.
            crate::metrics::register_scylla_store(&store.metrics);
            (Arc::new(store), None)
        }
    };
    // TEST ONLY (hidden flags): a slow store, inside the deadline like a slow database.
    let mut delays = None;
    let inner: Arc<dyn MessageStore> =
        if config.test_store_read_delay_ms > 0 || config.test_store_write_delay_ms > 0 {
            let d = crate::store::delayed::Delays::new(
                Duration::from_millis(config.test_store_read_delay_ms),
                Duration::from_millis(config.test_store_write_delay_ms),
            );
            delays = Some(d.clone());
            Arc::new(crate::store::delayed::Delayed::new(inner, d))
        } else {
            inner
        };
    Ok((
        Arc::new(Deadlined::new(inner, config.store_timeout())),
        db,
        delays,
    ))
}

impl Server {
    /// Opens the store and binds every listener; nothing is served until [`run`](Self::run).
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        config.check()?;
        let auth = Authenticator::from_config(
            config.jwt_secret.as_deref(),
            config.jwt_public_key.as_deref(),
            &config.data_dir,
        )?
        .with_tenants(config.tenants)
        .with_system_user(&config.system_user);
        let (store, local_db, test_store_delays) = open_store(&config).await?;
        let accounts = match (config.accounts, local_db) {
            (true, Some(db)) => {
                let store = AccountStore::open(db, config.fsync)?;
                Some(Arc::new(Accounts::new(store, auth.clone(), &config)?))
            }
            (true, None) => anyhow::bail!("{}", crate::config::ACCOUNTS_NEED_EMBEDDED),
            (false, _) => None,
        };
        let tcp = TcpListener::bind(config.tcp)
            .await
            .map_err(|e| anyhow::anyhow!("binding TCP {}: {e}", config.tcp))?;
        let http = TcpListener::bind(config.http)
            .await
            .map_err(|e| anyhow::anyhow!("binding HTTP {}: {e}", config.http))?;
        // TLS for TCP and QUIC: one certificate, configs built once here.
        tls::install_default_provider();
        let identity = tls::load_or_generate(
            config.tls_cert.as_deref(),
            config.tls_key.as_deref(),
            &config.data_dir,
        )?;
        tracing::info!(
            certificate = %identity.source.display(),
            generated = identity.generated,
            sha256 = %identity.fingerprint,
            "tls certificate (clients may pin this fingerprint)"
        );
        let tls = match config.tls_tcp {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("binding TLS {addr}: {e}"))?;
                let server_config = tls::server_config(&identity, &[tls::ALPN], false)?;
                let acceptor = transport::tls::acceptor(Arc::new(server_config));
                Some((listener, acceptor))
            }
            None => None,
        };
        let https = match config.https {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("binding HTTPS {addr}: {e}"))?;
                let server_config = tls::server_config(&identity, &[b"http/1.1"], false)?;
                let acceptor = transport::tls::acceptor(Arc::new(server_config));
                Some((listener, acceptor))
            }
            None => None,
        };
        let quic_config = transport::quic::server_config(
            tls::server_config(&identity, &[tls::ALPN], true)?,
            config.heartbeat(),
            config.idle_timeout(),
        )?;
        let quic = transport::quic::bind(quic_config, config.quic)?;
        let shard_cfg = ShardConfig {
            dedupe_window: config.dedupe_window,
            idle_unload: Duration::from_secs(60),
            edit_window: Duration::from_secs(config.edit_window_secs),
            read_on_send: config.read_on_send,
            read_on_join: config.read_on_join,
            typing_ttl: Duration::from_millis(config.typing_ttl_ms),
            presence_list_max: config.presence_list_max,
            outbox_bytes: config.outbox_bytes,
            gap_timeout: Duration::from_millis(config.gap_timeout_ms),
            max_invites_per_room: config.max_invites_per_room,
            system_user: config.system_user.clone(),
            max_commits: config.shard_max_commits,
            commit_window: config.store_timeout(),
        };
        let background = CancellationToken::new();
        let limits = Limits::from_config(&config);
        let (presence, mut limiter, bus, inbound, presence_changes, redis, nodes): (
            Arc<dyn Presence>,
            Arc<dyn RateLimiter>,
            _,
            _,
            _,
            _,
            _,
        ) = match &config.redis {
            None => (
                Arc::new(MemoryPresence::new()),
                Arc::new(MemoryRateLimiter::new(limits)),
                None,
                None,
                None,
                None,
                None,
            ),
            Some(url) => {
                // Refused by `Config::check` unless the test-only switch is on.
                tracing::warn!(
                    "--unsafe-node-local-store: TEST ONLY, history and resume are per node"
                );
                let target = crate::redis::Target::new(url, config.redis_cluster)
                    .map_err(|e| anyhow::anyhow!("--redis {url}: {e}"))?;
                let conn = crate::redis::connect(&target, None)
                    .await
                    .map_err(|e| anyhow::anyhow!("connecting to Redis at {url}: {e}"))?;
                let node: u64 = rand::random();
                let redis_presence = Arc::new(RedisPresence::new(
                    conn.clone(),
                    format!("{node:x}"),
                    Duration::from_millis(config.presence_ttl_ms),
                ));
                let (changes_tx, changes_rx) = tokio::sync::mpsc::unbounded_channel();
                redis_presence
                    .clone()
                    .spawn_maintenance(changes_tx, background.clone());
                let presence: Arc<dyn Presence> = redis_presence;
                let offline = OfflineNotifier::start(
                    conn.clone(),
                    presence.clone(),
                    config.offline_stream.clone(),
                    config.offline_stream_maxlen,
                );
                let (in_tx, in_rx) = tokio::sync::mpsc::unbounded_channel();
                let bus = RedisBus::start(&target, node, Some(offline), in_tx, background.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("Redis pub/sub at {url}: {e}"))?;
                let limiter: Arc<dyn RateLimiter> = Arc::new(RedisRateLimiter::new(
                    conn.clone(),
                    limits,
                    config.redis_failure,
                ));
                let nodes = join_cluster(&config, node, conn.clone(), &tcp, &http, &quic).await?;
                (
                    presence,
                    limiter,
                    Some(bus),
                    Some(in_rx),
                    Some(changes_rx),
                    Some(conn),
                    Some(nodes),
                )
            }
        };
        if config.rate_limit_dry_run {
            limiter = Arc::new(DryRun(limiter));
        }
        let cluster: Option<Arc<dyn Cluster>> = bus.clone().map(|b| b as Arc<dyn Cluster>);
        let (router, shards) = Router::start(
            config.shard_count(),
            shard_cfg,
            store.clone(),
            presence.clone(),
            cluster,
        );
        let core = Arc::new(Core {
            auth,
            router,
            store,
            limiter,
            bus,
            redis,
            nodes,
            accounts,
            presence,
            connections: AtomicUsize::new(0),
            permits: Arc::new(Semaphore::new(config.max_connections)),
            shutting_down: AtomicBool::new(false),
            unauthenticated: Caps::new(config.max_unauthenticated_per_addr),
            user_connections: Caps::new(config.max_connections_per_user),
            sessions: AtomicU64::new(0),
            registry: crate::conn::registry::Registry::new(),
            config,
        });
        if core.config.malloc_trim_secs > 0 {
            tokio::spawn(crate::memory::trim_periodically(
                Duration::from_secs(core.config.malloc_trim_secs),
                background.clone(),
            ));
        }
        if let Some(rx) = inbound {
            tokio::spawn(pump_inbound(core.clone(), rx));
        }
        if let Some(rx) = presence_changes {
            tokio::spawn(pump_presence(core.clone(), rx));
        }
        Ok(Server {
            background,
            core,
            tcp,
            tls,
            quic,
            http,
            https,
            fingerprint: identity.fingerprint,
            shards,
            test_store_delays,
        })
    }

    /// TEST ONLY: the slow-store wrapper's delays, to change them while the
    /// server runs; `None` unless a hidden `--test-store-*-delay-ms` flag is set.
    pub fn test_store_delays(&self) -> Option<crate::store::delayed::Delays> {
        self.test_store_delays.clone()
    }

    pub fn tcp_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The TLS-over-TCP address, if `--tls-tcp` is set.
    pub fn tls_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.tls.as_ref().map(|(l, _)| l.local_addr()).transpose()
    }

    /// The QUIC (UDP) address.
    pub fn quic_addr(&self) -> std::io::Result<SocketAddr> {
        self.quic.local_addr()
    }

    /// SHA-256 of the TLS/QUIC certificate, lowercase hex: what clients pin.
    pub fn tls_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// The HTTPS address, if `--https` is set.
    pub fn https_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.https.as_ref().map(|(l, _)| l.local_addr()).transpose()
    }

    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Serves until `shutdown` is cancelled, then shuts down gracefully within
    /// the configured deadline.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Server {
            core,
            tcp,
            tls,
            quic,
            http,
            https,
            shards,
            background,
            ..
        } = self;
        let tracker = TaskTracker::new();
        // Connections are told to leave after the drain delay, and the HTTP
        // listeners (`/ready` answering 503, `/health`, `/metrics`) stop last.
        let conns = CancellationToken::new();
        let http_stop = CancellationToken::new();
        let mut accept_tasks = vec![tokio::spawn(transport::tcp::accept_loop(
            core.clone(),
            tcp,
            Layer::Plain,
            tracker.clone(),
            conns.clone(),
        ))];
        if let Some((listener, acceptor)) = tls {
            accept_tasks.push(tokio::spawn(transport::tcp::accept_loop(
                core.clone(),
                listener,
                Layer::Tls(acceptor),
                tracker.clone(),
                conns.clone(),
            )));
        }
        accept_tasks.push(tokio::spawn(transport::quic::accept_loop(
            core.clone(),
            quic.clone(),
            tracker.clone(),
            conns.clone(),
        )));
        let bridge = transport::ws::Bridge::new(core.clone(), tracker.clone(), conns.clone());
        let https_task = match https {
            Some((listener, acceptor)) => {
                let listener = http::TlsListener::start(
                    listener,
                    acceptor,
                    core.config.hello_timeout(),
                    http_stop.clone(),
                )?;
                Some(tokio::spawn(http::serve(
                    core.clone(),
                    listener,
                    bridge.clone(),
                    http_stop.clone(),
                )))
            }
            None => None,
        };
        let http_task = tokio::spawn(http::serve(core.clone(), http, bridge, http_stop.clone()));

        shutdown.cancelled().await;
        // Readiness flips first, so load balancers stop sending new clients.
        core.shutting_down.store(true, Ordering::SeqCst);
        let drain = Duration::from_millis(core.config.shutdown_drain_ms);
        if !drain.is_zero() {
            tracing::info!(
                drain_ms = drain.as_millis() as u64,
                "shutting down: /ready answers 503; serving on during the drain delay"
            );
            tokio::time::sleep(drain).await;
        }
        tracing::info!("shutting down: no new connections, asking clients to reconnect");
        conns.cancel();
        for t in accept_tasks {
            let _ = t.await;
        }
        tracker.close();
        let deadline = core.config.shutdown_timeout();
        if tokio::time::timeout(deadline, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = tracker.len(),
                "connections still open at the shutdown deadline"
            );
        }
        // Writes in flight finish (and are acknowledged if their connection is still there).
        if tokio::time::timeout(deadline, core.router.shutdown())
            .await
            .is_err()
        {
            tracing::error!("routers did not drain before the shutdown deadline");
        }
        // Aborted, then awaited: an aborted task is dropped (with the store
        // handles it holds) only when the runtime gets to it, and a restart on the
        // same data dir must find the store closed.
        for s in shards {
            s.abort();
            let _ = s.await;
        }
        // Connections have sent their last frames and closed; tell any QUIC
        // peer still there, and let the endpoint deliver the closes.
        quic.close(
            transport::quic::CLOSE_SHUTDOWN.into(),
            b"server is shutting down",
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), quic.wait_idle()).await;
        if let Err(e) = core.store.flush().await {
            tracing::error!(error = %e, "final store flush failed");
        }
        // Served to the end: now the other nodes may see this one leave at
        // once (not after its lease runs out).
        if let Some(nodes) = &core.nodes {
            nodes.leave().await;
        }
        http_stop.cancel();
        let _ = http_task.await;
        if let Some(t) = https_task {
            let _ = t.await;
        }
        background.cancel();
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Registers this node in Redis with a lease (`--node-id`, `--node-lease-ms`,
/// `--node-renew-ms`) and starts renewing it. Without `--node-id`, the id is
/// the bus's random node number in hex, so logs of both agree.
async fn join_cluster(
    config: &Config,
    bus_node: u64,
    conn: crate::redis::Conn,
    tcp: &TcpListener,
    http: &TcpListener,
    quic: &quinn::Endpoint,
) -> anyhow::Result<Arc<crate::cluster::Registry>> {
    use crate::cluster::{NodeId, NodeInfo, Registry};
    let id = match &config.node_id {
        Some(id) => NodeId::new(id).map_err(|e| anyhow::anyhow!("node_id: {e}"))?,
        None => NodeId::new(&format!("{bus_node:016x}")).map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let incarnation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let addr = |a: std::io::Result<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    let me = NodeInfo {
        id,
        incarnation,
        tcp: addr(tcp.local_addr()),
        http: addr(http.local_addr()),
        quic: addr(quic.local_addr()),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let reg = Registry::join(conn, me, config.node_settings()).await?;
    let me = reg.me();
    tracing::info!(node = %me.id, incarnation = me.incarnation,
        live = reg.live().nodes.len(), "registered in the cluster");
    Ok(reg)
}

/// Traffic from other nodes: room events to the owning shard, presence changes
/// to this node's rooms.
async fn pump_inbound(core: Arc<Core>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Inbound>) {
    while let Some(msg) = rx.recv().await {
        match msg {
            Inbound::Room {
                room,
                ephemeral,
                payload,
            } => core.router.remote(room, ephemeral, payload).await,
            Inbound::Presence(change) => {
                crate::conn::dispatch::broadcast_presence(&core, change, false).await
            }
            Inbound::Disconnect(user) => {
                core.registry.disconnect(&user);
            }
        }
    }
}

/// Presence changes found by this node's sweeper (sessions of dead nodes lapsing).
async fn pump_presence(
    core: Arc<Core>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<UserPresence>,
) {
    while let Some(change) = rx.recv().await {
        crate::conn::dispatch::broadcast_presence(&core, change, true).await;
    }
}
