//! The `prev` word: a list member's hint of its predecessor (tree invariant #8; see
//! [`crate::list`]).

use super::const_unless_loom;
use super::index::Link;
use super::layout::LINK_MASK;
use crate::sync::{AtomicU32, Ordering};

/// A node's `prev` word.
#[repr(transparent)]
pub(crate) struct PrevWord(AtomicU32);

/// A loaded `prev` word: the link of the node believed to precede this one ([`Link::NIL`]: the
/// owner's `head`), or [`Hint::PENDING`] while the node is not yet published in a list. Only a
/// hint: every use re-validates it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub(crate) struct Hint(u32);

impl Hint {
    /// The node is not (yet) published in a list (tree invariant #8). Outside the link range.
    pub(crate) const PENDING: Hint = Hint(u32::MAX);

    /// The hint "preceded by `pred`".
    #[inline(always)]
    pub(crate) const fn after(pred: Link) -> Hint {
        Hint(pred.bits())
    }

    /// The hinted predecessor (`NIL`: the owner's `head`), `None` while pending.
    #[inline(always)]
    pub(crate) const fn pred(self) -> Option<Link> {
        if self.is_pending() {
            None
        } else {
            Some(Link::of_word(self.0))
        }
    }

    /// Whether the node is not yet published in a list.
    #[inline(always)]
    pub(crate) const fn is_pending(self) -> bool {
        self.0 == Hint::PENDING.0
    }
}

const _: () = assert!(
    Hint::PENDING.0 & !LINK_MASK != 0,
    "PENDING must not be a link"
);

impl PrevWord {
    const_unless_loom! {
        /// A free node's word.
        pub(crate) fn new() -> PrevWord {
            PrevWord(AtomicU32::new(0))
        }
    }

    /// Loads the word.
    #[inline(always)]
    pub(crate) fn load(&self, order: Ordering) -> Hint {
        Hint(self.0.load(order))
    }

    /// Sets `PENDING` on a freshly allocated node, before it is published (tree invariant #8).
    #[inline(always)]
    pub(crate) fn set_pending(&self) {
        // ORDERING: Relaxed: published by the Release store of `refs` in `init_taken`; a thread
        // that pins the node and then reads `prev` sees this value or a later one (tree
        // invariant #8).
        self.0.store(Hint::PENDING.0, Ordering::Relaxed);
    }

    /// The node's link has succeeded: its hint is now "first" (tree invariant #8). Only the
    /// linking thread calls this.
    #[inline(always)]
    pub(crate) fn set_first(&self) {
        // ORDERING: Release: a thread that pins this node and reads this value (Acquire in
        // `unlink_by_hint`) also sees the final `next` stored before the `head` CAS of
        // `link_front`, so its own compare-and-swap on `next` is ordered after it.
        self.0.store(Link::NIL.bits(), Ordering::Release);
    }

    /// Hints `pred` on a node the caller pinned after reaching it through its list (so it is
    /// published): a plain store cannot overwrite another incarnation's `PENDING` (invariant
    /// #8); if its linker has not yet cleared `PENDING`, the linker's `set_first` merely
    /// replaces ours.
    #[inline(always)]
    pub(crate) fn set(&self, pred: Link) {
        // ORDERING: Release, as every write of `prev` (see `pass`).
        self.0.store(pred.bits(), Ordering::Release);
    }

    /// Replaces the hint `from` with `to`, unless the hint no longer is `from` (then it is
    /// someone else's to fix; either way the hint stays a hint, so the result is not needed).
    /// A compare-and-swap, never a store: the node need not be pinned, and its slot may already
    /// hold a new node whose `PENDING` must not be overwritten (invariant #8).
    #[inline(always)]
    pub(crate) fn pass(&self, from: Link, to: Link) {
        // ORDERING: Release, as every write of `prev` (see `set_first`): a reader that acquires
        // this value synchronises with this thread, which had seen the node linked. Relaxed on
        // failure: nothing is read.
        let _ =
            self.0
                .compare_exchange(from.bits(), to.bits(), Ordering::Release, Ordering::Relaxed);
    }
}
