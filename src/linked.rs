//! Linked contexts: [`Context::with_linked`], a context with two parents (.NET's
//! `CreateLinkedTokenSource`, Go's `AfterFunc` merge recipe).
//!
//! # Three nodes
//! The context `C` linked to `ctx` and `other` is made of three nodes, none of them larger
//! than any other node and none allocated from the heap:
//! * `C` itself: a canceller child of `ctx` in `ctx`'s arena, so that `ctx` cancels it as any
//!   child, and its values and `Display` are `ctx`'s. A `Deadline` node whose deadline is
//!   `other`'s (and whose expiry cause is a copy of `other`'s deadline cause) when that is
//!   strictly earlier than `ctx`'s; otherwise a `Cancel` node, which inherits `ctx`'s deadline.
//! * `R`, a `Kind::Link` registration in `other`'s child list (in `other`'s arena). It fires
//!   once, when `other` is done, like an `after_func` node — but its firing is given `other`'s
//!   record ([`fire_link`]), and cancels `C` with that error and a copy of that cause. Its
//!   "closure" is one reference on `C`: stopping drops it; a fired `R` keeps it until `R` is
//!   freed, so that a second canceller of `other` that meets the fired `R` can help cancel
//!   `C` rather than return before `C` is done.
//! * `S`, an `AfterFunc` registration in `C`'s own list, whose callback stops `R` (claims it,
//!   drops its reference on `C`, unlinks it from `other`'s list) and then drops `S`'s
//!   reference on `R`.
//!
//! # No leak in any order
//! References: `R` holds `C` (until it is stopped or freed); `S` holds `R` (until `S` fires)
//! and, as `C`'s child, `C`; nothing holds `S` but `C`'s list. No cycle outlives `C` being
//! done: once `C` is done — cancelled by `ctx`, by its canceler, by its deadline, or by `R` —
//! `S` fires, which stops `R` (or finds it fired) and releases it; `R` leaves `other`'s list by
//! that stop or by the traversal that fired it, is freed, and its reference on `C` goes with
//! it; then `C` is freed with its last handle. `R` and `S` claim `R` with the compare-and-swaps
//! of `after_func` and `stop` (`HeadWord::claim_fire`, `claim_stop`): of "`R` fires" and "`S`
//! stops `R`", exactly one happens (a second canceller of `other` that finds `R` fired helps
//! cancel `C`, which is idempotent).
//!
//! Creation links `R` before `S`, so `S` never stops an `R` whose link is still being
//! attempted; a list found closed (`other` or `C` done meanwhile) fires the node at once, as
//! `after_func` does. Every node is reserved before anything is linked: an arena that is full
//! returns [`CreateError::ArenaFull`] with nothing created.
//!
//! A disarmed `C` (or a leaked handle) keeps `R` in `other`'s list until `ctx`, `other` or its
//! deadline is done — Go's merge recipe whose `stop` is never called. Creating `C` does not
//! tell the arena's deadline hook (no timer entry per link): like any context, `C` is expired
//! when its deadline is observed, expired by `expire`, or watched by a waiter.
//!
//! # Causes
//! A cause read through `other` is borrowed from `other`'s tree, which `C` does not keep
//! alive, so `C` stores its own copy (`cause::clone_owned`): a static cause is the same
//! `'static` pointer (no allocation); a heap cause (`alloc`) is a new box on the same `Arc`.
//!
//! # Across arenas
//! `R` points into `C`'s arena and `S` into `other`'s, and either may outlive every handle
//! (a disarmed or leaked `C`). So both arenas must outlive both: one arena
//! ([`with_linked`](Context::with_linked)), or two that live forever
//! ([`with_linked_static`](Context::with_linked_static): `static` arenas, the global arena,
//! leaked `HeapArena`s). `other`'s deadline is then translated into `C`'s clock: copied when
//! both arenas share a clock object, else measured as time left on one clock and added to the
//! other's `now`.
//!
//! # Stack
//! `R` cancels `C` inside the traversal that cancels `other`: one nested traversal per link on
//! the way, so the stack grows with the number of links in a chain of linked contexts (each
//! built by a `with_linked` call), never with the depth of a tree.

use core::mem::MaybeUninit;
use core::ptr;

