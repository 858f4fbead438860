//! Unlinking through a predecessor hint (tree invariant #8, `src/list.rs`): a node's `prev`
//! names the node believed to precede it, and unlinking pins that node, checks that it is a
//! published list member whose `next` names the victim unmarked, and swings it. The races:
//! against the unlink of a neighbour (the hinted predecessor itself, or the successor), against
//! an insertion at the front, against the parent's cancel traversal, and the one that makes
//! `Hint::PENDING` load-bearing: the hinted slot freed and reused by a node *being linked* in
//! front of the victim, whose `next` already names the victim before its link has succeeded.
//!
//! Hints are set by a search: every setup releases the oldest child first, single-threaded,
//! which walks the list and leaves an exact hint on every node it passes.
//!
//! The compact build (`--cfg ctxtree_compact`, `ci/loom.sh` runs these models in it too) keeps
//! no hints: the same races then check the search from the head alone, and no unlink goes
//! through a hint.

use loom::thread;

use super::support::{Outcomes, assert_quiescent, linked_children, run_model};
use crate::Arena;
use crate::list::probe;
use crate::state::Slot;

type Pair = crate::Child<'static>;

/// Whether this build unlinks through hints (not the compact build).
const HINTS: bool = cfg!(not(ctxtree_compact));

/// `P` with children `C4 → C3 → C2` (front to back), each hinted with its predecessor: `C1`,
/// created first and released first, made the search walk past all three.
fn hinted_children(arena: &'static Arena<5>) -> (Pair, [Pair; 3]) {
    let p = arena.background().with_cancel().unwrap();
    let c1 = p.ctx.with_cancel().unwrap();
    let c2 = p.ctx.with_cancel().unwrap();
    let c3 = p.ctx.with_cancel().unwrap();
    let c4 = p.ctx.with_cancel().unwrap();
    probe::take();
    drop(c1);
    assert_eq!(probe::take(), 3, "the setup's search walks C4, C3, C2");
    assert_eq!(
        linked_children(arena, p.ctx.slot),
        [c4.ctx.slot, c3.ctx.slot, c2.ctx.slot]
    );
    (p, [c2, c3, c4])
}

/// Releases two of `C2, C3, C4` (by index) on two threads at once; the third must stay.
fn race(a: usize, b: usize, hinted: &Outcomes<usize>) {
    loom::lazy_static! { static ref ARENA: Arena<5> = Arena::new(); }
    let arena: &'static Arena<5> = &ARENA;
    let (p, kids) = hinted_children(arena);
    let slots: [Slot; 3] = core::array::from_fn(|i| kids[i].ctx.slot);
    let mut kids = kids.map(Some);
    let (ka, kb) = (kids[a].take().unwrap(), kids[b].take().unwrap());
    let seen = hinted.clone();
    let other = thread::spawn(move || {
        probe::take_hinted();
        drop(kb);
        seen.record(probe::take_hinted());
    });
    probe::take_hinted();
    drop(ka);
    hinted.record(probe::take_hinted());
    other.join().unwrap();
    let left = 3 - a - b;
    assert_eq!(linked_children(arena, p.ctx.slot), [slots[left]]);
    assert_eq!(arena.stats().live, 2);
    drop(kids);
    drop(p);
    assert_quiescent(arena);
}

/// C2 (hint: C3) and C3 (hint: C4) at once: one's victim is the other's predecessor.
#[test]
fn hint_unlink_vs_unlink_of_the_hinted_predecessor() {
    let hinted = Outcomes::new();
    let h = hinted.clone();
    run_model(
        "hint_unlink_vs_unlink_of_the_hinted_predecessor",
        move || race(0, 1, &h),
    );
    // Some executions unlink through a hint (the model is not vacuous).
    hinted.assert_saw(if HINTS { &[0, 1] } else { &[0] });
}

/// C3 (hint: C4) and C2 (its successor, hint: C3) at once, released the other way round.
#[test]
fn hint_unlink_vs_unlink_of_the_successor() {
    let hinted = Outcomes::new();
    let h = hinted.clone();
    run_model("hint_unlink_vs_unlink_of_the_successor", move || {
        race(1, 0, &h)
    });
    hinted.assert_saw(if HINTS { &[0, 1] } else { &[0] });
}

