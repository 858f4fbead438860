//! Two concurrent cancels of one context with different causes (tree invariant #7): the cause
//! slot is claimed by one compare-and-swap, the loser publishes the winner's error and cause, so
//! exactly one (error, cause) pair wins — and every context below reports that same pair, to
//! every observer, as soon as either `cancel()` has returned.

extern crate std;

use crate::Child;
use std::string::{String, ToString};

use loom::sync::Arc;
use loom::thread;

use super::support::{Outcomes, assert_quiescent, run_model};
use crate::{Arena, CancelCause, Context, Error, StaticCause};

static A: StaticCause = StaticCause::with_code(1, "a");
static B: StaticCause = StaticCause::with_code(2, "b");

/// (error, cause code) as seen through `ctx`.
fn seen(ctx: &Context<'_>) -> (Error, u32) {
    let err = ctx.err().expect("done after cancel() returned");
    let code = ctx.cause().unwrap().code().expect("a static cause");
    (err, code)
}

#[test]
fn two_static_causes_one_winner() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("two_static_causes_one_winner", move || {
        loom::lazy_static! { static ref ARENA: Arena<2> = Arena::new(); }
        let arena: &'static Arena<2> = &ARENA;
        let Child {
            ctx: parent,
            cancel,
        } = arena.background().with_cancel().unwrap();
        let Child {
            ctx: child,
            cancel: child_cancel,
        } = parent.with_cancel().unwrap();
        let cancel = Arc::new(cancel);
        let (p2, c2, cancel2) = (parent.clone(), child.clone(), cancel.clone());
        let other = thread::spawn(move || {
            cancel2.cancel_with(&B);
            let here = (seen(&p2), seen(&c2));
            drop((p2, c2, cancel2));
            here
        });
        cancel.cancel_with(&A);
        let mine = (seen(&parent), seen(&child));
        let theirs = other.join().unwrap();
        assert_eq!(mine, theirs, "observers disagree on the winner");
        assert_eq!(
            mine.0, mine.1,
            "the child's cause differs from its parent's"
        );
        assert_eq!(mine.0.0, Error::Canceled);
        assert!(mine.0.1 == 1 || mine.0.1 == 2);
        record.record(mine.0.1);
        drop((parent, child, child_cancel, cancel));
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[1, 2]);
}

#[derive(Debug)]
struct Named(&'static str);

impl core::fmt::Display for Named {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.0)
    }
}

impl core::error::Error for Named {}

fn text(ctx: &Context<'_>) -> String {
    ctx.cause().unwrap().to_string()
}

/// Owned heap causes (`alloc`): the loser's box is dropped by its canceller, the winner's is
/// owned by the node's slot and read by every observer through borrowed pointers.
#[test]
fn two_heap_causes_one_winner() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("two_heap_causes_one_winner", move || {
        loom::lazy_static! { static ref ARENA: Arena<2> = Arena::new(); }
        let arena: &'static Arena<2> = &ARENA;
        let Child {
            ctx: parent,
            cancel,
        } = arena.background().with_cancel().unwrap();
        let Child {
            ctx: child,
            cancel: child_cancel,
        } = parent.with_cancel().unwrap();
        let cancel = Arc::new(cancel);
        let (c2, cancel2) = (child.clone(), cancel.clone());
        let other = thread::spawn(move || {
            cancel2.cancel_with(CancelCause::error(Named("b")));
            let here = text(&c2);
            drop((c2, cancel2));
            here
        });
        cancel.cancel_with(CancelCause::error(Named("a")));
        let mine = (text(&parent), text(&child));
        let theirs = other.join().unwrap();
        assert_eq!(mine.0, mine.1);
        assert_eq!(mine.1, theirs, "observers disagree on the winner");
        assert!(mine.0 == "a" || mine.0 == "b");
        record.record(mine.0);
        drop((parent, child, child_cancel, cancel));
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&["a".to_string(), "b".to_string()]);
}

/// Different errors *and* different causes: the deadline's expiry (`DeadlineExceeded` with the
/// deadline's cause) races an explicit `cancel_with` (`Canceled` with its own). Whoever claims
/// the cause slot first decides both, so the pair never mixes — no `DeadlineExceeded` with the
/// canceller's cause, no `Canceled` with the deadline's — at the node and below it.
#[test]
fn expiry_vs_cancel_with_cause_never_mix() {
    static LATE: StaticCause = StaticCause::with_code(9, "late");
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("expiry_vs_cancel_with_cause_never_mix", move || {
        // No clock: the deadline fires only through `expire`.
        loom::lazy_static! { static ref ARENA: Arena<2> = Arena::new(); }
        let arena: &'static Arena<2> = &ARENA;
        let Child { ctx: d, cancel } = arena
            .background()
            .with_deadline_cause(crate::Instant::from_ticks(10), &LATE)
            .unwrap();
        let Child {
            ctx: child,
            cancel: child_cancel,
        } = d.with_cancel().unwrap();
        let (d2, c2) = (d.clone(), child.clone());
        let driver = thread::spawn(move || {
            arena.expire(crate::Instant::from_ticks(10));
            let here = (seen(&d2), seen(&c2));
            drop((d2, c2));
            here
        });
        cancel.cancel_with(&A);
        let mine = (seen(&d), seen(&child));
        let theirs = driver.join().unwrap();
        assert_eq!(mine, theirs, "observers disagree on the winner");
        assert_eq!(
            mine.0, mine.1,
            "the child's outcome differs from its parent's"
        );
        assert!(
            mine.0 == (Error::DeadlineExceeded, 9) || mine.0 == (Error::Canceled, 1),
            "error and cause mixed: {:?}",
            mine.0
        );
        record.record(mine.0.1);
        drop((d, child, child_cancel, cancel));
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[1, 9]);
}
