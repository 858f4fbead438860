//! The `std` layer under real time and real threads: the global arena, `StdClock`, the timer
//! thread, blocking waits, heap causes raced across threads, `after_func` under contention and
//! `after_func_spawn` — the parts of Go's `context` tests (x_test.go, example_test.go) that need
//! a real clock, goroutines or heap values.
//!
//! Time is only ever asserted one way: "woke no earlier than the deadline", plus generous upper
//! bounds (seconds) that detect a lost wake-up, never performance.
//!
//! Every test here uses the global arena. `many_concurrent_timeouts_return_to_baseline` counts the
//! arena's live nodes, so it takes [`exclusive`] while every other test takes [`shared`]: no
//! other test of this binary creates global contexts while it measures.

#![cfg(feature = "std")]

use ctxtree::Child;
use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Condvar, Mutex, PoisonError, RwLock};
use std::sync::{RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant as StdInstant};

use ctxtree::{Cause, Clock, Context, Error, HeapKey, StdClock, background, todo};

/// Generous bound for "this must have happened by now" (a lost wake-up, not a slow machine).
const LIVENESS: Duration = Duration::from_secs(5);
/// Go's `shortDuration`.
const SHORT: Duration = Duration::from_millis(50);
/// Go's `veryLongDuration`.
const VERY_LONG: Duration = Duration::from_secs(1000);

static GLOBAL_ARENA_LOCK: RwLock<()> = RwLock::new(());

/// Taken by every test that only uses the global arena.
fn shared() -> RwLockReadGuard<'static, ()> {
    GLOBAL_ARENA_LOCK
        .read()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Taken by the test that measures the global arena's live count.
fn exclusive() -> RwLockWriteGuard<'static, ()> {
    GLOBAL_ARENA_LOCK
        .write()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A heap error with an identity, for cause tests.
