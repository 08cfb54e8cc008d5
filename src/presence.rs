//! The presence seam and its in-memory default: who is online, across all of
//! a user's sessions, and when each user was last seen. A Redis-backed
//! implementation with TTL'd sessions plugs in behind [`Presence`].

use crate::ids::{now_ms, SessionId, UserId};
use async_trait::async_trait;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Away,
    Offline,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPresence {
    pub status: Status,
    pub sessions: usize,
    /// Ms since the epoch when the user was last connected (None: never seen).
    pub last_seen: Option<u64>,
}

#[async_trait]
pub trait Presence: Send + Sync + 'static {
    async fn connected(&self, user: &UserId, session: SessionId);
    async fn disconnected(&self, user: &UserId, session: SessionId);
    async fn get(&self, user: &UserId) -> UserPresence;
}

#[derive(Default)]
struct Entry {
    sessions: Vec<SessionId>,
    last_seen: u64,
}

#[derive(Default)]
pub struct MemoryPresence {
    users: DashMap<UserId, Entry>,
}

impl MemoryPresence {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn connected(&self, user: &UserId, session: SessionId) {
        let mut e = self.users.entry(user.clone()).or_default();
        if !e.sessions.contains(&session) {
            e.sessions.push(session);
        }
        e.last_seen = now_ms();
    }

    async fn disconnected(&self, user: &UserId, session: SessionId) {
        if let Some(mut e) = self.users.get_mut(user) {
            e.sessions.retain(|s| *s != session);
            e.last_seen = now_ms();
        }
    }

    async fn get(&self, user: &UserId) -> UserPresence {
        match self.users.get(user) {
            Some(e) => UserPresence {
                status: if e.sessions.is_empty() {
                    Status::Offline
                } else {
                    Status::Online
                },
                sessions: e.sessions.len(),
                last_seen: Some(e.last_seen),
            },
            None => UserPresence {
                status: Status::Offline,
                sessions: 0,
                last_seen: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn online_while_any_session_is_connected() {
        let p = MemoryPresence::new();
        let u = UserId::new("u").unwrap();
        assert_eq!(p.get(&u).await.status, Status::Offline);
        p.connected(&u, SessionId(1)).await;
        p.connected(&u, SessionId(2)).await;
        assert_eq!(p.get(&u).await.sessions, 2);
        p.disconnected(&u, SessionId(1)).await;
        assert_eq!(p.get(&u).await.status, Status::Online);
        p.disconnected(&u, SessionId(2)).await;
        let now = p.get(&u).await;
        assert_eq!(now.status, Status::Offline);
        assert!(now.last_seen.is_some());
    }
}
