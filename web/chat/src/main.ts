// The web chat: sign in, then one Client for the page. The room list,
// message view, composer and banner are re-rendered from `state` (a few
// hundred elements at most), coalesced to one render per frame.

import {
  Client,
  indexedDbStorage,
  RoomcastError,
  type ConnectionState,
  type Message,
  type RoomSummary,
  type Status,
} from "@roomcast/client";
import { clear, fill, h } from "./dom.js";
import { AccountSession, accountPanel, onSessionChange } from "./accounts.js";
import { loadConfig, restore, signIn, type SignedIn } from "./signin.js";

interface Room {
  id: string;
  name: string;
  kind: "room" | "direct";
  peer?: string;
  private: boolean;
  role: string;
  unread: number;
  last?: Message;
  /** Loaded messages by seq (latest state). */
  messages: Map<number, Message>;
  loaded: boolean;
  more: boolean;
  typing: Set<string>;
  /** Read pointers of the members (receipts), in the server's member order. */
  readers: Map<string, number>;
  online: number;
  members: number;
}

const root = document.getElementById("app")!;
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const REACTIONS = ["👍", "❤️", "😂"];

let client: Client;
let me = "";
/** The display name of an account, when it has one. */
let myName = "";
let connState: ConnectionState = "connecting";
const rooms = new Map<string, Room>();
const presence = new Map<string, Status>();
let current: string | undefined;
let replyTo: Message | undefined;
let editing: Message | undefined;
let notice = "";
let inviteLink = "";
let directory: { room: string; name: string; members: number }[] | undefined;

// ---- rendering ----

let scheduled = false;
function render() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    draw();
  });
}

const layout = {
  banner: h("div", { class: "banner", "data-testid": "banner", role: "status" }),
  me: h("div", { class: "me" }),
  list: h("ul", { class: "rooms", "data-testid": "rooms" }),
  extra: h("div", { class: "directory" }),
  header: h("header", { class: "room-header" }),
  messages: h("ol", { class: "messages", "data-testid": "messages" }),
  typing: h("div", { class: "typing", "data-testid": "typing", "aria-live": "polite" }),
  composerBar: h("div", { class: "composer-bar" }),
  input: h("textarea", {
    "data-testid": "composer",
    rows: 2,
    placeholder: "Write a message",
    "aria-label": "Message",
  }),
  notice: h("div", { class: "notice", "data-testid": "notice" }),
  account: h("div", { hidden: true }),
};

function dot(user: string) {
  const s = presence.get(user) ?? "offline";
  return h("span", {
    class: `dot ${s}`,
    title: s,
    "data-testid": `presence-${user}`,
    "data-status": s,
  });
}

function roomTitle(r: Room) {
  return r.kind === "direct" ? (r.peer ?? "direct") : r.name;
}

