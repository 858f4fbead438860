//! Deadline expiry by the driver (`expire(now)`) vs an explicit cancel vs a lazy deadline check
//! in an observer (`err()` on a context past its deadline): three ways to finish one deadline
//! node `D` (with a child `C`), racing. Exactly one wins: `D` and `C` end with either
//! (`DeadlineExceeded`, the deadline's cause) or (`Canceled`, no cause), and every observer —
//! whoever it is, whenever it looks after its own operation returned — sees that same pair.

use crate::Child;
use core::sync::atomic::Ordering;

use loom::sync::Arc;
use loom::sync::atomic::AtomicUsize;
use loom::thread;

use super::support::{Outcomes, assert_quiescent, clocked_arena, run_model};
use crate::{Context, Error, Instant, StaticCause};

static LATE: StaticCause = StaticCause::with_code(9, "too late");

/// (error, cause code: 9 for the deadline's cause, 0 for none).
fn outcome(ctx: &Context<'_>) -> (Error, u32) {
    let err = ctx.err().expect("done");
    let cause = ctx.cause().unwrap();
    let code = if cause.is(err) {
        0
    } else {
        cause.code().unwrap()
    };
    assert!(ctx.is_done());
    (err, code)
}

const EXPIRED: (Error, u32) = (Error::DeadlineExceeded, 9);
const CANCELED: (Error, u32) = (Error::Canceled, 0);

#[test]
fn expire_vs_cancel_vs_lazy_check() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("expire_vs_cancel_vs_lazy_check", move || {
        let (clock, arena) = clocked_arena();
        let Child { ctx: d, cancel } = arena
            .background()
            .with_deadline_cause(Instant::from_ticks(10), &LATE)
            .unwrap();
        let Child {
            ctx: c,
            cancel: c_cancel,
        } = d.with_cancel().unwrap();
        assert_eq!(c.deadline(), Some(Instant::from_ticks(10)));
        clock.set(Instant::from_ticks(10));
        let d2 = d.clone();
        let driver = thread::spawn(move || {
            assert_eq!(arena.expire(Instant::from_ticks(10)), None);
            let o = outcome(&d2);
            drop(d2);
            o
        });
        // The lazy check, through the child: it finds the deadline passed and records it on
        // `D` (the node that owns the deadline) unless someone already finished `D`.
        let c2 = c.clone();
        let lazy = thread::spawn(move || outcome(&c2));
        cancel.cancel();
        let by_canceller = outcome(&d);
        let by_driver = driver.join().unwrap();
        let lazy = lazy.join().unwrap();
        assert!(
            lazy == EXPIRED || lazy == CANCELED,
            "error and cause disagree: {lazy:?}"
        );
        assert_eq!(by_driver, lazy, "the driver and a lazy observer disagree");
        assert_eq!(
            by_canceller, lazy,
            "the canceller and a lazy observer disagree"
        );
        assert_eq!(outcome(&d), lazy);
        assert_eq!(outcome(&c), lazy);
        record.record((lazy.0.is_timeout(), lazy.1));
        drop((c, c_cancel, d, cancel));
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[(true, 9), (false, 0)]);
}

/// The driver vs a lazy check, with an `after_func` on the deadline node: whoever finishes the
/// deadline fires the callback, exactly once.
#[test]
fn expire_vs_lazy_check_fires_once() {
    run_model("expire_vs_lazy_check_fires_once", || {
        let (clock, arena) = clocked_arena();
        let runs = Arc::new(AtomicUsize::new(0));
        let Child { ctx: d, cancel } = arena
            .background()
            .with_deadline(Instant::from_ticks(10))
            .unwrap();
        let r = runs.clone();
        let reg = d
            .after_func(move || {
                // ORDERING: Relaxed: read after the join.
                r.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        clock.advance(10);
        let d2 = d.clone();
        let lazy = thread::spawn(move || assert_eq!(d2.err(), Some(Error::DeadlineExceeded)));
        arena.expire(Instant::from_ticks(10));
        lazy.join().unwrap();
        // ORDERING: Relaxed: after the join.
        assert_eq!(runs.load(Ordering::Relaxed), 1);
        assert!(!reg.stop());
        drop((reg, d, cancel));
        assert_quiescent(arena);
    });
}
