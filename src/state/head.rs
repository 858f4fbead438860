//! The `head` word: a node's done state and the head of its child list.

use super::const_unless_loom;
use super::index::Link;
use super::layout::{
    DONE, ERR_DEADLINE, HAS_CAUSE, HAS_DEADLINE, LINK_MASK, STOPPED, TIMED, WAITERS,
};
use super::next::NextWord;
use crate::Error;
use crate::sync::{AtomicU32, Ordering};

/// A node's `head` word (see the [module docs](super) for its layout).
#[repr(transparent)]
pub(crate) struct HeadWord(AtomicU32);

/// A loaded `head` word.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub(crate) struct Head(u32);

/// Whether a new node has a deadline: sets the immutable `TIMED` and `HAS_DEADLINE` bits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Timing {
    /// No deadline (value, without-cancel and after-func nodes; cancel nodes under no deadline).
    Untimed,
    /// A deadline inherited from an ancestor (`TIMED`).
    Inherited,
    /// An own deadline (`TIMED | HAS_DEADLINE`): a `Deadline` node.
    Own,
}

/// [`HeadWord::link_front`] found the list closed: the owner is done, with this word.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Closed(pub(crate) Head);

/// The outcome of [`HeadWord::swing_first`].
#[must_use]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SwingFirst {
    /// The node was the first child and the head now names its successor: this thread unlinked
    /// it.
    Swung,
    /// The node is not (or no longer) the first child.
    NotFirst,
}

/// The outcome of [`HeadWord::publish_done`].
#[must_use]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Publish {
    /// This thread published `DONE`; if the word had `WAITERS`, it must drain the waiter list.
    Published {
        /// The word had `WAITERS`.
        had_waiters: bool,
    },
    /// Another thread published `DONE` first.
    AlreadyDone,
}

/// The outcome of [`HeadWord::claim_fire`] and [`HeadWord::claim_stop`].
#[must_use]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Claim {
    /// This thread claimed the after-func node's closure.
    Claimed,
    /// The node had already fired or been stopped.
    AlreadyDone,
}

/// The outcome of [`HeadWord::announce_waiter`].
#[must_use]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Announce {
    /// `WAITERS` is set (by this call or an earlier one) and the node is not done: the
    /// canceller that publishes `DONE` will drain the list.
    Announced,
    /// The node is done: no drain is coming.
    AlreadyDone,
}

impl Head {
    /// The word of a new node: live, no child, the deadline bits of `timing`.
    #[inline(always)]
    pub(crate) const fn live(timing: Timing) -> Head {
        Head(match timing {
            Timing::Untimed => 0,
            Timing::Inherited => TIMED,
            Timing::Own => HAS_DEADLINE | TIMED,
        })
    }

    /// Whether the node is done.
    #[inline(always)]
    pub(crate) const fn is_done(self) -> bool {
        self.0 & DONE != 0
    }

    /// The error recorded in a done word.
    #[inline(always)]
    pub(crate) const fn err(self) -> Error {
        if self.0 & ERR_DEADLINE != 0 {
            Error::DeadlineExceeded
        } else {
            Error::Canceled
        }
    }

    /// Whether the cause slot holds the cause (a done canceller node).
    #[inline(always)]
    pub(crate) const fn has_cause(self) -> bool {
        self.0 & HAS_CAUSE != 0
    }

    /// Whether an after-func node was stopped (rather than fired).
    #[inline(always)]
    pub(crate) const fn is_stopped(self) -> bool {
        self.0 & STOPPED != 0
    }

    /// Whether a waiter may be registered.
    #[inline(always)]
    pub(crate) const fn has_waiters(self) -> bool {
        self.0 & WAITERS != 0
    }

    /// Whether the word is done or timed: all that the one-load check of a context
    /// (`Context::done_word`, 64-bit targets) tests before it answers "not done".
    #[cfg(target_pointer_width = "64")]
    #[inline(always)]
    pub(crate) const fn done_or_timed(self) -> bool {
        self.0 & (DONE | TIMED) != 0
    }

