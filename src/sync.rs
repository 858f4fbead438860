//! The only module that names an atomics implementation.
//!
//! Everything else in the crate imports atomics, fences, cells and the spin hint from here, so
//! that the very same code is shipped (on `portable-atomic`, which supplies compare-and-swap on
//! targets without it) and model-checked (on `loom`, under `--cfg ctxtree_loom`).
//!
//! `UnsafeCell` is wrapped so both backends share loom's closure API (`with` / `with_mut`): under
//! loom every plain-field access is checked for data races against the atomics' happens-before.

#[cfg(all(not(ctxtree_loom), not(ctxtree_count_rmw), not(ctxtree_compact)))]
pub(crate) use portable_atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicUsize, fence};

// The compact build (`--cfg ctxtree_compact`, which build.rs sets on bare-metal targets): the
// same atomics, with every integer read-modify-write called out of line (see [`compact`]):
// flash, not cycles, is what firmware counts.
#[cfg(all(not(ctxtree_loom), not(ctxtree_count_rmw), ctxtree_compact))]
pub(crate) use compact::{AtomicU8, AtomicU32, AtomicUsize};
#[cfg(all(not(ctxtree_loom), not(ctxtree_count_rmw), ctxtree_compact))]
pub(crate) use portable_atomic::{AtomicPtr, fence};

// The counting build (`--cfg ctxtree_count_rmw`, see [`rmw_count`]): the same atomics, each
// read-modify-write also counted per call site. Off by default, and then nothing of it exists.
#[cfg(all(not(ctxtree_loom), ctxtree_count_rmw))]
pub(crate) use portable_atomic::fence;
#[cfg(all(not(ctxtree_loom), ctxtree_count_rmw))]
pub(crate) use rmw_count::{AtomicPtr, AtomicU8, AtomicU32, AtomicUsize};
#[cfg(all(ctxtree_count_rmw, not(feature = "std")))]
compile_error!("`--cfg ctxtree_count_rmw` counts per thread and needs the `std` feature");

#[cfg(ctxtree_loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicUsize, fence};

// 64-bit atomics for the std timer's per-slot words (tick deadlines); not on every no_std target.
#[cfg(all(feature = "alloc", ctxtree_loom))]
pub(crate) use loom::sync::atomic::AtomicU64;
#[cfg(all(feature = "std", not(ctxtree_loom)))]
pub(crate) use portable_atomic::AtomicU64;

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

/// A function that a `no_std` binary reaches only through a pointer installed at run time, by
/// the first use that needs it, so that a binary that never makes that use links none of the
/// function's code (nor, for the waiter drain, a `critical-section` implementation). A `core`
/// atomic (load and store only, which every target has), not a `portable-atomic` one: nothing
/// but those two operations is needed. Every installation stores the same pointer.
#[cfg(all(not(ctxtree_loom), not(feature = "std")))]
struct LateFn(core::sync::atomic::AtomicPtr<()>);

#[cfg(all(not(ctxtree_loom), not(feature = "std")))]
impl LateFn {
    const fn new() -> Self {
        LateFn(core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()))
    }

    /// Installs `f`, a function pointer, before the first value that can lead a caller to it is
    /// published.
    #[inline]
    fn install(&self, f: *mut ()) {
        // ORDERING: Release, paired with the Acquire in `get`; each caller also reaches the
        // pointer through a publication made after the installation (see the call sites).
        self.0.store(f, Ordering::Release);
    }

    /// The installed pointer, or null.
    #[inline]
    fn get(&self) -> *mut () {
        // ORDERING: Acquire pairs with the Release in `install`.
        self.0.load(Ordering::Acquire)
    }
}

/// The waiter-list drain, as [`install_drain`] and [`call_drain`] pass it.
pub(crate) type Drain = for<'a, 'b> fn(crate::waiters::WaitList<'a>, &'b mut crate::unwind::Panics);

/// The drain installed by the first `done()` registration, or null: `crate::waiters`, "Critical
/// sections".
#[cfg(all(not(ctxtree_loom), not(feature = "std")))]
static DRAIN: LateFn = LateFn::new();

