//! Key and value layouts of the embedded store. Keys sort so that one room's
//! (or one user's) rows are contiguous, and seqs sort numerically (big-endian).

use crate::ids::{RoomId, UserId};
use crate::store::StoreError;
use serde::{Deserialize, Serialize};

fn len_prefixed(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

/// `[len u8][room bytes]`: the prefix of every row of a room.
pub fn room_prefix(room: &RoomId) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + room.as_str().len() + 8);
    len_prefixed(&mut k, room.as_str());
    k
}

/// `[len u8][user bytes]`: the prefix of every row of a user.
pub fn user_prefix(user: &UserId) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + user.as_str().len() + 32);
    len_prefixed(&mut k, user.as_str());
    k
}

/// Room prefix + big-endian seq (events, messages, deletions).
pub fn seq_key(room: &RoomId, seq: u64) -> Vec<u8> {
    let mut k = room_prefix(room);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn seq_of_key(key: &[u8]) -> Result<u64, StoreError> {
    let at = key
        .len()
        .checked_sub(8)
        .ok_or_else(|| StoreError::Corrupt("short seq key".into()))?;
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[at..]);
    Ok(u64::from_be_bytes(b))
}

/// Room prefix + user (members, bans).
pub fn room_user_key(room: &RoomId, user: &UserId) -> Vec<u8> {
    let mut k = room_prefix(room);
    k.extend_from_slice(user.as_str().as_bytes());
    k
}

/// User prefix + room (a user's room index).
pub fn user_room_key(user: &UserId, room: &RoomId) -> Vec<u8> {
    let mut k = user_prefix(user);
    k.extend_from_slice(room.as_str().as_bytes());
    k
}

/// The suffix of a key after a prefix, as UTF-8.
pub fn suffix_str<'a>(key: &'a [u8], prefix: &[u8]) -> Result<&'a str, StoreError> {
    key.get(prefix.len()..)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(|| StoreError::Corrupt("key suffix".into()))
}

pub fn local_id_key(room: &RoomId, user: &UserId, local_id: &str) -> Vec<u8> {
    let mut k = room_prefix(room);
    len_prefixed(&mut k, user.as_str());
    k.extend_from_slice(local_id.as_bytes());
    k
}

/// Room prefix + invite code.
pub fn invite_key(room: &RoomId, code: &str) -> Vec<u8> {
    let mut k = room_prefix(room);
    k.extend_from_slice(code.as_bytes());
    k
}

/// The key prefix of a tenant's part of the directory: the tenant and
/// U+001F (a tenant is ASCII without it); empty for rooms of no tenant.
pub fn directory_prefix(tenant: Option<&str>) -> Vec<u8> {
    match tenant {
        Some(t) => {
            let mut k = Vec::with_capacity(t.len() + 1);
            k.extend_from_slice(t.as_bytes());
            k.push(0x1f);
            k
        }
        None => Vec::new(),
    }
}

/// Public directory: the room's directory prefix (its tenant, if any), the
/// lowercased name, a 0 byte, the room id. Rooms of no tenant are in the
/// `public` keyspace, rooms of a tenant in `public_by_tenant`, so a listing
/// reads only its own tenant's rows.
pub fn public_key(name: &str, room: &RoomId) -> Vec<u8> {
    let mut k = directory_prefix(room.tenant());
    k.extend_from_slice(name.to_lowercase().as_bytes());
    k.push(0);
    k.extend_from_slice(room.as_str().as_bytes());
    k
}

/// Favorites: user prefix, `r` + room id or `u` + user id.
pub fn favorite_key(user: &UserId, room: Option<&RoomId>, peer: Option<&UserId>) -> Vec<u8> {
    let mut k = user_prefix(user);
    match (room, peer) {
        (Some(r), _) => {
            k.push(b'r');
            k.extend_from_slice(r.as_str().as_bytes());
        }
        (None, Some(u)) => {
            k.push(b'u');
            k.extend_from_slice(u.as_str().as_bytes());
        }
        (None, None) => {}
    }
    k
}

/// Value layouts carry a leading format byte so they can evolve.
const FORMAT_V1: u8 = 1;

/// Positional (array) MessagePack behind a format byte: compact, and fields
/// appended later with `#[serde(default)]` still decode old records.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Most records (message states, members) fit: no regrowth while encoding.
    let mut out = Vec::with_capacity(128);
    encode_into(&mut out, v);
    out
}

/// [`encode`] into a buffer the caller reuses (cleared first): the embedded
/// store's committer encodes every row into one scratch buffer, because fjall
/// copies each value into its own allocation anyway.
pub fn encode_into<T: Serialize>(out: &mut Vec<u8>, v: &T) {
    out.clear();
    out.push(FORMAT_V1);
    // Writing our own serde types into a Vec cannot fail.
    let _ = rmp_serde::encode::write(out, v);
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => {
            rmp_serde::from_slice(rest).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
        }
        _ => Err(StoreError::Corrupt(format!("{what}: unknown format"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_keys_sort_by_room_then_seq() {
        let a = RoomId::new("a").unwrap();
        let b = RoomId::new("ab").unwrap();
        assert!(seq_key(&a, 2) < seq_key(&a, 256));
        // The length prefix keeps "a" and "ab" apart although one prefixes the other.
        assert!(!seq_key(&b, 1).starts_with(&room_prefix(&a)));
        assert_eq!(seq_of_key(&seq_key(&a, 77)).unwrap(), 77);
    }

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let v = (1u64, "x".to_string());
        assert_eq!(decode::<(u64, String)>(&encode(&v), "t").unwrap(), v);
        assert!(decode::<(u64, String)>(&[9, 9], "t").is_err());
        // A reused buffer holds exactly the last record.
        let mut buf = encode(&(7u64, "a much longer string than the next".to_string()));
        encode_into(&mut buf, &v);
        assert_eq!(buf, encode(&v));
    }
}