/// C2 unlinked through its hint while a new child is linked at the front.
#[test]
fn hint_unlink_vs_insert() {
    let hinted = Outcomes::new();
    let h = hinted.clone();
    run_model("hint_unlink_vs_insert", move || {
        loom::lazy_static! { static ref ARENA: Arena<5> = Arena::new(); }
        let arena: &'static Arena<5> = &ARENA;
        let (p, [c2, c3, c4]) = hinted_children(arena);
        let parent = p.ctx.clone();
        let linker = thread::spawn(move || {
            let c5 = parent.with_cancel().unwrap();
            drop(parent);
            c5
        });
        probe::take_hinted();
        drop(c2);
        h.record(probe::take_hinted());
        let c5 = linker.join().unwrap();
        assert_eq!(
            linked_children(arena, p.ctx.slot),
            [c5.ctx.slot, c4.ctx.slot, c3.ctx.slot]
        );
        drop((c3, c4, c5, p));
        assert_quiescent(arena);
    });
    hinted.assert_saw(if HINTS { &[1] } else { &[0] });
}

/// C3 unlinked through its hint while the parent's cancel walks and unlinks every child.
#[test]
fn hint_unlink_vs_cancel_traversal() {
    let hinted = Outcomes::new();
    let h = hinted.clone();
    run_model("hint_unlink_vs_cancel_traversal", move || {
        loom::lazy_static! { static ref ARENA: Arena<5> = Arena::new(); }
        let arena: &'static Arena<5> = &ARENA;
        let (p, [c2, c3, c4]) = hinted_children(arena);
        let crate::Child {
            ctx: p_ctx,
            cancel: p_cancel,
        } = p;
        let canceller = thread::spawn(move || p_cancel.cancel());
        probe::take_hinted();
        drop(c3);
        h.record(probe::take_hinted());
        canceller.join().unwrap();
        // Every child is done and out of the list, each unlinked exactly once.
        assert!(c2.ctx.is_done() && c4.ctx.is_done());
        assert!(linked_children(arena, p_ctx.slot).is_empty());
        assert_eq!(arena.stats().live, 3);
        drop((c2, c4, p_ctx));
        assert_quiescent(arena);
    });
    hinted.assert_saw(if HINTS { &[0, 1] } else { &[0] });
}

/// The slot C3's hint names is freed and reused by a new child C5 being linked in front of C3:
/// until its link succeeds, its `next` names C3 though it is in no list. Taking it as C3's
/// predecessor would "unlink" C3 by swinging a word no list goes through; if C5's link then
/// fails once (a third thread links C6 first) and is retried, C3 stays linked after its list
/// reference was released, and is freed while linked. `Hint::PENDING` rules it out
/// (invariant #8); with the check removed, this model fails.
#[test]
fn hint_names_a_slot_reused_by_a_node_being_linked() {
    let reused = Outcomes::new();
    let r = reused.clone();
    run_model(
        "hint_names_a_slot_reused_by_a_node_being_linked",
        move || {
            loom::lazy_static! { static ref ARENA: Arena<5> = Arena::new(); }
            let arena: &'static Arena<5> = &ARENA;
            let p = arena.background().with_cancel().unwrap();
            let c1 = p.ctx.with_cancel().unwrap();
            let c3 = p.ctx.with_cancel().unwrap();
            let c4 = p.ctx.with_cancel().unwrap();
            drop(c1); // the search hints C3 with C4
            let s4 = c4.ctx.slot;
            let (pa, px) = (p.ctx.clone(), p.ctx.clone());
            let a = thread::spawn(move || {
                drop(c4); // C3 becomes first; its hint still names C4's slot
                // Reuses C4's slot unless another was freed in between (the free stack is LIFO).
                let c5 = pa.with_cancel().unwrap();
                drop(pa);
                c5
            });
            let x = thread::spawn(move || {
                let c6 = px.with_cancel().unwrap();
                drop(px);
                c6
            });
            drop(c3);
            let (c5, c6) = (a.join().unwrap(), x.join().unwrap());
            r.record(c5.ctx.slot == s4);
            let mut left = linked_children(arena, p.ctx.slot);
            left.sort_unstable();
            let mut want = [c5.ctx.slot, c6.ctx.slot];
            want.sort_unstable();
            assert_eq!(left, want);
            assert_eq!(arena.stats().live, 3);
            drop((c5, c6, p));
            assert_quiescent(arena);
        },
    );
    // The executions that matter happened: the new child took the hinted slot.
    reused.assert_saw(&[true]);
}
