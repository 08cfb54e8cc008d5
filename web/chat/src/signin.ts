// The sign-in screen. The server says which ways of signing in it offers
// (`GET /chat-config.json`, src/webchat.rs): built-in accounts (log in and
// register forms, `--accounts true`), a form to paste a JWT (only with
// `--web-chat-dev-token true`), or neither: then the page explains that
// tokens come from the operator's identity provider instead of showing a
// form that cannot work.

import type { TokenCallback } from "@roomcast/client";
import { AccountSession, accountForm } from "./accounts.js";
import { h } from "./dom.js";

export interface SignedIn {
  /** The user id, when known before connecting. */
  user?: string;
  /** A JWT, or a callback the SDK calls for fresh ones (accounts). */
  token: string | TokenCallback;
  /** Forget the stored credentials (and revoke them on the server, if it can). */
  signOut(): void | Promise<void>;
}

/** The answer of `/chat-config.json`. */
export interface ChatConfig {
  accounts: boolean;
  dev_token: boolean;
}

/** Reads how this server signs people in; undefined if it cannot be reached. */
export async function loadConfig(): Promise<ChatConfig | undefined> {
  try {
    const res = await fetch("/chat-config.json", { cache: "no-store" });
    if (!res.ok) return undefined;
    const c = (await res.json()) as Partial<ChatConfig>;
    return { accounts: c.accounts === true, dev_token: c.dev_token === true };
  } catch {
    return undefined;
  }
}

const DEV_KEY = "roomcast.devToken";

/** The user id (`sub`) of a JWT, if readable. */
export function tokenUser(token: string): string | undefined {
  try {
    const part = token.split(".")[1] ?? "";
    const sub = (JSON.parse(atob(part.replace(/-/g, "+").replace(/_/g, "/"))) as { sub?: unknown })
      .sub;
    return typeof sub === "string" ? sub : undefined;
  } catch {
    return undefined;
  }
}

function devSession(token: string): SignedIn {
  return { user: tokenUser(token), token, signOut: () => localStorage.removeItem(DEV_KEY) };
}

/** Credentials kept from an earlier visit: an account session, or a pasted
 *  token when the server (still) offers the token form. */
export async function restore(config: ChatConfig | undefined): Promise<SignedIn | undefined> {
  const account = await AccountSession.restore();
  if (account) return account;
  const t = localStorage.getItem(DEV_KEY);
  // Unknown config (server unreachable): keep the token and open offline.
  if (t && config?.dev_token !== false) return devSession(t);
  if (t) localStorage.removeItem(DEV_KEY);
  return undefined;
}

function devTokenForm(done: (s: SignedIn) => void): HTMLElement {
  const input = h("textarea", {
    id: "token",
    "data-testid": "token",
    rows: 4,
    placeholder: "eyJhbGciOiJIUzI1NiIs…",
    spellcheck: "false",
    autocomplete: "off",
  });
  const error = h("p", { class: "error", "data-testid": "signin-error" });
  const submit = (ev: Event) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (!tokenUser(token)) {
      error.textContent = "That is not a JWT with a user (sub).";
      return;
    }
    localStorage.setItem(DEV_KEY, token);
    done(devSession(token));
  };
  return h(
    "form",
    { class: "signin-method", "data-testid": "token-form", onsubmit: submit },
    h("label", { for: "token" }, "Paste a token"),
    input,
    h(
      "p",
      { class: "hint" },
      "A JWT from your identity provider, or for development one minted on the server with ",
      h("code", {}, "roomcast token --user alice"),
      ".",
    ),
    error,
    h("button", { type: "submit", "data-testid": "signin" }, "Sign in"),
  );
}

/** Neither form: where a token comes from. */
function help(config: ChatConfig | undefined): HTMLElement {
  if (!config) {
    return h(
      "div",
      { class: "signin-method", "data-testid": "signin-help" },
      h("p", {}, "The server cannot be reached right now."),
      h("button", { onclick: () => location.reload() }, "Try again"),
    );
  }
  return h(
    "div",
    { class: "signin-method", "data-testid": "signin-help" },
    h(
      "p",
      {},
      "This server has no accounts of its own: people sign in with a token from " +
        "the identity provider of the app it belongs to. Open the chat from that app, " +
        "or ask the operator.",
    ),
    h(
      "p",
      { class: "hint" },
      "Operators: start roomcast with ",
      h("code", {}, "--accounts true"),
      " for built-in accounts (register and log in here), or with ",
      h("code", {}, "--web-chat-dev-token true"),
      " to let people paste a token.",
    ),
  );
}

/** Shows the sign-in screen in `root`; resolves once signed in. */
export function signIn(
  root: HTMLElement,
  config: ChatConfig | undefined,
  error?: string,
): Promise<SignedIn> {
  return new Promise((resolve) => {
    const sections: HTMLElement[] = [];
    if (config?.accounts) sections.push(h("section", {}, accountForm(resolve)));
    if (config?.dev_token)
      sections.push(
        h(
          "section",
          {},
          config.accounts ? h("h2", {}, "Or with a token") : null,
          devTokenForm(resolve),
        ),
      );
    if (!sections.length) sections.push(help(config));
    root.replaceChildren(
      h(
        "main",
        { class: "signin" },
        h("h1", {}, "roomcast"),
        error ? h("p", { class: "error", "data-testid": "session-error" }, error) : null,
        sections,
      ),
    );
  });
}
