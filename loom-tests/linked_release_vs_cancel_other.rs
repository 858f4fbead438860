//! Releasing a linked context (its canceler dropped: cancel, then release) while `other` is
//! cancelled: `C`'s own registration `S` stops `R` in `other`'s list, while `other`'s traversal
//! fires `R`; the claim on `R`'s `head` lets exactly one of them act. Whichever wins, `C` has
//! one record (its own cancel, or `other`'s cause), `R` and `S` are freed exactly once, and
//! the arena returns to its baseline — whichever side releases last.

use crate::Child;
use loom::thread;

use super::support::{Outcomes, assert_quiescent, run_model};
use crate::{Arena, Error, StaticCause};

static WHY: StaticCause = StaticCause::new("other cancelled");

#[test]
fn linked_release_vs_cancel_other() {
    // Whether C ended with other's cause (else its own cancel came first).
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("linked_release_vs_cancel_other", move || {
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
        let releaser = thread::spawn(move || {
            drop(cancel);
            assert_eq!(linked.err(), Some(Error::Canceled));
            let by_other = linked.cause().unwrap().is_static(&WHY);
            drop(linked);
            by_other
        });
        cancel_other.cancel_with(&WHY);
        let by_other = releaser.join().unwrap();
        record.record(by_other);
        assert_eq!(arena.stats().live, 2, "only ctx and other are left");
        drop((other, cancel_other, ctx, cancel_ctx));
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[false, true]);
}

/// Every handle released, on two threads: `ctx`'s and `C`'s contexts first, then `C`'s
/// canceler (cancel + release) on one thread while `other`'s canceler and context go on the
/// other (cancel + release) — the last release of `C`, `R`, `S` and `other` happens on whichever
/// thread comes last, and nothing is freed twice or leaked.
#[test]
fn linked_release_vs_release_of_other() {
    run_model("linked_release_vs_release_of_other", move || {
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
        drop((ctx, linked));
        let releaser = thread::spawn(move || drop(cancel));
        drop((other, cancel_other));
        releaser.join().unwrap();
        assert_eq!(arena.stats().live, 1, "only ctx, held by its canceler");
        drop(cancel_ctx);
        assert_quiescent(arena);
    });
}
