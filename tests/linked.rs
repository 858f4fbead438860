//! `Context::with_linked` / `with_linked_static`: a context done when either of two parents is
//! (.NET's `CreateLinkedTokenSource`, Go's `AfterFunc` merge recipe).
//!
//! Every release and cancel order returns the arena to its baseline; error, cause, deadline,
//! values and `Display` follow the first parent that is done; two arenas; an arena that is full
//! while the link is made; callbacks on the linked context run once, and panicking ones leak
//! nothing. Static arenas and manual clocks (plus one test on the global arena): runs under
//! Miri as is (`ci/miri.sh`).

// Without std the tests of panics and of the global arena are left out, and what only they use.
#![cfg_attr(not(feature = "std"), allow(unused_imports, dead_code))]

use ctxtree::Child;
#[cfg(feature = "std")]
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ctxtree::{Arena, Clock, CreateError, Error, Instant, Key, ManualClock, StaticCause};

static WHY: StaticCause = StaticCause::with_code(3, "the other side went away");
static OTHER_DL: StaticCause = StaticCause::new("other's deadline");
static CTX_DL: StaticCause = StaticCause::new("ctx's deadline");
static USER: Key<u32> = Key::new("user");

// ------------------------------------------------------------------------------------------
// Release and cancel orders: the arena is back at its baseline in every one.
// ------------------------------------------------------------------------------------------

/// Each test starts from an empty arena of its own.
fn setup(arena: &ctxtree::RawArena) {
    assert_eq!(arena.stats().live, 0);
}

