// One connection for all tabs of an origin (`@roomcast/client/tabs`): the
// tabs elect a leader with the Web Locks API; the leader runs the real
// Client and relays calls and events over a BroadcastChannel. When the
// leader tab closes, its lock is released, another tab takes over, opens
// its own connection and re-joins every room the tabs follow from the last
// seq each has seen; each tab drops duplicate stream events itself, so they
// still arrive once per tab. Sends carry their local_id from the tab that
// made them, so a send resent to a new leader is stored once.

import { Client, type ClientEvents, type ClientOptions } from "./client.js";
import { Emitter } from "./emitter.js";
import { RoomcastError } from "./errors.js";
import { newLocalId } from "./queue.js";
import { RoomTracker } from "./rooms.js";

type Api = {
  [K in keyof Client]-?: Client[K] extends (...a: never[]) => Promise<unknown> ? K : never;
}[keyof Client];
type Args<K extends Api> = Client[K] extends (...a: infer A) => unknown ? A : never;
type Ret<K extends Api> = Client[K] extends (...a: never[]) => infer R ? R : never;

/** Calls safe to send again to a new leader (the others fail with `disconnected`). */
const REPEATABLE = new Set<string>([
  "ping",
  "join",
  "joinSince",
  "leave",
  "startDirect",
  "delete",
  "react",
  "history",
  "read",
  "receipts",
  "presence",
  "setStatus",
  "rooms",
  "publicRooms",
  "members",
  "updateRoom",
  "ban",
  "unban",
  "setRole",
  "invites",
  "revokeInvite",
  "favorite",
  "favorites",
  "send",
]);

const EVENTS: (keyof ClientEvents)[] = [
  "state",
  "connected",
  "disconnected",
  "reconnectFailed",
  "resumed",
  "joinFailed",
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
  "queue",
  "serverError",
  "closed",
];

type Wire =
  | { k: "call"; from: string; id: number; m: string; args: unknown[] }
  | {
      k: "ret";
      to: string;
      id: number;
      v?: unknown;
      e?: { code: string; message: string; retryAfterMs?: number };
    }
  | { k: "ev"; n: keyof ClientEvents; p: unknown }
  | { k: "leader"; tab: string }
  | { k: "hello" };

interface Pending {
  m: string;
  args: unknown[];
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

export interface TabOptions extends ClientOptions {
  /** Tabs with the same name share a connection (default "roomcast"). */
  name?: string;
}

export class TabClient extends Emitter<ClientEvents> {
  readonly tab = newLocalId();
  private readonly channel: BroadcastChannel;
  private readonly tracker = new RoomTracker();
  private leader?: Client;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private release?: () => void;
  /** Whether this tab holds the connection. */
  isLeader = false;
  /** The leader's connection state, as last heard. */
  state: ClientEvents["state"] = "connecting";
  /** The user id, once the leader's connection was authenticated. */
  user?: string;

  private constructor(private readonly opts: TabOptions) {
    super();
    const name = opts.name ?? "roomcast";
    this.channel = new BroadcastChannel(`${name}:tabs`);
    this.channel.onmessage = (ev: MessageEvent<Wire>) => this.onWire(ev.data);
    // Ask a leader that is already up for its state.
    this.post({ k: "hello" });
    void navigator.locks.request(`${name}:leader`, () => {
      this.lead();
      return new Promise<void>((r) => (this.release = r));
    });
  }

  /** Joins (or founds) the tabs sharing `opts.name`. Needs Web Locks and BroadcastChannel. */
  static open(opts: TabOptions): TabClient {
    return new TabClient(opts);
  }

  /** Calls a Client method on the leader's connection. */
  call<K extends Api>(m: K, ...args: Args<K>): Ret<K> {
    const a = args as unknown[];
    if (m === "join" || m === "joinSince") this.tracker.follow(a[0] as string);
    if (m === "joinSince") this.tracker.startAt(a[0] as string, a[1] as number);
    if (m === "leave" || m === "leaveRoom") this.tracker.unfollow(a[0] as string);
    if (m === "send") {
      // The local_id is chosen here, so a resend to another leader is one message.
      const o = (a[2] ?? {}) as { local_id?: string };
      a[2] = { ...o, local_id: o.local_id ?? newLocalId() } as never;
    }
    const p = this.leader ? this.invoke(this.leader, m, a) : this.relay(m, a);
    return p.then((v) => {
      if (m === "join" && (v as { seq: number }).seq !== undefined) {
        this.tracker.startAt(a[0] as string, (v as { seq: number }).seq);
      }
      return v;
    }) as Ret<K>;
  }

