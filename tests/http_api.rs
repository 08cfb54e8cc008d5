//! The REST API over real HTTP against the real server: every endpoint's
//! success and error paths, the permission matrix as on the protocol, REST
//! sends reaching socket subscribers in order, idempotent sends, rate-limit
//! headers, and the separation of user tokens and API keys.

mod common;

use common::http::{Api, Resp};
use common::{client_on, next_msg, TestServer, Transport};
use serde_json::json;

const KEY: &str = "backend-key-0123456789";
const OLD_KEY: &str = "backend-key-old-0123456789";

async fn server() -> TestServer {
    TestServer::start_with(|c| c.api_keys = vec![KEY.into(), OLD_KEY.into()]).await
}

async fn create(api: &Api, room: &str, private: bool) -> Resp {
    api.post(
        "/v1/rooms",
        json!({"name": format!("Room {room}"), "room": room, "private": private}),
    )
    .await
}

#[tokio::test]
async fn rooms_create_list_get_update_delete() {
    let s = server().await;
    let alice = Api::user(s.http, "alice");
    let bob = Api::user(s.http, "bob");

    let r = create(&alice, "general", false).await;
    assert_eq!(r.assert_status(201)["room"], "general");
    assert_eq!(r.header("location"), Some("/v1/rooms/general"));
    create(&alice, "general", false)
        .await
        .assert_error(409, "conflict");
    // A random id when none is given.
    let r = alice
        .post("/v1/rooms", json!({"name": "  Trimmed  "}))
        .await;
    assert_eq!(r.assert_status(201)["name"], "Trimmed");

    let r = alice.get("/v1/rooms").await;
    let rooms = r.assert_status(200)["rooms"].as_array().unwrap().clone();
    assert_eq!(rooms.len(), 2);
    let r = alice.get("/v1/rooms/general").await;
    assert_eq!(r.assert_status(200)["role"], "owner");
    assert_eq!(r.json["unread"], 0);
    bob.get("/v1/rooms/general")
        .await
        .assert_error(404, "not_found");

    // Only the owner changes a room; validation is the protocol's.
    bob.patch("/v1/rooms/general", json!({"name": "Mine"}))
        .await
        .assert_error(403, "forbidden");
    alice
        .patch("/v1/rooms/general", json!({}))
        .await
        .assert_error(400, "bad_request");
    alice
        .patch("/v1/rooms/general", json!({"name": ""}))
        .await
        .assert_error(400, "bad_request");
    let r = alice
        .patch("/v1/rooms/general", json!({"description": "all things"}))
        .await;
    assert_eq!(r.assert_status(200)["room"], "general");

    bob.delete("/v1/rooms/general")
        .await
        .assert_error(403, "forbidden");
    alice.delete("/v1/rooms/general").await.assert_status(200);
    alice
        .get("/v1/rooms/general")
        .await
        .assert_error(404, "not_found");
    alice
        .delete("/v1/rooms/nowhere")
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn directory_pages_with_a_cursor() {
    let s = server().await;
    let alice = Api::user(s.http, "alice");
    for i in 0..5 {
        create(&alice, &format!("pub{i}"), false)
            .await
            .assert_status(201);
    }
    create(&alice, "hidden", true).await.assert_status(201);
    let mut seen = Vec::new();
    let mut path = "/v1/directory?prefix=room&limit=2".to_string();
    loop {
        let r = alice.get(&path).await;
        let page = r.assert_status(200);
        for room in page["rooms"].as_array().unwrap() {
            seen.push(room["room"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/directory?prefix=room&limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["pub0", "pub1", "pub2", "pub3", "pub4"],
        "private rooms are not listed"
    );
    alice
        .get("/v1/directory?limit=0")
        .await
        .assert_error(400, "bad_request");
    alice
        .get("/v1/directory?limit=x")
        .await
        .assert_error(400, "bad_request");
    alice
        .get("/v1/directory?after=zz")
        .await
        .assert_error(400, "bad_request");
}

#[tokio::test]
async fn malformed_requests_get_json_errors() {
    let s = server().await;
    let alice = Api::user(s.http, "alice");
    // No credential, a bad one, a wrong scheme.
    Api::anonymous(s.http)
        .get("/v1/rooms")
        .await
        .assert_error(401, "unauthorized");
    let r = alice
        .send("GET", "/v1/rooms", None, &[("authorization", "Basic YTpi")])
        .await;
    assert_eq!(
        r.status, 401,
        "a second Authorization header is refused too"
    );
    Api {
        addr: s.http,
        auth: common::http::Auth::Bearer("not.a.jwt".into()),
    }
    .get("/v1/rooms")
    .await
    .assert_error(401, "unauthorized");
    // Bodies: not JSON, no content type, wrong types, unknown fields, too large.
    alice
        .send(
            "POST",
            "/v1/rooms",
            Some("{".into()),
            &[("content-type", "application/json")],
        )
        .await
        .assert_error(400, "bad_request");
    alice
        .send("POST", "/v1/rooms", Some("{\"name\":\"x\"}".into()), &[])
        .await
        .assert_error(400, "bad_request");
    alice
        .post("/v1/rooms", json!({"name": 5}))
        .await
        .assert_error(400, "bad_request");
    alice
        .post("/v1/rooms", json!({"name": "x", "color": "red"}))
        .await
        .assert_error(400, "bad_request");
    let big = "x".repeat(300 * 1024);
    alice
        .post("/v1/rooms", json!({ "name": big }))
        .await
        .assert_error(413, "frame_too_large");
    // Paths and queries.
    alice
        .get("/v1/rooms/bad%20id")
        .await
        .assert_error(400, "bad_request");
    alice
        .get("/v1/rooms/r1/messages/notanumber")
        .await
        .assert_error(400, "bad_request");
    alice
        .get("/v1/rooms/r1/messages?before=-1")
        .await
        .assert_error(400, "bad_request");
    // Unknown routes and methods.
    alice
        .get("/v1/nothing")
        .await
        .assert_error(404, "not_found");
    let r = alice.send("PUT", "/v1/rooms", None, &[]).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.json["error"], "bad_request");
}

#[tokio::test]
async fn membership_invites_and_the_permission_matrix() {
    let s = server().await;
    let alice = Api::user(s.http, "alice"); // owner
    let bob = Api::user(s.http, "bob");
    let carol = Api::user(s.http, "carol");
    let dave = Api::user(s.http, "dave");
    create(&alice, "club", true).await.assert_status(201);

    // Private: no join without an invite; only admins and owners make invites.
    bob.post("/v1/rooms/club/join", json!({}))
        .await
        .assert_error(403, "forbidden");
    bob.post("/v1/rooms/club/invites", json!({}))
        .await
        .assert_error(403, "forbidden");
    alice
        .post("/v1/rooms/club/invites", json!({"max_uses": 0}))
        .await
        .assert_error(400, "bad_request");
    let r = alice
        .post("/v1/rooms/club/invites", json!({"max_uses": 5}))
        .await;
    let code = r.assert_status(201)["code"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("location").unwrap(),
        format!("/v1/rooms/club/invites/{code}")
    );
    bob.post("/v1/rooms/club/join", json!({"invite": "wrong"}))
        .await
        .assert_error(403, "forbidden");
    for api in [&bob, &carol, &dave] {
        let r = api
            .post("/v1/rooms/club/join", json!({"invite": code}))
            .await;
        assert_eq!(r.assert_status(200)["role"], "member");
    }
    let r = alice.get("/v1/rooms/club/invites").await;
    assert_eq!(r.assert_status(200)["invites"][0]["uses"], 3);
    bob.get("/v1/rooms/club/invites")
        .await
        .assert_error(403, "forbidden");

    // Members: paged by user id, with presence. Bob is online over TCP.
    let _bob_online = client_on(&s, Transport::Tcp, "bob").await;
    let r = alice.get("/v1/rooms/club/members?limit=2").await;
    let page = r.assert_status(200);
    let users: Vec<&str> = page["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["alice", "bob"]);
    assert_eq!(page["members"][1]["status"], "online");
    assert_eq!(page["members"][0]["status"], "offline");
    assert_eq!(page["next"], "bob");
    let r = alice.get("/v1/rooms/club/members?limit=2&after=bob").await;
    let page = r.assert_status(200);
    assert_eq!(page["members"].as_array().unwrap().len(), 2);
    assert!(page.get("next").is_none());
    Api::user(s.http, "eve")
        .get("/v1/rooms/club/members")
        .await
        .assert_error(403, "forbidden");
    let r = carol.get("/v1/rooms/club/presence").await;
    let p = r.assert_status(200);
    assert_eq!(
        (p["members"].as_u64(), p["online_count"].as_u64()),
        (Some(4), Some(1))
    );
    assert_eq!(p["online"], json!(["bob"]));

    // Roles: only the owner sets them; admins kick members, not the reverse.
    bob.put(
        "/v1/rooms/club/members/carol/role",
        json!({"role": "admin"}),
    )
    .await
    .assert_error(403, "forbidden");
    alice
        .put("/v1/rooms/club/members/bob/role", json!({"role": "admin"}))
        .await
        .assert_status(200);
    carol
        .delete("/v1/rooms/club/members/dave")
        .await
        .assert_error(403, "forbidden");
    dave.delete("/v1/rooms/club/members/bob")
        .await
        .assert_error(403, "forbidden");
    bob.delete("/v1/rooms/club/members/alice")
        .await
        .assert_error(403, "forbidden");
    bob.delete("/v1/rooms/club/members/dave")
        .await
        .assert_status(200);
    dave.get("/v1/rooms/club/messages")
        .await
        .assert_error(403, "forbidden");

    // Bans keep a user out even with an invite, until lifted.
    bob.put("/v1/rooms/club/bans/carol", json!({}))
        .await
        .assert_status(200);
    carol
        .post("/v1/rooms/club/join", json!({"invite": code}))
        .await
        .assert_error(403, "forbidden");
    carol
        .delete("/v1/rooms/club/bans/carol")
        .await
        .assert_error(403, "forbidden");
    bob.delete("/v1/rooms/club/bans/carol")
        .await
        .assert_status(200);
    carol
        .post("/v1/rooms/club/join", json!({"invite": code}))
        .await
        .assert_status(200);

    // Revoking an invite.
    carol
        .delete(&format!("/v1/rooms/club/invites/{code}"))
        .await
        .assert_error(403, "forbidden");
    bob.delete(&format!("/v1/rooms/club/invites/{code}"))
        .await
        .assert_status(200);
    dave.post("/v1/rooms/club/join", json!({"invite": code}))
        .await
        .assert_error(403, "forbidden");

    // Transfer: owner only, to a member; then the old owner can leave.
    bob.post("/v1/rooms/club/transfer", json!({"user": "carol"}))
        .await
        .assert_error(403, "forbidden");
    alice
        .post("/v1/rooms/club/transfer", json!({"user": "zed"}))
        .await
        .assert_error(404, "not_found");
    alice
        .post("/v1/rooms/club/transfer", json!({"user": "carol"}))
        .await
        .assert_status(200);
    assert_eq!(
        carol.get("/v1/rooms/club").await.assert_status(200)["role"],
        "owner"
    );
    alice
        .post("/v1/rooms/club/leave", json!({}))
        .await
        .assert_status(200);
    alice
        .get("/v1/rooms/club")
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn messages_history_edit_react_delete_read_receipts() {
    let s = server().await;
    let alice = Api::user(s.http, "alice");
    let bob = Api::user(s.http, "bob");
    create(&alice, "chat", false).await.assert_status(201);
    bob.post("/v1/rooms/chat/join", json!({}))
        .await
        .assert_status(200);

    for i in 1..=5 {
        let r = alice
            .post("/v1/rooms/chat/messages", json!({"body": format!("m{i}")}))
            .await;
        assert_eq!(r.assert_status(201)["seq"], i);
        assert_eq!(
            r.header("location").unwrap(),
            format!("/v1/rooms/chat/messages/{i}")
        );
    }
    // History: newest page, oldest first; page back with before.
    let r = bob.get("/v1/rooms/chat/messages?limit=2").await;
    let p = r.assert_status(200);
    let seqs: Vec<u64> = p["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!((seqs, p["more"].as_bool()), (vec![4, 5], Some(true)));
    let r = bob.get("/v1/rooms/chat/messages?limit=10&before=4").await;
    assert_eq!(
        r.assert_status(200)["messages"].as_array().unwrap().len(),
        3
    );
    assert_eq!(r.json["more"], false);
    bob.get("/v1/rooms/chat/messages?limit=201")
        .await
        .assert_error(400, "bad_request");
    bob.get("/v1/rooms/chat/messages?before=0")
        .await
        .assert_error(400, "bad_request");
    Api::user(s.http, "eve")
        .get("/v1/rooms/chat/messages")
        .await
        .assert_status(200);
    bob.get("/v1/rooms/nope/messages")
        .await
        .assert_error(404, "not_found");

    // Send rules are the protocol's.
    bob.post("/v1/rooms/chat/messages", json!({"body": ""}))
        .await
        .assert_error(400, "bad_request");
    bob.post("/v1/rooms/chat/messages", json!({"body": "x".repeat(5001)}))
        .await
        .assert_error(400, "bad_request");
    bob.post("/v1/rooms/chat/messages", json!({"body": "bell\u{7}"}))
        .await
        .assert_error(400, "bad_request");
    bob.post(
        "/v1/rooms/chat/messages",
        json!({"body": "hi", "reply_to": 0}),
    )
    .await
    .assert_error(400, "bad_request");
    Api::user(s.http, "eve")
        .post("/v1/rooms/chat/messages", json!({"body": "hi"}))
        .await
        .assert_error(403, "forbidden");

    // Edit: the author only.
    bob.patch("/v1/rooms/chat/messages/1", json!({"body": "not mine"}))
        .await
        .assert_error(403, "forbidden");
    let r = alice
        .patch("/v1/rooms/chat/messages/1", json!({"body": "m1, edited"}))
        .await;
    assert_eq!(r.assert_status(200)["seq"], 6);
    // React and unreact (the emoji URL-encoded in the path).
    bob.put(
        "/v1/rooms/chat/messages/1/reactions/%F0%9F%91%8D",
        json!({}),
    )
    .await
    .assert_status(200);
    let r = alice.get("/v1/rooms/chat/messages/1").await;
    let m = r.assert_status(200);
    assert_eq!(m["body"], "m1, edited");
    assert!(m["edited_at"].is_u64());
    assert_eq!(
        m["reactions"],
        json!([{"emoji": "👍", "count": 1, "me": false}])
    );
    bob.delete("/v1/rooms/chat/messages/1/reactions/%F0%9F%91%8D")
        .await
        .assert_status(200);
    let r = alice.get("/v1/rooms/chat/messages/1").await;
    assert!(r.assert_status(200).get("reactions").is_none());
    alice
        .get("/v1/rooms/chat/messages/999")
        .await
        .assert_error(404, "not_found");
    alice
        .get("/v1/rooms/chat/messages/0")
        .await
        .assert_error(400, "bad_request");
    // Delete: the author or an admin; a tombstone stays.
    bob.delete("/v1/rooms/chat/messages/2")
        .await
        .assert_error(403, "forbidden");
    alice
        .delete("/v1/rooms/chat/messages/2")
        .await
        .assert_status(200);
    let r = bob.get("/v1/rooms/chat/messages/2").await;
    assert_eq!(r.assert_status(200)["deleted"], true);

    // Read pointer and receipts.
    assert_eq!(
        bob.get("/v1/rooms/chat").await.assert_status(200)["unread"],
        4
    );
    let r = bob.put("/v1/rooms/chat/read", json!({"seq": 3})).await;
    assert_eq!(r.assert_status(200)["unread"], 2);
    let r = alice.get("/v1/rooms/chat/messages/3/receipts").await;
    let readers = r.assert_status(200)["readers"].as_array().unwrap().clone();
    assert!(readers.contains(&json!("bob")), "{readers:?}");
    let r = alice.get("/v1/rooms/chat/messages/5/receipts").await;
    assert!(!r.assert_status(200)["readers"]
        .as_array()
        .unwrap()
        .contains(&json!("bob")));
}

/// `GET .../messages?after=` pages forward, skipping seqs that hold no
/// message (here a deletion's), on the user API and the server API alike.
#[tokio::test]
async fn history_pages_forward_with_after() {
    let s = server().await;
    let alice = Api::user(s.http, "alice");
    create(&alice, "fwd", false).await.assert_status(201);
    for i in 1..=4 {
        alice
            .post("/v1/rooms/fwd/messages", json!({"body": format!("m{i}")}))
            .await
            .assert_status(201);
    }
    // Seq 5 is the deletion of message 2 (an event, not a message); 6 a message.
    alice
        .delete("/v1/rooms/fwd/messages/2")
        .await
        .assert_status(200);
    alice
        .post("/v1/rooms/fwd/messages", json!({"body": "m6"}))
        .await
        .assert_status(201);
    let page = |r: &Resp| -> (Vec<u64>, bool) {
        let seqs = r.json["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        (seqs, r.json["more"].as_bool().unwrap())
    };
    let r = alice.get("/v1/rooms/fwd/messages?after=0&limit=2").await;
    r.assert_status(200);
    assert_eq!(page(&r), (vec![1, 2], true));
    assert_eq!(r.json["messages"][1]["deleted"], true);
    let r = alice.get("/v1/rooms/fwd/messages?after=2&limit=2").await;
    r.assert_status(200);
    assert_eq!(page(&r), (vec![3, 4], true));
    let r = alice.get("/v1/rooms/fwd/messages?after=4&limit=2").await;
    r.assert_status(200);
    assert_eq!(page(&r), (vec![6], false));
    let r = alice.get("/v1/rooms/fwd/messages?after=6").await;
    r.assert_status(200);
    assert_eq!(page(&r), (vec![], false));
    alice
        .get("/v1/rooms/fwd/messages?after=1&before=4")
        .await
        .assert_error(400, "bad_request");
    alice
        .get("/v1/rooms/fwd/messages?after=-1")
        .await
        .assert_error(400, "bad_request");
    // The server API reads forward the same way, as a member.
    let r = Api::key(s.http, KEY)
        .get("/api/rooms/fwd/messages?as=alice&after=3&limit=1")
        .await;
    r.assert_status(200);
    assert_eq!(page(&r), (vec![4], true));
}

#[tokio::test]
async fn sends_are_idempotent_by_local_id() {
    let s = server().await;
    let alice = Api::user(s.http, "alice");
    create(&alice, "chat", false).await.assert_status(201);
    let first = alice
        .post(
            "/v1/rooms/chat/messages",
            json!({"body": "once", "local_id": "L1"}),
        )
        .await;
    let first = first.assert_status(201).clone();
    alice
        .post("/v1/rooms/chat/messages", json!({"body": "other"}))
        .await
        .assert_status(201);
    let retry = alice
        .post(
            "/v1/rooms/chat/messages",
            json!({"body": "once", "local_id": "L1"}),
        )
        .await;
    assert_eq!(
        retry.assert_status(201),
        &first,
        "a retry returns the original"
    );
    let r = alice.get("/v1/rooms/chat/messages").await;
    assert_eq!(
        r.assert_status(200)["messages"].as_array().unwrap().len(),
        2
    );
    alice
        .post(
            "/v1/rooms/chat/messages",
            json!({"body": "x", "local_id": "y".repeat(65)}),
        )
        .await
        .assert_error(400, "bad_request");
}

#[tokio::test]
async fn rest_sends_reach_tcp_and_websocket_subscribers_in_order() {
    let s = server().await;
    let alice = Api::user(s.http, "alice");
    create(&alice, "live", false).await.assert_status(201);
    let room = roomcast::ids::RoomId::new("live").unwrap();
    let mut tcp = client_on(&s, Transport::Tcp, "bob").await;
    let mut ws = client_on(&s, Transport::Ws, "carol").await;
    tcp.join(&room).await.unwrap();
    ws.join(&room).await.unwrap();
    // REST sends interleaved with a socket send: one order for everyone.
    for i in 1..=10u64 {
        if i == 5 {
            tcp.send(&room, "from the socket", None).await.unwrap();
        } else {
            alice
                .post(
                    "/v1/rooms/live/messages",
                    json!({"body": format!("rest {i}")}),
                )
                .await
                .assert_status(201);
        }
    }
    for c in [&mut tcp, &mut ws] {
        for i in 1..=10u64 {
            let m = next_msg(c).await;
            assert_eq!(m.seq, i);
            if i == 5 {
                assert_eq!(
                    (m.from.as_str(), m.body.as_str()),
                    ("bob", "from the socket")
                );
            } else {
                assert_eq!((m.from.as_str(), m.body), ("alice", format!("rest {i}")));
            }
        }
    }
    // A REST join makes a member without leaving a subscription behind.
    let dave = Api::user(s.http, "dave");
    dave.post("/v1/rooms/live/join", json!({}))
        .await
        .assert_status(200);
    dave.post("/v1/rooms/live/messages", json!({"body": "dave here"}))
        .await
        .assert_status(201);
    assert_eq!(next_msg(&mut tcp).await.body, "dave here");
}

#[tokio::test]
async fn rate_limited_requests_carry_headers() {
    let s = TestServer::start_with(|c| c.limit_send = "1:2".parse().unwrap()).await;
    let alice = Api::user(s.http, "alice");
    create(&alice, "chat", false).await.assert_status(201);
    for _ in 0..2 {
        let r = alice
            .post("/v1/rooms/chat/messages", json!({"body": "hi"}))
            .await;
        r.assert_status(201);
        assert_eq!(r.header("ratelimit-limit"), Some("2"));
        assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
        assert_eq!(r.header("ratelimit-policy"), Some("2;w=2"));
    }
    let r = alice
        .post("/v1/rooms/chat/messages", json!({"body": "hi"}))
        .await;
    r.assert_error(429, "rate_limited");
    let ms = r.json["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(ms >= 1);
    assert_eq!(
        r.header("retry-after"),
        Some(ms.div_ceil(1000).to_string().as_str())
    );
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("ratelimit-limit"), Some("2"));
    assert!(r.header("ratelimit-reset").is_some());
}

#[tokio::test]
async fn favorites_direct_rooms_and_presence() {
    let s = server().await;
    let alice = Api::user(s.http, "alice");
    create(&alice, "fav", false).await.assert_status(201);
    let r = alice.post("/v1/direct", json!({"user": "bob"})).await;
    let direct = r.assert_status(200)["room"].as_str().unwrap().to_string();
    assert_eq!(r.json["peer"], "bob");
    assert_eq!(r.header("location").unwrap(), format!("/v1/rooms/{direct}"));
    let again = Api::user(s.http, "bob")
        .post("/v1/direct", json!({"user": "alice"}))
        .await;
    assert_eq!(
        again.assert_status(200)["room"].as_str().unwrap(),
        direct,
        "one room per pair"
    );
    alice
        .post("/v1/direct", json!({"user": "alice"}))
        .await
        .assert_error(400, "bad_request");

    assert_eq!(
        alice.put("/v1/favorites/rooms/fav", json!({})).await.status,
        204
    );
    assert_eq!(
        alice.put("/v1/favorites/users/bob", json!({})).await.status,
        204
    );
    let r = alice.get("/v1/favorites").await;
    assert_eq!(
        r.assert_status(200),
        &json!({"rooms": ["fav"], "users": ["bob"]})
    );
    assert_eq!(alice.get("/v1/rooms/fav").await.json["favorite"], true);
    assert_eq!(alice.delete("/v1/favorites/rooms/fav").await.status, 204);
    assert_eq!(alice.delete("/v1/favorites/users/bob").await.status, 204);
    assert_eq!(
        alice.get("/v1/favorites").await.json,
        json!({"rooms": [], "users": []})
    );

    let _bob = client_on(&s, Transport::Tcp, "bob").await;
    let r = alice.get("/v1/presence?users=bob,carol").await;
    let users = r.assert_status(200)["users"].as_array().unwrap().clone();
    assert_eq!(users[0]["status"], "online");
    assert_eq!(users[1]["status"], "offline");
    alice
        .get("/v1/presence")
        .await
        .assert_error(400, "bad_request");
}

#[tokio::test]
async fn api_keys_and_user_tokens_never_cross() {
    let s = server().await;
    let backend = Api::key(s.http, KEY);
    let r = backend.get("/api/info").await;
    assert_eq!(r.assert_status(200)["version"], env!("CARGO_PKG_VERSION"));
    Api::key(s.http, OLD_KEY)
        .get("/api/info")
        .await
        .assert_status(200);
    Api::key(s.http, "backend-key-wrong-123456")
        .get("/api/info")
        .await
        .assert_error(401, "unauthorized");
    Api::anonymous(s.http)
        .get("/api/info")
        .await
        .assert_error(401, "unauthorized");
    // A user's JWT is not a key, in either header.
    let jwt = common::token("alice");
    Api::key(s.http, &jwt)
        .get("/api/info")
        .await
        .assert_error(401, "unauthorized");
    Api::user(s.http, "alice")
        .get("/api/info")
        .await
        .assert_error(401, "unauthorized");
    // A key is not a user token, in either header.
    Api {
        addr: s.http,
        auth: common::http::Auth::Bearer(KEY.into()),
    }
    .get("/v1/rooms")
    .await
    .assert_error(401, "unauthorized");
    backend
        .get("/v1/rooms")
        .await
        .assert_error(401, "unauthorized");

    // Without configured keys the server API is closed.
    let closed = TestServer::start().await;
    Api::key(closed.http, KEY)
        .get("/api/info")
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn the_server_api_acts_as_users_under_the_same_rules() {
    let s = server().await;
    let backend = Api::key(s.http, KEY);
    let r = backend
        .post(
            "/api/rooms",
            json!({"owner": "bot", "name": "Support", "room": "support"}),
        )
        .await;
    assert_eq!(r.assert_status(201)["room"], "support");
    assert_eq!(r.header("location"), Some("/v1/rooms/support"));
    let alice = Api::user(s.http, "alice");
    assert_eq!(
        alice.get("/v1/directory").await.json["rooms"][0]["room"],
        "support"
    );

    // Members: added the way they could join; removed by leaving.
    backend
        .put("/api/rooms/support/members/alice", json!({}))
        .await
        .assert_status(200);
    assert_eq!(
        alice.get("/v1/rooms/support").await.assert_status(200)["role"],
        "member"
    );
    let room = roomcast::ids::RoomId::new("support").unwrap();
    let mut live = client_on(&s, Transport::Ws, "alice").await;
    live.join(&room).await.unwrap();

    // Publish as the bot, idempotent by local_id; non-members are refused.
    let p = json!({"user": "bot", "body": "welcome", "local_id": "w1"});
    let first = backend.post("/api/rooms/support/messages", p.clone()).await;
    let first = first.assert_status(201).clone();
    assert_eq!(
        backend.post("/api/rooms/support/messages", p).await.json,
        first
    );
    backend
        .post(
            "/api/rooms/support/messages",
            json!({"user": "mallory", "body": "x"}),
        )
        .await
        .assert_error(403, "forbidden");
    let m = next_msg(&mut live).await;
    assert_eq!(
        (m.from.as_str(), m.body.as_str(), m.seq),
        ("bot", "welcome", 1)
    );

    // Broadcast: per-room results.
    backend
        .post(
            "/api/rooms",
            json!({"owner": "bot", "name": "News", "room": "news"}),
        )
        .await
        .assert_status(201);
    let r = backend
        .post(
            "/api/broadcast",
            json!({"rooms": ["support", "news", "ghost"], "user": "bot", "body": "update"}),
        )
        .await;
    let results = r.assert_status(200)["results"].as_array().unwrap().clone();
    assert_eq!(results[0]["sent"]["seq"], 2);
    assert_eq!(results[1]["sent"]["seq"], 1);
    assert_eq!(results[2]["error"]["error"], "not_found");
    assert_eq!(next_msg(&mut live).await.body, "update");
    backend
        .post(
            "/api/broadcast",
            json!({"rooms": [], "user": "bot", "body": "x"}),
        )
        .await
        .assert_error(400, "bad_request");

    // Reads as a member.
    let r = backend
        .get("/api/rooms/support/messages?as=alice&limit=1")
        .await;
    assert_eq!(r.assert_status(200)["messages"][0]["body"], "update");
    let r = backend.get("/api/rooms/support/presence?as=bot").await;
    assert_eq!(r.assert_status(200)["online"], json!(["alice"]));
    backend
        .get("/api/rooms/support/messages")
        .await
        .assert_error(400, "bad_request");
    let r = backend.get("/api/rooms/support?as=bot").await;
    let info = r.assert_status(200);
    assert_eq!(
        (
            &info["room"],
            &info["name"],
            &info["role"],
            &info["last"]["body"]
        ),
        (
            &json!("support"),
            &json!("Support"),
            &json!("owner"),
            &json!("update")
        )
    );
    backend
        .get("/api/rooms/support?as=mallory")
        .await
        .assert_error(404, "not_found");
    backend
        .get("/api/rooms/support")
        .await
        .assert_error(400, "bad_request");

    backend
        .delete("/api/rooms/support/members/alice")
        .await
        .assert_status(200);
    alice
        .get("/v1/rooms/support")
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn the_openapi_document_and_docs_page_are_served() {
    let s = server().await;
    let api = Api::anonymous(s.http);
    let r = api.get("/openapi.json").await;
    let doc = r.assert_status(200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/rooms",
        "/v1/rooms/{room}",
        "/v1/directory",
        "/v1/direct",
        "/v1/rooms/{room}/join",
        "/v1/rooms/{room}/leave",
        "/v1/rooms/{room}/members",
        "/v1/rooms/{room}/presence",
        "/v1/rooms/{room}/members/{user}",
        "/v1/rooms/{room}/members/{user}/role",
        "/v1/rooms/{room}/bans/{user}",
        "/v1/rooms/{room}/transfer",
        "/v1/rooms/{room}/invites",
        "/v1/rooms/{room}/invites/{code}",
        "/v1/rooms/{room}/messages",
        "/v1/rooms/{room}/messages/{seq}",
        "/v1/rooms/{room}/messages/{seq}/reactions/{emoji}",
        "/v1/rooms/{room}/messages/{seq}/receipts",
        "/v1/rooms/{room}/read",
        "/v1/favorites",
        "/v1/presence",
        "/api/rooms",
        "/api/rooms/{room}/messages",
        "/api/broadcast",
        "/api/rooms/{room}/members/{user}",
        "/api/rooms/{room}/presence",
        "/api/info",
    ] {
        assert!(paths.contains_key(p), "{p} is documented");
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["user_jwt"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["name"], "X-Api-Key");
    let r = api.get("/docs/").await;
    assert_eq!(r.status, 200);
    assert!(
        String::from_utf8_lossy(&r.raw).contains("swagger"),
        "the docs page"
    );
}

/// A preflight for `POST /v1/rooms` from `origin`, as a browser sends it.
async fn preflight(api: &Api, origin: &str) -> Resp {
    api.send(
        "OPTIONS",
        "/v1/rooms",
        None,
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type",
            ),
        ],
    )
    .await
}

#[tokio::test]
async fn cors_is_off_by_default_and_answers_configured_origins() {
    const APP: &str = "https://app.example.com";
    // Default: no CORS header anywhere, and OPTIONS is not a route.
    let s = server().await;
    let anon = Api::anonymous(s.http);
    let r = preflight(&anon, APP).await;
    assert_eq!(r.header("access-control-allow-origin"), None);
    r.assert_error(405, "bad_request");
    let alice = Api::user(s.http, "alice");
    let r = alice
        .send("GET", "/v1/rooms", None, &[("origin", APP)])
        .await;
    r.assert_status(200);
    assert_eq!(r.header("access-control-allow-origin"), None);

    // Configured: the listed origin (any case) gets a full preflight answer,
    // without a credential (browsers send none on a preflight).
    let s = TestServer::start_with(|c| {
        c.cors_origins = vec![APP.into(), "http://localhost:3000".into()];
    })
    .await;
    let anon = Api::anonymous(s.http);
    for origin in [APP, "HTTPS://APP.example.com"] {
        let r = preflight(&anon, origin).await;
        assert!((200..300).contains(&r.status), "{r:?}");
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
        let methods = r.header("access-control-allow-methods").unwrap_or("");
        assert!(
            methods.contains("POST") && methods.contains("DELETE"),
            "{methods}"
        );
        let headers = r
            .header("access-control-allow-headers")
            .unwrap_or("")
            .to_ascii_lowercase();
        assert!(
            headers.contains("authorization") && headers.contains("content-type"),
            "{headers}"
        );
        assert!(
            !headers.contains("x-api-key"),
            "keys never come from browsers"
        );
        assert_eq!(r.header("access-control-max-age"), Some("600"));
        assert!(
            r.header("vary").is_some_and(|v| v.contains("origin")),
            "{r:?}"
        );
    }
    // An origin not listed gets no allow header: the browser refuses.
    let r = preflight(&anon, "https://evil.example").await;
    assert_eq!(r.header("access-control-allow-origin"), None);

    // The actual request: allowed origin, readable Location and rate-limit headers.
    let alice = Api::user(s.http, "alice");
    let r = alice
        .send(
            "POST",
            "/v1/rooms",
            Some(
                serde_json::to_vec(&json!({"name": "C", "room": "c"}))
                    .unwrap()
                    .into(),
            ),
            &[("content-type", "application/json"), ("origin", APP)],
        )
        .await;
    r.assert_status(201);
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    let exposed = r
        .header("access-control-expose-headers")
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(
        exposed.contains("location") && exposed.contains("ratelimit-limit"),
        "{exposed}"
    );
    // Errors carry it too, so a script can read why it was refused.
    let r = Api::anonymous(s.http)
        .send("GET", "/v1/rooms", None, &[("origin", APP)])
        .await;
    r.assert_error(401, "unauthorized");
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    let r = alice
        .send(
            "GET",
            "/v1/rooms",
            None,
            &[("origin", "https://evil.example")],
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.header("access-control-allow-origin"), None);

    // `*`: any origin.
    let s = TestServer::start_with(|c| c.cors_origins = vec!["*".into()]).await;
    let r = preflight(&Api::anonymous(s.http), "https://anyone.example").await;
    assert!((200..300).contains(&r.status), "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn the_server_api_disconnects_every_connection_of_a_user() {
    let s = server().await;
    let backend = Api::key(s.http, KEY);
    // carol: two raw TCP connections and a WebSocket; dave: one TCP connection.
    let mut carol1 = common::Raw::connect(s.tcp).await;
    carol1.hello("carol").await;
    let mut carol2 = common::Raw::connect(s.tcp).await;
    carol2.hello("carol").await;
    let mut carol_ws = common::Peer::connect(&s, Transport::Ws).await;
    carol_ws.hello("carol").await;
    let mut dave = common::Raw::connect(s.tcp).await;
    dave.hello("dave").await;

    // Only with a key; a user token is not one.
    Api::user(s.http, "dave")
        .post("/api/users/carol/disconnect", json!({}))
        .await
        .assert_error(401, "unauthorized");
    let r = backend.post("/api/users/carol/disconnect", json!({})).await;
    assert_eq!(
        r.assert_status(200),
        &json!({"user": "carol", "disconnected": 3})
    );
    // Each connection gets the closing `unauthorized` error, then the close.
    for frames in [
        carol1.drain_to_eof().await,
        carol2.drain_to_eof().await,
        carol_ws.drain_to_eof().await,
    ] {
        assert_eq!(frames.len(), 1, "{frames:?}");
        let e = common::assert_error(frames.into_iter().next(), "unauthorized", true);
        assert_eq!(e.message, "disconnected by the server");
    }
    // Others are untouched, and the user may connect again (not a ban).
    dave.send_map(json!({"t": "ping", "id": 7})).await;
    assert!(matches!(
        dave.next().await,
        Some(roomcast::proto::ServerFrame::Pong(_))
    ));
    let mut again = common::Raw::connect(s.tcp).await;
    again.hello("carol").await;
    // Nobody connected: zero, not an error; a bad user id is a JSON 400.
    let r = backend
        .post("/api/users/nobody/disconnect", json!({}))
        .await;
    assert_eq!(r.assert_status(200)["disconnected"], 0);
    backend
        .post("/api/users/%0A/disconnect", json!({}))
        .await
        .assert_error(400, "bad_request");
}

#[tokio::test]
async fn the_server_api_publishes_as_the_system() {
    let s = server().await;
    let backend = Api::key(s.http, KEY);
    let alice = Api::user(s.http, "alice");
    create(&alice, "lobby", false).await.assert_status(201);
    create(&alice, "staff", true).await.assert_status(201);
    let mut sub = client_on(&s, Transport::Tcp, "alice").await;
    sub.join(&roomcast::ids::RoomId::new("staff").unwrap())
        .await
        .unwrap();

    // The system sender needs no membership, even in a private room, and a
    // retry with the same key answers the original message.
    let publish = json!({"user": "system", "body": "maintenance at 6", "local_id": "notice-1"});
    let r = backend
        .post("/api/rooms/staff/messages", publish.clone())
        .await;
    let seq = r.assert_status(201)["seq"].as_u64().unwrap();
    let again = backend.post("/api/rooms/staff/messages", publish).await;
    assert_eq!(again.assert_status(201)["seq"].as_u64(), Some(seq));
    let m = next_msg(&mut sub).await;
    assert_eq!(
        (m.from.as_str(), m.body.as_str(), m.seq),
        ("system", "maintenance at 6", seq)
    );
    let r = alice.get("/v1/rooms/staff/messages").await;
    assert_eq!(
        r.assert_status(200)["messages"].as_array().unwrap().len(),
        1,
        "stored once"
    );
    // A user who is not a member still cannot post there.
    backend
        .post(
            "/api/rooms/staff/messages",
            json!({"user": "bob", "body": "x"}),
        )
        .await
        .assert_error(403, "forbidden");

    // Not rate-limited (the default send limit has a burst of 30).
    for i in 0..40 {
        backend
            .post(
                "/api/rooms/lobby/messages",
                json!({"user": "system", "body": format!("tick {i}")}),
            )
            .await
            .assert_status(201);
    }
    let r = backend
        .post(
            "/api/broadcast",
            json!({"rooms": ["lobby", "staff"], "user": "system", "body": "to all"}),
        )
        .await;
    let results = r.assert_status(200)["results"].clone();
    assert!(
        results[0]["sent"].is_object() && results[1]["sent"].is_object(),
        "{results}"
    );

    // No token may be the system sender, on REST or on a socket.
    Api::user(s.http, "system")
        .get("/v1/rooms")
        .await
        .assert_error(401, "unauthorized");
    let mut raw = common::Raw::connect(s.tcp).await;
    raw.send_map(json!({"t": "hello", "v": 1, "token": common::token("system"), "id": 0}))
        .await;
    common::assert_error(raw.next().await, "unauthorized", true);
}