#[test]
fn linked_dropped_first() {
    static ARENA: Arena<8> = Arena::new();
    setup(&ARENA);
    let Child {
        ctx,
        cancel: cancel_ctx,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: linked,
        cancel,
    } = ctx.with_linked(&other).unwrap();
    assert_eq!(
        ARENA.stats().live,
        5,
        "ctx, other, the context and its two registrations"
    );
    drop((linked, cancel));
    assert_eq!(
        ARENA.stats().live,
        2,
        "both registrations left with the context"
    );
    assert_eq!(ctx.err(), None);
    assert_eq!(other.err(), None);
    drop((ctx, cancel_ctx, other, cancel_other));
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
fn ctx_released_first() {
    static ARENA: Arena<8> = Arena::new();
    setup(&ARENA);
    let Child {
        ctx,
        cancel: cancel_ctx,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: linked,
        cancel,
    } = ctx.with_linked(&other).unwrap();
    drop((ctx, cancel_ctx)); // cancels ctx, and so the linked context
    assert_eq!(linked.err(), Some(Error::Canceled));
    assert_eq!(
        ARENA.stats().live,
        3,
        "the registration on `other` left at once"
    );
    assert_eq!(other.err(), None);
    drop((linked, cancel));
    assert_eq!(ARENA.stats().live, 1, "other");
    drop((other, cancel_other));
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
fn other_released_first() {
    static ARENA: Arena<8> = Arena::new();
    setup(&ARENA);
    let Child {
        ctx,
        cancel: cancel_ctx,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: linked,
        cancel,
    } = ctx.with_linked(&other).unwrap();
    drop((other, cancel_other)); // cancels other, and so the linked context
    assert_eq!(linked.err(), Some(Error::Canceled));
    assert_eq!(
        ARENA.stats().live,
        2,
        "ctx and the context: other and both registrations are gone"
    );
    assert_eq!(ctx.err(), None);
    drop((linked, cancel));
    assert_eq!(ARENA.stats().live, 1, "ctx");
    drop((ctx, cancel_ctx));
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
fn other_released_without_being_done_keeps_the_link_working() {
    static ARENA: Arena<8> = Arena::new();
    setup(&ARENA);
    let Child {
        ctx: root,
        cancel: cancel_root,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = root.with_cancel().unwrap();
    let Child {
        ctx,
        cancel: cancel_ctx,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: linked,
        cancel,
    } = ctx.with_linked(&other).unwrap();
    cancel_other.disarm();
    drop(other); // handles gone, `other` not done: it lives on in root's list
    assert_eq!(linked.err(), None, "releasing a handle cancels nothing");
    cancel_root.cancel_with(&WHY); // reaches `other`, then the linked context
    assert!(linked.cause().unwrap().is_static(&WHY));
    drop((linked, cancel, ctx, cancel_ctx));
    drop((root, cancel_root));
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
fn other_cancelled_first() {
    static ARENA: Arena<8> = Arena::new();
    setup(&ARENA);
    let Child {
        ctx,
        cancel: cancel_ctx,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: linked,
        cancel,
    } = ctx.with_linked(&other).unwrap();
    cancel_other.cancel_with(&WHY);
    assert_eq!(linked.err(), Some(Error::Canceled));
    let cause = linked.cause().unwrap();
    assert!(cause.is_static(&WHY));
    assert_eq!(cause.code(), Some(3));
    assert_eq!(
        ctx.err(),
        None,
        "a parent never sees its child's cancellation"
    );
    cancel_ctx.cancel(); // later: changes nothing
    assert!(linked.cause().unwrap().is_static(&WHY));
    drop((linked, cancel));
    assert_eq!(
        ARENA.stats().live,
        2,
        "ctx and other, held by their handles"
    );
    drop((ctx, cancel_ctx, other, cancel_other));
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
fn ctx_cancelled_first() {
    static ARENA: Arena<8> = Arena::new();
    setup(&ARENA);
    let Child {
        ctx,
        cancel: cancel_ctx,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: linked,
        cancel,
    } = ctx.with_linked(&other).unwrap();
    cancel_ctx.cancel_with(&WHY);
    assert!(linked.cause().unwrap().is_static(&WHY));
    assert_eq!(ARENA.stats().live, 3, "the registrations left");
    cancel_other.cancel(); // later: changes nothing
    assert!(linked.cause().unwrap().is_static(&WHY));
    assert_eq!(other.cause().unwrap(), Error::Canceled);
    drop((linked, cancel, ctx, cancel_ctx, other, cancel_other));
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
fn own_cancel() {
    static ARENA: Arena<8> = Arena::new();
    setup(&ARENA);
    let Child {
        ctx,
        cancel: cancel_ctx,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: linked,
        cancel,
    } = ctx.with_linked(&other).unwrap();
    let Child {
        ctx: grandchild,
        cancel: _gc,
    } = linked.with_cancel().unwrap();
    cancel.cancel_with(&WHY);
    assert!(grandchild.cause().unwrap().is_static(&WHY));
    assert_eq!(ctx.err(), None);
    assert_eq!(other.err(), None);
    assert_eq!(
        ARENA.stats().live,
        4,
        "ctx, other, the context and its child: the registrations left"
    );
    drop((grandchild, _gc, linked, cancel));
    assert_eq!(ARENA.stats().live, 2);
    drop((ctx, cancel_ctx, other, cancel_other));
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
fn disarm_keeps_it_linked_until_a_parent_is_done() {
    static ARENA: Arena<8> = Arena::new();
    setup(&ARENA);
    for other_first in [false, true] {
        let Child {
            ctx,
            cancel: cancel_ctx,
        } = ARENA.background().with_cancel().unwrap();
        let Child {
            ctx: other,
            cancel: cancel_other,
        } = ARENA.background().with_cancel().unwrap();
        let Child {
            ctx: linked,
            cancel,
        } = ctx.with_linked(&other).unwrap();
        cancel.disarm();
        assert_eq!(linked.err(), None, "disarm cancels nothing");
        let watcher = linked.clone();
        drop(linked);
        assert_eq!(
            ARENA.stats().live,
            5,
            "still linked: Go's recipe without stop()"
        );
        if other_first {
            cancel_other.cancel_with(&WHY);
            assert!(watcher.cause().unwrap().is_static(&WHY));
        } else {
            cancel_ctx.cancel();
            assert_eq!(watcher.err(), Some(Error::Canceled));
        }
        drop(watcher);
        assert_eq!(
            ARENA.stats().live,
            2,
            "ctx and other, held by their handles"
        );
        drop((ctx, cancel_ctx, other, cancel_other));
        assert_eq!(ARENA.stats().live, 0);
    }
}

#[test]
fn disarmed_under_background_is_released_when_other_is_done() {
    static ARENA: Arena<8> = Arena::new();
    setup(&ARENA);
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: linked,
        cancel,
    } = ARENA.background().with_linked(&other).unwrap();
    cancel.disarm();
    drop(linked);
    assert_eq!(
        ARENA.stats().live,
        4,
        "other and the three nodes of the link"
    );
    drop((other, cancel_other));
    assert_eq!(ARENA.stats().live, 0);
}

// ------------------------------------------------------------------------------------------
// Semantics: error, cause, values, Display, deadlines.
// ------------------------------------------------------------------------------------------

#[test]
fn values_and_display_are_ctxs() {
    static ARENA: Arena<8> = Arena::new();
    setup(&ARENA);
    let ctx = ARENA.background().with_value(&USER, 7).unwrap();
    let Child {
        ctx: other,
        cancel: _co,
    } = ARENA.todo().with_cancel().unwrap();
    let other = other.with_value(&USER, 9).unwrap();
    let Child {
        ctx: linked,
        cancel: _cancel,
    } = ctx.with_linked(&other).unwrap();
    assert_eq!(linked.value(&USER), Some(7));
    assert_eq!(
        linked.to_string(),
        "context.Background.WithValue(user, u32).WithCancel"
    );
    assert_eq!(linked.deadline(), None);
    assert!(linked.can_be_done());
}

#[test]
fn born_done_with_the_first_parents_record() {
    static ARENA: Arena<8> = Arena::new();
    setup(&ARENA);
    // ctx done: ctx's record (as any child of a done context), and no registration made.
    let Child {
        ctx,
        cancel: cancel_ctx,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA.background().with_cancel().unwrap();
    cancel_ctx.cancel_with(&WHY);
    let Child {
        ctx: linked,
        cancel,
    } = ctx.with_linked(&other).unwrap();
    assert!(linked.cause().unwrap().is_static(&WHY));
    assert_eq!(ARENA.stats().live, 3);
    drop((linked, cancel));
    // other done: other's record.
    let Child {
        ctx: ctx2,
        cancel: cancel_ctx2,
    } = ARENA.background().with_cancel().unwrap();
    cancel_other.cancel_with(&OTHER_DL);
    let Child {
        ctx: linked,
        cancel,
    } = ctx2.with_linked(&other).unwrap();
    assert_eq!(linked.err(), Some(Error::Canceled));
    assert!(linked.cause().unwrap().is_static(&OTHER_DL));
    assert_eq!(
        ARENA.stats().live,
        4,
        "ctx, ctx2, other, and the context alone"
    );
    drop((
        linked,
        cancel,
        ctx,
        cancel_ctx,
        ctx2,
        cancel_ctx2,
        other,
        cancel_other,
    ));
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
fn other_never_done_costs_one_node() {
    static ARENA: Arena<8> = Arena::new();
    setup(&ARENA);
    let Child { ctx, cancel: _c } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: linked,
        cancel,
    } = ctx.with_linked(&ARENA.background()).unwrap();
    assert_eq!(ARENA.stats().live, 2);
    let quiet = ARENA.todo().without_cancel().unwrap();
    let Child {
        ctx: linked2,
        cancel: cancel2,
    } = ctx.with_linked(&quiet).unwrap();
    assert_eq!(ARENA.stats().live, 4);
    drop((cancel, cancel2));
    assert!(linked.is_done() && linked2.is_done());
}

#[test]
fn linked_to_itself_and_to_a_descendant() {
    static ARENA: Arena<16> = Arena::new();
    setup(&ARENA);
    let Child {
        ctx,
        cancel: cancel_ctx,
    } = ARENA.background().with_cancel().unwrap();
    let Child { ctx: a, cancel: ca } = ctx.with_linked(&ctx).unwrap();
    let Child {
        ctx: child,
        cancel: cancel_child,
    } = ctx.with_cancel().unwrap();
    let Child { ctx: b, cancel: cb } = ctx.with_linked(&child).unwrap();
    cancel_child.cancel_with(&WHY);
    assert!(b.cause().unwrap().is_static(&WHY));
    assert_eq!(a.err(), None);
    cancel_ctx.cancel();
    assert_eq!(a.err(), Some(Error::Canceled));
    drop((a, ca, b, cb, child, cancel_child, ctx, cancel_ctx));
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
fn a_chain_of_links_cancels_through() {
    static ARENA: Arena<32> = Arena::new();
    setup(&ARENA);
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA.background().with_cancel().unwrap();
    let mut chain = Vec::new();
    let mut last = other.clone();
    for _ in 0..5 {
        let Child { ctx: l, cancel: c } = ARENA.background().with_linked(&last).unwrap();
        last = l.clone();
        chain.push((l, c));
    }
    cancel_other.cancel_with(&WHY);
    for (l, _) in &chain {
        assert!(l.cause().unwrap().is_static(&WHY));
    }
    drop((chain, last, other, cancel_other));
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
fn others_earlier_deadline_is_the_deadline_and_expires_lazily_with_its_cause() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static ARENA: Arena<8> = Arena::new().with_clock(&CLOCK);
    setup(&ARENA);
    let t0 = CLOCK.now().ticks();
    let Child { ctx, cancel: _cc } = ARENA
        .background()
        .with_deadline_cause(Instant::from_ticks(t0 + 100), &CTX_DL)
        .unwrap();
    let Child {
        ctx: other,
        cancel: _co,
    } = ARENA
        .background()
        .with_deadline_cause(Instant::from_ticks(t0 + 50), &OTHER_DL)
        .unwrap();
    let Child {
        ctx: linked,
        cancel: _cancel,
    } = ctx.with_linked(&other).unwrap();
    assert_eq!(linked.deadline(), Some(Instant::from_ticks(t0 + 50)));
    assert!(
        linked
            .to_string()
            .starts_with("context.Background.WithDeadline(@")
    );
    assert_eq!(linked.to_string().matches(".WithDeadline(").count(), 2);
    CLOCK.advance(49);
    assert!(!linked.is_done());
    CLOCK.advance(1);
    // No timer, no expire(): the first observation of the linked context itself.
    assert!(linked.is_done());
    assert_eq!(linked.err(), Some(Error::DeadlineExceeded));
    assert!(linked.cause().unwrap().is_static(&OTHER_DL));
    assert_eq!(ctx.err(), None);
    assert_eq!(other.err(), Some(Error::DeadlineExceeded));
    assert!(other.cause().unwrap().is_static(&OTHER_DL));
}

#[test]
fn ctxs_earlier_deadline_is_inherited() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static ARENA: Arena<8> = Arena::new().with_clock(&CLOCK);
    setup(&ARENA);
    let t0 = CLOCK.now().ticks();
    let Child { ctx, cancel: _cc } = ARENA
        .background()
        .with_deadline_cause(Instant::from_ticks(t0 + 50), &CTX_DL)
        .unwrap();
    let Child {
        ctx: other,
        cancel: _co,
    } = ARENA
        .background()
        .with_deadline_cause(Instant::from_ticks(t0 + 100), &OTHER_DL)
        .unwrap();
    let Child {
        ctx: linked,
        cancel: _cancel,
    } = ctx.with_linked(&other).unwrap();
    assert_eq!(linked.deadline(), Some(Instant::from_ticks(t0 + 50)));
    assert!(linked.to_string().ends_with(".WithCancel"));
    CLOCK.advance(50);
    assert_eq!(linked.err(), Some(Error::DeadlineExceeded));
    assert!(linked.cause().unwrap().is_static(&CTX_DL));
}

#[test]
fn others_deadline_fired_by_expire_reaches_the_linked_context() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static ARENA: Arena<8> = Arena::new().with_clock(&CLOCK);
    setup(&ARENA);
    let t0 = CLOCK.now().ticks();
    let Child {
        ctx,
        cancel: cancel_ctx,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA
        .background()
        .with_deadline_cause(Instant::from_ticks(t0 + 10), &OTHER_DL)
        .unwrap();
    let Child {
        ctx: linked,
        cancel,
    } = ctx.with_linked(&other).unwrap();
    CLOCK.advance(10);
    // The firmware timer: expires whatever is due, in slot order.
    let _ = ARENA.expire(CLOCK.now());
    assert_eq!(linked.err(), Some(Error::DeadlineExceeded));
    assert!(linked.cause().unwrap().is_static(&OTHER_DL));
    assert_eq!(ARENA.stats().live, 3, "the registrations left");
    drop((linked, cancel, ctx, cancel_ctx, other, cancel_other));
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
fn both_deadlines_passed_unobserved_the_earlier_wins() {
    // Go's timeline: ctx's deadline (t0+10) fired before other's (t0+20), even when other's
    // expiry is what reaches the linked context first.
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static ARENA: Arena<8> = Arena::new().with_clock(&CLOCK);
    setup(&ARENA);
    let t0 = CLOCK.now().ticks();
    let Child { ctx, cancel: _cc } = ARENA
        .background()
        .with_deadline_cause(Instant::from_ticks(t0 + 10), &CTX_DL)
        .unwrap();
    let Child {
        ctx: other,
        cancel: _co,
    } = ARENA
        .background()
        .with_deadline_cause(Instant::from_ticks(t0 + 20), &OTHER_DL)
        .unwrap();
    let Child {
        ctx: linked,
        cancel: _cancel,
    } = ctx.with_linked(&other).unwrap();
    CLOCK.advance(30);
    assert_eq!(other.err(), Some(Error::DeadlineExceeded)); // other first observed: fires R
    assert!(linked.cause().unwrap().is_static(&CTX_DL));
}

#[test]
fn a_deadline_of_other_already_past_is_born_exceeded() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static ARENA: Arena<8> = Arena::new().with_clock(&CLOCK);
    setup(&ARENA);
    let t0 = CLOCK.now().ticks();
    let Child {
        ctx: other,
        cancel: _co,
    } = ARENA
        .background()
        .with_deadline_cause(Instant::from_ticks(t0 + 5), &OTHER_DL)
        .unwrap();
    CLOCK.advance(5);
    let Child {
        ctx: linked,
        cancel: _cancel,
    } = ARENA.background().with_linked(&other).unwrap();
    assert_eq!(linked.err(), Some(Error::DeadlineExceeded));
    assert!(linked.cause().unwrap().is_static(&OTHER_DL));
    assert_eq!(
        ARENA.stats().live,
        2,
        "other and the context: nothing to listen to"
    );
}

#[test]
#[cfg(feature = "alloc")] // a heap cause
fn a_heap_cause_outlives_the_other_side() {
    static ARENA: Arena<8> = Arena::new();
    setup(&ARENA);
    #[derive(Debug)]
    struct Gone;
    impl std::fmt::Display for Gone {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("peer gone")
        }
    }
    impl std::error::Error for Gone {}
    let Child {
        ctx,
        cancel: cancel_ctx,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: linked,
        cancel,
    } = ctx.with_linked(&other).unwrap();
    cancel_other.cancel_with(ctxtree::CancelCause::error(Gone));
    drop((other, cancel_other)); // `other` and its cause are freed
    assert_eq!(ARENA.stats().live, 2);
    assert_eq!(linked.cause().unwrap().to_string(), "peer gone"); // the context's own copy
    drop((linked, cancel, ctx, cancel_ctx));
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
#[cfg(feature = "alloc")] // a heap cause
fn a_heap_deadline_cause_of_other_is_copied() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static ARENA: Arena<8> = Arena::new().with_clock(&CLOCK);
    setup(&ARENA);
    let why: std::sync::Arc<dyn std::error::Error + Send + Sync> =
        std::sync::Arc::new(std::io::Error::other("budget spent"));
    let t0 = CLOCK.now().ticks();

    // Cancelled before its deadline: other's cancel is what the linked context reports, and
    // its copy of the deadline cause is freed with it.
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA
        .background()
        .with_deadline_cause(Instant::from_ticks(t0 + 5), why.clone())
        .unwrap();
    let Child {
        ctx: linked,
        cancel,
    } = ARENA.background().with_linked(&other).unwrap();
    assert_eq!(
        std::sync::Arc::strong_count(&why),
        3,
        "other's and the linked context's"
    );
    drop((other, cancel_other)); // cancels and frees other
    CLOCK.advance(5);
    assert_eq!(
        linked.err(),
        Some(Error::Canceled),
        "other's cancel came first"
    );
    assert_eq!(linked.cause().unwrap(), Error::Canceled);
    drop((linked, cancel));
    assert_eq!(ARENA.stats().live, 0);
    assert_eq!(std::sync::Arc::strong_count(&why), 1, "every copy freed");

    // Expired: the linked context reports its own copy, which outlives other.
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA
        .background()
        .with_timeout_cause(core::time::Duration::from_millis(10), why.clone())
        .unwrap();
    let Child {
        ctx: linked,
        cancel,
    } = ARENA.background().with_linked(&other).unwrap();
    CLOCK.advance(10);
    assert_eq!(linked.err(), Some(Error::DeadlineExceeded));
    drop((other, cancel_other));
    assert_eq!(ARENA.stats().live, 1);
    assert_eq!(linked.cause().unwrap().to_string(), "budget spent");
    drop((linked, cancel));
    assert_eq!(ARENA.stats().live, 0);
    assert_eq!(std::sync::Arc::strong_count(&why), 1, "every copy freed");
}

// ------------------------------------------------------------------------------------------
// Two arenas.
// ------------------------------------------------------------------------------------------

#[test]
#[cfg(feature = "std")] // the global arena (or its clock, or blocking waits)
fn with_linked_refuses_two_arenas() {
    let a = Arena::<4>::new();
    let b = Arena::<4>::new();
    let Child {
        ctx: other,
        cancel: _co,
    } = b.background().with_cancel().unwrap();
    assert_eq!(
        a.background().with_linked(&other).err(),
        Some(CreateError::ForeignArena)
    );
    assert_eq!(a.stats().live, 0);
    assert_eq!(b.stats().live, 1);
    assert!(
        CreateError::ForeignArena
            .to_string()
            .contains("with_linked_static")
    );
    let io: std::io::Error = CreateError::ForeignArena.into();
    assert_eq!(io.kind(), std::io::ErrorKind::Unsupported);
}

#[test]
fn two_static_arenas_every_order() {
    static A: Arena<8> = Arena::new();
    static B: Arena<8> = Arena::new();
    for order in 0..5 {
        let Child {
            ctx,
            cancel: cancel_ctx,
        } = A.background().with_cancel().unwrap();
        let Child {
            ctx: other,
            cancel: cancel_other,
        } = B.background().with_cancel().unwrap();
        let Child {
            ctx: linked,
            cancel,
        } = ctx.with_linked_static(&other).unwrap();
        assert_eq!((A.stats().live, B.stats().live), (3, 2));
        match order {
            0 => drop((linked, cancel)),
            1 => {
                cancel_other.cancel_with(&WHY);
                assert!(linked.cause().unwrap().is_static(&WHY));
                drop((linked, cancel));
            }
            2 => {
                cancel_ctx.cancel();
                assert_eq!(B.stats().live, 1, "the registration on B left");
                drop((linked, cancel));
            }
            3 => {
                cancel.disarm();
                drop(linked);
                cancel_other.cancel();
            }
            _ => {
                drop((other, cancel_other, ctx, cancel_ctx));
                assert_eq!(linked.err(), Some(Error::Canceled));
                drop((linked, cancel));
                assert_eq!((A.stats().live, B.stats().live), (0, 0));
                continue;
            }
        }
        drop((ctx, cancel_ctx, other, cancel_other));
        assert_eq!((A.stats().live, B.stats().live), (0, 0), "order {order}");
    }
}

#[test]
fn two_clocks_translate_others_deadline() {
    static CA: ManualClock = ManualClock::new(1_000); // ms
    static CB: ManualClock = ManualClock::new(1_000_000); // µs, another epoch
    static A: Arena<8> = Arena::new().with_clock(&CA);
    static B: Arena<8> = Arena::new().with_clock(&CB);
    CA.set(Instant::from_ticks(5_000));
    CB.set(Instant::from_ticks(123_000_000));
    let Child {
        ctx: other,
        cancel: _co,
    } = B
        .background()
        .with_timeout_cause(core::time::Duration::from_millis(40), &OTHER_DL)
        .unwrap();
    let Child {
        ctx: linked,
        cancel: _cancel,
    } = A.background().with_linked_static(&other).unwrap();
    assert_eq!(linked.deadline(), Some(Instant::from_ticks(5_040)));
    CA.advance(40);
    // A's clock says it passed: the linked context expires by it, with other's cause.
    assert_eq!(linked.err(), Some(Error::DeadlineExceeded));
    assert!(linked.cause().unwrap().is_static(&OTHER_DL));
    assert_eq!(other.err(), None, "B's clock has not moved");
}

#[test]
fn two_arenas_without_clocks_and_a_deadline_say_no_clock() {
    static CB: ManualClock = ManualClock::new(1_000);
    static A: Arena<4> = Arena::new();
    static B: Arena<4> = Arena::new().with_clock(&CB);
    let Child {
        ctx: other,
        cancel: _co,
    } = B
        .background()
        .with_timeout(core::time::Duration::from_millis(5))
        .unwrap();
    assert_eq!(
        A.background().with_linked_static(&other).err(),
        Some(CreateError::NoClock)
    );
    assert_eq!((A.stats().live, B.stats().live), (0, 1));
    // Without a deadline, no clock is needed.
    let Child {
        ctx: plain,
        cancel: _cp,
    } = B.background().with_cancel().unwrap();
    assert!(A.background().with_linked_static(&plain).is_ok());
}

#[test]
#[cfg(feature = "std")] // the global arena (or its clock, or blocking waits)
fn a_static_arena_and_the_global_arena() {
    static FIRMWARE: Arena<8> = Arena::new().with_clock(&ctxtree::StdClock);
    let Child {
        ctx: request,
        cancel: cancel_request,
    } = ctxtree::background()
        .with_timeout(core::time::Duration::from_secs(3600))
        .unwrap();
    let Child {
        ctx: device,
        cancel: unplug,
    } = FIRMWARE.background().with_cancel().unwrap();
    let Child {
        ctx: transfer,
        cancel,
    } = device.with_linked_static(&request).unwrap();
    let hour = transfer.deadline().unwrap().ticks() - ctxtree::StdClock.now().ticks();
    assert!(
        hour <= 3_600_000_000_000 && hour > 3_590_000_000_000,
        "{hour}"
    );
    cancel_request.cancel_with(&WHY);
    assert!(transfer.cause().unwrap().is_static(&WHY));
    drop((transfer, cancel, device, unplug, request));
    assert_eq!(FIRMWARE.stats().live, 0);
}

// ------------------------------------------------------------------------------------------
// Exhaustion.
// ------------------------------------------------------------------------------------------

#[test]
fn a_full_arena_returns_arena_full_and_leaks_nothing() {
    static ARENA: Arena<4> = Arena::new();
    let Child {
        ctx,
        cancel: cancel_ctx,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA.background().with_cancel().unwrap();
    // Two nodes free: the link needs three.
    for held in 0..=2 {
        let fillers: Vec<_> = (0..held)
            .map(|_| ARENA.todo().with_cancel().unwrap())
            .collect();
        let live = ARENA.stats().live;
        assert_eq!(
            ctx.with_linked(&other).err(),
            Some(CreateError::ArenaFull),
            "{held} held"
        );
        assert_eq!(ARENA.stats().live, live, "nothing leaked ({held} held)");
        drop(fillers);
    }
    drop((ctx, cancel_ctx));
    // With `other` done, the link needs one node only: the context, born done.
    let Child {
        ctx,
        cancel: cancel_ctx,
    } = ARENA.todo().with_cancel().unwrap();
    drop(cancel_other);
    let Child {
        ctx: linked,
        cancel,
    } = ctx.with_linked(&other).unwrap();
    assert_eq!(linked.err(), Some(Error::Canceled), "born done: other was");
    drop((linked, cancel, ctx, cancel_ctx, other));
    assert_eq!(ARENA.stats().live, 0);
    assert!(ARENA.stats().failed_allocs >= 3);
}

#[test]
fn a_full_other_arena_returns_arena_full_and_leaks_nothing() {
    static A: Arena<4> = Arena::new();
    static B: Arena<1> = Arena::new();
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = B.background().with_cancel().unwrap();
    assert_eq!(
        A.background().with_linked_static(&other).err(),
        Some(CreateError::ArenaFull)
    );
    assert_eq!((A.stats().live, B.stats().live), (0, 1));
    drop((other, cancel_other));
}

// ------------------------------------------------------------------------------------------
// Callbacks on the linked context; panics.
// ------------------------------------------------------------------------------------------

#[test]
fn after_func_callbacks_on_the_linked_context_run_once() {
    static ARENA: Arena<16> = Arena::new();
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    setup(&ARENA);
    let Child {
        ctx,
        cancel: cancel_ctx,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: linked,
        cancel,
    } = ctx.with_linked(&other).unwrap();
    let regs: Vec<_> = (0..3)
        .map(|_| {
            linked
                .after_func(|| {
                    RUNS.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap()
        })
        .collect();
    cancel_other.cancel();
    cancel_ctx.cancel();
    cancel.cancel();
    assert_eq!(RUNS.load(Ordering::SeqCst), 3);
    for r in &regs {
        assert!(!r.stop());
    }
    drop((regs, linked, cancel, ctx, cancel_ctx, other, cancel_other));
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
#[cfg(feature = "std")] // a panic in user code is caught only with std (without, it aborts)
fn a_panicking_callback_leaks_nothing() {
    static ARENA: Arena<16> = Arena::new();
    static RAN: AtomicUsize = AtomicUsize::new(0);
    setup(&ARENA);
    let Child {
        ctx,
        cancel: cancel_ctx,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: linked,
        cancel,
    } = ctx.with_linked(&other).unwrap();
    let Child {
        ctx: grandchild,
        cancel: _gc,
    } = linked.with_cancel().unwrap();
    let _boom = linked.after_func(|| panic!("callback panics")).unwrap();
    let _after = grandchild
        .after_func(|| {
            RAN.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| cancel_other.cancel_with(&WHY)));
    assert!(r.is_err(), "the panic is resumed from other's cancel");
    assert!(linked.cause().unwrap().is_static(&WHY));
    assert!(grandchild.cause().unwrap().is_static(&WHY));
    assert_eq!(RAN.load(Ordering::SeqCst), 1, "every other callback ran");
    drop((_boom, _after, grandchild, _gc, linked, cancel));
    drop((ctx, cancel_ctx, other, cancel_other));
    assert_eq!(ARENA.stats().live, 0);
}

// ------------------------------------------------------------------------------------------
// The `after_func` recipe gone wrong, and why `with_linked` does not have the bug.
// ------------------------------------------------------------------------------------------

/// Go's merge recipe transcribed with `after_func`: the closure owns the `Canceler`, so
/// `stop()`, which drops the closure unrun, *cancels* — where Go's `stop()` leaves the
/// context alone. Documented on `with_linked` ("Beside .NET and Go").
#[test]
fn the_after_func_recipe_cancels_on_stop() {
    static ARENA: Arena<8> = Arena::new();
    setup(&ARENA);
    let Child { ctx, cancel: _cc } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: other,
        cancel: _co,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: merged,
        cancel,
    } = ctx.with_cancel().unwrap();
    let stop = other.after_func(move || cancel.cancel()).unwrap();
    assert_eq!(merged.err(), None);
    assert!(stop.stop()); // Go: `defer stop()` at the end of the work ...
    assert_eq!(merged.err(), Some(Error::Canceled)); // ... here it also cancelled
}

/// `with_linked`'s registration holds a reference, never the canceler: nothing but `ctx`,
/// `other`, the deadline or the canceler cancels it — not the removal of a registration, not a
/// released handle, not an `after_func` registered and stopped on either side.
#[test]
fn with_linked_is_cancelled_by_nothing_else() {
    static ARENA: Arena<16> = Arena::new();
    setup(&ARENA);
    let Child {
        ctx,
        cancel: cancel_ctx,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: linked,
        cancel,
    } = ctx.with_linked(&other).unwrap();
    for c in [&ctx, &other, &linked] {
        assert!(c.after_func(|| {}).unwrap().stop());
        drop(c.clone());
    }
    // A second link on `other`, made and dropped: its registration leaves `other`'s list.
    let Child {
        ctx: second,
        cancel: cancel_second,
    } = ctx.with_linked(&other).unwrap();
    drop((second, cancel_second));
    assert_eq!(linked.err(), None);
    let handle = cancel.context();
    drop(linked);
    assert_eq!(handle.err(), None);
    drop((handle, cancel, ctx, cancel_ctx, other, cancel_other));
    assert_eq!(ARENA.stats().live, 0);
}

// ------------------------------------------------------------------------------------------
// No allocation; threads.
// ------------------------------------------------------------------------------------------

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

#[test]
fn no_allocation_on_a_static_arena() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static ARENA: Arena<8> = Arena::new().with_clock(&CLOCK);
    let before = counting_alloc::allocs();
    let t0 = CLOCK.now().ticks();
    for round in 0..4 {
        let Child {
            ctx,
            cancel: cancel_ctx,
        } = ARENA.background().with_cancel().unwrap();
        let Child {
            ctx: other,
            cancel: cancel_other,
        } = ARENA
            .background()
            .with_deadline_cause(Instant::from_ticks(t0 + 1_000), &OTHER_DL)
            .unwrap();
        let Child {
            ctx: linked,
            cancel,
        } = ctx.with_linked(&other).unwrap();
        match round {
            0 => cancel_other.cancel_with(&WHY),
            1 => cancel_ctx.cancel(),
            2 => cancel.cancel(),
            _ => {
                let _ = ARENA.expire(Instant::from_ticks(t0 + 1_000));
            }
        }
        assert!(linked.is_done() && linked.cause().is_some());
        drop((linked, cancel, ctx, cancel_ctx, other, cancel_other));
    }
    assert_eq!(counting_alloc::allocs(), before, "with_linked allocated");
    assert_eq!(ARENA.stats().live, 0);
}

/// Creation, cancellation of either parent and release race on real threads (loom checks
/// the interleavings; this checks that nothing leaks or deadlocks at speed). Bounded: a fixed
/// number of rounds, each joined.
#[test]
fn threads_race_link_cancel_and_release() {
    static ARENA: Arena<64> = Arena::new();
    let rounds = if cfg!(miri) { 5 } else { 300 };
    for round in 0..rounds {
        let Child {
            ctx,
            cancel: cancel_ctx,
        } = ARENA.background().with_cancel().unwrap();
        let Child {
            ctx: other,
            cancel: cancel_other,
        } = ARENA.background().with_cancel().unwrap();
        std::thread::scope(|s| {
            let linker = s.spawn(|| {
                let mut made = 0;
                for _ in 0..4 {
                    if let Ok(Child { ctx: l, cancel: c }) = ctx.with_linked(&other) {
                        made += 1;
                        if round % 2 == 0 {
                            drop((l, c));
                        } else {
                            c.disarm();
                            drop(l);
                        }
                    }
                }
                made
            });
            let canceller = s.spawn(|| {
                if round % 3 == 0 {
                    cancel_ctx.cancel();
                } else {
                    cancel_other.cancel_with(&WHY);
                }
            });
            assert_eq!(linker.join().unwrap(), 4);
            canceller.join().unwrap();
        });
        // Whichever parent was cancelled, the disarmed links are done and gone.
        drop((ctx, cancel_ctx, other, cancel_other));
        assert_eq!(ARENA.stats().live, 0, "round {round}");
    }
}

#[test]
#[cfg(feature = "std")] // the global arena (or its clock, or blocking waits)
fn contexts_move_across_threads() {
    static ARENA: Arena<8> = Arena::new();
    let Child { ctx, cancel: _cc } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: linked,
        cancel: _cancel,
    } = ctx.with_linked(&other).unwrap();
    // Woken by the cancel below (bounded: a lost wake-up fails after a minute, never hangs).
    let t = std::thread::spawn(move || linked.wait_timeout(core::time::Duration::from_secs(60)));
    cancel_other.cancel();
    assert_eq!(t.join().unwrap(), Some(Error::Canceled));
}

/// Two threads cancel `other` at once: neither returns before the linked context is done — a
/// canceller that meets the registration already fired by the other helps cancel it (as
/// neither returns before `other`'s own subtree is done). Bounded: a fixed number of rounds.
#[test]
fn no_canceller_of_other_returns_before_the_linked_context_is_done() {
    static ARENA: Arena<32> = Arena::new();
    let rounds = if cfg!(miri) { 5 } else { 500 };
    for round in 0..rounds {
        let Child {
            ctx,
            cancel: cancel_ctx,
        } = ARENA.background().with_cancel().unwrap();
        let Child {
            ctx: other,
            cancel: cancel_other,
        } = ARENA.background().with_cancel().unwrap();
        let Child {
            ctx: linked,
            cancel,
        } = ctx.with_linked(&other).unwrap();
        // A subtree that takes the firing thread a while to cancel; the oldest child is the
        // last one cancelled.
        let subtree: Vec<_> = (0..16).map(|_| linked.with_cancel().unwrap()).collect();
        let last = &subtree[0].ctx;
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    cancel_other.cancel_with(&WHY);
                    assert!(last.is_done(), "round {round}: returned early");
                    assert!(linked.cause().unwrap().is_static(&WHY));
                });
            }
        });
        drop((
            subtree,
            linked,
            cancel,
            ctx,
            cancel_ctx,
            other,
            cancel_other,
        ));
        assert_eq!(ARENA.stats().live, 0, "round {round}");
    }
}

#[test]
fn the_dump_shows_both_registrations() {
    static ARENA: Arena<8> = Arena::new();
    let Child { ctx, cancel: _cc } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: other,
        cancel: cancel_other,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: _linked,
        cancel: _cancel,
    } = ctx.with_linked(&other).unwrap();
    let dump = ARENA.tree().to_string();
    assert_eq!(dump.matches("Link #").count(), 1, "{dump}");
    assert_eq!(dump.matches("AfterFunc #").count(), 1, "{dump}");
    assert_eq!(dump.matches("[pending]").count(), 2, "{dump}");
    cancel_other.cancel();
    let dump = ARENA.tree().to_string();
    assert!(
        !dump.contains("Link #") && !dump.contains("AfterFunc #"),
        "{dump}"
    );
    drop(other);
}

/// On the global arena, a waiter on the linked context is woken by the `std` timer at `other`'s
/// deadline (the linked context owns it: a waiter watches it). Skipped under Miri (the timer
/// thread outlives the test process's main thread: see ci/miri.sh).
#[test]
#[cfg(feature = "std")] // the global arena (or its clock, or blocking waits)
fn global_timer_wakes_a_waiter_at_others_deadline() {
    let Child {
        ctx: other,
        cancel: _co,
    } = ctxtree::background()
        .with_timeout_cause(core::time::Duration::from_millis(20), &OTHER_DL)
        .unwrap();
    let Child { ctx, cancel: _cc } = ctxtree::background().with_cancel().unwrap();
    let Child {
        ctx: linked,
        cancel: _cancel,
    } = ctx.with_linked(&other).unwrap();
    assert_eq!(linked.deadline(), other.deadline());
    assert_eq!(
        linked.wait_timeout(core::time::Duration::from_secs(60)),
        Some(Error::DeadlineExceeded)
    );
    assert!(linked.cause().unwrap().is_static(&OTHER_DL));
}

/// A clock that panics while the link is being made (user code: DESIGN §4), after the link's
/// slots were reserved: the panic propagates, and neither a node nor a reserved slot is lost —
/// the arena still hands out every slot it has.
#[test]
#[cfg(feature = "std")] // a panic in user code is caught only with std (without, it aborts)
fn a_panicking_clock_loses_no_slot() {
    /// Panics once, on the read after `.0` more reads (`usize::MAX`: never).
    struct Flaky(AtomicUsize, ManualClock, AtomicBool);
    impl Clock for Flaky {
        fn now(&self) -> Instant {
            match self.0.load(Ordering::SeqCst) {
                usize::MAX => {}
                0 => {
                    self.0.store(usize::MAX, Ordering::SeqCst);
                    self.2.store(true, Ordering::SeqCst);
                    panic!("clock failure");
                }
                left => self.0.store(left - 1, Ordering::SeqCst),
            }
            self.1.now()
        }
        fn ticks_per_second(&self) -> u64 {
            1_000
        }
    }
    static CLOCK: Flaky = Flaky(
        AtomicUsize::new(usize::MAX),
        ManualClock::new(1_000),
        AtomicBool::new(false),
    );
    static ARENA: Arena<6> = Arena::new().with_clock(&CLOCK);
    let t0 = CLOCK.now().ticks();
    let Child { ctx, cancel: _cc } = ARENA
        .background()
        .with_deadline(Instant::from_ticks(t0 + 100))
        .unwrap();
    let Child {
        ctx: other,
        cancel: _co,
    } = ARENA
        .background()
        .with_deadline(Instant::from_ticks(t0 + 50))
        .unwrap();
    let mut panicked = 0;
    for reads in 0..6 {
        CLOCK.0.store(reads, Ordering::SeqCst);
        CLOCK.2.store(false, Ordering::SeqCst);
        let r = catch_unwind(AssertUnwindSafe(|| ctx.with_linked(&other)));
        CLOCK.0.store(usize::MAX, Ordering::SeqCst);
        let failed = CLOCK.2.load(Ordering::SeqCst);
        assert_eq!(
            r.is_err(),
            failed,
            "the clock's panic propagates ({reads} reads)"
        );
        drop(r); // a made link is released with the clock working again
        panicked += failed as usize;
        assert_eq!(ARENA.stats().live, 2, "{reads} reads, panicked: {failed}");
        let _rest: Vec<_> = (0..4)
            .map(|_| ARENA.background().with_cancel().unwrap())
            .collect();
        assert_eq!(
            ARENA.stats().live,
            6,
            "every slot is still handed out ({reads} reads)"
        );
    }
    assert!(
        panicked >= 3,
        "the clock panicked at {panicked} points of the link only"
    );
    let Child {
        ctx: linked,
        cancel: _cancel,
    } = ctx.with_linked(&other).unwrap();
    assert_eq!(linked.deadline(), Some(Instant::from_ticks(t0 + 50)));
}
