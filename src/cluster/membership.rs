//! The sans-IO core of node membership: the live set and this node's own
//! lease, driven by the outcomes of renewals and by the time passed in.
//!
//! A renewal sent at `sent_at` that succeeds means Redis set this node's
//! lease to expire `lease` after it ran the script, which is no earlier than
//! `sent_at`; so this node counts its own lease as held until
//! `sent_at + lease`, never longer than Redis does. The other nodes' leases
//! come back with the renewal as "remaining in Redis's clock"; each is
//! counted from `sent_at` too. Only differences of time are used, so the
//! nodes' wall clocks never matter; only Redis's clock and each node's
//! monotonic clock do (their drift over a lease, microseconds, is ignored).
//!
//! The live set is advisory (which node should own a room); the safety of
//! ownership never rests on it: that is the epoch fence ([`super::fence`]).

use super::node::{NodeId, NodeInfo, NodeSettings};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Most nodes the live set holds: registrations are made by operators'
/// nodes, not clients, but a bound keeps a runaway deployment from growing
/// every node's memory without end.
pub const MAX_NODES: usize = 1024;

/// One node's lease as a renewal reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub info: NodeInfo,
    /// Lease time left, in Redis's clock, when the renewal ran.
    pub remaining: Duration,
}

/// What a renewal answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// This node's lease is renewed; the live nodes, this one included.
    Renewed(Vec<Lease>),
    /// A newer incarnation of this node id holds the registration (another
    /// process started with the same `--node-id`): this one must stop
    /// claiming to be alive.
    Superseded { incarnation: u64 },
}

/// The nodes alive at some instant, sorted by id (this node included while
/// it holds its lease).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveSet {
    pub nodes: Vec<NodeInfo>,
}

impl LiveSet {
    pub fn ids(&self) -> impl Iterator<Item = &NodeId> {
        self.nodes.iter().map(|n| &n.id)
    }

    pub fn contains(&self, id: &NodeId) -> bool {
        self.nodes.iter().any(|n| &n.id == id)
    }
}

/// Nodes that joined or left the live set since the previous look.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub joined: Vec<NodeId>,
    pub left: Vec<NodeId>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty() && self.left.is_empty()
    }
}

#[derive(Clone, Debug)]
struct Entry {
    info: NodeInfo,
    until: Instant,
}

/// The state machine: feed it renewal outcomes and the time; read the live set.
#[derive(Debug)]
pub struct Membership {
    me: NodeInfo,
    settings: NodeSettings,
    /// Until when this node's own lease is held (None: not held yet, or lost).
    own_until: Option<Instant>,
    superseded: bool,
    /// Other nodes, by id.
    others: BTreeMap<NodeId, Entry>,
    /// The ids in the live set at the previous [`Membership::changes`].
    last_seen: Vec<NodeId>,
    consecutive_failures: u32,
}

impl Membership {
    pub fn new(me: NodeInfo, settings: NodeSettings) -> Membership {
        Membership {
            me,
            settings,
            own_until: None,
            superseded: false,
            others: BTreeMap::new(),
            last_seen: Vec::new(),
            consecutive_failures: 0,
        }
    }

    pub fn me(&self) -> &NodeInfo {
        &self.me
    }

    pub fn settings(&self) -> NodeSettings {
        self.settings
    }

    /// The outcome of a renewal sent at `sent_at`.
    pub fn on_renewal(&mut self, sent_at: Instant, renewal: Renewal) {
        match renewal {
            Renewal::Superseded { .. } => {
                self.superseded = true;
                self.own_until = None;
            }
            Renewal::Renewed(leases) => {
                if self.superseded {
                    // A stale reply racing the one that superseded us.
                    return;
                }
                self.consecutive_failures = 0;
                // Never moves backwards: a late reply of an older renewal
                // (sent earlier) would only shorten the lease.
                let until = sent_at + self.settings.lease;
                self.own_until = Some(self.own_until.map_or(until, |u| u.max(until)));
                self.others.clear();
                for lease in leases {
                    if lease.info.id == self.me.id || self.others.len() >= MAX_NODES {
                        continue;
                    }
                    self.others.insert(
                        lease.info.id.clone(),
                        Entry {
                            until: sent_at + lease.remaining,
                            info: lease.info,
                        },
                    );
                }
            }
        }
    }

