//! Unit tests of the tree internals (they also run under Miri: `ci/miri.sh`).
//!
//! They drive the protocols of `tree.rs`, `arena.rs` and `waiters.rs` directly — link and
//! unlink at every position, Harris helping, publication with causes, release cascades, the free
//! list, paged arenas, the waiter list, the dump — and check the private state the public API
//! cannot see: reference counts, list links, flag bits, the free stack. Each test owns a local
//! arena (no `static`), so Miri's leak checker sees everything a test allocates come back.
//! Sizes shrink under Miri (`SCALE`), never the checks.

extern crate std;

use crate::Child;
use core::sync::atomic::{AtomicUsize, Ordering as StdOrdering};
use core::task::{Poll, Waker};
use std::string::{String, ToString};
use std::sync::Arc;
use std::task::Wake;
use std::vec::Vec;

use super::Rec;
use crate::arena::RawArena;
use crate::node::{Kind, Node};
use crate::state::{Head, Link, Mark, Next, Slot, Src};
use crate::sync::Ordering;
use crate::waiters::{self, Waiter};
use crate::{
    Arena, CancelCause, Context, CreateError, Error, Instant, Key, ManualClock, StaticCause,
};

/// Loop counts: full size natively, small under Miri (which is ~1000× slower).
const SCALE: usize = if cfg!(miri) { 1 } else { 100 };

static WHY: StaticCause = StaticCause::with_code(1, "why");
static OTHER: StaticCause = StaticCause::with_code(2, "other");
static K: Key<u32> = Key::new("k");

fn refs(a: &RawArena, s: Slot) -> u32 {
    a.node(s).refs.load(Ordering::Relaxed)
}

fn head(a: &RawArena, s: Slot) -> Head {
    a.node(s).head.load(Ordering::Relaxed)
}

fn next(a: &RawArena, s: Slot) -> Next {
    a.node(s).next.load(Ordering::Relaxed)
}

/// Whether a `next` word is marked and flagged unlinked: the node is out of its list.
fn out_of_list(n: Next) -> bool {
    n.is_marked() && n.is_unlinked()
}

/// Sets `MARK` on `s`'s `next`, as a remover that stalls between the mark and the unlink.
fn mark_only(a: &RawArena, s: Slot) {
    assert!(matches!(a.node(s).next.mark(), Mark::Marked(_)));
}

/// The slots linked in `owner`'s list, front to back (single-threaded).
fn children(a: &RawArena, owner: Slot) -> Vec<Slot> {
    let mut out = Vec::new();
    let mut l = head(a, owner).first();
    while let Some(s) = l.slot() {
        out.push(s);
        assert!(out.len() <= a.capacity(), "cyclic child list");
        l = next(a, s).link();
    }
    out
}

/// Every slot ever used is free, and the free stack holds each exactly once.
fn assert_all_free(a: &RawArena) {
    assert_eq!(a.stats().live, 0, "live nodes left");
    let mut seen = Vec::new();
    while let Ok(s) = a.alloc_slot() {
        assert!(!seen.contains(&s), "slot {s} twice on the free stack");
        seen.push(s);
        assert!(seen.len() <= a.capacity());
    }
    assert_eq!(seen.len(), a.capacity(), "slots lost from the free stack");
    for s in seen {
        a.push(s);
    }
}

fn cancel_pair<'a>(ctx: &Context<'a>) -> (Context<'a>, crate::Canceler<'a>) {
    ctx.with_cancel().unwrap().into_parts()
}

// ------------------------------------------------------------------------------------------------
// Free list and bump allocation
// ------------------------------------------------------------------------------------------------

#[test]
fn bump_then_free_stack_lifo_then_full() {
    let a = Arena::<3>::new();
    let s: Vec<Slot> = (0..3).map(|_| a.alloc_slot().unwrap()).collect();
    assert_eq!(s, [0, 1, 2].map(Slot::new));
    assert_eq!(a.alloc_slot(), Err(CreateError::ArenaFull));
    assert_eq!(a.stats().failed_allocs, 1);
    a.push(Slot::new(1));
    a.push(Slot::new(2));
    let (n2, n1) = (next(&a, Slot::new(2)), next(&a, Slot::new(1)));
    assert!(
        n2.is_free() && !n2.is_marked() && !n2.is_unlinked(),
        "a free slot is flagged free, and only free"
    );
    assert_eq!(
        n2.link(),
        Link::to(Slot::new(1)),
        "a free slot links to the next free one"
    );
    assert!(n1.is_free() && !n1.is_marked() && !n1.is_unlinked());
    assert_eq!(n1.link(), Link::NIL);
    // LIFO, and the tail is never used again once exhausted.
    assert_eq!(a.alloc_slot(), Ok(Slot::new(2)));
    assert_eq!(a.alloc_slot(), Ok(Slot::new(1)));
    assert_eq!(a.alloc_slot(), Err(CreateError::ArenaFull));
    for x in s {
        a.push(x);
    }
    assert_all_free(&a);
    assert_eq!(a.stats().high_water, 3);
}

#[test]
fn try_acquire_fails_on_a_free_slot_and_pins_a_live_one() {
    let a = Arena::<2>::new();
    assert!(!a.try_acquire(Slot::new(0)), "acquired a never-used slot");
    let Child { ctx: c, cancel: k } = a.background().with_cancel().unwrap();
    let s = c.slot;
    assert_eq!(refs(&a, s), 2);
    assert!(a.try_acquire(s));
    assert_eq!(refs(&a, s), 3);
    drop((c, k));
    // Our reference keeps the node alive (not recycled) after its handles are gone.
    assert_eq!(refs(&a, s), 1);
    // SAFETY: we hold a reference.
    assert_eq!(unsafe { a.node(s).kind() }, Kind::Cancel);
    a.release(s, 1);
    assert_eq!(refs(&a, s), 0);
    assert!(!a.try_acquire(s), "acquired a freed slot");
    // SAFETY: the slot is free and nobody else uses the arena.
    assert_eq!(unsafe { a.node(s).kind() }, Kind::Free);
    assert_all_free(&a);
}

