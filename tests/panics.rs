//! Panic safety wherever user code runs inside ctxtree: `after_func` callbacks, wakers, heap
//! values' `Drop`, causes' `Display`/`Drop`, clocks, deadline hooks.
//!
//! The guarantee (crate docs, "Panics in user code"): a panic in user code never leaves a
//! descendant uncancelled, never loses another wake-up, never leaks a slot or a reference. The
//! operation that ran the code finishes its whole job, then resumes the first panic.
//!
//! Every test ends with its arena's `stats().live` back at 0 and every slot allocatable again.
#![cfg(feature = "std")]

use ctxtree::Child;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::task::{Context as TaskCx, Poll, RawWaker, RawWakerVTable, Waker};
use std::thread;
use std::time::{Duration, Instant as StdInstant};

use ctxtree::{Arena, CancelCause, Clock, Error, HeapKey, Instant, ManualClock, RawArena};

/// The payload of a caught panic, as a string.
fn payload(r: std::thread::Result<()>) -> String {
    let p = r.expect_err("expected the operation to resume a panic");
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string payload>".to_string()
    }
}

/// Asserts nothing is left in `arena` and every one of its `n` slots can be taken again.
fn assert_whole(arena: &RawArena, n: usize) {
    assert_eq!(arena.stats().live, 0, "a slot or a reference leaked");
    let held: Vec<_> = (0..n)
        .map(|i| {
            arena
                .background()
                .with_cancel()
                .unwrap_or_else(|e| panic!("slot {i} of {n} not allocatable again: {e:?}"))
        })
        .collect();
    assert_eq!(arena.stats().live, n);
    drop(held);
    assert_eq!(arena.stats().live, 0);
}

fn count(c: &'static AtomicUsize) -> impl FnOnce() + Send + 'static {
    move || {
        c.fetch_add(1, Ordering::SeqCst);
    }
}

// -----------------------------------------------------------------------------------------------
// 1. after_func callbacks that panic during cancel()
// -----------------------------------------------------------------------------------------------

#[test]
fn panicking_after_func_still_cancels_every_sibling_then_resumes_its_panic() {
    static A: Arena<16> = Arena::new();
    static RAN: [AtomicUsize; 5] = [const { AtomicUsize::new(0) }; 5];
    {
        let Child { ctx: root, cancel } = A.background().with_cancel().unwrap();
        // The list is LIFO: the traversal meets c, f3, b, f2 (panics), a, f1.
        let f1 = root.after_func(count(&RAN[0])).unwrap();
        let Child {
            ctx: a,
            cancel: _ca,
        } = root.with_cancel().unwrap();
        let f2 = root.after_func(|| panic!("middle callback")).unwrap();
        let Child {
            ctx: b,
            cancel: _cb,
        } = root.with_cancel().unwrap();
        let f3 = root.after_func(count(&RAN[1])).unwrap();
        let Child {
            ctx: c,
            cancel: _cc,
        } = root.with_cancel().unwrap();
        // Each sibling has a descendant with its own callback.
        let kids: Vec<_> = [&a, &b, &c]
            .into_iter()
            .map(|s| s.with_cancel().unwrap())
            .collect();
        let regs: Vec<_> = kids
            .iter()
            .zip(&RAN[2..])
            .map(|(k, r)| k.after_func(count(r)).unwrap())
            .collect();

        let r = catch_unwind(AssertUnwindSafe(|| cancel.cancel()));
        assert_eq!(payload(r), "middle callback");
        for ctx in [&root, &a, &b, &c]
            .into_iter()
            .chain(kids.iter().map(|k| &k.ctx))
        {
            assert_eq!(ctx.err(), Some(Error::Canceled), "{ctx} left uncancelled");
        }
        for r in &RAN {
            assert_eq!(
                r.load(Ordering::SeqCst),
                1,
                "a callback did not run exactly once"
            );
        }
        // A second cancel finds nothing left to do and runs nothing again.
        cancel.cancel();
        assert!(RAN.iter().all(|r| r.load(Ordering::SeqCst) == 1));
        assert!(!f1.stop() && !f2.stop() && !f3.stop());
        drop((regs, kids));
    }
    assert_whole(&A, 16);
}

#[test]
fn two_panicking_callbacks_resume_the_first_and_drop_the_second() {
    static A: Arena<8> = Arena::new();
    static RAN: AtomicUsize = AtomicUsize::new(0);
    {
        let Child { ctx: root, cancel } = A.background().with_cancel().unwrap();
        let _late = root
            .after_func(|| {
                RAN.fetch_add(1, Ordering::SeqCst);
                panic!("second")
            })
            .unwrap();
        let Child {
            ctx: child,
            cancel: _cc,
        } = root.with_cancel().unwrap();
        let _early = root
            .after_func(|| {
                RAN.fetch_add(1, Ordering::SeqCst);
                panic!("first")
            })
            .unwrap();
        // Dropping the canceler cancels: the same guarantee.
        let r = catch_unwind(AssertUnwindSafe(move || drop(cancel)));
        assert_eq!(payload(r), "first");
        assert_eq!(RAN.load(Ordering::SeqCst), 2);
        assert_eq!(child.err(), Some(Error::Canceled));
        assert_eq!(root.err(), Some(Error::Canceled));
    }
    assert_whole(&A, 8);
}

#[test]
fn panicking_callback_on_an_already_done_context_leaks_nothing() {
    static A: Arena<4> = Arena::new();
    {
        let Child { ctx, cancel } = A.background().with_cancel().unwrap();
        cancel.cancel();
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _reg = ctx.after_func(|| panic!("ran at once")).unwrap();
        }));
        assert_eq!(payload(r), "ran at once");
    }
    assert_whole(&A, 4);
}

