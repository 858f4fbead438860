//! The std timer's lock-free protocol (src/layers/timer.rs): watchers and releasers change a
//! slot's entry word and push the slot on the inbox; the timer thread drains the inbox into its
//! private wheel (modelled here as the deadline filed per slot), fires, and goes to sleep.
//!
//! What must hold whatever the interleaving:
//! - after the timer's next pass, its view of each slot equals the slot's last word: filed at
//!   the deadline last watched, or not filed once the context is done or released (invariant
//!   #3) — a stale fire never erases a newer watch, and a forget is never lost;
//! - the inbox loses no slot when several are pushed while the timer takes it;
//! - a watcher whose deadline is earlier than the timer's sleep target either wakes the timer
//!   or the timer sees the watch before it parks (the `SeqCst` fences of "Waking").

use core::sync::atomic::Ordering;

use loom::sync::Arc;
use loom::sync::atomic::AtomicU64;
use loom::thread;

use super::support::{Outcomes, run_model};
use crate::layers::timer::{self, Entry, Inbox};
use crate::sync::fence;

struct Shared {
    table: [Entry; 2],
    inbox: Inbox,
    /// The tick the timer sleeps until (0: awake, it looks at the inbox before it sleeps).
    sleep_until: AtomicU64,
}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        table: [Entry::new(), Entry::new()],
        inbox: Inbox::new(),
        sleep_until: AtomicU64::new(0),
    })
}

/// The timer's private view: the deadline each slot is filed at.
type Filed = [Option<u64>; 2];

/// One drain of the inbox into `filed`, as the timer thread's (the wheel reduced to a map).
fn drain(s: &Shared, filed: &mut Filed) {
    timer::drain(&s.table[..], &s.inbox, |slot, want| {
        filed[slot as usize] = (want != 0).then_some(want);
    });
}

/// A watch as `timer_hook` makes it; returns whether it woke the timer.
fn watch(s: &Shared, slot: u32, at: u64) -> bool {
    if !timer::request(&s.table[..], &s.inbox, slot, at) {
        return false;
    }
    fence(Ordering::SeqCst);
    // ORDERING: Relaxed: ordered by the fence above (the model checks that it is enough).
    at < s.sleep_until.load(Ordering::Relaxed)
}

/// The word's `want` of `slot`, and whether it is queued (single-threaded use).
fn word(s: &Shared, slot: u32) -> (u64, bool) {
    timer::peek(&s.table[..], slot)
}

#[test]
fn watch_release_and_reuse_of_a_slot_vs_a_timer_pass_that_fires() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("timer_watch_release_reuse_vs_fire", move || {
        let s = shared();
        let t = s.clone();
        let timer = thread::spawn(move || {
            let mut filed: Filed = [None; 2];
            drain(&t, &mut filed);
            let drained = filed[0];
            // Fire what is filed at 5 (due), as the wheel's poll then `fire` do.
            if filed[0] == Some(5) {
                filed[0] = None;
                timer::fired(&t.table[..], 0, 5);
            }
            (filed, drained)
        });
        // The context watched at 5, then released (forget), then a new context in the same
        // slot watched at 7.
        watch(&s, 0, 5);
        timer::forget(&s.table[..], &s.inbox, 0);
        watch(&s, 0, 7);
        let (mut filed, drained) = timer.join().unwrap();
        record.record(drained);
        // The timer's next pass.
        drain(&s, &mut filed);
        assert_eq!(filed[0], Some(7), "the timer lost the newest watch");
        assert_eq!(word(&s, 0), (7, false));
        assert!(s.inbox.is_empty());
    });
    outcomes.assert_saw(&[None, Some(5), Some(7)]);
}

#[test]
fn watch_vs_forget_of_a_done_context_then_teardown() {
    run_model("timer_watch_vs_forget_on_done", move || {
        let s = shared();
        let (w, t) = (s.clone(), s.clone());
        // A watcher of the context and the thread that cancels it (forget on done), with the
        // timer draining meanwhile.
        let watcher = thread::spawn(move || {
            watch(&w, 1, 5);
        });
        let timer = thread::spawn(move || {
            let mut filed: Filed = [None; 2];
            drain(&t, &mut filed);
            filed
        });
        timer::forget(&s.table[..], &s.inbox, 1);
        watcher.join().unwrap();
        let mut filed = timer.join().unwrap();
        // Teardown: the last forget, which no watch can race.
        timer::forget(&s.table[..], &s.inbox, 1);
        drain(&s, &mut filed);
        assert_eq!(filed[1], None, "a released context stayed filed");
        assert_eq!(word(&s, 1), (0, false));
    });
}

#[test]
fn two_slots_pushed_while_the_timer_takes_the_inbox() {
    run_model("timer_two_pushes_vs_take", move || {
        let s = shared();
        let (a, b) = (s.clone(), s.clone());
        let wa = thread::spawn(move || {
            watch(&a, 0, 5);
        });
        let wb = thread::spawn(move || {
            watch(&b, 1, 6);
        });
        let mut filed: Filed = [None; 2];
        drain(&s, &mut filed);
        wa.join().unwrap();
        wb.join().unwrap();
        drain(&s, &mut filed);
        assert_eq!(filed, [Some(5), Some(6)], "the inbox lost a slot");
        assert!(s.inbox.is_empty());
    });
}

#[test]
fn watch_vs_the_timer_going_to_sleep() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("timer_watch_vs_sleep", move || {
        let s = shared();
        let w = s.clone();
        let watcher = thread::spawn(move || watch(&w, 0, 5));
        // The timer: publish the sleep target, fence, last look at the inbox.
        // ORDERING: Relaxed, then the fence (as the timer thread does).
        s.sleep_until.store(100, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let parks = s.inbox.is_empty();
        let woken = watcher.join().unwrap();
        assert!(
            !parks || woken,
            "the timer parked until 100 with a deadline at 5 unseen and nobody woke it"
        );
        record.record((parks, woken));
    });
    outcomes.assert_saw(&[(true, true), (false, false)]);
}

#[test]
fn a_slot_pushed_again_while_the_timer_drains_it() {
    run_model("timer_push_again_vs_drain", move || {
        let s = shared();
        // Two slots on the inbox, slot 0 on top (pushed last).
        watch(&s, 1, 6);
        watch(&s, 0, 5);
        let t = s.clone();
        let timer = thread::spawn(move || {
            let mut filed: Filed = [None; 2];
            drain(&t, &mut filed);
            filed
        });
        // Slot 0's context is done: its forget pushes it again, possibly right after the timer
        // took it, and must not cut off the rest of the list the timer took.
        timer::forget(&s.table[..], &s.inbox, 0);
        let mut filed = timer.join().unwrap();
        drain(&s, &mut filed);
        assert_eq!(filed, [None, Some(6)], "the timer lost a slot of the inbox");
        assert!(s.inbox.is_empty());
    });
}
