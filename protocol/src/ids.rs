//! Newtype identifiers of the protocol: rooms and users.
//!
//! Room and user ids are validated once at the edge (decode time) so the
//! rest of a server or client can treat them as trusted, cheap-to-clone strings.
//!
//! **Scoped ids** (servers with tenants): inside a server an id may carry its
//! tenant, as `TENANT` + U+001F + the id (`acme\u{1f}general`). The separator
//! is a control character, which no id a client can send contains, so a
//! scoped id can never be forged from outside, and the split is unambiguous.
//! Clients never see one: while a frame is encoded for the wire
//! ([`crate::frame::encode_into`], or [`public_ids`] around other encoders),
//! an id serializes as its public part ([`RoomId::public`]); everywhere
//! else (a server's store records, its logs, its Redis keys) it keeps the
//! tenant.

use serde::{Deserialize, Serialize, Serializer};
use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

/// Separates a scoped id's tenant from the id (U+001F, the unit separator).
pub const TENANT_SEP: char = '\u{1f}';
/// Longest tenant name, in bytes.
pub const MAX_TENANT_LEN: usize = 32;

/// Checks a tenant name: 1 to 32 bytes of `A-Z a-z 0-9 _ . -`.
pub fn check_tenant(t: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > MAX_TENANT_LEN {
        return Err(format!("tenant must be 1 to {MAX_TENANT_LEN} bytes"));
    }
    if !t
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err("tenant may only contain A-Z a-z 0-9 _ . -".into());
    }
    Ok(())
}

thread_local! {
    static PUBLIC: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with ids serializing as their public part (the wire form).
/// Serialization is synchronous, so the flag covers exactly what `f` encodes.
pub fn public_ids<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            PUBLIC.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(PUBLIC.with(|p| p.replace(true)));
    f()
}

fn encoding_public() -> bool {
    PUBLIC.with(|p| p.get())
}

/// `(tenant, rest)` of a scoped id.
fn split_scoped(s: &str) -> Option<(&str, &str)> {
    s.split_once(TENANT_SEP)
}

/// `text` with every scoped id in it shown as its public part: each
/// separator goes, with the tenant name right before it.
pub fn strip_scopes(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(TENANT_SEP) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let parts = text.split(TENANT_SEP).count();
    for (i, part) in text.split(TENANT_SEP).enumerate() {
        // Every part but the last ends with the tenant of the next id.
        let keep = if i + 1 < parts {
            let cut = part
                .bytes()
                .rposition(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')))
                .map_or(0, |at| at + 1);
            &part[..cut]
        } else {
            part
        };
        out.push_str(keep);
    }
    std::borrow::Cow::Owned(out)
}

/// Serializes a free text (an error message) for the wire: ids in it public.
pub fn serialize_text<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    if encoding_public() {
        s.serialize_str(&strip_scopes(text))
    } else {
        s.serialize_str(text)
    }
}

/// Longest accepted room id, in bytes.
pub const MAX_ROOM_ID_LEN: usize = 64;
/// Longest accepted user id (JWT `sub`), in bytes.
pub const MAX_USER_ID_LEN: usize = 128;

/// A room id: 1..=64 bytes of `[A-Za-z0-9_.:-]`, not `.` or `..`; inside a
/// server also a scoped one (`TENANT` U+001F id, see the module docs).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct RoomId(Arc<str>);

impl Serialize for RoomId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if encoding_public() {
            self.public()
        } else {
            &self.0
        })
    }
}

impl RoomId {
    /// Validates and wraps a room id, plain or scoped. A malformed scoped id
    /// gets the plain rules' answer (a client sent a control character).
    pub fn new(s: &str) -> Result<Self, String> {
        if let Some((tenant, id)) = split_scoped(s) {
            if check_tenant(tenant).is_ok() && Self::plain(id).is_ok() {
                return Ok(Self(Arc::from(s)));
            }
        }
        Self::plain(s)
    }

