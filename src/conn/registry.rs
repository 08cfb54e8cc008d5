//! The admitted sessions of each user on this node, so the server API can
//! disconnect a user (`POST /api/users/{user}/disconnect`). A connection
//! registers after `hello` succeeds and holds a [`Registered`] guard that
//! removes it when the connection ends; users with no session leave the map.
//! Bounded by the connection caps: at most `--max-connections-per-user`
//! entries per user, `--max-connections` in all.

use crate::ids::{SessionId, UserId};
use dashmap::DashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Registry {
    users: DashMap<UserId, Vec<(SessionId, CancellationToken)>>,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Registers `session` of `user`; the token is cancelled by [`disconnect`](Self::disconnect).
    pub fn register(
        self: &Arc<Self>,
        user: UserId,
        session: SessionId,
        token: CancellationToken,
    ) -> Registered {
        self.users
            .entry(user.clone())
            .or_default()
            .push((session, token));
        Registered {
            registry: self.clone(),
            user,
            session,
        }
    }

    /// Asks every session of `user` on this node to close; answers how many.
    pub fn disconnect(&self, user: &UserId) -> usize {
        self.users.get(user).map_or(0, |sessions| {
            for (_, token) in sessions.iter() {
                token.cancel();
            }
            sessions.len()
        })
    }

    /// Sessions of `user` on this node.
    pub fn count(&self, user: &UserId) -> usize {
        self.users.get(user).map_or(0, |s| s.len())
    }
}

/// One registered session; unregisters when dropped.
pub struct Registered {
    registry: Arc<Registry>,
    user: UserId,
    session: SessionId,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry
            .users
            .remove_if_mut(&self.user, |_, sessions| {
                sessions.retain(|(s, _)| *s != self.session);
                sessions.is_empty()
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_register_disconnect_and_leave() {
        let r = Registry::new();
        let alice = UserId::new("alice").unwrap();
        let bob = UserId::new("bob").unwrap();
        let (t1, t2, t3) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let a1 = r.register(alice.clone(), SessionId(1), t1.clone());
        let _a2 = r.register(alice.clone(), SessionId(2), t2.clone());
        let _b = r.register(bob.clone(), SessionId(3), t3.clone());
        assert_eq!(r.disconnect(&alice), 2);
        assert!(t1.is_cancelled() && t2.is_cancelled() && !t3.is_cancelled());
        drop(a1);
        assert_eq!(r.count(&alice), 1);
        drop(_a2);
        assert_eq!(r.count(&alice), 0);
        assert!(!r.users.contains_key(&alice), "users at zero leave the map");
        assert_eq!(r.disconnect(&UserId::new("nobody").unwrap()), 0);
    }
}
