//! Two nodes, one room, a model fence, and seeded random interleavings of
//! everything that can happen: placements that disagree, leases lost and
//! regained, fence calls that race, fail, or land but report failure, and
//! answers delivered in any order. Checked at every step: a node only ever
//! holds an epoch the fence granted it, each commit batch is answered once,
//! an acknowledgement follows a commit the fence accepted under that epoch,
//! and no seq is acknowledged twice (by either node). At the end, with
//! everything delivered, every request and every batch has been answered.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;

/// `room_owner` as the fence keeps it (one linearizable row).
#[derive(Default)]
struct FenceRow {
    epoch: i64,
    owner: Option<usize>,
    committed: u64,
}

#[derive(Debug)]
enum Op {
    /// `fence.acquire`, first step: read the row.
    AcquireRead,
    /// Second step: bump `IF epoch = seen`.
    AcquireBump {
        seen: i64,
    },
    Load {
        epoch: Epoch,
    },
    Commit(Ticket),
    Release {
        epoch: Epoch,
    },
}

struct Node {
    m: RoomOwnership<u64>,
    /// Calls in flight to the fence (or the store), not executed yet.
    ops: Vec<Op>,
    /// Answers executed but not delivered yet.
    answers: Vec<Input<u64>>,
    granted: HashSet<Epoch>,
    begun: Vec<Ticket>,
    /// Highest seq allocated and not yet begun as a commit.
    unbegun: Option<u64>,
}

struct World {
    rng: StdRng,
    now: Instant,
    fence: FenceRow,
    nodes: Vec<Node>,
    names: Vec<NodeId>,
    /// Commits the fence accepted and answered `Committed`: (node, ticket).
    accepted: HashSet<(usize, Ticket)>,
    answered_batches: HashSet<Ticket>,
    acked_seqs: HashSet<u64>,
    next_request: u64,
    answered_requests: HashSet<u64>,
    acks: usize,
    /// The phases the nodes went through (the run must visit them all).
    phases: Vec<Phase>,
}

const SETTINGS: Settings = Settings {
    max_queued: 4,
    max_in_flight: 3,
    backoff: Duration::from_millis(100),
    retry_after: Duration::from_millis(50),
};

impl World {
    fn new(seed: u64) -> World {
        let names = vec![NodeId::new("a").unwrap(), NodeId::new("b").unwrap()];
        let nodes = names
            .iter()
            .map(|n| Node {
                m: RoomOwnership::new(n.clone(), SETTINGS),
                ops: Vec::new(),
                answers: Vec::new(),
                granted: HashSet::new(),
                begun: Vec::new(),
                unbegun: None,
            })
            .collect();
        World {
            rng: StdRng::seed_from_u64(seed),
            now: Instant::now(),
            fence: FenceRow::default(),
            nodes,
            names,
            accepted: HashSet::new(),
            answered_batches: HashSet::new(),
            acked_seqs: HashSet::new(),
            next_request: 0,
            answered_requests: HashSet::new(),
            acks: 0,
            phases: Vec::new(),
        }
    }

    fn input(&mut self, n: usize, input: Input<u64>) {
        let actions = self.nodes[n].m.handle(self.now, input);
        for a in actions {
            self.act(n, a);
        }
        self.check(n);
    }

    fn act(&mut self, n: usize, a: Action<u64>) {
        let node = &mut self.nodes[n];
        match a {
            Action::Acquire => node.ops.push(Op::AcquireRead),
            Action::Load { epoch, committed } => {
                assert!(
                    node.granted.contains(&epoch),
                    "loads an epoch never granted"
                );
                assert!(committed <= self.fence.committed);
                node.ops.push(Op::Load { epoch });
            }
            Action::StartCommitting { epoch, .. } => {
                assert!(node.granted.contains(&epoch));
                node.unbegun = None;
            }
            Action::Serve(r)
            | Action::Redirect { request: r, .. }
            | Action::Reject { request: r, .. } => {
                assert!(
                    self.answered_requests.insert(r),
                    "request {r} answered twice"
                );
            }
            Action::Acknowledge(t) => {
                assert!(
                    self.accepted.contains(&(n, t)),
                    "acknowledged {t:?} without the fence accepting it"
                );
                assert!(
                    self.answered_batches.insert(t),
                    "batch {t:?} answered twice"
                );
                assert!(
                    t.upto <= self.fence.committed,
                    "acknowledged above the mark"
                );
                for s in t.from..=t.upto {
                    assert!(self.acked_seqs.insert(s), "seq {s} acknowledged twice");
                }
                self.acks += 1;
            }
            Action::FailBatch { ticket, .. } => {
                assert!(
                    self.answered_batches.insert(ticket),
                    "batch {ticket:?} answered twice"
                );
            }
            Action::Release { epoch } => node.ops.push(Op::Release { epoch }),
            Action::DropRoom => node.unbegun = None,
        }
    }

