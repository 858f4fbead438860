//! `after_func`: `stop()` vs cancel (Go: "either the callback runs or stop returns true, never
//! both"). `stop` and `fire` claim the node with a compare-and-swap on its `head` word; exactly
//! one wins. The callback's closure owns a loom `Arc`, so loom also checks that the closure is
//! consumed exactly once — run, or dropped unrun — and never leaked (a leaked loom `Arc` fails
//! the model).

use crate::Child;
use core::sync::atomic::Ordering;

use loom::sync::Arc;
use loom::sync::atomic::AtomicUsize;
use loom::thread;

use super::support::{Outcomes, assert_quiescent, linked_children, run_model};
use crate::Arena;

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn callback(runs: &Arc<AtomicUsize>) -> impl FnOnce() + Send + 'static {
    let runs = runs.clone();
    move || {
        // ORDERING: Relaxed: read after the joins.
        runs.fetch_add(1, Ordering::Relaxed);
    }
}

/// Exactly one of "ran" and "stop() returned true".
fn exactly_one(runs: &Arc<AtomicUsize>, stopped: bool) {
    // ORDERING: Relaxed: after the join.
    let ran = runs.load(Ordering::Relaxed);
    assert_eq!(
        ran + stopped as usize,
        1,
        "ran {ran} times, stop() returned {stopped}"
    );
}

#[test]
fn stop_vs_cancel_exactly_one() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("stop_vs_cancel_exactly_one", move || {
        loom::lazy_static! { static ref ARENA: Arena<2> = Arena::new(); }
        let arena: &'static Arena<2> = &ARENA;
        let runs = counter();
        let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
        let reg = ctx.after_func(callback(&runs)).unwrap();
        let stopper = thread::spawn(move || {
            let stopped = reg.stop();
            // A second stop never reports a prevention.
            assert!(!reg.stop());
            stopped
        });
        cancel.cancel();
        let stopped = stopper.join().unwrap();
        exactly_one(&runs, stopped);
        record.record(stopped);
        assert!(
            linked_children(arena, ctx.slot).is_empty(),
            "stop/fire left it linked"
        );
        drop((ctx, cancel));
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[false, true]);
}

/// The canceler dropped (cancel + release) while `stop` runs and the registration handle is
/// dropped on the stopping thread: the same exactly-one outcome, and the node is freed.
#[test]
fn stop_and_drop_vs_canceler_drop() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("stop_and_drop_vs_canceler_drop", move || {
        loom::lazy_static! { static ref ARENA: Arena<2> = Arena::new(); }
        let arena: &'static Arena<2> = &ARENA;
        let runs = counter();
        let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
        let reg = ctx.after_func(callback(&runs)).unwrap();
        drop(ctx);
        let stopper = thread::spawn(move || reg.stop());
        drop(cancel);
        let stopped = stopper.join().unwrap();
        exactly_one(&runs, stopped);
        record.record(stopped);
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[false, true]);
}

/// Registration vs cancel: the callback is linked before the cancel's traversal reads the
/// list, or it sees the context done and runs at once in `after_func` — exactly once.
#[test]
fn register_vs_cancel_runs_once() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("register_vs_cancel_runs_once", move || {
        loom::lazy_static! { static ref ARENA: Arena<2> = Arena::new(); }
        let arena: &'static Arena<2> = &ARENA;
        let runs = counter();
        let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
        let cb = callback(&runs);
        let seen = runs.clone();
        let registrar = thread::spawn(move || {
            let reg = ctx.after_func(cb).unwrap();
            // ORDERING: Relaxed: whether it already ran (inline, or by a finished cancel).
            let ran_by_then = seen.load(Ordering::Relaxed);
            (ctx, reg, ran_by_then)
        });
        cancel.cancel();
        let (ctx, reg, ran_by_then) = registrar.join().unwrap();
        record.record(ran_by_then);
        // ORDERING: Relaxed: after the join.
        assert_eq!(
            runs.load(Ordering::Relaxed),
            1,
            "the callback did not run exactly once"
        );
        assert!(!reg.stop(), "stop() after the callback ran");
        drop((ctx, reg, cancel));
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[0, 1]);
}
