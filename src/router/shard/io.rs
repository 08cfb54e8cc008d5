//! I/O the shard needs beyond its batched writes: store reads and, with
//! several nodes, the cluster's seq allocation.

use super::{not_found, Shard};
use crate::ids::RoomId;
use crate::proto::{ErrorCode, WireError};

impl Shard {
    /// cluster (shared by every node) otherwise.
    pub(in crate::router) async fn alloc_seq(
        &mut self,
        room_id: &RoomId,
    ) -> Result<u64, WireError> {
        let cluster = self.cluster.clone();
        let Some(room) = self.active(room_id) else {
            return Err(not_found(room_id));
        };
        let Some(cluster) = cluster else {
            let seq = room.next_seq;
            room.next_seq += 1;
            return Ok(seq);
        };
        let floor = room.next_seq - 1;
        let seq = cluster.alloc_seq(room_id, floor).await.map_err(|e| {
            tracing::warn!(room = %room_id, error = %e, "seq allocation failed");
            WireError::new(
                ErrorCode::Unavailable,
                "the cluster backend (Redis) is unavailable; retry",
            )
            .with_retry(1000)
        })?;
        if let Some(room) = self.active(room_id) {
            room.next_seq = room.next_seq.max(seq + 1);
        }
        Ok(seq)
    }
}
