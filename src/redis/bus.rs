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
//! - Replay after a reconnect: a publication made while this node's pub/sub
//!   connection was down, or in the moment before it re-subscribed (another
//!   node's retried publications can reach a restarted Redis first), is never
//!   delivered to it by pub/sub. So every room publication of committed events
//!   is also appended to a short per-room log (`rc:log:{room}`, a stream capped
//!   at about [`LOG_MAXLEN`] entries that expires [`LOG_TTL_MS`] after the last
//!   one), written *before* the PUBLISH. After a disconnection the node waits
//!   for Redis, subscribes again to every room channel it needs, and only then
//!   reads those rooms' logs: a publication is either in the log by the time
//!   it is read, or published after the subscription and so received live.
//!   Duplicates are harmless, receivers drop seqs they already delivered.
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
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

const KIND_EVENTS: u8 = 0;
const KIND_EPHEMERAL: u8 = 1;
/// On the presence channel: the server API disconnects a user (body: the user id).
/// Nodes without it ignore it (the body is not presence JSON).
const KIND_DISCONNECT: u8 = 2;
const PRESENCE_CHANNEL: &str = "rc:presence";
/// Publications kept while Redis is away; older ones are dropped past this (and logged).
const MAX_QUEUED: usize = 100_000;
/// Entries kept (approximately, `MAXLEN ~`) in a room's replay log.
pub const LOG_MAXLEN: usize = 256;
/// A room's replay log expires this long after its last publication: it only
/// has to cover a reconnect, and must not keep idle rooms' traffic in Redis.
pub const LOG_TTL_MS: u64 = 120_000;
/// Rooms whose logs are read in one round trip during a replay.
const REPLAY_CHUNK: usize = 64;

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

/// One publication: its channel, the room log it is also appended to (committed
/// events only), and the enveloped payload.
struct Publication {
    channel: String,
    log: Option<String>,
    payload: Bytes,
}

enum SubOp {
    Subscribe(String, oneshot::Sender<Result<(), String>>),
    Unsubscribe(String),
}

pub struct RedisBus {
    conn: Conn,
    node: u64,
    seq_script: Script,
    publish: mpsc::UnboundedSender<Publication>,
    subs: mpsc::UnboundedSender<SubOp>,
    offline: Option<super::offline::OfflineNotifier>,
}

fn channel(room: &RoomId) -> String {
    format!("rc:room:{room}")
}

