//! Sharded room routers. A room id hashes to one shard; that shard's task owns
//! the room (members, subscribers, seq) and serves every command for it in
//! order, so the hot path takes no locks. See `shard.rs` for the loop.

pub mod command;
mod dedupe;
mod room;
pub mod shard;

pub use command::{Command, ReplyTo};
use shard::{Shard, ShardConfig, ShardMsg};

use crate::ids::RoomId;
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
    ) -> (Router, Vec<JoinHandle<()>>) {
        let n = n.max(1);
        let mut senders = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = mpsc::channel(SHARD_INBOX);
            let shard = Shard::new(i, cfg.clone(), store.clone(), rx, tx.downgrade());
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
