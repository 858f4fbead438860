//! The `alloc` layer: heap values, boxed callbacks, and arenas sized at run time or growing.

use ::alloc::boxed::Box;
use ::alloc::sync::Arc;
use core::fmt;
use core::marker::PhantomData;

use crate::arena::{Header, RawArena};
use crate::node::Node;
use crate::time::Clock;
use crate::value::{KeyInfo, KeyKind, Owned, Sealed};
use crate::{AfterFunc, Context, CreateError, DeadlineWatch};

/// A key for a value of any `Send + Sync` type, stored behind an `Arc` (`alloc`).
///
/// [`Context::value`] returns a new `Arc` on the value.
///
// A std example (the global arena): ignored in builds without `std`.
#[cfg_attr(feature = "std", doc = "```")]
#[cfg_attr(not(feature = "std"), doc = "```ignore")]
/// use std::sync::Arc;
/// use ctxtree::HeapKey;
/// static USER: HeapKey<String> = HeapKey::new("user");
/// let ctx = ctxtree::background().with_value(&USER, "gopher".to_string())?;
/// assert_eq!(ctx.value(&USER).as_deref().map(String::as_str), Some("gopher"));
/// # Ok::<(), ctxtree::CreateError>(())
/// ```
#[repr(C)]
pub struct HeapKey<T: 'static> {
    info: KeyInfo,
    _t: PhantomData<fn() -> T>,
}

impl<T: 'static> HeapKey<T> {
    /// A key whose `Display` name is `name`. Declare it in a `static`.
    pub const fn new(name: &'static str) -> Self {
        HeapKey {
            info: KeyInfo::new(name, core::any::type_name::<T>),
            _t: PhantomData,
        }
    }

    /// The key's name.
    pub const fn name(&self) -> &'static str {
        self.info.name
    }
}

impl<T> fmt::Debug for HeapKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HeapKey<{}>({:?})",
            (self.info.type_name)(),
            self.info.name
        )
    }
}

/// # Safety
/// `p` comes from `Arc::<T>::into_raw` and this reference is not used again.
unsafe fn drop_arc<T>(p: *const ()) {
    // SAFETY: per the contract.
    drop(unsafe { Arc::from_raw(p.cast::<T>()) });
}

impl<T: 'static> Sealed for HeapKey<T> {}

impl<T: Send + Sync + 'static> KeyKind for HeapKey<T> {
    type Value = T;
    type Out = Arc<T>;
    const HEAP: bool = true;

    unsafe fn store(value: T, dst: *mut u8) {
        let slot = Owned {
            ptr: Arc::into_raw(Arc::new(value)).cast(),
            drop: drop_arc::<T>,
        };
        // SAFETY: `dst` is 16 bytes, pointer-aligned (the contract); `Owned` is two pointers.
        unsafe { dst.cast::<Owned>().write(slot) };
    }

    unsafe fn load(src: *const u8) -> Arc<T> {
        // SAFETY: an `Owned` for an `Arc<T>` is stored there (the contract).
        let s = unsafe { src.cast::<Owned>().read() };
        let p = s.ptr.cast::<T>();
        // SAFETY: the node's `Arc` is alive while the node is; we take a new strong count.
        unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        }
    }
}

impl<'a> Context<'a> {
    /// [`after_func`](Context::after_func) for a closure of any size, boxed (`alloc`).
    pub fn after_func_boxed(
        &self,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<AfterFunc<'a>, CreateError> {
        let boxed: Box<dyn FnOnce() + Send> = Box::new(f);
        self.after_func(boxed)
    }
}

