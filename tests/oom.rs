//! Out of memory: an arena whose next page the allocator refuses returns
//! [`CreateError::ArenaFull`] instead of aborting the process, counts the refusal in
//! `stats().failed_allocs`, keeps its contexts working, and grows again once memory frees.
//!
//! The global allocator of this binary counts the bytes outstanding and, while a thread has
//! switched it on for itself (a const-initialised thread-local `Cell`, so the switch never
//! allocates), refuses any allocation on that thread that would take the outstanding total past
//! `LIMIT`. The harness's own allocations are never refused. The tests take `SERIAL` so that no
//! other test allocates or frees while one measures: the outstanding total is process-wide, and
//! every threshold below leaves a margin of half a page (32 KiB or more) either way.
//!
//! Before pages were allocated fallibly, each refusal below aborted this whole binary with
//! `memory allocation of … bytes failed`.

#![cfg(feature = "alloc")]

use ctxtree::Child;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use ctxtree::{CreateError, Error, HeapArena, Node};

struct Limited;

/// Bytes allocated and not yet freed, by every thread.
static OUTSTANDING: AtomicUsize = AtomicUsize::new(0);
/// A limited thread's allocation is refused if it would take `OUTSTANDING` past this.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Allocations refused so far.
static REFUSED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}

impl Limited {
    /// Whether an allocation of `size` bytes on this thread must be refused.
    fn refuse(size: usize) -> bool {
        // ORDERING: Relaxed throughout: the counters guard no other memory, and the tests that
        // read them run one at a time (`SERIAL`).
        let refuse = ON.try_with(Cell::get).unwrap_or(false)
            && OUTSTANDING.load(Ordering::Relaxed).saturating_add(size)
                > LIMIT.load(Ordering::Relaxed);
        if refuse {
            REFUSED.fetch_add(1, Ordering::Relaxed);
        }
        refuse
    }

    fn track(p: *mut u8, size: usize) -> *mut u8 {
        if !p.is_null() {
            OUTSTANDING.fetch_add(size, Ordering::Relaxed);
        }
        p
    }
}

// SAFETY: every block comes from the system allocator with the caller's layout and goes back to
// it with the same layout; a refusal returns null, which `GlobalAlloc` allows. The bookkeeping
// touches only atomics and a const-initialised thread-local `Cell` (no allocation, no
// re-entrancy). `realloc` keeps the default, which goes through `alloc` and `dealloc`.
unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract.
        Self::track(unsafe { System.alloc(layout) }, layout.size())
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract.
        Self::track(unsafe { System.alloc_zeroed(layout) }, layout.size())
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract; `p` came from `System` via `alloc`/`alloc_zeroed`.
        unsafe { System.dealloc(p, layout) };
        OUTSTANDING.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Limited = Limited;

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs the test alone and puts the limit back afterwards, even if it fails.
struct Alone {
    _serial: MutexGuard<'static, ()>,
}

fn alone() -> Alone {
    Alone {
        _serial: SERIAL.lock().unwrap_or_else(|p| p.into_inner()),
    }
}

impl Drop for Alone {
    fn drop(&mut self) {
        ON.with(|on| on.set(false));
        LIMIT.store(usize::MAX, Ordering::Relaxed);
    }
}

/// Sets the limit `headroom` bytes above what is outstanding now.
fn limit_headroom(headroom: usize) {
    let now = OUTSTANDING.load(Ordering::Relaxed);
    LIMIT.store(now + headroom, Ordering::Relaxed);
}

/// Runs `f` with the limit in force on this thread. Assertions stay outside `f`, so a failing
/// one can format its message.
fn limited<R>(f: impl FnOnce() -> R) -> R {
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            ON.with(|on| on.set(false));
        }
    }
    ON.with(|on| on.set(true));
    let _off = Off;
    f()
}

/// Whether a buffer of `bytes` can be allocated (and frees it).
fn try_alloc(bytes: usize) -> bool {
    Vec::<u8>::new().try_reserve_exact(bytes).is_ok()
}

