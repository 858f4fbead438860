//! Clone/drop of handles vs release (tree invariant #1): a slot is recycled exactly once, and
//! only after its last reference — handles, its children's references on it — is gone,
//! whichever thread drops last; the release cascades to the parent in that thread.
//!
//! A thread holding a handle checks the node is intact (loom also checks that reading its plain
//! fields never races with a teardown or a re-initialisation), while the other thread drops
//! everything else and tries to allocate into the same 2-slot arena: it may only get a slot
//! that is really free.

use crate::Child;
use loom::thread;

use super::support::{Outcomes, assert_quiescent, run_model};
use crate::node::Kind;
use crate::state::Slot;
use crate::{Arena, Context, CreateError, Error};

fn intact(ctx: &Context<'_>, parent: Slot) {
    let n = ctx.arena.node(ctx.slot);
    // SAFETY: `ctx` pins the node.
    let (kind, p) = unsafe { (n.kind(), n.parent()) };
    assert_eq!(kind, Kind::Cancel, "slot recycled under a live handle");
    assert_eq!(p, parent, "slot recycled under a live handle");
}

#[test]
fn last_handle_recycles_once() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("last_handle_recycles_once", move || {
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
        let ps = p.slot;
        let holder = thread::spawn(move || {
            let c2 = c.clone();
            drop(c);
            intact(&c2, ps);
            let c3 = c2.clone();
            drop(c2);
            intact(&c3, ps);
            // Dropping the last handle here frees C and, through C's reference, maybe P.
            drop(c3);
        });
        // Meanwhile: cancel and release C's canceler and all of P.
        drop(c_cancel);
        drop(p_cancel);
        drop(p);
        // Succeeds only on a slot that is really free; never one the holder still uses.
        let x = arena.background().with_cancel();
        record.record(x.is_ok());
        if let Ok(Child { ctx: x, .. }) = &x {
            intact(x, Slot::BACKGROUND);
            assert_eq!(x.err(), None);
        } else {
            assert_eq!(x.as_ref().err(), Some(&CreateError::ArenaFull));
        }
        holder.join().unwrap();
        drop(x);
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[false, true]);
}

/// A child's release cascading into its parent's, racing the parent's own last handle drop:
/// the parent is freed exactly once, by whichever release brings its count to zero.
#[test]
fn cascade_vs_parent_drop() {
    run_model("cascade_vs_parent_drop", || {
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
        p_cancel.cancel();
        assert_eq!(c.err(), Some(Error::Canceled));
        let child_side = thread::spawn(move || drop((c, c_cancel)));
        drop((p, p_cancel));
        child_side.join().unwrap();
        assert_quiescent(arena);
    });
}