    /// A renewal failed (Redis unreachable, timed out, refused). The lease
    /// runs out on its own at its deadline unless a later renewal succeeds.
    pub fn on_renewal_failed(&mut self) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Whether another incarnation of this node id took over.
    pub fn is_superseded(&self) -> bool {
        self.superseded
    }

    /// Whether this node holds its lease at `now`: the others count it alive,
    /// and it may serve as a cluster member (`/ready`).
    pub fn holds_lease(&self, now: Instant) -> bool {
        !self.superseded && self.own_until.is_some_and(|u| now < u)
    }

    /// How long this node's lease still runs at `now` (zero when not held).
    pub fn lease_left(&self, now: Instant) -> Duration {
        match self.own_until {
            Some(u) if !self.superseded => u.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// The live set at `now`: other nodes whose lease has not run out, and
    /// this node while it holds its own.
    pub fn live(&self, now: Instant) -> LiveSet {
        let mut nodes: Vec<NodeInfo> = self
            .others
            .values()
            .filter(|e| now < e.until)
            .map(|e| e.info.clone())
            .collect();
        if self.holds_lease(now) {
            nodes.push(self.me.clone());
        }
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        LiveSet { nodes }
    }

    /// What joined and left the live set since the previous call.
    pub fn changes(&mut self, now: Instant) -> Changes {
        let ids: Vec<NodeId> = self.live(now).ids().cloned().collect();
        let joined = ids
            .iter()
            .filter(|i| !self.last_seen.contains(i))
            .cloned()
            .collect();
        let left = self
            .last_seen
            .iter()
            .filter(|i| !ids.contains(i))
            .cloned()
            .collect();
        self.last_seen = ids;
        Changes { joined, left }
    }

    /// When the next renewal is due, given when the previous one was sent.
    /// After failures, retries come sooner (a quarter of the period), while
    /// the lease still has time left.
    pub fn next_renewal(&self, last_sent: Instant) -> Instant {
        if self.consecutive_failures > 0 {
            last_sent + (self.settings.renew / 4).max(Duration::from_millis(50))
        } else {
            last_sent + self.settings.renew
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> NodeInfo {
        NodeInfo {
            id: NodeId::new(id).unwrap(),
            incarnation: 1,
            tcp: "127.0.0.1:1".into(),
            http: "127.0.0.1:2".into(),
            quic: "127.0.0.1:3".into(),
            version: "test".into(),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn settings() -> NodeSettings {
        NodeSettings {
            lease: ms(9000),
            renew: ms(3000),
        }
    }

    fn lease(id: &str, left: u64) -> Lease {
        Lease {
            info: info(id),
            remaining: ms(left),
        }
    }

    #[test]
    fn no_lease_until_the_first_renewal() {
        let t0 = Instant::now();
        let m = Membership::new(info("a"), settings());
        assert!(!m.holds_lease(t0));
        assert!(m.live(t0).nodes.is_empty());
    }

    #[test]
    fn own_lease_runs_from_when_the_renewal_was_sent() {
        let t0 = Instant::now();
        let mut m = Membership::new(info("a"), settings());
        // The reply arrives 2 s after sending: the lease still counts from t0.
        m.on_renewal(t0, Renewal::Renewed(vec![lease("a", 9000)]));
        assert!(m.holds_lease(t0 + ms(8999)));
        assert!(!m.holds_lease(t0 + ms(9000)));
        assert_eq!(m.lease_left(t0 + ms(2000)), ms(7000));
    }

    #[test]
    fn failed_renewals_let_the_lease_run_out() {
        let t0 = Instant::now();
        let mut m = Membership::new(info("a"), settings());
        m.on_renewal(t0, Renewal::Renewed(vec![]));
        m.on_renewal_failed();
        m.on_renewal_failed();
        assert_eq!(m.consecutive_failures(), 2);
        assert!(m.holds_lease(t0 + ms(8000)));
        assert!(!m.holds_lease(t0 + ms(9001)));
        // Retries come sooner while failing.
        assert_eq!(m.next_renewal(t0), t0 + ms(750));
        m.on_renewal(t0 + ms(9500), Renewal::Renewed(vec![]));
        assert!(m.holds_lease(t0 + ms(9600)));
        assert_eq!(m.consecutive_failures(), 0);
        assert_eq!(m.next_renewal(t0), t0 + ms(3000));
    }

    #[test]
    fn a_late_reply_never_shortens_the_lease() {
        let t0 = Instant::now();
        let mut m = Membership::new(info("a"), settings());
        m.on_renewal(t0 + ms(3000), Renewal::Renewed(vec![]));
        m.on_renewal(t0, Renewal::Renewed(vec![]));
        assert!(m.holds_lease(t0 + ms(11_000)));
    }

    #[test]
    fn other_nodes_expire_by_their_remaining_lease() {
        let t0 = Instant::now();
        let mut m = Membership::new(info("b"), settings());
        m.on_renewal(
            t0,
            Renewal::Renewed(vec![lease("a", 1000), lease("b", 9000), lease("c", 5000)]),
        );
        let ids = |s: LiveSet| s.ids().map(|i| i.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(m.live(t0)), ["a", "b", "c"]);
        assert_eq!(ids(m.live(t0 + ms(1000))), ["b", "c"]);
        assert_eq!(ids(m.live(t0 + ms(5000))), ["b"]);
        assert!(ids(m.live(t0 + ms(9000))).is_empty());
    }

    #[test]
    fn changes_report_joins_and_leaves_once() {
        let t0 = Instant::now();
        let mut m = Membership::new(info("b"), settings());
        m.on_renewal(t0, Renewal::Renewed(vec![lease("a", 1000)]));
        let c = m.changes(t0);
        assert_eq!(c.joined.len(), 2);
        assert!(m.changes(t0).is_empty());
        let c = m.changes(t0 + ms(1500));
        assert_eq!(c.left, [NodeId::new("a").unwrap()]);
        assert!(c.joined.is_empty());
        // A renewal that no longer lists c: c left; d joined.
        m.on_renewal(t0 + ms(2000), Renewal::Renewed(vec![lease("d", 9000)]));
        let c = m.changes(t0 + ms(2000));
        assert_eq!(c.joined, [NodeId::new("d").unwrap()]);
    }

    #[test]
    fn superseded_is_final() {
        let t0 = Instant::now();
        let mut m = Membership::new(info("a"), settings());
        m.on_renewal(t0, Renewal::Renewed(vec![]));
        m.on_renewal(t0, Renewal::Superseded { incarnation: 7 });
        assert!(m.is_superseded());
        assert!(!m.holds_lease(t0));
        m.on_renewal(t0 + ms(1), Renewal::Renewed(vec![]));
        assert!(!m.holds_lease(t0 + ms(2)));
        assert_eq!(m.lease_left(t0), Duration::ZERO);
    }

    #[test]
    fn the_live_set_is_bounded() {
        let t0 = Instant::now();
        let mut m = Membership::new(info("me"), settings());
        let many = (0..MAX_NODES + 10)
            .map(|i| lease(&format!("n{i}"), 9000))
            .collect();
        m.on_renewal(t0, Renewal::Renewed(many));
        assert_eq!(m.live(t0).nodes.len(), MAX_NODES + 1);
    }
}
