//! The sending end of a link to one peer: a bounded queue, one connection
//! kept up with backoff, answers matched to requests by correlation id.

use super::{codec, decode, encode, LinkError, LinkSettings, KIND_REQUEST, KIND_RESPONSE};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// Frames written per write call at most (the rest waits for the next).
const WRITE_BATCH: usize = 64;

struct Pending {
    tx: oneshot::Sender<Result<Bytes, LinkError>>,
    /// Written on the current connection (so lost if it drops).
    sent: bool,
}

type PendingMap = Arc<Mutex<HashMap<u64, Pending>>>;

fn lock(p: &PendingMap) -> MutexGuard<'_, HashMap<u64, Pending>> {
    // A panic while holding the lock leaves the map consistent (single
    // inserts and removals), so a poisoned lock is still usable.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

struct Outgoing {
    id: u64,
    body: Bytes,
    deadline: Instant,
}

/// A link to one peer node. Cheap to share (`Arc`); dropping the last
/// handle closes the connection and ends its task.
pub struct Link {
    queue: mpsc::Sender<Outgoing>,
    pending: PendingMap,
    next_id: AtomicU64,
    settings: LinkSettings,
    closed: CancellationToken,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

impl Link {
    /// Starts the link's task (on the current tokio runtime); it connects to
    /// `addr` and reconnects whenever the connection drops.
    pub fn connect(addr: String, settings: LinkSettings) -> Link {
        let (queue, rx) = mpsc::channel(settings.queue.max(1));
        let pending: PendingMap = Arc::default();
        let closed = CancellationToken::new();
        tokio::spawn(run(addr, settings, rx, pending.clone(), closed.clone()));
        Link {
            queue,
            pending,
            next_id: AtomicU64::new(1),
            settings,
            closed,
        }
    }

    /// Requests waiting in the send queue.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Sends `body` and waits for the peer's answer, at most `timeout`.
    pub async fn request(&self, body: Bytes, timeout: Duration) -> Result<Bytes, LinkError> {
        // Array header, id, kind and the bin header take at most 19 bytes.
        if body.len() + 19 > self.settings.max_frame {
            return Err(LinkError::TooLarge);
        }
        if self.closed.is_cancelled() {
            return Err(LinkError::Closed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = lock(&self.pending);
            if p.len() >= self.settings.max_pending {
                return Err(LinkError::Busy);
            }
            p.insert(id, Pending { tx, sent: false });
        }
        // However this ends (answer, deadline, or the caller dropping this
        // future), the entry leaves the map.
        let _forget = Forget {
            pending: &self.pending,
            id,
        };
        let deadline = Instant::now() + timeout;
        let out = Outgoing { id, body, deadline };
        if let Err(e) = self.queue.try_send(out) {
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => LinkError::Busy,
                mpsc::error::TrySendError::Closed(_) => LinkError::Closed,
            });
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(LinkError::Closed),
            Err(_) => Err(LinkError::Timeout),
        }
    }
}

/// Removes a request's entry from the pending map when dropped.
struct Forget<'a> {
    pending: &'a PendingMap,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(&self.id);
    }
}

/// Connects, serves the connection until it drops, backs off, again.
async fn run(
    addr: String,
    settings: LinkSettings,
    mut rx: mpsc::Receiver<Outgoing>,
    pending: PendingMap,
    closed: CancellationToken,
) {
    let mut backoff = settings.backoff_min;
    loop {
        let connect = tokio::time::timeout(settings.connect_timeout, TcpStream::connect(&addr));
        let stream = tokio::select! {
            _ = closed.cancelled() => return,
            r = connect => r,
        };
        match stream {
            Ok(Ok(stream)) => {
                backoff = settings.backoff_min;
                // Frames are small and latency matters more than packet count.
                let _ = stream.set_nodelay(true);
                tracing::debug!(peer = %addr, "node link connected");
                let (read, write) = stream.into_split();
                let reason = tokio::select! {
                    _ = closed.cancelled() => None,
                    r = write_loop(write, &mut rx, &pending, settings) => Some(r),
                    r = read_loop(read, &pending, settings) => Some(r),
                };
                // Whatever was written on this connection is lost with it.
                let lost: Vec<Pending> = {
                    let mut p = lock(&pending);
                    let ids: Vec<u64> = p
                        .iter()
                        .filter(|(_, e)| e.sent)
                        .map(|(id, _)| *id)
                        .collect();
                    ids.iter().filter_map(|id| p.remove(id)).collect()
                };
                for p in lost {
                    let _ = p.tx.send(Err(LinkError::Disconnected));
                }
                match reason {
                    None => return,
                    Some(why) => tracing::info!(peer = %addr, %why, "node link dropped"),
                }
            }
            Ok(Err(e)) => tracing::debug!(peer = %addr, error = %e, "node link connect failed"),
            Err(_) => tracing::debug!(peer = %addr, "node link connect timed out"),
        }
        tokio::select! {
            _ = closed.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(settings.backoff_max);
    }
}

/// Writes queued requests, many per write call. Returns why it stopped.
async fn write_loop(
    mut write: OwnedWriteHalf,
    rx: &mut mpsc::Receiver<Outgoing>,
    pending: &PendingMap,
    settings: LinkSettings,
) -> String {
    let mut codec = codec(settings.max_frame);
    let mut buf = BytesMut::new();
    loop {
        let Some(first) = rx.recv().await else {
            return "link closed".into();
        };
        let mut next = Some(first);
        let mut n = 0;
        while let Some(out) = next.take() {
            let now = Instant::now();
            let live = {
                let mut p = lock(pending);
                match p.get_mut(&out.id) {
                    // The caller still waits and its deadline is ahead.
                    Some(entry) if out.deadline > now => {
                        entry.sent = true;
                        true
                    }
                    _ => false,
                }
            };
            if live {
                if let Err(e) = encode(&mut codec, out.id, KIND_REQUEST, &out.body, &mut buf) {
                    if let Some(entry) = lock(pending).remove(&out.id) {
                        let _ = entry.tx.send(Err(e));
                    }
                }
            }
            n += 1;
            if n < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            if let Err(e) = write.write_all(&buf).await {
                return e.to_string();
            }
            buf.clear();
        }
    }
}

/// Reads answers and hands each to its waiting caller.
async fn read_loop(read: OwnedReadHalf, pending: &PendingMap, settings: LinkSettings) -> String {
    let mut frames = FramedRead::new(read, codec(settings.max_frame));
    loop {
        let frame = match frames.next().await {
            None => return "closed by the peer".into(),
            Some(Err(e)) => return e.to_string(),
            Some(Ok(frame)) => frame,
        };
        let Some((id, kind, body)) = decode(&frame) else {
            return "undecodable frame".into();
        };
        if kind != KIND_RESPONSE {
            return format!("unexpected frame kind {kind}");
        }
        // An answer whose caller gave up (deadline) is dropped.
        if let Some(entry) = lock(pending).remove(&id) {
            let _ = entry.tx.send(Ok(body));
        }
    }
}
