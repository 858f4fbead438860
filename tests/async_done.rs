//! `done()` and `run_until_done()` under real executors: a multi-thread tokio runtime,
//! `futures::executor::block_on` on plain threads, and a single-threaded `LocalPool`.
//!
//! Hangs are the failure mode that matters for a waker list, so every wait that could hang is
//! bounded by `tokio::time::timeout` (or a thread join with a limit): a lost wake-up fails the
//! test instead of stalling the suite. Time is asserted only as "not before the deadline" plus
//! generous liveness bounds.

#![cfg(feature = "std")]

use ctxtree::Child;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::task::{Context as TaskCx, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant as StdInstant};

use ctxtree::{Arena, Context, Error, ManualClock, StdClock, background};
use futures::executor::{LocalPool, block_on};
use futures::task::LocalSpawnExt;
use tokio::time::timeout;

/// Generous bound for "this must have completed by now".
const LIVENESS: Duration = Duration::from_secs(10);

/// Polls `fut` once with `cx`'s waker and returns what it said (without consuming it).
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

/// A waker that counts how often it was woken.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let c = Arc::new(CountingWaker::default());
    (c.clone(), Waker::from(c))
}

/// Sets its flag when dropped: tells whether `run_until_done` dropped the inner future.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn std_deadline(ctx: &Context<'_>) -> StdInstant {
    StdClock::to_std(ctx.deadline().expect("has a deadline"))
}

