//! Paged storage (`alloc`): the slots of a heap or global arena, in pages that double in size
//! and never move.
//!
//! # Layout
//! Page 0 holds `base` slots and page k holds `base << k`, so `count` pages hold
//! `base × (2^count − 1)` and a paged index finds its page with one shift. A page is allocated
//! the first time one of its slots is bumped ([`Pages::ensure`]), published with a
//! compare-and-swap, and freed only with the arena ([`Pages::free_all`]): a slot index stays
//! valid for the arena's whole life.
//!
//! # Out of memory
//! A page comes from the global allocator directly, never through `Box` or `Vec` (whose failure
//! path, `handle_alloc_error`, aborts the process). A page the allocator refuses makes `ensure`
//! false, so the arena's `bump` finds no slot and the constructor returns
//! [`CreateError::ArenaFull`](crate::CreateError::ArenaFull), counted in `failed_allocs`. Nothing
//! is remembered of the failure: the next allocation that needs the page asks for it again.

use core::alloc::Layout;
use core::ptr;

use crate::arena::Header;
use crate::node::Node;
use crate::state::MAX_SLOTS;
use crate::sync::{AtomicPtr, Ordering};

/// The most pages an arena may have.
pub(crate) const MAX_PAGES: usize = 28;

pub(crate) struct Pages {
    /// Slots in page 0; page k has `base << k` (0 = no pages).
    base: usize,
    /// How many pages may exist.
    count: usize,
    ptrs: [AtomicPtr<Node>; MAX_PAGES],
}

impl Pages {
    #[cfg(not(ctxtree_loom))]
    pub(crate) const fn new() -> Self {
        Pages {
            base: 0,
            count: 0,
            ptrs: [const { AtomicPtr::new(ptr::null_mut()) }; MAX_PAGES],
        }
    }

    #[cfg(ctxtree_loom)]
    pub(crate) fn new() -> Self {
        Pages {
            base: 0,
            count: 0,
            ptrs: core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        }
    }

    /// Configures up to `count` pages, the first of `base` slots (must be a power of two when
    /// `count > 1`). Pages that would reach past `MAX_SLOTS` are left out, so that no page is
    /// allocated for slots that the link width cannot name.
    pub(crate) const fn configure(mut self, base: usize, mut count: usize) -> Self {
        assert!(count <= MAX_PAGES && (count <= 1 || base.is_power_of_two()));
        while count > 1 && Self::limit(base, count) > MAX_SLOTS {
            count -= 1;
        }
        self.base = base;
        self.count = count;
        self
    }

    /// Slots in all pages that may ever exist.
    pub(crate) const fn limit(base: usize, count: usize) -> usize {
        if count == 0 {
            0
        } else {
            base * ((1usize << count) - 1)
        }
    }

    /// (page, offset) of paged index `j`.
    #[inline]
    fn locate(&self, j: usize) -> (usize, usize) {
        if j < self.base {
            return (0, j);
        }
        let q = j / self.base + 1; // base is a power of two here: a shift
        let k = (usize::BITS - 1 - q.leading_zeros()) as usize;
        (k, j - self.base * ((1usize << k) - 1))
    }

    /// Slots in the pages allocated so far.
    pub(crate) fn capacity(&self) -> usize {
        (0..self.count)
            // ORDERING: Relaxed: a statistic.
            .take_while(|&k| !self.ptrs[k].load(Ordering::Relaxed).is_null())
            .map(|k| self.base << k)
            .sum()
    }

