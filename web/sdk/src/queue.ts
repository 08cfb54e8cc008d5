// The offline queue (mirrors client/src/queue.rs): every send waits here, in
// order, until the server acknowledges it. Each carries a `local_id`, so a
// resend after a reconnect is answered with the original `sent` (server
// idempotency) and nothing is stored twice. Bounded; optionally mirrored to
// a storage (IndexedDB in browsers) so a reload keeps unsent messages.

import type { Attachment, MessageKind, Sent } from "./frames.js";

/** A message waiting for its `sent`: what is persisted. */
export interface QueuedSend {
  local_id: string;
  room: string;
  body: string;
  kind?: MessageKind;
  attachments?: Attachment[];
  reply_to?: number;
}

/** Where the queue is mirrored. `save` gets the whole queue after changes. */
export interface QueueStorage {
  load(): Promise<QueuedSend[]>;
  save(items: QueuedSend[]): Promise<void>;
}

interface Waiter {
  resolve(s: Sent): void;
  reject(e: Error): void;
}

interface Entry {
  item: QueuedSend;
  waiter?: Waiter;
  /** The connection generation it was last written on (0: never). */
  sentOn: number;
  /** Not before this time (ms, after a transient refusal). */
  notBefore?: number;
}

export class SendQueue {
  private entries: Entry[] = [];
  constructor(readonly capacity: number) {}

  get length(): number {
    return this.entries.length;
  }

  /** Loaded from storage: no waiters, sent on the next connection. */
  restore(items: QueuedSend[]): void {
    const known = new Set(this.entries.map((e) => e.item.local_id));
    for (const item of items) {
      if (!known.has(item.local_id) && this.entries.length < this.capacity) {
        this.entries.push({ item, sentOn: 0 });
      }
    }
  }

  /** False when full. */
  push(item: QueuedSend, waiter?: Waiter): boolean {
    if (this.entries.length >= this.capacity) return false;
    this.entries.push({ item, waiter, sentOn: 0 });
    return true;
  }

  /** Up to `max` items not yet written on connection `generation`, in order. */
  takeUnsent(generation: number, max: number, now: number): QueuedSend[] {
    const out: QueuedSend[] = [];
    for (const e of this.entries) {
      if (out.length >= max) break;
      if (e.sentOn === generation || (e.notBefore !== undefined && e.notBefore > now)) continue;
      e.sentOn = generation;
      e.notBefore = undefined;
      out.push(e.item);
    }
    return out;
  }

  /** The earliest time a refused item may go out again. */
  nextRetry(): number | undefined {
    let min: number | undefined;
    for (const e of this.entries) {
      if (e.notBefore !== undefined && (min === undefined || e.notBefore < min)) min = e.notBefore;
    }
    return min;
  }

  private remove(localId: string): Entry | undefined {
    const i = this.entries.findIndex((e) => e.item.local_id === localId);
    return i < 0 ? undefined : this.entries.splice(i, 1)[0];
  }

  /** Acknowledged: leaves the queue. False if nobody waited (report it as an event). */
  ack(localId: string, sent: Sent): boolean {
    const w = this.remove(localId)?.waiter;
    w?.resolve(sent);
    return w !== undefined;
  }

  /** Refused for good: leaves the queue. Returns the item if nobody waited. */
  fail(localId: string, error: Error): QueuedSend | undefined {
    const e = this.remove(localId);
    if (!e) return undefined;
    if (e.waiter) {
      e.waiter.reject(error);
      return undefined;
    }
    return e.item;
  }

  /** A transient refusal: write it again, not before `at`. */
  retry(localId: string, at: number): void {
    const e = this.entries.find((x) => x.item.local_id === localId);
    if (e) {
      e.sentOn = 0;
      e.notBefore = at;
    }
  }

  /** Rejects every waiter (the client closed; items stay in storage). */
  closeWaiters(error: Error): void {
    for (const e of this.entries) {
      e.waiter?.reject(error);
      e.waiter = undefined;
    }
  }

  snapshot(): QueuedSend[] {
    return this.entries.map((e) => e.item);
  }
}

/** A fresh idempotency key: `l` + 32 hex digits (128 random bits). */
export function newLocalId(): string {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  let s = "l";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** A {@link QueueStorage} in IndexedDB (one record per `key`), for browsers. */
export function indexedDbStorage(key = "default", dbName = "roomcast"): QueueStorage {
  const open = () =>
    new Promise<IDBDatabase>((resolve, reject) => {
      const req = indexedDB.open(dbName, 1);
      req.onupgradeneeded = () => req.result.createObjectStore("queue");
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error ?? new Error("indexedDB.open failed"));
    });
  let db: Promise<IDBDatabase> | undefined;
  const run = <T>(mode: IDBTransactionMode, f: (s: IDBObjectStore) => IDBRequest<T>) =>
    (db ??= open()).then(
      (d) =>
        new Promise<T>((resolve, reject) => {
          const tx = d.transaction("queue", mode);
          const req = f(tx.objectStore("queue"));
          tx.oncomplete = () => resolve(req.result);
          tx.onerror = () => reject(tx.error ?? new Error("IndexedDB transaction failed"));
        }),
    );
  return {
    load: async () =>
      ((await run("readonly", (s) => s.get(key))) as QueuedSend[] | undefined) ?? [],
    save: async (items) => {
      await run("readwrite", (s) => s.put(items, key));
    },
  };
}
