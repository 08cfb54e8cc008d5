//! The sans-IO state machine of one room's ownership on this node
//! (docs/MULTINODE.md, "The room ownership state machine").
//!
//! ```text
//!  unowned ──(owner by hash = me, lease held)──▶ acquiring ──(granted, loaded)──▶ owned
//!     ▲                                              │ fenced / failed             │
//!     │◀────────────────(backoff)────────────────────┘                             │
//!     │                      (hash moves away, or shutdown)                        ▼
//!     ├◀──── released ◀──(drained, no commit in flight: release(epoch))──── draining
//!     │                                                                            │
//!     └◀──(backoff)── fenced ◀──(a commit refused: newer epoch; or own lease lost)─┘
//! ```
//!
//! The driver (a shard, later) feeds it [`Input`]s with the time and carries
//! out the [`Action`]s it returns, in order; it asks [`RoomOwnership::alloc_seq`]
//! for seqs and [`RoomOwnership::begin_commit`] for the epoch to commit a batch
//! under. Nothing here does I/O or knows tokio (like [`super::membership`]).
//!
//! What it guarantees, given a fence that grants each epoch once and refuses
//! commits under an older one ([`super::fence`]):
//! - a batch is acknowledged only after the fence accepted its commit under
//!   this node's epoch, and each batch is answered exactly once (acknowledged
//!   or failed `unavailable`);
//! - seqs start after the `committed` mark the acquisition returned, so an
//!   acknowledged seq is never used again by a later owner;
//! - once a commit is refused or the own lease is lost, nothing more is
//!   acknowledged: every batch in flight is failed at once;
//! - requests that arrive while the room is being acquired wait in a bounded
//!   queue ([`Settings::max_queued`]); commits in flight are bounded too
//!   ([`Settings::max_in_flight`]).
//!
//! Tests: `ownership/tests.rs` (each transition) and `ownership/model_tests.rs`
//! (a seeded randomized run of two nodes against a model fence).

use super::node::NodeId;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// An ownership epoch of a room, as granted by the fence (`room_owner.epoch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub i64);

/// Limits and timings of the machine.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Requests held per room while it is being acquired and loaded; more are
    /// answered `unavailable` with [`Settings::retry_after`].
    pub max_queued: usize,
    /// Commit batches of the room in flight at once.
    pub max_in_flight: usize,
    /// Wait after a refused or failed acquisition, a load failure or being
    /// fenced, before acquiring again (a rival is backed off from, never
    /// fought; live sets converge within a renewal period).
    pub backoff: Duration,
    /// The `retry_after_ms` hint of `unavailable` answers.
    pub retry_after: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_queued: 1024,
            max_in_flight: 4,
            backoff: Duration::from_secs(1),
            retry_after: Duration::from_millis(500),
        }
    }
}

/// A commit batch: seqs `from..=upto`, to be committed under `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket {
    pub epoch: Epoch,
    pub from: u64,
    pub upto: u64,
}

/// What the fence answered to an acquisition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcquireOutcome {
    /// This node holds `epoch`; `committed` is the room's commit mark.
    Granted { epoch: Epoch, committed: u64 },
    /// A rival bumped the epoch first.
    Fenced { by: Option<NodeId> },
    /// The store failed or timed out (the outcome is unknown).
    Failed,
}

/// What the fence answered to a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// A newer epoch holds the room.
    Fenced {
        by: Option<NodeId>,
    },
    /// The store failed or timed out: outcome unknown.
    Failed,
}

/// Inputs, each handled with the current time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<R> {
    /// The room's owner by rendezvous hash over the live set changed (None:
    /// the live set is empty).
    Placement(Option<NodeId>),
    /// This node holds its own lease again.
    LeaseHeld,
    /// This node's own lease ran out (or it was superseded).
    LeaseLost,
    Acquired(AcquireOutcome),
    /// The room's state was loaded up to the mark (`ok`), or the load failed.
    Loaded {
        epoch: Epoch,
        ok: bool,
    },
    Committed {
        ticket: Ticket,
        outcome: CommitOutcome,
    },
    /// While draining: the driver holds no more writes of the room (it will
    /// begin no more commits).
    Drained,
    /// The release was answered (whatever the answer: the next owner bumps
    /// the epoch anyway; releasing only spares it the wait).
    ReleaseDone {
        epoch: Epoch,
    },
    Shutdown,
    /// Time passed (backoffs end).
    Tick,
    /// A client request for the room.
    Request(R),
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<R> {
    /// Call `fence.acquire` and feed back [`Input::Acquired`].
    Acquire,
    /// Load the room's state from the store up to `committed`, then feed
    /// back [`Input::Loaded`].
    Load { epoch: Epoch, committed: u64 },
    /// The room is owned: seqs are allocated locally from `next_seq`.
    StartCommitting { epoch: Epoch, next_seq: u64 },
    /// Handle the request here (this node owns the room).
    Serve(R),
    /// Forward the request to the room's owner.
    Redirect { request: R, to: NodeId },
    /// Answer `unavailable` with a retry hint.
    Reject { request: R, retry_after: Duration },
    /// The batch is committed: acknowledge its requests.
    Acknowledge(Ticket),
    /// Answer the batch's requests `unavailable` with a retry hint (clients
    /// retry with the same `local_id`; the outcome may be unknown).
    FailBatch {
        ticket: Ticket,
        retry_after: Duration,
    },
    /// Call `fence.release` and feed back [`Input::ReleaseDone`].
    Release { epoch: Epoch },
    /// Drop the room's state: answer whatever was not yet begun as a commit
    /// `unavailable`, and close the room's local subscribers with a resumable
    /// error (they resume from their last seq).
    DropRoom,
}

