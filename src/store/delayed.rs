//! TEST ONLY: a store wrapper that makes the wrapped store slow, so that the
//! integration tests can show what a slow database does to the server (the
//! shard loop keeps serving other rooms while a read is out; commits push
//! back). Enabled by the hidden `--test-store-read-delay-ms` and
//! `--test-store-write-delay-ms` (CONTRIBUTING.md, "Test-only settings");
//! never used otherwise.
//!
//! Delayed: every `apply` (by the write delay) and the reads a loaded room's
//! commands make (`message`, `find_local_id`, `msg_count_at`, `history`,
//! `events`, by the read delay). Not delayed: `load_room` and the per-user and
//! directory reads, so that test set-up stays quick. It sits inside the
//! deadline wrapper ([`super::deadline::Deadlined`]): a delay past
//! `--store-timeout-ms` times out like a slow database would. The delays can
//! be changed while the server runs ([`Delays`], from
//! `Server::test_store_delays`), so a test can make the store slow after its
//! set-up and fast again before the retries.

use super::{
    HistoryRange, LoadedRoom, MessageState, MessageStore, Mutation, Page, PageReq, RoomMeta,
    RoomOverview, StoreResult,
};
use crate::ids::{RoomId, UserId};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The current read and write delays of a [`Delayed`] store, in ms; clones
/// share them. TEST ONLY.
#[derive(Clone, Debug, Default)]
pub struct Delays {
    read_ms: Arc<AtomicU64>,
    write_ms: Arc<AtomicU64>,
}

impl Delays {
    pub fn new(read: Duration, write: Duration) -> Self {
        let d = Self::default();
        d.set_read(read);
        d.set_write(write);
        d
    }

    /// The delay of the reads that start from now on.
    pub fn set_read(&self, delay: Duration) {
        self.read_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// The delay of the commits that start from now on.
    pub fn set_write(&self, delay: Duration) {
        self.write_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    fn read(&self) -> Duration {
        Duration::from_millis(self.read_ms.load(Ordering::Relaxed))
    }

    fn write(&self) -> Duration {
        Duration::from_millis(self.write_ms.load(Ordering::Relaxed))
    }
}

pub struct Delayed {
    inner: Arc<dyn MessageStore>,
    delays: Delays,
}

impl Delayed {
    pub fn new(inner: Arc<dyn MessageStore>, delays: Delays) -> Self {
        Self { inner, delays }
    }

    async fn read_delay(&self) {
        let d = self.delays.read();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

#[async_trait]
impl MessageStore for Delayed {
    async fn apply(&self, batch: Vec<Mutation>) -> StoreResult<()> {
        let d = self.delays.write();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
        self.inner.apply(batch).await
    }
    async fn load_room(&self, room: &RoomId, recent: usize) -> StoreResult<Option<LoadedRoom>> {
        self.inner.load_room(room, recent).await
    }
    async fn find_local_id(
        &self,
        room: &RoomId,
        user: &UserId,
        local_id: &str,
    ) -> StoreResult<Option<(u64, u64)>> {
        self.read_delay().await;
        self.inner.find_local_id(room, user, local_id).await
    }
    async fn message(&self, room: &RoomId, seq: u64) -> StoreResult<Option<MessageState>> {
        self.read_delay().await;
        self.inner.message(room, seq).await
    }
    async fn msg_count_at(&self, room: &RoomId, seq: u64) -> StoreResult<u64> {
        self.read_delay().await;
        self.inner.msg_count_at(room, seq).await
    }
    async fn history(
        &self,
        room: &RoomId,
        range: HistoryRange,
        limit: usize,
    ) -> StoreResult<(Vec<MessageState>, bool)> {
        self.read_delay().await;
        self.inner.history(room, range, limit).await
    }
    async fn events(
        &self,
        room: &RoomId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Bytes)>> {
        self.read_delay().await;
        self.inner.events(room, after, upto, limit).await
    }
    async fn user_rooms(&self, user: &UserId, page: PageReq) -> StoreResult<Page<RoomOverview>> {
        self.inner.user_rooms(user, page).await
    }
    async fn member_rooms(&self, user: &UserId, page: PageReq) -> StoreResult<Page<RoomId>> {
        self.inner.member_rooms(user, page).await
    }
    async fn public_rooms(
        &self,
        tenant: Option<&str>,
        prefix: &str,
        page: PageReq,
    ) -> StoreResult<Page<RoomMeta>> {
        self.inner.public_rooms(tenant, prefix, page).await
    }
    async fn favorites(&self, user: &UserId) -> StoreResult<(Vec<RoomId>, Vec<UserId>)> {
        self.inner.favorites(user).await
    }
    async fn flush(&self) -> StoreResult<()> {
        self.inner.flush().await
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
}
