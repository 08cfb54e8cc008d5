// The SDK against the real server binary (started per suite on free ports):
// every API call, error codes, reconnect + resume after a kill and restart,
// exactly-once offline sends, token refresh.
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Client,
  RoomcastError,
  type ClientEvents,
  type ClientOptions,
  type QueuedSend,
  type QueueStorage,
  type WebSocketConstructor,
} from "../src/index.js";
import { TestServer, token, until } from "./server.js";

const Ws = WebSocket as unknown as WebSocketConstructor;
const fast = { initialMs: 50, maxMs: 500 };

function opts(server: TestServer, user: string, extra: Partial<ClientOptions> = {}): ClientOptions {
  return { url: server.url, token: token(user), WebSocket: Ws, backoff: fast, ...extra };
}

/** Records every event of a client, in order. */
function record(c: Client) {
  const log: { [K in keyof ClientEvents]?: ClientEvents[K][] } = {};
  const names: (keyof ClientEvents)[] = [
    "connected",
    "disconnected",
    "resumed",
    "message",
    "edit",
    "delete",
    "reaction",
    "typing",
    "presence",
    "read",
    "memberJoined",
    "memberLeft",
    "roleChanged",
    "roomUpdated",
    "roomDeleted",
    "roomList",
    "sendAcked",
    "sendFailed",
    "joinFailed",
    "closed",
  ];
  for (const n of names) c.on(n, (p) => ((log[n] ??= []) as unknown[]).push(p));
  return log;
}

async function expectCode(p: Promise<unknown>, code: string) {
  await expect(p).rejects.toMatchObject({ name: "RoomcastError", code });
}

function memoryStorage(): QueueStorage & { items: QueuedSend[] } {
  const s = {
    items: [] as QueuedSend[],
    load: async () => structuredClone(s.items),
    save: async (items: QueuedSend[]) => void (s.items = structuredClone(items)),
  };
  return s;
}

