//! Tenants (`--tenants`): two tenants use the SAME room ids and the SAME user
//! ids and stay apart, over the TCP protocol, the REST API and the server API.
//! Every frame and every JSON body a client receives is checked for the
//! internal separator byte (0x1F): ids leave the server un-prefixed.

mod common;

use common::http::{Api, Auth, Resp};
use common::{Raw, TestServer, SECRET, WAIT};
use futures_util::StreamExt;
use roomcast::auth::Authenticator;
use roomcast::proto::ServerFrame;
use serde_json::{json, Value};

const ACME_KEY: &str = "acme-backend-key-0123456789";
const GLOBEX_KEY: &str = "globex-backend-key-0123456789";

async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.tenants = true;
        c.api_keys = vec![format!("acme:{ACME_KEY}"), format!("globex:{GLOBEX_KEY}")];
    })
    .await
}

fn token(tenant: &str, user: &str) -> String {
    Authenticator::hs256(SECRET.as_bytes())
        .mint_in(Some(tenant), user, 3600)
        .expect("mint")
}

fn api(s: &TestServer, tenant: &str, user: &str) -> Api {
    Api {
        addr: s.http,
        auth: Auth::Bearer(token(tenant, user)),
    }
}

/// Asserts a REST answer carries no internal id.
#[track_caller]
fn clean(r: &Resp) -> &Resp {
    assert!(
        !r.raw.contains(&0x1f) && !String::from_utf8_lossy(&r.raw).contains("\\u001f"),
        "an internal id left the server: {:?}",
        r.raw
    );
    r
}

/// A protocol client over raw TCP that checks every frame's bytes.
struct Client {
    raw: Raw,
    next_id: u64,
}

impl Client {
    async fn connect(s: &TestServer, tenant: &str, user: &str) -> Client {
        let mut c = Client {
            raw: Raw::connect(s.tcp).await,
            next_id: 1,
        };
        c.raw
            .send_map(json!({"t": "hello", "v": 1, "token": token(tenant, user), "id": 0}))
            .await;
        match c.next().await {
            Some(ServerFrame::Welcome(w)) => assert_eq!(w.user.as_str(), user),
            other => panic!("expected welcome, got {other:?}"),
        }
        c
    }

    /// The next frame (None once closed), its bytes checked.
    async fn next(&mut self) -> Option<ServerFrame> {
        let payload = tokio::time::timeout(WAIT, self.raw.rx.next())
            .await
            .expect("frame within WAIT")?
            .expect("frame");
        // Look for the separator in the decoded strings and keys, not in the raw
        // bytes: a timestamp or a length may well contain the byte 0x1f.
        let text = rmp_serde::from_slice::<Value>(&payload)
            .map(|v| v.to_string())
            .expect("a frame the test can read as JSON");
        assert!(
            !text.contains("\\u001f"),
            "an internal id left the server: {text}"
        );
        Some(ServerFrame::decode(&payload).expect("decodes"))
    }

    /// Sends a request and returns its reply, skipping pushes.
    async fn call(&mut self, mut req: Value) -> ServerFrame {
        let id = self.next_id;
        self.next_id += 1;
        req["id"] = json!(id);
        self.raw.send_map(req).await;
        loop {
            let f = self.next().await.expect("reply before close");
            if f.reply_id() == Some(id) {
                return f;
            }
        }
    }

    async fn ok(&mut self, req: Value) -> ServerFrame {
        let f = self.call(req.clone()).await;
        assert!(!matches!(f, ServerFrame::Error(_)), "{req}: {f:?}");
        f
    }

    async fn err(&mut self, req: Value, code: &str) {
        match self.call(req.clone()).await {
            ServerFrame::Error(e) => assert_eq!(e.code.as_str(), code, "{req}: {}", e.message),
            other => panic!("{req}: expected {code}, got {other:?}"),
        }
    }

    /// The next `msg` push.
    async fn msg(&mut self) -> roomcast::proto::server::Message {
        loop {
            match self.next().await {
                Some(ServerFrame::Msg(m)) => return m,
                Some(_) => continue,
                None => panic!("closed before a msg"),
            }
        }
    }
}

