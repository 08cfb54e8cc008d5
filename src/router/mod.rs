//! Sharded room routers. A room id hashes to one shard; that shard's task owns
//! the room (members, subscribers, seq) and serves every command for it in
//! order, so the hot path takes no locks. `shard/` is the loop (it never awaits
//! I/O: see `shard/io.rs`); the commands
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
            let weak = tx.downgrade();
            let (cfg, store, presence, cluster) = (
                cfg.clone(),
                store.clone(),
                presence.clone(),
                cluster.clone(),
            );
            let make = move || {
                Shard::new(
                    i,
                    cfg.clone(),
                    store.clone(),
                    presence.clone(),
                    cluster.clone(),
                    weak.clone(),
                )
            };
            handles.push(tokio::spawn(supervise(i, rx, make)));
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

/// Runs a shard and restarts it if it panics. A panic loses the shard's
/// memory (rooms, subscriptions), not its inbox or anything stored. Before the
/// fresh shard starts, the writes the failed one had submitted are awaited, so
/// that it loads rooms from the store with them on their next command. Every
/// request that was pending in the failed shard (the command it was serving,
/// the rest of its inbox batch, queued, batched and in-flight requests) is
/// answered `internal` with `retry_after_ms` (a `ReplyTo` dropped unanswered
/// in a fault answers so; see [`command::abandoning`]), and the connections
/// that had a subscription or a held request there are then closed with
/// `internal` so their clients reconnect and resume. The other shards' rooms
/// never notice.
async fn supervise(index: usize, mut rx: mpsc::Receiver<ShardMsg>, make: impl Fn() -> Shard) {
    use futures_util::FutureExt;
    loop {
        let mut shard = make();
        let run = std::panic::AssertUnwindSafe(shard.run(&mut rx));
        // (The command being served and the rest of its batch were dropped
        // while unwinding, which answered their requests.)
        if run.catch_unwind().await.is_ok() {
            return;
        }
        let writes = shard.finish_writes().await;
        let told = shard.fail_sessions();
        tracing::error!(
            shard = index,
            sessions = told,
            writes,
            "room shard panicked; restarted it, its rooms reload from the store and its sessions were told to resume"
        );
        // Anything the panicking shard left half-done is dropped here.
        command::abandoning(|| drop(shard));
    }
}

