//! The only module that names an atomics implementation.
//!
//! Everything else in the crate imports atomics, fences, cells and the spin hint from here, so
//! that the very same code is shipped (on `portable-atomic`, which supplies compare-and-swap on
//! targets without it) and model-checked (on `loom`, under `--cfg ctxtree_loom`).
//!
//! `UnsafeCell` is wrapped so both backends share loom's closure API (`with` / `with_mut`): under
//! loom every plain-field access is checked for data races against the atomics' happens-before.

#[cfg(not(ctxtree_loom))]
pub(crate) use portable_atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicUsize, fence};

#[cfg(ctxtree_loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicUsize, fence};

pub(crate) use core::sync::atomic::Ordering;

/// An `UnsafeCell` with loom's closure-based access API.
#[cfg(not(ctxtree_loom))]
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(ctxtree_loom))]
impl<T> UnsafeCell<T> {
    #[inline(always)]
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a pointer for reading.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a pointer for writing.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(ctxtree_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// Called in the few retry loops that wait for another thread's short, bounded step (the
/// waiter-list lock taken by registration). Never called on a cancel path.
#[inline]
pub(crate) fn spin_wait() {
    #[cfg(ctxtree_loom)]
    loom::thread::yield_now();
    #[cfg(all(not(ctxtree_loom), feature = "std"))]
    ::std::thread::yield_now();
    #[cfg(all(not(ctxtree_loom), not(feature = "std")))]
    core::hint::spin_loop();
}

/// Runs `f` so that nothing else on this core can preempt it: a critical section on `no_std`
/// targets (where a higher-priority task could otherwise spin on a lock held by the task it
/// preempted), a plain call on `std` and under loom.
#[inline]
pub(crate) fn no_preempt<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(all(not(ctxtree_loom), not(feature = "std")))]
    {
        critical_section::with(|_| f())
    }
    #[cfg(any(ctxtree_loom, feature = "std"))]
    {
        f()
    }
}

/// The waiter-list drain, as [`install_drain`] and [`call_drain`] pass it.
pub(crate) type Drain = for<'a, 'b> fn(crate::waiters::WaitList<'a>, &'b mut crate::unwind::Panics);

/// The drain installed by the first `done()` registration, or null: `crate::waiters`, "Critical
/// sections". A `core` atomic (load and store only, which every target has), not a
/// `portable-atomic` one: nothing but those two operations is needed.
#[cfg(all(not(ctxtree_loom), not(feature = "std")))]
static DRAIN: core::sync::atomic::AtomicPtr<()> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// Installs the drain, before a registrant sets `WAITERS`. Every call stores the same pointer.
#[inline]
pub(crate) fn install_drain(drain: Drain) {
    #[cfg(all(not(ctxtree_loom), not(feature = "std")))]
    // ORDERING: Release, though the registrant's AcqRel compare-and-swap that sets `WAITERS`
    // (sequenced after this store) already publishes it to the canceller that sees the bit.
    DRAIN.store(drain as *mut (), Ordering::Release);
    #[cfg(any(ctxtree_loom, feature = "std"))]
    let _ = drain;
}

/// Calls the installed drain (`no_std`), or `direct` (`std`, loom: no critical section there,
/// so nothing to keep out of the binary).
#[inline]
pub(crate) fn call_drain(
    list: crate::waiters::WaitList<'_>,
    panics: &mut crate::unwind::Panics,
    direct: Drain,
) {
    #[cfg(all(not(ctxtree_loom), not(feature = "std")))]
    {
        let _ = direct;
        // ORDERING: Acquire pairs with the Release in `install_drain`; the caller's AcqRel
        // compare-and-swap that saw `WAITERS` already ordered it after the installation.
        let p = DRAIN.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: a non-null `DRAIN` was stored from a `Drain` by `install_drain`.
            let drain = unsafe { core::mem::transmute::<*mut (), Drain>(p) };
            drain(list, panics);
        }
    }
    #[cfg(any(ctxtree_loom, feature = "std"))]
    direct(list, panics);
}

/// The Acquire half of a reference count's last release: called by the thread whose Release
/// decrement of `count` reached 0, it makes every earlier holder's accesses (each released by
/// its own Release decrement, all in one release sequence) happen before what follows — the
/// teardown, as in `Arc::drop`.
///
/// A `fence(Acquire)` does that at no cost on x86 (a compiler fence) and one barrier elsewhere.
/// ThreadSanitizer does not model fences and would report every teardown as a race, so a build
/// for it (`--cfg ctxtree_tsan`, set by `ci/sanitizers.sh`) uses an Acquire load of the count
/// instead, as std's `Arc` does under `cfg(sanitize = "thread")`. The load is not free: it
/// costs about 4% of `CancelTree` (162 ns vs 169 ns per create-and-cancel, measured), which is
/// why it is not the default.
#[inline(always)]
pub(crate) fn acquire_released(count: &AtomicU32) {
    #[cfg(ctxtree_tsan)]
    {
        // ORDERING: Acquire: reads the value written by the last decrement of the release
        // sequence (see above).
        let _ = count.load(Ordering::Acquire);
    }
    #[cfg(not(ctxtree_tsan))]
    {
        let _ = count;
        // ORDERING: Acquire fence: pairs with the Release decrements (see above).
        fence(Ordering::Acquire);
    }
}
