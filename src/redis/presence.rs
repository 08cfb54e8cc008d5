//! Presence in Redis, shared by every node (`lua/presence.lua`).
//!
//! Each session is a field of its user's hash with an expiry; this node
//! refreshes the expiry of its own sessions every third of the TTL, so a
//! crashed node's sessions lapse by themselves within the TTL. Every node
//! sweeps users whose sessions lapsed and reports the change (the script makes
//! exactly one sweeper see it). `last_seen` outlives the sessions.
//!
//! Keys are spread over [`BUCKETS`] hash tags, `{b0}` to `{b63}` by a hash of
//! the user id: a user's keys and the expiry index they are listed in share
//! one slot (so the script is valid on a Redis Cluster), and the buckets
//! spread presence over the cluster's shards.

use super::timed;
use super::Conn;
use crate::ids::{now_ms, SessionId, UserId};
use crate::presence::{Presence, Status, UserPresence};
use async_trait::async_trait;
use dashmap::DashMap;
use redis::Script;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Users swept per bucket per round.
const SWEEP_BATCH: isize = 200;

/// Hash tags presence keys are spread over (see the module docs). Changing it
/// moves every user's keys: all nodes must agree.
pub const BUCKETS: u32 = 64;

/// The bucket of a user: FNV-1a of the id, so every node computes the same.
fn bucket(user: &UserId) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in user.as_str().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % BUCKETS
}

fn expiring_key(bucket: u32) -> String {
    format!("rc:pres:{{b{bucket}}}:expiring")
}

/// KEYS of `lua/presence.lua` for `user`: sessions, last seen, expiry index.
fn keys(user: &UserId) -> [String; 3] {
    let b = bucket(user);
    [
        format!("rc:pres:{{b{b}}}:{user}"),
        format!("rc:seen:{{b{b}}}:{user}"),
        expiring_key(b),
    ]
}

/// One script call: op, user, session field, status.
type Call<'a> = (&'a str, &'a UserId, String, Status);

pub struct RedisPresence {
    conn: Conn,
    script: Script,
    node: String,
    ttl: Duration,
    /// This node's sessions and their status, refreshed in Redis periodically.
    local: DashMap<SessionId, (UserId, Status)>,
}

fn parse_status(s: &str) -> Status {
    match s {
        "online" => Status::Online,
        "away" => Status::Away,
        _ => Status::Offline,
    }
}

fn status_str(s: Status) -> &'static str {
    match s {
        Status::Online => "online",
        Status::Away => "away",
        Status::Offline => "offline",
    }
}

impl RedisPresence {
    pub fn new(conn: Conn, node: String, ttl: Duration) -> Self {
        Self {
            conn,
            script: Script::new(include_str!("lua/presence.lua")),
            node,
            ttl,
            local: DashMap::new(),
        }
    }

    fn field(&self, session: SessionId) -> String {
        format!("{}:{}", self.node, session.0)
    }

