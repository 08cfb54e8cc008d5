//! A connection's outbound queue, bounded in bytes.
//!
//! Routers push already-encoded frames (`Bytes`, shared by every subscriber)
//! without ever waiting: a push that would take the queue past its bound marks
//! the connection slow and kills it instead, so one slow client never slows a
//! room. The writer side drains the queue and accounts the bytes back.
//!
//! The queue is a `VecDeque` under a mutex with a `Notify`, not a channel: it
//! allocates nothing until the first frame and gives back what a burst made
//! it grow to, where an mpsc channel keeps a 32-slot block (~1.1 KB) on every
//! idle connection. Both sides hold the lock only to move items.

use crate::ids::SessionId;
use crate::proto::{self, ServerFrame};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub enum OutItem {
    /// One or more whole frames (length header included), back to back.
    Frames(Bytes),
    /// Flush what is queued, then close the connection.
    Close,
}

/// A drained queue keeps at most this many slots of capacity.
const KEEP_CAPACITY: usize = 64;

#[derive(Default)]
struct Queue {
    items: VecDeque<OutItem>,
    /// Every [`Outbox`] is gone: the receiver ends once the queue is empty.
    senders_gone: bool,
    /// The [`OutboxReceiver`] is gone: pushes are refused.
    receiver_gone: bool,
}

struct Inner {
    session: SessionId,
    queue: Mutex<Queue>,
    /// Signalled when the queue goes from empty to not empty, or closes.
    ready: Notify,
    /// Live [`Outbox`] handles.
    senders: AtomicUsize,
    queued: AtomicUsize,
    limit: usize,
    slow: AtomicBool,
    /// Set with `kill`: checked on every push without touching the token's lock.
    dead: AtomicBool,
    /// Cancelled when the connection is dying (slow consumer, write error, forced close).
    kill: CancellationToken,
    /// Requests of this connection awaiting their reply (live [`InFlight`] tickets).
    in_flight: AtomicUsize,
    /// Signalled when a reply is done or the writer drains the queue below half
    /// its bound: the reader may be waiting for room ([`Outbox::backlogged`]).
    room: Notify,
}

impl Inner {
    fn die(&self) {
        self.dead.store(true, Ordering::Release);
        self.kill.cancel();
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding it; a poisoned queue is still consistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one item; false if the receiver is gone.
    fn enqueue(&self, item: OutItem) -> bool {
        let mut q = self.lock();
        if q.receiver_gone {
            return false;
        }
        let was_empty = q.items.is_empty();
        q.items.push_back(item);
        drop(q);
        if was_empty {
            self.ready.notify_one();
        }
        true
    }
}

/// The push side: cheap to clone, held by routers for each subscription.
pub struct Outbox {
    inner: Arc<Inner>,
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.inner.senders.fetch_add(1, Ordering::Relaxed);
        Outbox {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if self.inner.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.lock().senders_gone = true;
            self.inner.ready.notify_one();
        }
    }
}

/// The drain side, owned by the connection's writer.
pub struct OutboxReceiver {
    inner: Arc<Inner>,
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        let mut q = self.inner.lock();
        q.receiver_gone = true;
        q.items = VecDeque::new();
    }
}

impl Outbox {
    pub fn new(session: SessionId, limit: usize) -> (Outbox, OutboxReceiver) {
        let inner = Arc::new(Inner {
            session,
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            senders: AtomicUsize::new(1),
            queued: AtomicUsize::new(0),
            limit,
            slow: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            kill: CancellationToken::new(),
            in_flight: AtomicUsize::new(0),
            room: Notify::new(),
        });
        (
            Outbox {
                inner: inner.clone(),
            },
            OutboxReceiver { inner },
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
            if !inner.slow.swap(true, Ordering::AcqRel) {
                crate::metrics::slow_consumer();
            }
            inner.die();
            return false;
        }
        inner.enqueue(OutItem::Frames(frames))
    }

    /// Queues ephemeral frames (typing, presence) only while the queue is under half
    /// its bound; a connection that is behind simply misses them.
    pub fn push_droppable(&self, frames: Bytes) -> bool {
        let inner = &*self.inner;
        if inner.dead.load(Ordering::Acquire) {
            return false;
        }
        if inner.queued.load(Ordering::Acquire) > inner.limit / 2 {
            crate::metrics::METRICS.ephemeral_drops.add(1);
            return false;
        }
        inner.queued.fetch_add(frames.len(), Ordering::AcqRel);
        inner.enqueue(OutItem::Frames(frames))
    }

    /// Marks the connection slow and kills it (it closes with `slow_consumer`).
    pub fn kill_slow(&self) {
        if !self.inner.slow.swap(true, Ordering::AcqRel) {
            crate::metrics::slow_consumer();
        }
        self.inner.die();
    }

    /// The queue's byte bound.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Encodes and queues one frame.
    pub fn send(&self, frame: &ServerFrame) -> bool {
        if let ServerFrame::Error(e) = frame {
            crate::metrics::error_sent(e.code);
        }
        self.push(proto::encode(frame))
    }

