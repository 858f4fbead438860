//! The timer of the `std` global arena: no lock and no allocation on the path that watches a
//! deadline, and an entry that leaves when its context is released.
//!
//! # Design
//! Every slot of the global arena has a timer [`Entry`] in a side table ([`SideTable`]) that
//! mirrors the arena's pages: page k of the table is allocated when the arena first hands out a
//! slot of its page k (the `grow` hook of [`TimerHooks`], called from the arena's bump
//! allocator; a refusal is `ArenaFull`, like a refused arena page). So an entry exists before
//! its slot can be watched, and watching never allocates. The entries are not in the `Node`s:
//! contexts of every other arena (firmware above all) pay nothing for them. Cost: 32 bytes per
//! global slot beside its 64-byte node.
//!
//! An entry has two parts:
//! - **Shared**: one word, `QUEUED` | the deadline watched (`want`, in ticks; 0 = none), and the
//!   link of the *inbox*, a lock-free intrusive multi-producer stack of slots (Treiber push,
//!   take-all pop: no ABA, only the timer pops, and it takes everything).
//! - **Timer-private**: the links of a hierarchical timing wheel ([`Wheel`], as tokio's: 6
//!   levels of 64 buckets, 16.4 µs units, 13 days per turn of the top level, an overflow list
//!   beyond), kept in the entry (intrusive: filing allocates nothing either), read and written
//!   only by the timer thread.
//!
//! # Registering (a watch)
//! `Context::watch` (first poll of `done()`, `after_func`) calls [`timer_hook`] with the slot
//! and its deadline while holding a reference on the context, so the slot cannot be released
//! meanwhile. [`request`] sets `want` and `QUEUED` in one compare-and-swap; whoever sets
//! `QUEUED` pushes the slot on the inbox. Every watch that changed `want` then wakes the timer
//! thread if the new deadline is earlier than the one it sleeps until (see "Waking" below).
//! Watching the same deadline again (more futures on one context) changes nothing and returns
//! after one load.
//!
//! # Done or released (a forget)
//! When a node with a deadline is published done (cancelled, or expired by whoever saw its
//! deadline first), and again when it is torn down, the core calls [`forget`] (the `forget`
//! hook) on that thread: `want` becomes 0 and, unless it is already queued, the slot goes on
//! the inbox so that the timer unfiles it. This never wakes the timer: it drains its inbox at
//! least every [`HOUSEKEEPING_NS`] while anything is filed (so a watch of a deadline
//! later than that does not wake it either). Memory does not grow with watches
//! in any case: an entry is per slot, and slots are reused.
//!
//! # The timer thread
//! Takes the whole inbox; for each slot, reads the slot's `next` link, *then* clears `QUEUED`
//! and reads `want` in one `fetch_and` (after which a new watch pushes the slot again, and may
//! overwrite the link), and files, refiles or unfiles the slot to match `want`. Then it fires
//! what is due (`RawArena::expire_watch`, which re-validates the slot: a stale entry expires
//! only a context that is itself due), and sleeps until the next bucket of the wheel.
//!
//! # Invariants
//! 1. The word of a slot changes only while its context lives (its changers hold a reference on
//!    it, or own it exclusively in teardown), or by the timer after firing exactly the deadline
//!    still in `want`. A watch sets `want` to the context's own deadline (immutable per
//!    incarnation: concurrent watchers of one slot agree on it); a forget sets it to 0. A watch
//!    racing with the forget of a done context may file it again: it then leaves at teardown,
//!    whose forget no watch can race (nobody else holds the context), or when it falls due.
//! 2. `QUEUED` is set by the thread that will push the slot, and cleared only by the timer
//!    after it took the slot off the inbox and read its link: a slot is on the inbox at most
//!    once.
//! 3. A slot whose word is not `QUEUED` and whose `want` is not 0 is filed in the wheel at
//!    `want` (or being fired by the timer right now): the timer's view is never behind a word
//!    it is not going to read again.
//!
//! # Waking
//! The timer publishes when it will next wake (`sleep_until`), then issues a `SeqCst` fence and
//! looks at the inbox once more before it parks; a watcher pushes (or changes `want`), issues a
//! `SeqCst` fence and then reads `sleep_until`. Of two threads that each write, fence and read,
//! at least one reads the other's write: either the timer finds the slot in the inbox and does
//! not park, or the watcher sees the sleep target and unparks it (std's `unpark` before `park`
//! makes the `park` return). `unpark` is an atomic swap and, if the thread sleeps, one futex
//! wake: no lock, no allocation (loom: loom-tests/timer_watch_vs_release.rs).
//!
//! # Memory ordering
//! The inbox push is a Release compare-and-swap after the link store; the take is an Acquire
//! swap, which synchronises with every push in the stack (a release sequence of RMWs), so the
//! links read are the pushers'. The entry word is only changed by RMWs (one modification
//! order); its values carry no other data, so they are AcqRel for the reasoning's sake only.

