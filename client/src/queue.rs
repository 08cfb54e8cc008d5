//! The offline queue: every send waits here, in order, until the server
//! acknowledges it. Each has a `local_id`, so a resend after a reconnect is
//! answered with the original `sent` (server idempotency) and nothing is
//! stored twice. Bounded; optionally mirrored to a MessagePack file the app
//! chooses, rewritten (write to `FILE.tmp`, then rename) after changes.

use crate::error::Error;
use roomcast_protocol::client::{self as req, ClientFrame};
use roomcast_protocol::ids::RoomId;
use roomcast_protocol::server::Sent;
use roomcast_protocol::types::{Attachment, MessageKind};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio::sync::oneshot;

/// A message waiting for its `sent`: what is persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueuedSend {
    pub local_id: String,
    pub room: RoomId,
    pub body: String,
    #[serde(default)]
    pub kind: MessageKind,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub reply_to: Option<u64>,
}

impl QueuedSend {
    pub(crate) fn frame(&self, id: u64) -> ClientFrame {
        ClientFrame::Send(req::Send {
            id,
            room: self.room.clone(),
            body: self.body.clone(),
            local_id: Some(self.local_id.clone()),
            kind: self.kind,
            attachments: self.attachments.clone(),
            reply_to: self.reply_to,
        })
    }
}

/// Who learns the outcome of a send.
pub(crate) type Waiter = oneshot::Sender<Result<Sent, Error>>;

struct Entry {
    item: QueuedSend,
    waiter: Option<Waiter>,
    /// The connection generation it was last written on (0: never).
    sent_on: u64,
    /// Not before this instant (after a transient refusal).
    not_before: Option<Instant>,
}

/// The queue proper (sans-IO).
pub(crate) struct Queue {
    entries: VecDeque<Entry>,
    capacity: usize,
    /// Bumped on every change, for the file writer.
    pub version: u64,
}

impl Queue {
    pub fn new(capacity: usize, loaded: Vec<QueuedSend>) -> Queue {
        let entries = loaded
            .into_iter()
            .map(|item| Entry {
                item,
                waiter: None,
                sent_on: 0,
                not_before: None,
            })
            .collect();
        Queue {
            entries,
            capacity: capacity.max(1),
            version: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn push(&mut self, item: QueuedSend, waiter: Option<Waiter>) -> Result<(), Error> {
        if self.entries.len() >= self.capacity {
            return Err(Error::QueueFull(self.capacity));
        }
        self.entries.push_back(Entry {
            item,
            waiter,
            sent_on: 0,
            not_before: None,
        });
        self.version += 1;
        Ok(())
    }

    /// Up to `max` messages not yet written on connection `generation`, in
    /// queue order, now marked as written on it.
    pub fn take_unsent(&mut self, generation: u64, max: usize, now: Instant) -> Vec<QueuedSend> {
        let mut out = Vec::new();
        for e in self.entries.iter_mut() {
            if out.len() >= max {
                break;
            }
            if e.sent_on == generation || e.not_before.is_some_and(|t| t > now) {
                continue;
            }
            e.sent_on = generation;
            e.not_before = None;
            out.push(e.item.clone());
        }
        out
    }

    /// The earliest instant a refused message may go out again.
    pub fn next_retry(&self) -> Option<Instant> {
        self.entries.iter().filter_map(|e| e.not_before).min()
    }

    fn remove(&mut self, local_id: &str) -> Option<Entry> {
        let i = self
            .entries
            .iter()
            .position(|e| e.item.local_id == local_id)?;
        self.version += 1;
        self.entries.remove(i)
    }

    /// The server acknowledged `local_id`: it leaves the queue. Returns its
    /// waiter, or the ack back if nobody waits for it.
    pub fn ack(&mut self, local_id: &str, sent: Sent) -> Result<(), Sent> {
        match self.remove(local_id).and_then(|e| e.waiter) {
            Some(w) => match w.send(Ok(sent)) {
                Err(Ok(sent)) => Err(sent),
                _ => Ok(()),
            },
            None => Err(sent),
        }
    }

    /// The server refused `local_id` for good: it leaves the queue. Returns
    /// the error back (with the room) if nobody waits for it.
    pub fn fail(&mut self, local_id: &str, error: Error) -> Option<(RoomId, Error)> {
        let entry = self.remove(local_id)?;
        match entry.waiter {
            Some(w) => match w.send(Err(error)) {
                Err(Err(error)) => Some((entry.item.room, error)),
                _ => None,
            },
            None => Some((entry.item.room, error)),
        }
    }

    /// A transient refusal: write it again, not before `at`.
    pub fn retry(&mut self, local_id: &str, at: Instant) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.item.local_id == local_id)
        {
            e.sent_on = 0;
            e.not_before = Some(at);
        }
    }

