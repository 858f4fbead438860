//! Child lists: linking a node at the front of its owner's list, and unlinking it from anywhere
//! in O(1) expected time, whatever the order of release and the number of live siblings.
//!
//! A list is singly linked through the `next` words, headed by the owner's `head` word (see
//! [`crate::state`]); insertion is always at the front, and removal is Harris-style (tree
//! invariant #4): mark the victim's `next`, then swing its predecessor's link past it — except
//! for the last member, whose `next` (no successor, and none can come) needs no mark: one
//! compare-and-swap unlinks it, which is every step of a chain's cancel and every oldest-first
//! release.
//!
//! # Finding the predecessor
//! A singly linked list finds a node's predecessor by walking from the head: releasing children
//! oldest-first (the commonest server shape: requests finish roughly in arrival order) would
//! walk the whole list for every release, O(live siblings) each. So each list member keeps a
//! *hint* of its predecessor in `prev` (tree invariant #8), and unlinking tries, in order:
//! 1. [`unlink_first`](RawArena::unlink_first): the victim is the owner's first child (the
//!    newest child, and every step of a post-order cancel): one compare-and-swap on `head`.
//! 2. [`unlink_by_hint`](RawArena::unlink_by_hint): the hinted predecessor is pinned, checked
//!    to be a published list member whose `next` names the victim unmarked, and swung past it;
//!    the victim's successor then inherits the hint.
//! 3. [`unlink_by_search`](RawArena::unlink_by_search): the walk from the head, helping marked
//!    nodes on the way, as before; every node it passes gets an exact hint, and after the
//!    unlink [`mend_hints`](RawArena::mend_hints) walks on through the rest of the run of stale
//!    hints, so one walk serves the releases of everything it passed.
//!
//! Hints go stale through insertion at the front (the old first child keeps the hint "first")
//! and, rarely, through contention (helping, a lost hint hand-over). The stale ones from
//! insertion form a run at the front of the list, which a search walks and mends once: O(1)
//! amortized per insertion, whatever the release order. Newest-first release never walks.
//!
//! # The compact build
//! Under `--cfg ctxtree_compact` (build.rs: the default on bare-metal targets, where flash is
//! what counts) nodes keep no hint: `prev` does not exist (a node is 44 bytes on 32-bit targets,
//! not 48), and an unlink that is not of the first child goes straight to the search from the
//! head (step 3, without the mending). It then costs one step per newer sibling of the victim:
//! O(live siblings), bounded by the arena's capacity, instead of O(1) amortized; newest-first
//! release and every step of a cancel still never walk. It saves about 320 bytes of flash
//! (`ci/firmware.sh`). The search is the same code, and the loom models run in this build too
//! (`ci/loom.sh`).
//!
//! # Why a hint is safe to use (invariant #8)
//! `prev` is `PENDING` from a node's initialisation until its `link` has succeeded; only
//! the linking thread clears it, and every other write of `prev` either is a compare-and-swap
//! that never expects `PENDING`, or targets a node the writer pinned after reaching it
//! through a list (so it is published). A pinned node `p` whose `prev` is not `PENDING`
//! and whose `next` names `c` with no flag is therefore `c`'s predecessor in `c`'s one list
//! (invariant #2): a node being linked, whose `next` already names the current first child but
//! whose `head` compare-and-swap may still fail and be retried, is excluded — swinging *its*
//! `next` would unlink nothing.

use crate::arena::RawArena;
use crate::node::{Kind, Node};
#[cfg(not(ctxtree_compact))]
use crate::state::Hint;
use crate::state::{Closed, Link, Mark, Next, PredSeen, PredWord, Slot, Swing, SwingFirst};
use crate::sync::Ordering;
use crate::unwind::Panics;

impl RawArena {
    /// The canceller whose child list `n` (a `Cancel`, `Deadline` or `AfterFunc` node) belongs
    /// to: its nearest `Cancel`/`Deadline` ancestor, unless a `without_cancel` (or a root) comes
    /// first. `None` for a node in no list.
    ///
    /// # Safety
    /// The caller holds a reference on `n` (which pins every ancestor: invariant #1).
    pub(crate) unsafe fn list_owner(&self, n: &Node) -> Option<Slot> {
        // SAFETY: per the caller's contract.
        let mut p = unsafe { n.parent() };
        while p.is_node() {
            let pn = self.node(p);
            // SAFETY: an ancestor of a pinned node is pinned.
            match unsafe { pn.kind() } {
                Kind::Cancel | Kind::Deadline => return Some(p),
                // SAFETY: as above.
                Kind::Value | Kind::HeapValue => p = unsafe { pn.parent() },
                _ => return None,
            }
        }
        None
    }

