//! The chat domain over the wire: permissions, invites, direct rooms,
//! edit/delete/reactions, receipts and unread counts, typing, presence,
//! room lists, the directory, and lossless resume.

mod common;

use common::*;
use roomcast::ids::{RoomId, UserId};
use roomcast::proto::client::{self as c, ClientFrame};
use roomcast::proto::server::Message;
use roomcast::proto::types::{Attachment, MessageKind, Role, RoomKind, Status};
use roomcast::proto::{ErrorCode, ServerFrame};
use roomcast_client::{ConnError, Connection};
use std::time::Duration;

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

/// The error code of a failed call (panics on success).
fn code<T: std::fmt::Debug>(r: Result<T, ConnError>) -> ErrorCode {
    match r {
        Err(ConnError::Server(e)) => e.code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

async fn ok(c: &Connection, f: impl FnOnce(u64) -> ClientFrame) -> ServerFrame {
    c.call(f).await.unwrap()
}

async fn invite(
    c: &Connection,
    room: &RoomId,
    max_uses: Option<u32>,
    expires_in_s: Option<u64>,
) -> Result<String, ConnError> {
    let room = room.clone();
    match c
        .call(|id| {
            ClientFrame::CreateInvite(c::CreateInvite {
                id,
                room,
                expires_in_s,
                max_uses,
            })
        })
        .await?
    {
        ServerFrame::Invite(i) => Ok(i.invite.code),
        other => panic!("{other:?}"),
    }
}

async fn join_with(c: &Connection, room: &RoomId, code: &str) -> Result<ServerFrame, ConnError> {
    let (room, invite) = (room.clone(), Some(code.to_string()));
    c.call(|id| {
        ClientFrame::Join(c::Join {
            id,
            room,
            since: None,
            invite,
        })
    })
    .await
}

async fn admin(
    c: &Connection,
    room: &RoomId,
    user: &str,
    op: &str,
) -> Result<ServerFrame, ConnError> {
    let ru = |id| c::RoomUser {
        id,
        room: room.clone(),
        user: uid(user),
    };
    let frame = |id| match op {
        "kick" => ClientFrame::Kick(ru(id)),
        "ban" => ClientFrame::Ban(ru(id)),
        "unban" => ClientFrame::Unban(ru(id)),
        "transfer" => ClientFrame::Transfer(ru(id)),
        "admin" => ClientFrame::SetRole(c::SetRole {
            id,
            room: room.clone(),
            user: uid(user),
            role: Role::Admin,
        }),
        other => panic!("{other}"),
    };
    c.call(frame).await
}

async fn edit(
    c: &Connection,
    room: &RoomId,
    seq: u64,
    body: &str,
) -> Result<ServerFrame, ConnError> {
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
}

async fn delete(c: &Connection, room: &RoomId, seq: u64) -> Result<ServerFrame, ConnError> {
    let room = room.clone();
    c.call(|id| ClientFrame::Delete(c::Delete { id, room, seq }))
        .await
}

async fn react(
    c: &Connection,
    room: &RoomId,
    seq: u64,
    emoji: &str,
    on: bool,
) -> Result<ServerFrame, ConnError> {
    let (room, emoji) = (room.clone(), emoji.to_string());
    c.call(|id| {
        ClientFrame::React(c::React {
            id,
            room,
            seq,
            emoji,
            on,
        })
    })
    .await
}

async fn read(c: &Connection, room: &RoomId, seq: u64) -> u64 {
    let room = room.clone();
    match ok(c, |id| ClientFrame::Read(c::Read { id, room, seq })).await {
        ServerFrame::ReadAck(a) => a.unread,
        other => panic!("{other:?}"),
    }
}

/// My unread count in `room`, from the `rooms` list.
async fn unread(c: &Connection, room: &RoomId) -> u64 {
    match ok(c, |id| ClientFrame::Rooms(c::Rooms { id })).await {
        ServerFrame::Rooms(r) => r
            .rooms
            .iter()
            .find(|s| &s.room == room)
            .map(|s| s.unread)
            .expect("room listed"),
        other => panic!("{other:?}"),
    }
}

async fn history(c: &Connection, room: &RoomId) -> Vec<Message> {
    c.history(room, None, Some(200)).await.unwrap().messages
}

#[tokio::test]
async fn permission_matrix() {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let owner = client(server.tcp, "owner").await;
    let adm = client(server.tcp, "adm").await;
    let member = client(server.tcp, "member").await;
    let outsider = client(server.tcp, "outsider").await;
    let banned = client(server.tcp, "banned").await;
    let room = owner.create_room("Team", true).await.unwrap();
    owner.join(&room).await.unwrap();

    // Only admins and owners make invites; members of private rooms come through them.
    assert_eq!(
        code(join_with(&outsider, &room, "nope").await),
        ErrorCode::Forbidden
    );
    assert_eq!(code(outsider.join(&room).await), ErrorCode::Forbidden);
    let code1 = invite(&owner, &room, None, None).await.unwrap();
    for c in [&adm, &member, &banned] {
        join_with(c, &room, &code1).await.unwrap();
    }
    assert_eq!(
        code(invite(&member, &room, None, None).await),
        ErrorCode::Forbidden
    );
    admin(&owner, &room, "adm", "admin").await.unwrap();
    assert_eq!(
        code(admin(&adm, &room, "member", "admin").await),
        ErrorCode::Forbidden,
        "roles: owner only"
    );
    invite(&adm, &room, None, None).await.unwrap();

    // Banning removes a member and keeps them out, invite or not.
    admin(&adm, &room, "banned", "ban").await.unwrap();
    assert_eq!(
        code(banned.send(&room, "hi", None).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(join_with(&banned, &room, &code1).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(banned.history(&room, None, None).await),
        ErrorCode::Forbidden
    );

    // Sending: members of any role; nobody else.
    let m_owner = owner.send(&room, "from owner", None).await.unwrap().seq;
    adm.send(&room, "from admin", None).await.unwrap();
    let m_member = member.send(&room, "from member", None).await.unwrap().seq;
    assert_eq!(
        code(outsider.send(&room, "x", None).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(outsider.history(&room, None, None).await),
        ErrorCode::Forbidden
    );
    let r = room.clone();
    assert_eq!(
        code(
            outsider
                .call(|id| ClientFrame::Members(c::Members { id, room: r }))
                .await
        ),
        ErrorCode::Forbidden
    );

    // Editing: the author only. Deleting: the author or an admin.
    assert_eq!(
        code(edit(&adm, &room, m_member, "hijack").await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(delete(&member, &room, m_owner).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(delete(&outsider, &room, m_owner).await),
        ErrorCode::Forbidden
    );
    delete(&adm, &room, m_member).await.unwrap();

    // Kicking: admins kick lower roles only.
    assert_eq!(
        code(admin(&member, &room, "adm", "kick").await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(admin(&adm, &room, "owner", "kick").await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(admin(&outsider, &room, "member", "kick").await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(admin(&adm, &room, "adm", "kick").await),
        ErrorCode::BadRequest,
        "not yourself"
    );
    admin(&adm, &room, "member", "kick").await.unwrap();
    assert_eq!(
        code(member.send(&room, "still here?", None).await),
        ErrorCode::Forbidden
    );

    // Ownership: only the owner transfers, changes or deletes the room.
    let upd = |id, room: &RoomId| {
        ClientFrame::UpdateRoom(c::UpdateRoom {
            id,
            room: room.clone(),
            name: Some("Renamed".into()),
            description: None,
            private: None,
        })
    };
    assert_eq!(
        code(adm.call(|id| upd(id, &room)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(admin(&adm, &room, "owner", "transfer").await),
        ErrorCode::Forbidden
    );
    let r = room.clone();
    assert_eq!(
        code(
            owner
                .call(|id| ClientFrame::LeaveRoom(c::RoomOnly { id, room: r }))
                .await
        ),
        ErrorCode::Forbidden,
        "owner must transfer first"
    );
    admin(&owner, &room, "adm", "transfer").await.unwrap();
    assert_eq!(
        code(owner.call(|id| upd(id, &room)).await),
        ErrorCode::Forbidden,
        "now an admin"
    );
    adm.call(|id| upd(id, &room)).await.unwrap();
    let r = room.clone();
    match ok(&adm, |id| ClientFrame::Members(c::Members { id, room: r })).await {
        ServerFrame::Members(m) => {
            let roles: Vec<(String, Role)> = m
                .members
                .iter()
                .map(|m| (m.user.to_string(), m.role))
                .collect();
            assert_eq!(
                roles,
                vec![("adm".into(), Role::Owner), ("owner".into(), Role::Admin)]
            );
        }
        other => panic!("{other:?}"),
    }
    let r = room.clone();
    assert_eq!(
        code(
            owner
                .call(|id| ClientFrame::DeleteRoom(c::RoomOnly { id, room: r }))
                .await
        ),
        ErrorCode::Forbidden
    );
    let r = room.clone();
    adm.call(|id| ClientFrame::DeleteRoom(c::RoomOnly { id, room: r }))
        .await
        .unwrap();
    assert_eq!(code(owner.join(&room).await), ErrorCode::NotFound);
    assert_eq!(
        code(adm.send(&room, "anyone?", None).await),
        ErrorCode::NotFound
    );
    server.stop().await;
}

#[tokio::test]
async fn invites_expire_run_out_and_can_be_revoked() {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let owner = client(server.tcp, "owner").await;
    let room = owner.create_room("Club", true).await.unwrap();
    let once = invite(&owner, &room, Some(1), None).await.unwrap();
    join_with(&client(server.tcp, "u1").await, &room, &once)
        .await
        .unwrap();
    assert_eq!(
        code(join_with(&client(server.tcp, "u2").await, &room, &once).await),
        ErrorCode::Forbidden
    );

    let short = invite(&owner, &room, None, Some(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        code(join_with(&client(server.tcp, "u3").await, &room, &short).await),
        ErrorCode::Forbidden
    );

    let revoked = invite(&owner, &room, None, None).await.unwrap();
    let (r, code_) = (room.clone(), revoked.clone());
    owner
        .call(|id| {
            ClientFrame::RevokeInvite(c::RevokeInvite {
                id,
                room: r,
                code: code_,
            })
        })
        .await
        .unwrap();
    assert_eq!(
        code(join_with(&client(server.tcp, "u4").await, &room, &revoked).await),
        ErrorCode::Forbidden
    );

    let r = room.clone();
    match ok(&owner, |id| {
        ClientFrame::Invites(c::RoomOnly { id, room: r })
    })
    .await
    {
        ServerFrame::Invites(list) => {
            let once = list.invites.iter().find(|i| i.code == once).unwrap();
            assert_eq!((once.uses, once.max_uses), (1, Some(1)));
            assert!(
                list.invites.iter().all(|i| i.code != revoked),
                "revoked invites are not listed"
            );
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

async fn start_direct(c: &Connection, peer: &str) -> Result<RoomId, ConnError> {
    match c
        .call(|id| {
            ClientFrame::StartDirect(c::StartDirect {
                id,
                user: uid(peer),
            })
        })
        .await?
    {
        ServerFrame::Direct(d) => Ok(d.room),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn direct_rooms_are_deterministic_and_closed() {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let alice = client(server.tcp, "alice").await;
    let mut bob = client(server.tcp, "bob").await;
    let carol = client(server.tcp, "carol").await;
    let (d1, d2) = tokio::join!(start_direct(&alice, "bob"), start_direct(&alice, "bob"));
    let d1 = d1.unwrap();
    assert_eq!(d1, d2.unwrap(), "concurrent starts give one room");
    assert_eq!(start_direct(&bob, "alice").await.unwrap(), d1);
    assert_ne!(start_direct(&alice, "carol").await.unwrap(), d1);
    assert_eq!(
        code(start_direct(&alice, "alice").await),
        ErrorCode::BadRequest
    );

    bob.join(&d1).await.unwrap();
    alice.join(&d1).await.unwrap();
    alice.send(&d1, "psst", None).await.unwrap();
    assert_eq!(next_msg(&mut bob).await.body, "psst");
    assert_eq!(code(carol.join(&d1).await), ErrorCode::Forbidden);
    assert_eq!(
        code(invite(&alice, &d1, None, None).await),
        ErrorCode::Forbidden
    );
    let r = d1.clone();
    assert_eq!(
        code(
            alice
                .call(|id| ClientFrame::LeaveRoom(c::RoomOnly { id, room: r }))
                .await
        ),
        ErrorCode::Forbidden
    );
    match ok(&bob, |id| ClientFrame::Rooms(c::Rooms { id })).await {
        ServerFrame::Rooms(r) => {
            let d = r.rooms.iter().find(|s| s.room == d1).unwrap();
            assert_eq!(
                (d.kind, d.peer.as_ref().map(|p| p.as_str())),
                (RoomKind::Direct, Some("alice"))
            );
            assert_eq!(d.unread, 1);
            assert_eq!(d.last.as_ref().unwrap().body, "psst");
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

/// `history {after}` pages forward over seqs that hold no message (edit,
/// reaction and delete events), each message in its latest state.
#[tokio::test]
async fn history_pages_forward_with_after() {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let alice = client(server.tcp, "alice").await;
    let bob = client(server.tcp, "bob").await;
    let room = alice.create_room("r", false).await.unwrap();
    alice.join(&room).await.unwrap();
    bob.join(&room).await.unwrap();
    for i in 1..=6u64 {
        let sent = alice.send(&room, &format!("m{i}"), None).await.unwrap();
        assert_eq!(sent.seq, i);
    }
    // Seqs 7, 8, 9: an edit, a reaction, a deletion (events, not messages).
    edit(&alice, &room, 2, "m2 fixed").await.unwrap();
    react(&bob, &room, 3, "👍", true).await.unwrap();
    delete(&alice, &room, 4).await.unwrap();
    assert_eq!(alice.send(&room, "m10", None).await.unwrap().seq, 10);

    let seqs = |p: &roomcast::proto::server::HistoryPage| {
        p.messages.iter().map(|m| m.seq).collect::<Vec<_>>()
    };
    let p = bob.history_after(&room, 0, Some(3)).await.unwrap();
    assert_eq!((seqs(&p), p.more), (vec![1, 2, 3], true));
    assert_eq!(p.messages[1].body, "m2 fixed");
    assert!(p.messages[1].edited_at.is_some());
    assert_eq!(p.messages[2].reactions.len(), 1);
    assert!(p.messages[2].reactions[0].me, "bob reacted");
    let p = bob.history_after(&room, 3, Some(3)).await.unwrap();
    assert_eq!((seqs(&p), p.more), (vec![4, 5, 6], true));
    assert!(p.messages[0].deleted && p.messages[0].body.is_empty());
    let p = bob.history_after(&room, 6, Some(3)).await.unwrap();
    assert_eq!((seqs(&p), p.more), (vec![10], false));
    // From an event's seq: the next message.
    let p = bob.history_after(&room, 8, None).await.unwrap();
    assert_eq!((seqs(&p), p.more), (vec![10], false));
    // A full last page says no more; past the end is empty.
    let p = bob.history_after(&room, 5, Some(2)).await.unwrap();
    assert_eq!((seqs(&p), p.more), (vec![6, 10], false));
    for after in [10, u64::MAX] {
        let p = bob.history_after(&room, after, None).await.unwrap();
        assert_eq!((seqs(&p), p.more), (vec![], false), "after {after}");
    }
    // Forward and back meet: the same messages either way.
    let back = bob.history(&room, None, Some(200)).await.unwrap();
    let fwd = bob.history_after(&room, 0, Some(200)).await.unwrap();
    assert_eq!(back.messages, fwd.messages);
    // `before` with `after`: bad_request; a stranger to a private room: forbidden.
    let r = room.clone();
    let both = bob
        .call(|id| {
            ClientFrame::History(c::History {
                id,
                room: r,
                before: Some(5),
                after: Some(1),
                limit: None,
            })
        })
        .await;
    assert_eq!(code(both), ErrorCode::BadRequest);
    let secret = alice.create_room("s", true).await.unwrap();
    assert_eq!(
        code(bob.history_after(&secret, 0, None).await),
        ErrorCode::Forbidden
    );
    server.stop().await;
}

#[tokio::test]
async fn edits_deletes_and_reactions_are_stream_events() {
    let mut server = TestServer::start_with(|c| {
        c.no_rate_limits = true;
        c.edit_window_secs = 1;
    })
    .await;
    let alice = client(server.tcp, "alice").await;
    let mut bob = client(server.tcp, "bob").await;
    let room = alice.create_room("r", false).await.unwrap();
    alice.join(&room).await.unwrap();
    bob.join(&room).await.unwrap();
    let m1 = alice.send(&room, "helo", None).await.unwrap().seq;
    let m2 = alice.send(&room, "doomed", None).await.unwrap().seq;
    assert_eq!(next_msg(&mut bob).await.seq, m1);
    assert_eq!(next_msg(&mut bob).await.seq, m2);

    // Edit: the author, within the window; pushed with its own seq.
    let ServerFrame::Ok(e) = edit(&alice, &room, m1, "hello").await.unwrap() else {
        panic!()
    };
    assert_eq!(e.seq, Some(3));
    match next_stream_event(&mut bob).await {
        ServerFrame::Edit(ev) => {
            assert_eq!((ev.seq, ev.target, ev.body.as_str()), (3, m1, "hello"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code(edit(&alice, &room, 999, "x").await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(edit(&alice, &room, m1, "").await),
        ErrorCode::BadRequest
    );

    // Reactions: one per user and emoji; counts and "me" per reader.
    react(&alice, &room, m1, "👍", true).await.unwrap();
    let ServerFrame::Ok(again) = react(&alice, &room, m1, "👍", true).await.unwrap() else {
        panic!()
    };
    assert_eq!(again.seq, None, "a duplicate reaction changes nothing");
    react(&bob, &room, m1, "👍", true).await.unwrap();
    react(&bob, &room, m1, ":tada:", true).await.unwrap();
    react(&bob, &room, m1, ":tada:", false).await.unwrap();
    assert_eq!(
        code(react(&bob, &room, m1, "not an emoji", true).await),
        ErrorCode::BadRequest
    );
    let h = history(&bob, &room).await;
    assert_eq!(h[0].body, "hello");
    assert!(h[0].edited_at.is_some());
    assert_eq!(h[0].reactions.len(), 1);
    assert_eq!(
        (
            h[0].reactions[0].emoji.as_str(),
            h[0].reactions[0].count,
            h[0].reactions[0].me
        ),
        ("👍", 2, true)
    );

    // Delete: a tombstone stays; content and reactions go.
    delete(&alice, &room, m2).await.unwrap();
    let ServerFrame::Ok(twice) = delete(&alice, &room, m2).await.unwrap() else {
        panic!()
    };
    assert_eq!(twice.seq, None, "deleting twice is a no-op");
    assert_eq!(
        code(edit(&alice, &room, m2, "undo").await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(react(&bob, &room, m2, "👍", true).await),
        ErrorCode::BadRequest
    );
    let h = history(&alice, &room).await;
    let tomb = h.iter().find(|m| m.seq == m2).unwrap();
    assert!(tomb.deleted && tomb.body.is_empty());
    assert_eq!(h.len(), 2, "history lists messages, not events");

    // The window closes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        code(edit(&alice, &room, m1, "too late").await),
        ErrorCode::Forbidden
    );
    server.stop().await;
}

#[tokio::test]
async fn messages_carry_kinds_attachments_and_replies() {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let alice = client(server.tcp, "alice").await;
    let room = alice.create_room("r", false).await.unwrap();
    alice.join(&room).await.unwrap();
    let first = alice.send(&room, "look", None).await.unwrap().seq;
    let att = Attachment {
        url: "https://cdn.example/cat.png".into(),
        name: "cat.png".into(),
        mime: "image/png".into(),
        size: 2048,
        width: Some(640),
        height: Some(480),
    };
    let send = |att: Vec<Attachment>, kind, reply_to| {
        let room = room.clone();
        move |id| {
            ClientFrame::Send(c::Send {
                id,
                room,
                body: String::new(),
                local_id: None,
                kind,
                attachments: att,
                reply_to,
            })
        }
    };
    alice
        .call(send(vec![att.clone()], MessageKind::Image, Some(first)))
        .await
        .unwrap();
    let h = history(&alice, &room).await;
    assert_eq!(
        (h[1].kind, h[1].attachments.clone(), h[1].reply_to),
        (MessageKind::Image, vec![att.clone()], Some(first))
    );

    let bad_mime = Attachment {
        mime: "application/pdf".into(),
        ..att.clone()
    };
    let Err(ConnError::Server(e)) = alice
        .call(send(vec![bad_mime], MessageKind::Image, None))
        .await
    else {
        panic!()
    };
    assert!(e.message.contains("attachments[0].mime"), "{}", e.message);
    let Err(ConnError::Server(e)) = alice.call(send(vec![], MessageKind::File, None)).await else {
        panic!()
    };
    assert!(e.message.contains("attachments"), "{}", e.message);
    let Err(ConnError::Server(e)) = alice
        .call(send(vec![att.clone()], MessageKind::Image, Some(77)))
        .await
    else {
        panic!()
    };
    assert!(e.message.contains("reply_to"), "{}", e.message);
    assert_eq!(
        code(alice.send(&room, "ring \u{7}", None).await),
        ErrorCode::BadRequest
    );
    server.stop().await;
}

#[tokio::test]
async fn unread_counts_stay_exact() {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let a = client(server.tcp, "a").await;
    let b = client(server.tcp, "b").await;
    let b2 = client(server.tcp, "b").await;
    let cc = client(server.tcp, "c").await;
    let room = a.create_room("counts", false).await.unwrap();
    for x in [&a, &b, &b2, &cc] {
        x.join(&room).await.unwrap();
    }
    let counts = |room: RoomId| {
        let (a, b, cc) = (&a, &b, &cc);
        async move {
            (
                unread(a, &room).await,
                unread(b, &room).await,
                unread(cc, &room).await,
            )
        }
    };
    let m1 = a.send(&room, "m1", None).await.unwrap().seq;
    a.send(&room, "m2", None).await.unwrap();
    let m3 = a.send(&room, "m3", None).await.unwrap().seq;
    assert_eq!(counts(room.clone()).await, (0, 3, 3));
    b.send(&room, "m4", None).await.unwrap();
    assert_eq!(counts(room.clone()).await, (1, 0, 4));
    edit(&a, &room, m1, "m1!").await.unwrap();
    assert_eq!(
        counts(room.clone()).await,
        (1, 0, 4),
        "edits are not unread messages"
    );
    assert_eq!(read(&cc, &room, 2).await, 2);
    delete(&a, &room, m3).await.unwrap();
    assert_eq!(
        counts(room.clone()).await,
        (1, 0, 1),
        "a message deleted by someone else is no longer unread"
    );
    let m5 = b2.send(&room, "m5", None).await.unwrap().seq;
    assert_eq!(
        counts(room.clone()).await,
        (2, 0, 2),
        "another session of b sent it: still b's own"
    );
    react(&a, &room, m5, "👍", true).await.unwrap();
    assert_eq!(read(&cc, &room, 1000).await, 0, "clamped to the latest seq");
    assert_eq!(
        read(&cc, &room, 1).await,
        0,
        "read pointers never move back"
    );
    assert_eq!(counts(room.clone()).await, (2, 0, 0));

    // Receipts: who read m5, who got it.
    let r = room.clone();
    match ok(&a, |id| {
        ClientFrame::Receipts(c::Receipts {
            id,
            room: r,
            seq: m5,
        })
    })
    .await
    {
        ServerFrame::Receipts(rc) => {
            let names = |v: &Vec<UserId>| v.iter().map(|u| u.to_string()).collect::<Vec<_>>();
            assert_eq!(names(&rc.readers), vec!["b", "c"]);
            assert_eq!(names(&rc.delivered), vec!["a", "b", "c"]);
        }
        other => panic!("{other:?}"),
    }
    // Counts survive a restart (they come from stored state).
    let dir = server.dir.path().to_path_buf();
    drop((a, b, b2, cc));
    server.stop().await;
    let mut server = TestServer::start_with(|c| c.data_dir = dir.clone()).await;
    let a = client(server.tcp, "a").await;
    assert_eq!(unread(&a, &room).await, 2);
    server.stop().await;
}

#[tokio::test]
async fn typing_is_pushed_to_others_and_expires() {
    let mut server = TestServer::start_with(|c| {
        c.no_rate_limits = true;
        c.typing_ttl_ms = 300;
    })
    .await;
    let alice = client(server.tcp, "alice").await;
    let mut bob = client(server.tcp, "bob").await;
    let room = alice.create_room("r", false).await.unwrap();
    alice.join(&room).await.unwrap();
    bob.join(&room).await.unwrap();
    let typing = |on| {
        ClientFrame::Typing(c::Typing {
            id: None,
            room: room.clone(),
            on,
        })
    };
    alice.send_frame(&typing(true)).unwrap();
    alice.send_frame(&typing(true)).unwrap();
    let mut seen = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while seen.len() < 2 && tokio::time::Instant::now() < until {
        if let Ok(Some(ServerFrame::Typing(t))) =
            tokio::time::timeout(Duration::from_millis(100), bob.next_event()).await
        {
            assert_eq!(t.user.as_str(), "alice");
            seen.push(t.on);
        }
    }
    assert_eq!(
        seen,
        vec![true, false],
        "one start (the refresh only extends it), then expiry"
    );
    server.stop().await;
}

async fn next_status(bob: &mut Connection) -> Status {
    let fut = async {
        loop {
            if let Some(ServerFrame::Presence(p)) = bob.next_event().await {
                return p.users[0].status;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .expect("a presence push")
}

#[tokio::test]
async fn presence_online_away_offline() {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let alice = client(server.tcp, "alice").await;
    let room = alice.create_room("r", false).await.unwrap();
    alice.join(&room).await.unwrap();
    let mut bob = client(server.tcp, "bob").await;
    let j = bob.join(&room).await.unwrap();
    let mut online: Vec<String> = j.online.unwrap().iter().map(|u| u.to_string()).collect();
    online.sort();
    assert_eq!(
        (online, j.online_count, j.members),
        (vec!["alice".to_string(), "bob".to_string()], 2, 2)
    );

    let mut statuses = Vec::new();
    let alice2 = client(server.tcp, "alice").await; // a second device: no change
    alice
        .call(|id| {
            ClientFrame::Presence(c::Presence {
                id,
                status: Some(Status::Away),
                users: vec![],
            })
        })
        .await
        .unwrap();
    alice2
        .call(|id| {
            ClientFrame::Presence(c::Presence {
                id,
                status: Some(Status::Away),
                users: vec![],
            })
        })
        .await
        .unwrap();
    // Changes are coalesced per room every 250 ms: wait for away before leaving.
    statuses.push(next_status(&mut bob).await);
    drop(alice);
    drop(alice2);
    statuses.push(next_status(&mut bob).await);
    assert_eq!(statuses, vec![Status::Away, Status::Offline]);
    match ok(&bob, |id| {
        ClientFrame::Presence(c::Presence {
            id,
            status: None,
            users: vec![uid("alice"), uid("nobody")],
        })
    })
    .await
    {
        ServerFrame::Presence(p) => {
            assert_eq!(p.users[0].status, Status::Offline);
            assert!(p.users[0].last_seen.is_some());
            assert_eq!(p.users[1].last_seen, None);
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

/// The next presence push about `user` (others are skipped).
async fn next_status_of(c: &mut Connection, user: &str) -> Status {
    let fut = async {
        loop {
            if let Some(ServerFrame::Presence(p)) = c.next_event().await {
                if let Some(u) = p.users.iter().find(|u| u.user.as_str() == user) {
                    return u.status;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .expect("a presence push")
}

#[tokio::test]
async fn presence_turns_away_after_inactivity_and_online_at_the_next_request() {
    let mut server = TestServer::start_with(|c| {
        c.no_rate_limits = true;
        c.presence_away_after_ms = 400;
    })
    .await;
    let alice = client(server.tcp, "alice").await;
    let room = alice.create_room("r", false).await.unwrap();
    let mut bob = client(server.tcp, "bob").await;
    bob.join(&room).await.unwrap();
    // Alice's last request; t0 is taken before it, so the delay runs after t0.
    let t0 = std::time::Instant::now();
    alice.join(&room).await.unwrap();
    // Alice does nothing more (the SDK's heartbeats do not count): away.
    assert_eq!(next_status_of(&mut bob, "alice").await, Status::Away);
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "not before the delay"
    );
    // Her next request brings her back.
    alice.send(&room, "back", None).await.unwrap();
    assert_eq!(next_status_of(&mut bob, "alice").await, Status::Online);
    // Queried, not only pushed.
    match ok(&bob, |id| {
        ClientFrame::Presence(c::Presence {
            id,
            status: None,
            users: vec![uid("alice")],
        })
    })
    .await
    {
        ServerFrame::Presence(p) => assert_eq!(p.users[0].status, Status::Online),
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn room_list_sync_favorites_and_directory() {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let alice = client(server.tcp, "alice").await;
    let mut ids = Vec::new();
    for (name, private) in [
        ("Alpha", false),
        ("alpine", false),
        ("Beta", false),
        ("Alps", true),
    ] {
        ids.push(alice.create_room(name, private).await.unwrap());
    }
    alice.join(&ids[2]).await.unwrap();
    alice.send(&ids[2], "latest", None).await.unwrap();
    let fav = ids[1].clone();
    alice
        .call(|id| {
            ClientFrame::Favorite(c::Favorite {
                id,
                room: Some(fav),
                user: None,
                on: true,
            })
        })
        .await
        .unwrap();
    alice
        .call(|id| {
            ClientFrame::Favorite(c::Favorite {
                id,
                room: None,
                user: Some(uid("bob")),
                on: true,
            })
        })
        .await
        .unwrap();

    // hello {sync: true}: the room list arrives right after welcome.
    let mut raw = Raw::connect(server.tcp).await;
    raw.send_map(serde_json::json!({"t": "hello", "v": 1, "token": token("alice"), "sync": true}))
        .await;
    assert!(matches!(raw.next().await, Some(ServerFrame::Welcome(_))));
    match raw.next().await {
        Some(ServerFrame::Rooms(r)) => {
            assert_eq!(r.id, None);
            assert_eq!(r.rooms.len(), 4);
            assert_eq!(r.rooms[0].room, ids[2], "most recent activity first");
            assert_eq!(r.rooms[0].last.as_ref().unwrap().body, "latest");
            assert!(r.rooms.iter().all(|s| s.role == Role::Owner));
            assert!(r.rooms.iter().find(|s| s.room == ids[1]).unwrap().favorite);
        }
        other => panic!("{other:?}"),
    }
    match ok(&alice, |id| ClientFrame::Favorites(c::Favorites { id })).await {
        ServerFrame::Favorites(f) => {
            assert_eq!((f.rooms, f.users), (vec![ids[1].clone()], vec![uid("bob")]))
        }
        other => panic!("{other:?}"),
    }

    // Directory: public rooms by name prefix, paged.
    let bob = client(server.tcp, "bob").await;
    let page = |after: Option<String>| {
        move |id| {
            ClientFrame::PublicRooms(c::PublicRooms {
                id,
                prefix: Some("AL".into()),
                after,
                limit: Some(1),
            })
        }
    };
    let ServerFrame::PublicRooms(p1) = ok(&bob, page(None)).await else {
        panic!()
    };
    assert_eq!(
        p1.rooms.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        vec!["Alpha"]
    );
    let ServerFrame::PublicRooms(p2) = ok(&bob, page(p1.next.clone())).await else {
        panic!()
    };
    assert_eq!(
        p2.rooms.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        vec!["alpine"]
    );
    assert_eq!(p2.next, None, "private Alps is not listed");
    server.stop().await;
}

#[tokio::test]
async fn membership_changes_are_pushed() {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let mut owner = client(server.tcp, "owner").await;
    let room = owner.create_room("r", false).await.unwrap();
    owner.join(&room).await.unwrap();
    let mut bob = client(server.tcp, "bob").await;
    bob.join(&room).await.unwrap();
    let mut events = Vec::new();
    admin(&owner, &room, "bob", "kick").await.unwrap();
    while events.len() < 2 {
        match tokio::time::timeout(WAIT, owner.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            ServerFrame::MemberJoined(j) => events.push(format!("joined {}", j.user)),
            ServerFrame::MemberLeft(l) => events.push(format!("left {} {:?}", l.user, l.reason)),
            _ => {}
        }
    }
    assert_eq!(
        events,
        vec!["joined bob".to_string(), "left bob Kicked".to_string()]
    );
    // The kicked session got the news and nothing after it.
    loop {
        match tokio::time::timeout(WAIT, bob.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            ServerFrame::MemberLeft(l) if l.user.as_str() == "bob" => break,
            _ => {}
        }
    }
    owner.send(&room, "after the kick", None).await.unwrap();
    bob.ping().await.unwrap();
    while let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(300), bob.next_event()).await
    {
        assert!(
            !matches!(f, ServerFrame::Msg(_)),
            "kicked sessions get no messages: {f:?}"
        );
    }
    server.stop().await;
}

/// Every stream event seq a client sees, with its frame.
async fn collect_stream(c: &mut Connection, upto: u64) -> Vec<ServerFrame> {
    let mut out = Vec::new();
    while out
        .last()
        .and_then(ServerFrame::stream_seq)
        .is_none_or(|s| s < upto)
    {
        out.push(next_stream_event(c).await);
    }
    out
}

#[tokio::test]
async fn resume_replays_everything_then_goes_live() {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let alice = std::sync::Arc::new(client(server.tcp, "alice").await);
    let room = alice.create_room("r", false).await.unwrap();
    alice.join(&room).await.unwrap();
    let mut bob = client(server.tcp, "bob").await;
    bob.join(&room).await.unwrap();
    let first = alice.send(&room, "seen", None).await.unwrap().seq;
    assert_eq!(next_msg(&mut bob).await.seq, first);
    drop(bob); // bob goes away mid-conversation

    // While bob is away: messages, edits, reactions, deletes.
    let mut last = 0;
    for i in 0..300 {
        last = alice.send(&room, &format!("m{i}"), None).await.unwrap().seq;
        if i % 50 == 0 {
            edit(&alice, &room, last, &format!("m{i} (edited)"))
                .await
                .unwrap();
            react(&alice, &room, last, "👍", true).await.unwrap();
        }
        if i % 97 == 0 {
            delete(&alice, &room, last).await.unwrap();
        }
    }
    // Bob resumes while alice keeps sending: the switch from replay to live must be exact.
    let burst = {
        let (alice, room) = (alice.clone(), room.clone());
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..200 {
                seqs.push(
                    alice
                        .send(&room, &format!("live{i}"), None)
                        .await
                        .unwrap()
                        .seq,
                );
            }
            seqs
        })
    };
    let mut bob = client(server.tcp, "bob").await;
    let joined = bob.join_since(&room, first).await.unwrap();
    assert_eq!(joined.complete, Some(true));
    assert!(joined.seq >= last);
    let live = burst.await.unwrap();
    let end = *live.last().unwrap();
    let seen = collect_stream(&mut bob, end).await;
    let seqs: Vec<u64> = seen.iter().filter_map(ServerFrame::stream_seq).collect();
    assert_eq!(
        seqs,
        ((first + 1)..=end).collect::<Vec<_>>(),
        "every event once, in order, no gap at the switch"
    );

    // Applying the replayed events gives exactly what history says.
    let mut state: std::collections::BTreeMap<u64, (String, bool, u32)> = Default::default();
    for f in &seen {
        match f {
            ServerFrame::Msg(m) => {
                state.insert(m.seq, (m.body.clone(), false, 0));
            }
            ServerFrame::Edit(e) => state.get_mut(&e.target).unwrap().0 = e.body.clone(),
            ServerFrame::Delete(d) => *state.get_mut(&d.target).unwrap() = (String::new(), true, 0),
            ServerFrame::Reaction(r) => state.get_mut(&r.target).unwrap().2 += 1,
            other => panic!("{other:?}"),
        }
    }
    let mut hist = Vec::new();
    let mut before = None;
    loop {
        let page = bob.history(&room, before, Some(200)).await.unwrap();
        before = page.messages.first().map(|m| m.seq);
        hist.splice(0..0, page.messages);
        if !page.more {
            break;
        }
    }
    let from_history: std::collections::BTreeMap<u64, (String, bool, u32)> = hist
        .iter()
        .filter(|m| m.seq > first)
        .map(|m| {
            (
                m.seq,
                (
                    m.body.clone(),
                    m.deleted,
                    m.reactions.iter().map(|r| r.count).sum(),
                ),
            )
        })
        .collect();
    assert_eq!(state, from_history);
    server.stop().await;
}

#[tokio::test]
async fn a_slow_consumer_resumes_without_loss() {
    let mut server = TestServer::start_with(|c| {
        c.no_rate_limits = true;
        c.outbox_bytes = 256 * 1024;
    })
    .await;
    let alice = client(server.tcp, "alice").await;
    let room = alice.create_room("firehose", false).await.unwrap();
    alice.join(&room).await.unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut slow = Raw::from_stream(sock.connect(server.tcp).await.unwrap());
    slow.hello("sloth").await;
    slow.send_map(serde_json::json!({"t": "join", "id": 1, "room": room.as_str()}))
        .await;
    assert!(matches!(slow.next().await, Some(ServerFrame::Joined(_))));
    let body = "y".repeat(1000);
    let mut last = 0;
    for _ in 0..80 {
        for a in
            futures_util::future::join_all((0..100).map(|_| alice.send(&room, &body, None))).await
        {
            last = last.max(a.unwrap().seq);
        }
    }
    let frames = slow.drain_to_eof().await;
    assert!(
        matches!(frames.last(), Some(ServerFrame::Error(e)) if e.code == ErrorCode::SlowConsumer)
    );
    let got = frames
        .iter()
        .filter_map(ServerFrame::stream_seq)
        .max()
        .unwrap_or(0);
    assert!(got < last);
    // Resume from the last seq received: the rest arrives.
    let mut again = client(server.tcp, "sloth").await;
    again.join_since(&room, got).await.unwrap();
    let seen = collect_stream(&mut again, last).await;
    let seqs: Vec<u64> = seen.iter().filter_map(ServerFrame::stream_seq).collect();
    assert_eq!(seqs, ((got + 1)..=last).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test]
async fn chosen_room_ids_are_unique_forever() {
    let mut server = TestServer::start_with(|c| c.no_rate_limits = true).await;
    let alice = client(server.tcp, "alice").await;
    let create = |room: &str| {
        let room = Some(RoomId::new(room).unwrap());
        move |id| {
            ClientFrame::CreateRoom(c::CreateRoom {
                id,
                name: "n".into(),
                private: false,
                description: None,
                room,
            })
        }
    };
    alice.call(create("lobby")).await.unwrap();
    assert_eq!(code(alice.call(create("lobby")).await), ErrorCode::Conflict);
    let reserved = format!("d{}", "a".repeat(40));
    assert_eq!(
        code(alice.call(create(&reserved)).await),
        ErrorCode::BadRequest
    );
    let lobby = RoomId::new("lobby").unwrap();
    let r = lobby.clone();
    assert_eq!(
        code(
            alice
                .call(|id| ClientFrame::LeaveRoom(c::RoomOnly { id, room: r }))
                .await
        ),
        ErrorCode::Forbidden,
        "the last member (the owner) deletes instead"
    );
    let r = lobby.clone();
    alice
        .call(|id| ClientFrame::DeleteRoom(c::RoomOnly { id, room: r }))
        .await
        .unwrap();
    assert_eq!(
        code(alice.call(create("lobby")).await),
        ErrorCode::Conflict,
        "deleted ids are not reused"
    );
    // Also after a restart, when the room is loaded from the store.
    let dir = server.dir.path().to_path_buf();
    drop(alice);
    server.stop().await;
    let mut server = TestServer::start_with(|c| c.data_dir = dir.clone()).await;
    let alice = client(server.tcp, "alice").await;
    assert_eq!(code(alice.join(&lobby).await), ErrorCode::NotFound);
    assert_eq!(code(alice.call(create("lobby")).await), ErrorCode::Conflict);
    server.stop().await;
}
