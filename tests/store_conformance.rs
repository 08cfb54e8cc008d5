//! One conformance suite for the `MessageStore` contract (docs/STORAGE.md),
//! run against the embedded store always and against a CQL node (the ScyllaDB
//! store) when one is there: `scripts/cql-node.sh start`, or
//! `ROOMCAST_SCYLLA_NODES` for a real ScyllaDB cluster. Every case uses rooms
//! and users of its own, so the cases share one store.

mod common;

use bytes::Bytes;
use roomcast::config::FsyncPolicy;
use roomcast::ids::{RoomId, UserId};
use roomcast::proto::types::{MessageKind, Role, RoomKind};
use roomcast::store::embedded::EmbeddedStore;
use roomcast::store::{
    Cursor, HistoryRange, Invite, MessageState, MessageStore, Mutation, PageReq, RoomMeta,
    StoreError,
};
use std::collections::BTreeMap;
use std::sync::Arc;

type Store = Arc<dyn MessageStore>;

fn room(s: &str) -> RoomId {
    RoomId::new(s).unwrap()
}
fn user(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn meta(id: &str, name: &str, private: bool) -> RoomMeta {
    RoomMeta {
        id: room(id),
        name: name.into(),
        description: String::new(),
        private,
        kind: RoomKind::Room,
        created_by: user("owner"),
        created_at: 1,
        deleted: false,
        members: 1,
    }
}

fn msg(r: &str, seq: u64, n: u64, from: &str, body: &str, local_id: Option<&str>) -> MessageState {
    MessageState {
        room: room(r),
        seq,
        n,
        from: user(from),
        body: body.into(),
        ts: 1000 + seq,
        local_id: local_id.map(str::to_string),
        kind: MessageKind::Text,
        attachments: Vec::new(),
        reply_to: None,
        edited_at: None,
        deleted: false,
        reactions: BTreeMap::new(),
        cell_at: BTreeMap::new(),
        edits: Vec::new(),
    }
}

/// A send as the router writes it: derived rows, then the event (commit point).
fn send(
    r: &str,
    seq: u64,
    n: u64,
    from: &str,
    body: &str,
    local_id: Option<&str>,
) -> Vec<Mutation> {
    let mut v = vec![Mutation::PutMessage(Box::new(msg(
        r, seq, n, from, body, local_id,
    )))];
    if let Some(lid) = local_id {
        v.push(Mutation::PutLocalId {
            room: room(r),
            user: user(from),
            local_id: lid.into(),
            seq,
            ts: 1000 + seq,
        });
    }
    v.push(Mutation::AppendEvent {
        room: room(r),
        seq,
        payload: Bytes::from(format!("event-{seq}")),
    });
    v
}

fn event(r: &str, seq: u64) -> Mutation {
    Mutation::AppendEvent {
        room: room(r),
        seq,
        payload: Bytes::from(format!("event-{seq}")),
    }
}

async fn create(s: &Store, id: &str, name: &str, private: bool) {
    let mut m = vec![
        Mutation::PutRoom(meta(id, name, private)),
        Mutation::PutMember {
            room: room(id),
            user: user("owner"),
            role: Role::Owner,
            joined_at: 1,
        },
    ];
    if !private {
        m.push(Mutation::PutPublic {
            name: name.into(),
            room: room(id),
        });
    }
    s.apply(m).await.unwrap();
}

async fn rooms_members_and_load(s: &Store) {
    let r = "conf-members";
    assert!(s.load_room(&room(r), 10).await.unwrap().is_none());
    create(s, r, "Members", false).await;
    s.apply(vec![
        Mutation::PutMember {
            room: room(r),
            user: user("ann"),
            role: Role::Member,
            joined_at: 5,
        },
        Mutation::PutMember {
            room: room(r),
            user: user("bob"),
            role: Role::Member,
            joined_at: 6,
        },
        Mutation::SetRole {
            room: room(r),
            user: user("ann"),
            role: Role::Admin,
        },
        Mutation::SetRead {
            room: room(r),
            user: user("bob"),
            read_seq: 0,
            read_n: 0,
        },
        Mutation::PutBan {
            room: room(r),
            user: user("eve"),
        },
        Mutation::PutBan {
            room: room(r),
            user: user("mal"),
        },
        Mutation::DelBan {
            room: room(r),
            user: user("mal"),
        },
        Mutation::PutInvite(Invite {
            code: "abc".into(),
            room: room(r),
            created_by: user("owner"),
            created_at: 7,
            expires_at: None,
            max_uses: Some(3),
            uses: 1,
            revoked: false,
        }),
    ])
    .await
    .unwrap();
    s.apply(send(r, 1, 1, "bob", "hi", None)).await.unwrap();
    s.apply(vec![
        Mutation::AddOwnUnread {
            room: room(r),
            user: user("bob"),
            seq: 1,
        },
        Mutation::SetDelivered {
            room: room(r),
            user: user("ann"),
            seq: 1,
        },
    ])
    .await
    .unwrap();
    let l = s.load_room(&room(r), 10).await.unwrap().expect("room");
    assert_eq!(l.meta.name, "Members");
    assert_eq!(
        (l.first_seq, l.last_seq, l.msg_total, l.last_msg_seq),
        (1, 1, 1, 1)
    );
    let m: BTreeMap<_, _> = l.members.into_iter().collect();
    assert_eq!(m.len(), 3);
    assert_eq!(m[&user("ann")].role, Role::Admin);
    assert_eq!(m[&user("ann")].delivered_seq, 1);
    assert_eq!(m[&user("ann")].joined_at, 5);
    assert_eq!(m[&user("bob")].own_unread, vec![1]);
    assert_eq!(l.bans, vec![user("eve")]);
    assert_eq!(l.invites.len(), 1);
    assert_eq!(l.invites[0].uses, 1);
    // Reading past own messages drops them from own_unread.
    s.apply(vec![Mutation::SetRead {
        room: room(r),
        user: user("bob"),
        read_seq: 1,
        read_n: 1,
    }])
    .await
    .unwrap();
    s.apply(vec![Mutation::DelMember {
        room: room(r),
        user: user("ann"),
    }])
    .await
    .unwrap();
    let l = s.load_room(&room(r), 10).await.unwrap().unwrap();
    let m: BTreeMap<_, _> = l.members.into_iter().collect();
    assert!(!m.contains_key(&user("ann")));
    assert_eq!((m[&user("bob")].read_seq, m[&user("bob")].read_n), (1, 1));
    assert!(m[&user("bob")].own_unread.is_empty());
    // A deleted room still loads, as deleted.
    let mut gone = meta(r, "Members", false);
    gone.deleted = true;
    s.apply(vec![Mutation::PutRoom(gone)]).await.unwrap();
    assert!(
        s.load_room(&room(r), 10)
            .await
            .unwrap()
            .unwrap()
            .meta
            .deleted
    );
}

async fn history_events_and_paging(s: &Store) {
    let r = "conf-history";
    create(s, r, "History", true).await;
    // 1100 messages: more than one bucket of the ScyllaDB schema (1024 seqs).
    let total = 1100u64;
    let mut batch = Vec::new();
    for seq in 1..=total {
        batch.extend(send(
            r,
            seq,
            seq,
            "owner",
            &format!("m{seq}"),
            Some(&format!("l{seq}")),
        ));
        if batch.len() >= 300 {
            s.apply(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    s.apply(batch).await.unwrap();
    // History, newest page first, walked back to the start.
    let mut seen = Vec::new();
    let mut range = HistoryRange::Newest;
    loop {
        let (page, more) = s.history(&room(r), range, 97).await.unwrap();
        assert!(page.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
        seen.splice(0..0, page.iter().map(|m| m.seq));
        range = HistoryRange::Before(page.first().unwrap().seq);
        if !more {
            break;
        }
    }
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    let (last, more) = s.history(&room(r), HistoryRange::Newest, 3).await.unwrap();
    assert!(more);
    assert_eq!(
        last.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["m1098", "m1099", "m1100"]
    );
    // The event log, paged by seq across the bucket boundary.
    let mut after = 1000;
    let mut got = Vec::new();
    loop {
        let page = s.events(&room(r), after, total, 33).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap().0;
        got.extend(page);
    }
    assert_eq!(got.len(), 100);
    assert_eq!(got[0], (1001, Bytes::from("event-1001")));
    assert_eq!(got[99].0, 1100);
    assert_eq!(s.events(&room(r), 5, 8, 100).await.unwrap().len(), 3);
    assert_eq!(s.msg_count_at(&room(r), 1030).await.unwrap(), 1030);
    assert_eq!(
        s.message(&room(r), 1025).await.unwrap().unwrap().body,
        "m1025"
    );
    assert!(s.message(&room(r), 5000).await.unwrap().is_none());
    assert_eq!(
        s.find_local_id(&room(r), &user("owner"), "l7")
            .await
            .unwrap(),
        Some((7, 1007))
    );
    assert_eq!(
        s.find_local_id(&room(r), &user("owner"), "nope")
            .await
            .unwrap(),
        None
    );
    let l = s.load_room(&room(r), 50).await.unwrap().unwrap();
    assert_eq!(
        (l.first_seq, l.last_seq, l.msg_total, l.last_msg_seq),
        (1, total, total, total)
    );
    assert_eq!(l.recent_local_ids.len(), 50);
    assert_eq!(l.recent_local_ids.last().unwrap().local_id, "l1100");
    assert_eq!(l.recent_local_ids.first().unwrap().seq, 1051);
    assert!(!l.recent_is_complete);
}

/// `history` paged forward (`After`) across a bucket boundary, over seqs that
/// hold no message: other events (edits, reactions) and burnt seqs (no row).
async fn history_after(s: &Store) {
    let r = "conf-after";
    create(s, r, "After", true).await;
    // Seqs 1..=1200: a message at every third seq (n counts them), an event
    // without a message at seqs 3k+2, nothing at all at seqs 3k (burnt).
    let mut batch = Vec::new();
    let mut messages = Vec::new();
    for seq in 1..=1200u64 {
        match seq % 3 {
            1 => {
                messages.push(seq);
                let n = messages.len() as u64;
                batch.extend(send(r, seq, n, "owner", &format!("m{seq}"), None));
            }
            2 => batch.push(event(r, seq)),
            _ => {}
        }
        if batch.len() >= 300 {
            s.apply(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    s.apply(batch).await.unwrap();
    // Walk forward from the start: every message once, oldest first; `more`
    // says whether newer ones exist after the page's last.
    let mut seen = Vec::new();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let (page, more) = s
            .history(&room(r), HistoryRange::After(after), 37)
            .await
            .unwrap();
        pages += 1;
        assert!(page.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
        assert!(page.iter().all(|m| m.seq > after));
        if more {
            assert_eq!(page.len(), 37, "a page followed by more is full");
        }
        seen.extend(page.iter().map(|m| m.seq));
        match page.last() {
            Some(m) if more => after = m.seq,
            _ => break,
        }
    }
    assert_eq!(seen, messages);
    assert_eq!(pages, messages.len().div_ceil(37));
    // From a seq that is no message (an event, a burnt seq): the next message.
    for from in [2, 3] {
        let (page, more) = s
            .history(&room(r), HistoryRange::After(from), 2)
            .await
            .unwrap();
        assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), [4, 7]);
        assert!(more);
    }
    // Across the first bucket boundary (1024 seqs on ScyllaDB).
    let (page, _) = s
        .history(&room(r), HistoryRange::After(1020), 3)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1021, 1024, 1027]
    );
    assert_eq!(page[1].body, "m1024");
    assert_eq!(page[2].n, 343);
    // The exact end: the last page is full and says no more.
    let (page, more) = s
        .history(&room(r), HistoryRange::After(1192), 2)
        .await
        .unwrap();
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), [1195, 1198]);
    assert!(!more);
    // Past the end, and at the top of the seq space: empty.
    for from in [1198, 5000, i64::MAX as u64, u64::MAX] {
        let (page, more) = s
            .history(&room(r), HistoryRange::After(from), 10)
            .await
            .unwrap();
        assert!(page.is_empty() && !more, "after {from}");
    }
    // A deleted message stays in place as a tombstone.
    s.apply(vec![
        Mutation::DeleteMessage {
            room: room(r),
            seq: 7,
            sender: user("owner"),
            at: 1201,
        },
        event(r, 1201),
    ])
    .await
    .unwrap();
    let (page, _) = s
        .history(&room(r), HistoryRange::After(4), 2)
        .await
        .unwrap();
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), [7, 10]);
    assert!(page[0].deleted && page[0].body.is_empty());
    // Empty room.
    create(s, "conf-after-empty", "After empty", true).await;
    let (page, more) = s
        .history(&room("conf-after-empty"), HistoryRange::After(0), 10)
        .await
        .unwrap();
    assert!(page.is_empty() && !more);
}