// ------------------------------------------------------------------------------------------------
// link / unlink
// ------------------------------------------------------------------------------------------------

#[test]
fn link_pushes_in_front_and_counts_the_list_reference() {
    let a = Arena::<4>::new();
    let Child { ctx: p, cancel: pk } = a.background().with_cancel().unwrap();
    let kids: Vec<_> = (0..3).map(|_| cancel_pair(&p)).collect();
    let slots: Vec<Slot> = kids.iter().map(|(c, _)| c.slot).collect();
    assert_eq!(children(&a, p.slot), [slots[2], slots[1], slots[0]]);
    for &s in &slots {
        // Context + Canceler + the list.
        assert_eq!(refs(&a, s), 3);
        // SAFETY: a live node we hold.
        assert_eq!(unsafe { a.list_owner(a.node(s)) }, Some(p.slot));
    }
    // P: its context, its canceler, and one reference per child.
    assert_eq!(refs(&a, p.slot), 2 + 3);
    drop(kids);
    assert!(children(&a, p.slot).is_empty());
    assert_eq!(refs(&a, p.slot), 2);
    drop((p, pk));
    assert_all_free(&a);
}

/// Unlinks the child at `pos` (0 = front) of three and checks the survivors keep their order.
fn unlink_at(pos: usize) {
    let a = Arena::<4>::new();
    let Child { ctx: p, cancel: pk } = a.background().with_cancel().unwrap();
    let mut kids: Vec<_> = (0..3).map(|_| cancel_pair(&p)).collect();
    kids.reverse(); // now in list order
    let order: Vec<Slot> = kids.iter().map(|(c, _)| c.slot).collect();
    assert_eq!(children(&a, p.slot), order);
    let victim = order[pos];
    assert!(a.unlink(p.slot, victim), "unlink of a linked child failed");
    assert!(out_of_list(next(&a, victim)));
    // A second unlink finds it gone and takes no reference.
    assert!(!a.unlink(p.slot, victim));
    // The list reference is ours now.
    a.release(victim, 1);
    let rest: Vec<Slot> = order.iter().copied().filter(|&s| s != victim).collect();
    assert_eq!(children(&a, p.slot), rest);
    drop(kids);
    drop((p, pk));
    assert_all_free(&a);
}

#[test]
fn unlink_front() {
    unlink_at(0);
}

#[test]
fn unlink_middle() {
    unlink_at(1);
}

#[test]
fn unlink_back() {
    unlink_at(2);
}

/// `freeze` marks every member but the last, whose word (no successor, no flag) it leaves
/// untouched (tree invariant #4): the last member leaves with one compare-and-swap (here after
/// helping its marked predecessor out), and still ends up flagged out of its list.
#[test]
fn freeze_marks_every_member_but_the_last() {
    let a = Arena::<4>::new();
    let Child { ctx: p, cancel: pk } = a.background().with_cancel().unwrap();
    let (c1, k1) = cancel_pair(&p);
    let (c2, k2) = cancel_pair(&p);
    assert_eq!(children(&a, p.slot), [c2.slot, c1.slot]);
    // C1, the last: frozen as a mark would leave it, but not written.
    let before = next(&a, c1.slot);
    assert!(!before.is_marked() && before.link().is_nil());
    let Mark::Marked(frozen) = a.node(c1.slot).next.freeze() else {
        panic!("a linked member reported unlinked");
    };
    assert!(frozen.is_marked() && frozen.link().is_nil());
    assert_eq!(
        next(&a, c1.slot),
        before,
        "the last member's word was written"
    );
    // C2, not the last: marked, naming C1.
    let Mark::Marked(marked) = a.node(c2.slot).next.freeze() else {
        panic!("a linked member reported unlinked");
    };
    assert_eq!(next(&a, c2.slot), marked);
    assert!(marked.is_marked() && marked.link() == Link::to(c1.slot));
    // C2 is now a stalled remover's: unlinking C1 (behind it, unmarked) helps C2 out first
    // (releasing its list reference), then swings the head past C1. Both end flagged out.
    let c2_refs = refs(&a, c2.slot);
    assert!(a.unlink(p.slot, c1.slot));
    a.release(c1.slot, 1);
    assert!(children(&a, p.slot).is_empty());
    assert_eq!(refs(&a, c2.slot), c2_refs - 1);
    for s in [c1.slot, c2.slot] {
        assert!(out_of_list(next(&a, s)));
        assert_eq!(
            a.node(s).next.freeze(),
            Mark::AlreadyUnlinked,
            "an unlinked node froze again"
        );
        assert!(!a.unlink(p.slot, s));
    }
    drop((c1, k1, c2, k2, p, pk));
    assert_all_free(&a);
}

#[test]
fn unlink_of_a_never_linked_node_returns_false_at_once() {
    let a = Arena::<2>::new();
    let w = a.background().without_cancel().unwrap();
    assert_eq!(next(&a, w.slot), Next::NOT_LINKED);
    assert!(!a.unlink(Slot::new(0), w.slot));
    drop(w);
    assert_all_free(&a);
}

/// Harris helping: a node whose `next` is marked (its remover stalled between the mark and the
/// swing) is unlinked by whoever searches past it, who then owns its list reference; the
/// stalled remover later finds it gone and takes nothing.
#[test]
fn search_helps_unlink_a_marked_predecessor() {
    let a = Arena::<4>::new();
    let Child { ctx: p, cancel: pk } = a.background().with_cancel().unwrap();
    let (c1, k1) = cancel_pair(&p);
    let (c2, k2) = cancel_pair(&p);
    let (c3, k3) = cancel_pair(&p);
    assert_eq!(children(&a, p.slot), [c3.slot, c2.slot, c1.slot]);
    // C2's remover marks it and stalls.
    mark_only(&a, c2.slot);
    let before = refs(&a, c2.slot);
    // Removing C1 (behind C2) helps remove C2 first.
    assert!(a.unlink(p.slot, c1.slot));
    a.release(c1.slot, 1);
    assert_eq!(children(&a, p.slot), [c3.slot]);
    assert!(out_of_list(next(&a, c2.slot)));
    // The helper released the list's reference on C2.
    assert_eq!(refs(&a, c2.slot), before - 1);
    // The stalled remover resumes: C2 is already out, and it owns nothing.
    assert!(!a.unlink(p.slot, c2.slot));
    drop((c1, k1, c2, k2, c3, k3, p, pk));
    assert_all_free(&a);
}