/// The state names of docs/MULTINODE.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Unowned,
    Acquiring,
    Owned,
    Draining,
    Released,
    Fenced,
}

/// Why [`RoomOwnership::begin_commit`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitRefused {
    /// Not the owner (or drained): fail the batch `unavailable`.
    NotOwner,
    /// [`Settings::max_in_flight`] commits already in flight: wait for one.
    Busy,
    /// `upto` not after the previous batch, or past the allocated seqs.
    BadRange,
}

#[derive(Debug)]
enum Step {
    Fence,
    Load { epoch: Epoch, committed: u64 },
}

#[derive(Debug)]
struct Writing {
    epoch: Epoch,
    next_seq: u64,
    last_begun: u64,
    in_flight: VecDeque<Ticket>,
}

#[derive(Debug)]
enum State<R> {
    Unowned {
        not_before: Option<Instant>,
    },
    Acquiring {
        step: Step,
        queued: VecDeque<R>,
    },
    Owned(Writing),
    Draining {
        w: Writing,
        drained: bool,
    },
    Released {
        epoch: Epoch,
        not_before: Option<Instant>,
    },
    Fenced {
        by: Option<NodeId>,
        until: Instant,
    },
}

/// One room's ownership on this node.
#[derive(Debug)]
pub struct RoomOwnership<R> {
    me: NodeId,
    settings: Settings,
    placement: Option<NodeId>,
    lease_held: bool,
    shutting_down: bool,
    state: State<R>,
}

impl<R> RoomOwnership<R> {
    pub fn new(me: NodeId, settings: Settings) -> RoomOwnership<R> {
        RoomOwnership {
            me,
            settings,
            placement: None,
            lease_held: false,
            shutting_down: false,
            state: State::Unowned { not_before: None },
        }
    }

    pub fn phase(&self) -> Phase {
        match self.state {
            State::Unowned { .. } => Phase::Unowned,
            State::Acquiring { .. } => Phase::Acquiring,
            State::Owned(_) => Phase::Owned,
            State::Draining { .. } => Phase::Draining,
            State::Released { .. } => Phase::Released,
            State::Fenced { .. } => Phase::Fenced,
        }
    }

    /// The epoch this node holds for the room (owned or draining).
    pub fn epoch(&self) -> Option<Epoch> {
        match &self.state {
            State::Owned(w) | State::Draining { w, .. } => Some(w.epoch),
            _ => None,
        }
    }

    /// Requests waiting for the acquisition.
    pub fn queued(&self) -> usize {
        match &self.state {
            State::Acquiring { queued, .. } => queued.len(),
            _ => 0,
        }
    }

    /// Commit batches in flight.
    pub fn in_flight(&self) -> usize {
        match &self.state {
            State::Owned(w) | State::Draining { w, .. } => w.in_flight.len(),
            _ => 0,
        }
    }

    /// The next seq of the room, while owned (not while draining: new
    /// requests go to the new owner).
    pub fn alloc_seq(&mut self) -> Option<u64> {
        match &mut self.state {
            State::Owned(w) => {
                let s = w.next_seq;
                w.next_seq += 1;
                Some(s)
            }
            _ => None,
        }
    }

    /// Starts committing the allocated seqs up to `upto` (after the previous
    /// batch): the ticket names the epoch to commit under. The driver writes
    /// the rows, calls `fence.commit(epoch, upto)` and feeds back
    /// [`Input::Committed`]; it acknowledges nothing before the answer.
    pub fn begin_commit(&mut self, upto: u64) -> Result<Ticket, CommitRefused> {
        let max = self.settings.max_in_flight;
        let w = match &mut self.state {
            State::Owned(w) => w,
            State::Draining { w, drained: false } => w,
            _ => return Err(CommitRefused::NotOwner),
        };
        if upto <= w.last_begun || upto >= w.next_seq {
            return Err(CommitRefused::BadRange);
        }
        if w.in_flight.len() >= max {
            return Err(CommitRefused::Busy);
        }
        let ticket = Ticket {
            epoch: w.epoch,
            from: w.last_begun + 1,
            upto,
        };
        w.last_begun = upto;
        w.in_flight.push_back(ticket);
        Ok(ticket)
    }