// Under loom only the protocol is modelled; the wheel and the side table are compiled for it.
#![cfg_attr(ctxtree_loom, allow(dead_code))]

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// No slot: the end of the inbox or of a wheel bucket, an unfiled entry.
pub(crate) const NIL: u32 = u32::MAX;
/// The slot is on the inbox, or its pusher is about to put it there.
const QUEUED: u64 = 1 << 63;
/// The deadline watched, in ticks; 0 = none.
const WANT: u64 = QUEUED - 1;

/// How often the timer drains its inbox while anything is filed or watches keep coming,
/// whatever its next deadline: released entries leave the wheel within this time without
/// waking the timer on every release, and a watch of a later deadline does not wake it.
#[cfg(not(ctxtree_loom))]
pub(crate) const HOUSEKEEPING_NS: u64 = 50_000_000;

/// The timer's record of one slot. See the module docs.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Shared: `QUEUED` | `want`.
    word: AtomicU64,
    /// Shared: the next slot on the inbox (written by the pusher, read by the timer).
    inbox_next: AtomicU32,
    // Timer-private from here: only the timer thread touches them (Relaxed, no unsafe needed).
    /// Previous entry in the wheel bucket (`NIL`: the bucket's head).
    prev: AtomicU32,
    /// Next entry in the wheel bucket.
    next: AtomicU32,
    /// The bucket this entry is filed in (`NIL`: not filed).
    bucket: AtomicU32,
    /// The deadline it is filed at, in ticks.
    filed: AtomicU64,
}

impl Entry {
    #[cfg(not(ctxtree_loom))]
    pub(crate) const fn new() -> Self {
        Entry {
            word: AtomicU64::new(0),
            inbox_next: AtomicU32::new(NIL),
            prev: AtomicU32::new(NIL),
            next: AtomicU32::new(NIL),
            bucket: AtomicU32::new(NIL),
            filed: AtomicU64::new(0),
        }
    }

    #[cfg(ctxtree_loom)]
    pub(crate) fn new() -> Self {
        Entry {
            word: AtomicU64::new(0),
            inbox_next: AtomicU32::new(NIL),
            prev: AtomicU32::new(NIL),
            next: AtomicU32::new(NIL),
            bucket: AtomicU32::new(NIL),
            filed: AtomicU64::new(0),
        }
    }
}

/// Where the entries live: the global arena's side table, or a plain slice (loom, unit tests).
pub(crate) trait Table {
    /// The entry of `slot`, which must exist.
    fn entry(&self, slot: u32) -> &Entry;
}

impl Table for [Entry] {
    fn entry(&self, slot: u32) -> &Entry {
        &self[slot as usize]
    }
}

/// The inbox: a lock-free intrusive stack of slots whose entry the timer must look at.
#[derive(Debug)]
pub(crate) struct Inbox {
    head: AtomicU32,
}

impl Inbox {
    #[cfg(not(ctxtree_loom))]
    pub(crate) const fn new() -> Self {
        Inbox {
            head: AtomicU32::new(NIL),
        }
    }

