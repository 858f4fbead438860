//! async: a future that completes when a context is done, and a future guarded by a context.
//!
//! Both work under any executor, `no_std` included: no allocation, no executor dependency, no
//! arena node per waiter (the waiter lives inside the future; see [`crate::waiters`]).
//!
//! A deadline wakes a waiting task on time only if someone fires it: with `std`, the timer
//! thread of the global arena; on firmware, the arena's [`expire`](crate::RawArena::expire),
//! called from a timer (the arena's deadline hook says when the next one is due). A sketch in
//! embassy's terms (embassy is not a dependency, so it is not compiled here):
//!
//! ```text
//! // An embassy-style expiry task: sleep until the next deadline, expire, repeat.
//! #[embassy_executor::task]
//! async fn expiry() {
//!     loop {
//!         let next = ARENA.expire(now());
//!         match next {
//!             Some(at) => select(Timer::at(to_embassy(at)), DEADLINE_ADDED.wait()).await,
//!             None => DEADLINE_ADDED.wait().await, // signalled by the arena's deadline hook
//!         };
//!     }
//! }
//! ```

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context as TaskCx, Poll};

use crate::Error;
use crate::context::Context;
use crate::waiters::{self, Waiter};

/// Completes with the context's [`Error`] when it is done. Returned by [`Context::done`].
///
/// Dropping a pending `Done` unregisters it. A `Done` on a context that can never be done
/// (Background, `without_cancel`) never completes, as receiving from Go's nil `Done()` channel.
#[must_use = "futures do nothing unless polled"]
pub struct Done<'c, 'a> {
    ctx: &'c Context<'a>,
    waiter: Waiter,
    watched: bool,
}

impl<'a> Context<'a> {
    /// A future that completes when this context is done, with its error (Go: `<-ctx.Done()`).
    ///
    /// Any number of tasks may await the same context; each future holds its own waiter, so
    /// waiting costs no arena node.
    ///
    /// ```
    /// use ctxtree::{Child, Arena, Error};
    /// static ARENA: Arena<4> = Arena::new();
    /// let Child { ctx, cancel } = ARENA.background().with_cancel()?;
    /// cancel.cancel();
    /// assert_eq!(futures::executor::block_on(ctx.done()), Error::Canceled);
    /// # Ok::<(), ctxtree::CreateError>(())
    /// ```
    pub fn done(&self) -> Done<'_, 'a> {
        Done {
            ctx: self,
            waiter: Waiter::new(),
            watched: false,
        }
    }

    /// Runs `fut` until it completes (`Ok`) or this context is done first (`Err`, and `fut` is
    /// dropped) — the `select!` one otherwise writes by hand. A context already done when first
    /// polled wins over a future that would complete at once.
    ///
    /// ```
    /// use ctxtree::{Child, Arena, Error};
    /// static ARENA: Arena<4> = Arena::new();
    /// let Child { ctx, cancel } = ARENA.background().with_cancel()?;
    /// assert_eq!(futures::executor::block_on(ctx.run_until_done(async { 7 })), Ok(7));
    /// cancel.cancel();
    /// let never = core::future::pending::<()>();
    /// assert_eq!(futures::executor::block_on(ctx.run_until_done(never)), Err(Error::Canceled));
    /// # Ok::<(), ctxtree::CreateError>(())
    /// ```
    pub fn run_until_done<F: Future>(&self, fut: F) -> RunUntilDone<'_, 'a, F> {
        RunUntilDone {
            done: self.done(),
            fut,
        }
    }
}

/// [`Done`] that owns a handle on its context instead of borrowing it. Returned by
/// [`Context::done_owned`]: `'static` whenever the context is, so it can be spawned or stored.
///
/// Dropping a pending `DoneOwned` unregisters it, then drops its handle.
#[must_use = "futures do nothing unless polled"]
pub struct DoneOwned<'a> {
    ctx: Context<'a>,
    waiter: Waiter,
    watched: bool,
}

