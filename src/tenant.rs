//! Tenants (`--tenants`): several customers served by one deployment, none
//! seeing anything of another.
//!
//! The boundary does it all. A caller's tenant comes from its credential (the
//! JWT `tenant` claim, or the API key's tenant), and its user id is scoped
//! with it: `acme` + U+001F + `alice` (`proto::ids`, "Scoped ids"). Every id
//! a request names is scoped the same way here ([`scope_request`], run by
//! `session::check_request` for sockets and REST alike), so rooms, members,
//! direct rooms, favorites, presence, read pointers, rate limits and
//! connection caps are per tenant without the routers, the store or Redis
//! knowing tenants exist: two tenants' `general` are two rooms. Ids go back
//! out in their public form (the wire encoder and [`json`]), so clients send
//! and receive the ids they know. The one list not named by an id, the public
//! directory, is read per tenant: the store keeps each tenant's part of it
//! apart (`MessageStore::public_rooms`), so a page reads only that tenant's
//! rooms.
//!
//! A client can never name an id of another tenant: an id it sends that is
//! already scoped (it contains U+001F) is refused, and with tenants off every
//! id is plain.

use crate::ids::{RoomId, UserId};
use crate::proto::client::ClientFrame;
use crate::proto::WireError;

fn refuse(field: &str) -> WireError {
    WireError::bad_request(format!("{field}: must not contain control characters"))
}

fn room(tenant: Option<&str>, field: &str, r: &mut RoomId) -> Result<(), WireError> {
    if r.is_scoped() {
        return Err(refuse(field));
    }
    if let Some(t) = tenant {
        *r = RoomId::scoped(t, r);
    }
    Ok(())
}

fn user(tenant: Option<&str>, field: &str, u: &mut UserId) -> Result<(), WireError> {
    if u.is_scoped() {
        return Err(refuse(field));
    }
    if let Some(t) = tenant {
        *u = UserId::scoped(t, u);
    }
    Ok(())
}

/// Scopes every id `frame` names with the tenant of its sender `as_user`
/// (none: tenants are off, and ids stay plain). Refuses ids that are already
/// scoped. A `create_room` without a room id gets its random one here, in the
/// tenant.
pub fn scope_request(frame: &mut ClientFrame, as_user: &UserId) -> Result<(), WireError> {
    let t = as_user.tenant();
    match frame {
        ClientFrame::Hello(_)
        | ClientFrame::Ping(_)
        | ClientFrame::Rooms(_)
        | ClientFrame::Favorites(_)
        // The directory cursor is opaque; the directory is read per tenant.
        | ClientFrame::PublicRooms(_) => Ok(()),
        ClientFrame::CreateRoom(c) => match (&mut c.room, t) {
            (Some(r), _) => room(t, "room", r),
            (None, Some(t)) => {
                c.room = Some(RoomId::scoped(t, &RoomId::random()));
                Ok(())
            }
            (None, None) => Ok(()),
        },
        ClientFrame::Join(f) => room(t, "room", &mut f.room),
        ClientFrame::Leave(f) => room(t, "room", &mut f.room),
        ClientFrame::Send(f) => room(t, "room", &mut f.room),
        ClientFrame::History(f) => room(t, "room", &mut f.room),
        ClientFrame::Edit(f) => room(t, "room", &mut f.room),
        ClientFrame::Delete(f) => room(t, "room", &mut f.room),
        ClientFrame::React(f) => room(t, "room", &mut f.room),
        ClientFrame::Read(f) => room(t, "room", &mut f.room),
        ClientFrame::Receipts(f) => room(t, "room", &mut f.room),
        ClientFrame::Typing(f) => room(t, "room", &mut f.room),
        ClientFrame::Members(f) => room(t, "room", &mut f.room),
        ClientFrame::UpdateRoom(f) => room(t, "room", &mut f.room),
        ClientFrame::DeleteRoom(f) | ClientFrame::LeaveRoom(f) | ClientFrame::Invites(f) => {
            room(t, "room", &mut f.room)
        }
        ClientFrame::Kick(f)
        | ClientFrame::Ban(f)
        | ClientFrame::Unban(f)
        | ClientFrame::Transfer(f) => {
            room(t, "room", &mut f.room)?;
            user(t, "user", &mut f.user)
        }
        ClientFrame::SetRole(f) => {
            room(t, "room", &mut f.room)?;
            user(t, "user", &mut f.user)
        }
        ClientFrame::CreateInvite(f) => room(t, "room", &mut f.room),
        ClientFrame::RevokeInvite(f) => room(t, "room", &mut f.room),
        ClientFrame::StartDirect(f) => user(t, "user", &mut f.user),
        ClientFrame::Favorite(f) => {
            if let Some(r) = &mut f.room {
                room(t, "room", r)?;
            }
            if let Some(u) = &mut f.user {
                user(t, "user", u)?;
            }
            Ok(())
        }
        ClientFrame::Presence(f) => f.users.iter_mut().try_for_each(|u| user(t, "users", u)),
    }
}

