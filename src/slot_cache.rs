//! Per-thread free-slot caches (`std`): a thread that frees a slot and then creates a context in
//! the same arena reuses the slot without a read-modify-write on shared memory.
//!
//! Without a cache, every node costs two compare-and-swaps on the arena's free stack: one to
//! take its slot (`pop`), one to give it back (`push`). With one, a thread keeps up to
//! [`MAX_CACHED`] freed slots on a private chain (linked through the nodes' `next` words, as on
//! the free stack) and takes its next slots from there: plain loads and stores on a cache line
//! that only it writes.
//!
//! # Which arenas
//! A cache holds slots of one arena, named by address, and may hold them for as long as its
//! thread lives; a thread that exits returns them to the arena. Both are sound only if the arena
//! is never dropped (and another built at its address) while a cache names it: so only arenas
//! known to be `'static` are cached. The global arena of `std` is one;
//! [`RawArena::enable_thread_caches`](crate::RawArena::enable_thread_caches) takes
//! `&'static self` and turns caching on for any other (a `static` `Arena<N>`, a leaked
//! `HeapArena`): the borrow is the proof that the arena outlives every cache.
//!
//! # Nothing lost
//! Any thread may *steal* a cache: an allocation that finds the free stack empty and the arena's
//! tail used up sweeps every cache ([`Registry::sweep`]) and moves the chains of its arena to the
//! free stack before it reports `ArenaFull`. So a slot that sits in some cache for the whole of a
//! failing allocation is always found; the refusal is as exact as without caches, up to slots
//! freed while it ran. A thread's exit returns its chain (a thread-local destructor); where that
//! destructor never runs (the process is exiting, or the platform skips it), the chain stays
//! stealable.
//!
//! # Statistics and bounds
//! `stats().live` stays exact: a cached slot's count is 0, as a slot on the free stack's is.
//! `high_water` can exceed the peak by the slots other threads hold in their caches (a growing
//! arena takes new slots from its tail before it steals). At most [`RECORDS`] threads have a
//! cache at once; later ones use the free stack. A thread that only frees (a consumer, the
//! timer thread of `std`) keeps at most [`MAX_CACHED`] slots from the others.
//!
//! # The owner and the thief (asymmetric Dekker)
//! The owner takes and gives slots inside a short critical section, without a read-modify-write:
//!
//! ```text
//! owner: busy = 1; light fence; if steal != 0 { busy = 0; use the free stack } ... ; busy = 0
//! thief: CAS steal 0 → 1;  heavy fence;  wait until busy == 0;  take the chain;  steal = 0
//! ```
//!
//! This is Dekker's handshake: at least one side must see the other's flag, which needs a full
//! (StoreLoad) barrier on *both* sides. The owner's side is only a compiler fence; the thief's
//! heavy fence is Linux's `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, which makes every
//! running thread of the process execute a full barrier before it returns (a thread that is not
//! running has been through a context switch, a full barrier too). So for each critical section
//! of the owner, either it began before that barrier point, and the thief sees `busy == 1` and
//! waits for it (or sees its `busy == 0` and everything it wrote); or it began after, and then
//! it loads `steal` after the barrier, sees the thief's 1, and keeps off the chain. This is the
//! scheme of liburcu's and folly's asymmetric fences; the thief's side is the rare one (an arena
//! otherwise full). Under loom and Miri, both fences are `fence(SeqCst)`, the symmetric
//! handshake that loom checks (`loom-tests/slot_cache_steal.rs`); on targets without
//! `membarrier` there are no caches.
//!
//! The expedited barrier needs the process registered for it, and registering costs a kernel
//! grace period (10-20 ms measured on the 2-vCPU dev VM). Turning caches on only *queries* the
//! kernel; the first thief registers, before it claims any cache. So no thread's first context
//! pays for it (an earlier version registered at the first claim, and a 20 ms `with_timeout`
//! created first in a process could expire before its next line ran). Where registration fails
//! after all, the thief falls back to the global barrier (`MEMBARRIER_CMD_GLOBAL`), and where
//! that fails too it touches no chain and reports what it moved (nothing lost that a later
//! sweep cannot find; the allocation reports `ArenaFull`).
//!
//! A critical section is a handful of loads and stores, or, when a chain moves to the free stack
//! (full, of another arena, or at thread exit), that one lock-free compare-and-swap loop: no
//! user code, no wait. A thief waits only for one in progress (spinning with `yield_now`); a
//! chain is never in transit out of its sight. An owner re-entered on its own
//! thread (a signal handler that frees or creates a context while the thread was inside) finds
//! `busy` already set and uses the free stack.
//!
//! # Generations
//! The free stack's ABA tag protects its own compare-and-swaps, which a cache changes nothing
//! about: a chain moves to the stack in one tagged compare-and-swap ([`RawArena::push_chain`]).
//! The chain itself is only ever changed under the handshake's mutual exclusion, so no stale
//! reader can act on it.

