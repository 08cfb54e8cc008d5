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
    HistoryRange, LoadedRoom, MemberState, MessageState, MessageStore, Mutation, Page, PageReq,
    RoomMeta, RoomOverview, StoreError, StoreResult, MAX_OWN_UNREAD,
};
use crate::config::FsyncPolicy;
use crate::ids::{RoomId, UserId};
use async_trait::async_trait;
use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

type Job = (Vec<Mutation>, oneshot::Sender<StoreResult<()>>);

/// Most batches folded into one commit (bounds the latency of the first in a group).
const MAX_GROUP: usize = 1024;
/// Batches queued for the committer thread (from every shard); a commit
/// waits for room beyond it (within the store deadline), so memory stays
/// bounded when the disk is slow.
const COMMIT_QUEUE: usize = 1024;

/// One keyspace per table.
pub(crate) struct Tables {
    db: Database,
    rooms: Keyspace,
    /// The directory of rooms of no tenant.
    public: Keyspace,
    /// The directory of tenants' rooms, by tenant (`keys::public_key`).
    public_by_tenant: Keyspace,
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
    commits: mpsc::Sender<Job>,
}

pub(crate) fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
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
            public_by_tenant: ks("public_by_tenant")?,
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
        move_tenant_directory(&tables)?;
        let (tx, rx) = mpsc::channel(COMMIT_QUEUE);
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
            .map_err(|e| StoreError::Backend(format!("read task: {e}")))?
    }
}

impl Tables {
    /// The directory keyspace of a room: by tenant, or of no tenant.
    fn directory(&self, room: &RoomId) -> &Keyspace {
        if room.is_scoped() {
            &self.public_by_tenant
        } else {
            &self.public
        }
    }
}

/// The marker, in `public_by_tenant`, of a data dir whose tenants' directory
/// rows are all there (no tenant's key starts with a 0 byte).
const TENANT_DIRECTORY_MOVED: &[u8] = &[0];

/// Data dirs written before the per-tenant directory index kept every public
/// room in `public`: moves the rows of tenants' rooms to `public_by_tenant`,
/// once (in one batch, then the marker; an interrupted move is redone).
fn move_tenant_directory(t: &Tables) -> StoreResult<()> {
    if t.public_by_tenant
        .contains_key(TENANT_DIRECTORY_MOVED)
        .map_err(err)?
    {
        return Ok(());
    }
    let mut b = t.db.batch();
    let mut moved = 0usize;
    for item in t.public.iter() {
        let k = item.key().map_err(err)?;
        let Some(zero) = k.iter().position(|b| *b == 0) else {
            continue;
        };
        let Some(room) = std::str::from_utf8(&k[zero + 1..])
            .ok()
            .and_then(|s| RoomId::new(s).ok())
            .filter(RoomId::is_scoped)
        else {
            continue;
        };
        let mut moved_key = keys::directory_prefix(room.tenant());
        moved_key.extend_from_slice(&k);
        b.insert(&t.public_by_tenant, moved_key, []);
        b.remove(&t.public, k.to_vec());
        moved += 1;
    }
    b.insert(&t.public_by_tenant, TENANT_DIRECTORY_MOVED, []);
    b.commit().map_err(err)?;
    if moved > 0 {
        tracing::info!(
            rows = moved,
            "moved tenants' public rooms to the per-tenant directory"
        );
    }
    Ok(())
}

fn committer(t: Arc<Tables>, mut rx: mpsc::Receiver<Job>, fsync: FsyncPolicy) {
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
            write_group(&t, &mut group, fsync)
        }))
        .unwrap_or_else(|_| Err("store write panicked".to_string()));
        for (_, done) in group.drain(..) {
            let _ = done.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Backend(e.clone())),
            });
        }
    }
    // Every sender is gone: make the journal durable before the thread ends.
    if let Err(e) = t.db.persist(PersistMode::SyncAll) {
        tracing::error!(error = %e, "final store sync failed");
    }
}

/// Rows read-modified-written within one group: the latest version of each
/// touched member and message, written once at the end of the group (a fjall
/// batch cannot read its own uncommitted writes).
#[derive(Default)]
struct Overlay {
    members: HashMap<Vec<u8>, Option<MemberState>>,
    messages: HashMap<Vec<u8>, Option<MessageState>>,
    /// Stream events written by this batch (an append and a later rewrite of
    /// one seq in one group commit: the rewrite wins).
    events: HashMap<Vec<u8>, Bytes>,
    /// The event key a `PutMessage` just found absent from the store: its
    /// `AppendEvent`, which follows in the same batch, need not look again
    /// (nothing is written to the store until the group commits).
    absent_event: Option<Vec<u8>>,
}