// ---------------------------------------------------------------------------------------------
// Many waiters, one cancel
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_thousand_waiters_complete_after_one_cancel() {
    const N: usize = 5_000;
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    let registered = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let (ctx, registered, finished) = (ctx.clone(), registered.clone(), finished.clone());
            tokio::spawn(async move {
                let mut done = pin!(ctx.done());
                // The first poll registers the waiter (the context is live: it must be pending).
                assert!(poll_once(&mut done).await.is_pending());
                registered.fetch_add(1, Ordering::SeqCst);
                let e = done.await;
                finished.fetch_add(1, Ordering::SeqCst);
                e
            })
        })
        .collect();
    timeout(LIVENESS, async {
        while registered.load(Ordering::SeqCst) < N {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("waiters never registered");
    assert_eq!(finished.load(Ordering::SeqCst), 0, "woke before the cancel");
    cancel.cancel();
    for t in tasks {
        let e = timeout(LIVENESS, t)
            .await
            .expect("a waiter was never woken")
            .unwrap();
        assert_eq!(e, Error::Canceled);
    }
    assert_eq!(finished.load(Ordering::SeqCst), N);
}

#[test]
fn waiters_on_a_local_pool_complete_after_one_cancel() {
    static ARENA: Arena<8> = Arena::new();
    let mut pool = LocalPool::new();
    let spawner = pool.spawner();
    let Child { ctx, cancel } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: child,
        cancel: _child_cancel,
    } = ctx.with_cancel().unwrap();
    let results = Arc::new(std::sync::Mutex::new(Vec::new()));
    for i in 0..1_000 {
        let c = if i % 2 == 0 {
            ctx.clone()
        } else {
            child.clone()
        };
        let results = results.clone();
        spawner
            .spawn_local(async move {
                let e = c.done().await;
                results.lock().unwrap().push(e);
            })
            .unwrap();
    }
    pool.run_until_stalled();
    assert!(
        results.lock().unwrap().is_empty(),
        "completed before the cancel"
    );
    // Cancel from a task of the same pool.
    spawner
        .spawn_local(async move {
            cancel.cancel();
        })
        .unwrap();
    pool.run_until_stalled();
    let got = results.lock().unwrap();
    assert_eq!(got.len(), 1_000);
    assert!(got.iter().all(|&e| e == Error::Canceled));
}

#[test]
fn block_on_threads_wake_on_a_cancel_from_another_thread() {
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    let ready = Arc::new(Barrier::new(9));
    let (tx, rx) = mpsc::channel();
    for _ in 0..8 {
        let (ctx, ready, tx) = (ctx.clone(), ready.clone(), tx.clone());
        thread::spawn(move || {
            ready.wait();
            tx.send(block_on(ctx.done())).unwrap();
        });
    }
    ready.wait();
    thread::sleep(Duration::from_millis(20));
    cancel.cancel();
    for _ in 0..8 {
        assert_eq!(rx.recv_timeout(LIVENESS), Ok(Error::Canceled));
    }
}

// ---------------------------------------------------------------------------------------------
// Races: cancel while registering, drop while cancelling
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_racing_registration_never_hangs() {
    for round in 0..500 {
        let Child { ctx, cancel } = background().with_cancel().unwrap();
        let go = Arc::new(tokio::sync::Barrier::new(9));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (ctx, go) = (ctx.clone(), go.clone());
            tasks.push(tokio::spawn(async move {
                go.wait().await;
                ctx.done().await
            }));
        }
        let canceller = tokio::spawn(async move {
            go.wait().await;
            if round % 3 == 0 {
                tokio::task::yield_now().await;
            }
            cancel.cancel();
        });
        for t in tasks {
            let e = timeout(LIVENESS, t)
                .await
                .unwrap_or_else(|_| panic!("round {round}: a waiter hung"))
                .unwrap();
            assert_eq!(e, Error::Canceled);
        }
        canceller.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parent_cancel_racing_child_registration_never_hangs() {
    // Waiters on descendants (a value context and a cancel child) while the root is cancelled.
    static K: ctxtree::HeapKey<u32> = ctxtree::HeapKey::new("k");
    for round in 0..300 {
        let Child { ctx: root, cancel } = background().with_cancel().unwrap();
        let Child {
            ctx: mid,
            cancel: _mid_cancel,
        } = root.with_cancel().unwrap();
        let leaf = mid.with_value(&K, round).unwrap();
        let go = Arc::new(tokio::sync::Barrier::new(5));
        let mut tasks = Vec::new();
        for i in 0..4 {
            let c = if i % 2 == 0 {
                mid.clone()
            } else {
                leaf.clone()
            };
            let go = go.clone();
            tasks.push(tokio::spawn(async move {
                go.wait().await;
                c.done().await
            }));
        }
        go.wait().await;
        cancel.cancel();
        for t in tasks {
            let e = timeout(LIVENESS, t)
                .await
                .unwrap_or_else(|_| panic!("round {round}: a waiter hung"))
                .unwrap();
            assert_eq!(e, Error::Canceled);
        }
    }
}

#[test]
fn block_on_registration_racing_cancel_on_threads_never_hangs() {
    for round in 0..300 {
        let Child { ctx, cancel } = background().with_cancel().unwrap();
        let go = Arc::new(Barrier::new(4));
        let (tx, rx) = mpsc::channel();
        for _ in 0..3 {
            let (ctx, go, tx) = (ctx.clone(), go.clone(), tx.clone());
            thread::spawn(move || {
                go.wait();
                tx.send(block_on(ctx.done())).unwrap();
            });
        }
        go.wait();
        cancel.cancel();
        for _ in 0..3 {
            assert_eq!(
                rx.recv_timeout(LIVENESS),
                Ok(Error::Canceled),
                "round {round}: a waiter hung"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_half_the_pending_waiters_leaves_the_rest_working() {
    const N: usize = 2_000;
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    let registered = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let (ctx, registered) = (ctx.clone(), registered.clone());
            tokio::spawn(async move {
                let mut done = pin!(ctx.done());
                assert!(poll_once(&mut done).await.is_pending());
                registered.fetch_add(1, Ordering::SeqCst);
                done.await
            })
        })
        .collect();
    timeout(LIVENESS, async {
        while registered.load(Ordering::SeqCst) < N {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("waiters never registered");
    // Abort every other task: their pending `Done` futures are dropped (deregistered).
    let mut kept = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if i % 2 == 0 {
            t.abort();
            assert!(
                timeout(LIVENESS, t)
                    .await
                    .unwrap()
                    .unwrap_err()
                    .is_cancelled()
            );
        } else {
            kept.push(t);
        }
    }
    cancel.cancel();
    for t in kept {
        let e = timeout(LIVENESS, t)
            .await
            .expect("a kept waiter hung")
            .unwrap();
        assert_eq!(e, Error::Canceled);
    }
}

#[test]
fn dropped_waiters_are_never_woken_and_kept_ones_are_woken_once() {
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    let mut futs: Vec<_> = (0..200).map(|_| Box::pin(ctx.done())).collect();
    let mut wakers = Vec::new();
    for f in &mut futs {
        let (count, waker) = counting_waker();
        assert!(
            f.as_mut()
                .poll(&mut TaskCx::from_waker(&waker))
                .is_pending()
        );
        wakers.push(count);
    }
    // Drop the even ones.
    let mut kept = Vec::new();
    for (i, f) in futs.into_iter().enumerate() {
        if i % 2 == 1 {
            kept.push((f, wakers[i].clone()));
        }
    }
    cancel.cancel();
    for (i, w) in wakers.iter().enumerate() {
        let want = usize::from(i % 2 == 1);
        assert_eq!(w.0.load(Ordering::SeqCst), want, "waker {i}");
    }
    let noop = Waker::noop();
    for (mut f, _) in kept {
        assert_eq!(
            f.as_mut().poll(&mut TaskCx::from_waker(noop)),
            Poll::Ready(Error::Canceled)
        );
    }
}

#[test]
fn repolling_with_a_new_waker_wakes_only_the_latest() {
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    let mut fut = Box::pin(ctx.done());
    let (first, w1) = counting_waker();
    let (second, w2) = counting_waker();
    assert!(fut.as_mut().poll(&mut TaskCx::from_waker(&w1)).is_pending());
    assert!(fut.as_mut().poll(&mut TaskCx::from_waker(&w2)).is_pending());
    cancel.cancel();
    assert_eq!(first.0.load(Ordering::SeqCst), 0);
    assert_eq!(second.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        fut.as_mut().poll(&mut TaskCx::from_waker(&w2)),
        Poll::Ready(Error::Canceled)
    );
}

#[test]
fn dropping_waiters_on_other_threads_while_cancelling_is_safe() {
    for _ in 0..200 {
        let Child { ctx, cancel } = background().with_cancel().unwrap();
        let go = Arc::new(Barrier::new(5));
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let (ctx, go) = (ctx.clone(), go.clone());
                thread::spawn(move || {
                    let (count, waker) = counting_waker();
                    let mut futs: Vec<_> = (0..16).map(|_| Box::pin(ctx.done())).collect();
                    for f in &mut futs {
                        let _ = f.as_mut().poll(&mut TaskCx::from_waker(&waker));
                    }
                    go.wait();
                    if i % 2 == 0 {
                        drop(futs);
                        None
                    } else {
                        // Keep them: each must complete.
                        let limit = StdInstant::now() + LIVENESS;
                        for mut f in futs {
                            loop {
                                match f.as_mut().poll(&mut TaskCx::from_waker(&waker)) {
                                    Poll::Ready(e) => {
                                        assert_eq!(e, Error::Canceled);
                                        break;
                                    }
                                    Poll::Pending => {
                                        assert!(StdInstant::now() < limit, "never completed");
                                        thread::yield_now();
                                    }
                                }
                            }
                        }
                        Some(count.0.load(Ordering::SeqCst))
                    }
                })
            })
            .collect();
        go.wait();
        cancel.cancel();
        for h in hs {
            if let Some(wakes) = h.join().unwrap() {
                assert!(wakes <= 16, "woken {wakes} times for 16 futures");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deadlines: the timer thread wakes waiting tasks
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deadline_wakes_awaiting_tokio_tasks_on_time() {
    let Child {
        ctx,
        cancel: _cancel,
    } = background()
        .with_timeout(Duration::from_millis(50))
        .unwrap();
    let dl = std_deadline(&ctx);
    let Child {
        ctx: child,
        cancel: _cc,
    } = ctx.with_cancel().unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let c = if i % 2 == 0 {
                ctx.clone()
            } else {
                child.clone()
            };
            tokio::spawn(async move {
                let e = c.done().await;
                (e, StdInstant::now())
            })
        })
        .collect();
    drop((ctx, child));
    for t in tasks {
        let (e, at) = timeout(LIVENESS, t)
            .await
            .expect("deadline never woke the task")
            .unwrap();
        assert_eq!(e, Error::DeadlineExceeded);
        assert!(at >= dl, "woke {:?} before the deadline", dl - at);
    }
}

#[test]
fn deadline_wakes_block_on_without_any_executor_timer() {
    // `block_on` has no timer: only ctxtree's timer thread can wake it.
    let Child {
        ctx,
        cancel: _cancel,
    } = background()
        .with_timeout(Duration::from_millis(40))
        .unwrap();
    let dl = std_deadline(&ctx);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let e = block_on(ctx.done());
        tx.send((e, StdInstant::now())).unwrap();
    });
    let (e, at) = rx
        .recv_timeout(LIVENESS)
        .expect("deadline never woke block_on");
    assert_eq!(e, Error::DeadlineExceeded);
    assert!(at >= dl);
}

#[test]
fn manual_clock_deadline_wakes_a_waiter_through_expire() {
    // The firmware path: no timer thread, the arena's `expire` fires the deadline.
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static ARENA: Arena<4> = Arena::new().with_clock(&CLOCK);
    let Child { ctx, cancel: _c } = ARENA
        .background()
        .with_timeout(Duration::from_millis(5))
        .unwrap();
    let mut fut = Box::pin(ctx.done());
    let (count, waker) = counting_waker();
    assert!(
        fut.as_mut()
            .poll(&mut TaskCx::from_waker(&waker))
            .is_pending()
    );
    CLOCK.advance(4);
    let _ = ARENA.expire(ARENA.now().unwrap());
    assert_eq!(count.0.load(Ordering::SeqCst), 0);
    CLOCK.advance(1);
    assert_eq!(ARENA.expire(ARENA.now().unwrap()), None);
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        fut.as_mut().poll(&mut TaskCx::from_waker(&waker)),
        Poll::Ready(Error::DeadlineExceeded)
    );
}

// ---------------------------------------------------------------------------------------------
// run_until_done
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_until_done_returns_ok_when_the_future_wins() {
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let got = ctx
        .run_until_done(async move {
            let _flag = flag;
            tokio::time::sleep(Duration::from_millis(10)).await;
            42
        })
        .await;
    assert_eq!(got, Ok(42));
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(ctx.err(), None);
    // A later cancel changes nothing about the finished run.
    cancel.cancel();
    assert_eq!(got, Ok(42));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_until_done_returns_canceled_and_drops_the_future() {
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let started = Arc::new(tokio::sync::Notify::new());
    let (flag, s) = (DropFlag(dropped.clone()), started.clone());
    let runner = tokio::spawn(async move {
        ctx.run_until_done(async move {
            let _flag = flag;
            s.notify_one();
            std::future::pending::<()>().await;
        })
        .await
    });
    timeout(LIVENESS, started.notified()).await.unwrap();
    assert!(!dropped.load(Ordering::SeqCst));
    cancel.cancel();
    let got = timeout(LIVENESS, runner)
        .await
        .expect("never cut short")
        .unwrap();
    assert_eq!(got, Err(Error::Canceled));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the inner future was not dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_until_done_returns_deadline_exceeded_at_the_deadline() {
    let Child {
        ctx,
        cancel: _cancel,
    } = background()
        .with_timeout(Duration::from_millis(40))
        .unwrap();
    let dl = std_deadline(&ctx);
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let got = timeout(
        LIVENESS,
        ctx.run_until_done(async move {
            let _flag = flag;
            // Longer than the deadline, shorter than the liveness bound.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }),
    )
    .await
    .expect("deadline never cut the future short");
    assert_eq!(got, Err(Error::DeadlineExceeded));
    assert!(StdInstant::now() >= dl);
    assert!(dropped.load(Ordering::SeqCst));
}

#[test]
fn run_until_done_on_a_done_context_wins_over_a_ready_future() {
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    cancel.cancel();
    let polled = Arc::new(AtomicBool::new(false));
    let p = polled.clone();
    let got = block_on(ctx.run_until_done(async move {
        p.store(true, Ordering::SeqCst);
        1
    }));
    assert_eq!(got, Err(Error::Canceled));
    assert!(!polled.load(Ordering::SeqCst), "the future was polled");
}

#[test]
fn run_until_done_nests_with_child_contexts_on_a_local_pool() {
    static ARENA: Arena<8> = Arena::new();
    let mut pool = LocalPool::new();
    let Child {
        ctx: outer,
        cancel: cancel_outer,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: inner,
        cancel: _cancel_inner,
    } = outer.with_cancel().unwrap();
    let result = Arc::new(std::sync::Mutex::new(None));
    let r = result.clone();
    pool.spawner()
        .spawn_local(async move {
            let got = outer
                .run_until_done(async { inner.run_until_done(std::future::pending::<u8>()).await })
                .await;
            *r.lock().unwrap() = Some(got);
        })
        .unwrap();
    pool.run_until_stalled();
    assert!(result.lock().unwrap().is_none());
    cancel_outer.cancel();
    pool.run_until_stalled();
    // Both are done; the outer context is checked first.
    assert_eq!(*result.lock().unwrap(), Some(Err(Error::Canceled)));
}

// ---------------------------------------------------------------------------------------------
// Contexts that can never be done
// ---------------------------------------------------------------------------------------------

#[test]
fn done_on_background_never_completes() {
    static K: ctxtree::HeapKey<u8> = ctxtree::HeapKey::new("k");
    let noop = Waker::noop();
    let mut cx = TaskCx::from_waker(noop);
    let bg = background();
    let val = bg.with_value(&K, 1).unwrap();
    let Child {
        ctx: cancelled,
        cancel,
    } = bg.with_cancel().unwrap();
    let detached = cancelled.without_cancel().unwrap();
    cancel.cancel();
    for ctx in [&bg, &ctxtree::todo(), &val, &detached] {
        let mut fut = pin!(ctx.done());
        for _ in 0..3 {
            assert!(fut.as_mut().poll(&mut cx).is_pending(), "{ctx} completed");
        }
        // run_until_done on such a context is just the future.
        assert_eq!(block_on(ctx.run_until_done(async { 5 })), Ok(5));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn done_on_background_stays_pending_under_tokio() {
    let bg = background();
    assert!(
        timeout(Duration::from_millis(50), bg.done()).await.is_err(),
        "Background's done() completed"
    );
}