    #[cfg(ctxtree_loom)]
    pub(crate) fn new() -> Self {
        Inbox {
            head: AtomicU32::new(NIL),
        }
    }

    /// Pushes `slot`, whose `QUEUED` bit the caller just set (invariant #2).
    fn push<T: Table + ?Sized>(&self, t: &T, slot: u32) {
        let e = t.entry(slot);
        // ORDERING: Relaxed: only seeds the compare-and-swap, which validates it.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // ORDERING: Relaxed: published by the Release compare-and-swap below.
            e.inbox_next.store(head, Ordering::Relaxed);
            // ORDERING: Release publishes the link to the timer's Acquire `take`. Relaxed on
            // failure: the retry stores the link again.
            match self
                .head
                .compare_exchange_weak(head, slot, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Takes every slot on the inbox: the first, linked through `inbox_next` (timer only).
    fn take(&self) -> u32 {
        // ORDERING: Acquire pairs with every push's Release (one release sequence of RMWs on
        // `head`): the links of all the slots taken are visible.
        self.head.swap(NIL, Ordering::Acquire)
    }

    /// Whether the inbox is empty (the timer's last look before it parks, after a `SeqCst`
    /// fence; see "Waking" in the module docs).
    pub(crate) fn is_empty(&self) -> bool {
        // ORDERING: Relaxed: ordered by the caller's `SeqCst` fence, which pairs with the fence
        // a watcher issues after its push.
        self.head.load(Ordering::Relaxed) == NIL
    }
}

/// The deadline as stored in `want`: 63 bits, never 0 (tick 0 is the epoch, before any
/// deadline can be watched; a deadline past 2⁶³ ns, 292 years, is clamped, which can only make
/// the timer look early: `expire_watch` then finds it not due and does nothing).
fn want_of(at: u64) -> u64 {
    at.clamp(1, WANT)
}

/// A watch of `slot` at deadline `at` (ticks), by a holder of a reference on its context.
/// Returns whether it changed the entry (then the caller checks whether to wake the timer).
pub(crate) fn request<T: Table + ?Sized>(t: &T, inbox: &Inbox, slot: u32, at: u64) -> bool {
    let want = want_of(at);
    let e = t.entry(slot);
    // ORDERING: Acquire, as for the compare-and-swap (see the module's "Memory ordering").
    let mut cur = e.word.load(Ordering::Acquire);
    loop {
        if cur & WANT == want {
            // Already watched at this deadline: queued, filed or fired (invariants #1, #3).
            return false;
        }
        // ORDERING: AcqRel: every change of the word is an RMW, one modification order.
        match e
            .word
            .compare_exchange_weak(cur, want | QUEUED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                if cur & QUEUED == 0 {
                    inbox.push(t, slot);
                }
                return true;
            }
            Err(x) => cur = x,
        }
    }
}

/// The context in `slot` is done or being torn down (the caller holds a reference on it or owns
/// it exclusively): its entry is no longer wanted. Never wakes the timer.
pub(crate) fn forget<T: Table + ?Sized>(t: &T, inbox: &Inbox, slot: u32) {
    let e = t.entry(slot);
    // ORDERING: Acquire, as in `request`.
    let mut cur = e.word.load(Ordering::Acquire);
    loop {
        if cur & WANT == 0 {
            return; // never watched, or fired and cleared (invariant #3: not filed)
        }
        // ORDERING: AcqRel, as in `request`.
        match e
            .word
            .compare_exchange_weak(cur, QUEUED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                if cur & QUEUED == 0 {
                    inbox.push(t, slot);
                }
                return;
            }
            Err(x) => cur = x,
        }
    }
}

