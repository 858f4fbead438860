//! One arena slot: a context node, one cache line (64 bytes on 64-bit targets, 48 on 32-bit
//! ones, both asserted at compile time).
//!
//! The atomic words (`head`, `next`, `refs`, `prev`, `meta`, `cause`) may be read by any thread
//! at any time, including after the slot was freed and reused: memory is type-stable, so such
//! reads are merely stale, and every protocol that acts on them re-validates (tree invariants
//! #4, #5).
//!
//! The node's kind and parent are immutable per incarnation, like the plain `payload`: written
//! only while the slot is exclusively owned (just popped from the free list, reference count 0,
//! unreachable through any valid link) and read only by a holder of a reference: the initial
//! `refs` store is a Release and every reference is taken by an Acquire, so readers see the
//! writes. They share the `meta` word with the waiter-list lock (its two low bits, see
//! [`crate::waiters`]), which is what brings a node to 48 bytes on 32-bit targets: `meta` is
//! atomic for the lock's sake, and the lock's read-modify-writes leave the other bits alone.
//!
//! # All-zero is free
//! A node that was never used is all-zero bits (kind `Free`, every word 0, no payload), and so
//! is an empty arena: a `static Arena<N>` lands in `.bss`, not in `.data` (no flash copy, no
//! boot-time copy). A freed node's `next` carries `FREE` (see [`crate::state`]); a never-used
//! node's needs none, as no link ever names a slot that was never handed out.

use core::mem::MaybeUninit;
use core::ptr;

#[cfg(not(ctxtree_compact))]
use crate::state::PrevWord;
use crate::state::{HeadWord, NextWord, Slot};
use crate::sync::{AtomicPtr, AtomicU32, Ordering, UnsafeCell};
use crate::waiters::{WaitHead, WaitList, WaitLock};

/// What a node is. Stored in the node; immutable per incarnation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum Kind {
    /// On the free list (or being initialised).
    Free = 0,
    /// `with_cancel` (and a `with_deadline` whose parent's deadline is earlier, as in Go).
    Cancel = 1,
    /// `with_deadline` / `with_timeout`: owns a deadline.
    Deadline = 2,
    /// `with_value` with an inline `Copy` value.
    Value = 3,
    /// `with_value` with a heap value (`alloc`).
    HeapValue = 4,
    /// `without_cancel`.
    WithoutCancel = 5,
    /// An `after_func` registration.
    AfterFunc = 6,
    /// A linked context's registration on its second parent (`with_linked`, `src/linked.rs`):
    /// an `AfterFunc`-like node whose firing receives its owner's record (see
    /// `linked::fire_link`).
    Link = 7,
}

impl Kind {
    /// Kinds whose node decides its own done-ness (owns a `head` state and a child list).
    #[inline(always)]
    pub(crate) fn is_canceler(self) -> bool {
        matches!(self, Kind::Cancel | Kind::Deadline)
    }
}

/// Inline storage for a value or a closure: 16 bytes, pointer-aligned (4 bytes on 32-bit
/// targets, which keeps the payload at 20 bytes there). What it stores may need 8-byte
/// alignment (a `u64`, a closure capturing one): it is written and read with unaligned
/// accesses, and a closure is moved out before it is called.
pub(crate) type Inline = MaybeUninit<[usize; 16 / core::mem::size_of::<usize>()]>;

/// The most a value or closure stored inline may take, in size and alignment, on every target.
pub(crate) const INLINE_SIZE: usize = 16;
/// See [`INLINE_SIZE`].
pub(crate) const INLINE_ALIGN: usize = 8;

const _: () = assert!(core::mem::size_of::<Inline>() == INLINE_SIZE);

