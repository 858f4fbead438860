//! Zero heap allocations on every core path, proven with a counting global allocator.
//!
//! The allocator counts allocations (and reallocations) per thread, in a const-initialised
//! thread-local without a destructor (so counting itself never allocates). Each check runs a
//! section of core operations on the test's own thread and asserts that this thread's count did
//! not move: the test harness's allocations on other threads cannot interfere.

use core::fmt::{self, Write};
use core::future::Future;
use core::pin::pin;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::task::{Context as TaskCx, Poll, Waker};
use core::time::Duration;
use ctxtree::Child;
use std::hint::black_box;

use ctxtree::{Arena, Error, Instant, Key, ManualClock, StaticCause};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocs;

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

/// Runs `f` and returns how many allocations it made on this thread.
fn count<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let before = allocs();
    let r = f();
    (allocs() - before, r)
}

/// Asserts that `f` makes no allocation on this thread.
#[track_caller]
fn assert_no_alloc<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let (n, r) = count(f);
    assert_eq!(n, 0, "{what}: {n} heap allocation(s)");
    r
}

/// A `fmt::Write` that discards what it gets and counts the bytes.
struct Sink(usize);
impl Write for Sink {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the guard: a section that allocates is counted.
    let (n, v) = count(|| black_box(vec![1u8; 16]));
    assert!(n >= 1, "the counting allocator must count");
    drop(v);
    let (n, b) = count(|| black_box(Box::new(5u64)));
    assert_eq!(n, 1);
    drop(b);
}

#[test]
fn roots_and_queries() {
    static A: Arena<8> = Arena::new();
    assert_no_alloc("background/todo and their queries", || {
        let bg = A.background();
        let todo = A.todo();
        assert!(!bg.is_done() && !todo.is_done());
        assert!(bg.err().is_none() && todo.cause().is_none());
        assert!(bg.deadline().is_none());
        assert!(!bg.can_be_done());
        black_box((bg, todo));
    });
}

#[test]
fn cancel_paths() {
    static A: Arena<16> = Arena::new();
    static WHY: StaticCause = StaticCause::with_code(5, "why");
    // No warm-up: the arena is a static, so even the very first call must not allocate.
    assert_no_alloc("with_cancel + cancel", || {
        let Child { ctx, cancel } = A.background().with_cancel().unwrap();
        assert!(!ctx.is_done());
        cancel.cancel();
        assert_eq!(ctx.err(), Some(Error::Canceled));
        assert!(ctx.cause().unwrap().is(Error::Canceled));
    });
    assert_no_alloc("with_cancel_cause + cancel_with(&StaticCause)", || {
        let Child { ctx, cancel } = A.background().with_cancel_cause().unwrap();
        cancel.cancel_with(&WHY);
        assert!(ctx.cause().unwrap().is_static(&WHY));
        assert_eq!(ctx.cause().unwrap().code(), Some(5));
    });
    assert_no_alloc("cancel propagation through a tree, clone/drop", || {
        let Child { ctx: root, cancel } = A.background().with_cancel().unwrap();
        let Child {
            ctx: a,
            cancel: _ca,
        } = root.with_cancel().unwrap();
        let Child {
            ctx: b,
            cancel: _cb,
        } = root.with_cancel().unwrap();
        let Child {
            ctx: a1,
            cancel: _ca1,
        } = a.with_cancel().unwrap();
        let Child {
            ctx: b1,
            cancel: _cb1,
        } = b.with_cancel_cause().unwrap();
        let a2 = a1.clone();
        let b2 = b1.clone();
        drop(a1);
        cancel.cancel_with(&WHY);
        assert_eq!(a2.err(), Some(Error::Canceled));
        assert!(b2.cause().unwrap().is_static(&WHY));
        // Born-cancelled children too.
        let Child {
            ctx: late,
            cancel: _cl,
        } = b2.with_cancel().unwrap();
        assert!(late.is_done());
        let c = cancel.context();
        black_box(c);
    });
    assert_eq!(A.stats().live, 0);
}

