// End to end in a real Chromium (Debian's, driven by playwright-core): two
// browser contexts sign in to the chat the server serves at `/`, chat, see
// typing and presence; the server is killed and restarted mid-conversation
// and both pages recover with nothing lost or duplicated; a message sent
// while disconnected is delivered once. Screenshots go to e2e/artifacts/.

import { existsSync, mkdirSync } from "node:fs";
import { chromium, type Browser, type Page } from "playwright-core";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, type WebSocketConstructor } from "../sdk/src/index.js";
import { TestServer, token } from "../sdk/test/server.js";

const ARTIFACTS = new URL("./artifacts/", import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const WAIT = 30_000;

// Without Chromium the suite says SKIP, unless CI requires it (.ci/run).
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  if (process.env.ROOMCAST_REQUIRE_CHROMIUM) throw new Error(`${CHROMIUM} not found`);
  console.log(`SKIP: ${CHROMIUM} not found (apt-get install chromium)`);
}

const server = new TestServer();
let browser: Browser;

async function shot(page: Page, name: string) {
  await page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true });
}

async function signIn(user: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${user}] page error:`, e));
  await page.goto(server.base + "/");
  await page.getByTestId("token").fill(token(user));
  if (user === "alice") await shot(page, "01-sign-in");
  await page.getByTestId("signin").click();
  await expect.poll(() => page.getByTestId("me").textContent(), { timeout: WAIT }).toBe(user);
  return page;
}

const bodies = (page: Page) =>
  page.locator("[data-testid=msg] [data-testid=body]").allTextContents();

async function say(page: Page, text: string) {
  await page.getByTestId("composer").fill(text);
  await page.getByTestId("composer").press("Enter");
}

describe.skipIf(!haveChromium)("the web chat in Chromium", () => {
  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
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

  it("two people chat, see typing and presence, and survive a server restart", async () => {
    const alice = await signIn("alice");
    const bob = await signIn("bob");

    // Alice creates a private room and gives bob an invite link.
    await alice.getByTestId("create-input").fill("Lobby");
    await alice.getByTestId("create-private").check();
    await alice.getByTestId("create-input").press("Enter");
    await expect.poll(() => alice.getByTestId("room-title").textContent()).toContain("Lobby");
    await alice.getByTestId("invite").click();
    const link = await alice.getByTestId("invite-link").inputValue();
    expect(link).toMatch(/#room=.+&invite=[0-9a-f]+$/);
    await bob.getByTestId("join-input").fill(link);
    await bob.getByTestId("join-input").press("Enter");
    await expect.poll(() => bob.getByTestId("room-title").textContent()).toContain("Lobby");

    await say(alice, "hello bob");
    await expect.poll(() => bodies(bob), { timeout: WAIT }).toEqual(["hello bob"]);

    // Typing shows on the other side; presence dots show who is online.
    await bob.getByTestId("composer").pressSequentially("hi ali");
    await expect
      .poll(() => alice.getByTestId("typing").textContent(), { timeout: WAIT })
      .toContain("bob is typing");
    await expect
      .poll(
        () =>
          alice
            .locator("[data-testid=members] [data-testid=presence-bob]")
            .getAttribute("data-status"),
        {
          timeout: WAIT,
        },
      )
      .toBe("online");
    await shot(alice, "02-typing-and-presence");
    await bob.getByTestId("composer").fill("hi alice");
    await bob.getByTestId("composer").press("Enter");
    await expect.poll(() => bodies(alice), { timeout: WAIT }).toEqual(["hello bob", "hi alice"]);
    await expect.poll(() => alice.getByTestId("typing").textContent(), { timeout: WAIT }).toBe("");

    // A reaction and an edit travel too.
    await alice.locator("[data-testid=msg]").last().hover();
    await alice.locator("[data-testid=msg]").last().getByTestId("react-👍").click();
    await expect
      .poll(() => bob.locator("[data-testid=reaction]").allTextContents(), { timeout: WAIT })
      .toEqual(["👍 1"]);
    await shot(bob, "03-conversation");

    // Kill the server mid-conversation: both pages show the banner.
    await server.kill();
    for (const page of [alice, bob]) {
      await expect
        .poll(() => page.getByTestId("banner").getAttribute("data-state"), { timeout: WAIT })
        .not.toBe("connected");
    }
    // Sent while disconnected: shown as pending, delivered once later.
    await say(alice, "sent while offline");
    await expect.poll(() => alice.getByTestId("pending").count()).toBe(1);
    await expect.poll(() => alice.getByTestId("banner").textContent()).toContain("1 message(s)");
    await shot(alice, "04-reconnecting");

    // Back up; someone else writes at once, racing the pages' resumes.
    await server.start();
    const carol = await Client.connect({
      url: server.url,
      token: token("carol"),
      WebSocket: WebSocket as unknown as WebSocketConstructor,
    });
    const room = new URL(link).hash.match(/room=([^&]+)/)![1]!;
    const invite = new URL(link).hash.match(/invite=([^&]+)/)![1]!;
    await carol.join(decodeURIComponent(room), { invite });
    await carol.send(decodeURIComponent(room), "carol was here");
    carol.close();

    for (const page of [alice, bob]) {
      await expect
        .poll(() => page.getByTestId("banner").getAttribute("data-state"), { timeout: WAIT })
        .toBe("connected");
    }
    await expect.poll(() => alice.getByTestId("pending").count(), { timeout: WAIT }).toBe(0);
    await say(bob, "after the restart");
    const expected = [
      "hello bob",
      "hi alice",
      "sent while offline",
      "carol was here",
      "after the restart",
    ];
    for (const page of [alice, bob]) {
      await expect
        .poll(async () => (await bodies(page)).slice().sort(), { timeout: WAIT })
        .toEqual(expected.slice().sort());
    }
    // The stored order is the seq order; both pages agree and show each once.
    const stored = (await bodies(alice)).join("|");
    expect((await bodies(bob)).join("|")).toBe(stored);
    expect(stored.split("|").filter((b) => b === "sent while offline").length).toBe(1);
    await shot(alice, "05-recovered");

    // Bob leaves: alice sees him go offline.
    await bob.context().close();
    await expect
      .poll(
        () =>
          alice
            .locator("[data-testid=members] [data-testid=presence-bob]")
            .getAttribute("data-status"),
        {
          timeout: WAIT,
        },
      )
      .toBe("offline");
  });
  it("reacts to the browser going offline and online; the queue survives closing the page", async () => {
    const alice = await signIn("alice");
    const bob = await signIn("bob");
    await alice.getByTestId("create-input").fill("Second");
    await alice.getByTestId("create-input").press("Enter");
    await expect.poll(() => alice.getByTestId("room-title").textContent()).toContain("Second");
    await alice.getByTestId("invite").click();
    const link = await alice.getByTestId("invite-link").inputValue();
    await bob.getByTestId("join-input").fill(link);
    await bob.getByTestId("join-input").press("Enter");
    await expect.poll(() => bob.getByTestId("room-title").textContent()).toContain("Second");

    // The `offline` event closes the socket at once (an open WebSocket would
    // otherwise linger); `online` reconnects without waiting out the backoff.
    await alice.context().setOffline(true);
    await expect
      .poll(() => alice.getByTestId("banner").getAttribute("data-state"), { timeout: WAIT })
      .not.toBe("connected");
    await alice.context().setOffline(false);
    await expect
      .poll(() => alice.getByTestId("banner").getAttribute("data-state"), { timeout: WAIT })
      .toBe("connected");

    // Typed while the server is down, then the page is closed: the message
    // waits in IndexedDB and a new page of the same browser sends it once.
    await server.kill();
    await expect
      .poll(() => alice.getByTestId("banner").getAttribute("data-state"), { timeout: WAIT })
      .not.toBe("connected");
    await say(alice, "kept across a reload");
    const stored = () =>
      alice.evaluate(
        () =>
          new Promise<number>((resolve) => {
            const open = indexedDB.open("roomcast");
            open.onsuccess = () => {
              const get = open.result.transaction("queue").objectStore("queue").get("alice");
              get.onsuccess = () => resolve((get.result as unknown[] | undefined)?.length ?? 0);
            };
          }),
      );
    await expect.poll(stored, { timeout: WAIT }).toBe(1);
    const context = alice.context();
    await alice.close();
    await server.start();
    const again = await context.newPage();
    await again.goto(server.base + "/");
    await expect.poll(() => again.getByTestId("me").textContent(), { timeout: WAIT }).toBe("alice");
    await again.getByTestId("room-Second").click();
    await expect.poll(() => bodies(bob), { timeout: WAIT }).toEqual(["kept across a reload"]);
    await expect.poll(() => bodies(again), { timeout: WAIT }).toEqual(["kept across a reload"]);
    await shot(again, "06-sent-after-reopening");
    await bob.context().close();
    await context.close();
  });
  it("works over https:// and wss://", async () => {
    const secure = new TestServer([], { https: true });
    await secure.start();
    try {
      const pages: Page[] = [];
      for (const user of ["alice", "bob"]) {
        // The server's generated certificate is self-signed.
        const context = await browser.newContext({ ignoreHTTPSErrors: true });
        const page = await context.newPage();
        await page.goto(`https://${secure.https}/`);
        await page.getByTestId("token").fill(token(user));
        await page.getByTestId("signin").click();
        await expect.poll(() => page.getByTestId("me").textContent(), { timeout: WAIT }).toBe(user);
        pages.push(page);
      }
      const [alice, bob] = pages as [Page, Page];
      await alice.getByTestId("create-input").fill("Tls");
      await alice.getByTestId("create-input").press("Enter");
      await alice.getByTestId("invite").click();
      const link = await alice.getByTestId("invite-link").inputValue();
      expect(link.startsWith("https://")).toBe(true);
      await bob.getByTestId("join-input").fill(link);
      await bob.getByTestId("join-input").press("Enter");
      await expect.poll(() => bob.getByTestId("room-title").textContent()).toContain("Tls");
      await say(bob, "over wss");
      await expect.poll(() => bodies(alice), { timeout: WAIT }).toEqual(["over wss"]);
      for (const p of pages) await p.context().close();
    } finally {
      await secure.stop();
    }
  });
  it("a refused token goes back to the sign-in screen with the reason", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(server.base + "/");
    await page.getByTestId("token").fill(token("mallory", 3600, "not-the-secret-not-the-secret"));
    await page.getByTestId("signin").click();
    await expect
      .poll(() => page.getByTestId("session-error").textContent(), { timeout: WAIT })
      .toContain("unauthorized");
    await shot(page, "07-token-refused");
    await context.close();
  });
  it("history paging, unread counts, replies, edits, deletions and direct messages", async () => {
    const alice = await signIn("alice");
    const bob = await signIn("bob");
    await alice.getByTestId("create-input").fill("Busy");
    await alice.getByTestId("create-input").press("Enter");
    await expect.poll(() => alice.getByTestId("room-title").textContent()).toContain("Busy");
    await alice.getByTestId("invite").click();
    const link = await alice.getByTestId("invite-link").inputValue();

    // 55 messages from the SDK in Node (its queue waits out the send rate limit).
    const carol = await Client.connect({
      url: server.url,
      token: token("carol"),
      WebSocket: WebSocket as unknown as WebSocketConstructor,
    });
    const room = decodeURIComponent(new URL(link).hash.match(/room=([^&]+)/)![1]!);
    await carol.join(room, { invite: new URL(link).hash.match(/invite=([^&]+)/)![1]! });
    await Promise.all(Array.from({ length: 55 }, (_, i) => carol.send(room, `m${i}`)));
    carol.close();

    // Bob opens the room: the newest 50, then the older ones on demand.
    await bob.getByTestId("join-input").fill(link);
    await bob.getByTestId("join-input").press("Enter");
    await expect.poll(() => bob.getByTestId("msg").count(), { timeout: WAIT }).toBe(50);
    await bob.getByTestId("older").click();
    await expect.poll(() => bob.getByTestId("msg").count(), { timeout: WAIT }).toBe(55);
    expect((await bodies(bob))[0]).toBe("m0");

    // Unread counts while bob is elsewhere; opening the room reads it.
    await bob.getByTestId("create-input").fill("Elsewhere");
    await bob.getByTestId("create-input").press("Enter");
    await expect.poll(() => bob.getByTestId("room-title").textContent()).toContain("Elsewhere");
    await say(alice, "ping bob");
    await expect
      .poll(() => bob.getByTestId("room-Busy").getByTestId("unread").textContent(), {
        timeout: WAIT,
      })
      .toBe("1");
    await shot(bob, "08-unread");
    await bob.getByTestId("room-Busy").click();
    await expect.poll(() => bob.getByTestId("room-Busy").getByTestId("unread").count()).toBe(0);

    // Reply, edit, delete.
    const last = (page: Page) => page.locator("[data-testid=msg]").last();
    await last(bob).hover();
    await last(bob).getByTestId("reply").click();
    await say(bob, "pong");
    await expect
      .poll(() => last(alice).locator(".reply").textContent(), { timeout: WAIT })
      .toContain("alice: ping bob");
    const ping = alice.locator("[data-testid=msg]", { hasText: "ping bob" }).first();
    await ping.hover();
    await ping.getByTestId("edit").click();
    await alice.getByTestId("composer").fill("ping bob!");
    await alice.getByTestId("composer").press("Enter");
    const bobsPing = bob.locator("[data-testid=msg]", { hasText: "ping bob!" });
    await expect.poll(() => bobsPing.getByTestId("edited").count(), { timeout: WAIT }).toBe(1);
    const edited = alice.locator("[data-testid=msg]", { hasText: "ping bob!" }).first();
    await edited.hover();
    await edited.getByTestId("delete").click();
    await expect.poll(() => bodies(bob), { timeout: WAIT }).toContain("(deleted)");
    expect(await bodies(bob)).not.toContain("ping bob!");

    // A direct message: bob finds it in his room list with one unread.
    await alice.getByTestId("direct-input").fill("bob");
    await alice.getByTestId("direct-input").press("Enter");
    await expect.poll(() => alice.getByTestId("room-title").textContent()).toContain("bob");
    await say(alice, "just between us");
    await expect.poll(() => alice.getByTestId("pending").count(), { timeout: WAIT }).toBe(0);
    await bob.reload();
    await expect
      .poll(() => bob.getByTestId("room-alice").getByTestId("unread").textContent(), {
        timeout: WAIT,
      })
      .toBe("1");
    await bob.getByTestId("room-alice").click();
    await expect.poll(() => bodies(bob), { timeout: WAIT }).toEqual(["just between us"]);
    await shot(bob, "09-direct");
    await alice.context().close();
    await bob.context().close();
  });
});
