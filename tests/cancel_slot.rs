//! `CancelSlot`: a canceler in a `static`, for interrupt handlers.

use ctxtree::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use ctxtree::{Arena, CancelSlot, Error, StaticCause};

static CAUSE: StaticCause = StaticCause::with_code(9, "isr");

#[test]
fn cancel_takes_the_canceler_and_an_empty_slot_does_nothing() {
    static ARENA: Arena<4> = Arena::new();
    static SLOT: CancelSlot = CancelSlot::new();
    SLOT.cancel(); // empty: nothing happens
    SLOT.cancel_with(&CAUSE);
    let Child { ctx, cancel } = ARENA.background().with_cancel().unwrap();
    assert!(SLOT.bind(cancel).unwrap().is_none());
    assert!(SLOT.is_bound());
    assert_eq!(ctx.err(), None);
    SLOT.cancel_with(&CAUSE);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(ctx.cause().and_then(|c| c.code()), Some(9));
    assert!(!SLOT.is_bound());
    drop(ctx);
    assert_eq!(ARENA.stats().live, 0, "the slot released the node");
}

#[test]
fn bind_hands_back_the_previous_canceler_and_take_leaves_the_context_live() {
    static ARENA: Arena<4> = Arena::new();
    static SLOT: CancelSlot = CancelSlot::new();
    let Child { ctx: a, cancel: ca } = ARENA.background().with_cancel().unwrap();
    let Child { ctx: b, cancel: cb } = ARENA.background().with_cancel().unwrap();
    assert!(SLOT.bind(ca).unwrap().is_none());
    let old = SLOT.bind(cb).unwrap().expect("a was bound");
    assert_eq!(a.err(), None, "re-binding does not cancel by itself");
    drop(old); // the caller decides: dropping cancels
    assert_eq!(a.err(), Some(Error::Canceled));
    let taken = SLOT.take().expect("b is bound");
    assert!(!SLOT.is_bound());
    assert_eq!(b.err(), None);
    taken.cancel();
    assert_eq!(b.err(), Some(Error::Canceled));
}

#[test]
fn a_canceler_of_another_arena_is_handed_back_unused() {
    static A: Arena<2> = Arena::new();
    static B: Arena<2> = Arena::new();
    static SLOT: CancelSlot = CancelSlot::new();
    let Child {
        ctx: _a,
        cancel: ca,
    } = A.background().with_cancel().unwrap();
    assert!(SLOT.bind(ca).unwrap().is_none());
    let Child { ctx: b, cancel: cb } = B.background().with_cancel().unwrap();
    let back = SLOT.bind(cb).expect_err("another arena");
    assert_eq!(b.err(), None, "handed back uncancelled");
    drop(back);
    assert_eq!(b.err(), Some(Error::Canceled));
    assert!(SLOT.is_bound(), "the first canceler is still there");
}

#[test]
fn a_slot_dropped_with_a_canceler_cancels_it() {
    static ARENA: Arena<2> = Arena::new();
    let slot = CancelSlot::new();
    let Child { ctx, cancel } = ARENA.background().with_cancel().unwrap();
    assert!(slot.bind(cancel).unwrap().is_none());
    drop(slot);
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

/// A "main loop" re-binds a new job 2,000 times while an "interrupt" thread cancels whatever is
/// bound: every job ends cancelled exactly by one party, no node is lost or cancelled twice.
#[test]
fn cancel_racing_rebind_never_loses_or_reuses_a_canceler() {
    static ARENA: Arena<8> = Arena::new();
    static SLOT: CancelSlot = CancelSlot::new();
    static STOP: AtomicBool = AtomicBool::new(false);
    let isr = thread::spawn(|| {
        let mut n = 0u32;
        // Bounded: stops when told, or after 10 million tries.
        while !STOP.load(Ordering::Relaxed) && n < 10_000_000 {
            SLOT.cancel_with(&CAUSE);
            n += 1;
        }
    });
    for _ in 0..2_000 {
        let Child { ctx: job, cancel } = ARENA.background().with_cancel().unwrap();
        if let Some(prev) = SLOT.bind(cancel).unwrap() {
            drop(prev); // the job before, not cancelled by the "interrupt": cancel it here
        }
        // Whoever cancels, the job ends cancelled, and the arena never fills up.
        drop(job);
        assert!(ARENA.stats().live <= 2);
    }
    STOP.store(true, Ordering::Relaxed);
    isr.join().unwrap();
    SLOT.cancel();
    assert_eq!(ARENA.stats().live, 0);
    assert_eq!(ARENA.stats().failed_allocs, 0);
}
