//! A child pinned by nothing but its list (tree invariants #1, #5, #6): a disarmed canceler's
//! context whose handles are gone holds only its list's reference (and its children's). Two
//! cancels walk that list at once — `P`'s, reaching `X` by descent, and `X`'s own — and both
//! step onto `C` and `G`: each walk must pin what it stands on by a reference of its own,
//! because the other walk may unlink the node and release the list's reference, freeing it,
//! the moment its own post-order step is done. (This is the interleaving that makes "the
//! list's reference as the traversal's pin" unsound: the walk that loses the unlink would go
//! on reading a freed, reused node.) After the joins every node is done, every list empty, and
//! `C` and `G` freed by their list references alone.

use loom::thread;

use super::support::{assert_quiescent, is_done_word, linked_children, run_model};
use crate::{Arena, Child};

#[test]
fn two_cancels_of_one_list_over_disarmed_children() {
    run_model("two_cancels_of_one_list_over_disarmed_children", || {
        loom::lazy_static! { static ref ARENA: Arena<4> = Arena::new(); }
        let arena: &'static Arena<4> = &ARENA;
        let Child {
            ctx: p,
            cancel: p_cancel,
        } = arena.background().with_cancel().unwrap();
        let Child {
            ctx: x,
            cancel: x_cancel,
        } = p.with_cancel().unwrap();
        let Child {
            ctx: c,
            cancel: c_cancel,
        } = x.with_cancel().unwrap();
        let Child {
            ctx: g,
            cancel: g_cancel,
        } = c.with_cancel().unwrap();
        let xs = x.slot;
        // C and G stay alive through their lists only (G's through C's list; C's through X's
        // list and G's reference on its parent).
        c_cancel.disarm();
        g_cancel.disarm();
        drop((c, g));
        assert_eq!(arena.stats().live, 4);
        let other = thread::spawn(move || {
            x_cancel.cancel();
            assert!(is_done_word(arena, xs));
            x_cancel
        });
        p_cancel.cancel();
        assert!(is_done_word(arena, xs));
        let x_cancel = other.join().unwrap();
        assert!(is_done_word(arena, x.slot));
        assert!(linked_children(arena, p.slot).is_empty());
        assert!(linked_children(arena, x.slot).is_empty());
        // C and G were unlinked, each exactly once, and freed with their list references.
        assert_eq!(arena.stats().live, 2);
        drop((x, x_cancel, p, p_cancel));
        assert_quiescent(arena);
    });
}
