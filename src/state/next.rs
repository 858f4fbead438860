//! The `next` word: a list member's sibling link and removal flags, or a free slot's free-stack
//! link; and [`PredWord`], the word through which a list member is reached.

use super::const_unless_loom;
use super::head::HeadWord;
use super::index::Link;
use super::layout::{FREE, LINK_MASK, MARK, UNLINKED};
use crate::sync::{AtomicU32, Ordering};

/// A node's `next` word (see the [module docs](super) for its layout).
#[repr(transparent)]
pub(crate) struct NextWord(AtomicU32);

/// A loaded `next` word.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub(crate) struct Next(u32);

/// The outcome of [`NextWord::freeze`].
#[must_use]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mark {
    /// The word is marked (by this call or another thread's): frozen, naming the successor.
    Marked(Next),
    /// The node is already out of its list (or was never in one): nothing to unlink.
    AlreadyUnlinked,
}

impl Next {
    /// The word of a node that was never linked: `UNLINKED` (so that an unlink returns at once)
    /// and `MARK`.
    pub(crate) const NOT_LINKED: Next = Next(UNLINKED | MARK);

    /// The sibling (or free-stack) link.
    #[inline(always)]
    pub(crate) const fn link(self) -> Link {
        Link::of_word(self.0)
    }

    /// Whether the node is being removed from its list (`next` frozen).
    #[inline(always)]
    pub(crate) const fn is_marked(self) -> bool {
        self.0 & MARK != 0
    }

    /// Whether the node is out of its list (or was never linked).
    #[inline(always)]
    pub(crate) const fn is_unlinked(self) -> bool {
        self.0 & UNLINKED != 0
    }

    /// Whether the slot is on the free stack.
    #[cfg(all(test, not(ctxtree_loom)))]
    #[inline(always)]
    pub(crate) const fn is_free(self) -> bool {
        self.0 & FREE != 0
    }

    /// Whether the word names `link` with no flag: the node is a list member (or one being
    /// linked) whose successor is `link`.
    #[cfg(not(ctxtree_compact))]
    #[inline(always)]
    pub(crate) const fn names(self, link: Link) -> bool {
        self.0 == link.bits()
    }
}

// `freeze_from` tests "marked, or a plain `NIL`" as one signed comparison.
const _: () = assert!(MARK == 1 << 31);

impl NextWord {
    const_unless_loom! {
        /// A never-used node's word: zero, so that an empty arena is all-zero bits (`.bss`).
        /// It needs no `FREE`: no link ever names a slot that was never handed out (links are
        /// written only from allocated slots, below the arena's `bump`), and allocation writes
        /// the word before publishing the node.
        pub(crate) fn new() -> NextWord {
            NextWord(AtomicU32::new(0))
        }
    }

    /// Loads the word.
    #[inline(always)]
    pub(crate) fn load(&self, order: Ordering) -> Next {
        Next(self.0.load(order))
    }

    /// Marks a node as not linked: before it is published (from `init_taken`), or after a
    /// `link_front` that failed on a closed list (restoring "never linked").
    #[inline(always)]
    pub(crate) fn set_not_linked(&self) {
        // ORDERING: Relaxed: before the node is published, the Release store of `refs` in
        // `init_taken` publishes it; after a failed `link_front`, the sibling link it replaces was
        // never published (the compare-and-swap that would have published it failed), and the
        // node is in no list for a traversal to reach it through.
        self.0.store(Next::NOT_LINKED.0, Ordering::Relaxed);
    }

    /// Points a node being linked at its successor-to-be (from [`HeadWord::link_front`]).
    #[inline(always)]
    pub(super) fn set_sibling(&self, succ: Link) {
        // ORDERING: Relaxed: published by the Release CAS of the owner's `head` in `link_front`.
        self.0.store(succ.bits(), Ordering::Relaxed);
    }

    /// Pushes the node on the free stack, above `below` (the stack's current top). The caller
    /// owns the node exclusively.
    #[inline(always)]
    pub(crate) fn set_free(&self, below: Link) {
        // ORDERING: Relaxed: published by the Release CAS of the free stack's head in `push`.
        // `FREE` keeps any stale searcher's CAS (which expects an unflagged sibling link) from
        // matching.
        self.0.store(FREE | below.bits(), Ordering::Relaxed);
    }

    /// Sets `MARK` whatever the word's link, as [`freeze`](NextWord::freeze) does for any but a
    /// last member (for the unit tests: a remover stalled between its mark and its swing).
    #[cfg(all(test, not(ctxtree_loom)))]
    #[inline]
    pub(crate) fn mark(&self) -> Mark {
        // ORDERING: Acquire, as in `freeze`.
        self.freeze_from(self.0.load(Ordering::Acquire), false)
    }

