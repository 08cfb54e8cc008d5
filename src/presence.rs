//! The presence seam and its in-memory default: a user is `online` while any
//! session is connected and not away, `away` when every connected session is
//! away, `offline` when none is; `last_seen` is kept after going offline. A
//! Redis-backed implementation with TTL'd sessions plugs in behind [`Presence`]
//! for multi-node deployments.

use crate::ids::{now_ms, SessionId, UserId};
pub use crate::proto::types::{Status, UserPresence};
use async_trait::async_trait;
use dashmap::DashMap;

#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// A session connected; returns the user's presence if it changed.
    async fn connected(&self, user: &UserId, session: SessionId) -> Option<UserPresence>;
    /// A session ended; returns the user's presence if it changed.
    async fn disconnected(&self, user: &UserId, session: SessionId) -> Option<UserPresence>;
    /// A session set its status (`online` or `away`); returns the presence if it changed.
    async fn set_status(
        &self,
        user: &UserId,
        session: SessionId,
        status: Status,
    ) -> Option<UserPresence>;
    /// Presence of each user, in order.
    async fn get_many(&self, users: &[UserId]) -> Vec<UserPresence>;
}

#[derive(Default)]
struct Entry {
    /// Connected sessions and whether each is away.
    sessions: Vec<(SessionId, bool)>,
    last_seen: u64,
}

impl Entry {
    fn status(&self) -> Status {
        if self.sessions.is_empty() {
            Status::Offline
        } else if self.sessions.iter().all(|(_, away)| *away) {
            Status::Away
        } else {
            Status::Online
        }
    }
}

#[derive(Default)]
pub struct MemoryPresence {
    users: DashMap<UserId, Entry>,
}

impl MemoryPresence {
    pub fn new() -> Self {
        Self::default()
    }

    fn change(&self, user: &UserId, f: impl FnOnce(&mut Entry)) -> Option<UserPresence> {
        let mut e = self.users.entry(user.clone()).or_default();
        let before = e.status();
        f(&mut e);
        e.last_seen = now_ms();
        let after = e.status();
        (before != after).then(|| UserPresence {
            user: user.clone(),
            status: after,
            last_seen: Some(e.last_seen),
        })
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn connected(&self, user: &UserId, session: SessionId) -> Option<UserPresence> {
        self.change(user, |e| {
            if !e.sessions.iter().any(|(s, _)| *s == session) {
                e.sessions.push((session, false));
            }
        })
    }

    async fn disconnected(&self, user: &UserId, session: SessionId) -> Option<UserPresence> {
        self.change(user, |e| e.sessions.retain(|(s, _)| *s != session))
    }

    async fn set_status(
        &self,
        user: &UserId,
        session: SessionId,
        status: Status,
    ) -> Option<UserPresence> {
        self.change(user, |e| {
            for (s, away) in e.sessions.iter_mut() {
                if *s == session {
                    *away = status == Status::Away;
                }
            }
        })
    }

    async fn get_many(&self, users: &[UserId]) -> Vec<UserPresence> {
        users
            .iter()
            .map(|u| match self.users.get(u) {
                Some(e) => UserPresence {
                    user: u.clone(),
                    status: e.status(),
                    last_seen: Some(e.last_seen),
                },
                None => UserPresence {
                    user: u.clone(),
                    status: Status::Offline,
                    last_seen: None,
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn online_away_offline_across_sessions() {
        let p = MemoryPresence::new();
        let u = UserId::new("u").unwrap();
        assert_eq!(
            p.get_many(std::slice::from_ref(&u)).await[0].status,
            Status::Offline
        );
        assert_eq!(
            p.connected(&u, SessionId(1)).await.unwrap().status,
            Status::Online
        );
        assert!(
            p.connected(&u, SessionId(2)).await.is_none(),
            "already online"
        );
        assert!(
            p.set_status(&u, SessionId(1), Status::Away).await.is_none(),
            "session 2 is still active"
        );
        assert_eq!(
            p.set_status(&u, SessionId(2), Status::Away)
                .await
                .unwrap()
                .status,
            Status::Away
        );
        assert_eq!(p.disconnected(&u, SessionId(1)).await, None);
        let gone = p.disconnected(&u, SessionId(2)).await.unwrap();
        assert_eq!(gone.status, Status::Offline);
        assert!(gone.last_seen.is_some());
    }
}