#[tokio::test]
async fn same_room_and_user_ids_in_two_tenants_stay_apart_over_tcp() {
    let s = server().await;
    let mut acme_alice = Client::connect(&s, "acme", "alice").await;
    let mut globex_alice = Client::connect(&s, "globex", "alice").await;
    let mut acme_bob = Client::connect(&s, "acme", "bob").await;
    let mut globex_bob = Client::connect(&s, "globex", "bob").await;

    // The same room id in both tenants: two rooms, no conflict.
    for c in [&mut acme_alice, &mut globex_alice] {
        c.ok(json!({"t": "create_room", "name": "General", "room": "general"}))
            .await;
        c.ok(json!({"t": "join", "room": "general"})).await;
    }
    acme_alice
        .ok(json!({"t": "create_room", "name": "Secret plans", "room": "secret", "private": true}))
        .await;
    acme_bob.ok(json!({"t": "join", "room": "general"})).await;
    globex_bob.ok(json!({"t": "join", "room": "general"})).await;

    // Messages stay in their tenant; ids come back un-prefixed.
    let sent = acme_alice
        .ok(json!({"t": "send", "room": "general", "body": "acme only", "local_id": "a1"}))
        .await;
    assert!(
        matches!(sent, ServerFrame::Sent(ref s) if s.room.as_str() == "general" && s.seq == 1),
        "{sent:?}"
    );
    globex_alice
        .ok(json!({"t": "send", "room": "general", "body": "globex only", "local_id": "a1"}))
        .await;
    let m = acme_bob.msg().await;
    assert_eq!(
        (m.room.as_str(), m.from.as_str(), m.body.as_str(), m.seq),
        ("general", "alice", "acme only", 1)
    );
    let m = globex_bob.msg().await;
    assert_eq!(
        (m.room.as_str(), m.from.as_str(), m.body.as_str(), m.seq),
        ("general", "alice", "globex only", 1),
        "each tenant's room has its own seqs"
    );

    // History, members and room lists are per tenant.
    match globex_bob
        .ok(json!({"t": "history", "room": "general"}))
        .await
    {
        ServerFrame::History(h) => {
            let bodies: Vec<_> = h.messages.iter().map(|m| m.body.as_str()).collect();
            assert_eq!(bodies, ["globex only"]);
        }
        other => panic!("{other:?}"),
    }
    match globex_alice.ok(json!({"t": "rooms"})).await {
        ServerFrame::Rooms(r) => {
            let ids: Vec<_> = r.rooms.iter().map(|r| r.room.as_str()).collect();
            assert_eq!(ids, ["general"], "acme's secret is not globex alice's");
        }
        other => panic!("{other:?}"),
    }

    // Another tenant's room does not exist for you; acting on it is not_found.
    globex_bob
        .err(json!({"t": "join", "room": "secret"}), "not_found")
        .await;
    globex_bob
        .err(json!({"t": "history", "room": "secret"}), "not_found")
        .await;
    globex_alice
        .err(
            json!({"t": "send", "room": "secret", "body": "hi"}),
            "not_found",
        )
        .await;
    // Acme's bob is refused by acme's rules (private), not by the tenant.
    acme_bob
        .err(json!({"t": "join", "room": "secret"}), "forbidden")
        .await;

    // The directory lists the tenant's public rooms only.
    globex_alice
        .ok(json!({"t": "create_room", "name": "Globex news", "room": "news"}))
        .await;
    for (c, want) in [
        (&mut acme_bob, vec!["general"]),
        (&mut globex_bob, vec!["general", "news"]),
    ] {
        match c.ok(json!({"t": "public_rooms", "limit": 1})).await {
            ServerFrame::PublicRooms(p) => {
                let mut ids: Vec<String> = p.rooms.iter().map(|r| r.room.to_string()).collect();
                let mut next = p.next.clone();
                while let Some(after) = next {
                    match c
                        .ok(json!({"t": "public_rooms", "limit": 1, "after": after}))
                        .await
                    {
                        ServerFrame::PublicRooms(p) => {
                            ids.extend(p.rooms.iter().map(|r| r.room.to_string()));
                            next = p.next.clone();
                        }
                        other => panic!("{other:?}"),
                    }
                }
                assert_eq!(ids, want);
            }
            other => panic!("{other:?}"),
        }
    }

    // Presence: acme's bob is online, globex asks about "carol" and "bob" of its own.
    drop(globex_bob);
    match acme_alice
        .ok(json!({"t": "presence", "users": ["bob"]}))
        .await
    {
        ServerFrame::Presence(p) => {
            assert_eq!(p.users[0].status, roomcast::proto::types::Status::Online)
        }
        other => panic!("{other:?}"),
    }
    let mut globex_alice2 = Client::connect(&s, "globex", "alice").await;
    let mut seen_offline = false;
    for _ in 0..50 {
        match globex_alice2
            .ok(json!({"t": "presence", "users": ["bob"]}))
            .await
        {
            ServerFrame::Presence(p)
                if p.users[0].status == roomcast::proto::types::Status::Offline =>
            {
                assert_eq!(p.users[0].user.as_str(), "bob");
                seen_offline = true;
                break;
            }
            ServerFrame::Presence(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        seen_offline,
        "globex bob left; acme bob's session is not his"
    );

    // Direct rooms: the same pair in two tenants, the same visible id, two rooms.
    let a = match acme_alice
        .ok(json!({"t": "start_direct", "user": "bob"}))
        .await
    {
        ServerFrame::Direct(d) => d.room,
        other => panic!("{other:?}"),
    };
    let g = match globex_alice2
        .ok(json!({"t": "start_direct", "user": "bob"}))
        .await
    {
        ServerFrame::Direct(d) => d.room,
        other => panic!("{other:?}"),
    };
    assert_eq!(a, g, "a direct room's id is computed from the visible ids");
    acme_alice
        .ok(json!({"t": "send", "room": a.as_str(), "body": "dm in acme"}))
        .await;
    match globex_alice2
        .ok(json!({"t": "history", "room": g.as_str()}))
        .await
    {
        ServerFrame::History(h) => assert!(h.messages.is_empty(), "{h:?}"),
        other => panic!("{other:?}"),
    }

    // An internal (scoped) id from a client is refused, never taken.
    acme_alice
        .err(
            json!({"t": "join", "room": "globex\u{1f}general"}),
            "bad_request",
        )
        .await;
    acme_alice
        .err(
            json!({"t": "presence", "users": ["globex\u{1f}bob"]}),
            "bad_request",
        )
        .await;
}

#[tokio::test]
async fn tokens_must_name_a_valid_tenant() {
    let s = server().await;
    let plain = common::token("alice");
    // A sub that is itself a scoped id, signed by hand (mint refuses it).
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &roomcast::auth::Claims {
            sub: "globex\u{1f}alice".into(),
            exp: roomcast::ids::now_ms() / 1000 + 600,
            iat: None,
            tenant: Some("acme".into()),
        },
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    for t in [plain.clone(), token("Bad Tenant!", "alice"), forged] {
        let mut raw = Raw::connect(s.tcp).await;
        raw.send_map(json!({"t": "hello", "v": 1, "token": t, "id": 0}))
            .await;
        common::assert_error(raw.next().await, "unauthorized", true);
    }
    Api {
        addr: s.http,
        auth: Auth::Bearer(plain),
    }
    .get("/v1/rooms")
    .await
    .assert_error(401, "unauthorized");
    // Without --tenants a tenant claim is refused rather than ignored.
    let single = TestServer::start().await;
    Api {
        addr: single.http,
        auth: Auth::Bearer(token("acme", "alice")),
    }
    .get("/v1/rooms")
    .await
    .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn rest_and_the_server_api_stay_inside_their_tenant() {
    let s = server().await;
    let acme = api(&s, "acme", "alice");
    let globex = api(&s, "globex", "alice");
    let acme_key = Api::key(s.http, ACME_KEY);
    let globex_key = Api::key(s.http, GLOBEX_KEY);

    for a in [&acme, &globex] {
        let r = a
            .post("/v1/rooms", json!({"name": "General", "room": "general"}))
            .await;
        clean(&r).assert_status(201);
        assert_eq!(r.header("location"), Some("/v1/rooms/general"));
    }
    clean(
        &acme
            .post(
                "/v1/rooms",
                json!({"name": "Acme private", "room": "private", "private": true}),
            )
            .await,
    )
    .assert_status(201);
    // A room created without an id gets a random one inside the tenant.
    let r = globex.post("/v1/rooms", json!({"name": "Anon"})).await;
    let anon = clean(&r).assert_status(201)["room"]
        .as_str()
        .unwrap()
        .to_string();
    acme.get(&format!("/v1/rooms/{anon}"))
        .await
        .assert_error(404, "not_found");

    // A live acme subscriber sees acme's REST and server API sends only.
    let mut acme_bob = Client::connect(&s, "acme", "bob").await;
    acme_bob.ok(json!({"t": "join", "room": "general"})).await;
    clean(
        &globex
            .post("/v1/rooms/general/messages", json!({"body": "globex rest"}))
            .await,
    )
    .assert_status(201);
    clean(
        &globex_key
            .post(
                "/api/rooms/general/messages",
                json!({"user": "alice", "body": "globex api"}),
            )
            .await,
    )
    .assert_status(201);
    clean(
        &acme_key
            .post(
                "/api/rooms/general/messages",
                json!({"user": "alice", "body": "acme api", "local_id": "k1"}),
            )
            .await,
    )
    .assert_status(201);
    let m = acme_bob.msg().await;
    assert_eq!(
        (m.from.as_str(), m.body.as_str(), m.seq),
        ("alice", "acme api", 1)
    );

    // History over REST and the server API: each tenant its own.
    let r = globex.get("/v1/rooms/general/messages").await;
    let bodies: Vec<_> = clean(&r).assert_status(200)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bodies, ["globex rest", "globex api"]);
    let r = acme_key.get("/api/rooms/general/messages?as=alice").await;
    let page = clean(&r).assert_status(200);
    assert_eq!(page["messages"][0]["body"], "acme api");
    assert_eq!(page["messages"][0]["from"], "alice");
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);

    // Another tenant's room: not found on every API.
    globex
        .get("/v1/rooms/private/messages")
        .await
        .assert_error(404, "not_found");
    globex_key
        .get("/api/rooms/private/messages?as=alice")
        .await
        .assert_error(404, "not_found");
    globex_key
        .put("/api/rooms/private/members/mallory", json!({}))
        .await
        .assert_error(404, "not_found");
    globex_key
        .get("/api/rooms/private?as=alice")
        .await
        .assert_error(404, "not_found");
    let r = acme_key.get("/api/rooms/private?as=alice").await;
    assert_eq!(clean(&r).assert_status(200)["name"], "Acme private");

    // Directory, members and presence over REST.
    let r = acme.get("/v1/directory").await;
    let ids: Vec<_> = clean(&r).assert_status(200)["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["general"]);
    let r = acme.get("/v1/rooms/general/members").await;
    let members = clean(&r).assert_status(200)["members"].clone();
    let online: Vec<_> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["user"].as_str().unwrap(), m["status"].as_str().unwrap()))
        .collect();
    assert_eq!(online, [("alice", "offline"), ("bob", "online")]);
    let r = globex.get("/v1/rooms/general/presence").await;
    assert_eq!(
        clean(&r).assert_status(200)["online_count"],
        0,
        "{:?}",
        r.json
    );
    let r = acme_key.get("/api/rooms/general/presence?as=alice").await;
    assert_eq!(clean(&r).assert_status(200)["online"], json!(["bob"]));
    let r = globex.get("/v1/presence?users=bob").await;
    assert_eq!(
        clean(&r).assert_status(200)["users"][0]["status"],
        "offline"
    );

    // DMs over REST: same visible id, separate rooms.
    let r = acme.post("/v1/direct", json!({"user": "bob"})).await;
    let dm = clean(&r).assert_status(200)["room"]
        .as_str()
        .unwrap()
        .to_string();
    acme.post(&format!("/v1/rooms/{dm}/messages"), json!({"body": "psst"}))
        .await
        .assert_status(201);
    let r = globex.post("/v1/direct", json!({"user": "bob"})).await;
    assert_eq!(clean(&r).assert_status(200)["room"], dm.as_str());
    let r = globex.get(&format!("/v1/rooms/{dm}/messages")).await;
    assert_eq!(clean(&r).assert_status(200)["messages"], json!([]));

    // A key acts only in its tenant: globex's disconnect of bob leaves acme's bob.
    let r = globex_key
        .post("/api/users/bob/disconnect", json!({}))
        .await;
    assert_eq!(clean(&r).assert_status(200)["disconnected"], 0);
    acme_bob.ok(json!({"t": "ping"})).await;
    let r = acme_key.post("/api/users/bob/disconnect", json!({})).await;
    assert_eq!(clean(&r).assert_status(200)["disconnected"], 1);
    match acme_bob.next().await {
        Some(ServerFrame::Error(e)) => assert_eq!(e.code.as_str(), "unauthorized"),
        other => panic!("{other:?}"),
    }

    // Errors name ids as the client knows them.
    let r = globex.delete("/v1/rooms/nowhere").await;
    clean(&r).assert_error(404, "not_found");
    assert!(
        r.json["message"].as_str().unwrap().contains("nowhere"),
        "{:?}",
        r.json
    );
    // Scoped ids from a client are refused on REST too.
    globex
        .get("/v1/rooms/acme%1Fgeneral/messages")
        .await
        .assert_error(400, "bad_request");
    globex_key
        .post(
            "/api/rooms/general/messages",
            json!({"user": "acme\u{1f}alice", "body": "x"}),
        )
        .await
        .assert_error(400, "bad_request");
}

