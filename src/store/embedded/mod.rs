//! The embedded store: fjall (an LSM tree) under the data dir, with group commit.
//!
//! All writes go through one committer thread. It blocks for the first batch,
//! then takes every batch queued meanwhile, writes them as one atomic fjall
//! batch, syncs once per the [`FsyncPolicy`], and only then resolves every
//! caller. Under load many routers' batches share one fsync; idle, a lone
//! message is committed at once. Reads (`read.rs`) run on tokio's blocking pool.

mod read;

use super::keys;
use super::{
    LoadedRoom, MessageState, MessageStore, Mutation, RoomMeta, RoomOverview, StoreError,
    StoreResult,
};
use crate::config::FsyncPolicy;
use crate::ids::{RoomId, UserId};
use async_trait::async_trait;
use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

type Job = (Vec<Mutation>, oneshot::Sender<StoreResult<()>>);

/// Most batches folded into one commit (bounds the latency of the first in a group).
const MAX_GROUP: usize = 1024;

/// One keyspace per table.
pub(crate) struct Tables {
    db: Database,
    rooms: Keyspace,
    public: Keyspace,
    members: Keyspace,
    user_rooms: Keyspace,
    bans: Keyspace,
    events: Keyspace,
    messages: Keyspace,
    local_ids: Keyspace,
    deletions: Keyspace,
    invites: Keyspace,
    favorites: Keyspace,
}

pub struct EmbeddedStore {
    tables: Arc<Tables>,
    commits: mpsc::UnboundedSender<Job>,
}

pub(crate) fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(e.to_string())
}

impl EmbeddedStore {
    /// The fjall database, for modules keeping a keyspace of their own in the
    /// same store (built-in accounts, `crate::accounts::store`).
    pub fn database(&self) -> Database {
        self.tables.db.clone()
    }

    /// Syncs everything written so far, from a blocking context.
    pub fn flush_blocking(&self) -> StoreResult<()> {
        self.tables.db.persist(PersistMode::SyncAll).map_err(err)
    }

    /// Opens (or creates) the store in `dir`. Only one process may open a dir.
    pub fn open(dir: &Path, fsync: FsyncPolicy) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).map_err(err)?;
        let db = Database::builder(dir)
            .cache_size(64 * 1024 * 1024)
            .max_journaling_size(256 * 1024 * 1024)
            .open()
            .map_err(err)?;
        let ks = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(err)
        };
        let tables = Arc::new(Tables {
            rooms: ks("rooms")?,
            public: ks("public")?,
            members: ks("members")?,
            user_rooms: ks("user_rooms")?,
            bans: ks("bans")?,
            events: ks("events")?,
            messages: ks("messages")?,
            local_ids: ks("local_ids")?,
            deletions: ks("deletions")?,
            invites: ks("invites")?,
            favorites: ks("favorites")?,
            db,
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let t = tables.clone();
        std::thread::Builder::new()
            .name("roomcast-commit".into())
            .spawn(move || committer(t, rx, fsync))
            .map_err(err)?;
        Ok(Self {
            tables,
            commits: tx,
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Tables) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let t = self.tables.clone();
        tokio::task::spawn_blocking(move || f(&t))
            .await
            .map_err(|e| StoreError::Embedded(format!("read task: {e}")))?
    }
}

fn committer(t: Arc<Tables>, mut rx: mpsc::UnboundedReceiver<Job>, fsync: FsyncPolicy) {
    let mut group: Vec<Job> = Vec::with_capacity(64);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        // A panic inside the engine must not end the committer (every later
        // write would then fail as `Closed`): it fails this group only.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_group(&t, &group, fsync)
        }))
        .unwrap_or_else(|_| Err("store write panicked".to_string()));
        for (_, done) in group.drain(..) {
            let _ = done.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Embedded(e.clone())),
            });
        }
    }
    // Every sender is gone: make the journal durable before the thread ends.
    if let Err(e) = t.db.persist(PersistMode::SyncAll) {
        tracing::error!(error = %e, "final store sync failed");
    }
}