    /// Handles one input at `now`; returns the actions to carry out in order.
    pub fn handle(&mut self, now: Instant, input: Input<R>) -> Vec<Action<R>> {
        let mut out = Vec::new();
        match input {
            Input::Placement(p) => {
                self.placement = p;
                self.on_placement(now, &mut out);
            }
            Input::LeaseHeld => {
                self.lease_held = true;
                self.evaluate(now, &mut out);
            }
            Input::LeaseLost => {
                self.lease_held = false;
                self.on_lease_lost(now, &mut out);
            }
            Input::Acquired(outcome) => self.on_acquired(now, outcome, &mut out),
            Input::Loaded { epoch, ok } => self.on_loaded(now, epoch, ok, &mut out),
            Input::Committed { ticket, outcome } => {
                self.on_committed(now, ticket, outcome, &mut out)
            }
            Input::Drained => {
                if let State::Draining { drained, .. } = &mut self.state {
                    *drained = true;
                }
                self.maybe_release(&mut out);
            }
            Input::ReleaseDone { epoch } => {
                if let State::Released {
                    epoch: e,
                    not_before,
                } = self.state
                {
                    if e == epoch {
                        self.state = State::Unowned { not_before };
                        self.evaluate(now, &mut out);
                    }
                }
            }
            Input::Shutdown => {
                self.shutting_down = true;
                if matches!(self.state, State::Owned(_)) {
                    self.start_draining(&mut out);
                }
            }
            Input::Tick => self.on_tick(now, &mut out),
            Input::Request(r) => self.on_request(r, &mut out),
        }
        out
    }

    /// Whether this node should own the room now.
    fn wanted(&self) -> bool {
        self.lease_held && !self.shutting_down && self.placement.as_ref() == Some(&self.me)
    }

    /// Where to send requests this node does not serve.
    fn redirect_target(&self) -> Option<NodeId> {
        if let State::Fenced { by: Some(by), .. } = &self.state {
            if by != &self.me {
                return Some(by.clone());
            }
        }
        self.placement.clone().filter(|p| p != &self.me)
    }

    fn turn_away(&self, request: R, out: &mut Vec<Action<R>>) {
        out.push(match self.redirect_target() {
            Some(to) => Action::Redirect { request, to },
            None => Action::Reject {
                request,
                retry_after: self.settings.retry_after,
            },
        });
    }

    fn turn_away_all(&self, queued: VecDeque<R>, out: &mut Vec<Action<R>>) {
        for r in queued {
            self.turn_away(r, out);
        }
    }

    /// In `unowned`: starts acquiring if this node should own the room.
    fn evaluate(&mut self, now: Instant, out: &mut Vec<Action<R>>) {
        if let State::Unowned { not_before } = self.state {
            if self.wanted() && not_before.is_none_or(|t| now >= t) {
                self.state = State::Acquiring {
                    step: Step::Fence,
                    queued: VecDeque::new(),
                };
                out.push(Action::Acquire);
            }
        }
    }

    fn on_placement(&mut self, now: Instant, out: &mut Vec<Action<R>>) {
        if matches!(self.state, State::Owned(_)) && !self.wanted() {
            self.start_draining(out);
        } else {
            // Acquisitions in progress decide when their answer comes.
            self.evaluate(now, out);
        }
    }

    fn start_draining(&mut self, out: &mut Vec<Action<R>>) {
        let state = std::mem::replace(&mut self.state, State::Unowned { not_before: None });
        if let State::Owned(w) = state {
            self.state = State::Draining { w, drained: false };
            self.maybe_release(out);
        } else {
            self.state = state;
        }
    }

    fn maybe_release(&mut self, out: &mut Vec<Action<R>>) {
        if let State::Draining { w, drained: true } = &self.state {
            if w.in_flight.is_empty() {
                let epoch = w.epoch;
                out.push(Action::Release { epoch });
                out.push(Action::DropRoom);
                self.state = State::Released {
                    epoch,
                    not_before: None,
                };
            }
        }
    }

    /// Stops acknowledging at once: every batch in flight fails, the room's
    /// state is dropped.
    fn fence(&mut self, now: Instant, by: Option<NodeId>, out: &mut Vec<Action<R>>) {
        let state = std::mem::replace(
            &mut self.state,
            State::Fenced {
                by,
                until: now + self.settings.backoff,
            },
        );
        if let State::Owned(w) | State::Draining { w, .. } = state {
            for ticket in w.in_flight {
                out.push(Action::FailBatch {
                    ticket,
                    retry_after: self.settings.retry_after,
                });
            }
        }
        out.push(Action::DropRoom);
    }