impl<'a> Context<'a> {
    /// [`done`](Context::done) on a clone of this handle: a future that owns what it waits on,
    /// `'static` and `Send` whenever the context is `'static` (tokio-util's
    /// `cancelled_owned`). Costs one reference count, no allocation.
    ///
    /// A `Context<'static>` comes from a `static` [`Arena`](crate::Arena), the global arena
    /// (`ctxtree::background()`, `std`), or a [`HeapArena`](https://docs.rs/ctxtree/latest/ctxtree/struct.HeapArena.html) made `'static`
    /// with `HeapArena::leak` (`alloc`).
    ///
    /// ```
    /// use ctxtree::{Child, Arena, Error};
    /// static ARENA: Arena<4> = Arena::new();
    /// let rt = tokio::runtime::Runtime::new().unwrap();
    /// let Child { ctx, cancel } = ARENA.background().with_cancel()?;
    /// let task = rt.spawn(ctx.done_owned()); // `ctx` stays here; the task owns a clone
    /// drop(ctx);
    /// cancel.cancel();
    /// assert_eq!(rt.block_on(task).unwrap(), Error::Canceled);
    /// # Ok::<(), ctxtree::CreateError>(())
    /// ```
    pub fn done_owned(&self) -> DoneOwned<'a> {
        DoneOwned {
            ctx: self.clone(),
            waiter: Waiter::new(),
            watched: false,
        }
    }

    /// [`run_until_done`](Context::run_until_done) on a clone of this handle: `'static` and
    /// `Send` whenever the context and `fut` are (tokio-util's `run_until_cancelled_owned`).
    ///
    /// ```
    /// use ctxtree::{Child, Arena, Error};
    /// static ARENA: Arena<4> = Arena::new();
    /// let rt = tokio::runtime::Runtime::new().unwrap();
    /// let Child { ctx, cancel } = ARENA.background().with_cancel()?;
    /// let quick = rt.spawn(ctx.run_until_done_owned(async { 7 }));
    /// assert_eq!(rt.block_on(quick).unwrap(), Ok(7));
    /// let stuck = rt.spawn(ctx.run_until_done_owned(std::future::pending::<()>()));
    /// cancel.cancel();
    /// assert_eq!(rt.block_on(stuck).unwrap(), Err(Error::Canceled));
    /// # Ok::<(), ctxtree::CreateError>(())
    /// ```
    pub fn run_until_done_owned<F: Future>(&self, fut: F) -> RunUntilDoneOwned<'a, F> {
        RunUntilDoneOwned {
            done: self.done_owned(),
            fut,
        }
    }
}

impl DoneOwned<'_> {
    /// The context this future waits on.
    pub fn context(&self) -> &Context<'_> {
        &self.ctx
    }
}

impl Future for DoneOwned<'_> {
    type Output = Error;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Error> {
        // SAFETY: nothing is moved out of `self`; the waiter stays pinned in place.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: `this.waiter` is pinned inside this future and deregistered in its `Drop`,
        // which runs before the fields (`ctx` among them) are dropped.
        unsafe { poll_done(&this.ctx, &this.waiter, &mut this.watched, cx) }
    }
}

impl Drop for DoneOwned<'_> {
    fn drop(&mut self) {
        // Before `self.ctx` is dropped (fields drop after this): the node is still pinned.
        deregister(&self.ctx, &self.waiter);
    }
}

impl fmt::Debug for DoneOwned<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DoneOwned")
            .field("context", &format_args!("{}", self.ctx))
            .finish()
    }
}

/// [`RunUntilDone`] that owns a handle on its context. Returned by
/// [`Context::run_until_done_owned`].
#[must_use = "futures do nothing unless polled"]
pub struct RunUntilDoneOwned<'a, F> {
    done: DoneOwned<'a>,
    fut: F,
}

impl<F: Future> Future for RunUntilDoneOwned<'_, F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning: neither field is ever moved out of the pinned struct.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: both fields are pinned because `self` is (structural pinning, never moved).
        let (fut, done) = unsafe {
            (
                Pin::new_unchecked(&mut this.fut),
                Pin::new_unchecked(&mut this.done),
            )
        };
        poll_guarded(fut, done, cx)
    }
}

