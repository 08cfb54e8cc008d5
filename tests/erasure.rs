//! Deletions and edits erase: once a message is deleted, nothing a client can
//! read (history, `join {since}` replay, the room list's `last`) carries its
//! text, attachments or earlier edits; an edited message replays only its
//! latest text (proto-spec "Edits, deletions and reactions").

mod common;

use common::*;
use roomcast::config::Config;
use roomcast::ids::RoomId;
use roomcast::proto::client::{self as c, ClientFrame};
use roomcast::proto::types::{Attachment, MessageKind};
use roomcast::proto::ServerFrame;
use roomcast::server::Server;
use roomcast_client::Connection;
use tokio_util::sync::CancellationToken;

/// Words that were written once and must never be read again.
const SECRETS: [&str; 6] = [
    "hunter2",
    "hunter3",
    "secret-plan",
    "draft one",
    "draft two",
    "last words",
];

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} still shows {s:?}: {text}");
    }
}

async fn edit(c: &Connection, room: &RoomId, seq: u64, body: &str) -> ServerFrame {
    let (room, body) = (room.clone(), body.to_string());
    c.call(|id| {
        ClientFrame::Edit(c::Edit {
            id,
            room,
            seq,
            body,
        })
    })
    .await
    .unwrap()
}

async fn delete(c: &Connection, room: &RoomId, seq: u64) {
    let room = room.clone();
    c.call(|id| ClientFrame::Delete(c::Delete { id, room, seq }))
        .await
        .unwrap();
}

async fn replay(c: &mut Connection, room: &RoomId) -> Vec<ServerFrame> {
    let joined = c.join_since(room, 0).await.unwrap();
    let mut out: Vec<ServerFrame> = Vec::new();
    while out
        .last()
        .and_then(ServerFrame::stream_seq)
        .is_none_or(|s| s < joined.seq)
    {
        out.push(next_stream_event(c).await);
    }
    out
}

#[tokio::test]
async fn deleted_and_edited_text_is_gone_from_everything_a_client_reads() {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let alice = client(server.tcp, "alice").await;
    let room = alice.create_room("r", false).await.unwrap();
    alice.join(&room).await.unwrap();

    // A password, edited once, then deleted.
    let pw = alice
        .send(&room, "PASSWORD=hunter2", None)
        .await
        .unwrap()
        .seq;
    edit(&alice, &room, pw, "PASSWORD=hunter3").await;
    // A file, deleted.
    let file = {
        let room = room.clone();
        match alice
            .call(|id| {
                ClientFrame::Send(c::Send {
                    id,
                    room,
                    body: "see attached".into(),
                    local_id: None,
                    kind: MessageKind::File,
                    attachments: vec![Attachment {
                        url: "https://cdn.example/secret-plan.pdf".into(),
                        name: "secret-plan.pdf".into(),
                        mime: "application/pdf".into(),
                        size: 100,
                        width: None,
                        height: None,
                    }],
                    reply_to: None,
                })
            })
            .await
            .unwrap()
        {
            ServerFrame::Sent(s) => s.seq,
            other => panic!("{other:?}"),
        }
    };
    // A message edited twice: only the final text may remain.
    let draft = alice.send(&room, "draft one", None).await.unwrap().seq;
    edit(&alice, &room, draft, "draft two").await;
    edit(&alice, &room, draft, "final text").await;
    // The room's newest message, deleted: the room list's `last` is its tombstone.
    let last = alice.send(&room, "last words", None).await.unwrap().seq;
    delete(&alice, &room, pw).await;
    delete(&alice, &room, file).await;
    delete(&alice, &room, last).await;

    // Carol joins afterwards and reads everything there is to read.
    let mut carol = client(server.tcp, "carol").await;
    let events = replay(&mut carol, &room).await;
    assert_clean("replay", &format!("{events:?}"));
    let seqs: Vec<u64> = events.iter().filter_map(ServerFrame::stream_seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no gap");
    let msg = |seq| {
        events.iter().find_map(|f| match f {
            ServerFrame::Msg(m) if m.seq == seq => Some(m.clone()),
            _ => None,
        })
    };
    let (pw_msg, file_msg, draft_msg) = (msg(pw).unwrap(), msg(file).unwrap(), msg(draft).unwrap());
    assert!(pw_msg.deleted && pw_msg.body.is_empty());
    assert!(file_msg.deleted && file_msg.attachments.is_empty());
    assert_eq!(draft_msg.body, "final text");
    assert!(draft_msg.edited_at.is_some());
    for f in &events {
        if let ServerFrame::Edit(e) = f {
            let expected = if e.target == draft { "final text" } else { "" };
            assert_eq!(e.body, expected, "edit {} replays the latest text", e.seq);
        }
    }

    let history = carol.history(&room, None, Some(200)).await.unwrap();
    assert_clean("history", &format!("{history:?}"));
    let rooms = match carol
        .call(|id| ClientFrame::Rooms(c::Rooms { id }))
        .await
        .unwrap()
    {
        ServerFrame::Rooms(r) => r,
        other => panic!("{other:?}"),
    };
    let entry = rooms.rooms.iter().find(|r| r.room == room).unwrap();
    let last_msg = entry.last.as_ref().expect("the room has messages");
    assert!(last_msg.deleted && last_msg.seq == last);
    assert_clean("room list", &format!("{rooms:?}"));

    // The same after a restart on the same data dir: the erasure is in the
    // store, not in a cache.
    server.stop().await;
    let mut config = Config::for_tests(server.dir.path());
    config.no_rate_limits = true;
    let _keyspace = common::apply_test_store(&mut config);
    let again = Server::bind(config).await.unwrap();
    let addr = again.tcp_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(again.run(shutdown.clone()));
    let mut dave = client(addr, "dave").await;
    let events = replay(&mut dave, &room).await;
    assert_clean("replay after restart", &format!("{events:?}"));
    let history = dave.history(&room, None, Some(200)).await.unwrap();
    assert_clean("history after restart", &format!("{history:?}"));
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