    fn on_lease_lost(&mut self, now: Instant, out: &mut Vec<Action<R>>) {
        match &mut self.state {
            State::Owned(_) | State::Draining { .. } => self.fence(now, None, out),
            State::Acquiring {
                step: Step::Load { .. },
                queued,
            } => {
                let queued = std::mem::take(queued);
                self.fence(now, None, out);
                self.turn_away_all(queued, out);
            }
            // An acquisition in flight decides when its answer comes.
            _ => {}
        }
    }

    fn on_acquired(&mut self, now: Instant, outcome: AcquireOutcome, out: &mut Vec<Action<R>>) {
        let State::Acquiring {
            step: Step::Fence,
            queued,
        } = &mut self.state
        else {
            return;
        };
        let queued = std::mem::take(queued);
        let backoff = Some(now + self.settings.backoff);
        match outcome {
            AcquireOutcome::Granted { epoch, committed } if self.wanted() => {
                self.state = State::Acquiring {
                    step: Step::Load { epoch, committed },
                    queued,
                };
                out.push(Action::Load { epoch, committed });
            }
            AcquireOutcome::Granted { epoch, .. } => {
                // No longer wanted (hash moved, lease lost, shutdown): hand
                // the epoch back at once.
                self.state = State::Released {
                    epoch,
                    not_before: None,
                };
                out.push(Action::Release { epoch });
                self.turn_away_all(queued, out);
            }
            AcquireOutcome::Fenced { by } => {
                self.state = State::Unowned {
                    not_before: backoff,
                };
                for request in queued {
                    out.push(match by.clone().filter(|b| b != &self.me) {
                        Some(to) => Action::Redirect { request, to },
                        None => Action::Reject {
                            request,
                            retry_after: self.settings.retry_after,
                        },
                    });
                }
            }
            AcquireOutcome::Failed => {
                self.state = State::Unowned {
                    not_before: backoff,
                };
                self.turn_away_all(queued, out);
            }
        }
    }

    fn on_loaded(&mut self, now: Instant, epoch: Epoch, ok: bool, out: &mut Vec<Action<R>>) {
        let State::Acquiring {
            step: Step::Load {
                epoch: e,
                committed,
            },
            queued,
        } = &mut self.state
        else {
            return;
        };
        if *e != epoch {
            return;
        }
        let committed = *committed;
        let queued = std::mem::take(queued);
        if ok && self.wanted() {
            let next_seq = committed + 1;
            self.state = State::Owned(Writing {
                epoch,
                next_seq,
                last_begun: committed,
                in_flight: VecDeque::new(),
            });
            out.push(Action::StartCommitting { epoch, next_seq });
            out.extend(queued.into_iter().map(Action::Serve));
        } else {
            self.state = State::Released {
                epoch,
                not_before: (!ok).then(|| now + self.settings.backoff),
            };
            out.push(Action::Release { epoch });
            out.push(Action::DropRoom);
            self.turn_away_all(queued, out);
        }
    }

    fn on_committed(
        &mut self,
        now: Instant,
        ticket: Ticket,
        outcome: CommitOutcome,
        out: &mut Vec<Action<R>>,
    ) {
        let w = match &mut self.state {
            State::Owned(w) | State::Draining { w, .. } => w,
            // Fenced or released meanwhile: the batch was already failed.
            _ => return,
        };
        let Some(i) = w.in_flight.iter().position(|t| t == &ticket) else {
            return;
        };
        match outcome {
            CommitOutcome::Committed => {
                w.in_flight.remove(i);
                out.push(Action::Acknowledge(ticket));
            }
            CommitOutcome::Failed => {
                // Outcome unknown: the clients retry with the same local_id
                // and the idempotency window answers with the seq if it
                // landed. The room stays owned: the fence did not refuse.
                w.in_flight.remove(i);
                out.push(Action::FailBatch {
                    ticket,
                    retry_after: self.settings.retry_after,
                });
            }
            CommitOutcome::Fenced { by } => {
                self.fence(now, by, out);
                return;
            }
        }
        self.maybe_release(out);
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Action<R>>) {
        if let State::Fenced { until, .. } = self.state {
            if now >= until {
                self.state = State::Unowned { not_before: None };
            }
        }
        self.evaluate(now, out);
    }

    fn on_request(&mut self, request: R, out: &mut Vec<Action<R>>) {
        let max = self.settings.max_queued;
        let retry_after = self.settings.retry_after;
        match &mut self.state {
            State::Owned(_) => out.push(Action::Serve(request)),
            State::Acquiring { queued, .. } if queued.len() < max => queued.push_back(request),
            State::Acquiring { .. } => out.push(Action::Reject {
                request,
                retry_after,
            }),
            _ => self.turn_away(request, out),
        }
    }
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
