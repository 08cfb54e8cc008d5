//! The user-visible flow over real sockets, on every transport (TCP, TLS,
//! QUIC, WebSocket): rooms, joins, ordered delivery, history paging,
//! idempotent sends, sessions, private rooms.

mod common;

use common::*;

each_transport!(
    two_users_chat_and_page_history,
    every_session_of_a_user_gets_pushes_and_leave_stops_them,
    resending_a_local_id_returns_the_original_ack,
    idempotency_outlives_the_in_memory_window,
    concurrent_senders_are_delivered_in_one_gapless_order,
    private_rooms_refuse_non_members,
    rooms_survive_a_graceful_restart,
);
use roomcast::ids::RoomId;
use roomcast::proto::ErrorCode;
use roomcast_client::ConnError;
use std::collections::HashMap;

async fn two_users_chat_and_page_history(t: Transport) {
    let mut server = TestServer::start().await;
    let mut alice = client_on(&server, t, "alice").await;
    let mut bob = client_on(&server, t, "bob").await;

    let room = alice.create_room("General", false).await.unwrap();
    assert_eq!(alice.join(&room).await.unwrap().seq, 0);
    assert_eq!(bob.join(&room).await.unwrap().seq, 0);

    for i in 1..=5u64 {
        let sent = alice
            .send(&room, &format!("hello {i}"), Some(&format!("l{i}")))
            .await
            .unwrap();
        assert_eq!(sent.seq, i);
        assert_eq!(sent.local_id.as_deref(), Some(format!("l{i}").as_str()));
    }
    let reply = bob.send(&room, "hi alice", None).await.unwrap();
    assert_eq!(reply.seq, 6);

    // Both members (the sender included) see every message once, in seq order.
    for c in [&mut alice, &mut bob] {
        for seq in 1..=6u64 {
            let m = next_msg(c).await;
            assert_eq!(m.seq, seq);
            assert_eq!(m.room, room);
            if seq <= 5 {
                assert_eq!(m.from.as_str(), "alice");
                assert_eq!(m.body, format!("hello {seq}"));
                assert_eq!(m.local_id.as_deref(), Some(format!("l{seq}").as_str()));
            } else {
                assert_eq!(m.from.as_str(), "bob");
                assert_eq!(m.local_id, None);
            }
        }
    }

    // History pages backwards, oldest first within a page.
    let page = bob.history(&room, None, Some(4)).await.unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![3, 4, 5, 6]
    );
    assert!(page.more);
    let page = bob.history(&room, Some(3), Some(4)).await.unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(!page.more);
    assert_eq!(page.messages[0].body, "hello 1");

    // A late joiner learns the latest seq.
    let carol = client_on(&server, t, "carol").await;
    assert_eq!(carol.join(&room).await.unwrap().seq, 6);
    server.stop().await;
}

async fn every_session_of_a_user_gets_pushes_and_leave_stops_them(t: Transport) {
    let mut server = TestServer::start().await;
    let mut a1 = client_on(&server, t, "alice").await;
    let mut a2 = client_on(&server, t, "alice").await;
    let room = a1.create_room("r", false).await.unwrap();
    a1.join(&room).await.unwrap();
    a2.join(&room).await.unwrap();
    a1.send(&room, "one", None).await.unwrap();
    assert_eq!(next_msg(&mut a1).await.body, "one");
    assert_eq!(next_msg(&mut a2).await.body, "one");

    a2.leave(&room).await.unwrap();
    a1.send(&room, "two", None).await.unwrap();
    assert_eq!(next_msg(&mut a1).await.body, "two");
    // a2 gets nothing more: a ping round trip proves the queue is empty.
    a2.ping().await.unwrap();
    if let Ok(e) =
        tokio::time::timeout(std::time::Duration::from_millis(200), a2.next_event()).await
    {
        panic!("after leave, a2 still got {e:?}");
    }
    server.stop().await;
}

async fn resending_a_local_id_returns_the_original_ack(t: Transport) {
    let mut server = TestServer::start().await;
    let alice = client_on(&server, t, "alice").await;
    let room = alice.create_room("r", false).await.unwrap();
    alice.join(&room).await.unwrap();
    let first = alice.send(&room, "once", Some("abc")).await.unwrap();
    alice.send(&room, "other", Some("def")).await.unwrap();
    let again = alice.send(&room, "once", Some("abc")).await.unwrap();
    assert_eq!((again.seq, again.ts), (first.seq, first.ts));
    // Concurrent duplicates while the first is in flight also collapse.
    let (x, y) = tokio::join!(
        alice.send(&room, "race", Some("zzz")),
        alice.send(&room, "race", Some("zzz"))
    );
    assert_eq!(x.unwrap().seq, y.unwrap().seq);
    let page = alice.history(&room, None, None).await.unwrap();
    assert_eq!(page.messages.len(), 3);
    server.stop().await;
}