use core::ptr;

use crate::arena::{ArenaRef, RawArena};
use crate::node::Node;
use crate::state::{Link, Slot};
use crate::sync::{self, AtomicPtr, AtomicU8, AtomicU32, Ordering};

/// The most slots a cache holds (64 KiB of nodes): freeing one more moves the chain to the free
/// stack (one compare-and-swap for the whole chain). Bounds what a thread that only frees keeps
/// from the others, and what a growing arena may allocate beyond its peak
/// (`ArenaStats::high_water`). A thread that frees a chain of up to this many nodes and builds
/// it again (Go's `CancelTree` up to depth 1000) does it all from its cache; beyond, each
/// further node takes its slot from the free stack.
pub(crate) const MAX_CACHED: u32 = 1024;

/// How many threads have a cache at once; later threads use the free stack.
#[cfg(not(ctxtree_loom))]
pub(crate) const RECORDS: usize = 128;
#[cfg(ctxtree_loom)]
pub(crate) const RECORDS: usize = 2;

/// A thin arena pointer, as caches name their arena.
type Thin = *mut RawArena<[Node; 0]>;

/// One thread's cache: written by its owner, inside critical sections, and by a thief holding
/// `steal` once the owner is out of its critical section.
#[cfg_attr(target_pointer_width = "64", repr(align(64)))]
pub(crate) struct Cache {
    /// A thread owns this record.
    claimed: AtomicU8,
    /// The owner is inside a critical section.
    busy: AtomicU8,
    /// A thief holds the record: the owner keeps off the chain.
    steal: AtomicU8,
    /// The arena the chain's slots belong to (null: none yet).
    arena: AtomicPtr<RawArena<[Node; 0]>>,
    /// The chain's first and last slots (`Link` bits; `head` NIL: empty), and its length.
    head: AtomicU32,
    tail: AtomicU32,
    len: AtomicU32,
}

/// Every cache, so that an allocator can sweep them.
pub(crate) struct Registry {
    recs: [Cache; RECORDS],
}

/// The thin pointer of `arena`.
#[inline(always)]
fn thin(arena: &RawArena) -> Thin {
    (arena as *const RawArena)
        .cast::<RawArena<[Node; 0]>>()
        .cast_mut()
}

/// The arena a cache names.
///
/// # Safety
/// `p` is non-null and was stored by `Cache::give` from an arena with caching enabled: a
/// `'static` one (see "Which arenas").
#[inline]
unsafe fn arena_of(p: Thin) -> &'static RawArena {
    // SAFETY: per the contract, `p` is the thin pointer of a `'static` arena, which is what
    // `ArenaRef::from_raw` asks (its `slots_len` was recorded when the arena was first used).
    unsafe { ArenaRef::from_raw(p) }.get()
}

impl Cache {
    crate::state::const_unless_loom! {
        /// An unclaimed, empty cache.
        fn new() -> Cache {
            Cache {
                claimed: AtomicU8::new(0),
                busy: AtomicU8::new(0),
                steal: AtomicU8::new(0),
                arena: AtomicPtr::new(ptr::null_mut()),
                head: AtomicU32::new(0),
                tail: AtomicU32::new(0),
                len: AtomicU32::new(0),
            }
        }
    }

    /// Enters the owner's critical section; false if a thief holds the cache (or the owner is
    /// already inside, re-entered by a signal handler).
    #[inline(always)]
    fn enter(&self) -> bool {
        // ORDERING: Relaxed: only this thread writes `busy` to 1.
        if self.busy.load(Ordering::Relaxed) != 0 {
            return false;
        }
        // ORDERING: Relaxed store, then the light fence: the owner's half of the handshake (see
        // "The owner and the thief"); the thief's heavy fence supplies the StoreLoad order.
        self.busy.store(1, Ordering::Relaxed);
        light_fence();
        // ORDERING: Acquire pairs with the thief's Release store of 0 after it took the chain:
        // the owner then sees the chain as the thief left it.
        if self.steal.load(Ordering::Acquire) != 0 {
            self.exit();
            return false;
        }
        true
    }

