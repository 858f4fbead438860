//! Per-thread slot caches (`src/slot_cache.rs`, "The owner and the thief"): a slot cached by one
//! thread is stolen by an allocation that finds the arena otherwise full, while the owner takes
//! it back, gives it again, or retires its cache (thread exit). The slot is never handed to two
//! owners, passes with its memory (a loom-tracked cell), is never lost, and the thief is refused
//! only while the owner really holds the slot.
//!
//! Under loom both halves of the handshake are `fence(SeqCst)` (on Linux the owner's is a
//! compiler fence and the thief's `membarrier(2)`, which the module docs argue stands for it).

use core::sync::atomic::Ordering;

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicUsize;
use loom::thread;

use super::support::{Outcomes, assert_quiescent, run_model};
use crate::Arena;
use crate::slot_cache::{Cache, Registry};
use crate::state::Slot;

/// Per-slot ownership marks and plain data (as in `free_list_aba`).
struct Owners {
    mark: [AtomicUsize; 2],
    data: [UnsafeCell<usize>; 2],
}

// SAFETY: `data[s]` is written only by the current owner of slot `s`, which the free stack and
// the caches make exclusive — exactly what the model checks.
unsafe impl Sync for Owners {}

impl Owners {
    fn new() -> Self {
        Owners {
            mark: [AtomicUsize::new(0), AtomicUsize::new(0)],
            data: [UnsafeCell::new(0), UnsafeCell::new(0)],
        }
    }

    /// Takes and gives back `s` as thread `me`.
    fn hold(&self, s: Slot, me: usize) {
        let i = s.index() as usize;
        // ORDERING: Relaxed: the mark only detects double ownership; the cell checks ordering.
        let prev = self.mark[i].swap(me, Ordering::Relaxed);
        assert_eq!(prev, 0, "slot {i} handed to {me} while {prev} owns it");
        // SAFETY: we own the slot (a concurrent owner is a race loom reports).
        self.data[i].with_mut(|p| unsafe { *p = me });
        // SAFETY: as above.
        assert_eq!(self.data[i].with(|p| unsafe { *p }), me);
        // ORDERING: Relaxed, as above.
        assert_eq!(self.mark[i].swap(0, Ordering::Relaxed), me);
    }
}

/// The owner caches slot `a`, then takes it back and gives it again while a thief allocates
/// both slots of the arena (the second only by sweeping the owner's cache).
#[test]
fn cached_slot_stolen_while_its_owner_takes_and_gives() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model(
        "cached_slot_stolen_while_its_owner_takes_and_gives",
        move || {
            loom::lazy_static! {
                static ref ARENA: Arena<2> = Arena::new();
                static ref CACHES: Registry = Registry::new();
                static ref OWNERS: Owners = Owners::new();
            }
            let arena: &'static Arena<2> = &ARENA;
            let caches: &'static Registry = &CACHES;
            let owners: &'static Owners = &OWNERS;
            let mine = caches.claim().unwrap();
            let a = arena.alloc_shared(|| {}).unwrap();
            owners.hold(a, 1);
            assert!(mine.give(arena, a), "no thief yet");
            let thief = thread::spawn(move || {
                let got: [_; 2] = core::array::from_fn(|_| {
                    arena.alloc_shared(|| {
                        caches.sweep(arena, None);
                    })
                });
                for s in got.iter().flatten() {
                    owners.hold(*s, 2);
                    arena.push_chain(*s, *s);
                }
                got.iter().filter(|r| r.is_none()).count()
            });
            let back = mine.take(arena);
            if let Some(s) = back {
                owners.hold(s, 1);
                if !mine.give(arena, s) {
                    arena.push_chain(s, s); // a thief holds the cache
                }
            }
            let refused = thief.join().unwrap();
            assert!(
                refused == 0 || back.is_some(),
                "ArenaFull while the cached slot was never taken back"
            );
            assert!(refused <= 1);
            mine.retire();
            record.record((back.is_some(), refused));
            assert_quiescent(arena);
        },
    );
    // Taken back before the sweep (thief refused once, or not: it was given again first), or
    // stolen first (the owner finds its cache empty, or held).
    outcomes.assert_saw(&[(true, 0), (true, 1), (false, 0)]);
}

/// The owner's thread exits (its cache retires) while a thief sweeps: the cached slot is found
/// by one or the other, never lost and never handed out twice; the thief is never refused.
#[test]
fn retire_races_a_sweep() {
    run_model("retire_races_a_sweep", || {
        loom::lazy_static! {
            static ref ARENA: Arena<2> = Arena::new();
            static ref CACHES: Registry = Registry::new();
            static ref OWNERS: Owners = Owners::new();
        }
        let arena: &'static Arena<2> = &ARENA;
        let caches: &'static Registry = &CACHES;
        let owners: &'static Owners = &OWNERS;
        let mine = caches.claim().unwrap();
        let a = arena.alloc_shared(|| {}).unwrap();
        owners.hold(a, 1);
        assert!(mine.give(arena, a));
        let thief = thread::spawn(move || {
            let got: [_; 2] = core::array::from_fn(|_| {
                arena.alloc_shared(|| {
                    caches.sweep(arena, None);
                })
            });
            for r in got {
                let s = r.expect("ArenaFull with a slot cached");
                owners.hold(s, 2);
                arena.push_chain(s, s);
            }
        });
        mine.retire();
        thief.join().unwrap();
        assert_quiescent(arena);
    });
}

/// Two threads, each with a cache, both slots in the first one's: the second thread must
/// sweep, while the first takes from its cache (or finds it held and sweeps too). Each holds at
/// most one of the two slots, so no allocation may be refused.
#[test]
fn two_caching_threads_sweep_each_other() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("two_caching_threads_sweep_each_other", move || {
        loom::lazy_static! {
            static ref ARENA: Arena<2> = Arena::new();
            static ref CACHES: Registry = Registry::new();
            static ref OWNERS: Owners = Owners::new();
        }
        let arena: &'static Arena<2> = &ARENA;
        let caches: &'static Registry = &CACHES;
        let owners: &'static Owners = &OWNERS;
        let (c1, c2) = (caches.claim().unwrap(), caches.claim().unwrap());
        for _ in 0..2 {
            let s = arena.alloc_shared(|| {}).unwrap();
            assert!(c1.give(arena, s));
        }
        // Returns whether the slot came from the thread's own cache.
        let run = move |me: usize, own: &'static Cache| {
            let cached = own.take(arena);
            let s = cached.or_else(|| {
                arena.alloc_shared(|| {
                    caches.sweep(arena, Some(own));
                })
            });
            let s = s.expect("ArenaFull while the other thread holds at most one slot");
            owners.hold(s, me);
            if !own.give(arena, s) {
                arena.push_chain(s, s);
            }
            cached.is_some()
        };
        let t = thread::spawn(move || run(2, c2));
        let first = run(1, c1);
        assert!(!t.join().unwrap(), "the second thread's cache starts empty");
        c1.retire();
        c2.retire();
        record.record(first);
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[true, false]);
}
