//! Exhaustion under contention: `ArenaFull` only when every slot is really in use. Creation
//! and release race on a 2-slot arena; in each scenario the number of slots held at once is
//! known, so the model knows exactly how many creations must fail.

use loom::thread;

use super::support::{Outcomes, assert_quiescent, run_model};
use crate::{Arena, CreateError};

/// Two threads, each creating, dropping and creating again: never more than two contexts at
/// once on two slots — no refusal is ever right, whether the slot comes from the never-used
/// tail or from the free stack a release just pushed to.
#[test]
fn never_full_while_a_slot_is_free() {
    run_model("never_full_while_a_slot_is_free", || {
        loom::lazy_static! { static ref ARENA: Arena<2> = Arena::new(); }
        let arena: &'static Arena<2> = &ARENA;
        let other = thread::spawn(move || {
            let first = arena
                .background()
                .with_cancel()
                .expect("ArenaFull with a slot free");
            drop(first);
            arena
                .background()
                .with_cancel()
                .expect("ArenaFull with a slot free")
        });
        let mine = arena
            .background()
            .with_cancel()
            .expect("ArenaFull with a slot free");
        let theirs = other.join().unwrap();
        assert_eq!(arena.stats().live, 2);
        assert_eq!(arena.stats().failed_allocs, 0);
        drop((mine, theirs));
        assert_quiescent(arena);
    });
}

/// Three holders, two slots, nothing released: exactly one creation fails — a refusal is
/// always true, and never two. One slot starts on the free stack, one in the tail.
#[test]
fn exactly_one_of_three_refused() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("exactly_one_of_three_refused", move || {
        loom::lazy_static! { static ref ARENA: Arena<2> = Arena::new(); }
        let arena: &'static Arena<2> = &ARENA;
        drop(arena.background().with_cancel().unwrap()); // slot 0 to the free stack
        let spawn = || thread::spawn(move || arena.background().with_cancel());
        let (a, b) = (spawn(), spawn());
        let c = arena.background().with_cancel();
        let all = [a.join().unwrap(), b.join().unwrap(), c];
        let refused: usize = all.iter().filter(|r| r.is_err()).count();
        assert_eq!(refused, 1, "{refused} refusals for 3 creations on 2 slots");
        for (i, r) in all.iter().enumerate() {
            if let Err(e) = r {
                assert_eq!(*e, CreateError::ArenaFull);
                record.record(i);
            }
        }
        assert_eq!(arena.stats().failed_allocs, 1);
        drop(all);
        assert_quiescent(arena);
    });
    // Any of the three may be the one refused.
    outcomes.assert_saw(&[0, 1, 2]);
}
