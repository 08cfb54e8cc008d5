//! The message stream: send, edit, delete, react (each takes a seq and is
//! pushed live and replayed by resume), and history in latest state.

use super::cluster::Notice;
use super::command::{NewMessage, ReplyTo};
use super::dedupe::Seen;
use super::shard::{forbidden, not_found, sent, Ack, Done, Shard};
use crate::ids::{now_ms, RoomId, UserId};
use crate::proto::server::{DeleteEvent, EditEvent, HistoryPage, ReactionEvent};
use crate::proto::types::Role;
use crate::proto::{self, ErrorCode, ServerFrame, WireError};
use crate::store::{HistoryRange, MessageState, Mutation, StoreError, MAX_OWN_UNREAD};
use std::collections::BTreeMap;

/// Distinct emoji allowed on one message.
pub const MAX_EMOJI_PER_MESSAGE: usize = 32;
/// Edits allowed on one message (each later edit rewrites the earlier ones).
pub const MAX_EDITS_PER_MESSAGE: usize = 100;

/// Redaction: rewrites of the stored events that carry a message's text (its
/// `msg` and every earlier `edit`), so that replay shows only `state`, the
/// latest text or the tombstone. Written in the same batch as the change.
fn redactions(state: &MessageState, at: u64) -> Vec<Mutation> {
    let payload = |push: &ServerFrame| proto::encode(push).slice(proto::HEADER_LEN..);
    let mut out = Vec::with_capacity(1 + state.edits.len());
    out.push(Mutation::RewriteEvent {
        room: state.room.clone(),
        seq: state.seq,
        payload: payload(&ServerFrame::Msg(state.replay_view())),
        at,
    });
    for &(seq, ts) in &state.edits {
        out.push(Mutation::RewriteEvent {
            room: state.room.clone(),
            seq,
            payload: payload(&ServerFrame::Edit(EditEvent {
                room: state.room.clone(),
                seq,
                target: state.seq,
                from: state.from.clone(),
                body: state.body.clone(),
                ts,
            })),
            at,
        });
    }
    out
}

fn internal(e: StoreError) -> WireError {
    tracing::error!(error = %e, "store read failed");
    e.to_wire("the read")
}

impl Shard {
    /// Queues a stream event's write and push: `derived` (the rows derived from
    /// it), then the event row itself, the commit point. `state` is the message's
    /// new state for the room's hot cache.
    fn append_event(
        &mut self,
        room_id: &RoomId,
        seq: u64,
        push: ServerFrame,
        state: MessageState,
        mut extra: Vec<Mutation>,
        ack: Ack,
    ) {
        // Offline notices are only for new messages (not edits, deletes, reactions).
        let notice = match &push {
            ServerFrame::Msg(m) if self.cluster.is_some() => Some(Notice {
                seq,
                from: m.from.clone(),
                ts: m.ts,
                preview: m.body.chars().take(200).collect(),
                kind: m.kind,
            }),
            _ => None,
        };
        let framed = proto::encode(&push);
        let payload = framed.slice(proto::HEADER_LEN..);
        extra.push(Mutation::AppendEvent {
            room: room_id.clone(),
            seq,
            payload,
        });
        if let Some(room) = self.active(room_id) {
            room.put_hot(state);
        }
        // A send with a local_id keeps its mutations until acknowledged: if the
        // outcome is unknown, the client's retry re-applies exactly these (same seq).
        let retry = matches!(
            &ack,
            Ack::Sent {
                local_id: Some(_),
                ..
            }
        )
        .then(|| extra.clone());
        self.write(
            room_id,
            extra,
            Some(Done::Event {
                room: room_id.clone(),
                seq,
                framed,
                ack,
                notice,
                retry,
            }),
        );
    }

