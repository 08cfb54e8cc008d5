// @roomcast/client: the browser (and Node) SDK of roomcast.
export { Client } from "./client.js";
export type {
  ClientOptions,
  ClientEvents,
  ConnectionState,
  PendingSend,
  SendOptions,
} from "./client.js";
export { RoomcastError, sendRetryable } from "./errors.js";
export type { LocalCode } from "./errors.js";
export { encodeFrame, decodeFrame, canonical } from "./codec.js";
export { backoffDelay } from "./backoff.js";
export type { BackoffOptions } from "./backoff.js";
export { indexedDbStorage, newLocalId } from "./queue.js";
export type { QueuedSend, QueueStorage } from "./queue.js";
export type { CaughtUp } from "./rooms.js";
export type { WebSocketLike, WebSocketConstructor } from "./connection.js";
export type { TokenCallback } from "./token.js";
export { jwtExpiry } from "./token.js";
export type * from "./frames.js";
