//! A node's identity in the cluster and its lease settings.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A node's id: `--node-id`, or random hex per process when unset. Letters,
/// digits, `-`, `_` and `.`, 1 to 64 of them (it is part of Redis keys and
/// of the `room_owner` rows).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    pub const MAX_LEN: usize = 64;

    pub fn new(s: &str) -> Result<NodeId, String> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(NodeId(s.to_string()))
        } else {
            Err(format!(
                "node id {s:?}: 1 to {} letters, digits, '-', '_' or '.'",
                Self::MAX_LEN
            ))
        }
    }

    /// A fresh random id (16 hex digits).
    pub fn random() -> NodeId {
        NodeId(format!("{:016x}", rand::random::<u64>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for NodeId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        NodeId::new(&s)
    }
}

impl From<NodeId> for String {
    fn from(n: NodeId) -> String {
        n.0
    }
}

/// What a node tells the others about itself, stored with its lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    /// This process's start (ms since the Unix epoch): a node restarted with
    /// the same `--node-id` is a new incarnation, and the old one's lease is
    /// not mistaken for its own.
    pub incarnation: u64,
    /// Listener addresses as configured (`host:port`), for peers and operators.
    pub tcp: String,
    pub http: String,
    pub quic: String,
    pub version: String,
}

/// Lease settings (`--node-lease-ms`, `--node-renew-ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSettings {
    /// How long a registration lives without renewal: a node that stops
    /// renewing (killed, cut off) leaves the live set this long after its
    /// last successful renewal.
    pub lease: Duration,
    /// How often the lease is renewed.
    pub renew: Duration,
}

impl NodeSettings {
    /// Checks that a renewal can fail once and still be retried in time: the
    /// renewal period is at most a third of the lease, and the lease at least
    /// 300 ms.
    pub fn check(&self) -> Result<(), String> {
        if self.lease < Duration::from_millis(300) {
            return Err("node_lease_ms must be at least 300".into());
        }
        if self.renew.is_zero() || self.renew.saturating_mul(3) > self.lease {
            return Err(
                "node_renew_ms must be positive and at most a third of node_lease_ms".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids() {
        assert!(NodeId::new("node-1.eu_west").is_ok());
        assert!(NodeId::new("").is_err());
        assert!(NodeId::new("a b").is_err());
        assert!(NodeId::new("a:b").is_err());
        assert!(NodeId::new(&"x".repeat(65)).is_err());
        assert_eq!(NodeId::random().as_str().len(), 16);
    }

    #[test]
    fn settings_need_room_for_a_failed_renewal() {
        let ms = Duration::from_millis;
        let ok = NodeSettings {
            lease: ms(9000),
            renew: ms(3000),
        };
        assert!(ok.check().is_ok());
        assert!(NodeSettings {
            lease: ms(9000),
            renew: ms(3001)
        }
        .check()
        .is_err());
        assert!(NodeSettings {
            lease: ms(9000),
            renew: ms(0)
        }
        .check()
        .is_err());
        assert!(NodeSettings {
            lease: ms(200),
            renew: ms(50)
        }
        .check()
        .is_err());
    }
}