function draw() {
  const queued = client?.queued ?? 0;
  layout.banner.textContent =
    connState === "connected"
      ? ""
      : `${connState === "closed" ? "Disconnected." : "Reconnecting…"}${queued ? ` ${queued} message(s) will be sent when back.` : ""}`;
  layout.banner.hidden = connState === "connected";
  layout.banner.dataset.state = connState;

  fill(
    layout.me,
    dot(me),
    myName ? h("span", { class: "me-name", "data-testid": "me-name" }, myName) : null,
    h(myName ? "span" : "strong", { class: myName ? "muted" : "", "data-testid": "me" }, me),
  );

  const sorted = [...rooms.values()].sort((a, b) => (b.last?.ts ?? 0) - (a.last?.ts ?? 0));
  layout.list.replaceChildren(
    ...sorted.map((r) =>
      h(
        "li",
        {
          class: r.id === current ? "active" : "",
          "data-testid": `room-${roomTitle(r)}`,
          onclick: () => void openRoom(r.id),
        },
        r.kind === "direct" && r.peer ? dot(r.peer) : h("span", { class: "hash" }, "#"),
        h(
          "div",
          { class: "room-text" },
          h("span", { class: "room-name" }, roomTitle(r)),
          h(
            "span",
            { class: "room-last" },
            r.last ? `${r.last.from}: ${r.last.deleted ? "(deleted)" : r.last.body}` : "",
          ),
        ),
        r.unread > 0 ? h("span", { class: "badge", "data-testid": "unread" }, r.unread) : null,
      ),
    ),
  );

  layout.extra.replaceChildren(
    ...(directory
      ? [
          h("h3", {}, "Public rooms"),
          ...directory.map((d) =>
            h(
              "div",
              { class: "dir-row" },
              h("span", {}, `${d.name} (${d.members})`),
              h("button", { onclick: () => void joinRoom(d.room) }, "Join"),
            ),
          ),
        ]
      : []),
  );

  const r = current ? rooms.get(current) : undefined;
  layout.notice.textContent = notice;
  if (!r) {
    fill(layout.header, h("h2", {}, "Pick or create a room"));
    clear(layout.messages);
    layout.typing.textContent = "";
    return;
  }
  const canInvite = r.kind === "room" && (r.role === "owner" || r.role === "admin");
  fill(
    layout.header,
    h(
      "h2",
      { "data-testid": "room-title" },
      r.kind === "direct" && r.peer ? dot(r.peer) : "#",
      roomTitle(r),
    ),
    h("span", { class: "muted" }, `${r.online} of ${r.members} online`),
    h(
      "span",
      { class: "members", "data-testid": "members" },
      [...r.readers.keys()].slice(0, 20).map((u) => h("span", { class: "member" }, dot(u), u)),
    ),
    canInvite
      ? h("button", { onclick: () => void makeInvite(r), "data-testid": "invite" }, "Invite link")
      : null,
    inviteLink
      ? h("input", {
          class: "invite-link",
          readonly: true,
          value: inviteLink,
          "data-testid": "invite-link",
        })
      : null,
  );
  drawMessages(r);
  const typers = [...r.typing].filter((u) => u !== me);
  layout.typing.textContent = typers.length
    ? `${typers.join(", ")} ${typers.length > 1 ? "are" : "is"} typing…`
    : "";
  layout.composerBar.replaceChildren(
    ...(replyTo
      ? [
          h("span", {}, `Replying to ${replyTo.from}: ${replyTo.body.slice(0, 60)}`),
          h("button", { onclick: cancelModes }, "✕"),
        ]
      : editing
        ? [h("span", {}, "Editing your message"), h("button", { onclick: cancelModes }, "✕")]
        : []),
  );
}

function drawMessages(r: Room) {
  const list = layout.messages;
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const fromBottom = list.scrollHeight - list.scrollTop;
  const msgs = [...r.messages.values()].sort((a, b) => a.seq - b.seq);
  let mine = 0;
  for (const m of msgs) if (m.from === me && !m.deleted) mine = m.seq;
  const seen = [...r.readers].filter(([u, s]) => u !== me && s >= mine && mine > 0).map(([u]) => u);
  const items: HTMLElement[] = [];
  if (r.more)
    items.push(
      h(
        "li",
        { class: "more" },
        h("button", { onclick: () => void loadOlder(r), "data-testid": "older" }, "Older messages"),
      ),
    );
  for (const m of msgs) {
    items.push(messageItem(r, m));
    if (m.seq === mine && seen.length)
      items.push(
        h("li", { class: "seen", "data-testid": "seen" }, `Seen by ${seen.sort().join(", ")}`),
      );
  }
  for (const p of client.pending().filter((p) => p.room === r.id)) {
    items.push(
      h(
        "li",
        { class: "msg pending", "data-testid": "pending" },
        h("div", { class: "meta" }, h("strong", {}, me), " sending…"),
        h("div", { class: "body" }, p.body),
      ),
    );
  }
  list.replaceChildren(...items);
  list.scrollTop = atBottom ? list.scrollHeight : list.scrollHeight - fromBottom;
}

