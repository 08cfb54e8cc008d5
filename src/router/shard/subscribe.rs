//! Subscriptions: a session subscribes (after its membership is stored),
//! learns who is online, catches up by replay, and unsubscribes.

use super::io::Parked;
use super::{not_found, Shard};
use crate::ids::{RoomId, SessionId, UserId};
use crate::proto::server::Joined;
use crate::proto::types::Role;
use crate::proto::ServerFrame;
use crate::router::command::ReplyTo;
use crate::router::room::Sub;
use crate::store::Mutation;

impl Shard {
    /// Subscribes a session (the membership is in place) and answers `joined`;
    /// with `since`, replays the stored events after it before going live.
    /// Who is online (and, multi-node, the cluster subscription) is looked up
    /// off the loop first; the session is added when that is back, so that
    /// `joined.seq` and the pushes that follow line up exactly.
    pub(in crate::router) fn subscribe(
        &mut self,
        room_id: &RoomId,
        session: SessionId,
        user: UserId,
        since: Option<u64>,
        reply: ReplyTo,
    ) {
        if self.is_busy(room_id) {
            let work = (room_id.clone(), session, user, since, reply);
            return self.park(room_id, Parked::Subscribe(work));
        }
        let cluster = self.cluster.clone();
        let presence = self.presence.clone();
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        let member_ids: Vec<UserId> = room.members.keys().cloned().collect();
        // Multi-node: before a room's first local subscriber, start receiving
        // its traffic from other nodes and catch up with the seq they reached.
        let cluster = cluster.filter(|_| !room.bus_subscribed);
        let room = room_id.clone();
        let outbox = reply.outbox().clone();
        let io = async move {
            let bus = match cluster {
                Some(c) => Some(match c.subscribe(&room).await {
                    Ok(()) => c.current_seq(&room).await.map(Some),
                    Err(e) => Err(e),
                }),
                None => None,
            };
            // Who is online (the presence seam answers for every node).
            let statuses = presence.get_many(&member_ids).await;
            let online: Vec<UserId> = statuses
                .into_iter()
                .filter(|p| p.status != crate::proto::types::Status::Offline)
                .map(|p| p.user)
                .collect();
            (bus, online)
        };
        let id = room_id.clone();
        self.start_io(room_id, Some(&outbox), io, move |shard, (bus, online)| {
            shard.subscribed(&id, session, user, since, reply, bus, online)
        });
    }

    /// The second half of [`subscribe`](Self::subscribe), on the loop.
    #[allow(clippy::too_many_arguments)]
    fn subscribed(
        &mut self,
        room_id: &RoomId,
        session: SessionId,
        user: UserId,
        since: Option<u64>,
        reply: ReplyTo,
        bus: Option<Result<Option<u64>, String>>,
        online: Vec<UserId>,
    ) {
        let presence_list_max = self.cfg.presence_list_max;
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        match bus {
            None => {}
            Some(Err(e)) => {
                tracing::warn!(room = %room_id, error = %e, "cluster subscribe failed; live traffic from other nodes may be missed");
            }
            Some(Ok(current)) => {
                room.bus_subscribed = true;
                if let Some(cur) = current {
                    // Events up to `cur` happened elsewhere while nobody here listened:
                    // they are in the shared store (history), not pushed.
                    if cur > room.last_seq && room.pending.is_empty() {
                        room.last_seq = cur;
                        room.next_seq = room.next_seq.max(cur + 1);
                    }
                }
            }
        }
        let role = room.role(&user).unwrap_or(Role::Member);
        let last = room.last_seq;
        let members = room.members.len() as u32;
        let replay_from = since.filter(|s| *s < last);
        let complete = since.map(|s| room.first_seq <= 1 || s.saturating_add(1) >= room.first_seq);
        room.subscribers.insert(
            session,
            Sub {
                user: user.clone(),
                outbox: reply.outbox().clone(),
                held: replay_from.map(|_| Vec::new()),
            },
        );
        let online_count = online.len() as u32;
        reply.send(&ServerFrame::Joined(Joined {
            id: reply.id,
            room: room_id.clone(),
            seq: last,
            complete,
            role,
            online: (members as usize <= presence_list_max).then_some(online),
            online_count,
            members,
        }));
        if let Some(from) = replay_from {
            self.spawn_replay(room_id.clone(), session, reply.outbox().clone(), from, last);
        }
    }

    /// Ends one session's subscription; records what its user has been delivered.
    pub(in crate::router) fn unsubscribe(&mut self, room_id: &RoomId, session: SessionId) {
        let Some(room) = self.active(room_id) else {
            return;
        };
        let Some(sub) = room.subscribers.swap_remove(&session) else {
            return;
        };
        let last = room.last_seq;
        if !room.user_is_subscribed(&sub.user) {
            // Their last session here is gone: so is their typing indicator.
            self.end_typing(room_id, &sub.user);
            let Some(room) = self.active(room_id) else {
                return;
            };
            if let Some(m) = room.members.get_mut(&sub.user) {
                if m.delivered_seq < last {
                    m.delivered_seq = last;
                    let put = Mutation::SetDelivered {
                        room: room_id.clone(),
                        user: sub.user,
                        seq: last,
                    };
                    self.write(room_id, [put], None);
                }
            }
        }
    }
}
