//! Child creation vs parent cancel (tree invariant #3): `link` and the cancel's publication of
//! `DONE` are compare-and-swaps on the same word, so either the canceller's traversal finds the
//! new child, or the child sees the parent done and is born done — with the parent's error and
//! cause either way, and done before the parent's `cancel()` returns.

use crate::Child;
use core::sync::atomic::Ordering;

use loom::sync::Arc;
use loom::sync::atomic::AtomicU32;
use loom::thread;

use super::support::{Outcomes, assert_quiescent, is_done_word, run_model};
use crate::state::Slot;
use crate::{Arena, Error, Instant, StaticCause};

static WHY: StaticCause = StaticCause::new("parent cancelled");

/// Slot + 1 of the child, published by the creator once it exists (0 = not yet).
fn published() -> Arc<AtomicU32> {
    Arc::new(AtomicU32::new(0))
}

#[test]
fn with_cancel_vs_parent_cancel() {
    // (the child existed when cancel() returned, the child was done when with_cancel returned)
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("with_cancel_vs_parent_cancel", move || {
        loom::lazy_static! { static ref ARENA: Arena<2> = Arena::new(); }
        let arena: &'static Arena<2> = &ARENA;
        let Child {
            ctx: parent,
            cancel,
        } = arena.background().with_cancel().unwrap();
        let seen = published();
        let creator = {
            let seen = seen.clone();
            thread::spawn(move || {
                let Child {
                    ctx: child,
                    cancel: child_cancel,
                } = parent.with_cancel().unwrap();
                let born_done = child.is_done();
                // ORDERING: Release: the child exists before its slot is seen.
                seen.store(child.slot.index() + 1, Ordering::Release);
                (parent, child, child_cancel, born_done)
            })
        };
        cancel.cancel_with(&WHY);
        // `cancel()` returned: a child that already exists is done (its handles live in the
        // creator's return value, so the slot is pinned until the join below).
        // ORDERING: Acquire pairs with the creator's Release.
        let s = seen.load(Ordering::Acquire);
        if s != 0 {
            assert!(
                is_done_word(arena, Slot::new(s - 1)),
                "cancel() returned with a live child"
            );
        }
        let (parent, child, child_cancel, born_done) = creator.join().unwrap();
        record.record((s != 0, born_done));
        assert_eq!(parent.err(), Some(Error::Canceled));
        assert_eq!(child.err(), Some(Error::Canceled), "lost cancellation");
        assert!(
            child.cause().unwrap().is_static(&WHY),
            "child lost the parent's cause"
        );
        drop((parent, child, child_cancel, cancel));
        assert_quiescent(arena);
    }); // Linked and then cancelled by the traversal, born done, and everything in between.
    outcomes.assert_saw(&[(false, false), (false, true), (true, false), (true, true)]);
}

/// The same race for a deadline child (a `Deadline` node, linked the same way) whose parent is
/// cancelled with a cause: the child reports `Canceled` and the parent's cause, never its own
/// deadline's.
#[test]
fn with_deadline_vs_parent_cancel() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("with_deadline_vs_parent_cancel", move || {
        loom::lazy_static! { static ref ARENA: Arena<2> = Arena::new(); }
        let arena: &'static Arena<2> = &ARENA;
        let Child {
            ctx: parent,
            cancel,
        } = arena.background().with_cancel().unwrap();
        let creator = thread::spawn(move || {
            let Child {
                ctx: child,
                cancel: child_cancel,
            } = parent.with_deadline(Instant::from_ticks(5)).unwrap();
            let born_done = child.is_done();
            (parent, child, child_cancel, born_done)
        });
        cancel.cancel_with(&WHY);
        let (parent, child, child_cancel, born_done) = creator.join().unwrap();
        record.record(born_done);
        assert_eq!(child.err(), Some(Error::Canceled), "lost cancellation");
        assert!(child.cause().unwrap().is_static(&WHY));
        // Cancelled through its parent: expiring it later changes nothing.
        assert_eq!(arena.expire(Instant::from_ticks(5)), None);
        assert!(child.cause().unwrap().is_static(&WHY));
        drop((parent, child, child_cancel, cancel));
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[false, true]);
}

/// A child created through a value context (linked into the value's canceller, its `src`),
/// while that canceller is dropped — cancelled and released — by another thread.
#[test]
fn with_cancel_under_value_vs_parent_drop() {
    static KEY: crate::Key<u32> = crate::Key::new("k");
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("with_cancel_under_value_vs_parent_drop", move || {
        loom::lazy_static! { static ref ARENA: Arena<3> = Arena::new(); }
        let arena: &'static Arena<3> = &ARENA;
        let Child {
            ctx: parent,
            cancel,
        } = arena.background().with_cancel().unwrap();
        let value = parent.with_value(&KEY, 7).unwrap();
        drop(parent);
        let creator = thread::spawn(move || {
            let Child {
                ctx: child,
                cancel: child_cancel,
            } = value.with_cancel().unwrap();
            let born_done = child.is_done();
            assert_eq!(child.value(&KEY), Some(7));
            (child, child_cancel, born_done)
        });
        drop(cancel);
        let (child, child_cancel, born_done) = creator.join().unwrap();
        record.record(born_done);
        assert_eq!(child.err(), Some(Error::Canceled), "lost cancellation");
        assert!(child.cause().unwrap().is(Error::Canceled));
        drop((child, child_cancel));
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[false, true]);
}
