//! roomcast-protocol: the v1 wire protocol, shared by the server and the
//! client SDK — framing, the structural check, client and server frame types,
//! ids, and the error code table. `proto-spec/` documents exactly this, and
//! the vectors in `proto-spec/vectors.json` are checked against this crate.

pub mod client;
pub mod error;
pub mod frame;
pub mod ids;
pub mod server;
pub mod text;
pub mod types;
pub mod validate;

pub use client::{ClientFrame, DecodeError};
pub use error::{ErrorCode, WireError};
pub use frame::{encode, encode_into, FrameCodec, FrameError, DEFAULT_MAX_FRAME, HEADER_LEN};
pub use server::ServerFrame;

/// The protocol version this server speaks (`hello.v`).
pub const PROTOCOL_VERSION: u32 = 1;
