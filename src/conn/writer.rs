//! The write half of a byte-stream connection: drains the outbox into the
//! socket, many frames per syscall, until closed or killed.
//!
//! Chunks from the outbox are shared (`Bytes` handed to every subscriber), so
//! on writers that support it (TCP) they go out with vectored writes straight
//! from the shared buffers, no copy; otherwise (TLS, QUIC) they are copied
//! into one buffer per wake-up.

use super::outbox::{OutItem, OutboxReceiver};
use crate::metrics::{Transport, METRICS};
use crate::proto::{self, ErrorCode, ServerFrame, WireError};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Stop pulling from the queue while this much is waiting to be written.
const HIGH_WATER: usize = 256 * 1024;
/// Items taken from the queue per wake-up.
const BATCH: usize = 256;
/// Buffers per vectored write.
const MAX_IOV: usize = 64;
/// How long a closing connection may take to flush its last frames.
pub const CLOSE_FLUSH: Duration = Duration::from_secs(5);

/// Whole frames waiting to be written, front first; the front may be partly written.
#[derive(Default)]
struct Pending {
    chunks: VecDeque<Bytes>,
    bytes: usize,
}

impl Pending {
    fn push(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        self.bytes += b.len();
        self.chunks.push_back(b);
    }

    fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    fn advance(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// Writes once (one syscall): vectored where the writer supports it.
    async fn write_once<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        scratch: &mut BytesMut,
    ) -> std::io::Result<usize> {
        let n = if w.is_write_vectored() {
            // The slices are built inside the poll, on the stack: they never become
            // part of the connection's (long-lived) future state.
            let chunks = &self.chunks;
            std::future::poll_fn(|cx| {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let mut n = 0;
                for (slot, c) in slices.iter_mut().zip(chunks.iter()) {
                    *slot = IoSlice::new(c);
                    n += 1;
                }
                std::pin::Pin::new(&mut *w).poll_write_vectored(cx, &slices[..n])
            })
            .await?
        } else if self.chunks.len() == 1 {
            w.write(&self.chunks[0]).await?
        } else {
            // Coalesce into one buffer, then write it as the single front chunk.
            scratch.clear();
            for c in self.chunks.drain(..) {
                scratch.extend_from_slice(&c);
            }
            self.chunks.push_back(scratch.split().freeze());
            w.write(&self.chunks[0]).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        self.advance(n);
        Ok(n)
    }

    async fn write_all<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        scratch: &mut BytesMut,
    ) -> std::io::Result<()> {
        while !self.is_empty() {
            self.write_once(w, scratch).await?;
        }
        Ok(())
    }
}

/// Runs until the outbox is closed (after flushing) or killed. On a slow-consumer
/// kill it finishes the frames already taken from the queue (a partly written
/// frame is completed), appends a closing `slow_consumer` error, and gives the
/// peer `CLOSE_FLUSH` to take them.
pub async fn run<W: AsyncWrite + Unpin>(mut w: W, mut rx: OutboxReceiver, transport: Transport) {
    let bytes_out = &METRICS.bytes_out[transport as usize];
    let kill = rx.kill_token();
    let mut pending = Pending::default();
    let mut scratch = BytesMut::new();
    let mut items: Vec<OutItem> = Vec::new();
    let mut closing = false;
    loop {
        if !closing && pending.bytes < HIGH_WATER {
            if pending.is_empty() {
                tokio::select! {
                    biased;
                    _ = kill.cancelled() => break,
                    n = rx.recv_many(&mut items, BATCH) => {
                        if n == 0 {
                            closing = true;
                        }
                    }
                }
            } else {
                while items.len() < BATCH {
                    match rx.try_recv() {
                        Some(item) => items.push(item),
                        None => break,
                    }
                }
            }
            for item in items.drain(..) {
                match item {
                    OutItem::Frames(b) => {
                        rx.taken(b.len());
                        if !closing {
                            pending.push(b);
                        }
                    }
                    OutItem::Close => closing = true,
                }
            }
            if items.capacity() > BATCH {
                items = Vec::new();
            }
        }
        if pending.is_empty() {
            if closing {
                break;
            }
            continue;
        }
        if closing {
            // Last flush: bounded in time, not interrupted by the kill token.
            let _ =
                tokio::time::timeout(CLOSE_FLUSH, pending.write_all(&mut w, &mut scratch)).await;
            break;
        }
        if rx.is_dead() {
            break;
        }
        // The write first: it is ready at once unless the socket pushes back,
        // and only then is the kill token polled (which takes its lock).
        tokio::select! {
            biased;
            r = pending.write_once(&mut w, &mut scratch) => match r {
                Ok(n) => bytes_out.add(n as u64),
                Err(_) => {
                    rx.kill();
                    return;
                }
            },
            _ = kill.cancelled() => break,
        }
    }
    if rx.is_slow() {
        crate::metrics::error_sent(ErrorCode::SlowConsumer);
        let frame = ServerFrame::closing(WireError::new(
            ErrorCode::SlowConsumer,
            "outbound queue overflowed; reconnect and resume from your last seq",
        ));
        pending.push(proto::encode(&frame));
        let _ = tokio::time::timeout(CLOSE_FLUSH, pending.write_all(&mut w, &mut scratch)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), w.shutdown()).await;
    rx.kill();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_walks_across_chunks() {
        let mut p = Pending::default();
        p.push(Bytes::from_static(b"abc"));
        p.push(Bytes::from_static(b"defg"));
        p.advance(4);
        assert_eq!(p.bytes, 3);
        assert_eq!(&p.chunks[0][..], b"efg");
        p.advance(3);
        assert!(p.is_empty() && p.chunks.is_empty());
    }
}