use crate::arena::{ArenaRef, RawArena};
use crate::cause;
use crate::node::{FuncPart, Inline, Kind, Node, Payload};
use crate::state::{Claim, Closed, Head, Slot, Timing};
use crate::sync::Ordering;
use crate::tree::Rec;
use crate::unwind::Panics;
use crate::{Child, Context, CreateError, Error};

/// What a link registration stores in its node's inline closure buffer: the node it acts on,
/// and that node's arena (a thin pointer).
#[derive(Clone, Copy)]
#[repr(C)]
struct Target<'x> {
    arena: ArenaRef<'x>,
    slot: Slot,
}

const _: () = assert!(
    core::mem::size_of::<Target<'static>>() <= core::mem::size_of::<Inline>()
        && core::mem::align_of::<Target<'static>>() <= core::mem::align_of::<Inline>(),
    "ctxtree: a link target must fit a node's inline buffer"
);

impl Target<'_> {
    fn into_inline(self) -> Inline {
        let mut env: Inline = MaybeUninit::uninit();
        // SAFETY: `Inline` is 16 bytes, 8-aligned, and a `Target` fits (asserted above).
        unsafe { ptr::write(env.as_mut_ptr().cast::<Target<'_>>(), self) };
        env
    }

    /// The target written by [`into_inline`](Target::into_inline), with any lifetime.
    ///
    /// # Safety
    /// `env` holds a `Target` written by `into_inline`, and its arena outlives every use of
    /// the result (the contract of [`Context::link`]).
    unsafe fn read<'x>(env: *const Inline) -> Target<'x> {
        // SAFETY: per the contract; `Target` is `Copy`.
        unsafe { ptr::read(env.cast::<Target<'x>>()) }
    }
}

/// The slots of `R` (in `other`'s arena) and `S` (in `C`'s), taken before anything is
/// created so that a full arena fails the whole link; returned to their free stacks when
/// dropped, unless [`into_slots`](Reserved::into_slots) hands them over.
struct Reserved<'x> {
    other: &'x RawArena,
    r: Slot,
    own: &'x RawArena,
    s: Slot,
}

impl<'x> Reserved<'x> {
    fn take(other: &'x RawArena, own: &'x RawArena) -> Result<Self, CreateError> {
        let r = other.alloc_slot()?;
        match own.alloc_slot() {
            Ok(s) => Ok(Reserved { other, r, own, s }),
            Err(e) => {
                // Never initialised: straight back to the free stack.
                other.push(r);
                Err(e)
            }
        }
    }

    fn into_slots(self) -> (Slot, Slot) {
        let this = core::mem::ManuallyDrop::new(self);
        (this.r, this.s)
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        // Never initialised (their `refs` still 0): straight back to the free stacks.
        self.other.push(self.r);
        self.own.push(self.s);
    }
}

impl<'a> Context<'a> {
    /// A child of `self` that is also cancelled when `other` is: done when `self`, `other` or
    /// its own [`Canceler`](crate::Canceler) is done, whichever comes first, with that one's error and cause.
    /// .NET: `CancellationTokenSource.CreateLinkedTokenSource(a, b)`; Go: the merge recipe
    /// below.
    ///
    /// * **Values and `Display`** are `self`'s: it is `self`'s child (it prints as
    ///   `….WithCancel`, or `….WithDeadline(…)` when `other`'s deadline is the earlier).
    /// * **Deadline**: the earlier of both. When `other`'s is strictly earlier, the context
    ///   owns that deadline and reports [`Error::DeadlineExceeded`] with `other`'s deadline
    ///   cause at that instant, lazily too (`is_done()` after it passed, before any timer).
    /// * **Born done**: if `self` is done, with `self`'s error and cause (as any child); else
    ///   if `other` is, with `other`'s.
    /// * **Costs** three nodes (the context, a registration on `other`, and one on the context
    ///   that removes the first when the context is done), no allocation and no lock; just
    ///   the context when `other` can never be done. A cause read from `other` is copied (a
    ///   heap cause: one `Box` on the same `Arc`).
    /// * **Release** in any order: when the context is done — by `self`, `other`, its deadline
    ///   or its canceler — its registration leaves `other`'s list at once, and every node is
    ///   freed with the last handle. A [`disarm`](crate::Canceler::disarm)ed linked context stays
    ///   registered on `other` until `self`, `other` or its deadline is done.
    ///
    /// Both contexts must be in one arena: across arenas this returns
    /// [`CreateError::ForeignArena`]; link two `'static` contexts of different arenas with
    /// [`with_linked_static`](Context::with_linked_static).
    ///
    /// ```
    /// use ctxtree::{Child, Arena, Error, Key, StaticCause};
    /// static ARENA: Arena<8> = Arena::new();
    /// static USER: Key<u32> = Key::new("user");
    /// static SHUTDOWN: StaticCause = StaticCause::new("server shutting down");
    ///
    /// let Child { ctx: server, cancel: stop_server } = ARENA.background().with_cancel()?;
    /// let request = ARENA.background().with_value(&USER, 7)?;
    /// let Child { ctx: request, cancel: _end_request } = request.with_cancel()?;
    ///
    /// // Done when the request ends *or* the server stops.
    /// let Child { ctx: work, cancel: _cancel_work } = request.with_linked(&server)?;
    /// assert_eq!(work.value(&USER), Some(7)); // the first context's values
    /// assert_eq!(work.to_string(), "context.Background.WithValue(user, u32).WithCancel.WithCancel");
    ///
    /// stop_server.cancel_with(&SHUTDOWN);
    /// assert_eq!(work.err(), Some(Error::Canceled));
    /// assert!(work.cause().unwrap().is_static(&SHUTDOWN)); // the server's cause
    /// assert_eq!(request.err(), None); // the request itself goes on
    /// # Ok::<(), ctxtree::CreateError>(())
    /// ```
    ///
    /// # Beside .NET and Go
    /// * .NET's `CreateLinkedTokenSource(a, b)` registers a callback on each token and keeps
    ///   the registrations until the linked source is disposed; an undisposed source leaks
    ///   them. Here the context is a real child of `self` (no registration on it: its list is
    ///   the link) and the one registration on `other` is removed as soon as the context is
    ///   done, whoever cancels it, or when the canceler is dropped — Rust's `Dispose`.
    /// * Go has no linked context; its documentation gives a recipe:
    ///   `ctx, cancel := context.WithCancelCause(a); stop := context.AfterFunc(b, func() {
    ///   cancel(context.Cause(b)) })`, with `defer stop()` and `defer cancel(nil)`. It reports
    ///   `Canceled` where `b` reported `DeadlineExceeded` (the cause keeps `b`'s error), does
    ///   not take `b`'s deadline (`ctx.Deadline()` is `a`'s alone), and leaks the
    ///   registration on `b` if `stop` is forgotten. `with_linked` keeps `b`'s error, takes
    ///   the earlier deadline, and needs no `stop`.
    /// * The recipe transcribed to ctxtree goes wrong:
    ///   `let reg = b.after_func(move || cancel.cancel())?` moves the [`Canceler`](crate::Canceler) into the
    ///   closure, so [`reg.stop()`](crate::AfterFunc::stop) — which drops the closure unrun —
    ///   *cancels* the context (dropping a canceler cancels), where Go's `stop()` leaves it
    ///   alone; and `after_func` closures must be `'static`. `with_linked`'s registration
    ///   holds a reference on the context, never its canceler: removing it cancels nothing.
    ///
    /// Errors: [`CreateError::ArenaFull`] (nothing is created), [`CreateError::ForeignArena`].
    pub fn with_linked(&self, other: &Context<'a>) -> Result<Child<'a>, CreateError> {
        if !ptr::addr_eq(self.arena(), other.arena()) {
            return Err(CreateError::ForeignArena);
        }
        // SAFETY: one arena holds every node of the link, and outlives all of them.
        unsafe { self.link(other) }
    }

    /// Creates the linked context (see the [module docs](self)).
    ///
    /// # Safety
    /// Each of the two arenas outlives every node of the other (the registrations point
    /// across, and may outlive every handle): one arena, or two that live forever.
    unsafe fn link(&self, other: &Context<'_>) -> Result<Child<'a>, CreateError> {
        let Some(osrc) = other.src_slot() else {
            // `other` can never be done (nor has a deadline): nothing to listen to.
            return self.with_cancel();
        };
        let other_dl = self.translate_deadline(other)?;
        let own = (other_dl < self.deadline_ticks()).then_some(other_dl);
        // Observed once, as any reader would: a deadline that passed is recorded now.
        let other_done = other.is_done();
        // A guard: the slots go back to their free stacks however this call ends (an `Err`,
        // a born-done context, a panicking clock), unless `arm` takes them.
        let reserved = if other_done {
            None
        } else {
            Some(Reserved::take(other.arena.get(), self.arena.get())?)
        };
        let made = match own {
            Some(dl) => {
                let owned = deadline_cause(other.arena(), osrc, other.deadline_ticks());
                // SAFETY: `owned` is the slot of a node `other`'s handle pins.
                let cause = unsafe { cause::clone_owned(owned) };
                self.new_canceller(Kind::Deadline, Some(dl), cause, None)
                    // SAFETY: our own copy, never stored.
                    .inspect_err(|_| unsafe { cause::drop_owned(cause) })
            }
            None => self.new_canceller(Kind::Cancel, None, ptr::null_mut(), None),
        };
        let c = made?;
        let Child {
            ctx: linked,
            cancel,
        } = self.pair(c);
        if other_done {
            // ORDERING: Acquire: `other`'s done word, then its cause (see `publish_done`).
            let h = other.arena.node(osrc).head.load(Ordering::Acquire);
            let rec = other.arena.node(osrc).rec_of(h);
            let mut panics = Panics::new();
            cancel_with_copy(self.arena.get(), c, rec, &mut panics);
            panics.resume();
        }
        if let Some(dl) = own {
            // Already past by this arena's clock (a translated deadline): done at once, as
            // `with_deadline` is (nothing if `other`'s record came first).
            if self.arena.now().is_some_and(|t| t.ticks() >= dl) {
                let rec = self.arena.deadline_rec(c);
                let _ = self.arena.cancel_tree(c, rec);
            }
        }
        if let Some(reserved) = reserved {
            // ORDERING: Acquire: as any observer of a done word.
            if !self.arena.node(c).head.load(Ordering::Acquire).is_done() {
                self.arm(other, osrc, &linked, reserved.into_slots());
            }
            // (Else born done: nothing to listen to; the guard returns the slots.)
        }
        Ok(Child {
            ctx: linked,
            cancel,
        })
    }

    /// `other`'s deadline in ticks of `self`'s arena's clock (`u64::MAX`: none).
    fn translate_deadline(&self, other: &Context<'_>) -> Result<u64, CreateError> {
        let dl = other.deadline_ticks();
        if dl == u64::MAX || ptr::addr_eq(self.arena(), other.arena()) {
            return Ok(dl);
        }
        let (Some(mine), Some(theirs)) = (self.arena.hdr.clock.get(), other.arena.hdr.clock.get())
        else {
            return Err(CreateError::NoClock);
        };
        if mine.same_as(&theirs) {
            return Ok(dl);
        }
        let left = theirs.duration_of(dl.saturating_sub(theirs.now().ticks()));
        let at = mine.now().add_ticks(mine.ticks_for(left)).ticks();
        // `u64::MAX` means "none" in a node (see `deadline_child`).
        Ok(at.min(u64::MAX - 1))
    }

    /// Registers the live linked context `linked` on `other` (`R`, in slot `r`) and on itself
    /// (`S`, in slot `s`). Links `R` first: `S` can then stop `R` only once `R`'s link has been
    /// attempted. A closed list (the owner done meanwhile) fires the node at once.
    fn arm(&self, other: &Context<'_>, osrc: Slot, linked: &Context<'a>, (r, s): (Slot, Slot)) {
        let c = linked.slot;
        // R's "closure": a reference on C.
        self.arena.acquire(c);
        let payload = Payload {
            func: FuncPart {
                call: release_target,
                env: Target {
                    arena: self.arena,
                    slot: c,
                }
                .into_inline(),
            },
        };
        // Before R is published: every traversal that meets R fires it through this.
        crate::sync::install_fire_link(fire_link);
        // Two references: `other`'s list's, and S's.
        let rn = other.init_taken(r, Kind::Link, payload, 2, Head::live(Timing::Untimed));
        let on = other.arena.node(osrc);
        let mut panics = Panics::new();
        if let Err(Closed(h)) = other.arena.link_node(on, r, rn) {
            // `other` is done now: fire with its record; S is not needed.
            rn.next.set_not_linked();
            fire_link(rn, on.rec_of(h), &mut panics);
            // The list's reference (unused) and S's (never made).
            other.arena.release_in(r, 2, &mut panics);
            self.arena.push(s);
            panics.resume();
            return;
        }
        let payload = Payload {
            func: FuncPart {
                call: stop_target,
                env: Target {
                    arena: other.arena,
                    slot: r,
                }
                .into_inline(),
            },
        };
        // One reference: C's list's.
        let sn = linked.init_taken(s, Kind::AfterFunc, payload, 1, Head::live(Timing::Untimed));
        if self.arena.link_node(self.arena.node(c), s, sn).is_err() {
            // C is done already (by `self`, by R, by its deadline): stop R now.
            sn.next.set_not_linked();
            sn.fire(&mut panics);
            self.arena.release_in(s, 1, &mut panics);
        }
        panics.resume();
    }
}

impl Context<'static> {
    /// [`with_linked`](Context::with_linked) for two contexts of any arenas that live forever
    /// (`static` arenas, the global arena of `ctxtree::background()`, leaked
    /// `HeapArena`s): the registrations point from each arena into the
    /// other, so neither may be dropped first.
    ///
    /// Across arenas, `other`'s deadline is translated into this arena's clock: copied if both
    /// arenas have the same clock object, else measured as the time left by `other`'s clock
    /// and added to this clock's `now` (so, exact between two real-time clocks up to their
    /// tick size).
    ///
    // A std example (the global arena): ignored in builds without `std`.
    #[cfg_attr(feature = "std", doc = "```")]
    #[cfg_attr(not(feature = "std"), doc = "```ignore")]
    /// use ctxtree::{Child, Arena, Error, StdClock};
    /// static FIRMWARE: Arena<8> = Arena::new().with_clock(&StdClock);
    ///
    /// let Child { ctx: device, cancel: unplug } = FIRMWARE.background().with_cancel()?;
    /// let Child { ctx: request, cancel: _done } = ctxtree::background().with_cancel()?; // the global arena
    /// assert_eq!(request.with_linked(&device).err(), Some(ctxtree::CreateError::ForeignArena));
    ///
    /// let Child { ctx: transfer, cancel: _cancel } = request.with_linked_static(&device)?;
    /// drop(unplug); // cancels the device
    /// assert_eq!(transfer.err(), Some(Error::Canceled));
    /// # Ok::<(), ctxtree::CreateError>(())
    /// ```
    ///
    /// Errors: [`CreateError::ArenaFull`] (nothing is created); [`CreateError::NoClock`] if
    /// `other` has a deadline and either arena of two has no clock to translate it by.
    pub fn with_linked_static(
        &self,
        other: &Context<'static>,
    ) -> Result<Child<'static>, CreateError> {
        // SAFETY: both arenas are borrowed for `'static`: neither is ever dropped.
        unsafe { self.link(other) }
    }
}

/// The expiry cause (a slot pointer, null for none) of the deadline `dl` seen through the
/// canceller `src` of `arena`: the own cause of the nearest `Deadline` node on the path whose
/// deadline `dl` is. The caller pins `src`.
fn deadline_cause(arena: &RawArena, src: Slot, dl: u64) -> *mut u8 {
    let mut s = src;
    while s.is_node() {
        let n = arena.node(s);
        // SAFETY: `s` is `src` or an ancestor of it: pinned by the caller (tree invariant #1);
        // `deadline` and `timer` are read only on a `Deadline` node.
        unsafe {
            if n.kind() == Kind::Deadline && n.deadline() == dl {
                return n.payload().timer.cause;
            }
            s = n.parent();
        }
    }
    ptr::null_mut()
}

/// Fires the link registration `rn` (a `Kind::Link` node the caller holds) with its owner's
/// record `rec`: cancels its linked context with `rec`'s error and a copy of its cause. Called
/// by the traversal that cancels the owner (`RawArena::descend`), or at creation if the owner
/// is done.
///
/// Nothing if the registration was stopped (its context was done first). If another thread
/// fired it, this one *helps*: it cancels the linked context too (idempotent; the first record
/// wins), so that no canceller of the owner returns before the linked context is done, as
/// none returns before the owner's own subtree is (tree invariant #6) — a late canceller
/// helps instead of waiting. That is why a fired registration keeps its reference on the
/// linked context until it is freed (`RawArena::teardown`), where a stopped one drops it at
/// once (`RawArena::stop_in`).
pub(crate) fn fire_link(rn: &Node, rec: Rec, panics: &mut Panics) {
    if rn.head.claim_fire() == Claim::AlreadyDone
        // ORDERING: Acquire: pairs with the AcqRel claim that set `DONE` (and `STOPPED`, for a
        // stop): a stop's release of the target happened before, so we must not touch it.
        && rn.head.load(Ordering::Acquire).is_stopped()
    {
        return;
    }
    let t = rn.payload.with(|p| {
        // SAFETY: a fired registration's target is pinned until the registration is freed, and
        // the caller's reference pins the registration; the target's arena outlives it
        // (`Context::link`'s contract). The target is plain data, only read.
        unsafe { Target::read(&raw const (*p).func.env) }
    });
    cancel_with_copy(t.arena.get(), t.slot, rec, panics);
}

/// Cancels the linked context `c` of `arena` (pinned by the caller) with `rec`, read from
/// `other`'s done node (pinned by the caller too): its error, and a copy of its cause that `c`
/// owns.
fn cancel_with_copy(arena: &RawArena, c: Slot, rec: Rec, panics: &mut Panics) {
    if rec.err == Error::DeadlineExceeded {
        expire_if_due(arena, c, panics);
    }
    // SAFETY: `rec.cause` is null or a slot pointer of a node the caller pins.
    let cause = unsafe { cause::clone_owned(rec.cause) };
    let copy = Rec {
        err: rec.err,
        cause,
    };
    if !arena.cancel_tree_in(c, copy, panics) {
        // SAFETY: our own copy, not stored.
        panics.run(|| unsafe { cause::drop_owned(cause) });
    }
}

/// `other`'s deadline fired: if `c`'s own (effective) deadline is due as well, it fired
/// before or at the same tick (Go's timeline, DESIGN §4), so it is expired first and `c`
/// reports it. (A plain cancel gets this check from `cancel_tree` itself.)
fn expire_if_due(arena: &RawArena, c: Slot, panics: &mut Panics) {
    let n = arena.node(c);
    // SAFETY: the caller pins `c`, a canceller node.
    let dl = unsafe { n.deadline() };
    // ORDERING: Relaxed: only saves a clock read for a node already done; the cancel that
    // follows re-reads the word with Acquire.
    if dl == u64::MAX || n.head.load(Ordering::Relaxed).is_done() {
        return;
    }
    let Some(clock) = arena.hdr.clock.get() else {
        return;
    };
    if panics
        .call(|| clock.now().ticks())
        .is_some_and(|now| now >= dl)
    {
        arena.expire_from_in(c, dl, panics);
    }
}

/// `R`'s closure, dropped: its reference on `C`. By `S` stopping `R`, or by the teardown of
/// an `R` that fired (or, never in practice, neither fired nor was stopped).
///
/// # Safety
/// `env` holds the `Target` of a link registration, consumed here once.
unsafe fn release_target(env: *mut Inline, run: bool) {
    debug_assert!(
        !run,
        "a link registration fires through `fire_link`, never its closure"
    );
    // SAFETY: per the contract; the target's arena outlives the registration.
    let t = unsafe { Target::read(env) };
    t.arena.release(t.slot, 1);
}

/// `S`'s callback: stops `R` (unless it fired) and drops `S`'s reference on it. The same
/// whether `S` fires (its context is done) or is dropped unrun.
///
/// # Safety
/// `env` holds the `Target` written by `arm`, consumed here once.
unsafe fn stop_target(env: *mut Inline, _run: bool) {
    // SAFETY: per the contract; `other`'s arena outlives `S` (`Context::link`'s contract).
    let t = unsafe { Target::read(env) };
    let mut panics = Panics::new();
    // S's reference pins R.
    let _ = t.arena.stop_in(t.slot, &mut panics);
    t.arena.release_in(t.slot, 1, &mut panics);
    panics.resume();
}
