// Starts the real roomcast binary for tests: free ports, a temp data dir, a
// known HS256 secret; kill (SIGKILL, a crash) and restart on the same ports
// and data. Tokens are signed here with the same secret.

import { spawn, type ChildProcess } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const SECRET = "web-test-secret-web-test-secret";
const REPO = resolve(fileURLToPath(new URL("../../..", import.meta.url)));

/** The server binary: $ROOMCAST_BIN, else target/debug/roomcast (`cargo build`). */
export function binary(): string {
  const bin = process.env.ROOMCAST_BIN ?? join(REPO, "target", "debug", "roomcast");
  if (!existsSync(bin)) throw new Error(`${bin} not found: run \`cargo build\` first`);
  return bin;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

const b64url = (s: string | Buffer) => Buffer.from(s).toString("base64url");

/** An HS256 JWT for `sub`, valid for `ttlS` seconds (negative: expired). */
export function token(sub: string, ttlS = 3600, secret = SECRET): string {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + ttlS }));
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

export class TestServer {
  private child?: ChildProcess;
  readonly dir = mkdtempSync(join(tmpdir(), "roomcast-web-"));
  http = 0;
  /** The HTTPS listener (wss://), when started with `https: true`. */
  https = "";

  constructor(
    private readonly extra: string[] = [],
    private readonly opts: { https?: boolean } = {},
  ) {}

  /** `wss://…/ws` on the HTTPS listener (self-signed certificate). */
  get wssUrl(): string {
    return `wss://${this.https}/ws`;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.http}/ws`;
  }

  get base(): string {
    return `http://127.0.0.1:${this.http}`;
  }

  /** Starts (or restarts) the server; resolves once it listens. */
  async start(): Promise<void> {
    if (!this.http) this.http = await freePort();
    const args = [
      "serve",
      "--tcp",
      "127.0.0.1:0",
      "--quic",
      "127.0.0.1:0",
      "--http",
      `127.0.0.1:${this.http}`,
      "--data-dir",
      this.dir,
      "--jwt-secret",
      SECRET,
      "--fsync",
      "never",
      ...(this.opts.https ? ["--https", "127.0.0.1:0"] : []),
      ...this.extra,
    ];
    // The port was just closed by a previous run: retry a bind failure briefly.
    for (let attempt = 0; ; attempt++) {
      try {
        await this.spawnOnce(args);
        return;
      } catch (e) {
        if (attempt >= 20) throw e;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  private spawnOnce(args: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = spawn(binary(), args, {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" },
      });
      let out = "";
      let err = "";
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("roomcast listening")) {
          this.https = /https=(\S+)/.exec(out)?.[1] ?? "";
          this.child = child;
          resolve();
        }
      });
      child.stderr!.on("data", (d: Buffer) => {
        err += d.toString();
        if (process.env.ROOMCAST_TEST_LOG) process.stderr.write(d);
      });
      child.once("exit", (code) => reject(new Error(`roomcast exited (${code}): ${err}`)));
    });
  }

  /** Kills the server at once (SIGKILL: no `shutting_down`, sockets just drop). */
  async kill(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    const gone = new Promise((r) => c.once("exit", r));
    c.kill("SIGKILL");
    await gone;
    this.child = undefined;
  }

  /** Stops the server and removes its data. */
  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Resolves when `cond()` holds, polling; rejects after `ms` (a hang guard, not a timing assertion). */
export async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