    /// Links `child` (refs already published) at the front of `owner`'s list. `Err` carries the
    /// owner's done word if the list is closed (invariant #3).
    #[cfg(all(test, not(ctxtree_loom)))]
    pub(crate) fn link(&self, owner: Slot, child: Slot) -> Result<(), Closed> {
        self.link_node(self.node(owner), child, self.node(child))
    }

    /// `link` with both nodes already looked up. Out of line on 32-bit targets (flash: a
    /// compare-and-swap loop, at every constructor).
    #[cfg_attr(not(target_pointer_width = "64"), inline(never))]
    pub(crate) fn link_node(&self, on: &Node, child: Slot, cn: &Node) -> Result<(), Closed> {
        on.head.link_front(Link::to(child), &cn.next)?;
        // Published: the hint is now "first" (invariant #8).
        #[cfg(not(ctxtree_compact))]
        cn.prev.set_first();
        Ok(())
    }

    /// Unlinks `c` from `owner`'s list (invariant #4). The caller holds a reference on `c`.
    /// Returns true if this call unlinked it, and so now holds the list's reference on `c`.
    ///
    /// Releasing the nodes it steps on can free one that another thread unlinked meanwhile,
    /// and so run user code (a heap value's or cause's `Drop`): a panic there goes to `panics`,
    /// and the unlink carries on (see [`crate::unwind`]).
    pub(crate) fn unlink_in(&self, owner: Slot, c: Slot, panics: &mut Panics) -> bool {
        self.unlink_node(self.node(owner), c, self.node(c), panics)
    }

    /// [`unlink_in`](RawArena::unlink_in) that resumes a panic itself (for the unit tests).
    #[cfg(all(test, not(ctxtree_loom)))]
    pub(crate) fn unlink(&self, owner: Slot, c: Slot) -> bool {
        let mut panics = Panics::new();
        let unlinked = self.unlink_in(owner, c, &mut panics);
        panics.resume();
        unlinked
    }

    /// [`unlink_in`](RawArena::unlink_in) with both nodes already looked up.
    ///
    /// The fast path (freeze, then `c` is the first child: two compare-and-swaps, or one when
    /// `c` is also the last, as at every step of a chain's cancel: see [`NextWord::freeze`]) is
    /// inlined into the callers — every step of a post-order cancel takes it; the rest is out of
    /// line. On 32-bit targets the whole is out of line (flash: the cancel walk alone has three
    /// call sites).
    ///
    /// [`NextWord::freeze`]: crate::state::NextWord::freeze
    #[cfg_attr(not(target_pointer_width = "64"), inline(never))]
    #[cfg_attr(target_pointer_width = "64", inline)]
    pub(crate) fn unlink_node(&self, on: &Node, c: Slot, cn: &Node, panics: &mut Panics) -> bool {
        let Mark::Marked(marked) = cn.next.freeze() else {
            return false;
        };
        self.unlink_first(on, cn, c, marked) || self.unlink_not_first(on, cn, c, marked, panics)
    }

    /// Steps 2 and 3, out of line.
    #[inline(never)]
    fn unlink_not_first(
        &self,
        on: &Node,
        cn: &Node,
        c: Slot,
        marked: Next,
        panics: &mut Panics,
    ) -> bool {
        #[cfg(not(ctxtree_compact))]
        if self.unlink_by_hint(cn, c, marked, panics) {
            return true;
        }
        self.unlink_by_search(on, cn, c, marked, panics)
    }

    /// Step 1: `c` is the owner's first child.
    #[inline]
    fn unlink_first(&self, on: &Node, cn: &Node, c: Slot, marked: Next) -> bool {
        match on.head.swing_first(Link::to(c), marked.link()) {
            SwingFirst::Swung => {
                cn.next.set_unlinked(marked);
                true
            }
            SwingFirst::NotFirst => false,
        }
    }

