// Built-in accounts (`--accounts true`): the register and log in form, and a
// session that hands the SDK fresh access tokens from `/v1/auth/refresh`.
//
// Storage. The access token (15 min by default) and the refresh token (30
// days, rotated on every use) are kept in IndexedDB (database
// `roomcast.session`), so a reload or a second tab stays signed in. The
// trade-off: a script injected into this origin (XSS) could read the refresh
// token. Against that the page renders every text as text nodes, the server
// sends a CSP without inline scripts or foreign origins, a token is spent at
// its first use (a stolen copy used twice signs the account out everywhere)
// and logging out revokes it. An HttpOnly cookie would hide it from scripts
// but needs cookie and CSRF handling on the REST API; memory only (log in on
// every reload) was judged worse for a chat.
//
// Refresh tokens rotate, and the server treats a spent token presented again
// as theft: two tabs refreshing with the same token would sign the user out
// everywhere. So a refresh runs under a Web Lock shared by the tabs and re-
// reads the tokens inside it: a tab that waited finds the new ones. IndexedDB
// rather than localStorage for that: Chromium hands a localStorage write to
// the other tabs' processes asynchronously, so the tab entering the lock
// could still read the spent token (the e2e test caught it); an IndexedDB
// transaction committed before the lock is released is seen by the next one.

import { RoomcastError } from "@roomcast/client";
import { h } from "./dom.js";
import type { SignedIn } from "./signin.js";

const DB = "roomcast.session";
/** The signed-in user id in localStorage (not a secret): its `storage` events
 *  tell the other tabs about a log out or a log in as someone else. */
export const USER_KEY = "roomcast.sessionUser";
const LOCK = "roomcast.refresh";

interface Stored {
  user: string;
  access: string;
  /** When the access token expires, ms since the epoch. */
  accessExp: number;
  /** Its lifetime, ms (to pick the refresh margin). */
  accessTtl: number;
  refresh: string;
}

/** The tokens answer of `/v1/auth/{register,login,refresh,password}`. */
interface Tokens {
  user: string;
  access_token: string;
  expires_in: number;
  refresh_token: string;
}

let opened: Promise<IDBDatabase> | undefined;
function db(): Promise<IDBDatabase> {
  opened ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore("session");
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error("indexedDB.open failed"));
  });
  return opened;
}

/** One request in its own transaction; resolves once the transaction committed. */
async function store<T>(
  mode: IDBTransactionMode,
  f: (s: IDBObjectStore) => IDBRequest<T>,
): Promise<T> {
  const tx = (await db()).transaction("session", mode);
  const req = f(tx.objectStore("session"));
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = tx.onabort = () => reject(tx.error ?? new Error("indexedDB transaction failed"));
  });
}

async function load(): Promise<Stored | undefined> {
  const s = (await store("readonly", (o) => o.get("current"))) as Stored | undefined;
  return s && typeof s.refresh === "string" && typeof s.user === "string" ? s : undefined;
}

async function save(t: Tokens): Promise<Stored> {
  const ttl = t.expires_in * 1000;
  const s: Stored = {
    user: t.user,
    access: t.access_token,
    accessExp: Date.now() + ttl,
    accessTtl: ttl,
    refresh: t.refresh_token,
  };
  await store("readwrite", (o) => o.put(s, "current"));
  localStorage.setItem(USER_KEY, s.user);
  return s;
}

async function forget(): Promise<void> {
  localStorage.removeItem(USER_KEY);
  await store("readwrite", (o) => o.delete("current"));
}

/** A JSON request to the accounts API; failures are `RoomcastError`s with the
 *  answer's code (`unauthorized`, `conflict`, `rate_limited`, ...). */
async function call<T>(method: string, path: string, body?: unknown, bearer?: string): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  if (res.ok) return (res.status === 204 ? undefined : await res.json()) as T;
  const e = (await res.json().catch(() => ({}))) as {
    error?: string;
    message?: string;
    retry_after_ms?: number;
  };
  throw new RoomcastError(
    e.error ?? (res.status === 401 ? "unauthorized" : "unavailable"),
    e.message ?? `${res.status} ${res.statusText}`,
    e.retry_after_ms,
  );
}

/** Runs `f` while holding the tabs' refresh lock (Web Locks; a short
 *  localStorage lease where they are missing, e.g. plain http on a LAN host,
 *  which is not a secure context). */
