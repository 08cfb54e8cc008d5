//! Length-prefixed framing: a 4-byte big-endian payload length, then the payload.
//!
//! The decoder rejects an oversize frame from its header alone, before any of
//! the body is buffered ("need more bytes" is `Ok(None)`, not an error), and
//! only advances the buffer after a whole frame is there, so a cancelled read
//! loses nothing.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;
use tokio_util::codec::Decoder;

/// Bytes in the length header.
pub const HEADER_LEN: usize = 4;
/// Default largest accepted payload (1 MiB).
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The header declared a payload above the configured `max_frame`.
    #[error("frame of {len} bytes exceeds max_frame {max}")]
    TooLarge { len: usize, max: usize },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Splits a byte stream into frame payloads (without their headers).
#[derive(Clone, Debug)]
pub struct FrameCodec {
    max_frame: usize,
}

impl FrameCodec {
    pub fn new(max_frame: usize) -> Self {
        Self { max_frame }
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        let total = HEADER_LEN + len;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        Ok(Some(src.split_to(len).freeze()))
    }
}

/// Encodes `msg` as a MessagePack map (string keys) behind a length header,
/// appending to `buf`. This is the only encoder the server uses, so every
/// frame it sends is produced the same way, with every id in its public form
/// ([`crate::ids::public_ids`]: a server's tenants never show).
pub fn encode_into<T: Serialize + ?Sized>(buf: &mut BytesMut, msg: &T) {
    let start = buf.len();
    buf.put_u32(0);
    let mut ser = rmp_serde::Serializer::new(buf.writer()).with_struct_map();
    // Encoding our own serde types into memory cannot fail: every type is a
    // map of strings, integers, booleans and nested maps/arrays of those.
    if crate::ids::public_ids(|| msg.serialize(&mut ser)).is_err() {
        buf.truncate(start);
        return;
    }
    let len = (buf.len() - start - HEADER_LEN) as u32;
    buf[start..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
}

/// Encodes one frame into its own `Bytes` (header included).
pub fn encode<T: Serialize + ?Sized>(msg: &T) -> Bytes {
    let mut buf = BytesMut::with_capacity(256);
    encode_into(&mut buf, msg);
    buf.freeze()
}

/// Iterates over the payloads of a buffer holding whole frames back to back
/// (as the server's outbound chunks do). Used by message-oriented transports
/// (WebSocket) and by tests.
pub fn split_frames(mut chunk: Bytes) -> impl Iterator<Item = Bytes> {
    std::iter::from_fn(move || {
        if chunk.len() < HEADER_LEN {
            return None;
        }
        let len = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) as usize;
        if chunk.len() < HEADER_LEN + len {
            return None;
        }
        chunk.advance(HEADER_LEN);
        Some(chunk.split_to(len))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_more_bytes_is_not_an_error() {
        let mut codec = FrameCodec::new(16);
        let mut buf = BytesMut::from(&[0u8, 0, 0][..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.put_u8(3);
        buf.put_slice(b"ab");
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(buf.len(), 6, "nothing consumed before the frame is whole");
        buf.put_slice(b"c\x00");
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"abc");
        assert_eq!(&buf[..], b"\x00");
    }

    #[test]
    fn oversize_is_rejected_from_the_header() {
        let mut codec = FrameCodec::new(16);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 17][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::TooLarge { len: 17, max: 16 })
        ));
    }

    #[test]
    fn split_frames_walks_concatenated_frames() {
        #[derive(Serialize)]
        struct P {
            t: &'static str,
        }
        let mut buf = BytesMut::new();
        encode_into(&mut buf, &P { t: "a" });
        encode_into(&mut buf, &P { t: "bb" });
        let frames: Vec<_> = split_frames(buf.freeze()).collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(&frames[0][..], b"\x81\xa1t\xa1a");
    }
}