/// Installs the drain, before a registrant sets `WAITERS` (whose AcqRel compare-and-swap,
/// sequenced after this, publishes it too, to the canceller that sees the bit).
#[inline]
pub(crate) fn install_drain(drain: Drain) {
    #[cfg(all(not(ctxtree_loom), not(feature = "std")))]
    DRAIN.install(drain as *mut ());
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
        let p = DRAIN.get();
        if !p.is_null() {
            // SAFETY: a non-null `DRAIN` was stored from a `Drain` by `install_drain`.
            let drain = unsafe { core::mem::transmute::<*mut (), Drain>(p) };
            drain(list, panics);
        }
    }
    #[cfg(any(ctxtree_loom, feature = "std"))]
    direct(list, panics);
}

/// How a traversal fires a link registration (`crate::linked::fire_link`), as
/// [`install_fire_link`] and [`call_fire_link`] pass it.
pub(crate) type FireLink =
    for<'a, 'b> fn(&'a crate::node::Node, crate::tree::Rec, &'b mut crate::unwind::Panics);

/// `fire_link`, installed by the first `with_linked`, or null. A `no_std` firmware that never
/// links contexts then links none of that code (about 200 bytes of flash: `crate::linked`),
/// though every traversal can meet a link node.
#[cfg(all(not(ctxtree_loom), not(feature = "std")))]
static FIRE_LINK: LateFn = LateFn::new();

/// Installs `fire`, before a `Kind::Link` node is published (the Release store of its reference
/// count, sequenced after this, publishes it too, to any traversal that takes a reference).
#[inline]
pub(crate) fn install_fire_link(fire: FireLink) {
    #[cfg(all(not(ctxtree_loom), not(feature = "std")))]
    FIRE_LINK.install(fire as *mut ());
    #[cfg(any(ctxtree_loom, feature = "std"))]
    let _ = fire;
}

