//! Lossless resume against the real server: graceful restart, kill and
//! restart on the same data dir and port, a network drop mid-stream (a proxy
//! that cuts connections), and a slow-consumer disconnect; a chosen status
//! survives a reconnect.

mod common;

use common::*;
use roomcast::proto::ErrorCode;
use roomcast_client::proto::types::Status;
use roomcast_client::{Client, Endpoint, Event};
use std::time::Duration;

/// alice follows a room; bob sends `before` messages, the server goes away
/// (`outage`), bob sends `after` more while it is gone (queued), the server
/// comes back. alice must see all of them once, in order, and a `Resumed`.
async fn survives_restart(transport: &str, graceful: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = Srv::start(dir.path(), None, |_| {}).await;
    let (alice, mut alice_ev) = Client::connect(config(srv.endpoint(transport), "alice"))
        .await
        .unwrap();
    let (bob, _bob_ev) = Client::connect(config(srv.endpoint("tcp"), "bob"))
        .await
        .unwrap();
    let room = alice.create_room("restart", false).await.unwrap().room;
    alice.join(&room).await.unwrap();
    bob.join(&room).await.unwrap();
    for i in 0..20 {
        bob.send(&room, format!("m{i}")).await.unwrap();
    }
    let (first, _, _, _) = collect_messages(&mut alice_ev, 20).await;

    if graceful {
        srv.stop().await;
    } else {
        srv.kill().await;
    }
    // Queued while the server is down; they go out when it is back.
    let pending: Vec<_> = {
        let mut v = Vec::new();
        for i in 20..40 {
            v.push(
                bob.enqueue(roomcast_client::OutgoingMessage::text(
                    &room,
                    format!("m{i}"),
                ))
                .await
                .unwrap(),
            );
        }
        v
    };
    let addrs = srv.addrs;
    let _srv2 = Srv::start(dir.path(), Some(addrs), |_| {}).await;
    for p in pending {
        tokio::time::timeout(WAIT, p)
            .await
            .expect("ack")
            .expect("sent");
    }
    let (rest, resumed, disconnects, _) = collect_messages(&mut alice_ev, 20).await;
    let all: Vec<_> = first.into_iter().chain(rest).collect();
    assert_ordered(&all);
    let bodies: Vec<_> = all.iter().map(|(_, b)| b.clone()).collect();
    let want: Vec<_> = (0..40).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, want);
    assert!(disconnects >= 1, "a Disconnected event");
    // The Resumed of the re-join may come after the replay it covers; wait for it.
    let mut resumed = resumed;
    for _ in 0..50 {
        if resumed > 0 {
            break;
        }
        if let Ok(Some(Event::Resumed { room: r, .. })) =
            tokio::time::timeout(Duration::from_millis(200), alice_ev.next()).await
        {
            assert_eq!(r, room);
            resumed += 1;
        }
    }
    assert!(resumed >= 1, "a Resumed event");
    let history = full_history(&alice, &room).await;
    assert_eq!(history.len(), 40, "nothing stored twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_graceful_restart_tcp() {
    survives_restart("tcp", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_graceful_restart_quic() {
    survives_restart("quic", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_kill_and_restart_tcp() {
    survives_restart("tcp", false).await;
}

/// Cuts the connection (through a proxy) while messages stream in.
async fn survives_network_drop(transport: &str) {
    let dir = tempfile::tempdir().unwrap();
    let srv = Srv::start(dir.path(), None, |_| {}).await;
    let proxy = Proxy::start(match transport {
        "tcp" => srv.addrs.tcp,
        _ => srv.addrs.http,
    })
    .await;
    let through_proxy = match transport {
        "tcp" => Endpoint::Tcp(proxy.addr),
        _ => Endpoint::Ws(format!("ws://{}/ws", proxy.addr)),
    };
    let (alice, mut alice_ev) = Client::connect(config(through_proxy, "alice"))
        .await
        .unwrap();
    let (bob, _bob_ev) = Client::connect(config(srv.endpoint("tcp"), "bob"))
        .await
        .unwrap();
    let room = bob.create_room("drop", false).await.unwrap().room;
    alice.join(&room).await.unwrap();
    let sender = {
        let (bob, room) = (bob.clone(), room.clone());
        tokio::spawn(async move {
            for i in 0..300 {
                bob.send(&room, format!("m{i}")).await.unwrap();
                if i % 50 == 25 {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            }
        })
    };
    let mut got = Vec::new();
    let mut cuts = 0;
    while got.len() < 300 {
        if let Event::Message(m) = next(&mut alice_ev).await {
            got.push((m.seq, m.body));
            if got.len() % 70 == 0 {
                cuts += proxy.cut();
            }
        }
    }
    tokio::time::timeout(WAIT, sender).await.unwrap().unwrap();
    assert!(cuts >= 3, "the proxy cut the connection");
    assert_ordered(&got);
    let want: Vec<_> = (0..300).map(|i| format!("m{i}")).collect();
    assert_eq!(got.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_network_drop_tcp() {
    survives_network_drop("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_network_drop_ws() {
    survives_network_drop("ws").await;
}

/// A receiver that stalls is disconnected as `slow_consumer` by the server
/// (tiny outbox); once it reads again, the SDK resumes without loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_slow_consumer_disconnect() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Srv::start(dir.path(), None, |c| c.outbox_bytes = 256 * 1024).await;
    let mut cfg = config(srv.endpoint("tcp"), "alice");
    cfg.event_buffer = 8;
    let (alice, mut alice_ev) = Client::connect(cfg).await.unwrap();
    let (bob, _bob_ev) = Client::connect(config(srv.endpoint("tcp"), "bob"))
        .await
        .unwrap();
    let room = bob.create_room("slow", false).await.unwrap().room;
    alice.join(&room).await.unwrap();
    // alice reads nothing while bob sends about 16 MB.
    let body = "x".repeat(4000);
    let n = 4000;
    let mut pending = Vec::new();
    for _ in 0..n {
        pending.push(
            bob.enqueue(roomcast_client::OutgoingMessage::text(&room, body.clone()))
                .await
                .unwrap(),
        );
    }
    for p in pending {
        tokio::time::timeout(WAIT, p).await.unwrap().unwrap();
    }
    let (got, _, _, codes) = collect_messages(&mut alice_ev, n).await;
    assert_ordered(&got);
    assert_eq!(got.len(), n);
    assert!(
        codes.contains(&Some(ErrorCode::SlowConsumer)),
        "disconnected as a slow consumer: {codes:?}"
    );
    assert_eq!(full_history(&alice, &room).await.len(), n);
}

/// A status the app set (away) is set again on the new session after a
/// reconnect (a new session starts online).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn away_is_kept_across_a_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Srv::start(dir.path(), None, |_| {}).await;
    let proxy = Proxy::start(srv.addrs.tcp).await;
    let (alice, mut alice_ev) = Client::connect(config(Endpoint::Tcp(proxy.addr), "alice"))
        .await
        .unwrap();
    let (bob, _bob_ev) = Client::connect(config(srv.endpoint("tcp"), "bob"))
        .await
        .unwrap();
    let alice_id = roomcast_client::proto::ids::UserId::new("alice").unwrap();
    let status_of_alice =
        || async { bob.presence(std::slice::from_ref(&alice_id)).await.unwrap()[0].status };
    alice.set_status(Status::Away).await.unwrap();
    assert_eq!(status_of_alice().await, Status::Away);
    assert!(proxy.cut() > 0, "the proxy cut the connection");
    // Wait for the new session, then for its status to be set again.
    loop {
        if let Event::Connected {
            reconnect: true, ..
        } = next(&mut alice_ev).await
        {
            break;
        }
    }
    let until = tokio::time::Instant::now() + WAIT;
    while status_of_alice().await != Status::Away {
        assert!(
            tokio::time::Instant::now() < until,
            "away again after the reconnect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    alice.set_status(Status::Online).await.unwrap();
    assert_eq!(status_of_alice().await, Status::Online);
}