fn refused() -> usize {
    REFUSED.load(Ordering::Relaxed)
}

/// Bytes of a growable arena's page `k` of `base << k` nodes.
fn page_bytes(base: usize, k: usize) -> usize {
    (base << k) * size_of::<Node>()
}

#[test]
fn the_limit_refuses_only_what_would_pass_the_threshold_and_only_while_switched_on() {
    let _alone = alone();
    limit_headroom(64 << 10);
    let before = refused();
    let (small, big) = limited(|| (try_alloc(16 << 10), try_alloc(128 << 10)));
    assert!(small, "an allocation under the threshold goes through");
    assert!(!big, "an allocation past the threshold is refused");
    assert_eq!(refused(), before + 1);
    // Switched off, the same allocation goes through.
    assert!(try_alloc(128 << 10));
    assert_eq!(refused(), before + 1);
}

#[test]
fn making_a_heap_arena_allocates_nothing() {
    let _alone = alone();
    limit_headroom(0);
    let before = refused();
    let (growing, fixed) = limited(|| (HeapArena::growable(), HeapArena::with_capacity(1000)));
    assert_eq!(
        refused(),
        before,
        "a constructor asked the allocator for memory"
    );
    assert_eq!((growing.capacity(), fixed.capacity()), (0, 0));
}

#[test]
fn growable_arena_refuses_a_page_it_cannot_get_with_arena_full_and_grows_once_memory_frees() {
    let _alone = alone();
    let arena = HeapArena::growable();
    // Fill pages 0..=3 (256 + 512 + 1024 + 2048 nodes): the next slot needs page 4, 4096 nodes.
    let full = 256 * 15;
    let mut made = Vec::with_capacity(full + 8);
    for _ in 0..full {
        made.push(arena.background().with_cancel().unwrap());
    }
    assert_eq!(arena.capacity(), full);
    let page = page_bytes(256, 4);

    // Memory that another part of the program holds, and frees later.
    let ballast = Vec::<u8>::with_capacity(page);
    limit_headroom(page / 2);
    let before = refused();

    // The next page does not fit: `ArenaFull`, not an abort, from a root and from a child.
    let r = limited(|| arena.background().with_cancel());
    assert_eq!(r.err(), Some(CreateError::ArenaFull));
    assert_eq!(refused(), before + 1, "the page was asked for, and refused");
    let r = limited(|| made[0].ctx.with_cancel());
    assert_eq!(r.err(), Some(CreateError::ArenaFull));
    assert_eq!(
        refused(),
        before + 2,
        "the page was asked for again, not given up on"
    );
    let stats = arena.stats();
    assert_eq!(stats.failed_allocs, 2);
    assert_eq!(
        (stats.capacity, stats.live, stats.high_water),
        (full, full, full)
    );

    // The contexts that exist keep working: a released slot is handed out again without any
    // allocation, and cancelling still reaches children.
    drop(made.pop());
    let again = limited(|| made[1].ctx.with_cancel());
    let Child {
        ctx: child,
        cancel: child_cancel,
    } = again.expect("a freed slot needs no new page");
    assert_eq!(refused(), before + 2);
    assert_eq!(arena.stats().live, full);
    drop(made.swap_remove(1).cancel);
    assert_eq!(child.err(), Some(Error::Canceled));
    assert_eq!(made[0].ctx.err(), None);
    drop((child, child_cancel));
    assert_eq!(arena.stats().live, full - 2);
    made.push(limited(|| arena.background().with_cancel()).unwrap());
    made.push(limited(|| arena.background().with_cancel()).unwrap());
    assert_eq!(refused(), before + 2);
    assert_eq!(
        limited(|| arena.background().with_cancel()).err(),
        Some(CreateError::ArenaFull)
    );
    assert_eq!(refused(), before + 3);
    assert_eq!(arena.stats().failed_allocs, 3);

    // Memory frees (the limit stays where it was): the same call now grows the arena.
    drop(ballast);
    let grown = limited(|| made[0].ctx.with_cancel());
    let Child {
        ctx: grandchild,
        cancel: _grandchild_cancel,
    } = grown.expect("the page fits once memory is freed");
    assert_eq!(refused(), before + 3);
    let stats = arena.stats();
    assert_eq!(stats.capacity, full + 4096);
    assert_eq!((stats.live, stats.high_water), (full + 1, full + 1));
    assert_eq!(stats.failed_allocs, 3);

    // A node from before the failure cancels a child on the new page.
    drop(made.swap_remove(0).cancel);
    assert_eq!(grandchild.err(), Some(Error::Canceled));
    assert!(made.iter().all(|c| c.err().is_none()));
}