/// A row of the store, or `None` if it is absent.
fn read_row<T: serde::de::DeserializeOwned>(
    ks: &Keyspace,
    key: &[u8],
    what: &str,
) -> Result<Option<T>, String> {
    match ks.get(key).map_err(|e| e.to_string())? {
        Some(v) => Ok(Some(
            keys::decode::<T>(&v, what).map_err(|e| e.to_string())?,
        )),
        None => Ok(None),
    }
}

impl Overlay {
    /// The member row as this group left it (read from the store once).
    fn member<'a>(
        &'a mut self,
        t: &Tables,
        key: Vec<u8>,
    ) -> Result<&'a mut Option<MemberState>, String> {
        Ok(match self.members.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let cur = read_row(&t.members, e.key(), "member")?;
                e.insert(cur)
            }
        })
    }

    /// The message row as this group left it (read from the store once).
    fn message<'a>(
        &'a mut self,
        t: &Tables,
        key: Vec<u8>,
    ) -> Result<&'a mut Option<MessageState>, String> {
        Ok(match self.messages.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let cur = read_row(&t.messages, e.key(), "message")?;
                e.insert(cur)
            }
        })
    }

    /// A new message's row, unless the message exists (a replayed creation
    /// never undoes later edits or reactions). A message row is only ever
    /// written in the same atomic fjall batch as its event row (`PutMessage`
    /// and its `AppendEvent` travel in one `apply`), and event rows are never
    /// removed, so where the event row is absent the message row is too: the
    /// common case costs one point read (the event row, whose answer the
    /// `AppendEvent` then reuses) instead of two.
    fn put_message(&mut self, t: &Tables, m: MessageState) -> Result<(), String> {
        let key = keys::seq_key(&m.room, m.seq);
        match self.messages.entry(key) {
            Entry::Occupied(mut e) => {
                if e.get().is_none() {
                    e.insert(Some(m));
                }
            }
            Entry::Vacant(e) => {
                let stored_event = self.events.contains_key(e.key())
                    || t.events.contains_key(e.key()).map_err(|e| e.to_string())?;
                if stored_event {
                    let cur = read_row(&t.messages, e.key(), "message")?;
                    e.insert(Some(cur.unwrap_or(m)));
                } else {
                    self.absent_event = Some(e.key().clone());
                    e.insert(Some(m));
                }
            }
        }
        Ok(())
    }

    /// Whether the event row `key` exists (written by this group or stored).
    fn has_event(&self, t: &Tables, key: &[u8]) -> Result<bool, String> {
        if self.events.contains_key(key) {
            return Ok(true);
        }
        if self.absent_event.as_deref() == Some(key) {
            return Ok(false);
        }
        t.events.contains_key(key).map_err(|e| e.to_string())
    }
}

/// Records that the event at seq `at` sets `cell`; false if a later event already did.
fn newer(m: &mut MessageState, cell: &str, at: u64) -> bool {
    match m.cell_at.get(cell) {
        Some(cur) if *cur >= at => false,
        _ => {
            m.cell_at.insert(cell.to_string(), at);
            true
        }
    }
}

