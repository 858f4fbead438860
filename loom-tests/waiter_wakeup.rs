//! The waiter protocol of `done()` futures (`src/waiters.rs`): no lost wake-up, no waiter left
//! behind, no access to a waiter after it is gone.
//!
//! A registrant takes the waiter lock, sets `WAITERS` in `head` (a compare-and-swap that fails on
//! `DONE`), links its waiter and stores its waker; a canceller publishes `DONE` and, if it saw
//! `WAITERS`, drains — taking the lock if it is free, or *delegating* the drain to the lock's
//! holder (setting `PENDING`) if a registrant holds it, so the canceller never waits.
//!
//! The models block in `loom::future::block_on`, whose waker is a loom notification: if a
//! wake-up is lost, the blocked thread can never run again and loom reports a deadlock. Every
//! waker is a loom `Arc` (block_on's) or is counted (the models' own), so a waker left in a list
//! or dropped twice fails the model too. Interleavings where the canceller runs while a
//! registrant is between `lock` and `unlock` exercise the delegation path (checked: with the
//! `PENDING` hand-off disabled, `done_future_vs_cancel` deadlocks).
//!
//! std's blocking `Context::wait` registers the very same `Waiter` through the same
//! `waiters::register` / `deregister` calls, with a waker that unparks the thread instead of
//! loom's notification — so these models cover it too (it is compiled out under loom only
//! because the std layer's global arena needs `const` atomics).

extern crate std;

use crate::Child;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::Ordering;
use core::task::{Context as TaskCx, Poll, Waker};
use std::sync::Arc as StdArc;
use std::task::Wake;

use loom::sync::atomic::AtomicUsize;
use loom::thread;

use super::support::{Outcomes, assert_quiescent, run_model, run_model_capped};
use crate::{Arena, Context, Done, Error};

/// A waker that counts its wake-ups; `StdArc::strong_count` tells whether a clone is still held
/// (say, left in a waiter list).
struct Counting(AtomicUsize);

