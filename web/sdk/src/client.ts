// The resuming client (mirrors client/src/client.rs and driver.rs): connect
// (token, socket, `hello`), run a session (re-join rooms with `since`, flush
// the offline queue, heartbeat, turn pushes into de-duplicated events), and
// on any disconnect wait out the backoff and do it again.

import { backoffDelay, type BackoffOptions } from "./backoff.js";
import { encodeFrame } from "./codec.js";
import { Connection, type WebSocketConstructor } from "./connection.js";
import { Emitter } from "./emitter.js";
import { RoomcastError, sendRetryable } from "./errors.js";
import type * as F from "./frames.js";
import { newLocalId, SendQueue, type QueuedSend, type QueueStorage } from "./queue.js";
import { RoomTracker, type CaughtUp } from "./rooms.js";
import { TokenSource, type TokenCallback } from "./token.js";

export interface ClientOptions {
  /** `ws://host:7480/ws` or `wss://host:7481/ws`. */
  url: string;
  /** A JWT, or a callback returning one (called before the cached token
   *  expires and after `unauthorized`). A callback that throws is asked again
   *  after a backoff, unless it throws a `RoomcastError` with code
   *  `unauthorized`: the user is signed out and the client stops. */
  token: string | TokenCallback;
  /** The WebSocket constructor; default `globalThis.WebSocket` (pass `ws` in Node). */
  WebSocket?: WebSocketConstructor;
  backoff?: BackoffOptions;
  /** Most unacknowledged sends held (default 1000). */
  queueCapacity?: number;
  /** Mirror of the offline queue, e.g. `indexedDbStorage()`; default none. */
  storage?: QueueStorage;
  /** How long a request waits for a connection plus its reply (default 30 s). */
  requestTimeoutMs?: number;
  /** Deadline of one connection attempt: socket and `hello` (default 10 s). */
  connectTimeoutMs?: number;
  /** Sends written ahead of their acknowledgements (default 256). */
  sendWindow?: number;
  /** A token callback is called again when the cached token expires within this (default 60 s). */
  tokenRefreshMarginMs?: number;
  /** Ask for the room list right after `welcome` (the `roomList` event). */
  syncRooms?: boolean;
  /** React to the browser's online/offline and visibility events (default true where they exist). */
  watchBrowser?: boolean;
}

export type ConnectionState = "connecting" | "connected" | "disconnected" | "closed";

/** What a client reports. Stream events (`message`, `edit`, `delete`,
 *  `reaction`) come exactly once per room and in seq order, across reconnects. */
export interface ClientEvents {
  state: ConnectionState;
  connected: { user: string; session: string; reconnect: boolean };
  disconnected: { code?: string; message: string; retryInMs: number };
  reconnectFailed: { error: RoomcastError; retryInMs: number };
  /** A room was re-joined after a reconnect and every event in `from < seq <= to` was delivered. */
  resumed: CaughtUp;
  /** Re-joining a room after a reconnect was refused; the client no longer follows it. */
  joinFailed: { room: string; error: RoomcastError };
  message: F.MsgPush;
  edit: F.EditEvent;
  delete: F.DeleteEvent;
  reaction: F.ReactionEvent;
  typing: F.TypingPush;
  presence: F.UserPresence;
  read: F.ReadPush;
  memberJoined: F.MemberJoined;
  memberLeft: F.MemberLeft;
  roleChanged: F.RoleChanged;
  roomUpdated: F.RoomUpdated;
  roomDeleted: F.RoomDeleted;
  roomList: F.RoomSummary[];
  /** A queued send was acknowledged and nobody awaited it (loaded from storage). */
  sendAcked: F.Sent;
  /** A queued send nobody awaited was refused for good and left the queue. */
  sendFailed: { message: QueuedSend; error: RoomcastError };
  /** The number of unacknowledged sends changed. */
  queue: number;
  /** An `error` push without an id that does not close the connection. */
  serverError: F.ErrorFrame;
  /** The client stopped for good (`error`: the answer that stopped it, if
   *  any, e.g. `unauthorized` for a fixed token). Last event. */
  closed: { reason: string; error?: RoomcastError };
}

