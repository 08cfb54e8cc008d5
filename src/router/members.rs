//! Membership and room administration: join (public, invite), leave, kick,
//! ban, roles, ownership transfer, room updates and deletion, invites,
//! direct rooms, the member list. Permission rules: owner > admin > member;
//! an actor acts only on members of a lower role.

use super::command::{AdminOp, ReplyTo};
use super::shard::{forbidden, not_found, Done, Shard, Then};
use crate::ids::{now_ms, RoomId, SessionId, UserId};
use crate::proto::server::{
    InviteInfo, InviteReply, InvitesReply, MemberInfo, MemberJoined, MemberLeft, MembersReply,
    RoleChanged, RoomDeleted, RoomUpdated,
};
use crate::proto::types::{LeaveReason, Role};
use crate::proto::{ErrorCode, ServerFrame, WireError};
use crate::store::{Invite, MemberState, Mutation};

fn bad(msg: impl Into<String>) -> WireError {
    WireError::bad_request(msg)
}

pub(super) fn invite_info(i: &Invite) -> InviteInfo {
    InviteInfo {
        code: i.code.clone(),
        room: i.room.clone(),
        created_by: i.created_by.clone(),
        expires_at: i.expires_at,
        max_uses: i.max_uses,
        uses: i.uses,
    }
}

impl Shard {
    pub(super) fn join(
        &mut self,
        room_id: &RoomId,
        session: SessionId,
        user: UserId,
        since: Option<u64>,
        invite: Option<String>,
        reply: ReplyTo,
    ) {
        let read_on_join = self.cfg.read_on_join;
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        if room.bans.contains(&user) {
            return reply.error(forbidden(format!("you are banned from {room_id}")));
        }
        if room.is_member(&user) {
            if read_on_join {
                self.mark_read_latest(room_id, &user);
            }
            return self.subscribe(room_id, session, user, since, reply);
        }
        let mut muts = Vec::new();
        if !room.meta.kind.is_room() {
            return reply.error(forbidden("direct rooms have exactly their two members"));
        }
        if room.meta.private {
            let Some(code) = invite else {
                return reply.error(forbidden(format!(
                    "{room_id} is private; you need an invite"
                )));
            };
            let Some(inv) = room.invites.get_mut(&code) else {
                return reply.error(forbidden("unknown invite code"));
            };
            if let Some(why) = inv.unusable(now_ms()) {
                return reply.error(forbidden(why));
            }
            inv.uses += 1;
            muts.push(Mutation::PutInvite(inv.clone()));
        }
        // New members start with everything up to now read.
        let mut state = MemberState::new(Role::Member, now_ms());
        state.read_seq = room.last_seq;
        state.read_n = room.msg_total;
        room.members.insert(user.clone(), state.clone());
        room.meta.members = room.members.len() as u32;
        muts.push(Mutation::PutRoom(room.meta.clone()));
        muts.push(Mutation::PutMember {
            room: room_id.clone(),
            user: user.clone(),
            role: state.role,
            joined_at: state.joined_at,
        });
        muts.push(Mutation::SetRead {
            room: room_id.clone(),
            user: user.clone(),
            read_seq: state.read_seq,
            read_n: state.read_n,
        });
        let push = ServerFrame::MemberJoined(MemberJoined {
            room: room_id.clone(),
            user: user.clone(),
            role: Role::Member,
        });
        let announce = Done::Reply {
            room: room_id.clone(),
            reply: None,
            frame: None,
            push: Some(Box::new(push)),
            then: Then::Nothing,
        };
        self.write(room_id, muts, Some(announce));
        self.done.push(Done::Subscribe {
            room: room_id.clone(),
            session,
            user,
            since,
            reply,
        });
    }

    pub(super) fn start_direct(
        &mut self,
        room_id: &RoomId,
        user: UserId,
        peer: UserId,
        reply: ReplyTo,
    ) {
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        if room.meta.kind.is_room() {
            return reply.error(WireError::new(
                ErrorCode::Conflict,
                "that id belongs to a group room",
            ));
        }
        if !room.is_member(&user) {
            // Only a hash collision could get here.
            return reply.error(forbidden("not your direct room"));
        }
        reply.send(&ServerFrame::Direct(crate::proto::server::Direct {
            id: reply.id,
            room: room_id.clone(),
            peer,
        }));
    }