#[test]
fn stopping_a_callback_whose_drop_panics_still_unregisters_it() {
    static A: Arena<4> = Arena::new();
    static RAN: AtomicUsize = AtomicUsize::new(0);
    {
        let Child { ctx, cancel } = A.background().with_cancel().unwrap();
        let bomb = DropBomb("closure dropped");
        let reg = ctx
            .after_func(move || {
                let _b = &bomb;
                RAN.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| assert!(reg.stop())));
        assert_eq!(payload(r), "closure dropped");
        assert!(!reg.stop());
        // Unregistered and out of the list: once its handle is gone, only `ctx` is left.
        drop(reg);
        assert_eq!(A.stats().live, 1);
        cancel.cancel();
        assert_eq!(RAN.load(Ordering::SeqCst), 0);
        assert_eq!(ctx.err(), Some(Error::Canceled));
    }
    assert_whole(&A, 4);
}

#[test]
fn expire_finishes_every_due_deadline_before_resuming_a_callbacks_panic() {
    static A: Arena<8> = Arena::new(); // no clock: deadlines fire only through `expire`
    static RAN: AtomicUsize = AtomicUsize::new(0);
    {
        let Child {
            ctx: d1,
            cancel: _c1,
        } = A
            .background()
            .with_deadline(Instant::from_ticks(10))
            .unwrap();
        let Child {
            ctx: d2,
            cancel: _c2,
        } = A
            .background()
            .with_deadline(Instant::from_ticks(10))
            .unwrap();
        let Child {
            ctx: d3,
            cancel: _c3,
        } = A
            .background()
            .with_deadline(Instant::from_ticks(10))
            .unwrap();
        let _r1 = d1.after_func(|| panic!("expiry callback")).unwrap();
        let _r2 = d2.after_func(count(&RAN)).unwrap();
        let _r3 = d3.after_func(count(&RAN)).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            A.expire(Instant::from_ticks(10));
        }));
        assert_eq!(payload(r), "expiry callback");
        assert_eq!(RAN.load(Ordering::SeqCst), 2);
        for d in [&d1, &d2, &d3] {
            assert_eq!(d.err(), Some(Error::DeadlineExceeded));
        }
        assert_eq!(A.expire(Instant::from_ticks(11)), None);
    }
    assert_whole(&A, 8);
}

