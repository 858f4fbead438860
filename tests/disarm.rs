//! `Canceler::disarm`: giving up a canceler without cancelling, and Go's `ctx, _ :=` habit.
//!
//! Core only (static arenas, a manual clock): runs under Miri as is.

use core::time::Duration;
use ctxtree::Child;

use ctxtree::{Arena, Clock, Error, ManualClock};

#[test]
fn the_underscore_habit_cancels_at_once_and_disarm_does_not() {
    static ARENA: Arena<4> = Arena::new();
    let Child { ctx, cancel: _ } = ARENA.background().with_cancel().unwrap();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    drop(ctx);
    assert_eq!(ARENA.stats().live, 0);

    let Child { ctx, cancel } = ARENA.background().with_cancel().unwrap();
    cancel.disarm();
    assert_eq!(ctx.err(), None);
    assert!(ctx.can_be_done());
}

#[test]
fn a_disarmed_child_of_background_is_released_with_its_last_handle() {
    static ARENA: Arena<4> = Arena::new();
    let Child { ctx, cancel } = ARENA.background().with_cancel().unwrap();
    let other = ctx.clone();
    cancel.disarm();
    assert_eq!(ARENA.stats().live, 1);
    drop(ctx);
    assert_eq!(ARENA.stats().live, 1);
    assert!(!other.is_done());
    drop(other);
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
fn a_disarmed_context_is_still_cancelled_through_its_parent_and_then_released() {
    static ARENA: Arena<8> = Arena::new();
    let Child {
        ctx: parent,
        cancel: cancel_parent,
    } = ARENA.background().with_cancel().unwrap();
    let Child { ctx, cancel } = parent.with_cancel().unwrap();
    let Child {
        ctx: grandchild,
        cancel: _cancel_grandchild,
    } = ctx.with_cancel().unwrap();
    cancel.disarm();
    assert_eq!(ctx.err(), None);
    static WHY: ctxtree::StaticCause = ctxtree::StaticCause::new("shutting down");
    cancel_parent.cancel_with(&WHY);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(grandchild.err(), Some(Error::Canceled));
    assert_eq!(ctx.cause().unwrap().to_string(), "shutting down");
    drop((grandchild, _cancel_grandchild, ctx));
    assert_eq!(ARENA.stats().live, 1, "only the parent is left");
    drop((parent, cancel_parent));
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
fn a_disarmed_child_stays_in_its_live_parents_list_until_the_parent_is_done() {
    static ARENA: Arena<4> = Arena::new();
    let Child {
        ctx: parent,
        cancel: cancel_parent,
    } = ARENA.background().with_cancel().unwrap();
    let Child { ctx, cancel } = parent.with_cancel().unwrap();
    cancel.disarm();
    drop(ctx);
    // As Go's never-called cancel: the child stays linked to its live parent.
    assert_eq!(ARENA.stats().live, 2);
    cancel_parent.cancel();
    assert_eq!(ARENA.stats().live, 1);
    drop((parent, cancel_parent));
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
fn a_disarmed_timeout_expires_and_is_released() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static ARENA: Arena<4> = Arena::new().with_clock(&CLOCK);
    let Child {
        ctx: parent,
        cancel: cancel_parent,
    } = ARENA.background().with_cancel().unwrap();
    let Child { ctx, cancel } = parent.with_timeout(Duration::from_millis(10)).unwrap();
    cancel.disarm();
    let observer = ctx.clone();
    drop(ctx);
    CLOCK.advance(10);
    assert_eq!(observer.err(), Some(Error::DeadlineExceeded));
    drop(observer);
    assert_eq!(
        ARENA.stats().live,
        1,
        "expired and unlinked: only the parent is left"
    );

    // Nobody observes this one: the arena's expiry releases it.
    let Child { ctx, cancel } = parent.with_timeout(Duration::from_millis(10)).unwrap();
    cancel.disarm();
    drop(ctx);
    assert_eq!(ARENA.stats().live, 2);
    CLOCK.advance(10);
    let _ = ARENA.expire(CLOCK.now());
    assert_eq!(ARENA.stats().live, 1);
    assert_eq!(parent.err(), None);
    drop((parent, cancel_parent));
    assert_eq!(ARENA.stats().live, 0);
}