    /// Queues a last frame (bypassing the byte bound) and asks the writer to
    /// close after flushing.
    pub fn close_with(&self, frame: &ServerFrame) {
        if let ServerFrame::Error(e) = frame {
            crate::metrics::error_sent(e.code);
        }
        let _ = self.inner.enqueue(OutItem::Frames(proto::encode(frame)));
        let _ = self.inner.enqueue(OutItem::Close);
    }

    /// Asks the writer to close after flushing what is queued.
    pub fn close(&self) {
        let _ = self.inner.enqueue(OutItem::Close);
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

    /// A ticket for one request awaiting its reply; the request counts as in
    /// flight until the last clone of the ticket is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            outbox: self.clone(),
        }
    }

    /// Requests in flight.
    pub fn in_flight_count(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// Whether the reader should stop taking requests: `max_in_flight` requests
    /// await replies, or the queue is over half its bound (replies and pushes the
    /// client has not read yet). Flow control, as TCP's window is: the client is
    /// simply not read until replies drain.
    pub fn backlogged(&self, max_in_flight: usize) -> bool {
        self.in_flight_count() >= max_in_flight || self.queued_bytes() > self.inner.limit / 2
    }

    /// Resolves once the connection is no longer [`backlogged`](Self::backlogged).
    pub async fn room_for_requests(&self, max_in_flight: usize) {
        loop {
            let notified = self.inner.room.notified();
            tokio::pin!(notified);
            // Registered before the check: a release between the two is not missed.
            notified.as_mut().enable();
            if !self.backlogged(max_in_flight) {
                return;
            }
            notified.await;
        }
    }
}

/// One request in flight on a connection (see [`Outbox::in_flight`]). Cloning
/// keeps the same request in flight; dropping the last clone ends it.
pub struct InFlight {
    outbox: Outbox,
}

impl InFlight {
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

impl Clone for InFlight {
    fn clone(&self) -> Self {
        self.outbox.in_flight()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.outbox.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.outbox.inner.room.notify_one();
    }
}

impl OutboxReceiver {
    /// Waits for the next items, appending up to `limit` of them to `out`; 0
    /// means closed (every [`Outbox`] is gone and nothing is left).
    pub async fn recv_many(&mut self, out: &mut Vec<OutItem>, limit: usize) -> usize {
        loop {
            {
                let mut q = self.inner.lock();
                if !q.items.is_empty() {
                    let n = limit.min(q.items.len());
                    out.extend(q.items.drain(..n));
                    if q.items.is_empty() && q.items.capacity() > KEEP_CAPACITY {
                        q.items = VecDeque::new();
                    }
                    return n;
                }
                if q.senders_gone {
                    return 0;
                }
            }
            // A push between the check and this wait leaves a permit: no lost wake-up.
            self.inner.ready.notified().await;
        }
    }

    pub fn try_recv(&mut self) -> Option<OutItem> {
        self.inner.lock().items.pop_front()
    }

    /// Gives back the byte budget of frames the writer has taken.
    pub fn taken(&self, bytes: usize) {
        let before = self.inner.queued.fetch_sub(bytes, Ordering::AcqRel);
        let half = self.inner.limit / 2;
        if before > half && before - bytes <= half {
            self.inner.room.notify_one();
        }
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

    /// Whether the connection was killed: one atomic load, where polling the
    /// kill token takes its lock.
    pub fn is_dead(&self) -> bool {
        self.inner.dead.load(Ordering::Acquire)
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

    #[tokio::test]
    async fn the_receiver_ends_when_every_outbox_is_gone() {
        let (out, mut rx) = Outbox::new(SessionId(1), 100);
        let other = out.clone();
        assert!(out.push(Bytes::from_static(b"a")));
        drop(out);
        assert!(other.push(Bytes::from_static(b"b")));
        let waiter = tokio::spawn(async move {
            let mut items = Vec::new();
            let mut total = 0;
            loop {
                let n = rx.recv_many(&mut items, 10).await;
                if n == 0 {
                    return total;
                }
                total += n;
            }
        });
        tokio::task::yield_now().await;
        drop(other);
        assert_eq!(waiter.await.unwrap(), 2, "what was queued, then the end");
    }

    #[tokio::test]
    async fn pushes_wake_a_waiting_receiver_and_fail_once_it_is_gone() {
        let (out, mut rx) = Outbox::new(SessionId(1), 1 << 20);
        let waiter = tokio::spawn(async move {
            let mut items = Vec::new();
            let n = rx.recv_many(&mut items, 10).await;
            (n, rx)
        });
        tokio::task::yield_now().await;
        assert!(out.push(Bytes::from_static(b"x")));
        let (n, mut rx) = waiter.await.unwrap();
        assert_eq!(n, 1);
        // A burst grows the queue; draining it gives the memory back.
        for _ in 0..1000 {
            assert!(out.push(Bytes::from_static(b"y")));
        }
        let mut items = Vec::new();
        assert_eq!(rx.recv_many(&mut items, 2000).await, 1000);
        assert!(rx.inner.lock().items.capacity() <= KEEP_CAPACITY);
        assert!(rx.try_recv().is_none());
        drop(rx);
        assert!(
            !out.push(Bytes::from_static(b"z")),
            "nobody drains any more"
        );
    }
}
