//! The arena: fixed storage for context nodes, and its lock-free allocator.
//!
//! # Slots
//! An arena is a header followed by its slots. [`Arena<N>`] keeps `N` slots inline and can live
//! in a `static`; with `alloc`, [`HeapArena`](crate::HeapArena) and the global arena of `std` keep
//! theirs in pages that are allocated once and never move, so a slot index stays valid for the
//! arena's whole life. All arena types dereference to the capacity-erased [`RawArena`], which is
//! what a [`Context`](crate::Context) points to.
//!
//! Memory is *type-stable*: a slot is never returned to the system while the arena lives, only
//! recycled as another node. A thread holding a stale index can still read the slot's atomics
//! safely; the tree protocols re-validate before acting (see [`crate::tree`]).
//!
//! # Allocation
//! A slot comes from the free stack if it has one, else from the never-used tail (`bump`, which
//! is also the high-water mark: the stack is empty whenever `bump` advances, so every bumped slot
//! is live at that moment). Running out is [`CreateError::ArenaFull`] at once. In a paged arena
//! (`alloc`), `bump` also allocates a slot's page on its first use; a page that the allocator
//! refuses is `ArenaFull` too, and the next allocation asks for it again (`crate::pages`).
//!
//! # Handles and recycled slots
//! A recycled slot is never confused with its previous owner, and that is enforced by
//! ownership rather than detected by a generation number. Every *strong* index — a
//! [`Context`](crate::Context), a `Canceler`, an `AfterFunc` stop handle, a child's link to its parent, a list
//! membership, a traversal's current node — holds a reference on its node, so the slot cannot
//! be recycled while the index exists (tree invariant #1). A generation check could only find the
//! reuse after the fact, at a cost on every access.
//!
//! The few *weak* indices are re-validated instead:
//! - links read from a list: a reference is taken, then the link re-read (tree invariant #5);
//! - the expiry scan: it acts only on what a fresh reference shows;
//! - a `DeadlineWatch` held by a timer: it expires the slot only if the context now in it has
//!   a deadline that is itself due, which is right whoever owns the slot.
//!
//! The one place where a stale index could do harm without a reference is the free stack, and
//! that is where the generation lives: the ABA tag below.
//!
//! # The ABA problem, and the tag
//! The free stack is a Treiber stack whose head word carries a tag that every successful push
//! and pop increments. Without it, this interleaving would hand slot A to two owners:
//!
//! | thread 1 (pop)                  | thread 2                                  |
//! |---------------------------------|-------------------------------------------|
//! | reads head = A, A.next = B      |                                           |
//! |                                 | pops A, pops B, frees A (head = A, A.next = C) |
//! | CAS(head: A → B) succeeds       |                                           |
//! | head = B, but B is in use       |                                           |
//!
//! With the tag, thread 1's compare-and-swap expects (A, t) but finds (A, t + 3) and retries.
//! On 64-bit targets the tag has 32 bits; on 32-bit targets it has whatever the arena's link
//! field leaves, at least 6 bits (the budget is checked at compile time).

use core::fmt;
use core::ptr;

use crate::deadline::TimerHooks;
use crate::node::Node;
#[cfg(feature = "alloc")]
use crate::pages::Pages;
#[cfg(all(feature = "std", not(ctxtree_loom)))]
use crate::slot_cache;
use crate::state::layout::LINK_BITS;
#[cfg(target_pointer_width = "64")]
use crate::state::{Head, HeadWord, Src, Timing};
use crate::state::{Link, MAX_SLOTS, Slot};
#[cfg(feature = "std")]
use crate::sync::AtomicU8;
use crate::sync::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use crate::time::{Clock, ClockFns, ClockRef, Instant};
use crate::{CreateError, DeadlineWatch};

/// The capacity-erased arena every arena type dereferences to; [`Context`](crate::Context)s point here.
///
/// Its methods are the arena-wide operations: the roots, the expiry driver, statistics and the
/// tree dump.
#[repr(C)]
pub struct RawArena<S: ?Sized = [Node]> {
    pub(crate) hdr: Header,
    pub(crate) slots: S,
}