    /// Step 2: through the hinted predecessor (invariant #8).
    #[cfg(not(ctxtree_compact))]
    fn unlink_by_hint(&self, cn: &Node, c: Slot, marked: Next, panics: &mut Panics) -> bool {
        // ORDERING: Acquire: pairs with the Release writes of `prev` (see `PrevWord::set_first`).
        let hint = cn.prev.load(Ordering::Acquire);
        let Some(ps) = hint.pred().and_then(Link::slot) else {
            return false;
        };
        let pn = self.node(ps);
        if !pn.try_acquire() {
            return false;
        }
        let target = Link::to(c);
        // ORDERING: Acquire: the predecessor's `next` as published (see `link_front`).
        let pred_word = pn.next.load(Ordering::Acquire);
        let won = pred_word.names(target)
            // ORDERING: Acquire: a value other than PENDING was written after `pn`'s
            // link succeeded (invariant #8); synchronising with it orders our CAS below after
            // the final `next` the linker stored.
            && !pn.prev.load(Ordering::Acquire).is_pending()
            // `pn` is pinned by our reference and `c` by the caller's.
            && PredWord::Next(&pn.next).swing(PredSeen::from(pred_word), marked.link()) == Swing::Swung;
        if won {
            cn.next.set_unlinked(marked);
            self.pass_hint(marked.link(), target, Link::to(ps));
            #[cfg(test)]
            probe::hinted();
        }
        self.release_node_in(ps, pn, 1, panics);
        won
    }

    /// After unlinking the node `from` whose predecessor was `to` (`NIL` for the head), tells
    /// its successor `succ` that its predecessor is now `to` — unless its hint no longer names
    /// `from` (then it is someone else's to fix).
    #[cfg(not(ctxtree_compact))]
    #[inline]
    fn pass_hint(&self, succ: Link, from: Link, to: Link) {
        if let Some(s) = succ.slot() {
            self.node(s).prev.pass(from, to);
        }
    }

    /// The word of the held predecessor `pred` (`NIL`: the owner's `head`) that links onward.
    #[inline(always)]
    fn pred_word<'a>(&'a self, on: &'a Node, pred: Link) -> PredWord<'a> {
        match pred.slot() {
            None => PredWord::Head(&on.head),
            Some(p) => PredWord::Next(&self.node(p).next),
        }
    }