#[test]
fn lazy_deadline_observation_finishes_the_expiry_then_resumes() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<8> = Arena::new().with_clock(&CLOCK);
    static RAN: AtomicUsize = AtomicUsize::new(0);
    {
        let Child { ctx: d, cancel: _c } = A
            .background()
            .with_timeout(Duration::from_millis(5))
            .unwrap();
        let Child {
            ctx: kid,
            cancel: _kc,
        } = d.with_cancel().unwrap();
        let _r1 = kid.after_func(count(&RAN)).unwrap();
        let _r2 = d.after_func(|| panic!("lazy expiry")).unwrap();
        CLOCK.advance(5);
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _ = d.err();
        }));
        assert_eq!(payload(r), "lazy expiry");
        assert_eq!(d.err(), Some(Error::DeadlineExceeded));
        assert_eq!(kid.err(), Some(Error::DeadlineExceeded));
        assert_eq!(RAN.load(Ordering::SeqCst), 1);
    }
    assert_whole(&A, 8);
}

// -----------------------------------------------------------------------------------------------
// 2. The std timer thread survives a panicking callback
// -----------------------------------------------------------------------------------------------

#[test]
fn timer_thread_survives_a_panicking_callback_and_keeps_firing_deadlines() {
    static FIRED: AtomicBool = AtomicBool::new(false);
    let Child {
        ctx: first,
        cancel: _c1,
    } = ctxtree::background()
        .with_timeout(Duration::from_millis(20))
        .unwrap();
    let _reg = first
        .after_func(|| {
            FIRED.store(true, Ordering::SeqCst);
            panic!("callback on the timer thread")
        })
        .unwrap();
    // Do not observe `first` (that would expire it on this thread): wait for the timer thread.
    let start = StdInstant::now();
    while !FIRED.load(Ordering::SeqCst) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the timer thread never fired the first deadline"
        );
        thread::sleep(Duration::from_millis(5));
    }

    // A later deadline must still wake a blocked `done()` future, through the timer thread: a
    // `block_on` parks until its waker is called, and only the timer calls it.
    let Child {
        ctx: second,
        cancel: c2,
    } = ctxtree::background()
        .with_timeout(Duration::from_millis(30))
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let waiter = second.clone();
    let t0 = StdInstant::now();
    let h = thread::spawn(move || {
        let e = futures::executor::block_on(waiter.done());
        let _ = tx.send((e, t0.elapsed()));
    });
    let got = rx.recv_timeout(Duration::from_secs(5));
    drop(c2); // unblocks the thread in any case
    let (e, took) = got.expect("the timer thread no longer fires deadlines");
    assert_eq!(e, Error::DeadlineExceeded);
    assert!(took >= Duration::from_millis(30) && took < Duration::from_secs(5));
    h.join().unwrap();

    // And a blocking `wait` ends at the deadline.
    let Child {
        ctx: third,
        cancel: _c3,
    } = ctxtree::background()
        .with_timeout(Duration::from_millis(20))
        .unwrap();
    assert_eq!(
        third.wait_timeout(Duration::from_secs(5)),
        Some(Error::DeadlineExceeded)
    );
    assert_eq!(first.err(), Some(Error::DeadlineExceeded));
}

// -----------------------------------------------------------------------------------------------
// 3. Wakers that panic
// -----------------------------------------------------------------------------------------------

/// A waker whose `wake` panics (`WAKE_PANICS`), or whose drop panics (`DROP_PANICS`); wakes and
/// drops are counted.
struct Probe {
    wakes: AtomicUsize,
    drops: AtomicUsize,
    wake_panics: bool,
    drop_panics: bool,
}

impl Probe {
    const fn new(wake_panics: bool, drop_panics: bool) -> Self {
        Probe {
            wakes: AtomicUsize::new(0),
            drops: AtomicUsize::new(0),
            wake_panics,
            drop_panics,
        }
    }

    fn waker(&'static self) -> Waker {
        // SAFETY: the vtable's functions treat the data pointer as `&'static Probe`.
        unsafe { Waker::from_raw(RawWaker::new((self as *const Probe).cast(), &VTABLE)) }
    }
}

fn probe(p: *const ()) -> &'static Probe {
    // SAFETY: every data pointer is a `&'static Probe` (see `Probe::waker`).
    unsafe { &*p.cast::<Probe>() }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(
    |p| RawWaker::new(p, &VTABLE),
    |p| {
        let pr = probe(p);
        pr.wakes.fetch_add(1, Ordering::SeqCst);
        if pr.wake_panics {
            panic!("waker panicked");
        }
    },
    |p| {
        let pr = probe(p);
        pr.wakes.fetch_add(1, Ordering::SeqCst);
        if pr.wake_panics {
            panic!("waker panicked");
        }
    },
    |p| {
        let pr = probe(p);
        pr.drops.fetch_add(1, Ordering::SeqCst);
        if pr.drop_panics {
            panic!("waker drop panicked");
        }
    },
);

