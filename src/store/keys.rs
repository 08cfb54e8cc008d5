//! Key and value layouts of the embedded store. Keys sort so that one room's
//! rows are contiguous and messages are in seq order (big-endian seq).

use crate::ids::{RoomId, UserId};
use crate::proto::server::Message;
use crate::store::{Role, RoomMeta, StoreError};
use serde::{Deserialize, Serialize};

/// `[len u8][room bytes]`: the prefix of every row of a room.
pub fn room_prefix(room: &RoomId) -> Vec<u8> {
    let r = room.as_str().as_bytes();
    let mut k = Vec::with_capacity(1 + r.len() + 8);
    k.push(r.len() as u8);
    k.extend_from_slice(r);
    k
}

pub fn message_key(room: &RoomId, seq: u64) -> Vec<u8> {
    let mut k = room_prefix(room);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn seq_of_message_key(key: &[u8]) -> Result<u64, StoreError> {
    let tail = key
        .len()
        .checked_sub(8)
        .map(|at| &key[at..])
        .ok_or_else(|| StoreError::Corrupt("short message key".into()))?;
    let mut b = [0u8; 8];
    b.copy_from_slice(tail);
    Ok(u64::from_be_bytes(b))
}

pub fn member_key(room: &RoomId, user: &UserId) -> Vec<u8> {
    let mut k = room_prefix(room);
    k.extend_from_slice(user.as_str().as_bytes());
    k
}

pub fn local_id_key(room: &RoomId, user: &UserId, local_id: &str) -> Vec<u8> {
    let mut k = room_prefix(room);
    let u = user.as_str().as_bytes();
    k.push(u.len() as u8);
    k.extend_from_slice(u);
    k.extend_from_slice(local_id.as_bytes());
    k
}

/// Value layouts carry a leading format byte so they can evolve.
const FORMAT_V1: u8 = 1;

#[derive(Serialize, Deserialize)]
struct MessageRecord {
    from: UserId,
    body: String,
    ts: u64,
    local_id: Option<String>,
}

fn encode_record<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    // Positional (array) encoding: compact, and these types cannot fail to encode.
    let _ = rmp_serde::encode::write(&mut out, v);
    out
}

fn decode_record<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => {
            rmp_serde::from_slice(rest).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
        }
        _ => Err(StoreError::Corrupt(format!("{what}: unknown format"))),
    }
}

pub fn encode_message(m: &Message) -> Vec<u8> {
    encode_record(&(&m.from, &m.body, m.ts, &m.local_id))
}

pub fn decode_message(room: &RoomId, seq: u64, bytes: &[u8]) -> Result<Message, StoreError> {
    let r: MessageRecord = decode_record(bytes, "message")?;
    Ok(Message {
        room: room.clone(),
        seq,
        from: r.from,
        body: r.body,
        ts: r.ts,
        local_id: r.local_id,
    })
}

pub fn encode_meta(m: &RoomMeta) -> Vec<u8> {
    encode_record(m)
}

pub fn decode_meta(bytes: &[u8]) -> Result<RoomMeta, StoreError> {
    decode_record(bytes, "room")
}

pub fn encode_role(r: Role) -> Vec<u8> {
    encode_record(&r)
}

pub fn decode_role(bytes: &[u8]) -> Result<Role, StoreError> {
    decode_record(bytes, "member")
}

pub fn encode_seq_ts(seq: u64, ts: u64) -> Vec<u8> {
    encode_record(&(seq, ts))
}

pub fn decode_seq_ts(bytes: &[u8]) -> Result<(u64, u64), StoreError> {
    decode_record(bytes, "local_id")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_sort_by_room_then_seq() {
        let a = RoomId::new("a").unwrap();
        let b = RoomId::new("ab").unwrap();
        assert!(message_key(&a, 2) < message_key(&a, 256));
        // Length prefix keeps "a" and "ab" apart even though one prefixes the other.
        assert!(!message_key(&b, 1).starts_with(&room_prefix(&a)));
        assert_eq!(seq_of_message_key(&message_key(&a, 77)).unwrap(), 77);
    }

    #[test]
    fn records_round_trip() {
        let room = RoomId::new("r").unwrap();
        let m = Message {
            room: room.clone(),
            seq: 5,
            from: UserId::new("u").unwrap(),
            body: "hello".into(),
            ts: 42,
            local_id: Some("l1".into()),
        };
        assert_eq!(decode_message(&room, 5, &encode_message(&m)).unwrap(), m);
        assert!(decode_message(&room, 5, &[9, 9]).is_err());
    }
}