/// `Cancel` / `Deadline` nodes: the effective deadline (own or inherited; `u64::MAX` = none),
/// and for `Deadline` nodes the cause their expiry reports (a tagged cause pointer, or null).
/// Packed to 4-byte alignment, so that on 32-bit targets (where a `u64` is 8-aligned) the
/// payload, and with it the node, keeps 4-byte alignment: the fields are only ever copied.
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
pub(crate) struct TimerPart {
    pub(crate) deadline: u64,
    pub(crate) cause: *mut u8,
}

/// `Value` / `HeapValue` nodes: the key's address and the value.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct ValuePart {
    pub(crate) key: *const (),
    pub(crate) val: Inline,
}

/// `AfterFunc` nodes: the closure and its trampoline (`run == true` calls it, `false` drops it).
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct FuncPart {
    pub(crate) call: unsafe fn(*mut Inline, bool),
    pub(crate) env: Inline,
}

/// The kind-specific part of a node.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) union Payload {
    pub(crate) timer: TimerPart,
    pub(crate) value: ValuePart,
    pub(crate) func: FuncPart,
    pub(crate) empty: (),
}

/// A context node. Opaque: it appears in public signatures only as the element type of an
/// arena's storage.
#[repr(C)]
#[cfg_attr(target_pointer_width = "64", repr(align(64)))]
pub struct Node {
    /// State and child list; see [`crate::state`].
    pub(crate) head: HeadWord,
    /// Sibling link / free-list link; see [`crate::state`].
    pub(crate) next: NextWord,
    /// Reference count; 0 = free.
    pub(crate) refs: AtomicU32,
    /// For a node in a child list: a *hint* naming its predecessor (a link; `NIL` = the owner's
    /// `head`), or `PENDING` while the node is not yet published in a list. Only a hint:
    /// every use re-validates it (tree invariant #8). Not in the compact build, whose unlinks
    /// search from the head (see [`crate::list`], "The compact build").
    #[cfg(not(ctxtree_compact))]
    pub(crate) prev: PrevWord,
    /// The waiter-list lock (two low bits; see [`crate::waiters`]), the kind and the parent
    /// (the other bits; see [`Meta`]).
    pub(crate) meta: WaitLock,
    /// On 64-bit targets, the parent again, as a plain field in what would otherwise be padding
    /// (before the pointer-aligned `cause`): walks up the chain (`value`) then chase a plain
    /// load, not the shift and subtract of the packed form (measured: `DeepValue` 25% slower
    /// without it). Written and read under the same rules as the payload.
    #[cfg(target_pointer_width = "64")]
    parent: UnsafeCell<Slot>,
    /// The cause slot; see [`crate::cause`].
    pub(crate) cause: AtomicPtr<u8>,
    /// Head of the intrusive waiter list; guarded by the lock bits of `meta`.
    pub(crate) waiters: WaitHead,
    pub(crate) payload: UnsafeCell<Payload>,
}

// Compile-time memory budget, values included (DESIGN §5): one cache line per node on 64-bit
// targets, 48 bytes on 32-bit ones.
#[cfg(all(target_pointer_width = "64", not(ctxtree_loom)))]
const _: () = assert!(core::mem::size_of::<Node>() == 64);
#[cfg(all(target_pointer_width = "32", not(ctxtree_loom)))]
const _: () = assert!(core::mem::size_of::<Node>() <= 48);
// The compact build keeps no predecessor hint (`crate::list`): one word less.
#[cfg(all(target_pointer_width = "32", ctxtree_compact, not(ctxtree_loom)))]
const _: () = assert!(core::mem::size_of::<Node>() == 44);
#[cfg(not(ctxtree_loom))]
const _: () = assert!(core::mem::size_of::<Node>() <= 64);
const _: () = assert!(core::mem::size_of::<Payload>() <= 24);

/// The kind and parent bits of the `meta` word, above the waiter-list lock's two bits:
///
/// ```text
/// meta:  31..5 parent + 2 (27 bits, wrapping: BACKGROUND = 1, TODO = 0) | 4..2 kind | 1..0 lock
/// ```
///
/// The parent is stored as `slot + 2` so that the two root sentinels (`u32::MAX`,
/// `u32::MAX - 1`) take the field's values 1 and 0, and every slot index (below `MAX_SLOTS`)
/// the values above: the encoding is a wrapping add and sub, no branch. A free node's word is 0.
pub(crate) struct Meta;