describe("the API against a real server", () => {
  const server = new TestServer();
  let alice: Client, bob: Client;
  let a: ReturnType<typeof record>, b: ReturnType<typeof record>;
  beforeAll(async () => {
    await server.start();
    alice = Client.start(opts(server, "alice", { syncRooms: true }));
    bob = Client.start(opts(server, "bob"));
    a = record(alice);
    b = record(bob);
    await until(() => alice.connected && bob.connected, "connected");
  });
  afterAll(async () => {
    alice?.close();
    bob?.close();
    await server.stop();
  });

  it("rooms, messages, edits, deletions, reactions, history", async () => {
    expect(alice.user).toBe("alice");
    const room = (await alice.createRoom("General", { description: "all" })).room;
    expect((await alice.join(room)).role).toBe("owner");
    const joined = await bob.join(room);
    expect(joined.role).toBe("member");
    await until(() => (a.memberJoined ?? []).some((m) => m.user === "bob"), "member_joined");

    const sent = await alice.send(room, "hello ✓");
    expect(sent.local_id).toMatch(/^l[0-9a-f]{32}$/);
    await until(() => (b.message ?? []).length === 1, "bob's msg");
    expect(b.message![0]).toMatchObject({ seq: sent.seq, from: "alice", body: "hello ✓" });

    const reply = await bob.send(room, "hi", { reply_to: sent.seq });
    const edit = await alice.edit(room, sent.seq, "hello ✓✓");
    expect(edit.seq).toBeGreaterThan(reply.seq);
    await bob.react(room, sent.seq, "👍");
    const del = await alice.delete(room, reply.seq);
    expect(del.seq).toBeDefined();
    await until(() => (b.delete ?? []).length === 1, "delete push");
    expect(b.edit![0]).toMatchObject({ target: sent.seq, body: "hello ✓✓" });
    expect(b.reaction![0]).toMatchObject({ target: sent.seq, user: "bob", emoji: "👍", on: true });

    const page = await alice.history(room);
    expect(page.more).toBe(false);
    expect(page.messages.map((m) => [m.seq, m.body, !!m.deleted])).toEqual([
      [sent.seq, "hello ✓✓", false],
      [reply.seq, "", true],
    ]);
    expect(page.messages[0]!.reactions).toEqual([{ emoji: "👍", count: 1, me: false }]);
    const older = await alice.history(room, { before: reply.seq, limit: 1 });
    expect(older.messages.map((m) => m.seq)).toEqual([sent.seq]);
    // Forward from the first message: the reply (a tombstone), and no newer.
    const newer = await alice.history(room, { after: sent.seq, limit: 1 });
    expect(newer.messages.map((m) => m.seq)).toEqual([reply.seq]);
    expect(newer.more).toBe(false);
    const first = await alice.history(room, { after: 0, limit: 1 });
    expect(first.messages.map((m) => m.seq)).toEqual([sent.seq]);
    expect(first.more).toBe(true);
    await expectCode(alice.history(room, { before: reply.seq, after: 0 }), "bad_request");

    // Stream events arrived once each, in seq order.
    const seqs = [
      ...(b.message ?? []),
      ...(b.edit ?? []),
      ...(b.delete ?? []),
      ...(b.reaction ?? []),
    ]
      .map((e) => e.seq)
      .sort((x, y) => x - y);
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(alice.lastSeq(room)).toBe(del.seq);
  });

  it("read pointers, receipts, typing, presence, status", async () => {
    const room = (await alice.createRoom("Reading")).room;
    await alice.join(room);
    await bob.join(room);
    const s = await alice.send(room, "read me");
    const ack = await bob.read(room, s.seq);
    expect(ack).toMatchObject({ seq: s.seq, unread: 0 });
    await until(() => (a.read ?? []).some((r) => r.user === "bob" && r.seq === s.seq), "read push");
    const receipts = await alice.receipts(room, s.seq);
    expect(receipts.readers).toEqual(["alice", "bob"]);
    expect(receipts.delivered).toContain("bob");

    bob.typing(room, true);
    await until(() => (a.typing ?? []).some((t) => t.user === "bob" && t.on), "typing on");
    bob.typing(room, false);
    await until(() => (a.typing ?? []).some((t) => t.user === "bob" && !t.on), "typing off");

    const p = await alice.presence(["bob", "nobody"]);
    expect(p.map((u) => [u.user, u.status])).toEqual([
      ["bob", "online"],
      ["nobody", "offline"],
    ]);
    await bob.setStatus("away");
    await until(
      () => (a.presence ?? []).some((u) => u.user === "bob" && u.status === "away"),
      "away",
    );
    await bob.setStatus("online");
  });

  it("room list, directory, members, update, favorites, direct rooms", async () => {
    const room = (await alice.createRoom("Zebra crossing", { description: "stripes" })).room;
    await alice.join(room);
    await alice.send(room, "first");
    const list = await alice.rooms();
    expect(list[0]).toMatchObject({ room, name: "Zebra crossing", role: "owner", kind: "room" });
    expect(a.roomList?.length).toBe(1); // the hello {sync} snapshot (empty then)
    const dir = await bob.publicRooms({ prefix: "zeb" });
    expect(dir.rooms).toEqual([
      { room, name: "Zebra crossing", description: "stripes", members: 1 },
    ]);
    const page = await bob.publicRooms({ limit: 1 });
    expect(page.rooms.length).toBe(1);
    expect(page.next).toBeDefined();
    await bob.join(room);
    expect((await alice.members(room)).members.map((m) => [m.user, m.role])).toEqual([
      ["alice", "owner"],
      ["bob", "member"],
    ]);
    await alice.updateRoom(room, { name: "Zebras" });
    await until(() => (b.roomUpdated ?? []).some((r) => r.name === "Zebras"), "room_updated");

    await alice.favorite({ room });
    await alice.favorite({ user: "bob" });
    expect(await alice.favorites()).toMatchObject({ rooms: [room], users: ["bob"] });
    await alice.favorite({ user: "bob" }, false);
    expect((await alice.favorites()).users).toEqual([]);

    const d = await alice.startDirect("bob");
    expect(d.room).toBe("d884a452152d3bf048cc051df8f708aff3f854a3d");
    expect((await bob.startDirect("alice")).room).toBe(d.room);
    await bob.join(d.room);
    await alice.send(d.room, "psst");
    await until(() => (b.message ?? []).some((m) => m.room === d.room), "direct msg");
    expect(await alice.ping()).toMatchObject({ t: "pong" });
  });

  it("invites, roles, kick, ban, transfer, leave and delete", async () => {
    const room = (await alice.createRoom("Secret", { private: true })).room;
    await alice.join(room);
    await expectCode(bob.join(room), "forbidden");
    const inv = await alice.createInvite(room, { max_uses: 1 });
    expect(inv).toMatchObject({ room, created_by: "alice", uses: 0, max_uses: 1 });
    await bob.join(room, { invite: inv.code });
    expect((await alice.invites(room)).invites[0]).toMatchObject({ code: inv.code, uses: 1 });
    await alice.revokeInvite(room, inv.code);
    expect((await alice.invites(room)).invites).toEqual([]);

    await alice.setRole(room, "bob", "admin");
    await until(() => (b.roleChanged ?? []).some((r) => r.role === "admin"), "role_changed");
    await alice.setRole(room, "bob", "member");
    await alice.kick(room, "bob");
    await until(() => (b.memberLeft ?? []).some((m) => m.reason === "kicked"), "kicked");
    await alice.ban(room, "bob");
    await expectCode(bob.join(room), "forbidden");
    await alice.unban(room, "bob");
    const inv2 = await alice.createInvite(room);
    await bob.join(room, { invite: inv2.code });
    await alice.transfer(room, "bob");
    expect((await alice.members(room)).members[0]).toMatchObject({ user: "bob", role: "owner" });
    await alice.leaveRoom(room);
    await bob.deleteRoom(room);
    await until(() => (b.roomDeleted ?? []).some((r) => r.room === room), "room_deleted");
    await expectCode(bob.history(room), "not_found");
    await expectCode(bob.leave(room), "not_found");
  });

  it("leave, joinSince (resume across restarts of the app), reaction removal", async () => {
    const room = (await alice.createRoom("Since")).room;
    await alice.join(room);
    const first = await alice.send(room, "one");
    await alice.send(room, "two");
    await bob.join(room);
    await bob.react(room, first.seq, ":tada:");
    expect((await bob.react(room, first.seq, ":tada:", false)).seq).toBeDefined();
    expect((await bob.react(room, first.seq, ":tada:", false)).seq).toBeUndefined(); // no-op
    expect(await bob.leave(room)).toMatchObject({ t: "left", room });

    // A new client (a reloaded page) that kept seq `first.seq` gets every
    // stream event after it replayed, then `resumed`, once each.
    const again = Client.start(opts(server, "bob"));
    const log = record(again);
    const joined = await again.joinSince(room, first.seq);
    await until(() => (log.resumed ?? []).length === 1, "resumed");
    expect(log.resumed![0]).toMatchObject({
      room,
      from: first.seq,
      to: joined.seq,
      complete: true,
    });
    expect(log.message!.map((m) => m.body)).toEqual(["two"]);
    expect(log.reaction!.map((r) => r.on)).toEqual([true, false]);
    expect(again.lastSeq(room)).toBe(joined.seq);
    again.close();
  });

  it("errors carry their codes", async () => {
    const room = (await alice.createRoom("Errors", { private: true, room: "errors-room" })).room;
    await expectCode(alice.createRoom("Again", { room }), "conflict");
    await expectCode(bob.send(room, "let me in"), "forbidden");
    await expectCode(bob.join("no-such-room"), "not_found");
    await expectCode(alice.history(room, { limit: 1000 }), "bad_request");
    await expectCode(alice.edit(room, 999, "x"), "not_found");
    await expectCode(alice.react(room, 1, "abc"), "bad_request");
    await expectCode(alice.send(room, ""), "bad_request"); // refused for good: leaves the queue
    expect(alice.queued).toBe(0);
    await expectCode(alice.request({ t: "presence", status: "offline" }), "bad_request");
    expect(() => alice.enqueue(room, "x".repeat(2 << 20))).toThrow(RoomcastError);
    await expectCode(
      Client.connect({
        ...opts(server, "mallory"),
        token: token("mallory", 3600, "wrong-secret-wrong-secret"),
      }),
      "unauthorized",
    );
    await expectCode(
      Client.connect({ ...opts(server, "eve"), token: token("eve", -3600) }),
      "unauthorized",
    );
  });
});