export interface SendOptions {
  /** The idempotency key; default a fresh one. Give one only to resend the same message. */
  local_id?: string;
  kind?: F.MessageKind;
  attachments?: F.Attachment[];
  reply_to?: number;
}

/** A queued send: `sent` resolves with the server's `sent` (across reconnects). */
export interface PendingSend {
  local_id: string;
  sent: Promise<F.Sent>;
  /** Resolves once the queue storage holds the message (at once without storage). */
  stored: Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class Client extends Emitter<ClientEvents> {
  private readonly opts: ClientOptions;
  private readonly Ws: WebSocketConstructor;
  private readonly tokens: TokenSource;
  /** The error of a token callback that threw `unauthorized`: stop. */
  private signedOut?: RoomcastError;
  private readonly tracker = new RoomTracker();
  private readonly queue: SendQueue;
  private conn?: Connection;
  private generation = 0;
  private inflight = 0;
  private retryTimer?: ReturnType<typeof setTimeout>;
  private connWaiters = new Set<() => void>();
  private wake?: () => void;
  private stopped = false;
  private status?: "online" | "away";
  private saving?: Promise<void>;
  private saveChain: Promise<void> = Promise.resolve();
  private maxFrame = 1 << 20;
  private unwatch?: () => void;
  /** The user id, once a connection was authenticated. */
  user?: string;
  state: ConnectionState = "connecting";

  private constructor(opts: ClientOptions) {
    super();
    this.opts = opts;
    const Ws = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Ws) throw new TypeError("no WebSocket: pass options.WebSocket (the `ws` package in Node)");
    this.Ws = Ws;
    this.tokens = new TokenSource(opts.token, opts.tokenRefreshMarginMs ?? 60_000);
    this.queue = new SendQueue(opts.queueCapacity ?? 1000);
  }

  /** Starts a client and waits for its first connection; rejects if that fails. */
  static async connect(opts: ClientOptions): Promise<Client> {
    const c = new Client(opts);
    await new Promise<void>((resolve, reject) => void c.run({ resolve, reject }));
    return c;
  }

  /** Starts a client that connects (and reconnects) in the background; sends
   *  made before the first connection wait in the queue. */
  static start(opts: ClientOptions): Client {
    const c = new Client(opts);
    void c.run();
    return c;
  }

  /** Stops: closes the connection, rejects waiting sends with `closed` (they
   *  stay in the storage, if any), emits `closed`. */
  close(): void {
    this.stop("closed by the app");
  }

  get connected(): boolean {
    return this.conn !== undefined;
  }

  /** The highest stream seq delivered in `room` (persist it to resume with `joinSince`). */
  lastSeq(room: string): number | undefined {
    return this.tracker.lastSeq(room);
  }

  /** Sends waiting for their acknowledgement. */
  get queued(): number {
    return this.queue.length;
  }

  /** The unacknowledged sends, in order (for showing them as pending). */
  pending(): QueuedSend[] {
    return this.queue.snapshot();
  }

  // ---- the driver ----

  private setState(s: ConnectionState) {
    if (this.state !== s) {
      this.state = s;
      this.emit("state", s);
    }
  }

  private stop(reason: string, error?: RoomcastError) {
    if (this.stopped) return;
    this.stopped = true;
    this.unwatch?.();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.conn?.close();
    this.conn = undefined;
    this.queue.closeWaiters(new RoomcastError("closed", "the client is closed"));
    for (const w of this.connWaiters) w();
    this.wake?.();
    this.setState("closed");
    this.emit("closed", { reason, error });
  }