/// Fires the link registration `node` (the caller holds it) through the installed function
/// (`no_std`), or `direct` (`std`, loom).
#[inline]
pub(crate) fn call_fire_link(
    node: &crate::node::Node,
    rec: crate::tree::Rec,
    panics: &mut crate::unwind::Panics,
    direct: FireLink,
) {
    #[cfg(all(not(ctxtree_loom), not(feature = "std")))]
    {
        let _ = direct;
        let p = FIRE_LINK.get();
        if !p.is_null() {
            // SAFETY: a non-null `FIRE_LINK` was stored from a `FireLink` by
            // `install_fire_link`.
            let fire = unsafe { core::mem::transmute::<*mut (), FireLink>(p) };
            fire(node, rec, panics);
        }
    }
    #[cfg(any(ctxtree_loom, feature = "std"))]
    direct(node, rec, panics);
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

/// A layout-transparent wrapper `$name` of portable-atomic's `$name`: `new`, `load` and `store`
/// forwarded inline, `Debug`, and the read-modify-write methods given as `$rmw` — where the two
/// backends that use it differ (`rmw_count` counts each one; `compact` puts each out of line).
/// The invoking module imports `fmt` and `Ordering`.
#[allow(unused_macros)] // Only the `rmw_count` and compact builds use it.
macro_rules! forwarding_atomic {
    ($name:ident, $int:ty, { $($rmw:tt)* }) => {
        #[repr(transparent)]
        pub(crate) struct $name(portable_atomic::$name);

        #[allow(dead_code)] // Not every width uses every operation.
        impl $name {
            #[inline(always)]
            pub(crate) const fn new(v: $int) -> Self {
                Self(portable_atomic::$name::new(v))
            }
            #[inline(always)]
            pub(crate) fn load(&self, o: Ordering) -> $int {
                self.0.load(o)
            }
            #[inline(always)]
            pub(crate) fn store(&self, v: $int, o: Ordering) {
                self.0.store(v, o)
            }
            $($rmw)*
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
    };
}

/// Atomic read-modify-write accounting, compiled only under `--cfg ctxtree_count_rmw` (a
/// diagnostic build for `tests/rmw_count.rs`; never shipped, so not a public API).
///
/// The atomic types here wrap `portable-atomic`'s, layout-transparent, and forward every call;
/// each read-modify-write (`swap`, `compare_exchange*`, `fetch_*`) also adds one to a
/// per-thread counter keyed by its call site (`#[track_caller]`: the file and line in the crate
/// that issued it). Every attempt counts, a failed compare-and-swap too: it costs the same
/// locked instruction. Loads and stores are not counted (plain `mov`s on x86).
///
/// ```text
/// RUSTFLAGS="--cfg ctxtree_count_rmw" CARGO_TARGET_DIR=target/rmw \
///     cargo test --test rmw_count -- --nocapture
/// ```
#[cfg(all(ctxtree_count_rmw, not(ctxtree_loom), feature = "std"))]
pub mod rmw_count {
    use core::cell::RefCell;
    use core::fmt;
    use core::panic::Location;
    use core::sync::atomic::Ordering;
    use std::vec::Vec;

    /// One call site and how many read-modify-writes it issued on this thread since the last
    /// [`take`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Site {
        /// Source file, relative to the crate root (`src/tree.rs`).
        pub file: &'static str,
        /// Line of the read-modify-write call.
        pub line: u32,
        /// Calls issued.
        pub count: u64,
    }

    std::thread_local! {
        static SITES: RefCell<Vec<Site>> = const { RefCell::new(Vec::new()) };
    }

    #[track_caller]
    #[inline(always)]
    fn count() {
        let loc = Location::caller();
        // `try_with`: an atomic dropped during this thread's teardown is not counted.
        let _ = SITES.try_with(|s| {
            let mut s = s.borrow_mut();
            match s
                .iter_mut()
                .find(|x| x.line == loc.line() && x.file == loc.file())
            {
                Some(x) => x.count += 1,
                None => s.push(Site {
                    file: loc.file(),
                    line: loc.line(),
                    count: 1,
                }),
            }
        });
    }

    /// Clears this thread's counters.
    pub fn reset() {
        let _ = SITES.try_with(|s| s.borrow_mut().clear());
    }

    /// This thread's counters since the last [`reset`] or `take`, in the order the sites were
    /// first met; clears them.
    pub fn take() -> Vec<Site> {
        SITES
            .try_with(|s| core::mem::take(&mut *s.borrow_mut()))
            .unwrap_or_default()
    }

    macro_rules! int_atomic {
        ($name:ident, $int:ty) => {
            forwarding_atomic!($name, $int, {
                #[track_caller]
                #[inline(always)]
                pub(crate) fn swap(&self, v: $int, o: Ordering) -> $int {
                    count();
                    self.0.swap(v, o)
                }
                #[track_caller]
                #[inline(always)]
                pub(crate) fn compare_exchange(
                    &self,
                    c: $int,
                    n: $int,
                    s: Ordering,
                    f: Ordering,
                ) -> Result<$int, $int> {
                    count();
                    self.0.compare_exchange(c, n, s, f)
                }
                #[track_caller]
                #[inline(always)]
                pub(crate) fn compare_exchange_weak(
                    &self,
                    c: $int,
                    n: $int,
                    s: Ordering,
                    f: Ordering,
                ) -> Result<$int, $int> {
                    count();
                    self.0.compare_exchange_weak(c, n, s, f)
                }
                #[track_caller]
                #[inline(always)]
                pub(crate) fn fetch_add(&self, v: $int, o: Ordering) -> $int {
                    count();
                    self.0.fetch_add(v, o)
                }
                #[track_caller]
                #[inline(always)]
                pub(crate) fn fetch_sub(&self, v: $int, o: Ordering) -> $int {
                    count();
                    self.0.fetch_sub(v, o)
                }
                #[track_caller]
                #[inline(always)]
                pub(crate) fn fetch_or(&self, v: $int, o: Ordering) -> $int {
                    count();
                    self.0.fetch_or(v, o)
                }
                #[track_caller]
                #[inline(always)]
                pub(crate) fn fetch_and(&self, v: $int, o: Ordering) -> $int {
                    count();
                    self.0.fetch_and(v, o)
                }
                #[track_caller]
                #[inline(always)]
                pub(crate) fn fetch_max(&self, v: $int, o: Ordering) -> $int {
                    count();
                    self.0.fetch_max(v, o)
                }
            });
        };
    }

    int_atomic!(AtomicU8, u8);
    int_atomic!(AtomicU32, u32);
    int_atomic!(AtomicUsize, usize);

    #[repr(transparent)]
    pub(crate) struct AtomicPtr<T>(portable_atomic::AtomicPtr<T>);

    #[allow(dead_code)] // Kept whole, as for the integers.
    impl<T> AtomicPtr<T> {
        #[inline(always)]
        pub(crate) const fn new(p: *mut T) -> Self {
            Self(portable_atomic::AtomicPtr::new(p))
        }
        #[inline(always)]
        pub(crate) fn load(&self, o: Ordering) -> *mut T {
            self.0.load(o)
        }
        #[inline(always)]
        pub(crate) fn store(&self, p: *mut T, o: Ordering) {
            self.0.store(p, o)
        }
        #[track_caller]
        #[inline(always)]
        pub(crate) fn swap(&self, p: *mut T, o: Ordering) -> *mut T {
            count();
            self.0.swap(p, o)
        }
        #[track_caller]
        #[inline(always)]
        pub(crate) fn compare_exchange(
            &self,
            c: *mut T,
            n: *mut T,
            s: Ordering,
            f: Ordering,
        ) -> Result<*mut T, *mut T> {
            count();
            self.0.compare_exchange(c, n, s, f)
        }
        #[track_caller]
        #[inline(always)]
        pub(crate) fn compare_exchange_weak(
            &self,
            c: *mut T,
            n: *mut T,
            s: Ordering,
            f: Ordering,
        ) -> Result<*mut T, *mut T> {
            count();
            self.0.compare_exchange_weak(c, n, s, f)
        }
    }

    impl<T> fmt::Debug for AtomicPtr<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Debug::fmt(&self.0, f)
        }
    }
}

