//! Lossless resume: `join {room, since}` replays stored events after `since`
//! up to the seq `joined` reported, then switches to live delivery.
//!
//! The subscription is registered at once with its live pushes held back;
//! a task streams the stored events (already encoded, as stored) into the
//! connection's outbox page by page, pacing itself on the outbox so a long
//! absence does not overflow it; when it is done the shard releases the held
//! pushes. So the client sees since+1 … joined.seq, then everything after, with
//! no gap and no duplicate at the switch.

use super::shard::{Shard, ShardMsg};
use crate::conn::outbox::Outbox;
use crate::ids::{RoomId, SessionId};
use crate::proto::HEADER_LEN;
use bytes::{BufMut, BytesMut};
use std::time::Duration;

/// Events read from the store per page.
const PAGE: usize = 512;

impl Shard {
    pub(super) fn spawn_replay(
        &self,
        room: RoomId,
        session: SessionId,
        outbox: Outbox,
        since: u64,
        upto: u64,
    ) {
        let store = self.store.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut after = since;
            while after < upto && !outbox.is_dead() {
                // Pace: let the connection drain before adding more.
                while outbox.queued_bytes() > outbox.limit() / 2 && !outbox.is_dead() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                let page = match store.events(&room, after, upto, PAGE).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(room = %room, error = %e, "replay read failed");
                        outbox.kill();
                        break;
                    }
                };
                let Some((last, _)) = page.last() else { break };
                after = *last;
                let mut chunk =
                    BytesMut::with_capacity(page.iter().map(|(_, p)| p.len() + HEADER_LEN).sum());
                for (_, payload) in &page {
                    chunk.put_u32(payload.len() as u32);
                    chunk.extend_from_slice(payload);
                }
                if !outbox.push(chunk.freeze()) {
                    break;
                }
            }
            if let Some(tx) = tx.upgrade() {
                let _ = tx.send(ShardMsg::ReplayDone(room, session)).await;
            }
        });
    }

    /// The replay is out: release the live pushes held back meanwhile.
    pub(super) fn replay_done(&mut self, room_id: &RoomId, session: SessionId) {
        let Some(room) = self.active(room_id) else {
            return;
        };
        let Some(sub) = room.subscribers.get_mut(&session) else {
            return;
        };
        let held = sub.held.take().unwrap_or_default();
        let alive = held.into_iter().all(|chunk| sub.outbox.push(chunk));
        if !alive {
            room.subscribers.swap_remove(&session);
        }
    }
}
