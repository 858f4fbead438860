//! The per-node state words, and the only module that changes them.
//!
//! Every word is 32 bits wide, because 64-bit atomics do not exist on `thumbv7em` without a
//! lock-based fallback. A [`Link`] names a slot as `slot + 1`, so that `0` means "no node" and a
//! zeroed word is a valid empty one.
//!
//! ```text
//! head (one per node):  31 DONE | 30 ERR_DEADLINE | 29 HAS_CAUSE/STOPPED | 28 WAITERS
//!                       | 27 HAS_DEADLINE | 26 TIMED | 25..0 link to the first child
//! next (one per node):  31 MARK | 30 FREE | 29 UNLINKED | 28..26 unused | 25..0 link to the
//!                       next sibling (or, on the free stack, to the next free slot)
//! prev (one per node):  a hint: a link to the believed predecessor, or PENDING
//! refs (one per node):  reference count (handles + children + list membership + traversals)
//! ```
//!
//! The widths are declared once ([`layout`]), the shifts and masks derived from them, and the
//! budget (fields disjoint, within 32 bits, `MAX_SLOTS` nameable by a link) checked by `const`
//! assertions, as sharded-slab's `Pack` does.
//!
//! `head` is both the node's cancellation state and its child list: publishing `DONE` *is*
//! closing the list, in one atomic step, so a concurrent `with_cancel` either links its child
//! before the canceller reads the list, or sees `DONE` and creates the child cancelled
//! (tree invariant #3).
//!
//! # Transitions
//! The words are fields of [`Node`](crate::node::Node) of the types [`HeadWord`], [`NextWord`]
//! and [`PrevWord`], whose only mutators are the methods in this module: every change of a
//! node's state is one of them, named after the protocol step it is, with its memory ordering
//! and the `// ORDERING:` comment that names its pair. A loaded word is a `Copy` snapshot
//! ([`Head`], [`Next`], [`Hint`]) read through named getters. Each transition that can fail
//! returns a `#[must_use]` outcome ([`Publish`], [`Claim`], [`Announce`], [`Mark`],
//! [`SwingFirst`], [`Swing`], `Result<(), Closed>`).
//!
//! All transitions of `head` and `next` that a concurrent thread can race with are
//! read-modify-write operations (compare-and-swap loops), which gives each word one
//! modification order that every thread agrees on: whichever of two racing steps comes second
//! sees the other's bits (tree invariants #3 and #4, and the waiter handshake). The plain stores
//! are made where no other thread can write the word at that moment: by the exclusive owner of
//! a node (initialisation, reset, the free-stack link), by the one thread whose
//! compare-and-swap unlinked a node (`UNLINKED`), or, for the `prev` hint, under the rules of
//! tree invariant #8.

mod head;
mod index;
pub(crate) mod layout;
mod next;
#[cfg(not(ctxtree_compact))]
mod prev;

pub(crate) use head::{Announce, Claim, Closed, Head, HeadWord, Publish, SwingFirst, Timing};
pub(crate) use index::{Link, Slot, Src, SrcAt};
pub(crate) use layout::MAX_SLOTS;
pub(crate) use next::{Mark, Next, NextWord, PredSeen, PredWord, Swing};
#[cfg(not(ctxtree_compact))]
pub(crate) use prev::{Hint, PrevWord};

/// Defines a constructor that is `const` except under loom, whose atomics have no `const fn new`
/// (as crossbeam does).
macro_rules! const_unless_loom {
    ($(#[$meta:meta])* $vis:vis fn $name:ident() -> $ret:ty $body:block) => {
        $(#[$meta])*
        #[cfg(not(ctxtree_loom))]
        $vis const fn $name() -> $ret $body

        $(#[$meta])*
        #[cfg(ctxtree_loom)]
        $vis fn $name() -> $ret $body
    };
}
pub(crate) use const_unless_loom;
