//! One connection type for a single Redis and for a Redis Cluster.
//!
//! A single Redis gets an auto-reconnecting multiplexed connection; a cluster
//! gets redis-rs's cluster client (one multiplexed connection per node,
//! slot-aware routing, MOVED/ASK handling, re-subscription after a node
//! reconnects). Both speak RESP3 so that pub/sub messages arrive as pushes on
//! the same connection.
//!
//! What differs in cluster mode is kept here:
//! - pub/sub is sharded: SPUBLISH/SSUBSCRIBE, so a room's traffic stays on the
//!   shard that owns its channel's slot instead of being broadcast to every
//!   node of the cluster, as classic PUBLISH is;
//! - commands for different slots cannot share a pipeline, so a batch goes out
//!   as concurrent single commands (the cluster client still writes them back
//!   to back on each node's connection, in order).

use super::RedisError;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, PushInfo, RedisFuture, RedisResult, Value};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Where Redis is: one server, or the seed nodes of a cluster.
#[derive(Clone, Debug)]
pub struct Target {
    urls: Vec<String>,
    cluster: bool,
}

impl Target {
    /// `url` is one URL, or (with `cluster`) comma-separated seed node URLs.
    pub fn new(url: &str, cluster: bool) -> Result<Target, RedisError> {
        let urls: Vec<String> = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(with_resp3)
            .collect();
        if urls.is_empty() {
            return Err(RedisError::Url("no Redis URL given".into()));
        }
        if urls.len() > 1 && !cluster {
            return Err(RedisError::Url(
                "several Redis URLs are cluster seed nodes: add --redis-cluster".into(),
            ));
        }
        Ok(Target { urls, cluster })
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster
    }
}

fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

/// Opens a connection to `target`. `pushes`, if given, receives pub/sub
/// messages (and, for a single Redis, disconnection notices); subscriptions
/// are restored by the connection itself after a reconnect.
pub async fn connect(
    target: &Target,
    pushes: Option<mpsc::UnboundedSender<PushInfo>>,
) -> Result<Conn, RedisError> {
    // The first connection is made at startup: a wrong URL fails fast and clearly.
    let limit = Duration::from_secs(5);
    let conn = async {
        if target.cluster {
            let mut b = ClusterClientBuilder::new(target.urls.clone())
                .use_protocol(redis::ProtocolVersion::RESP3)
                .connection_timeout(Duration::from_secs(2))
                .response_timeout(Duration::from_secs(2))
                .retries(2);
            if let Some(tx) = pushes {
                b = b.push_sender(tx);
            }
            let client = b.build().map_err(|e| RedisError::Url(e.to_string()))?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        } else {
            let client = redis::Client::open(target.urls[0].as_str())
                .map_err(|e| RedisError::Url(e.to_string()))?;
            let mut config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_secs(2));
            if let Some(tx) = pushes {
                config = config.set_push_sender(tx).set_automatic_resubscription();
            }
            Ok(Conn::Single(
                client.get_connection_manager_with_config(config).await?,
            ))
        }
    };
    match tokio::time::timeout(limit, conn).await {
        Ok(r) => r,
        Err(_) => Err(RedisError::Timeout(limit)),
    }
}

impl Conn {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// The publish command: PUBLISH, or SPUBLISH on a cluster.
    pub fn publish_command(&self) -> &'static str {
        match self {
            Conn::Single(_) => "PUBLISH",
            Conn::Cluster(_) => "SPUBLISH",
        }
    }

    /// Subscribes to `channels`: one SUBSCRIBE, or on a cluster one SSUBSCRIBE
    /// per channel (channels of different slots cannot share one), concurrently.
    pub async fn subscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Conn::Single(c) => c.subscribe(channels).await,
            Conn::Cluster(c) => {
                let calls = channels.iter().map(|ch| {
                    let mut c = c.clone();
                    async move { c.ssubscribe(ch).await }
                });
                futures_util::future::try_join_all(calls).await.map(|_| ())
            }
        }
    }

    pub async fn unsubscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Conn::Single(c) => c.unsubscribe(channels).await,
            Conn::Cluster(c) => {
                let calls = channels.iter().map(|ch| {
                    let mut c = c.clone();
                    async move { c.sunsubscribe(ch).await }
                });
                futures_util::future::try_join_all(calls).await.map(|_| ())
            }
        }
    }

    /// Runs commands that may touch different slots and returns their replies
    /// in order: one pipeline on a single Redis, concurrent commands on a
    /// cluster. Fails if any command fails.
    pub async fn run_all(&mut self, cmds: &[Cmd]) -> RedisResult<Vec<Value>> {
        crate::metrics::redis_timed(self.run_all_untimed(cmds)).await
    }

    async fn run_all_untimed(&mut self, cmds: &[Cmd]) -> RedisResult<Vec<Value>> {
        match self {
            Conn::Single(c) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd.clone());
                }
                pipe.query_async(c).await
            }
            Conn::Cluster(c) => {
                let calls = cmds.iter().map(|cmd| {
                    let mut c = c.clone();
                    async move { cmd.query_async::<Value>(&mut c).await }
                });
                futures_util::future::try_join_all(calls).await
            }
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let call = match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        };
        Box::pin(crate::metrics::redis_timed(call))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let call = match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        };
        Box::pin(crate::metrics::redis_timed(call))
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
