//! Fan-out: each room's committed pushes of a batch become one chunk, handed
//! to every subscriber's outbox; traffic from other nodes enters here too.

use super::{Shard, Slot};
use crate::ids::RoomId;
use bytes::{Bytes, BytesMut};
use std::collections::hash_map::Entry;
use std::collections::HashMap;

impl Shard {
    /// Traffic from another node for a room with local subscribers.
    pub(super) fn remote(&mut self, room_id: &RoomId, ephemeral: bool, payload: Bytes) {
        let outbox_limit = self.cfg.outbox_bytes;
        let Some(room) = self.active(room_id) else {
            return;
        };
        if ephemeral {
            room.fan_out_ephemeral(&payload, None);
            return;
        }
        let mut chunk = BytesMut::new();
        let mut rest = payload;
        while rest.len() >= 8 + crate::proto::HEADER_LEN {
            let seq = u64::from_be_bytes([
                rest[0], rest[1], rest[2], rest[3], rest[4], rest[5], rest[6], rest[7],
            ]);
            let len = u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize;
            let end = 8 + crate::proto::HEADER_LEN + len;
            if rest.len() < end {
                tracing::warn!(room = %room_id, "truncated event from another node");
                break;
            }
            let framed = rest.slice(8..end);
            rest = rest.slice(end..);
            room.deliver(seq, framed, &mut chunk);
        }
        if !chunk.is_empty() {
            room.fan_out(&chunk.freeze(), outbox_limit);
        }
    }

    /// Housekeeping on the tick: skip gaps that never filled (a seq another
    /// node allocated and never committed, or a send of unknown outcome whose
    /// retry did not come within `--gap-timeout-ms`), and, multi-node, stop
    /// receiving rooms nobody here listens to.
    pub(in crate::router) fn cluster_tick(&mut self) {
        let gap_timeout = self.cfg.gap_timeout;
        let outbox_limit = self.cfg.outbox_bytes;
        let now = tokio::time::Instant::now();
        for slot in self.rooms.values_mut() {
            let Slot::Active(room) = slot else { continue };
            if room
                .gap_since
                .is_some_and(|t| now.duration_since(t) >= gap_timeout)
            {
                let mut chunk = BytesMut::new();
                room.skip_gap(&mut chunk);
                if !chunk.is_empty() {
                    room.fan_out(&chunk.freeze(), outbox_limit);
                }
            }
        }
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        for (room_id, slot) in self.rooms.iter_mut() {
            let Slot::Active(room) = slot else { continue };
            if room.bus_subscribed && room.subscribers.is_empty() {
                room.bus_subscribed = false;
                cluster.unsubscribe(room_id);
            }
        }
    }

    /// unloading, at exit).
    pub(super) fn report_fanout(&mut self) {
        let (mut pushes, mut bytes) = (0, 0);
        for slot in self.rooms.values_mut() {
            if let Slot::Active(r) = slot {
                let (p, b) = std::mem::take(&mut r.fanned);
                pushes += p;
                bytes += b;
            }
        }
        crate::metrics::fanned_out(pushes, bytes);
    }
}

/// Each room's new pushes of one completion, back to back, found by room id
/// in O(1): a completion carries events of up to hundreds of small rooms
/// (512 commands per wake-up), and a linear search per event made it cost
/// quadratic id comparisons.
#[derive(Default)]
pub(super) struct Chunks {
    list: Vec<(RoomId, BytesMut)>,
    index: HashMap<RoomId, usize>,
}

impl Chunks {
    /// The room's chunk, new and empty if it has none yet.
    pub(super) fn of(&mut self, room: &RoomId) -> &mut BytesMut {
        let i = match self.index.entry(room.clone()) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                self.list.push((room.clone(), BytesMut::with_capacity(256)));
                *e.insert(self.list.len() - 1)
            }
        };
        &mut self.list[i].1
    }

    /// Takes the room's chunk out.
    fn take(&mut self, room: &RoomId) -> Option<BytesMut> {
        let pos = self.index.remove(room)?;
        let (_, chunk) = self.list.swap_remove(pos);
        // The last chunk moved into `pos`.
        if let Some((moved, _)) = self.list.get(pos) {
            if let Some(i) = self.index.get_mut(moved) {
                *i = pos;
            }
        }
        Some(chunk)
    }

    /// Some room that still has a chunk.
    pub(super) fn any_room(&self) -> Option<RoomId> {
        self.list.last().map(|(room, _)| room.clone())
    }

    pub(super) fn into_list(self) -> Vec<(RoomId, BytesMut)> {
        self.list
    }
}

/// Hands the room's chunk (if any) to its subscribers.
pub(super) fn flush_chunk(
    rooms: &mut HashMap<RoomId, Slot>,
    chunks: &mut Chunks,
    room: &RoomId,
    outbox_limit: usize,
) {
    let Some(chunk) = chunks.take(room) else {
        return;
    };
    if let Some(Slot::Active(r)) = rooms.get_mut(room) {
        r.fan_out(&chunk.freeze(), outbox_limit);
    }
}
