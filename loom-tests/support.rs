//! What every model shares: the `run_model` driver, and the checks that an arena is back to
//! its baseline once a model's threads are joined and its handles dropped.

extern crate std;

use core::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::vec::Vec;

use crate::arena::RawArena;
use crate::state::Slot;
use crate::{Arena, ManualClock};

/// Runs `f` under loom, every interleaving up to `LOOM_MAX_PREEMPTIONS` preemptions (2 if
/// unset; see `ci/loom.sh`), and prints how many it explored and how long that took (`--nocapture`).
///
/// Arenas, clocks and anything else a model's threads borrow for `'static` are declared with
/// `loom::lazy_static!` inside `f`: loom creates them afresh in each execution and drops them
/// at its end, after every thread has finished, so a model never leaks an arena per iteration.
pub(super) fn run_model(name: &'static str, f: impl Fn() + Sync + Send + 'static) {
    run_model_capped(name, usize::MAX, f);
}

/// [`run_model`] at no more than `cap` preemptions, whatever `LOOM_MAX_PREEMPTIONS` asks: for
/// the one model whose exploration diverges beyond it only because loom has no fairness (two
/// threads spin-yielding to each other forever while a third, runnable, holds what they wait
/// for; see `waiter_wakeup.rs`).
pub(super) fn run_model_capped(
    name: &'static str,
    cap: usize,
    f: impl Fn() + Sync + Send + 'static,
) {
    let iterations = Arc::new(AtomicUsize::new(0));
    let counter = iterations.clone();
    let start = std::time::Instant::now();
    let mut builder = loom::model::Builder::new();
    if std::env::var_os("LOOM_MAX_BRANCHES").is_none() {
        // Above loom's default (1 000 branch points per execution), so that the longest
        // legitimate executions of the 3-thread models at 3 preemptions are not mistaken for
        // livelocks; a spin that makes no progress still exceeds it.
        builder.max_branches = 20_000;
    }
    // Unset, loom's bound is "none" (exhaustive: hours for the larger models): default to 2,
    // as ci/loom.sh does.
    builder.preemption_bound = Some(builder.preemption_bound.unwrap_or(2).min(cap));
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    std::eprintln!(
        "loom model {name}: {} interleavings in {:.2?}",
        iterations.load(Ordering::Relaxed),
        start.elapsed()
    );
}

/// Asserts that `arena` holds no live node and that its free list is intact: every slot ever
/// used is free exactly once (a slot recycled twice would appear twice — or make the stack
/// cyclic — and a lost slot would be missing), and allocation hands out every slot, each once,
/// and then reports `ArenaFull`.
///
/// Consumes the arena's free slots: call it last in a model iteration.
pub(super) fn assert_quiescent(arena: &RawArena) {
    let stats = arena.stats();
    assert_eq!(
        stats.live, 0,
        "nodes still live after every handle was dropped"
    );
    let capacity = arena.capacity();
    let mut seen = Vec::new();
    for _ in 0..=capacity {
        match arena.alloc_slot() {
            Ok(s) => {
                assert!(
                    !seen.contains(&s),
                    "slot {s} handed out twice: the free list is corrupt"
                );
                // ORDERING: Relaxed: single-threaded here (every model thread is joined).
                assert_eq!(arena.node(s).refs.load(Ordering::Relaxed), 0);
                seen.push(s);
            }
            Err(e) => {
                assert_eq!(e, crate::CreateError::ArenaFull);
                break;
            }
        }
    }
    assert_eq!(
        seen.len(),
        capacity,
        "a free slot was lost, or the arena refused a free slot"
    );
}

/// The slots linked in `owner`'s child list, front to back; asserts that every one of them is
/// live, unmarked and not flagged unlinked. Single-threaded use only (after the joins).
pub(super) fn linked_children(arena: &RawArena, owner: Slot) -> Vec<Slot> {
    let mut out = Vec::new();
    // ORDERING: Relaxed: single-threaded here.
    let mut l = arena.node(owner).head.load(Ordering::Relaxed).first();
    while let Some(s) = l.slot() {
        let n = arena.node(s);
        // ORDERING: Relaxed: as above.
        let next = n.next.load(Ordering::Relaxed);
        assert!(
            !next.is_marked() && !next.is_unlinked(),
            "slot {s} is linked but marked"
        );
        // ORDERING: Relaxed: as above.
        assert_ne!(
            n.refs.load(Ordering::Relaxed),
            0,
            "slot {s} is linked but free"
        );
        assert!(out.len() < arena.capacity(), "cyclic child list");
        out.push(s);
        l = next.link();
    }
    out
}

/// Whether `slot`'s `head` word says done. Single-threaded use, or on a pinned node.
pub(super) fn is_done_word(arena: &RawArena, slot: Slot) -> bool {
    // ORDERING: Acquire: as any observer of `DONE`.
    arena
        .node(slot)
        .head
        .load(core::sync::atomic::Ordering::Acquire)
        .is_done()
}

/// The outcomes a model's iterations produced, to assert after `run_model` that loom really
/// explored the interleavings the model is about (and not just the first schedule).
///
/// loom's DPOR remembers only the *last* access to each atomic, so a pure load by one thread
/// that precedes another thread's load-then-store of the same word can go unreversed
/// (tokio-rs/loom#166, #392: such models explore one interleaving and pass vacuously). The
/// models therefore run read-only observers on spawned threads (loom runs the main thread
/// first, so their loads come after the mutators' stores, where loom does see the race and
/// reverses it), and assert with `Outcomes` that every outcome they expect actually occurred.
#[derive(Clone)]
pub(super) struct Outcomes<T>(Arc<std::sync::Mutex<std::collections::BTreeSet<T>>>);

impl<T: Ord + Clone + core::fmt::Debug> Outcomes<T> {
    pub(super) fn new() -> Self {
        Outcomes(Arc::new(std::sync::Mutex::new(
            std::collections::BTreeSet::new(),
        )))
    }

    /// Records one iteration's outcome (no loom operation inside: safe in a model thread).
    pub(super) fn record(&self, outcome: T) {
        self.0.lock().unwrap().insert(outcome);
    }

    /// Asserts that every outcome in `expected` occurred in some iteration.
    pub(super) fn assert_saw(&self, expected: &[T]) {
        let seen = self.0.lock().unwrap();
        for e in expected {
            assert!(
                seen.contains(e),
                "loom never explored outcome {e:?}; explored: {seen:?}"
            );
        }
    }

    /// Every outcome recorded.
    pub(super) fn all(&self) -> Vec<T> {
        self.0.lock().unwrap().iter().cloned().collect()
    }
}

/// A two-slot arena with a manual clock at tick 1000, both fresh in each loom execution (they are
/// `loom::lazy_static!`s; see [`run_model`]). For the models where a deadline meets a clock.
pub(super) fn clocked_arena() -> (&'static ManualClock, &'static Arena<2>) {
    loom::lazy_static! {
        static ref CLOCK: ManualClock = ManualClock::new(1_000);
        static ref ARENA: Arena<2> = Arena::new().with_clock(&*CLOCK);
    }
    (&CLOCK, &ARENA)
}
