//! Three server processes sharing one real Redis: cross-node delivery in one
//! order, exactly once; presence and rate limits shared; a Redis restart and a
//! node killed with SIGKILL. Nodes run on node-local stores behind the
//! test-only `--unsafe-node-local-store` switch, so this checks live delivery,
//! presence and limits, not shared history. The same against a real
//! three-shard Redis Cluster, where room traffic uses sharded pub/sub.

mod common;

use common::process::ServerProcess;
use common::redis::{RedisCluster, RedisServer};
use common::*;
use roomcast::ids::{RoomId, UserId};
use roomcast::proto::client::{self as c, ClientFrame};
use roomcast::proto::types::Status;
use roomcast::proto::{ErrorCode, ServerFrame};
use roomcast_client::{ConnError, Connection};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// A node: the server process and its data directory (node-local store).
struct Node {
    process: ServerProcess,
    tcp: SocketAddr,
    http: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Node {
    fn spawn(redis: &str) -> Node {
        Node::spawn_with(redis, &[])
    }

    fn spawn_with(redis: &str, extra: &[&str]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--redis",
            redis,
            "--unsafe-node-local-store",
            "--presence-ttl-ms",
            "1500",
            "--gap-timeout-ms",
            "1000",
            "--limit-send",
            "1000:1000",
            "--limit-history",
            "1:3",
            "--fsync",
            "never",
        ];
        args.extend_from_slice(extra);
        let process = ServerProcess::spawn(&args, dir.path());
        Node {
            tcp: process.tcp,
            http: process.http,
            process,
            _dir: dir,
        }
    }

    fn kill9(&mut self) {
        self.process.kill9();
    }
}

async fn presence_of(c: &Connection, user: &str) -> Status {
    match c
        .call(|id| {
            ClientFrame::Presence(c::Presence {
                id,
                status: None,
                users: vec![UserId::new(user).unwrap()],
            })
        })
        .await
        .unwrap()
    {
        ServerFrame::Presence(p) => p.users[0].status,
        other => panic!("{other:?}"),
    }
}

/// Reads `msg` pushes until `count` arrived; returns (seq, body) in arrival order.
async fn receive(c: &mut Connection, count: usize) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    while got.len() < count {
        match tokio::time::timeout(Duration::from_secs(15), next_stream_event(c)).await {
            Ok(ServerFrame::Msg(m)) => got.push((m.seq, m.body)),
            Ok(_) => {}
            Err(_) => panic!("only {} of {count} messages arrived", got.len()),
        }
    }
    got
}

