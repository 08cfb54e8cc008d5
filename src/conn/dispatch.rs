//! Turns a session's validated requests into router commands (or answers the
//! user-scoped ones — room list, directory, favorites, presence — here),
//! after the rate limits. Every refusal becomes an `error` reply here.

use super::outbox::Outbox;
use crate::ids::{now_ms, RoomId, SessionId, UserId};
use crate::proto::client::ClientFrame;
use crate::proto::server::{
    FavoritesReply, PresenceFrame, PublicRoom, PublicRoomsReply, RoomSummary, RoomsReply,
};
use crate::proto::{ErrorCode, ServerFrame, WireError};
use crate::ratelimit::{Action, Decision};
use crate::router::{direct_room_id, AdminOp, Command, NewMessage, ReplyTo};
use crate::server::Core;
use crate::store::{HistoryRange, Mutation, RoomMeta, RoomOverview};
use std::sync::Arc;

fn limited(action: Action, retry: std::time::Duration) -> WireError {
    crate::metrics::rate_limited(action);
    // Rounded up: a client that waits exactly the hint must not be refused again.
    let ms = (retry.as_micros().div_ceil(1000) as u64).max(1);
    WireError::new(
        ErrorCode::RateLimited,
        format!("{action:?} rate limit; retry in {ms} ms"),
    )
    .with_retry(ms)
}

fn internal(e: crate::store::StoreError) -> WireError {
    tracing::error!(error = %e, "store request failed");
    e.to_wire("the request")
}

/// Most rooms one user's lists read (presence broadcast, `rooms {}`).
const MAX_USER_ROOMS: usize = 100_000;

/// Connect-time checks for a verified user; tells the user's rooms if they came online.
pub async fn admit(core: &Arc<Core>, session: SessionId, user: &UserId) -> Result<(), WireError> {
    if let Decision::Deny { retry_after } = core.limiter.check(user, Action::Connect).await {
        return Err(limited(Action::Connect, retry_after));
    }
    if let Some(change) = core.presence.connected(user, session).await {
        broadcast_presence(core, change, true).await;
    }
    Ok(())
}

/// The session ended: drop its subscriptions; tell the user's rooms if they went offline.
pub async fn closed<'a>(
    core: &Arc<Core>,
    session: SessionId,
    user: Option<&UserId>,
    joined: impl Iterator<Item = &'a RoomId>,
) {
    for room in joined {
        let _ = core
            .router
            .send(room.clone(), Command::Disconnect { session })
            .await;
    }
    if let Some(user) = user {
        if let Some(change) = core.presence.disconnected(user, session).await {
            broadcast_presence(core, change, true).await;
        }
    }
}

/// Sends a presence change to the user's rooms on this node (only rooms loaded with
/// subscribers push it) and, if `publish`, to the other nodes.
/// Applies an automatic status change of a session (away after inactivity,
/// online again at its next request) like a `presence {status}` request.
pub async fn auto_status(
    core: &Arc<Core>,
    session: SessionId,
    user: &UserId,
    status: crate::proto::types::Status,
) {
    if let Some(change) = core.presence.set_status(user, session, status).await {
        broadcast_presence(core, change, true).await;
    }
}

pub async fn broadcast_presence(
    core: &Arc<Core>,
    change: crate::proto::types::UserPresence,
    publish: bool,
) {
    if publish {
        if let Some(bus) = &core.bus {
            bus.publish_presence(&change);
        }
    }
    let user = &change.user;
    let rooms =
        match crate::store::read_all(MAX_USER_ROOMS, |p| core.store.member_rooms(user, p)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "presence broadcast: room list unavailable");
                return;
            }
        };
    let frame = ServerFrame::Presence(PresenceFrame {
        id: None,
        users: vec![change],
    });
    for room in rooms {
        let _ = core
            .router
            .send(
                room,
                Command::Presence {
                    frame: frame.clone(),
                },
            )
            .await;
    }
}

/// The `rooms` snapshot pushed after `welcome` for `hello {sync: true}`.
pub async fn sync(core: &Arc<Core>, user: &UserId, outbox: &Outbox) {
    match room_list(core, user).await {
        Ok(rooms) => {
            outbox.send(&ServerFrame::Rooms(RoomsReply { id: None, rooms }));
        }
        Err(e) => {
            outbox.send(&ServerFrame::error(None, e));
        }
    }
}

fn summary(o: RoomOverview, user: &UserId) -> RoomSummary {
    let unread = crate::store::unread(o.msg_total, &o.member, o.deleted_by_others_after_read);
    RoomSummary {
        room: o.meta.id,
        name: o.meta.name,
        kind: o.meta.kind,
        private: o.meta.private,
        role: o.member.role,
        unread,
        last: o.last.map(|m| m.view(Some(user))),
        favorite: o.favorite,
        peer: o.peer,
        read_seq: o.member.read_seq,
    }
}