    /// What an unlinker needs before it swings the predecessor's link (tree invariant #4): the
    /// word frozen, unless the node is already out of its list (`AlreadyUnlinked`). Several
    /// threads may unlink one node (a canceller and the node's own canceler, a searcher
    /// helping): all get `Marked`; one compare-and-swap removes it.
    ///
    /// A word that is a plain `NIL` — no flag, no successor: the last member of its list — is
    /// frozen already: insertion is only at the front, so nothing can give the node a
    /// successor, no compare-and-swap expects the word to name one, and the only writes other
    /// threads can still make to it are a racing unlinker's mark and the winning unlinker's
    /// `UNLINKED`, neither of which changes its link. So the last member leaves without a
    /// mark: `Marked` with the word a mark would have left (`MARK`, successor `NIL`), and no
    /// read-modify-write. Any other word gets `MARK` by a compare-and-swap.
    ///
    /// All unlinkers of a last member agree on its successor (`NIL`), so exactly one
    /// compare-and-swap on the predecessor's link removes it, as with a mark; the winner's
    /// [`set_unlinked`](NextWord::set_unlinked) stores a superset of any racing mark.
    #[inline]
    pub(crate) fn freeze(&self) -> Mark {
        // ORDERING: Acquire: pairs with the Release store of UNLINKED (the list reference has
        // moved on), and with the Release that published the node in its list (the `next` its
        // linker stored; see `set_sibling`): the caller holds the node, reached through that
        // list or created by its own thread.
        let nx = self.0.load(Ordering::Acquire);
        #[cfg(test)]
        if nx == 0 {
            crate::list::probe::unmarked();
        }
        self.freeze_from(nx, true)
    }

    /// [`freeze`](NextWord::freeze) from `nx`, a value of the word just loaded with Acquire;
    /// with `last_frozen` false, a last member is marked too.
    #[inline(always)]
    fn freeze_from(&self, mut nx: u32, last_frozen: bool) -> Mark {
        loop {
            if Next(nx).is_unlinked() {
                return Mark::AlreadyUnlinked;
            }
            // `MARK` is the sign bit: one signed comparison tells "marked" and, with it, "a
            // plain `NIL`" (zero); for the latter, the word a mark would leave is returned,
            // unwritten.
            if last_frozen && (nx as i32) <= 0 {
                return Mark::Marked(Next(nx | MARK));
            }
            if Next(nx).is_marked() {
                return Mark::Marked(Next(nx));
            }
            // ORDERING: AcqRel: the mark is ordered with the searchers' CASes on the same word.
            match self
                .0
                .compare_exchange_weak(nx, nx | MARK, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Mark::Marked(Next(nx | MARK)),
                Err(x) => nx = x,
            }
        }
    }

    /// Records that the compare-and-swap that swung a predecessor past this node was ours: the
    /// node is out, and its list reference is the caller's. `marked` is the frozen word.
    #[inline(always)]
    pub(crate) fn set_unlinked(&self, marked: Next) {
        debug_assert!(marked.is_marked());
        // ORDERING: Release pairs with the Acquire in `mark`.
        self.0.store(marked.0 | UNLINKED, Ordering::Release);
    }
}

/// The word that links to a list member: the owner's `head`, or the `next` of the member
/// before it.
#[derive(Clone, Copy)]
pub(crate) enum PredWord<'a> {
    /// The owner's `head`: the member is the first child.
    Head(&'a HeadWord),
    /// A predecessor's `next`.
    Next(&'a NextWord),
}

/// A loaded [`PredWord`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub(crate) struct PredSeen(u32);

impl PredSeen {
    /// The link to the member it names.
    #[inline(always)]
    pub(crate) const fn link(self) -> Link {
        Link::of_word(self.0)
    }
}

/// The outcome of [`PredWord::swing`].
#[must_use]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Swing {
    /// The word now names the new successor: this thread unlinked the member it named.
    Swung,
    /// The word changed since it was loaded: nothing was done.
    Changed,
}

impl From<Next> for PredSeen {
    #[inline(always)]
    fn from(next: Next) -> PredSeen {
        PredSeen(next.0)
    }
}

impl<'a> PredWord<'a> {
    #[inline(always)]
    fn atomic(self) -> &'a AtomicU32 {
        match self {
            PredWord::Head(h) => h.atomic(),
            PredWord::Next(n) => &n.0,
        }
    }

    /// Loads the word.
    #[inline(always)]
    pub(crate) fn load(self, order: Ordering) -> PredSeen {
        PredSeen(self.atomic().load(order))
    }

    /// Whether `seen` (loaded from this word) is frozen: the predecessor is itself being
    /// removed. Never for a `head`, whose top bit is `DONE`, not `MARK`.
    #[inline(always)]
    pub(crate) fn is_frozen(self, seen: PredSeen) -> bool {
        match self {
            PredWord::Head(_) => false,
            PredWord::Next(_) => Next(seen.0).is_marked(),
        }
    }

    /// Whether `now`, loaded after `before`, still links to the same member the same way: for a
    /// `head`, the same first child (its state bits may change); for a `next`, the very same
    /// word (a change of flags, such as a mark, counts).
    #[inline(always)]
    pub(crate) fn still_names(self, before: PredSeen, now: PredSeen) -> bool {
        match self {
            PredWord::Head(_) => now.link() == before.link(),
            PredWord::Next(_) => now == before,
        }
    }

    /// Unlinks the member `seen` names: swings the word's link to `succ` (the member's
    /// successor, read from its marked `next`; tree invariant #4), keeping the word's other
    /// bits, if the word is still `seen`. Out of line on 32-bit targets (flash).
    #[cfg_attr(target_pointer_width = "64", inline)]
    #[cfg_attr(not(target_pointer_width = "64"), inline(never))]
    pub(crate) fn swing(self, seen: PredSeen, succ: Link) -> Swing {
        let new = (seen.0 & !LINK_MASK) | succ.bits();
        // ORDERING: AcqRel: Release publishes the new link to traversers (their Acquire loads of
        // this word); Acquire on failure, as for the loads. The callers pin both the predecessor
        // (held, or the owner) and the member being unlinked.
        match self
            .atomic()
            .compare_exchange(seen.0, new, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Swing::Swung,
            Err(_) => Swing::Changed,
        }
    }
}
