// The wire codec: one MessagePack map per WebSocket binary message
// (proto-spec/transports.md). Client frames are written the way the server
// writes them (`t` first, then the fields in the order of the spec's tables,
// defaults omitted or always written as the Rust encoder does), so every
// client vector of proto-spec/vectors.json encodes byte for byte.

import { Decoder, Encoder } from "@msgpack/msgpack";
import type { ClientFrame, ServerFrame } from "./frames.js";

/** How a field is written: `o` optional (omitted when undefined), `a` always
 *  (with its default when undefined), `d` omitted when equal to its default. */
type Rule = [key: string, mode: "o" | "a" | "d", dflt?: unknown];

const o = (key: string): Rule => [key, "o"];
const ID = o("id");
const ROOM = o("room");
const USER = o("user");
const SEQ = o("seq");
const ROOM_USER = [ID, ROOM, USER];

/** Field order per client frame type, after `t` (proto-spec/README.md, "Client frames"). */
const ORDER: Record<string, Rule[]> = {
  hello: [ID, o("v"), o("token"), ["sync", "d", false]],
  ping: [ID],
  create_room: [ID, o("name"), ["private", "a", false], o("description"), ROOM],
  join: [ID, ROOM, o("since"), o("invite")],
  leave: [ID, ROOM],
  leave_room: [ID, ROOM],
  send: [
    ID,
    ROOM,
    o("body"),
    o("local_id"),
    ["kind", "d", "text"],
    ["attachments", "d", []],
    o("reply_to"),
  ],
  edit: [ID, ROOM, SEQ, o("body")],
  delete: [ID, ROOM, SEQ],
  react: [ID, ROOM, SEQ, o("emoji"), ["on", "a", true]],
  history: [ID, ROOM, o("before"), o("after"), o("limit")],
  read: [ID, ROOM, SEQ],
  receipts: [ID, ROOM, SEQ],
  typing: [ID, ROOM, ["on", "a", true]],
  presence: [ID, o("status"), ["users", "d", []]],
  rooms: [ID],
  public_rooms: [ID, o("prefix"), o("after"), o("limit")],
  members: [ID, ROOM],
  update_room: [ID, ROOM, o("name"), o("description"), o("private")],
  delete_room: [ID, ROOM],
  kick: ROOM_USER,
  ban: ROOM_USER,
  unban: ROOM_USER,
  transfer: ROOM_USER,
  set_role: [...ROOM_USER, o("role")],
  create_invite: [ID, ROOM, o("expires_in_s"), o("max_uses")],
  invites: [ID, ROOM],
  revoke_invite: [ID, ROOM, o("code")],
  start_direct: [ID, USER],
  favorite: [ID, ROOM, USER, ["on", "a", true]],
  favorites: [ID],
};

const ATTACHMENT: Rule[] = ["url", "name", "mime", "size", "width", "height"].map(o);

function isDefault(value: unknown, dflt: unknown): boolean {
  if (Array.isArray(dflt)) return Array.isArray(value) && value.length === 0;
  return value === dflt;
}

function ordered(src: Record<string, unknown>, rules: Rule[], out: Record<string, unknown>) {
  for (const [key, mode, dflt] of rules) {
    let value = src[key];
    if (value === undefined || value === null) {
      if (mode !== "a") continue;
      value = dflt;
    } else if (mode === "d" && isDefault(value, dflt)) {
      continue;
    }
    out[key] =
      key === "attachments"
        ? (value as Record<string, unknown>[]).map((a) => ordered(a, ATTACHMENT, {}))
        : value;
  }
  return out;
}

/** The canonical map of a client frame (what {@link encodeFrame} writes). */
export function canonical(frame: ClientFrame | Record<string, unknown>): Record<string, unknown> {
  const src = frame as Record<string, unknown>;
  const t = src.t;
  if (typeof t !== "string" || !(t in ORDER)) {
    throw new TypeError(`unknown client frame type: ${String(t)}`);
  }
  return ordered(src, ORDER[t]!, { t });
}

const encoder = new Encoder({ ignoreUndefined: true });
// Server frames may be large (history pages, room lists): no small caps here.
const decoder = new Decoder();

/** Encodes a client frame: the payload of one WebSocket binary message. */
export function encodeFrame(frame: ClientFrame | Record<string, unknown>): Uint8Array {
  return encoder.encode(canonical(frame));
}

/** Decodes one server message; throws on anything but a map with a string `t`. */
export function decodeFrame(data: ArrayBuffer | ArrayBufferView): ServerFrame {
  const bytes =
    data instanceof ArrayBuffer
      ? new Uint8Array(data)
      : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const value = decoder.decode(bytes) as Record<string, unknown> | null;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TypeError("frame is not a map");
  }
  if (typeof value.t !== "string") throw new TypeError("frame has no string `t`");
  return value as unknown as ServerFrame;
}