    /// Fails every waiter with `Closed` (the client shut down; the messages stay in the file).
    pub fn close_waiters(&mut self) {
        for e in self.entries.iter_mut() {
            if let Some(w) = e.waiter.take() {
                let _ = w.send(Err(Error::Closed));
            }
        }
    }

    pub fn snapshot(&self) -> Vec<QueuedSend> {
        self.entries.iter().map(|e| e.item.clone()).collect()
    }
}

/// Reads the queue file (absent: empty).
pub(crate) fn load(path: &Path) -> Result<Vec<QueuedSend>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => rmp_serde::from_slice(&bytes)
            .map_err(|e| Error::QueueFile(std::io::Error::new(std::io::ErrorKind::InvalidData, e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::QueueFile(e)),
    }
}

/// Rewrites the queue file atomically (temporary file, fsync, rename).
pub(crate) fn save(path: &Path, items: &[QueuedSend]) -> std::io::Result<()> {
    use std::io::Write;
    let bytes = rmp_serde::to_vec_named(items).map_err(std::io::Error::other)?;
    let tmp: PathBuf = {
        let mut s = path.as_os_str().to_owned();
        s.push(".tmp");
        s.into()
    };
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A fresh idempotency key: `l` + 32 hex digits (128 random bits), unique
/// across processes and restarts without coordination.
pub(crate) fn new_local_id() -> String {
    let bits: u128 = rand::random();
    format!("l{bits:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u32) -> QueuedSend {
        QueuedSend {
            local_id: format!("l{n}"),
            room: RoomId::new("r").unwrap(),
            body: format!("m{n}"),
            kind: MessageKind::Text,
            attachments: vec![],
            reply_to: None,
        }
    }

    #[test]
    fn bounded_ordered_and_resent_per_connection() {
        let now = Instant::now();
        let mut q = Queue::new(2, vec![item(1)]);
        q.push(item(2), None).unwrap();
        assert!(matches!(q.push(item(3), None), Err(Error::QueueFull(2))));
        let first: Vec<_> = q
            .take_unsent(1, 10, now)
            .into_iter()
            .map(|i| i.body)
            .collect();
        assert_eq!(first, ["m1", "m2"]);
        assert!(
            q.take_unsent(1, 10, now).is_empty(),
            "written once per connection"
        );
        assert!(q.ack("l1", sent()).is_err(), "no waiter: handed back");
        let again: Vec<_> = q
            .take_unsent(2, 10, now)
            .into_iter()
            .map(|i| i.body)
            .collect();
        assert_eq!(
            again,
            ["m2"],
            "unacknowledged ones go out again on the next connection"
        );
        q.retry("l2", now + std::time::Duration::from_secs(1));
        assert!(q.take_unsent(3, 10, now).is_empty());
        assert_eq!(
            q.next_retry(),
            Some(now + std::time::Duration::from_secs(1))
        );
        assert!(q.fail("l2", Error::Closed).is_some());
        assert_eq!(q.len(), 0);
    }

    fn sent() -> Sent {
        Sent {
            id: 1,
            room: RoomId::new("r").unwrap(),
            seq: 1,
            ts: 1,
            local_id: None,
        }
    }

    #[test]
    fn file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.mp");
        assert!(load(&path).unwrap().is_empty());
        save(&path, &[item(1), item(2)]).unwrap();
        assert_eq!(load(&path).unwrap(), vec![item(1), item(2)]);
        let id = new_local_id();
        assert_eq!(id.len(), 33);
        assert_ne!(id, new_local_id());
    }
}
