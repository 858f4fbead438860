//! Indices: a [`Slot`] names an arena slot (or a root), a [`Link`] names a slot from inside a
//! state word (`slot + 1`, `0` = none), a [`Src`] names the canceller a context asks whether it
//! is done. Each sentinel has its own type and value, so none can be mistaken for another.

use core::fmt;

use super::layout::{LINK_MASK, MAX_SLOTS};

/// A slot index, or one of the two root sentinels ([`Slot::BACKGROUND`], [`Slot::TODO`]), which
/// name no node.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(transparent)]
pub(crate) struct Slot(u32);

impl Slot {
    /// The root `Background`: no node.
    pub(crate) const BACKGROUND: Slot = Slot(u32::MAX);
    /// The root `TODO`: no node.
    pub(crate) const TODO: Slot = Slot(u32::MAX - 1);

    /// The slot at `index` (below the arena's limit, so never a root sentinel).
    #[inline(always)]
    pub(crate) const fn new(index: u32) -> Slot {
        debug_assert!((index as usize) < MAX_SLOTS);
        Slot(index)
    }

    /// The slot whose index (or root sentinel) is `raw`, as [`index`](Slot::index) gave it.
    #[inline(always)]
    pub(crate) const fn from_raw(raw: u32) -> Slot {
        Slot(raw)
    }

    /// The slot's index in its arena.
    #[inline(always)]
    pub(crate) const fn index(self) -> u32 {
        self.0
    }

    /// Whether this names a real node (not a root sentinel).
    #[inline(always)]
    pub(crate) const fn is_node(self) -> bool {
        self.0 < Slot::TODO.0
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Slot::BACKGROUND => f.write_str("Background"),
            Slot::TODO => f.write_str("TODO"),
            Slot(i) => write!(f, "{i}"),
        }
    }
}

/// A slot as named inside a state word: `slot + 1`, so that [`Link::NIL`] (`0`) is "no node"
/// and a zeroed word is an empty one. Fits the link field (asserted in [`super::layout`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub(crate) struct Link(u32);

impl Link {
    /// No node: the end of a list, an empty list, an empty free stack.
    pub(crate) const NIL: Link = Link(0);

    /// The link to `slot`, a real node.
    #[inline(always)]
    pub(crate) const fn to(slot: Slot) -> Link {
        debug_assert!(slot.is_node());
        Link(slot.0 + 1)
    }

    /// The slot this link names, `None` for [`Link::NIL`].
    #[inline(always)]
    pub(crate) const fn slot(self) -> Option<Slot> {
        match self.0 {
            0 => None,
            l => Some(Slot(l - 1)),
        }
    }

    /// Whether this is [`Link::NIL`].
    #[inline(always)]
    pub(crate) const fn is_nil(self) -> bool {
        self.0 == 0
    }

    /// The link field of a state word.
    #[inline(always)]
    pub(super) const fn of_word(word: u32) -> Link {
        Link(word & LINK_MASK)
    }

    /// The link's bits, for a state word's link field.
    #[inline(always)]
    pub(super) const fn bits(self) -> u32 {
        self.0
    }

    /// A link read from a word that is not a state word (the free stack's tagged head), whose
    /// link field the caller has masked out: `bits` fits the link field.
    #[inline(always)]
    pub(crate) const fn from_bits(bits: u32) -> Link {
        debug_assert!(bits & !LINK_MASK == 0);
        Link(bits)
    }

    /// The link's value, for a word that is not a state word (the free stack's tagged head).
    #[inline(always)]
    pub(crate) const fn to_bits(self) -> u32 {
        self.0
    }
}

/// The canceller a context asks whether it is done (the context's own node for cancel and
/// deadline contexts, the nearest canceller ancestor for value contexts), or [`Src::NEVER`]:
/// the context can never be done. A type of its own, not an `Option<Slot>`, so that a handle
/// stays two words.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub(crate) struct Src(u32);

impl Src {
    /// The context can never be done (`Background`, `TODO`, `without_cancel`, and what derives
    /// from them without a canceller).
    pub(crate) const NEVER: Src = Src(u32::MAX);

    /// The canceller node at `slot`.
    #[inline(always)]
    pub(crate) const fn of(slot: Slot) -> Src {
        debug_assert!(slot.is_node());
        Src(slot.0)
    }

    /// The canceller's slot, `None` for [`Src::NEVER`].
    #[inline(always)]
    pub(crate) const fn slot(self) -> Option<Slot> {
        match self {
            Src::NEVER => None,
            Src(s) => Some(Slot(s)),
        }
    }
}

// The sentinels lie outside every range of real values: no slot index reaches `TODO`, and no
// link reaches `MAX_SLOTS + 1`.
const _: () =
    assert!((MAX_SLOTS as u64) < Slot::TODO.0 as u64 && Slot::TODO.0 < Slot::BACKGROUND.0);
const _: () = assert!((MAX_SLOTS as u64) < Src::NEVER.0 as u64);