    fn remove_member(
        &mut self,
        room_id: &RoomId,
        user: &UserId,
        reason: LeaveReason,
        reply: ReplyTo,
        extra: Vec<Mutation>,
    ) {
        self.end_typing(room_id, user);
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        room.members.remove(user);
        room.meta.members = room.members.len() as u32;
        let mut muts = vec![
            Mutation::DelMember {
                room: room_id.clone(),
                user: user.clone(),
            },
            Mutation::PutRoom(room.meta.clone()),
        ];
        muts.extend(extra);
        let push = ServerFrame::MemberLeft(MemberLeft {
            room: room_id.clone(),
            user: user.clone(),
            reason,
        });
        self.write_then_ok(
            room_id,
            muts,
            reply,
            Some(push),
            Then::DropUser(user.clone()),
        );
    }

    pub(super) fn leave_room(&mut self, room_id: &RoomId, user: UserId, reply: ReplyTo) {
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        match room.role(&user) {
            None => reply.error(forbidden(format!("you are not a member of {room_id}"))),
            Some(_) if !room.meta.kind.is_room() => {
                reply.error(forbidden("direct rooms cannot be left"))
            }
            Some(Role::Owner) if room.members.len() > 1 => reply.error(forbidden(
                "the owner must transfer ownership before leaving",
            )),
            Some(Role::Owner) => reply.error(forbidden(
                "the last member of a room deletes it instead of leaving",
            )),
            Some(_) => self.remove_member(room_id, &user, LeaveReason::Left, reply, Vec::new()),
        }
    }

    pub(super) fn admin(
        &mut self,
        room_id: &RoomId,
        actor: UserId,
        target: UserId,
        op: AdminOp,
        reply: ReplyTo,
    ) {
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        if !room.meta.kind.is_room() {
            return reply.error(forbidden("direct rooms have no administration"));
        }
        let Some(actor_role) = room.role(&actor) else {
            return reply.error(forbidden(format!("you are not a member of {room_id}")));
        };
        if actor == target {
            return reply.error(bad("user: you cannot do this to yourself"));
        }
        let target_role = room.role(&target);
        let needs = match op {
            AdminOp::Kick | AdminOp::Ban | AdminOp::Unban => Role::Admin,
            AdminOp::Transfer | AdminOp::SetRole(_) => Role::Owner,
        };
        if actor_role < needs {
            return reply.error(forbidden(
                format!("needs the {needs:?} role").to_lowercase(),
            ));
        }
        if matches!(op, AdminOp::Kick | AdminOp::Ban)
            && target_role.is_some_and(|t| t >= actor_role)
        {
            return reply.error(forbidden("you can only act on members with a lower role"));
        }
        match op {
            AdminOp::Kick => {
                if target_role.is_none() {
                    return reply.error(WireError::new(
                        ErrorCode::NotFound,
                        format!("{target} is not a member"),
                    ));
                }
                self.remove_member(room_id, &target, LeaveReason::Kicked, reply, Vec::new());
            }
            AdminOp::Ban => {
                room.bans.insert(target.clone());
                let ban = Mutation::PutBan {
                    room: room_id.clone(),
                    user: target.clone(),
                };
                if target_role.is_some() {
                    self.remove_member(room_id, &target, LeaveReason::Banned, reply, vec![ban]);
                } else {
                    self.write_then_ok(room_id, [ban], reply, None, Then::Nothing);
                }
            }
            AdminOp::Unban => {
                room.bans.remove(&target);
                let unban = Mutation::DelBan {
                    room: room_id.clone(),
                    user: target,
                };
                self.write_then_ok(room_id, [unban], reply, None, Then::Nothing);
            }
            AdminOp::SetRole(role) => {
                // Check order (proto-spec "Permissions"): a non-member target
                // is `not_found` before the role is looked at.
                let Some(m) = room.members.get_mut(&target) else {
                    return reply.error(WireError::new(
                        ErrorCode::NotFound,
                        format!("{target} is not a member"),
                    ));
                };
                if role == Role::Owner {
                    return reply.error(bad("role: use transfer to hand over ownership"));
                }
                m.role = role;
                let put = Mutation::SetRole {
                    room: room_id.clone(),
                    user: target.clone(),
                    role,
                };
                let push = ServerFrame::RoleChanged(RoleChanged {
                    room: room_id.clone(),
                    user: target,
                    role,
                });
                self.write_then_ok(room_id, [put], reply, Some(push), Then::Nothing);
            }
            AdminOp::Transfer => {
                if target_role.is_none() {
                    return reply.error(WireError::new(
                        ErrorCode::NotFound,
                        format!("{target} is not a member"),
                    ));
                }
                let mut muts = Vec::new();
                for (user, role) in [(&target, Role::Owner), (&actor, Role::Admin)] {
                    if let Some(m) = room.members.get_mut(user) {
                        m.role = role;
                        muts.push(Mutation::SetRole {
                            room: room_id.clone(),
                            user: user.clone(),
                            role,
                        });
                    }
                }
                let pushes = [
                    ServerFrame::RoleChanged(RoleChanged {
                        room: room_id.clone(),
                        user: target,
                        role: Role::Owner,
                    }),
                    ServerFrame::RoleChanged(RoleChanged {
                        room: room_id.clone(),
                        user: actor,
                        role: Role::Admin,
                    }),
                ];
                // Both role changes are pushed once the write is stored; the reply goes last.
                let [first, second] = pushes;
                self.done.push(Done::Reply {
                    room: room_id.clone(),
                    reply: None,
                    frame: None,
                    push: Some(Box::new(first)),
                    then: Then::Nothing,
                });
                self.write_then_ok(room_id, muts, reply, Some(second), Then::Nothing);
            }
        }
    }