function messageItem(r: Room, m: Message) {
  const own = m.from === me;
  const time = new Date(m.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const target = m.reply_to ? r.messages.get(m.reply_to) : undefined;
  const canDelete = !m.deleted && (own || r.role === "owner" || r.role === "admin");
  return h(
    "li",
    {
      class: `msg${own ? " own" : ""}${m.deleted ? " deleted" : ""}`,
      "data-testid": "msg",
      "data-seq": m.seq,
    },
    h(
      "div",
      { class: "meta" },
      h("strong", {}, m.from),
      ` ${time}`,
      m.edited_at ? h("span", { class: "muted", "data-testid": "edited" }, " (edited)") : null,
    ),
    m.reply_to
      ? h(
          "div",
          { class: "reply" },
          target
            ? `↪ ${target.from}: ${target.deleted ? "(deleted)" : target.body.slice(0, 80)}`
            : `↪ #${m.reply_to}`,
        )
      : null,
    h("div", { class: "body", "data-testid": "body" }, m.deleted ? "(deleted)" : m.body),
    m.reactions?.length
      ? h(
          "div",
          { class: "reactions" },
          m.reactions.map((x) =>
            h(
              "button",
              {
                class: x.me ? "me" : "",
                "data-testid": "reaction",
                onclick: () => void react(r, m, x.emoji, !x.me),
              },
              `${x.emoji} ${x.count}`,
            ),
          ),
        )
      : null,
    m.deleted
      ? null
      : h(
          "div",
          { class: "actions" },
          h(
            "button",
            { title: "Reply", onclick: () => startReply(m), "data-testid": "reply" },
            "↩",
          ),
          REACTIONS.map((e) =>
            h(
              "button",
              {
                title: `React ${e}`,
                onclick: () =>
                  void react(r, m, e, !m.reactions?.some((x) => x.emoji === e && x.me)),
                "data-testid": `react-${e}`,
              },
              e,
            ),
          ),
          own
            ? h(
                "button",
                { title: "Edit", onclick: () => startEdit(m), "data-testid": "edit" },
                "✎",
              )
            : null,
          canDelete
            ? h(
                "button",
                { title: "Delete", onclick: () => void del(r, m), "data-testid": "delete" },
                "🗑",
              )
            : null,
        ),
  );
}

// ---- actions ----

function report(e: unknown) {
  notice = e instanceof RoomcastError ? `${e.code}: ${e.message}` : String(e);
  render();
}

function room(summary: Partial<RoomSummary> & { room: string }): Room {
  let r = rooms.get(summary.room);
  if (!r) {
    r = {
      id: summary.room,
      name: summary.name ?? summary.room,
      kind: summary.kind ?? "room",
      private: summary.private ?? false,
      role: summary.role ?? "member",
      unread: 0,
      messages: new Map(),
      loaded: false,
      more: false,
      typing: new Set(),
      readers: new Map(),
      online: 0,
      members: 0,
    };
    rooms.set(summary.room, r);
  }
  if (summary.name !== undefined) r.name = summary.name;
  if (summary.kind) r.kind = summary.kind;
  if (summary.peer) r.peer = summary.peer;
  if (summary.role) r.role = summary.role;
  if (summary.unread !== undefined) r.unread = summary.unread;
  if (summary.last) r.last = summary.last;
  return r;
}

async function follow(id: string, invite?: string) {
  const j = await client.join(id, invite ? { invite } : {});
  const r = room({ room: id, role: j.role });
  r.online = j.online_count;
  r.members = j.members;
  for (const u of j.online ?? []) if (!presence.has(u)) presence.set(u, "online");
  render();
  return r;
}

async function openRoom(id: string) {
  current = id;
  replyTo = editing = undefined;
  inviteLink = "";
  notice = "";
  const r = rooms.get(id);
  render();
  if (!r) return;
  try {
    if (!r.loaded) {
      const page = await client.history(id, { limit: 50 });
      for (const m of page.messages) r.messages.set(m.seq, m);
      r.more = page.more;
      r.loaded = true;
      const members = await client.members(id);
      for (const m of members.members) r.readers.set(m.user, m.read_seq);
      const users = members.members.map((m) => m.user);
      for (const p of await client.presence(users)) presence.set(p.user, p.status);
    }
    await markRead(r);
  } catch (e) {
    report(e);
  }
  render();
  layout.input.focus();
}

async function markRead(r: Room) {
  const seq = client.lastSeq(r.id);
  if (seq === undefined || document.visibilityState !== "visible" || current !== r.id) return;
  r.unread = 0;
  const ack = await client.read(r.id, seq);
  r.unread = ack.unread;
  render();
}

async function loadOlder(r: Room) {
  const first = Math.min(...r.messages.keys());
  try {
    const page = await client.history(r.id, { before: first, limit: 50 });
    for (const m of page.messages) r.messages.set(m.seq, m);
    r.more = page.more;
  } catch (e) {
    report(e);
  }
  render();
}

async function joinRoom(input: string) {
  // A room id, or an invite link (…/#room=ID&invite=CODE).
  let id = input.trim();
  let invite: string | undefined;
  const hash = id.includes("#") ? id.slice(id.indexOf("#") + 1) : "";
  if (hash) {
    const p = new URLSearchParams(hash);
    id = p.get("room") ?? "";
    invite = p.get("invite") ?? undefined;
  }
  if (!id) return;
  try {
    await follow(id, invite);
    const summaries = await client.rooms();
    for (const s of summaries) room(s);
    await openRoom(id);
  } catch (e) {
    report(e);
  }
}

async function createRoom(name: string, priv: boolean) {
  try {
    const c = await client.createRoom(name, { private: priv });
    room({ room: c.room, name: c.name, private: c.private, role: "owner" });
    await follow(c.room);
    await openRoom(c.room);
  } catch (e) {
    report(e);
  }
}

async function direct(user: string) {
  try {
    const d = await client.startDirect(user.trim());
    room({ room: d.room, name: "", kind: "direct", peer: d.peer, private: true });
    await follow(d.room);
    await openRoom(d.room);
  } catch (e) {
    report(e);
  }
}

async function makeInvite(r: Room) {
  try {
    const inv = await client.createInvite(r.id);
    inviteLink = `${location.origin}/#room=${encodeURIComponent(r.id)}&invite=${inv.code}`;
  } catch (e) {
    report(e);
  }
  render();
}

async function react(r: Room, m: Message, emoji: string, on: boolean) {
  try {
    await client.react(r.id, m.seq, emoji, on);
  } catch (e) {
    report(e);
  }
}

async function del(r: Room, m: Message) {
  try {
    await client.delete(r.id, m.seq);
  } catch (e) {
    report(e);
  }
}

function startReply(m: Message) {
  replyTo = m;
  editing = undefined;
  render();
  layout.input.focus();
}

function startEdit(m: Message) {
  editing = m;
  replyTo = undefined;
  layout.input.value = m.body;
  render();
  layout.input.focus();
}

function cancelModes() {
  if (editing) layout.input.value = "";
  replyTo = editing = undefined;
  render();
}

let typingSent = 0;
function onInput() {
  if (!current) return;
  const now = Date.now();
  if (layout.input.value && now - typingSent > 3000) {
    typingSent = now;
    client.typing(current, true);
  } else if (!layout.input.value && typingSent) {
    typingSent = 0;
    client.typing(current, false);
  }
}

function submit() {
  const body = layout.input.value.trim();
  const r = current ? rooms.get(current) : undefined;
  if (!body || !r) return;
  layout.input.value = "";
  if (typingSent) client.typing(r.id, false);
  typingSent = 0;
  if (editing) {
    const m = editing;
    editing = undefined;
    client.edit(r.id, m.seq, body).catch(report);
  } else {
    try {
      const p = client.enqueue(r.id, body, replyTo ? { reply_to: replyTo.seq } : {});
      p.sent.catch(report);
    } catch (e) {
      report(e);
    }
    replyTo = undefined;
  }
  render();
}

// ---- events ----

function wire() {
  client.on("state", (s) => {
    connState = s;
    render();
  });
  client.on("queue", render);
  client.on("connected", (c) => {
    me = c.user;
    presence.set(me, "online"); // before any room tells
    notice = "";
    render();
  });
  client.on("roomList", (list) => {
    for (const s of list) {
      room(s);
      follow(s.room).catch(report);
    }
    render();
  });
  client.on("message", (m) => {
    const r = room({ room: m.room });
    if (r.loaded) r.messages.set(m.seq, m);
    r.last = m;
    if (m.from !== me) {
      if (current === m.room && document.visibilityState === "visible")
        void markRead(r).catch(() => {});
      else r.unread++;
    }
    r.typing.delete(m.from);
    render();
  });
  client.on("edit", (e) => {
    const m = rooms.get(e.room)?.messages.get(e.target);
    if (m) {
      m.body = e.body;
      m.edited_at = e.ts;
    }
    render();
  });
  client.on("delete", (e) => {
    const m = rooms.get(e.room)?.messages.get(e.target);
    if (m) {
      m.deleted = true;
      m.body = "";
      m.reactions = [];
    }
    render();
  });
  client.on("reaction", (e) => {
    const m = rooms.get(e.room)?.messages.get(e.target);
    if (!m) return;
    const list = (m.reactions ??= []);
    let x = list.find((r) => r.emoji === e.emoji);
    if (!x) list.push((x = { emoji: e.emoji, count: 0, me: false }));
    x.count += e.on ? 1 : -1;
    if (e.user === me) x.me = e.on;
    m.reactions = list.filter((r) => r.count > 0).sort((a, b) => (a.emoji < b.emoji ? -1 : 1));
    render();
  });
  client.on("typing", (t) => {
    const r = rooms.get(t.room);
    if (!r) return;
    if (t.on) r.typing.add(t.user);
    else r.typing.delete(t.user);
    render();
  });
  client.on("presence", (p) => {
    const was = presence.get(p.user) ?? "offline";
    presence.set(p.user, p.status);
    const delta = Number(p.status !== "offline") - Number(was !== "offline");
    for (const r of rooms.values()) if (r.readers.has(p.user)) r.online += delta;
    render();
  });
  client.on("read", (p) => {
    rooms.get(p.room)?.readers.set(p.user, p.seq);
    render();
  });
  client.on("memberJoined", (m) => {
    const r = rooms.get(m.room);
    if (r) r.members++;
    if (r?.loaded && !r.readers.has(m.user)) r.readers.set(m.user, 0);
    client.presence([m.user]).then((p) => {
      for (const u of p) presence.set(u.user, u.status);
      render();
    }, report);
    render();
  });
  client.on("roomUpdated", (u) => {
    room({ room: u.room, name: u.name, private: u.private });
    render();
  });
  for (const ev of ["roomDeleted", "joinFailed"] as const) {
    client.on(ev, (x: { room: string }) => {
      rooms.delete(x.room);
      if (current === x.room) current = undefined;
      render();
    });
  }
  client.on("memberLeft", (m) => {
    if (m.user !== me) return;
    rooms.delete(m.room);
    if (current === m.room) current = undefined;
    render();
  });
  client.on("sendFailed", (f) => report(f.error));
  // New direct rooms and invites arrive without a push to sessions that do
  // not follow them yet: look at the room list now and then.
  setInterval(() => {
    if (client.connected) refreshRooms();
  }, 30_000);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && client.connected) refreshRooms();
    const r = current ? rooms.get(current) : undefined;
    if (r) void markRead(r).catch(() => {});
  });
}

