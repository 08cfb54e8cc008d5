//! The write half of a connection: drains the outbox into the socket, many
//! frames per syscall, until closed or killed.

use super::outbox::{OutItem, OutboxReceiver};
use crate::proto::{self, ErrorCode, ServerFrame, WireError};
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Stop pulling from the queue while this much is waiting to be written.
const HIGH_WATER: usize = 256 * 1024;
/// Items taken from the queue per wake-up.
const BATCH: usize = 256;
/// How long a closing connection may take to flush its last frames.
pub const CLOSE_FLUSH: Duration = Duration::from_secs(5);

/// Runs until the outbox is closed (after flushing) or killed. On a slow-consumer
/// kill it finishes the frames already in its buffer, appends a closing
/// `slow_consumer` error, and gives the peer `CLOSE_FLUSH` to take them.
pub async fn run<W: AsyncWrite + Unpin>(mut w: W, mut rx: OutboxReceiver) {
    let kill = rx.kill_token();
    let mut buf = BytesMut::new();
    let mut items: Vec<OutItem> = Vec::with_capacity(BATCH);
    let mut closing = false;
    loop {
        if !closing && buf.len() < HIGH_WATER {
            if buf.is_empty() {
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
                    OutItem::Frames(b) if !closing => {
                        rx.taken(b.len());
                        buf.extend_from_slice(&b);
                    }
                    OutItem::Frames(b) => rx.taken(b.len()),
                    OutItem::Close => closing = true,
                }
            }
        }
        if buf.is_empty() {
            if closing {
                break;
            }
            if buf.capacity() > HIGH_WATER {
                buf = BytesMut::new();
            }
            continue;
        }
        if closing {
            // Last flush: bounded in time, not interrupted by the kill token.
            let _ = tokio::time::timeout(CLOSE_FLUSH, w.write_all_buf(&mut buf)).await;
            break;
        }
        tokio::select! {
            biased;
            _ = kill.cancelled() => break,
            r = w.write_buf(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    kill.cancel();
                    return;
                }
                Ok(_) => {}
            }
        }
    }
    if rx.is_slow() {
        let frame = ServerFrame::closing(WireError::new(
            ErrorCode::SlowConsumer,
            "outbound queue overflowed; reconnect and resume from your last seq",
        ));
        proto::encode_into(&mut buf, &frame);
        let _ = tokio::time::timeout(CLOSE_FLUSH, w.write_all_buf(&mut buf)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), w.shutdown()).await;
    kill.cancel();
}
