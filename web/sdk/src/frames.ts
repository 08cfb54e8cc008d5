// The frames of roomcast protocol v1 as TypeScript types, with the wire's
// field names (proto-spec/README.md is the reference for every field).

export type Role = "owner" | "admin" | "member";
export type Status = "online" | "away" | "offline";
export type MessageKind = "text" | "file" | "image";

export interface Attachment {
  url: string;
  name: string;
  mime: string;
  size: number;
  width?: number;
  height?: number;
}

/** A message: the `msg` push, an element of `history.messages` and `rooms[].last`. */
export interface Message {
  room: string;
  seq: number;
  from: string;
  body: string;
  ts: number;
  local_id?: string;
  kind?: "file" | "image";
  attachments?: Attachment[];
  reply_to?: number;
  /** History and room list only. */
  edited_at?: number;
  deleted?: boolean;
  reactions?: { emoji: string; count: number; me: boolean }[];
}

export interface Welcome {
  t: "welcome";
  id?: number;
  v: number;
  user: string;
  session: string;
  heartbeat_ms: number;
  max_frame: number;
  server: string;
}
export interface Created {
  t: "created";
  id: number;
  room: string;
  name: string;
  private: boolean;
}
export interface Joined {
  t: "joined";
  id: number;
  room: string;
  seq: number;
  complete?: boolean;
  role: Role;
  online?: string[];
  online_count: number;
  members: number;
}
export interface Left {
  t: "left";
  id: number;
  room: string;
}
export interface Sent {
  t: "sent";
  id: number;
  room: string;
  seq: number;
  ts: number;
  local_id?: string;
}
export interface MsgPush extends Message {
  t: "msg";
}
export interface EditEvent {
  t: "edit";
  room: string;
  seq: number;
  target: number;
  from: string;
  body: string;
  ts: number;
}
export interface DeleteEvent {
  t: "delete";
  room: string;
  seq: number;
  target: number;
  by: string;
  ts: number;
}
export interface ReactionEvent {
  t: "reaction";
  room: string;
  seq: number;
  target: number;
  user: string;
  emoji: string;
  on: boolean;
  ts: number;
}
export interface HistoryPage {
  t: "history";
  id: number;
  room: string;
  messages: Message[];
  /** Paging back (`before`, or neither): older messages exist before
   *  `messages[0]`; paging forward (`after`): newer ones after the last. */
  more: boolean;
}
export interface Pong {
  t: "pong";
  id?: number;
}
export interface Direct {
  t: "direct";
  id: number;
  room: string;
  peer: string;
}
export interface OkReply {
  t: "ok";
  id: number;
  room?: string;
  seq?: number;
}
export interface ReadPush {
  t: "read";
  room: string;
  user: string;
  seq: number;
}
export interface ReadAck {
  t: "read_ack";
  id: number;
  room: string;
  seq: number;
  unread: number;
}
export interface Receipts {
  t: "receipts";
  id: number;
  room: string;
  seq: number;
  readers: string[];
  delivered: string[];
}
export interface TypingPush {
  t: "typing";
  room: string;
  user: string;
  on: boolean;
}
export interface UserPresence {
  user: string;
  status: Status;
  last_seen?: number;
}
export interface PresenceFrame {
  t: "presence";
  id?: number;
  users: UserPresence[];
}
export interface RoomSummary {
  room: string;
  name: string;
  kind: "room" | "direct";
  private: boolean;
  role: Role;
  unread: number;
  last?: Message;
  favorite: boolean;
  peer?: string;
  read_seq: number;
}
export interface RoomsFrame {
  t: "rooms";
  id?: number;
  rooms: RoomSummary[];
}
export interface PublicRoom {
  room: string;
  name: string;
  description?: string;
  members: number;
}
export interface PublicRooms {
  t: "public_rooms";
  id: number;
  rooms: PublicRoom[];
  next?: string;
}
export interface Member {
  user: string;
  role: Role;
  read_seq: number;
}
export interface Members {
  t: "members";
  id: number;
  room: string;
  members: Member[];
}
export interface Invite {
  code: string;
  room: string;
  created_by: string;
  expires_at?: number;
  max_uses?: number;
  uses: number;
}
export interface InviteFrame extends Invite {
  t: "invite";
  id: number;
}
export interface Invites {
  t: "invites";
  id: number;
  room: string;
  invites: Invite[];
}
export interface Favorites {
  t: "favorites";
  id: number;
  rooms: string[];
  users: string[];
}
export interface MemberJoined {
  t: "member_joined";
  room: string;
  user: string;
  role: Role;
}
export interface MemberLeft {
  t: "member_left";
  room: string;
  user: string;
  reason: "left" | "kicked" | "banned";
}
export interface RoleChanged {
  t: "role_changed";
  room: string;
  user: string;
  role: Role;
}
export interface RoomUpdated {
  t: "room_updated";
  room: string;
  name: string;
  description: string;
  private: boolean;
}
export interface RoomDeleted {
  t: "room_deleted";
  room: string;
}
export interface ErrorFrame {
  t: "error";
  id?: number;
  code: string;
  message: string;
  retry_after_ms?: number;
  close: boolean;
}

export type ServerFrame =
  | Welcome
  | Created
  | Joined
  | Left
  | Sent
  | MsgPush
  | EditEvent
  | DeleteEvent
  | ReactionEvent
  | HistoryPage
  | Pong
  | Direct
  | OkReply
  | ReadPush
  | ReadAck
  | Receipts
  | TypingPush
  | PresenceFrame
  | RoomsFrame
  | PublicRooms
  | Members
  | InviteFrame
  | Invites
  | Favorites
  | MemberJoined
  | MemberLeft
  | RoleChanged
  | RoomUpdated
  | RoomDeleted
  | ErrorFrame;

/** A client frame: `t` plus its fields (the codec orders them). */
export interface ClientFrame {
  t: string;
  id?: number;
  [field: string]: unknown;
}

/** Every error code of proto-spec/README.md ("Error codes"); servers may add more. */
export type ErrorCode =
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "bad_request"
  | "frame_too_large"
  | "unknown_type"
  | "rate_limited"
  | "slow_consumer"
  | "internal"
  | "unsupported_version"
  | "hello_timeout"
  | "idle_timeout"
  | "shutting_down"
  | "server_busy"
  | "unavailable"
  | "conflict"
  | "limit_exceeded";
