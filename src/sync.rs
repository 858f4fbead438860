//! The only module that names an atomics implementation.
//!
//! Everything else in the crate imports atomics, cells and the spin hint from here, so
//! that the very same code is shipped (on `portable-atomic`, which supplies compare-and-swap on
//! targets without it) and model-checked (on `loom`, under `--cfg ctxtree_loom`).
//!
//! `UnsafeCell` is wrapped so both backends share loom's closure API (`with` / `with_mut`): under
//! loom every plain-field access is checked for data races against the atomics' happens-before.

#[cfg(not(ctxtree_loom))]
pub(crate) use portable_atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicUsize};

#[cfg(ctxtree_loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicUsize};

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