/// Whether `room` has the form of a direct room id (`d` + 40 hex digits; in
/// its tenant when scoped).
pub fn is_direct_room_id(room: &RoomId) -> bool {
    let s = room.public();
    s.len() == 41
        && s.starts_with('d')
        && s[1..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The id of the one direct room of two users: the same whoever asks, and not
/// forgeable from other user ids (a SHA-256 of both ids, length-prefixed).
/// With tenants, both users are of one tenant (the boundary scoped them with
/// the asker's): the hash is of the ids their clients know, so a pair's
/// direct room shows the same id in every tenant, and the room is scoped
/// with the tenant.
pub fn direct_room_id(a: &UserId, b: &UserId) -> RoomId {
    use sha2::{Digest, Sha256};
    let (x, y) = if a.public() <= b.public() {
        (a, b)
    } else {
        (b, a)
    };
    let mut h = Sha256::new();
    for u in [x, y] {
        h.update((u.public().len() as u32).to_be_bytes());
        h.update(u.public().as_bytes());
    }
    let digest = h.finalize();
    // "d" + 40 hex digits (160 bits) is well inside the 64-byte room id limit.
    let id = format!("d{}", hex::encode(&digest[..20]));
    let plain = RoomId::new(&id).unwrap_or_else(|_| RoomId::random());
    match a.tenant() {
        Some(t) => RoomId::scoped(t, &plain),
        None => plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::outbox::{OutItem, Outbox, OutboxReceiver};
    use crate::ids::{now_ms, SessionId};
    use crate::proto::types::RoomKind;
    use crate::proto::{ErrorCode, ServerFrame, HEADER_LEN};
    use crate::store::RoomMeta;
    use std::time::Duration;

    fn config() -> ShardConfig {
        ShardConfig {
            dedupe_window: 64,
            idle_unload: Duration::from_secs(60),
            edit_window: Duration::from_secs(60),
            read_on_send: true,
            read_on_join: false,
            typing_ttl: Duration::from_secs(5),
            presence_list_max: 100,
            outbox_bytes: 1 << 20,
            gap_timeout: Duration::from_secs(5),
            max_invites_per_room: 100,
            system_user: "system".into(),
            max_commits: 16,
            commit_window: Duration::from_secs(5),
        }
    }

    /// The next frame queued to a connection, or None once it was asked to close.
    async fn next(
        rx: &mut OutboxReceiver,
        buf: &mut Vec<Option<ServerFrame>>,
    ) -> Option<ServerFrame> {
        while buf.is_empty() {
            let mut items = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), rx.recv_many(&mut items, 64))
                .await
                .expect("a frame within 10 s");
            for item in items {
                match item {
                    OutItem::Frames(mut b) => {
                        rx.taken(b.len());
                        while b.len() >= HEADER_LEN {
                            let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
                            let frame = b.split_to(HEADER_LEN + len);
                            buf.push(Some(ServerFrame::decode(&frame[HEADER_LEN..]).unwrap()));
                        }
                    }
                    OutItem::Close => buf.push(None),
                }
            }
        }
        buf.remove(0)
    }

    async fn send(router: &Router, room: &RoomId, user: &UserId, outbox: &Outbox, id: u64) {
        router
            .send(room.clone(), send_cmd(user, outbox, id, None))
            .await
            .unwrap();
    }

    fn send_cmd(user: &UserId, outbox: &Outbox, id: u64, local_id: Option<&str>) -> Command {
        Command::Send {
            user: user.clone(),
            msg: NewMessage {
                body: format!("m{id}"),
                local_id: local_id.map(str::to_owned),
                kind: Default::default(),
                attachments: Vec::new(),
                reply_to: None,
            },
            reply: ReplyTo::new(id, outbox),
        }
    }

    #[tokio::test]
    async fn a_panicked_shard_restarts_reloads_and_tells_its_sessions_to_resume() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            crate::store::embedded::EmbeddedStore::open(
                dir.path(),
                crate::config::FsyncPolicy::Never,
            )
            .unwrap(),
        );
        let presence = Arc::new(crate::presence::MemoryPresence::new());
        let (router, _handles) = Router::start(1, config(), store, presence, None);
        let alice = UserId::new("alice").unwrap();
        let room = RoomId::new("r").unwrap();
        let (outbox, mut rx) = Outbox::new(SessionId(1), 1 << 20);
        let mut buf = Vec::new();
        let meta = RoomMeta {
            id: room.clone(),
            name: "r".into(),
            description: String::new(),
            private: false,
            kind: RoomKind::Room,
            created_by: alice.clone(),
            created_at: now_ms(),
            deleted: false,
            members: 1,
        };
        let reply = |id| ReplyTo::new(id, &outbox);
        router
            .send(
                room.clone(),
                Command::Create {
                    meta,
                    reply: reply(1),
                },
            )
            .await
            .unwrap();
        assert!(matches!(
            next(&mut rx, &mut buf).await,
            Some(ServerFrame::Created(_))
        ));
        let join = |id| Command::Join {
            session: SessionId(1),
            user: alice.clone(),
            since: None,
            invite: None,
            reply: reply(id),
        };
        router.send(room.clone(), join(2)).await.unwrap();
        assert!(matches!(
            next(&mut rx, &mut buf).await,
            Some(ServerFrame::Joined(_))
        ));
        send(&router, &room, &alice, &outbox, 3).await;
        // The ack and the session's own push of it, in either order (an
        // ephemeral push, such as the sender's read pointer, may come too).
        let (mut acked, mut pushed) = (false, false);
        while !(acked && pushed) {
            match next(&mut rx, &mut buf).await {
                Some(ServerFrame::Sent(_)) => acked = true,
                Some(ServerFrame::Msg(_)) => pushed = true,
                Some(_) => {}
                None => panic!("closed before the ack and the push"),
            }
        }

        // The fault: the subscribed session is closed with `internal` (reconnect, resume).
        router.shards[0].send(ShardMsg::Panic).await.unwrap();
        loop {
            match next(&mut rx, &mut buf).await {
                Some(ServerFrame::Error(e)) => {
                    assert_eq!(e.code, ErrorCode::Internal);
                    assert!(e.close);
                    break;
                }
                Some(ServerFrame::Msg(m)) => panic!("a stream event after the panic: {m:?}"),
                Some(_) => {}
                None => panic!("closed without the error"),
            }
        }
        assert!(
            next(&mut rx, &mut buf).await.is_none(),
            "then asked to close"
        );

        // A new connection finds the same shard serving: the room reloads from
        // the store with its seq, and resume replays what was there.
        let (outbox, mut rx) = Outbox::new(SessionId(2), 1 << 20);
        let mut buf = Vec::new();
        router
            .send(
                room.clone(),
                Command::Join {
                    session: SessionId(2),
                    user: alice.clone(),
                    since: Some(0),
                    invite: None,
                    reply: ReplyTo::new(4, &outbox),
                },
            )
            .await
            .unwrap();
        match next(&mut rx, &mut buf).await {
            Some(ServerFrame::Joined(j)) => assert_eq!(j.seq, 1),
            other => panic!("{other:?}"),
        }
        match next(&mut rx, &mut buf).await {
            Some(ServerFrame::Msg(m)) => assert_eq!((m.seq, m.body.as_str()), (1, "m3")),
            other => panic!("{other:?}"),
        }
        send(&router, &room, &alice, &outbox, 5).await;
        loop {
            match next(&mut rx, &mut buf).await {
                Some(ServerFrame::Sent(s)) => {
                    assert_eq!(s.seq, 2, "seqs continue");
                    break;
                }
                // The push of it and the sender's read pointer may come first.
                Some(ServerFrame::Msg(_) | ServerFrame::Read(_)) => {}
                other => panic!("{other:?}"),
            }
        }
        router.shutdown().await;
    }

    /// The `sent` for request `id` (pushes and read pointers may come first).
    async fn sent_seq(rx: &mut OutboxReceiver, buf: &mut Vec<Option<ServerFrame>>, id: u64) -> u64 {
        loop {
            match next(rx, buf).await {
                Some(ServerFrame::Sent(s)) if s.id == id => return s.seq,
                Some(ServerFrame::Msg(_) | ServerFrame::Read(_)) => {}
                other => panic!("waiting for sent {id}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn requests_pending_in_a_panicked_shard_get_internal_with_a_retry_hint_and_retries_are_stored_once(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            crate::store::embedded::EmbeddedStore::open(
                dir.path(),
                crate::config::FsyncPolicy::Never,
            )
            .unwrap(),
        );
        let presence = Arc::new(crate::presence::MemoryPresence::new());
        let (router, _handles) = Router::start(1, config(), store, presence, None);
        let alice = UserId::new("alice").unwrap();
        let room = RoomId::new("r").unwrap();
        let (outbox, mut rx) = Outbox::new(SessionId(1), 1 << 20);
        let mut buf = Vec::new();
        let meta = RoomMeta {
            id: room.clone(),
            name: "r".into(),
            description: String::new(),
            private: false,
            kind: RoomKind::Room,
            created_by: alice.clone(),
            created_at: now_ms(),
            deleted: false,
            members: 1,
        };
        let create = Command::Create {
            meta,
            reply: ReplyTo::new(1, &outbox),
        };
        router.send(room.clone(), create).await.unwrap();
        assert!(matches!(
            next(&mut rx, &mut buf).await,
            Some(ServerFrame::Created(_))
        ));
        // "a" is stored before the fault.
        let a = send_cmd(&alice, &outbox, 2, Some("a"));
        router.send(room.clone(), a).await.unwrap();
        assert_eq!(sent_seq(&mut rx, &mut buf, 2).await, 1);

        // "b" is batched (not yet written) when the shard panics; "c" is
        // behind the fault in the same inbox batch. Neither gets silence.
        let shard = &router.shards[0];
        let b = send_cmd(&alice, &outbox, 3, Some("b"));
        shard.send(ShardMsg::Room(room.clone(), b)).await.unwrap();
        shard.send(ShardMsg::Panic).await.unwrap();
        let c = send_cmd(&alice, &outbox, 4, Some("c"));
        shard.send(ShardMsg::Room(room.clone(), c)).await.unwrap();
        let mut answered = Vec::new();
        loop {
            match next(&mut rx, &mut buf).await {
                Some(ServerFrame::Error(e)) if !e.close => {
                    assert_eq!(e.code, ErrorCode::Internal, "{e:?}");
                    assert_eq!(e.retry_after_ms, Some(command::RETRY_AFTER_FAULT_MS));
                    answered.push(e.id.expect("the request's id"));
                }
                Some(ServerFrame::Error(e)) => {
                    assert_eq!(e.code, ErrorCode::Internal);
                    assert_eq!(e.id, None, "the closing error is the connection's");
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        answered.sort_unstable();
        assert_eq!(answered, [3, 4], "every pending request, before the close");
        assert!(next(&mut rx, &mut buf).await.is_none(), "then closed");

        // The client reconnects and retries with the same local_ids: "a" was
        // stored (its original seq), "b" and "c" were not (stored now, once).
        let (outbox, mut rx) = Outbox::new(SessionId(2), 1 << 20);
        let mut buf = Vec::new();
        for (id, lid, seq) in [
            (5, "a", 1),
            (6, "b", 2),
            (7, "c", 3),
            (8, "b", 2),
            (9, "a", 1),
        ] {
            let retry = send_cmd(&alice, &outbox, id, Some(lid));
            router.send(room.clone(), retry).await.unwrap();
            assert_eq!(sent_seq(&mut rx, &mut buf, id).await, seq, "{lid}");
        }
        let join = Command::Join {
            session: SessionId(2),
            user: alice.clone(),
            since: Some(0),
            invite: None,
            reply: ReplyTo::new(10, &outbox),
        };
        router.send(room.clone(), join).await.unwrap();
        let mut replayed = Vec::new();
        loop {
            match next(&mut rx, &mut buf).await {
                Some(ServerFrame::Joined(j)) => assert_eq!(j.seq, 3),
                Some(ServerFrame::Msg(m)) => {
                    replayed.push(m.seq);
                    if m.seq == 3 {
                        break;
                    }
                }
                Some(_) => {}
                None => panic!("closed"),
            }
        }
        assert_eq!(replayed, [1, 2, 3], "each message once");
        router.shutdown().await;
    }
}