    /// Leaves the critical section.
    #[inline(always)]
    fn exit(&self) {
        // ORDERING: Release pairs with the thief's Acquire load of `busy`: the chain and the
        // nodes' `next` words written inside are visible to a thief that takes the chain.
        self.busy.store(0, Ordering::Release);
    }

    /// Takes a slot of `arena` from the chain (the owner).
    #[inline]
    pub(crate) fn take(&self, arena: &RawArena) -> Option<Slot> {
        if !self.enter() {
            return None;
        }
        // ORDERING (these loads and stores): Relaxed: inside the critical section the owner
        // has the chain to itself (the handshake orders a thief's accesses).
        let mut got = None;
        // (No `let` chain: the MSRV is 1.87.)
        let top = if self.arena.load(Ordering::Relaxed) == thin(arena) {
            Link::from_bits(self.head.load(Ordering::Relaxed)).slot()
        } else {
            None
        };
        if let Some(slot) = top {
            // ORDERING: Relaxed: only the owner links slots into its chain (`give`, on this
            // thread).
            let below = arena.node(slot).next.load(Ordering::Relaxed).link();
            self.head.store(below.to_bits(), Ordering::Relaxed);
            self.len
                .store(self.len.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
            got = Some(slot);
        }
        self.exit();
        got
    }

    /// Puts `slot` of `arena` on the chain (the owner); false if the caller must push it on the
    /// free stack itself. A full chain, or one of another arena, goes to its arena's stack.
    #[inline]
    pub(crate) fn give(&self, arena: &RawArena, slot: Slot) -> bool {
        if !self.enter() {
            return false;
        }
        // ORDERING (these loads and stores): Relaxed, as in `take`.
        let me = thin(arena);
        let held = self.arena.load(Ordering::Relaxed);
        let head = Link::from_bits(self.head.load(Ordering::Relaxed));
        let len = self.len.load(Ordering::Relaxed);
        let below = if head.is_nil() || held != me || len >= MAX_CACHED {
            // A chain of another arena, or a full one, goes to its arena's free stack first,
            // inside the critical section: a thief that waits for it finds the slots there
            // (never in transit, out of both its sight and the stack's).
            if let (Some(first), Some(last)) = (
                head.slot(),
                Link::from_bits(self.tail.load(Ordering::Relaxed)).slot(),
            ) {
                // SAFETY: `held` was stored by `give` from an arena with caching enabled
                // (non-null: the chain is not empty).
                unsafe { arena_of(held) }.push_chain(first, last);
            }
            if held != me {
                // Record the slot count in the header (`ArenaRef::new`), which `arena_of`
                // reads back: a cache may be the first to name the arena by thin pointer.
                let _ = ArenaRef::new(arena);
                self.arena.store(me, Ordering::Relaxed);
            }
            self.tail.store(Link::to(slot).to_bits(), Ordering::Relaxed);
            self.len.store(1, Ordering::Relaxed);
            Link::NIL
        } else {
            self.len.store(len + 1, Ordering::Relaxed);
            head
        };
        arena.node(slot).next.set_free(below);
        self.head.store(Link::to(slot).to_bits(), Ordering::Relaxed);
        self.exit();
        true
    }

    /// Takes the chain as a thief holding `steal`, the owner being out of its critical section:
    /// moves it to its arena's free stack if that is `arena`. True if it moved slots.
    ///
    /// `own`: this is the calling thread's own cache. If the thread is inside its critical
    /// section (a signal handler allocating while the code it interrupted was in `take` or
    /// `give`), waiting would never end: the cache is left alone then.
    fn drain(&self, arena: &RawArena, own: bool) -> bool {
        // ORDERING: Acquire pairs with the owner's Release in `exit`: its chain and `next`
        // words are visible. The owner cannot enter again while we hold `steal` (handshake).
        while self.busy.load(Ordering::Acquire) != 0 {
            if own {
                return false;
            }
            sync::spin_wait();
        }
        // ORDERING (these loads and stores): Relaxed: ordered by the Acquire above, and by
        // our Release of `steal` for the owner's next critical section.
        let mut moved = false;
        // (No `let` chain: the MSRV is 1.87.)
        let ends = if self.arena.load(Ordering::Relaxed) == thin(arena) {
            Link::from_bits(self.head.load(Ordering::Relaxed))
                .slot()
                .zip(Link::from_bits(self.tail.load(Ordering::Relaxed)).slot())
        } else {
            None
        };
        if let Some((first, last)) = ends {
            self.head.store(Link::NIL.to_bits(), Ordering::Relaxed);
            self.len.store(0, Ordering::Relaxed);
            arena.push_chain(first, last);
            moved = true;
        }
        moved
    }

    /// Returns the chain to its arena and frees the record (the owner's thread exits).
    pub(crate) fn retire(&self) {
        loop {
            if self.enter() {
                // ORDERING (these loads and stores): Relaxed, as in `take`.
                let held = self.arena.load(Ordering::Relaxed);
                let head = Link::from_bits(self.head.load(Ordering::Relaxed));
                let last = Link::from_bits(self.tail.load(Ordering::Relaxed));
                if let (Some(first), Some(last)) = (head.slot(), last.slot()) {
                    // SAFETY: as in `give`. Inside the critical section, as there.
                    unsafe { arena_of(held) }.push_chain(first, last);
                }
                self.head.store(Link::NIL.to_bits(), Ordering::Relaxed);
                self.len.store(0, Ordering::Relaxed);
                self.exit();
                break;
            }
            // A thief is at the chain: it leaves it empty, or holding another arena's slots,
            // which we then return ourselves. Wait without touching `busy`, which the thief
            // waits on (retrying `enter` would keep setting it).
            // ORDERING: Relaxed: `enter` re-reads `steal` with Acquire.
            while self.steal.load(Ordering::Relaxed) != 0 {
                sync::spin_wait();
            }
        }
        // ORDERING: Release pairs with the Acquire of the next `claim`: our last writes to the
        // record happen-before its next owner's.
        self.claimed.store(0, Ordering::Release);
    }
}

impl Registry {
    /// No caches claimed.
    #[cfg(not(ctxtree_loom))]
    pub(crate) const fn new() -> Registry {
        Registry {
            recs: [const { Cache::new() }; RECORDS],
        }
    }

