//! Read paths of the ScyllaDB store. Stream reads walk the room's buckets
//! (`buckets` table) and read one partition range at a time; long reads page.

use super::{bucket, cql_err, dir_base, dir_key, ScyllaStore};
use crate::ids::{RoomId, UserId};
use crate::store::keys;
use crate::store::{
    make_cursor, open_cursor, HistoryRange, Invite, LoadedRoom, LocalIdRecord, MemberState,
    MessageState, Page, PageReq, Role, RoomMeta, RoomOverview, StoreError, StoreResult,
};
use bytes::Bytes;
use futures_util::StreamExt;
use scylla::statement::prepared::PreparedStatement;
use std::collections::{BTreeMap, HashMap};

/// The cursor tag of this store.
const STORE: &str = "s";

/// `seq, n, msg, body, attachments, edited_at, deleted, reactions, edits`.
type Row = (
    i64,
    Option<i64>,
    Option<Vec<u8>>,
    Option<String>,
    Option<Vec<u8>>,
    Option<i64>,
    Option<bool>,
    Option<BTreeMap<String, i64>>,
    Option<BTreeMap<i64, i64>>,
);

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn role_of(s: &str) -> StoreResult<Role> {
    match s {
        "owner" => Ok(Role::Owner),
        "admin" => Ok(Role::Admin),
        "member" => Ok(Role::Member),
        _ => Err(corrupt("member role")),
    }
}

/// A message row in its latest state (`None`: not a message row).
fn message_of(row: Row) -> StoreResult<Option<MessageState>> {
    let (_, _, msg, body, attachments, edited_at, deleted, reactions, edits) = row;
    let Some(msg) = msg else {
        return Ok(None);
    };
    let mut m: MessageState = keys::decode(&msg, "message")?;
    if let Some(b) = body {
        m.body = b;
    }
    if let Some(a) = attachments {
        m.attachments = keys::decode(&a, "attachments")?;
    }
    m.edits = edits
        .unwrap_or_default()
        .into_iter()
        .map(|(seq, ts)| (seq as u64, ts as u64))
        .collect();
    if let Some(e) = edited_at {
        m.edited_at = Some(e as u64);
    }
    m.deleted = deleted.unwrap_or(false);
    m.reactions.clear();
    if m.deleted {
        m.attachments.clear();
    } else if let Some(cells) = reactions {
        // Cell key `emoji \0 user`, value the seq of the reaction: users in reaction order.
        let mut by_emoji: BTreeMap<String, Vec<(i64, UserId)>> = BTreeMap::new();
        for (k, at) in cells {
            let (emoji, user) = k.split_once('\0').ok_or_else(|| corrupt("reaction cell"))?;
            let user = UserId::new(user).map_err(StoreError::Corrupt)?;
            by_emoji
                .entry(emoji.to_string())
                .or_default()
                .push((at, user));
        }
        for (emoji, mut users) in by_emoji {
            users.sort();
            m.reactions
                .insert(emoji, users.into_iter().map(|(_, u)| u).collect());
        }
    }
    Ok(Some(m))
}

impl ScyllaStore {
    /// All rows of a single-page-sized query (bounded partitions only).
    async fn rows<T, V>(&self, ps: &PreparedStatement, values: V) -> StoreResult<Vec<T>>
    where
        T: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
        V: scylla::serialize::row::SerializeRow + Clone,
    {
        self.retrying(|| {
            let values = values.clone();
            async move {
                let _permit = self.permit().await?;
                let r = self
                    .session
                    .execute_unpaged(ps, values)
                    .await
                    .map_err(cql_err)?;
                let rows = r.into_rows_result().map_err(cql_err)?;
                let out: Result<Vec<T>, _> = rows.rows::<T>().map_err(cql_err)?.collect();
                out.map_err(cql_err)
            }
        })
        .await
    }

    async fn one<T, V>(&self, ps: &PreparedStatement, values: V) -> StoreResult<Option<T>>
    where
        T: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
        V: scylla::serialize::row::SerializeRow + Clone,
    {
        Ok(self.rows(ps, values).await?.into_iter().next())
    }