/// Sends until acknowledged, retrying `unavailable` (Redis away); returns the seq.
async fn send_acked(c: &Connection, room: &RoomId, body: &str) -> u64 {
    for _ in 0..200 {
        match c.send(room, body, Some(body)).await {
            Ok(s) => return s.seq,
            Err(ConnError::Server(e)) if e.code == ErrorCode::Unavailable => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("send {body}: {e}"),
        }
    }
    panic!("send {body} never acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_act_as_one() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let mut nodes: Vec<Node> = (0..3).map(|_| Node::spawn(&redis.url())).collect();
    let room = RoomId::new("team").unwrap();

    // The room on every node (node-local stores), members spread across nodes.
    let mut members = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let owner = client(n.tcp, &format!("owner{i}")).await;
        let r = room.clone();
        owner
            .call(|id| {
                ClientFrame::CreateRoom(c::CreateRoom {
                    id,
                    name: "Team".into(),
                    private: false,
                    description: None,
                    room: Some(r),
                })
            })
            .await
            .unwrap();
        for m in 0..2 {
            let c = client(n.tcp, &format!("m{i}{m}")).await;
            c.join(&room).await.unwrap();
            members.push(c);
        }
    }
    let mut senders: Vec<Arc<Connection>> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        senders.push(Arc::new(client(n.tcp, &format!("s{i}")).await));
    }
    // A member who is offline everywhere: new messages are queued for push notifications.
    // (Membership is per node with node-local stores, so ghost joins on every node.)
    for n in &nodes {
        let ghost = client(n.tcp, "ghost").await;
        ghost.join(&room).await.unwrap();
    }
    for s in &senders {
        s.join(&room).await.unwrap();
    }

    // 1. Concurrent senders on every node: one order everywhere, each message once.
    const EACH: usize = 40;
    let mut tasks = Vec::new();
    for (i, s) in senders.iter().enumerate() {
        let (s, room) = (s.clone(), room.clone());
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for k in 0..EACH {
                seqs.push(send_acked(&s, &room, &format!("n{i}-{k}")).await);
            }
            seqs
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    acked.sort_unstable();
    acked.dedup();
    assert_eq!(acked.len(), 3 * EACH, "seqs are unique across nodes");
    let mut orders = Vec::new();
    for m in members.iter_mut() {
        let got = receive(m, 3 * EACH).await;
        let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "strictly increasing seq on every node"
        );
        assert_eq!(seqs, acked, "every acknowledged message, once");
        orders.push(got);
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "the same order on every node"
    );

    // Offline notifications: one `message.created` event per message, listing ghost.
    let mut conn = roomcast::redis::connect(&redis.target(), None)
        .await
        .unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let entries: Vec<(String, Vec<(String, String)>)> = ::redis::cmd("XRANGE")
            .arg("roomcast:offline")
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap();
        let events: Vec<serde_json::Value> = entries
            .iter()
            .map(|(_, f)| serde_json::from_str(&f[0].1).unwrap())
            .collect();
        let for_ghost = events
            .iter()
            .filter(|e| {
                e["recipients"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r == "ghost")
            })
            .count();
        if for_ghost == 3 * EACH {
            let e = &events[0];
            assert_eq!(
                (e["type"].as_str(), e["room"].as_str()),
                (Some("message.created"), Some("team"))
            );
            assert!(
                e["recipients"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|r| r != "s0" && r != "m00"),
                "online members are not listed"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "offline notifications: {for_ghost} of {}",
            3 * EACH
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 2. Presence is visible from every node.
    assert_eq!(presence_of(&members[4], "m00").await, Status::Online);
    assert_eq!(presence_of(&members[0], "m21").await, Status::Online);
    assert_eq!(presence_of(&members[0], "nobody").await, Status::Offline);

    // 3. Rate limits hold per user across nodes (history: 1/s, burst 3).
    let h0 = client(nodes[0].tcp, "reader").await;
    let h1 = client(nodes[1].tcp, "reader").await;
    for _ in 0..3 {
        h0.history(&room, None, Some(1)).await.unwrap();
    }
    match h1.history(&room, None, Some(1)).await {
        Err(ConnError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::RateLimited);
            assert!(e.retry_after_ms.is_some());
        }
        other => panic!("the limit is shared across nodes: {other:?}"),
    }

    // 4. Redis restarts (losing everything) mid-traffic: sends wait or fail with
    //    `unavailable` (never acknowledged), then service resumes; nothing acknowledged is lost.
    let last = *acked.last().unwrap();
    let traffic = {
        let (s, room) = (senders[1].clone(), room.clone());
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for k in 0..30 {
                seqs.push(send_acked(&s, &room, &format!("r{k}")).await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seqs
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    redis.restart();
    let during = traffic.await.unwrap();
    assert!(
        during.iter().all(|s| *s > last),
        "seqs continue above what was used before the restart"
    );
    for m in members.iter_mut() {
        let got = receive(m, during.len()).await;
        assert_eq!(
            got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            during,
            "acknowledged during the restart, delivered everywhere"
        );
    }

    // 5. A node killed with SIGKILL: its users go offline within the presence TTL.
    assert_eq!(presence_of(&members[4], "m00").await, Status::Online);
    nodes[0].kill9();
    let until = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        if presence_of(&members[4], "m00").await == Status::Offline {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "m00 still online 8 s after its node died"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        presence_of(&members[4], "m21").await,
        Status::Online,
        "users of live nodes stay online"
    );
}

#[test]
fn redis_without_a_shared_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args([
            "serve",
            "--tcp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--quic",
            "127.0.0.1:0",
        ])
        .args(["--redis", "redis://127.0.0.1:1/0"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("ROOMCAST_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node-local") && err.contains("ScyllaDB"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_a_redis_cluster_use_sharded_pubsub() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let nodes: Vec<Node> = (0..3)
        .map(|_| Node::spawn_with(&cluster.url(), &["--redis-cluster", "true"]))
        .collect();
    // Several rooms, so that their channels fall on different shards.
    let rooms: Vec<RoomId> = (0..6)
        .map(|i| RoomId::new(&format!("shard-room-{i}")).unwrap())
        .collect();
    let mut members = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let owner = client(n.tcp, &format!("owner{i}")).await;
        for room in &rooms {
            let r = room.clone();
            owner
                .call(|id| {
                    ClientFrame::CreateRoom(c::CreateRoom {
                        id,
                        name: "Sharded".into(),
                        private: false,
                        description: None,
                        room: Some(r),
                    })
                })
                .await
                .unwrap();
        }
        let m = client(n.tcp, &format!("member{i}")).await;
        for room in &rooms {
            m.join(room).await.unwrap();
        }
        members.push(m);
    }

    // Every room's channel is a sharded channel on the shard owning its slot;
    // no classic channel carries room traffic.
    let sharded: Vec<Vec<String>> = cluster.on_every_node(&["PUBSUB", "SHARDCHANNELS"]);
    for room in &rooms {
        let ch = format!("rc:room:{room}");
        let owners = sharded.iter().filter(|l| l.contains(&ch)).count();
        assert_eq!(owners, 1, "{ch} on exactly one shard: {sharded:?}");
    }
    assert!(
        sharded.iter().filter(|l| !l.is_empty()).count() >= 2,
        "rooms spread over shards: {sharded:?}"
    );
    for classic in cluster.on_every_node(&["PUBSUB", "CHANNELS", "rc:room:*"]) {
        assert!(classic.is_empty(), "no classic room channels: {classic:?}");
    }

    // Senders on every node, into every room: one order everywhere, each once.
    const EACH: usize = 10;
    let senders: Vec<Arc<Connection>> = {
        let mut v = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let s = client(n.tcp, &format!("sender{i}")).await;
            for room in &rooms {
                s.join(room).await.unwrap();
            }
            v.push(Arc::new(s));
        }
        v
    };
    let mut tasks = Vec::new();
    for (i, s) in senders.iter().enumerate() {
        let (s, rooms) = (s.clone(), rooms.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for k in 0..EACH {
                for room in &rooms {
                    acked.push((
                        room.clone(),
                        send_acked(&s, room, &format!("n{i}-{k}")).await,
                    ));
                }
            }
            acked
        }));
    }
    let mut acked: std::collections::HashMap<RoomId, Vec<u64>> = Default::default();
    for t in tasks {
        for (room, seq) in t.await.unwrap() {
            acked.entry(room).or_default().push(seq);
        }
    }
    let total = 3 * EACH * rooms.len();
    let mut orders = Vec::new();
    for m in members.iter_mut() {
        let mut per_room: std::collections::HashMap<RoomId, Vec<u64>> = Default::default();
        let mut got = 0;
        while got < total {
            match tokio::time::timeout(Duration::from_secs(15), next_stream_event(m)).await {
                Ok(ServerFrame::Msg(msg)) => {
                    per_room.entry(msg.room.clone()).or_default().push(msg.seq);
                    got += 1;
                }
                Ok(_) => {}
                Err(_) => panic!("only {got} of {total} messages arrived"),
            }
        }
        for (room, seqs) in &per_room {
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq order in {room}");
            let mut want = acked[room].clone();
            want.sort_unstable();
            assert_eq!(seqs, &want, "every acknowledged message in {room}, once");
        }
        orders.push(per_room);
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "the same everywhere"
    );

    // Presence across nodes (its channel is sharded too).
    assert_eq!(presence_of(&members[2], "member0").await, Status::Online);
    assert_eq!(presence_of(&members[0], "member2").await, Status::Online);
    drop(nodes);
}

#[tokio::test]
async fn the_server_api_disconnects_a_user_on_every_node() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    const KEY: &str = "multinode-api-key-0123456789";
    let a = Node::spawn_with(&redis.url(), &["--api-keys", KEY]);
    let b = Node::spawn_with(&redis.url(), &["--api-keys", KEY]);
    let mut carol_a = Raw::connect(a.tcp).await;
    carol_a.hello("carol").await;
    let mut carol_b = Raw::connect(b.tcp).await;
    carol_b.hello("carol").await;
    let mut dave_b = Raw::connect(b.tcp).await;
    dave_b.hello("dave").await;

    // Asked on node a: a closes its connection and counts it; b closes its own.
    let r = common::http::Api::key(a.http, KEY)
        .post("/api/users/carol/disconnect", serde_json::json!({}))
        .await;
    assert_eq!(r.assert_status(200)["disconnected"], 1);
    for c in [&mut carol_a, &mut carol_b] {
        let frames = c.drain_to_eof().await;
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_error(frames.into_iter().next(), "unauthorized", true);
    }
    dave_b
        .send_map(serde_json::json!({"t": "ping", "id": 1}))
        .await;
    assert!(matches!(dave_b.next().await, Some(ServerFrame::Pong(_))));
}

