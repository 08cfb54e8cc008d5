//! Ephemeral room state: typing indicators (expire without refresh), presence
//! pushes, and coalesced read-pointer pushes. Nothing here takes a seq or is
//! stored; pushes are dropped for connections that are behind.

use super::command::ReplyTo;
use super::shard::{forbidden, not_found, Shard};
use crate::ids::{RoomId, UserId};
use crate::proto::server::{PresenceFrame, ReadPush, TypingPush};
use crate::proto::{self, ServerFrame};
use bytes::BytesMut;

impl Shard {
    pub(super) fn typing(
        &mut self,
        room_id: &RoomId,
        user: UserId,
        on: bool,
        reply: Option<ReplyTo>,
    ) {
        let ttl = self.cfg.typing_ttl;
        let cluster = self.cluster.clone();
        let Some(room) = self.active(room_id) else {
            if let Some(r) = reply {
                r.error(not_found(room_id));
            }
            return;
        };
        if !room.is_member(&user) {
            if let Some(r) = reply {
                r.error(forbidden(format!("you are not a member of {room_id}")));
            }
            return;
        }
        let was = if on {
            room.typing
                .insert(user.clone(), tokio::time::Instant::now() + ttl)
                .is_some()
        } else {
            room.typing.remove(&user).is_some()
        };
        // A refresh of an ongoing indicator only extends it: nothing to push.
        if was != on {
            let frame = proto::encode(&ServerFrame::Typing(TypingPush {
                room: room_id.clone(),
                user: user.clone(),
                on,
            }));
            room.fan_out_ephemeral(&frame, Some(&user));
            if let Some(c) = cluster {
                c.publish_ephemeral(room_id, frame);
            }
        }
        if let Some(r) = reply {
            r.ok(room_id, None);
        }
    }

    /// Ends a user's typing indicator in a room, if on, with a `typing {on:
    /// false}` push to the room (their last session left, or they stopped
    /// being a member: `leave_room`, kick, ban).
    pub(super) fn end_typing(&mut self, room_id: &RoomId, user: &UserId) {
        let cluster = self.cluster.clone();
        let Some(room) = self.active(room_id) else {
            return;
        };
        if room.typing.remove(user).is_none() {
            return;
        }
        let frame = proto::encode(&ServerFrame::Typing(TypingPush {
            room: room_id.clone(),
            user: user.clone(),
            on: false,
        }));
        room.fan_out_ephemeral(&frame, Some(user));
        if let Some(c) = cluster {
            c.publish_ephemeral(room_id, frame);
        }
    }

    /// Queues a member's presence change; pushed coalesced on the next tick
    /// (only the latest status of each user in the period).
    pub(super) fn presence_push(&mut self, room_id: &RoomId, frame: &ServerFrame) {
        let max = self.cfg.presence_list_max;
        let Some(room) = self.active(room_id) else {
            return;
        };
        // Large rooms get counts in `joined`, not a push per member change.
        if room.members.len() > max || room.subscribers.is_empty() {
            return;
        }
        if let ServerFrame::Presence(p) = frame {
            for u in &p.users {
                if room.is_member(&u.user) {
                    room.pending_presence.insert(u.user.clone(), u.clone());
                }
            }
        }
    }

    /// Runs every tick: expire typing, push coalesced read pointers.
    pub(super) fn tick(&mut self) {
        let now = tokio::time::Instant::now();
        for (room_id, slot) in self.rooms.iter_mut() {
            let super::shard::Slot::Active(room) = slot else {
                continue;
            };
            if !room.typing.is_empty() {
                let expired: Vec<UserId> = room
                    .typing
                    .iter()
                    .filter(|(_, until)| **until <= now)
                    .map(|(u, _)| u.clone())
                    .collect();
                for user in expired {
                    room.typing.remove(&user);
                    let frame = proto::encode(&ServerFrame::Typing(TypingPush {
                        room: room_id.clone(),
                        user: user.clone(),
                        on: false,
                    }));
                    room.fan_out_ephemeral(&frame, Some(&user));
                    if let Some(c) = &self.cluster {
                        c.publish_ephemeral(room_id, frame);
                    }
                }
            }
            if !room.pending_presence.is_empty() {
                let users = room.pending_presence.drain().map(|(_, p)| p).collect();
                let frame =
                    proto::encode(&ServerFrame::Presence(PresenceFrame { id: None, users }));
                room.fan_out_ephemeral(&frame, None);
            }
            if !room.pending_reads.is_empty() {
                let mut chunk = BytesMut::new();
                for (user, seq) in room.pending_reads.drain() {
                    proto::encode_into(
                        &mut chunk,
                        &ServerFrame::Read(ReadPush {
                            room: room_id.clone(),
                            user,
                            seq,
                        }),
                    );
                }
                let chunk = chunk.freeze();
                room.fan_out_ephemeral(&chunk, None);
                if let Some(c) = &self.cluster {
                    c.publish_ephemeral(room_id, chunk);
                }
            }
        }
    }
}
