//! Per-thread free-slot caches (`RawArena::enable_thread_caches`, `src/slot_cache.rs`): a
//! thread's freed slots stay with it; an arena that is otherwise full takes them back from
//! every thread (no spurious `ArenaFull`); a thread's exit returns them, even when a context is
//! released by another thread-local's destructor. One `static` arena per test.
#![cfg(all(
    feature = "std",
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use std::cell::RefCell;
use std::sync::mpsc;
use std::sync::{Barrier, Mutex, MutexGuard};
use std::thread;

use ctxtree::{Arena, Canceler, Child, Context, CreateError, RawArena};

/// Creates `n` cancellable children of `arena`'s background, keeping them.
/// The tests of this file run one at a time: caches and their registry are process-wide, and a
/// sweep by one test (an arena filled to the last slot) holds every thread's cache for a moment,
/// during which that thread frees to the shared stack: a test that checks where a freed slot
/// went would see another test's sweep.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn fill(arena: &'static RawArena, n: usize) -> Vec<Child<'static>> {
    (0..n)
        .map(|_| arena.background().with_cancel().expect("room"))
        .collect()
}

#[test]
fn a_freed_slot_stays_with_its_thread() {
    let _serial = serial();
    static ARENA: Arena<8> = Arena::new();
    assert!(
        ARENA.enable_thread_caches(),
        "membarrier(2) is available here"
    );
    drop(fill(&ARENA, 1)); // slot 0: in this thread's cache
    assert_eq!(ARENA.stats().high_water, 1);
    // Another thread does not find it on the free stack: it takes a fresh slot.
    thread::spawn(|| drop(fill(&ARENA, 1))).join().unwrap();
    assert_eq!(ARENA.stats().high_water, 2);
    // This thread gets its own back, and the exited thread's from the free stack.
    let two = fill(&ARENA, 2);
    assert_eq!(ARENA.stats().high_water, 2);
    assert_eq!(ARENA.stats().live, 2);
    drop(two);
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
fn slots_cached_by_two_live_threads_are_found_before_arena_full() {
    let _serial = serial();
    const N: usize = 64;
    static ARENA: Arena<N> = Arena::new();
    assert!(ARENA.enable_thread_caches());
    let cached = Barrier::new(3);
    let done = Barrier::new(3);
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                // Half the arena each, freed into this thread's cache; then stay alive, idle,
                // while the main thread needs every slot.
                drop(fill(&ARENA, N / 2));
                cached.wait();
                done.wait();
            });
        }
        cached.wait();
        let st = ARENA.stats();
        assert_eq!(
            (st.live, st.high_water),
            (0, N),
            "every slot sits in a cache"
        );
        // The tail is used up and the free stack empty: every allocation must steal.
        let all = fill(&ARENA, N);
        assert_eq!(ARENA.stats().live, N);
        assert_eq!(
            ARENA.background().with_cancel().err(),
            Some(CreateError::ArenaFull)
        );
        assert_eq!(ARENA.stats().failed_allocs, 1);
        drop(all);
        done.wait();
    });
    assert_eq!(ARENA.stats().live, 0);
}

#[test]
fn a_thread_returns_its_cache_when_it_exits() {
    let _serial = serial();
    static ARENA: Arena<32> = Arena::new();
    assert!(ARENA.enable_thread_caches());
    thread::spawn(|| drop(fill(&ARENA, 10))).join().unwrap();
    assert_eq!(ARENA.stats().high_water, 10);
    // From the free stack, not the tail: the exiting thread gave them back.
    let again = fill(&ARENA, 10);
    assert_eq!(ARENA.stats().high_water, 10);
    drop(again);
}

thread_local! {
    /// A context released by this thread-local's destructor, at thread exit: before or after
    /// the slot cache's own thread-local is destroyed.
    static HELD: RefCell<Vec<(Context<'static>, Canceler<'static>)>> = const { RefCell::new(Vec::new()) };
}