impl Meta {
    const KIND_SHIFT: u32 = 2;
    const KIND_MASK: u32 = 0b111 << Meta::KIND_SHIFT;
    const PARENT_SHIFT: u32 = 5;

    /// The word of a node of `kind` under `parent`, lock bits clear.
    #[inline(always)]
    const fn pack(kind: Kind, parent: Slot) -> u32 {
        (parent.index().wrapping_add(2) << Meta::PARENT_SHIFT) | ((kind as u32) << Meta::KIND_SHIFT)
    }

    #[inline(always)]
    fn kind(word: u32) -> Kind {
        // The arms map each of the eight values to the variant of that discriminant, so this
        // compiles to the masked bits themselves.
        match (word & Meta::KIND_MASK) >> Meta::KIND_SHIFT {
            1 => Kind::Cancel,
            2 => Kind::Deadline,
            3 => Kind::Value,
            4 => Kind::HeapValue,
            5 => Kind::WithoutCancel,
            6 => Kind::AfterFunc,
            7 => Kind::Link,
            _ => Kind::Free,
        }
    }

    /// (On 64-bit targets the node reads its plain `parent` field instead.)
    #[cfg(not(target_pointer_width = "64"))]
    #[inline(always)]
    fn parent(word: u32) -> Slot {
        // 0 and 1 wrap back to `u32::MAX - 1` (TODO) and `u32::MAX` (BACKGROUND).
        Slot::from_raw((word >> Meta::PARENT_SHIFT).wrapping_sub(2))
    }
}

// Every slot index + 2 fits the 27-bit parent field; the lock takes two bits, the kind three.
const _: () = assert!(
    (crate::state::MAX_SLOTS as u64) + 2 <= (u32::MAX >> Meta::PARENT_SHIFT) as u64
        && Kind::Link as u32 <= 0b111
        && crate::waiters::LOCK_BITS == 0b11
);

// SAFETY: the plain fields are only accessed under the protocol in the module docs (exclusive
// owner writes before a Release publication; reference holders read after an Acquire); the raw
// pointers are either to `'static` data, to heap data owned by the node, or to pinned waiters
// whose access is serialised by the waiter-list lock (in `meta`).
unsafe impl Sync for Node {}
// SAFETY: as above; nothing in a node is tied to a thread.
unsafe impl Send for Node {}

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node").finish_non_exhaustive()
    }
}

impl Node {
    /// An empty, free node.
    #[cfg(not(ctxtree_loom))]
    pub(crate) const fn new() -> Self {
        Node {
            head: HeadWord::new(),
            next: NextWord::new(),
            refs: AtomicU32::new(0),
            #[cfg(not(ctxtree_compact))]
            prev: PrevWord::new(),
            meta: WaitLock::new(),
            #[cfg(target_pointer_width = "64")]
            parent: UnsafeCell::new(Slot::from_raw(0)),
            cause: AtomicPtr::new(ptr::null_mut()),
            waiters: WaitHead::new(),
            payload: UnsafeCell::new(Payload {
                timer: TimerPart {
                    deadline: 0,
                    cause: ptr::null_mut(),
                },
            }),
        }
    }

    /// An empty, free node.
    #[cfg(ctxtree_loom)]
    pub(crate) fn new() -> Self {
        Node {
            head: HeadWord::new(),
            next: NextWord::new(),
            refs: AtomicU32::new(0),
            #[cfg(not(ctxtree_compact))]
            prev: PrevWord::new(),
            meta: WaitLock::new(),
            #[cfg(target_pointer_width = "64")]
            parent: UnsafeCell::new(Slot::from_raw(0)),
            cause: AtomicPtr::new(ptr::null_mut()),
            waiters: WaitHead::new(),
            payload: UnsafeCell::new(Payload {
                timer: TimerPart {
                    deadline: 0,
                    cause: ptr::null_mut(),
                },
            }),
        }
    }

