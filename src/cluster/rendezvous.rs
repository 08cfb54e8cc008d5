//! Rendezvous (highest random weight) hashing: a room's owner is the live
//! node with the highest weight `w(node, room)`. Every node computes the same
//! owner from the same live set with no coordination, and a change of the set
//! moves only the rooms it must: a node that joins takes about `1/n` of the
//! rooms (each from whichever node had it), a node that leaves hands only its
//! own rooms to the others, spread evenly.
//!
//! The weight is a fixed function (FNV-1a 64 over the node id, a separator
//! and the room id, then the murmur3 64-bit finalizer for avalanche), not
//! `std`'s hasher, whose algorithm may change between Rust releases: nodes of
//! two roomcast versions must agree on owners during a rolling upgrade.

use super::node::NodeId;

/// The weight of `room` on `node`.
pub fn weight(node: &NodeId, room: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    for b in node.as_str().bytes() {
        eat(b);
    }
    // 0xff never occurs in a node id (ASCII), so (node, room) pairs never collide by concatenation.
    eat(0xff);
    for b in room.bytes() {
        eat(b);
    }
    fmix64(h)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The owner of `room` among `nodes`: the highest weight, ties (never seen in
/// practice) broken by the larger id. None when `nodes` is empty.
pub fn owner<'a>(room: &str, nodes: impl IntoIterator<Item = &'a NodeId>) -> Option<&'a NodeId> {
    nodes
        .into_iter()
        .max_by(|a, b| (weight(a, room), *a).cmp(&(weight(b, room), *b)))
}

/// `nodes` in order of preference for `room`: the owner first, then the node
/// that takes over if the owner leaves, and so on.
pub fn ranked<'a>(room: &str, nodes: impl IntoIterator<Item = &'a NodeId>) -> Vec<&'a NodeId> {
    let mut v: Vec<&NodeId> = nodes.into_iter().collect();
    v.sort_by(|a, b| (weight(b, room), *b).cmp(&(weight(a, room), *a)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn nodes(n: usize) -> Vec<NodeId> {
        (0..n)
            .map(|i| NodeId::new(&format!("node-{i}")).unwrap())
            .collect()
    }

    fn rooms() -> Vec<String> {
        (0..30_000).map(|i| format!("room-{i}")).collect()
    }

    fn owners(rooms: &[String], nodes: &[NodeId]) -> Vec<NodeId> {
        rooms
            .iter()
            .map(|r| owner(r, nodes).unwrap().clone())
            .collect()
    }

    #[test]
    fn no_nodes_no_owner() {
        assert!(owner("r", &[]).is_none());
    }

    #[test]
    fn the_owner_does_not_depend_on_the_order_of_the_set() {
        let mut ns = nodes(5);
        let a = owners(&rooms()[..500], &ns);
        ns.reverse();
        assert_eq!(a, owners(&rooms()[..500], &ns));
    }

    #[test]
    fn ranked_starts_with_the_owner_and_lists_every_node_once() {
        let ns = nodes(4);
        for r in &rooms()[..200] {
            let rk = ranked(r, &ns);
            assert_eq!(rk[0], owner(r, &ns).unwrap());
            assert_eq!(rk.len(), 4);
            let mut ids: Vec<_> = rk.iter().map(|n| n.as_str()).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), 4);
        }
    }

    #[test]
    fn rooms_spread_evenly_over_the_nodes() {
        let rooms = rooms();
        for n in [2usize, 3, 5, 10] {
            let ns = nodes(n);
            let mut count: HashMap<NodeId, usize> = HashMap::new();
            for o in owners(&rooms, &ns) {
                *count.entry(o).or_default() += 1;
            }
            let mean = rooms.len() as f64 / n as f64;
            assert_eq!(count.len(), n);
            for (node, c) in count {
                let off = (c as f64 - mean).abs() / mean;
                // 30,000 rooms: the binomial spread is ~1-2%; 6% is far outside it.
                assert!(off < 0.06, "{n} nodes: {node} has {c} rooms, mean {mean}");
            }
        }
    }

    #[test]
    fn a_joining_node_takes_only_its_share_and_only_for_itself() {
        let rooms = rooms();
        let before = owners(&rooms, &nodes(3));
        let after = owners(&rooms, &nodes(4));
        let newcomer = NodeId::new("node-3").unwrap();
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if a != b {
                assert_eq!(a, &newcomer, "a room moved between two old nodes");
                moved += 1;
            }
        }
        let share = moved as f64 / rooms.len() as f64;
        assert!((0.22..0.28).contains(&share), "moved {share}");
    }

    #[test]
    fn a_leaving_node_hands_over_only_its_own_rooms() {
        let rooms = rooms();
        let all = nodes(4);
        let before = owners(&rooms, &all);
        let gone = all[1].clone();
        let rest: Vec<NodeId> = all.iter().filter(|n| **n != gone).cloned().collect();
        let after = owners(&rooms, &rest);
        let mut taken: HashMap<NodeId, usize> = HashMap::new();
        for (b, a) in before.iter().zip(&after) {
            if b == &gone {
                assert_ne!(a, &gone);
                *taken.entry(a.clone()).or_default() += 1;
            } else {
                assert_eq!(a, b, "a room of a staying node moved");
            }
        }
        // The orphans spread over the three others.
        assert_eq!(taken.len(), 3);
        let total: usize = taken.values().sum();
        for c in taken.values() {
            let off = (*c as f64 - total as f64 / 3.0).abs() / (total as f64 / 3.0);
            assert!(off < 0.1, "{taken:?}");
        }
    }

    #[test]
    fn the_weight_is_a_fixed_function() {
        // Pinned: every roomcast version must compute the same owners.
        let n = NodeId::new("node-0").unwrap();
        assert_eq!(weight(&n, "general"), weight(&n, "general"));
        assert_ne!(weight(&n, "general"), weight(&n, "general2"));
        assert_eq!(weight(&n, "general"), PINNED);
    }

    // FNV-1a 64 of "node-0" 0xff "general", then fmix64 (checked independently in Python).
    const PINNED: u64 = 11_476_571_171_026_982_182;
}