async fn idempotency_outlives_the_in_memory_window(t: Transport) {
    let mut server = TestServer::start_with(|c| {
        c.dedupe_window = 4;
        c.no_rate_limits = true;
    })
    .await;
    let alice = client_on(&server, t, "alice").await;
    let room = alice.create_room("r", false).await.unwrap();
    alice.join(&room).await.unwrap();
    let first = alice.send(&room, "m", Some("old")).await.unwrap();
    for i in 0..10 {
        alice
            .send(&room, "filler", Some(&format!("f{i}")))
            .await
            .unwrap();
    }
    let again = alice.send(&room, "m", Some("old")).await.unwrap();
    assert_eq!(
        again.seq, first.seq,
        "found through the store's local_id index"
    );
    assert_eq!(
        alice
            .history(&room, None, Some(200))
            .await
            .unwrap()
            .messages
            .len(),
        11
    );
    server.stop().await;
}

async fn concurrent_senders_are_delivered_in_one_gapless_order(t: Transport) {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let owner = client_on(&server, t, "owner").await;
    let room = owner.create_room("busy", false).await.unwrap();
    let mut watcher = client_on(&server, t, "watcher").await;
    watcher.join(&room).await.unwrap();

    const SENDERS: usize = 4;
    const EACH: usize = 150;
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let c = client_on(&server, t, &format!("sender{s}")).await;
        let room = room.clone();
        c.join(&room).await.unwrap();
        tasks.push(tokio::spawn(async move {
            // Pipelined: many sends in flight at once.
            let bodies: Vec<String> = (0..EACH).map(|i| format!("{s}:{i}")).collect();
            let sends = bodies.iter().map(|b| c.send(&room, b, None));
            let acks = futures_util::future::join_all(sends).await;
            acks.into_iter().map(|a| a.unwrap().seq).collect::<Vec<_>>()
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    acked.sort_unstable();
    assert_eq!(acked, (1..=(SENDERS * EACH) as u64).collect::<Vec<_>>());

    let mut last_per_sender: HashMap<String, usize> = HashMap::new();
    for expected in 1..=(SENDERS * EACH) as u64 {
        let m = next_msg(&mut watcher).await;
        assert_eq!(m.seq, expected, "gapless, no duplicates, in order");
        let (s, i) = m.body.split_once(':').unwrap();
        let i: usize = i.parse().unwrap();
        if let Some(prev) = last_per_sender.insert(s.to_string(), i) {
            assert!(i > prev, "one sender's messages keep their order");
        }
    }
    server.stop().await;
}

async fn private_rooms_refuse_non_members(t: Transport) {
    let mut server = TestServer::start().await;
    let alice = client_on(&server, t, "alice").await;
    let mallory = client_on(&server, t, "mallory").await;
    let room = alice.create_room("secret", true).await.unwrap();
    alice.join(&room).await.unwrap();
    alice.send(&room, "classified", None).await.unwrap();

    let code = |r: Result<_, ConnError>| match r {
        Err(ConnError::Server(e)) => e.code,
        other => panic!("expected a server error, got {:?}", other.map(|_| ())),
    };
    assert_eq!(
        code(mallory.join(&room).await.map(|_| ())),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(mallory.send(&room, "let me in", None).await.map(|_| ())),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(mallory.history(&room, None, None).await.map(|_| ())),
        ErrorCode::Forbidden
    );

    let nowhere = RoomId::new("does-not-exist").unwrap();
    assert_eq!(
        code(mallory.join(&nowhere).await.map(|_| ())),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(mallory.send(&nowhere, "x", None).await.map(|_| ())),
        ErrorCode::NotFound
    );

    // Public rooms: sending requires joining first.
    let public = alice.create_room("lobby", false).await.unwrap();
    assert_eq!(
        code(mallory.send(&public, "hi", None).await.map(|_| ())),
        ErrorCode::Forbidden
    );
    mallory.join(&public).await.unwrap();
    mallory.send(&public, "hi", None).await.unwrap();
    server.stop().await;
}

async fn rooms_survive_a_graceful_restart(t: Transport) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut server = TestServer::start_with(|c| c.data_dir = path.clone()).await;
    let alice = client_on(&server, t, "alice").await;
    let room = alice.create_room("persist", true).await.unwrap();
    alice.join(&room).await.unwrap();
    for i in 0..3 {
        alice.send(&room, &format!("m{i}"), None).await.unwrap();
    }
    server.stop().await;

    let mut server = TestServer::start_with(|c| c.data_dir = path.clone()).await;
    let alice = client_on(&server, t, "alice").await;
    // Still a member of the private room, and seqs continue.
    assert_eq!(alice.join(&room).await.unwrap().seq, 3);
    assert_eq!(alice.send(&room, "after", None).await.unwrap().seq, 4);
    let page = alice.history(&room, None, None).await.unwrap();
    assert_eq!(
        page.messages
            .iter()
            .map(|m| m.body.as_str())
            .collect::<Vec<_>>(),
        vec!["m0", "m1", "m2", "after"]
    );
    server.stop().await;
}