async fn room_list(core: &Arc<Core>, user: &UserId) -> Result<Vec<RoomSummary>, WireError> {
    let overviews = crate::store::read_all(MAX_USER_ROOMS, |p| core.store.user_rooms(user, p))
        .await
        .map_err(internal)?;
    let mut rooms: Vec<RoomSummary> = overviews.into_iter().map(|o| summary(o, user)).collect();
    // Most recent activity first.
    rooms.sort_by_key(|r| std::cmp::Reverse(r.last.as_ref().map_or(0, |m| m.ts)));
    Ok(rooms)
}

/// A page of the public directory of `tenant` (none: tenants off). The
/// store keeps each tenant's part of the directory apart, so a page reads
/// only the tenant's rooms and its cursor names nothing of another tenant.
async fn directory(
    core: &Arc<Core>,
    tenant: Option<&str>,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<RoomMeta>, Option<String>), crate::store::StoreError> {
    use crate::store::{Cursor, PageReq};
    let page = PageReq {
        after: after.map(|c| Cursor(c.to_string())),
        limit,
    };
    let p = core.store.public_rooms(tenant, prefix, page).await?;
    Ok((p.items, p.next.map(|c| c.0)))
}

pub(crate) fn action_of(frame: &ClientFrame) -> Option<Action> {
    use ClientFrame::*;
    Some(match frame {
        CreateRoom(_) | StartDirect(_) => Action::CreateRoom,
        Join(_) => Action::Join,
        Send(_) => Action::Send,
        History(_) => Action::History,
        Typing(_) => Action::Typing,
        // Leaving only frees resources: never refused.
        Leave(_) | LeaveRoom(_) => return None,
        _ => Action::Other,
    })
}