  /** The highest stream seq this tab has seen in `room`. */
  lastSeq(room: string): number | undefined {
    return this.tracker.lastSeq(room);
  }

  /** Leaves the group (a leader hands over to another tab). */
  close(): void {
    this.leader?.close();
    this.leader = undefined;
    this.release?.();
    this.channel.close();
  }

  private invoke(c: Client, m: string, args: unknown[]): Promise<unknown> {
    const f = (c as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[m];
    if (typeof f !== "function") return Promise.reject(new TypeError(`no method ${m}`));
    return f.apply(c, args);
  }

  private relay(m: string, args: unknown[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { m, args, resolve, reject });
      this.post({ k: "call", from: this.tab, id, m, args });
    });
  }

  private post(w: Wire) {
    this.channel.postMessage(w);
  }

  /** This tab won the lock: open the connection and serve the others. */
  private lead() {
    this.isLeader = true;
    const c = Client.start(this.opts);
    this.leader = c;
    for (const n of EVENTS) {
      c.on(n, (p) => {
        this.deliver(n, p);
        this.post({
          k: "ev",
          n,
          p:
            n === "reconnectFailed" || n === "joinFailed" || n === "sendFailed" || n === "closed"
              ? plain(p)
              : p,
        });
      });
    }
    // Rooms this tab followed under the previous leader, from where it was.
    for (const [room, since] of this.tracker.toRejoin()) {
      (since === undefined ? c.join(room) : c.joinSince(room, since)).catch(() => {});
    }
    // Calls this tab had sent to the old leader.
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      if (REPEATABLE.has(p.m)) this.invoke(c, p.m, p.args).then(p.resolve, p.reject);
      else p.reject(new RoomcastError("disconnected", "the leader tab closed"));
    }
    this.post({ k: "leader", tab: this.tab });
  }

  /** Re-emits an event in this tab, dropping stream events it has seen. */
  private deliver(n: keyof ClientEvents, p: unknown) {
    if (n === "message" || n === "edit" || n === "delete" || n === "reaction") {
      const e = p as { room: string; seq: number };
      if (!this.tracker.accept(e.room, e.seq)) return;
    }
    if (n === "state") this.state = p as ClientEvents["state"];
    if (n === "connected") this.user = (p as ClientEvents["connected"]).user;
    this.emit(n, p as never);
  }

  private onWire(w: Wire) {
    switch (w.k) {
      case "call":
        if (!this.leader) return;
        this.invoke(this.leader, w.m, w.args).then(
          (v) => this.post({ k: "ret", to: w.from, id: w.id, v }),
          (e: RoomcastError) =>
            this.post({
              k: "ret",
              to: w.from,
              id: w.id,
              e: { code: e.code ?? "unexpected", message: e.message, retryAfterMs: e.retryAfterMs },
            }),
        );
        return;
      case "ret": {
        const p = w.to === this.tab ? this.pending.get(w.id) : undefined;
        if (!p) return;
        this.pending.delete(w.id);
        if (w.e) p.reject(new RoomcastError(w.e.code, w.e.message, w.e.retryAfterMs));
        else p.resolve(w.v);
        return;
      }
      case "ev":
        if (!this.leader) this.deliver(w.n, w.p);
        return;
      case "hello": {
        const c = this.leader;
        if (!c) return;
        if (c.user && c.connected) {
          this.post({
            k: "ev",
            n: "connected",
            p: { user: c.user, session: "", reconnect: false },
          });
        }
        this.post({ k: "ev", n: "state", p: c.state });
        return;
      }
      case "leader":
        // A new leader: follow our rooms from where we are, resend what is unanswered.
        for (const [room, since] of this.tracker.toRejoin()) {
          void this.relay(
            since === undefined ? "join" : "joinSince",
            since === undefined ? [room] : [room, since],
          ).catch(() => {});
        }
        for (const [id, p] of this.pending) {
          if (REPEATABLE.has(p.m))
            this.post({ k: "call", from: this.tab, id, m: p.m, args: p.args });
          else {
            this.pending.delete(id);
            p.reject(new RoomcastError("disconnected", "the leader tab closed"));
          }
        }
        return;
    }
  }
}

/** Errors do not survive structured cloning with their class: send plain fields. */
function plain(p: unknown): unknown {
  const o = p as { error?: RoomcastError };
  if (!o?.error) return p;
  return {
    ...o,
    error: { code: o.error.code, message: o.error.message, retryAfterMs: o.error.retryAfterMs },
  };
}
