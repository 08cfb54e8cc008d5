// The sans-IO parts: backoff, the room tracker (dedupe and resume), the queue, tokens.
import { describe, expect, it } from "vitest";
import { backoffDelay } from "../src/backoff.js";
import { SendQueue, newLocalId } from "../src/queue.js";
import { RoomTracker } from "../src/rooms.js";
import { TokenSource, jwtExpiry } from "../src/token.js";
import { token } from "./server.js";

describe("backoff", () => {
  it("grows to the bound, jitters fully and honours retry_after_ms", () => {
    const o = { initialMs: 100, maxMs: 1000, multiplier: 2 };
    expect(backoffDelay(o, 0, 0, () => 1)).toBe(100);
    expect(backoffDelay(o, 3, 0, () => 1)).toBe(800);
    expect(backoffDelay(o, 10, 0, () => 1)).toBe(1000);
    expect(backoffDelay(o, 10, 0, () => 0)).toBe(0);
    expect(backoffDelay(o, 0, 2500, () => 1)).toBe(2500);
  });
});

describe("room tracker", () => {
  it("dedupes by seq and reports a caught-up resume once", () => {
    const r = new RoomTracker();
    expect(r.follow("a")).toBeUndefined();
    r.startAt("a", 10);
    expect(r.accept("a", 10)).toBe(false);
    expect(r.accept("a", 11)).toBe(true);
    expect(r.toRejoin()).toEqual([["a", 11]]);
    expect(r.accept("a", 12)).toBe(true); // the replay races `joined`
    r.resuming("a", 11, 13, true);
    expect(r.caughtUp("a")).toBeUndefined();
    expect(r.accept("a", 13)).toBe(true);
    expect(r.caughtUp("a")).toEqual({ room: "a", from: 11, to: 13, complete: true });
    expect(r.caughtUp("a")).toBeUndefined();
    r.unfollow("a");
    expect(r.toRejoin()).toEqual([]);
    expect(r.follow("a")).toBe(13);
  });
});

describe("send queue", () => {
  it("is bounded, ordered, and written once per connection", () => {
    const q = new SendQueue(2);
    const item = (n: number) => ({ local_id: `l${n}`, room: "r", body: `m${n}` });
    expect(q.push(item(1))).toBe(true);
    expect(q.push(item(2))).toBe(true);
    expect(q.push(item(3))).toBe(false);
    expect(q.takeUnsent(1, 10, 0).map((i) => i.body)).toEqual(["m1", "m2"]);
    expect(q.takeUnsent(1, 10, 0)).toEqual([]);
    expect(q.ack("l1", { t: "sent", id: 1, room: "r", seq: 1, ts: 1 })).toBe(false);
    expect(q.takeUnsent(2, 10, 0).map((i) => i.body)).toEqual(["m2"]);
    q.retry("l2", 1000);
    expect(q.takeUnsent(3, 10, 999)).toEqual([]);
    expect(q.nextRetry()).toBe(1000);
    expect(q.fail("l2", new Error("x"))?.body).toBe("m2");
    expect(q.length).toBe(0);
    expect(newLocalId()).toMatch(/^l[0-9a-f]{32}$/);
    expect(newLocalId()).not.toBe(newLocalId());
  });
});

describe("tokens", () => {
  it("reads exp and refreshes a token close to expiry", async () => {
    const t = token("alice", 3600);
    expect(jwtExpiry(t)).toBeGreaterThan(Date.now() / 1000);
    let calls = 0;
    const src = new TokenSource(() => token("alice", ++calls === 1 ? 30 : 3600), 60_000);
    await src.get();
    await src.get(); // the first expires within the margin: asked again
    expect(calls).toBe(2);
    await src.get();
    expect(calls).toBe(2);
    src.invalidate();
    await src.get();
    expect(calls).toBe(3);
  });
});