    /// Rows of a possibly long query, page by page; `each` returns false to stop.
    async fn paged<T, V>(
        &self,
        ps: &PreparedStatement,
        page_size: i32,
        values: V,
        mut each: impl FnMut(T) -> StoreResult<bool>,
    ) -> StoreResult<()>
    where
        T: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm> + 'static,
        V: scylla::serialize::row::SerializeRow + Clone,
    {
        let mut ps = ps.clone();
        ps.set_page_size(page_size.max(1));
        let _permit = self.permit().await?;
        // The first page is fetched here: retried like any read. A later page
        // fails the whole read (its rows were already handed to `each`).
        let pager = self
            .retrying(|| {
                let (ps, values) = (ps.clone(), values.clone());
                async move { self.session.execute_iter(ps, values).await.map_err(cql_err) }
            })
            .await?;
        let mut rows = pager
            .rows_stream::<T>()
            .map_err(|e| self.counted(cql_err(e)))?;
        while let Some(row) = rows.next().await {
            if !each(row.map_err(|e| self.counted(cql_err(e)))?)? {
                break;
            }
        }
        Ok(())
    }

    async fn meta_any(&self, room: &RoomId) -> StoreResult<Option<RoomMeta>> {
        match self
            .one::<(Vec<u8>,), _>(&self.st.get_room, (room.as_str(),))
            .await?
        {
            Some((v,)) => Ok(Some(keys::decode(&v, "room")?)),
            None => Ok(None),
        }
    }

    /// Buckets of a room at or below `upto`, newest first.
    async fn buckets_down(&self, room: &RoomId, upto: i64) -> StoreResult<Vec<i64>> {
        let mut out = Vec::new();
        self.paged::<(i64,), _>(
            &self.st.buckets_desc_upto,
            1000,
            (room.as_str(), upto),
            |(b,)| {
                out.push(b);
                Ok(true)
            },
        )
        .await?;
        Ok(out)
    }
}

pub async fn find_local_id(
    s: &ScyllaStore,
    room: &RoomId,
    user: &UserId,
    local_id: &str,
) -> StoreResult<Option<(u64, u64)>> {
    let Some((seq, ts)) = s
        .one::<(i64, i64), _>(&s.st.get_local_id, (room.as_str(), user.as_str(), local_id))
        .await?
    else {
        return Ok(None);
    };
    // Only a committed send counts: its event row is the commit point.
    let event = s
        .one::<(Option<Vec<u8>>,), _>(&s.st.event_at, (room.as_str(), bucket(seq as u64), seq))
        .await?;
    Ok(event.and_then(|(e,)| e).map(|_| (seq as u64, ts as u64)))
}

pub async fn message(
    s: &ScyllaStore,
    room: &RoomId,
    seq: u64,
) -> StoreResult<Option<MessageState>> {
    match s
        .one::<Row, _>(&s.st.stream_row, (room.as_str(), bucket(seq), seq as i64))
        .await?
    {
        Some(row) => message_of(row),
        None => Ok(None),
    }
}

/// Walks a room's messages from `below` (exclusive) downwards; `each` returns false to stop.
async fn messages_down(
    s: &ScyllaStore,
    room: &RoomId,
    below: u64,
    page: i32,
    mut each: impl FnMut(MessageState) -> bool,
) -> StoreResult<bool> {
    if below == 0 {
        return Ok(true);
    }
    let below_i = below.min(i64::MAX as u64) as i64;
    for b in s.buckets_down(room, bucket(below - 1)).await? {
        let mut stopped = false;
        s.paged::<Row, _>(
            &s.st.stream_desc_below,
            page,
            (room.as_str(), b, below_i),
            |row| {
                if let Some(m) = message_of(row)? {
                    if !each(m) {
                        stopped = true;
                        return Ok(false);
                    }
                }
                Ok(true)
            },
        )
        .await?;
        if stopped {
            return Ok(false);
        }
    }
    Ok(true)
}