#[test]
fn a_panicking_waker_loses_no_other_wake_up_in_its_batch() {
    static A: Arena<4> = Arena::new();
    static GOOD: Probe = Probe::new(false, false);
    static BAD: Probe = Probe::new(true, false);
    {
        let Child { ctx, cancel } = A.background().with_cancel().unwrap();

        // A thread blocked in `wait`: registered first, so woken after the bad waker.
        let (tx, rx) = mpsc::channel();
        let waiter = ctx.clone();
        let h = thread::spawn(move || {
            let t0 = StdInstant::now();
            // Long enough that only a lost wake-up reaches it: the canceller runs the panic
            // hook of the bad waker (a printed backtrace, seconds under ThreadSanitizer)
            // before it wakes the others.
            let e = waiter.wait_timeout(Duration::from_secs(60));
            let _ = tx.send((e, t0.elapsed()));
        });
        thread::sleep(Duration::from_millis(100));

        let mut good = pin!(ctx.done());
        let good_waker = GOOD.waker();
        assert!(
            good.as_mut()
                .poll(&mut TaskCx::from_waker(&good_waker))
                .is_pending()
        );
        let mut bad = pin!(ctx.done());
        let bad_waker = BAD.waker();
        assert!(
            bad.as_mut()
                .poll(&mut TaskCx::from_waker(&bad_waker))
                .is_pending()
        );

        let r = catch_unwind(AssertUnwindSafe(|| cancel.cancel()));
        assert_eq!(payload(r), "waker panicked");
        assert_eq!(BAD.wakes.load(Ordering::SeqCst), 1);
        assert_eq!(GOOD.wakes.load(Ordering::SeqCst), 1, "a wake-up was lost");
        let (e, took) = rx.recv_timeout(Duration::from_secs(90)).unwrap();
        assert_eq!(e, Some(Error::Canceled));
        assert!(
            took < Duration::from_secs(30),
            "the blocked thread was not woken: {took:?}"
        );
        h.join().unwrap();
        for f in [good.as_mut(), bad.as_mut()] {
            assert_eq!(
                f.poll(&mut TaskCx::from_waker(Waker::noop())),
                Poll::Ready(Error::Canceled)
            );
        }
    }
    assert_whole(&A, 4);
}

#[test]
fn a_waker_whose_drop_panics_leaves_the_waiter_list_usable() {
    static A: Arena<4> = Arena::new();
    static DROPPY: Probe = Probe::new(false, true);
    static GOOD: Probe = Probe::new(false, false);
    static OTHER: Probe = Probe::new(false, false);
    {
        let Child { ctx, cancel } = A.background().with_cancel().unwrap();
        let mut fut = pin!(ctx.done());
        let droppy = std::mem::ManuallyDrop::new(DROPPY.waker());
        assert!(
            fut.as_mut()
                .poll(&mut TaskCx::from_waker(&droppy))
                .is_pending()
        );
        // Re-polled with another waker: the stored one is replaced, and its drop panics.
        let good = GOOD.waker();
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _ = fut.as_mut().poll(&mut TaskCx::from_waker(&good));
        }));
        assert_eq!(payload(r), "waker drop panicked");
        assert_eq!(DROPPY.drops.load(Ordering::SeqCst), 1);

        // The waiter list is not left locked: another task registers, and both are woken.
        let mut other = pin!(ctx.done());
        let (tx, rx) = mpsc::channel();
        let other_waker = OTHER.waker();
        let ctx2 = ctx.clone();
        let h = thread::spawn(move || {
            let mut f = pin!(ctx2.done());
            let p = f.as_mut().poll(&mut TaskCx::from_waker(Waker::noop()));
            let _ = tx.send(p.is_pending());
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Ok(true),
            "registration hung"
        );
        h.join().unwrap();
        assert!(
            other
                .as_mut()
                .poll(&mut TaskCx::from_waker(&other_waker))
                .is_pending()
        );
        cancel.cancel();
        assert_eq!(OTHER.wakes.load(Ordering::SeqCst), 1);
        assert_eq!(
            fut.as_mut().poll(&mut TaskCx::from_waker(&good)),
            Poll::Ready(Error::Canceled)
        );
        assert_eq!(
            other.as_mut().poll(&mut TaskCx::from_waker(&other_waker)),
            Poll::Ready(Error::Canceled)
        );
    }
    assert_whole(&A, 4);
}