    /// The node at paged index `j`, which must lie in an allocated page: the first page inline
    /// (the common case of a heap or global arena), the others out of line.
    #[inline(always)]
    pub(crate) fn node(&self, j: usize) -> &Node {
        if j < self.base {
            // ORDERING: Acquire pairs with the Release in `Pages::ensure`: the page's nodes are
            // initialised (free on x86 and cheap elsewhere; a slot index below `bump` implies
            // the page exists).
            let p = self.ptrs[0].load(Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: `p` points to page 0, `base` live nodes (pages are freed only when the
                // arena is dropped, which the `&self` borrow excludes), and `j < base`.
                return unsafe { &*p.add(j) };
            }
        }
        self.get(j)
    }

    #[cold]
    #[inline(never)]
    fn get(&self, j: usize) -> &Node {
        let (k, off) = self.locate(j);
        // ORDERING: Acquire pairs with the Release in `ensure`: the page's nodes are initialised.
        let p = self.ptrs[k].load(Ordering::Acquire);
        assert!(
            !p.is_null(),
            "ctxtree: slot in an unallocated page (internal invariant)"
        );
        // SAFETY: `p` points to a live page of `base << k` nodes (pages are freed only when the
        // arena is dropped, which the `&self` borrow excludes) and `off < base << k`.
        unsafe { &*p.add(off) }
    }

    /// Makes sure the page holding paged index `j` exists. False if `j` is past the last page,
    /// or if the allocator refuses the page: nothing is recorded then, so the next call that
    /// reaches this page asks again (the arena recovers once memory frees).
    pub(crate) fn ensure(&self, j: usize) -> bool {
        if self.count == 0 || j >= Self::limit(self.base, self.count) {
            return false;
        }
        let (k, _) = self.locate(j);
        // ORDERING: Acquire: see `get`.
        if !self.ptrs[k].load(Ordering::Acquire).is_null() {
            return true;
        }
        let len = self.base << k;
        let Some(p) = alloc_page(len) else {
            return false;
        };
        // ORDERING: Release publishes the initialised page to `get`'s Acquire; AcqRel/Acquire on
        // failure so the winner's page is visible to us too.
        match self.ptrs[k].compare_exchange(ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(_) => {
                // SAFETY: `p` came from `alloc_page(len)` just above and was never shared (the
                // CAS failed).
                unsafe { free_page(p, len) };
                true
            }
        }
    }

    /// Frees every page.
    ///
    /// # Safety
    /// No node of any page may be referenced again.
    pub(crate) unsafe fn free_all(&mut self) {
        for k in 0..self.count {
            // ORDERING: Relaxed: `&mut self` excludes concurrent access.
            let p = self.ptrs[k].swap(ptr::null_mut(), Ordering::Relaxed);
            if !p.is_null() {
                // SAFETY: each non-null page pointer came from `alloc_page(base << k)` (`ensure`),
                // and the caller guarantees no node of it is referenced again.
                unsafe { free_page(p, self.base << k) };
            }
        }
    }
}

/// Allocates a page of `len` free nodes. `None` if its size overflows `isize` or the allocator
/// returns null: never `handle_alloc_error`, which aborts (as `Box<[Node]>` and `Vec` would).
fn alloc_page(len: usize) -> Option<*mut Node> {
    let layout = Layout::array::<Node>(len).ok().filter(|l| l.size() != 0)?;
    // SAFETY: `layout` has a non-zero size (filtered above).
    let p = unsafe { ::alloc::alloc::alloc(layout) }.cast::<Node>();
    if p.is_null() {
        return None;
    }
    for i in 0..len {
        // SAFETY: `p` is valid for writes of `len` nodes and aligned for `Node` (its layout), and
        // slot `i < len` is still uninitialised: nothing is overwritten.
        unsafe { ptr::write(p.add(i), Node::new()) };
    }
    Some(p)
}

/// Drops and frees a page.
///
/// # Safety
/// `p` came from `alloc_page(len)` with this `len`, is not freed yet, and no node of it is
/// referenced again.
unsafe fn free_page(p: *mut Node, len: usize) {
    // Valid: `alloc_page` computed the same layout from the same `len`. Were it not, leaking the
    // page would be the memory-safe answer (no panic path in the arena's drop).
    let Ok(layout) = Layout::array::<Node>(len) else {
        return;
    };
    // SAFETY: the page holds `len` nodes initialised by `alloc_page`, none referenced again (the
    // contract): they may be dropped in place.
    unsafe { ptr::drop_in_place(ptr::slice_from_raw_parts_mut(p, len)) };
    // SAFETY: `p` was allocated by the global allocator with this same layout (`alloc_page`
    // computed it from the same `len`), and is freed once (the contract).
    unsafe { ::alloc::alloc::dealloc(p.cast(), layout) };
}

impl Header {
    /// Configures a header for an arena whose slots are all in pages.
    pub(crate) fn paged(base: usize, count: usize) -> Self {
        let pages = Pages::new().configure(base, count);
        let limit = Pages::limit(pages.base, pages.count).min(MAX_SLOTS);
        let mut h = Header::new(0, limit);
        h.pages = pages;
        h
    }