function refreshRooms() {
  client.rooms().then((list) => {
    for (const s of list) {
      const known = rooms.has(s.room);
      room(s);
      if (!known) follow(s.room).catch(report);
    }
    render();
  }, report);
}

function shell(session: SignedIn) {
  const form = (
    testid: string,
    placeholder: string,
    action: (v: string, f: HTMLFormElement) => void,
    extra?: HTMLElement,
  ) => {
    const input = h("input", { placeholder, "data-testid": `${testid}-input`, required: true });
    return h(
      "form",
      {
        class: "side-form",
        "data-testid": testid,
        onsubmit: (ev: Event) => {
          ev.preventDefault();
          action(input.value, ev.target as HTMLFormElement);
          input.value = "";
        },
      },
      input,
      extra ?? null,
      h("button", { type: "submit" }, "Go"),
    );
  };
  const priv = h("input", { type: "checkbox", "data-testid": "create-private", title: "Private" });
  layout.input.addEventListener("input", onInput);
  layout.input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) {
      ev.preventDefault();
      submit();
    }
  });
  layout.messages.addEventListener("scroll", () => {
    const r = current ? rooms.get(current) : undefined;
    if (r?.more && layout.messages.scrollTop === 0) void loadOlder(r);
  });
  root.replaceChildren(
    h(
      "div",
      { class: "chat" },
      h(
        "aside",
        {},
        h(
          "div",
          { class: "side-head" },
          layout.me,
          h(
            "div",
            { class: "side-actions" },
            session instanceof AccountSession
              ? h(
                  "button",
                  {
                    class: "link",
                    "data-testid": "account",
                    title: "Display name and password",
                    onclick: () => {
                      layout.account.hidden = !layout.account.hidden;
                      if (!layout.account.hidden)
                        layout.account.replaceChildren(
                          accountPanel(session, myName, (n) => {
                            myName = n;
                            render();
                          }),
                        );
                    },
                  },
                  "Account",
                )
              : null,
            h(
              "button",
              {
                class: "link",
                "data-testid": "signout",
                onclick: () => {
                  client.close();
                  void Promise.resolve(session.signOut()).finally(() => location.reload());
                },
              },
              "Sign out",
            ),
          ),
        ),
        layout.account,
        h(
          "label",
          {},
          "New room",
          form(
            "create",
            "Room name",
            (v) => void createRoom(v, priv.checked),
            h("label", { class: "inline" }, priv, "private"),
          ),
        ),
        h(
          "label",
          {},
          "Join a room or invite link",
          form("join", "Room id or link", (v) => void joinRoom(v)),
        ),
        h(
          "label",
          {},
          "Message a person",
          form("direct", "User id", (v) => void direct(v)),
        ),
        h(
          "button",
          {
            class: "link",
            "data-testid": "browse",
            onclick: () =>
              void client.publicRooms().then((p) => {
                directory = p.rooms;
                render();
              }, report),
          },
          "Browse public rooms",
        ),
        layout.extra,
        layout.list,
      ),
      h(
        "section",
        { class: "room" },
        layout.banner,
        layout.header,
        layout.notice,
        layout.messages,
        layout.typing,
        layout.composerBar,
        h(
          "form",
          {
            class: "composer",
            onsubmit: (ev: Event) => {
              ev.preventDefault();
              submit();
            },
          },
          layout.input,
          h("button", { type: "submit", "data-testid": "send" }, "Send"),
        ),
      ),
    ),
  );
}

