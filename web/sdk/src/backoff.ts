// Reconnect delays: exponential, bounded, full jitter, never sooner than the
// server's `retry_after_ms` (proto-spec/README.md, "Error codes").

export interface BackoffOptions {
  /** Base delay of the first reconnect (default 500 ms). */
  initialMs?: number;
  /** Largest base delay (default 30 s). */
  maxMs?: number;
  /** Growth per failed attempt (default 2). */
  multiplier?: number;
  /** Give up after this many consecutive failed attempts (default: never). */
  maxAttempts?: number;
}

/** Attempt `n` waits uniformly in `[0, min(max, initial * multiplier^n)]`
 *  ("full jitter"), and at least `retryAfterMs`. */
export function backoffDelay(
  opts: BackoffOptions,
  attempt: number,
  retryAfterMs = 0,
  random: () => number = Math.random,
): number {
  const initial = opts.initialMs ?? 500;
  const max = opts.maxMs ?? 30_000;
  const mult = Math.max(1, opts.multiplier ?? 2);
  const base = Math.min(max, initial * Math.pow(mult, Math.min(attempt, 64)));
  return Math.max(Math.round(random() * base), retryAfterMs);
}
