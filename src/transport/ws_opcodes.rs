//! Reserved WebSocket opcodes close with 1002, as RFC 6455 §5.2 and §7.4.1
//! require ("the endpoint MUST _Fail the WebSocket Connection_"; 1002 is
//! "protocol error").
//!
//! yawc 0.5 refuses a reserved opcode (0x3-0x7, 0xB-0xF) but answers it with
//! its own Close 1003 ("unsupported data"), queued before the bridge can send
//! anything, while reserved RSV bits get 1002. [`ReservedOpcodes`] sits
//! between the upgraded byte stream and yawc and follows the frame headers as
//! they are read (it never buffers or delays a byte); the first byte of a frame
//! with a reserved opcode gets RSV2 set, so yawc refuses that frame the way it
//! refuses reserved bits: `ReservedBitsNotZero`, Close 1002. Nothing after
//! that frame is inspected (yawc reads no further). Drop this adapter when
//! yawc maps `InvalidOpCode` to 1002 itself (its `Streaming::poll_next_frame_with_limit`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// RSV2 in the first header byte (RFC 6455 §5.2).
const RSV2: u8 = 0x20;

/// Where the reader is in the inbound frame sequence.
#[derive(Debug, Clone, Copy)]
enum Scan {
    /// `have` bytes of a frame header (2 to 14 bytes) seen so far.
    Header { head: [u8; 14], have: usize },
    /// Payload bytes of the current frame still to pass.
    Payload { left: u64 },
    /// A reserved opcode was marked: yawc fails the connection there.
    Done,
}

/// A byte stream whose inbound frames with reserved opcodes are marked so
/// that yawc closes with 1002 (see the module docs). Writes pass through.
pub struct ReservedOpcodes<S> {
    io: S,
    scan: Scan,
}

impl<S> ReservedOpcodes<S> {
    pub fn new(io: S) -> Self {
        ReservedOpcodes {
            io,
            scan: Scan::Header {
                head: [0; 14],
                have: 0,
            },
        }
    }

    /// Follows the frame headers through `bytes` (just read, in order),
    /// marking the first frame that has a reserved opcode.
    fn scan(&mut self, bytes: &mut [u8]) {
        let mut i = 0;
        while i < bytes.len() {
            match &mut self.scan {
                Scan::Done => return,
                Scan::Payload { left } => {
                    let n = (bytes.len() - i).min(usize::try_from(*left).unwrap_or(usize::MAX));
                    i += n;
                    *left -= n as u64;
                    if *left == 0 {
                        self.scan = Scan::Header {
                            head: [0; 14],
                            have: 0,
                        };
                    }
                }
                Scan::Header { head, have } => {
                    if *have == 0 && is_reserved(bytes[i] & 0x0f) {
                        bytes[i] |= RSV2;
                        self.scan = Scan::Done;
                        return;
                    }
                    head[*have] = bytes[i];
                    *have += 1;
                    i += 1;
                    if let Some(left) = payload_len(&head[..*have]) {
                        self.scan = if left == 0 {
                            Scan::Header {
                                head: [0; 14],
                                have: 0,
                            }
                        } else {
                            Scan::Payload { left }
                        };
                    }
                }
            }
        }
    }
}

/// 0x3-0x7 (data) and 0xB-0xF (control) are reserved (RFC 6455 §5.2).
fn is_reserved(opcode: u8) -> bool {
    matches!(opcode, 0x3..=0x7 | 0xB..=0xF)
}

/// The payload length once `head` holds the whole header, `None` before.
fn payload_len(head: &[u8]) -> Option<u64> {
    let b1 = *head.get(1)?;
    let extra = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    if head.len() < 2 + extra + mask {
        return None;
    }
    Some(match extra {
        0 => u64::from(b1 & 0x7f),
        2 => u64::from(u16::from_be_bytes([head[2], head[3]])),
        _ => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&head[2..10]);
            u64::from_be_bytes(b)
        }
    })
}

impl<S: AsyncRead + Unpin> AsyncRead for ReservedOpcodes<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.scan(&mut buf.filled_mut()[before..]);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReservedOpcodes<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(b0: u8, len: usize) -> Vec<u8> {
        let mut f = vec![b0];
        match len {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend((n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend((n as u64).to_be_bytes());
            }
        }
        f.extend([1, 2, 3, 4]);
        f.extend(std::iter::repeat_n(0xAAu8, len));
        f
    }

    /// Scans `stream` in pieces of `chunk` bytes, as reads would deliver it.
    fn scanned(stream: &[u8], chunk: usize) -> Vec<u8> {
        let mut g = ReservedOpcodes::new(());
        let mut out = stream.to_vec();
        for piece in out.chunks_mut(chunk) {
            g.scan(piece);
        }
        out
    }

    #[test]
    fn only_the_first_byte_of_a_reserved_frame_changes() {
        for chunk in [1, 2, 3, 7, 1000, 100_000] {
            // Payloads that look like reserved opcodes are not headers.
            let mut s = frame(0x82, 5);
            s.extend(frame(0x89, 0));
            s.extend(frame(0x02, 300)); // unfinished message...
            s.extend(frame(0x80, 70_000)); // ...continued with a 64-bit length
            let at = s.len();
            s.extend(frame(0x83, 2));
            s.extend(frame(0x82, 1));
            let out = scanned(&s, chunk);
            assert_eq!(out[at], 0x83 | RSV2, "chunk {chunk}");
            let mut expected = s.clone();
            expected[at] |= RSV2;
            assert_eq!(out, expected, "chunk {chunk}");
        }
    }

    #[test]
    fn every_reserved_opcode_is_marked_and_no_other() {
        for op in 0u8..16 {
            let out = scanned(&frame(0x80 | op, 3), 1);
            assert_eq!(out[0] & RSV2 != 0, is_reserved(op), "opcode {op:#x}");
        }
    }
}