#[derive(Debug)]
struct Because(&'static str);

impl fmt::Display for Because {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl StdError for Because {}

fn shared_error(msg: &'static str) -> Arc<dyn StdError + Send + Sync> {
    Arc::new(Because(msg))
}

/// The heap cause of a done context, as an owned `Arc` (panics on a static or missing cause).
fn heap_cause(ctx: &Context<'_>) -> Arc<dyn StdError + Send + Sync> {
    match ctx.cause() {
        Some(Cause::Shared(s)) => s.to_arc(),
        other => panic!("expected a heap cause, got {other:?}"),
    }
}

fn same_error(a: &Arc<dyn StdError + Send + Sync>, b: &Arc<dyn StdError + Send + Sync>) -> bool {
    Arc::ptr_eq(a, b)
}

/// The std instant of a context's deadline.
fn std_deadline(ctx: &Context<'_>) -> StdInstant {
    StdClock::to_std(ctx.deadline().expect("context has a deadline"))
}

// ---------------------------------------------------------------------------------------------
// Background, TODO, StdClock
// ---------------------------------------------------------------------------------------------

#[test]
fn background_and_todo_live_on_the_global_arena_and_never_finish() {
    let _g = shared();
    let (bg, td) = (background(), todo());
    assert!(std::ptr::eq(bg.arena(), ctxtree::global_arena()));
    assert!(std::ptr::eq(td.arena(), ctxtree::global_arena()));
    assert_eq!(bg.to_string(), "context.Background");
    assert_eq!(td.to_string(), "context.TODO");
    for ctx in [&bg, &td] {
        assert!(!ctx.can_be_done());
        assert_eq!(ctx.err(), None);
        assert!(ctx.cause().is_none());
        assert_eq!(ctx.deadline(), None);
        let start = StdInstant::now();
        assert_eq!(ctx.wait_timeout(Duration::from_millis(20)), None);
        assert!(start.elapsed() >= Duration::from_millis(20));
    }
    assert!(ctxtree::global_arena().clock().is_some());
}

#[test]
fn std_clock_conversions_round_trip() {
    let _g = shared();
    assert_eq!(StdClock.ticks_per_second(), 1_000_000_000);
    assert_eq!(StdClock.ticks_for(Duration::from_millis(3)), 3_000_000);
    assert_eq!(StdClock.ticks_for(Duration::from_nanos(1)), 1);
    assert_eq!(
        StdClock.duration_of(2_500_000_000),
        Duration::from_millis(2500)
    );

    // std -> ticks -> std is exact (nanosecond ticks) for instants after the epoch.
    let now = StdInstant::now();
    for later in [
        now,
        now + Duration::from_nanos(1),
        now + Duration::from_secs(3600),
    ] {
        assert_eq!(StdClock::to_std(StdClock::instant(later)), later);
    }
    // ticks -> std -> ticks is exact.
    for t in [0u64, 1, 999_999_999, 123_456_789_012] {
        let i = ctxtree::Instant::from_ticks(t);
        assert_eq!(StdClock::instant(StdClock::to_std(i)), i);
    }
    // Differences are preserved.
    let a = StdClock::instant(now);
    let b = StdClock::instant(now + Duration::from_millis(7));
    assert_eq!(b.ticks_since(a), 7_000_000);
    // An instant before the epoch (a day before the clock's first use) maps to tick 0.
    let _ = StdClock.now();
    if let Some(long_ago) = now.checked_sub(Duration::from_secs(3 * 86_400)) {
        assert_eq!(StdClock::instant(long_ago).ticks(), 0);
    }
    // now() agrees with std's clock and with the global arena's clock, and is monotonic.
    let before = StdInstant::now();
    let t = StdClock.now();
    let after = StdInstant::now();
    assert!(StdClock::instant(before) <= t && t <= StdClock::instant(after));
    let g = ctxtree::global_arena()
        .now()
        .expect("global arena has a clock");
    assert!(g >= t);
    let mut last = StdClock.now();
    for _ in 0..10_000 {
        let next = StdClock.now();
        assert!(next >= last);
        last = next;
    }
}

#[test]
fn std_clock_is_monotonic_across_threads() {
    let _g = shared();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let seen = seen.clone();
            thread::spawn(move || {
                let mut prev = StdClock.now();
                for _ in 0..5_000 {
                    let t = StdClock.now();
                    assert!(t >= prev, "StdClock went backwards on one thread");
                    prev = t;
                }
                seen.lock().unwrap().push(prev);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let after = StdClock.now();
    assert!(seen.lock().unwrap().iter().all(|&t| t <= after));
}

#[test]
fn deadlines_convert_between_std_and_arena_instants() {
    let _g = shared();
    let before = StdInstant::now();
    let Child { ctx, cancel: _c } = background().with_timeout(Duration::from_secs(30)).unwrap();
    let after = StdInstant::now();
    let dl = std_deadline(&ctx);
    assert!(dl >= before + Duration::from_secs(30));
    assert!(dl <= after + Duration::from_secs(30));

    let at = StdInstant::now() + Duration::from_secs(40);
    let Child {
        ctx: ctx2,
        cancel: _c2,
    } = background().with_deadline(StdClock::instant(at)).unwrap();
    assert_eq!(ctx2.deadline(), Some(StdClock::instant(at)));
    assert_eq!(std_deadline(&ctx2), at);
}

// ---------------------------------------------------------------------------------------------
// Deadlines under real time (Go: TestDeadline, TestTimeout, TestCanceledTimeout)
// ---------------------------------------------------------------------------------------------

#[test]
fn timeout_wait_returns_deadline_exceeded_no_earlier_than_the_deadline() {
    let _g = shared();
    let Child {
        ctx,
        cancel: _cancel,
    } = background().with_timeout(SHORT).unwrap();
    assert!(
        ctx.to_string()
            .starts_with("context.Background.WithDeadline(")
    );
    let dl = std_deadline(&ctx);
    assert_eq!(ctx.err(), None);
    assert_eq!(ctx.wait(), Error::DeadlineExceeded);
    let woke = StdInstant::now();
    assert!(woke >= dl, "woke {:?} before the deadline", dl - woke);
    assert!(woke < dl + LIVENESS);
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert!(ctx.cause().unwrap().is(Error::DeadlineExceeded));
}

#[test]
fn deadline_in_the_past_or_now_is_born_exceeded() {
    let _g = shared();
    let past = StdInstant::now() - Duration::from_millis(10);
    let Child {
        ctx: c1,
        cancel: _k1,
    } = background().with_deadline(StdClock::instant(past)).unwrap();
    assert_eq!(c1.err(), Some(Error::DeadlineExceeded));
    let Child {
        ctx: c2,
        cancel: _k2,
    } = background()
        .with_deadline(StdClock::instant(StdInstant::now()))
        .unwrap();
    assert_eq!(c2.err(), Some(Error::DeadlineExceeded));
    let Child {
        ctx: c3,
        cancel: _k3,
    } = background().with_timeout(Duration::ZERO).unwrap();
    assert_eq!(c3.err(), Some(Error::DeadlineExceeded));
    for c in [&c1, &c2, &c3] {
        assert!(
            c.to_string()
                .starts_with("context.Background.WithDeadline(")
        );
        assert_eq!(
            c.wait_timeout(Duration::ZERO),
            Some(Error::DeadlineExceeded)
        );
    }
}

#[test]
fn timeout_reaches_children_through_values_and_longer_timeouts() {
    // Go: "WithTimeout+otherContext+WithTimeout".
    static K: HeapKey<String> = HeapKey::new("k");
    let _g = shared();
    let Child {
        ctx: short,
        cancel: _c1,
    } = background().with_timeout(SHORT).unwrap();
    let val = short.with_value(&K, "v".to_string()).unwrap();
    let Child {
        ctx: long,
        cancel: _c2,
    } = val.with_timeout(VERY_LONG).unwrap();
    // The longer timeout never extends the parent's deadline: it is a plain cancel child.
    assert_eq!(long.deadline(), short.deadline());
    assert!(long.to_string().ends_with(".WithCancel"));
    assert_eq!(long.wait(), Error::DeadlineExceeded);
    assert!(StdInstant::now() >= std_deadline(&short));
    assert_eq!(long.value(&K).as_deref().map(String::as_str), Some("v"));
    assert!(long.cause().unwrap().is(Error::DeadlineExceeded));
}

#[test]
fn cancelled_timeout_is_canceled_synchronously() {
    // Go: TestCanceledTimeout.
    static K: HeapKey<u8> = HeapKey::new("k");
    let _g = shared();
    let Child {
        ctx: c,
        cancel: _c0,
    } = background().with_timeout(Duration::from_secs(1)).unwrap();
    let o = c.with_value(&K, 1).unwrap();
    let Child { ctx: child, cancel } = o.with_timeout(VERY_LONG).unwrap();
    cancel.cancel();
    assert!(child.is_done());
    assert_eq!(child.err(), Some(Error::Canceled));
    assert_eq!(c.err(), None, "cancelling a child never touches its parent");
}

#[test]
fn timeout_cause_with_a_heap_error_is_reported_on_expiry() {
    let _g = shared();
    let too_slow = shared_error("tooSlow");
    let Child { ctx, cancel } = background()
        .with_timeout_cause(Duration::from_millis(20), too_slow.clone())
        .unwrap();
    let Child {
        ctx: child,
        cancel: _cc,
    } = ctx.with_cancel().unwrap();
    assert_eq!(child.wait(), Error::DeadlineExceeded);
    assert!(same_error(&heap_cause(&ctx), &too_slow));
    assert!(same_error(&heap_cause(&child), &too_slow));
    cancel.cancel(); // too late: the first outcome stays
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert!(same_error(&heap_cause(&ctx), &too_slow));

    // Cancelled before the deadline: Canceled, and the deadline's cause is not reported.
    let Child { ctx, cancel } = background()
        .with_timeout_cause(VERY_LONG, shared_error("unused"))
        .unwrap();
    cancel.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(ctx.cause().unwrap().is(Error::Canceled));
}

// ---------------------------------------------------------------------------------------------
// The timer thread
// ---------------------------------------------------------------------------------------------

#[test]
fn after_func_on_a_timeout_runs_at_the_deadline_without_polling() {
    // Go: TestAfterFuncCalledAfterTimeout. Nobody observes `ctx` after registering: only the
    // timer thread can fire the deadline.
    let _g = shared();
    // Long enough that registration ends, in practice, before the deadline (else `after_func` itself
    // would find it passed and run the callback inline, on this thread).
    let Child {
        ctx,
        cancel: _cancel,
    } = background()
        .with_timeout(Duration::from_millis(200))
        .unwrap();
    let dl = std_deadline(&ctx);
    let (tx, rx) = mpsc::channel();
    let _reg = ctx
        .after_func_boxed(move || {
            let _ = tx.send((
                StdInstant::now(),
                thread::current().name().map(String::from),
            ));
        })
        .unwrap();
    let (ran_at, thread_name) = rx
        .recv_timeout(LIVENESS)
        .expect("after_func not called after the deadline");
    assert!(ran_at >= dl, "ran {:?} before the deadline", dl - ran_at);
    assert_eq!(thread_name.as_deref(), Some("ctxtree-timer"));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn timer_fires_many_deadlines_in_order_of_expiry() {
    // Deadlines 30 ms apart from a common base far enough ahead that every registration is
    // done before the first is due; registered in reverse order of expiry.
    let _g = shared();
    let (tx, rx) = mpsc::channel();
    let base = StdInstant::now() + Duration::from_millis(200);
    let mut keep = Vec::new();
    for i in (0..8u32).rev() {
        let at = base + Duration::from_millis(30) * i;
        let Child { ctx, cancel } = background().with_deadline(StdClock::instant(at)).unwrap();
        let tx = tx.clone();
        let reg = ctx
            .after_func_boxed(move || {
                let _ = tx.send((i, at, StdInstant::now()));
            })
            .unwrap();
        keep.push((ctx, cancel, reg));
    }
    drop(tx);
    let mut order = Vec::new();
    for _ in 0..8 {
        let (i, at, fired) = rx.recv_timeout(LIVENESS).expect("a deadline never fired");
        assert!(fired >= at, "fired {:?} early", at - fired);
        order.push(i);
    }
    assert_eq!(order, (0..8).collect::<Vec<_>>());
}

#[test]
fn timer_fires_an_inherited_deadline_for_a_child_after_func() {
    // The after_func sits under a plain cancel child that inherits its parent's deadline.
    let _g = shared();
    let cause = shared_error("parent deadline");
    let Child {
        ctx: parent,
        cancel: _pc,
    } = background()
        .with_timeout_cause(Duration::from_millis(30), cause.clone())
        .unwrap();
    let Child {
        ctx: child,
        cancel: _cc,
    } = parent.with_timeout(VERY_LONG).unwrap();
    let (tx, rx) = mpsc::channel();
    let probe = child.clone();
    let _reg = child
        .after_func_boxed(move || {
            let _ = tx.send((probe.err(), heap_cause(&probe)));
        })
        .unwrap();
    drop(child);
    let (err, got) = rx
        .recv_timeout(LIVENESS)
        .expect("inherited deadline never fired");
    assert_eq!(err, Some(Error::DeadlineExceeded));
    assert!(same_error(&got, &cause));
    assert_eq!(parent.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn stale_timer_watches_never_cancel_a_recycled_context() {
    // Watches outlive their contexts in the timer's queue. Contexts created after the watched
    // ones are released reuse their slots; the stale watches must not cancel them.
    let _g = shared();
    for _ in 0..50 {
        let Child { ctx, cancel } = background().with_timeout(Duration::from_millis(5)).unwrap();
        let _reg = ctx.after_func(|| {}).unwrap();
        drop(cancel);
        drop(ctx);
    }
    let fresh: Vec<_> = (0..50)
        .map(|_| background().with_timeout(VERY_LONG).unwrap())
        .collect();
    let plain: Vec<_> = (0..50)
        .map(|_| background().with_cancel().unwrap())
        .collect();
    thread::sleep(Duration::from_millis(100));
    for ctx in fresh.iter().chain(plain.iter()) {
        assert_eq!(ctx.err(), None, "a stale watch cancelled {}", ctx.ctx);
    }
}

// ---------------------------------------------------------------------------------------------
// Blocking waits
// ---------------------------------------------------------------------------------------------

#[test]
fn wait_timeout_returns_none_on_time_for_a_live_context() {
    let _g = shared();
    let Child {
        ctx,
        cancel: _cancel,
    } = background().with_cancel().unwrap();
    let start = StdInstant::now();
    assert_eq!(ctx.wait_timeout(Duration::from_millis(30)), None);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(30), "returned after {took:?}");
    assert!(took < LIVENESS);
    assert_eq!(ctx.err(), None);
    // A zero timeout is a poll.
    assert_eq!(ctx.wait_timeout(Duration::ZERO), None);
    // A context whose own deadline is later than the wait also times out as None.
    let Child {
        ctx: later,
        cancel: _c,
    } = background().with_timeout(VERY_LONG).unwrap();
    let start = StdInstant::now();
    assert_eq!(later.wait_timeout(Duration::from_millis(20)), None);
    assert!(start.elapsed() >= Duration::from_millis(20));
}

#[test]
fn wait_timeout_returns_the_error_when_cancelled_from_another_thread() {
    let _g = shared();
    let Child { ctx, cancel } = background().with_cancel_cause().unwrap();
    let cause = shared_error("stop now");
    let theirs = cause.clone();
    let canceller = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        cancel.cancel_with(theirs);
    });
    let start = StdInstant::now();
    let got = ctx.wait_timeout(Duration::from_secs(30));
    let took = start.elapsed();
    assert_eq!(got, Some(Error::Canceled));
    assert!(took < Duration::from_secs(10), "woken only after {took:?}");
    assert!(same_error(&heap_cause(&ctx), &cause));
    canceller.join().unwrap();
}

#[test]
fn wait_timeout_on_an_earlier_deadline_returns_deadline_exceeded() {
    let _g = shared();
    let Child {
        ctx,
        cancel: _cancel,
    } = background()
        .with_timeout(Duration::from_millis(40))
        .unwrap();
    let dl = std_deadline(&ctx);
    assert_eq!(
        ctx.wait_timeout(Duration::from_secs(30)),
        Some(Error::DeadlineExceeded)
    );
    assert!(StdInstant::now() >= dl);
}

#[test]
fn wait_wakes_itself_at_the_deadline_on_an_arena_without_a_timer() {
    // A heap arena with a real clock but no deadline hook: nothing fires deadlines, and the
    // blocking wait must time its own sleep by the context's deadline.
    static CLOCK: StdClock = StdClock;
    let _g = shared();
    let arena = ctxtree::HeapArena::growable().with_clock(&CLOCK);
    let Child { ctx, cancel: _c } = arena
        .background()
        .with_timeout(Duration::from_millis(40))
        .unwrap();
    let Child {
        ctx: child,
        cancel: _cc,
    } = ctx.with_cancel().unwrap();
    let dl = std_deadline(&ctx);
    assert_eq!(child.wait(), Error::DeadlineExceeded);
    assert!(StdInstant::now() >= dl);
    let Child {
        ctx: ctx2,
        cancel: _c2,
    } = arena
        .background()
        .with_timeout(Duration::from_millis(40))
        .unwrap();
    assert_eq!(
        ctx2.wait_timeout(Duration::from_secs(30)),
        Some(Error::DeadlineExceeded)
    );
    assert!(StdInstant::now() >= std_deadline(&ctx2));
}

#[test]
fn wait_deadline_respects_its_limit_and_the_context() {
    let _g = shared();
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    let at = StdInstant::now() + Duration::from_millis(30);
    assert_eq!(ctx.wait_deadline(at), None);
    assert!(StdInstant::now() >= at);
    // A limit in the past is a poll.
    let start = StdInstant::now();
    assert_eq!(ctx.wait_deadline(start - Duration::from_millis(5)), None);
    assert!(start.elapsed() < LIVENESS);
    // A done context answers at once, whatever the limit.
    cancel.cancel();
    assert_eq!(
        ctx.wait_deadline(StdInstant::now() + VERY_LONG),
        Some(Error::Canceled)
    );
    assert_eq!(ctx.wait_deadline(start), Some(Error::Canceled));
    // A context that expires before the limit reports its deadline.
    let Child { ctx: t, cancel: _c } = background()
        .with_timeout(Duration::from_millis(20))
        .unwrap();
    let dl = std_deadline(&t);
    assert_eq!(
        t.wait_deadline(StdInstant::now() + Duration::from_secs(30)),
        Some(Error::DeadlineExceeded)
    );
    assert!(StdInstant::now() >= dl);
}

#[test]
fn wait_on_a_value_child_is_woken_by_the_canceller_ancestor() {
    static K: HeapKey<Vec<u8>> = HeapKey::new("k");
    let _g = shared();
    let Child { ctx: root, cancel } = background().with_cancel().unwrap();
    let leaf = root.with_value(&K, vec![1, 2, 3]).unwrap();
    let waiter = thread::spawn(move || (leaf.wait(), leaf.value(&K)));
    thread::sleep(Duration::from_millis(20));
    cancel.cancel();
    let (err, v) = waiter.join().unwrap();
    assert_eq!(err, Error::Canceled);
    assert_eq!(v.as_deref(), Some(&vec![1, 2, 3]));
}

#[test]
fn many_threads_waiting_on_one_context_all_wake() {
    let _g = shared();
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    let ready = Arc::new(Barrier::new(17));
    let waiters: Vec<_> = (0..16)
        .map(|i| {
            let ctx = ctx.clone();
            let ready = ready.clone();
            thread::spawn(move || {
                ready.wait();
                if i % 2 == 0 {
                    Some(ctx.wait())
                } else {
                    ctx.wait_timeout(Duration::from_secs(30))
                }
            })
        })
        .collect();
    ready.wait();
    thread::sleep(Duration::from_millis(20));
    cancel.cancel();
    for w in waiters {
        assert_eq!(w.join().unwrap(), Some(Error::Canceled));
    }
}

#[test]
fn simultaneous_cancels_of_a_tree_from_many_threads() {
    // Go: TestSimultaneousCancels — a tree of ~100 contexts, every canceller on its own thread,
    // waiters on every context.
    let _g = shared();
    let Child {
        ctx: root,
        cancel: root_cancel,
    } = background().with_cancel().unwrap();
    let mut all = vec![(root.clone(), root_cancel)];
    let mut queue = vec![root];
    while all.len() < 100 {
        let parent = queue.remove(0);
        for _ in 0..4 {
            let Child { ctx: c, cancel: k } = parent.with_cancel().unwrap();
            queue.push(c.clone());
            all.push((c, k));
        }
    }
    drop(queue);
    let (ctxs, cancels): (Vec<_>, Vec<_>) = all.into_iter().unzip();
    let waiters: Vec<_> = ctxs
        .iter()
        .cloned()
        .map(|c| thread::spawn(move || c.wait_timeout(Duration::from_secs(30))))
        .collect();
    let start = Arc::new(Barrier::new(cancels.len()));
    let cancellers: Vec<_> = cancels
        .into_iter()
        .rev()
        .map(|k| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                k.cancel();
            })
        })
        .collect();
    for c in cancellers {
        c.join().unwrap();
    }
    for w in waiters {
        assert_eq!(w.join().unwrap(), Some(Error::Canceled));
    }
    for c in &ctxs {
        assert_eq!(c.err(), Some(Error::Canceled));
    }
}

#[test]
fn interlocked_cancels_do_not_deadlock() {
    // Go: TestInterlockedCancels — a thread woken by the parent's cancel cancels the child.
    let _g = shared();
    let Child {
        ctx: parent,
        cancel: cancel_parent,
    } = background().with_cancel().unwrap();
    let Child {
        ctx: child,
        cancel: cancel_child,
    } = parent.with_cancel().unwrap();
    let p = parent.clone();
    let t = thread::spawn(move || {
        p.wait();
        cancel_child.cancel();
    });
    cancel_parent.cancel();
    assert_eq!(child.wait_timeout(LIVENESS), Some(Error::Canceled));
    t.join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Races (Go: TestContextErrDoneRace, TestCauseRace, TestWithCancelSimultaneouslyCanceledParent)
// ---------------------------------------------------------------------------------------------

#[test]
fn err_some_implies_done_and_cause_under_races() {
    // Go: TestContextErrDoneRace, from several observer threads at once.
    let _g = shared();
    for _ in 0..200 {
        let Child { ctx, cancel } = background().with_cancel_cause().unwrap();
        let cause = shared_error("raced");
        let observers: Vec<_> = (0..3)
            .map(|_| {
                let ctx = ctx.clone();
                thread::spawn(move || {
                    let deadline = StdInstant::now() + LIVENESS;
                    loop {
                        if let Some(e) = ctx.err() {
                            assert!(ctx.is_done(), "err() is Some but is_done() is false");
                            assert!(ctx.cause().is_some(), "err() is Some but cause() is None");
                            assert_eq!(ctx.wait_timeout(Duration::ZERO), Some(e));
                            return e;
                        }
                        assert!(StdInstant::now() < deadline, "cancel never observed");
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let theirs = cause.clone();
        let c = thread::spawn(move || cancel.cancel_with(theirs));
        for o in observers {
            assert_eq!(o.join().unwrap(), Error::Canceled);
        }
        c.join().unwrap();
        assert!(same_error(&heap_cause(&ctx), &cause));
    }
}

#[test]
fn cause_is_never_observed_without_its_heap_cause() {
    // Go: TestCauseRace — poll cause() (not done) while another thread cancels with a cause.
    let _g = shared();
    for _ in 0..200 {
        let Child { ctx, cancel } = background().with_cancel_cause().unwrap();
        let Child {
            ctx: child,
            cancel: _cc,
        } = ctx.with_cancel().unwrap();
        let cause = shared_error("TestCauseRace");
        let theirs = cause.clone();
        let t = thread::spawn(move || cancel.cancel_with(theirs));
        let limit = StdInstant::now() + LIVENESS;
        for c in [&ctx, &child] {
            loop {
                match c.cause() {
                    Some(Cause::Shared(s)) => {
                        assert!(same_error(&s.to_arc(), &cause));
                        break;
                    }
                    Some(other) => panic!("cause() = {other:?}, want the heap cause"),
                    None => {
                        assert!(StdInstant::now() < limit, "cancel never observed");
                        thread::yield_now();
                    }
                }
            }
        }
        t.join().unwrap();
    }
}

#[test]
fn child_created_while_the_parent_is_cancelled_gets_the_parents_heap_cause() {
    // Go: TestWithCancelSimultaneouslyCanceledParent.
    let _g = shared();
    for _ in 0..100 {
        let Child {
            ctx: parent,
            cancel: pcancel,
        } = background().with_cancel_cause().unwrap();
        let cause = shared_error("Because!");
        let theirs = cause.clone();
        let t = thread::spawn(move || pcancel.cancel_with(theirs));
        let Child {
            ctx: c,
            cancel: _cc,
        } = parent.with_cancel().unwrap();
        assert_eq!(c.wait_timeout(LIVENESS), Some(Error::Canceled));
        assert!(same_error(&heap_cause(&c), &cause));
        t.join().unwrap();
    }
}

#[test]
fn first_heap_cause_wins_among_racing_cancellers() {
    let _g = shared();
    for _ in 0..100 {
        let Child { ctx, cancel } = background().with_cancel_cause().unwrap();
        let Child {
            ctx: child,
            cancel: _cc,
        } = ctx.with_cancel().unwrap();
        let cancel = Arc::new(cancel);
        let go = Arc::new(Barrier::new(4));
        let causes: Vec<_> = (0..4).map(|_| shared_error("racer")).collect();
        let ts: Vec<_> = causes
            .iter()
            .cloned()
            .map(|c| {
                let (k, go) = (cancel.clone(), go.clone());
                thread::spawn(move || {
                    go.wait();
                    k.cancel_with(c);
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        let winner = heap_cause(&ctx);
        assert_eq!(
            causes.iter().filter(|c| same_error(c, &winner)).count(),
            1,
            "the cause must be one of the racers'"
        );
        assert!(same_error(&heap_cause(&child), &winner));
        // The losers' causes were dropped: only `causes` holds them now.
        for c in &causes {
            if !same_error(c, &winner) {
                assert_eq!(Arc::strong_count(c), 1);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AfterFunc across threads
// ---------------------------------------------------------------------------------------------

#[test]
fn after_func_called_after_cancel_from_another_thread() {
    // Go: TestAfterFuncCalledAfterCancel.
    let _g = shared();
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    let (tx, rx) = mpsc::channel();
    let reg = ctx
        .after_func_boxed(move || {
            let _ = tx.send(());
        })
        .unwrap();
    assert_eq!(
        rx.recv_timeout(SHORT),
        Err(mpsc::RecvTimeoutError::Timeout),
        "AfterFunc called before the context is done"
    );
    thread::spawn(move || cancel.cancel()).join().unwrap();
    rx.recv_timeout(LIVENESS)
        .expect("AfterFunc not called after the context is cancelled");
    assert!(!reg.stop(), "stop() = true after the callback ran");
}

#[test]
fn after_func_stop_contract_holds_under_contention() {
    // Go: TestAfterFuncCalledAfterCancel / NotCalledAfterStop, raced: for every registration,
    // exactly one of "the callback ran" and "stop() returned true" happens, and a second stop()
    // is false.
    let _g = shared();
    const REGS: usize = 8;
    let mut ran_total = 0;
    let mut stopped_total = 0;
    for round in 0..200 {
        let Child { ctx, cancel } = background().with_cancel().unwrap();
        let counters: Vec<Arc<AtomicUsize>> =
            (0..REGS).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let regs: Vec<_> = counters
            .iter()
            .map(|c| {
                let c = c.clone();
                ctx.after_func(move || {
                    c.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap()
            })
            .collect();
        let go = Arc::new(Barrier::new(REGS + 1));
        let stoppers: Vec<_> = regs
            .into_iter()
            .map(|r| {
                let go = go.clone();
                thread::spawn(move || {
                    go.wait();
                    if round % 2 == 0 {
                        thread::yield_now();
                    }
                    let first = r.stop();
                    let second = r.stop();
                    (first, second)
                })
            })
            .collect();
        let canceller = {
            let go = go.clone();
            thread::spawn(move || {
                go.wait();
                cancel.cancel();
            })
        };
        canceller.join().unwrap();
        for (i, s) in stoppers.into_iter().enumerate() {
            let (first, second) = s.join().unwrap();
            let ran = counters[i].load(Ordering::SeqCst);
            assert!(!second, "a second stop() returned true");
            assert!(ran <= 1, "callback ran {ran} times");
            assert_ne!(
                first,
                ran == 1,
                "round {round}, reg {i}: stop()={first} but ran={ran}"
            );
            ran_total += ran;
            stopped_total += usize::from(first);
        }
        assert_eq!(ctx.err(), Some(Error::Canceled));
    }
    assert_eq!(ran_total + stopped_total, 200 * REGS);
}

#[test]
fn after_func_runs_once_when_cancel_races_expiry_and_parent_cancel() {
    let _g = shared();
    for _ in 0..100 {
        let Child {
            ctx: parent,
            cancel: pcancel,
        } = background().with_cancel().unwrap();
        let Child { ctx, cancel } = parent.with_timeout(Duration::from_millis(1)).unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let reg = ctx
            .after_func(move || {
                r.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        let go = Arc::new(Barrier::new(3));
        let g1 = go.clone();
        let g2 = go.clone();
        let t1 = thread::spawn(move || {
            g1.wait();
            pcancel.cancel();
        });
        let t2 = thread::spawn(move || {
            g2.wait();
            cancel.cancel();
        });
        go.wait();
        let _ = ctx.is_done(); // may expire the deadline itself
        t1.join().unwrap();
        t2.join().unwrap();
        let limit = StdInstant::now() + LIVENESS;
        while runs.load(Ordering::SeqCst) == 0 {
            assert!(StdInstant::now() < limit);
            thread::yield_now();
        }
        thread::sleep(Duration::from_millis(2));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(!reg.stop());
    }
}

#[test]
fn after_func_spawn_runs_on_another_thread_and_cancel_does_not_wait_for_it() {
    // Go: TestAfterFuncCalledAsynchronously — the callback blocks until the test reads from
    // the channel, which it does only after cancel() has returned.
    let _g = shared();
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    let (tx, rx) = mpsc::sync_channel::<(thread::ThreadId, Option<String>)>(0);
    let reg = ctx
        .after_func_spawn(move || {
            let t = thread::current();
            tx.send((t.id(), t.name().map(String::from))).unwrap();
        })
        .unwrap();
    cancel.cancel(); // returns although the callback blocks in `send`
    let (id, name) = rx
        .recv_timeout(LIVENESS)
        .expect("AfterFunc not called after the context is cancelled");
    assert_ne!(id, thread::current().id());
    assert_eq!(name.as_deref(), Some("ctxtree-after-func"));
    assert!(!reg.stop());
}

#[test]
fn after_func_spawn_stopped_before_cancel_never_runs() {
    let _g = shared();
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let reg = ctx
        .after_func_spawn(move || r.store(true, Ordering::SeqCst))
        .unwrap();
    assert!(reg.stop());
    assert!(!reg.stop());
    cancel.cancel();
    thread::sleep(SHORT);
    assert!(!ran.load(Ordering::SeqCst));
    // Registered on a done context: runs (on another thread) without any further cancel.
    let (tx, rx) = mpsc::channel();
    let _late = ctx
        .after_func_spawn(move || {
            let _ = tx.send(thread::current().id());
        })
        .unwrap();
    assert_ne!(rx.recv_timeout(LIVENESS).unwrap(), thread::current().id());
}

#[test]
fn after_func_spawn_at_a_deadline_sees_the_expiry() {
    let _g = shared();
    let Child {
        ctx,
        cancel: _cancel,
    } = background()
        .with_timeout(Duration::from_millis(30))
        .unwrap();
    let dl = std_deadline(&ctx);
    let probe = ctx.clone();
    let (tx, rx) = mpsc::channel();
    let _reg = ctx
        .after_func_spawn(move || {
            let _ = tx.send((probe.err(), StdInstant::now()));
        })
        .unwrap();
    drop(ctx);
    let (err, at) = rx.recv_timeout(LIVENESS).expect("never ran");
    assert_eq!(err, Some(Error::DeadlineExceeded));
    assert!(at >= dl);
}

#[test]
fn after_func_cond_example() {
    // Go: ExampleAfterFunc_cond — four threads wait on a condition variable that never becomes
    // true; an AfterFunc on each one's 1 ms timeout broadcasts, and each returns the error.
    //
    // As in Go, the caller holds the lock while registering, and the callback runs on its own
    // thread (`after_func_spawn`): it blocks on the lock until `wait` releases it, so the
    // broadcast cannot happen before the wait. (An inline `after_func` could run inside the
    // registration itself, on a context already expired, and deadlock on the held lock.)
    let _g = shared();
    let pair = Arc::new((Mutex::new(()), Condvar::new()));
    fn wait_on_cond<'g>(
        ctx: &Context<'static>,
        pair: &'g Arc<(Mutex<()>, Condvar)>,
        mut guard: std::sync::MutexGuard<'g, ()>,
        condition_met: impl Fn() -> bool,
    ) -> Option<Error> {
        let theirs = pair.clone();
        let stop = ctx
            .after_func_spawn(move || {
                let _lock = theirs.0.lock().unwrap();
                theirs.1.notify_all();
            })
            .unwrap();
        let mut out = None;
        while !condition_met() {
            guard = pair.1.wait(guard).unwrap();
            if let Some(e) = ctx.err() {
                out = Some(e);
                break;
            }
        }
        drop(guard);
        stop.stop();
        out
    }
    let results: Vec<_> = thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let pair = &pair;
                s.spawn(move || {
                    let Child {
                        ctx,
                        cancel: _cancel,
                    } = background().with_timeout(Duration::from_millis(1)).unwrap();
                    let guard = pair.0.lock().unwrap();
                    wait_on_cond(&ctx, pair, guard, || false)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results, vec![Some(Error::DeadlineExceeded); 4]);
    for r in &results {
        assert_eq!(r.unwrap().to_string(), "context deadline exceeded");
    }
}

#[test]
fn after_func_merge_example_with_heap_causes() {
    // Go: ExampleAfterFunc_merge — a context cancelled when either of two others is, carrying
    // the cause of whichever went first.
    let _g = shared();
    fn merge_cancel(
        ctx: &Context<'static>,
        cancel_ctx: &Context<'static>,
    ) -> (Context<'static>, impl FnOnce()) {
        let Child {
            ctx: merged,
            cancel,
        } = ctx.with_cancel_cause().unwrap();
        let cancel = Arc::new(cancel);
        let theirs = cancel.clone();
        let watched = cancel_ctx.clone();
        let stop = cancel_ctx
            .after_func_boxed(move || {
                let cause = watched.cause().expect("done").to_arc();
                theirs.cancel_with(cause);
            })
            .unwrap();
        (merged, move || {
            stop.stop();
            cancel.cancel();
        })
    }
    let Child {
        ctx: ctx1,
        cancel: cancel1,
    } = background().with_cancel_cause().unwrap();
    let Child {
        ctx: ctx2,
        cancel: cancel2,
    } = background().with_cancel_cause().unwrap();
    let (merged, merged_cancel) = merge_cancel(&ctx1, &ctx2);
    let c2 = shared_error("ctx2 canceled");
    cancel2.cancel_with(c2.clone());
    assert_eq!(merged.wait(), Error::Canceled);
    assert_eq!(merged.cause().unwrap().to_string(), "ctx2 canceled");
    assert!(same_error(&heap_cause(&merged), &c2));
    merged_cancel();
    cancel1.cancel_with(shared_error("ctx1 canceled"));
    assert!(same_error(&heap_cause(&merged), &c2), "first cause wins");
}

// ---------------------------------------------------------------------------------------------
// WithoutCancel on the global arena (Go: TestWithoutCancel, TestCause's WithoutCancel rows)
// ---------------------------------------------------------------------------------------------

#[test]
fn without_cancel_keeps_heap_values_and_drops_cancellation_and_deadline() {
    static KEY: HeapKey<String> = HeapKey::new("key");
    let _g = shared();
    let Child { ctx: req, cancel } = background()
        .with_timeout_cause(Duration::from_millis(20), shared_error("tooSlow"))
        .unwrap();
    let req = req.with_value(&KEY, "value".to_string()).unwrap();
    let detached = req.without_cancel().unwrap();
    assert_eq!(detached.deadline(), None);
    assert!(!detached.can_be_done());
    assert_eq!(detached.err(), None);
    assert_eq!(
        detached.value(&KEY).as_deref().map(String::as_str),
        Some("value")
    );
    assert!(detached.to_string().ends_with(".WithoutCancel"));
    assert_eq!(req.wait(), Error::DeadlineExceeded);
    cancel.cancel();
    assert_eq!(detached.err(), None);
    assert!(detached.cause().is_none());
    assert_eq!(detached.wait_timeout(Duration::from_millis(20)), None);
    // Its children can be cancelled, and have no deadline of their own.
    let Child {
        ctx: job,
        cancel: job_cancel,
    } = detached.with_cancel().unwrap();
    assert_eq!(job.deadline(), None);
    assert_eq!(job.err(), None);
    let t = thread::spawn(move || job_cancel.cancel_with(shared_error("job done")));
    assert_eq!(job.wait_timeout(LIVENESS), Some(Error::Canceled));
    assert_eq!(job.cause().unwrap().to_string(), "job done");
    t.join().unwrap();
    assert_eq!(detached.err(), None);
    assert_eq!(
        job.value(&KEY).as_deref().map(String::as_str),
        Some("value")
    );
}

#[test]
fn without_cancel_outlives_its_request_on_another_thread() {
    static REQ: HeapKey<u64> = HeapKey::new("request-id");
    let _g = shared();
    let Child { ctx: req, cancel } = background().with_cancel().unwrap();
    let req = req.with_value(&REQ, 99).unwrap();
    let bg_job = req.without_cancel().unwrap();
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        // Runs after the request is cancelled and dropped.
        let v = rx.recv().unwrap();
        (v, bg_job.err(), bg_job.value(&REQ).map(|v| *v))
    });
    drop(cancel);
    drop(req);
    tx.send(1).unwrap();
    assert_eq!(worker.join().unwrap(), (1, None, Some(99)));
}

// ---------------------------------------------------------------------------------------------
// Layers (Go: TestLayersCancel, TestLayersTimeout)
// ---------------------------------------------------------------------------------------------

/// A small deterministic PRNG (xorshift64*), seeded per run and printed on failure.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    t | 1
}

static LAYER_KEYS: [HeapKey<usize>; 64] = [const { HeapKey::new("layer") }; 64];

fn layers(with_timeout: bool) {
    let seed = seed();
    let mut rng = Rng(seed);
    let mut ctx = background();
    let mut vals = Vec::new();
    let mut cancels = Vec::new();
    let mut keep = Vec::new();
    let mut timers = 0;
    let mut i = 0;
    while i < 30 || timers == 0 || cancels.is_empty() || vals.is_empty() {
        let next = match rng.below(3) {
            0 if vals.len() < LAYER_KEYS.len() => {
                let k = vals.len();
                vals.push(k);
                ctx.with_value(&LAYER_KEYS[k], k).unwrap()
            }
            0 | 1 => {
                let Child { ctx: c, cancel: k } = ctx.with_cancel().unwrap();
                cancels.push(k);
                c
            }
            _ => {
                let d = if with_timeout { SHORT } else { VERY_LONG };
                let Child { ctx: c, cancel: k } = ctx.with_timeout(d).unwrap();
                cancels.push(k);
                timers += 1;
                c
            }
        };
        keep.push(std::mem::replace(&mut ctx, next));
        i += 1;
    }
    let check_values = |when: &str| {
        for &k in &vals {
            assert_eq!(
                ctx.value(&LAYER_KEYS[k]).map(|v| *v),
                Some(k),
                "seed={seed}: {when}: value {k}"
            );
        }
    };
    if !with_timeout {
        assert!(
            !ctx.is_done(),
            "seed={seed}: ctx should not be canceled yet"
        );
    }
    assert!(ctx.to_string().starts_with("context.Background."));
    check_values("before cancel");
    if with_timeout {
        assert_eq!(
            ctx.wait_timeout(LIVENESS),
            Some(Error::DeadlineExceeded),
            "seed={seed}: ctx should have timed out"
        );
        check_values("after timeout");
    } else {
        let pick = rng.below(cancels.len() as u64) as usize;
        cancels[pick].cancel();
        assert_eq!(ctx.err(), Some(Error::Canceled), "seed={seed}");
        check_values("after cancel");
    }
}

#[test]
fn layers_cancel() {
    let _g = shared();
    layers(false);
}

#[test]
fn layers_timeout() {
    let _g = shared();
    layers(true);
}

// ---------------------------------------------------------------------------------------------
// Scale: Go's BenchmarkWithTimeout shape, as a correctness test
// ---------------------------------------------------------------------------------------------

#[test]
fn many_concurrent_timeouts_return_the_arena_to_its_baseline() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 25_000;
    let _x = exclusive();
    let arena = ctxtree::global_arena();
    let baseline = settled_live_count();

    // Create 100,000 timeouts from several threads (keeping only their cancelers, as Go does).
    let cancels: Vec<Vec<_>> = thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    (0..PER_THREAD)
                        .map(|_| {
                            background()
                                .with_timeout(Duration::from_secs(3600))
                                .unwrap()
                                .cancel
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total = THREADS * PER_THREAD;
    let stats = arena.stats();
    assert_eq!(stats.live, baseline + total);
    assert!(stats.capacity >= baseline + total);
    let ctxs: Vec<_> = cancels.iter().flatten().map(|k| k.context()).collect();
    assert!(ctxs.iter().all(|c| !c.is_done()));

    // Churn while they are live: 10 × (with_timeout, cancel) per round, in parallel.
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..500 {
                    let batch: Vec<_> = (0..10)
                        .map(|_| {
                            background()
                                .with_timeout(Duration::from_secs(3600))
                                .unwrap()
                        })
                        .collect();
                    for Child { ctx: c, cancel: k } in batch {
                        k.cancel();
                        assert_eq!(c.err(), Some(Error::Canceled));
                    }
                }
            });
        }
    });
    assert_eq!(arena.stats().live, baseline + total);
    assert!(ctxs.iter().all(|c| !c.is_done()));

    // Cancel them all, from several threads.
    thread::scope(|s| {
        for chunk in &cancels {
            s.spawn(move || chunk.iter().for_each(|k| k.cancel()));
        }
    });
    assert!(ctxs.iter().all(|c| c.err() == Some(Error::Canceled)));
    drop(ctxs);
    drop(cancels);
    // The timer thread may hold a transient reference on a node it is inspecting.
    let limit = StdInstant::now() + LIVENESS;
    while arena.stats().live != baseline && StdInstant::now() < limit {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(arena.stats().live, baseline, "nodes leaked");
}

/// The global arena's live count once it has stopped changing: threads that other tests left
/// behind (an `after_func_spawn` callback dropping its captured context) finish releasing.
fn settled_live_count() -> usize {
    let arena = ctxtree::global_arena();
    let mut last = arena.stats().live;
    let mut stable = 0;
    let limit = StdInstant::now() + LIVENESS;
    while stable < 5 && StdInstant::now() < limit {
        thread::sleep(Duration::from_millis(10));
        let now = arena.stats().live;
        stable = if now == last { stable + 1 } else { 0 };
        last = now;
    }
    last
}