/// Takes the inbox (timer only) and calls `f(slot, want)` for each slot on it, `want` 0 for a
/// forgotten one. `f` may call [`request`] and [`forget`] (a fired callback that watches again).
pub(crate) fn drain<T: Table + ?Sized>(t: &T, inbox: &Inbox, mut f: impl FnMut(u32, u64)) {
    let mut slot = inbox.take();
    while slot != NIL {
        let e = t.entry(slot);
        // ORDERING: Relaxed: the Acquire `take` made the pusher's store visible. Read *before*
        // `QUEUED` is cleared: afterwards a new push may overwrite it (invariant #2).
        let next = e.inbox_next.load(Ordering::Relaxed);
        // ORDERING: AcqRel, as in `request`.
        let word = e.word.fetch_and(!QUEUED, Ordering::AcqRel);
        f(slot, word & WANT);
        slot = next;
    }
}

/// The timer fired `slot`'s entry filed at `at` (it is unfiled): unless the word changed
/// since (queued again, or a new deadline), it no longer wants anything (invariant #3).
pub(crate) fn fired<T: Table + ?Sized>(t: &T, slot: u32, at: u64) {
    // ORDERING: AcqRel, as in `request`; the failure means someone else changed the word, and
    // that someone queued the slot: nothing to do.
    let _ =
        t.entry(slot)
            .word
            .compare_exchange(want_of(at), 0, Ordering::AcqRel, Ordering::Relaxed);
}

/// The `want` of `slot` and whether it is queued (tests and loom models, single-threaded).
#[cfg(any(test, ctxtree_loom))]
pub(crate) fn peek<T: Table + ?Sized>(t: &T, slot: u32) -> (u64, bool) {
    // ORDERING: Acquire: as any reader of the word.
    let word = t.entry(slot).word.load(Ordering::Acquire);
    (word & WANT, word & QUEUED != 0)
}

// ---------------------------------------------------------------------------------------------
// The wheel (timer-private).
// ---------------------------------------------------------------------------------------------

/// Bits of a wheel unit: 2¹⁴ ns = 16.4 µs, the most a deadline is rounded up (less than the
/// 50 µs timer slack of a Linux thread).
pub(crate) const UNIT_SHIFT: u32 = 14;
const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// Units in one turn of the top level (2³⁶ units: 13 days).
const RANGE_BITS: u32 = SLOT_BITS * LEVELS as u32;
/// The bucket of the entries beyond the current turn of the top level.
const OVERFLOW: u32 = (LEVELS * SLOTS) as u32;

/// A hierarchical timing wheel over intrusive entries (tokio's design): an entry due at unit
/// `when` sits at the level of the highest 6-bit digit in which `when` differs from `elapsed`,
/// in the bucket named by that digit. After every [`Wheel::poll`], no bucket's start is at or
/// before `elapsed`, so the lowest occupied level holds the earliest entries, and the next
/// deadline is found with one `trailing_zeros` per level.
#[derive(Debug)]
pub(crate) struct Wheel {
    /// Units processed: everything due at or before it has been fired.
    elapsed: u64,
    occupied: [u64; LEVELS],
    heads: [[u32; SLOTS]; LEVELS],
    overflow: u32,
    len: usize,
}

impl Wheel {
    pub(crate) fn new(now: u64) -> Self {
        Wheel {
            elapsed: now >> UNIT_SHIFT,
            occupied: [0; LEVELS],
            heads: [[NIL; SLOTS]; LEVELS],
            overflow: NIL,
            len: 0,
        }
    }

    /// Entries filed.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The deadline `slot` is filed at, if it is.
    pub(crate) fn filed<T: Table + ?Sized>(&self, t: &T, slot: u32) -> Option<u64> {
        let e = t.entry(slot);
        // ORDERING: Relaxed: timer-private fields.
        (e.bucket.load(Ordering::Relaxed) != NIL).then(|| e.filed.load(Ordering::Relaxed))
    }

    fn head_mut(&mut self, bucket: u32) -> &mut u32 {
        if bucket == OVERFLOW {
            &mut self.overflow
        } else {
            let b = bucket as usize;
            &mut self.heads[b / SLOTS][b % SLOTS]
        }
    }