async fn idempotent_replays(s: &Store) {
    let r = "conf-replay";
    create(s, r, "Replay", true).await;
    let first = send(r, 1, 1, "owner", "once", Some("x1"));
    s.apply(first.clone()).await.unwrap();
    let edit = vec![
        Mutation::EditMessage {
            room: room(r),
            seq: 1,
            body: "edited".into(),
            edited_at: 99,
            at: 2,
        },
        event(r, 2),
    ];
    s.apply(edit.clone()).await.unwrap();
    let react = vec![
        Mutation::React {
            room: room(r),
            seq: 1,
            emoji: "👍".into(),
            user: user("ann"),
            on: true,
            at: 3,
        },
        event(r, 3),
    ];
    s.apply(react.clone()).await.unwrap();
    // Every batch again, in the original order and then reversed: nothing changes.
    for b in [
        first.clone(),
        edit.clone(),
        react.clone(),
        react,
        edit,
        first,
    ] {
        s.apply(b).await.unwrap();
    }
    let m = s.message(&room(r), 1).await.unwrap().unwrap();
    assert_eq!((m.body.as_str(), m.edited_at), ("edited", Some(99)));
    assert_eq!(m.reactions.get("👍").cloned(), Some(vec![user("ann")]));
    let (h, _) = s.history(&room(r), HistoryRange::Newest, 10).await.unwrap();
    assert_eq!(h.len(), 1, "a replayed send is one message");
    assert_eq!(s.events(&room(r), 0, 10, 10).await.unwrap().len(), 3);
}

