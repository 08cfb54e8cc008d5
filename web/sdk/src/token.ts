// Tokens for `hello`: a fixed string, or a callback called again before the
// cached token expires and after the server answered `unauthorized`.

export type TokenCallback = () => string | Promise<string>;

/** The `exp` claim (seconds) of a JWT, if it can be read. */
export function jwtExpiry(token: string): number | undefined {
  const part = token.split(".")[1];
  if (!part) return undefined;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === "number" ? exp : undefined;
  } catch {
    return undefined;
  }
}

export class TokenSource {
  private cached?: string;
  constructor(
    private readonly source: string | TokenCallback,
    private readonly marginMs: number,
  ) {}

  /** Whether a new token can be had (a callback); a fixed one cannot change. */
  get refreshable(): boolean {
    return typeof this.source === "function";
  }

  /** The token for the next `hello`. */
  async get(now = Date.now()): Promise<string> {
    if (typeof this.source === "string") return this.source;
    const exp = this.cached === undefined ? undefined : jwtExpiry(this.cached);
    if (this.cached !== undefined && (exp === undefined || exp * 1000 - now > this.marginMs)) {
      return this.cached;
    }
    this.cached = await this.source();
    return this.cached;
  }

  /** The server refused the token: ask the callback again next time. */
  invalidate(): void {
    this.cached = undefined;
  }
}