    /// Files the unfiled `slot` at deadline `at` (ticks), which must be after the last `poll`'s
    /// `now`.
    pub(crate) fn file<T: Table + ?Sized>(&mut self, t: &T, slot: u32, at: u64) {
        // Rounded up: the bucket is processed once `now` reaches its start, which is then at
        // or after `at`.
        let when = at.div_ceil(1 << UNIT_SHIFT).max(self.elapsed + 1);
        let bucket = if when >> RANGE_BITS != self.elapsed >> RANGE_BITS {
            OVERFLOW
        } else {
            let significant = 63 - ((self.elapsed ^ when) | (SLOTS as u64 - 1)).leading_zeros();
            let level = significant / SLOT_BITS;
            let digit = (when >> (level * SLOT_BITS)) as usize % SLOTS;
            self.occupied[level as usize] |= 1 << digit;
            (level as usize * SLOTS + digit) as u32
        };
        let head = self.head_mut(bucket);
        let old = core::mem::replace(head, slot);
        let e = t.entry(slot);
        // ORDERING: Relaxed: timer-private fields.
        e.prev.store(NIL, Ordering::Relaxed);
        e.next.store(old, Ordering::Relaxed);
        e.bucket.store(bucket, Ordering::Relaxed);
        e.filed.store(at, Ordering::Relaxed);
        if old != NIL {
            t.entry(old).prev.store(slot, Ordering::Relaxed);
        }
        self.len += 1;
    }

    /// Takes `slot` out of its bucket, if it is filed.
    pub(crate) fn unfile<T: Table + ?Sized>(&mut self, t: &T, slot: u32) {
        let e = t.entry(slot);
        // ORDERING (all of this function): Relaxed: timer-private fields.
        let bucket = e.bucket.swap(NIL, Ordering::Relaxed);
        if bucket == NIL {
            return;
        }
        let (prev, next) = (
            e.prev.load(Ordering::Relaxed),
            e.next.load(Ordering::Relaxed),
        );
        if next != NIL {
            t.entry(next).prev.store(prev, Ordering::Relaxed);
        }
        if prev != NIL {
            t.entry(prev).next.store(next, Ordering::Relaxed);
        } else {
            *self.head_mut(bucket) = next;
            if next == NIL && bucket != OVERFLOW {
                let b = bucket as usize;
                self.occupied[b / SLOTS] &= !(1 << (b % SLOTS));
            }
        }
        self.len -= 1;
    }

    /// The earliest occupied bucket: (bucket, its start in units).
    fn next_bucket(&self) -> Option<(u32, u64)> {
        for level in 0..LEVELS {
            let shift = level as u32 * SLOT_BITS;
            let pos = (self.elapsed >> shift) as u32 % SLOTS as u32;
            let occ = self.occupied[level] & (u64::MAX << pos);
            if occ != 0 {
                let digit = occ.trailing_zeros() as u64;
                let base = self.elapsed & !((1u64 << (shift + SLOT_BITS)) - 1);
                return Some(((level * SLOTS) as u32 + digit as u32, base | digit << shift));
            }
        }
        (self.overflow != NIL).then(|| (OVERFLOW, ((self.elapsed >> RANGE_BITS) + 1) << RANGE_BITS))
    }

    /// When the next bucket falls due, in ticks.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.next_bucket()
            .map(|(_, start)| start.saturating_mul(1 << UNIT_SHIFT))
    }

    /// Unfiles every entry due at or before `now` (ticks) and calls `due(slot, at)` for each;
    /// refiles the others of the buckets it opens (cascading down the levels).
    pub(crate) fn poll<T: Table + ?Sized>(
        &mut self,
        t: &T,
        now: u64,
        mut due: impl FnMut(u32, u64),
    ) {
        let now_unit = now >> UNIT_SHIFT;
        while let Some((bucket, start)) = self.next_bucket() {
            if start > now_unit {
                break;
            }
            self.elapsed = self.elapsed.max(start);
            let mut slot = core::mem::replace(self.head_mut(bucket), NIL);
            if bucket != OVERFLOW {
                let b = bucket as usize;
                self.occupied[b / SLOTS] &= !(1 << (b % SLOTS));
            }
            while slot != NIL {
                let e = t.entry(slot);
                // ORDERING: Relaxed: timer-private fields.
                let next = e.next.load(Ordering::Relaxed);
                e.bucket.store(NIL, Ordering::Relaxed);
                let at = e.filed.load(Ordering::Relaxed);
                self.len -= 1;
                if at <= now {
                    due(slot, at);
                } else {
                    self.file(t, slot, at);
                }
                slot = next;
            }
        }
        self.elapsed = self.elapsed.max(now_unit);
    }
}

