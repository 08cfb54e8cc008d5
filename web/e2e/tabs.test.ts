// Tabs sharing one connection (@roomcast/client/tabs) in Chromium: two
// pages of one browser elect a leader with Web Locks, the server sees one
// connection, both pages get every message once; when the leader page
// closes the other takes over and nothing is lost or duplicated.

import { build } from "esbuild";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, type WebSocketConstructor } from "../sdk/src/index.js";
import { TestServer, token } from "../sdk/test/server.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
const WAIT = 30_000;
const server = new TestServer();
let browser: Browser;
let bundle = "";

async function connections(): Promise<number> {
  const r = await fetch(`${server.base}/health`);
  return ((await r.json()) as { connections: number }).connections;
}

async function tabPage(context: Awaited<ReturnType<Browser["newContext"]>>): Promise<Page> {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e));
  if (process.env.E2E_DEBUG) page.on("console", (m) => console.log("page:", m.text()));
  // The chat's page gives the server's origin (Web Locks and BroadcastChannel
  // are per origin, and Chromium lets only pages it loaded from loopback
  // open loopback sockets); the SDK bundle is added to it (bypassCSP).
  await page.goto(`${server.base}/`);
  await page.addScriptTag({ content: bundle });
  await page.evaluate(
    ([url, tok]) => {
      const w = window as unknown as Record<string, unknown> & {
        RoomcastTabs: {
          TabClient: {
            open(o: unknown): { on(n: string, f: (m: { body: string }) => void): void };
          };
        };
      };
      const tab = w.RoomcastTabs.TabClient.open({ url, token: tok, name: "e2e" });
      const got: string[] = [];
      tab.on("message", (m) => got.push(m.body));
      for (const n of ["state", "reconnectFailed", "closed"]) {
        tab.on(n, (x) => console.log(n, JSON.stringify(x)));
      }
      w.tab = tab;
      w.got = got;
    },
    [server.url, token("bob")],
  );
  return page;
}

const got = (p: Page) => p.evaluate(() => (window as unknown as { got: string[] }).got.slice());
const isLeader = (p: Page) =>
  p.evaluate(() => (window as unknown as { tab: { isLeader: boolean } }).tab.isLeader);

describe.skipIf(!haveChromium)("tabs share one connection", () => {
  beforeAll(async () => {
    const out = await build({
      entryPoints: [fileURLToPath(new URL("../sdk/src/tabs.ts", import.meta.url))],
      bundle: true,
      format: "iife",
      globalName: "RoomcastTabs",
      write: false,
    });
    bundle = out.outputFiles[0]!.text;
    await server.start();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--disable-background-networking",
      ],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await server.stop();
  });

  it("one leader, one connection, failover without loss or duplicates", async () => {
    const alice = await Client.connect({
      url: server.url,
      token: token("alice"),
      WebSocket: WebSocket as unknown as WebSocketConstructor,
    });
    const room = (await alice.createRoom("Tabs")).room;
    await alice.join(room);
    const seen: string[] = [];
    alice.on("message", (m) => seen.push(m.body));

    const context = await browser.newContext({ bypassCSP: true });
    const one = await tabPage(context);
    const two = await tabPage(context);
    for (const p of [one, two]) {
      await p.evaluate(
        (r) =>
          (window as unknown as { tab: { call(m: string, r: string): Promise<unknown> } }).tab.call(
            "join",
            r,
          ),
        room,
      );
    }
    await expect.poll(connections, { timeout: WAIT }).toBe(2); // alice + the leader tab
    const leaders = [await isLeader(one), await isLeader(two)];
    for (const p of [one, two]) {
      // Whichever opened second learns the leader's state and user on arrival.
      await expect
        .poll(() =>
          p.evaluate(
            () => (window as unknown as { tab: { state: string; user?: string } }).tab.user,
          ),
        )
        .toBe("bob");
      expect(
        await p.evaluate(() => (window as unknown as { tab: { state: string } }).tab.state),
      ).toBe("connected");
    }
    expect(leaders.filter(Boolean).length).toBe(1);

    await alice.send(room, "one");
    for (const p of [one, two]) await expect.poll(() => got(p), { timeout: WAIT }).toEqual(["one"]);
    // A follower sends through the leader's connection.
    const follower = leaders[0] ? two : one;
    const leader = leaders[0] ? one : two;
    await follower.evaluate(
      (r) =>
        (
          window as unknown as { tab: { call(m: string, ...a: unknown[]): Promise<unknown> } }
        ).tab.call("send", r, "from a follower"),
      room,
    );
    await expect.poll(() => seen.slice(), { timeout: WAIT }).toContain("from a follower");

    // The leader tab closes: the other one takes over with its own connection.
    await leader.close();
    await expect.poll(() => isLeader(follower), { timeout: WAIT }).toBe(true);
    await alice.send(room, "two");
    await expect
      .poll(() => got(follower), { timeout: WAIT })
      .toEqual(["one", "from a follower", "two"]);
    await expect.poll(connections, { timeout: WAIT }).toBe(2);
    expect(seen.filter((b) => b === "from a follower").length).toBe(1);
    await context.close();
    alice.close();
  });
});
