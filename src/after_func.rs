//! The handle returned by [`Context::after_func`](crate::Context::after_func).

use core::fmt;

use crate::arena::RawArena;
use crate::state::{Claim, Slot};
use crate::sync::{AtomicU8, Ordering};
use crate::unwind::Panics;

/// A registered `after_func` callback. [`stop`](AfterFunc::stop) unregisters it.
///
/// Dropping the handle does **not** stop the callback (as in Go, where ignoring `stop` leaves
/// the callback registered); it only gives up the ability to stop it.
pub struct AfterFunc<'a> {
    /// `None` for a registration that needs no node: on a context that can never be done, or a
    /// callback that already ran because its context was done.
    node: Option<(&'a RawArena, Slot)>,
    /// For the `None` case: whether `stop` was called (or the callback ran).
    stopped: AtomicU8,
}

impl<'a> AfterFunc<'a> {
    pub(crate) fn new(arena: &'a RawArena, slot: Slot) -> Self {
        AfterFunc {
            node: Some((arena, slot)),
            stopped: AtomicU8::new(0),
        }
    }

    pub(crate) fn detached() -> Self {
        AfterFunc {
            node: None,
            stopped: AtomicU8::new(0),
        }
    }

    /// A handle for a callback that already ran without a node (its context was done).
    pub(crate) fn finished() -> Self {
        AfterFunc {
            node: None,
            stopped: AtomicU8::new(1),
        }
    }

    /// Unregisters the callback. Returns true if this call prevented it from running; false if
    /// it has already been started (it may still be running) or already stopped. Go: `stop()`.
    ///
    /// The closure is dropped unrun here; if its drop panics, the callback is still unregistered
    /// (and its node released) before the panic is resumed.
    ///
    /// ```
    /// use ctxtree::{Child, Arena};
    /// static ARENA: Arena<4> = Arena::new();
    /// let Child { ctx, cancel } = ARENA.background().with_cancel()?;
    /// let reg = ctx.after_func(|| unreachable!("stopped before the cancel"))?;
    /// assert!(reg.stop());
    /// assert!(!reg.stop()); // a second stop reports nothing prevented
    /// cancel.cancel();
    /// # Ok::<(), ctxtree::CreateError>(())
    /// ```
    pub fn stop(&self) -> bool {
        let Some((arena, slot)) = self.node else {
            // ORDERING: Relaxed: nothing else is published through this flag.
            return self.stopped.swap(1, Ordering::Relaxed) == 0;
        };
        let mut panics = Panics::new();
        let stopped = arena.stop_in(slot, &mut panics);
        panics.resume();
        stopped
    }
}

impl RawArena {
    /// Stops the registration `slot` (an `AfterFunc` or `Link` node the caller pins): claims
    /// it, drops its closure unrun and unlinks it from its owner's list (Go: stop unlinks).
    /// Returns false if it already fired or was stopped. A panic of the closure's drop goes to
    /// `panics`, after which the registration is still unregistered.
    pub(crate) fn stop_in(&self, slot: Slot, panics: &mut Panics) -> bool {
        let n = self.node(slot);
        if n.head.claim_stop() == Claim::AlreadyDone {
            return false;
        }
        // We won: drop the closure unrun, then leave the owner's list.
        panics.run(|| {
            n.payload.with_mut(|p| {
                // SAFETY: our claim makes the closure ours to consume once; the caller pins the
                // node.
                unsafe { ((*p).func.call)(&raw mut (*p).func.env, false) }
            })
        });
        // SAFETY: the caller pins the node.
        let owner = unsafe { self.list_owner(n) };
        if owner.is_some_and(|o| self.unlink_in(o, slot, panics)) {
            self.release_in(slot, 1, panics);
        }
        true
    }
}

impl Drop for AfterFunc<'_> {
    fn drop(&mut self) {
        if let Some((arena, slot)) = self.node {
            arena.release(slot, 1);
        }
    }
}

impl fmt::Debug for AfterFunc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfterFunc")
            .field("registered", &self.node.is_some())
            .finish()
    }
}

// SAFETY: the handle only performs atomic operations on its node.
unsafe impl Send for AfterFunc<'_> {}
// SAFETY: as above.
unsafe impl Sync for AfterFunc<'_> {}