fn write_group(t: &Tables, group: &[Job], fsync: FsyncPolicy) -> Result<(), String> {
    let mut b = t.db.batch();
    for (mutations, _) in group {
        for m in mutations {
            match m {
                Mutation::PutRoom(meta) => {
                    b.insert(&t.rooms, meta.id.as_str().as_bytes(), keys::encode(meta))
                }
                Mutation::PutPublic { name, room } => {
                    b.insert(&t.public, keys::public_key(name, room), [])
                }
                Mutation::DelPublic { name, room } => {
                    b.remove(&t.public, keys::public_key(name, room))
                }
                Mutation::PutMember { room, user, state } => {
                    b.insert(
                        &t.members,
                        keys::room_user_key(room, user),
                        keys::encode(state),
                    );
                    b.insert(&t.user_rooms, keys::user_room_key(user, room), []);
                }
                Mutation::DelMember { room, user } => {
                    b.remove(&t.members, keys::room_user_key(room, user));
                    b.remove(&t.user_rooms, keys::user_room_key(user, room));
                }
                Mutation::PutBan { room, user } => {
                    b.insert(&t.bans, keys::room_user_key(room, user), [])
                }
                Mutation::DelBan { room, user } => {
                    b.remove(&t.bans, keys::room_user_key(room, user))
                }
                Mutation::AppendEvent { room, seq, payload }
                | Mutation::RewriteEvent { room, seq, payload } => {
                    b.insert(&t.events, keys::seq_key(room, *seq), payload.as_ref())
                }
                Mutation::PutMessage(m) => {
                    b.insert(&t.messages, keys::seq_key(&m.room, m.seq), keys::encode(m))
                }
                Mutation::PutLocalId {
                    room,
                    user,
                    local_id,
                    seq,
                    ts,
                } => b.insert(
                    &t.local_ids,
                    keys::local_id_key(room, user, local_id),
                    keys::encode(&(seq, ts)),
                ),
                Mutation::PutDeletion { room, seq, sender } => b.insert(
                    &t.deletions,
                    keys::seq_key(room, *seq),
                    sender.as_str().as_bytes(),
                ),
                Mutation::PutInvite(inv) => b.insert(
                    &t.invites,
                    keys::invite_key(&inv.room, &inv.code),
                    keys::encode(inv),
                ),
                Mutation::PutFavorite {
                    user,
                    room,
                    peer,
                    on,
                } => {
                    let k = keys::favorite_key(user, room.as_ref(), peer.as_ref());
                    if *on {
                        b.insert(&t.favorites, k, []);
                    } else {
                        b.remove(&t.favorites, k);
                    }
                }
            }
        }
    }
    b.commit().map_err(|e| e.to_string())?;
    if fsync == FsyncPolicy::Always {
        t.db.persist(PersistMode::SyncData)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[async_trait]
impl MessageStore for EmbeddedStore {
    async fn apply(&self, batch: Vec<Mutation>) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.commits
            .send((batch, tx))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn load_room(&self, room: &RoomId, recent: usize) -> StoreResult<Option<LoadedRoom>> {
        let room = room.clone();
        self.read(move |t| read::load_room(t, &room, recent)).await
    }

    async fn find_local_id(
        &self,
        room: &RoomId,
        user: &UserId,
        local_id: &str,
    ) -> StoreResult<Option<(u64, u64)>> {
        let key = keys::local_id_key(room, user, local_id);
        self.read(move |t| match t.local_ids.get(key).map_err(err)? {
            Some(v) => keys::decode::<(u64, u64)>(&v, "local_id").map(Some),
            None => Ok(None),
        })
        .await
    }

    async fn message(&self, room: &RoomId, seq: u64) -> StoreResult<Option<MessageState>> {
        let key = keys::seq_key(room, seq);
        self.read(move |t| match t.messages.get(key).map_err(err)? {
            Some(v) => keys::decode(&v, "message").map(Some),
            None => Ok(None),
        })
        .await
    }

    async fn msg_count_at(&self, room: &RoomId, seq: u64) -> StoreResult<u64> {
        let room = room.clone();
        self.read(move |t| read::msg_count_at(t, &room, seq)).await
    }

    async fn history(
        &self,
        room: &RoomId,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<(Vec<MessageState>, bool)> {
        let room = room.clone();
        self.read(move |t| read::history(t, &room, before, limit))
            .await
    }

    async fn events(
        &self,
        room: &RoomId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Bytes)>> {
        let room = room.clone();
        self.read(move |t| read::events(t, &room, after, upto, limit))
            .await
    }

    async fn user_rooms(&self, user: &UserId) -> StoreResult<Vec<RoomOverview>> {
        let user = user.clone();
        self.read(move |t| read::user_rooms(t, &user)).await
    }

    async fn member_rooms(&self, user: &UserId) -> StoreResult<Vec<RoomId>> {
        let user = user.clone();
        self.read(move |t| read::member_rooms(t, &user)).await
    }

    async fn public_rooms(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Vec<RoomMeta>, Option<String>)> {
        let prefix = prefix.to_lowercase();
        let after = after.map(str::to_string);
        self.read(move |t| read::public_rooms(t, &prefix, after.as_deref(), limit))
            .await
    }

    async fn favorites(&self, user: &UserId) -> StoreResult<(Vec<RoomId>, Vec<UserId>)> {
        let user = user.clone();
        self.read(move |t| read::favorites(t, &user)).await
    }

    async fn flush(&self) -> StoreResult<()> {
        self.read(|t| t.db.persist(PersistMode::SyncAll).map_err(err))
            .await
    }

    async fn ping(&self) -> StoreResult<()> {
        if self.commits.is_closed() {
            return Err(err("the commit thread has stopped"));
        }
        let probe = RoomId::new("ready-probe").map_err(StoreError::Embedded)?;
        self.message(&probe, 0).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn directory_reads_never_panic_on_key_sized_input() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), FsyncPolicy::Never).unwrap();
        // fjall panics on keys over 65,535 bytes; the store answers instead.
        let (rooms, next) = store
            .public_rooms(&"a".repeat(70_000), None, 10)
            .await
            .unwrap();
        assert!(rooms.is_empty() && next.is_none());
        assert!(store
            .public_rooms("", Some(&"ab".repeat(70_000)), 10)
            .await
            .is_err());
        store.public_rooms("a", None, 10).await.unwrap();
    }
}
