//! roomcast: a real-time rooms messaging server.
//!
//! A map of the parts, in the order a message meets them:
//!
//! - [`transport`]: accept loops for TCP, TLS-over-TCP, QUIC and the WebSocket
//!   bridge, each handing a stream of frames to [`conn::serve_frames`];
//!   [`tls`] holds the certificate (configured or self-signed) and rustls configs.
//! - [`proto`]: the v1 wire protocol — length-prefixed MessagePack maps
//!   ([`proto::frame`]), a structural check ([`proto::validate`]), client and
//!   server frame types, and the error code table ([`proto::error`]).
//! - [`session`]: the sans-IO per-connection state machine (hello, deadlines,
//!   validation).
//! - [`conn`]: drives a session over a stream; [`conn::outbox`] is the
//!   byte-bounded outbound queue; [`conn::writer`] batches it into the socket.
//! - [`router`]: sharded room routers — each shard task owns its rooms, assigns
//!   seqs, group-commits to the store and fans each message out as one shared
//!   `Bytes` chunk.
//! - [`store`]: the `MessageStore` seam and its embedded (fjall) implementation.
//! - [`auth`], [`ratelimit`], [`presence`]: JWT checks and the limit/presence seams;
//!   [`tenant`]: tenants, by scoping ids at the boundary.
//! - [`cluster`]: multi-node membership (node leases in Redis, the live
//!   set), rendezvous hashing of rooms to owner nodes, room ownership
//!   epochs fenced by the shared store, the sans-IO room ownership state
//!   machine and the node-to-node link for forwarding (docs/MULTINODE.md).
//! - [`server`]: wiring and graceful shutdown; [`http`]: `/health`;
//!   [`memory`]: freed heap memory back to the OS after bursts;
//!   [`webchat`]: the embedded web chat at `/` (`web/chat/`);
//!   [`http_ops`]: `/metrics` ([`metrics`]) and `/ready`; [`accounts`]: the
//!   optional built-in accounts.
//! - The client SDK (connection, resume, offline queue) is its own crate,
//!   `roomcast-client` in `client/`.

pub mod accounts;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod http;
pub mod http_ops;
pub mod ids;
pub mod memory;
pub mod metrics;
pub mod presence;
pub use roomcast_protocol as proto;
pub mod ratelimit;
pub mod redis;
pub mod router;
pub mod server;
pub mod session;
pub mod store;
pub mod tenant;
pub mod tls;
pub mod transport;
pub mod webchat;
