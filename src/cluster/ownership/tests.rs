//! Transition by transition: each state of the diagram and its inputs.

use super::*;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn settings() -> Settings {
    Settings {
        max_queued: 3,
        max_in_flight: 2,
        backoff: ms(1000),
        retry_after: ms(500),
    }
}

type M = RoomOwnership<u32>;

fn machine() -> M {
    RoomOwnership::new(id("a"), settings())
}

/// A machine that owns the room under epoch 7 with committed mark 10.
fn owned(t0: Instant) -> M {
    let mut m = machine();
    m.handle(t0, Input::LeaseHeld);
    assert_eq!(
        m.handle(t0, Input::Placement(Some(id("a")))),
        [Action::Acquire]
    );
    let granted = AcquireOutcome::Granted {
        epoch: Epoch(7),
        committed: 10,
    };
    assert_eq!(
        m.handle(t0, Input::Acquired(granted)),
        [Action::Load {
            epoch: Epoch(7),
            committed: 10
        }]
    );
    let a = m.handle(
        t0,
        Input::Loaded {
            epoch: Epoch(7),
            ok: true,
        },
    );
    assert_eq!(
        a,
        [Action::StartCommitting {
            epoch: Epoch(7),
            next_seq: 11
        }]
    );
    assert_eq!(m.phase(), Phase::Owned);
    m
}

fn reject(r: u32) -> Action<u32> {
    Action::Reject {
        request: r,
        retry_after: ms(500),
    }
}

fn fail(t: Ticket) -> Action<u32> {
    Action::FailBatch {
        ticket: t,
        retry_after: ms(500),
    }
}

#[test]
fn acquires_only_when_the_hash_says_me_and_the_lease_is_held() {
    let t0 = Instant::now();
    let mut m = machine();
    assert!(m.handle(t0, Input::Placement(Some(id("a")))).is_empty());
    assert_eq!(m.phase(), Phase::Unowned);
    assert_eq!(m.handle(t0, Input::LeaseHeld), [Action::Acquire]);
    assert_eq!(m.phase(), Phase::Acquiring);

    let mut m = machine();
    m.handle(t0, Input::LeaseHeld);
    assert!(m.handle(t0, Input::Placement(Some(id("b")))).is_empty());
    assert_eq!(m.phase(), Phase::Unowned);
    // Not the owner: requests go to the owner, or are refused without one.
    assert_eq!(
        m.handle(t0, Input::Request(1)),
        [Action::Redirect {
            request: 1,
            to: id("b")
        }]
    );
    m.handle(t0, Input::Placement(None));
    assert_eq!(m.handle(t0, Input::Request(2)), [reject(2)]);
}

#[test]
fn requests_wait_while_acquiring_bounded_then_are_served_in_order() {
    let t0 = Instant::now();
    let mut m = machine();
    m.handle(t0, Input::LeaseHeld);
    m.handle(t0, Input::Placement(Some(id("a"))));
    for r in 1..=3 {
        assert!(m.handle(t0, Input::Request(r)).is_empty());
    }
    assert_eq!(m.queued(), 3);
    // The queue is full: the fourth is refused with a retry hint.
    assert_eq!(m.handle(t0, Input::Request(4)), [reject(4)]);
    m.handle(
        t0,
        Input::Acquired(AcquireOutcome::Granted {
            epoch: Epoch(2),
            committed: 0,
        }),
    );
    // Still queued while loading, and the queue is still full.
    assert_eq!(m.handle(t0, Input::Request(5)), [reject(5)]);
    assert_eq!(m.queued(), 3);
    let a = m.handle(
        t0,
        Input::Loaded {
            epoch: Epoch(2),
            ok: true,
        },
    );
    assert_eq!(
        a,
        [
            Action::StartCommitting {
                epoch: Epoch(2),
                next_seq: 1
            },
            Action::Serve(1),
            Action::Serve(2),
            Action::Serve(3),
        ]
    );
    assert_eq!(m.handle(t0, Input::Request(6)), [Action::Serve(6)]);
}

