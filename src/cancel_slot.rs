//! [`CancelSlot`]: a [`Canceler`] that lives in a `static`, for interrupt handlers.

use crate::Canceler;
use crate::arena::{ArenaRef, RawArena};
use crate::cause::CancelCause;
use crate::node::Node;
use crate::state::{Link, Slot};
use crate::sync::{AtomicPtr, AtomicU32, Ordering};

/// A place in a `static` for a [`Canceler`], so that an interrupt handler (or any other code
/// that cannot be handed one) can cancel a context: bound at boot, or re-bound for every job,
/// and cancelled from anywhere with one atomic swap. No `Mutex<RefCell<Option<Canceler>>>`, no
/// critical section: every operation is lock-free and may run in an interrupt handler.
///
/// The slot *owns* the canceler it holds: [`cancel`](CancelSlot::cancel) takes it out and
/// cancels (a no-op when the slot is empty), [`bind`](CancelSlot::bind) puts one in and hands
/// back the one it replaces, [`take`](CancelSlot::take) takes it out uncancelled. Each of them
/// is a single swap of the slot's word, so exactly one caller ever gets a given canceler, and a
/// cancel racing a re-bind cancels either the old context or the new one, never a recycled
/// slot. An empty slot is all-zero bits: a `static CancelSlot` lives in `.bss`.
///
/// A slot holds cancelers of one arena (a `'static` one): the first `bind` records it, and a
/// canceler of another arena is refused (handed back in the `Err`).
///
/// ```
/// use ctxtree::{Child, Arena, CancelSlot, Error, StaticCause};
/// static ARENA: Arena<8> = Arena::new();
/// static STOP: CancelSlot = CancelSlot::new();
/// static BUTTON: StaticCause = StaticCause::with_code(1, "stop button");
///
/// // Main loop: start a job and let the interrupt handler stop it.
/// let Child { ctx: job, cancel } = ARENA.background().with_cancel()?;
/// let _previous = STOP.bind(cancel).ok().flatten(); // nothing was bound before
///
/// // The button's interrupt handler:
/// fn on_button() {
///     STOP.cancel_with(&BUTTON); // lock-free; a no-op if nothing is bound
/// }
/// on_button();
///
/// assert_eq!(job.err(), Some(Error::Canceled));
/// assert_eq!(job.cause().and_then(|c| c.code()), Some(1));
/// assert!(!STOP.is_bound()); // the canceler was used up
/// on_button(); // nothing bound: nothing happens
/// # Ok::<(), ctxtree::CreateError>(())
/// ```
pub struct CancelSlot {
    /// The arena of the cancelers this slot holds (a thin pointer), null until the first
    /// `bind`; never changed after.
    arena: AtomicPtr<RawArena<[Node; 0]>>,
    /// The held canceler's slot as a link (`slot + 1`), or `Link::NIL`: empty.
    link: AtomicU32,
}

impl CancelSlot {
    crate::state::const_unless_loom! {
        /// An empty slot (all-zero bits).
        pub fn new() -> CancelSlot {
            CancelSlot {
                arena: AtomicPtr::new(core::ptr::null_mut()),
                link: AtomicU32::new(0),
            }
        }
    }

    /// Puts `canceler` in the slot, and hands back the canceler it held, if any (drop it to
    /// cancel its context, or [`disarm`](Canceler::disarm) it). `Err` gives `canceler` back,
    /// untouched, if it belongs to another arena than the cancelers this slot held before.
    pub fn bind(
        &self,
        canceler: Canceler<'static>,
    ) -> Result<Option<Canceler<'static>>, Canceler<'static>> {
        let (arena, slot) = canceler.into_raw();
        let raw = arena.to_raw();
        // ORDERING: Relaxed: the arena pointer is published by the Release swap of `link` below
        // (and it never changes once set, so a failed claim only compares addresses).
        if let Err(cur) = self.arena.compare_exchange(
            core::ptr::null_mut(),
            raw,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            if cur != raw {
                // SAFETY: the parts came from `into_raw` just above, and are used once.
                return Err(unsafe { Canceler::from_raw(arena, slot) });
            }
        }
        // ORDERING: AcqRel: Release hands our reference on the node (and the arena pointer) to
        // whoever swaps it out; Acquire takes the previous holder's the same way.
        let old = self.link.swap(Link::to(slot).to_bits(), Ordering::AcqRel);
        // SAFETY: `old` was swapped in by a `bind` of this slot's arena (see `parts`).
        Ok(unsafe { self.parts(old) })
    }

    /// Takes the canceler out, uncancelled; `None` if the slot is empty.
    pub fn take(&self) -> Option<Canceler<'static>> {
        // ORDERING: AcqRel, as in `bind`: we take over the binder's reference.
        let old = self.link.swap(0, Ordering::AcqRel);
        // SAFETY: as in `bind`.
        unsafe { self.parts(old) }
    }

    /// Cancels the held context (Go's `cancel()`) and empties the slot; a no-op if it is empty.
    /// Lock-free: callable from an interrupt handler. See [`Canceler::cancel`].
    pub fn cancel(&self) {
        // Dropping a canceler cancels its context and releases the node in one traversal.
        drop(self.take());
    }

    /// Cancels the held context with `cause` (Go's `cancel(cause)`) and empties the slot; if
    /// the slot is empty, `cause` is dropped. See [`Canceler::cancel_with`].
    pub fn cancel_with(&self, cause: impl Into<CancelCause>) {
        if let Some(c) = self.take() {
            c.cancel_with(cause);
        }
    }

    /// Whether the slot holds a canceler (a snapshot: an interrupt may empty it at once).
    pub fn is_bound(&self) -> bool {
        // ORDERING: Relaxed: a snapshot; nothing is read on the strength of it.
        self.link.load(Ordering::Relaxed) != 0
    }

    /// The canceler whose link `word` was just swapped out of `link`, or `None` for `NIL`.
    ///
    /// # Safety
    /// A non-`NIL` `word` was swapped in by `bind`, whose reference the caller now owns, after
    /// `bind` set `arena` (the swap that read it synchronised with that `bind`).
    unsafe fn parts(&self, word: u32) -> Option<Canceler<'static>> {
        let slot: Slot = Link::from_bits(word).slot()?;
        // ORDERING: Relaxed: ordered after the `bind` that stored it by the caller's AcqRel
        // swap, which read that `bind`'s link (or a later one: the pointer never changes).
        let arena = self.arena.load(Ordering::Relaxed);
        // SAFETY: a non-null `arena` came from `ArenaRef::to_raw` in `bind`; the reference on
        // `slot` is the caller's, per the contract.
        Some(unsafe { Canceler::from_raw(ArenaRef::from_raw(arena), slot) })
    }
}

impl Default for CancelSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for CancelSlot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CancelSlot")
            .field("bound", &self.is_bound())
            .finish()
    }
}

impl Drop for CancelSlot {
    fn drop(&mut self) {
        // A slot that is not a `static` cancels what it still holds, as a dropped canceler does.
        self.cancel();
    }
}