/// An arena on the heap: sized at run time, or growing by pages without moving its nodes
/// (`alloc`). Dereferences to [`RawArena`].
///
/// ```
/// use ctxtree::{Child, CreateError, HeapArena};
/// let fixed = HeapArena::with_capacity(2);
/// let Child { ctx: _a, cancel: _ca } = fixed.background().with_cancel()?;
/// let Child { ctx: _b, cancel: _cb } = fixed.background().with_cancel()?;
/// assert_eq!(fixed.background().with_cancel().err(), Some(CreateError::ArenaFull));
///
/// let growing = HeapArena::growable();
/// let many: Vec<_> = (0..10_000).map(|_| growing.background().with_cancel()).collect::<Result<_, _>>()?;
/// assert_eq!(growing.stats().live, 10_000);
/// # drop(many);
/// # Ok::<(), CreateError>(())
/// ```
///
/// # Out of memory
/// Making a `HeapArena` allocates nothing. Its nodes live in pages taken from the global
/// allocator when a context first needs a slot in one, and a page the allocator refuses (or
/// whose size overflows `isize`, as `with_capacity(2²⁶ − 2)` does on 32-bit targets) makes that
/// constructor return [`CreateError::ArenaFull`], counted in
/// [`ArenaStats::failed_allocs`](crate::ArenaStats::failed_allocs). Nothing panics or aborts,
/// the contexts that exist are untouched, and slots freed meanwhile are still handed out; the
/// next constructor that needs the page asks for it again, so the arena grows again once memory
/// frees. (What a context owns beyond its node — a [`HeapKey`] value, an
/// [`after_func_boxed`](Context::after_func_boxed) closure, a heap cause — is allocated by `Arc`
/// or `Box`, which abort on failure as usual.)
pub struct HeapArena(RawArena<[Node; 0]>);

/// Page 0 of a growable arena; later pages double.
const GROW_BASE: usize = 256;

impl HeapArena {
    /// The header is kept inline, not boxed, so that no constructor allocates (nor can abort).
    fn paged(hdr: Header) -> Self {
        HeapArena(RawArena { hdr, slots: [] })
    }

    /// An arena of exactly `capacity` nodes (clamped to 1 ..= 2²⁶ − 2), in one page allocated
    /// on first use: until that allocation succeeds, constructors return
    /// [`CreateError::ArenaFull`] (see [Out of memory](HeapArena#out-of-memory)).
    pub fn with_capacity(capacity: usize) -> Self {
        let n = capacity.clamp(1, crate::state::MAX_SLOTS);
        Self::paged(Header::paged(n, 1))
    }

    /// An arena that grows by pages (256 nodes, then doubling) as needed, up to 18 pages:
    /// 256 × (2¹⁸ − 1) nodes, just under the link limit (2²⁶ − 2); existing nodes never move.
    /// [`CreateError::ArenaFull`] means that limit is reached, or that the next page could not
    /// be allocated (see [Out of memory](HeapArena#out-of-memory)).
    pub fn growable() -> Self {
        Self::paged(Header::paged(GROW_BASE, 18))
    }

    /// Gives the arena a clock (see [`Arena::with_clock`](crate::Arena::with_clock)).
    pub fn with_clock<C: Clock>(mut self, clock: &'static C) -> Self {
        self.0.hdr.set_clock(clock);
        self
    }

    /// Sets the deadline hook (see [`Arena::with_deadline_hook`](crate::Arena::with_deadline_hook)).
    pub fn with_deadline_hook(mut self, hook: fn(DeadlineWatch)) -> Self {
        self.0.hdr.set_hook(hook);
        self
    }
}

impl core::ops::Deref for HeapArena {
    type Target = RawArena;
    fn deref(&self) -> &RawArena {
        &self.0
    }
}

impl Drop for HeapArena {
    fn drop(&mut self) {
        // SAFETY: every `Context` borrows the arena, so none is alive now (a leaked one leaks its
        // node's contents, never touches freed memory: the borrow checker ties it to the arena).
        unsafe { self.0.hdr.pages.free_all() };
    }
}

impl fmt::Debug for HeapArena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeapArena")
            .field("stats", &self.stats())
            .finish()
    }
}

impl HeapArena {
    /// Leaks the arena, so that its contexts are `Context<'static>`: they can move into
    /// `tokio::spawn`, [`done_owned`](Context::done_owned) futures and `static`s. The arena is
    /// never freed (its nodes are still recycled); make one per program or per long-lived
    /// subsystem, not per request. Allocates its `Box` here (`alloc` aborts if that fails).
    ///
    /// ```
    /// use ctxtree::{Child, Context, HeapArena};
    /// let arena: &'static HeapArena = HeapArena::growable().leak();
    /// let Child { ctx, cancel } = arena.background().with_cancel()?;
    /// let owned: Context<'static> = ctx;
    /// std::thread::spawn(move || drop(owned)).join().unwrap();
    /// drop(cancel);
    /// # Ok::<(), ctxtree::CreateError>(())
    /// ```
    pub fn leak(self) -> &'static HeapArena {
        Box::leak(Box::new(self))
    }
}