    /// Validates and wraps a plain room id (what clients may send).
    pub fn plain(s: &str) -> Result<Self, String> {
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

    /// The full id (with its tenant when scoped): for keys and comparisons.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `plain` in `tenant` (a plain id given a scoped one keeps only its public part).
    pub fn scoped(tenant: &str, plain: &RoomId) -> RoomId {
        Self(Arc::from(format!("{tenant}{TENANT_SEP}{}", plain.public())))
    }

    /// The tenant of a scoped id.
    pub fn tenant(&self) -> Option<&str> {
        split_scoped(&self.0).map(|(t, _)| t)
    }

    /// The id as its tenant's clients know it.
    pub fn public(&self) -> &str {
        split_scoped(&self.0).map_or(&self.0, |(_, id)| id)
    }

    pub fn is_scoped(&self) -> bool {
        self.0.contains(TENANT_SEP)
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
/// bidirectional control characters, at least one visible character; inside
/// a server also a scoped one (`TENANT` U+001F id, see the module docs).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct UserId(Arc<str>);

impl Serialize for UserId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if encoding_public() {
            self.public()
        } else {
            &self.0
        })
    }
}

impl UserId {
    /// Validates and wraps a user id, plain or scoped. A malformed scoped id
    /// gets the plain rules' answer (a client sent a control character).
    pub fn new(s: &str) -> Result<Self, String> {
        if let Some((tenant, id)) = split_scoped(s) {
            if check_tenant(tenant).is_ok() && Self::plain(id).is_ok() {
                return Ok(Self(Arc::from(s)));
            }
        }
        Self::plain(s)
    }

    /// Validates and wraps a plain user id (what a token or a client may give).
    pub fn plain(s: &str) -> Result<Self, String> {
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

    /// The full id (with its tenant when scoped): for keys and comparisons.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `plain` in `tenant` (a scoped id given keeps only its public part).
    pub fn scoped(tenant: &str, plain: &UserId) -> UserId {
        Self(Arc::from(format!("{tenant}{TENANT_SEP}{}", plain.public())))
    }

    /// The tenant of a scoped id.
    pub fn tenant(&self) -> Option<&str> {
        split_scoped(&self.0).map(|(t, _)| t)
    }

    /// The id as its tenant's clients know it.
    pub fn public(&self) -> &str {
        split_scoped(&self.0).map_or(&self.0, |(_, id)| id)
    }

    pub fn is_scoped(&self) -> bool {
        self.0.contains(TENANT_SEP)
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
    fn scoped_ids_keep_their_tenant_inside_and_show_the_public_part_outside() {
        let plain = RoomId::new("general").unwrap();
        let r = RoomId::scoped("acme", &plain);
        assert_eq!(r.as_str(), "acme\u{1f}general");
        assert_eq!((r.tenant(), r.public()), (Some("acme"), "general"));
        assert_eq!(RoomId::new(r.as_str()).unwrap(), r, "a store reads it back");
        assert!(
            RoomId::plain(r.as_str()).is_err(),
            "clients cannot send one"
        );
        assert_ne!(r, RoomId::scoped("globex", &plain));
        assert!(RoomId::new("bad tenant\u{1f}general").is_err());
        assert!(RoomId::new("acme\u{1f}globex\u{1f}general").is_err());
        assert_eq!(
            RoomId::new("\u{1f}general").unwrap_err(),
            "room id may only contain A-Z a-z 0-9 _ . : -",
            "a malformed one is refused by the plain rules"
        );
        assert!(UserId::new("x\u{1f}")
            .unwrap_err()
            .contains("control characters"));
        let u = UserId::scoped("acme", &UserId::new("alice").unwrap());
        assert_eq!((u.tenant(), u.public()), (Some("acme"), "alice"));
        assert!(UserId::plain(u.as_str()).is_err());
        assert_eq!(UserId::new("alice").unwrap().tenant(), None);

        // Only the wire encoding shows the public part.
        let full = rmp_serde::to_vec(&(&r, &u)).unwrap();
        let (r2, u2): (RoomId, UserId) = rmp_serde::from_slice(&full).unwrap();
        assert_eq!((r2, u2), (r.clone(), u.clone()));
        let wire = public_ids(|| rmp_serde::to_vec(&(&r, &u)).unwrap());
        let (r3, u3): (String, String) = rmp_serde::from_slice(&wire).unwrap();
        assert_eq!((r3.as_str(), u3.as_str()), ("general", "alice"));
        assert!(!encoding_public(), "the flag is restored");
    }

    #[test]
    fn scopes_are_stripped_from_texts() {
        assert_eq!(strip_scopes("no room x"), "no room x");
        assert_eq!(
            strip_scopes("you are not a member of acme\u{1f}general (acme\u{1f}al-ice)"),
            "you are not a member of general (al-ice)"
        );
        assert_eq!(strip_scopes("\u{1f}x"), "x");
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
