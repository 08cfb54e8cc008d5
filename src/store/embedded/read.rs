//! Read paths of the embedded store (run on the blocking pool).

use super::{err, Tables};
use crate::ids::{RoomId, UserId};
use crate::store::keys;
use crate::store::{
    make_cursor, open_cursor, HistoryRange, Invite, LoadedRoom, LocalIdRecord, MemberState,
    MessageState, Page, PageReq, RoomMeta, RoomOverview, StoreResult,
};
use bytes::Bytes;
use std::ops::Bound;

/// A room's metadata, deleted rooms included.
fn meta_any(t: &Tables, room: &RoomId) -> StoreResult<Option<RoomMeta>> {
    match t.rooms.get(room.as_str().as_bytes()).map_err(err)? {
        Some(v) => Ok(Some(keys::decode::<RoomMeta>(&v, "room")?)),
        None => Ok(None),
    }
}

/// A room's metadata, if it exists and was not deleted.
fn meta(t: &Tables, room: &RoomId) -> StoreResult<Option<RoomMeta>> {
    Ok(meta_any(t, room)?.filter(|m| !m.deleted))
}

fn user_of(key: &[u8], prefix: &[u8]) -> StoreResult<UserId> {
    UserId::new(keys::suffix_str(key, prefix)?).map_err(crate::store::StoreError::Corrupt)
}

fn last_message(t: &Tables, room: &RoomId) -> StoreResult<Option<MessageState>> {
    match t.messages.prefix(keys::room_prefix(room)).next_back() {
        Some(item) => {
            let (_, v) = item.into_inner().map_err(err)?;
            Ok(Some(keys::decode(&v, "message")?))
        }
        None => Ok(None),
    }
}

pub fn load_room(t: &Tables, room: &RoomId, recent: usize) -> StoreResult<Option<LoadedRoom>> {
    // A deleted room loads as deleted, so its id is never reused.
    let Some(meta) = meta_any(t, room)? else {
        return Ok(None);
    };
    let prefix = keys::room_prefix(room);

    let mut events = t.events.prefix(&prefix);
    let first_seq = match events.next() {
        Some(item) => keys::seq_of_key(&item.key().map_err(err)?)?,
        None => 0,
    };
    let last_seq = match t.events.prefix(&prefix).next_back() {
        Some(item) => keys::seq_of_key(&item.key().map_err(err)?)?,
        None => 0,
    };

    let mut recent_local_ids = Vec::new();
    let mut complete = true;
    let (mut msg_total, mut last_msg_seq) = (0, 0);
    for (i, item) in t.messages.prefix(&prefix).rev().enumerate() {
        if i == recent {
            complete = false;
            break;
        }
        let (_, v) = item.into_inner().map_err(err)?;
        let m: MessageState = keys::decode(&v, "message")?;
        if i == 0 {
            msg_total = m.n;
            last_msg_seq = m.seq;
        }
        if let Some(local_id) = m.local_id {
            recent_local_ids.push(LocalIdRecord {
                from: m.from,
                local_id,
                seq: m.seq,
                ts: m.ts,
            });
        }
    }
    recent_local_ids.reverse();
    if recent == 0 {
        if let Some(m) = last_message(t, room)? {
            msg_total = m.n;
            last_msg_seq = m.seq;
        }
    }

    let mut members = Vec::new();
    for item in t.members.prefix(&prefix) {
        let (k, v) = item.into_inner().map_err(err)?;
        members.push((
            user_of(&k, &prefix)?,
            keys::decode::<MemberState>(&v, "member")?,
        ));
    }
    let mut bans = Vec::new();
    for item in t.bans.prefix(&prefix) {
        bans.push(user_of(&item.key().map_err(err)?, &prefix)?);
    }
    let mut invites = Vec::new();
    for item in t.invites.prefix(&prefix) {
        let (_, v) = item.into_inner().map_err(err)?;
        invites.push(keys::decode::<Invite>(&v, "invite")?);
    }
    let mut deletions = Vec::new();
    for item in t.deletions.prefix(&prefix) {
        let (k, v) = item.into_inner().map_err(err)?;
        let sender = std::str::from_utf8(&v)
            .ok()
            .and_then(|s| UserId::new(s).ok())
            .ok_or_else(|| crate::store::StoreError::Corrupt("deletion sender".into()))?;
        deletions.push((keys::seq_of_key(&k)?, sender));
    }
    Ok(Some(LoadedRoom {
        meta,
        last_seq,
        first_seq,
        members,
        bans,
        invites,
        msg_total,
        last_msg_seq,
        deletions,
        recent_local_ids,
        recent_is_complete: complete,
    }))
}