/** Starts the client; resolves with the error if the server refuses the
 *  token, or undefined once connected or once it is clear the server is
 *  merely unreachable (the chat then opens offline, behind the banner). */
function start(session: SignedIn): Promise<RoomcastError | undefined> {
  const user = session.user;
  me = user ?? "";
  client = Client.start({
    url: wsUrl,
    token: session.token,
    syncRooms: true,
    storage: indexedDbStorage(user ?? "default"),
  });
  return new Promise((resolve) => {
    const offs = [
      client.on("connected", () => done(undefined)),
      client.on("closed", (c) => done(c.error ?? new RoomcastError("closed", c.reason))),
      client.on("reconnectFailed", (e) => {
        if (e.error.code !== "unauthorized") done(undefined);
      }),
    ];
    function done(e: RoomcastError | undefined) {
      for (const off of offs) off();
      resolve(e);
    }
  });
}

const ERROR_KEY = "roomcast.signinError";

async function main() {
  const config = await loadConfig();
  let session = await restore(config);
  // A session that ended while the page was open (see below) left its reason.
  let error = sessionStorage.getItem(ERROR_KEY) ?? undefined;
  sessionStorage.removeItem(ERROR_KEY);
  for (;;) {
    session ??= await signIn(root, config, error);
    const refused = await start(session);
    if (!refused) break;
    client.close();
    await session.signOut();
    error =
      session instanceof AccountSession
        ? `Your session ended (${refused.message}). Log in again.`
        : `The server refused the token (${refused.message}).`;
    session = undefined;
  }
  connState = client.state;
  wire();
  // A token refused later (a fixed token after a server secret change, a
  // refresh token revoked by a password change elsewhere): sign in again.
  client.on("closed", (c) => {
    if (c.error?.code === "unauthorized") {
      sessionStorage.setItem(ERROR_KEY, `Your session ended (${c.error.message}). Sign in again.`);
      void Promise.resolve(session?.signOut()).finally(() => location.reload());
    }
  });
  if (session instanceof AccountSession) {
    const account = session;
    void account.keepFresh();
    // Logged out (or in as someone else) in another tab: follow it.
    onSessionChange(account.user, () => location.reload());
    // Signed out by the server (a password change elsewhere): back to the form.
    account.onEnded = (reason) => {
      sessionStorage.setItem(ERROR_KEY, `Your session ended (${reason}). Log in again.`);
      client.close();
      location.reload();
    };
    account.displayName().then(
      (name) => {
        myName = name ?? "";
        render();
      },
      () => {},
    ); // offline at start: the user id is shown meanwhile
  }
  shell(session);
  render();
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("room")) {
    history.replaceState(null, "", location.pathname);
    await joinRoom(`#${hash.toString()}`);
  }
}

void main();