    pub(super) fn send(&mut self, room_id: &RoomId, user: UserId, msg: NewMessage, reply: ReplyTo) {
        // The system sender (server API) posts without being a member.
        let system = user.public() == self.cfg.system_user;
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        if !room.is_member(&user) && !system {
            let why = if room.meta.private {
                "is private"
            } else {
                "must be joined before sending"
            };
            return reply.error(forbidden(format!("{room_id} {why}")));
        }
        if let Some(lid) = &msg.local_id {
            match room.dedupe.get_mut(&user, lid) {
                Some(Seen::Committed { seq, ts }) => {
                    return reply.send(&sent(reply.id, room_id, *seq, *ts, msg.local_id.clone()))
                }
                Some(Seen::Pending { waiters, .. }) => return waiters.push(reply),
                Some(seen @ Seen::Uncertain { .. }) => {
                    // The first attempt's outcome is unknown: apply the very same
                    // mutations again (idempotent, same seq) and answer with that seq.
                    let pending = Seen::Pending {
                        seq: 0,
                        ts: 0,
                        waiters: Vec::new(),
                    };
                    if let Seen::Uncertain {
                        seq,
                        ts,
                        framed,
                        retry,
                    } = std::mem::replace(seen, pending)
                    {
                        if let Seen::Pending { seq: s, ts: t, .. } = seen {
                            (*s, *t) = (seq, ts);
                        }
                        let ack = Ack::Sent {
                            reply,
                            ts,
                            local_id: msg.local_id.clone(),
                            from: user.clone(),
                        };
                        let done = Done::Event {
                            room: room_id.clone(),
                            seq,
                            framed,
                            ack,
                            notice: None,
                            retry: Some(retry.clone()),
                        };
                        self.write(room_id, retry, Some(done));
                    }
                    return;
                }
                None if !room.dedupe_complete => {
                    // Older than the window: ask the store (off the loop; the room's
                    // later commands park meanwhile, so no other send of it interleaves).
                    let store = self.store.clone();
                    let (room, u, l) = (room_id.clone(), user.clone(), lid.clone());
                    let io = async move { store.find_local_id(&room, &u, &l).await };
                    let outbox = reply.outbox().clone();
                    let room = room_id.clone();
                    return self.start_io(
                        room_id,
                        Some(&outbox),
                        io,
                        move |shard, found| match found {
                            Ok(Some((seq, ts))) => {
                                reply.send(&sent(reply.id, &room, seq, ts, msg.local_id.clone()))
                            }
                            Ok(None) => shard.send_new(&room, user, msg, reply),
                            Err(e) => reply.error(internal(e)),
                        },
                    );
                }
                None => {}
            }
        }
        self.send_new(room_id, user, msg, reply)
    }

    /// A send that is not a retry: checks what it replies to, then takes a seq.
    fn send_new(&mut self, room_id: &RoomId, user: UserId, msg: NewMessage, reply: ReplyTo) {
        let outbox = reply.outbox().clone();
        let room = room_id.clone();
        let Some(target) = msg.reply_to else {
            return self.with_seq(room_id, &outbox, move |shard, seq| match seq {
                Ok(seq) => shard.send_at(&room, user, msg, reply, seq),
                Err(e) => reply.error(e),
            });
        };
        self.with_message(room_id, target, &outbox, move |shard, state| match state {
            Ok(Some(_)) => {
                let outbox = reply.outbox().clone();
                let id = room.clone();
                shard.with_seq(&room, &outbox, move |shard, seq| match seq {
                    Ok(seq) => shard.send_at(&id, user, msg, reply, seq),
                    Err(e) => reply.error(e),
                })
            }
            Ok(None) => reply.error(WireError::bad_request(format!(
                "reply_to: no message with seq {target} in this room"
            ))),
            Err(e) => reply.error(e),
        });
    }

    /// Stores and pushes a new message at `seq`.
    fn send_at(
        &mut self,
        room_id: &RoomId,
        user: UserId,
        msg: NewMessage,
        reply: ReplyTo,
        seq: u64,
    ) {
        let read_on_send = self.cfg.read_on_send;
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        room.msg_total += 1;
        room.last_msg_seq = seq;
        let n = room.msg_total;
        let ts = now_ms();
        if let Some(lid) = &msg.local_id {
            let complete = room.dedupe.insert(
                user.clone(),
                lid.clone(),
                Seen::Pending {
                    seq,
                    ts,
                    waiters: Vec::new(),
                },
            );
            room.dedupe_complete &= complete;
        }
        let mut extra = Vec::new();
        if let Some(m) = room.members.get_mut(&user) {
            if read_on_send {
                m.read_seq = seq;
                m.read_n = n;
                m.own_unread.clear();
                room.pending_reads.insert(user.clone(), seq);
                extra.push(Mutation::SetRead {
                    room: room_id.clone(),
                    user: user.clone(),
                    read_seq: seq,
                    read_n: n,
                });
            } else if m.own_unread.len() < MAX_OWN_UNREAD {
                m.own_unread.push(seq);
                extra.push(Mutation::AddOwnUnread {
                    room: room_id.clone(),
                    user: user.clone(),
                    seq,
                });
            }
        }
        if let Some(lid) = &msg.local_id {
            extra.push(Mutation::PutLocalId {
                room: room_id.clone(),
                user: user.clone(),
                local_id: lid.clone(),
                seq,
                ts,
            });
        }
        let state = MessageState {
            room: room_id.clone(),
            seq,
            n,
            from: user.clone(),
            body: msg.body,
            ts,
            local_id: msg.local_id.clone(),
            kind: msg.kind,
            attachments: msg.attachments,
            reply_to: msg.reply_to,
            edited_at: None,
            deleted: false,
            reactions: BTreeMap::new(),
            cell_at: BTreeMap::new(),
            edits: Vec::new(),
        };
        extra.insert(0, Mutation::PutMessage(Box::new(state.clone())));
        let push = ServerFrame::Msg(state.view(None));
        let ack = Ack::Sent {
            reply,
            ts,
            local_id: msg.local_id,
            from: user,
        };
        self.append_event(room_id, seq, push, state, extra, ack);
    }