async function exclusive<T>(f: () => Promise<T>): Promise<T> {
  if (typeof navigator !== "undefined" && navigator.locks) {
    return navigator.locks.request(LOCK, f) as Promise<T>;
  }
  const me = Math.random().toString(36).slice(2);
  for (let i = 0; i < 100; i++) {
    const lease = JSON.parse(localStorage.getItem(LOCK) ?? "null") as { id: string; until: number };
    if (!lease || lease.until < Date.now()) {
      localStorage.setItem(LOCK, JSON.stringify({ id: me, until: Date.now() + 10_000 }));
      await new Promise((r) => setTimeout(r, 30));
      if ((JSON.parse(localStorage.getItem(LOCK) ?? "null") as { id: string })?.id === me) break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  try {
    return await f();
  } finally {
    localStorage.removeItem(LOCK);
  }
}

const signedOut = () => new RoomcastError("unauthorized", "signed out; log in again");

/** A signed-in account: the SDK's token callback, the profile, log out. */
export class AccountSession implements SignedIn {
  private timer?: ReturnType<typeof setTimeout>;
  /** Called once the server refused the refresh token (logged out or the
   *  password changed elsewhere): the session is over, even if the socket,
   *  authenticated at `hello`, is still open. */
  onEnded?: (reason: string) => void;
  constructor(readonly user: string) {}

  /** The SDK's token callback. */
  readonly token = (): Promise<string> => this.accessToken();

  /** A valid access token: the stored one, or a fresh one from
   *  `/v1/auth/refresh` when it expires within a minute (a quarter of its
   *  lifetime if that is shorter). Throws `unauthorized` once the refresh
   *  token is refused (the SDK then stops; the page asks to log in). */
  async accessToken(): Promise<string> {
    const fresh = (s: Stored) => s.accessExp - Date.now() > Math.min(60_000, s.accessTtl / 4);
    const s = await load();
    if (!s || s.user !== this.user) throw signedOut();
    if (fresh(s)) return s.access;
    return exclusive(async () => {
      const s = await load(); // another tab may have refreshed while we waited
      if (!s || s.user !== this.user) throw signedOut();
      if (fresh(s)) return s.access;
      try {
        const t = await call<Tokens>("POST", "/v1/auth/refresh", { refresh_token: s.refresh });
        const saved = await save(t);
        this.keepFresh();
        return saved.access;
      } catch (e) {
        if (e instanceof RoomcastError && e.code === "unauthorized") {
          await forget();
          this.onEnded?.(e.message);
          throw new RoomcastError("unauthorized", e.message);
        }
        throw e; // unreachable or busy: the SDK retries after a backoff
      }
    });
  }

  /** Refreshes shortly before the access token expires, while the page is
   *  open, so the refresh token (renewed at each use) does not lapse and a
   *  reconnect finds a valid token at once. */
  async keepFresh(): Promise<void> {
    clearTimeout(this.timer);
    const s = await load().catch(() => undefined);
    if (!s) return;
    const margin = Math.min(60_000, s.accessTtl / 4);
    const wait = Math.max(1000, s.accessExp - Date.now() - margin + 50);
    this.timer = setTimeout(() => {
      this.accessToken().then(
        () => void this.keepFresh(),
        () => setTimeout(() => void this.keepFresh(), 30_000),
      );
    }, wait);
  }

  /** The display name, if the server has one. */
  async displayName(): Promise<string | undefined> {
    const me = await call<{ display_name?: string | null }>(
      "GET",
      "/v1/me",
      undefined,
      await this.accessToken(),
    );
    return me.display_name ?? undefined;
  }

  /** Sets (or with "" clears) the display name; answers the new one. */
  async setDisplayName(name: string): Promise<string | undefined> {
    const me = await call<{ display_name?: string | null }>(
      "PATCH",
      "/v1/me",
      { display_name: name || null },
      await this.accessToken(),
    );
    return me.display_name ?? undefined;
  }

  /** Changes the password. The server revokes every other refresh token of
   *  the account (other devices sign in again; the tabs of this browser
   *  share the new tokens), so it runs under the refresh lock: a refresh in
   *  another tab cannot race it with a token about to be revoked. */
  async changePassword(current: string, next: string): Promise<void> {
    await exclusive(async () => {
      const t = await call<Tokens>(
        "POST",
        "/v1/auth/password",
        { current_password: current, new_password: next },
        await this.accessTokenUnlocked(),
      );
      await save(t);
    });
    void this.keepFresh();
  }

  /** The stored access token if still valid (for calls made while holding the lock). */
  private async accessTokenUnlocked(): Promise<string> {
    const s = await load();
    if (!s || s.user !== this.user) throw signedOut();
    if (s.accessExp - Date.now() > 5_000) return s.access;
    const t = await call<Tokens>("POST", "/v1/auth/refresh", { refresh_token: s.refresh });
    return (await save(t)).access;
  }

  /** Revokes the refresh token on the server and forgets both tokens. */
  async signOut(): Promise<void> {
    clearTimeout(this.timer);
    const s = await load().catch(() => undefined);
    await forget().catch(() => {});
    if (s) await call("POST", "/v1/auth/logout", { refresh_token: s.refresh }).catch(() => {});
  }

  /** The session kept from an earlier visit, if any. */
  static async restore(): Promise<AccountSession | undefined> {
    const s = await load().catch(() => undefined);
    return s ? new AccountSession(s.user) : undefined;
  }
}

/** Calls `f` when another tab logs out or in as someone else. */
export function onSessionChange(user: string, f: () => void): void {
  addEventListener("storage", (ev) => {
    if (ev.key !== USER_KEY && ev.key !== null) return;
    if (localStorage.getItem(USER_KEY) !== user) f();
  });
}

function explain(e: unknown, register: boolean): string {
  if (!(e instanceof RoomcastError)) return `The server could not be reached (${String(e)}).`;
  switch (e.code) {
    case "unauthorized":
      return "Wrong user name or password.";
    case "conflict":
      return "That user name is taken.";
    case "rate_limited":
      return `Too many attempts; try again in ${Math.ceil((e.retryAfterMs ?? 1000) / 1000)} s.`;
    case "bad_request":
      return register ? e.message : "Wrong user name or password.";
    default:
      return e.message;
  }
}

/** The log in form, switchable to the register form. */
export function accountForm(done: (s: AccountSession) => void): HTMLElement {
  let register = false;
  const field = (id: string, label: string, attrs: Record<string, string | boolean | number>) => {
    const input = h("input", { id, "data-testid": id, ...attrs });
    return { input, row: h("label", { class: "field", for: id }, label, input) };
  };
  const user = field("account-username", "User name", {
    autocomplete: "username",
    autocapitalize: "none",
    spellcheck: "false",
    required: true,
    minlength: 3,
    maxlength: 32,
  });
  const pass = field("account-password", "Password", {
    type: "password",
    autocomplete: "current-password",
    required: true,
    minlength: 8,
  });
  const display = field("account-display-name", "Display name (optional)", {
    autocomplete: "nickname",
    maxlength: 64,
  });
  const error = h("p", { class: "error", "data-testid": "account-error", role: "alert" });
  const title = h("h2", {}, "");
  const hint = h("p", { class: "hint" }, "");
  const button = h("button", { type: "submit", "data-testid": "account-submit" }, "");
  const toggle = h("button", {
    type: "button",
    class: "link",
    "data-testid": "account-toggle",
    onclick: () => {
      register = !register;
      show();
    },
  });
  const show = () => {
    title.textContent = register ? "Create an account" : "Log in";
    button.textContent = register ? "Create account" : "Log in";
    toggle.textContent = register ? "I have an account: log in" : "New here? Create an account";
    hint.textContent = register
      ? "3–32 characters: a–z, 0–9, dot, dash, underscore. Password: at least 8 characters."
      : "";
    display.row.hidden = !register;
    pass.input.setAttribute("autocomplete", register ? "new-password" : "current-password");
    error.textContent = "";
  };
  show();
  const submit = async (ev: Event) => {
    ev.preventDefault();
    error.textContent = "";
    button.disabled = true;
    const username = user.input.value.trim().toLowerCase();
    const body: Record<string, string> = { username, password: pass.input.value };
    const name = display.input.value.trim();
    if (register && name) body.display_name = name;
    try {
      const t = await call<Tokens>("POST", register ? "/v1/auth/register" : "/v1/auth/login", body);
      await save(t);
      pass.input.value = "";
      done(new AccountSession(t.user));
    } catch (e) {
      error.textContent = explain(e, register);
    } finally {
      button.disabled = false;
    }
  };
  return h(
    "form",
    { class: "signin-method", "data-testid": "account-form", onsubmit: (ev) => void submit(ev) },
    title,
    user.row,
    pass.row,
    display.row,
    hint,
    error,
    button,
    toggle,
  );
}

/** The account panel: display name and password. */
export function accountPanel(
  session: AccountSession,
  name: string,
  onName: (name: string) => void,
): HTMLElement {
  const status = h("p", { class: "hint", "data-testid": "account-status", role: "status" });
  const display = h("input", {
    "data-testid": "profile-display-name",
    value: name,
    maxlength: 64,
    autocomplete: "nickname",
    "aria-label": "Display name",
    placeholder: "Display name",
  });
  const current = h("input", {
    type: "password",
    "data-testid": "current-password",
    autocomplete: "current-password",
    required: true,
    "aria-label": "Current password",
    placeholder: "Current password",
  });
  const next = h("input", {
    type: "password",
    "data-testid": "new-password",
    autocomplete: "new-password",
    required: true,
    minlength: 8,
    "aria-label": "New password",
    placeholder: "New password (8+ characters)",
  });
  const run = async (what: () => Promise<string>) => {
    status.textContent = "…";
    try {
      status.textContent = await what();
    } catch (e) {
      status.textContent =
        e instanceof RoomcastError && e.code === "unauthorized"
          ? "The current password is wrong."
          : explain(e, true);
    }
  };
  return h(
    "div",
    { class: "account-panel", "data-testid": "account-panel" },
    h(
      "form",
      {
        class: "side-form",
        onsubmit: (ev: Event) => {
          ev.preventDefault();
          void run(async () => {
            const n = await session.setDisplayName(display.value.trim());
            onName(n ?? "");
            return n ? "Display name saved." : "Display name cleared.";
          });
        },
      },
      display,
      h("button", { type: "submit", "data-testid": "save-profile" }, "Save"),
    ),
    h(
      "form",
      {
        class: "password-form",
        onsubmit: (ev: Event) => {
          ev.preventDefault();
          void run(async () => {
            await session.changePassword(current.value, next.value);
            current.value = next.value = "";
            return "Password changed; other devices must log in again.";
          });
        },
      },
      current,
      next,
      h("button", { type: "submit", "data-testid": "change-password" }, "Change password"),
    ),
    status,
  );
}