    /// No caches claimed.
    #[cfg(ctxtree_loom)]
    pub(crate) fn new() -> Registry {
        Registry {
            recs: core::array::from_fn(|_| Cache::new()),
        }
    }

    /// Claims a free record for the calling thread (once per thread); `None` if all are taken.
    pub(crate) fn claim(&self) -> Option<&Cache> {
        self.recs.iter().find(|c| {
            // ORDERING: Acquire on success pairs with `retire`'s Release; Relaxed on failure:
            // nothing read.
            c.claimed
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })
    }

    /// Moves every cached slot of `arena` to its free stack (an allocation that found the arena
    /// otherwise full). True if it moved any.
    ///
    /// Every record is stolen in rounds: claim each `steal` flag that is free, one heavy fence
    /// for the round, then drain each and let it go; a record another thief holds is retried in
    /// the next round (that thief may be sweeping another arena). Lock-free but for the waits
    /// on an owner's critical section in progress, or on another thief's round.
    ///
    /// `own` is the calling thread's cache, if it has one (see [`Cache::drain`]).
    pub(crate) fn sweep(&self, arena: &RawArena, own: Option<&Cache>) -> bool {
        // Registers for the heavy fence before claiming any cache (the first time: a kernel
        // grace period, milliseconds), so that owners are kept off their caches only for the
        // barrier itself.
        prepare_heavy_fence();
        let mut moved = false;
        let mut pending = [true; RECORDS];
        loop {
            let mut held = [false; RECORDS];
            let mut any = false;
            for (i, c) in self.recs.iter().enumerate() {
                // ORDERING: Acquire on success pairs with the previous thief's Release of 0:
                // its drain happens-before ours. Relaxed on failure: retried next round.
                if pending[i]
                    && c.steal
                        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    held[i] = true;
                    pending[i] = false;
                    any = true;
                }
            }
            if any {
                // Without the barrier no chain may be touched: give the claims back and report
                // what moved so far (the kernel offered `membarrier` when the caches were
                // turned on, so this is a kernel that took it back: see `membarrier`).
                let fenced = heavy_fence();
                for (i, c) in self.recs.iter().enumerate() {
                    if held[i] {
                        if fenced {
                            moved |= c.drain(arena, own.is_some_and(|o| ptr::eq(o, c)));
                        }
                        // ORDERING: Release pairs with the owner's Acquire in `enter`.
                        c.steal.store(0, Ordering::Release);
                    }
                }
                if !fenced {
                    return moved;
                }
            }
            if !pending.contains(&true) {
                return moved;
            }
            sync::spin_wait();
        }
    }
}

