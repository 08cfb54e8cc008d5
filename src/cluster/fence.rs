//! Room ownership epochs, fenced by the shared store (ScyllaDB / CQL).
//!
//! One row per room in `room_owner` (schema v3): the current ownership
//! `epoch`, the `node` holding it (null once released), and `committed`, the
//! highest seq committed under the ownership chain. Every change is a
//! lightweight transaction (Paxos), so the row is linearizable:
//!
//! - [`Fence::acquire`] bumps the epoch (`IF epoch = <the one read>`); two
//!   nodes acquiring at once get distinct epochs or one of them loses;
//! - [`Fence::commit`] advances `committed` only `IF epoch = <mine>`: the
//!   commit point of a batch. Once another node has acquired the room, every
//!   commit under the older epoch is refused ([`FenceError::Fenced`]), and
//!   the old owner stops acknowledging. So no write is acknowledged under two
//!   owners, whatever the clocks and leases say;
//! - [`Fence::release`] clears `node` (graceful hand-over: the next owner
//!   need not wait for the old one's lease to run out).
//!
//! What is built: this fence, its schema and its tests against a real CQL
//! node. What is planned (docs/MULTINODE.md): the shards calling it, one
//! commit per room commit batch, and readers bounded by `committed`.

use crate::store::scylla::{cql_err, ScyllaConfig, ScyllaStore};
use crate::store::StoreError;
use scylla::client::session::Session;
use scylla::frame::types::{Consistency, SerialConsistency};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};
use std::sync::Arc;

/// A room's ownership as the store has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub epoch: i64,
    /// The node holding the epoch; None once released (or never acquired).
    pub node: Option<String>,
    /// The highest seq committed under any epoch.
    pub committed: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// Another node holds a newer epoch of the room: this node must stop
    /// acknowledging writes for it (and answer its pending ones `unavailable`).
    #[error("room ownership fenced: epoch {} held by {:?}", .now.epoch, .now.node)]
    Fenced { now: Owner },
    /// The store failed or timed out; the outcome of an LWT that timed out is
    /// unknown (read the row again with [`Fence::read`]).
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type FenceResult<T> = Result<T, FenceError>;

/// The prepared statements of `room_owner`.
pub struct Fence {
    session: Arc<Session>,
    insert: PreparedStatement,
    bump: PreparedStatement,
    commit: PreparedStatement,
    release: PreparedStatement,
    read: PreparedStatement,
}

impl Fence {
    /// Prepares the statements on an open session (the keyspace must hold
    /// schema v3: `roomcast migrate`, or any `--store scylla` startup).
    pub async fn prepare(session: Arc<Session>, keyspace: &str) -> FenceResult<Fence> {
        let ks = keyspace;
        let prep = |q: String, lwt: bool| {
            let session = session.clone();
            async move {
                let mut st = session.prepare(q).await.map_err(cql_err)?;
                if lwt {
                    // Paxos across data centres would cost a WAN round trip per
                    // commit; a room is owned by nodes of one data centre.
                    st.set_serial_consistency(Some(SerialConsistency::LocalSerial));
                } else {
                    st.set_consistency(Consistency::LocalSerial);
                }
                Ok::<_, FenceError>(st)
            }
        };
        Ok(Fence {
            insert: prep(
                format!(
                    "INSERT INTO {ks}.room_owner (room, epoch, node, committed) \
                     VALUES (?, 1, ?, 0) IF NOT EXISTS"
                ),
                true,
            )
            .await?,
            bump: prep(
                format!(
                    "UPDATE {ks}.room_owner SET epoch = ?, node = ? WHERE room = ? IF epoch = ?"
                ),
                true,
            )
            .await?,
            commit: prep(
                format!(
                    "UPDATE {ks}.room_owner SET committed = ? WHERE room = ? \
                     IF epoch = ? AND committed < ?"
                ),
                true,
            )
            .await?,
            release: prep(
                format!("UPDATE {ks}.room_owner SET node = null WHERE room = ? IF epoch = ?"),
                true,
            )
            .await?,
            // A SERIAL read: sees every LWT that completed, and finishes any
            // one left half-done by a failed coordinator.
            read: prep(
                format!("SELECT epoch, node, committed FROM {ks}.room_owner WHERE room = ?"),
                false,
            )
            .await?,
            session,
        })
    }

    /// Opens a session of its own to the store of `cfg` (for tools and tests).
    pub async fn connect(cfg: &ScyllaConfig) -> anyhow::Result<Fence> {
        let session = ScyllaStore::session(cfg).await?;
        Ok(Fence::prepare(Arc::new(session), &cfg.keyspace).await?)
    }