#[test]
fn a_rival_acquisition_backs_off_and_redirects_to_the_rival() {
    let t0 = Instant::now();
    let mut m = machine();
    m.handle(t0, Input::LeaseHeld);
    m.handle(t0, Input::Placement(Some(id("a"))));
    m.handle(t0, Input::Request(1));
    let a = m.handle(
        t0,
        Input::Acquired(AcquireOutcome::Fenced { by: Some(id("b")) }),
    );
    assert_eq!(
        a,
        [Action::Redirect {
            request: 1,
            to: id("b")
        }]
    );
    assert_eq!(m.phase(), Phase::Unowned);
    // No new attempt before the backoff ends, one after.
    assert!(m.handle(t0 + ms(999), Input::Tick).is_empty());
    assert!(m
        .handle(t0 + ms(999), Input::Placement(Some(id("a"))))
        .is_empty());
    assert_eq!(m.handle(t0 + ms(1000), Input::Tick), [Action::Acquire]);
}

#[test]
fn a_failed_acquisition_refuses_the_queue_and_backs_off() {
    let t0 = Instant::now();
    let mut m = machine();
    m.handle(t0, Input::LeaseHeld);
    m.handle(t0, Input::Placement(Some(id("a"))));
    m.handle(t0, Input::Request(1));
    assert_eq!(
        m.handle(t0, Input::Acquired(AcquireOutcome::Failed)),
        [reject(1)]
    );
    assert_eq!(m.phase(), Phase::Unowned);
    assert_eq!(m.handle(t0 + ms(1000), Input::Tick), [Action::Acquire]);
}

#[test]
fn a_grant_no_longer_wanted_is_released_at_once() {
    let t0 = Instant::now();
    let mut m = machine();
    m.handle(t0, Input::LeaseHeld);
    m.handle(t0, Input::Placement(Some(id("a"))));
    m.handle(t0, Input::Request(1));
    // The hash moved while the acquisition was in flight.
    assert!(m.handle(t0, Input::Placement(Some(id("b")))).is_empty());
    let a = m.handle(
        t0,
        Input::Acquired(AcquireOutcome::Granted {
            epoch: Epoch(3),
            committed: 5,
        }),
    );
    assert_eq!(
        a,
        [
            Action::Release { epoch: Epoch(3) },
            Action::Redirect {
                request: 1,
                to: id("b")
            }
        ]
    );
    assert_eq!(m.phase(), Phase::Released);
    // A stale answer for another epoch changes nothing.
    assert!(m
        .handle(t0, Input::ReleaseDone { epoch: Epoch(2) })
        .is_empty());
    assert_eq!(m.phase(), Phase::Released);
    assert!(m
        .handle(t0, Input::ReleaseDone { epoch: Epoch(3) })
        .is_empty());
    assert_eq!(m.phase(), Phase::Unowned);
}

#[test]
fn a_failed_load_releases_and_backs_off() {
    let t0 = Instant::now();
    let mut m = machine();
    m.handle(t0, Input::LeaseHeld);
    m.handle(t0, Input::Placement(Some(id("a"))));
    m.handle(
        t0,
        Input::Acquired(AcquireOutcome::Granted {
            epoch: Epoch(1),
            committed: 0,
        }),
    );
    m.handle(t0, Input::Request(9));
    // A load answer for another epoch is ignored.
    assert!(m
        .handle(
            t0,
            Input::Loaded {
                epoch: Epoch(0),
                ok: true
            }
        )
        .is_empty());
    let a = m.handle(
        t0,
        Input::Loaded {
            epoch: Epoch(1),
            ok: false,
        },
    );
    assert_eq!(
        a,
        [
            Action::Release { epoch: Epoch(1) },
            Action::DropRoom,
            reject(9)
        ]
    );
    assert!(m
        .handle(t0, Input::ReleaseDone { epoch: Epoch(1) })
        .is_empty());
    assert_eq!(m.phase(), Phase::Unowned);
    assert_eq!(m.handle(t0 + ms(1000), Input::Tick), [Action::Acquire]);
}

#[test]
fn owned_allocates_from_the_mark_and_acknowledges_only_after_the_fence() {
    let t0 = Instant::now();
    let mut m = owned(t0);
    assert_eq!(m.alloc_seq(), Some(11));
    assert_eq!(m.alloc_seq(), Some(12));
    assert_eq!(m.begin_commit(13), Err(CommitRefused::BadRange));
    let t1 = m.begin_commit(11).unwrap();
    assert_eq!(
        t1,
        Ticket {
            epoch: Epoch(7),
            from: 11,
            upto: 11
        }
    );
    assert_eq!(m.begin_commit(11), Err(CommitRefused::BadRange));
    let t2 = m.begin_commit(12).unwrap();
    m.alloc_seq();
    // Two in flight: the bound.
    assert_eq!(m.begin_commit(13), Err(CommitRefused::Busy));
    // Answers may come in any order; each batch once.
    let ok = |t| Input::Committed {
        ticket: t,
        outcome: CommitOutcome::Committed,
    };
    assert_eq!(m.handle(t0, ok(t2)), [Action::Acknowledge(t2)]);
    assert_eq!(m.handle(t0, ok(t1)), [Action::Acknowledge(t1)]);
    assert!(m.handle(t0, ok(t1)).is_empty());
    assert_eq!(m.in_flight(), 0);
}

