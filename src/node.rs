//! One arena slot: a context node, one cache line.
//!
//! The atomic words (`head`, `next`, `refs`, `prev`, `wlock`, `cause`) may be read by any thread at any
//! time, including after the slot was freed and reused: memory is type-stable, so such reads are
//! merely stale, and every protocol that acts on them re-validates (tree invariants #4, #5).
//!
//! The plain fields (`kind`, `parent`, `payload`) are written only while the slot is
//! exclusively owned (just popped from the free list, reference count 0, unreachable through any
//! valid link) and read only by a holder of a reference: the initial `refs` store is a Release
//! and every reference is taken by an Acquire, so readers see the writes.

use core::mem::MaybeUninit;
use core::ptr;

use crate::state::{HeadWord, NextWord, PrevWord, Slot};
use crate::sync::{AtomicPtr, AtomicU32, UnsafeCell};
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

/// Inline storage for a value or a closure: 16 bytes, 8-aligned.
pub(crate) type Inline = MaybeUninit<[u64; 2]>;

/// `Cancel` / `Deadline` nodes: the effective deadline (own or inherited; `u64::MAX` = none),
/// and for `Deadline` nodes the cause their expiry reports (a tagged cause pointer, or null).
#[derive(Clone, Copy)]
#[repr(C)]
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
    /// every use re-validates it (tree invariant #8).
    pub(crate) prev: PrevWord,
    /// Waiter-list lock bits; see [`crate::waiters`].
    pub(crate) wlock: WaitLock,
    pub(crate) kind: UnsafeCell<Kind>,
    /// The parent slot, or the `Slot::BACKGROUND` / `Slot::TODO` sentinel.
    pub(crate) parent: UnsafeCell<Slot>,
    /// The cause slot; see [`crate::cause`].
    pub(crate) cause: AtomicPtr<u8>,
    /// Head of the intrusive waiter list; guarded by `wlock`.
    pub(crate) waiters: WaitHead,
    pub(crate) payload: UnsafeCell<Payload>,
}

// Compile-time memory budget: one cache line per node, values included (DESIGN §3).
#[cfg(not(ctxtree_loom))]
const _: () = assert!(core::mem::size_of::<Node>() <= 64);
#[cfg(all(target_pointer_width = "64", not(ctxtree_loom)))]
const _: () = assert!(core::mem::size_of::<Node>() == 64);
const _: () = assert!(core::mem::size_of::<Payload>() <= 24);

// SAFETY: the plain fields are only accessed under the protocol in the module docs (exclusive
// owner writes before a Release publication; reference holders read after an Acquire); the raw
// pointers are either to `'static` data, to heap data owned by the node, or to pinned waiters
// whose access is serialised by `wlock`.
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
            prev: PrevWord::new(),
            wlock: WaitLock::new(),
            kind: UnsafeCell::new(Kind::Free),
            parent: UnsafeCell::new(Slot::new(0)),
            cause: AtomicPtr::new(ptr::null_mut()),
            waiters: WaitHead::new(),
            payload: UnsafeCell::new(Payload { empty: () }),
        }
    }

    /// An empty, free node.
    #[cfg(ctxtree_loom)]
    pub(crate) fn new() -> Self {
        Node {
            head: HeadWord::new(),
            next: NextWord::new(),
            refs: AtomicU32::new(0),
            prev: PrevWord::new(),
            wlock: WaitLock::new(),
            kind: UnsafeCell::new(Kind::Free),
            parent: UnsafeCell::new(Slot::new(0)),
            cause: AtomicPtr::new(ptr::null_mut()),
            waiters: WaitHead::new(),
            payload: UnsafeCell::new(Payload { empty: () }),
        }
    }

    /// The node's waiter list.
    #[inline(always)]
    pub(crate) fn wait_list(&self) -> WaitList<'_> {
        WaitList::new(&self.wlock, &self.waiters)
    }

    /// The node's kind.
    ///
    /// # Safety
    /// The caller holds a reference on the node, or owns it exclusively.
    #[inline(always)]
    pub(crate) unsafe fn kind(&self) -> Kind {
        // SAFETY: per the caller's contract no write is concurrent (module docs).
        self.kind.with(|p| unsafe { *p })
    }

    /// The parent slot or root sentinel.
    ///
    /// # Safety
    /// As for [`Node::kind`].
    #[inline(always)]
    pub(crate) unsafe fn parent(&self) -> Slot {
        // SAFETY: as in `kind`.
        self.parent.with(|p| unsafe { *p })
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
        // SAFETY: exclusive ownership per the caller's contract.
        unsafe {
            self.kind.with_mut(|p| *p = kind);
            self.parent.with_mut(|p| *p = parent);
            self.payload.with_mut(|p| *p = payload);
        }
    }

    /// Marks a freed node's plain fields as free (a debugging aid for `dump`).
    ///
    /// # Safety
    /// The caller owns the node exclusively (its reference count just reached 0).
    pub(crate) unsafe fn clear(&self) {
        // SAFETY: exclusive ownership per the caller's contract.
        self.kind.with_mut(|p| unsafe { *p = Kind::Free });
    }
}