    /// Whether the node has a deadline, own or inherited.
    #[inline(always)]
    pub(crate) const fn timed(self) -> bool {
        self.0 & TIMED != 0
    }

    /// Whether the node has an own deadline (a `Deadline` node).
    #[inline(always)]
    pub(crate) const fn has_own_deadline(self) -> bool {
        self.0 & HAS_DEADLINE != 0
    }

    /// The link to the first child.
    #[inline(always)]
    pub(crate) const fn first(self) -> Link {
        Link::of_word(self.0)
    }

    /// Whether the node is done and its list empty: its cancel has finished (tree invariant #6).
    #[inline(always)]
    pub(crate) const fn is_done_and_empty(self) -> bool {
        self.is_done() && self.first().is_nil()
    }

    /// The same word with its first-child link replaced.
    #[inline(always)]
    const fn with_first(self, first: Link) -> u32 {
        (self.0 & !LINK_MASK) | first.bits()
    }
}

/// The `head` bits that record `err`, and `HAS_CAUSE` if `has_cause`.
#[inline(always)]
const fn done_bits(err: Error, has_cause: bool) -> u32 {
    let err_bits = match err {
        Error::Canceled => 0,
        Error::DeadlineExceeded => ERR_DEADLINE,
    };
    DONE | err_bits | if has_cause { HAS_CAUSE } else { 0 }
}

impl HeadWord {
    const_unless_loom! {
        /// A free node's word: zero.
        pub(crate) fn new() -> HeadWord {
            HeadWord(AtomicU32::new(0))
        }
    }

    /// A word that holds `head` from the start and is never changed: the stand-in `head`
    /// words of an arena's header, which a `Src` may name (see [`Src`](super::Src)).
    #[cfg(all(target_pointer_width = "64", not(ctxtree_loom)))]
    pub(crate) const fn holding(head: Head) -> HeadWord {
        HeadWord(AtomicU32::new(head.0))
    }

    /// As above (loom's atomics have no `const fn new`).
    #[cfg(all(target_pointer_width = "64", ctxtree_loom))]
    pub(crate) fn holding(head: Head) -> HeadWord {
        HeadWord(AtomicU32::new(head.0))
    }

    /// Loads the word.
    #[inline(always)]
    pub(crate) fn load(&self, order: Ordering) -> Head {
        Head(self.0.load(order))
    }

    /// The atomic itself, for [`super::PredWord`].
    #[inline(always)]
    pub(super) fn atomic(&self) -> &AtomicU32 {
        &self.0
    }

    /// Initialises a freshly allocated node's word. The caller owns the node exclusively.
    #[inline(always)]
    pub(crate) fn init(&self, head: Head) {
        // ORDERING: Relaxed: published by the Release store of `refs` in `init_taken`.
        self.0.store(head.0, Ordering::Relaxed);
    }

    /// Resets a dead node's word. The caller owns the node exclusively (its count reached 0).
    #[inline(always)]
    pub(crate) fn reset(&self) {
        // ORDERING: Relaxed: published to the next owner by the Release in `push`.
        self.0.store(0, Ordering::Relaxed);
    }

    /// Links `child` (refs already published) at the front of this list, writing its
    /// `child_next` to the current first child; `Err` with the done word if the list is closed
    /// (tree invariant #3).
    #[inline]
    pub(crate) fn link_front(&self, child: Link, child_next: &NextWord) -> Result<(), Closed> {
        // ORDERING: Acquire: if done, the caller reads the owner's cause slot next.
        let mut h = self.0.load(Ordering::Acquire);
        loop {
            if Head(h).is_done() {
                return Err(Closed(Head(h)));
            }
            child_next.set_sibling(Head(h).first());
            let new = Head(h).with_first(child);
            // ORDERING: Release publishes the child (its fields, `next`) to traversers that read
            // `head` with Acquire; Acquire on failure, as for the load.
            match self
                .0
                .compare_exchange_weak(h, new, Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(x) => h = x,
            }
        }
    }