/// Arena-wide state.
#[repr(C)]
pub(crate) struct Header {
    /// Written by every allocation and free, from every core: kept on a cache line of its own,
    /// away from the read-mostly fields below that every slot lookup reads (sharing the line
    /// made each lookup a cache miss under contention: CommonParentCancel and WithTimeout ran
    /// 2-3x slower).
    hot: Hot,
    /// Number of inline slots (the length of `slots`), so that a thin [`ArenaRef`] can rebuild
    /// the arena's fat pointer: 0 until the first [`ArenaRef::new`] records it (so that an
    /// empty `Arena<N>` is all-zero bits and a `static` one lands in `.bss`). Every `ArenaRef`
    /// is made by `ArenaRef::new` (which records it) or handed over from the thread that made it
    /// (which synchronises), so every reader of an `ArenaRef` sees the length.
    slots_len: AtomicUsize,
    /// The stand-in `head` words a context's done source may name instead of a node's (64-bit
    /// targets; see [`Src`](crate::state::Src)), indexed by `Src::NEVER_WORD`, `Src::OWN_WORD`
    /// and `Src::INHERITED_WORD`: the first is always zero (live, no deadline: never done); the
    /// other two have `TIMED` set in an arena with pages, so that the one-load check of a
    /// context whose source is a paged slot goes to the slow path (zero, and never named, in an
    /// arena without pages, so that an empty `Arena<N>` stays all-zero bits). Never written.
    #[cfg(target_pointer_width = "64")]
    pub(crate) src_words: [HeadWord; 3],
    /// The most slots this arena can ever have beyond its inline ones (its pages): 0 for an
    /// `Arena<N>`, whose limit is `N`.
    paged_limit: usize,
    /// The clock, if bound (see [`ClockCell`]).
    pub(crate) clock: ClockCell,
    /// The deadline hook, a `fn(DeadlineWatch)`, or null.
    hook: AtomicPtr<()>,
    /// The per-slot hooks of the `std` global arena's timer (`None` elsewhere; absent without
    /// `std`, so that firmware builds carry neither the field nor the calls).
    #[cfg(feature = "std")]
    timer: Option<&'static TimerHooks>,
    #[cfg(feature = "alloc")]
    pub(crate) pages: Pages,
    /// Nonzero: the arena is `'static` and its freed slots may go to per-thread caches
    /// (`crate::slot_cache`). Only `std` has caches (loom models them without this flag).
    #[cfg(feature = "std")]
    caching: AtomicU8,
}

/// An arena's clock: a [`ClockRef`] in two atomic words, null until a clock is bound, so that a
/// `static` arena is all-zero bits (`.bss`) whether it gets its clock at boot
/// ([`RawArena::set_clock`]) or never.
///
/// A clock is bound once: `data` is claimed first (a compare-and-swap from null), then `fns`
/// is published with Release. A reader loads `fns` with Acquire and, if it is set, `data`,
/// which is then the very clock `fns` was published with (nobody writes `data` again).
pub(crate) struct ClockCell {
    data: AtomicPtr<()>,
    fns: AtomicPtr<ClockFns>,
}

impl ClockCell {
    crate::state::const_unless_loom! {
        /// No clock.
        fn new() -> ClockCell {
            ClockCell {
                data: AtomicPtr::new(ptr::null_mut()),
                fns: AtomicPtr::new(ptr::null_mut()),
            }
        }
    }

    /// A cell holding `clock` (a `const` builder's).
    #[cfg(not(ctxtree_loom))]
    const fn holding(clock: ClockRef) -> ClockCell {
        let (data, fns) = clock.into_raw_const();
        ClockCell {
            data: AtomicPtr::new(data),
            fns: AtomicPtr::new(fns),
        }
    }

    /// The clock, if one is bound.
    #[inline]
    pub(crate) fn get(&self) -> Option<ClockRef> {
        // ORDERING: Acquire pairs with the Release in `bind`: `data` is then the bound clock's.
        let fns = self.fns.load(Ordering::Acquire);
        if fns.is_null() {
            return None;
        }
        // ORDERING: Relaxed: written before `fns` was published, and never again.
        let data = self.data.load(Ordering::Relaxed);
        // SAFETY: `data` and `fns` were stored together from one `ClockRef` (see `bind`).
        Some(unsafe { ClockRef::from_raw(data, fns) })
    }

    /// Binds `clock`, unless a clock is bound already: `Err` then, unless it is this very one.
    fn bind(&self, clock: ClockRef) -> Result<(), ClockAlreadySet> {
        let (data, fns) = clock.into_raw();
        // ORDERING: Relaxed claim: `data` is published by the Release store of `fns` below, or
        // found taken (another binder's, compared with ours: only addresses, never dereferenced).
        match self.data.compare_exchange(
            ptr::null_mut(),
            data,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                // ORDERING: Release publishes `data` to `get`'s Acquire load of `fns`.
                self.fns.store(fns, Ordering::Release);
                Ok(())
            }
            Err(cur) if cur == data => {
                // The same clock, maybe bound by another thread that has not published `fns`
                // yet: publish it too, so that this `Ok` means "bound" here as well. (A
                // table of the same clock type, perhaps another copy of it: either is valid
                // for `data`.)
                // ORDERING: Release, as above.
                self.fns.store(fns, Ordering::Release);
                Ok(())
            }
            Err(_) => Err(ClockAlreadySet),
        }
    }
}

/// [`RawArena::set_clock`] found the arena bound to another clock already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockAlreadySet;

impl fmt::Display for ClockAlreadySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the arena has another clock already")
    }
}

impl core::error::Error for ClockAlreadySet {}

