//! The offline queue: sends made while the server is unreachable go out in
//! order on connect, exactly once; the queue file carries them across an app
//! restart. And the soak: thousands of sends with random connection cuts.

mod common;

use common::*;
use rand::Rng;
use roomcast_client::{Client, Endpoint, Event, OutgoingMessage};
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_sends_flush_in_order_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = Srv::start(dir.path(), None, |_| {}).await;
    let (owner, _ev) = Client::connect(config(srv.endpoint("tcp"), "owner"))
        .await
        .unwrap();
    let room = owner.create_room("offline", false).await.unwrap().room;
    let (alice, _alice_ev) = Client::connect(config(srv.endpoint("tcp"), "alice"))
        .await
        .unwrap();
    alice.join(&room).await.unwrap();
    drop((owner, alice));
    let addrs = srv.addrs;
    srv.stop().await;

    // alice starts while the server is down and queues 50 messages.
    let (alice, mut events) = Client::start(config(Endpoint::Tcp(addrs.tcp), "alice")).unwrap();
    let mut pending = Vec::new();
    for i in 0..50 {
        pending.push(
            alice
                .enqueue(OutgoingMessage::text(&room, format!("q{i}")))
                .await
                .unwrap(),
        );
    }
    assert_eq!(alice.queued(), 50);
    let local_ids: Vec<String> = pending.iter().map(|p| p.local_id().to_string()).collect();
    // Reconnect attempts fail meanwhile.
    loop {
        if let Event::ReconnectFailed { .. } = next(&mut events).await {
            break;
        }
    }
    let _srv = Srv::start(dir.path(), Some(addrs), |_| {}).await;
    let mut seqs = Vec::new();
    for p in pending {
        seqs.push(tokio::time::timeout(WAIT, p).await.unwrap().unwrap().seq);
    }
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "acked in order: {seqs:?}"
    );
    assert_eq!(alice.queued(), 0);
    let history = full_history(&alice, &room).await;
    let got: Vec<_> = history
        .iter()
        .map(|m| m.local_id.clone().unwrap())
        .collect();
    assert_eq!(got, local_ids, "each exactly once, in queue order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_file_survives_an_app_restart() {
    let dir = tempfile::tempdir().unwrap();
    let qdir = tempfile::tempdir().unwrap();
    let qfile = qdir.path().join("outbox.mp");
    let mut srv = Srv::start(dir.path(), None, |_| {}).await;
    let (alice, _ev) = Client::connect(config(srv.endpoint("tcp"), "alice"))
        .await
        .unwrap();
    let room = alice.create_room("persist", false).await.unwrap().room;
    alice.shutdown();
    let addrs = srv.addrs;
    srv.stop().await;

    // First app run: offline, queue 10, quit.
    let mut cfg = config(Endpoint::Tcp(addrs.tcp), "alice");
    cfg.queue_file = Some(qfile.clone());
    let (app1, _ev1) = Client::start(cfg.clone()).unwrap();
    for i in 0..10 {
        drop(
            app1.enqueue(OutgoingMessage::text(&room, format!("p{i}")))
                .await
                .unwrap(),
        );
    }
    app1.shutdown();
    drop(app1);
    assert!(qfile.exists());

    // Second run, server up: the file's messages go out and are acked.
    let _srv = Srv::start(dir.path(), Some(addrs), |_| {}).await;
    let (app2, mut ev2) = Client::start(cfg).unwrap();
    assert_eq!(app2.queued(), 10);
    let mut acked = 0;
    while acked < 10 {
        if let Event::SendAcked(_) = next(&mut ev2).await {
            acked += 1;
        }
    }
    let history = full_history(&app2, &room).await;
    let bodies: Vec<_> = history.iter().map(|m| m.body.clone()).collect();
    assert_eq!(bodies, (0..10).map(|i| format!("p{i}")).collect::<Vec<_>>());
    // The file follows the queue: empty now.
    for _ in 0..50 {
        if roomcast_client_queue_len(&qfile) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(roomcast_client_queue_len(&qfile), 0);
}

fn roomcast_client_queue_len(path: &std::path::Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let items: Vec<roomcast_client::QueuedSend> = rmp_serde::from_slice(&bytes).unwrap();
    items.len()
}

/// 3 senders × 1000 messages and 2 receivers, all through a proxy that cuts
/// every connection at random moments. At the end: every acknowledged message
/// is in the history exactly once, and each receiver saw exactly the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_random_disconnects() {
    const SENDERS: usize = 3;
    const PER_SENDER: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let srv = Srv::start(dir.path(), None, |_| {}).await;
    let proxy = Proxy::start(srv.addrs.tcp).await;
    let ep = Endpoint::Tcp(proxy.addr);
    let (owner, _owner_ev) = Client::connect(config(srv.endpoint("tcp"), "owner"))
        .await
        .unwrap();
    let room = owner.create_room("soak", false).await.unwrap().room;

    let mut receivers = Vec::new();
    for r in 0..2 {
        let (c, mut ev) = Client::connect(config(ep.clone(), &format!("reader{r}")))
            .await
            .unwrap();
        c.join(&room).await.unwrap();
        receivers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while seen.len() < SENDERS * PER_SENDER {
                match tokio::time::timeout(Duration::from_secs(40), ev.next()).await {
                    Ok(Some(Event::Message(m))) => {
                        seen.push((m.seq, m.local_id.unwrap_or_default()))
                    }
                    Ok(Some(Event::Closed { reason })) => panic!("closed: {reason}"),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            drop(c);
            seen
        }));
    }
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        // Senders are members but do not follow the room: their event streams go unread here,
        // and an unread stream holds the connection back (see README).
        let (c, ev) = Client::connect(config(ep.clone(), &format!("sender{s}")))
            .await
            .unwrap();
        c.join(&room).await.unwrap();
        c.leave(&room).await.unwrap();
        let room = room.clone();
        senders.push(tokio::spawn(async move {
            let _ev = ev;
            let mut acks = Vec::new();
            for chunk in 0..(PER_SENDER / 100) {
                let mut pending = Vec::new();
                for i in 0..100 {
                    let body = format!("s{s}-{}", chunk * 100 + i);
                    pending.push(c.enqueue(OutgoingMessage::text(&room, body)).await.unwrap());
                }
                for p in pending {
                    let lid = p.local_id().to_string();
                    let sent = tokio::time::timeout(Duration::from_secs(40), p)
                        .await
                        .expect("ack in time")
                        .expect("sent");
                    acks.push((sent.seq, lid));
                }
            }
            acks
        }));
    }
    // Cut every proxied connection at random moments while traffic flows.
    let cutter = tokio::spawn(async move {
        let mut cuts = 0;
        for _ in 0..25 {
            let ms = rand::rng().random_range(50..250);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            cuts += proxy.cut();
        }
        (cuts, proxy)
    });

    let mut acked: Vec<(u64, String)> = Vec::new();
    for s in senders {
        acked.extend(
            tokio::time::timeout(Duration::from_secs(60), s)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let (cuts, _proxy) = cutter.await.unwrap();
    assert!(cuts > 0, "connections were cut");
    assert_eq!(acked.len(), SENDERS * PER_SENDER);

    let history = full_history(&owner, &room).await;
    let mut count: HashMap<&str, usize> = HashMap::new();
    for m in &history {
        *count
            .entry(m.local_id.as_deref().unwrap_or(""))
            .or_default() += 1;
    }
    for (seq, lid) in &acked {
        assert_eq!(
            count.get(lid.as_str()),
            Some(&1),
            "{lid} (seq {seq}) exactly once"
        );
    }
    assert_eq!(history.len(), SENDERS * PER_SENDER, "nothing else stored");
    let want: Vec<(u64, String)> = history
        .iter()
        .map(|m| (m.seq, m.local_id.clone().unwrap_or_default()))
        .collect();
    for r in receivers {
        let seen = tokio::time::timeout(Duration::from_secs(60), r)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.len(), want.len(), "receiver saw every message");
        assert!(
            seen == want,
            "receiver stream equals history (no gaps, dups, reorder)"
        );
    }
    eprintln!("soak: {} messages, {cuts} connection cuts", history.len());
}