impl Wake for Counting {
    fn wake(self: StdArc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &StdArc<Self>) {
        // ORDERING: Relaxed: read after the joins.
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn counting() -> (StdArc<Counting>, Waker) {
    let c = StdArc::new(Counting(AtomicUsize::new(0)));
    (c.clone(), Waker::from(c))
}

/// Drives `fut` to completion in `loom::future::block_on` (which blocks the loom thread until
/// woken: a lost wake-up is a deadlock loom reports), and says whether it ever had to wait.
fn block_on_waited<F: Future>(fut: F) -> (F::Output, bool) {
    struct Watch<F> {
        fut: F,
        waited: bool,
    }
    impl<F: Future> Future for Watch<F> {
        type Output = (F::Output, bool);
        fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Self::Output> {
            // SAFETY: `fut` is structurally pinned: never moved out of the pinned `Watch`.
            let this = unsafe { self.get_unchecked_mut() };
            // SAFETY: as above.
            match unsafe { Pin::new_unchecked(&mut this.fut) }.poll(cx) {
                Poll::Ready(v) => Poll::Ready((v, this.waited)),
                Poll::Pending => {
                    this.waited = true;
                    Poll::Pending
                }
            }
        }
    }
    loom::future::block_on(Watch { fut, waited: false })
}

/// The waiter list of `ctx`'s node is empty and unlocked (single-threaded use, after joins).
fn no_waiters(ctx: &Context<'_>) {
    let n = ctx.arena.node(ctx.src_slot().unwrap());
    // SAFETY: every thread is joined: nothing else touches the list.
    let empty = unsafe { n.waiters.is_empty() };
    assert!(empty, "a waiter was left in the list");
    assert!(n.meta.is_idle(), "the waiter lock was left held");
}

#[test]
fn done_future_vs_cancel() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("done_future_vs_cancel", move || {
        loom::lazy_static! { static ref ARENA: Arena<1> = Arena::new(); }
        let arena: &'static Arena<1> = &ARENA;
        let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
        let waiter = thread::spawn(move || {
            let (err, waited) = block_on_waited(ctx.done());
            assert_eq!(err, Error::Canceled);
            (ctx, waited)
        });
        cancel.cancel();
        let (ctx, waited) = waiter.join().unwrap();
        record.record(waited);
        no_waiters(&ctx);
        drop((ctx, cancel));
        assert_quiescent(arena);
    });
    // Registered and woken, or found it done.
    outcomes.assert_saw(&[false, true]);
}

/// Two waiters on one context (the second through a value child: same canceller node), and the
/// cancel: both are woken, whatever the order of the registration and the drain.
///
/// The first waiter registers before the race (a pending future polled once); only the second
/// races the cancel. Two registrants racing each other *and* the drain are left out on purpose:
/// registrants spin (yielding) on the waiter lock while another holds it, and loom, which has no
/// fairness, then explores two spinners yielding to each other forever while the holder waits —
/// at 3 preemptions that exceeds any branch limit without there being a livelock on a real
/// machine (the holder's section is short and runs in parallel, or, on `no_std`, in a critical
/// section that no registrant can preempt).
#[test]
fn two_done_futures_vs_cancel() {
    static KEY: crate::Key<u8> = crate::Key::new("k");
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("two_done_futures_vs_cancel", move || {
        loom::lazy_static! { static ref ARENA: Arena<2> = Arena::new(); }
        let arena: &'static Arena<2> = &ARENA;
        let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
        let v = ctx.with_value(&KEY, 1).unwrap();
        let (count, waker) = counting();
        {
            let mut first = core::pin::pin!(ctx.done());
            assert!(
                first
                    .as_mut()
                    .poll(&mut TaskCx::from_waker(&waker))
                    .is_pending()
            );
            let b = thread::spawn(move || {
                let (err, waited) = block_on_waited(v.done());
                assert_eq!(err, Error::Canceled);
                waited
            });
            cancel.cancel();
            record.record(b.join().unwrap());
            // ORDERING: Relaxed: after the join.
            assert_eq!(
                count.0.load(Ordering::Relaxed),
                1,
                "the first waiter was not woken once"
            );
            assert_eq!(
                first.as_mut().poll(&mut TaskCx::from_waker(&waker)),
                Poll::Ready(Error::Canceled)
            );
        }
        no_waiters(&ctx);
        drop(waker);
        assert_eq!(
            StdArc::strong_count(&count),
            1,
            "a waker clone was left behind"
        );
        drop((ctx, cancel));
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[false, true]);
}

/// Two registrants racing each other for the waiter lock *and* the cancel's drain (which may
/// find the lock held by either and delegate to it): both are woken. Capped at 2 preemptions:
/// beyond, loom (which has no fairness) explores the two registrants spin-yielding to each other
/// forever while the drain holding the lock waits to be scheduled — no livelock on a machine,
/// where the holder runs (in parallel, or, on `no_std`, inside a critical section that a
/// registrant cannot preempt).
#[test]
fn two_registrants_race_the_drain() {
    static KEY: crate::Key<u8> = crate::Key::new("k");
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model_capped("two_registrants_race_the_drain", 2, move || {
        loom::lazy_static! { static ref ARENA: Arena<2> = Arena::new(); }
        let arena: &'static Arena<2> = &ARENA;
        let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
        let v = ctx.with_value(&KEY, 1).unwrap();
        let c2 = ctx.clone();
        let a = thread::spawn(move || {
            let (err, waited) = block_on_waited(c2.done());
            assert_eq!(err, Error::Canceled);
            waited
        });
        let b = thread::spawn(move || {
            let (err, waited) = block_on_waited(v.done());
            assert_eq!(err, Error::Canceled);
            waited
        });
        cancel.cancel();
        record.record((a.join().unwrap(), b.join().unwrap()));
        no_waiters(&ctx);
        drop((ctx, cancel));
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[(false, false), (true, true), (true, false), (false, true)]);
}

/// Registers through a counting waker first, then re-registers with the executor's own
/// (replacing the stored waker under the lock) — a task polled by two executors in turn, or
/// one whose waker changed. The last waker registered must be woken for `block_on` to return;
/// the replaced one is woken only if the cancel came between the two registrations, and is
/// never kept.
struct Rewaker<'c, 'a> {
    done: Done<'c, 'a>,
    first: Option<Waker>,
}

impl Future for Rewaker<'_, '_> {
    type Output = Error;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Error> {
        // SAFETY: `done` is structurally pinned: never moved out of the pinned `Rewaker`.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above.
        let mut done = unsafe { Pin::new_unchecked(&mut this.done) };
        if let Some(w) = this.first.take()
            && let Poll::Ready(e) = done.as_mut().poll(&mut TaskCx::from_waker(&w))
        {
            return Poll::Ready(e);
        }
        done.poll(cx)
    }
}

#[test]
fn reregister_new_waker_vs_cancel() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("reregister_new_waker_vs_cancel", move || {
        loom::lazy_static! { static ref ARENA: Arena<1> = Arena::new(); }
        let arena: &'static Arena<1> = &ARENA;
        let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
        let (count, first) = counting();
        let waiter = thread::spawn(move || {
            let fut = Rewaker {
                done: ctx.done(),
                first: Some(first),
            };
            let (err, waited) = block_on_waited(fut);
            assert_eq!(err, Error::Canceled);
            (ctx, waited)
        });
        cancel.cancel();
        let (ctx, waited) = waiter.join().unwrap();
        // ORDERING: Relaxed: after the join.
        let woken = count.0.load(Ordering::Relaxed);
        assert!(woken <= 1, "the first waker was woken {woken} times");
        assert_eq!(StdArc::strong_count(&count), 1, "a replaced waker was kept");
        record.record((waited, woken));
        no_waiters(&ctx);
        drop((ctx, cancel));
        assert_quiescent(arena);
    });
    // Done before the first registration; between the two; after both.
    outcomes.assert_saw(&[(false, 0), (false, 1), (true, 0)]);
}

/// A pending `done()` future dropped (deregistering its waiter) while the cancel drains the
/// list: the waiter is woken at most once, never touched after its future is gone (loom checks
/// the waiter's cells), and no clone of the waker survives.
#[test]
fn drop_pending_future_vs_cancel() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("drop_pending_future_vs_cancel", move || {
        loom::lazy_static! { static ref ARENA: Arena<1> = Arena::new(); }
        let arena: &'static Arena<1> = &ARENA;
        let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
        let (count, waker) = counting();
        let waiter = thread::spawn(move || {
            let poll = {
                let mut fut = core::pin::pin!(ctx.done());
                fut.as_mut().poll(&mut TaskCx::from_waker(&waker))
                // The future is dropped here, deregistering its waiter.
            };
            (ctx, poll.is_ready())
        });
        cancel.cancel();
        let (ctx, ready) = waiter.join().unwrap();
        // ORDERING: Relaxed: after the join.
        let woken = count.0.load(Ordering::Relaxed);
        assert!(woken <= 1, "woken {woken} times");
        if ready {
            assert_eq!(woken, 0, "woken although it never waited");
        }
        assert_eq!(
            StdArc::strong_count(&count),
            1,
            "a waker clone was left behind"
        );
        record.record((ready, woken));
        no_waiters(&ctx);
        drop((ctx, cancel));
        assert_quiescent(arena);
    });
    // Done first; registered and woken before the drop; registered and dropped first.
    outcomes.assert_saw(&[(true, 0), (false, 1), (false, 0)]);
}