    /// The node's waiter list.
    #[inline(always)]
    pub(crate) fn wait_list(&self) -> WaitList<'_> {
        WaitList::new(&self.meta, &self.waiters)
    }

    /// The node's kind.
    ///
    /// # Safety
    /// The caller holds a reference on the node, or owns it exclusively.
    #[inline(always)]
    pub(crate) unsafe fn kind(&self) -> Kind {
        // ORDERING: Relaxed: the kind bits were written before the Release store of `refs` that
        // the caller's reference synchronises with, and not since (module docs).
        Meta::kind(self.meta.load_meta(Ordering::Relaxed))
    }

    /// The kind and the parent, from one load of the `meta` word (for walks up the chain).
    ///
    /// # Safety
    /// As for [`Node::kind`].
    #[inline(always)]
    pub(crate) unsafe fn kind_and_parent(&self) -> (Kind, Slot) {
        #[cfg(target_pointer_width = "64")]
        {
            // SAFETY: per the caller's contract.
            unsafe { (self.kind(), self.parent()) }
        }
        #[cfg(not(target_pointer_width = "64"))]
        {
            // ORDERING: Relaxed, as in `kind`.
            let word = self.meta.load_meta(Ordering::Relaxed);
            (Meta::kind(word), Meta::parent(word))
        }
    }

    /// The parent slot or root sentinel.
    ///
    /// # Safety
    /// As for [`Node::kind`].
    #[inline(always)]
    pub(crate) unsafe fn parent(&self) -> Slot {
        #[cfg(target_pointer_width = "64")]
        {
            // SAFETY: per the caller's contract no write is concurrent (module docs).
            self.parent.with(|p| unsafe { *p })
        }
        #[cfg(not(target_pointer_width = "64"))]
        {
            // ORDERING: Relaxed, as in `kind`.
            Meta::parent(self.meta.load_meta(Ordering::Relaxed))
        }
    }

    /// A copy of the payload.
    ///
    /// # Safety
    /// As for [`Node::kind`].
    #[inline(always)]
    pub(crate) unsafe fn payload(&self) -> Payload {
        // SAFETY: as in `kind`; `Payload` is `Copy` plain data.
        self.payload.with(|p| unsafe { *p })
    }

    /// The effective deadline in ticks (`u64::MAX` = none) of a canceller node.
    ///
    /// # Safety
    /// As for [`Node::kind`], and the node is a `Cancel` or `Deadline` node.
    #[inline(always)]
    pub(crate) unsafe fn deadline(&self) -> u64 {
        // SAFETY: as in `kind`; the caller guarantees the `timer` variant is the live one.
        self.payload.with(|p| unsafe { (*p).timer.deadline })
    }

    /// Writes the plain fields of a freshly allocated node.
    ///
    /// # Safety
    /// The caller owns the node exclusively (popped from the free list, `refs == 0`).
    pub(crate) unsafe fn init(&self, kind: Kind, parent: Slot, payload: Payload) {
        // Exclusive ownership: the lock bits are clear (a free node has no waiter and no
        // registrant or drain in flight, all of which hold references).
        self.meta.init_meta(Meta::pack(kind, parent));
        // SAFETY: exclusive ownership per the caller's contract.
        unsafe {
            #[cfg(target_pointer_width = "64")]
            self.parent.with_mut(|p| *p = parent);
            self.payload.with_mut(|p| *p = payload);
        }
    }

    /// Marks a freed node's plain fields as free (a debugging aid for `dump`).
    ///
    /// # Safety
    /// The caller owns the node exclusively (its reference count just reached 0).
    pub(crate) unsafe fn clear(&self) {
        self.meta.init_meta(Meta::pack(Kind::Free, Slot::TODO));
    }
}
