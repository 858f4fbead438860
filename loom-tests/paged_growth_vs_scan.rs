//! Paged arenas (`alloc`): a page is allocated and published on first use of one of its
//! slots, while other threads scan the used slots (`stats`, `expire`, `dump`) or allocate into
//! the same fresh page. A scan must never see a slot index whose page it cannot see, and two
//! threads growing the same page must end with one page and distinct slots.

extern crate std;

use std::string::String;

use loom::thread;

use super::support::{Outcomes, assert_quiescent, run_model};
use crate::{HeapArena, Instant};

#[test]
fn first_use_of_page_vs_scans() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("first_use_of_page_vs_scans", move || {
        loom::lazy_static! { static ref ARENA: HeapArena = HeapArena::with_capacity(2); }
        let arena: &'static HeapArena = &ARENA;
        // The scanner is the spawned thread (its loads must follow the creator's stores in
        // loom's first schedule; see `support::Outcomes`).
        let scanner = thread::spawn(move || {
            let live = arena.stats().live;
            assert!(live <= 1);
            assert_eq!(arena.expire(Instant::from_ticks(0)), None);
            let mut out = String::new();
            arena.dump(&mut out).unwrap();
            live
        });
        let made = arena.background().with_cancel().unwrap();
        record.record(scanner.join().unwrap());
        assert_eq!(arena.stats().live, 1);
        drop(made);
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[0, 1]);
}

#[test]
fn two_threads_grow_one_page() {
    run_model("two_threads_grow_one_page", || {
        loom::lazy_static! { static ref ARENA: HeapArena = HeapArena::with_capacity(2); }
        let arena: &'static HeapArena = &ARENA;
        let other = thread::spawn(move || arena.background().with_cancel().unwrap());
        let mine = arena.background().with_cancel().unwrap();
        let theirs = other.join().unwrap();
        assert_ne!(mine.ctx.slot, theirs.ctx.slot);
        assert_eq!(arena.capacity(), 2);
        assert_eq!(arena.stats().live, 2);
        drop((mine, theirs));
        assert_quiescent(arena);
    });
}
