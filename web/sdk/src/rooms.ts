// Per-room stream position (mirrors client/src/rooms.rs): which rooms to
// re-join, the last seq delivered in each (the `since` of the resume),
// de-duplication by seq, and when a resume has caught up. No I/O.

interface RoomState {
  /** The highest stream seq delivered to the app (undefined: not known yet). */
  last?: number;
  /** Whether the app follows the room (re-joined on every reconnect). */
  subscribed: boolean;
  /** A resume in progress. */
  resuming?: { from: number; to: number; complete: boolean };
}

export interface CaughtUp {
  room: string;
  from: number;
  to: number;
  complete: boolean;
}

export class RoomTracker {
  private rooms = new Map<string, RoomState>();

  private get(room: string): RoomState {
    let st = this.rooms.get(room);
    if (!st) {
      st = { subscribed: false };
      this.rooms.set(room, st);
    }
    return st;
  }

  /** The app joins `room`: follow it; returns the `since` to join with. */
  follow(room: string): number | undefined {
    const st = this.get(room);
    st.subscribed = true;
    return st.last;
  }

  /** Stop re-joining `room` (the last seq is kept for a later join). */
  unfollow(room: string): void {
    const st = this.rooms.get(room);
    if (st) {
      st.subscribed = false;
      st.resuming = undefined;
    }
  }

  lastSeq(room: string): number | undefined {
    return this.rooms.get(room)?.last;
  }

  /** A join without `since` answered `joined.seq`: later events are new. */
  startAt(room: string, seq: number): void {
    const st = this.get(room);
    st.last = st.last === undefined ? seq : Math.max(st.last, seq);
  }

  /** Rooms to re-join on a new connection, with their `since`. */
  toRejoin(): [string, number | undefined][] {
    const out: [string, number | undefined][] = [];
    for (const [room, st] of this.rooms) if (st.subscribed) out.push([room, st.last]);
    return out.sort((a, b) => (a[0] < b[0] ? -1 : 1));
  }

  /** A stream event arrived: true if new, false for a duplicate. */
  accept(room: string, seq: number): boolean {
    const st = this.get(room);
    if (st.last !== undefined && seq <= st.last) return false;
    st.last = seq;
    return true;
  }

  /** `join {since: from}` answered `joined {seq: to}`: the replay follows. */
  resuming(room: string, from: number, to: number, complete: boolean): void {
    this.get(room).resuming = { from, to, complete };
  }

  /** Whether `room`'s resume has caught up; returns it once. */
  caughtUp(room: string): CaughtUp | undefined {
    const st = this.rooms.get(room);
    const r = st?.resuming;
    if (!st || !r) return undefined;
    if ((st.last ?? 0) >= r.to || r.to <= r.from) {
      st.resuming = undefined;
      return { room, ...r };
    }
    return undefined;
  }
}
