//! Cancel propagation vs a child released mid-traversal (tree invariants #1, #2, #5, #6).
//!
//! One thread cancels `P` (with child `C`, grandchild `G`) while another cancels and drops `C`
//! and `G` — unlinking and freeing them under the traversal — and then creates an unrelated
//! context `X`, which may land in a slot the traversal was standing on a moment ago. The
//! traversal must re-validate every link it follows: it may never cancel `X` (a slot visited
//! after reuse), never miss a child, and every reference it takes must be given back so that
//! the arena returns to its baseline.

use crate::Child;
use loom::thread;

use super::support::{Outcomes, assert_quiescent, linked_children, run_model};
use crate::{Arena, Error};

#[test]
fn parent_cancel_vs_child_cancel_and_drop() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("parent_cancel_vs_child_cancel_and_drop", move || {
        // Four slots: X always finds one, a freed one first if there is any (the free stack
        // is tried before the never-used tail), else the never-used fourth.
        loom::lazy_static! { static ref ARENA: Arena<4> = Arena::new(); }
        let arena: &'static Arena<4> = &ARENA;
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
        let releaser = thread::spawn(move || {
            drop(c_cancel); // cancels C and G, unlinks C from P
            drop(c);
            drop(g_cancel);
            drop(g); // frees G, then C
            // Possibly into a slot P's canceller just visited.
            arena.background().with_cancel().unwrap()
        });
        p_cancel.cancel();
        assert!(p.is_done());
        let Child {
            ctx: x,
            cancel: x_cancel,
        } = releaser.join().unwrap();
        assert_eq!(x.err(), None, "a canceller visited a recycled slot");
        record.record(x.slot == cs || x.slot == gs);
        assert!(linked_children(arena, p.slot).is_empty());
        assert_eq!(arena.stats().live, 2); // P and X
        drop((p, p_cancel, x, x_cancel));
        assert_quiescent(arena);
    });
    // X reused C's or G's slot (freed under the traversal), or found them still pinned.
    outcomes.assert_saw(&[false, true]);
}

/// The same with the child merely released (its last handles dropped after the parent's
/// cancel may already have reached it): the parent's cancel must still reach `C` if `C` was
/// linked when `P` was published done, and `C` reports `Canceled`.
#[test]
fn parent_cancel_vs_child_handle_drop() {
    run_model("parent_cancel_vs_child_handle_drop", || {
        loom::lazy_static! { static ref ARENA: Arena<2> = Arena::new(); }
        let arena: &'static Arena<2> = &ARENA;
        let Child {
            ctx: p,
            cancel: p_cancel,
        } = arena.background().with_cancel().unwrap();
        let Child {
            ctx: c,
            cancel: c_cancel,
        } = p.with_cancel().unwrap();
        let c2 = c.clone();
        let releaser = thread::spawn(move || {
            drop(c);
            c2
        });
        p_cancel.cancel();
        let c2 = releaser.join().unwrap();
        assert_eq!(c2.err(), Some(Error::Canceled));
        assert!(linked_children(arena, p.slot).is_empty());
        drop((c2, c_cancel, p, p_cancel));
        assert_quiescent(arena);
    });
}