// ---------------------------------------------------------------------------------------------
// The global arena's side table (std).
// ---------------------------------------------------------------------------------------------

#[cfg(not(ctxtree_loom))]
pub(crate) use self::global::*;

#[cfg(not(ctxtree_loom))]
mod global {
    use core::alloc::Layout;
    use core::ptr;

    use super::{Entry, Table};
    use crate::sync::{AtomicPtr, Ordering};

    /// Entries for every slot of a paged arena, in pages of the same geometry (page 0: `base`
    /// slots, page k: `base << k`), allocated by [`SideTable::grow`] and never freed (the
    /// global arena lives as long as the process).
    #[derive(Debug)]
    pub(crate) struct SideTable<const PAGES: usize> {
        base: usize,
        /// log2 of `base`.
        base_shift: u32,
        pages: [AtomicPtr<Entry>; PAGES],
    }

    impl<const PAGES: usize> SideTable<PAGES> {
        /// `base` must be a power of two.
        pub(crate) const fn new(base: usize) -> Self {
            assert!(base.is_power_of_two());
            SideTable {
                base,
                base_shift: base.trailing_zeros(),
                pages: [const { AtomicPtr::new(ptr::null_mut()) }; PAGES],
            }
        }

        /// (page, offset) of `slot`.
        fn locate(&self, slot: u32) -> (usize, usize) {
            let j = slot as usize;
            let q = (j >> self.base_shift) + 1;
            let k = (usize::BITS - 1 - q.leading_zeros()) as usize;
            (k, j - self.base * ((1usize << k) - 1))
        }

        /// Makes the entry of `slot` exist. False if the allocator refuses its page (nothing is
        /// remembered: the next call asks again) or `slot` is past the last page.
        pub(crate) fn grow(&self, slot: u32) -> bool {
            let (k, _) = self.locate(slot);
            let Some(page) = self.pages.get(k) else {
                return false;
            };
            // ORDERING: Acquire pairs with the Release below: the page's entries are
            // initialised.
            if !page.load(Ordering::Acquire).is_null() {
                return true;
            }
            let len = self.base << k;
            let Some(p) = alloc_entries(len) else {
                return false;
            };
            // ORDERING: Release publishes the initialised page; Acquire on failure makes the
            // winner's page visible.
            if page
                .compare_exchange(ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // SAFETY: `p` came from `alloc_entries(len)` just above and was never shared.
                unsafe { free_entries(p, len) };
            }
            true
        }
    }

    impl<const PAGES: usize> Table for SideTable<PAGES> {
        fn entry(&self, slot: u32) -> &Entry {
            let (k, off) = self.locate(slot);
            // ORDERING: Acquire pairs with the Release in `grow`: the entries are initialised.
            let p = self.pages[k].load(Ordering::Acquire);
            assert!(
                !p.is_null(),
                "ctxtree: timer entry of a slot never handed out (internal invariant)"
            );
            // SAFETY: `p` is a live page of `base << k` entries (never freed), `off` is inside.
            unsafe { &*p.add(off) }
        }
    }

