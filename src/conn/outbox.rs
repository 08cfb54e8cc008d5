//! A connection's outbound queue, bounded in bytes.
//!
//! Routers push already-encoded frames (`Bytes`, shared by every subscriber)
//! without ever waiting: a push that would take the queue past its bound marks
//! the connection slow and kills it instead, so one slow client never slows a
//! room. The writer side drains the queue and accounts the bytes back.

use crate::ids::SessionId;
use crate::proto::{self, ServerFrame};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub enum OutItem {
    /// One or more whole frames (length header included), back to back.
    Frames(Bytes),
    /// Flush what is queued, then close the connection.
    Close,
}

struct Inner {
    session: SessionId,
    tx: mpsc::UnboundedSender<OutItem>,
    queued: AtomicUsize,
    limit: usize,
    slow: AtomicBool,
    /// Set with `kill`: checked on every push without touching the token's lock.
    dead: AtomicBool,
    /// Cancelled when the connection is dying (slow consumer, write error, forced close).
    kill: CancellationToken,
}

impl Inner {
    fn die(&self) {
        self.dead.store(true, Ordering::Release);
        self.kill.cancel();
    }
}

/// The push side: cheap to clone, held by routers for each subscription.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

/// The drain side, owned by the connection's writer.
pub struct OutboxReceiver {
    inner: Arc<Inner>,
    rx: mpsc::UnboundedReceiver<OutItem>,
}

impl Outbox {
    pub fn new(session: SessionId, limit: usize) -> (Outbox, OutboxReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            session,
            tx,
            queued: AtomicUsize::new(0),
            limit,
            slow: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            kill: CancellationToken::new(),
        });
        (
            Outbox {
                inner: inner.clone(),
            },
            OutboxReceiver { inner, rx },
        )
    }

    pub fn session(&self) -> SessionId {
        self.inner.session
    }

    /// Queues whole frames. Returns false if the connection is gone or its
    /// queue was already past the bound (it is then closed with `slow_consumer`); the caller
    /// should drop the subscription.
    pub fn push(&self, frames: Bytes) -> bool {
        let inner = &*self.inner;
        if inner.dead.load(Ordering::Acquire) {
            return false;
        }
        let n = frames.len();
        // Slow means the queue is already past its bound: a single chunk larger
        // than the bound still goes to a consumer that keeps up.
        let before = inner.queued.fetch_add(n, Ordering::AcqRel);
        if before > inner.limit {
            inner.queued.fetch_sub(n, Ordering::AcqRel);
            inner.slow.store(true, Ordering::Release);
            inner.die();
            return false;
        }
        inner.tx.send(OutItem::Frames(frames)).is_ok()
    }

    /// Queues ephemeral frames (typing, presence) only while the queue is under half
    /// its bound; a connection that is behind simply misses them.
    pub fn push_droppable(&self, frames: Bytes) -> bool {
        let inner = &*self.inner;
        if inner.dead.load(Ordering::Acquire)
            || inner.queued.load(Ordering::Acquire) > inner.limit / 2
        {
            return false;
        }
        inner.queued.fetch_add(frames.len(), Ordering::AcqRel);
        inner.tx.send(OutItem::Frames(frames)).is_ok()
    }

    /// Marks the connection slow and kills it (it closes with `slow_consumer`).
    pub fn kill_slow(&self) {
        self.inner.slow.store(true, Ordering::Release);
        self.inner.die();
    }

    /// The queue's byte bound.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Encodes and queues one frame.
    pub fn send(&self, frame: &ServerFrame) -> bool {
        self.push(proto::encode(frame))
    }

    /// Queues a last frame (bypassing the byte bound) and asks the writer to
    /// close after flushing.
    pub fn close_with(&self, frame: &ServerFrame) {
        let _ = self.inner.tx.send(OutItem::Frames(proto::encode(frame)));
        let _ = self.inner.tx.send(OutItem::Close);
    }

    /// Asks the writer to close after flushing what is queued.
    pub fn close(&self) {
        let _ = self.inner.tx.send(OutItem::Close);
    }

    /// Kills the connection now, without flushing.
    pub fn kill(&self) {
        self.inner.die();
    }

    pub fn is_dead(&self) -> bool {
        self.inner.dead.load(Ordering::Acquire)
    }

    pub fn is_slow(&self) -> bool {
        self.inner.slow.load(Ordering::Acquire)
    }

    /// Resolves when the connection is killed.
    pub async fn killed(&self) {
        self.inner.kill.cancelled().await
    }

    /// Bytes queued and not yet taken by the writer.
    pub fn queued_bytes(&self) -> usize {
        self.inner.queued.load(Ordering::Acquire)
    }
}

impl OutboxReceiver {
    /// Waits for the next items, appending up to `limit` of them to `out`; 0 means closed.
    pub async fn recv_many(&mut self, out: &mut Vec<OutItem>, limit: usize) -> usize {
        self.rx.recv_many(out, limit).await
    }

    pub fn try_recv(&mut self) -> Option<OutItem> {
        self.rx.try_recv().ok()
    }

    /// Gives back the byte budget of frames the writer has taken.
    pub fn taken(&self, bytes: usize) {
        self.inner.queued.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub fn is_slow(&self) -> bool {
        self.inner.slow.load(Ordering::Acquire)
    }

    /// Kills the connection (write error, peer gone).
    pub fn kill(&self) {
        self.inner.die();
    }

    pub fn kill_token(&self) -> CancellationToken {
        self.inner.kill.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overflow_marks_slow_and_kills() {
        let (out, mut rx) = Outbox::new(SessionId(1), 10);
        assert!(out.push(Bytes::from_static(b"123456")));
        assert!(
            out.push(Bytes::from_static(b"123456")),
            "12 queued: past the bound now"
        );
        assert!(!out.push(Bytes::from_static(b"1")));
        assert!(out.is_slow() && out.is_dead());
        assert!(
            !out.push(Bytes::from_static(b"1")),
            "dead outboxes refuse everything"
        );
        let mut items = Vec::new();
        assert_eq!(rx.recv_many(&mut items, 10).await, 2);
    }

    #[tokio::test]
    async fn taken_bytes_free_the_budget() {
        let (out, rx) = Outbox::new(SessionId(1), 10);
        assert!(out.push(Bytes::from_static(b"123456")));
        rx.taken(6);
        assert!(out.push(Bytes::from_static(b"123456")));
        assert_eq!(out.queued_bytes(), 6);
    }
}