    fn invocation(
        &self,
        op: &str,
        user: &UserId,
        field: &str,
        status: Status,
    ) -> redis::ScriptInvocation<'_> {
        let [sessions, seen, expiring] = keys(user);
        let mut inv = self.script.key(sessions);
        inv.key(seen)
            .key(expiring)
            .arg(op)
            .arg(now_ms())
            .arg(field)
            .arg(status_str(status))
            .arg(self.ttl.as_millis() as u64)
            .arg(user.as_str());
        inv
    }

    /// The same call as an EVALSHA command, for pipelines.
    fn command(&self, op: &str, user: &UserId, field: &str, status: Status) -> redis::Cmd {
        let [sessions, seen, expiring] = keys(user);
        let mut c = redis::cmd("EVALSHA");
        c.arg(self.script.get_hash())
            .arg(3)
            .arg(sessions)
            .arg(seen)
            .arg(expiring)
            .arg(op)
            .arg(now_ms())
            .arg(field)
            .arg(status_str(status))
            .arg(self.ttl.as_millis() as u64)
            .arg(user.as_str());
        c
    }

    /// Runs many script calls and returns their replies in order. On a single
    /// Redis: one pipeline of EVALSHAs, loading the script first if Redis lost
    /// it. On a cluster the users' keys live on different shards: concurrent
    /// calls, each loading the script on its shard if needed.
    async fn run_many<T: redis::FromRedisValue + Send>(
        &self,
        calls: &[Call<'_>],
    ) -> Result<Vec<T>, super::RedisError> {
        let mut conn = self.conn.clone();
        if conn.is_cluster() {
            let each = calls.iter().map(|(op, user, field, status)| {
                let mut conn = conn.clone();
                async move {
                    self.invocation(op, user, field, *status)
                        .invoke_async::<T>(&mut conn)
                        .await
                }
            });
            return timed(futures_util::future::try_join_all(each)).await;
        }
        let mut pipe = redis::pipe();
        for (op, user, field, status) in calls {
            pipe.add_command(self.command(op, user, field, *status));
        }
        match timed(pipe.query_async::<Vec<T>>(&mut conn)).await {
            Err(super::RedisError::Redis(e))
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                timed(self.script.prepare_invoke().load_async(&mut conn)).await?;
                timed(pipe.query_async::<Vec<T>>(&mut conn)).await
            }
            other => other,
        }
    }

    /// Runs the script; returns the new presence if the status changed.
    async fn run(
        &self,
        op: &str,
        user: &UserId,
        field: &str,
        status: Status,
    ) -> Option<UserPresence> {
        let mut conn = self.conn.clone();
        let inv = self.invocation(op, user, field, status);
        match timed(inv.invoke_async::<(String, String, i64)>(&mut conn)).await {
            Ok((old, new, seen)) if old != new => Some(UserPresence {
                user: user.clone(),
                status: parse_status(&new),
                last_seen: (seen >= 0).then_some(seen as u64),
            }),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, %user, op, "presence: redis unavailable");
                None
            }
        }
    }

    /// Refreshes this node's sessions and sweeps lapsed ones, every third of the
    /// TTL, until `shutdown`; changes found by sweeping go to `changes`.
    pub fn spawn_maintenance(
        self: Arc<Self>,
        changes: mpsc::UnboundedSender<UserPresence>,
        shutdown: CancellationToken,
    ) {
        tokio::spawn(async move {
            let mut every = tokio::time::interval((self.ttl / 3).max(Duration::from_millis(50)));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = every.tick() => {}
                }
                self.refresh().await;
                for change in self.sweep().await {
                    let _ = changes.send(change);
                }
            }
        });
    }

    async fn refresh(&self) {
        let sessions: Vec<(SessionId, UserId, Status)> = self
            .local
            .iter()
            .map(|e| (*e.key(), e.value().0.clone(), e.value().1))
            .collect();
        for chunk in sessions.chunks(256) {
            let calls: Vec<Call<'_>> = chunk
                .iter()
                .map(|(session, user, status)| ("refresh", user, self.field(*session), *status))
                .collect();
            if let Err(e) = self.run_many::<redis::Value>(&calls).await {
                tracing::warn!(error = %e, "presence refresh failed");
                return;
            }
        }
    }

    async fn sweep(&self) -> Vec<UserPresence> {
        let mut conn = self.conn.clone();
        let now = now_ms();
        let queries: Vec<redis::Cmd> = (0..BUCKETS)
            .map(|b| {
                let mut c = redis::cmd("ZRANGEBYSCORE");
                c.arg(expiring_key(b))
                    .arg("-inf")
                    .arg(now)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(SWEEP_BATCH);
                c
            })
            .collect();
        let due: Vec<String> = match timed(conn.run_all(&queries)).await {
            Ok(replies) => replies
                .into_iter()
                .filter_map(|v| redis::from_redis_value::<Vec<String>>(v).ok())
                .flatten()
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "presence sweep failed");
                return Vec::new();
            }
        };
        let mut changes = Vec::new();
        for u in due {
            let Ok(user) = UserId::new(&u) else { continue };
            if let Some(c) = self.run("sweep", &user, "", Status::Offline).await {
                changes.push(c);
            }
        }
        changes
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn connected(&self, user: &UserId, session: SessionId) -> Option<UserPresence> {
        self.local.insert(session, (user.clone(), Status::Online));
        self.run("connect", user, &self.field(session), Status::Online)
            .await
    }

    async fn disconnected(&self, user: &UserId, session: SessionId) -> Option<UserPresence> {
        self.local.remove(&session);
        self.run("disconnect", user, &self.field(session), Status::Offline)
            .await
    }

    async fn set_status(
        &self,
        user: &UserId,
        session: SessionId,
        status: Status,
    ) -> Option<UserPresence> {
        if let Some(mut e) = self.local.get_mut(&session) {
            e.1 = status;
        }
        self.run("status", user, &self.field(session), status).await
    }

    async fn get_many(&self, users: &[UserId]) -> Vec<UserPresence> {
        let mut out = Vec::with_capacity(users.len());
        for chunk in users.chunks(256) {
            let calls: Vec<Call<'_>> = chunk
                .iter()
                .map(|user| ("get", user, String::new(), Status::Offline))
                .collect();
            match self.run_many::<(String, String, i64)>(&calls).await {
                Ok(rows) => {
                    for (user, (_, status, seen)) in chunk.iter().zip(rows) {
                        out.push(UserPresence {
                            user: user.clone(),
                            status: parse_status(&status),
                            last_seen: (seen >= 0).then_some(seen as u64),
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "presence read failed; reporting offline");
                    out.extend(chunk.iter().map(|u| UserPresence {
                        user: u.clone(),
                        status: Status::Offline,
                        last_seen: None,
                    }));
                }
            }
        }
        out
    }
}