pub async fn latest_message_at_or_below(
    s: &ScyllaStore,
    room: &RoomId,
    seq: u64,
) -> StoreResult<Option<MessageState>> {
    let mut found = None;
    messages_down(s, room, seq.saturating_add(1), 8, |m| {
        found = Some(m);
        false
    })
    .await?;
    Ok(found)
}

/// Walks a room's messages from `above` (exclusive) upwards; `each` returns false to stop.
async fn messages_up(
    s: &ScyllaStore,
    room: &RoomId,
    above: u64,
    page: i32,
    mut each: impl FnMut(MessageState) -> bool,
) -> StoreResult<()> {
    // CQL `bigint` seqs: nothing is stored above i64::MAX.
    let Ok(above_i) = i64::try_from(above) else {
        return Ok(());
    };
    let mut buckets = Vec::new();
    s.paged::<(i64,), _>(
        &s.st.buckets_asc_from,
        1000,
        (room.as_str(), bucket(above), i64::MAX),
        |(b,)| {
            buckets.push(b);
            Ok(true)
        },
    )
    .await?;
    for b in buckets {
        let mut stopped = false;
        s.paged::<Row, _>(
            &s.st.stream_asc_above,
            page,
            (room.as_str(), b, above_i),
            |row| {
                if let Some(m) = message_of(row)? {
                    if !each(m) {
                        stopped = true;
                        return Ok(false);
                    }
                }
                Ok(true)
            },
        )
        .await?;
        if stopped {
            break;
        }
    }
    Ok(())
}

pub async fn history(
    s: &ScyllaStore,
    room: &RoomId,
    range: HistoryRange,
    limit: usize,
) -> StoreResult<(Vec<MessageState>, bool)> {
    let mut out = Vec::with_capacity(limit.min(256));
    let mut more = false;
    let page = (limit + 1).min(1000) as i32;
    let take = |m: MessageState| {
        if out.len() == limit {
            more = true;
            return false;
        }
        out.push(m);
        true
    };
    match range {
        HistoryRange::After(after) => {
            messages_up(s, room, after, page, take).await?;
        }
        HistoryRange::Newest | HistoryRange::Before(_) => {
            let below = match range {
                HistoryRange::Before(b) => b,
                _ => u64::MAX,
            };
            messages_down(s, room, below, page, take).await?;
            out.reverse();
        }
    }
    Ok((out, more))
}

pub async fn events(
    s: &ScyllaStore,
    room: &RoomId,
    after: u64,
    upto: u64,
    limit: usize,
) -> StoreResult<Vec<(u64, Bytes)>> {
    let mut out = Vec::new();
    if upto <= after || limit == 0 {
        return Ok(out);
    }
    let (first, last) = (bucket(after.saturating_add(1)), bucket(upto));
    let mut buckets = Vec::new();
    s.paged::<(i64,), _>(
        &s.st.buckets_asc_from,
        1000,
        (room.as_str(), first, last),
        |(b,)| {
            buckets.push(b);
            Ok(true)
        },
    )
    .await?;
    let upto_i = upto.min(i64::MAX as u64) as i64;
    for b in buckets {
        let want = (limit - out.len()) as i32;
        let rows = s
            .rows::<(i64, Option<Vec<u8>>), _>(
                &s.st.stream_range_asc,
                (room.as_str(), b, after as i64, upto_i, want),
            )
            .await?;
        for (seq, event) in rows {
            if let Some(e) = event {
                out.push((seq as u64, Bytes::from(e)));
            }
        }
        if out.len() >= limit {
            out.truncate(limit);
            break;
        }
    }
    Ok(out)
}

