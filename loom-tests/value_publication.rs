//! Value publication: a value bound with `with_value` before a handle is shared is seen by the
//! thread that receives the handle, and the node's plain fields (kind, parent, key, value) are
//! never read concurrently with their teardown, whichever thread drops the last handle.
//!
//! The handle travels through a Release/Acquire hand-off (what any channel or mutex gives), while
//! the creating thread drops its own handle at once: loom checks every read of the payload
//! against the initialising writes and against the teardown.

extern crate std;

use core::sync::atomic::Ordering;
use std::boxed::Box;

use loom::sync::Arc;
use loom::sync::atomic::AtomicPtr;
use loom::thread;

use super::support::{Outcomes, assert_quiescent, run_model};
use crate::{Arena, Context, Key};

static REQUEST: Key<u64> = Key::new("request");
static USER: Key<u32> = Key::new("user");

#[test]
fn value_set_before_sharing_is_seen() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("value_set_before_sharing_is_seen", move || {
        loom::lazy_static! { static ref ARENA: Arena<3> = Arena::new(); }
        let arena: &'static Arena<3> = &ARENA;
        let slot: Arc<AtomicPtr<Context<'static>>> =
            Arc::new(AtomicPtr::new(core::ptr::null_mut()));
        let rx = slot.clone();
        let consumer = thread::spawn(move || {
            let mut waited = false;
            let got = loop {
                // ORDERING: Acquire pairs with the producer's Release.
                let p = rx.load(Ordering::Acquire);
                if !p.is_null() {
                    // SAFETY: the producer gave up this box when it published it.
                    break *unsafe { Box::from_raw(p) };
                }
                waited = true;
                thread::yield_now();
            };
            assert_eq!(got.value(&REQUEST), Some(0xfeed_beef_0000_0001));
            assert_eq!(got.value(&USER), Some(7), "a parent's value lost");
            // A child made here sees both too (the lookup walks up through the parents).
            let child = got.with_value(&USER, 8).unwrap();
            assert_eq!(child.value(&USER), Some(8));
            assert_eq!(child.value(&REQUEST), Some(0xfeed_beef_0000_0001));
            drop(got);
            drop(child); // maybe the last handle on the chain: the teardown runs here
            waited
        });
        let outer = arena.background().with_value(&USER, 7).unwrap();
        let inner = outer.with_value(&REQUEST, 0xfeed_beef_0000_0001).unwrap();
        drop(outer); // `inner` keeps it alive through its parent reference
        let shared = Box::into_raw(Box::new(inner.clone()));
        // ORDERING: Release: the hand-off (a channel send).
        slot.store(shared, Ordering::Release);
        drop(inner); // maybe the last handle: the teardown runs here
        record.record(consumer.join().unwrap());
        assert_quiescent(arena);
    });
    outcomes.assert_saw(&[false, true]);
}