#[test]
fn deadline_paths() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<16> = Arena::new().with_clock(&CLOCK);
    static SLOW: StaticCause = StaticCause::new("slow");
    assert_no_alloc("with_deadline, deadline(), lazy expiry", || {
        let Child { ctx: d, cancel: _c } = A
            .background()
            .with_deadline(Instant::from_ticks(5))
            .unwrap();
        assert_eq!(d.deadline(), Some(Instant::from_ticks(5)));
        assert!(!d.is_done());
        CLOCK.set(Instant::from_ticks(5));
        assert_eq!(d.err(), Some(Error::DeadlineExceeded));
        assert!(d.cause().unwrap().is(Error::DeadlineExceeded));
    });
    assert_no_alloc("with_timeout (ManualClock) and with_timeout_cause", || {
        let Child { ctx: t, cancel: _c } = A
            .background()
            .with_timeout(Duration::from_millis(3))
            .unwrap();
        let Child {
            ctx: tc,
            cancel: _cc,
        } = t
            .with_timeout_cause(Duration::from_millis(2), &SLOW)
            .unwrap();
        CLOCK.advance(2);
        assert!(tc.is_done());
        assert!(tc.cause().unwrap().is_static(&SLOW));
        assert!(!t.is_done());
        CLOCK.advance(1);
        assert!(t.is_done());
    });
    assert_no_alloc("with_deadline_cause and expire", || {
        let now = A.now().unwrap();
        let Child { ctx: d, cancel: _c } = A
            .background()
            .with_deadline_cause(now.add_ticks(10), &SLOW)
            .unwrap();
        let Child {
            ctx: child,
            cancel: _cc,
        } = d.with_cancel().unwrap();
        assert_eq!(A.expire(now), Some(now.add_ticks(10)));
        assert_eq!(A.expire(now.add_ticks(10)), None);
        assert_eq!(child.err(), Some(Error::DeadlineExceeded));
        assert!(child.cause().unwrap().is_static(&SLOW));
        // A past deadline: born expired.
        let Child {
            ctx: past,
            cancel: _pc,
        } = A.background().with_deadline(now).unwrap();
        assert!(past.is_done());
    });
    assert_eq!(A.stats().live, 0);
}

#[test]
fn value_paths() {
    static A: Arena<16> = Arena::new();
    static REQ: Key<u64> = Key::new("req");
    static OPT: Key<Option<u32>> = Key::new("opt");
    assert_no_alloc("with_value (Key<u64>), lookup, without_cancel", || {
        let v = A.background().with_value(&REQ, 42).unwrap();
        let Child {
            ctx: c,
            cancel: _cc,
        } = v.with_cancel().unwrap();
        let o = c.with_value(&OPT, None).unwrap();
        let w = o.without_cancel().unwrap();
        assert_eq!(w.value(&REQ), Some(42));
        assert_eq!(w.value(&OPT), Some(None));
        assert_eq!(A.background().value(&REQ), None);
        assert!(!w.can_be_done());
    });
    assert_eq!(A.stats().live, 0);
}