/// The allocator's contended words.
#[repr(C)]
#[cfg_attr(target_pointer_width = "64", repr(align(64)))]
struct Hot {
    /// Tagged head of the free stack: link in the low `link_bits`, ABA tag above.
    free: AtomicUsize,
    /// Slots ever handed out from the unused tail: the high-water mark.
    bump: AtomicU32,
    /// Allocations that failed with `ArenaFull`.
    failed: AtomicUsize,
}

/// Width of the free stack's link field on 64-bit targets: the low half of the word, the ABA
/// tag taking the high half.
const LINK_BITS_64: u32 = 32;

/// How many bits of the free stack's head the link field of an arena of `limit` slots takes
/// (the ABA tag gets the rest): on 32-bit targets, just what its links (at most `limit`) need,
/// so that small arenas get long tags.
const fn link_bits_for(limit: usize) -> u32 {
    if usize::BITS >= 64 {
        LINK_BITS_64
    } else {
        usize::BITS - (limit + 1).leading_zeros()
    }
}

/// The fewest tag bits any arena gets: the largest arena's.
// Used only by `const` assertions, which the `dead_code` lint of older compilers (1.87, the
// MSRV) does not count as uses.
#[allow(dead_code)]
const MIN_TAG_BITS: u32 = usize::BITS - link_bits_for(MAX_SLOTS);

// The free stack's bit budget (sharded-slab's `Pack`): every link of the largest arena fits its
// link field, which is no wider than a state word's link, and the tag keeps at least 6 bits on
// 32-bit targets, 32 on 64-bit ones.
const _: () = assert!(
    (MAX_SLOTS as u64) < (1u64 << link_bits_for(MAX_SLOTS))
        && link_bits_for(MAX_SLOTS) <= LINK_BITS_64
        && LINK_BITS <= LINK_BITS_64,
    "ctxtree: the free stack's link field cannot hold every link"
);
const _: () = assert!(
    MIN_TAG_BITS >= if usize::BITS >= 64 { 32 } else { 6 },
    "ctxtree: the free stack's ABA tag is too short"
);

/// `Header::new`, `const` except under loom (whose atomics have no `const` constructor): one
/// body for both.
macro_rules! header_new {
    ($($const:ident)?) => {
        pub(crate) $($const)? fn new(inline: usize, limit: usize) -> Self {
            assert!(limit >= 1 && limit <= MAX_SLOTS && inline <= limit);
            #[cfg(target_pointer_width = "64")]
            let stand_in = if limit > inline || inline > Src::MAX_DIRECT {
                Head::live(Timing::Inherited)
            } else {
                Head::live(Timing::Untimed)
            };
            Header {
                hot: Hot {
                    free: AtomicUsize::new(0),
                    bump: AtomicU32::new(0),
                    failed: AtomicUsize::new(0),
                },
                slots_len: AtomicUsize::new(0),
                #[cfg(target_pointer_width = "64")]
                src_words: [
                    HeadWord::holding(Head::live(Timing::Untimed)),
                    HeadWord::holding(stand_in),
                    HeadWord::holding(stand_in),
                ],
                paged_limit: limit - inline,
                clock: ClockCell::new(),
                hook: AtomicPtr::new(ptr::null_mut()),
                #[cfg(feature = "std")]
                timer: None,
                #[cfg(feature = "alloc")]
                pages: Pages::new(),
                #[cfg(feature = "std")]
                caching: AtomicU8::new(0),
            }
        }
    };
}

impl Header {
    #[cfg(not(ctxtree_loom))]
    header_new!(const);
    #[cfg(ctxtree_loom)]
    header_new!();
}

/// A thin pointer to a [`RawArena`]: what handles keep, so that a [`Context`](crate::Context) is two words
/// (pointer, slot + done-source) and moves in registers. The slot count, which a `&RawArena`
/// carries in its fat pointer, is read from the header instead.
#[derive(Clone, Copy)]
pub(crate) struct ArenaRef<'a> {
    ptr: core::ptr::NonNull<RawArena<[Node; 0]>>,
    _arena: core::marker::PhantomData<&'a RawArena>,
}

impl<'a> ArenaRef<'a> {
    #[inline(always)]
    pub(crate) fn new(arena: &'a RawArena) -> Self {
        let len = arena.slots.len();
        // ORDERING: Relaxed: the length is the same for every writer; a thread that gets an
        // `ArenaRef` from another one synchronises with it through the hand-over itself (see
        // `Header::slots_len`).
        if arena.hdr.slots_len.load(Ordering::Relaxed) != len {
            arena.hdr.slots_len.store(len, Ordering::Relaxed);
        }
        ArenaRef {
            // Casting the fat pointer to a thin one keeps its address and provenance.
            ptr: core::ptr::NonNull::from(arena).cast(),
            _arena: core::marker::PhantomData,
        }
    }