    pub(super) fn update_room(
        &mut self,
        room_id: &RoomId,
        user: UserId,
        name: Option<String>,
        description: Option<String>,
        private: Option<bool>,
        reply: ReplyTo,
    ) {
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        if !room.meta.kind.is_room() {
            return reply.error(forbidden("direct rooms cannot be changed"));
        }
        if room.role(&user) != Some(Role::Owner) {
            return reply.error(forbidden("only the owner can change the room"));
        }
        let mut muts = Vec::new();
        let old = room.meta.clone();
        if let Some(n) = name {
            room.meta.name = n;
        }
        if let Some(d) = description {
            room.meta.description = d;
        }
        if let Some(p) = private {
            room.meta.private = p;
        }
        if !old.private {
            muts.push(Mutation::DelPublic {
                name: old.name.clone(),
                room: room_id.clone(),
            });
        }
        if !room.meta.private {
            muts.push(Mutation::PutPublic {
                name: room.meta.name.clone(),
                room: room_id.clone(),
            });
        }
        muts.push(Mutation::PutRoom(room.meta.clone()));
        let push = ServerFrame::RoomUpdated(RoomUpdated {
            room: room_id.clone(),
            name: room.meta.name.clone(),
            description: room.meta.description.clone(),
            private: room.meta.private,
        });
        self.write_then_ok(room_id, muts, reply, Some(push), Then::Nothing);
    }

    pub(super) fn delete_room(&mut self, room_id: &RoomId, user: UserId, reply: ReplyTo) {
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        if !room.meta.kind.is_room() {
            return reply.error(forbidden("direct rooms cannot be deleted"));
        }
        if room.role(&user) != Some(Role::Owner) {
            return reply.error(forbidden("only the owner can delete the room"));
        }
        let mut muts: Vec<Mutation> = room
            .members
            .keys()
            .map(|u| Mutation::DelMember {
                room: room_id.clone(),
                user: u.clone(),
            })
            .collect();
        if !room.meta.private {
            muts.push(Mutation::DelPublic {
                name: room.meta.name.clone(),
                room: room_id.clone(),
            });
        }
        room.members.clear();
        room.meta.deleted = true;
        room.meta.members = 0;
        muts.push(Mutation::PutRoom(room.meta.clone()));
        let push = ServerFrame::RoomDeleted(RoomDeleted {
            room: room_id.clone(),
        });
        self.write_then_ok(room_id, muts, reply, Some(push), Then::DropAll);
    }

    /// Writes `mutations`; once stored, replies `ok {room}` and pushes `push` to the room.
    fn write_then_ok(
        &mut self,
        room_id: &RoomId,
        mutations: impl IntoIterator<Item = Mutation>,
        reply: ReplyTo,
        push: Option<ServerFrame>,
        then: Then,
    ) {
        let done = Done::Reply {
            room: room_id.clone(),
            frame: Some(Box::new(ServerFrame::ok(
                reply.id,
                Some(room_id.clone()),
                None,
            ))),
            reply: Some(reply),
            push: push.map(Box::new),
            then,
        };
        self.write(room_id, mutations, Some(done));
    }

