//! Read pointers, read and delivery receipts, unread counts.
//!
//! A member's read pointer only moves forward. Unread = messages created after
//! it − the member's own − those others deleted; every term is kept up to date
//! as messages arrive, so reading a count never scans the message log.

use super::command::ReplyTo;
use super::shard::{forbidden, not_found, Done, Shard, Then};
use crate::ids::{RoomId, UserId};
use crate::proto::server::{ReadAck, ReceiptsReply};
use crate::proto::ServerFrame;
use crate::store::Mutation;

impl Shard {
    pub(super) fn read(&mut self, room_id: &RoomId, user: UserId, seq: u64, reply: ReplyTo) {
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        let Some(m) = room.members.get(&user) else {
            return reply.error(forbidden(format!("you are not a member of {room_id}")));
        };
        let target = seq.min(room.last_seq);
        if target <= m.read_seq {
            let unread = room.unread(&user);
            let read_seq = m.read_seq;
            return reply.send(&ServerFrame::ReadAck(ReadAck {
                id: reply.id,
                room: room_id.clone(),
                seq: read_seq,
                unread,
            }));
        }
        // Messages created at or before the new pointer: known for the latest,
        // counted by the store (off the loop) for an older one.
        if target >= room.last_msg_seq {
            let n = room.msg_total;
            return self.read_at(room_id, user, target, n, reply);
        }
        let store = self.store.clone();
        let (room, outbox) = (room_id.clone(), reply.outbox().clone());
        let io = async move { store.msg_count_at(&room, target).await };
        let room = room_id.clone();
        self.start_io(
            room_id,
            Some(&outbox),
            io,
            move |shard, count| match count {
                Ok(n) => shard.read_at(&room, user, target, n, reply),
                Err(e) => {
                    tracing::error!(room = %room, error = %e, "msg_count_at failed");
                    reply.error(e.to_wire("the read"))
                }
            },
        );
    }

    /// Moves `user`'s read pointer to `target`, with `read_n` messages at or before it.
    fn read_at(
        &mut self,
        room_id: &RoomId,
        user: UserId,
        target: u64,
        read_n: u64,
        reply: ReplyTo,
    ) {
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        let Some(m) = room.members.get_mut(&user) else {
            return reply.error(forbidden(format!("you are not a member of {room_id}")));
        };
        if target <= m.read_seq {
            // Another read moved it further while we looked up the count.
            let read_seq = m.read_seq;
            let unread = room.unread(&user);
            return reply.send(&ServerFrame::ReadAck(ReadAck {
                id: reply.id,
                room: room_id.clone(),
                seq: read_seq,
                unread,
            }));
        }
        m.read_seq = target;
        m.read_n = read_n;
        m.own_unread.retain(|s| *s > target);
        room.pending_reads.insert(user.clone(), target);
        let unread = room.unread(&user);
        let frame = ServerFrame::ReadAck(ReadAck {
            id: reply.id,
            room: room_id.clone(),
            seq: target,
            unread,
        });
        let put = Mutation::SetRead {
            room: room_id.clone(),
            user,
            read_seq: target,
            read_n,
        };
        let done = Done::Reply {
            room: room_id.clone(),
            reply: Some(reply),
            frame: Some(Box::new(frame)),
            push: None,
            then: Then::Nothing,
        };
        self.write(room_id, [put], Some(done));
    }

    /// Marks everything up to the room's latest seq read (the `read_on_join` policy).
    pub(super) fn mark_read_latest(&mut self, room_id: &RoomId, user: &UserId) {
        let Some(room) = self.active(room_id) else {
            return;
        };
        let (last, total) = (room.last_seq, room.msg_total);
        let Some(m) = room.members.get_mut(user) else {
            return;
        };
        if last <= m.read_seq {
            return;
        }
        m.read_seq = last;
        m.read_n = total;
        m.own_unread.retain(|s| *s > last);
        room.pending_reads.insert(user.clone(), last);
        self.write(
            room_id,
            [Mutation::SetRead {
                room: room_id.clone(),
                user: user.clone(),
                read_seq: last,
                read_n: total,
            }],
            None,
        );
    }

    pub(super) fn receipts(&mut self, room_id: &RoomId, user: UserId, seq: u64, reply: ReplyTo) {
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        if !room.is_member(&user) {
            return reply.error(forbidden(format!("you are not a member of {room_id}")));
        }
        let mut readers: Vec<UserId> = room
            .members
            .iter()
            .filter(|(_, m)| m.read_seq >= seq)
            .map(|(u, _)| u.clone())
            .collect();
        let live = seq <= room.last_seq;
        // One pass over the subscribers, not one per member.
        let subscribed: std::collections::HashSet<&UserId> = if live {
            room.subscribers.values().map(|s| &s.user).collect()
        } else {
            Default::default()
        };
        let mut delivered: Vec<UserId> = room
            .members
            .iter()
            .filter(|(u, m)| m.delivered_seq >= seq || subscribed.contains(u))
            .map(|(u, _)| u.clone())
            .collect();
        readers.sort();
        delivered.sort();
        reply.send(&ServerFrame::Receipts(ReceiptsReply {
            id: reply.id,
            room: room_id.clone(),
            seq,
            readers,
            delivered,
        }));
    }
}