describe("rate limits", () => {
  const server = new TestServer(["--limit-create-room", "1:1"]);
  beforeAll(() => server.start());
  afterAll(() => server.stop());

  it("rate_limited carries retry_after_ms", async () => {
    const c = await Client.connect(opts(server, "alice"));
    await c.createRoom("one");
    const e = await c.createRoom("two").catch((e: RoomcastError) => e);
    expect(e).toMatchObject({ code: "rate_limited" });
    expect((e as RoomcastError).retryAfterMs).toBeGreaterThan(0);
    c.close();
  });
});

describe("reconnect, resume and the offline queue", () => {
  const server = new TestServer();
  beforeAll(() => server.start());
  afterAll(() => server.stop());

  it("kill and restart: both resume, nothing lost or duplicated, offline sends once", async () => {
    const alice = await Client.connect(opts(server, "alice"));
    const bob = await Client.connect(opts(server, "bob"));
    const a = record(alice);
    const b = record(bob);
    const room = (await alice.createRoom("Resume")).room;
    await alice.join(room);
    await bob.join(room);
    for (let i = 0; i < 3; i++) await bob.send(room, `before ${i}`);
    await until(() => (a.message ?? []).length === 3, "before");

    await server.kill();
    await until(() => !alice.connected && !bob.connected, "both disconnected");
    // Sent while the server is down: queued, delivered once after the restart.
    const offline = [alice.enqueue(room, "offline 1"), alice.enqueue(room, "offline 2")];
    expect(alice.queued).toBe(2);
    await server.start();
    // Someone else writes as soon as the server is back, racing the resumes.
    const carol = await Client.connect(opts(server, "carol"));
    await carol.join(room);
    for (let i = 0; i < 3; i++) await carol.send(room, `during ${i}`);
    const acks = await Promise.all(offline.map((p) => p.sent));
    expect(acks[1]!.seq).toBeGreaterThan(acks[0]!.seq);
    await bob.send(room, "after");

    const all = (await alice.history(room)).messages;
    expect(all.length).toBe(9);
    for (const [name, log] of [
      ["alice", a],
      ["bob", b],
    ] as const) {
      await until(() => (log.message ?? []).length === 9, `${name} got every message`);
      const got = log.message!.map((m) => m.seq);
      expect(got, name).toEqual(all.map((m) => m.seq)); // once each, in order
      expect(log.disconnected?.length, name).toBeGreaterThan(0);
      expect(
        log.connected?.some((c) => c.reconnect),
        name,
      ).toBe(true);
      expect(
        log.resumed?.some((r) => r.room === room && r.complete),
        name,
      ).toBe(true);
    }
    expect(all.filter((m) => m.body.startsWith("offline")).length).toBe(2);
    for (const c of [alice, bob, carol]) c.close();
  });

  it("a resend after a lost ack is stored once (exactly once by local_id)", async () => {
    const room = (await (await Client.connect(opts(server, "dave"))).createRoom("Once")).room;
    const watcher = await Client.connect(opts(server, "erin"));
    await watcher.join(room);
    const w = record(watcher);

    // Queued while offline (the server refuses nothing yet: it is down) and
    // mirrored to storage; the snapshot is what a reload would find.
    const storage = memoryStorage();
    await server.kill();
    const first = Client.start(opts(server, "dave", { storage }));
    const p = first.enqueue(room, "exactly once");
    await p.stored;
    const stale = structuredClone(storage.items);
    expect(stale.map((i) => i.local_id)).toEqual([p.local_id]);
    await server.start();
    const sent = await p.sent;
    await until(() => storage.items.length === 0, "acknowledged: gone from storage");
    first.close();

    // A reload from the stale snapshot (the ack was lost): the same local_id
    // goes out again and the server answers with the original `sent`.
    const again = memoryStorage();
    again.items = stale;
    const second = Client.start(opts(server, "dave", { storage: again }));
    const acked: ClientEvents["sendAcked"][] = [];
    second.on("sendAcked", (s) => acked.push(s));
    await until(() => acked.length === 1, "sendAcked of the resend");
    expect(acked[0]).toMatchObject({ seq: sent.seq, ts: sent.ts, local_id: p.local_id });
    expect(second.queued).toBe(0);

    await watcher.send(room, "marker");
    await until(() => (w.message ?? []).some((m) => m.body === "marker"), "marker");
    expect(w.message!.filter((m) => m.body === "exactly once").length).toBe(1);
    expect((await watcher.history(room)).messages.map((m) => m.body)).toEqual([
      "exactly once",
      "marker",
    ]);
    second.close();
    watcher.close();
  });

  it("the offline queue is bounded", async () => {
    await server.kill();
    const c = Client.start(opts(server, "frank", { queueCapacity: 2 }));
    c.enqueue("r", "1");
    c.enqueue("r", "2");
    expect(() => c.enqueue("r", "3")).toThrow(expect.objectContaining({ code: "queue_full" }));
    c.close();
    await expect(c.pending().length).toBe(2);
    await server.start();
  });

  it("token callbacks: refreshed before expiry and after unauthorized", async () => {
    let calls = 0;
    // The first token is badly signed (unauthorized), then short-lived ones
    // (inside the refresh margin, so every connection asks again).
    const source = () => {
      calls++;
      return calls === 1 ? token("gina", 3600, "not-the-secret-not-the-secret") : token("gina", 45);
    };
    const c = Client.start({ ...opts(server, "gina"), token: source });
    const failed: ClientEvents["reconnectFailed"][] = [];
    c.on("reconnectFailed", (e) => failed.push(e));
    await until(() => c.connected, "connected after a refresh");
    expect(failed[0]?.error.code).toBe("unauthorized");
    expect(calls).toBe(2);
    await server.kill();
    await server.start();
    await until(() => calls >= 3 && c.connected, "refreshed for the reconnect");
    expect(c.user).toBe("gina");
    c.close();
  });

  it("token callbacks: a failure is retried; unauthorized from the callback stops", async () => {
    // The token service is down twice, then answers: the client keeps trying.
    let calls = 0;
    const flaky = () => {
      if (++calls <= 2) throw new Error("token service unreachable");
      return token("hana", 3600);
    };
    const c = Client.start({ ...opts(server, "hana"), token: flaky });
    const failed: string[] = [];
    c.on("reconnectFailed", (e) => failed.push(e.error.code));
    await until(() => c.connected, "connected once the callback answers");
    expect(failed).toEqual(["token", "token"]);
    c.close();

    // The callback says the user is signed out (a refresh token refused).
    const d = Client.start({
      ...opts(server, "ivan"),
      token: () => {
        throw new RoomcastError("unauthorized", "refresh token revoked");
      },
    });
    const closed = await new Promise<ClientEvents["closed"]>((r) => d.on("closed", r));
    expect(closed.error?.code).toBe("unauthorized");
    expect(d.state).toBe("closed");
  });
});