/// The replay log of the room whose channel is `channel` (hash-tagged, so one
/// slot on a cluster).
fn log_key(channel: &str) -> Option<String> {
    channel
        .strip_prefix("rc:room:")
        .map(|room| format!("rc:log:{{{room}}}"))
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
        let subscribed = Arc::new(Mutex::new(HashSet::new()));
        let replay = Arc::new(Notify::new());
        tokio::spawn(publisher(conn.clone(), publish_rx, shutdown.clone()));
        tokio::spawn(subscriptions(conn.clone(), subs_rx, subscribed.clone()));
        tokio::spawn(replayer(
            conn.clone(),
            subscribed,
            replay.clone(),
            node,
            inbound.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(receiver(push_rx, node, inbound, replay));
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
        let _ = self.publish.send(Publication {
            channel: PRESENCE_CHANNEL.to_string(),
            log: None,
            payload: self.envelope(KIND_DISCONNECT, user.as_str().as_bytes()),
        });
    }

    /// Tells every other node about a presence change.
    pub fn publish_presence(&self, change: &UserPresence) {
        if let Ok(json) = serde_json::to_vec(change) {
            let _ = self.publish.send(Publication {
                channel: PRESENCE_CHANNEL.to_string(),
                log: None,
                payload: self.envelope(KIND_EPHEMERAL, &json),
            });
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
        let channel = channel(room);
        let _ = self.publish.send(Publication {
            log: log_key(&channel),
            channel,
            payload: self.envelope(KIND_EVENTS, &events),
        });
    }

    fn publish_ephemeral(&self, room: &RoomId, frames: Bytes) {
        let _ = self.publish.send(Publication {
            channel: channel(room),
            log: None,
            payload: self.envelope(KIND_EPHEMERAL, &frames),
        });
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

/// The commands of a batch of publications: each log append before its
/// PUBLISH. On a single Redis that is one pipeline, in order; on a cluster the
/// commands of one round go out concurrently, so the appends are a first round
/// and the publishes a second one.
fn publish_rounds(conn: &Conn, batch: &[Publication]) -> Vec<Vec<redis::Cmd>> {
    let publish = conn.publish_command();
    let (mut appends, mut publishes) = (Vec::new(), Vec::new());
    for p in batch {
        if let Some(log) = &p.log {
            let mut xadd = redis::cmd("XADD");
            xadd.arg(log)
                .arg("MAXLEN")
                .arg("~")
                .arg(LOG_MAXLEN)
                .arg("*")
                .arg("e")
                .arg(p.payload.as_ref());
            let mut expire = redis::cmd("PEXPIRE");
            expire.arg(log).arg(LOG_TTL_MS);
            appends.push(xadd);
            appends.push(expire);
        }
        let mut c = redis::cmd(publish);
        c.arg(&p.channel).arg(p.payload.as_ref());
        if conn.is_cluster() {
            publishes.push(c);
        } else {
            // One pipeline: the appends of this publication go right before it.
            appends.push(c);
        }
    }
    if publishes.is_empty() {
        vec![appends]
    } else {
        vec![appends, publishes]
    }
}

async fn run_rounds(conn: &mut Conn, rounds: &[Vec<redis::Cmd>]) -> Result<(), RedisError> {
    for round in rounds.iter().filter(|r| !r.is_empty()) {
        timed(conn.run_all(round)).await?;
    }
    Ok(())
}

/// Publishes in order, pipelining what is queued; retries while Redis is away.
async fn publisher(
    mut conn: Conn,
    mut rx: mpsc::UnboundedReceiver<Publication>,
    shutdown: CancellationToken,
) {
    let mut batch: Vec<Publication> = Vec::new();
    let mut backoff = Duration::from_millis(10);
    loop {
        if batch.is_empty() {
            tokio::select! {
                n = rx.recv_many(&mut batch, 256) => if n == 0 { return },
                _ = shutdown.cancelled() => return,
            }
        }
        let rounds = publish_rounds(&conn, &batch);
        match run_rounds(&mut conn, &rounds).await {
            Ok(()) => {
                let bytes = batch.iter().map(|p| p.payload.len()).sum();
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

/// Batches (un)subscribe requests into one command each; keeps the set of room
/// channels this node needs, for the replay after a reconnect.
async fn subscriptions(
    mut conn: Conn,
    mut rx: mpsc::UnboundedReceiver<SubOp>,
    subscribed: Arc<Mutex<HashSet<String>>>,
) {
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
        if let Ok(mut set) = subscribed.lock() {
            for ch in &unsubscribe {
                set.remove(ch);
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
        if result.is_ok() {
            if let Ok(mut set) = subscribed.lock() {
                set.extend(subscribe);
            }
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

/// Routes pub/sub messages from other nodes; a lost connection starts a replay.
async fn receiver(
    mut rx: mpsc::UnboundedReceiver<PushInfo>,
    node: u64,
    inbound: mpsc::UnboundedSender<Inbound>,
    replay: Arc<Notify>,
) {
    while let Some(push) = rx.recv().await {
        // Classic pub/sub on a single Redis, sharded pub/sub on a cluster.
        if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
            if push.kind == PushKind::Disconnection {
                tracing::warn!("redis pub/sub connection lost; re-subscribing and replaying room logs when it is back");
                replay.notify_one();
            }
            continue;
        }
        let (Some(Value::BulkString(ch)), Some(Value::BulkString(payload))) =
            (push.data.first(), push.data.get(1))
        else {
            continue;
        };
        let Ok(ch) = std::str::from_utf8(ch) else {
            continue;
        };
        if let Some(msg) = route(ch, payload, node) {
            if inbound.send(msg).is_err() {
                return;
            }
        }
    }
}

/// What a publication on `ch` means for this node (None: its own, or not ours).
fn route(ch: &str, payload: &[u8], node: u64) -> Option<Inbound> {
    if payload.len() < 9 {
        return None;
    }
    let from = u64::from_be_bytes([
        payload[0], payload[1], payload[2], payload[3], payload[4], payload[5], payload[6],
        payload[7],
    ]);
    if from == node {
        return None;
    }
    crate::metrics::bus_received(payload.len());
    let kind = payload[8];
    let body = Bytes::copy_from_slice(&payload[9..]);
    if ch == PRESENCE_CHANNEL && kind == KIND_DISCONNECT {
        std::str::from_utf8(&body)
            .ok()
            .and_then(|u| UserId::new(u).ok())
            .map(Inbound::Disconnect)
    } else if ch == PRESENCE_CHANNEL {
        serde_json::from_slice::<UserPresence>(&body)
            .ok()
            .map(Inbound::Presence)
    } else {
        let room = ch
            .strip_prefix("rc:room:")
            .and_then(|r| RoomId::new(r).ok())?;
        Some(Inbound::Room {
            room,
            ephemeral: kind == KIND_EPHEMERAL,
            payload: body,
        })
    }
}

/// After each lost connection: waits for Redis, subscribes again to every room
/// channel this node needs, then reads those rooms' replay logs (see the
/// module docs for why in this order). Retries until one pass succeeds; a
/// disconnection during a pass makes another pass follow.
async fn replayer(
    mut conn: Conn,
    subscribed: Arc<Mutex<HashSet<String>>>,
    replay: Arc<Notify>,
    node: u64,
    inbound: mpsc::UnboundedSender<Inbound>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = replay.notified() => {}
            _ = shutdown.cancelled() => return,
        }
        let mut backoff = Duration::from_millis(20);
        loop {
            match replay_once(&mut conn, &subscribed, node, &inbound).await {
                Ok(entries) => {
                    tracing::info!(entries, "replayed room logs after a redis reconnect");
                    break;
                }
                Err(e) => tracing::debug!(error = %e, "redis not back yet; replay retried"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

/// One replay pass; returns how many log entries were routed.
async fn replay_once(
    conn: &mut Conn,
    subscribed: &Mutex<HashSet<String>>,
    node: u64,
    inbound: &mpsc::UnboundedSender<Inbound>,
) -> Result<usize, RedisError> {
    let channels: Vec<String> = match subscribed.lock() {
        Ok(set) => set.iter().cloned().collect(),
        Err(_) => return Ok(0),
    };
    let _: String = timed(redis::cmd("PING").query_async(conn)).await?;
    for chunk in channels.chunks(512) {
        timed(conn.subscribe(chunk)).await?;
    }
    let mut routed = 0;
    for chunk in channels.chunks(REPLAY_CHUNK) {
        let cmds: Vec<redis::Cmd> = chunk
            .iter()
            .filter_map(|ch| log_key(ch))
            .map(|key| {
                let mut c = redis::cmd("XRANGE");
                c.arg(key)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(LOG_MAXLEN * 2);
                c
            })
            .collect();
        let replies = timed(conn.run_all(&cmds)).await?;
        for (ch, reply) in chunk.iter().zip(replies) {
            for payload in log_payloads(reply) {
                if let Some(msg) = route(ch, &payload, node) {
                    routed += 1;
                    if inbound.send(msg).is_err() {
                        return Ok(routed);
                    }
                }
            }
        }
    }
    Ok(routed)
}

/// The payloads of an XRANGE reply (`[[id, [field, value]], ...]`), oldest first.
fn log_payloads(reply: Value) -> Vec<Vec<u8>> {
    let Value::Array(entries) = reply else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|entry| {
            let Value::Array(parts) = entry else {
                return None;
            };
            match parts.into_iter().nth(1)? {
                Value::Array(fields) => match fields.into_iter().nth(1)? {
                    Value::BulkString(b) => Some(b),
                    _ => None,
                },
                Value::Map(fields) => match fields.into_iter().next()?.1 {
                    Value::BulkString(b) => Some(b),
                    _ => None,
                },
                _ => None,
            }
        })
        .collect()
}