    /// The arena, with its lifetime.
    #[inline(always)]
    pub(crate) fn get(self) -> &'a RawArena {
        let thin = self.ptr.as_ptr();
        // SAFETY: `thin` came from a `&'a RawArena`, so its header is live and shared for 'a.
        // ORDERING: Relaxed: recorded before this `ArenaRef` existed (see `new`).
        let len = unsafe { (*thin).hdr.slots_len.load(Ordering::Relaxed) };
        let fat = core::ptr::slice_from_raw_parts(thin.cast::<Node>(), len) as *const RawArena;
        // SAFETY: the same address, provenance and slot count as the `&'a RawArena` that `new`
        // was given (`slots_len` is the length of `slots`, fixed at construction).
        unsafe { &*fat }
    }
}

#[cfg(target_pointer_width = "64")]
impl ArenaRef<'_> {
    /// The arena's first byte, with the provenance of the whole arena (its header and inline
    /// slots): the base a [`Src`](crate::state::Src) is an offset from.
    #[inline(always)]
    pub(crate) fn base(self) -> *const u8 {
        self.ptr.as_ptr().cast_const().cast()
    }
}

impl ArenaRef<'static> {
    /// The thin pointer, for a word that stores an arena (`CancelSlot`).
    #[inline]
    pub(crate) fn to_raw(self) -> *mut RawArena<[Node; 0]> {
        self.ptr.as_ptr()
    }

    /// The `ArenaRef` whose [`to_raw`](ArenaRef::to_raw) gave `ptr`.
    ///
    /// # Safety
    /// `ptr` came from `to_raw` of an `ArenaRef<'static>`.
    #[inline]
    pub(crate) unsafe fn from_raw(ptr: *mut RawArena<[Node; 0]>) -> Self {
        ArenaRef {
            // SAFETY: per the contract, `ptr` is a non-null arena pointer.
            ptr: unsafe { core::ptr::NonNull::new_unchecked(ptr) },
            _arena: core::marker::PhantomData,
        }
    }
}

impl core::ops::Deref for ArenaRef<'_> {
    type Target = RawArena;
    #[inline(always)]
    fn deref(&self) -> &RawArena {
        self.get()
    }
}

// SAFETY: an `ArenaRef<'a>` is a `&'a RawArena`, and `RawArena` is `Sync`.
unsafe impl Send for ArenaRef<'_> {}
// SAFETY: as above.
unsafe impl Sync for ArenaRef<'_> {}

/// A fixed-capacity arena of `N` context nodes, usable in a `static`.
///
/// `N` is the number of contexts that can exist at once (background and TODO take none). Each
/// node is 64 bytes (one cache line) on 64-bit targets and 48 bytes on 32-bit ones (44 in the
/// compact build that bare-metal targets get: README, "Firmware"), so `Arena<N>` is `64 * N`
/// (or `48 * N`, `44 * N`) bytes plus a small header, known at compile time.
///
/// An empty arena is all-zero bits, so a `static` one lands in `.bss`: no flash image and no
/// copy at boot. Bind its clock and deadline hook at boot ([`RawArena::set_clock`],
/// [`RawArena::set_deadline_hook`]) to keep it there; the `const` builders
/// [`with_clock`](Arena::with_clock) and [`with_deadline_hook`](Arena::with_deadline_hook) store
/// a pointer in the initialiser, which moves the whole static to `.data`.
///
/// ```
/// use ctxtree::{Child, Arena, CreateError};
/// static ARENA: Arena<2> = Arena::new();
/// let root = ARENA.background();
/// let Child { ctx: a, cancel: _ca } = root.with_cancel()?;
/// let Child { ctx: _b, cancel: cb } = a.with_cancel()?;
/// assert_eq!(a.with_cancel().err(), Some(CreateError::ArenaFull)); // an Err, never a panic
/// drop(cb); // releases b's node (the handle `_b` still holds it: drop that too)
/// drop(_b);
/// assert!(a.with_cancel().is_ok());
/// # Ok::<(), CreateError>(())
/// ```
#[repr(transparent)]
pub struct Arena<const N: usize>(RawArena<[Node; N]>);

impl<const N: usize> Arena<N> {
    /// An empty arena with no clock (deadlines are then driven only by
    /// [`expire`](RawArena::expire); timeouts return [`CreateError::NoClock`]).
    #[cfg(not(ctxtree_loom))]
    pub const fn new() -> Self {
        const {
            assert!(
                N >= 1 && N <= MAX_SLOTS,
                "ctxtree: an Arena needs 1 ..= 2^26 - 2 nodes"
            )
        };
        Arena(RawArena {
            hdr: Header::new(N, N),
            slots: [const { Node::new() }; N],
        })
    }

    /// An empty arena with no clock.
    #[cfg(ctxtree_loom)]
    pub fn new() -> Self {
        Arena(RawArena {
            hdr: Header::new(N, N),
            slots: core::array::from_fn(|_| Node::new()),
        })
    }

