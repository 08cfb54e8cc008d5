//! Wiring: builds the shared [`Core`] (auth, routers, store, limits,
//! presence), binds the listeners, runs them, and shuts everything down in
//! order: stop accepting, tell clients to reconnect, wait for connections,
//! drain the routers' writes, sync the store.

use crate::auth::Authenticator;
use crate::config::Config;
use crate::presence::{MemoryPresence, Presence};
use crate::ratelimit::{Limits, MemoryRateLimiter, RateLimiter};
use crate::router::shard::ShardConfig;
use crate::router::Router;
use crate::store::embedded::EmbeddedStore;
use crate::store::MessageStore;
use crate::{http, transport};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
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
    pub connections: AtomicUsize,
    pub shutting_down: AtomicBool,
    sessions: AtomicU64,
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
    http: TcpListener,
    shards: Vec<JoinHandle<()>>,
}

impl Server {
    /// Opens the store and binds every listener; nothing is served until [`run`](Self::run).
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        config.validate()?;
        let auth = Authenticator::from_config(
            config.jwt_secret.as_deref(),
            config.jwt_public_key.as_deref(),
            &config.data_dir,
        )?;
        let store_dir = config.data_dir.join("store");
        let store: Arc<dyn MessageStore> =
            Arc::new(EmbeddedStore::open(&store_dir, config.fsync).map_err(|e| {
                anyhow::anyhow!(
                    "opening the store in {}: {e} (is another roomcast using this data dir?)",
                    store_dir.display()
                )
            })?);
        let tcp = TcpListener::bind(config.tcp)
            .await
            .map_err(|e| anyhow::anyhow!("binding TCP {}: {e}", config.tcp))?;
        let http = TcpListener::bind(config.http)
            .await
            .map_err(|e| anyhow::anyhow!("binding HTTP {}: {e}", config.http))?;
        let shard_cfg = ShardConfig {
            dedupe_window: config.dedupe_window,
            idle_unload: Duration::from_secs(60),
        };
        let (router, shards) = Router::start(config.shard_count(), shard_cfg, store.clone());
        let core = Arc::new(Core {
            auth,
            router,
            store,
            limiter: Arc::new(MemoryRateLimiter::new(Limits::from_config(&config))),
            presence: Arc::new(MemoryPresence::new()),
            connections: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            sessions: AtomicU64::new(0),
            config,
        });
        Ok(Server {
            core,
            tcp,
            http,
            shards,
        })
    }

    pub fn tcp_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
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
            http,
            shards,
        } = self;
        let tracker = TaskTracker::new();
        let conns = shutdown.child_token();
        let tcp_task = tokio::spawn(transport::tcp::accept_loop(
            core.clone(),
            tcp,
            tracker.clone(),
            conns.clone(),
        ));
        let http_task = tokio::spawn(http::serve(core.clone(), http, shutdown.clone()));

        shutdown.cancelled().await;
        tracing::info!("shutting down: no new connections, asking clients to reconnect");
        core.shutting_down.store(true, Ordering::SeqCst);
        let _ = tcp_task.await;
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
        for s in shards {
            s.abort();
        }
        if let Err(e) = core.store.flush().await {
            tracing::error!(error = %e, "final store flush failed");
        }
        let _ = http_task.await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}