#[test]
fn a_failed_commit_fails_its_batch_and_keeps_the_room() {
    let t0 = Instant::now();
    let mut m = owned(t0);
    m.alloc_seq();
    let t = m.begin_commit(11).unwrap();
    let a = m.handle(
        t0,
        Input::Committed {
            ticket: t,
            outcome: CommitOutcome::Failed,
        },
    );
    assert_eq!(a, [fail(t)]);
    assert_eq!(m.phase(), Phase::Owned);
    assert_eq!(m.alloc_seq(), Some(12));
}

#[test]
fn a_refused_commit_fences_every_batch_in_flight() {
    let t0 = Instant::now();
    let mut m = owned(t0);
    m.alloc_seq();
    m.alloc_seq();
    let t1 = m.begin_commit(11).unwrap();
    let t2 = m.begin_commit(12).unwrap();
    let a = m.handle(
        t0,
        Input::Committed {
            ticket: t2,
            outcome: CommitOutcome::Fenced { by: Some(id("b")) },
        },
    );
    assert_eq!(a, [fail(t1), fail(t2), Action::DropRoom]);
    assert_eq!(m.phase(), Phase::Fenced);
    assert_eq!(m.epoch(), None);
    assert_eq!(m.alloc_seq(), None);
    assert_eq!(m.begin_commit(12), Err(CommitRefused::NotOwner));
    // A late success of the other batch acknowledges nothing: it was failed.
    let late = m.handle(
        t0,
        Input::Committed {
            ticket: t1,
            outcome: CommitOutcome::Committed,
        },
    );
    assert!(late.is_empty());
    // Requests go to the node that fenced this one.
    assert_eq!(
        m.handle(t0, Input::Request(1)),
        [Action::Redirect {
            request: 1,
            to: id("b")
        }]
    );
    // After the backoff, unowned again; the hash still says a: acquire.
    assert!(m.handle(t0 + ms(999), Input::Tick).is_empty());
    assert_eq!(m.handle(t0 + ms(1000), Input::Tick), [Action::Acquire]);
}

#[test]
fn losing_the_lease_stops_acknowledging_at_once() {
    let t0 = Instant::now();
    let mut m = owned(t0);
    m.alloc_seq();
    let t = m.begin_commit(11).unwrap();
    assert_eq!(m.handle(t0, Input::LeaseLost), [fail(t), Action::DropRoom]);
    assert_eq!(m.phase(), Phase::Fenced);
    assert!(m
        .handle(
            t0,
            Input::Committed {
                ticket: t,
                outcome: CommitOutcome::Committed
            }
        )
        .is_empty());
    // Without the lease, no acquisition even after the backoff.
    assert!(m.handle(t0 + ms(5000), Input::Tick).is_empty());
    assert_eq!(m.phase(), Phase::Unowned);
    assert_eq!(m.handle(t0 + ms(5000), Input::LeaseHeld), [Action::Acquire]);
}

#[test]
fn losing_the_lease_while_loading_fences_and_turns_the_queue_away() {
    let t0 = Instant::now();
    let mut m = machine();
    m.handle(t0, Input::LeaseHeld);
    m.handle(t0, Input::Placement(Some(id("a"))));
    m.handle(
        t0,
        Input::Acquired(AcquireOutcome::Granted {
            epoch: Epoch(1),
            committed: 0,
        }),
    );
    m.handle(t0, Input::Request(1));
    assert_eq!(
        m.handle(t0, Input::LeaseLost),
        [Action::DropRoom, reject(1)]
    );
    assert!(m
        .handle(
            t0,
            Input::Loaded {
                epoch: Epoch(1),
                ok: true
            }
        )
        .is_empty());
    assert_eq!(m.phase(), Phase::Fenced);
}