async fn member_states(s: &ScyllaStore, room: &RoomId) -> StoreResult<Vec<(UserId, MemberState)>> {
    let mut members: Vec<(UserId, MemberState)> = Vec::new();
    s.paged::<(String, Option<String>, Option<i64>), _>(
        &s.st.members_of,
        1000,
        (room.as_str(),),
        |(u, role, joined)| {
            let user = UserId::new(&u).map_err(StoreError::Corrupt)?;
            let role = role_of(role.as_deref().unwrap_or("member"))?;
            members.push((user, MemberState::new(role, joined.unwrap_or(0) as u64)));
            Ok(true)
        },
    )
    .await?;
    let mut reads: HashMap<String, (i64, i64, i64, Vec<i64>)> = HashMap::new();
    s.paged::<(
        String,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<Vec<i64>>,
    ), _>(
        &s.st.reads_of,
        1000,
        (room.as_str(),),
        |(u, r, n, d, own)| {
            reads.insert(
                u,
                (
                    r.unwrap_or(0),
                    n.unwrap_or(0),
                    d.unwrap_or(0),
                    own.unwrap_or_default(),
                ),
            );
            Ok(true)
        },
    )
    .await?;
    for (user, m) in members.iter_mut() {
        if let Some((r, n, d, own)) = reads.remove(user.as_str()) {
            apply_read(m, r, n, d, own);
        }
    }
    Ok(members)
}

fn apply_read(m: &mut MemberState, read_seq: i64, read_n: i64, delivered: i64, own: Vec<i64>) {
    m.read_seq = read_seq as u64;
    m.read_n = read_n as u64;
    m.delivered_seq = delivered as u64;
    let mut own: Vec<u64> = own
        .into_iter()
        .map(|x| x as u64)
        .filter(|x| *x > m.read_seq)
        .collect();
    own.sort_unstable();
    own.truncate(crate::store::MAX_OWN_UNREAD);
    m.own_unread = own;
}

pub async fn load_room(
    s: &ScyllaStore,
    room: &RoomId,
    recent: usize,
) -> StoreResult<Option<LoadedRoom>> {
    let Some(meta) = s.meta_any(room).await? else {
        return Ok(None);
    };
    let buckets = s.buckets_down(room, i64::MAX).await?;
    // Last and first event seqs (skipping buckets whose rows never committed).
    let mut last_seq = 0;
    for b in &buckets {
        s.paged::<(i64, Option<Vec<u8>>), _>(
            &s.st.events_desc,
            16,
            (room.as_str(), *b),
            |(seq, e)| {
                if e.is_some() {
                    last_seq = seq as u64;
                    return Ok(false);
                }
                Ok(true)
            },
        )
        .await?;
        if last_seq > 0 {
            break;
        }
    }
    let mut first_seq = 0;
    for b in buckets.iter().rev() {
        let rows = s
            .rows::<(i64, Option<Vec<u8>>), _>(
                &s.st.stream_range_asc,
                (room.as_str(), *b, -1i64, i64::MAX, 64i32),
            )
            .await?;
        if let Some((seq, _)) = rows.into_iter().find(|(_, e)| e.is_some()) {
            first_seq = seq as u64;
            break;
        }
    }
    let mut recent_local_ids = Vec::new();
    let (mut msg_total, mut last_msg_seq, mut seen) = (0, 0, 0usize);
    let want = recent.max(1);
    let complete = messages_down(s, room, u64::MAX, (want + 1).min(1000) as i32, |m| {
        if seen == 0 {
            msg_total = m.n;
            last_msg_seq = m.seq;
        }
        if seen == recent {
            seen += 1;
            return false;
        }
        seen += 1;
        if let Some(local_id) = m.local_id {
            recent_local_ids.push(LocalIdRecord {
                from: m.from,
                local_id,
                seq: m.seq,
                ts: m.ts,
            });
        }
        seen < want || recent > 0
    })
    .await?;
    recent_local_ids.reverse();
    let members = member_states(s, room).await?;
    let mut bans = Vec::new();
    s.paged::<(String,), _>(&s.st.bans_of, 1000, (room.as_str(),), |(u,)| {
        bans.push(UserId::new(&u).map_err(StoreError::Corrupt)?);
        Ok(true)
    })
    .await?;
    let mut invites = Vec::new();
    s.paged::<(Vec<u8>,), _>(&s.st.invites_of, 1000, (room.as_str(),), |(v,)| {
        invites.push(keys::decode::<Invite>(&v, "invite")?);
        Ok(true)
    })
    .await?;
    let mut deletions = Vec::new();
    s.paged::<(i64, String), _>(&s.st.deletions_of, 1000, (room.as_str(),), |(seq, u)| {
        deletions.push((seq as u64, UserId::new(&u).map_err(StoreError::Corrupt)?));
        Ok(true)
    })
    .await?;
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
        recent_is_complete: complete && seen <= recent,
    }))
}

