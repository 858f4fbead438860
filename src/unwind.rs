//! Panics in user code: finish the operation, then resume the first panic.
//!
//! ctxtree runs user code in the middle of its own work: `after_func` callbacks and wakers
//! during a cancel, a heap value's or a heap cause's `Drop` during a release, a cause's
//! `Display` during a dump, a [`Clock`](crate::Clock) and a deadline hook around deadlines. A
//! panic there must not cut that work short: a half-done cancel would leave descendants
//! uncancelled and wake-ups lost, and an interrupted release would leak a slot and the
//! references it holds on its ancestors, for good.
//!
//! So every call into user code inside an operation goes through one [`Panics`] accumulator,
//! as .NET's `CancellationTokenSource.Cancel` runs every callback:
//! * with `std`, [`Panics::run`] is `catch_unwind`: the first payload is kept, later ones are
//!   dropped, and the operation carries on; at its very end (every node cancelled, every
//!   waker woken, every reference released) [`Panics::resume`] resumes the first panic with
//!   `resume_unwind`. A resume while the thread is already unwinding (a drop during unwinding)
//!   drops the payload instead of aborting the process. `catch_unwind` costs nothing unless a
//!   panic happens (landing pads; no allocation, no atomic); an accumulator is one `Option` on
//!   the stack.
//! * without `std` there is no `catch_unwind`. Firmware normally builds with `panic = "abort"`
//!   (or a panic handler that halts), and then nothing unwinds. Where a `no_std` build does
//!   unwind (`cfg(panic = "unwind")`), [`Panics::run`] arms a guard that turns a panic escaping
//!   user code into a second panic during unwinding, which aborts: a tree is never left
//!   half-cancelled, with a slot or a lock held, by an unwind that someone then catches.
//!
//! Operations take an accumulator (`cancel_tree_in`, `release_in`, `unlink_in`, `publish`,
//! `fire`, `waiters::drain_in`, `expire_from_in`) so that a caller holding references finishes
//! with them before the resume; the plain forms (`release`, `cancel_tree`, `expire_from`) make
//! their own and resume at the end of their work, complete by then. An unlink releases the
//! predecessors it steps on through its caller's accumulator: one of them may be freed there
//! (another thread unlinked and released it meanwhile), running its drops mid-unlink.

#[cfg(feature = "std")]
use ::std::boxed::Box;

/// The first panic of an operation's user-code calls (see the module docs).
#[must_use = "an accumulated panic is lost unless `resume` is called"]
pub(crate) struct Panics {
    #[cfg(feature = "std")]
    first: Option<Box<dyn core::any::Any + Send + 'static>>,
}

impl core::fmt::Debug for Panics {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        #[cfg(feature = "std")]
        let caught = self.first.is_some();
        #[cfg(not(feature = "std"))]
        let caught = false;
        f.debug_struct("Panics").field("caught", &caught).finish()
    }
}

impl Panics {
    /// An accumulator with nothing caught yet.
    #[inline(always)]
    pub(crate) const fn new() -> Self {
        Panics {
            #[cfg(feature = "std")]
            first: None,
        }
    }

    /// Runs user code `f`; if it panics, keeps the payload (the first one) and returns.
    #[inline(always)]
    pub(crate) fn run(&mut self, f: impl FnOnce()) {
        let _ = self.call(f);
    }

    /// Runs user code `f` and returns its result, or `None` (keeping the payload) if it panicked.
    #[inline(always)]
    pub(crate) fn call<R>(&mut self, f: impl FnOnce() -> R) -> Option<R> {
        #[cfg(feature = "std")]
        {
            match ::std::panic::catch_unwind(core::panic::AssertUnwindSafe(f)) {
                Ok(r) => Some(r),
                Err(payload) => {
                    self.keep(payload);
                    None
                }
            }
        }
        #[cfg(not(feature = "std"))]
        {
            let guard = AbortOnUnwind;
            let r = f();
            core::mem::forget(guard);
            Some(r)
        }
    }

    #[cfg(feature = "std")]
    #[cold]
    #[inline(never)]
    fn keep(&mut self, payload: Box<dyn core::any::Any + Send + 'static>) {
        if self.first.is_none() {
            self.first = Some(payload);
        } else {
            discard(payload);
        }
    }

    /// Ends the operation: resumes the first panic caught, if any (dropped instead if this
    /// thread is already unwinding, where resuming would abort).
    #[inline(always)]
    pub(crate) fn resume(self) {
        #[cfg(feature = "std")]
        if let Some(payload) = self.first {
            resume_cold(payload);
        }
    }
}

#[cfg(feature = "std")]
#[cold]
#[inline(never)]
fn resume_cold(payload: Box<dyn core::any::Any + Send + 'static>) {
    if ::std::thread::panicking() {
        discard(payload);
    } else {
        ::std::panic::resume_unwind(payload);
    }
}

/// Drops a panic payload that will not be resumed; a payload whose own drop panics is leaked.
#[cfg(feature = "std")]
fn discard(payload: Box<dyn core::any::Any + Send + 'static>) {
    if let Err(again) = ::std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| drop(payload)))
    {
        core::mem::forget(again);
    }
}

/// Without `std`: a panic unwinding out of user code panics again in this drop, which aborts
/// (a panic during unwinding cannot unwind). Forgotten on the normal path, so it costs nothing.
#[cfg(not(feature = "std"))]
struct AbortOnUnwind;

#[cfg(not(feature = "std"))]
impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        #[cfg(panic = "unwind")]
        panic!(
            "ctxtree: user code panicked inside an operation, and without `std` it cannot be caught and the operation finished: aborting"
        );
    }
}
