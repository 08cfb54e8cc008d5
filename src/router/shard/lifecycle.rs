//! A room's life in a shard: loaded from the store on first use (commands
//! queue meanwhile), created, reloaded after a failed write, unloaded when idle.

use super::{not_found, Done, Shard, ShardMsg, Slot, Then};
use crate::ids::{now_ms, RoomId, UserId};
use crate::proto::server::Direct;
use crate::proto::types::{Role, RoomKind};
use crate::proto::{ErrorCode, ServerFrame, WireError};
use crate::router::command::{Command, ReplyTo};
use crate::router::room::Room;
use crate::store::{LoadedRoom, MemberState, Mutation, RoomMeta, StoreResult};
use std::time::Instant;

impl Shard {
    pub(super) fn start_load(&mut self, room_id: RoomId, first: Command) {
        self.rooms
            .insert(room_id.clone(), Slot::Loading(vec![first]));
        self.parked += 1;
        self.spawn_load(room_id);
    }

    pub(super) fn spawn_load(&self, room_id: RoomId) {
        let store = self.store.clone();
        let tx = self.tx.clone();
        let recent = self.cfg.dedupe_window;
        tokio::spawn(async move {
            let result = store.load_room(&room_id, recent).await;
            if let Some(tx) = tx.upgrade() {
                let _ = tx.send(ShardMsg::Loaded(room_id, result)).await;
            }
        });
    }

    pub(super) fn loaded(&mut self, room_id: RoomId, result: StoreResult<Option<LoadedRoom>>) {
        let queue = match self.rooms.remove(&room_id) {
            Some(Slot::Loading(q)) => {
                self.parked -= q.len();
                q
            }
            Some(Slot::Active(mut room)) => {
                // A reload after a failed write: refresh, keep the subscribers.
                match result {
                    Ok(Some(l)) => room.refresh_from(Room::from_loaded(l, self.cfg.dedupe_window)),
                    Ok(None) => room.meta.deleted = true,
                    Err(e) => {
                        tracing::error!(room = %room_id, error = %e, "reloading room failed; retrying");
                        room.needs_reload = true;
                    }
                }
                self.rooms.insert(room_id, Slot::Active(room));
                return;
            }
            None => return,
        };
        match result {
            Ok(Some(loaded)) => {
                let room = Room::from_loaded(loaded, self.cfg.dedupe_window);
                self.rooms
                    .insert(room_id.clone(), Slot::Active(Box::new(room)));
                for cmd in queue {
                    // Through `command`: a room loaded as deleted answers as such.
                    // (Parks behind an operation a previous command started.)
                    self.command(room_id.clone(), cmd);
                }
            }
            Ok(None) => {
                let mut rest = Vec::new();
                for cmd in queue {
                    match cmd {
                        Command::StartDirect { user, peer, reply }
                            if !self.rooms.contains_key(&room_id) =>
                        {
                            self.create_direct(room_id.clone(), user, peer, reply);
                        }
                        Command::Create { meta, reply } if !self.rooms.contains_key(&room_id) => {
                            self.create(room_id.clone(), meta, reply);
                        }
                        other => rest.push(other),
                    }
                }
                for cmd in rest {
                    if self.rooms.contains_key(&room_id) {
                        self.command(room_id.clone(), cmd);
                    } else if let Some(r) = cmd.reply() {
                        r.error(not_found(&room_id));
                    }
                }
            }
            Err(e) => {
                tracing::error!(room = %room_id, error = %e, "loading room failed");
                let wire = e.to_wire("loading the room");
                for cmd in queue {
                    if let Some(r) = cmd.reply() {
                        r.error(wire.clone());
                    }
                }
            }
        }
    }

    pub(super) fn create(&mut self, room_id: RoomId, meta: RoomMeta, reply: ReplyTo) {
        if self.rooms.contains_key(&room_id) {
            reply.error(WireError::new(
                ErrorCode::Internal,
                "room id collision; retry",
            ));
            return;
        }
        let owner = meta.created_by.clone();
        let mut room = Room::new(meta.clone(), self.cfg.dedupe_window);
        let state = MemberState::new(Role::Owner, meta.created_at);
        room.members.insert(owner.clone(), state.clone());
        self.rooms
            .insert(room_id.clone(), Slot::Active(Box::new(room)));
        let mut muts = vec![
            Mutation::PutRoom(meta.clone()),
            Mutation::PutMember {
                room: room_id.clone(),
                user: owner,
                role: state.role,
                joined_at: state.joined_at,
            },
        ];
        if !meta.private {
            muts.push(Mutation::PutPublic {
                name: meta.name.clone(),
                room: room_id.clone(),
            });
        }
        let frame = ServerFrame::Created(crate::proto::server::Created {
            id: reply.id,
            room: room_id.clone(),
            name: meta.name,
            private: meta.private,
        });
        let done = Done::Reply {
            room: room_id.clone(),
            reply: Some(reply),
            frame: Some(Box::new(frame)),
            push: None,
            then: Then::Nothing,
        };
        self.write(&room_id, muts, Some(done));
    }

    pub(super) fn create_direct(
        &mut self,
        room_id: RoomId,
        user: UserId,
        peer: UserId,
        reply: ReplyTo,
    ) {
        let now = now_ms();
        let meta = RoomMeta {
            id: room_id.clone(),
            name: String::new(),
            description: String::new(),
            private: true,
            kind: RoomKind::Direct,
            created_by: user.clone(),
            created_at: now,
            deleted: false,
            members: 2,
        };
        let mut room = Room::new(meta.clone(), self.cfg.dedupe_window);
        let mut muts = vec![Mutation::PutRoom(meta)];
        for u in [&user, &peer] {
            let state = MemberState::new(Role::Member, now);
            room.members.insert(u.clone(), state.clone());
            muts.push(Mutation::PutMember {
                room: room_id.clone(),
                user: u.clone(),
                role: state.role,
                joined_at: state.joined_at,
            });
        }
        self.rooms
            .insert(room_id.clone(), Slot::Active(Box::new(room)));
        let frame = ServerFrame::Direct(Direct {
            id: reply.id,
            room: room_id.clone(),
            peer,
        });
        let done = Done::Reply {
            room: room_id.clone(),
            reply: Some(reply),
            frame: Some(Box::new(frame)),
            push: None,
            then: Then::Nothing,
        };
        self.write(&room_id, muts, Some(done));
    }

    pub(super) fn unload_idle(&mut self) {
        self.report_fanout();
        let now = Instant::now();
        let idle = self.cfg.idle_unload;
        let busy = &self.busy;
        self.rooms.retain(|id, slot| match slot {
            Slot::Active(r) => {
                busy.contains_key(id)
                    || !(r.subscribers.is_empty()
                        && r.inflight == 0
                        && now.duration_since(r.last_active) >= idle)
            }
            Slot::Loading(_) => true,
        });
    }
}