pub fn msg_count_at(t: &Tables, room: &RoomId, seq: u64) -> StoreResult<u64> {
    let start = keys::seq_key(room, 0);
    let end = keys::seq_key(room, seq);
    match t.messages.range(start..=end).next_back() {
        Some(item) => {
            let (_, v) = item.into_inner().map_err(err)?;
            Ok(keys::decode::<MessageState>(&v, "message")?.n)
        }
        None => Ok(0),
    }
}

pub fn history(
    t: &Tables,
    room: &RoomId,
    range: HistoryRange,
    limit: usize,
) -> StoreResult<(Vec<MessageState>, bool)> {
    let mut out = Vec::with_capacity(limit.min(256));
    let mut more = false;
    let mut take = |item: fjall::Guard| -> StoreResult<bool> {
        if out.len() == limit {
            more = true;
            return Ok(false);
        }
        let (_, v) = item.into_inner().map_err(err)?;
        out.push(keys::decode(&v, "message")?);
        Ok(true)
    };
    match range {
        HistoryRange::Newest | HistoryRange::Before(_) => {
            let before = match range {
                HistoryRange::Before(b) => b,
                _ => u64::MAX,
            };
            let (start, end) = (keys::seq_key(room, 0), keys::seq_key(room, before));
            for item in t.messages.range(start..end).rev() {
                if !take(item)? {
                    break;
                }
            }
            out.reverse();
        }
        HistoryRange::After(after) => {
            let Some(first) = after.checked_add(1) else {
                return Ok((out, false));
            };
            let (start, end) = (keys::seq_key(room, first), keys::seq_key(room, u64::MAX));
            for item in t.messages.range(start..=end) {
                if !take(item)? {
                    break;
                }
            }
        }
    }
    Ok((out, more))
}

pub fn events(
    t: &Tables,
    room: &RoomId,
    after: u64,
    upto: u64,
    limit: usize,
) -> StoreResult<Vec<(u64, Bytes)>> {
    let start = keys::seq_key(room, after.saturating_add(1));
    let end = keys::seq_key(room, upto);
    let mut out = Vec::new();
    for item in t.events.range(start..=end) {
        if out.len() == limit {
            break;
        }
        let (k, v) = item.into_inner().map_err(err)?;
        out.push((keys::seq_of_key(&k)?, Bytes::copy_from_slice(&v)));
    }
    Ok(out)
}

/// One page of a user's room index: room ids after the cursor, and the next cursor.
fn user_room_page(
    t: &Tables,
    user: &UserId,
    read: &str,
    page: &PageReq,
) -> StoreResult<(Vec<RoomId>, Option<crate::store::Cursor>)> {
    let uprefix = keys::user_prefix(user);
    let lower = match &page.after {
        Some(c) => {
            let room = open_cursor(c, STORE, read)?;
            let mut k = uprefix.clone();
            k.extend_from_slice(&room);
            Bound::Excluded(k)
        }
        None => Bound::Included(uprefix.clone()),
    };
    let mut out = Vec::new();
    for item in t.user_rooms.range::<Vec<u8>, _>((lower, Bound::Unbounded)) {
        let key = item.key().map_err(err)?;
        if !key.starts_with(&uprefix) {
            break;
        }
        if out.len() == page.limit.max(1) {
            let next = out
                .last()
                .map(|r: &RoomId| make_cursor(STORE, read, r.as_str().as_bytes()));
            return Ok((out, next));
        }
        out.push(
            RoomId::new(keys::suffix_str(&key, &uprefix)?)
                .map_err(crate::store::StoreError::Corrupt)?,
        );
    }
    Ok((out, None))
}

/// The cursor tag of this store.
const STORE: &str = "e";

