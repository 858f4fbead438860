//! `with_linked` vs the cancel of either parent. The linked context `C` is a child of `ctx`
//! (tree invariant #3 decides that race, as for any child); its registration `R` is linked in
//! `other`'s list with the same compare-and-swap, so `other`'s cancel either finds `R` and fires
//! it, or `with_linked` sees `other` done — before it looks (born done with `other`'s record),
//! or when `R`'s link finds the list closed (fired at once). Either way `C` ends with the
//! cancelling parent's error and cause, is done by the time that parent's `cancel()` returns,
//! and neither parent's list keeps a registration once `C` is done (`S`, `C`'s own
//! registration, stops `R`).

use crate::Child;
use core::sync::atomic::Ordering;

use loom::sync::Arc;
use loom::sync::atomic::AtomicU32;
use loom::thread;

use super::support::{Outcomes, assert_quiescent, is_done_word, linked_children, run_model};
use crate::state::Slot;
use crate::{Arena, Error, StaticCause};

static WHY: StaticCause = StaticCause::new("a parent cancelled");

/// Which parent the model cancels.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parent {
    Ctx,
    Other,
}

fn create_vs_cancel(name: &'static str, which: Parent) {
    // (C existed when cancel() returned, C was done when with_linked returned)
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model(name, move || {
        loom::lazy_static! { static ref ARENA: Arena<5> = Arena::new(); }
        let arena: &'static Arena<5> = &ARENA;
        let Child {
            ctx,
            cancel: cancel_ctx,
        } = arena.background().with_cancel().unwrap();
        let Child {
            ctx: other,
            cancel: cancel_other,
        } = arena.background().with_cancel().unwrap();
        let seen = Arc::new(AtomicU32::new(0));
        let creator = {
            let seen = seen.clone();
            let (ctx, other) = (ctx.clone(), other.clone());
            thread::spawn(move || {
                let Child {
                    ctx: linked,
                    cancel,
                } = ctx.with_linked(&other).unwrap();
                let born_done = linked.is_done();
                // ORDERING: Release: C exists before its slot is seen.
                seen.store(linked.slot.index() + 1, Ordering::Release);
                (linked, cancel, born_done)
            })
        };
        let (cancelled, spared) = match which {
            Parent::Ctx => (&cancel_ctx, &other),
            Parent::Other => (&cancel_other, &ctx),
        };
        cancelled.cancel_with(&WHY);
        // ORDERING: Acquire pairs with the creator's Release.
        let s = seen.load(Ordering::Acquire);
        if s != 0 {
            // C's handles live in the creator's return value: the slot is pinned.
            assert!(
                is_done_word(arena, Slot::new(s - 1)),
                "cancel() returned with the linked context live"
            );
        }
        let (linked, cancel, born_done) = creator.join().unwrap();
        record.record((s != 0, born_done));
        assert_eq!(linked.err(), Some(Error::Canceled), "lost cancellation");
        assert!(
            linked.cause().unwrap().is_static(&WHY),
            "the linked context lost the parent's cause"
        );
        assert_eq!(spared.err(), None);
        // C is done: no registration is left in either parent's list (C itself may still be in
        // ctx's, if `other` was cancelled: it leaves with its canceler).
        assert!(
            linked_children(arena, other.slot).is_empty(),
            "R left behind"
        );
        assert!(
            linked_children(arena, linked.slot).is_empty(),
            "S left behind"
        );
        drop((linked, cancel));
        assert!(linked_children(arena, ctx.slot).is_empty());
        drop((ctx, cancel_ctx, other, cancel_other));
        assert_quiescent(arena);
    });
    // Registered and then cancelled by the traversal; born done; and in between.
    outcomes.assert_saw(&[(false, false), (false, true), (true, false), (true, true)]);
}

#[test]
fn linked_create_vs_cancel_ctx() {
    create_vs_cancel("linked_create_vs_cancel_ctx", Parent::Ctx);
}

#[test]
fn linked_create_vs_cancel_other() {
    create_vs_cancel("linked_create_vs_cancel_other", Parent::Other);
}

/// Two threads cancel `other` at once: neither returns before `C` is done — the one that meets
/// `R` already fired by the other helps cancel `C` (invariant #6, carried across the link).
#[test]
fn linked_two_cancellers_of_other() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("linked_two_cancellers_of_other", move || {
        loom::lazy_static! { static ref ARENA: Arena<5> = Arena::new(); }
        let arena: &'static Arena<5> = &ARENA;
        let Child {
            ctx,
            cancel: cancel_ctx,
        } = arena.background().with_cancel().unwrap();
        let Child {
            ctx: other,
            cancel: cancel_other,
        } = arena.background().with_cancel().unwrap();
        let Child {
            ctx: linked,
            cancel,
        } = ctx.with_linked(&other).unwrap();
        let cancel_other = Arc::new(cancel_other);
        let helper = {
            let (cancel_other, linked) = (cancel_other.clone(), linked.clone());
            thread::spawn(move || {
                cancel_other.cancel_with(&WHY);
                assert!(linked.is_done(), "a canceller of `other` returned early");
            })
        };
        cancel_other.cancel();
        assert!(linked.is_done(), "a canceller of `other` returned early");
        helper.join().unwrap();
        // Either cancel may have won `other`'s cause slot; C agrees with `other`.
        let with_cause = linked.cause().unwrap().is_static(&WHY);
        assert_eq!(with_cause, other.cause().unwrap().is_static(&WHY));
        record.record(with_cause);
        drop((linked, cancel, ctx, cancel_ctx, other, cancel_other));
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[false, true]);
}