/// A marked node at the front (predecessor = the owner's `head`) is helped the same way.
#[test]
fn search_helps_unlink_a_marked_first_child() {
    let a = Arena::<3>::new();
    let Child { ctx: p, cancel: pk } = a.background().with_cancel().unwrap();
    let (c1, k1) = cancel_pair(&p);
    let (c2, k2) = cancel_pair(&p);
    mark_only(&a, c2.slot);
    assert!(a.unlink(p.slot, c1.slot));
    a.release(c1.slot, 1);
    assert!(children(&a, p.slot).is_empty());
    assert!(!a.unlink(p.slot, c2.slot));
    drop((c1, k1, c2, k2, p, pk));
    assert_all_free(&a);
}

#[test]
fn link_into_a_done_list_fails_with_the_done_word() {
    let a = Arena::<3>::new();
    let Child { ctx: p, cancel: pk } = a.background().with_cancel().unwrap();
    pk.cancel_with(&WHY);
    let s = a.alloc_slot().unwrap();
    let err = a.link(p.slot, s).unwrap_err().0;
    assert!(err.is_done() && err.has_cause());
    a.push(s);
    // Through the API: born done, with the parent's error and cause, linked nowhere.
    let Child { ctx: c, cancel: k } = p.with_cancel().unwrap();
    assert_eq!(c.err(), Some(Error::Canceled));
    assert!(c.cause().unwrap().is_static(&WHY));
    assert_eq!(next(&a, c.slot), Next::NOT_LINKED);
    assert_eq!(
        refs(&a, c.slot),
        2,
        "a born-done child holds no list reference"
    );
    drop((c, k, p, pk));
    assert_all_free(&a);
}

// ------------------------------------------------------------------------------------------------
// publish, causes, cancel_tree
// ------------------------------------------------------------------------------------------------

#[test]
fn publish_first_error_and_cause_win() {
    let a = Arena::<2>::new();
    let Child { ctx: c, cancel: k } = a.background().with_cancel().unwrap();
    let why = CancelCause::from(&WHY).into_raw();
    let other = CancelCause::from(&OTHER).into_raw();
    assert!(a.publish(
        c.slot,
        Rec {
            err: Error::Canceled,
            cause: why
        }
    ));
    // Later publications change nothing and do not take their cause.
    assert!(!a.publish(
        c.slot,
        Rec {
            err: Error::DeadlineExceeded,
            cause: other
        }
    ));
    assert!(!a.publish(c.slot, Rec::CANCELED));
    let h = head(&a, c.slot);
    assert_eq!(
        (h.is_done(), h.has_cause(), h.err()),
        (true, true, Error::Canceled)
    );
    assert!(c.cause().unwrap().is_static(&WHY));
    let rec = a.child_rec(c.slot);
    assert_eq!(rec.err, Error::Canceled);
    assert_eq!(crate::cause::tags(rec.cause), crate::cause::TAG_BORROWED);
    drop((c, k));
    assert_all_free(&a);
}

/// A canceller that loses the cause slot but wins `head` (the slot was claimed by a racer that
/// has not published yet) publishes the *claimer's* error, so error and cause always agree.
#[test]
fn losing_the_cause_slot_publishes_the_winners_error() {
    let a = Arena::<2>::new();
    let Child { ctx: c, cancel: k } = a.background().with_cancel().unwrap();
    // The racer (an expiry) claimed the slot and stalled before publishing `DONE`.
    let claimed = crate::cause::with_tags(
        CancelCause::from(&OTHER).into_raw(),
        crate::cause::TAG_DEADLINE,
    );
    a.node(c.slot).cause.store(claimed, Ordering::Relaxed);
    let why = CancelCause::from(&WHY).into_raw();
    assert!(!a.publish(
        c.slot,
        Rec {
            err: Error::Canceled,
            cause: why
        }
    ));
    assert_eq!(c.err(), Some(Error::DeadlineExceeded));
    assert!(c.cause().unwrap().is_static(&OTHER));
    drop((c, k));
    assert_all_free(&a);
}

/// A heap cause (`alloc`) that counts its drops.
#[cfg(feature = "alloc")]
#[derive(Debug)]
struct Counted(Arc<AtomicUsize>);

#[cfg(feature = "alloc")]
impl core::fmt::Display for Counted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("counted")
    }
}

#[cfg(feature = "alloc")]
impl core::error::Error for Counted {}

#[cfg(feature = "alloc")]
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, StdOrdering::Relaxed);
    }
}

/// Heap causes: the winner's box is owned by the node and dropped with it; the loser's is
/// dropped by its canceller at once; children borrow, never own.
#[cfg(feature = "alloc")]
#[test]
fn heap_causes_are_dropped_exactly_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let a = Arena::<3>::new();
    let Child { ctx: p, cancel: pk } = a.background().with_cancel().unwrap();
    let Child { ctx: c, cancel: ck } = p.with_cancel().unwrap();
    pk.cancel_with(CancelCause::error(Counted(drops.clone())));
    assert_eq!(c.cause().unwrap().to_string(), "counted");
    pk.cancel_with(CancelCause::error(Counted(drops.clone())));
    assert_eq!(
        drops.load(StdOrdering::Relaxed),
        1,
        "the losing cause was not dropped"
    );
    drop((c, ck));
    assert_eq!(
        drops.load(StdOrdering::Relaxed),
        1,
        "a child dropped a borrowed cause"
    );
    drop((p, pk));
    assert_eq!(
        drops.load(StdOrdering::Relaxed),
        2,
        "the winning cause leaked"
    );
    // A deadline cause is owned by its deadline node, used or not.
    let Child { ctx: d, cancel: dk } = a
        .background()
        .with_deadline_cause(
            Instant::from_ticks(5),
            CancelCause::error(Counted(drops.clone())),
        )
        .unwrap();
    let Child {
        ctx: dc,
        cancel: dck,
    } = d.with_cancel().unwrap();
    assert_eq!(a.expire(Instant::from_ticks(5)), None);
    assert_eq!(dc.err(), Some(Error::DeadlineExceeded));
    assert_eq!(dc.cause().unwrap().to_string(), "counted");
    drop((dc, dck, d, dk));
    assert_eq!(drops.load(StdOrdering::Relaxed), 3);
    assert_all_free(&a);
}