pub fn user_rooms(t: &Tables, user: &UserId, page: PageReq) -> StoreResult<Page<RoomOverview>> {
    let (rooms, next) = user_room_page(t, user, "ur", &page)?;
    let mut out = Vec::new();
    for room in rooms {
        let Some(meta) = meta(t, &room)? else {
            continue;
        };
        let Some(mv) = t
            .members
            .get(keys::room_user_key(&room, user))
            .map_err(err)?
        else {
            continue;
        };
        let member: MemberState = keys::decode(&mv, "member")?;
        let last = last_message(t, &room)?;
        let msg_total = last.as_ref().map_or(0, |m| m.n);
        let mut deleted_by_others_after_read = 0;
        let from = keys::seq_key(&room, member.read_seq.saturating_add(1));
        let to = keys::seq_key(&room, u64::MAX);
        for d in t.deletions.range(from..=to) {
            let (_, v) = d.into_inner().map_err(err)?;
            if v.as_ref() != user.as_str().as_bytes() {
                deleted_by_others_after_read += 1;
            }
        }
        let favorite = t
            .favorites
            .contains_key(keys::favorite_key(user, Some(&room), None))
            .map_err(err)?;
        let mut peer = None;
        if !meta.kind.is_room() {
            let rprefix = keys::room_prefix(&room);
            for m in t.members.prefix(&rprefix) {
                let u = user_of(&m.key().map_err(err)?, &rprefix)?;
                if &u != user {
                    peer = Some(u);
                }
            }
        }
        out.push(RoomOverview {
            meta,
            member,
            last,
            msg_total,
            deleted_by_others_after_read,
            favorite,
            peer,
        });
    }
    Ok(Page { items: out, next })
}

pub fn member_rooms(t: &Tables, user: &UserId, page: PageReq) -> StoreResult<Page<RoomId>> {
    let (items, next) = user_room_page(t, user, "mr", &page)?;
    Ok(Page { items, next })
}

/// The longest key fjall accepts.
const MAX_KEY_LEN: usize = u16::MAX as usize;

pub fn public_rooms(
    t: &Tables,
    tenant: Option<&str>,
    prefix: &str,
    page: PageReq,
) -> StoreResult<Page<RoomMeta>> {
    // Only the tenant's part of the directory (of no tenant: `public`).
    let (ks, base) = match tenant {
        Some(_) => (&t.public_by_tenant, keys::directory_prefix(tenant)),
        None => (&t.public, Vec::new()),
    };
    let mut full = base.clone();
    full.extend_from_slice(prefix.as_bytes());
    // fjall keys are at most 65,535 bytes (longer ones panic): a longer
    // prefix matches no key, and a longer cursor is none we handed out.
    // (The session refuses both long before; this keeps the store total.)
    if full.len() > MAX_KEY_LEN {
        return Ok(Page {
            items: Vec::new(),
            next: None,
        });
    }
    let limit = page.limit.max(1);
    let lower = match &page.after {
        Some(c) => {
            let key = open_cursor(c, STORE, "dir")?;
            // A cursor of another tenant's part is none this caller was given
            // (keys of no tenant hold no U+001F: names have no control characters).
            let foreign = match tenant {
                Some(_) => !key.starts_with(&base),
                None => key.contains(&0x1f),
            };
            if key.len() > MAX_KEY_LEN || foreign {
                return Err(crate::store::StoreError::BadCursor(
                    "after: not a cursor of this list (use the `next` of the previous page)".into(),
                ));
            }
            Bound::Excluded(key)
        }
        None => Bound::Included(full.clone()),
    };
    let mut out = Vec::new();
    let mut next = None;
    for item in ks.range::<Vec<u8>, _>((lower, Bound::Unbounded)) {
        let k = item.key().map_err(err)?;
        if !k.starts_with(&full) {
            break;
        }
        if out.len() == limit {
            next = out
                .last()
                .map(|m: &RoomMeta| make_cursor(STORE, "dir", &keys::public_key(&m.name, &m.id)));
            break;
        }
        let rest = &k[base.len()..];
        let Some(zero) = rest.iter().position(|b| *b == 0) else {
            continue;
        };
        let Ok(room) = std::str::from_utf8(&rest[zero + 1..])
            .map_err(|_| ())
            .and_then(|s| RoomId::new(s).map_err(|_| ()))
        else {
            continue;
        };
        if room.tenant() != tenant {
            continue;
        }
        if let Some(m) = meta(t, &room)? {
            if !m.private {
                out.push(m);
            }
        }
    }
    Ok(Page { items: out, next })
}

pub fn favorites(t: &Tables, user: &UserId) -> StoreResult<(Vec<RoomId>, Vec<UserId>)> {
    let prefix = keys::user_prefix(user);
    let (mut rooms, mut users) = (Vec::new(), Vec::new());
    for item in t.favorites.prefix(&prefix) {
        let k = item.key().map_err(err)?;
        let rest = keys::suffix_str(&k, &prefix)?;
        let corrupt = |e: String| crate::store::StoreError::Corrupt(e);
        match rest.split_at_checked(1) {
            Some(("r", id)) => rooms.push(RoomId::new(id).map_err(corrupt)?),
            Some(("u", id)) => users.push(UserId::new(id).map_err(corrupt)?),
            _ => return Err(corrupt("favorite key".into())),
        }
    }
    Ok((rooms, users))
}