    fn require_admin(&mut self, room_id: &RoomId, user: &UserId, reply: &ReplyTo) -> bool {
        let Some(room) = self.active(room_id) else {
            reply.error(not_found(room_id));
            return false;
        };
        if !room.meta.kind.is_room() {
            reply.error(forbidden("direct rooms have no invites"));
            return false;
        }
        if room.role(user).is_none_or(|r| r < Role::Admin) {
            reply.error(forbidden("needs the admin role"));
            return false;
        }
        true
    }

    pub(super) fn create_invite(
        &mut self,
        room_id: &RoomId,
        user: UserId,
        expires_in_s: Option<u64>,
        max_uses: Option<u32>,
        reply: ReplyTo,
    ) {
        if !self.require_admin(room_id, &user, &reply) {
            return;
        }
        let now = now_ms();
        let max = self.cfg.max_invites_per_room;
        if let Some(room) = self.active(room_id) {
            // Unusable invites are kept only to name the reason a join fails;
            // past the quota they are forgotten (a join with one then gets
            // "unknown invite code", also `forbidden`).
            if room.invites.len() >= max {
                room.invites.retain(|_, i| i.unusable(now).is_none());
            }
            if room.invites.len() >= max {
                return reply.error(WireError::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "the room has {max} usable invites, the most allowed; revoke one first"
                    ),
                ));
            }
        }
        let invite = Invite {
            code: hex::encode(rand::random::<[u8; 12]>()),
            room: room_id.clone(),
            created_by: user,
            created_at: now,
            expires_at: expires_in_s.map(|s| now.saturating_add(s.saturating_mul(1000))),
            max_uses,
            uses: 0,
            revoked: false,
        };
        if let Some(room) = self.active(room_id) {
            room.invites.insert(invite.code.clone(), invite.clone());
        }
        let frame = ServerFrame::Invite(InviteReply {
            id: reply.id,
            invite: invite_info(&invite),
        });
        let done = Done::Reply {
            room: room_id.clone(),
            reply: Some(reply),
            frame: Some(Box::new(frame)),
            push: None,
            then: Then::Nothing,
        };
        self.write(room_id, [Mutation::PutInvite(invite)], Some(done));
    }

    pub(super) fn invites(&mut self, room_id: &RoomId, user: UserId, reply: ReplyTo) {
        if !self.require_admin(room_id, &user, &reply) {
            return;
        }
        let Some(room) = self.active(room_id) else {
            return;
        };
        let mut invites: Vec<InviteInfo> = room
            .invites
            .values()
            .filter(|i| !i.revoked)
            .map(invite_info)
            .collect();
        invites.sort_by(|a, b| a.code.cmp(&b.code));
        reply.send(&ServerFrame::Invites(InvitesReply {
            id: reply.id,
            room: room_id.clone(),
            invites,
        }));
    }

    pub(super) fn revoke_invite(
        &mut self,
        room_id: &RoomId,
        user: UserId,
        code: String,
        reply: ReplyTo,
    ) {
        if !self.require_admin(room_id, &user, &reply) {
            return;
        }
        let Some(room) = self.active(room_id) else {
            return;
        };
        let Some(inv) = room.invites.get_mut(&code) else {
            return reply.error(WireError::new(ErrorCode::NotFound, "no such invite"));
        };
        inv.revoked = true;
        let put = Mutation::PutInvite(inv.clone());
        self.write_then_ok(room_id, [put], reply, None, Then::Nothing);
    }

    pub(super) fn members(&mut self, room_id: &RoomId, user: UserId, reply: ReplyTo) {
        let Some(room) = self.active(room_id) else {
            return reply.error(not_found(room_id));
        };
        if !room.can_read(&user) {
            return reply.error(forbidden(format!("{room_id} is private")));
        }
        let mut members: Vec<MemberInfo> = room
            .members
            .iter()
            .map(|(u, m)| MemberInfo {
                user: u.clone(),
                role: m.role,
                read_seq: m.read_seq,
            })
            .collect();
        members.sort_by(|a, b| b.role.cmp(&a.role).then_with(|| a.user.cmp(&b.user)));
        reply.send(&ServerFrame::Members(MembersReply {
            id: reply.id,
            room: room_id.clone(),
            members,
        }));
    }
}