#[test]
fn cancel_tree_reaches_every_descendant_and_empties_every_list() {
    let a = Arena::<16>::new();
    let Child {
        ctx: root,
        cancel: rk,
    } = a.background().with_cancel().unwrap();
    // A small bushy tree with values, a without_cancel branch and after_funcs in the lists.
    let Child {
        ctx: c1,
        cancel: k1,
    } = root.with_cancel().unwrap();
    let v = c1.with_value(&K, 3).unwrap();
    let Child {
        ctx: g1,
        cancel: gk1,
    } = v.with_cancel().unwrap();
    let Child {
        ctx: g2,
        cancel: gk2,
    } = c1.with_deadline(Instant::from_ticks(1000)).unwrap();
    let w = c1.without_cancel().unwrap();
    let Child {
        ctx: wc,
        cancel: wck,
    } = w.with_cancel().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let af = g2
        .after_func(move || {
            r.fetch_add(1, StdOrdering::Relaxed);
        })
        .unwrap();
    assert_eq!(children(&a, c1.slot), [g2.slot, g1.slot]);
    assert_eq!(children(&a, g2.slot).len(), 1);
    rk.cancel_with(&WHY);
    for ctx in [&root, &c1, &v, &g1, &g2] {
        assert_eq!(ctx.err(), Some(Error::Canceled));
        assert!(ctx.cause().unwrap().is_static(&WHY));
    }
    assert_eq!(ran.load(StdOrdering::Relaxed), 1);
    assert!(!af.stop());
    for s in [root.slot, c1.slot, g1.slot, g2.slot] {
        assert!(children(&a, s).is_empty(), "slot {s} still has children");
    }
    assert_eq!((w.err(), wc.err()), (None, None));
    drop((af, wc, wck, w, g2, gk2, g1, gk1, v, c1, k1, root, rk));
    assert_all_free(&a);
}

/// Cancelling a deep chain walks it iteratively and releasing it cascades iteratively: no
/// recursion, whatever the depth.
#[test]
fn deep_chain_cancel_and_release_cascade() {
    let depth = 20 * SCALE;
    // Boxed: 2 001 nodes are 128 KiB (the test harness has std, with or without `alloc`).
    let a = std::boxed::Box::new(Arena::<{ 20 * SCALE + 1 }>::new());
    let Child {
        ctx: root,
        cancel: rk,
    } = a.background().with_cancel().unwrap();
    let mut tip = root.clone();
    let mut cancelers = Vec::new();
    for _ in 0..depth {
        let Child { ctx: c, cancel: k } = tip.with_cancel().unwrap();
        cancelers.push(k);
        tip = c;
    }
    assert_eq!(a.stats().live, depth + 1);
    // Dropping every canceler but the root's keeps the chain (the tip's handle pins it).
    drop(cancelers);
    assert!(tip.is_done());
    drop(root);
    rk.cancel();
    assert_eq!(tip.err(), Some(Error::Canceled));
    drop(rk);
    assert_eq!(a.stats().live, depth + 1, "the tip pins the whole chain");
    drop(tip); // the release cascades up the whole chain
    assert_all_free(&a);
}

#[test]
fn expire_from_cancels_the_deadline_owner_with_its_cause() {
    let a = Arena::<4>::new();
    let Child { ctx: d, cancel: dk } = a
        .background()
        .with_deadline_cause(Instant::from_ticks(u64::MAX - 10), &WHY)
        .unwrap();
    let v = d.with_value(&K, 1).unwrap();
    let Child { ctx: c, cancel: ck } = v.with_cancel().unwrap();
    assert_eq!(c.deadline(), d.deadline());
    // Through the child: walks up to D (the owner of the deadline) and cancels it.
    a.expire_from(c.src_slot().unwrap(), u64::MAX - 10);
    assert_eq!(d.err(), Some(Error::DeadlineExceeded));
    assert!(c.cause().unwrap().is_static(&WHY));
    assert_eq!(head(&a, d.slot).err(), Error::DeadlineExceeded);
    assert!(head(&a, d.slot).has_own_deadline());
    // TIMED marks an effective deadline, own (D) or inherited (C); HAS_DEADLINE only an own.
    assert!(head(&a, d.slot).timed());
    assert!(head(&a, c.slot).timed());
    assert!(!head(&a, c.slot).has_own_deadline());
    drop((c, ck, v, d, dk));
    assert_all_free(&a);
}

#[test]
fn fire_runs_once_and_stop_after_fire_is_false() {
    let a = Arena::<3>::new();
    let Child { ctx: c, cancel: k } = a.background().with_cancel().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let af = c
        .after_func(move || {
            r.fetch_add(1, StdOrdering::Relaxed);
        })
        .unwrap();
    let s = children(&a, c.slot)[0];
    // SAFETY: the list pins it.
    assert_eq!(unsafe { a.node(s).kind() }, Kind::AfterFunc);
    a.fire(s);
    a.fire(s);
    assert_eq!(ran.load(StdOrdering::Relaxed), 1);
    assert!(!af.stop());
    // Still linked until its context is cancelled (or stopped): cancel unlinks it.
    k.cancel();
    assert!(children(&a, c.slot).is_empty());
    assert_eq!(ran.load(StdOrdering::Relaxed), 1);
    drop((af, c, k));
    assert_all_free(&a);
}