  /** Waits `ms`, or less if the browser comes online / the page becomes visible. */
  private nap(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    });
  }

  private watchBrowser() {
    const w = globalThis as unknown as {
      addEventListener?: (e: string, f: () => void) => void;
      removeEventListener?: (e: string, f: () => void) => void;
      document?: { visibilityState?: string };
    };
    if (this.opts.watchBrowser === false || !w.addEventListener || !w.document) return;
    const online = () => this.wake?.();
    // The socket of a machine that went offline may linger for minutes.
    const offline = () => this.conn?.close();
    const visible = () => {
      if (w.document?.visibilityState !== "visible") return;
      const c = this.conn;
      if (!c) return this.wake?.();
      // Timers of hidden pages are throttled: check the connection is alive.
      c.request({ t: "ping" }, 5000).catch(() => c.close());
    };
    w.addEventListener("online", online);
    w.addEventListener("offline", offline);
    w.addEventListener("visibilitychange", visible);
    this.unwatch = () => {
      w.removeEventListener?.("online", online);
      w.removeEventListener?.("offline", offline);
      w.removeEventListener?.("visibilitychange", visible);
    };
  }

  private async run(first?: { resolve(): void; reject(e: unknown): void }) {
    this.watchBrowser();
    if (this.opts.storage) {
      try {
        this.queue.restore(await this.opts.storage.load());
        this.emit("queue", this.queue.length);
      } catch (e) {
        first?.reject(e);
        this.stop(`loading the queue storage failed: ${String(e)}`);
        return;
      }
    }
    const backoff = this.opts.backoff ?? {};
    let attempt = 0;
    while (!this.stopped) {
      this.setState("connecting");
      let conn: Connection, welcome: F.Welcome;
      try {
        [conn, welcome] = await this.connectOnce();
      } catch (e) {
        const error = e instanceof RoomcastError ? e : new RoomcastError("disconnected", String(e));
        if (this.stopped) return;
        if (first) {
          first.reject(error);
          this.stop("the first connection failed", error);
          return;
        }
        if (this.fatal(error)) return this.stop(`connect: ${error.message}`, error);
        attempt++;
        if (backoff.maxAttempts !== undefined && attempt >= backoff.maxAttempts) {
          return this.stop(`gave up after ${attempt} attempts: ${error.message}`);
        }
        const retryInMs = backoffDelay(backoff, attempt, error.retryAfterMs);
        this.setState("disconnected");
        this.emit("reconnectFailed", { error, retryInMs });
        await this.nap(retryInMs);
        continue;
      }
      if (this.stopped) return conn.close();
      first?.resolve();
      first = undefined;
      attempt = 0;
      this.generation++;
      await this.session(conn, welcome);
      if (this.stopped) return;
      const close = conn.closeError;
      const closeError = close && RoomcastError.fromFrame(close);
      if (closeError && this.fatal(closeError)) {
        return this.stop(`server closed: ${close.code} ${close.message}`, closeError);
      }
      const retryInMs = backoffDelay(backoff, 0, close?.retry_after_ms);
      this.setState("disconnected");
      this.emit("disconnected", {
        code: close?.code,
        message: close?.message ?? "connection lost",
        retryInMs,
      });
      await this.nap(retryInMs);
    }
  }

  /** Answers no reconnect can fix: an unsupported version, a fixed token the
   *  server refused, or a token callback that threw `unauthorized` (the app
   *  says the user is signed out). A callback that failed otherwise (the
   *  token service unreachable) is retried like a lost connection. */
  private fatal(e: RoomcastError): boolean {
    if (e.code === "unsupported_version") return true;
    if (e.code === "unauthorized") {
      if (!this.tokens.refreshable || e === this.signedOut) return true;
      this.tokens.invalidate();
    }
    return false;
  }

  private async connectOnce(): Promise<[Connection, F.Welcome]> {
    const timeout = this.opts.connectTimeoutMs ?? 10_000;
    let token: string;
    try {
      token = await this.tokens.get();
    } catch (e) {
      if (e instanceof RoomcastError && e.code === "unauthorized") {
        this.signedOut = new RoomcastError("unauthorized", `the token callback: ${e.message}`);
        throw this.signedOut;
      }
      throw new RoomcastError("token", `the token callback failed: ${String(e)}`);
    }
    const conn = await Connection.open(this.Ws, this.opts.url, timeout);
    const hello: F.ClientFrame = { t: "hello", v: 1, token, sync: this.opts.syncRooms ?? false };
    try {
      const w = (await conn.request(hello, timeout)) as F.Welcome;
      return [conn, w];
    } catch (e) {
      conn.close();
      // Refused before `welcome`: the reason is the closing error (no id).
      await Promise.race([conn.closed, sleep(1000)]);
      throw conn.closeError ? RoomcastError.fromFrame(conn.closeError) : e;
    }
  }

  private async session(conn: Connection, welcome: F.Welcome) {
    this.user = welcome.user;
    this.maxFrame = welcome.max_frame;
    this.inflight = 0;
    const generation = this.generation;
    this.conn = conn;
    this.setState("connected");
    this.emit("connected", {
      user: welcome.user,
      session: welcome.session,
      reconnect: generation > 1,
    });
    // Pushes wait one task, so an app awaiting `Client.connect` registers its
    // listeners before the first ones (the `hello {sync}` room list) arrive.
    await sleep(0);
    conn.attach((f) => this.onPush(f));
    for (const w of this.connWaiters) w();
    // A status the app chose (away) holds across reconnects.
    if (this.status === "away") {
      conn.request({ t: "presence", status: this.status }).catch(() => {});
    }
    for (const [room, since] of this.tracker.toRejoin()) void this.rejoin(conn, room, since);
    this.flush();
    const every = Math.max(100, welcome.heartbeat_ms);
    const heartbeat = setInterval(() => {
      conn.sendFrame({ t: "ping" });
      if (Date.now() - conn.lastFrameAt > every * 2.5) conn.close(); // a dead path
    }, every);
    await conn.closed;
    clearInterval(heartbeat);
    if (this.conn === conn) this.conn = undefined;
  }

  /** `join {room, since}` after a reconnect, waiting out `rate_limited`. */
  private async rejoin(conn: Connection, room: string, since: number | undefined) {
    for (let i = 0; ; i++) {
      try {
        const j = (await conn.request({ t: "join", room, since })) as F.Joined;
        if (since === undefined) {
          this.tracker.startAt(room, j.seq);
        } else {
          this.tracker.resuming(room, since, j.seq, j.complete ?? true);
          const done = this.tracker.caughtUp(room);
          if (done) this.emit("resumed", done);
        }
        return;
      } catch (e) {
        const err = e as RoomcastError;
        if (err.code === "rate_limited" && i < 20) {
          await sleep(Math.min(10_000, Math.max(1, err.retryAfterMs ?? 200)));
          continue;
        }
        if (err.frame) {
          this.tracker.unfollow(room);
          this.emit("joinFailed", { room, error: err });
        }
        return;
      }
    }
  }

  private onPush(f: F.ServerFrame) {
    switch (f.t) {
      case "msg":
      case "edit":
      case "delete":
      case "reaction": {
        if (!this.tracker.accept(f.room, f.seq)) return; // a duplicate (replay overlap)
        const done = this.tracker.caughtUp(f.room);
        if (f.t === "msg") this.emit("message", f);
        else if (f.t === "edit") this.emit("edit", f);
        else if (f.t === "delete") this.emit("delete", f);
        else this.emit("reaction", f);
        if (done) this.emit("resumed", done);
        return;
      }
      case "typing":
        return this.emit("typing", f);
      case "presence":
        for (const u of f.users) this.emit("presence", u);
        return;
      case "read":
        return this.emit("read", f);
      case "member_joined":
        return this.emit("memberJoined", f);
      case "member_left":
        if (f.user === this.user) this.tracker.unfollow(f.room);
        return this.emit("memberLeft", f);
      case "role_changed":
        return this.emit("roleChanged", f);
      case "room_updated":
        return this.emit("roomUpdated", f);
      case "room_deleted":
        this.tracker.unfollow(f.room);
        return this.emit("roomDeleted", f);
      case "rooms":
        return this.emit("roomList", f.rooms);
      case "error":
        if (!f.close) this.emit("serverError", f);
        return;
      default:
      // Unknown pushes are ignored (protocol rule); stale replies too.
    }
  }

  // ---- the offline queue ----

  private persist(): Promise<void> {
    const storage = this.opts.storage;
    if (!storage) return Promise.resolve();
    this.saving ??= this.saveChain = this.saveChain.then(() => {
      this.saving = undefined;
      return storage.save(this.queue.snapshot());
    });
    return this.saving.catch(() => {});
  }

  private queueChanged() {
    this.emit("queue", this.queue.length);
    void this.persist();
  }

  /** Writes queued sends on the live connection, in order, up to the window. */
  private flush() {
    const conn = this.conn;
    if (!conn) return;
    const generation = this.generation;
    const room = Math.max(1, this.opts.sendWindow ?? 256) - this.inflight;
    const batch = room > 0 ? this.queue.takeUnsent(generation, room, Date.now()) : [];
    for (const item of batch) {
      this.inflight++;
      const frame = { t: "send", ...item };
      conn.request(frame).then(
        (sent) => this.settle(generation, item, sent as F.Sent),
        (e: RoomcastError) => this.settle(generation, item, undefined, e),
      );
    }
    const next = this.queue.nextRetry();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (next !== undefined) {
      this.retryTimer = setTimeout(() => this.flush(), Math.max(0, next - Date.now()));
    }
  }

  private settle(generation: number, item: QueuedSend, sent?: F.Sent, e?: RoomcastError) {
    if (generation !== this.generation) return;
    this.inflight--;
    if (sent) {
      if (!this.queue.ack(item.local_id, sent)) this.emit("sendAcked", sent);
      this.queueChanged();
    } else if (e && e.code === "disconnected") {
      return; // written again on the next connection
    } else if (e && sendRetryable(e.code)) {
      const wait = Math.min(60_000, Math.max(1, e.retryAfterMs ?? 1000));
      this.queue.retry(item.local_id, Date.now() + wait);
    } else {
      const error = e ?? new RoomcastError("unexpected", "unexpected reply to send");
      const orphan = this.queue.fail(item.local_id, error);
      if (orphan) this.emit("sendFailed", { message: orphan, error });
      this.queueChanged();
    }
    this.flush();
  }

  /** Queues a message with a fresh `local_id` and returns at once; `sent`
   *  resolves once the server stored it, across reconnects and (with a
   *  storage) reloads. Throws `queue_full`, `too_large` or `closed`. */
  enqueue(room: string, body: string, opts: SendOptions = {}): PendingSend {
    if (this.stopped) throw new RoomcastError("closed", "the client is closed");
    const item: QueuedSend = { ...opts, local_id: opts.local_id ?? newLocalId(), room, body };
    const bytes = encodeFrame({ t: "send", id: 2 ** 53 - 1, ...item }).length;
    if (bytes > this.maxFrame) {
      throw new RoomcastError("too_large", `${bytes} bytes, the limit is ${this.maxFrame}`);
    }
    let waiter!: { resolve(s: F.Sent): void; reject(e: Error): void };
    const sent = new Promise<F.Sent>((resolve, reject) => (waiter = { resolve, reject }));
    sent.catch(() => {}); // rejections reach whoever awaits `sent`, never "unhandled"
    if (!this.queue.push(item, waiter)) {
      throw new RoomcastError("queue_full", `the send queue holds ${this.queue.capacity} messages`);
    }
    this.emit("queue", this.queue.length);
    const stored = this.persist();
    this.flush();
    return { local_id: item.local_id, sent, stored };
  }

  /** Sends a message and resolves with the server's `sent` (across reconnects). */
  async send(room: string, body: string, opts?: SendOptions): Promise<F.Sent> {
    const p = this.enqueue(room, body, opts);
    await p.stored;
    return p.sent;
  }

  // ---- requests ----

  /** The live connection, waiting for one until `deadline`; skips `stale`. */
  private async connection(deadline: number, stale?: Connection): Promise<Connection> {
    for (;;) {
      if (this.stopped) throw new RoomcastError("closed", "the client is closed");
      const c = this.conn;
      if (c && c !== stale && c.isOpen) return c;
      const left = deadline - Date.now();
      if (left <= 0) throw new RoomcastError("timeout", "no connection");
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          this.connWaiters.delete(done);
          resolve();
        };
        const t = setTimeout(done, left);
        this.connWaiters.add(done);
      });
    }
  }

  /** Sends a request and returns its reply. Safe-to-repeat requests
   *  (`idempotent`) go out again on the next connection if this one drops. */
  private async call<T extends F.ServerFrame>(
    frame: F.ClientFrame,
    idempotent: boolean,
  ): Promise<T> {
    const deadline = Date.now() + (this.opts.requestTimeoutMs ?? 30_000);
    let stale: Connection | undefined;
    for (;;) {
      const conn = await this.connection(deadline, stale);
      try {
        return (await conn.request(frame, Math.max(1, deadline - Date.now()))) as T;
      } catch (e) {
        if ((e as RoomcastError).code === "disconnected" && idempotent) {
          stale = conn;
          continue;
        }
        throw e;
      }
    }
  }

  /** Any request, sent once (for frames without a method of their own). */
  request(frame: F.ClientFrame): Promise<F.ServerFrame> {
    return this.call(frame, false);
  }

  ping(): Promise<F.Pong> {
    return this.call({ t: "ping" }, true);
  }

  createRoom(
    name: string,
    opts: { private?: boolean; description?: string; room?: string } = {},
  ): Promise<F.Created> {
    return this.call({ t: "create_room", name, ...opts }, false);
  }

  /** Follows `room`: subscribes now and after every reconnect, resuming
   *  from the last seq seen. `invite` admits a non-member to a private room. */
  async join(room: string, opts: { invite?: string } = {}): Promise<F.Joined> {
    const since = this.tracker.follow(room);
    return this.joinInner(room, since, opts.invite);
  }

  /** Follows `room` from `since` (a seq the app kept, e.g. across reloads). */
  async joinSince(room: string, since: number): Promise<F.Joined> {
    this.tracker.follow(room);
    this.tracker.startAt(room, since);
    return this.joinInner(room, since);
  }

  private async joinInner(room: string, since?: number, invite?: string): Promise<F.Joined> {
    try {
      const j = await this.call<F.Joined>({ t: "join", room, since, invite }, true);
      if (since === undefined) this.tracker.startAt(room, j.seq);
      return j;
    } catch (e) {
      if ((e as RoomcastError).frame) this.tracker.unfollow(room);
      throw e;
    }
  }

  /** Stops following `room` (membership stays; see `leaveRoom`). */
  leave(room: string): Promise<F.Left> {
    this.tracker.unfollow(room);
    return this.call({ t: "leave", room }, true);
  }

  /** Ends my membership of `room`. */
  leaveRoom(room: string): Promise<F.OkReply> {
    this.tracker.unfollow(room);
    return this.call({ t: "leave_room", room }, false);
  }

  /** The direct room of me and `user` (idempotent on the server). */
  startDirect(user: string): Promise<F.Direct> {
    return this.call({ t: "start_direct", user }, true);
  }

  /** Edits my message `seq` (within the edit window). Not repeated on a drop. */
  edit(room: string, seq: number, body: string): Promise<F.OkReply> {
    return this.call({ t: "edit", room, seq, body }, false);
  }

  delete(room: string, seq: number): Promise<F.OkReply> {
    return this.call({ t: "delete", room, seq }, true);
  }

  /** Adds (`on`, default) or removes a reaction. */
  react(room: string, seq: number, emoji: string, on = true): Promise<F.OkReply> {
    return this.call({ t: "react", room, seq, emoji, on }, true);
  }

  /** A page of messages in their latest state, oldest first: the newest
   *  `limit` (default 50), those before seq `before` (paging back; `more`:
   *  older ones exist), or those after seq `after` (paging forward; `more`:
   *  newer ones exist). `before` with `after` is `bad_request`. */
  history(
    room: string,
    opts: { before?: number; after?: number; limit?: number } = {},
  ): Promise<F.HistoryPage> {
    return this.call({ t: "history", room, ...opts }, true);
  }

  /** Moves my read pointer to `seq`. */
  read(room: string, seq: number): Promise<F.ReadAck> {
    return this.call({ t: "read", room, seq }, true);
  }

  receipts(room: string, seq: number): Promise<F.Receipts> {
    return this.call({ t: "receipts", room, seq }, true);
  }

  /** Starts (`on`) or stops my typing indicator; fire and forget (dropped when offline). */
  typing(room: string, on = true): void {
    this.conn?.sendFrame({ t: "typing", room, on });
  }

  /** The presence of `users`, in the order asked. */
  async presence(users: string[]): Promise<F.UserPresence[]> {
    return (await this.call<F.PresenceFrame>({ t: "presence", users }, true)).users;
  }

  /** Sets my status; kept across reconnects (each new session is set to it again). */
  async setStatus(status: "online" | "away"): Promise<void> {
    this.status = status;
    await this.call({ t: "presence", status }, true);
  }

  /** My rooms with role, unread count and last message. */
  async rooms(): Promise<F.RoomSummary[]> {
    return (await this.call<F.RoomsFrame>({ t: "rooms" }, true)).rooms;
  }

  /** The public room directory; page with `after: page.next`. */
  publicRooms(
    opts: { prefix?: string; after?: string; limit?: number } = {},
  ): Promise<F.PublicRooms> {
    return this.call({ t: "public_rooms", ...opts }, true);
  }

  members(room: string): Promise<F.Members> {
    return this.call({ t: "members", room }, true);
  }

  updateRoom(
    room: string,
    change: { name?: string; description?: string; private?: boolean },
  ): Promise<F.OkReply> {
    return this.call({ t: "update_room", room, ...change }, true);
  }

  deleteRoom(room: string): Promise<F.OkReply> {
    return this.call({ t: "delete_room", room }, false);
  }

  kick(room: string, user: string): Promise<F.OkReply> {
    return this.call({ t: "kick", room, user }, false);
  }

  ban(room: string, user: string): Promise<F.OkReply> {
    return this.call({ t: "ban", room, user }, true);
  }

  unban(room: string, user: string): Promise<F.OkReply> {
    return this.call({ t: "unban", room, user }, true);
  }

  setRole(room: string, user: string, role: "admin" | "member"): Promise<F.OkReply> {
    return this.call({ t: "set_role", room, user, role }, true);
  }

  /** Makes `user` the owner (I become admin). */
  transfer(room: string, user: string): Promise<F.OkReply> {
    return this.call({ t: "transfer", room, user }, false);
  }

  createInvite(
    room: string,
    opts: { expires_in_s?: number; max_uses?: number } = {},
  ): Promise<F.InviteFrame> {
    return this.call({ t: "create_invite", room, ...opts }, false);
  }

  invites(room: string): Promise<F.Invites> {
    return this.call({ t: "invites", room }, true);
  }

  revokeInvite(room: string, code: string): Promise<F.OkReply> {
    return this.call({ t: "revoke_invite", room, code }, true);
  }

  /** Marks (`on`, default) or unmarks a room or a person as favorite. */
  favorite(target: { room: string } | { user: string }, on = true): Promise<F.OkReply> {
    return this.call({ t: "favorite", ...target, on }, true);
  }

  favorites(): Promise<F.Favorites> {
    return this.call({ t: "favorites" }, true);
  }
}
