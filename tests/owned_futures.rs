//! `done_owned()` and `run_until_done_owned()`: futures that own a handle on their context, so
//! that they are `'static` and `Send` whenever the context is — spawned on tokio, or stored in a
//! `'static` place as an embassy task is.
//!
//! The `tokio_*` tests need tokio's runtime (and its timer); the others run under Miri too:
//! `cargo +nightly miri test --test owned_futures -- --skip tokio_`.

#![cfg(feature = "std")]

use ctxtree::Child;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::{Context as TaskCx, Poll, Waker};
use std::time::Duration;

use ctxtree::{Arena, Context, DoneOwned, Error, HeapArena, RunUntilDoneOwned, background};
use futures::executor::block_on;

/// Generous bound for "this must have completed by now".
const LIVENESS: Duration = Duration::from_secs(10);

fn assert_spawnable<T: Send + 'static>(_: &T) {}

fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut TaskCx::from_waker(Waker::noop()))
}

#[test]
fn owned_futures_of_static_contexts_are_static_and_send() {
    static ARENA: Arena<4> = Arena::new();
    let Child {
        ctx,
        cancel: _cancel,
    } = ARENA.background().with_cancel().unwrap();
    assert_spawnable(&ctx.done_owned());
    assert_spawnable(&ctx.run_until_done_owned(async { 1 }));
    let global = background();
    assert_spawnable(&global.done_owned());
    // Kept reachable from a static: a leaked arena is meant to live as long as the program.
    static LEAKED: OnceLock<&'static HeapArena> = OnceLock::new();
    let leaked: &'static HeapArena = LEAKED.get_or_init(|| HeapArena::with_capacity(2).leak());
    let Child {
        ctx: heap_ctx,
        cancel: _heap_cancel,
    } = leaked.background().with_cancel().unwrap();
    let fut: DoneOwned<'static> = heap_ctx.done_owned();
    drop(heap_ctx); // the future keeps its own handle
    assert_spawnable(&fut);
    assert_eq!(leaked.stats().live, 1);
    drop(fut);
    drop(_heap_cancel);
    assert_eq!(leaked.stats().live, 0);
}

#[test]
fn done_owned_completes_on_cancel_after_its_context_handle_is_gone() {
    static ARENA: Arena<4> = Arena::new();
    let Child { ctx, cancel } = ARENA.background().with_cancel().unwrap();
    let mut fut = pin!(ctx.done_owned());
    drop(ctx);
    assert!(poll_once(fut.as_mut()).is_pending());
    cancel.cancel();
    assert_eq!(poll_once(fut.as_mut()), Poll::Ready(Error::Canceled));
    assert_eq!(
        block_on(cancel.context().run_until_done_owned(async { 3 })),
        Err(Error::Canceled)
    );
}

#[test]
fn dropping_pending_owned_futures_leaves_live_at_baseline() {
    static ARENA: Arena<8> = Arena::new();
    let Child { ctx, cancel } = ARENA.background().with_cancel().unwrap();
    let baseline = ARENA.stats().live;
    for _ in 0..3 {
        let mut done = Box::pin(ctx.done_owned());
        assert!(poll_once(done.as_mut()).is_pending()); // registered on the node
        let mut run = Box::pin(ctx.run_until_done_owned(std::future::pending::<()>()));
        assert!(poll_once(run.as_mut()).is_pending());
        drop(done);
        drop(run);
        assert_eq!(ARENA.stats().live, baseline);
    }
    // The waiters are gone: the cancel wakes nobody stale, and everything is released.
    cancel.cancel();
    drop((ctx, cancel));
    assert_eq!(ARENA.stats().live, 0);
}

/// An embassy-style task: the future lives in `'static` storage that never moves, and is pinned
/// there with `Pin::static_mut` (as embassy's `TaskStorage` does), polled from outside.
struct Task<F> {
    fut: F,
}