/// An after_func whose context is released without ever being done drops its closure unrun
/// (the teardown path), and one stopped drops it at once.
#[test]
fn after_func_closures_are_dropped_exactly_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    struct OnDrop(Arc<AtomicUsize>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, StdOrdering::Relaxed);
        }
    }
    let a = Arena::<4>::new();
    let Child { ctx: c, cancel: k } = a.background().with_cancel().unwrap();
    let guard = OnDrop(drops.clone());
    let af = c
        .after_func(move || {
            let _g = &guard;
            unreachable!("stopped before any cancel");
        })
        .unwrap();
    assert!(af.stop());
    assert_eq!(drops.load(StdOrdering::Relaxed), 1);
    let guard = OnDrop(drops.clone());
    let af2 = c
        .after_func(move || {
            let _g = &guard;
        })
        .unwrap();
    drop((af, af2, c, k)); // cancels: runs (and so drops) the second
    assert_eq!(drops.load(StdOrdering::Relaxed), 2);
    assert_all_free(&a);
}

// ------------------------------------------------------------------------------------------------
// Paged arenas (alloc)
// ------------------------------------------------------------------------------------------------

#[cfg(feature = "alloc")]
#[test]
fn paged_arena_grows_by_pages_and_nodes_never_move() {
    let a = crate::HeapArena::growable();
    assert_eq!(a.capacity(), 0);
    let n = 300; // crosses from page 0 (256 nodes) into page 1
    let made: Vec<_> = (0..n)
        .map(|_| a.background().with_cancel().unwrap())
        .collect();
    assert_eq!(a.capacity(), 256 + 512);
    let addrs: Vec<*const crate::Node> = made
        .iter()
        .map(|c| a.node(c.ctx.slot) as *const _)
        .collect();
    let more: Vec<_> = (0..SCALE)
        .map(|_| a.background().with_cancel().unwrap())
        .collect();
    for (c, p) in made.iter().zip(&addrs) {
        assert_eq!(
            a.node(c.ctx.slot) as *const _,
            *p,
            "a node moved when the arena grew"
        );
    }
    assert_eq!(a.stats().live, n + SCALE);
    drop(more);
    drop(made);
    assert_eq!(a.stats().live, 0);
    assert_eq!(a.stats().high_water, n + SCALE);
    // Reuse before growth.
    let again = a.background().with_cancel().unwrap();
    assert!((again.ctx.slot.index() as usize) < n + SCALE);
    drop(again);
}

#[cfg(feature = "alloc")]
#[test]
fn heap_arena_with_capacity_is_exact() {
    let a = crate::HeapArena::with_capacity(5);
    let made: Vec<_> = (0..5)
        .map(|_| a.background().with_cancel().unwrap())
        .collect();
    assert_eq!(
        a.background().with_cancel().err(),
        Some(CreateError::ArenaFull)
    );
    assert_eq!(a.capacity(), 5);
    drop(made);
    assert_all_free(&a);
}

// ------------------------------------------------------------------------------------------------
// Waiters
// ------------------------------------------------------------------------------------------------

struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, StdOrdering::Relaxed);
    }
}

fn counting_waker() -> (Arc<Count>, Waker) {
    let c = Arc::new(Count(AtomicUsize::new(0)));
    (c.clone(), Waker::from(c))
}

/// [`waiters::register`] on `node`'s list.
///
/// # Safety
/// As for [`waiters::register`].
unsafe fn register(node: &Node, waiter: &Waiter, waker: &Waker) -> Poll<()> {
    // SAFETY: per the caller's contract.
    unsafe { waiters::register(node.wait_list(), &node.head, waiter, waker) }
}

/// [`waiters::deregister`] on `node`'s list.
fn deregister(node: &Node, waiter: &Waiter) {
    waiters::deregister(node.wait_list(), waiter);
}

/// Whether `s`'s waiter list has an entry (single-threaded).
fn has_waiters(a: &RawArena, s: Slot) -> bool {
    // SAFETY: single-threaded: nothing else touches the list.
    !unsafe { a.node(s).waiters.is_empty() }
}

#[test]
fn waiters_register_drain_and_deregister() {
    // Declared before the context: if an assertion fails, the canceler (dropped first while
    // unwinding) still finds every registered waiter alive.
    let (wa, wb) = (Waiter::new(), Waiter::new());
    let a = Arena::<2>::new();
    let Child { ctx: c, cancel: k } = a.background().with_cancel().unwrap();
    let node = a.node(c.slot);
    let (w1c, w1) = counting_waker();
    let (w2c, w2) = counting_waker();
    // SAFETY: both waiters stay in place until deregistered below.
    assert_eq!(unsafe { register(node, &wa, &w1) }, Poll::Pending);
    // SAFETY: as above.
    assert_eq!(unsafe { register(node, &wb, &w2) }, Poll::Pending);
    assert!(head(&a, c.slot).has_waiters());
    assert!(has_waiters(&a, c.slot));
    // Re-registering with the same waker keeps one waker clone; with another, replaces it.
    // SAFETY: as above.
    assert_eq!(unsafe { register(node, &wa, &w1) }, Poll::Pending);
    assert_eq!(Arc::strong_count(&w1c), 3); // ours, `w1`, the stored clone
    // SAFETY: as above.
    assert_eq!(unsafe { register(node, &wa, &w2) }, Poll::Pending);
    assert_eq!(Arc::strong_count(&w1c), 2, "a replaced waker was kept");
    // SAFETY: as above.
    assert_eq!(unsafe { register(node, &wa, &w1) }, Poll::Pending);
    // Deregister one (its waker stays in the waiter, dropped with it); the cancel wakes the
    // other only.
    deregister(node, &wb);
    k.cancel();
    assert_eq!(w1c.0.load(StdOrdering::Relaxed), 1);
    assert_eq!(w2c.0.load(StdOrdering::Relaxed), 0);
    assert!(!has_waiters(&a, c.slot));
    assert_eq!(Arc::strong_count(&w1c), 2, "a woken waker was kept");
    // Registering on a done node is ready at once and stores nothing.
    // SAFETY: as above.
    let poll = unsafe { register(node, &wb, &w2) };
    assert_eq!(poll, Poll::Ready(()));
    deregister(node, &wa);
    deregister(node, &wb);
    drop((w1, w2, c, k));
    drop((wa, wb));
    assert_eq!(Arc::strong_count(&w1c), 1, "a waker clone leaked");
    assert_eq!(Arc::strong_count(&w2c), 1, "a waker clone leaked");
    assert_all_free(&a);
}

