//! `without_cancel` vs the parent's cancel: a `WithoutCancel` context (and what is derived from
//! it) is never cancelled, however its creation and use interleave with the cancel of the
//! context it came from, and it still sees that context's values — including after the
//! cancelled parent's handles are all gone (it holds the chain through its parent reference).

use crate::Child;
use loom::thread;

use super::support::{Outcomes, assert_quiescent, linked_children, run_model};
use crate::{Arena, Error, Key};

static KEY: Key<u32> = Key::new("k");

#[test]
fn without_cancel_child_vs_parent_cancel() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("without_cancel_child_vs_parent_cancel", move || {
        loom::lazy_static! { static ref ARENA: Arena<4> = Arena::new(); }
        let arena: &'static Arena<4> = &ARENA;
        let Child { ctx: p, cancel } = arena.background().with_cancel().unwrap();
        let v = p.with_value(&KEY, 7).unwrap();
        let v2 = v.clone();
        let detacher = thread::spawn(move || {
            let parent_done = v2.is_done();
            let w = v2.without_cancel().unwrap();
            drop(v2);
            // A cancel child of the detached context: linked nowhere, never cancelled.
            let Child {
                ctx: c,
                cancel: c_cancel,
            } = w.with_cancel().unwrap();
            assert!(!w.is_done() && !c.is_done());
            assert_eq!((w.value(&KEY), c.value(&KEY)), (Some(7), Some(7)));
            (w, c, c_cancel, parent_done)
        });
        drop(cancel); // cancels P (and anything linked under it), releases the canceler
        assert_eq!(v.err(), Some(Error::Canceled));
        drop((p, v));
        let (w, c, c_cancel, parent_done) = detacher.join().unwrap();
        record.record(parent_done);
        assert_eq!(
            (w.err(), c.err()),
            (None, None),
            "a WithoutCancel context was cancelled"
        );
        assert!(!w.can_be_done() && w.deadline().is_none());
        assert_eq!((w.value(&KEY), c.value(&KEY)), (Some(7), Some(7)));
        assert!(linked_children(arena, c.slot).is_empty());
        drop(c_cancel);
        assert_eq!(c.err(), Some(Error::Canceled)); // its own canceler still works
        assert_eq!(w.err(), None);
        drop((c, w));
        assert_quiescent(arena);
    });
    // Detached before and after the parent's cancel.
    outcomes.assert_saw(&[false, true]);
}