pub async fn request(
    core: &Arc<Core>,
    session: SessionId,
    user: &UserId,
    outbox: &Outbox,
    frame: ClientFrame,
) {
    let id = frame.id().unwrap_or(0);
    let reply = ReplyTo::new(id, outbox);
    // The system sender is the app backend's (trusted, API key): not limited.
    let system = user.public() == core.config.system_user;
    if let Some(action) = action_of(&frame).filter(|_| !system) {
        if let Decision::Deny { retry_after } = core.limiter.check(user, action).await {
            // Typing without an id is fire-and-forget: a refusal is dropped, like the indicator.
            if frame.id().is_some() {
                reply.error(limited(action, retry_after));
            }
            return;
        }
    }
    if let Err(e) = super::quotas::check(core, user, &frame).await {
        reply.error(e);
        return;
    }
    let u = user.clone();
    let routed: (RoomId, Command) = match frame {
        ClientFrame::Hello(_) | ClientFrame::Ping(_) => return,
        ClientFrame::CreateRoom(c) => {
            let room = c.room.unwrap_or_else(RoomId::random);
            let meta = RoomMeta {
                id: room.clone(),
                name: c.name,
                description: c.description.unwrap_or_default(),
                private: c.private,
                kind: crate::proto::types::RoomKind::Room,
                created_by: u,
                created_at: now_ms(),
                deleted: false,
                members: 1,
            };
            (room, Command::Create { meta, reply })
        }
        ClientFrame::StartDirect(d) => (
            direct_room_id(user, &d.user),
            Command::StartDirect {
                user: u,
                peer: d.user,
                reply,
            },
        ),
        ClientFrame::Join(j) => (
            j.room,
            Command::Join {
                session,
                user: u,
                since: j.since,
                invite: j.invite,
                reply,
            },
        ),
        ClientFrame::Leave(l) => (l.room, Command::Leave { session, reply }),
        ClientFrame::LeaveRoom(l) => (l.room, Command::LeaveRoom { user: u, reply }),
        ClientFrame::Send(s) => {
            let msg = NewMessage {
                body: s.body,
                local_id: s.local_id,
                kind: s.kind,
                attachments: s.attachments,
                reply_to: s.reply_to,
            };
            (
                s.room,
                Command::Send {
                    user: u,
                    msg,
                    reply,
                },
            )
        }
        ClientFrame::Edit(e) => (
            e.room,
            Command::Edit {
                user: u,
                seq: e.seq,
                body: e.body,
                reply,
            },
        ),
        ClientFrame::Delete(d) => (
            d.room,
            Command::Delete {
                user: u,
                seq: d.seq,
                reply,
            },
        ),
        ClientFrame::React(r) => (
            r.room,
            Command::React {
                user: u,
                seq: r.seq,
                emoji: r.emoji,
                on: r.on,
                reply,
            },
        ),
        ClientFrame::History(h) => (
            h.room,
            Command::History {
                user: u,
                // `session::check_request` refused `before` with `after`.
                range: match (h.before, h.after) {
                    (_, Some(after)) => HistoryRange::After(after),
                    (Some(before), None) => HistoryRange::Before(before),
                    (None, None) => HistoryRange::Newest,
                },
                limit: h.limit.unwrap_or(50),
                reply,
            },
        ),
        ClientFrame::Read(r) => (
            r.room,
            Command::Read {
                user: u,
                seq: r.seq,
                reply,
            },
        ),
        ClientFrame::Receipts(r) => (
            r.room,
            Command::Receipts {
                user: u,
                seq: r.seq,
                reply,
            },
        ),
        ClientFrame::Members(m) => (m.room, Command::Members { user: u, reply }),
        ClientFrame::Typing(t) => {
            let reply = t.id.map(|id| ReplyTo::new(id, outbox));
            (
                t.room,
                Command::Typing {
                    session,
                    user: u,
                    on: t.on,
                    reply,
                },
            )
        }
        ClientFrame::UpdateRoom(r) => (
            r.room,
            Command::Update {
                user: u,
                name: r.name,
                description: r.description,
                private: r.private,
                reply,
            },
        ),
        ClientFrame::DeleteRoom(r) => (r.room, Command::DeleteRoom { user: u, reply }),
        ClientFrame::Kick(k) => (
            k.room,
            Command::Admin {
                user: u,
                target: k.user,
                op: AdminOp::Kick,
                reply,
            },
        ),
        ClientFrame::Ban(k) => (
            k.room,
            Command::Admin {
                user: u,
                target: k.user,
                op: AdminOp::Ban,
                reply,
            },
        ),
        ClientFrame::Unban(k) => (
            k.room,
            Command::Admin {
                user: u,
                target: k.user,
                op: AdminOp::Unban,
                reply,
            },
        ),
        ClientFrame::Transfer(k) => (
            k.room,
            Command::Admin {
                user: u,
                target: k.user,
                op: AdminOp::Transfer,
                reply,
            },
        ),
        ClientFrame::SetRole(s) => (
            s.room,
            Command::Admin {
                user: u,
                target: s.user,
                op: AdminOp::SetRole(s.role),
                reply,
            },
        ),
        ClientFrame::CreateInvite(c) => (
            c.room,
            Command::CreateInvite {
                user: u,
                expires_in_s: c.expires_in_s,
                max_uses: c.max_uses,
                reply,
            },
        ),
        ClientFrame::Invites(r) => (r.room, Command::Invites { user: u, reply }),
        ClientFrame::RevokeInvite(r) => (
            r.room,
            Command::RevokeInvite {
                user: u,
                code: r.code,
                reply,
            },
        ),
        // User-scoped requests: answered here, not by a room shard.
        ClientFrame::Rooms(_) => {
            match room_list(core, user).await {
                Ok(rooms) => reply.send(&ServerFrame::Rooms(RoomsReply {
                    id: Some(id),
                    rooms,
                })),
                Err(e) => reply.error(e),
            }
            return;
        }
        ClientFrame::PublicRooms(p) => {
            let prefix = p.prefix.unwrap_or_default();
            let limit = p.limit.unwrap_or(50) as usize;
            match directory(core, user.tenant(), &prefix, p.after.as_deref(), limit).await {
                Ok((metas, next)) => {
                    let rooms = metas
                        .into_iter()
                        .map(|m| PublicRoom {
                            room: m.id,
                            name: m.name,
                            description: m.description,
                            members: m.members,
                        })
                        .collect();
                    reply.send(&ServerFrame::PublicRooms(PublicRoomsReply {
                        id,
                        rooms,
                        next,
                    }));
                }
                Err(e) => reply.error(internal(e)),
            }
            return;
        }
        ClientFrame::Favorite(f) => {
            let m = Mutation::PutFavorite {
                user: u,
                room: f.room.clone(),
                peer: f.user,
                on: f.on,
            };
            match core.store.apply(vec![m]).await {
                Ok(()) => reply.send(&ServerFrame::ok(id, f.room, None)),
                Err(e) => reply.error(internal(e)),
            }
            return;
        }
        ClientFrame::Favorites(_) => {
            match core.store.favorites(user).await {
                Ok((rooms, users)) => {
                    reply.send(&ServerFrame::Favorites(FavoritesReply { id, rooms, users }))
                }
                Err(e) => reply.error(internal(e)),
            }
            return;
        }
        ClientFrame::Presence(p) => {
            if let Some(status) = p.status {
                if let Some(change) = core.presence.set_status(user, session, status).await {
                    broadcast_presence(core, change, true).await;
                }
            }
            let users = if p.users.is_empty() {
                Vec::new()
            } else {
                core.presence.get_many(&p.users).await
            };
            reply.send(&ServerFrame::Presence(PresenceFrame {
                id: Some(id),
                users,
            }));
            return;
        }
    };
    let (room, cmd) = routed;
    if core.router.send(room, cmd).await.is_err() {
        outbox.send(&ServerFrame::error(
            Some(id),
            WireError::new(ErrorCode::ShuttingDown, "server is shutting down")
                .with_retry(core.reconnect_hint_ms()),
        ));
    }
}
