//! A deadline on every store call: wraps any [`MessageStore`] so that a call
//! that runs past the configured request timeout resolves as
//! [`StoreError::Timeout`] (for a write: outcome unknown) instead of waiting on.

use super::{
    HistoryRange, LoadedRoom, MessageState, MessageStore, Mutation, Page, PageReq, RoomMeta,
    RoomOverview, StoreError, StoreResult,
};
use crate::ids::{RoomId, UserId};
use async_trait::async_trait;
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub struct Deadlined {
    inner: Arc<dyn MessageStore>,
    timeout: Duration,
}

impl Deadlined {
    pub fn new(inner: Arc<dyn MessageStore>, timeout: Duration) -> Self {
        Self { inner, timeout }
    }

    async fn within<T>(
        &self,
        what: &str,
        f: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout(format!(
                "{what} took longer than {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

#[async_trait]
impl MessageStore for Deadlined {
    async fn apply(&self, batch: Vec<Mutation>) -> StoreResult<()> {
        self.within("apply", self.inner.apply(batch)).await
    }
    async fn load_room(&self, room: &RoomId, recent: usize) -> StoreResult<Option<LoadedRoom>> {
        self.within("load_room", self.inner.load_room(room, recent))
            .await
    }
    async fn find_local_id(
        &self,
        room: &RoomId,
        user: &UserId,
        local_id: &str,
    ) -> StoreResult<Option<(u64, u64)>> {
        self.within(
            "find_local_id",
            self.inner.find_local_id(room, user, local_id),
        )
        .await
    }
    async fn message(&self, room: &RoomId, seq: u64) -> StoreResult<Option<MessageState>> {
        self.within("message", self.inner.message(room, seq)).await
    }
    async fn msg_count_at(&self, room: &RoomId, seq: u64) -> StoreResult<u64> {
        self.within("msg_count_at", self.inner.msg_count_at(room, seq))
            .await
    }
    async fn history(
        &self,
        room: &RoomId,
        range: HistoryRange,
        limit: usize,
    ) -> StoreResult<(Vec<MessageState>, bool)> {
        self.within("history", self.inner.history(room, range, limit))
            .await
    }
    async fn events(
        &self,
        room: &RoomId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Bytes)>> {
        self.within("events", self.inner.events(room, after, upto, limit))
            .await
    }
    async fn user_rooms(&self, user: &UserId, page: PageReq) -> StoreResult<Page<RoomOverview>> {
        self.within("user_rooms", self.inner.user_rooms(user, page))
            .await
    }
    async fn member_rooms(&self, user: &UserId, page: PageReq) -> StoreResult<Page<RoomId>> {
        self.within("member_rooms", self.inner.member_rooms(user, page))
            .await
    }
    async fn public_rooms(
        &self,
        tenant: Option<&str>,
        prefix: &str,
        page: PageReq,
    ) -> StoreResult<Page<RoomMeta>> {
        self.within(
            "public_rooms",
            self.inner.public_rooms(tenant, prefix, page),
        )
        .await
    }
    async fn favorites(&self, user: &UserId) -> StoreResult<(Vec<RoomId>, Vec<UserId>)> {
        self.within("favorites", self.inner.favorites(user)).await
    }
    async fn flush(&self) -> StoreResult<()> {
        // Shutdown's final sync is allowed longer: it is the last chance to persist.
        match tokio::time::timeout(self.timeout * 10, self.inner.flush()).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout("flush".into())),
        }
    }
}
