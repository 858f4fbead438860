//! Bit layouts of the per-node atomic words, and the link encoding shared by all of them.
//!
//! Every word is 32 bits wide, because 64-bit atomics do not exist on `thumbv7em` without a
//! lock-based fallback. A *link* names a slot as `slot + 1`, so that `0` means "no node" and a
//! zeroed word is a valid empty one.
//!
//! ```text
//! head (one per node):  31 DONE | 30 ERR_DEADLINE | 29 HAS_CAUSE/STOPPED | 28 WAITERS
//!                       | 27 HAS_DEADLINE | 26 TIMED | 25..0 link to the first child
//! next (one per node):  31 MARK | 30 FREE | 29 UNLINKED | 25..0 link to the next sibling
//! refs (one per node):  reference count (handles + children + list membership + traversals)
//! ```
//!
//! `head` is both the node's cancellation state and its child list: publishing `DONE` *is*
//! closing the list, in one atomic step, so a concurrent `with_cancel` either links its child
//! before the canceller reads the list, or sees `DONE` and creates the child cancelled
//! (tree invariant #3).

use crate::Error;

/// Number of bits of a link.
pub(crate) const LINK_BITS: u32 = 26;
/// Mask of the link field of `head` and `next`.
pub(crate) const LINK_MASK: u32 = (1 << LINK_BITS) - 1;
/// The largest number of slots any arena can have.
pub(crate) const MAX_SLOTS: usize = LINK_MASK as usize - 1;
/// The "no node" link.
pub(crate) const NIL: u32 = 0;

/// `head`: the node has a deadline, its own or inherited (immutable per incarnation): lets
/// `is_done`/`err` answer "live, no deadline" from the one `head` load, without reading the
/// deadline field.
pub(crate) const TIMED: u32 = 1 << 26;
/// `head`: the node has an own deadline (a hint for `expire`'s scan; immutable per incarnation).
pub(crate) const HAS_DEADLINE: u32 = 1 << 27;
/// `head`: a waiter may be registered; the canceller must drain the waiter list.
pub(crate) const WAITERS: u32 = 1 << 28;
/// `head`: the node's cause slot holds the cause (cancel nodes), or the AfterFunc was stopped
/// (AfterFunc nodes).
pub(crate) const HAS_CAUSE: u32 = 1 << 29;
/// `head`: for AfterFunc nodes, `stop()` won; same bit as `HAS_CAUSE`.
pub(crate) const STOPPED: u32 = HAS_CAUSE;
/// `head`: the error is `DeadlineExceeded` rather than `Canceled`.
pub(crate) const ERR_DEADLINE: u32 = 1 << 30;
/// `head`: the node is done (cancelled, expired, or for an AfterFunc node: fired or stopped).
/// Once set, the child list is closed: it only shrinks.
pub(crate) const DONE: u32 = 1 << 31;

/// `next`: the node is being removed from its owner's list; `next` is frozen.
pub(crate) const MARK: u32 = 1 << 31;
/// `next`: the slot is on the free list and the link names the next free slot. A searcher's
/// compare-and-swap expecting an unmarked sibling link can never match a free-list link.
pub(crate) const FREE: u32 = 1 << 30;
/// `next`: the node has been physically unlinked (or was never linked).
pub(crate) const UNLINKED: u32 = 1 << 29;

/// Sentinel parent/slot value: the context is `Background`.
pub(crate) const BACKGROUND: u32 = u32::MAX;
/// Sentinel parent/slot value: the context is `TODO`.
pub(crate) const TODO: u32 = u32::MAX - 1;
/// Sentinel `src`: the context can never be cancelled.
pub(crate) const NEVER: u32 = u32::MAX;

/// Whether `slot` names a real node (not a root sentinel).
#[inline(always)]
pub(crate) const fn is_node(slot: u32) -> bool {
    slot < TODO
}

/// Encodes a slot as a link.
#[inline(always)]
pub(crate) const fn link(slot: u32) -> u32 {
    slot + 1
}

/// The link field of a `head` or `next` word.
#[inline(always)]
pub(crate) const fn link_of(word: u32) -> u32 {
    word & LINK_MASK
}

/// A loaded `head` word.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Head(pub(crate) u32);

impl Head {
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

    #[inline(always)]
    pub(crate) const fn has_cause(self) -> bool {
        self.0 & HAS_CAUSE != 0
    }

    #[inline(always)]
    pub(crate) const fn first(self) -> u32 {
        link_of(self.0)
    }

    /// The same word with its first-child link replaced.
    #[inline(always)]
    pub(crate) const fn with_first(self, l: u32) -> u32 {
        (self.0 & !LINK_MASK) | l
    }
}

/// The `head` bits that record `err`.
#[inline(always)]
pub(crate) const fn err_bits(err: Error) -> u32 {
    match err {
        Error::Canceled => 0,
        Error::DeadlineExceeded => ERR_DEADLINE,
    }
}
