//! The last member of a list leaves it without a mark (tree invariant #4, `NextWord::freeze`):
//! its `next` names no successor and never will (insertion is only at the front), so the one
//! compare-and-swap on its predecessor's link (the owner's `head`, a hint, or a search) removes
//! it. The races: two unlinkers of the same last member — the child's own canceler and the
//! parent's cancel walk, both unmarked — at two levels of a chain (the `CancelTree` shape);
//! and an unmarked unlink of the only child while a new child is linked in front of it, where
//! the unlinker falls back from the `head` to a search through the newcomer, whose link may
//! still be in flight (its `prev` still `PENDING`).
//!
//! Each model asserts the list left, the done states, that each node's list reference was
//! released exactly once (live counts, then `assert_quiescent`), and that the unmarked path was
//! taken (`probe::take_unmarked`).

use loom::thread;

use super::support::{Outcomes, assert_quiescent, is_done_word, linked_children, run_model};
use crate::list::probe;
use crate::{Arena, Child, Error, StaticCause};

static A: StaticCause = StaticCause::with_code(1, "a");

/// `P → C → G`, each the only (so the last) child of its parent. One thread drops `C`'s
/// canceler (cancelling `C` and `G`, unlinking `G` from `C` and `C` from `P`, all unmarked)
/// while the other cancels `P` (whose walk reaches `C` and `G` and unlinks them too). Exactly
/// one compare-and-swap removes each node, whichever thread runs it; both cancels return with
/// the whole subtree done.
#[test]
fn last_child_canceler_drop_vs_parent_cancel() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("last_child_canceler_drop_vs_parent_cancel", move || {
        loom::lazy_static! { static ref ARENA: Arena<3> = Arena::new(); }
        let arena: &'static Arena<3> = &ARENA;
        let Child {
            ctx: p,
            cancel: p_cancel,
        } = arena.background().with_cancel().unwrap();
        let Child {
            ctx: c,
            cancel: c_cancel,
        } = p.with_cancel().unwrap();
        let Child {
            ctx: g,
            cancel: g_cancel,
        } = c.with_cancel().unwrap();
        let (cs, gs) = (c.slot, g.slot);
        probe::take_unmarked();
        let child = thread::spawn(move || {
            drop(c_cancel);
            // Dropping the canceler cancelled C's whole subtree, whoever else walks it.
            assert!(is_done_word(arena, cs) && is_done_word(arena, gs));
        });
        p_cancel.cancel_with(&A);
        assert!(is_done_word(arena, cs) && is_done_word(arena, gs));
        child.join().unwrap();
        // Both unlinks began unmarked (each node is the last of its list), by one thread or
        // both.
        assert!(
            probe::take_unmarked() >= 2,
            "the unmarked path was not taken"
        );
        assert!(linked_children(arena, p.slot).is_empty());
        assert!(linked_children(arena, cs).is_empty());
        // C's error came from P's walk (with P's cause) or from its own cancel (no cause).
        assert_eq!(c.err(), Some(Error::Canceled));
        let code = c.cause().and_then(|k| k.code());
        assert_eq!(g.cause().and_then(|k| k.code()), code);
        record.record(code);
        // C and G are out of their lists: each list reference was released exactly once, so
        // dropping the handles frees them; P too.
        drop((c, g));
        assert_eq!(arena.stats().live, 3, "G pinned by its canceler, C by G");
        drop(g_cancel);
        assert_eq!(arena.stats().live, 1);
        drop((p, p_cancel));
        assert_quiescent(arena);
    });
    // C cancelled first by P's walk, and first by its own canceler.
    outcomes.assert_saw(&[Some(1), None]);
}

/// `P` with one child `C1` (the first and the last): `C1` is released while another thread
/// links `C2` in front of it. Either `C1` is still first (one compare-and-swap on `head`, and
/// `C2`'s link retries behind it) or `C2` came first, and the unmarked unlink goes through a
/// search that steps onto `C2` and swings `C2.next`.
#[test]
fn last_child_unlink_vs_link() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("last_child_unlink_vs_link", move || {
        loom::lazy_static! { static ref ARENA: Arena<3> = Arena::new(); }
        let arena: &'static Arena<3> = &ARENA;
        let p = arena.background().with_cancel().unwrap();
        let c1 = p.ctx.with_cancel().unwrap();
        let parent = p.ctx.clone();
        probe::take_unmarked();
        probe::take();
        let linker = thread::spawn(move || {
            let c2 = parent.with_cancel().unwrap();
            drop(parent);
            c2
        });
        drop(c1);
        let c2 = linker.join().unwrap();
        // The unlink of C1 began unmarked, whether C1 was still first or not.
        assert_eq!(probe::take_unmarked(), 1);
        // Whether the unlink had to search (through C2) or swung the head.
        record.record(probe::take() > 0);
        assert_eq!(linked_children(arena, p.ctx.slot), [c2.ctx.slot]);
        assert_eq!(
            arena.stats().live,
            2,
            "C1's list reference was not released"
        );
        drop(c2);
        assert!(linked_children(arena, p.ctx.slot).is_empty());
        drop(p);
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[false, true]);
}