async fn two_writers_converge(s: &Store) {
    let r = "conf-writers";
    create(s, r, "Writers", true).await;
    s.apply(send(r, 1, 1, "owner", "v0", None)).await.unwrap();
    // Edits at seqs 2..=21 and reactions on/off; the highest seq must win
    // whatever order the writes land in.
    let mut muts = Vec::new();
    for at in 2..=21u64 {
        muts.push(Mutation::EditMessage {
            room: room(r),
            seq: 1,
            body: format!("v{at}"),
            edited_at: at,
            at,
        });
    }
    for (i, at) in (22..=41u64).enumerate() {
        muts.push(Mutation::React {
            room: room(r),
            seq: 1,
            emoji: "🔥".into(),
            user: user(&format!("u{}", i % 4)),
            on: i < 16 || i % 2 == 0,
            at,
        });
    }
    let forward = muts.clone();
    let mut backward = muts;
    backward.reverse();
    let (a, b) = (s.clone(), s.clone());
    let w1 = tokio::spawn(async move {
        for m in forward {
            a.apply(vec![m]).await.unwrap();
        }
    });
    let w2 = tokio::spawn(async move {
        for m in backward {
            b.apply(vec![m]).await.unwrap();
        }
    });
    w1.await.unwrap();
    w2.await.unwrap();
    let m = s.message(&room(r), 1).await.unwrap().unwrap();
    assert_eq!(m.body, "v21");
    assert_eq!(m.edited_at, Some(21));
    // Last reaction per user: u0 at 38 (i=16, on), u1 at 39 (i=17, off),
    // u2 at 40 (i=18, on), u3 at 41 (i=19, off).
    let mut users = m.reactions.get("🔥").cloned().unwrap_or_default();
    users.sort();
    assert_eq!(users, vec![user("u0"), user("u2")]);
}

