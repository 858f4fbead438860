//! `CancelSlot`: an "interrupt handler" cancelling through the slot vs the main loop re-binding
//! it (src/cancel_slot.rs).
//!
//! The slot holds job A's canceler. One thread cancels whatever the slot holds, with a cause;
//! the other binds job B's canceler, cancels what `bind` handed back (if anything), and takes
//! whatever is left. Each canceler is a reference on its node: it must reach exactly one
//! party, so that nothing is cancelled through a recycled slot, nothing is released twice, and
//! nothing leaks (the arena ends quiescent). Both orders must occur: the cancel taking A (bind
//! gets nothing back) and the cancel taking B (bind gets A back).

use crate::Child;
use loom::thread;

use super::support::{Outcomes, assert_quiescent, run_model};
use crate::{Arena, CancelSlot, Error, StaticCause};

static ISR: StaticCause = StaticCause::with_code(1, "isr");

#[test]
fn cancel_through_the_slot_vs_rebind() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("cancel_through_the_slot_vs_rebind", move || {
        loom::lazy_static! {
            static ref ARENA: Arena<2> = Arena::new();
            static ref SLOT: CancelSlot = CancelSlot::new();
        }
        let arena: &'static Arena<2> = &ARENA;
        let slot: &'static CancelSlot = &SLOT;
        let Child {
            ctx: a,
            cancel: a_cancel,
        } = arena.background().with_cancel().unwrap();
        let Child {
            ctx: b,
            cancel: b_cancel,
        } = arena.background().with_cancel().unwrap();
        assert!(slot.bind(a_cancel).unwrap().is_none());
        let isr = thread::spawn(move || slot.cancel_with(&ISR));
        let handed_back = slot.bind(b_cancel).unwrap();
        let got_a_back = handed_back.is_some();
        drop(handed_back); // cancels A if the interrupt did not
        isr.join().unwrap();
        let rest = slot.take();
        // A is cancelled either way; B exactly when the interrupt took it.
        assert_eq!(a.err(), Some(Error::Canceled));
        let isr_took_b = b.err().is_some();
        assert_eq!(
            isr_took_b, got_a_back,
            "each canceler reached exactly one party"
        );
        assert_eq!(rest.is_some(), !isr_took_b);
        if isr_took_b {
            assert_eq!(b.cause().and_then(|c| c.code()), Some(1));
        } else {
            assert_eq!(a.cause().and_then(|c| c.code()), Some(1));
        }
        record.record(got_a_back);
        drop((rest, a, b));
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[false, true]);
}