/// More waiters than one drain batch (8): every one is woken, batch by batch.
#[test]
fn drain_wakes_more_than_a_batch() {
    let ws: Vec<Waiter> = (0..19).map(|_| Waiter::new()).collect();
    let a = Arena::<1>::new();
    let Child { ctx: c, cancel: k } = a.background().with_cancel().unwrap();
    let node = a.node(c.slot);
    let (count, waker) = counting_waker();
    for w in &ws {
        // SAFETY: `ws` is neither moved nor dropped until the waiters are deregistered.
        assert_eq!(unsafe { register(node, w, &waker) }, Poll::Pending);
    }
    k.cancel();
    assert_eq!(count.0.load(StdOrdering::Relaxed), 19);
    for w in &ws {
        deregister(node, w);
    }
    drop((waker, c, k));
    drop(ws);
    assert_eq!(Arc::strong_count(&count), 1);
    assert_all_free(&a);
}

/// A waker whose `clone` cancels the context: the cancel then runs *inside* `register`, while
/// the registrant holds the waiter lock — exactly an interrupt handler cancelling the context
/// the interrupted code is registering on.
struct CancelOnClone<'k, 'a> {
    cancel: core::cell::Cell<Option<&'k crate::Canceler<'a>>>,
    wakes: AtomicUsize,
}

const CANCEL_ON_CLONE: core::task::RawWakerVTable = {
    unsafe fn clone(data: *const ()) -> core::task::RawWaker {
        // SAFETY: `data` is the `CancelOnClone` the test keeps alive while the waker exists.
        let hook = unsafe { &*data.cast::<CancelOnClone<'_, '_>>() };
        if let Some(k) = hook.cancel.take() {
            k.cancel();
        }
        core::task::RawWaker::new(data, &CANCEL_ON_CLONE)
    }
    unsafe fn wake(data: *const ()) {
        // SAFETY: as in `clone`.
        let hook = unsafe { &*data.cast::<CancelOnClone<'_, '_>>() };
        hook.wakes.fetch_add(1, StdOrdering::Relaxed);
    }
    unsafe fn drop(_: *const ()) {}
    core::task::RawWakerVTable::new(clone, wake, wake, drop)
};

/// Delegation: the canceller finds the waiter lock held by the registrant it interrupted, so
/// it leaves `PENDING` and returns without waiting; the registrant drains when it unlocks, and
/// its own, just-registered waker is woken.
#[test]
fn cancel_inside_register_delegates_the_drain() {
    let (first, second) = (Waiter::new(), Waiter::new());
    let a = Arena::<1>::new();
    let Child { ctx: c, cancel: k } = a.background().with_cancel().unwrap();
    let node = a.node(c.slot);
    // One waiter already registered, so the cancel finds `WAITERS` and must drain.
    let (count, plain) = counting_waker();
    // SAFETY: `first` stays in place until deregistered.
    let poll = unsafe { register(node, &first, &plain) };
    assert_eq!(poll, Poll::Pending);
    let hook = CancelOnClone {
        cancel: core::cell::Cell::new(Some(&k)),
        wakes: AtomicUsize::new(0),
    };
    // SAFETY: the vtable's functions uphold the RawWaker contract for `hook`, which outlives
    // the waker and every clone of it (the clones are dropped by the drain below).
    let waker = unsafe {
        Waker::from_raw(core::task::RawWaker::new(
            (&raw const hook).cast(),
            &CANCEL_ON_CLONE,
        ))
    };
    // SAFETY: `second` stays in place until deregistered.
    let poll = unsafe { register(node, &second, &waker) };
    // The cancel ran inside (the hook was taken), and returned: it did not wait for the lock.
    assert!(
        hook.cancel.take().is_none(),
        "the waker was never cloned under the lock"
    );
    assert!(c.is_done());
    // Registered before `DONE` was published, so pending — and then woken by the delegated
    // drain the registrant ran on unlock, like the waiter that was already there.
    assert_eq!(poll, Poll::Pending);
    assert_eq!(
        hook.wakes.load(StdOrdering::Relaxed),
        1,
        "the delegated drain never ran"
    );
    assert_eq!(count.0.load(StdOrdering::Relaxed), 1);
    assert!(node.meta.is_idle(), "lock or hand-off left behind");
    assert!(!has_waiters(&a, c.slot));
    deregister(node, &first);
    deregister(node, &second);
    drop((waker, plain, c, k));
    assert_eq!(Arc::strong_count(&count), 1);
    assert_all_free(&a);
}

#[test]
fn done_future_and_its_drop() {
    use core::future::Future;
    use core::task::Context as TaskCx;
    let a = Arena::<2>::new();
    let Child { ctx: c, cancel: k } = a.background().with_cancel().unwrap();
    let (count, waker) = counting_waker();
    {
        let mut fut = core::pin::pin!(c.done());
        assert!(
            fut.as_mut()
                .poll(&mut TaskCx::from_waker(&waker))
                .is_pending()
        );
        assert!(has_waiters(&a, c.slot));
    } // dropped pending: deregistered
    assert!(!has_waiters(&a, c.slot));
    assert_eq!(Arc::strong_count(&count), 2);
    {
        let mut fut = core::pin::pin!(c.done());
        assert!(
            fut.as_mut()
                .poll(&mut TaskCx::from_waker(&waker))
                .is_pending()
        );
        k.cancel();
        assert_eq!(count.0.load(StdOrdering::Relaxed), 1);
        assert_eq!(
            fut.as_mut().poll(&mut TaskCx::from_waker(&waker)),
            Poll::Ready(Error::Canceled)
        );
    }
    drop(waker);
    assert_eq!(Arc::strong_count(&count), 1);
    drop((c, k));
    assert_all_free(&a);
}

// ------------------------------------------------------------------------------------------------
// Dump and Display
// ------------------------------------------------------------------------------------------------