    /// Unlinks the first child `first` by swinging the head to its successor `succ` (tree
    /// invariant #4: `first`'s `next` is marked and named `succ`).
    #[inline]
    pub(crate) fn swing_first(&self, first: Link, succ: Link) -> SwingFirst {
        // ORDERING: Acquire: the linked node's publication (see `link_front`).
        let mut h = self.0.load(Ordering::Acquire);
        while Head(h).first() == first {
            let new = Head(h).with_first(succ);
            // ORDERING: AcqRel: Release publishes the new first link to traversers; Acquire
            // on failure, as for the load. A failure that leaves `first` first changed only the
            // state bits (`DONE`, `WAITERS`): retry.
            match self
                .0
                .compare_exchange(h, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return SwingFirst::Swung,
                Err(x) => h = x,
            }
        }
        SwingFirst::NotFirst
    }

    /// Publishes `DONE` with `err` (and `HAS_CAUSE` if `has_cause`), unless another thread
    /// publishes it first. `seen` is the caller's earlier (Acquire) load of the word, not done.
    #[inline]
    pub(crate) fn publish_done(&self, seen: Head, err: Error, has_cause: bool) -> Publish {
        let bits = done_bits(err, has_cause);
        let mut w = seen.0;
        loop {
            // ORDERING: Release publishes the cause slot and everything the canceller did before
            // to observers' Acquire loads of `head` (Go: closing Done happens-before receiving).
            match self
                .0
                .compare_exchange_weak(w, w | bits, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Publish::Published {
                        had_waiters: Head(w).has_waiters(),
                    };
                }
                Err(x) => {
                    if Head(x).is_done() {
                        return Publish::AlreadyDone;
                    }
                    w = x;
                }
            }
        }
    }

    /// Claims an after-func node's closure to run it: sets `DONE`, unless already done.
    #[inline]
    pub(crate) fn claim_fire(&self) -> Claim {
        // ORDERING: AcqRel: the claim orders this thread's use of the closure after its
        // writing (already ordered by our reference) and against a racing `stop`.
        self.claim(DONE)
    }

    /// Claims an after-func node's closure to drop it unrun: sets `DONE | STOPPED`, unless
    /// already done.
    #[inline]
    pub(crate) fn claim_stop(&self) -> Claim {
        // ORDERING: AcqRel: the claim races with `claim_fire`'s; exactly one succeeds.
        self.claim(DONE | STOPPED)
    }

    #[inline(always)]
    fn claim(&self, bits: u32) -> Claim {
        // ORDERING: Relaxed: seeds the CAS.
        let mut w = self.0.load(Ordering::Relaxed);
        loop {
            if Head(w).is_done() {
                return Claim::AlreadyDone;
            }
            // ORDERING: AcqRel (see `claim_fire`, `claim_stop`): the two claims race on this
            // word; exactly one succeeds. Relaxed on failure: only retried.
            match self
                .0
                .compare_exchange_weak(w, w | bits, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Claim::Claimed,
                Err(x) => w = x,
            }
        }
    }

    /// Announces a waiter: sets `WAITERS` unless the node is done (see `crate::waiters`, "A
    /// potential race"). The caller holds the waiter-list lock.
    #[inline]
    pub(crate) fn announce_waiter(&self) -> Announce {
        // ORDERING: Acquire: a done context's publication (see `publish_done`).
        let mut h = self.0.load(Ordering::Acquire);
        loop {
            if Head(h).is_done() {
                return Announce::AlreadyDone;
            }
            if Head(h).has_waiters() {
                return Announce::Announced;
            }
            // ORDERING: AcqRel: ordered with the canceller's CAS on the same word: whichever is
            // second sees the other's bit (waiters module docs, "A potential race").
            match self
                .0
                .compare_exchange_weak(h, h | WAITERS, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Announce::Announced,
                Err(x) => h = x,
            }
        }
    }
}