    /// Step 3: walk from the owner's `head`, helping marked nodes and leaving exact hints on
    /// every node passed (invariants #4, #5, #8).
    fn unlink_by_search(
        &self,
        on: &Node,
        cn: &Node,
        c: Slot,
        marked: Next,
        panics: &mut Panics,
    ) -> bool {
        let target = Link::to(c);
        'search: loop {
            // `pred` is the link of the held predecessor, or NIL for the owner's `head`.
            let mut pred = Link::NIL;
            loop {
                let cell = self.pred_word(on, pred);
                // ORDERING: Acquire: the linked node's publication (see `link_front`).
                let pred_word = cell.load(Ordering::Acquire);
                if cell.is_frozen(pred_word) {
                    // The predecessor is being removed: start over (we will help it from its
                    // own predecessor).
                    self.release_link(pred, panics);
                    continue 'search;
                }
                let x = pred_word.link();
                let Some(xs) = x.slot() else {
                    // `c` is in no list: another thread unlinked it and owns the reference.
                    self.release_link(pred, panics);
                    return false;
                };
                if x == target {
                    // The predecessor is pinned (held, or the owner) and `c` by the caller.
                    if cell.swing(pred_word, marked.link()) == Swing::Swung {
                        cn.next.set_unlinked(marked);
                        #[cfg(not(ctxtree_compact))]
                        self.mend_hints(on, pred, panics);
                        #[cfg(ctxtree_compact)]
                        self.release_link(pred, panics);
                        return true;
                    }
                    self.release_link(pred, panics);
                    continue 'search;
                }
                match self.step_onto(cell, pred, pred_word, xs, panics) {
                    Step::Onto => pred = x,
                    Step::Helped => {}
                    Step::Restart => continue 'search,
                }
            }
        }
    }

    /// After a search unlinked a node behind the held `pred` (`NIL` for the head): walks on
    /// while the hints met are stale, fixing each, and stops at the first exact one (or the end
    /// of the list, or any contention), releasing what it holds.
    ///
    /// Stale hints come from insertion at the front (the old first child keeps "first"), so
    /// they form a run at the front of the list; a search only happens for a node in that run,
    /// and mending fixes the whole run at once. Each stale hint is walked over once: the walks
    /// cost O(1) amortized per insertion, whatever the release order (a shuffled release of
    /// 100,000 children walks the list once, not once per release).
    #[cfg(not(ctxtree_compact))]
    fn mend_hints(&self, on: &Node, mut pred: Link, panics: &mut Panics) {
        loop {
            let cell = self.pred_word(on, pred);
            // ORDERING: Acquire: the linked node's publication (see `link_front`).
            let pred_word = cell.load(Ordering::Acquire);
            let Some(xs) = pred_word
                .link()
                .slot()
                .filter(|_| !cell.is_frozen(pred_word))
            else {
                self.release_link(pred, panics);
                return;
            };
            // ORDERING: Relaxed: only decides whether to walk on; `step_onto` re-validates.
            if self.node(xs).prev.load(Ordering::Relaxed) == Hint::after(pred) {
                self.release_link(pred, panics);
                return;
            }
            match self.step_onto(cell, pred, pred_word, xs, panics) {
                Step::Onto => pred = Link::to(xs),
                Step::Helped => {}
                Step::Restart => return,
            }
        }
    }

    /// One step of the search: from the held predecessor `pred` (whose outgoing word `cell`
    /// held `pred_word`, naming `x`, in slot `xs`) onto `x`. `Onto`: `x` is now held, `pred` released, and
    /// `x` hinted with `pred`. `Helped`: `x` was being removed and this thread unlinked it; the
    /// walk stays on `pred`. `Restart`: `pred` released; start again from the head.
    fn step_onto(
        &self,
        cell: PredWord<'_>,
        pred: Link,
        pred_word: PredSeen,
        xs: Slot,
        panics: &mut Panics,
    ) -> Step {
        #[cfg(test)]
        probe::step();
        let xn = self.node(xs);
        // Take a reference, then check `x` is still linked after `pred` (invariant #5).
        if !xn.try_acquire() {
            self.release_link(pred, panics);
            return Step::Restart;
        }
        // ORDERING: Acquire, as in `unlink_by_search`.
        let again = cell.load(Ordering::Acquire);
        if !cell.still_names(pred_word, again) {
            self.release_node_in(xs, xn, 1, panics);
            self.release_link(pred, panics);
            return Step::Restart;
        }
        // ORDERING: Acquire, as above.
        let x_word = xn.next.load(Ordering::Acquire);
        if x_word.is_marked() {
            // x is being removed by someone else: help (invariant #4).
            if cell.swing(again, x_word.link()) == Swing::Swung {
                xn.next.set_unlinked(x_word);
                // Our reference and the list's, which our CAS made ours.
                self.release_node_in(xs, xn, 2, panics);
                return Step::Helped;
            }
            self.release_node_in(xs, xn, 1, panics);
            self.release_link(pred, panics);
            return Step::Restart;
        }
        // `x` is pinned and published (we reached it through its list): see `PrevWord::set`.
        #[cfg(not(ctxtree_compact))]
        xn.prev.set(pred);
        self.release_link(pred, panics);
        Step::Onto
    }

    #[inline]
    fn release_link(&self, l: Link, panics: &mut Panics) {
        if let Some(s) = l.slot() {
            self.release_in(s, 1, panics);
        }
    }
}

/// The outcome of [`RawArena::step_onto`].
#[must_use]
enum Step {
    Onto,
    Helped,
    Restart,
}

/// Counts, on this thread, the search's steps, the unlinks done through a hint and those of a
/// last member begun without a mark, so that the unit tests can check the cost of release
/// orders by counting, not by timing, and the loom models can check that they exercise the hint
/// and the unmarked paths.
#[cfg(test)]
pub(crate) mod probe {
    extern crate std;

    std::thread_local! {
        static STEPS: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
        static HINTED: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
        static UNMARKED: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
    }

    pub(crate) fn step() {
        STEPS.with(|s| s.set(s.get() + 1));
    }

    #[cfg_attr(ctxtree_compact, allow(dead_code))] // no hints in the compact build
    pub(crate) fn hinted() {
        HINTED.with(|s| s.set(s.get() + 1));
    }

    pub(crate) fn unmarked() {
        UNMARKED.with(|s| s.set(s.get() + 1));
    }

    /// The unlinks of a last member begun without a mark (`NextWord::freeze`) on this thread
    /// (under loom: in this execution, whose threads share one OS thread) since the last call.
    #[cfg_attr(not(ctxtree_loom), allow(dead_code))] // read by the loom models
    pub(crate) fn take_unmarked() -> usize {
        UNMARKED.with(|s| s.replace(0))
    }

    /// The search steps taken on this thread since the last call.
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))] // read by `HeapArena` tests
    pub(crate) fn take() -> usize {
        STEPS.with(|s| s.replace(0))
    }

    /// The unlinks done through a hint on this thread since the last call.
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))] // read by `HeapArena` tests
    pub(crate) fn take_hinted() -> usize {
        HINTED.with(|s| s.replace(0))
    }
}
