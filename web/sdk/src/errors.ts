// One error type for everything a call can fail with: the server's wire
// codes (proto-spec/README.md, "Error codes") and the SDK's own.

import type { ErrorCode, ErrorFrame } from "./frames.js";

/** Codes the SDK itself produces (never sent by a server). */
export type LocalCode =
  "timeout" | "disconnected" | "closed" | "queue_full" | "too_large" | "token" | "unexpected";

export class RoomcastError extends Error {
  override readonly name = "RoomcastError";
  constructor(
    /** A wire error code (`forbidden`, `rate_limited`, ...) or a {@link LocalCode}. */
    readonly code: ErrorCode | LocalCode | (string & {}),
    message: string,
    /** The server's `retry_after_ms`, when it gave one. */
    readonly retryAfterMs?: number,
    /** The server's `error` frame, for errors that came from the server. */
    readonly frame?: ErrorFrame,
  ) {
    super(message);
  }

  static fromFrame(e: ErrorFrame): RoomcastError {
    return new RoomcastError(e.code, `${e.code}: ${e.message}`, e.retry_after_ms, e);
  }
}

/** A refused `send` that should wait and go out again (the message stays queued). */
export function sendRetryable(code: string): boolean {
  return [
    "internal",
    "rate_limited",
    "unavailable",
    "shutting_down",
    "server_busy",
    "slow_consumer",
    "idle_timeout",
  ].includes(code);
}