#[test]
fn contexts_released_by_thread_local_destructors_are_not_lost() {
    let _serial = serial();
    static ARENA: Arena<16> = Arena::new();
    assert!(ARENA.enable_thread_caches());
    for cache_first in [false, true] {
        thread::spawn(move || {
            if cache_first {
                // The cache's thread-local is made first (a create and free), then `HELD`.
                drop(fill(&ARENA, 1));
            }
            HELD.with(|h| {
                for Child { ctx, cancel } in fill(&ARENA, 3) {
                    h.borrow_mut().push((ctx, cancel));
                }
            });
            drop(fill(&ARENA, 1));
        })
        .join()
        .unwrap();
        assert_eq!(ARENA.stats().live, 0);
    }
    // Every slot ever used is back: the whole arena can be filled, each slot once.
    let all = fill(&ARENA, 16);
    assert_eq!(ARENA.stats().live, 16);
    assert_eq!(
        ARENA.background().with_cancel().err(),
        Some(CreateError::ArenaFull)
    );
    drop(all);
}

#[test]
fn a_thread_freeing_into_two_arenas_keeps_both_whole() {
    let _serial = serial();
    static A: Arena<8> = Arena::new();
    static B: Arena<8> = Arena::new();
    assert!(A.enable_thread_caches() && B.enable_thread_caches());
    for _ in 0..100 {
        let (a, b) = (fill(&A, 3), fill(&B, 2));
        drop(a);
        drop(b);
    }
    for arena in [&A, &B] {
        let all = fill(arena, 8);
        assert_eq!(arena.stats().live, 8);
        assert!(arena.background().with_cancel().is_err());
        drop(all);
    }
}

#[test]
fn many_threads_churning_a_small_arena_never_share_a_slot() {
    let _serial = serial();
    // Each thread creates and releases chains while the others do; an arena just big enough
    // that the tail runs out and caches are stolen from all the time.
    const THREADS: usize = 4;
    const DEPTH: usize = 8;
    static ARENA: Arena<{ THREADS * DEPTH }> = Arena::new();
    assert!(ARENA.enable_thread_caches());
    let (tx, rx) = mpsc::channel();
    thread::scope(|s| {
        for t in 0..THREADS {
            let tx = tx.clone();
            s.spawn(move || {
                let mut full = 0usize;
                for i in 0..if cfg!(miri) { 20 } else { 2_000 } {
                    let mut keep = Vec::new();
                    let mut ctx = ARENA.background();
                    for _ in 0..(1 + (i + t) % DEPTH) {
                        match ctx.with_cancel() {
                            Ok(Child { ctx: c, cancel }) => {
                                keep.push(cancel);
                                ctx = c;
                            }
                            Err(CreateError::ArenaFull) => full += 1,
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                    assert!(!ctx.is_done());
                    drop(keep.remove(0)); // cancels the whole chain
                    assert!(ctx.is_done());
                }
                tx.send(full).unwrap();
            });
        }
    });
    drop(tx);
    // Each thread needs at most DEPTH at once, and THREADS * DEPTH exist: never refused.
    assert_eq!(rx.iter().sum::<usize>(), 0, "a spurious ArenaFull");
    assert_eq!(ARENA.stats().live, 0);
    let all = fill(&ARENA, THREADS * DEPTH);
    assert!(ARENA.background().with_cancel().is_err());
    drop(all);
}

#[test]
fn the_global_arena_caches_too() {
    let _serial = serial();
    // The global arena (pages, a timer) reuses a thread's freed slot without growing.
    let Child { ctx, cancel } = ctxtree::background().with_cancel().unwrap();
    drop((ctx, cancel));
    let before = ctxtree::global_arena().stats().high_water;
    for _ in 0..if cfg!(miri) { 10 } else { 1000 } {
        let Child { ctx, cancel } = ctxtree::background().with_cancel().unwrap();
        drop((ctx, cancel));
    }
    // Other tests in this binary do not use the global arena.
    assert_eq!(ctxtree::global_arena().stats().high_water, before);
}