    /// Common checks for edit/delete/react: membership, then the target
    /// message's state (read off the loop when not hot) goes to `then`.
    fn target(
        &mut self,
        room_id: &RoomId,
        user: &UserId,
        seq: u64,
        reply: ReplyTo,
        then: impl FnOnce(&mut Shard, MessageState, ReplyTo) + Send + 'static,
    ) {
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        if !room.is_member(user) {
            return reply.error(forbidden(format!("you are not a member of {room_id}")));
        }
        let outbox = reply.outbox().clone();
        let room = room_id.clone();
        self.with_message(room_id, seq, &outbox, move |shard, state| match state {
            Ok(Some(m)) => then(shard, m, reply),
            Ok(None) => reply.error(WireError::new(
                ErrorCode::NotFound,
                format!("no message with seq {seq} in {room}"),
            )),
            Err(e) => reply.error(e),
        });
    }

    /// Takes the next seq of the room for an event on `state`, then `then`.
    fn event_seq(
        &mut self,
        room_id: &RoomId,
        state: MessageState,
        reply: ReplyTo,
        then: impl FnOnce(&mut Shard, MessageState, u64, ReplyTo) + Send + 'static,
    ) {
        let outbox = reply.outbox().clone();
        self.with_seq(room_id, &outbox, move |shard, seq| match seq {
            Ok(seq) => then(shard, state, seq, reply),
            Err(e) => reply.error(e),
        });
    }

    pub(super) fn edit(
        &mut self,
        room_id: &RoomId,
        user: UserId,
        seq: u64,
        body: String,
        reply: ReplyTo,
    ) {
        let room = room_id.clone();
        let who = user.clone();
        self.target(room_id, &who, seq, reply, move |shard, state, reply| {
            shard.edit_target(&room, user, body, state, reply)
        });
    }

    fn edit_target(
        &mut self,
        room_id: &RoomId,
        user: UserId,
        body: String,
        state: MessageState,
        reply: ReplyTo,
    ) {
        if state.deleted {
            return reply.error(WireError::bad_request("seq: the message is deleted"));
        }
        if state.from != user {
            return reply.error(forbidden("only the author can edit a message"));
        }
        if body.is_empty() && state.kind.is_text() {
            return reply.error(WireError::bad_request("body: must not be empty"));
        }
        if state.edits.len() >= MAX_EDITS_PER_MESSAGE {
            return reply.error(WireError::bad_request(format!(
                "seq: a message can be edited at most {MAX_EDITS_PER_MESSAGE} times"
            )));
        }
        let now = now_ms();
        let window = self.cfg.edit_window.as_millis() as u64;
        if now.saturating_sub(state.ts) > window {
            return reply.error(forbidden(format!(
                "the edit window of {} s has passed",
                window / 1000
            )));
        }
        let room = room_id.clone();
        self.event_seq(
            room_id,
            state,
            reply,
            move |shard, mut state, event_seq, reply| {
                let (room_id, seq) = (&room, state.seq);
                state.body = body.clone();
                state.edited_at = Some(now);
                let mut derived = vec![Mutation::EditMessage {
                    room: room_id.clone(),
                    seq,
                    body: body.clone(),
                    edited_at: now,
                    at: event_seq,
                }];
                // The original `msg` and the earlier edits now replay the new text.
                derived.extend(redactions(&state, event_seq));
                state.edits.push((event_seq, now));
                let push = ServerFrame::Edit(EditEvent {
                    room: room_id.clone(),
                    seq: event_seq,
                    target: seq,
                    from: user,
                    body,
                    ts: now,
                });
                shard.append_event(room_id, event_seq, push, state, derived, Ack::Ok(reply));
            },
        );
    }

    pub(super) fn delete(&mut self, room_id: &RoomId, user: UserId, seq: u64, reply: ReplyTo) {
        let room = room_id.clone();
        let who = user.clone();
        self.target(room_id, &who, seq, reply, move |shard, state, reply| {
            shard.delete_target(&room, user, state, reply)
        });
    }

