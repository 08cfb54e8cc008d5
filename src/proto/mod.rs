//! The v1 wire protocol: framing, the structural check, client and server
//! frame types, and the error code table. `proto-spec/` documents exactly this.

pub mod client;
pub mod error;
pub mod frame;
pub mod server;
pub mod types;
pub mod validate;

pub use client::{ClientFrame, DecodeError};
pub use error::{ErrorCode, WireError};
pub use frame::{encode, encode_into, FrameCodec, FrameError, DEFAULT_MAX_FRAME, HEADER_LEN};
pub use server::ServerFrame;

/// The protocol version this server speaks (`hello.v`).
pub const PROTOCOL_VERSION: u32 = 1;