/// One page of a user's room index.
async fn room_page(
    s: &ScyllaStore,
    user: &UserId,
    read: &str,
    page: &PageReq,
) -> StoreResult<(Vec<RoomId>, Option<crate::store::Cursor>)> {
    let limit = page.limit.max(1);
    let rows = match &page.after {
        Some(c) => {
            let after = String::from_utf8(open_cursor(c, STORE, read)?)
                .map_err(|_| StoreError::BadCursor("cursor: not a cursor of this list".into()))?;
            s.rows::<(String,), _>(
                &s.st.user_rooms_after,
                (user.as_str(), after, (limit + 1) as i32),
            )
            .await?
        }
        None => {
            s.rows::<(String,), _>(&s.st.user_rooms_first, (user.as_str(), (limit + 1) as i32))
                .await?
        }
    };
    let mut rooms = Vec::new();
    for (r,) in rows.into_iter().take(limit + 1) {
        rooms.push(RoomId::new(&r).map_err(StoreError::Corrupt)?);
    }
    let next = if rooms.len() > limit {
        rooms.truncate(limit);
        rooms
            .last()
            .map(|r| make_cursor(STORE, read, r.as_str().as_bytes()))
    } else {
        None
    };
    Ok((rooms, next))
}

pub async fn member_rooms(
    s: &ScyllaStore,
    user: &UserId,
    page: PageReq,
) -> StoreResult<Page<RoomId>> {
    let (items, next) = room_page(s, user, "mr", &page).await?;
    Ok(Page { items, next })
}