async fn burnt_seqs(s: &Store) {
    let r = "conf-burnt";
    create(s, r, "Burnt", true).await;
    s.apply(send(r, 1, 1, "owner", "a", None)).await.unwrap();
    s.apply(send(r, 2, 2, "owner", "b", None)).await.unwrap();
    // Seq 3 was handed out and its write failed half-way: derived rows, no event.
    s.apply(vec![Mutation::PutLocalId {
        room: room(r),
        user: user("owner"),
        local_id: "burnt".into(),
        seq: 3,
        ts: 3,
    }])
    .await
    .unwrap();
    s.apply(send(r, 4, 3, "owner", "d", None)).await.unwrap();
    let ev: Vec<u64> = s
        .events(&room(r), 0, 10, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(ev, [1, 2, 4]);
    let (h, _) = s.history(&room(r), HistoryRange::Newest, 10).await.unwrap();
    assert_eq!(h.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 4]);
    assert_eq!(
        s.load_room(&room(r), 10).await.unwrap().unwrap().last_seq,
        4
    );
    // A local_id whose event never landed is not a committed send.
    assert_eq!(
        s.find_local_id(&room(r), &user("owner"), "burnt")
            .await
            .unwrap(),
        None
    );
}

async fn cell_updates_under_concurrency(s: &Store) {
    let r = "conf-cells";
    create(s, r, "Cells", true).await;
    s.apply(send(r, 1, 1, "owner", "x", None)).await.unwrap();
    for i in 0..20 {
        s.apply(vec![Mutation::PutMember {
            room: room(r),
            user: user(&format!("m{i}")),
            role: Role::Member,
            joined_at: 2,
        }])
        .await
        .unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let u = user(&format!("m{i}"));
            s.apply(vec![Mutation::React {
                room: room(r),
                seq: 1,
                emoji: "+1".into(),
                user: u.clone(),
                on: true,
                at: 100 + i,
            }])
            .await
            .unwrap();
            // Read pointers of one user raced from several writers: the highest wins.
            for seq in [7, 3, 9, 5] {
                s.apply(vec![Mutation::SetRead {
                    room: room(r),
                    user: u.clone(),
                    read_seq: seq,
                    read_n: seq,
                }])
                .await
                .unwrap();
            }
            s.apply(vec![Mutation::SetDelivered {
                room: room(r),
                user: u,
                seq: 4 + i,
            }])
            .await
            .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let m = s.message(&room(r), 1).await.unwrap().unwrap();
    assert_eq!(
        m.reactions["+1"].len(),
        20,
        "no reaction lost to a concurrent one"
    );
    assert_eq!(
        m.reactions["+1"][0],
        user("m0"),
        "reaction order follows their seqs"
    );
    let l = s.load_room(&room(r), 1).await.unwrap().unwrap();
    for (u, st) in l.members {
        if u.as_str().starts_with('m') {
            assert_eq!((st.read_seq, st.read_n), (9, 9), "{u}");
            assert!(st.delivered_seq >= 4);
        }
    }
}

async fn deletes(s: &Store) {
    let r = "conf-delete";
    create(s, r, "Delete", true).await;
    s.apply(send(r, 1, 1, "ann", "secret", None)).await.unwrap();
    s.apply(vec![
        Mutation::React {
            room: room(r),
            seq: 1,
            emoji: "x".into(),
            user: user("bob"),
            on: true,
            at: 2,
        },
        event(r, 2),
    ])
    .await
    .unwrap();
    s.apply(vec![
        Mutation::DeleteMessage {
            room: room(r),
            seq: 1,
            sender: user("ann"),
            at: 3,
        },
        event(r, 3),
    ])
    .await
    .unwrap();
    let m = s.message(&room(r), 1).await.unwrap().unwrap();
    assert!(m.deleted);
    assert!(m.body.is_empty() && m.reactions.is_empty());
    let l = s.load_room(&room(r), 5).await.unwrap().unwrap();
    assert_eq!(l.deletions, vec![(1, user("ann"))]);
}

async fn lists_and_cursors(s: &Store) {
    // A user in 10 rooms, listed 3 at a time.
    for i in 0..10 {
        let id = format!("conf-list-{i}");
        create(s, &id, &format!("Zeta list {i}"), i % 3 == 0).await;
        s.apply(vec![Mutation::PutMember {
            room: room(&id),
            user: user("lister"),
            role: Role::Member,
            joined_at: 3,
        }])
        .await
        .unwrap();
    }
    let mut all = Vec::new();
    let mut page = PageReq::first(3);
    loop {
        let p = s.member_rooms(&user("lister"), page.clone()).await.unwrap();
        assert!(p.items.len() <= 3);
        all.extend(p.items);
        match p.next {
            Some(c) => page.after = Some(c),
            None => break,
        }
    }
    assert_eq!(all.len(), 10, "{all:?}");
    let mut dedup = all.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 10);
    let mut overviews = 0;
    let mut page = PageReq::first(4);
    loop {
        let p = s.user_rooms(&user("lister"), page.clone()).await.unwrap();
        overviews += p.items.len();
        assert!(p.items.iter().all(|o| o.member.role == Role::Member));
        match p.next {
            Some(c) => page.after = Some(c),
            None => break,
        }
    }
    assert_eq!(overviews, 10);
    // The directory: public rooms only (6 of 10), by name prefix, paged.
    let mut names = Vec::new();
    let mut page = PageReq::first(4);
    loop {
        let p = s
            .public_rooms(None, "zeta LIST", page.clone())
            .await
            .unwrap();
        names.extend(p.items.into_iter().map(|m| m.name));
        match p.next {
            Some(c) => page.after = Some(c),
            None => break,
        }
    }
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(names.windows(2).all(|w| w[0] < w[1]));
    // Without a prefix, the zeta rooms are among all public rooms.
    let mut everything = Vec::new();
    let mut page = PageReq::first(5);
    loop {
        let p = s.public_rooms(None, "", page.clone()).await.unwrap();
        everything.extend(p.items.into_iter().map(|m| m.id));
        match p.next {
            Some(c) => page.after = Some(c),
            None => break,
        }
    }
    assert!(
        everything
            .iter()
            .filter(|r| r.as_str().starts_with("conf-list-"))
            .count()
            == 6
    );
    // Cursors from elsewhere are refused as such, never a panic.
    let mr = s
        .member_rooms(&user("lister"), PageReq::first(3))
        .await
        .unwrap()
        .next
        .unwrap();
    let foreign = [
        Cursor("garbage".into()),
        Cursor(hex::encode("c1.x.dir.41")),
        Cursor(hex::encode("c2.e.dir.41")),
        Cursor(hex::encode("c1.e.mr.41")),
        Cursor(hex::encode("c1.s.mr.41")),
        Cursor(hex::encode("a public-room name")),
        Cursor(String::new()),
    ];
    for c in foreign.iter().chain([&mr]) {
        let r = s
            .public_rooms(
                None,
                "",
                PageReq {
                    after: Some(c.clone()),
                    limit: 3,
                },
            )
            .await;
        assert!(matches!(r, Err(StoreError::BadCursor(_))), "{c:?}: {r:?}");
        let wire = r.unwrap_err().to_wire("x");
        assert_eq!(wire.code, roomcast::proto::ErrorCode::BadRequest);
    }
    let r = s
        .user_rooms(
            &user("lister"),
            PageReq {
                after: Some(mr),
                limit: 3,
            },
        )
        .await;
    assert!(
        matches!(r, Err(StoreError::BadCursor(_))),
        "a member_rooms cursor is not a user_rooms cursor"
    );
}