/// Writes a group of batches as one atomic fjall batch. The mutations are
/// taken out of `group` (moved into the overlay, not cloned); the senders stay.
fn write_group(t: &Tables, group: &mut [Job], fsync: FsyncPolicy) -> Result<(), String> {
    let mut b = t.db.batch();
    let mut o = Overlay::default();
    // fjall copies every value into its own allocation: encode them all into
    // one reused buffer.
    let mut value = Vec::with_capacity(256);
    for (mutations, _) in group.iter_mut() {
        for m in std::mem::take(mutations) {
            match m {
                Mutation::PutRoom(meta) => {
                    keys::encode_into(&mut value, &meta);
                    b.insert(&t.rooms, meta.id.as_str().as_bytes(), value.as_slice())
                }
                Mutation::PutPublic { name, room } => {
                    b.insert(t.directory(&room), keys::public_key(&name, &room), [])
                }
                Mutation::DelPublic { name, room } => {
                    b.remove(t.directory(&room), keys::public_key(&name, &room))
                }
                Mutation::PutMember {
                    room,
                    user,
                    role,
                    joined_at,
                } => {
                    let slot = o.member(t, keys::room_user_key(&room, &user))?;
                    match slot {
                        // A replay: the read state stays as it is.
                        Some(m) => {
                            m.role = role;
                            m.joined_at = joined_at;
                        }
                        None => *slot = Some(MemberState::new(role, joined_at)),
                    }
                    b.insert(&t.user_rooms, keys::user_room_key(&user, &room), []);
                }
                Mutation::SetRole { room, user, role } => {
                    if let Some(m) = o.member(t, keys::room_user_key(&room, &user))? {
                        m.role = role;
                    }
                }
                Mutation::DelMember { room, user } => {
                    *o.member(t, keys::room_user_key(&room, &user))? = None;
                    b.remove(&t.user_rooms, keys::user_room_key(&user, &room));
                }
                Mutation::SetRead {
                    room,
                    user,
                    read_seq,
                    read_n,
                } => {
                    if let Some(m) = o.member(t, keys::room_user_key(&room, &user))? {
                        if read_seq > m.read_seq {
                            m.read_seq = read_seq;
                            m.read_n = read_n;
                        }
                        let r = m.read_seq;
                        m.own_unread.retain(|s| *s > r);
                    }
                }
                Mutation::SetDelivered { room, user, seq } => {
                    if let Some(m) = o.member(t, keys::room_user_key(&room, &user))? {
                        m.delivered_seq = m.delivered_seq.max(seq);
                    }
                }
                Mutation::AddOwnUnread { room, user, seq } => {
                    if let Some(m) = o.member(t, keys::room_user_key(&room, &user))? {
                        if seq > m.read_seq
                            && !m.own_unread.contains(&seq)
                            && m.own_unread.len() < MAX_OWN_UNREAD
                        {
                            let at = m.own_unread.partition_point(|s| *s < seq);
                            m.own_unread.insert(at, seq);
                        }
                    }
                }
                Mutation::PutBan { room, user } => {
                    b.insert(&t.bans, keys::room_user_key(&room, &user), [])
                }
                Mutation::DelBan { room, user } => {
                    b.remove(&t.bans, keys::room_user_key(&room, &user))
                }
                // A replayed append never brings back a text that a later
                // edit or delete rewrote (the event is already there).
                Mutation::AppendEvent { room, seq, payload } => {
                    let key = keys::seq_key(&room, seq);
                    if !o.has_event(t, &key)? {
                        o.events.insert(key, payload);
                    }
                }
                // One writer applies a room's commits in order, so the latest
                // rewrite is also the last one applied.
                Mutation::RewriteEvent {
                    room, seq, payload, ..
                } => {
                    o.events.insert(keys::seq_key(&room, seq), payload);
                }
                Mutation::PutMessage(m) => o.put_message(t, *m)?,
                Mutation::EditMessage {
                    room,
                    seq,
                    body,
                    edited_at,
                    at,
                } => {
                    if let Some(m) = o.message(t, keys::seq_key(&room, seq))? {
                        // The edit event itself, for later redactions (in seq order).
                        if let Err(i) = m.edits.binary_search_by_key(&at, |e| e.0) {
                            m.edits.insert(i, (at, edited_at));
                        }
                        if !m.deleted && newer(m, "b", at) {
                            m.body = body;
                            m.edited_at = Some(edited_at);
                        }
                    }
                }
                Mutation::DeleteMessage {
                    room,
                    seq,
                    sender,
                    at,
                } => {
                    if let Some(m) = o.message(t, keys::seq_key(&room, seq))? {
                        newer(m, "d", at);
                        m.deleted = true;
                        m.body.clear();
                        m.attachments.clear();
                        m.reactions.clear();
                    }
                    b.insert(
                        &t.deletions,
                        keys::seq_key(&room, seq),
                        sender.as_str().as_bytes(),
                    );
                }
                Mutation::React {
                    room,
                    seq,
                    emoji,
                    user,
                    on,
                    at,
                } => {
                    if let Some(m) = o.message(t, keys::seq_key(&room, seq))? {
                        let cell = format!("r\0{emoji}\0{user}");
                        if m.deleted || !newer(m, &cell, at) {
                            continue;
                        }
                        if on {
                            let users = m.reactions.entry(emoji.clone()).or_default();
                            if !users.contains(&user) {
                                // Reaction order is the order of the reactions' seqs.
                                users.push(user.clone());
                                let at_of = |u: &UserId| {
                                    m.cell_at
                                        .get(&format!("r\0{emoji}\0{u}"))
                                        .copied()
                                        .unwrap_or(0)
                                };
                                if let Some(users) = m.reactions.get(&emoji) {
                                    let mut sorted = users.clone();
                                    sorted.sort_by_key(|u| at_of(u));
                                    m.reactions.insert(emoji.clone(), sorted);
                                }
                            }
                        } else if let Some(users) = m.reactions.get_mut(&emoji) {
                            users.retain(|u| *u != user);
                            if users.is_empty() {
                                m.reactions.remove(&emoji);
                            }
                        }
                    }
                }
                Mutation::PutLocalId {
                    room,
                    user,
                    local_id,
                    seq,
                    ts,
                } => {
                    keys::encode_into(&mut value, &(seq, ts));
                    b.insert(
                        &t.local_ids,
                        keys::local_id_key(&room, &user, &local_id),
                        value.as_slice(),
                    )
                }
                Mutation::PutInvite(inv) => {
                    keys::encode_into(&mut value, &inv);
                    b.insert(
                        &t.invites,
                        keys::invite_key(&inv.room, &inv.code),
                        value.as_slice(),
                    )
                }
                Mutation::PutFavorite {
                    user,
                    room,
                    peer,
                    on,
                } => {
                    let k = keys::favorite_key(&user, room.as_ref(), peer.as_ref());
                    if on {
                        b.insert(&t.favorites, k, []);
                    } else {
                        b.remove(&t.favorites, k);
                    }
                }
            }
        }
    }
    for (k, v) in o.members {
        match v {
            Some(m) => {
                keys::encode_into(&mut value, &m);
                b.insert(&t.members, k, value.as_slice())
            }
            None => b.remove(&t.members, k),
        }
    }
    for (k, v) in o.events {
        b.insert(&t.events, k, v.as_ref());
    }
    for (k, v) in o.messages {
        if let Some(m) = v {
            keys::encode_into(&mut value, &m);
            b.insert(&t.messages, k, value.as_slice());
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
            .await
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
        let room = room.clone();
        self.read(move |t| match t.local_ids.get(key).map_err(err)? {
            Some(v) => {
                let (seq, ts) = keys::decode::<(u64, u64)>(&v, "local_id")?;
                // Only a committed send counts: its event row is the commit point.
                let committed = t
                    .events
                    .contains_key(keys::seq_key(&room, seq))
                    .map_err(err)?;
                Ok(committed.then_some((seq, ts)))
            }
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
        range: HistoryRange,
        limit: usize,
    ) -> StoreResult<(Vec<MessageState>, bool)> {
        let room = room.clone();
        self.read(move |t| read::history(t, &room, range, limit))
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

    async fn user_rooms(&self, user: &UserId, page: PageReq) -> StoreResult<Page<RoomOverview>> {
        let user = user.clone();
        self.read(move |t| read::user_rooms(t, &user, page)).await
    }

    async fn member_rooms(&self, user: &UserId, page: PageReq) -> StoreResult<Page<RoomId>> {
        let user = user.clone();
        self.read(move |t| read::member_rooms(t, &user, page)).await
    }

    async fn public_rooms(
        &self,
        tenant: Option<&str>,
        prefix: &str,
        page: PageReq,
    ) -> StoreResult<Page<RoomMeta>> {
        let prefix = prefix.to_lowercase();
        let tenant = tenant.map(str::to_string);
        self.read(move |t| read::public_rooms(t, tenant.as_deref(), &prefix, page))
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
        let probe = RoomId::new("ready-probe").map_err(StoreError::Backend)?;
        self.message(&probe, 0).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Cursor, PageReq};

    /// A data dir written before the per-tenant index had tenants' rows in
    /// `public`: opening it moves them, once.
    #[tokio::test]
    async fn tenants_directory_rows_move_to_their_index_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let room = RoomId::new("acme\u{1f}old").unwrap();
        let plain = RoomId::new("plain").unwrap();
        let meta = |id: &RoomId, name: &str| {
            Mutation::PutRoom(RoomMeta {
                id: id.clone(),
                name: name.into(),
                description: String::new(),
                private: false,
                kind: crate::store::RoomKind::Room,
                created_by: UserId::new("o").unwrap(),
                created_at: 1,
                deleted: false,
                members: 1,
            })
        };
        {
            let store = EmbeddedStore::open(dir.path(), FsyncPolicy::Never).unwrap();
            store
                .apply(vec![meta(&room, "Old Room"), meta(&plain, "Plain Room")])
                .await
                .unwrap();
            // The old layout, as the previous version wrote it.
            let t = &store.tables;
            for (name, id) in [("old room", &room), ("plain room", &plain)] {
                let mut k = name.as_bytes().to_vec();
                k.push(0);
                k.extend_from_slice(id.as_str().as_bytes());
                t.public.insert(k, []).unwrap();
            }
            t.public_by_tenant.remove(TENANT_DIRECTORY_MOVED).unwrap();
            let first = PageReq::first(10);
            let none = store.public_rooms(Some("acme"), "", first.clone()).await;
            assert!(none.unwrap().items.is_empty(), "not moved yet");
            move_tenant_directory(t).unwrap();
            let acme = store.public_rooms(Some("acme"), "old", first.clone()).await;
            assert_eq!(acme.unwrap().items[0].id, room);
            let rest = store.public_rooms(None, "", first).await.unwrap();
            assert_eq!(
                rest.items.iter().map(|m| &m.id).collect::<Vec<_>>(),
                [&plain]
            );
            store.flush().await.unwrap();
        }
        // Reopened: nothing more to move, the same listings.
        let store = EmbeddedStore::open(dir.path(), FsyncPolicy::Never).unwrap();
        let acme = store
            .public_rooms(Some("acme"), "", PageReq::first(10))
            .await
            .unwrap();
        assert_eq!(acme.items.len(), 1);
    }

    /// `PutMessage` looks up the event row, not the message row: replays in
    /// the same group and in later groups never undo an edit, the original
    /// event is appended once, and an event row without a message row (a
    /// rewrite that landed alone) still gets its message row.
    #[tokio::test]
    async fn message_creation_is_decided_by_the_event_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), FsyncPolicy::Never).unwrap();
        let room = RoomId::new("r").unwrap();
        let state = |seq: u64, body: &str| MessageState {
            room: room.clone(),
            seq,
            n: seq,
            from: UserId::new("u").unwrap(),
            body: body.into(),
            ts: 1,
            local_id: None,
            kind: Default::default(),
            attachments: Vec::new(),
            reply_to: None,
            edited_at: None,
            deleted: false,
            reactions: Default::default(),
            cell_at: Default::default(),
            edits: Vec::new(),
        };
        let send = |seq: u64, payload: &'static str| {
            vec![
                Mutation::PutMessage(Box::new(state(seq, "original"))),
                Mutation::AppendEvent {
                    room: room.clone(),
                    seq,
                    payload: Bytes::from_static(payload.as_bytes()),
                },
            ]
        };
        let edit = Mutation::EditMessage {
            room: room.clone(),
            seq: 1,
            body: "edited".into(),
            edited_at: 2,
            at: 2,
        };
        // One group: the send, its edit, the send again.
        let mut batch = send(1, "first");
        batch.push(edit);
        batch.extend(send(1, "replayed"));
        store.apply(batch).await.unwrap();
        // A later group: the send again.
        store.apply(send(1, "late")).await.unwrap();
        let m = store.message(&room, 1).await.unwrap().unwrap();
        assert_eq!(m.body, "edited");
        let events = store.events(&room, 0, 10, 10).await.unwrap();
        assert_eq!(events, vec![(1, Bytes::from_static(b"first"))]);
        // An event row alone (no message row): the creation still lands.
        store
            .apply(vec![Mutation::RewriteEvent {
                room: room.clone(),
                seq: 2,
                payload: Bytes::from_static(b"rewritten"),
                at: 3,
            }])
            .await
            .unwrap();
        store.apply(send(2, "second")).await.unwrap();
        assert_eq!(
            store.message(&room, 2).await.unwrap().unwrap().body,
            "original"
        );
        let events = store.events(&room, 1, 10, 10).await.unwrap();
        assert_eq!(events, vec![(2, Bytes::from_static(b"rewritten"))]);
    }

    #[tokio::test]
    async fn directory_reads_never_panic_on_key_sized_input() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), FsyncPolicy::Never).unwrap();
        // fjall panics on keys over 65,535 bytes; the store answers instead.
        let page = |after: Option<String>| PageReq {
            after: after.map(Cursor),
            limit: 10,
        };
        let rooms = store
            .public_rooms(None, &"a".repeat(70_000), page(None))
            .await
            .unwrap();
        assert!(rooms.items.is_empty() && rooms.next.is_none());
        // A cursor of the right form whose key is longer than fjall allows.
        let long = crate::store::make_cursor("e", "dir", &vec![b'a'; 70_000]);
        assert!(store
            .public_rooms(None, "", page(Some(long.0)))
            .await
            .is_err());
        assert!(store
            .public_rooms(Some("acme"), "", page(Some("ab".repeat(70_000))))
            .await
            .is_err());
        store.public_rooms(None, "a", page(None)).await.unwrap();
        store
            .public_rooms(Some("acme"), &"a".repeat(70_000), page(None))
            .await
            .unwrap();
    }
}