    fn delete_target(
        &mut self,
        room_id: &RoomId,
        user: UserId,
        state: MessageState,
        reply: ReplyTo,
    ) {
        if state.deleted {
            return reply.ok(room_id, None);
        }
        let is_admin = self
            .active(room_id)
            .and_then(|r| r.role(&user))
            .is_some_and(|r| r >= Role::Admin);
        if state.from != user && !is_admin {
            return reply.error(forbidden(
                "only the author or a room admin can delete a message",
            ));
        }
        let room = room_id.clone();
        self.event_seq(
            room_id,
            state,
            reply,
            move |shard, mut state, event_seq, reply| {
                let (room_id, seq) = (&room, state.seq);
                let now = now_ms();
                state.deleted = true;
                state.body.clear();
                state.attachments.clear();
                state.reactions.clear();
                if let Some(room) = shard.active(room_id) {
                    room.deletions.push((seq, state.from.clone()));
                }
                // The original `msg` and every edit now replay as the tombstone.
                let mut extra = redactions(&state, event_seq);
                extra.push(Mutation::DeleteMessage {
                    room: room_id.clone(),
                    seq,
                    sender: state.from.clone(),
                    at: event_seq,
                });
                let push = ServerFrame::Delete(DeleteEvent {
                    room: room_id.clone(),
                    seq: event_seq,
                    target: seq,
                    by: user,
                    ts: now,
                });
                shard.append_event(room_id, event_seq, push, state, extra, Ack::Ok(reply));
            },
        );
    }

    pub(super) fn react(
        &mut self,
        room_id: &RoomId,
        user: UserId,
        seq: u64,
        emoji: String,
        on: bool,
        reply: ReplyTo,
    ) {
        let room = room_id.clone();
        let who = user.clone();
        self.target(room_id, &who, seq, reply, move |shard, state, reply| {
            shard.react_target(&room, user, (emoji, on), state, reply)
        });
    }

    fn react_target(
        &mut self,
        room_id: &RoomId,
        user: UserId,
        (emoji, on): (String, bool),
        mut state: MessageState,
        reply: ReplyTo,
    ) {
        if state.deleted {
            return reply.error(WireError::bad_request("seq: the message is deleted"));
        }
        let has = state
            .reactions
            .get(&emoji)
            .is_some_and(|users| users.contains(&user));
        if has == on {
            // Already in that state: nothing changes, nothing is stored.
            return reply.ok(room_id, None);
        }
        if on {
            if !state.reactions.contains_key(&emoji)
                && state.reactions.len() >= MAX_EMOJI_PER_MESSAGE
            {
                return reply.error(WireError::bad_request(format!(
                    "emoji: a message takes at most {MAX_EMOJI_PER_MESSAGE} different emoji"
                )));
            }
            state
                .reactions
                .entry(emoji.clone())
                .or_default()
                .push(user.clone());
        } else if let Some(users) = state.reactions.get_mut(&emoji) {
            users.retain(|u| u != &user);
            if users.is_empty() {
                state.reactions.remove(&emoji);
            }
        }
        let room = room_id.clone();
        self.event_seq(
            room_id,
            state,
            reply,
            move |shard, state, event_seq, reply| {
                let (room_id, seq) = (&room, state.seq);
                let derived = vec![Mutation::React {
                    room: room_id.clone(),
                    seq,
                    emoji: emoji.clone(),
                    user: user.clone(),
                    on,
                    at: event_seq,
                }];
                let push = ServerFrame::Reaction(ReactionEvent {
                    room: room_id.clone(),
                    seq: event_seq,
                    target: seq,
                    user,
                    emoji,
                    on,
                    ts: now_ms(),
                });
                shard.append_event(room_id, event_seq, push, state, derived, Ack::Ok(reply));
            },
        );
    }

    pub(super) fn history(
        &mut self,
        room_id: &RoomId,
        user: UserId,
        range: HistoryRange,
        limit: u32,
        reply: ReplyTo,
    ) {
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        if !room.can_read(&user) {
            return reply.error(forbidden(format!("{room_id} is private")));
        }
        let store = self.store.clone();
        let room_id = room_id.clone();
        tokio::spawn(async move {
            match store.history(&room_id, range, limit as usize).await {
                Ok((states, more)) => {
                    let messages = states.iter().map(|m| m.view(Some(&user))).collect();
                    reply.send(&ServerFrame::History(HistoryPage {
                        id: reply.id,
                        room: room_id,
                        messages,
                        more,
                    }));
                }
                Err(e) => reply.error(internal(e)),
            }
        });
    }
}