    /// The room's ownership now (a linearizable read), None if never acquired.
    pub async fn read(&self, room: &str) -> FenceResult<Option<Owner>> {
        let r = self
            .session
            .execute_unpaged(&self.read, (room,))
            .await
            .map_err(cql_err)?;
        let rows = r.into_rows_result().map_err(cql_err)?;
        let mut it = rows
            .rows::<(Option<i64>, Option<String>, Option<i64>)>()
            .map_err(cql_err)?;
        Ok(it
            .next()
            .transpose()
            .map_err(cql_err)?
            .map(|(epoch, node, committed)| Owner {
                epoch: epoch.unwrap_or(0),
                node,
                committed: committed.unwrap_or(0),
            }))
    }

    /// Takes ownership of `room` for `node`: the next epoch. Refused with
    /// [`FenceError::Fenced`] if another node bumped the epoch between this
    /// node's read and its write (a rival acquisition: back off, do not fight).
    /// Whether the previous owner is still alive is the caller's business
    /// (leases, docs/MULTINODE.md); this only guarantees that from now on its
    /// commits are refused.
    pub async fn acquire(&self, room: &str, node: &str) -> FenceResult<Owner> {
        if self.applied(&self.insert, (room, node)).await? {
            return Ok(Owner {
                epoch: 1,
                node: Some(node.to_string()),
                committed: 0,
            });
        }
        let cur = self.read(room).await?.ok_or_else(|| {
            // Not inserted because the row exists, yet no row: only a
            // TTL or a manual delete between the two calls does that.
            FenceError::Store(StoreError::Backend(format!(
                "room_owner row of {room} vanished during acquisition"
            )))
        })?;
        let next = cur.epoch + 1;
        if !self
            .applied(&self.bump, (next, node, room, cur.epoch))
            .await?
        {
            return Err(self.fenced(room).await);
        }
        // The mark read above may have moved (the old owner committing until
        // the bump): read it again. From the bump on, no commit under an
        // older epoch lands, so this mark is final for the epochs before ours.
        match self.read(room).await? {
            Some(o) if o.epoch == next => Ok(o),
            Some(now) => Err(FenceError::Fenced { now }),
            None => Err(FenceError::Store(StoreError::Backend(format!(
                "room_owner row of {room} vanished during acquisition"
            )))),
        }
    }

    /// The commit point of a batch of `room` under `epoch`: records `seq` as
    /// committed. Refused ([`FenceError::Fenced`]) once another epoch holds the
    /// room. Committing a seq at or below the mark again is a no-op (a retry).
    pub async fn commit(&self, room: &str, epoch: i64, seq: i64) -> FenceResult<()> {
        if self.applied(&self.commit, (seq, room, epoch, seq)).await? {
            return Ok(());
        }
        // Not applied: either the epoch moved on, or the mark is already at or
        // past `seq` under this epoch (a retry whose first try landed).
        match self.read(room).await? {
            Some(o) if o.epoch == epoch && o.committed >= seq => Ok(()),
            Some(now) => Err(FenceError::Fenced { now }),
            None => Err(FenceError::Fenced {
                now: Owner {
                    epoch: 0,
                    node: None,
                    committed: 0,
                },
            }),
        }
    }

    /// Gives the room up (graceful hand-over): keeps the epoch and the mark,
    /// clears the node. A no-op if another epoch already holds it.
    pub async fn release(&self, room: &str, epoch: i64) -> FenceResult<()> {
        self.applied(&self.release, (room, epoch)).await?;
        Ok(())
    }

    async fn fenced(&self, room: &str) -> FenceError {
        match self.read(room).await {
            Ok(Some(now)) => FenceError::Fenced { now },
            Ok(None) => FenceError::Store(StoreError::Backend(format!(
                "room_owner row of {room} vanished"
            ))),
            Err(e) => e,
        }
    }

    /// Runs a conditional statement; whether it was applied (the `[applied]`
    /// column, first in every LWT result on Cassandra and ScyllaDB).
    async fn applied(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> FenceResult<bool> {
        let r = self
            .session
            .execute_unpaged(st, values)
            .await
            .map_err(cql_err)?;
        let rows = r.into_rows_result().map_err(cql_err)?;
        let mut it = rows.rows::<Row>().map_err(cql_err)?;
        match it.next().transpose().map_err(cql_err)? {
            Some(Row { columns }) => match columns.first() {
                Some(Some(CqlValue::Boolean(b))) => Ok(*b),
                other => Err(FenceError::Store(StoreError::Backend(format!(
                    "LWT result without [applied]: {other:?}"
                )))),
            },
            None => Err(FenceError::Store(StoreError::Backend(
                "LWT result without rows".into(),
            ))),
        }
    }
}
