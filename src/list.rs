//! Child lists: linking a node at the front of its owner's list, and unlinking it from anywhere
//! in O(1) expected time, whatever the order of release and the number of live siblings.
//!
//! A list is singly linked through the `next` words, headed by the owner's `head` word (see
//! [`crate::state`]); insertion is always at the front, and removal is Harris-style (tree
//! invariant #4): mark the victim's `next`, then swing its predecessor's link past it.
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
//! # Why a hint is safe to use (invariant #8)
//! `prev` is `PREV_PENDING` from a node's initialisation until its `link` has succeeded; only
//! the linking thread clears it, and every other write of `prev` either is a compare-and-swap
//! that never expects `PREV_PENDING`, or targets a node the writer pinned after reaching it
//! through a list (so it is published). A pinned node `p` whose `prev` is not `PREV_PENDING`
//! and whose `next` names `c` with no flag is therefore `c`'s predecessor in `c`'s one list
//! (invariant #2): a node being linked, whose `next` already names the current first child but
//! whose `head` compare-and-swap may still fail and be retried, is excluded — swinging *its*
//! `next` would unlink nothing.

use crate::arena::RawArena;
use crate::node::{Kind, Node, PREV_PENDING};
use crate::state::{self, DONE, Head, LINK_MASK, MARK, NIL, UNLINKED};
use crate::sync::Ordering;
use crate::unwind::Panics;

