//! Nested deadlines seen late, from several threads at once: an outer deadline context `O`
//! (tick 10, cause OUTER) with an inner one `I` (tick 5, cause INNER) below it, both due when
//! they are seen. The driver's `expire(now)` (its scan meets `O` first: `O` has the lower slot),
//! lazy checks in observers, and a plain cancel of `O` race to finish them.
//!
//! Go's timers fire exactly at their deadlines, so the inner one fires first: whoever finishes
//! `I`, it never carries OUTER (the traversal from `O` gives a `Deadline` child whose deadline
//! passed its own record: `tree::RawArena::fired_first`), and `O` can be `DeadlineExceeded` only
//! if `I` is too. A cancel of `O` that came first (read the clock before it moved) may leave
//! both `Canceled`, or `I` expired if its timer "fired" while the cancel was on its way down
//! (Go's cancel takes each child's lock in turn; a timer can take it first).

use crate::Child;
use loom::thread;

use super::support::{Outcomes, assert_quiescent, clocked_arena, run_model};
use crate::{Context, Instant, StaticCause};

static OUTER: StaticCause = StaticCause::with_code(1, "outer deadline");
static INNER: StaticCause = StaticCause::with_code(2, "inner deadline");

/// (is it `DeadlineExceeded`, cause code: 0 for no cause), or `None` while not done.
type Seen = Option<(bool, u32)>;

fn seen(ctx: &Context<'_>) -> Seen {
    let err = ctx.err()?;
    let cause = ctx.cause().expect("done, so a cause");
    let code = if cause.is(err) {
        0
    } else {
        cause.code().unwrap()
    };
    assert!(ctx.is_done(), "err() implies is_done()");
    Some((err.is_timeout(), code))
}

const OUTER_EXPIRED: Seen = Some((true, 1));
const INNER_EXPIRED: Seen = Some((true, 2));
const CANCELED: Seen = Some((false, 0));

/// The driver moves the clock past both deadlines and calls `expire`; an observer checks `I`
/// lazily; the main thread cancels `O`. Every outcome must be one Go could produce.
#[test]
fn nested_deadlines_expire_vs_lazy_vs_cancel() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("nested_deadlines_expire_vs_lazy_vs_cancel", move || {
        let (clock, arena) = clocked_arena();
        let Child { ctx: outer, cancel } = arena
            .background()
            .with_deadline_cause(Instant::from_ticks(10), &OUTER)
            .unwrap();
        let Child {
            ctx: inner,
            cancel: inner_cancel,
        } = outer
            .with_deadline_cause(Instant::from_ticks(5), &INNER)
            .unwrap();
        let driver = thread::spawn(move || {
            clock.set(Instant::from_ticks(20));
            assert_eq!(arena.expire(Instant::from_ticks(20)), None);
        });
        let inner2 = inner.clone();
        let observer = thread::spawn(move || {
            let s = seen(&inner2);
            drop(inner2);
            s
        });
        cancel.cancel();
        driver.join().unwrap();
        let by_observer = observer.join().unwrap();
        let o = seen(&outer);
        let i = seen(&inner);
        assert!(
            i == INNER_EXPIRED || i == CANCELED,
            "inner: {i:?} (OUTER would mean the outer deadline fired first)"
        );
        assert!(o == OUTER_EXPIRED || o == CANCELED, "outer: {o:?}");
        assert!(
            !(o == OUTER_EXPIRED && i == CANCELED),
            "the outer deadline fired before the inner one"
        );
        if by_observer.is_some() {
            assert_eq!(by_observer, i, "the first error and cause changed");
        }
        record.record((o, i));
        drop((inner, inner_cancel, outer, cancel));
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[
        (CANCELED, CANCELED),
        (CANCELED, INNER_EXPIRED),
        (OUTER_EXPIRED, INNER_EXPIRED),
    ]);
}

/// Two lazy observers at once, of `O` and of `I`, both deadlines long past, and the driver's
/// late `expire` in the main thread: each context ends with its own deadline's cause, whoever
/// got there first.
#[test]
fn nested_deadlines_two_lazy_observers_vs_expire() {
    run_model("nested_deadlines_two_lazy_observers_vs_expire", || {
        let (clock, arena) = clocked_arena();
        let Child { ctx: outer, cancel } = arena
            .background()
            .with_deadline_cause(Instant::from_ticks(10), &OUTER)
            .unwrap();
        let Child {
            ctx: inner,
            cancel: inner_cancel,
        } = outer
            .with_deadline_cause(Instant::from_ticks(5), &INNER)
            .unwrap();
        clock.set(Instant::from_ticks(20));
        let outer2 = outer.clone();
        let by_outer = thread::spawn(move || {
            let s = seen(&outer2);
            drop(outer2);
            s
        });
        let inner2 = inner.clone();
        let by_inner = thread::spawn(move || {
            let s = seen(&inner2);
            drop(inner2);
            s
        });
        assert_eq!(arena.expire(Instant::from_ticks(20)), None);
        assert_eq!(by_outer.join().unwrap(), OUTER_EXPIRED);
        assert_eq!(by_inner.join().unwrap(), INNER_EXPIRED);
        assert_eq!(seen(&outer), OUTER_EXPIRED);
        assert_eq!(seen(&inner), INNER_EXPIRED);
        drop((inner, inner_cancel, outer, cancel));
        assert_quiescent(arena);
    });
}
