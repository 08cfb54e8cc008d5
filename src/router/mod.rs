//! Sharded room routers. A room id hashes to one shard; that shard's task owns
//! the room (members, subscribers, seq) and serves every command for it in
//! order, so the hot path takes no locks. `shard.rs` is the loop; the commands
//! are grouped by concern in `members.rs`, `messages.rs`, `reads.rs`,
//! `ephemeral.rs` and `replay.rs`.

pub mod cluster;
pub mod command;
mod dedupe;
mod ephemeral;
mod members;
mod messages;
mod reads;
mod replay;
mod room;
pub mod shard;

pub use command::{AdminOp, Command, NewMessage, ReplyTo};
use shard::{Shard, ShardConfig, ShardMsg};

use crate::ids::{RoomId, UserId};
use crate::presence::Presence;
use crate::store::MessageStore;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Inbox bound per shard: senders wait (TCP backpressure) when a shard falls behind.
const SHARD_INBOX: usize = 8192;

#[derive(Clone)]
pub struct Router {
    shards: Arc<[mpsc::Sender<ShardMsg>]>,
}

#[derive(Debug, thiserror::Error)]
#[error("router is shut down")]
pub struct RouterClosed;

impl Router {
    /// Starts `n` shard tasks on the current runtime.
    pub fn start(
        n: usize,
        cfg: ShardConfig,
        store: Arc<dyn MessageStore>,
        presence: Arc<dyn Presence>,
        cluster: Option<Arc<dyn cluster::Cluster>>,
    ) -> (Router, Vec<JoinHandle<()>>) {
        let n = n.max(1);
        let mut senders = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = mpsc::channel(SHARD_INBOX);
            let shard = Shard::new(
                i,
                cfg.clone(),
                store.clone(),
                presence.clone(),
                cluster.clone(),
                rx,
                tx.downgrade(),
            );
            handles.push(tokio::spawn(shard.run()));
            senders.push(tx);
        }
        (
            Router {
                shards: senders.into(),
            },
            handles,
        )
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard that owns `room` (stable for a given shard count).
    pub fn shard_of(&self, room: &RoomId) -> usize {
        let mut h = std::hash::DefaultHasher::new();
        room.as_str().hash(&mut h);
        (h.finish() % self.shards.len() as u64) as usize
    }

    /// Hands a command to the room's shard; waits only if that shard's inbox is full.
    pub async fn send(&self, room: RoomId, cmd: Command) -> Result<(), RouterClosed> {
        let shard = &self.shards[self.shard_of(&room)];
        shard
            .send(ShardMsg::Room(room, cmd))
            .await
            .map_err(|_| RouterClosed)
    }

    /// Hands traffic of a room from another node to the room's shard.
    pub async fn remote(&self, room: RoomId, ephemeral: bool, payload: bytes::Bytes) {
        let shard = &self.shards[self.shard_of(&room)];
        let _ = shard
            .send(ShardMsg::Remote {
                room,
                ephemeral,
                payload,
            })
            .await;
    }

    /// Asks every shard to finish its in-flight writes and stop; waits for all.
    pub async fn shutdown(&self) {
        let mut waits = Vec::new();
        for s in self.shards.iter() {
            let (tx, rx) = oneshot::channel();
            if s.send(ShardMsg::Shutdown(tx)).await.is_ok() {
                waits.push(rx);
            }
        }
        for w in waits {
            let _ = w.await;
        }
    }
}

/// Whether `room` has the form of a direct room id (`d` + 40 hex digits).
pub fn is_direct_room_id(room: &RoomId) -> bool {
    let s = room.as_str();
    s.len() == 41
        && s.starts_with('d')
        && s[1..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The id of the one direct room of two users: the same whoever asks, and not
/// forgeable from other user ids (a SHA-256 of both ids, length-prefixed).
pub fn direct_room_id(a: &UserId, b: &UserId) -> RoomId {
    use sha2::{Digest, Sha256};
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    let mut h = Sha256::new();
    for u in [x, y] {
        h.update((u.as_str().len() as u32).to_be_bytes());
        h.update(u.as_str().as_bytes());
    }
    let digest = h.finalize();
    // "d" + 40 hex digits (160 bits) is well inside the 64-byte room id limit.
    let id = format!("d{}", hex::encode(&digest[..20]));
    RoomId::new(&id).unwrap_or_else(|_| RoomId::random())
}
