//! Transport drivers: accept connections and hand frame streams to
//! [`crate::conn`]. Plain TCP and TLS ([`tcp`], [`tls`]) and QUIC ([`quic`])
//! carry the length-prefixed byte framing; the WebSocket bridge ([`ws`]) maps
//! one binary message to one frame. docs/TRANSPORTS.md describes each.
//! [`http`] is the HTTP listener's connection loop (caps and timeouts).

pub mod http;
pub mod quic;
pub mod tcp;
pub mod tls;
pub mod ws;
pub mod ws_opcodes;