    fn check(&mut self, n: usize) {
        let phase = self.nodes[n].m.phase();
        if !self.phases.contains(&phase) {
            self.phases.push(phase);
        }
        let node = &self.nodes[n];
        if let Some(e) = node.m.epoch() {
            assert!(node.granted.contains(&e), "holds epoch {e:?} never granted");
        }
        assert!(node.m.queued() <= SETTINGS.max_queued);
        assert!(node.m.in_flight() <= SETTINGS.max_in_flight);
        // At most one node holds the fence's current epoch.
        let current = self
            .nodes
            .iter()
            .filter(|x| x.m.epoch() == Some(Epoch(self.fence.epoch)))
            .count();
        assert!(current <= 1);
    }

    /// Executes one call of node `n` against the fence, atomically.
    fn execute(&mut self, n: usize) {
        if self.nodes[n].ops.is_empty() {
            return;
        }
        let i = self.rng.random_range(0..self.nodes[n].ops.len());
        let op = self.nodes[n].ops.swap_remove(i);
        let roll: f64 = self.rng.random();
        let owner = |f: &FenceRow, names: &[NodeId]| f.owner.map(|o| names[o].clone());
        let answer = match op {
            Op::AcquireRead if roll < 0.1 => Input::Acquired(AcquireOutcome::Failed),
            Op::AcquireRead => {
                let seen = self.fence.epoch;
                self.nodes[n].ops.push(Op::AcquireBump { seen });
                return;
            }
            Op::AcquireBump { .. } if roll < 0.1 => Input::Acquired(AcquireOutcome::Failed),
            Op::AcquireBump { seen } if self.fence.epoch == seen => {
                self.fence.epoch += 1;
                self.fence.owner = Some(n);
                let epoch = Epoch(self.fence.epoch);
                self.nodes[n].granted.insert(epoch);
                if roll < 0.15 {
                    // Landed, but the answer was lost (a timeout).
                    Input::Acquired(AcquireOutcome::Failed)
                } else {
                    Input::Acquired(AcquireOutcome::Granted {
                        epoch,
                        committed: self.fence.committed,
                    })
                }
            }
            Op::AcquireBump { .. } => Input::Acquired(AcquireOutcome::Fenced {
                by: owner(&self.fence, &self.names),
            }),
            Op::Load { epoch } => Input::Loaded {
                epoch,
                ok: roll > 0.1,
            },
            Op::Commit(ticket) if roll < 0.1 => Input::Committed {
                ticket,
                outcome: CommitOutcome::Failed,
            },
            Op::Commit(ticket) if self.fence.epoch == ticket.epoch.0 => {
                self.fence.committed = self.fence.committed.max(ticket.upto);
                if roll < 0.15 {
                    Input::Committed {
                        ticket,
                        outcome: CommitOutcome::Failed,
                    }
                } else {
                    self.accepted.insert((n, ticket));
                    Input::Committed {
                        ticket,
                        outcome: CommitOutcome::Committed,
                    }
                }
            }
            Op::Commit(ticket) => Input::Committed {
                ticket,
                outcome: CommitOutcome::Fenced {
                    by: owner(&self.fence, &self.names),
                },
            },
            Op::Release { epoch } => {
                if self.fence.epoch == epoch.0 {
                    self.fence.owner = None;
                }
                Input::ReleaseDone { epoch }
            }
        };
        self.nodes[n].answers.push(answer);
    }

    fn deliver(&mut self, n: usize) {
        if self.nodes[n].answers.is_empty() {
            return;
        }
        let i = self.rng.random_range(0..self.nodes[n].answers.len());
        let answer = self.nodes[n].answers.swap_remove(i);
        self.input(n, answer);
    }