impl<F> fmt::Debug for RunUntilDoneOwned<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunUntilDoneOwned")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Future for Done<'_, '_> {
    type Output = Error;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Error> {
        // SAFETY: nothing is moved out of `self`; the waiter stays pinned in place.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: `this.waiter` is pinned inside this future and deregistered in its `Drop`.
        unsafe { poll_done(this.ctx, &this.waiter, &mut this.watched, cx) }
    }
}

impl Drop for Done<'_, '_> {
    fn drop(&mut self) {
        deregister(self.ctx, &self.waiter);
    }
}

/// The poll of [`Done`] and [`DoneOwned`]: ready with the error once `ctx` is done, otherwise
/// registers `waiter` on the canceller node that decides it.
///
/// # Safety
/// `waiter` is pinned (it never moves until [`deregister`] has been called with the same
/// `ctx`), and is only ever registered on the node of this same `ctx`.
unsafe fn poll_done(
    ctx: &Context<'_>,
    waiter: &Waiter,
    watched: &mut bool,
    cx: &mut TaskCx<'_>,
) -> Poll<Error> {
    if let Some(e) = ctx.err() {
        return Poll::Ready(e);
    }
    let Some(src) = ctx.src_slot() else {
        // A context that can never be done.
        return Poll::Pending;
    };
    let node = ctx.arena.node(src);
    // SAFETY: the waiter is pinned, always registered on the same node, and deregistered before
    // it moves or is freed (the caller's contract).
    match unsafe { waiters::register(node.wait_list(), &node.head, waiter, cx.waker()) } {
        Poll::Ready(()) => {
            // ORDERING: Acquire: registration returns ready only once `DONE` is published.
            let w = node.head.load(crate::sync::Ordering::Acquire);
            Poll::Ready(w.err())
        }
        Poll::Pending => {
            if !*watched {
                *watched = true;
                ctx.watch();
            }
            Poll::Pending
        }
    }
}

/// Takes `waiter` off `ctx`'s wait list if it is on it (the `Drop` of both `Done` futures).
fn deregister(ctx: &Context<'_>, waiter: &Waiter) {
    if let Some(src) = ctx.src_slot() {
        waiters::deregister(ctx.arena.node(src).wait_list(), waiter);
    }
}

impl fmt::Debug for Done<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Done")
            .field("context", &format_args!("{}", self.ctx))
            .finish()
    }
}

/// A future that is cut short when its context is done. Returned by
/// [`Context::run_until_done`].
#[must_use = "futures do nothing unless polled"]
pub struct RunUntilDone<'c, 'a, F> {
    done: Done<'c, 'a>,
    fut: F,
}

impl<F: Future> Future for RunUntilDone<'_, '_, F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning: neither field is ever moved out of the pinned struct.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: both fields are pinned because `self` is (structural pinning, never moved).
        let (fut, done) = unsafe {
            (
                Pin::new_unchecked(&mut this.fut),
                Pin::new_unchecked(&mut this.done),
            )
        };
        poll_guarded(fut, done, cx)
    }
}

impl<F> fmt::Debug for RunUntilDone<'_, '_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunUntilDone")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// The poll of [`RunUntilDone`] and [`RunUntilDoneOwned`]: done already wins; else the guarded
/// future; else wait for done (which registers the waker, so a cancel wakes the task).
fn poll_guarded<F: Future, D: GuardDone>(
    fut: Pin<&mut F>,
    mut done: Pin<&mut D>,
    cx: &mut TaskCx<'_>,
) -> Poll<Result<F::Output, Error>> {
    if let Some(e) = done.as_mut().context().err() {
        return Poll::Ready(Err(e));
    }
    if let Poll::Ready(v) = fut.poll(cx) {
        return Poll::Ready(Ok(v));
    }
    done.poll(cx).map(Err)
}

/// A done-future that knows its context: [`Done`] and [`DoneOwned`].
trait GuardDone: Future<Output = Error> {
    fn context(self: Pin<&mut Self>) -> &Context<'_>;
}

impl GuardDone for Done<'_, '_> {
    fn context(self: Pin<&mut Self>) -> &Context<'_> {
        self.into_ref().get_ref().ctx
    }
}

impl GuardDone for DoneOwned<'_> {
    fn context(self: Pin<&mut Self>) -> &Context<'_> {
        &self.into_ref().get_ref().ctx
    }
}