/// A room publication made while a node's pub/sub connection is down (here:
/// killed, and the publication made before the node can reconnect) is not
/// lost for it: the node replays the room's log once it has subscribed again.
#[tokio::test]
async fn a_publication_missed_while_reconnecting_is_replayed() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let node = Node::spawn(&redis.url());
    let room = RoomId::new("replayed").unwrap();
    let mut alice = client(node.tcp, "alice").await;
    alice
        .call(|id| {
            ClientFrame::CreateRoom(c::CreateRoom {
                id,
                name: "Replayed".into(),
                private: false,
                description: None,
                room: Some(room.clone()),
            })
        })
        .await
        .unwrap();
    alice.join(&room).await.unwrap();
    let first = send_acked(&alice, &room, "before").await;
    assert_eq!(receive(&mut alice, 1).await, vec![(first, "before".into())]);

    // "Another node" committed the next seq: one events publication,
    // `[node][kind 0]` then `[seq][framed msg]`, as the bus writes it.
    let msg = serde_json::json!({
        "t": "msg", "room": "replayed", "seq": first + 1, "from": "bob",
        "body": "missed", "ts": 1_765_000_000_000u64,
    });
    let map = rmp_serde::to_vec_named(&msg).unwrap();
    let mut payload = Vec::new();
    payload.extend_from_slice(&0xfeed_u64.to_be_bytes());
    payload.push(0);
    payload.extend_from_slice(&(first + 1).to_be_bytes());
    payload.extend_from_slice(&(map.len() as u32).to_be_bytes());
    payload.extend_from_slice(&map);

    // One pipeline, run by Redis back to back: the node's pub/sub connection
    // is killed, then the publication is logged and published before the node
    // can possibly have reconnected, so pub/sub never delivers it there.
    let mut conn = roomcast::redis::connect(&redis.target(), None)
        .await
        .unwrap();
    let killed: Vec<::redis::Value> = ::redis::pipe()
        .cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .cmd("XADD")
        .arg("rc:log:{replayed}")
        .arg("*")
        .arg("e")
        .arg(&payload)
        .cmd("PUBLISH")
        .arg("rc:room:replayed")
        .arg(&payload)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        killed.last(),
        Some(&::redis::Value::Int(0)),
        "nobody was subscribed when it was published: {killed:?}"
    );
    assert_eq!(
        receive(&mut alice, 1).await,
        vec![(first + 1, "missed".into())],
        "replayed from the room's log after the reconnect"
    );
    // And live delivery works again after it.
    let next = send_acked(&alice, &room, "after").await;
    assert_eq!(next, first + 2);
    assert_eq!(receive(&mut alice, 1).await, vec![(next, "after".into())]);
}
