//! Arena behaviour: exhaustion and recovery, statistics, node recycling at scale, the expiry
//! driver, lazy deadline checks, the tree dump, deep chains on a small stack, and the elided
//! `Display` of deep chains. One `static` arena per test (tests run in parallel).
// Without `alloc` the heap-arena tests are compiled out; what only they use is then unused.
#![cfg_attr(not(feature = "alloc"), allow(unused_imports, dead_code))]

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::time::Duration;
use ctxtree::Child;
use std::sync::Mutex;

#[cfg(feature = "alloc")]
use ctxtree::HeapArena;
use ctxtree::{
    Arena, ArenaStats, Canceler, Context, CreateError, DeadlineWatch, Error, Instant, Key,
    ManualClock, RawArena, StaticCause,
};

fn stats(capacity: usize, live: usize, high_water: usize, failed_allocs: usize) -> ArenaStats {
    ArenaStats {
        capacity,
        max_capacity: capacity,
        live,
        high_water,
        failed_allocs,
    }
}

fn dump(a: &RawArena) -> String {
    let mut s = String::new();
    a.dump(&mut s).unwrap();
    s
}

/// Sets a flag when dropped: tells "dropped unrun" from "leaked".
struct DropFlag(&'static AtomicBool);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

// ------------------------------------------------------------------------------------------------
// Exhaustion
// ------------------------------------------------------------------------------------------------

#[test]
fn exhaustion_is_an_error_from_every_constructor_and_recovers() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<3> = Arena::new().with_clock(&CLOCK);
    static K: Key<u64> = Key::new("k");
    static SLOW: StaticCause = StaticCause::new("slow");
    static RAN: AtomicUsize = AtomicUsize::new(0);
    static DROPPED: AtomicBool = AtomicBool::new(false);

    let Child {
        ctx: parent,
        cancel: _pc,
    } = A.background().with_cancel().unwrap();
    let Child {
        ctx: dl_parent,
        cancel: _dc,
    } = A
        .background()
        .with_deadline(Instant::from_ticks(5))
        .unwrap();
    let filler = parent.with_value(&K, 1).unwrap();
    assert_eq!(A.stats(), stats(3, 3, 3, 0));

    type Attempt = fn(&Context<'static>) -> Result<(), CreateError>;
    let attempts: [(&str, Attempt); 8] = [
        ("with_cancel", |c| c.with_cancel().map(drop)),
        ("with_cancel_cause", |c| c.with_cancel_cause().map(drop)),
        ("with_deadline", |c| {
            c.with_deadline(Instant::from_ticks(100)).map(drop)
        }),
        ("with_deadline_cause", |c| {
            c.with_deadline_cause(Instant::from_ticks(100), &SLOW)
                .map(drop)
        }),
        ("with_timeout", |c| {
            c.with_timeout(Duration::from_secs(1)).map(drop)
        }),
        ("with_timeout_cause", |c| {
            c.with_timeout_cause(Duration::from_secs(1), &SLOW)
                .map(drop)
        }),
        ("with_value", |c| c.with_value(&K, 9).map(drop)),
        ("without_cancel", |c| c.without_cancel().map(drop)),
    ];
    let mut failed = 0;
    for parent_ctx in [
        A.background(),
        parent.clone(),
        dl_parent.clone(),
        filler.clone(),
    ] {
        for (name, f) in attempts {
            assert_eq!(
                f(&parent_ctx),
                Err(CreateError::ArenaFull),
                "{name} on {parent_ctx}"
            );
            failed += 1;
            assert_eq!(A.stats().failed_allocs, failed, "{name}");
        }
    }
    // A past deadline and a deadline later than the parent's (a plain cancel child) too.
    assert_eq!(
        A.background().with_deadline(Instant::from_ticks(0)).err(),
        Some(CreateError::ArenaFull)
    );
    assert_eq!(
        dl_parent.with_deadline(Instant::from_ticks(50)).err(),
        Some(CreateError::ArenaFull)
    );
    failed += 2;
    // after_func on a cancellable context needs a node: Err, and the closure is dropped unrun.
    let guard = DropFlag(&DROPPED);
    let r = parent.after_func(move || {
        let _g = &guard;
        RAN.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(r.err(), Some(CreateError::ArenaFull));
    failed += 1;
    assert!(DROPPED.load(Ordering::SeqCst), "the closure was dropped");
    assert_eq!(RAN.load(Ordering::SeqCst), 0, "and not run");
    assert_eq!(A.stats(), stats(3, 3, 3, failed));

    // Release one node: every constructor works again, one at a time.
    drop(filler);
    assert_eq!(A.stats().live, 2);
    for parent_ctx in [A.background(), parent.clone(), dl_parent.clone()] {
        for (name, f) in attempts {
            assert_eq!(f(&parent_ctx), Ok(()), "{name} after release");
            assert_eq!(A.stats().live, 2, "{name} released its node");
        }
        let stop = parent_ctx.after_func(|| {}).unwrap();
        if parent_ctx.can_be_done() {
            assert_eq!(A.stats().live, 3);
            assert!(stop.stop());
        }
        drop(stop);
        assert_eq!(A.stats().live, 2);
    }
    assert_eq!(
        A.stats(),
        stats(3, 2, 3, failed),
        "no failures while recovering"
    );
    assert!(!parent.is_done());
}

#[test]
fn after_func_on_never_done_context_needs_no_node_even_when_full() {
    static A: Arena<1> = Arena::new();
    let Child {
        ctx: _c,
        cancel: _cc,
    } = A.background().with_cancel().unwrap();
    assert_eq!(
        A.background().with_cancel().err(),
        Some(CreateError::ArenaFull)
    );
    let stop = A.background().after_func(|| unreachable!()).unwrap();
    assert!(stop.stop());
    assert_eq!(A.stats().failed_allocs, 1);
}

#[test]
fn after_func_on_done_context_runs_even_when_full() {
    // Go: AfterFunc on a done context calls f at once. A done context needs no node for that,
    // so a full arena must not turn it into an error.
    static A: Arena<1> = Arena::new();
    static RAN: AtomicUsize = AtomicUsize::new(0);
    let Child { ctx: c, cancel } = A.background().with_cancel().unwrap();
    cancel.cancel();
    assert_eq!(c.with_cancel().err(), Some(CreateError::ArenaFull));
    let failed = A.stats().failed_allocs;
    let reg = c
        .after_func(|| {
            RAN.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert_eq!(RAN.load(Ordering::SeqCst), 1, "ran at once");
    assert!(!reg.stop(), "stop reports that it already ran");
    assert!(!reg.stop());
    assert_eq!(
        A.stats().failed_allocs,
        failed + 1,
        "the refused node is still counted"
    );
    assert_eq!(A.stats().live, 1);
}

#[test]
#[cfg(feature = "alloc")] // a heap arena sized at run time
fn heap_arena_with_capacity_exhausts_and_recovers() {
    let a = HeapArena::with_capacity(2);
    let Child { ctx: x, cancel: cx } = a.background().with_cancel().unwrap();
    let y = x.with_value(&HK, 1).unwrap();
    assert_eq!(x.with_cancel().err(), Some(CreateError::ArenaFull));
    assert_eq!(y.without_cancel().err(), Some(CreateError::ArenaFull));
    let s = a.stats();
    assert_eq!(
        (s.capacity, s.live, s.high_water, s.failed_allocs),
        (2, 2, 2, 2)
    );
    drop(y);
    let Child {
        ctx: z,
        cancel: _cz,
    } = x.with_cancel().unwrap();
    cx.cancel();
    assert_eq!(z.err(), Some(Error::Canceled));
    drop((x, cx, z, _cz));
    assert_eq!(a.stats().live, 0);
}
static HK: Key<u8> = Key::new("hk");

#[test]
fn timeout_without_clock_is_no_clock() {
    static A: Arena<4> = Arena::new();
    static SLOW: StaticCause = StaticCause::new("slow");
    assert!(A.clock().is_none());
    assert!(A.now().is_none());
    let Child {
        ctx: p,
        cancel: _pc,
    } = A.background().with_cancel().unwrap();
    for ctx in [A.background(), p.clone()] {
        assert_eq!(
            ctx.with_timeout(Duration::from_millis(1)).err(),
            Some(CreateError::NoClock)
        );
        assert_eq!(
            ctx.with_timeout_cause(Duration::from_millis(1), &SLOW)
                .err(),
            Some(CreateError::NoClock)
        );
    }
    // NoClock is not an allocation failure and takes no node.
    assert_eq!(A.stats(), stats(4, 1, 1, 0));
    // Deadlines still work without a clock, driven only by `expire`.
    let Child {
        ctx: d,
        cancel: _dc,
    } = p.with_deadline(Instant::from_ticks(10)).unwrap();
    assert!(!d.is_done(), "no clock: no lazy expiry");
    assert_eq!(A.expire(Instant::from_ticks(10)), None);
    assert_eq!(d.err(), Some(Error::DeadlineExceeded));
}

// ------------------------------------------------------------------------------------------------
// Statistics
// ------------------------------------------------------------------------------------------------

#[test]
fn stats_are_exact_single_threaded() {
    static A: Arena<8> = Arena::new();
    static K: Key<u32> = Key::new("k");
    assert_eq!(A.stats(), stats(8, 0, 0, 0));
    assert_eq!(A.capacity(), 8);
    let _bg = A.background();
    let _todo = A.todo();
    assert_eq!(A.stats(), stats(8, 0, 0, 0), "roots cost nothing");

    let Child { ctx: a, cancel: ca } = A.background().with_cancel().unwrap();
    assert_eq!(A.stats(), stats(8, 1, 1, 0));
    let v = a.with_value(&K, 1).unwrap();
    let Child { ctx: b, cancel: cb } = v.with_cancel().unwrap();
    let f = b.after_func(|| {}).unwrap();
    let w = b.without_cancel().unwrap();
    assert_eq!(A.stats(), stats(8, 5, 5, 0));

    // Clones cost nothing.
    let a2 = a.clone();
    let b2 = ca.context();
    assert_eq!(A.stats().live, 5);
    drop((a2, b2));

    // Cancelling frees nothing while handles remain.
    ca.cancel();
    assert_eq!(A.stats().live, 5);
    drop(w);
    assert_eq!(A.stats(), stats(8, 4, 5, 0));
    drop(f); // fired by the cancel: its handle was the last reference
    assert_eq!(A.stats(), stats(8, 3, 5, 0));
    drop((b, cb));
    assert_eq!(A.stats(), stats(8, 2, 5, 0));
    // `v` and `a` are alive; new nodes reuse freed slots: the high-water mark stays.
    let Child { ctx: c, cancel: cc } = v.with_cancel().unwrap();
    let Child { ctx: d, cancel: cd } = c.with_cancel().unwrap();
    assert_eq!(A.stats(), stats(8, 4, 5, 0));
    assert_eq!(
        d.err(),
        Some(Error::Canceled),
        "born under a cancelled ancestor"
    );
    drop((c, cc, d, cd, v, a, ca));
    assert_eq!(A.stats(), stats(8, 0, 5, 0));

    // Filling the arena moves the high-water mark to capacity, and failures are counted.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(A.background().with_cancel().unwrap());
    }
    assert_eq!(A.stats(), stats(8, 8, 8, 0));
    assert!(A.background().with_cancel().is_err());
    assert!(A.background().with_value(&K, 0).is_err());
    assert_eq!(A.stats(), stats(8, 8, 8, 2));
    held.clear();
    assert_eq!(A.stats(), stats(8, 0, 8, 2));
}

// ------------------------------------------------------------------------------------------------
// Go's TestCancelRemoves at scale: a long-lived parent, a million short-lived children.
// ------------------------------------------------------------------------------------------------

const MILLION: usize = 1_000_000;

#[test]
fn million_cancel_children_do_not_grow_the_parent() {
    static A: Arena<8> = Arena::new();
    let Child {
        ctx: parent,
        cancel: _pc,
    } = A.background().with_cancel().unwrap();
    let base = A.stats().live;
    for i in 0..MILLION {
        let Child { ctx: child, cancel } = parent.with_cancel().unwrap();
        if i % 2 == 0 {
            cancel.cancel();
            assert!(child.is_done());
        }
        drop(child);
        drop(cancel); // cancels the odd ones
    }
    assert_eq!(A.stats().live, base);
    assert_eq!(A.stats().high_water, 2, "parent + one child at a time");
    assert!(!parent.is_done());
}

#[test]
fn million_after_func_registrations_stopped_do_not_grow_the_parent() {
    static A: Arena<8> = Arena::new();
    static RAN: AtomicUsize = AtomicUsize::new(0);
    let Child {
        ctx: parent,
        cancel,
    } = A.background().with_cancel().unwrap();
    for _ in 0..MILLION {
        let stop = parent
            .after_func(|| {
                RAN.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        assert!(stop.stop());
    }
    assert_eq!(A.stats().live, 1);
    assert_eq!(A.stats().high_water, 2);
    cancel.cancel();
    assert_eq!(RAN.load(Ordering::Relaxed), 0, "every one was stopped");
}

#[test]
fn million_deadline_children_expired_do_not_grow_the_parent() {
    static A: Arena<8> = Arena::new(); // no clock: expiry only through `expire`
    let Child {
        ctx: parent,
        cancel: _pc,
    } = A.background().with_cancel().unwrap();
    for i in 0..MILLION as u64 {
        let Child { ctx: child, cancel } =
            parent.with_deadline(Instant::from_ticks(i + 1)).unwrap();
        assert_eq!(
            A.expire(Instant::from_ticks(i)),
            Some(Instant::from_ticks(i + 1))
        );
        assert_eq!(A.expire(Instant::from_ticks(i + 1)), None);
        assert_eq!(child.err(), Some(Error::DeadlineExceeded));
        drop(child);
        drop(cancel);
    }
    assert_eq!(A.stats().live, 1);
    assert_eq!(A.stats().high_water, 2);
    assert!(!parent.is_done());
}

#[test]
fn many_lazily_expired_timeouts_do_not_grow_the_parent() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<8> = Arena::new().with_clock(&CLOCK);
    let Child {
        ctx: parent,
        cancel: _pc,
    } = A.background().with_cancel().unwrap();
    for _ in 0..200_000 {
        let Child { ctx: child, cancel } = parent.with_timeout(Duration::from_millis(1)).unwrap();
        assert!(!child.is_done());
        CLOCK.advance(1);
        assert_eq!(child.err(), Some(Error::DeadlineExceeded));
        drop((child, cancel));
    }
    assert_eq!(A.stats().live, 1);
    assert_eq!(A.stats().high_water, 2);
}

#[test]
fn many_value_and_without_cancel_children_do_not_grow() {
    static A: Arena<8> = Arena::new();
    static K: Key<u64> = Key::new("k");
    let Child {
        ctx: parent,
        cancel: _pc,
    } = A.background().with_cancel().unwrap();
    for i in 0..200_000u64 {
        let v = parent.with_value(&K, i).unwrap();
        let w = v.without_cancel().unwrap();
        assert_eq!(w.value(&K), Some(i));
        drop(v);
        drop(w);
    }
    assert_eq!(A.stats().live, 1);
    assert_eq!(A.stats().high_water, 3);
}

// ------------------------------------------------------------------------------------------------
// Handles and node lifetime
// ------------------------------------------------------------------------------------------------

#[test]
fn handles_keep_nodes_alive_until_the_last_drops() {
    static A: Arena<8> = Arena::new();
    static K: Key<u32> = Key::new("k");
    let Child { ctx, cancel } = A.background().with_cancel().unwrap();
    let clones: Vec<_> = (0..5).map(|_| ctx.clone()).collect();
    drop(ctx);
    drop(cancel); // cancels
    assert_eq!(A.stats().live, 1, "clones hold the node");
    for c in &clones {
        assert_eq!(c.err(), Some(Error::Canceled));
    }
    drop(clones);
    assert_eq!(A.stats().live, 0);

    // A child holds its parent: the parent's values stay readable through it.
    let v = A.background().with_value(&K, 7).unwrap();
    let Child {
        ctx: child,
        cancel: cc,
    } = v.with_cancel().unwrap();
    let grandchild = child.with_value(&K, 8).unwrap();
    drop(v);
    assert_eq!(A.stats().live, 3);
    drop(grandchild);
    assert_eq!(A.stats().live, 2);
    assert_eq!(child.value(&K), Some(7));
    drop(child);
    assert_eq!(A.stats().live, 2, "the canceler still holds the child");
    let again = cc.context();
    assert_eq!(again.value(&K), Some(7));
    drop(again);
    drop(cc);
    assert_eq!(A.stats().live, 0, "the release cascaded to the parent");
}

#[test]
fn canceler_alone_keeps_its_context_and_cancels_on_drop() {
    static A: Arena<4> = Arena::new();
    let Child {
        ctx: parent,
        cancel: _pc,
    } = A.background().with_cancel().unwrap();
    let Child { ctx, cancel } = parent.with_cancel().unwrap();
    let watcher = ctx.clone();
    drop(ctx);
    assert!(!watcher.is_done());
    drop(cancel);
    assert_eq!(
        watcher.err(),
        Some(Error::Canceled),
        "drop is `defer cancel()`"
    );
    assert!(!parent.is_done());
}

// ------------------------------------------------------------------------------------------------
// The expiry driver and lazy deadline checks
// ------------------------------------------------------------------------------------------------

#[test]
fn expire_returns_the_next_deadline_and_cancels_exactly_the_due_ones() {
    static A: Arena<16> = Arena::new();
    static SLOW: StaticCause = StaticCause::new("slow");
    let t = Instant::from_ticks;
    assert_eq!(A.expire(t(0)), None, "nothing pending");
    let Child {
        ctx: d10,
        cancel: _g1,
    } = A.background().with_deadline(t(10)).unwrap();
    let Child {
        ctx: under10,
        cancel: _g2,
    } = d10.with_cancel().unwrap(); // inherits 10
    let Child {
        ctx: d20a,
        cancel: _g3,
    } = A.background().with_deadline_cause(t(20), &SLOW).unwrap();
    let Child {
        ctx: d20b,
        cancel: _g4,
    } = A.background().with_deadline(t(20)).unwrap();
    let Child {
        ctx: d30,
        cancel: _g5,
    } = A.background().with_deadline(t(30)).unwrap();
    let Child {
        ctx: d40,
        cancel: c40,
    } = A.background().with_deadline(t(40)).unwrap();
    let Child {
        ctx: plain,
        cancel: _g6,
    } = A.background().with_cancel().unwrap();

    assert_eq!(A.expire(t(9)), Some(t(10)));
    assert!(
        ![&d10, &under10, &d20a, &d20b, &d30, &d40]
            .iter()
            .any(|c| c.is_done())
    );

    assert_eq!(A.expire(t(10)), Some(t(20)));
    assert_eq!(d10.err(), Some(Error::DeadlineExceeded));
    assert_eq!(under10.err(), Some(Error::DeadlineExceeded));
    assert!(![&d20a, &d20b, &d30, &d40].iter().any(|c| c.is_done()));

    // A cancelled deadline is no longer pending.
    c40.cancel();
    assert_eq!(A.expire(t(25)), Some(t(30)));
    assert_eq!(d20a.err(), Some(Error::DeadlineExceeded));
    assert!(d20a.cause().unwrap().is_static(&SLOW));
    assert_eq!(d20b.err(), Some(Error::DeadlineExceeded));
    assert!(d20b.cause().unwrap().is(Error::DeadlineExceeded));
    assert!(!d30.is_done());
    assert_eq!(d40.err(), Some(Error::Canceled));

    assert_eq!(A.expire(t(1_000)), None);
    assert_eq!(d30.err(), Some(Error::DeadlineExceeded));
    assert_eq!(d40.err(), Some(Error::Canceled), "first error wins");
    assert!(!plain.is_done());
}

#[test]
fn expire_fires_after_funcs_and_skips_deadlines_nobody_holds() {
    static A: Arena<8> = Arena::new();
    static RAN: AtomicUsize = AtomicUsize::new(0);
    let Child { ctx: d, cancel: _c } = A
        .background()
        .with_deadline(Instant::from_ticks(5))
        .unwrap();
    let _f = d
        .after_func(|| {
            RAN.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    {
        let Child {
            ctx: gone,
            cancel: gc,
        } = A
            .background()
            .with_deadline(Instant::from_ticks(3))
            .unwrap();
        drop((gone, gc)); // released: its deadline no longer counts
    }
    assert_eq!(
        A.expire(Instant::from_ticks(0)),
        Some(Instant::from_ticks(5))
    );
    assert_eq!(RAN.load(Ordering::SeqCst), 0);
    assert_eq!(A.expire(Instant::from_ticks(5)), None);
    assert_eq!(RAN.load(Ordering::SeqCst), 1, "ran inside expire");
    assert_eq!(A.expire(Instant::from_ticks(6)), None);
    assert_eq!(RAN.load(Ordering::SeqCst), 1);
}

#[test]
fn lazy_deadline_check_records_the_expiry() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<8> = Arena::new().with_clock(&CLOCK);
    static K: Key<u8> = Key::new("k");
    static SLOW: StaticCause = StaticCause::new("slow");
    static WHY: StaticCause = StaticCause::new("why");
    let Child { ctx: d, cancel } = A
        .background()
        .with_timeout_cause(Duration::from_millis(10), &SLOW)
        .unwrap();
    let v = d.with_value(&K, 1).unwrap();
    let Child {
        ctx: child,
        cancel: child_cancel,
    } = v.with_cancel().unwrap();
    assert_eq!(A.expire(A.now().unwrap()), Some(Instant::from_ticks(10)));
    CLOCK.advance(10);
    // Observed through the grandchild first: the expiry is recorded on the deadline's owner.
    assert_eq!(child.err(), Some(Error::DeadlineExceeded));
    assert!(child.cause().unwrap().is_static(&SLOW));
    assert_eq!(
        A.expire(A.now().unwrap()),
        None,
        "already recorded: nothing pending"
    );
    // A later cancel changes nothing, at any level.
    cancel.cancel_with(&WHY);
    child_cancel.cancel();
    for c in [&d, &v, &child] {
        assert_eq!(c.err(), Some(Error::DeadlineExceeded));
        assert!(c.cause().unwrap().is_static(&SLOW));
    }
    // The dump shows it recorded.
    assert!(
        dump(&A).contains("[deadline exceeded] cause=\"slow\""),
        "{}",
        dump(&A)
    );

    // is_done() alone records it too.
    let Child { ctx: e, cancel: ec } = A
        .background()
        .with_timeout(Duration::from_millis(1))
        .unwrap();
    CLOCK.advance(1);
    assert!(e.is_done());
    ec.cancel();
    assert_eq!(e.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn deadline_hook_reports_listeners_and_expire_watch_fires_them() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static WATCHES: Mutex<Vec<DeadlineWatch>> = Mutex::new(Vec::new());
    fn hook(w: DeadlineWatch) {
        WATCHES.lock().unwrap().push(w);
    }
    static A: Arena<8> = Arena::new().with_clock(&CLOCK).with_deadline_hook(hook);
    static RAN: AtomicUsize = AtomicUsize::new(0);

    let Child { ctx: d, cancel: _c } = A
        .background()
        .with_timeout(Duration::from_millis(20))
        .unwrap();
    assert!(WATCHES.lock().unwrap().is_empty(), "nobody listens yet");
    let _f = d
        .after_func(|| {
            RAN.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let w = {
        let ws = WATCHES.lock().unwrap();
        assert_eq!(ws.len(), 1);
        ws[0]
    };
    assert_eq!(w.at(), Instant::from_ticks(20));
    assert!(!A.expire_watch(w, Instant::from_ticks(19)));
    assert!(!d.is_done());
    assert!(A.expire_watch(w, Instant::from_ticks(20)));
    assert_eq!(d.err(), Some(Error::DeadlineExceeded));
    assert_eq!(RAN.load(Ordering::SeqCst), 1);
    assert!(A.expire_watch(w, Instant::from_ticks(21)), "already done");

    // A stale watch (its context released) is ignored.
    drop((d, _c, _f));
    assert_eq!(A.stats().live, 0);
    assert!(!A.expire_watch(w, Instant::from_ticks(100)));
}

// ------------------------------------------------------------------------------------------------
// dump()
// ------------------------------------------------------------------------------------------------

#[test]
fn dump_of_a_small_known_tree() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<16> = Arena::new().with_clock(&CLOCK);
    static USER: Key<u32> = Key::new("user");
    static SHUTDOWN: StaticCause = StaticCause::new("shutdown");
    static SLOW: StaticCause = StaticCause::new("too slow");

    assert_eq!(dump(&A), "", "an empty arena prints nothing");
    let bg = A.background();
    let Child {
        ctx: req,
        cancel: _req_c,
    } = bg.with_cancel().unwrap(); // #0
    let Child {
        ctx: dl,
        cancel: _dl_c,
    } = req
        .with_deadline_cause(Instant::from_ticks(100), &SLOW)
        .unwrap(); // #1
    let v = dl.with_value(&USER, 7).unwrap(); // #2
    let Child {
        ctx: job,
        cancel: _job_c,
    } = v.with_cancel().unwrap(); // #3
    let _pending = job.after_func(|| {}).unwrap(); // #4
    let Child {
        ctx: other,
        cancel: other_c,
    } = req.with_cancel_cause().unwrap(); // #5
    let _fired = other.after_func(|| {}).unwrap(); // #6
    other_c.cancel_with(&SHUTDOWN);
    let stopped = req.after_func(|| {}).unwrap(); // #7
    assert!(stopped.stop());
    let _w = req.without_cancel().unwrap(); // #8
    let Child {
        ctx: _t,
        cancel: _t_c,
    } = A.todo().with_timeout(Duration::from_millis(50)).unwrap(); // #9
    let Child {
        ctx: _te,
        cancel: _te_c,
    } = A
        .todo()
        .with_deadline_cause(Instant::from_ticks(0), &SLOW)
        .unwrap(); // #10, born expired

    assert_eq!(
        dump(&A),
        "\
context.Background
  WithCancel #0 [live]
    WithDeadline(@100 [100ms]) #1 [live]
      WithValue(user, u32) #2
        WithCancel #3 [live] deadline=@100 (inherited)
          AfterFunc #4 [pending]
    WithCancel #5 [canceled] cause=\"shutdown\"
      AfterFunc #6 [fired]
    AfterFunc #7 [stopped]
    WithoutCancel #8
context.TODO
  WithDeadline(@50 [50ms]) #9 [live]
  WithDeadline(@0 [0ns]) #10 [deadline exceeded] cause=\"too slow\"
"
    );

    // Time passes and the driver expires #1: its subtree shows the deadline and its cause.
    CLOCK.set(Instant::from_ticks(100));
    assert_eq!(A.expire(A.now().unwrap()), None);
    assert_eq!(
        dump(&A),
        "\
context.Background
  WithCancel #0 [live]
    WithDeadline(@100 [0ns]) #1 [deadline exceeded] cause=\"too slow\"
      WithValue(user, u32) #2
        WithCancel #3 [deadline exceeded] deadline=@100 (inherited) cause=\"too slow\"
          AfterFunc #4 [fired]
    WithCancel #5 [canceled] cause=\"shutdown\"
      AfterFunc #6 [fired]
    AfterFunc #7 [stopped]
    WithoutCancel #8
context.TODO
  WithDeadline(@50 [-50ms]) #9 [deadline exceeded]
  WithDeadline(@0 [-100ms]) #10 [deadline exceeded] cause=\"too slow\"
"
    );
    // `tree()` is the same text through Display.
    assert_eq!(A.tree().to_string(), dump(&A));
}

#[test]
fn dump_of_a_todo_rooted_tree_only() {
    static A: Arena<4> = Arena::new();
    static K: Key<i16> = Key::new("depth");
    let t = A.todo().with_value(&K, -1).unwrap();
    let Child { ctx: c, cancel: cc } = t.with_cancel().unwrap();
    cc.cancel();
    assert_eq!(
        dump(&A),
        "context.TODO\n  WithValue(depth, i16) #0\n    WithCancel #1 [canceled]\n"
    );
    drop((t, c, cc));
    assert_eq!(dump(&A), "");
}

// ------------------------------------------------------------------------------------------------
// Deep chains: iterative cancel and release on a 64 KiB stack; elided Display.
// ------------------------------------------------------------------------------------------------

const DEEP: usize = 100_000;

#[test]
#[cfg(feature = "alloc")] // a heap arena sized at run time
fn deep_chain_cancel_and_release_on_a_small_stack() {
    let arena = HeapArena::with_capacity(DEEP + 1);
    let a: &RawArena = &arena;
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn_scoped(s, || {
                let mut chain: Vec<(Context<'_>, Canceler<'_>)> = Vec::with_capacity(DEEP);
                let mut parent = a.background();
                for _ in 0..DEEP {
                    let Child { ctx: c, cancel } = parent.with_cancel().unwrap();
                    parent = c.clone();
                    chain.push((c, cancel));
                }
                drop(parent);
                assert_eq!(a.stats().live, DEEP);
                let deepest = chain[DEEP - 1].0.clone();
                assert!(!deepest.is_done());
                chain[0].1.cancel();
                assert_eq!(deepest.err(), Some(Error::Canceled));
                assert!(chain.iter().all(|(c, _)| c.is_done()));
                // Root first, so that the last drop releases the whole chain in one cascade.
                for pair in chain.drain(..) {
                    drop(pair);
                }
                assert_eq!(a.stats().live, DEEP, "the deepest handle holds the chain");
                drop(deepest);
                assert_eq!(a.stats().live, 0);
            })
            .unwrap()
            .join()
            .unwrap();
    });
    assert_eq!(arena.stats().live, 0);
}

#[test]
#[cfg(feature = "alloc")] // a heap arena sized at run time
fn deep_value_chain_display_and_release_on_a_small_stack() {
    static K: Key<u32> = Key::new("k");
    let arena = HeapArena::with_capacity(DEEP);
    let a: &RawArena = &arena;
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn_scoped(s, || {
                let mut ctx = a.background();
                for i in 0..DEEP as u32 {
                    ctx = ctx.with_value(&K, i).unwrap(); // drops the previous handle
                }
                assert_eq!(a.stats().live, DEEP);
                assert_eq!(ctx.value(&K), Some(DEEP as u32 - 1));
                let mut s = String::new();
                use core::fmt::Write;
                write!(s, "{ctx}").unwrap();
                let link = ".WithValue(k, u32)";
                let expected = format!(
                    "context.Background.…({} more)…{}",
                    DEEP - 32,
                    link.repeat(32)
                );
                assert_eq!(s, expected);
                drop(ctx); // one release cascades up 100 000 nodes
                assert_eq!(a.stats().live, 0);
            })
            .unwrap()
            .join()
            .unwrap();
    });
}

#[test]
fn display_of_chains_around_the_elision_threshold() {
    static A: Arena<80> = Arena::new();
    static K: Key<u8> = Key::new("k");
    let build = |depth: usize| {
        let mut ctx = A.todo();
        let mut cancels = Vec::new();
        for i in 0..depth - 1 {
            if i % 2 == 0 {
                let Child { ctx: c, cancel: cc } = ctx.with_cancel().unwrap();
                ctx = c;
                cancels.push(cc);
            } else {
                ctx = ctx.without_cancel().unwrap();
            }
        }
        ctx = ctx.with_value(&K, 0).unwrap();
        (ctx, cancels)
    };
    let links = |n: usize| -> String {
        (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    ".WithCancel"
                } else {
                    ".WithoutCancel"
                }
            })
            .collect()
    };

    // 64 links: printed in full.
    let (c64, k64) = build(64);
    assert_eq!(
        c64.to_string(),
        format!("context.TODO{}.WithValue(k, u8)", links(63))
    );
    drop((c64, k64));

    // 65 links: the root, a count, and the last 32 links.
    let (c65, k65) = build(65);
    let tail_of_64: String = {
        // The last 31 of the 64 alternating links, then the value link.
        let all: Vec<&str> = (0..64)
            .map(|i| {
                if i % 2 == 0 {
                    ".WithCancel"
                } else {
                    ".WithoutCancel"
                }
            })
            .collect();
        all[64 - 31..].concat()
    };
    assert_eq!(
        c65.to_string(),
        format!("context.TODO.…(33 more)…{tail_of_64}.WithValue(k, u8)")
    );
    drop((c65, k65));

    // 70 links.
    let (c70, k70) = build(70);
    let s = c70.to_string();
    assert!(s.starts_with("context.TODO.…(38 more)…"), "{s}");
    assert!(s.ends_with(".WithValue(k, u8)"), "{s}");
    assert_eq!(s.matches(".With").count(), 32, "{s}");
    drop((c70, k70));
    assert_eq!(A.stats().live, 0);
}
