// The sign-in screen. Each way of signing in is a SignInMethod; the screen
// shows the available ones. Today there is one, a development token pasted
// into the page. Built-in accounts (`/v1/auth/...`, when the server offers
// them) plug in as another method whose `available()` probes the server and
// whose `render` shows a name/password form; nothing else changes.

import type { TokenCallback } from "@roomcast/client";
import { h } from "./dom.js";

export interface SignedIn {
  /** A JWT, or a callback the SDK calls for fresh ones (accounts). */
  token: string | TokenCallback;
  /** Forget the stored credentials. */
  signOut(): void;
}

export interface SignInMethod {
  id: string;
  label: string;
  available(): Promise<boolean>;
  /** Renders the method's form; calls `done` once signed in. */
  render(done: (s: SignedIn) => void): HTMLElement;
  /** Credentials kept from an earlier visit, if any. */
  restore(): SignedIn | undefined;
}

const KEY = "roomcast.devToken";

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

function signedIn(token: string): SignedIn {
  return { token, signOut: () => localStorage.removeItem(KEY) };
}

export const devToken: SignInMethod = {
  id: "dev-token",
  label: "Development token",
  available: async () => true,
  restore() {
    const t = localStorage.getItem(KEY);
    return t ? signedIn(t) : undefined;
  },
  render(done) {
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
      localStorage.setItem(KEY, token);
      done(signedIn(token));
    };
    return h(
      "form",
      { class: "signin-method", onsubmit: submit },
      h("label", { for: "token" }, "Paste a token"),
      input,
      h(
        "p",
        { class: "hint" },
        "Mint one on the server with ",
        h("code", {}, "roomcast token --user alice"),
        ".",
      ),
      error,
      h("button", { type: "submit", "data-testid": "signin" }, "Sign in"),
    );
  },
};

/** Every sign-in method the page knows, in the order shown. */
export const methods: SignInMethod[] = [devToken];

/** Shows the sign-in screen in `root`; resolves once signed in. */
export async function signIn(root: HTMLElement, error?: string): Promise<SignedIn> {
  const usable: SignInMethod[] = [];
  for (const m of methods) if (await m.available()) usable.push(m);
  return new Promise((resolve) => {
    root.replaceChildren(
      h(
        "main",
        { class: "signin" },
        h("h1", {}, "roomcast"),
        error ? h("p", { class: "error", "data-testid": "session-error" }, error) : null,
        usable.map((m) =>
          h("section", {}, usable.length > 1 ? h("h2", {}, m.label) : null, m.render(resolve)),
        ),
      ),
    );
  });
}
