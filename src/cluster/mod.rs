//! Multi-node foundation (issue 13): which nodes are alive, and which node
//! owns a room. docs/MULTINODE.md ("One owner per room") has the design; this
//! module holds the parts that are built, one concern per file:
//!
//! - [`node`]: a node's identity (id, incarnation, addresses) and the lease
//!   settings (`--node-id`, `--node-lease-ms`, `--node-renew-ms`).
//! - [`membership`]: the sans-IO live set: leases renewed and expiring by the
//!   time passed in, whether this node holds its own lease, joins and leaves.
//! - [`registry`]: the thin Redis driver of [`membership`]: registers this
//!   node with a lease (`redis/lua/node_lease.lua`), renews it on a timer,
//!   publishes the live set on a watch channel, deregisters at shutdown.
//! - [`rendezvous`]: rendezvous (highest random weight) hashing of a room over
//!   the live set: the room's owner node.
//! - [`fence`]: room ownership epochs in the shared store (ScyllaDB
//!   lightweight transactions on `room_owner`): acquiring a room bumps its
//!   epoch, and a commit under an older epoch is refused.
//! - [`ownership`]: the sans-IO state machine of one room's ownership on
//!   this node (unowned, acquiring, owned, draining, released, fenced): when
//!   to call [`fence`], when to acknowledge, where to send requests.
//! - [`link`]: a direct node-to-node link (framed TCP, correlation ids,
//!   deadlines, a bounded queue, reconnect with backoff) for forwarding
//!   requests to a room's owner; built and measured, not started by the
//!   server yet.
//!
//! Not built yet (planned in docs/MULTINODE.md): the shards driving
//! [`ownership`] and [`fence`] (serving rooms by owner) and forwarding
//! non-owner requests over [`link`].

pub mod fence;
pub mod link;
pub mod membership;
pub mod node;
pub mod ownership;
pub mod registry;
pub mod rendezvous;

pub use membership::{LiveSet, Membership};
pub use node::{NodeId, NodeInfo, NodeSettings};
pub use registry::Registry;