    /// `len` fresh entries from the global allocator: `None` on failure, never an abort.
    fn alloc_entries(len: usize) -> Option<*mut Entry> {
        let layout = Layout::array::<Entry>(len).ok().filter(|l| l.size() != 0)?;
        // SAFETY: `layout` has a non-zero size.
        let p = unsafe { ::alloc::alloc::alloc(layout) }.cast::<Entry>();
        if p.is_null() {
            return None;
        }
        for i in 0..len {
            // SAFETY: `p` is valid and aligned for `len` entries, and entry `i` is uninitialised.
            unsafe { ptr::write(p.add(i), Entry::new()) };
        }
        Some(p)
    }

    /// Frees a page that was never shared.
    ///
    /// # Safety
    /// `p` came from `alloc_entries(len)` with this `len` and is referenced nowhere.
    unsafe fn free_entries(p: *mut Entry, len: usize) {
        let Ok(layout) = Layout::array::<Entry>(len) else {
            unreachable!("ctxtree: the layout was valid when the page was allocated")
        };
        // SAFETY: per the contract, `p` was allocated by the global allocator with this layout
        // (entries have no `Drop` to run) and is freed once.
        unsafe { ::alloc::alloc::dealloc(p.cast(), layout) };
    }
}

#[cfg(not(ctxtree_loom))]
/// Figures of the global arena's timer thread, from its last pass (see
/// [`timer_stats`](crate::timer_stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimerStats {
    /// Deadlines filed in the timer's wheel: watched, neither fired nor released yet.
    pub pending: usize,
    /// Deadlines the timer thread has fired since the process started.
    pub fired: u64,
}

#[cfg(all(test, not(ctxtree_loom)))]
mod tests {
    use super::*;
    use ::std::vec::Vec;

    fn table(n: usize) -> Vec<Entry> {
        (0..n).map(|_| Entry::new()).collect()
    }

    const U: u64 = 1 << UNIT_SHIFT;