/// A user id named by a caller of `tenant` (an API key's, or a user's own
/// tenant): refused if already scoped, scoped when there is a tenant.
pub fn scope_user(tenant: Option<&str>, u: UserId) -> Result<UserId, WireError> {
    let mut u = u;
    user(tenant, "user", &mut u)?;
    Ok(u)
}

/// A user id the server read back from a reply (public) as the id of
/// `as_user`'s tenant: for asking presence about members of a room.
pub fn like(as_user: &UserId, u: UserId) -> UserId {
    match as_user.tenant() {
        Some(t) if !u.is_scoped() => UserId::scoped(t, &u),
        _ => u,
    }
}

/// Splits an `--api-keys` entry of a server with tenants: `TENANT:KEY`
/// (a tenant has no `:`, so the first one separates), the key at least 16
/// characters.
pub fn api_key(entry: &str) -> Result<(&str, &str), String> {
    let (tenant, key) = entry
        .split_once(':')
        .ok_or("with tenants, each key is TENANT:KEY")?;
    crate::proto::ids::check_tenant(tenant)?;
    if key.len() < 16 {
        return Err(format!(
            "the key of tenant {tenant} must be at least 16 characters"
        ));
    }
    Ok((tenant, key))
}

/// Whether `room` belongs to `tenant` (none: tenants off, every room does).
pub fn owns(tenant: Option<&str>, room: &RoomId) -> bool {
    room.tenant() == tenant
}

/// A JSON body for an HTTP answer, with every id in its public form.
pub fn json<T: serde::Serialize>(body: &T) -> axum::Json<serde_json::Value> {
    match crate::proto::ids::public_ids(|| serde_json::to_value(body)) {
        Ok(value) => axum::Json(value),
        Err(e) => {
            // Our answer types are maps of strings and numbers: a bug if it happens.
            tracing::error!(error = %e, "an answer did not serialize to JSON");
            axum::Json(serde_json::Value::Null)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_scoped_and_scoped_ids_refused() {
        let acme = UserId::scoped("acme", &UserId::new("alice").unwrap());
        let mut f = ClientFrame::decode(
            &rmp_serde::to_vec_named(&serde_json::json!({
                "t": "kick", "id": 1, "room": "general", "user": "bob"
            }))
            .unwrap(),
        )
        .unwrap();
        scope_request(&mut f, &acme).unwrap();
        match &f {
            ClientFrame::Kick(k) => {
                assert_eq!(k.room.as_str(), "acme\u{1f}general");
                assert_eq!(k.user.as_str(), "acme\u{1f}bob");
            }
            other => panic!("{other:?}"),
        }
        // Scoping twice is refusing: a scoped id never comes from a client.
        assert!(scope_request(&mut f, &acme).is_err());
        let plain = UserId::new("alice").unwrap();
        let mut f2 = f.clone();
        assert!(scope_request(&mut f2, &plain).is_err(), "tenants off too");
    }
}