describe("roomcast's built-in accounts as the token source (the README's example)", () => {
  // Access tokens of 2 s: every reconnect needs a refresh.
  const server = new TestServer(["--accounts", "true", "--access-token-ttl-secs", "2"]);
  beforeAll(() => server.start());
  afterAll(() => server.stop());

  it("logs in, refreshes through /v1/auth/refresh across a restart, stops when revoked", async () => {
    const base = server.base;
    const post = (path: string, body: unknown) =>
      fetch(`${base}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    expect(
      (await post("/v1/auth/register", { username: "judy", password: "judy-password" })).status,
    ).toBe(201);

    // As in web/sdk/README.md.
    let session = (await (
      await post("/v1/auth/login", { username: "judy", password: "judy-password" })
    ).json()) as { access_token: string; refresh_token: string };
    let first = true;
    let refreshes = 0;
    const c = await Client.connect({
      url: server.url,
      WebSocket: Ws,
      backoff: fast,
      token: async () => {
        if (first) {
          first = false;
          return session.access_token;
        }
        const res = await post("/v1/auth/refresh", { refresh_token: session.refresh_token });
        if (res.status === 401) throw new RoomcastError("unauthorized", "log in again");
        if (!res.ok) throw new Error(`refresh failed: ${res.status}`);
        session = (await res.json()) as typeof session;
        refreshes++;
        return session.access_token;
      },
    });
    expect(c.user).toBe("judy");

    // Down past the token's lifetime: the refresh fails while the server is
    // away (retried), then succeeds, and the client is back.
    await server.kill();
    await new Promise((r) => setTimeout(r, 2500));
    await server.start();
    await until(() => c.connected, "reconnected with a refreshed token");
    expect(refreshes).toBeGreaterThanOrEqual(1);

    // Logged out elsewhere: the refresh is refused and the client stops.
    expect((await post("/v1/auth/logout", { refresh_token: session.refresh_token })).status).toBe(
      204,
    );
    const closed = new Promise<ClientEvents["closed"]>((r) => c.on("closed", r));
    await server.kill();
    await new Promise((r) => setTimeout(r, 2500));
    await server.start();
    expect((await closed).error?.code).toBe("unauthorized");
  });
});

describe("wss://", () => {
  const server = new TestServer([], { https: true });
  beforeAll(() => server.start());
  afterAll(() => server.stop());

  it("the same client over the HTTPS listener", async () => {
    // The server's certificate is self-signed: this test trusts it blindly
    // (browsers use the system's CAs; `ws` takes TLS options).
    class InsecureWs extends WebSocket {
      constructor(url: string) {
        super(url, { rejectUnauthorized: false });
      }
    }
    const c = await Client.connect({
      ...opts(server, "alice"),
      url: server.wssUrl,
      WebSocket: InsecureWs as unknown as WebSocketConstructor,
    });
    const room = (await c.createRoom("Secure")).room;
    await c.join(room);
    const got: string[] = [];
    c.on("message", (m) => got.push(m.body));
    await c.send(room, "over TLS");
    await until(() => got.length === 1, "own message");
    expect(got).toEqual(["over TLS"]);
    c.close();
  });
});