// -----------------------------------------------------------------------------------------------
// 4. Heap values and causes whose Drop or Display panics
// -----------------------------------------------------------------------------------------------

/// Panics with its message when dropped.
#[derive(Debug)]
struct DropBomb(&'static str);

impl Drop for DropBomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("{}", self.0);
        }
    }
}

impl fmt::Display for DropBomb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("drop bomb")
    }
}

impl StdError for DropBomb {}

/// An error whose `Display` panics.
#[derive(Debug)]
struct BadDisplay;

impl fmt::Display for BadDisplay {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        panic!("display panicked")
    }
}

impl StdError for BadDisplay {}

#[test]
fn heap_value_whose_drop_panics_frees_its_slot_and_its_parents() {
    static A: Arena<4> = Arena::new();
    static BOMB: HeapKey<DropBomb> = HeapKey::new("bomb");
    {
        let Child { ctx: p, cancel: pc } = A.background().with_cancel().unwrap();
        let v = p.with_value(&BOMB, DropBomb("value dropped")).unwrap();
        let Child { ctx: w, cancel: wc } = v.with_cancel().unwrap();
        drop((p, pc, wc));
        drop(w);
        // `v` holds the last reference on itself and (through it) on `p`.
        let r = catch_unwind(AssertUnwindSafe(move || drop(v)));
        assert_eq!(payload(r), "value dropped");
    }
    assert_whole(&A, 4);
}

#[test]
fn heap_cause_whose_drop_panics_frees_its_slot() {
    static A: Arena<4> = Arena::new();
    {
        let Child { ctx, cancel } = A.background().with_cancel().unwrap();
        let Child {
            ctx: kid,
            cancel: _kc,
        } = ctx.with_cancel().unwrap();
        cancel.cancel_with(CancelCause::error(DropBomb("cause dropped")));
        assert_eq!(kid.cause().unwrap().to_string(), "drop bomb");
        drop((kid, _kc, ctx));
        let r = catch_unwind(AssertUnwindSafe(move || drop(cancel)));
        assert_eq!(payload(r), "cause dropped");
    }
    assert_whole(&A, 4);
    {
        // A deadline's own cause, dropped with its never-expired node.
        let Child { ctx: d, cancel: dc } = A
            .background()
            .with_deadline_cause(
                Instant::from_ticks(u64::MAX / 2),
                CancelCause::error(DropBomb("deadline cause dropped")),
            )
            .unwrap();
        let r = catch_unwind(AssertUnwindSafe(move || drop((d, dc))));
        assert_eq!(payload(r), "deadline cause dropped");
    }
    assert_whole(&A, 4);
}

#[test]
fn heap_cause_whose_display_panics_in_a_dump_releases_the_dumps_references() {
    static A: Arena<4> = Arena::new();
    {
        let Child { ctx, cancel } = A.background().with_cancel().unwrap();
        let Child {
            ctx: kid,
            cancel: _kc,
        } = ctx.with_cancel().unwrap();
        let Child {
            ctx: _grandkid,
            cancel: _gc,
        } = kid.with_cancel().unwrap();
        cancel.cancel_with(CancelCause::error(BadDisplay));
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _ = A.tree().to_string();
        }));
        assert_eq!(payload(r), "display panicked");
        assert_eq!(A.stats().live, 3);
    }
    assert_whole(&A, 4);
}

// -----------------------------------------------------------------------------------------------
// 5. Clocks that panic
// -----------------------------------------------------------------------------------------------

struct PanicClock {
    armed: AtomicBool,
    now: AtomicUsize,
}