    /// The shard's side: allocate seqs, begin commits of what it allocated.
    fn write(&mut self, n: usize) {
        let k = self.rng.random_range(0..3);
        for _ in 0..k {
            if let Some(s) = self.nodes[n].m.alloc_seq() {
                self.nodes[n].unbegun = Some(s);
            }
        }
        if self.rng.random_bool(0.7) {
            self.begin(n);
        }
    }

    fn begin(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if let Some(upto) = node.unbegun {
            match node.m.begin_commit(upto) {
                Ok(t) => {
                    assert_eq!(t.upto, upto);
                    node.begun.push(t);
                    node.ops.push(Op::Commit(t));
                    node.unbegun = None;
                }
                Err(CommitRefused::Busy) => {}
                Err(e) => panic!("begin_commit({upto}) refused: {e:?}"),
            }
        }
    }

    fn step(&mut self) {
        let n = self.rng.random_range(0..2);
        match self.rng.random_range(0..100) {
            0..25 => self.execute(n),
            25..50 => self.deliver(n),
            50..56 => {
                // Each node's view of the hash may differ from the other's.
                let p = match self.rng.random_range(0..5) {
                    0 => None,
                    1 | 2 => Some(self.names[0].clone()),
                    _ => Some(self.names[1].clone()),
                };
                self.input(n, Input::Placement(p));
            }
            56..60 => {
                let i = if self.rng.random_bool(0.8) {
                    Input::LeaseHeld
                } else {
                    Input::LeaseLost
                };
                self.input(n, i);
            }
            60..78 => self.write(n),
            78..86 => {
                self.now += Duration::from_millis(self.rng.random_range(0..80));
                self.input(n, Input::Tick);
            }
            86..97 => {
                self.next_request += 1;
                self.input(n, Input::Request(self.next_request));
            }
            97..99 => {
                if self.nodes[n].m.phase() == Phase::Draining {
                    self.begin(n);
                    if self.nodes[n].unbegun.is_none() {
                        self.input(n, Input::Drained);
                    }
                }
            }
            _ => {
                if self.rng.random_bool(0.05) {
                    self.input(n, Input::Shutdown);
                }
            }
        }
    }

    /// Delivers everything in flight until nothing is left.
    fn quiesce(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            for n in 0..2 {
                if self.nodes[n].m.phase() == Phase::Draining {
                    self.nodes[n].unbegun = None;
                    self.input(n, Input::Drained);
                }
                if !self.nodes[n].ops.is_empty() {
                    self.execute(n);
                    busy = true;
                }
                if !self.nodes[n].answers.is_empty() {
                    self.deliver(n);
                    busy = true;
                }
            }
            if !busy {
                break;
            }
        }
        for n in 0..2 {
            assert!(self.nodes[n].ops.is_empty() && self.nodes[n].answers.is_empty());
            assert_eq!(self.nodes[n].m.queued(), 0, "requests left waiting");
            assert_ne!(self.nodes[n].m.phase(), Phase::Acquiring);
        }
        for r in 1..=self.next_request {
            assert!(
                self.answered_requests.contains(&r),
                "request {r} unanswered"
            );
        }
        for n in 0..2 {
            for t in &self.nodes[n].begun {
                assert!(self.answered_batches.contains(t), "batch {t:?} unanswered");
            }
        }
    }
}

#[test]
fn two_nodes_never_acknowledge_under_a_stale_epoch() {
    let mut acks = 0;
    let mut epochs = 0;
    let mut phases = Vec::new();
    for seed in 0..400u64 {
        let mut w = World::new(0x6f776e6572 ^ seed);
        for _ in 0..1500 {
            w.step();
        }
        w.quiesce();
        acks += w.acks;
        epochs += w.fence.epoch;
        for p in w.phases {
            if !phases.contains(&p) {
                phases.push(p);
            }
        }
    }
    // The runs exercise the interesting paths, not just idle machines.
    eprintln!("{acks} batches acknowledged, {epochs} epochs granted");
    assert!(acks > 1000, "only {acks} acknowledgements");
    assert!(epochs > 400, "only {epochs} epochs granted");
    for p in [
        Phase::Unowned,
        Phase::Acquiring,
        Phase::Owned,
        Phase::Draining,
        Phase::Released,
        Phase::Fenced,
    ] {
        assert!(phases.contains(&p), "no run went through {p:?}");
    }
}