pub async fn user_rooms(
    s: &ScyllaStore,
    user: &UserId,
    page: PageReq,
) -> StoreResult<Page<RoomOverview>> {
    let (rooms, next) = room_page(s, user, "ur", &page).await?;
    let mut out = Vec::new();
    for room in rooms {
        let Some(meta) = s.meta_any(&room).await?.filter(|m| !m.deleted) else {
            continue;
        };
        let Some((role, joined)) = s
            .one::<(Option<String>, Option<i64>), _>(
                &s.st.member_of,
                (room.as_str(), user.as_str()),
            )
            .await?
        else {
            continue;
        };
        let mut member = MemberState::new(
            role_of(role.as_deref().unwrap_or("member"))?,
            joined.unwrap_or(0) as u64,
        );
        if let Some((r, n, d, own)) = s
            .one::<(Option<i64>, Option<i64>, Option<i64>, Option<Vec<i64>>), _>(
                &s.st.read_of,
                (room.as_str(), user.as_str()),
            )
            .await?
        {
            apply_read(
                &mut member,
                r.unwrap_or(0),
                n.unwrap_or(0),
                d.unwrap_or(0),
                own.unwrap_or_default(),
            );
        }
        let last = latest_message_at_or_below(s, &room, u64::MAX).await?;
        let msg_total = last.as_ref().map_or(0, |m| m.n);
        let mut deleted_by_others_after_read = 0;
        s.paged::<(String,), _>(
            &s.st.deletions_after,
            1000,
            (room.as_str(), member.read_seq as i64),
            |(sender,)| {
                if sender != user.as_str() {
                    deleted_by_others_after_read += 1;
                }
                Ok(true)
            },
        )
        .await?;
        let favorite = s
            .one::<(String,), _>(&s.st.has_favorite, (user.as_str(), room.as_str()))
            .await?
            .is_some();
        let mut peer = None;
        if !meta.kind.is_room() {
            for (u, _) in member_states(s, &room).await? {
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

pub async fn public_rooms(
    s: &ScyllaStore,
    tenant: Option<&str>,
    prefix: &str,
    page: PageReq,
) -> StoreResult<Page<RoomMeta>> {
    let limit = page.limit.max(1);
    let prefix = prefix.to_lowercase();
    let base = dir_base(tenant);
    let bad_cursor = || StoreError::BadCursor("cursor: not a cursor of this list".into());
    // Position: (head, name, room) of the last entry returned.
    let after: Option<(String, String, String)> = match &page.after {
        Some(c) => {
            let raw = String::from_utf8(open_cursor(c, STORE, "dir")?)
                .map_err(|_| StoreError::BadCursor("cursor: not a cursor of this list".into()))?;
            let mut p = raw.splitn(3, '\0');
            match (p.next(), p.next(), p.next()) {
                // Only a partition of this tenant's directory.
                (Some(h), Some(n), Some(r))
                    if h.starts_with(&base) && (tenant.is_some() || !h.contains('\u{1f}')) =>
                {
                    Some((h.into(), n.into(), r.into()))
                }
                _ => return Err(bad_cursor()),
            }
        }
        None => None,
    };
    // The partitions to walk: the prefix's head only, or every head in order.
    let heads: Vec<String> = if prefix.is_empty() {
        let from = after.as_ref().map_or_else(|| base.clone(), |a| a.0.clone());
        let rows = match tenant {
            // The tenant's partitions: heads from `tenant` U+001F up to `tenant` U+0020.
            Some(t) => {
                let end = format!("{t}\u{20}");
                s.rows::<(String,), _>(&s.st.tenant_dir_heads, (from, end))
                    .await?
            }
            None => s.rows::<(String,), _>(&s.st.dir_heads, (from,)).await?,
        };
        rows.into_iter().map(|(h,)| h).collect()
    } else {
        vec![dir_key(tenant, &prefix).0]
    };
    let mut out: Vec<(String, RoomMeta)> = Vec::new();
    let mut next = None;
    'heads: for head in heads {
        let mut pos = match &after {
            Some((h, n, r)) if *h == head => Some((n.clone(), r.clone())),
            _ => None,
        };
        loop {
            let batch = (limit + 1) as i32;
            let rows = match &pos {
                Some((n, r)) => {
                    s.rows::<(String, String), _>(
                        &s.st.dir_page_after,
                        (head.as_str(), n.as_str(), r.as_str(), batch),
                    )
                    .await?
                }
                None => {
                    s.rows::<(String, String), _>(
                        &s.st.dir_page,
                        (head.as_str(), prefix.as_str(), batch),
                    )
                    .await?
                }
            };
            let exhausted = rows.len() < batch as usize;
            for (name, room) in rows {
                if !name.starts_with(&prefix) {
                    break 'heads;
                }
                pos = Some((name.clone(), room.clone()));
                if out.len() == limit {
                    let (h, last) = out
                        .last()
                        .map(|(h, m)| (h.clone(), m.clone()))
                        .ok_or_else(|| corrupt("directory"))?;
                    let key = format!("{h}\0{}\0{}", last.name.to_lowercase(), last.id);
                    next = Some(make_cursor(STORE, "dir", key.as_bytes()));
                    break 'heads;
                }
                let Ok(room) = RoomId::new(&room) else {
                    continue;
                };
                if let Some(m) = s
                    .meta_any(&room)
                    .await?
                    .filter(|m| !m.deleted && !m.private)
                {
                    out.push((head.clone(), m));
                }
            }
            if exhausted {
                break;
            }
        }
    }
    Ok(Page {
        items: out.into_iter().map(|(_, m)| m).collect(),
        next,
    })
}

pub async fn favorites(s: &ScyllaStore, user: &UserId) -> StoreResult<(Vec<RoomId>, Vec<UserId>)> {
    let (mut rooms, mut users) = (Vec::new(), Vec::new());
    s.paged::<(String, String), _>(
        &s.st.get_favorites,
        1000,
        (user.as_str(),),
        |(kind, target)| {
            match kind.as_str() {
                "r" => rooms.push(RoomId::new(&target).map_err(StoreError::Corrupt)?),
                "u" => users.push(UserId::new(&target).map_err(StoreError::Corrupt)?),
                _ => return Err(corrupt("favorite kind")),
            }
            Ok(true)
        },
    )
    .await?;
    Ok((rooms, users))
}
