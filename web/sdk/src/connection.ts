// One WebSocket session: request ids, replies matched by id (they may come
// out of order), pushes handed to the client, and the closing `error`.

import { decodeFrame, encodeFrame } from "./codec.js";
import { RoomcastError } from "./errors.js";
import type { ClientFrame, ErrorFrame, ServerFrame } from "./frames.js";

/** The part of the standard `WebSocket` the SDK uses (browsers, `ws` in Node). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

interface Pending {
  resolve(f: ServerFrame): void;
  reject(e: RoomcastError): void;
  timer?: ReturnType<typeof setTimeout>;
}

export class Connection {
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private buffered: ServerFrame[] | undefined = [];
  private onPush: (f: ServerFrame) => void = () => {};
  /** The server's closing `error` (`close: true`), if it sent one. */
  closeError?: ErrorFrame;
  lastFrameAt = Date.now();
  isOpen = false;
  readonly closed: Promise<void>;

  private constructor(private ws: WebSocketLike) {
    let done!: () => void;
    this.closed = new Promise((r) => (done = r));
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => this.onMessage(ev.data);
    ws.onclose = () => {
      this.isOpen = false;
      const err = new RoomcastError("disconnected", "connection lost");
      for (const p of this.pending.values()) {
        if (p.timer) clearTimeout(p.timer);
        p.reject(err);
      }
      this.pending.clear();
      done();
    };
    ws.onerror = () => {};
  }

  /** Opens the socket; rejects if it closes before opening or after `timeoutMs`. */
  static open(Ctor: WebSocketConstructor, url: string, timeoutMs: number): Promise<Connection> {
    return new Promise((resolve, reject) => {
      let ws: WebSocketLike;
      try {
        ws = new Ctor(url);
      } catch (e) {
        reject(new RoomcastError("disconnected", `cannot open ${url}: ${String(e)}`));
        return;
      }
      const conn = new Connection(ws);
      const timer = setTimeout(() => {
        ws.close();
        reject(new RoomcastError("timeout", `no connection to ${url} within ${timeoutMs} ms`));
      }, timeoutMs);
      ws.onopen = () => {
        clearTimeout(timer);
        conn.isOpen = true;
        resolve(conn);
      };
      void conn.closed.then(() => {
        clearTimeout(timer);
        reject(new RoomcastError("disconnected", `cannot connect to ${url}`));
      });
    });
  }

  /** Starts handing pushes to `handler` (those that came before it first). */
  attach(handler: (f: ServerFrame) => void): void {
    this.onPush = handler;
    const early = this.buffered ?? [];
    this.buffered = undefined;
    for (const f of early) handler(f);
  }

  private onMessage(data: unknown): void {
    this.lastFrameAt = Date.now();
    if (!(data instanceof ArrayBuffer) && !ArrayBuffer.isView(data)) {
      this.close(); // text is not part of the protocol
      return;
    }
    let f: ServerFrame;
    try {
      f = decodeFrame(data);
    } catch {
      this.close();
      return;
    }
    const id = (f as { id?: number }).id;
    const p = id === undefined ? undefined : this.pending.get(id);
    if (p && id !== undefined) {
      this.pending.delete(id);
      if (p.timer) clearTimeout(p.timer);
      if (f.t === "error") p.reject(RoomcastError.fromFrame(f));
      else p.resolve(f);
      return;
    }
    if (f.t === "error" && f.close) this.closeError = f;
    if (this.buffered) this.buffered.push(f);
    else this.onPush(f);
  }

  /** Writes a frame without waiting for anything (typing, ping). */
  sendFrame(frame: ClientFrame): boolean {
    if (!this.isOpen) return false;
    this.ws.send(encodeFrame(frame));
    return true;
  }

  /** Sends `frame` with a fresh id and resolves with its reply (an `error`
   *  reply rejects with its code). */
  request(frame: ClientFrame, timeoutMs?: number): Promise<ServerFrame> {
    if (!this.isOpen) return Promise.reject(new RoomcastError("disconnected", "not connected"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const p: Pending = { resolve, reject };
      if (timeoutMs !== undefined) {
        p.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new RoomcastError("timeout", `no reply to ${frame.t} within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.pending.set(id, p);
      this.ws.send(encodeFrame({ ...frame, id }));
    });
  }

  close(): void {
    this.isOpen = false;
    try {
      this.ws.close();
    } catch {
      /* already closed */
    }
  }
}