    #[test]
    fn the_wheel_fires_in_deadline_order_at_every_level_and_beyond() {
        let t = table(8);
        let start = 5 * U + 3;
        let mut w = Wheel::new(start);
        // One per level, one past the top level's turn, and one refiled by `unfile`.
        let ats = [
            start + 10 * U,
            start + 100 * U,
            start + 5_000 * U,
            start + 300_000 * U,
            start + 20_000_000 * U,
            start + (1 << 31) * U,
            start + (1 << 37) * U,
            start + 7 * U,
        ];
        for (s, &at) in ats.iter().enumerate() {
            w.file(&t[..], s as u32, at);
        }
        assert_eq!(w.len(), 8);
        w.unfile(&t[..], 7);
        assert_eq!(w.len(), 7);
        assert_eq!(w.filed(&t[..], 7), None);
        let mut fired = Vec::new();
        let mut now = start;
        // Jump from one next deadline to the next, as the timer thread does (bounded: every
        // step fires or cascades, and there are 7 entries at 6 levels plus the overflow).
        for _ in 0..100 {
            let Some(next) = w.next_deadline() else { break };
            assert!(next > now, "the wheel went back in time");
            now = next;
            w.poll(&t[..], now, |s, at| {
                assert!(at <= now && now - at < U, "fired {s} at {now}, due at {at}");
                fired.push(s);
            });
        }
        assert_eq!(fired, [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn a_late_poll_fires_everything_due_and_keeps_the_rest() {
        let t = table(64);
        let mut w = Wheel::new(0);
        for s in 0..64u32 {
            w.file(&t[..], s, (u64::from(s) + 1) * 1_000_000);
        }
        let mut fired = 0;
        w.poll(&t[..], 32_000_000, |_, at| {
            assert!(at <= 32_000_000);
            fired += 1;
        });
        assert_eq!((fired, w.len()), (32, 32));
        // The next wake-up may be a cascade (a higher level's bucket) before the next deadline,
        // never after it; stepping from wake-up to wake-up fires it less than a unit late.
        let mut now = 32_000_000;
        for _ in 0..LEVELS {
            let next = w.next_deadline().expect("32 entries still filed");
            assert!(next > now && next < 33_000_000 + U, "woke at {next}");
            now = next;
            let mut hit = None;
            w.poll(&t[..], now, |s, at| hit = Some((s, at)));
            if let Some((s, at)) = hit {
                assert_eq!((s, at), (32, 33_000_000));
                assert!(now - at < U);
                assert_eq!(w.len(), 31);
                return;
            }
        }
        panic!("the 33rd deadline never fired");
    }

    #[test]
    fn the_wheel_agrees_with_a_sorted_list_on_random_files_unfiles_and_polls() {
        const N: usize = 256;
        let t = table(N);
        // A small xorshift: reproducible, no dependency.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        let mut now = 1u64 << 40;
        let mut w = Wheel::new(now);
        let mut model: [Option<u64>; N] = [None; N];
        // Fewer steps under Miri (about 1000x slower), the same checks.
        let steps = if cfg!(miri) { 300 } else { 20_000 };
        for step in 0..steps {
            let slot = rand(N as u64) as u32;
            match rand(4) {
                0 | 1 => {
                    w.unfile(&t[..], slot);
                    // Spans every level and the overflow: up to 2^44 units ahead.
                    let span = 1u64 << rand(45);
                    let at = now + 1 + rand(span) * (1 << UNIT_SHIFT) / 4;
                    w.file(&t[..], slot, at);
                    model[slot as usize] = Some(at);
                }
                2 => {
                    w.unfile(&t[..], slot);
                    model[slot as usize] = None;
                }
                _ => {
                    // Jump to the next wake-up, or a little beyond it.
                    let Some(next) = w.next_deadline() else {
                        continue;
                    };
                    assert!(next > now, "step {step}: woke in the past");
                    now = next + rand(3) * (1 << UNIT_SHIFT);
                    let mut fired = Vec::new();
                    w.poll(&t[..], now, |s, at| fired.push((s, at)));
                    fired.sort_unstable();
                    let mut due: Vec<(u32, u64)> = (0..N as u32)
                        .filter_map(|s| model[s as usize].map(|at| (s, at)))
                        .filter(|&(_, at)| at.div_ceil(1 << UNIT_SHIFT) << UNIT_SHIFT <= now)
                        .collect();
                    due.sort_unstable();
                    assert_eq!(fired, due, "step {step}: now {now}");
                    for (s, _) in due {
                        model[s as usize] = None;
                    }
                    // Nothing still filed was due, and the next wake-up is not after any.
                    let earliest = model.iter().flatten().min().copied();
                    if let Some(e) = earliest {
                        assert!(e > now);
                        let rounded = e.div_ceil(1 << UNIT_SHIFT) << UNIT_SHIFT;
                        assert!(w.next_deadline().is_some_and(|n| n <= rounded));
                    }
                }
            }
            assert_eq!(w.len(), model.iter().flatten().count(), "step {step}");
        }
    }

    #[test]
    fn the_protocol_queues_once_and_drains_to_the_latest_want() {
        let t = table(2);
        let inbox = Inbox::new();
        assert!(request(&t[..], &inbox, 1, 500));
        assert!(
            !request(&t[..], &inbox, 1, 500),
            "the same deadline changes nothing"
        );
        forget(&t[..], &inbox, 1);
        assert!(request(&t[..], &inbox, 1, 700), "a new context in the slot");
        assert!(request(&t[..], &inbox, 0, 900));
        let mut seen = Vec::new();
        drain(&t[..], &inbox, |s, want| seen.push((s, want)));
        assert_eq!(
            seen,
            [(0, 900), (1, 700)],
            "each slot once, with its latest want"
        );
        assert!(inbox.is_empty());
        assert_eq!(peek(&t[..], 1), (700, false));
        fired(&t[..], 1, 700);
        assert_eq!(peek(&t[..], 1), (0, false));
        forget(&t[..], &inbox, 1);
        assert!(inbox.is_empty(), "a fired entry has nothing to forget");
        forget(&t[..], &inbox, 0);
        drain(&t[..], &inbox, |s, want| assert_eq!((s, want), (0, 0)));
    }
}
