//! A context's done source (`Src`, issue 14): the canceller whose `head` word `is_done` reads,
//! named directly for an inline slot and through the arena's stand-in words for a paged one
//! (a `HeapArena`, the `std` global arena) or for a context that can never be done. Each test
//! runs the same chains on an inline `Arena<N>`, a fixed-capacity `HeapArena` and a growable
//! one: cancel and deadline contexts, value contexts under them (whose source is an ancestor:
//! a walk up in a paged arena), children created under value contexts, `after_func` on them,
//! and `without_cancel` below them.

#![cfg(feature = "alloc")]

use core::time::Duration;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ctxtree::{Arena, Cause, Child, Error, HeapArena, Key, ManualClock, RawArena, StaticCause};

static K1: Key<u32> = Key::new("k1");
static K2: Key<u32> = Key::new("k2");
static WHY: StaticCause = StaticCause::with_code(7, "why");

/// Cancel → value → value: the values follow their canceller, and so does all that hangs
/// below them.
fn value_chain_follows_its_canceller(arena: &RawArena) {
    let bg = arena.background();
    assert!(!bg.is_done() && !bg.can_be_done() && bg.err().is_none());

    let Child { ctx: c, cancel } = bg.with_cancel().unwrap();
    let v1 = c.with_value(&K1, 1).unwrap();
    let v2 = v1.with_value(&K2, 2).unwrap();
    // A canceller under a value context links under the value context's canceller.
    let Child {
        ctx: c2,
        cancel: _c2_cancel,
    } = v2.with_cancel().unwrap();
    let v3 = c2.with_value(&K1, 3).unwrap();
    // `without_cancel` below a value context is never done, nor what derives from it.
    let w = v2.without_cancel().unwrap();
    let wv = w.with_value(&K2, 4).unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let _reg = v2
        .after_func(move || flag.store(true, Ordering::SeqCst))
        .unwrap();
    let again = cancel.context();

    for ctx in [&c, &v1, &v2, &c2, &v3, &again] {
        assert!(ctx.can_be_done());
        assert!(!ctx.is_done());
        assert_eq!(ctx.err(), None);
        assert!(ctx.cause().is_none());
        assert_eq!(ctx.deadline(), None);
    }
    assert!(!w.can_be_done() && !wv.can_be_done());
    assert!(!ran.load(Ordering::SeqCst));

    cancel.cancel_with(&WHY);

    for ctx in [&c, &v1, &v2, &c2, &v3, &again] {
        assert!(ctx.is_done());
        assert_eq!(ctx.err(), Some(Error::Canceled));
        assert!(matches!(ctx.cause(), Some(Cause::Static(s)) if s.code() == 7));
    }
    assert!(ran.load(Ordering::SeqCst));
    assert!(!w.is_done() && !wv.is_done());
    assert_eq!(wv.value(&K2), Some(4));
    assert_eq!(v3.value(&K2), Some(2));
    // A child of a done value context is born done, with the canceller's error.
    let Child { ctx: late, .. } = v2.with_cancel().unwrap();
    assert_eq!(late.err(), Some(Error::Canceled));
}

/// Deadline → value → value: a lazy check through the value contexts finds the deadline and
/// records it.
fn value_chain_sees_the_deadline(arena: &RawArena, clock: &ManualClock) {
    let Child { ctx: d, cancel: _d } = arena
        .background()
        .with_timeout(Duration::from_millis(50))
        .unwrap();
    let v = d.with_value(&K1, 1).unwrap();
    let v2 = v.with_value(&K2, 2).unwrap();
    let Child { ctx: c, cancel: _c } = v2.with_cancel().unwrap();
    let cv = c.with_value(&K1, 5).unwrap();
    assert_eq!(v2.deadline(), d.deadline());
    assert_eq!(cv.deadline(), d.deadline());
    assert_eq!(v2.remaining(), Some(Duration::from_millis(50)));
    assert!(!v2.is_done() && !cv.is_done());
    clock.advance(60);
    // Observed first through the deepest value context: it expires the deadline node.
    assert_eq!(cv.err(), Some(Error::DeadlineExceeded));
    for ctx in [&d, &v, &v2, &c] {
        assert!(ctx.is_done());
        assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    }
    assert_eq!(v.remaining(), Some(Duration::ZERO));
}

#[test]
fn inline_arena() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static ARENA: Arena<16> = Arena::new().with_clock(&CLOCK);
    value_chain_follows_its_canceller(&ARENA);
    value_chain_sees_the_deadline(&ARENA, &CLOCK);
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
fn heap_arena_fixed() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    let arena = HeapArena::with_capacity(16).with_clock(&CLOCK);
    value_chain_follows_its_canceller(&arena);
    value_chain_sees_the_deadline(&arena, &CLOCK);
    assert_eq!(arena.stats().live, 0);
}

#[test]
fn heap_arena_growable() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    let arena = HeapArena::growable().with_clock(&CLOCK);
    value_chain_follows_its_canceller(&arena);
    value_chain_sees_the_deadline(&arena, &CLOCK);
    assert_eq!(arena.stats().live, 0);
}

#[cfg(feature = "std")]
#[test]
fn global_arena() {
    value_chain_follows_its_canceller(ctxtree::global_arena());
}
