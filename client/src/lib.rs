//! roomcast-client: the Rust SDK for roomcast.
//!
//! A map of the parts, from the wire up:
//!
//! - [`tls`]: certificate trust: a SHA-256 pin or CA roots.
//! - [`dial`]: [`Endpoint`] (TCP, TLS, QUIC, WebSocket) and opening one transport.
//! - [`conn`]: [`Connection`], one connection: `hello`, requests matched to
//!   replies by id, the push stream. No reconnection (tests and tools use it raw).
//! - [`Client`] (`client.rs`): the typed API apps use, over a connection that
//!   comes back by itself; `driver.rs` is the task behind it (reconnect with
//!   [`Backoff`], re-authenticate, re-join with `since`, heartbeat, events).
//! - `rooms.rs`: per-room last seq, de-duplication, resume progress (sans-IO).
//! - `queue.rs`: the offline queue of sends with their `local_id`s, and its file.
//! - [`Event`], [`Error`], [`ClientConfig`].
//!
//! Guarantees (see README.md): each stream event (`msg`, `edit`, `delete`,
//! `reaction`) of a followed room reaches the app exactly once, in seq
//! order, across reconnects, server restarts and slow-consumer disconnects;
//! every send is stored exactly once, however often it is retried.
//!
//! ```no_run
//! # async fn demo() -> Result<(), roomcast_client::Error> {
//! use roomcast_client::{Client, ClientConfig, Endpoint, Event};
//! let config = ClientConfig::new(Endpoint::Tcp("127.0.0.1:7400".parse().unwrap()), "JWT");
//! let (client, mut events) = Client::connect(config).await?;
//! let room = client.create_room("General", false).await?.room;
//! client.join(&room).await?;
//! let sent = client.send(&room, "hello").await?;
//! while let Some(ev) = events.next().await {
//!     if let Event::Message(m) = ev {
//!         println!("#{} {}: {}", m.seq, m.from, m.body);
//!     }
//! }
//! # Ok(()) }
//! ```

mod backoff;
mod client;
mod config;
pub mod conn;
pub mod dial;
mod driver;
mod error;
mod event;
mod queue;
mod rooms;
pub mod tls;

pub use backoff::Backoff;
pub use client::{Client, Events, OutgoingMessage, PendingSend};
pub use config::{ClientConfig, TokenProvider};
pub use conn::{ConnError, ConnOptions, Connection, Pushes};
pub use dial::Endpoint;
pub use error::Error;
pub use event::Event;
pub use queue::QueuedSend;
pub use roomcast_protocol as proto;
pub use tls::{parse_pin, Trust};
