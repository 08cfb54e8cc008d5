//! Per-user quotas checked against the store before a request is routed:
//! rooms owned (`--max-rooms-per-user`), memberships
//! (`--max-memberships-per-user`) and favorites (`--max-favorites-per-user`).
//! Refusals are `limit_exceeded`. Two requests of one user racing on
//! different connections may both pass at the edge, so a quota can be
//! overshot by the number of such requests in flight at once (at most the
//! user's connections times `--max-in-flight`); it cannot grow beyond that.

use crate::ids::{RoomId, UserId};
use crate::proto::client::ClientFrame;
use crate::proto::types::{Role, RoomKind};
use crate::proto::{ErrorCode, WireError};
use crate::router::direct_room_id;
use crate::server::Core;
use crate::store::read_all;
use std::sync::Arc;

fn exceeded(message: String) -> WireError {
    WireError::new(ErrorCode::LimitExceeded, message)
}

/// Whether `frame` would take `user` past a quota.
pub async fn check(core: &Arc<Core>, user: &UserId, frame: &ClientFrame) -> Result<(), WireError> {
    let c = &core.config;
    match frame {
        ClientFrame::CreateRoom(_) => {
            let max = c.max_memberships_per_user;
            let rooms = read_all(max + 1, |p| core.store.user_rooms(user, p))
                .await
                .map_err(internal)?;
            if rooms.len() >= c.max_memberships_per_user {
                return Err(memberships(c.max_memberships_per_user));
            }
            let owned = rooms
                .iter()
                .filter(|o| o.meta.kind == RoomKind::Room && o.member.role == Role::Owner)
                .count();
            if owned >= c.max_rooms_per_user {
                return Err(exceeded(format!(
                    "you own {owned} rooms, the most allowed ({}); delete or transfer one first",
                    c.max_rooms_per_user
                )));
            }
        }
        ClientFrame::Join(j) => new_membership(core, user, &j.room, "you are").await?,
        ClientFrame::StartDirect(d) => {
            let room = direct_room_id(user, &d.user);
            new_membership(core, user, &room, "you are").await?;
            new_membership(core, &d.user, &room, "user: they are").await?;
        }
        ClientFrame::Favorite(f) if f.on => {
            let (rooms, users) = core.store.favorites(user).await.map_err(internal)?;
            let already = f.room.as_ref().is_some_and(|r| rooms.contains(r))
                || f.user.as_ref().is_some_and(|u| users.contains(u));
            if !already && rooms.len() + users.len() >= c.max_favorites_per_user {
                return Err(exceeded(format!(
                    "you have {} favorites, the most allowed; remove one first",
                    c.max_favorites_per_user
                )));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Refuses when `user` is not yet a member of `room` and is at the membership quota.
async fn new_membership(
    core: &Arc<Core>,
    user: &UserId,
    room: &RoomId,
    who: &str,
) -> Result<(), WireError> {
    let max = core.config.max_memberships_per_user;
    let rooms = read_all(max + 1, |p| core.store.member_rooms(user, p))
        .await
        .map_err(internal)?;
    if rooms.len() >= max && !rooms.contains(room) {
        return Err(exceeded(format!(
            "{who} a member of {} rooms, the most allowed; leave one first",
            rooms.len()
        )));
    }
    Ok(())
}

fn memberships(max: usize) -> WireError {
    exceeded(format!(
        "you are a member of {max} rooms, the most allowed; leave one first"
    ))
}

fn internal(e: crate::store::StoreError) -> WireError {
    tracing::error!(error = %e, "quota check: store request failed");
    e.to_wire("the quota check")
}