#[test]
fn fixed_heap_arena_takes_its_page_on_first_use_and_reports_a_refusal_as_arena_full() {
    let _alone = alone();
    let nodes = 8192;
    let arena = HeapArena::with_capacity(nodes);
    let page = nodes * size_of::<Node>();
    limit_headroom(page / 2);
    let before = refused();
    let r = limited(|| arena.background().with_cancel());
    assert_eq!(r.err(), Some(CreateError::ArenaFull));
    assert_eq!(refused(), before + 1);
    let stats = arena.stats();
    assert_eq!((stats.capacity, stats.live, stats.failed_allocs), (0, 0, 1));

    // More headroom (memory freed elsewhere): the page is asked for again and fits.
    limit_headroom(page * 2);
    let Child { ctx, cancel } = limited(|| arena.background().with_cancel()).unwrap();
    assert_eq!(refused(), before + 1);
    let stats = arena.stats();
    assert_eq!(
        (stats.capacity, stats.live, stats.failed_allocs),
        (nodes, 1, 1)
    );
    drop(cancel);
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

/// The only test of this binary that touches the global arena, so its statistics are exact.
#[cfg(feature = "std")]
#[test]
fn global_arena_refuses_a_page_it_cannot_get_with_arena_full_and_grows_once_memory_frees() {
    let _alone = alone();
    let global = ctxtree::global_arena();
    assert_eq!(
        global.capacity(),
        0,
        "no other test may use the global arena"
    );

    // The first page (1024 nodes), allocated by the first context.
    limit_headroom(page_bytes(1024, 0) / 2);
    let before = refused();
    let r = limited(|| ctxtree::background().with_cancel());
    assert_eq!(r.err(), Some(CreateError::ArenaFull));
    assert_eq!(refused(), before + 1);
    let stats = global.stats();
    assert_eq!((stats.capacity, stats.live, stats.failed_allocs), (0, 0, 1));
    limit_headroom(page_bytes(1024, 0) * 2);
    let first = limited(|| ctxtree::background().with_cancel()).expect("page 0 fits now");
    assert_eq!(global.capacity(), 1024);

    // Fill page 0; page 1 (2048 nodes) does not fit.
    let mut made = Vec::with_capacity(1024);
    made.push(first);
    for _ in 1..1024 {
        made.push(ctxtree::background().with_cancel().unwrap());
    }
    limit_headroom(page_bytes(1024, 1) / 2);
    let r = limited(|| made[0].ctx.with_cancel());
    assert_eq!(r.err(), Some(CreateError::ArenaFull));
    assert_eq!(refused(), before + 2);
    let stats = global.stats();
    assert_eq!(
        (stats.capacity, stats.live, stats.failed_allocs),
        (1024, 1024, 2)
    );
    assert!(made.iter().all(|c| c.err().is_none()));

    // Memory frees: the arena grows, and the tree works across the pages.
    limit_headroom(page_bytes(1024, 1) * 2);
    let Child {
        ctx: child,
        cancel: child_cancel,
    } = limited(|| made[0].ctx.with_cancel()).expect("page 1 fits now");
    assert_eq!(refused(), before + 2);
    assert_eq!(global.capacity(), 1024 + 2048);
    assert_eq!(global.stats().live, 1025);
    drop(made.swap_remove(0).cancel);
    assert_eq!(child.err(), Some(Error::Canceled));
    drop((child, child_cancel));
    drop(made);
    assert_eq!(global.stats().live, 0);
}
