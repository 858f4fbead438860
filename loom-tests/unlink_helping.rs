//! Harris-style unlinking (tree invariant #4): removing a node first marks its `next` (freezing
//! it), then swings the predecessor's link; a searcher that meets a marked node helps remove it.
//! Concurrent removals of neighbours — where one removal's predecessor is the other's victim —
//! must remove both, exactly once each (each list reference is released by the one thread whose
//! compare-and-swap unlinked the node), and leave every other node linked.
//!
//! `P`'s list is `C3 → C2 → C1` (children link at the front). Removal happens through each
//! child's own cancel (its canceler dropped), which unlinks it from `P`.

use loom::thread;

use super::support::{assert_quiescent, linked_children, run_model};
use crate::Arena;
use crate::state::Slot;

type Pair = crate::Child<'static>;

fn three_children(arena: &'static Arena<4>) -> (Pair, [Pair; 3]) {
    let p = arena.background().with_cancel().unwrap();
    let c1 = p.ctx.with_cancel().unwrap();
    let c2 = p.ctx.with_cancel().unwrap();
    let c3 = p.ctx.with_cancel().unwrap();
    assert_eq!(
        linked_children(arena, p.ctx.slot),
        [c3.ctx.slot, c2.ctx.slot, c1.ctx.slot]
    );
    (p, [c1, c2, c3])
}

/// Removes `victims` (indices into the children) on two threads at once, and checks what stays.
fn race(a: usize, b: usize) {
    loom::lazy_static! { static ref ARENA: Arena<4> = Arena::new(); }
    let arena: &'static Arena<4> = &ARENA;
    let (p, [c1, c2, c3]) = three_children(arena);
    let mut kids = [Some(c1), Some(c2), Some(c3)];
    let slots: [Slot; 3] = core::array::from_fn(|i| kids[i].as_ref().unwrap().ctx.slot);
    let (ca, cb) = (kids[a].take().unwrap(), kids[b].take().unwrap());
    let other = thread::spawn(move || drop(cb));
    drop(ca);
    other.join().unwrap();
    let left = 3 - a - b; // the index that was neither
    assert_eq!(
        linked_children(arena, p.ctx.slot),
        [slots[left]],
        "wrong survivors after removing {a} and {b}"
    );
    // The two removed nodes are freed: each list reference was released exactly once.
    assert_eq!(arena.stats().live, 2);
    drop(kids);
    assert!(linked_children(arena, p.ctx.slot).is_empty());
    drop(p);
    assert_quiescent(arena);
}

/// C2 (middle) and C3 (its predecessor, the head) removed at once.
#[test]
fn unlink_middle_vs_predecessor() {
    run_model("unlink_middle_vs_predecessor", || race(1, 2));
}

/// C2 (middle) and C1 (its successor): C1's search passes through C2, perhaps marked.
#[test]
fn unlink_middle_vs_successor() {
    run_model("unlink_middle_vs_successor", || race(1, 0));
}

/// Unlinking the head while a new child is linked in front of it.
#[test]
fn unlink_head_vs_link() {
    run_model("unlink_head_vs_link", || {
        loom::lazy_static! { static ref ARENA: Arena<4> = Arena::new(); }
        let arena: &'static Arena<4> = &ARENA;
        let p = arena.background().with_cancel().unwrap();
        let c1 = p.ctx.with_cancel().unwrap();
        let c2 = p.ctx.with_cancel().unwrap();
        let parent = p.ctx.clone();
        let linker = thread::spawn(move || {
            let c3 = parent.with_cancel().unwrap();
            drop(parent);
            c3
        });
        let s1 = c1.ctx.slot;
        drop(c2);
        let c3 = linker.join().unwrap();
        assert_eq!(linked_children(arena, p.ctx.slot), [c3.ctx.slot, s1]);
        assert_eq!(arena.stats().live, 3);
        drop((c1, c3, p));
        assert_quiescent(arena);
    });
}