#[tokio::test]
async fn websocket_and_quic_clients_see_their_tenant_only() {
    use common::Transport;
    use roomcast::ids::RoomId;
    use roomcast_client::Connection;
    let s = server().await;
    let general = RoomId::new("general").unwrap();
    let mut tcp_globex = Client::connect(&s, "globex", "alice").await;
    tcp_globex
        .ok(json!({"t": "create_room", "name": "General", "room": "general"}))
        .await;
    tcp_globex
        .ok(json!({"t": "send", "room": "general", "body": "globex"}))
        .await;
    for t in [Transport::Ws, Transport::Quic] {
        let (mut c, welcome) =
            Connection::connect_to_with_token(&s.endpoint(t), &token("acme", "alice"))
                .await
                .unwrap_or_else(|e| panic!("{t:?}: {e}"));
        assert_eq!(welcome.user.as_str(), "alice", "{t:?}");
        // Acme has no `general` until it makes one; then it is empty.
        if t == Transport::Ws {
            assert!(c.join(&general).await.is_err(), "{t:?}: globex's room");
            c.call(|id| {
                roomcast::proto::client::ClientFrame::CreateRoom(
                    roomcast::proto::client::CreateRoom {
                        id,
                        name: "General".into(),
                        private: false,
                        description: None,
                        room: Some(general.clone()),
                    },
                )
            })
            .await
            .unwrap();
        }
        c.join(&general).await.unwrap();
        let page = c.history(&general, None, Some(50)).await.unwrap();
        assert!(
            page.messages.iter().all(|m| m.body != "globex"),
            "{t:?}: {page:?}"
        );
        let sent = c
            .send(&general, &format!("acme over {t:?}"), None)
            .await
            .unwrap();
        let m = common::next_msg(&mut c).await;
        assert_eq!(
            (m.room.as_str(), m.from.as_str(), m.seq),
            ("general", "alice", sent.seq),
            "{t:?}"
        );
    }
}
