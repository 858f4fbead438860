//! `err()` non-`None` implies `is_done()`, and `cause()` never shows an error without its cause
//! (tree invariant #7: the cause slot is claimed before `DONE | HAS_CAUSE` is published with
//! Release). An observer polling contexts while another thread cancels them must never see a
//! done context without its cause, an error that later changes, or a done context un-done.
//!
//! The observers run on spawned threads, the mutators on the main thread (see
//! `support::Outcomes` for why), and the models check that observers really saw the contexts
//! both before and after the cancel.

use crate::Child;
use core::sync::atomic::Ordering;

use loom::sync::Arc;
use loom::sync::atomic::AtomicUsize;
use loom::thread;

use super::support::{Outcomes, assert_quiescent, clocked_arena, run_model};
use crate::{Arena, Context, Error, Instant, Key, StaticCause};

static WHY: StaticCause = StaticCause::with_code(3, "why");
static LATE: StaticCause = StaticCause::with_code(4, "late");
static KEY: Key<u8> = Key::new("k");

/// Observes `ctx` once; `seen` remembers whether it was done before (done is forever).
fn observe(ctx: &Context<'_>, seen: &mut Option<Error>, err: Error, code: u32) {
    match ctx.err() {
        Some(e) => {
            assert_eq!(e, err);
            assert!(ctx.is_done(), "err() is Some but is_done() is false");
            let cause = ctx.cause().expect("err() is Some but cause() is None");
            assert_eq!(cause.code(), Some(code), "done without its cause");
            *seen = Some(e);
        }
        None => assert_eq!(*seen, None, "a done context became un-done"),
    }
}

#[test]
fn observer_vs_cancel_with_cause() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("observer_vs_cancel_with_cause", move || {
        loom::lazy_static! { static ref ARENA: Arena<3> = Arena::new(); }
        let arena: &'static Arena<3> = &ARENA;
        let Child { ctx: c, cancel } = arena.background().with_cancel().unwrap();
        let v = c.with_value(&KEY, 1).unwrap(); // done through its canceller ancestor
        let Child {
            ctx: g,
            cancel: g_cancel,
        } = c.with_cancel().unwrap(); // done through the traversal
        let watched = [g.clone(), v.clone()];
        let observer = thread::spawn(move || {
            let mut seen = [None; 2];
            for _ in 0..2 {
                for (ctx, seen) in watched.iter().zip(&mut seen) {
                    observe(ctx, seen, Error::Canceled, 3);
                }
            }
            seen.map(|s| s.is_some())
        });
        cancel.cancel_with(&WHY);
        record.record(observer.join().unwrap());
        for ctx in [&c, &v, &g] {
            observe(ctx, &mut Some(Error::Canceled), Error::Canceled, 3);
        }
        drop((g, g_cancel, v, c, cancel));
        assert_quiescent(arena);
    });
    // Before the cancel, after it, and between (the grandchild G is reached after C = V's src).
    outcomes.assert_saw(&[[false, false], [true, true], [false, true]]);
}

/// The same through a lazy deadline check: the clock is moved by another thread; an observer
/// that sees `DeadlineExceeded` sees it with the deadline's cause, from every context below.
#[test]
fn observer_vs_clock_advance() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("observer_vs_clock_advance", move || {
        let (clock, arena) = clocked_arena();
        let Child { ctx: d, cancel } = arena
            .background()
            .with_deadline_cause(Instant::from_ticks(1), &LATE)
            .unwrap();
        let Child {
            ctx: g,
            cancel: g_cancel,
        } = d.with_cancel().unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let done2 = done.clone();
        let watched = [g.clone(), d.clone()];
        let observer = thread::spawn(move || {
            let mut seen = [None; 2];
            for _ in 0..2 {
                for (ctx, seen) in watched.iter().zip(&mut seen) {
                    observe(ctx, seen, Error::DeadlineExceeded, 4);
                }
            }
            seen.map(|s| s.is_some())
        });
        clock.advance(1);
        // ORDERING: Release: the clock advanced before the flag (checked after the join).
        done2.store(1, Ordering::Release);
        record.record(observer.join().unwrap());
        // ORDERING: Acquire: after the join anyway.
        assert_eq!(done.load(Ordering::Acquire), 1);
        for ctx in [&g, &d] {
            assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
            observe(
                ctx,
                &mut Some(Error::DeadlineExceeded),
                Error::DeadlineExceeded,
                4,
            );
        }
        drop((g, g_cancel, d, cancel));
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[[false, false], [true, true]]);
}