/// The owner's half of the handshake: a compiler fence, paired with the thief's `membarrier`.
#[inline(always)]
fn light_fence() {
    // ORDERING: SeqCst: the owner's StoreLoad point between its `busy = 1` and its load of
    // `steal`. The compiler fence keeps the two in program order; the thief's `membarrier`
    // makes that point a full barrier whenever a thief needs it. Under loom and Miri, which
    // cannot model `membarrier`, a real fence on both sides (the symmetric handshake).
    #[cfg(any(ctxtree_loom, miri))]
    sync::fence(Ordering::SeqCst);
    #[cfg(not(any(ctxtree_loom, miri)))]
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
}

/// The thief's half: a full barrier on every running thread of the process. False if no such
/// barrier could be issued (then the thief must not touch any chain).
#[must_use]
fn heavy_fence() -> bool {
    // ORDERING: SeqCst: the thief's own StoreLoad barrier between its claim of `steal` and its
    // loads of `busy` (all it takes under loom and Miri, where the owner's fence is SeqCst too).
    sync::fence(Ordering::SeqCst);
    #[cfg(not(any(ctxtree_loom, miri)))]
    return membarrier::all_threads();
    #[cfg(any(ctxtree_loom, miri))]
    return true;
}

/// Readies [`heavy_fence`] (registers the process for it, once), outside any claim.
fn prepare_heavy_fence() {
    #[cfg(not(any(ctxtree_loom, miri)))]
    membarrier::register();
}

/// Whether caches can be used on this platform: the kernel offers the heavy fence. Cheap (one
/// `membarrier` query, once per process); the registration the fence needs, which costs a
/// grace period of the kernel (10-20 ms measured here), is left to the first thief.
#[cfg(not(ctxtree_loom))]
pub(crate) fn supported() -> bool {
    #[cfg(miri)]
    return true;
    #[cfg(not(miri))]
    return membarrier::supported();
}

#[cfg(not(any(ctxtree_loom, miri)))]
mod membarrier {
    //! Linux's `membarrier(2)`, the one heavy fence used here; elsewhere there are no caches.

    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    mod imp {
        use core::ffi::{c_int, c_long};
        use std::sync::OnceLock;

        #[cfg(target_arch = "x86_64")]
        const SYS_MEMBARRIER: c_long = 324;
        #[cfg(target_arch = "aarch64")]
        const SYS_MEMBARRIER: c_long = 283;
        const CMD_QUERY: c_int = 0;
        const CMD_GLOBAL: c_int = 1;
        const CMD_PRIVATE_EXPEDITED: c_int = 1 << 3;
        const CMD_REGISTER_PRIVATE_EXPEDITED: c_int = 1 << 4;

        unsafe extern "C" {
            // The C library's `syscall(2)` wrapper (std links the C library on Linux).
            fn syscall(num: c_long, ...) -> c_long;
        }

        fn membarrier(cmd: c_int) -> c_long {
            // SAFETY: `membarrier(cmd, flags = 0, cpu_id = 0)` reads and writes no memory of
            // ours, whatever the command.
            unsafe { syscall(SYS_MEMBARRIER, cmd, 0 as c_int, 0 as c_int) }
        }

        /// The commands the kernel supports (`MEMBARRIER_CMD_QUERY`), once; 0 if it has no
        /// `membarrier` (older than 4.3) or a seccomp filter refuses it.
        fn commands() -> c_int {
            static COMMANDS: OnceLock<c_int> = OnceLock::new();
            *COMMANDS.get_or_init(|| c_int::try_from(membarrier(CMD_QUERY)).unwrap_or(0).max(0))
        }

        /// Whether a heavy fence is available: private expedited barriers (Linux 4.14), with
        /// the global barrier as the thief's fallback. A query only: no registration here, so a
        /// thread's first context pays no grace period.
        pub(crate) fn supported() -> bool {
            let c = commands();
            c & CMD_PRIVATE_EXPEDITED != 0 && c & CMD_REGISTER_PRIVATE_EXPEDITED != 0
        }

        /// Registers the process for private expedited barriers, once (a kernel grace
        /// period); whether that worked.
        pub(crate) fn register() -> bool {
            static REGISTERED: OnceLock<bool> = OnceLock::new();
            *REGISTERED.get_or_init(|| membarrier(CMD_REGISTER_PRIVATE_EXPEDITED) == 0)
        }

        /// A full barrier on every running thread of this process. The first call registers
        /// the process for private expedited barriers (a kernel grace period: milliseconds,
        /// paid by the first thief, on the rare path of an otherwise full arena). Where that
        /// fails, the global barrier (slower, no registration needed); false if neither can be
        /// issued.
        pub(crate) fn all_threads() -> bool {
            if register() && membarrier(CMD_PRIVATE_EXPEDITED) == 0 {
                return true;
            }
            commands() & CMD_GLOBAL != 0 && membarrier(CMD_GLOBAL) == 0
        }
    }

    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    mod imp {
        /// No heavy fence here: no caches.
        pub(crate) fn supported() -> bool {
            false
        }

        /// Nothing to register.
        pub(crate) fn register() -> bool {
            false
        }

        /// Never called (no cache is ever claimed).
        pub(crate) fn all_threads() -> bool {
            false
        }
    }

