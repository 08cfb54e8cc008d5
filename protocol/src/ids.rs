//! Newtype identifiers of the protocol: rooms and users.
//!
//! Room and user ids are validated once at the edge (decode time) so the
//! rest of a server or client can treat them as trusted, cheap-to-clone strings.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Longest accepted room id, in bytes.
pub const MAX_ROOM_ID_LEN: usize = 64;
/// Longest accepted user id (JWT `sub`), in bytes.
pub const MAX_USER_ID_LEN: usize = 128;

/// A room id: 1..=64 bytes of `[A-Za-z0-9_.:-]`, not `.` or `..`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomId(Arc<str>);

impl RoomId {
    /// Validates and wraps a room id.
    pub fn new(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > MAX_ROOM_ID_LEN {
            return Err(format!("room id must be 1 to {MAX_ROOM_ID_LEN} bytes"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
        {
            return Err("room id may only contain A-Z a-z 0-9 _ . : -".into());
        }
        if s == "." || s == ".." {
            // Path segments: a room id may end up in a URL or a file path.
            return Err("room id must not be . or ..".into());
        }
        Ok(Self(Arc::from(s)))
    }

    /// A fresh random room id (`r` followed by 24 hex digits, 96 random bits).
    pub fn random() -> Self {
        let bytes: [u8; 12] = rand::random();
        Self(Arc::from(format!("r{}", hex::encode(bytes))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RoomId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::new(&s)
    }
}

impl From<RoomId> for String {
    fn from(r: RoomId) -> String {
        r.0.to_string()
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({})", self.0)
    }
}

/// A user id, taken from the JWT `sub` claim: 1..=128 bytes, no control or
/// bidirectional control characters, at least one visible character.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(Arc<str>);

impl UserId {
    pub fn new(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > MAX_USER_ID_LEN {
            return Err(format!("user id must be 1 to {MAX_USER_ID_LEN} bytes"));
        }
        if s.chars().any(char::is_control) {
            return Err("user id must not contain control characters".into());
        }
        if let Some(why) = crate::text::misleading(s) {
            return Err(format!("user id {why}"));
        }
        Ok(Self(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::new(&s)
    }
}

impl From<UserId> for String {
    fn from(u: UserId) -> String {
        u.0.to_string()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0)
    }
}

/// Milliseconds since the Unix epoch, as carried in `ts` fields.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_are_validated() {
        assert!(RoomId::new("general").is_ok());
        assert!(RoomId::new("team:eng-1.x_y").is_ok());
        assert!(RoomId::new("").is_err());
        assert!(RoomId::new("has space").is_err());
        assert!(RoomId::new(&"a".repeat(65)).is_err());
        assert!(RoomId::new(".").is_err());
        assert!(RoomId::new("..").is_err());
        assert!(RoomId::new("...").is_ok());
        let r = RoomId::random();
        assert_eq!(r.as_str().len(), 25);
        assert!(RoomId::new(r.as_str()).is_ok());
    }

    #[test]
    fn user_ids_are_validated() {
        assert!(UserId::new("alice@example.com").is_ok());
        assert!(UserId::new("").is_err());
        assert!(UserId::new("a\nb").is_err());
        assert!(UserId::new("admin\u{202E}nimda").is_err());
        assert!(UserId::new("\u{200B}").is_err());
        assert!(UserId::new(" ").is_err());
    }
}

/// JSON Schema of the ids: strings with the rules above (for OpenAPI documents).
#[cfg(feature = "openapi")]
mod schema {
    use super::{RoomId, UserId, MAX_ROOM_ID_LEN, MAX_USER_ID_LEN};
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;

    impl utoipa::PartialSchema for RoomId {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_ROOM_ID_LEN))
                .pattern(Some("^[A-Za-z0-9_.:-]+$"))
                .description(Some("A room id: 1 to 64 of A-Z a-z 0-9 _ . : -"))
                .into()
        }
    }
    impl utoipa::ToSchema for RoomId {}

    impl utoipa::PartialSchema for UserId {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_USER_ID_LEN))
                .pattern(Some("^[^\\x00-\\x1f\\x7f-\\x9f]+$"))
                .description(Some(
                    "A user id (the JWT `sub`): 1 to 128 bytes, no control characters",
                ))
                .into()
        }
    }
    impl utoipa::ToSchema for UserId {}
}