#[test]
fn the_hash_moving_away_drains_then_releases() {
    let t0 = Instant::now();
    let mut m = owned(t0);
    m.alloc_seq();
    let t = m.begin_commit(11).unwrap();
    m.alloc_seq();
    assert!(m.handle(t0, Input::Placement(Some(id("b")))).is_empty());
    assert_eq!(m.phase(), Phase::Draining);
    // New requests go to the new owner; no new seqs.
    assert_eq!(
        m.handle(t0, Input::Request(1)),
        [Action::Redirect {
            request: 1,
            to: id("b")
        }]
    );
    assert_eq!(m.alloc_seq(), None);
    // Writes already accepted are still committed.
    let t2 = m.begin_commit(12).unwrap();
    assert!(m.handle(t0, Input::Drained).is_empty());
    assert_eq!(m.begin_commit(12), Err(CommitRefused::NotOwner));
    let ok = |t| Input::Committed {
        ticket: t,
        outcome: CommitOutcome::Committed,
    };
    assert_eq!(m.handle(t0, ok(t)), [Action::Acknowledge(t)]);
    assert_eq!(
        m.handle(t0, ok(t2)),
        [
            Action::Acknowledge(t2),
            Action::Release { epoch: Epoch(7) },
            Action::DropRoom
        ]
    );
    assert_eq!(m.phase(), Phase::Released);
    assert!(m
        .handle(t0, Input::ReleaseDone { epoch: Epoch(7) })
        .is_empty());
    assert_eq!(m.phase(), Phase::Unowned);
}

#[test]
fn a_drain_can_still_be_fenced() {
    let t0 = Instant::now();
    let mut m = owned(t0);
    m.alloc_seq();
    let t = m.begin_commit(11).unwrap();
    m.handle(t0, Input::Placement(Some(id("b"))));
    m.handle(t0, Input::Drained);
    let a = m.handle(
        t0,
        Input::Committed {
            ticket: t,
            outcome: CommitOutcome::Fenced { by: None },
        },
    );
    assert_eq!(a, [fail(t), Action::DropRoom]);
    assert_eq!(m.phase(), Phase::Fenced);
}

#[test]
fn shutdown_drains_and_never_acquires_again() {
    let t0 = Instant::now();
    let mut m = owned(t0);
    assert!(m.handle(t0, Input::Shutdown).is_empty());
    assert_eq!(m.phase(), Phase::Draining);
    assert_eq!(m.handle(t0, Input::Request(1)), [reject(1)]);
    assert_eq!(
        m.handle(t0, Input::Drained),
        [Action::Release { epoch: Epoch(7) }, Action::DropRoom]
    );
    assert!(m
        .handle(t0, Input::ReleaseDone { epoch: Epoch(7) })
        .is_empty());
    assert!(m.handle(t0 + ms(10_000), Input::Tick).is_empty());
    assert_eq!(m.phase(), Phase::Unowned);
}

#[test]
fn shutdown_while_acquiring_hands_the_grant_back() {
    let t0 = Instant::now();
    let mut m = machine();
    m.handle(t0, Input::LeaseHeld);
    m.handle(t0, Input::Placement(Some(id("a"))));
    m.handle(t0, Input::Request(1));
    m.handle(t0, Input::Shutdown);
    let a = m.handle(
        t0,
        Input::Acquired(AcquireOutcome::Granted {
            epoch: Epoch(4),
            committed: 0,
        }),
    );
    assert_eq!(a, [Action::Release { epoch: Epoch(4) }, reject(1)]);
}

#[test]
fn commits_are_refused_outside_owned_and_draining() {
    let t0 = Instant::now();
    let mut m = machine();
    assert_eq!(m.alloc_seq(), None);
    assert_eq!(m.begin_commit(1), Err(CommitRefused::NotOwner));
    m.handle(t0, Input::LeaseHeld);
    m.handle(t0, Input::Placement(Some(id("a"))));
    assert_eq!(m.begin_commit(1), Err(CommitRefused::NotOwner));
    assert_eq!(m.epoch(), None);
}

#[test]
fn a_drain_is_finished_even_if_the_hash_comes_back() {
    let t0 = Instant::now();
    let mut m = owned(t0);
    m.handle(t0, Input::Placement(Some(id("b"))));
    // The hash says a again before the drain is over: the drain goes on (a
    // drain is short), then the room is acquired again under a new epoch.
    assert!(m.handle(t0, Input::Placement(Some(id("a")))).is_empty());
    assert_eq!(m.phase(), Phase::Draining);
    assert_eq!(
        m.handle(t0, Input::Drained),
        [Action::Release { epoch: Epoch(7) }, Action::DropRoom]
    );
    assert_eq!(
        m.handle(t0, Input::ReleaseDone { epoch: Epoch(7) }),
        [Action::Acquire]
    );
}