#[test]
fn a_static_task_holds_an_owned_future() {
    static ARENA: Arena<4> = Arena::new();
    static FIRED: AtomicBool = AtomicBool::new(false);
    type Watchdog = Task<RunUntilDoneOwned<'static, std::future::Pending<()>>>;
    // `'static` storage reachable from a static (so nothing is reported leaked).
    static STORAGE: Mutex<Option<Pin<&'static mut Watchdog>>> = Mutex::new(None);

    async fn shutdown(ctx: Context<'static>) {
        let e = ctx.done_owned().await;
        assert_eq!(e, Error::Canceled);
        FIRED.store(true, Ordering::SeqCst);
    }

    let Child { ctx, cancel } = ARENA.background().with_cancel().unwrap();
    let task: &'static mut Watchdog = Box::leak(Box::new(Task {
        fut: ctx.run_until_done_owned(std::future::pending()),
    }));
    let mut slot = STORAGE.lock().unwrap();
    let pinned = slot.insert(Pin::static_mut(task));
    // SAFETY: structural pinning of `fut` in the never-moved task.
    let fut = unsafe { pinned.as_mut().map_unchecked_mut(|t| &mut t.fut) };
    assert!(poll_once(fut).is_pending());

    let mut other = Box::pin(shutdown(ctx));
    assert!(poll_once(other.as_mut()).is_pending());
    cancel.cancel();
    // SAFETY: as above.
    let fut = unsafe { pinned.as_mut().map_unchecked_mut(|t| &mut t.fut) };
    assert_eq!(poll_once(fut), Poll::Ready(Err(Error::Canceled)));
    assert_eq!(poll_once(other.as_mut()), Poll::Ready(()));
    assert!(FIRED.load(Ordering::SeqCst));
    drop(other);
    drop(cancel);
    // The stored future still holds its handle: the node stays until the task is dropped.
    assert_eq!(ARENA.stats().live, 1);
}

#[test]
fn tokio_spawned_owned_futures_complete_on_cancel() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    let done = rt.spawn(ctx.done_owned());
    let run = rt.spawn(ctx.run_until_done_owned(std::future::pending::<()>()));
    let quick = rt.spawn(ctx.run_until_done_owned(async { 5 }));
    drop(ctx);
    rt.block_on(async {
        assert_eq!(quick.await.unwrap(), Ok(5));
        tokio::time::sleep(Duration::from_millis(20)).await; // let both register
        cancel.cancel();
        let (d, r) = tokio::time::timeout(LIVENESS, async { (done.await, run.await) })
            .await
            .expect("woken by the cancel");
        assert_eq!(d.unwrap(), Error::Canceled);
        assert_eq!(r.unwrap(), Err(Error::Canceled));
    });
}

#[test]
fn tokio_spawned_owned_futures_complete_on_deadline_of_the_global_arena() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Child {
        ctx,
        cancel: _cancel,
    } = background()
        .with_timeout(Duration::from_millis(30))
        .unwrap();
    let done = rt.spawn(ctx.done_owned());
    let run = rt.spawn(ctx.run_until_done_owned(std::future::pending::<()>()));
    drop(ctx);
    rt.block_on(async {
        // Nobody polls the deadline: the global arena's timer thread wakes both tasks.
        let (d, r) = tokio::time::timeout(LIVENESS, async { (done.await, run.await) })
            .await
            .expect("woken by the timer thread");
        assert_eq!(d.unwrap(), Error::DeadlineExceeded);
        assert_eq!(r.unwrap(), Err(Error::DeadlineExceeded));
    });
}

#[test]
fn tokio_aborted_owned_futures_deregister() {
    static ARENA: Arena<4> = Arena::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Child { ctx, cancel } = ARENA.background().with_cancel().unwrap();
    let baseline = ARENA.stats().live;
    let done = rt.spawn(ctx.done_owned());
    let run = rt.spawn(ctx.run_until_done_owned(std::future::pending::<()>()));
    rt.block_on(async {
        tokio::task::yield_now().await; // both tasks poll and register
        done.abort();
        run.abort();
        assert!(done.await.unwrap_err().is_cancelled());
        assert!(run.await.unwrap_err().is_cancelled());
    });
    assert_eq!(ARENA.stats().live, baseline);
    drop((ctx, cancel));
    assert_eq!(ARENA.stats().live, 0);
}