    /// Gives the arena a clock: timeouts become possible and deadlines are checked lazily on
    /// every observation of a context that has one.
    ///
    /// A `static` arena built with a clock holds a pointer and so lands in `.data` (its whole
    /// image copied from flash at boot). Firmware binds the clock at boot instead, with
    /// [`set_clock`](RawArena::set_clock), and keeps the arena in `.bss`.
    #[cfg(not(ctxtree_loom))]
    pub const fn with_clock<C: Clock>(mut self, clock: &'static C) -> Self {
        self.0.hdr.clock = ClockCell::holding(ClockRef::of(clock));
        self
    }

    /// Gives the arena a clock.
    #[cfg(ctxtree_loom)]
    pub fn with_clock<C: Clock>(self, clock: &'static C) -> Self {
        let _ = self.0.hdr.clock.bind(ClockRef::of(clock));
        self
    }

    /// Sets a hook called with a deadline whenever something starts *listening* for it (an
    /// `after_func`, a pending `done()` future, a blocking wait) — so firmware can arm its timer
    /// compare register for the next [`expire`](RawArena::expire) call. It may be called from any
    /// thread or interrupt that registers a listener, and must not block.
    ///
    /// As with [`with_clock`](Arena::with_clock), a `static` arena built with a hook lands in
    /// `.data`; [`set_deadline_hook`](RawArena::set_deadline_hook) at boot keeps it in `.bss`.
    #[cfg(not(ctxtree_loom))]
    pub const fn with_deadline_hook(mut self, hook: fn(DeadlineWatch)) -> Self {
        self.0.hdr.hook = AtomicPtr::new(hook as *mut ());
        self
    }
}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> core::ops::Deref for Arena<N> {
    type Target = RawArena;
    #[inline(always)]
    fn deref(&self) -> &RawArena {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for Arena<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<S: ?Sized> fmt::Debug for RawArena<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArena").finish_non_exhaustive()
    }
}

/// A snapshot of an arena's usage, for sizing firmware arenas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaStats {
    /// Nodes the arena can hold now (a growing arena's grows; its limit is `max_capacity`).
    pub capacity: usize,
    /// The most nodes the arena can ever hold.
    pub max_capacity: usize,
    /// Nodes in use at the moment of the scan.
    pub live: usize,
    /// Slots ever taken from the never-used tail. Single-threaded, this is exactly the most
    /// nodes ever in use at once; under contention it can exceed that peak by up to the number
    /// of threads allocating at once (a slot freed between one's empty pop and its bump is not
    /// reused by it), and, with per-thread caches (`RawArena::enable_thread_caches`, `std`), by the
    /// slots other threads hold in their caches (at most 1024 each: taken back only once the
    /// tail is used up). Size a fixed arena from it with that margin.
    pub high_water: usize,
    /// Allocations refused with [`CreateError::ArenaFull`].
    pub failed_allocs: usize,
}

impl RawArena {
    /// The clock this arena was given, if any.
    pub fn clock(&self) -> Option<ClockRef> {
        self.hdr.clock.get()
    }

    /// The current time by the arena's clock.
    pub fn now(&self) -> Option<Instant> {
        self.clock().map(|c| c.now())
    }

    /// Binds the arena to `clock`, at boot: timeouts become possible and deadlines are checked
    /// lazily on every observation of a context that has one. A `static` arena stays all-zero
    /// bits until then, so it lands in `.bss` rather than `.data`.
    ///
    /// A clock is bound once: binding the same clock again is `Ok`, another one is
    /// [`ClockAlreadySet`]. Call it before creating contexts with deadlines (a timeout before it
    /// is [`CreateError::NoClock`]).
    ///
    /// ```
    /// use core::time::Duration;
    /// use ctxtree::{Child, Arena, ManualClock};
    /// static CLOCK: ManualClock = ManualClock::new(1_000); // 1 tick = 1 ms
    /// static ARENA: Arena<8> = Arena::new(); // all zero: `.bss`
    ///
    /// ARENA.set_clock(&CLOCK)?; // at boot
    /// let Child { ctx, cancel: _cancel } = ARENA.background().with_timeout(Duration::from_millis(5)).unwrap();
    /// CLOCK.advance(5);
    /// assert!(ctx.is_done());
    /// assert!(ARENA.set_clock(&CLOCK).is_ok()); // the same clock again
    /// static OTHER: ManualClock = ManualClock::new(1_000);
    /// assert_eq!(ARENA.set_clock(&OTHER), Err(ctxtree::ClockAlreadySet));
    /// # Ok::<(), ctxtree::ClockAlreadySet>(())
    /// ```
    pub fn set_clock<C: Clock>(&self, clock: &'static C) -> Result<(), ClockAlreadySet> {
        self.hdr.clock.bind(ClockRef::of(clock))
    }

