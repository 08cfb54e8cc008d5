//! Presence in Redis, shared by every node (`lua/presence.lua`).
//!
//! Each session is a field of its user's hash with an expiry; this node
//! refreshes the expiry of its own sessions every third of the TTL, so a
//! crashed node's sessions lapse by themselves within the TTL. Every node
//! sweeps users whose sessions lapsed and reports the change (the script makes
//! exactly one sweeper see it). `last_seen` outlives the sessions.

use super::timed;
use crate::ids::{now_ms, SessionId, UserId};
use crate::presence::{Presence, Status, UserPresence};
use async_trait::async_trait;
use dashmap::DashMap;
use redis::aio::ConnectionManager;
use redis::Script;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Users swept per round.
const SWEEP_BATCH: isize = 200;

pub struct RedisPresence {
    conn: ConnectionManager,
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
    pub fn new(conn: ConnectionManager, node: String, ttl: Duration) -> Self {
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
        let mut inv = self.script.key(format!("rc:pres:{{{user}}}"));
        inv.key(format!("rc:seen:{{{user}}}"))
            .key("rc:pres:expiring")
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
        let mut c = redis::cmd("EVALSHA");
        c.arg(self.script.get_hash())
            .arg(3)
            .arg(format!("rc:pres:{{{user}}}"))
            .arg(format!("rc:seen:{{{user}}}"))
            .arg("rc:pres:expiring")
            .arg(op)
            .arg(now_ms())
            .arg(field)
            .arg(status_str(status))
            .arg(self.ttl.as_millis() as u64)
            .arg(user.as_str());
        c
    }

    /// Runs a pipeline of script calls, loading the script first if Redis lost it.
    async fn pipeline<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, super::RedisError> {
        let mut conn = self.conn.clone();
        match timed(pipe.query_async::<T>(&mut conn)).await {
            Err(super::RedisError::Redis(e))
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                timed(self.script.prepare_invoke().load_async(&mut conn)).await?;
                timed(pipe.query_async::<T>(&mut conn)).await
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
            let mut pipe = redis::pipe();
            for (session, user, status) in chunk {
                pipe.add_command(self.command("refresh", user, &self.field(*session), *status))
                    .ignore();
            }
            if let Err(e) = self.pipeline::<()>(&pipe).await {
                tracing::warn!(error = %e, "presence refresh failed");
                return;
            }
        }
    }

    async fn sweep(&self) -> Vec<UserPresence> {
        let mut conn = self.conn.clone();
        let due: Vec<String> = match timed(
            redis::cmd("ZRANGEBYSCORE")
                .arg("rc:pres:expiring")
                .arg("-inf")
                .arg(now_ms())
                .arg("LIMIT")
                .arg(0)
                .arg(SWEEP_BATCH)
                .query_async(&mut conn),
        )
        .await
        {
            Ok(d) => d,
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
            let mut pipe = redis::pipe();
            for user in chunk {
                pipe.add_command(self.command("get", user, "", Status::Offline));
            }
            match self.pipeline::<Vec<(String, String, i64)>>(&pipe).await {
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