/// Integer atomics whose read-modify-writes are out-of-line functions, one per operation and
/// width: the compact build's backend (`--cfg ctxtree_compact`; build.rs sets it on bare-metal
/// targets).
///
/// Inlined, each compare-and-swap is a load-exclusive/store-exclusive retry loop between two
/// barriers on ARMv7-M (22 to 30 bytes), and an interrupts-off sequence on ARMv6-M, at every
/// call site the inliner reaches. Out of line, each call site is a branch-and-link and its
/// argument moves: the core API's flash on thumbv7em shrinks by about 200 bytes
/// (`ci/firmware.sh`), at the price of a call per read-modify-write (a few cycles on a
/// Cortex-M).
///
/// ORDERING: every out-of-line read-modify-write is `SeqCst`, stronger than or equal to any
/// ordering a call site asks for, so each site's own ordering argument (and its reason) still
/// holds: strengthening an ordering never removes a happens-before edge. On ARMv7-M a `SeqCst`
/// read-modify-write costs what an `AcqRel` one does (a barrier either side), and ARMv6-M's
/// interrupts-off sequence is sequentially consistent on a single core anyway. Loads and stores
/// stay inline, with their own orderings.
#[cfg(all(not(ctxtree_loom), not(ctxtree_count_rmw), ctxtree_compact))]
mod compact {
    use core::fmt;
    use core::sync::atomic::Ordering;

    const SC: Ordering = Ordering::SeqCst;

    macro_rules! int_atomic {
        ($name:ident, $int:ty) => {
            forwarding_atomic!($name, $int, {
                #[inline(never)]
                pub(crate) fn swap(&self, v: $int, _: Ordering) -> $int {
                    self.0.swap(v, SC)
                }
                #[inline(never)]
                fn cas(&self, c: $int, n: $int) -> Result<$int, $int> {
                    self.0.compare_exchange(c, n, SC, SC)
                }
                #[inline(always)]
                pub(crate) fn compare_exchange(
                    &self,
                    c: $int,
                    n: $int,
                    _: Ordering,
                    _: Ordering,
                ) -> Result<$int, $int> {
                    self.cas(c, n)
                }
                /// The strong form: never fails spuriously, which a weak one may.
                #[inline(always)]
                pub(crate) fn compare_exchange_weak(
                    &self,
                    c: $int,
                    n: $int,
                    _: Ordering,
                    _: Ordering,
                ) -> Result<$int, $int> {
                    self.cas(c, n)
                }
                #[inline(never)]
                pub(crate) fn fetch_add(&self, v: $int, _: Ordering) -> $int {
                    self.0.fetch_add(v, SC)
                }
                #[inline(never)]
                pub(crate) fn fetch_sub(&self, v: $int, _: Ordering) -> $int {
                    self.0.fetch_sub(v, SC)
                }
                #[inline(never)]
                pub(crate) fn fetch_or(&self, v: $int, _: Ordering) -> $int {
                    self.0.fetch_or(v, SC)
                }
                #[inline(never)]
                pub(crate) fn fetch_and(&self, v: $int, _: Ordering) -> $int {
                    self.0.fetch_and(v, SC)
                }
                #[inline(never)]
                pub(crate) fn fetch_max(&self, v: $int, _: Ordering) -> $int {
                    self.0.fetch_max(v, SC)
                }
            });
        };
    }

    int_atomic!(AtomicU8, u8);
    int_atomic!(AtomicU32, u32);
    int_atomic!(AtomicUsize, usize);
}
