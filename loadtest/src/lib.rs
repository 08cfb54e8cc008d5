//! roomcast-load: a load generator for roomcast that is a product in its own right.
//!
//! A map of the parts:
//!
//! - [`opts`]: command-line options, also the library API's parameters.
//! - [`transport`]: how to reach the server (TCP, TLS with a pinned certificate, QUIC,
//!   WebSocket, all seen as the v1 byte framing) and the loopback source-address
//!   cycling that allows more than 64k connections.
//! - [`conn`]: one simulated client's connection: read buffer, frames scanned in place.
//! - [`wire`]: v1 frames encoded straight into the write buffer, and a zero-copy
//!   scanner for server frames (no deserialization into owned structs).
//! - [`stats`]: shared counters, per-task counters flushed per read batch, seq tracking.
//! - [`scenario`]: `fanout`, `bigroom`, `latency`, `idle` ([`scenario::rooms`]),
//!   `connect-storm` ([`scenario::storm`]), `reconnect-storm` ([`scenario::reconnect`]),
//!   `mixed` ([`scenario::mixed`]).
//! - [`report`]: the human summary and the JSON report; [`progress`]: the live line.
//! - [`tokens`], [`procfs`], [`clock`]: JWTs, server RSS/CPU from /proc, the shared clock.

pub mod clock;
pub mod conn;
pub mod opts;
pub mod procfs;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod tokens;
pub mod transport;
pub mod wire;

pub use opts::{Common, MixedArgs, ReconnectArgs, RoomsArgs, StormArgs};
pub use report::Report;