#[test]
fn after_func_paths() {
    static A: Arena<8> = Arena::new();
    static RAN: AtomicUsize = AtomicUsize::new(0);
    assert_no_alloc("after_func (small closure), stop, fire", || {
        let Child { ctx, cancel } = A.background().with_cancel().unwrap();
        let n = 3usize;
        let stopped = ctx
            .after_func(move || {
                RAN.fetch_add(n * 100, Ordering::SeqCst);
            })
            .unwrap();
        assert!(stopped.stop());
        let _fires = ctx
            .after_func(move || {
                RAN.fetch_add(n, Ordering::SeqCst);
            })
            .unwrap();
        cancel.cancel();
        assert_eq!(RAN.load(Ordering::SeqCst), 3);
        // Immediately on a done context, and detached on a never-done one.
        let _now = ctx
            .after_func(|| {
                RAN.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        assert_eq!(RAN.load(Ordering::SeqCst), 4);
        let never = A.background().after_func(|| unreachable!()).unwrap();
        assert!(never.stop());
    });
    assert_eq!(A.stats().live, 0);
}

#[test]
fn display_and_dump_paths() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<16> = Arena::new().with_clock(&CLOCK);
    static REQ: Key<u64> = Key::new("req");
    static WHY: StaticCause = StaticCause::new("why");
    let Child { ctx: c, cancel } = A.background().with_cancel().unwrap();
    let Child {
        ctx: d,
        cancel: _dc,
    } = c.with_timeout(Duration::from_millis(5)).unwrap();
    let v = d.with_value(&REQ, 1).unwrap();
    let w = v.without_cancel().unwrap();
    let _f = d.after_func(|| {}).unwrap();
    let Child { ctx: x, cancel: xc } = A.todo().with_cancel().unwrap();
    xc.cancel_with(&WHY);
    assert_no_alloc("Display into a fixed-size writer", || {
        let mut s: heapless::String<256> = heapless::String::new();
        write!(s, "{w}").unwrap();
        assert_eq!(
            s.as_str(),
            "context.Background.WithCancel.WithDeadline(@5 [5ms]).WithValue(req, u64).WithoutCancel"
        );
        let mut sink = Sink(0);
        write!(sink, "{x}").unwrap();
        assert_eq!(sink.0, "context.TODO.WithCancel".len());
        write!(sink, "{}", Error::Canceled).unwrap();
        write!(sink, "{}", x.cause().unwrap()).unwrap();
    });
    assert_no_alloc("dump into a discarding writer", || {
        let mut sink = Sink(0);
        A.dump(&mut sink).unwrap();
        assert!(sink.0 > 0);
        let mut sink2 = Sink(0);
        write!(sink2, "{}", A.tree()).unwrap();
        assert_eq!(sink.0, sink2.0);
    });
    // The dump holds references while it walks: it must give them all back.
    drop((c, cancel, d, _dc, v, w, _f, x, xc));
    assert_eq!(A.stats().live, 0);
}

#[test]
fn stats_path() {
    static A: Arena<8> = Arena::new();
    let Child {
        ctx: _c,
        cancel: _cc,
    } = A.background().with_cancel().unwrap();
    assert_no_alloc("stats", || {
        let s = A.stats();
        assert_eq!((s.live, s.capacity), (1, 8));
    });
}

#[test]
fn futures_paths() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<8> = Arena::new().with_clock(&CLOCK);
    assert_no_alloc("done(): register, cancel, ready", || {
        let mut cx = TaskCx::from_waker(Waker::noop());
        let Child { ctx, cancel } = A.background().with_cancel().unwrap();
        let mut done = pin!(ctx.done());
        let mut done2 = pin!(ctx.done());
        assert!(done.as_mut().poll(&mut cx).is_pending());
        assert!(done2.as_mut().poll(&mut cx).is_pending());
        {
            // A pending future dropped: deregistered.
            let mut gone = pin!(ctx.done());
            assert!(gone.as_mut().poll(&mut cx).is_pending());
        }
        cancel.cancel();
        assert_eq!(done.as_mut().poll(&mut cx), Poll::Ready(Error::Canceled));
        assert_eq!(done2.as_mut().poll(&mut cx), Poll::Ready(Error::Canceled));
    });
    assert_no_alloc("done() on a deadline: lazy expiry on poll", || {
        let mut cx = TaskCx::from_waker(Waker::noop());
        let Child { ctx, cancel: _c } = A
            .background()
            .with_timeout(Duration::from_millis(1))
            .unwrap();
        let mut done = pin!(ctx.done());
        assert!(done.as_mut().poll(&mut cx).is_pending());
        CLOCK.advance(1);
        assert_eq!(
            done.as_mut().poll(&mut cx),
            Poll::Ready(Error::DeadlineExceeded)
        );
    });
    assert_no_alloc("run_until_done: pending, cancel, Err", || {
        let mut cx = TaskCx::from_waker(Waker::noop());
        let Child { ctx, cancel } = A.background().with_cancel().unwrap();
        let mut fut = pin!(ctx.run_until_done(core::future::pending::<u8>()));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        cancel.cancel();
        assert_eq!(
            fut.as_mut().poll(&mut cx),
            Poll::Ready(Err(Error::Canceled))
        );
        let mut ok = pin!(ctx.run_until_done(async { 7u8 }));
        assert_eq!(
            ok.as_mut().poll(&mut cx),
            Poll::Ready(Err(Error::Canceled)),
            "a done context wins over a ready future"
        );
        let Child {
            ctx: live,
            cancel: _lc,
        } = A.background().with_cancel().unwrap();
        let mut ok2 = pin!(live.run_until_done(async { 7u8 }));
        assert_eq!(ok2.as_mut().poll(&mut cx), Poll::Ready(Ok(7)));
    });
    assert_eq!(A.stats().live, 0);
}
