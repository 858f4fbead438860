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
    /// use ctxtree::{Arena, Error};
    /// static ARENA: Arena<4> = Arena::new();
    /// let (ctx, cancel) = ARENA.background().with_cancel()?;
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
    /// use ctxtree::{Arena, Error};
    /// static ARENA: Arena<4> = Arena::new();
    /// let (ctx, cancel) = ARENA.background().with_cancel()?;
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

impl Future for Done<'_, '_> {
    type Output = Error;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Error> {
        // SAFETY: nothing is moved out of `self`; the waiter stays pinned in place.
        let this = unsafe { self.get_unchecked_mut() };
        if let Some(e) = this.ctx.err() {
            return Poll::Ready(e);
        }
        let Some(src) = this.ctx.src.slot() else {
            // A context that can never be done.
            return Poll::Pending;
        };
        let node = this.ctx.arena.node(src);
        // SAFETY: the waiter is pinned inside this future, always registered on the same node,
        // and deregistered in `Drop`.
        match unsafe { waiters::register(node.wait_list(), &node.head, &this.waiter, cx.waker()) } {
            Poll::Ready(()) => {
                // ORDERING: Acquire: registration returns ready only once `DONE` is published.
                let w = node.head.load(crate::sync::Ordering::Acquire);
                Poll::Ready(w.err())
            }
            Poll::Pending => {
                if !this.watched {
                    this.watched = true;
                    this.ctx.watch();
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Done<'_, '_> {
    fn drop(&mut self) {
        if let Some(src) = self.ctx.src.slot() {
            waiters::deregister(self.ctx.arena.node(src).wait_list(), &self.waiter);
        }
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
        if let Some(e) = this.done.ctx.err() {
            return Poll::Ready(Err(e));
        }
        // SAFETY: `fut` is pinned because `self` is (structural pinning, never moved).
        if let Poll::Ready(v) = unsafe { Pin::new_unchecked(&mut this.fut) }.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        // SAFETY: as above, for `done`.
        unsafe { Pin::new_unchecked(&mut this.done) }
            .poll(cx)
            .map(Err)
    }
}

impl<F> fmt::Debug for RunUntilDone<'_, '_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunUntilDone")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
