//! Stored records and the unread-count rule.

use crate::ids::{RoomId, UserId};
use crate::proto::server::Message;
use crate::proto::types::{Attachment, MessageKind, ReactionCount, Role, RoomKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMeta {
    pub id: RoomId,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub private: bool,
    #[serde(default)]
    pub kind: RoomKind,
    pub created_by: UserId,
    pub created_at: u64,
    #[serde(default)]
    pub deleted: bool,
    /// Member count (kept by the owning shard).
    #[serde(default)]
    pub members: u32,
}

/// Own messages after the read pointer are tracked one by one up to this many.
pub const MAX_OWN_UNREAD: usize = 4096;

/// A member's per-room state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    pub role: Role,
    /// Highest seq read (only moves forward).
    pub read_seq: u64,
    /// Messages created at or before `read_seq`.
    pub read_n: u64,
    /// Seqs of the member's own messages after `read_seq` (they never count as unread).
    #[serde(default)]
    pub own_unread: Vec<u64>,
    /// Highest seq handed to any of the member's sessions.
    #[serde(default)]
    pub delivered_seq: u64,
    #[serde(default)]
    pub joined_at: u64,
}

impl MemberState {
    pub fn new(role: Role, joined_at: u64) -> Self {
        Self {
            role,
            read_seq: 0,
            read_n: 0,
            own_unread: Vec::new(),
            delivered_seq: 0,
            joined_at,
        }
    }
}

/// Unread messages for a member: messages created after the read pointer, minus
/// the member's own, minus those others deleted. O(1) apart from the deletion
/// count, which callers take from the (small) deletion list.
pub fn unread(msg_total: u64, m: &MemberState, deleted_by_others_after_read: u64) -> u64 {
    msg_total
        .saturating_sub(m.read_n)
        .saturating_sub(m.own_unread.len() as u64)
        .saturating_sub(deleted_by_others_after_read)
}

/// A message's latest state, as stored in the message table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageState {
    pub room: RoomId,
    pub seq: u64,
    /// Ordinal among the room's messages: 1 for the first message ever.
    pub n: u64,
    pub from: UserId,
    pub body: String,
    pub ts: u64,
    pub local_id: Option<String>,
    pub kind: MessageKind,
    pub attachments: Vec<Attachment>,
    pub reply_to: Option<u64>,
    pub edited_at: Option<u64>,
    pub deleted: bool,
    /// Emoji → users who reacted with it, in reaction order.
    pub reactions: BTreeMap<String, Vec<UserId>>,
    /// The embedded store's cell versions: the event seq that last set the body
    /// (`b`), the deletion (`d`) or one reaction (`r\0emoji\0user`, kept when
    /// removed), so replayed or reordered writes converge to the highest seq.
    /// Not part of the wire form.
    #[serde(default)]
    pub cell_at: BTreeMap<String, u64>,
    /// The message's `edit` events as `(seq, ts)`, oldest first: rewritten in
    /// the event log on every later edit and on deletion, so replay never
    /// shows an earlier text.
    #[serde(default)]
    pub edits: Vec<(u64, u64)>,
}

impl MessageState {
    /// The wire form, with reaction counts as `reader` sees them.
    pub fn view(&self, reader: Option<&UserId>) -> Message {
        Message {
            room: self.room.clone(),
            seq: self.seq,
            from: self.from.clone(),
            body: self.body.clone(),
            ts: self.ts,
            local_id: self.local_id.clone(),
            kind: self.kind,
            attachments: self.attachments.clone(),
            reply_to: self.reply_to,
            edited_at: self.edited_at,
            deleted: self.deleted,
            reactions: self
                .reactions
                .iter()
                .filter(|(_, users)| !users.is_empty())
                .map(|(emoji, users)| ReactionCount {
                    emoji: emoji.clone(),
                    count: users.len() as u32,
                    me: reader.is_some_and(|r| users.contains(r)),
                })
                .collect(),
        }
    }

    /// The `msg` push as the event log keeps it once the message changed: the
    /// latest body (or the tombstone), no reactions (those replay as their own
    /// `reaction` events).
    pub fn replay_view(&self) -> Message {
        let mut m = self.view(None);
        m.reactions.clear();
        m
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub code: String,
    pub room: RoomId,
    pub created_by: UserId,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub revoked: bool,
}

impl Invite {
    /// Why the invite cannot be used at `now`, if it cannot.
    pub fn unusable(&self, now_ms: u64) -> Option<&'static str> {
        if self.revoked {
            Some("invite was revoked")
        } else if self.expires_at.is_some_and(|e| now_ms >= e) {
            Some("invite has expired")
        } else if self.max_uses.is_some_and(|m| self.uses >= m) {
            Some("invite has no uses left")
        } else {
            None
        }
    }
}

/// One room of a user's room list, as read from the store.
#[derive(Clone, Debug)]
pub struct RoomOverview {
    pub meta: RoomMeta,
    pub member: MemberState,
    pub last: Option<MessageState>,
    pub msg_total: u64,
    pub deleted_by_others_after_read: u64,
    pub favorite: bool,
    /// For direct rooms: the other member.
    pub peer: Option<UserId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_excludes_own_and_deleted() {
        let mut m = MemberState::new(Role::Member, 0);
        m.read_seq = 10;
        m.read_n = 4;
        m.own_unread = vec![12, 15];
        // 9 messages in all: 5 after the read pointer, 2 of them mine, 1 deleted by someone else.
        assert_eq!(unread(9, &m, 1), 2);
        assert_eq!(unread(3, &m, 0), 0, "never negative");
    }

    #[test]
    fn invites_expire_and_run_out() {
        let i = Invite {
            code: "c".into(),
            room: RoomId::new("r").unwrap(),
            created_by: UserId::new("u").unwrap(),
            created_at: 0,
            expires_at: Some(100),
            max_uses: Some(1),
            uses: 0,
            revoked: false,
        };
        assert_eq!(i.unusable(99), None);
        assert!(i.unusable(100).is_some());
        assert!(Invite {
            uses: 1,
            ..i.clone()
        }
        .unusable(0)
        .is_some());
        assert!(Invite { revoked: true, ..i }.unusable(0).is_some());
    }
}
