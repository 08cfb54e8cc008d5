//! The embedded store: fjall (an LSM tree) under the data dir, with group commit.
//!
//! All writes go through one committer thread. It blocks for the first batch,
//! then takes every batch queued meanwhile, writes them as one atomic fjall
//! batch, syncs once per the [`FsyncPolicy`], and only then resolves every
//! caller. Under load many routers' batches share one fsync; idle, a lone
//! message is committed at once. Reads run on tokio's blocking pool.

use super::keys;
use super::{LoadedRoom, LocalIdRecord, MessageStore, Mutation, StoreError, StoreResult};
use crate::config::FsyncPolicy;
use crate::ids::{RoomId, UserId};
use crate::proto::server::Message;
use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

type Job = (Vec<Mutation>, oneshot::Sender<StoreResult<()>>);

/// Most batches folded into one commit (bounds the latency of the first in a group).
const MAX_GROUP: usize = 1024;

struct Tables {
    db: Database,
    rooms: Keyspace,
    members: Keyspace,
    messages: Keyspace,
    local_ids: Keyspace,
}

pub struct EmbeddedStore {
    tables: Arc<Tables>,
    commits: mpsc::UnboundedSender<Job>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(e.to_string())
}

impl EmbeddedStore {
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
            members: ks("members")?,
            messages: ks("messages")?,
            local_ids: ks("local_ids")?,
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
        let result = write_group(&t, &group, fsync);
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
    let mut batch = t.db.batch();
    for (mutations, _) in group {
        for m in mutations {
            match m {
                Mutation::CreateRoom(meta) => {
                    batch.insert(
                        &t.rooms,
                        meta.id.as_str().as_bytes(),
                        keys::encode_meta(meta),
                    );
                }
                Mutation::SetMember { room, user, role } => {
                    batch.insert(
                        &t.members,
                        keys::member_key(room, user),
                        keys::encode_role(*role),
                    );
                }
                Mutation::AppendMessage(msg) => {
                    batch.insert(
                        &t.messages,
                        keys::message_key(&msg.room, msg.seq),
                        keys::encode_message(msg),
                    );
                    if let Some(lid) = &msg.local_id {
                        batch.insert(
                            &t.local_ids,
                            keys::local_id_key(&msg.room, &msg.from, lid),
                            keys::encode_seq_ts(msg.seq, msg.ts),
                        );
                    }
                }
            }
        }
    }
    batch.commit().map_err(|e| e.to_string())?;
    if fsync == FsyncPolicy::Always {
        t.db.persist(PersistMode::SyncData)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn load_room(t: &Tables, room: &RoomId, recent: usize) -> StoreResult<Option<LoadedRoom>> {
    let Some(meta) = t.rooms.get(room.as_str().as_bytes()).map_err(err)? else {
        return Ok(None);
    };
    let meta = keys::decode_meta(&meta)?;
    let prefix = keys::room_prefix(room);
    let mut last_seq = 0;
    let mut recent_local_ids = Vec::new();
    let mut complete = true;
    for (scanned, item) in t.messages.prefix(&prefix).rev().enumerate() {
        let (k, v) = item.into_inner().map_err(err)?;
        let seq = keys::seq_of_message_key(&k)?;
        if scanned == 0 {
            last_seq = seq;
        }
        if scanned == recent {
            complete = false;
            break;
        }
        let m = keys::decode_message(room, seq, &v)?;
        if let Some(local_id) = m.local_id {
            recent_local_ids.push(LocalIdRecord {
                from: m.from,
                local_id,
                seq,
                ts: m.ts,
            });
        }
    }
    recent_local_ids.reverse();
    let mut members = Vec::new();
    for item in t.members.prefix(&prefix) {
        let (k, v) = item.into_inner().map_err(err)?;
        let user = std::str::from_utf8(&k[prefix.len()..])
            .map_err(|_| StoreError::Corrupt("member key".into()))
            .and_then(|s| UserId::new(s).map_err(StoreError::Corrupt))?;
        members.push((user, keys::decode_role(&v)?));
    }
    Ok(Some(LoadedRoom {
        meta,
        last_seq,
        members,
        recent_local_ids,
        recent_is_complete: complete,
    }))
}

fn history(
    t: &Tables,
    room: &RoomId,
    before: Option<u64>,
    limit: usize,
) -> StoreResult<(Vec<Message>, bool)> {
    let start = keys::message_key(room, 0);
    let end = keys::message_key(room, before.unwrap_or(u64::MAX));
    let mut out = Vec::with_capacity(limit.min(256));
    let mut more = false;
    for item in t.messages.range(start..end).rev() {
        let (k, v) = item.into_inner().map_err(err)?;
        if out.len() == limit {
            more = true;
            break;
        }
        let seq = keys::seq_of_message_key(&k)?;
        out.push(keys::decode_message(room, seq, &v)?);
    }
    out.reverse();
    Ok((out, more))
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
        self.read(move |t| load_room(t, &room, recent)).await
    }

    async fn find_local_id(
        &self,
        room: &RoomId,
        user: &UserId,
        local_id: &str,
    ) -> StoreResult<Option<(u64, u64)>> {
        let key = keys::local_id_key(room, user, local_id);
        self.read(move |t| match t.local_ids.get(key).map_err(err)? {
            Some(v) => keys::decode_seq_ts(&v).map(Some),
            None => Ok(None),
        })
        .await
    }

    async fn history(
        &self,
        room: &RoomId,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<(Vec<Message>, bool)> {
        let room = room.clone();
        self.read(move |t| history(t, &room, before, limit)).await
    }

    async fn flush(&self) -> StoreResult<()> {
        self.read(|t| t.db.persist(PersistMode::SyncAll).map_err(err))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Role;

    fn msg(room: &RoomId, seq: u64, local_id: Option<&str>) -> Message {
        Message {
            room: room.clone(),
            seq,
            from: UserId::new("alice").unwrap(),
            body: format!("m{seq}"),
            ts: 1000 + seq,
            local_id: local_id.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn apply_load_history_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let room = RoomId::new("general").unwrap();
        let alice = UserId::new("alice").unwrap();
        {
            let s = EmbeddedStore::open(dir.path(), FsyncPolicy::Always).unwrap();
            assert!(s.load_room(&room, 10).await.unwrap().is_none());
            s.apply(vec![
                Mutation::CreateRoom(crate::store::RoomMeta {
                    id: room.clone(),
                    name: "General".into(),
                    private: true,
                    created_by: alice.clone(),
                    created_at: 1,
                }),
                Mutation::SetMember {
                    room: room.clone(),
                    user: alice.clone(),
                    role: Role::Owner,
                },
            ])
            .await
            .unwrap();
            let batch = (1..=120)
                .map(|s| {
                    Mutation::AppendMessage(msg(
                        &room,
                        s,
                        (s % 2 == 0).then_some(&*format!("l{s}")),
                    ))
                })
                .collect();
            s.apply(batch).await.unwrap();
            s.flush().await.unwrap();
        }
        // Reopen: everything is still there.
        let s = EmbeddedStore::open(dir.path(), FsyncPolicy::Always).unwrap();
        let loaded = s.load_room(&room, 10).await.unwrap().unwrap();
        assert_eq!(loaded.last_seq, 120);
        assert!(loaded.meta.private);
        assert_eq!(loaded.members, vec![(alice.clone(), Role::Owner)]);
        assert!(!loaded.recent_is_complete);
        assert_eq!(loaded.recent_local_ids.len(), 5);
        assert_eq!(loaded.recent_local_ids.last().unwrap().seq, 120);
        let (page, more) = s.history(&room, None, 50).await.unwrap();
        assert_eq!(page.first().unwrap().seq, 71);
        assert_eq!(page.last().unwrap().seq, 120);
        assert!(more);
        let (page, more) = s.history(&room, Some(21), 50).await.unwrap();
        assert_eq!(page.len(), 20);
        assert_eq!(page[0], msg(&room, 1, None));
        assert!(!more);
        assert_eq!(
            s.find_local_id(&room, &alice, "l40").await.unwrap(),
            Some((40, 1040))
        );
        assert_eq!(s.find_local_id(&room, &alice, "l41").await.unwrap(), None);
    }
}
