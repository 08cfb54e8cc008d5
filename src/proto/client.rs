//! Frames a client sends (one struct per request type, matching
//! `proto-spec/README.md` one to one).
//!
//! The server decodes in two steps: a small header (`t`, `id`) first, then the
//! request struct for that `t` from the same bytes, so an unknown `t` is told
//! apart from a known one with bad fields, and the error can carry the `id`.

use super::error::WireError;
use super::validate;
use crate::ids::RoomId;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Protocol version; this server speaks 1.
    pub v: u32,
    /// A JWT (HS256, RS256 or ES256 as the server is configured).
    pub token: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateRoom {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub private: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Join {
    pub id: u64,
    pub room: RoomId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Leave {
    pub id: u64,
    pub room: RoomId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Send {
    pub id: u64,
    pub room: RoomId,
    pub body: String,
    /// Client-chosen idempotency key: a resend with the same `(room, sender, local_id)`
    /// returns the original `sent` instead of storing a duplicate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub id: u64,
    pub room: RoomId,
    /// Return messages with `seq < before` (default: the newest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// Page size, 1..=200 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
}

/// Every frame a v1 client may send. Serializes with `t` first.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ClientFrame {
    Hello(Hello),
    CreateRoom(CreateRoom),
    Join(Join),
    Leave(Leave),
    Send(Send),
    History(History),
    Ping(Ping),
}

/// Why a payload could not be decoded into a [`ClientFrame`]; `id` is set when
/// the header was readable, so the error reply can carry it.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    pub id: Option<u64>,
    pub error: WireError,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    t: Option<&'a str>,
    #[serde(default)]
    id: Option<u64>,
}

fn body<'de, T: Deserialize<'de>>(payload: &'de [u8], id: Option<u64>) -> Result<T, DecodeError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(payload);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = match inner {
            rmp_serde::decode::Error::Utf8Error(_) => "invalid UTF-8 in a string".to_string(),
            other => other.to_string(),
        };
        DecodeError {
            id,
            error: WireError::bad_request(if path == "." {
                msg
            } else {
                format!("{path}: {msg}")
            }),
        }
    })
}

impl ClientFrame {
    /// Decodes one frame payload (the bytes after the length header).
    pub fn decode(payload: &[u8]) -> Result<ClientFrame, DecodeError> {
        validate::check(payload).map_err(|m| DecodeError {
            id: None,
            error: WireError::bad_request(m),
        })?;
        let head: Head<'_> = body(payload, None)?;
        let id = head.id;
        let t = head.t.ok_or_else(|| DecodeError {
            id,
            error: WireError::bad_request("t: missing frame type"),
        })?;
        Ok(match t {
            "hello" => ClientFrame::Hello(body(payload, id)?),
            "create_room" => ClientFrame::CreateRoom(body(payload, id)?),
            "join" => ClientFrame::Join(body(payload, id)?),
            "leave" => ClientFrame::Leave(body(payload, id)?),
            "send" => ClientFrame::Send(body(payload, id)?),
            "history" => ClientFrame::History(body(payload, id)?),
            "ping" => ClientFrame::Ping(body(payload, id)?),
            other => {
                return Err(DecodeError {
                    id,
                    error: WireError::new(
                        super::ErrorCode::UnknownType,
                        format!("unknown frame type {other:?}"),
                    ),
                })
            }
        })
    }

    /// The type name as it appears in `t`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientFrame::Hello(_) => "hello",
            ClientFrame::CreateRoom(_) => "create_room",
            ClientFrame::Join(_) => "join",
            ClientFrame::Leave(_) => "leave",
            ClientFrame::Send(_) => "send",
            ClientFrame::History(_) => "history",
            ClientFrame::Ping(_) => "ping",
        }
    }

    /// The request id, if the frame has one.
    pub fn id(&self) -> Option<u64> {
        match self {
            ClientFrame::Hello(f) => f.id,
            ClientFrame::CreateRoom(f) => Some(f.id),
            ClientFrame::Join(f) => Some(f.id),
            ClientFrame::Leave(f) => Some(f.id),
            ClientFrame::Send(f) => Some(f.id),
            ClientFrame::History(f) => Some(f.id),
            ClientFrame::Ping(f) => f.id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ErrorCode;

    fn payload(v: serde_json::Value) -> Vec<u8> {
        rmp_serde::to_vec_named(&v).unwrap()
    }

    #[test]
    fn decodes_and_ignores_unknown_keys() {
        let f = ClientFrame::decode(&payload(serde_json::json!({
            "t": "send", "id": 3, "room": "general", "body": "hi", "extra": [1, 2]
        })))
        .unwrap();
        match f {
            ClientFrame::Send(s) => {
                assert_eq!(s.id, 3);
                assert_eq!(s.room.as_str(), "general");
                assert_eq!(s.local_id, None);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_type_keeps_the_id() {
        let e =
            ClientFrame::decode(&payload(serde_json::json!({"t": "nope", "id": 9}))).unwrap_err();
        assert_eq!(e.id, Some(9));
        assert_eq!(e.error.code, ErrorCode::UnknownType);
    }

    #[test]
    fn wrong_field_types_name_the_field() {
        let e = ClientFrame::decode(&payload(
            serde_json::json!({"t": "join", "id": 4, "room": 5}),
        ))
        .unwrap_err();
        assert_eq!(e.id, Some(4));
        assert_eq!(e.error.code, ErrorCode::BadRequest);
        assert!(e.error.message.starts_with("room"), "{}", e.error.message);
        let e =
            ClientFrame::decode(&payload(serde_json::json!({"t": "join", "id": 4}))).unwrap_err();
        assert!(e.error.message.contains("room"), "{}", e.error.message);
        let e = ClientFrame::decode(&payload(
            serde_json::json!({"t": "join", "id": 4, "room": "bad room"}),
        ))
        .unwrap_err();
        assert!(e.error.message.contains("room"), "{}", e.error.message);
    }

    #[test]
    fn invalid_utf8_is_a_bad_request() {
        // {"t": "send", "id": 1, "room": "r", "body": <0xff>}
        let mut p = vec![
            0x84, 0xa1, b't', 0xa4, b's', b'e', b'n', b'd', 0xa2, b'i', b'd', 0x01,
        ];
        p.extend([
            0xa4, b'r', b'o', b'o', b'm', 0xa1, b'r', 0xa4, b'b', b'o', b'd', b'y', 0xa1, 0xff,
        ]);
        let e = ClientFrame::decode(&p).unwrap_err();
        assert_eq!(e.error.code, ErrorCode::BadRequest);
        assert!(e.error.message.contains("body"), "{}", e.error.message);
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let f = ClientFrame::History(History {
            id: 1,
            room: RoomId::new("r1").unwrap(),
            before: Some(10),
            limit: None,
        });
        let bytes = rmp_serde::to_vec_named(&f).unwrap();
        assert_eq!(ClientFrame::decode(&bytes).unwrap(), f);
    }
}
