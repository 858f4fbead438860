//! Two cancels of one chain from different levels (tree invariants #6, #7): `P → C → G → H`,
//! one thread cancels `P` with cause `a` while another cancels `C` with cause `b`. Each
//! `cancel()` returns only when its whole subtree is done, even while the other canceller is
//! walking the same nodes (the late one helps instead of waiting); `P` reports `a`; `C` reports
//! whichever cause reached it first, and `G` and `H`, cancelled only through `C`, report exactly
//! `C`'s.

use crate::Child;
use loom::thread;

use super::support::{Outcomes, assert_quiescent, is_done_word, linked_children, run_model};
use crate::{Arena, Context, Error, StaticCause};

static A: StaticCause = StaticCause::with_code(1, "a");
static B: StaticCause = StaticCause::with_code(2, "b");

fn code(ctx: &Context<'_>) -> u32 {
    assert_eq!(ctx.err(), Some(Error::Canceled));
    ctx.cause().unwrap().code().unwrap()
}

#[test]
fn cancel_parent_and_middle_of_chain() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("cancel_parent_and_middle_of_chain", move || {
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
        let Child {
            ctx: h,
            cancel: h_cancel,
        } = g.with_cancel().unwrap();
        let (gs, hs) = (g.slot, h.slot);
        let middle = thread::spawn(move || {
            c_cancel.cancel_with(&B);
            // Its whole subtree is done now, whoever else is walking it.
            assert!(is_done_word(arena, gs) && is_done_word(arena, hs));
            c_cancel
        });
        p_cancel.cancel_with(&A);
        assert!(is_done_word(arena, c.slot));
        assert!(is_done_word(arena, gs) && is_done_word(arena, hs));
        let c_cancel = middle.join().unwrap();
        assert_eq!(code(&p), 1);
        let cc = code(&c);
        assert!(cc == 1 || cc == 2);
        record.record(cc);
        assert_eq!(code(&g), cc, "G's cause differs from its parent's");
        assert_eq!(code(&h), cc, "H's cause differs from its grandparent's");
        // Every list is empty: each node was unlinked from its owner (post-order).
        for s in [p.slot, c.slot, gs] {
            assert!(
                linked_children(arena, s).is_empty(),
                "slot {s} still has children"
            );
        }
        drop((h, h_cancel, g, g_cancel, c, c_cancel, p, p_cancel));
        assert_quiescent(arena);
    });
    // C reached first by P's traversal (cause a), or cancelled first by itself (cause b).
    outcomes.assert_saw(&[1, 2]);
}