    pub(crate) use imp::{all_threads, register, supported};
}

// ---------------------------------------------------------------------------------------------
// The calling thread's cache (std).
// ---------------------------------------------------------------------------------------------

#[cfg(all(feature = "std", not(ctxtree_loom)))]
pub(crate) use local::{REGISTRY, mine};

#[cfg(all(feature = "std", not(ctxtree_loom)))]
mod local {
    use core::cell::Cell;

    use super::{Cache, Registry, supported};

    /// Every thread's cache.
    pub(crate) static REGISTRY: Registry = Registry::new();

    /// The thread's record: `None` until first used, then `Some(None)` if it got none.
    struct Mine(Cell<Option<Option<&'static Cache>>>);

    impl Drop for Mine {
        fn drop(&mut self) {
            if let Some(Some(c)) = self.0.get() {
                c.retire();
            }
        }
    }

    ::std::thread_local! {
        static MINE: Mine = const { Mine(Cell::new(None)) };
    }

    /// The calling thread's cache; `None` once its thread-local is destroyed (a destructor of
    /// another thread-local freeing a context at thread exit), or if it has none.
    #[inline]
    pub(crate) fn mine() -> Option<&'static Cache> {
        MINE.try_with(|m| match m.0.get() {
            Some(c) => c,
            None => {
                let c = if supported() { REGISTRY.claim() } else { None };
                m.0.set(Some(c));
                c
            }
        })
        .ok()
        .flatten()
    }
}

#[cfg(all(test, not(ctxtree_loom)))]
mod tests {
    use super::{Cache, Registry};
    use crate::Arena;
    use crate::sync::Ordering;

    #[test]
    fn a_sweep_from_inside_the_own_critical_section_leaves_that_cache_alone() {
        // A signal handler that finds the arena full while the code it interrupted was inside
        // `take` or `give`: the sweep must not wait for itself.
        static ARENA: Arena<1> = Arena::new();
        let r = Registry::new();
        let c = r.claim().unwrap();
        let s = ARENA.alloc_shared(|| {}).unwrap();
        assert!(c.give(&ARENA, s));
        // ORDERING: Relaxed: one thread.
        c.busy.store(1, Ordering::Relaxed);
        assert!(
            !r.sweep(&ARENA, Some(c)),
            "the interrupted cache is skipped"
        );
        assert!(ARENA.alloc_shared(|| {}).is_none());
        // ORDERING: Relaxed: one thread.
        c.busy.store(0, Ordering::Relaxed);
        assert!(
            r.sweep(&ARENA, Some(c)),
            "outside, the own cache is drained too"
        );
        assert_eq!(ARENA.alloc_shared(|| {}), Some(s));
    }

    #[test]
    fn a_retired_record_is_claimed_again() {
        let r = Registry::new();
        let a: *const Cache = r.claim().unwrap();
        let b: *const Cache = r.claim().unwrap();
        assert_ne!(a, b);
        // SAFETY: `a` points into `r`, alive here.
        unsafe { &*a }.retire();
        assert_eq!(r.claim().map(|c| c as *const Cache), Some(a));
    }
}