#[test]
fn dump_shows_states_causes_and_kinds() {
    static CLOCK: ManualClock = ManualClock::new(1000);
    let a = Arena::<8>::new().with_clock(&CLOCK);
    let Child { ctx: p, cancel: pk } = a.background().with_cancel().unwrap();
    let v = p.with_value(&K, 1).unwrap();
    let Child { ctx: d, cancel: dk } = v.with_deadline(Instant::from_ticks(2000)).unwrap();
    let af = d.after_func(|| {}).unwrap();
    let t = a.todo().without_cancel().unwrap();
    let mut out = String::new();
    a.dump(&mut out).unwrap();
    assert_eq!(
        out,
        "context.Background\n  WithCancel #0 [live]\n    WithValue(k, u32) #1\n      \
         WithDeadline(@2000 [2s]) #2 [live]\n        AfterFunc #3 [pending]\n\
         context.TODO\n  WithoutCancel #4\n"
    );
    pk.cancel_with(&WHY);
    let mut out = String::new();
    a.dump(&mut out).unwrap();
    assert!(
        out.contains("WithCancel #0 [canceled] cause=\"why\""),
        "{out}"
    );
    assert!(out.contains("AfterFunc #3 [fired]"), "{out}");
    assert_eq!(
        std::format!("{d}"),
        "context.Background.WithCancel.WithValue(k, u32).WithDeadline(@2000 [2s])"
    );
    drop((af, t, d, dk, v, p, pk));
    let mut out = String::new();
    a.dump(&mut out).unwrap();
    assert_eq!(out, "", "freed nodes were dumped");
    assert_all_free(&a);
}

#[test]
fn roots_need_no_node() {
    let a = Arena::<1>::new();
    let b = a.background();
    assert_eq!(b.slot, Slot::BACKGROUND);
    assert_eq!(b.to_string(), "context.Background");
    assert_eq!(a.todo().to_string(), "context.TODO");
    assert!(!b.can_be_done() && b.err().is_none() && b.deadline().is_none());
    let w = b.without_cancel().unwrap();
    // SAFETY: we hold `w`.
    assert_eq!(w.src, Src::NEVER);
    // SAFETY: we hold `w`.
    assert_eq!(unsafe { a.list_owner(a.node(w.slot)) }, None);
    assert_eq!(a.stats().live, 1);
    // The one node is taken: the roots still work, constructors report `ArenaFull`.
    assert_eq!(
        a.background().with_cancel().err(),
        Some(CreateError::ArenaFull)
    );
    assert_eq!(a.todo().to_string(), "context.TODO");
    drop(w);
    assert_all_free(&a);
}

#[test]
fn timed_bit_only_where_a_deadline_is_in_effect() {
    let a = Arena::<5>::new();
    let Child { ctx: c, cancel: ck } = a.background().with_cancel().unwrap();
    let timing = |s| (head(&a, s).timed(), head(&a, s).has_own_deadline());
    assert_eq!(timing(c.slot), (false, false));
    let Child { ctx: d, cancel: dk } = c.with_deadline(Instant::from_ticks(u64::MAX - 1)).unwrap();
    assert_eq!(timing(d.slot), (true, true));
    // Cut off from D's deadline: no TIMED, so `err()` reads no deadline field.
    let w = d.without_cancel().unwrap();
    let Child { ctx: e, cancel: ek } = w.with_cancel().unwrap();
    assert_eq!(timing(e.slot), (false, false));
    assert_eq!(e.deadline(), None);
    assert_eq!(e.err(), None);
    drop((e, ek, w, d, dk, c, ck));
    assert_all_free(&a);
}

// ---------------------------------------------------------------------------------------------
// Release order (src/list.rs): the list stays exact whatever the order, and unlinking costs
// O(1) amortized search steps, counted (not timed) on this thread.
// ---------------------------------------------------------------------------------------------

/// A small deterministic generator (xorshift), so that "random" orders are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    #[cfg_attr(any(not(feature = "alloc"), ctxtree_compact), allow(dead_code))] // `HeapArena` tests
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Every permutation of `0..n` (Heap's algorithm).
fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn go(k: usize, v: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if k <= 1 {
            out.push(v.clone());
            return;
        }
        for i in 0..k {
            go(k - 1, v, out);
            let j = if k.is_multiple_of(2) { i } else { 0 };
            v.swap(j, k - 1);
        }
    }
    let mut out = Vec::new();
    go(n, &mut (0..n).collect(), &mut out);
    out
}

#[test]
fn release_in_every_order_keeps_the_list_exact() {
    let n = if cfg!(miri) { 4 } else { 6 };
    let a = Arena::<8>::new();
    for order in permutations(n) {
        let Child { ctx: p, cancel: pk } = a.background().with_cancel().unwrap();
        let mut kids: Vec<Option<_>> = (0..n).map(|_| Some(cancel_pair(&p))).collect();
        let slots: Vec<Slot> = kids.iter().map(|k| k.as_ref().unwrap().0.slot).collect();
        for (done, &i) in order.iter().enumerate() {
            kids[i] = None; // drops the context and its canceler: cancel, unlink, free
            let want: Vec<Slot> = (0..n)
                .rev()
                .filter(|j| !order[..=done].contains(j))
                .map(|j| slots[j])
                .collect();
            assert_eq!(children(&a, p.slot), want, "order {order:?} after {done}");
            assert_eq!(refs(&a, p.slot), 2 + want.len() as u32);
        }
        drop((p, pk));
        assert_all_free(&a);
    }
}

#[test]
fn interleaved_creates_and_releases_keep_the_list_exact() {
    let a = Arena::<64>::new();
    let Child { ctx: p, cancel: pk } = a.background().with_cancel().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // The model: live children, newest first (the list's order).
    let mut live: Vec<(Context<'_>, crate::Canceler<'_>)> = Vec::new();
    for _ in 0..(20 * SCALE) {
        if live.len() < 48 && (live.is_empty() || rng.below(3) != 0) {
            live.insert(0, cancel_pair(&p));
        } else {
            let i = rng.below(live.len());
            let (ctx, cancel) = live.remove(i);
            // Release both orders of handle drop.
            if rng.below(2) == 0 {
                drop(cancel);
                drop(ctx);
            } else {
                drop(ctx);
                drop(cancel);
            }
        }
        let want: Vec<Slot> = live.iter().map(|(c, _)| c.slot).collect();
        assert_eq!(children(&a, p.slot), want);
    }
    drop(live);
    drop((p, pk));
    assert_all_free(&a);
}