impl Clock for PanicClock {
    fn now(&self) -> Instant {
        if self.armed.load(Ordering::SeqCst) {
            panic!("clock panicked");
        }
        Instant::from_ticks(self.now.load(Ordering::SeqCst) as u64)
    }
    fn ticks_per_second(&self) -> u64 {
        1_000
    }
}

#[test]
fn a_panicking_clock_leaks_no_slot_or_reference() {
    static CLOCK: PanicClock = PanicClock {
        armed: AtomicBool::new(false),
        now: AtomicUsize::new(0),
    };
    static A: Arena<4> = Arena::new().with_clock(&CLOCK);
    let arm = |on| CLOCK.armed.store(on, Ordering::SeqCst);
    {
        let Child {
            ctx: parent,
            cancel: pc,
        } = A.background().with_cancel().unwrap();
        arm(true);
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _ = parent.with_timeout(Duration::from_millis(5));
        }));
        assert_eq!(payload(r), "clock panicked");
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _ = parent.with_timeout_cause(
                Duration::from_millis(5),
                CancelCause::error(DropBomb("never seen")),
            );
        }));
        assert_eq!(payload(r), "clock panicked");
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _ = parent.with_deadline(Instant::from_ticks(5));
        }));
        assert_eq!(payload(r), "clock panicked");
        assert_eq!(A.stats().live, 1);

        arm(false);
        let Child { ctx: d, cancel: dc } = parent.with_deadline(Instant::from_ticks(5)).unwrap();
        let Child {
            ctx: kid,
            cancel: _kc,
        } = d.with_cancel().unwrap();
        arm(true);
        for ctx in [&d, &kid] {
            let r = catch_unwind(AssertUnwindSafe(|| ctx.err()));
            assert_eq!(payload(r.map(drop)), "clock panicked");
        }
        let r = catch_unwind(AssertUnwindSafe(|| A.tree().to_string()));
        assert_eq!(payload(r.map(drop)), "clock panicked");
        assert_eq!(A.stats().live, 3);
        arm(false);
        CLOCK.now.store(5, Ordering::SeqCst);
        assert_eq!(kid.err(), Some(Error::DeadlineExceeded));
        drop((d, dc, kid, _kc, parent, pc));
    }
    arm(false);
    assert_whole(&A, 4);
}

/// A cancel that meets a node with a deadline reads the clock (Go's timeline: did that deadline
/// fire first?). A clock that panics there must not stop the traversal: the subtree is cancelled
/// and every slot released, then the panic is resumed — from `cancel()` and from a `Canceler`'s
/// drop alike.
#[test]
fn a_clock_panicking_inside_a_cancel_still_cancels_and_releases_everything() {
    static CLOCK: PanicClock = PanicClock {
        armed: AtomicBool::new(false),
        now: AtomicUsize::new(0),
    };
    static A: Arena<8> = Arena::new().with_clock(&CLOCK);
    let arm = |on| CLOCK.armed.store(on, Ordering::SeqCst);
    for by_drop in [false, true] {
        let Child { ctx: root, cancel } = A.background().with_cancel().unwrap();
        let Child {
            ctx: d,
            cancel: _dc,
        } = root.with_deadline(Instant::from_ticks(50)).unwrap();
        let Child {
            ctx: kid,
            cancel: _kc,
        } = d.with_cancel().unwrap();
        let Child {
            ctx: d2,
            cancel: _d2c,
        } = root.with_deadline(Instant::from_ticks(60)).unwrap();
        assert_eq!(A.stats().live, 4);
        let mut cancel = Some(cancel);
        arm(true);
        let r = if by_drop {
            catch_unwind(AssertUnwindSafe(|| drop(cancel.take())))
        } else {
            catch_unwind(AssertUnwindSafe(|| cancel.as_ref().unwrap().cancel()))
        };
        assert_eq!(payload(r), "clock panicked");
        arm(false);
        // The cancel came first (the clock could not say otherwise): every context is done
        // with `Canceled`, none with a deadline it never reached.
        for ctx in [&root, &d, &kid, &d2] {
            assert_eq!(ctx.err(), Some(Error::Canceled), "{ctx}");
        }
        drop((cancel, root, d, _dc, kid, _kc, d2, _d2c));
        assert_eq!(A.stats().live, 0, "by_drop={by_drop}");
    }
    assert_whole(&A, 8);
}
