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
///
/// # Representation
/// On 64-bit targets, where the check is inlined at every call site, a `Src` is where the
/// canceller's `head` word lies: its offset from the start of the arena
/// ([`ArenaRef::base`](crate::arena::ArenaRef::base)), in 4-byte units (so that every slot of the
/// largest arena is in range). `is_done` is then one address computation (`base + 4 × src`,
/// an x86-64 addressing mode), one load and one test: no sentinel compare, no bounds check, no
/// read of the arena's header (issue 14). Where no node's `head` can be named that way, a `Src`
/// names one of three stand-in words of the arena's header (`Header::src_words`), never
/// written:
/// - [`Src::NEVER`]: always zero (live, no deadline), for `Background`, `TODO`,
///   `without_cancel` and what derives from them without a canceller;
/// - the two *paged* words, which have `TIMED` set, for a canceller in a paged slot (a
///   `HeapArena` or the `std` global arena, whose pages are separate allocations): the check
///   goes to the slow path, which finds the canceller from the context's own slot — the slot
///   itself ([`SrcAt::Own`], a cancel or deadline context), or its nearest canceller ancestor
///   ([`SrcAt::Inherited`], a value context: a walk up the parents, as Go's `valueCtx.Done`
///   does).
///
/// A `Src` is only ever used with the arena it was made for (a handle's `arena` never changes,
/// and a child's `Src` is made from its parent's, in the same arena).
///
/// On 32-bit targets (firmware), where the check is not inlined (flash budget), a `Src` is the
/// canceller's slot index, `u32::MAX` for [`Src::NEVER`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub(crate) struct Src(u32);

/// What a [`Src`] names, decoded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SrcAt {
    /// The context can never be done.
    Never,
    /// The canceller at this slot.
    Node(Slot),
    /// The canceller is the context's own node (a paged slot).
    #[cfg(target_pointer_width = "64")]
    Own,
    /// The canceller is the nearest canceller ancestor of the context's own node (a paged
    /// slot).
    #[cfg(target_pointer_width = "64")]
    Inherited,
}

#[cfg(target_pointer_width = "64")]
mod offsets {
    use crate::arena::RawArena;
    use crate::node::Node;
    use crate::state::HeadWord;
    use core::mem::{offset_of, size_of};

    /// Units of a `Src`: bytes per unit.
    pub(super) const UNIT: usize = 4;
    /// The arena's first stand-in word, in units.
    const WORDS: usize = offset_of!(RawArena<[Node; 0]>, hdr.src_words) / UNIT;
    pub(super) const NEVER: u32 = WORDS as u32;
    pub(super) const OWN: u32 = (WORDS + size_of::<HeadWord>() / UNIT) as u32;
    pub(super) const INHERITED: u32 = (WORDS + 2 * size_of::<HeadWord>() / UNIT) as u32;
    /// Slot 0's `head`, in units.
    pub(super) const FIRST_NODE: u32 =
        ((offset_of!(RawArena<[Node; 0]>, slots) + offset_of!(Node, head)) / UNIT) as u32;
    /// Units per slot.
    pub(super) const NODE_UNITS: u32 = (size_of::<Node>() / UNIT) as u32;
    /// The most slots a `Src` names directly (the rest take the paged words).
    pub(super) const MAX_DIRECT: usize = ((u32::MAX - FIRST_NODE) / NODE_UNITS) as usize;

    // Every offset is a whole number of units, and the stand-in words lie before the slots.
    const _: () = assert!(
        offset_of!(RawArena<[Node; 0]>, hdr.src_words).is_multiple_of(UNIT)
            && size_of::<HeadWord>().is_multiple_of(UNIT)
            && (offset_of!(RawArena<[Node; 0]>, slots) + offset_of!(Node, head))
                .is_multiple_of(UNIT)
            && size_of::<Node>().is_multiple_of(UNIT)
            && INHERITED < FIRST_NODE
    );
    // On the targets shipped (not loom's larger atomics), every slot of the largest inline arena
    // is named directly: only paged slots take the paged words.
    #[cfg(not(ctxtree_loom))]
    const _: () = assert!(MAX_DIRECT >= crate::state::MAX_SLOTS);
}

#[cfg(target_pointer_width = "64")]
impl Src {
    /// The context can never be done (`Background`, `TODO`, `without_cancel`, and what derives
    /// from them without a canceller): the always-zero stand-in word.
    pub(crate) const NEVER: Src = Src(offsets::NEVER);

    /// The most inline slots whose `head` a `Src` names directly; an arena with more sets its
    /// paged stand-in words (never, on the targets shipped: asserted).
    pub(crate) const MAX_DIRECT: usize = offsets::MAX_DIRECT;

    /// The canceller node at `slot` of an arena of `inline` inline slots (the length of its
    /// `slots`), as the context at `slot` names it.
    #[inline(always)]
    pub(crate) fn of(inline: usize, slot: Slot) -> Src {
        debug_assert!(slot.is_node());
        let i = slot.index() as usize;
        if i < inline && i <= Src::MAX_DIRECT {
            Src(offsets::FIRST_NODE + slot.index() * offsets::NODE_UNITS)
        } else {
            Src(offsets::OWN)
        }
    }

    /// The same canceller, as named by a child of the context that has this `Src` (a value
    /// context, which keeps its parent's canceller).
    #[inline(always)]
    pub(crate) fn inherit(self) -> Src {
        if self.0 == offsets::OWN {
            Src(offsets::INHERITED)
        } else {
            self
        }
    }

    /// The byte offset of the named `head` word from the arena's base.
    #[inline(always)]
    pub(crate) const fn byte_offset(self) -> usize {
        self.0 as usize * offsets::UNIT
    }

    /// What this names.
    #[inline(always)]
    pub(crate) const fn at(self) -> SrcAt {
        if self.0 >= offsets::FIRST_NODE {
            SrcAt::Node(Slot((self.0 - offsets::FIRST_NODE) / offsets::NODE_UNITS))
        } else if self.0 == offsets::OWN {
            SrcAt::Own
        } else if self.0 == offsets::INHERITED {
            SrcAt::Inherited
        } else {
            SrcAt::Never
        }
    }
}

#[cfg(not(target_pointer_width = "64"))]
impl Src {
    /// The context can never be done (`Background`, `TODO`, `without_cancel`, and what derives
    /// from them without a canceller).
    pub(crate) const NEVER: Src = Src(u32::MAX);

    /// The canceller node at `slot` (`_inline`: see the 64-bit form).
    #[inline(always)]
    pub(crate) fn of(_inline: usize, slot: Slot) -> Src {
        debug_assert!(slot.is_node());
        Src(slot.0)
    }

    /// The same canceller, as named by a child of the context that has this `Src`.
    #[inline(always)]
    pub(crate) fn inherit(self) -> Src {
        self
    }

    /// What this names.
    #[inline(always)]
    pub(crate) const fn at(self) -> SrcAt {
        match self {
            Src::NEVER => SrcAt::Never,
            Src(s) => SrcAt::Node(Slot(s)),
        }
    }
}

// The sentinels lie outside every range of real values: no slot index reaches `TODO`, and no
// link reaches `MAX_SLOTS + 1`.
const _: () =
    assert!((MAX_SLOTS as u64) < Slot::TODO.0 as u64 && Slot::TODO.0 < Slot::BACKGROUND.0);
#[cfg(not(target_pointer_width = "64"))]
const _: () = assert!((MAX_SLOTS as u64) < Src::NEVER.0 as u64);
