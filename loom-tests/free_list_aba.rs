//! Free-list ABA (`arena.rs`, "The ABA problem, and the tag"): alloc/free/alloc interleavings
//! on a 2-slot arena never hand one slot to two owners, and ownership passes with the slot.
//!
//! Each owner marks its slot in an atomic ownership table (a second owner would find the mark)
//! and writes a loom-tracked cell of the slot (loom reports a data race unless the previous
//! owner's write happens-before, i.e. unless push's Release and pop's Acquire hand the slot
//! over properly).

use core::sync::atomic::Ordering;

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicUsize;
use loom::thread;

use super::support::{Outcomes, assert_quiescent, run_model};
use crate::state::Slot;
use crate::{Arena, CreateError};

/// Per-slot ownership marks and plain data.
struct Owners {
    mark: [AtomicUsize; 2],
    data: [UnsafeCell<usize>; 2],
}

// SAFETY: `data[s]` is written only by the current owner of slot `s`, which the free list
// makes exclusive — exactly what the model checks.
unsafe impl Sync for Owners {}

impl Owners {
    fn new() -> Self {
        Owners {
            mark: [AtomicUsize::new(0), AtomicUsize::new(0)],
            data: [UnsafeCell::new(0), UnsafeCell::new(0)],
        }
    }

    fn take(&self, s: Slot, me: usize) {
        let s = s.index() as usize;
        // ORDERING: Relaxed: the mark only detects double ownership; the cell checks ordering.
        let prev = self.mark[s].swap(me, Ordering::Relaxed);
        assert_eq!(
            prev, 0,
            "slot {s} handed to thread {me} while thread {prev} owns it"
        );
        // SAFETY: we own the slot (checked by loom: a concurrent owner is a reported race).
        self.data[s].with_mut(|p| unsafe { *p = me });
    }

    fn give(&self, s: Slot, me: usize) {
        let s = s.index() as usize;
        // SAFETY: as in `take`.
        assert_eq!(self.data[s].with(|p| unsafe { *p }), me);
        // ORDERING: Relaxed: as in `take`.
        assert_eq!(self.mark[s].swap(0, Ordering::Relaxed), me);
    }
}

/// The classic ABA interleaving: with both slots on the stack (`1 → 0`), thread 1 reads the
/// top (1) and its successor (0); thread 2 pops 1, pops 0, pushes 1 back (now `1 → ∅`); thread
/// 1's compare-and-swap `1 → 0` would then hand out slot 0, which thread 2 owns — unless the tag
/// makes it fail.
#[test]
fn alloc_free_alloc_never_shares_a_slot() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("alloc_free_alloc_never_shares_a_slot", move || {
        loom::lazy_static! {
            static ref ARENA: Arena<2> = Arena::new();
            static ref OWNERS: Owners = Owners::new();
        }
        let arena: &'static Arena<2> = &ARENA;
        let owners: &'static Owners = &OWNERS;
        // Both slots on the free stack (1 on top of 0): the pops below race on the stack.
        let (a, b) = (arena.alloc_slot().unwrap(), arena.alloc_slot().unwrap());
        arena.push(a);
        arena.push(b);
        // Thread 1: pop, free, twice. Refused only while thread 2 holds both slots.
        let t1 = thread::spawn(move || {
            let mut refused = 0;
            for _ in 0..2 {
                match arena.alloc_slot() {
                    Ok(s) => {
                        owners.take(s, 1);
                        owners.give(s, 1);
                        arena.push(s);
                    }
                    Err(e) => {
                        assert_eq!(e, CreateError::ArenaFull);
                        refused += 1;
                    }
                }
            }
            refused
        });
        // Thread 2: pop both, push the first back (on top, with a new successor), then the
        // second.
        let first = arena.alloc_slot().unwrap();
        owners.take(first, 2);
        let second = arena.alloc_slot();
        if let Ok(s) = second {
            owners.take(s, 2);
        }
        owners.give(first, 2);
        arena.push(first);
        if let Ok(s) = second {
            owners.give(s, 2);
            arena.push(s);
        }
        let refused = t1.join().unwrap();
        // A refusal is right only while the other thread held both slots.
        assert!(
            !(refused > 0 && second.is_err()),
            "both threads refused with at most one slot held by the other"
        );
        record.record((refused, second.is_ok()));
        assert_quiescent(arena);
    });
    // Thread 2 got both slots (and thread 1 was refused, or not), or only one.
    outcomes.assert_saw(&[(0, true), (1, true), (0, false)]);
}

/// Slots coming from the never-used tail (`bump`) and the stack at once: one thread frees what
/// it bumped while the other allocates twice, from the tail or the stack, whichever has a slot.
/// At most two slots are held at any moment, so `ArenaFull` is never right here.
#[test]
fn bump_and_stack_never_share_a_slot() {
    run_model("bump_and_stack_never_share_a_slot", || {
        loom::lazy_static! {
            static ref ARENA: Arena<2> = Arena::new();
            static ref OWNERS: Owners = Owners::new();
        }
        let arena: &'static Arena<2> = &ARENA;
        let owners: &'static Owners = &OWNERS;
        let t1 = thread::spawn(move || {
            let s = arena.alloc_slot().unwrap();
            owners.take(s, 1);
            owners.give(s, 1);
            arena.push(s);
        });
        for _ in 0..2 {
            let s = arena.alloc_slot().expect("ArenaFull with a slot free");
            owners.take(s, 2);
            owners.give(s, 2);
            arena.push(s);
        }
        t1.join().unwrap();
        assert_quiescent(arena);
    });
}
