// End to end in a real Chromium (Debian's, driven by playwright-core): two
// browser contexts register and log in through the chat's own forms (the
// server's built-in accounts), chat, see typing and presence; the server is
// killed and restarted mid-conversation and both pages recover with nothing
// lost or duplicated; a message sent while disconnected is delivered once.
// Also: tokens refreshed across tabs, log out, the sign-in screen without
// accounts and with the development token form. Screenshots go to
// e2e/artifacts/.

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

// Built-in accounts on; a login limit the repeated logins of the tests fit in.
const ACCOUNTS = ["--accounts", "true", "--limit-login", "50:100"];
const server = new TestServer(ACCOUNTS);
let browser: Browser;
/** Users registered, per server base URL. */
const registered = new Map<string, Set<string>>();
const password = (user: string) => `${user}-correct-horse`;

async function shot(page: Page, name: string) {
  await page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true });
}

/** A new browser context on `base` whose user registers through the form
 *  the first time and logs in through it afterwards. */
async function signIn(user: string, base = server.base, options = {}): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 }, ...options });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${user}] page error:`, e));
  await page.goto(base + "/");
  const known = registered.get(base) ?? new Set<string>();
  registered.set(base, known);
  if (!known.has(user)) {
    await page.getByTestId("account-toggle").click();
    await page
      .getByTestId("account-display-name")
      .fill(`${user[0]!.toUpperCase()}${user.slice(1)} Example`);
  }
  await page.getByTestId("account-username").fill(user);
  await page.getByTestId("account-password").fill(password(user));
  if (user === "alice" && base === server.base)
    await shot(page, known.has(user) ? "01-log-in" : "01-register");
  await page.getByTestId("account-submit").click();
  await expect.poll(() => page.getByTestId("me").textContent(), { timeout: WAIT }).toBe(user);
  known.add(user);
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
    const secure = new TestServer(ACCOUNTS, { https: true });
    await secure.start();
    try {
      const pages: Page[] = [];
      for (const user of ["alice", "bob"]) {
        // The server's generated certificate is self-signed.
        pages.push(await signIn(user, `https://${secure.https}`, { ignoreHTTPSErrors: true }));
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
  it("without accounts the page says where tokens come from; the token form only when enabled", async () => {
    const plain = new TestServer();
    const dev = new TestServer(["--web-chat-dev-token", "true"]);
    await Promise.all([plain.start(), dev.start()]);
    try {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(plain.base + "/");
      await expect
        .poll(() => page.getByTestId("signin-help").textContent(), { timeout: WAIT })
        .toContain("identity provider");
      expect(await page.getByTestId("account-form").count()).toBe(0);
      expect(await page.getByTestId("token").count()).toBe(0);
      await shot(page, "07-no-accounts");

      // --web-chat-dev-token true: the paste form, and no account form.
      await page.goto(dev.base + "/");
      await page.getByTestId("token").fill(token("mallory", 3600, "not-the-secret-not-the-secret"));
      expect(await page.getByTestId("account-form").count()).toBe(0);
      await page.getByTestId("signin").click();
      await expect
        .poll(() => page.getByTestId("session-error").textContent(), { timeout: WAIT })
        .toContain("unauthorized");
      await shot(page, "08-token-refused");
      await page.getByTestId("token").fill(token("trent"));
      await page.getByTestId("signin").click();
      await expect
        .poll(() => page.getByTestId("me").textContent(), { timeout: WAIT })
        .toBe("trent");
      await context.close();
    } finally {
      await Promise.all([plain.stop(), dev.stop()]);
    }
  });
  it("accounts: tokens refreshed once across tabs, profile and password, log out everywhere, form errors", async () => {
    // Access tokens of 2 s: every page refreshes many times during the test.
    const short = new TestServer([...ACCOUNTS, "--access-token-ttl-secs", "2"]);
    await short.start();
    try {
      const first = await signIn("dora", short.base);
      expect(await first.getByTestId("me-name").textContent()).toBe("Dora Example");
      const context = first.context();
      const refreshes: number[] = [];
      context.on("requestfinished", (r) => {
        if (r.url().endsWith("/v1/auth/refresh"))
          void r.response().then((a) => refreshes.push(a?.status() ?? 0));
      });
      // A second tab of the same browser: signed in from the stored session.
      const second = await context.newPage();
      await second.goto(short.base + "/");
      await expect
        .poll(() => second.getByTestId("me").textContent(), { timeout: WAIT })
        .toBe("dora");

      // Both tabs keep their tokens fresh; a spent refresh token presented
      // twice would sign dora out everywhere, so the tabs take turns (Web Locks).
      await expect.poll(() => refreshes.length, { timeout: WAIT }).toBeGreaterThanOrEqual(4);
      expect(refreshes.every((s) => s === 200)).toBe(true);
      // A reconnect after the server restarts uses a fresh token.
      await short.kill();
      await new Promise((r) => setTimeout(r, 2500)); // past the access token's lifetime
      await short.start();
      for (const page of [first, second]) {
        await expect
          .poll(() => page.getByTestId("banner").getAttribute("data-state"), { timeout: WAIT })
          .toBe("connected");
        expect(await page.getByTestId("me").textContent()).toBe("dora");
      }
      expect(refreshes.every((s) => s === 200)).toBe(true);

      // Profile and password from the account panel.
      await first.getByTestId("account").click();
      await first.getByTestId("profile-display-name").fill("Dora D.");
      await first.getByTestId("save-profile").click();
      await expect
        .poll(() => first.getByTestId("me-name").textContent(), { timeout: WAIT })
        .toBe("Dora D.");
      await first.getByTestId("current-password").fill(password("dora"));
      await first.getByTestId("new-password").fill("dora-new-password");
      await first.getByTestId("change-password").click();
      await expect
        .poll(() => first.getByTestId("account-status").textContent(), { timeout: WAIT })
        .toContain("Password changed");
      await shot(first, "12-account");
      // The change revoked every other refresh token; both tabs go on with the new ones.
      const before = refreshes.length;
      await expect.poll(() => refreshes.length, { timeout: WAIT }).toBeGreaterThan(before + 1);
      expect(refreshes.every((s) => s === 200)).toBe(true);
      expect(await second.getByTestId("me").textContent()).toBe("dora");

      // Log out in one tab: the refresh token is revoked and the other tab follows.
      const stored = await first.evaluate(
        () =>
          new Promise<string>((resolve) => {
            const open = indexedDB.open("roomcast.session");
            open.onsuccess = () => {
              const get = open.result.transaction("session").objectStore("session").get("current");
              get.onsuccess = () => resolve((get.result as { refresh: string }).refresh);
            };
          }),
      );
      await first.getByTestId("signout").click();
      for (const page of [first, second]) {
        await expect
          .poll(() => page.getByTestId("account-form").count(), { timeout: WAIT })
          .toBe(1);
      }
      const after = await fetch(`${short.base}/v1/auth/refresh`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ refresh_token: stored }),
      });
      expect(after.status).toBe(401);

      // A taken name; the old password; the new one.
      await first.getByTestId("account-toggle").click();
      await first.getByTestId("account-username").fill("dora");
      await first.getByTestId("account-password").fill("another-password");
      await first.getByTestId("account-submit").click();
      await expect
        .poll(() => first.getByTestId("account-error").textContent(), { timeout: WAIT })
        .toBe("That user name is taken.");
      await first.getByTestId("account-toggle").click();
      await first.getByTestId("account-username").fill("dora");
      await first.getByTestId("account-password").fill(password("dora"));
      await first.getByTestId("account-submit").click();
      await expect
        .poll(() => first.getByTestId("account-error").textContent(), { timeout: WAIT })
        .toBe("Wrong user name or password.");
      await shot(first, "11-wrong-password");
      await first.getByTestId("account-password").fill("dora-new-password");
      await first.getByTestId("account-submit").click();
      await expect
        .poll(() => first.getByTestId("me").textContent(), { timeout: WAIT })
        .toBe("dora");
      expect(await first.getByTestId("me-name").textContent()).toBe("Dora D.");

      // The password changed on another device revokes this browser's refresh
      // token: at its next refresh the page ends the session and says why.
      const login = await fetch(`${short.base}/v1/auth/login`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ username: "dora", password: "dora-new-password" }),
      });
      const { access_token } = (await login.json()) as { access_token: string };
      const changed = await fetch(`${short.base}/v1/auth/password`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${access_token}` },
        body: JSON.stringify({ current_password: "dora-new-password", new_password: "dora-third" }),
      });
      expect(changed.status).toBe(200);
      await expect
        .poll(() => first.getByTestId("session-error").textContent(), { timeout: WAIT })
        .toContain("Your session ended");
      expect(await first.getByTestId("account-form").count()).toBe(1);
      await shot(first, "13-session-ended");
      await context.close();
    } finally {
      await short.stop();
    }
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
    await shot(bob, "09-unread");
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
    await shot(bob, "10-direct");
    await alice.context().close();
    await bob.context().close();
  });
});