    /// Sets (or replaces) the deadline hook at boot (see
    /// [`Arena::with_deadline_hook`](Arena::with_deadline_hook)); the arena stays in `.bss`.
    pub fn set_deadline_hook(&self, hook: fn(DeadlineWatch)) {
        // ORDERING: Relaxed: a function's address; nothing else is read on the strength of it.
        self.hdr.hook.store(hook as *mut (), Ordering::Relaxed);
    }

    /// Lets threads keep the slots they free in a cache of their own and take their next slots
    /// from it, without a read-modify-write on the arena's shared free stack (`std` on Linux;
    /// the global arena always does). `&'static self` is what makes it sound: a cache may hold
    /// slots of this arena for as long as its thread lives, so the arena must never be dropped.
    ///
    /// A thread caches at most 1024 slots, and an allocation that finds the arena otherwise full
    /// takes every other thread's cached slots before it reports
    /// [`CreateError::ArenaFull`]; a thread returns its cache when it exits. False where caches
    /// are not available (no `membarrier(2)`: the thieves' fence), which changes nothing else.
    ///
    /// ```
    /// use ctxtree::{Arena, Child};
    /// static ARENA: Arena<64> = Arena::new();
    /// let _ = ARENA.enable_thread_caches();
    /// let Child { ctx, cancel } = ARENA.background().with_cancel()?;
    /// drop((ctx, cancel)); // the slot goes to this thread's cache...
    /// let _again = ARENA.background().with_cancel()?; // ...and comes back from it
    /// # Ok::<(), ctxtree::CreateError>(())
    /// ```
    #[cfg(all(feature = "std", not(ctxtree_loom)))]
    pub fn enable_thread_caches(&'static self) -> bool {
        let on = slot_cache::supported();
        if on {
            // ORDERING: Relaxed: see `caching`.
            self.hdr.caching.store(1, Ordering::Relaxed);
        }
        on
    }

    /// The deadline hook, if set.
    #[inline]
    pub(crate) fn deadline_hook(&self) -> Option<fn(DeadlineWatch)> {
        // ORDERING: Relaxed, as in `set_deadline_hook`.
        let p = self.hdr.hook.load(Ordering::Relaxed);
        // SAFETY: a non-null `hook` was stored from a `fn(DeadlineWatch)` (`set_deadline_hook`,
        // `with_deadline_hook`): the cast back restores it.
        (!p.is_null()).then(|| unsafe { core::mem::transmute::<*mut (), fn(DeadlineWatch)>(p) })
    }

    /// The most slots this arena can ever have.
    #[inline(always)]
    fn limit(&self) -> usize {
        self.slots.len() + self.hdr.paged_limit
    }

    /// Usage statistics. `live` is counted by scanning the used slots, so under concurrent use
    /// it is a snapshot, not an atomic reading.
    pub fn stats(&self) -> ArenaStats {
        let used = self.used();
        // ORDERING: Relaxed: a statistic; no other memory is read on the strength of it.
        let live = (0..used)
            .filter(|&s| self.node(Slot::new(s)).refs.load(Ordering::Relaxed) != 0)
            .count();
        ArenaStats {
            capacity: self.capacity(),
            max_capacity: self.limit(),
            live,
            high_water: used as usize,
            // ORDERING: Relaxed: a statistic.
            failed_allocs: self.hdr.hot.failed.load(Ordering::Relaxed),
        }
    }

    /// Nodes the arena can hold now.
    pub fn capacity(&self) -> usize {
        #[cfg(feature = "alloc")]
        {
            self.slots.len() + self.hdr.pages.capacity()
        }
        #[cfg(not(feature = "alloc"))]
        {
            self.slots.len()
        }
    }

    /// Slots ever handed out (all slots below this index have been initialised once).
    #[inline]
    pub(crate) fn used(&self) -> u32 {
        // ORDERING: Acquire pairs with the Release of `bump`'s compare-and-swap: every slot
        // below the value read lives in a page this thread can see (`Pages::get` would find a
        // null page otherwise — loom: loom-tests/paged_growth_vs_scan.rs). The scans re-validate
        // every slot they act on; this only makes its memory reachable.
        self.hdr.hot.bump.load(Ordering::Acquire)
    }

    /// The node in `slot`.
    ///
    /// Inlined on 64-bit targets (hosts: every lookup is on a hot path); one out-of-line copy on
    /// smaller ones, where its ~45 inlined copies (a bounds check and an index multiply each)
    /// cost about 700 bytes of flash (thumbv7em, opt-level "s", measured by `ci/firmware.sh`).
    #[cfg_attr(target_pointer_width = "64", inline(always))]
    #[cfg_attr(not(target_pointer_width = "64"), inline(never))]
    pub(crate) fn node(&self, slot: Slot) -> &Node {
        let index = slot.index() as usize;
        match self.slots.get(index) {
            Some(n) => n,
            None => self.paged(index - self.slots.len()),
        }
    }