/// Each tenant's directory is read on its own: a page of tenant `zzz` is
/// full and costs the same however many public rooms tenant `aaa` has, all
/// sorting before `zzz`'s by name; cursors do not cross tenants.
async fn tenant_directory(s: &Store) {
    let scoped = |t: &str, id: &str| RoomId::new(&format!("{t}\u{1f}{id}")).unwrap();
    let public = |t: &str, id: &str, name: &str, private: bool| {
        let mut m = meta("x", name, private);
        m.id = scoped(t, id);
        let mut v = vec![Mutation::PutRoom(m)];
        if !private {
            v.push(Mutation::PutPublic {
                name: name.into(),
                room: scoped(t, id),
            });
        }
        v
    };
    // 3000 public rooms of tenant aaa, named "a ..." (before every "m ...").
    let mut batch = Vec::new();
    for i in 0..3000 {
        batch.extend(public(
            "aaa",
            &format!("r{i}"),
            &format!("a dir {i:04}"),
            false,
        ));
        if batch.len() >= 400 {
            s.apply(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    s.apply(batch).await.unwrap();
    // Tenant zzz: 7 public rooms and a private one; a room of no tenant.
    let mut batch = Vec::new();
    for i in 0..7 {
        batch.extend(public(
            "zzz",
            &format!("r{i}"),
            &format!("m dir {i}"),
            false,
        ));
    }
    batch.extend(public("zzz", "hidden", "m dir hidden", true));
    s.apply(batch).await.unwrap();
    create(s, "conf-tenantless", "m dir plain", false).await;

    let list = |tenant: Option<&'static str>,
                prefix: &'static str,
                after: Option<Cursor>,
                limit: usize| async move {
        s.public_rooms(tenant, prefix, PageReq { after, limit })
            .await
    };
    for prefix in ["", "m dir", "M DIR"] {
        let p = list(Some("zzz"), prefix, None, 5).await.unwrap();
        assert_eq!(p.items.len(), 5, "a full first page ({prefix:?})");
        assert!(p.items.iter().all(|m| m.id.tenant() == Some("zzz")));
        let next = p.next.expect("more follow");
        let p2 = list(Some("zzz"), prefix, Some(next.clone()), 5)
            .await
            .unwrap();
        let names: Vec<_> = p
            .items
            .iter()
            .chain(&p2.items)
            .map(|m| m.name.clone())
            .collect();
        assert_eq!(
            names,
            (0..7).map(|i| format!("m dir {i}")).collect::<Vec<_>>()
        );
        assert!(p2.next.is_none());
        // zzz's cursor is refused on aaa's list and on the list of no tenant.
        for other in [Some("aaa"), None] {
            let r = list(other, prefix, Some(next.clone()), 5).await;
            assert!(
                matches!(r, Err(StoreError::BadCursor(_))),
                "{other:?}: {r:?}"
            );
        }
    }
    // aaa's rooms page on their own too, in name order.
    let p = list(Some("aaa"), "a dir 29", None, 200).await.unwrap();
    assert_eq!(p.items.len(), 100);
    assert!(p.items.windows(2).all(|w| w[0].name < w[1].name));
    assert!(p.next.is_none());
    let p = list(Some("aaa"), "", None, 3).await.unwrap();
    assert_eq!(
        p.items.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["a dir 0000", "a dir 0001", "a dir 0002"]
    );
    // No tenant: none of the tenants' rooms; a tenant's list has no room of no tenant.
    let p = list(None, "m dir", None, 50).await.unwrap();
    assert_eq!(
        p.items.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["conf-tenantless"]
    );
    let p = list(Some("zzz"), "m dir p", None, 50).await.unwrap();
    assert!(p.items.is_empty() && p.next.is_none());
    assert!(list(Some("nobody"), "", None, 50)
        .await
        .unwrap()
        .items
        .is_empty());
    // Unpublishing removes the room from its tenant's list.
    s.apply(vec![Mutation::DelPublic {
        name: "m dir 3".into(),
        room: scoped("zzz", "r3"),
    }])
    .await
    .unwrap();
    let p = list(Some("zzz"), "", None, 50).await.unwrap();
    assert_eq!(p.items.len(), 6);
}

async fn favorites(s: &Store) {
    let u = user("fan");
    s.apply(vec![
        Mutation::PutFavorite {
            user: u.clone(),
            room: Some(room("conf-fav")),
            peer: None,
            on: true,
        },
        Mutation::PutFavorite {
            user: u.clone(),
            room: None,
            peer: Some(user("idol")),
            on: true,
        },
        Mutation::PutFavorite {
            user: u.clone(),
            room: Some(room("conf-unfav")),
            peer: None,
            on: true,
        },
        Mutation::PutFavorite {
            user: u.clone(),
            room: Some(room("conf-unfav")),
            peer: None,
            on: false,
        },
    ])
    .await
    .unwrap();
    let (rooms, users) = s.favorites(&u).await.unwrap();
    assert_eq!(rooms, vec![room("conf-fav")]);
    assert_eq!(users, vec![user("idol")]);
}

/// Edits and a delete erase: the rewritten events replace the old payloads
/// (also when the original append is replayed afterwards), the message keeps
/// its edit events for later redactions, and a delete drops text and attachments.
async fn redactions(s: &Store) {
    let r = "conf-redact";
    create(s, r, "Redact", true).await;
    let mut first = send(r, 1, 1, "ann", "secret", None);
    if let Mutation::PutMessage(m) = &mut first[0] {
        m.attachments.push(roomcast::proto::types::Attachment {
            url: "https://files.example/x.png".into(),
            name: "x.png".into(),
            mime: "image/png".into(),
            size: 10,
            width: None,
            height: None,
        });
    }
    s.apply(first.clone()).await.unwrap();
    let rewrite = |seq: u64, text: &str, at: u64| Mutation::RewriteEvent {
        room: room(r),
        seq,
        payload: Bytes::from(text.to_string()),
        at,
    };
    // Edit at seq 2: body, the edit recorded, the original msg rewritten.
    s.apply(vec![
        Mutation::EditMessage {
            room: room(r),
            seq: 1,
            body: "better".into(),
            edited_at: 2002,
            at: 2,
        },
        rewrite(1, "msg-better", 2),
        event(r, 2),
    ])
    .await
    .unwrap();
    let m = s.message(&room(r), 1).await.unwrap().unwrap();
    assert_eq!(m.body, "better");
    assert_eq!(m.edits, vec![(2, 2002)]);
    assert_eq!(m.attachments.len(), 1);
    // Delete at seq 3: the msg and the edit rewritten to the tombstone.
    s.apply(vec![
        rewrite(1, "msg-gone", 3),
        rewrite(2, "edit-gone", 3),
        Mutation::DeleteMessage {
            room: room(r),
            seq: 1,
            sender: user("ann"),
            at: 3,
        },
        event(r, 3),
    ])
    .await
    .unwrap();
    // A late replay of the original send (a retried write landing late).
    s.apply(first).await.unwrap();
    let events = s.events(&room(r), 0, 3, 10).await.unwrap();
    let bodies: Vec<_> = events.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(
        bodies,
        [
            Bytes::from("msg-gone"),
            Bytes::from("edit-gone"),
            Bytes::from("event-3")
        ]
    );
    let m = s.message(&room(r), 1).await.unwrap().unwrap();
    assert!(m.deleted && m.body.is_empty() && m.attachments.is_empty());
    assert_eq!(m.edits, vec![(2, 2002)]);
}

async fn suite(s: Store) {
    macro_rules! case {
        ($f:ident) => {
            eprintln!("case {}", stringify!($f));
            $f(&s).await;
        };
    }
    case!(rooms_members_and_load);
    case!(history_events_and_paging);
    case!(history_after);
    case!(idempotent_replays);
    case!(two_writers_converge);
    case!(burnt_seqs);
    case!(cell_updates_under_concurrency);
    case!(deletes);
    case!(redactions);
    case!(lists_and_cursors);
    case!(tenant_directory);
    case!(favorites);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(dir.path(), FsyncPolicy::Never).unwrap();
    suite(Arc::new(s)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_store() {
    let Some(nodes) = common::cql::require() else {
        return;
    };
    let (s, _keyspace) = common::cql::store(&nodes, "conf").await;
    suite(Arc::new(s)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_schema_is_idempotent_and_refuses_newer() {
    let Some(nodes) = common::cql::require() else {
        return;
    };
    let guard = common::cql::KeyspaceGuard::fresh(&nodes, "schema");
    let ks = guard.name();
    let cfg = common::cql::store_config(&nodes, ks);
    let v = roomcast::store::scylla::migrate(&cfg).await.unwrap();
    assert_eq!(v, roomcast::store::scylla::schema::LATEST);
    // Again: nothing to do, same version.
    assert_eq!(roomcast::store::scylla::migrate(&cfg).await.unwrap(), v);
    // A database migrated by a newer roomcast is refused with a clear message.
    let session = roomcast::store::scylla::ScyllaStore::session(&cfg)
        .await
        .unwrap();
    session
        .query_unpaged(
            format!("INSERT INTO {ks}.meta (name, value) VALUES ('schema', 99)"),
            (),
        )
        .await
        .unwrap();
    let err = roomcast::store::scylla::ScyllaStore::connect(&cfg)
        .await
        .err()
        .expect("a newer schema is refused")
        .to_string();
    assert!(err.contains("newer than this roomcast knows"), "{err}");
}

/// Schema version 2 moves the directory rows of tenants' rooms, written by
/// version 1 into the shared partitions, to their tenant's partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_migration_moves_tenants_directory_rows() {
    let Some(nodes) = common::cql::require() else {
        return;
    };
    let guard = common::cql::KeyspaceGuard::fresh(&nodes, "dirv2");
    let ks = guard.name();
    let cfg = common::cql::store_config(&nodes, ks);
    let store: Store = Arc::new(
        roomcast::store::scylla::ScyllaStore::connect(&cfg)
            .await
            .unwrap(),
    );
    let acme = RoomId::new("acme\u{1f}old").unwrap();
    let mut m = meta("x", "Old Room", false);
    m.id = acme.clone();
    store.apply(vec![Mutation::PutRoom(m)]).await.unwrap();
    create(&store, "plain-old", "Plain Room", false).await;
    // The rows as version 1 wrote them (one shared partition per first
    // character), and the keyspace back at version 1.
    let session = roomcast::store::scylla::ScyllaStore::session(&cfg)
        .await
        .unwrap();
    for q in [
        format!("INSERT INTO {ks}.directory_heads (k, head) VALUES (0, 'o')"),
        format!(
            "INSERT INTO {ks}.directory (head, name, room) VALUES ('o', 'old room', 'acme\u{1f}old')"
        ),
        format!("INSERT INTO {ks}.meta (name, value) VALUES ('schema', 1)"),
    ] {
        session.query_unpaged(q, ()).await.unwrap();
    }
    let first = || PageReq::first(10);
    assert!(store
        .public_rooms(Some("acme"), "", first())
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        roomcast::store::scylla::migrate(&cfg).await.unwrap(),
        roomcast::store::scylla::schema::LATEST
    );
    let p = store.public_rooms(Some("acme"), "", first()).await.unwrap();
    assert_eq!(p.items.iter().map(|m| &m.id).collect::<Vec<_>>(), [&acme]);
    let p = store
        .public_rooms(Some("acme"), "OLD", first())
        .await
        .unwrap();
    assert_eq!(p.items.len(), 1);
    // The list of no tenant keeps its own rows and lost the tenant's.
    let p = store.public_rooms(None, "", first()).await.unwrap();
    assert_eq!(
        p.items.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["plain-old"]
    );
    // Again: nothing left to move.
    assert_eq!(
        roomcast::store::scylla::migrate(&cfg).await.unwrap(),
        roomcast::store::scylla::schema::LATEST
    );
    let p = store.public_rooms(Some("acme"), "", first()).await.unwrap();
    assert_eq!(p.items.len(), 1);
}