/// Releases `n` children of one parent in `order` (indices in creation order) and returns the
/// search steps it took and the releases done through a hint.
#[cfg(feature = "alloc")]
fn release_steps(a: &RawArena, n: usize, order: &[usize]) -> (usize, usize) {
    let Child { ctx: p, cancel: pk } = a.background().with_cancel().unwrap();
    let mut kids: Vec<Option<_>> = (0..n).map(|_| Some(cancel_pair(&p))).collect();
    crate::list::probe::take();
    crate::list::probe::take_hinted();
    for &i in order {
        kids[i] = None;
    }
    let steps = crate::list::probe::take();
    let hinted = crate::list::probe::take_hinted();
    assert!(children(a, p.slot).is_empty());
    drop((p, pk));
    (steps, hinted)
}

#[test]
#[cfg(all(feature = "alloc", not(ctxtree_compact)))] // a `HeapArena` sized to the test
fn release_costs_o1_amortized_search_steps_in_any_order() {
    let n = if cfg!(miri) { 200 } else { 10_000 };
    let a = crate::HeapArena::with_capacity(n + 1);
    let fifo: Vec<usize> = (0..n).collect();
    let lifo: Vec<usize> = (0..n).rev().collect();
    let mut random = fifo.clone();
    Rng(42).shuffle(&mut random);
    let (lifo_steps, lifo_hinted) = release_steps(&a, n, &lifo);
    let (fifo_steps, fifo_hinted) = release_steps(&a, n, &fifo);
    let (random_steps, _) = release_steps(&a, n, &random);
    std::eprintln!(
        "search steps for {n} releases: lifo {lifo_steps}, fifo {fifo_steps}, random {random_steps}"
    );
    // Newest-first: always the first child, never a search.
    assert_eq!((lifo_steps, lifo_hinted), (0, 0));
    // Oldest-first: the first release walks; every later one but the last (by then the first
    // child) goes through its hint.
    assert_eq!(fifo_hinted, n - 2);
    // Oldest-first: one walk of the list, then every release goes through its hint. Before
    // hints this took n(n-1)/2 steps (50 million for 10 000).
    assert!(fifo_steps <= 2 * n, "fifo: {fifo_steps} steps for {n}");
    // Random: walks reach only nodes whose hint is unset; bounded by a few walks of the list.
    assert!(
        random_steps <= 20 * n,
        "random: {random_steps} steps for {n}"
    );
    assert_eq!(a.stats().live, 0);
}

/// A server's shape: `live` requests in flight under one context, each new one created while
/// one finishes — the oldest (`fifo`) or any (`random`) — for many generations of the queue.
/// Returns the search steps per release.
#[cfg(feature = "alloc")]
fn steady_state_steps(random: bool) -> f64 {
    let live = if cfg!(miri) { 50 } else { 1_000 };
    let ops = 20 * live;
    let a = crate::HeapArena::with_capacity(live + 2);
    let Child { ctx: p, cancel: pk } = a.background().with_cancel().unwrap();
    let mut rng = Rng(7);
    let mut queue: std::collections::VecDeque<_> = (0..live).map(|_| cancel_pair(&p)).collect();
    crate::list::probe::take();
    for _ in 0..ops {
        queue.push_back(cancel_pair(&p));
        let i = if random { rng.below(queue.len()) } else { 0 };
        drop(queue.remove(i));
    }
    let steps = crate::list::probe::take();
    assert_eq!(children(&a, p.slot).len(), live);
    drop(queue);
    drop((p, pk));
    assert_eq!(a.stats().live, 0);
    steps as f64 / ops as f64
}

/// The compact build keeps no hints (`crate::list`, "The compact build"): a release that is not
/// of the first child walks from the head to its node, one step per newer sibling — exactly.
#[test]
#[cfg(all(feature = "alloc", ctxtree_compact))] // a `HeapArena` sized to the test
fn compact_release_walks_past_each_newer_sibling() {
    let n = if cfg!(miri) { 50 } else { 1_000 };
    let a = crate::HeapArena::with_capacity(n + 1);
    let fifo: Vec<usize> = (0..n).collect();
    let lifo: Vec<usize> = (0..n).rev().collect();
    let (lifo_steps, lifo_hinted) = release_steps(&a, n, &lifo);
    let (fifo_steps, fifo_hinted) = release_steps(&a, n, &fifo);
    // Newest-first: always the first child, never a step.
    assert_eq!((lifo_steps, lifo_hinted), (0, 0));
    // Oldest-first: the oldest is last of `r` live siblings, `r - 1` steps from the head.
    assert_eq!((fifo_steps, fifo_hinted), (n * (n - 1) / 2, 0));
    // A queue of `live` requests, the oldest finishing as each new one starts: the walk passes
    // the `live` newer siblings of each, no more.
    let per_release = steady_state_steps(false);
    let live = if cfg!(miri) { 50.0 } else { 1_000.0 };
    assert!(
        per_release <= live,
        "fifo queue: {per_release} steps per release"
    );
    assert_eq!(a.stats().live, 0);
}

#[test]
#[cfg(all(feature = "alloc", not(ctxtree_compact)))] // a `HeapArena` sized to the test
fn a_queue_of_live_requests_costs_o1_amortized_steps() {
    let (fifo, random) = (steady_state_steps(false), steady_state_steps(true));
    std::eprintln!(
        "search steps per release with a queue of live requests: fifo {fifo:.2}, random {random:.2}"
    );
    // Each insertion leaves one stale hint; each is walked over about once.
    assert!(fifo <= 2.0, "fifo: {fifo} steps per release");
    assert!(random <= 2.0, "random: {random} steps per release");
}