    /// A paged slot (see [`Pages::node`]).
    #[cfg(feature = "alloc")]
    #[inline(always)]
    fn paged(&self, j: usize) -> &Node {
        self.hdr.pages.node(j)
    }

    /// Without pages no slot index is ever out of range: strong indices come from `alloc_slot`,
    /// weak ones are checked against [`used`](RawArena::used) or read from links written from
    /// strong ones. Were one ever out of range, a node that is always free answers it, as a
    /// free slot would: `try_acquire` fails on it, so a weak index reads "moved on", and no
    /// reference to it can be taken. Memory-safe, and no panic path (whose formatting code a
    /// firmware would otherwise link on every node lookup).
    #[cfg(all(not(feature = "alloc"), not(ctxtree_loom)))]
    #[cold]
    #[inline(never)]
    fn paged(&self, _j: usize) -> &Node {
        static ALWAYS_FREE: Node = Node::new();
        &ALWAYS_FREE
    }

    /// Under loom (built with `alloc`: `ci/loom.sh`), never compiled in practice.
    #[cfg(all(not(feature = "alloc"), ctxtree_loom))]
    fn paged(&self, _j: usize) -> &Node {
        unreachable!("ctxtree: slot index out of range (internal invariant)")
    }

    /// Takes a free slot. The caller owns it exclusively until it stores `refs`.
    #[inline(always)]
    pub(crate) fn alloc_slot(&self) -> Result<Slot, CreateError> {
        self.alloc_slot_or_none().ok_or(CreateError::ArenaFull)
    }

    /// [`alloc_slot`](RawArena::alloc_slot) as an `Option` (returned in registers, where a
    /// `Result` with an error enum is returned through memory on 32-bit targets: flash).
    #[cfg_attr(feature = "std", inline)]
    pub(crate) fn alloc_slot_or_none(&self) -> Option<Slot> {
        #[cfg(all(feature = "std", not(ctxtree_loom)))]
        if self.caching() {
            let mine = slot_cache::mine();
            if let Some(s) = mine.and_then(|c| c.take(self)) {
                return Some(s);
            }
            return self.alloc_shared(|| {
                slot_cache::REGISTRY.sweep(self, mine);
            });
        }
        self.alloc_shared(|| {})
    }