    /// Same, in a `const` context (the `std` global arena).
    #[cfg(all(feature = "std", not(ctxtree_loom)))]
    pub(crate) const fn paged_const(base: usize, count: usize) -> Self {
        let pages = Pages::new().configure(base, count);
        let full = Pages::limit(pages.base, pages.count);
        let limit = if full < MAX_SLOTS { full } else { MAX_SLOTS };
        let mut h = Header::new(0, limit);
        h.pages = pages;
        h
    }
}

#[cfg(all(test, not(ctxtree_loom)))]
mod tests {
    use super::{Header, MAX_SLOTS, Pages};
    use crate::CreateError;
    use crate::arena::RawArena;
    use crate::node::Node;

    #[test]
    fn pages_never_reach_past_the_link_limit() {
        // Doubling pages from 256: 18 fit under 2^26 - 2 slots, the 19th would start inside
        // the limit and end far past it (a 4 GiB page for a few hundred nameable slots).
        let p = Pages::new().configure(256, 20);
        assert_eq!(p.count, 18);
        assert_eq!(Pages::limit(p.base, p.count), 256 * ((1 << 18) - 1));
        assert!(Pages::limit(p.base, p.count) <= MAX_SLOTS);
        let a: &RawArena = &RawArena {
            hdr: Header::paged(1024, 17),
            slots: [],
        };
        assert_eq!(a.hdr.pages.count, 16);
        assert_eq!(a.stats().max_capacity, 1024 * ((1 << 16) - 1));
        // Configurations that fit are kept as given.
        let p = Pages::new().configure(256, 3);
        assert_eq!((p.base, p.count), (256, 3));
        // A single page is clamped by the limit instead.
        let a: &RawArena = &RawArena {
            hdr: Header::paged(usize::MAX / 2, 1),
            slots: [],
        };
        assert_eq!(a.stats().max_capacity, MAX_SLOTS);
    }

    #[test]
    fn a_page_the_allocator_cannot_give_is_arena_full_every_time_it_is_asked_for() {
        // One page of more than `isize::MAX` bytes: `Layout::array` refuses it, as the allocator
        // refuses a page when memory runs out (tests/oom.rs fails real allocations). The page is
        // out of reach of the link limit too, but `Header::paged` clamps only the slot limit.
        let huge = usize::MAX / core::mem::size_of::<Node>();
        let p = Pages::new().configure(huge, 1);
        assert!(!p.ensure(0));
        assert!(!p.ensure(0));
        assert_eq!(p.capacity(), 0);

        let a: &RawArena = &RawArena {
            hdr: Header::paged(huge, 1),
            slots: [],
        };
        let root = a.background();
        assert_eq!(root.with_cancel().err(), Some(CreateError::ArenaFull));
        assert_eq!(root.with_cancel().err(), Some(CreateError::ArenaFull));
        let stats = a.stats();
        assert_eq!((stats.capacity, stats.live, stats.high_water), (0, 0, 0));
        assert_eq!(stats.failed_allocs, 2);
    }
}
