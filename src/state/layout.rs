//! The bit budget of the state words: widths declared once, shifts and masks derived, the whole
//! checked at compile time (sharded-slab's `Pack`).

/// A bit field of a 32-bit word: `width` bits from bit `shift`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    shift: u32,
    width: u32,
}

impl Field {
    /// The lowest field of a word.
    const fn first(width: u32) -> Field {
        Field { shift: 0, width }
    }

    /// The field of `width` bits just above `self`.
    const fn then(self, width: u32) -> Field {
        Field {
            shift: self.shift + self.width,
            width,
        }
    }

    /// The field of `width` bits `gap` bits above `self` (the bits between are unused).
    const fn then_after(self, gap: u32, width: u32) -> Field {
        Field {
            shift: self.shift + self.width + gap,
            width,
        }
    }

    /// The bit just above the field.
    // Used only by `const` assertions, which the `dead_code` lint of older compilers (1.87, the
    // MSRV) does not count as uses.
    #[allow(dead_code)]
    const fn end(self) -> u32 {
        self.shift + self.width
    }

    /// The field's bits in place.
    pub(crate) const fn mask(self) -> u32 {
        (((1u64 << self.width) - 1) as u32) << self.shift
    }
}

/// Number of bits of a link.
pub(crate) const LINK_BITS: u32 = 26;
/// The link field of `head` and `next`.
const LINK: Field = Field::first(LINK_BITS);

// `head`, from the link up.
const TIMED_F: Field = LINK.then(1);
const HAS_DEADLINE_F: Field = TIMED_F.then(1);
const WAITERS_F: Field = HAS_DEADLINE_F.then(1);
const HAS_CAUSE_F: Field = WAITERS_F.then(1);
const ERR_DEADLINE_F: Field = HAS_CAUSE_F.then(1);
const DONE_F: Field = ERR_DEADLINE_F.then(1);

// `next`, from the link up: three unused bits, then the flags.
const UNLINKED_F: Field = LINK.then_after(3, 1);
const FREE_F: Field = UNLINKED_F.then(1);
const MARK_F: Field = FREE_F.then(1);

/// Mask of the link field of `head` and `next`.
pub(super) const LINK_MASK: u32 = LINK.mask();

/// `head`: the node has a deadline, its own or inherited (immutable per incarnation): lets
/// `is_done`/`err` answer "live, no deadline" from the one `head` load, without reading the
/// deadline field.
pub(super) const TIMED: u32 = TIMED_F.mask();
/// `head`: the node has an own deadline (a hint for `expire`'s scan; immutable per incarnation).
pub(super) const HAS_DEADLINE: u32 = HAS_DEADLINE_F.mask();
/// `head`: a waiter may be registered; the canceller must drain the waiter list.
pub(super) const WAITERS: u32 = WAITERS_F.mask();
/// `head`: the node's cause slot holds the cause (cancel nodes), or the AfterFunc was stopped
/// (AfterFunc nodes).
pub(super) const HAS_CAUSE: u32 = HAS_CAUSE_F.mask();
/// `head`: for AfterFunc nodes, `stop()` won; same bit as `HAS_CAUSE`.
pub(super) const STOPPED: u32 = HAS_CAUSE;
/// `head`: the error is `DeadlineExceeded` rather than `Canceled`.
pub(super) const ERR_DEADLINE: u32 = ERR_DEADLINE_F.mask();
/// `head`: the node is done (cancelled, expired, or for an AfterFunc node: fired or stopped).
/// Once set, the child list is closed: it only shrinks.
pub(super) const DONE: u32 = DONE_F.mask();

/// `next`: the node is being removed from its owner's list; `next` is frozen.
pub(super) const MARK: u32 = MARK_F.mask();
/// `next`: the slot is on the free list and the link names the next free slot. A searcher's
/// compare-and-swap expecting an unmarked sibling link can never match a free-list link.
pub(super) const FREE: u32 = FREE_F.mask();
/// `next`: the node has been physically unlinked (or was never linked).
pub(super) const UNLINKED: u32 = UNLINKED_F.mask();

/// The largest number of slots any arena can have: every slot's link (`slot + 1`) fits the link
/// field, and the largest link value, `LINK_MASK`, stays unused.
pub(crate) const MAX_SLOTS: usize = LINK_MASK as usize - 1;

/// Whether the fields are pairwise disjoint and all end within 32 bits.
// Used only by `const` assertions, which the `dead_code` lint of older compilers (1.87, the
// MSRV) does not count as uses.
#[allow(dead_code)]
const fn packs(fields: &[Field]) -> bool {
    let mut i = 0;
    while i < fields.len() {
        if fields[i].width == 0 || fields[i].end() > u32::BITS {
            return false;
        }
        let mut j = i + 1;
        while j < fields.len() {
            if fields[i].mask() & fields[j].mask() != 0 {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

const _: () = assert!(
    packs(&[
        LINK,
        TIMED_F,
        HAS_DEADLINE_F,
        WAITERS_F,
        HAS_CAUSE_F,
        ERR_DEADLINE_F,
        DONE_F
    ]),
    "ctxtree: the head word's fields overlap or exceed 32 bits"
);
const _: () = assert!(
    packs(&[LINK, UNLINKED_F, FREE_F, MARK_F]),
    "ctxtree: the next word's fields overlap or exceed 32 bits"
);
// Every slot of the largest arena has a link (the last slot's is `MAX_SLOTS`), `LINK_MASK` is
// never one, and links fit an arena index (`usize`).
const _: () = assert!((MAX_SLOTS as u64) < LINK_MASK as u64 && LINK_BITS < usize::BITS);
// The flag bits the waiter and stop handshakes rely on are single bits.
const _: () =
    assert!(DONE.count_ones() == 1 && WAITERS.count_ones() == 1 && MARK.count_ones() == 1);