    /// Takes a slot from the free stack or the tail; before refusing, runs `sweep` (which moves
    /// the slots of this arena that sit in threads' caches to the free stack) and looks again.
    #[inline(always)]
    pub(crate) fn alloc_shared(&self, sweep: impl FnOnce()) -> Option<Slot> {
        if let Some(s) = self.pop() {
            return Some(s);
        }
        if let Some(s) = self.bump() {
            return Some(Slot::new(s));
        }
        // `bump` never decreases, so if the stack is empty *now*, every slot is in use now or
        // sits in a cache: this second look, after the sweep of the caches, is the moment
        // `ArenaFull` is true (a slot cached for the whole call is always found).
        sweep();
        if let Some(s) = self.pop() {
            return Some(s);
        }
        // ORDERING: Relaxed: a statistic.
        self.hdr.hot.failed.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Whether freed slots may go to per-thread caches (see `crate::slot_cache`).
    #[cfg(all(feature = "std", not(ctxtree_loom)))]
    #[inline(always)]
    pub(crate) fn caching(&self) -> bool {
        // ORDERING: Relaxed: set once, before or by the thread that proved the arena `'static`;
        // a thread that reads 0 late only uses the free stack.
        self.hdr.caching.load(Ordering::Relaxed) != 0
    }

    /// Width of the free stack's link field: a constant on 64-bit targets.
    #[inline(always)]
    fn link_bits(&self) -> u32 {
        link_bits_for(self.limit())
    }

    #[inline(always)]
    fn link_mask(&self) -> usize {
        (1usize << self.link_bits()) - 1
    }

    /// The link field of the free stack's head `h`.
    #[inline(always)]
    fn top(&self, h: usize) -> Link {
        Link::from_bits((h & self.link_mask()) as u32)
    }

    /// The next tag over `h`, with link `l`.
    #[inline(always)]
    fn retag(&self, h: usize, l: Link) -> usize {
        let tag = (h >> self.link_bits()).wrapping_add(1);
        (tag << self.link_bits()) | l.to_bits() as usize
    }

    fn pop(&self) -> Option<Slot> {
        // ORDERING: Acquire pairs with the Release in `push`: the pushed node's `next` (the rest
        // of the stack) and everything its last owner wrote are visible to the new owner.
        let mut h = self.hdr.hot.free.load(Ordering::Acquire);
        loop {
            let top = self.top(h).slot()?;
            // ORDERING: Relaxed: ordered after the Acquire that read `h`. If the slot was popped
            // (and maybe re-pushed) since, the value is stale but the tag makes the CAS fail.
            let nx = self.node(top).next.load(Ordering::Relaxed);
            let new = self.retag(h, nx.link());
            match self.hdr.hot.free.compare_exchange_weak(
                h,
                new,
                // ORDERING: Acquire, as for the initial load.
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(top),
                Err(x) => h = x,
            }
        }
    }

    /// Returns `slot` to the free stack, or to the calling thread's cache. The caller owns it
    /// exclusively.
    #[cfg_attr(feature = "std", inline)]
    pub(crate) fn push(&self, slot: Slot) {
        #[cfg(all(feature = "std", not(ctxtree_loom)))]
        if self.caching() && slot_cache::mine().is_some_and(|c| c.give(self, slot)) {
            return;
        }
        self.push_chain(slot, slot);
    }

    /// Pushes a chain of free slots, `first` to `last` linked through their `next` words
    /// (`last`'s is set here), in one compare-and-swap. The caller owns them exclusively.
    // Without `std`, `push` is this alone: the same code as before caches existed (flash).
    #[cfg_attr(not(feature = "std"), inline(always))]
    pub(crate) fn push_chain(&self, first: Slot, last: Slot) {
        let n = self.node(last);
        // ORDERING: Relaxed: the value only seeds the CAS, which validates it.
        let mut h = self.hdr.hot.free.load(Ordering::Relaxed);
        loop {
            // Published by the Release CAS below.
            n.next.set_free(self.top(h));
            let new = self.retag(h, Link::to(first));
            // ORDERING: Release publishes the chain's `next` words and the nodes' last writes
            // to the next popper.
            match self.hdr.hot.free.compare_exchange_weak(
                h,
                new,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(x) => h = x,
            }
        }
    }

    fn bump(&self) -> Option<u32> {
        // ORDERING: Relaxed: only seeds the compare-and-swap; the slot's page is made visible
        // to this thread by `Pages::ensure` itself.
        let mut b = self.hdr.hot.bump.load(Ordering::Relaxed);
        loop {
            if b as usize >= self.limit() {
                return None;
            }
            // Out of memory for the page is `None` here, `ArenaFull` to the caller.
            #[cfg(feature = "alloc")]
            if b as usize >= self.slots.len()
                && !self.hdr.pages.ensure(b as usize - self.slots.len())
            {
                return None;
            }
            // The timer's storage for the slot, made before its first use (the global arena).
            if self.hdr.timer().is_some_and(|t| !(t.grow)(b)) {
                return None;
            }
            // ORDERING: Release on success publishes the page `ensure` just made visible to
            // this thread, to scans that read `bump` with Acquire (`used`); every change of
            // `bump` is this read-modify-write, so one Acquire load that reads `n` synchronises
            // with the bumps of all slots below `n`. Relaxed on failure: the retry re-checks.
            match self.hdr.hot.bump.compare_exchange_weak(
                b,
                b + 1,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(b),
                Err(x) => b = x,
            }
        }
    }
}

impl Header {
    /// The `std` global arena's timer hooks (see [`TimerHooks`]); `None` in every other arena,
    /// and always without `std`.
    #[inline(always)]
    pub(crate) fn timer(&self) -> Option<&'static TimerHooks> {
        #[cfg(feature = "std")]
        return self.timer;
        #[cfg(not(feature = "std"))]
        return None;
    }

    /// Binds the clock of an arena being built (`HeapArena::with_clock`).
    #[cfg(feature = "alloc")]
    pub(crate) fn set_clock<C: Clock>(&mut self, clock: &'static C) {
        // A new arena has no clock, and a second call binds nothing else.
        let _ = self.clock.bind(ClockRef::of(clock));
    }

    /// Sets the deadline hook of an arena being built (`HeapArena::with_deadline_hook`).
    #[cfg(feature = "alloc")]
    pub(crate) fn set_hook(&mut self, hook: fn(DeadlineWatch)) {
        self.hook = AtomicPtr::new(hook as *mut ());
    }

    /// Sets the clock and hook in a `const` context (the `std` global arena).
    #[cfg(all(feature = "std", not(ctxtree_loom)))]
    pub(crate) const fn with_clock_and_hook<C: Clock>(
        mut self,
        clock: &'static C,
        hook: fn(DeadlineWatch),
    ) -> Self {
        self.clock = ClockCell::holding(ClockRef::of(clock));
        self.hook = AtomicPtr::new(hook as *mut ());
        self
    }

    /// Turns per-thread slot caches on in a `const` context: the `std` global arena, a `static`.
    #[cfg(all(feature = "std", not(ctxtree_loom)))]
    pub(crate) const fn with_thread_caches(mut self) -> Self {
        self.caching = AtomicU8::new(1);
        self
    }

    /// Installs the timer's per-slot hooks in a `const` context (the `std` global arena).
    #[cfg(all(feature = "std", not(ctxtree_loom)))]
    pub(crate) const fn with_timer_hooks(mut self, timer: &'static TimerHooks) -> Self {
        self.timer = Some(timer);
        self
    }
}