impl RawArena {
    /// The canceller whose child list `n` (a `Cancel`, `Deadline` or `AfterFunc` node) belongs
    /// to: its nearest `Cancel`/`Deadline` ancestor, unless a `without_cancel` (or a root) comes
    /// first. `None` for a node in no list.
    ///
    /// # Safety
    /// The caller holds a reference on `n` (which pins every ancestor: invariant #1).
    pub(crate) unsafe fn list_owner(&self, n: &Node) -> Option<u32> {
        // SAFETY: per the caller's contract.
        let mut p = unsafe { n.parent() };
        while state::is_node(p) {
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
    pub(crate) fn link(&self, owner: u32, child: u32) -> Result<(), Head> {
        self.link_node(self.node(owner), child, self.node(child))
    }

    /// [`link`](RawArena::link) with both nodes already looked up.
    pub(crate) fn link_node(&self, on: &Node, child: u32, cn: &Node) -> Result<(), Head> {
        // ORDERING: Acquire: if done, the caller reads the owner's cause slot next.
        let mut h = on.head.load(Ordering::Acquire);
        loop {
            if h & DONE != 0 {
                return Err(Head(h));
            }
            // ORDERING: Relaxed: published by the Release CAS below.
            cn.next.store(state::link_of(h), Ordering::Relaxed);
            let new = Head(h).with_first(state::link(child));
            // ORDERING: Release publishes the child (its fields, `next`) to traversers that read
            // `head` with Acquire; Acquire on failure, as for the load.
            match on
                .head
                .compare_exchange_weak(h, new, Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(x) => h = x,
            }
        }
        // Published: the hint is now "first" (invariant #8).
        // ORDERING: Release: a thread that pins this node and reads this value (Acquire in
        // `unlink_by_hint`) also sees the final `next` stored before the CAS above, so its own
        // compare-and-swap on `next` is ordered after it.
        cn.prev.store(NIL, Ordering::Release);
        Ok(())
    }

    /// Unlinks `c` from `owner`'s list (invariant #4). The caller holds a reference on `c`.
    /// Returns true if this call unlinked it, and so now holds the list's reference on `c`.
    ///
    /// Releasing the nodes it steps on can free one that another thread unlinked meanwhile,
    /// and so run user code (a heap value's or cause's `Drop`): a panic there goes to `panics`,
    /// and the unlink carries on (see [`crate::unwind`]).
    pub(crate) fn unlink_in(&self, owner: u32, c: u32, panics: &mut Panics) -> bool {
        self.unlink_node(self.node(owner), c, self.node(c), panics)
    }

    /// [`unlink_in`](RawArena::unlink_in) that resumes a panic itself (for the unit tests).
    #[cfg(all(test, not(ctxtree_loom)))]
    pub(crate) fn unlink(&self, owner: u32, c: u32) -> bool {
        let mut panics = Panics::new();
        let unlinked = self.unlink_in(owner, c, &mut panics);
        panics.resume();
        unlinked
    }

    /// [`unlink_in`](RawArena::unlink_in) with both nodes already looked up.
    pub(crate) fn unlink_node(&self, on: &Node, c: u32, cn: &Node, panics: &mut Panics) -> bool {
        let Some(marked) = Self::mark(cn) else {
            return false;
        };
        self.unlink_first(on, cn, c, marked)
            || self.unlink_by_hint(cn, c, marked, panics)
            || self.unlink_by_search(on, cn, c, marked, panics)
    }

    /// Sets `MARK` on `cn.next` (freezing it), unless the node is already out of its list.
    /// Returns the marked word. Several threads may unlink one node (a canceller and the
    /// node's own canceler, a searcher helping): all go on; one compare-and-swap removes it.
    #[inline]
    fn mark(cn: &Node) -> Option<u32> {
        // ORDERING: Acquire: pairs with the Release store of UNLINKED (the list reference has
        // moved on).
        let mut nx = cn.next.load(Ordering::Acquire);
        loop {
            if nx & UNLINKED != 0 {
                return None;
            }
            if nx & MARK != 0 {
                return Some(nx);
            }
            // ORDERING: AcqRel: the mark is ordered with the searchers' CASes on the same word.
            match cn
                .next
                .compare_exchange_weak(nx, nx | MARK, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(nx | MARK),
                Err(x) => nx = x,
            }
        }
    }

    /// Records that the compare-and-swap that swung a predecessor past `cn` was ours: `cn` is
    /// out, and its list reference is the caller's.
    #[inline]
    fn unlinked(cn: &Node, marked: u32) -> bool {
        // ORDERING: Release pairs with the Acquire in `mark`.
        cn.next.store(marked | UNLINKED, Ordering::Release);
        true
    }

    /// Step 1: `c` is the owner's first child.
    #[inline]
    fn unlink_first(&self, on: &Node, cn: &Node, c: u32, marked: u32) -> bool {
        let target = state::link(c);
        // ORDERING: Acquire: the linked node's publication (see `link_node`).
        let mut h = on.head.load(Ordering::Acquire);
        while state::link_of(h) == target {
            let new = Head(h).with_first(state::link_of(marked));
            // ORDERING: AcqRel: Release publishes the new first link to traversers; Acquire
            // on failure, as for the load. A failure that leaves `c` first changed only the
            // state bits (`DONE`, `WAITERS`): retry.
            match on
                .head
                .compare_exchange(h, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Self::unlinked(cn, marked),
                Err(x) => h = x,
            }
        }
        false
    }

    /// Step 2: through the hinted predecessor (invariant #8).
    fn unlink_by_hint(&self, cn: &Node, c: u32, marked: u32, panics: &mut Panics) -> bool {
        // ORDERING: Acquire: pairs with the Release writes of `prev` (see `link_node`).
        let hint = cn.prev.load(Ordering::Acquire);
        if hint == NIL || hint == PREV_PENDING {
            return false;
        }
        let ps = hint - 1;
        let pn = self.node(ps);
        if !pn.try_acquire() {
            return false;
        }
        let target = state::link(c);
        // ORDERING: Acquire: the predecessor's `next` as published (see `link_node`).
        let pred_word = pn.next.load(Ordering::Acquire);
        let won = pred_word == target
            // ORDERING: Acquire: a value other than PREV_PENDING was written after `pn`'s
            // link succeeded (invariant #8); synchronising with it orders our CAS below after
            // the final `next` the linker stored.
            && pn.prev.load(Ordering::Acquire) != PREV_PENDING
            // ORDERING: AcqRel, as for the unlink CAS in `unlink_by_search`: `pn` is pinned by
            // our reference and `c` by the caller's.
            && pn
                .next
                .compare_exchange(pred_word, state::link_of(marked), Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        if won {
            Self::unlinked(cn, marked);
            self.pass_hint(state::link_of(marked), target, hint);
            #[cfg(test)]
            probe::hinted();
        }
        self.release_node_in(ps, pn, 1, panics);
        won
    }

    /// After unlinking the node `from` (a link) whose predecessor was `to` (a link, or `NIL`
    /// for the head), tells its successor `succ` that its predecessor is now `to` — unless
    /// its hint no longer names `from` (then it is someone else's to fix).
    #[inline]
    fn pass_hint(&self, succ: u32, from: u32, to: u32) {
        if succ != NIL {
            // ORDERING: Release, as every write of `prev` (see `link_node`): a reader that
            // acquires this value synchronises with this thread, which had seen `succ` linked.
            // Relaxed on failure: nothing is read. A compare-and-swap, never a store: `succ` is
            // not pinned, and its slot may already hold a new node whose `PREV_PENDING` must
            // not be overwritten (invariant #8).
            let _ = self.node(succ - 1).prev.compare_exchange(
                from,
                to,
                Ordering::Release,
                Ordering::Relaxed,
            );
        }
    }

    /// Step 3: walk from the owner's `head`, helping marked nodes and leaving exact hints on
    /// every node passed (invariants #4, #5, #8).
    fn unlink_by_search(
        &self,
        on: &Node,
        cn: &Node,
        c: u32,
        marked: u32,
        panics: &mut Panics,
    ) -> bool {
        let target = state::link(c);
        let succ = state::link_of(marked);
        'search: loop {
            // `pred` is the link of the held predecessor, or NIL for the owner's `head`.
            let mut pred = NIL;
            loop {
                // The predecessor's outgoing word.
                let cell = if pred == NIL {
                    &on.head
                } else {
                    &self.node(pred - 1).next
                };
                // ORDERING: Acquire: the linked node's publication (see `link_node`).
                let pred_word = cell.load(Ordering::Acquire);
                if pred != NIL && pred_word & MARK != 0 {
                    // The predecessor is being removed: start over (we will help it from its
                    // own predecessor).
                    self.release_link(pred, panics);
                    continue 'search;
                }
                let x = state::link_of(pred_word);
                if x == NIL {
                    // `c` is in no list: another thread unlinked it and owns the reference.
                    self.release_link(pred, panics);
                    return false;
                }
                if x == target {
                    let new = (pred_word & !LINK_MASK) | succ;
                    // ORDERING: AcqRel: Release publishes the new link to traversers; the
                    // predecessor is pinned (held, or the owner) and `c` is pinned by the caller.
                    if cell
                        .compare_exchange(pred_word, new, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        Self::unlinked(cn, marked);
                        self.mend_hints(on, pred, panics);
                        return true;
                    }
                    self.release_link(pred, panics);
                    continue 'search;
                }
                match self.step_onto(cell, pred, pred_word, x, panics) {
                    Step::Onto => pred = x,
                    Step::Helped => {}
                    Step::Restart => continue 'search,
                }
            }
        }
    }

    /// After a search unlinked a node behind the held `pred` (a link, or `NIL` for the head):
    /// walks on while the hints met are stale, fixing each, and stops at the first exact one
    /// (or the end of the list, or any contention), releasing what it holds.
    ///
    /// Stale hints come from insertion at the front (the old first child keeps "first"), so
    /// they form a run at the front of the list; a search only happens for a node in that run,
    /// and mending fixes the whole run at once. Each stale hint is walked over once: the walks
    /// cost O(1) amortized per insertion, whatever the release order (a shuffled release of
    /// 100,000 children walks the list once, not once per release).
    fn mend_hints(&self, on: &Node, mut pred: u32, panics: &mut Panics) {
        loop {
            let cell = if pred == NIL {
                &on.head
            } else {
                &self.node(pred - 1).next
            };
            // ORDERING: Acquire: the linked node's publication (see `link_node`).
            let pred_word = cell.load(Ordering::Acquire);
            let x = state::link_of(pred_word);
            if (pred != NIL && pred_word & MARK != 0) || x == NIL {
                self.release_link(pred, panics);
                return;
            }
            // ORDERING: Relaxed: only decides whether to walk on; `step_onto` re-validates.
            if self.node(x - 1).prev.load(Ordering::Relaxed) == pred {
                self.release_link(pred, panics);
                return;
            }
            match self.step_onto(cell, pred, pred_word, x, panics) {
                Step::Onto => pred = x,
                Step::Helped => {}
                Step::Restart => return,
            }
        }
    }

    /// One step of the search: from the held predecessor `pred` (whose outgoing word `cell`
    /// held `pred_word`, naming `x`) onto `x`. `Onto`: `x` is now held, `pred` released, and
    /// `x` hinted with `pred`. `Helped`: `x` was being removed and this thread unlinked it; the
    /// walk stays on `pred`. `Restart`: `pred` released; start again from the head.
    fn step_onto(
        &self,
        cell: &crate::sync::AtomicU32,
        pred: u32,
        pred_word: u32,
        x: u32,
        panics: &mut Panics,
    ) -> Step {
        #[cfg(test)]
        probe::step();
        let xs = x - 1;
        let xn = self.node(xs);
        // Take a reference, then check `x` is still linked after `pred` (invariant #5).
        if !xn.try_acquire() {
            self.release_link(pred, panics);
            return Step::Restart;
        }
        // ORDERING: Acquire, as in `unlink_by_search`.
        let again = cell.load(Ordering::Acquire);
        let still = if pred == NIL {
            state::link_of(again) == x
        } else {
            again == pred_word
        };
        if !still {
            self.release_node_in(xs, xn, 1, panics);
            self.release_link(pred, panics);
            return Step::Restart;
        }
        // ORDERING: Acquire, as above.
        let x_word = xn.next.load(Ordering::Acquire);
        if x_word & MARK != 0 {
            // x is being removed by someone else: help (invariant #4).
            let new = (again & !LINK_MASK) | state::link_of(x_word);
            // ORDERING: as for the unlink CAS in `unlink_by_search`.
            if cell
                .compare_exchange(again, new, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                Self::unlinked(xn, x_word);
                // Our reference and the list's, which our CAS made ours.
                self.release_node_in(xs, xn, 2, panics);
                return Step::Helped;
            }
            self.release_node_in(xs, xn, 1, panics);
            self.release_link(pred, panics);
            return Step::Restart;
        }
        // `x` is pinned and published (we reached it through its list): a plain store cannot
        // overwrite another incarnation's PREV_PENDING (invariant #8); if its linker has not yet
        // cleared PREV_PENDING, the linker's store of "first" merely replaces ours.
        // ORDERING: Release, as every write of `prev` (see `pass_hint`).
        xn.prev.store(pred, Ordering::Release);
        self.release_link(pred, panics);
        Step::Onto
    }

    #[inline]
    fn release_link(&self, l: u32, panics: &mut Panics) {
        if l != NIL {
            self.release_in(l - 1, 1, panics);
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

/// Counts, on this thread, the search's steps and the unlinks done through a hint, so that the
/// unit tests can check the cost of release orders by counting, not by timing, and the loom
/// models can check that they exercise the hint path.
#[cfg(test)]
pub(crate) mod probe {
    extern crate std;

    std::thread_local! {
        static STEPS: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
        static HINTED: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
    }

    pub(crate) fn step() {
        STEPS.with(|s| s.set(s.get() + 1));
    }

    pub(crate) fn hinted() {
        HINTED.with(|s| s.set(s.get() + 1));
    }

    /// The search steps taken on this thread since the last call.
    pub(crate) fn take() -> usize {
        STEPS.with(|s| s.replace(0))
    }

    /// The unlinks done through a hint on this thread since the last call.
    pub(crate) fn take_hinted() -> usize {
        HINTED.with(|s| s.replace(0))
    }
}
