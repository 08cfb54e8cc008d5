//! Cross-node fan-out over Redis pub/sub: the [`Cluster`] the routers use when
//! several nodes share one Redis.
//!
//! - Seqs: `lua/seq.lua` allocates each room's next seq atomically (one round
//!   trip per stream event), so seqs are unique and increasing across nodes.
//! - Publishing: each commit batch of a room is one PUBLISH (SPUBLISH on a
//!   Redis Cluster: sharded pub/sub, see `conn`) on `rc:room:{id}`,
//!   `[node u64][kind u8][payload]`. Publications queue in order on one task
//!   that pipelines them and retries while Redis is away, so an acknowledged
//!   message still reaches other nodes once Redis is back.
//! - Subscriptions: a node subscribes to a room's channel only while it has
//!   local subscribers; (un)subscribe requests are batched into one command.
//!   The connection re-subscribes by itself after a reconnect.
//! - Presence changes travel on `rc:presence`, and so do the server API's
//!   disconnects of a user.
//!
//! Receivers reorder by seq (see `Room::deliver`): a seq allocated by a node
//! that died before committing leaves a gap that is skipped after
//! `--gap-timeout-ms`; history never shows it.

use super::{timed, RedisError};
use super::{Conn, Target};
use crate::ids::{RoomId, UserId};
use crate::presence::UserPresence;
use crate::router::cluster::{Cluster, Notice};
use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use redis::{PushInfo, PushKind, Script, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

const KIND_EVENTS: u8 = 0;
const KIND_EPHEMERAL: u8 = 1;
/// On the presence channel: the server API disconnects a user (body: the user id).
/// Nodes without it ignore it (the body is not presence JSON).
const KIND_DISCONNECT: u8 = 2;
const PRESENCE_CHANNEL: &str = "rc:presence";
/// Publications kept while Redis is away; older ones are dropped past this (and logged).
const MAX_QUEUED: usize = 100_000;

/// What arrives from other nodes.
pub enum Inbound {
    Room {
        room: RoomId,
        ephemeral: bool,
        payload: Bytes,
    },
    Presence(UserPresence),
    /// Close every connection of this user (the server API's disconnect).
    Disconnect(UserId),
}

enum SubOp {
    Subscribe(String, oneshot::Sender<Result<(), String>>),
    Unsubscribe(String),
}

pub struct RedisBus {
    conn: Conn,
    node: u64,
    seq_script: Script,
    publish: mpsc::UnboundedSender<(String, Bytes)>,
    subs: mpsc::UnboundedSender<SubOp>,
    offline: Option<super::offline::OfflineNotifier>,
}

fn channel(room: &RoomId) -> String {
    format!("rc:room:{room}")
}

impl RedisBus {
    /// Connects the pub/sub connection and starts the publisher, the subscription
    /// manager and the receiver. Inbound traffic goes to `inbound`.
    pub async fn start(
        target: &Target,
        node: u64,
        offline: Option<super::offline::OfflineNotifier>,
        inbound: mpsc::UnboundedSender<Inbound>,
        shutdown: CancellationToken,
    ) -> Result<Arc<RedisBus>, RedisError> {
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let mut conn = super::connect(target, Some(push_tx)).await?;
        timed(conn.subscribe(&[PRESENCE_CHANNEL.to_string()])).await?;
        let (publish, publish_rx) = mpsc::unbounded_channel();
        let (subs, subs_rx) = mpsc::unbounded_channel();
        tokio::spawn(publisher(conn.clone(), publish_rx, shutdown.clone()));
        tokio::spawn(subscriptions(conn.clone(), subs_rx));
        tokio::spawn(receiver(push_rx, node, inbound));
        Ok(Arc::new(RedisBus {
            conn,
            node,
            seq_script: Script::new(include_str!("lua/seq.lua")),
            publish,
            subs,
            offline,
        }))
    }

    fn envelope(&self, kind: u8, payload: &[u8]) -> Bytes {
        let mut b = BytesMut::with_capacity(9 + payload.len());
        b.put_u64(self.node);
        b.put_u8(kind);
        b.extend_from_slice(payload);
        b.freeze()
    }

    /// Asks every other node to close the connections of `user`.
    pub fn publish_disconnect(&self, user: &UserId) {
        let _ = self.publish.send((
            PRESENCE_CHANNEL.to_string(),
            self.envelope(KIND_DISCONNECT, user.as_str().as_bytes()),
        ));
    }

    /// Tells every other node about a presence change.
    pub fn publish_presence(&self, change: &UserPresence) {
        if let Ok(json) = serde_json::to_vec(change) {
            let _ = self.publish.send((
                PRESENCE_CHANNEL.to_string(),
                self.envelope(KIND_EPHEMERAL, &json),
            ));
        }
    }
}

#[async_trait]
impl Cluster for RedisBus {
    async fn alloc_seq(&self, room: &RoomId, floor: u64) -> Result<u64, String> {
        let mut conn = self.conn.clone();
        let mut call = self.seq_script.key(format!("rc:seq:{{{room}}}"));
        call.arg(floor);
        timed(call.invoke_async::<u64>(&mut conn))
            .await
            .map_err(|e| e.to_string())
    }

    async fn current_seq(&self, room: &RoomId) -> Result<u64, String> {
        let mut conn = self.conn.clone();
        let v: Option<u64> = timed(
            redis::cmd("GET")
                .arg(format!("rc:seq:{{{room}}}"))
                .query_async(&mut conn),
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(v.unwrap_or(0))
    }

    fn publish_events(&self, room: &RoomId, events: Bytes) {
        let _ = self
            .publish
            .send((channel(room), self.envelope(KIND_EVENTS, &events)));
    }

    fn publish_ephemeral(&self, room: &RoomId, frames: Bytes) {
        let _ = self
            .publish
            .send((channel(room), self.envelope(KIND_EPHEMERAL, &frames)));
    }

    async fn subscribe(&self, room: &RoomId) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.subs
            .send(SubOp::Subscribe(channel(room), tx))
            .map_err(|_| "bus stopped".to_string())?;
        rx.await.map_err(|_| "bus stopped".to_string())?
    }

    fn unsubscribe(&self, room: &RoomId) {
        let _ = self.subs.send(SubOp::Unsubscribe(channel(room)));
    }

    fn notify_offline(&self, room: &RoomId, members: Vec<UserId>, messages: Vec<Notice>) {
        if let Some(o) = &self.offline {
            o.notify(room.clone(), members, messages);
        }
    }
}

/// Publishes in order, pipelining what is queued; retries while Redis is away.
async fn publisher(
    mut conn: Conn,
    mut rx: mpsc::UnboundedReceiver<(String, Bytes)>,
    shutdown: CancellationToken,
) {
    let mut batch: Vec<(String, Bytes)> = Vec::new();
    let mut backoff = Duration::from_millis(10);
    loop {
        if batch.is_empty() {
            tokio::select! {
                n = rx.recv_many(&mut batch, 256) => if n == 0 { return },
                _ = shutdown.cancelled() => return,
            }
        }
        let publish = conn.publish_command();
        let cmds: Vec<redis::Cmd> = batch
            .iter()
            .map(|(ch, payload)| {
                let mut c = redis::cmd(publish);
                c.arg(ch).arg(payload.as_ref());
                c
            })
            .collect();
        match timed(conn.run_all(&cmds)).await {
            Ok(_) => {
                let bytes = batch.iter().map(|(_, p)| p.len()).sum();
                crate::metrics::bus_published(batch.len(), bytes);
                batch.clear();
                backoff = Duration::from_millis(10);
            }
            Err(e) => {
                tracing::warn!(error = %e, queued = batch.len(), "publish failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                // Keep what arrived meanwhile behind the retried batch, within a bound.
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                if batch.len() > MAX_QUEUED {
                    let drop = batch.len() - MAX_QUEUED;
                    tracing::error!(
                        dropped = drop,
                        "redis away too long: dropping the oldest publications"
                    );
                    batch.drain(..drop);
                }
            }
        }
    }
}

/// Batches (un)subscribe requests into one command each.
async fn subscriptions(mut conn: Conn, mut rx: mpsc::UnboundedReceiver<SubOp>) {
    let mut ops = Vec::new();
    while rx.recv_many(&mut ops, 512).await > 0 {
        let mut subscribe = Vec::new();
        let mut waiters = Vec::new();
        let mut unsubscribe = Vec::new();
        for op in ops.drain(..) {
            match op {
                SubOp::Subscribe(ch, tx) => {
                    unsubscribe.retain(|c| c != &ch);
                    subscribe.push(ch);
                    waiters.push(tx);
                }
                SubOp::Unsubscribe(ch) => {
                    subscribe.retain(|c| c != &ch);
                    unsubscribe.push(ch);
                }
            }
        }
        if !unsubscribe.is_empty() {
            if let Err(e) = timed(conn.unsubscribe(&unsubscribe)).await {
                tracing::warn!(error = %e, "unsubscribe failed");
            }
        }
        let result = if subscribe.is_empty() {
            Ok(())
        } else {
            timed(conn.subscribe(&subscribe))
                .await
                .map_err(|e| e.to_string())
        };
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

/// Routes pub/sub messages from other nodes.
async fn receiver(
    mut rx: mpsc::UnboundedReceiver<PushInfo>,
    node: u64,
    inbound: mpsc::UnboundedSender<Inbound>,
) {
    while let Some(push) = rx.recv().await {
        // Classic pub/sub on a single Redis, sharded pub/sub on a cluster.
        if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
            if push.kind == PushKind::Disconnection {
                tracing::warn!("redis pub/sub connection lost; re-subscribing when it is back");
            }
            continue;
        }
        let (Some(Value::BulkString(ch)), Some(Value::BulkString(payload))) =
            (push.data.first(), push.data.get(1))
        else {
            continue;
        };
        if payload.len() < 9 {
            continue;
        }
        let from = u64::from_be_bytes([
            payload[0], payload[1], payload[2], payload[3], payload[4], payload[5], payload[6],
            payload[7],
        ]);
        if from == node {
            continue;
        }
        crate::metrics::bus_received(payload.len());
        let kind = payload[8];
        let body = Bytes::copy_from_slice(&payload[9..]);
        let Ok(ch) = std::str::from_utf8(ch) else {
            continue;
        };
        let msg = if ch == PRESENCE_CHANNEL && kind == KIND_DISCONNECT {
            match std::str::from_utf8(&body)
                .ok()
                .and_then(|u| UserId::new(u).ok())
            {
                Some(user) => Inbound::Disconnect(user),
                None => continue,
            }
        } else if ch == PRESENCE_CHANNEL {
            match serde_json::from_slice::<UserPresence>(&body) {
                Ok(p) => Inbound::Presence(p),
                Err(_) => continue,
            }
        } else if let Some(room) = ch
            .strip_prefix("rc:room:")
            .and_then(|r| RoomId::new(r).ok())
        {
            Inbound::Room {
                room,
                ephemeral: kind == KIND_EPHEMERAL,
                payload: body,
            }
        } else {
            continue;
        };
        if inbound.send(msg).is_err() {
            return;
        }
    }
}
