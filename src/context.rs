//! The [`Context`] handle, its constructors and its queries, and the [`Canceler`].

use core::fmt;
use core::mem::MaybeUninit;
use core::ptr;
use core::time::Duration;

use crate::arena::{ArenaRef, RawArena};
use crate::cause::{self, CancelCause, Cause};
use crate::node::{FuncPart, Inline, Kind, Node, Payload, TimerPart, ValuePart};
#[cfg(target_pointer_width = "64")]
use crate::state::HeadWord;
use crate::state::{Closed, Head, Slot, Src, SrcAt, Timing};
use crate::sync::Ordering;
use crate::time::Instant;
use crate::tree::Rec;
use crate::unwind::Panics;
use crate::value::{KeyInfo, KeyKind};
use crate::{AfterFunc, CreateError, Error};

/// A context: a node of a cancellation tree, with Go's `context.Context` semantics.
///
/// A `Context` is a counted handle (16 bytes) on a node of its arena: cloning it is one atomic
/// increment, and the node is recycled when its last handle, its [`Canceler`] and its children
/// are gone. Every query is lock-free and allocation-free and may be called from an interrupt
/// handler; [`is_done`](Context::is_done) is one atomic load on a context without a deadline.
///
/// ```
/// use ctxtree::{Child, Arena, Error};
/// static ARENA: Arena<16> = Arena::new();
///
/// let Child { ctx: parent, cancel } = ARENA.background().with_cancel()?;
/// let Child { ctx: child, cancel: _child_cancel } = parent.with_cancel()?;
/// assert!(!child.is_done());
/// cancel.cancel(); // cancels the whole subtree before returning
/// assert_eq!(child.err(), Some(Error::Canceled));
/// assert_eq!(child.to_string(), "context.Background.WithCancel.WithCancel");
/// # Ok::<(), ctxtree::CreateError>(())
/// ```
/// use ctxtree::Child;
pub struct Context<'a> {
    pub(crate) arena: ArenaRef<'a>,
    /// The node, or the `Slot::BACKGROUND` / `Slot::TODO` sentinel.
    pub(crate) slot: Slot,
    /// The canceller node that decides whether this context is done (itself for cancel and
    /// deadline contexts, the nearest canceller ancestor for value contexts), or `Src::NEVER`;
    /// on 64-bit targets, where its `head` word lies in `arena` (see [`Src`]), so that
    /// [`is_done`](Context::is_done) is one load.
    pub(crate) src: Src,
}

/// Cancels its context, and every context derived from it, when told to or when dropped.
///
/// Dropping the `Canceler` cancels: this is Rust's spelling of Go's `defer cancel()`, and what
/// returns the node to the arena. Keep it alive as long as the work should run, or
/// [`disarm`](Canceler::disarm) it.
///
/// # Go's `ctx, _ :=`
/// A `Canceler` comes out of a constructor inside a [`Child`], a struct, so Go's habit
/// `let (ctx, _) = parent.with_timeout(d)?` — which in ctxtree would drop the canceler, and so
/// cancel `ctx`, at once — does not compile. See [`Child`].
#[must_use = "dropping a Canceler cancels its context at once"]
pub struct Canceler<'a> {
    arena: ArenaRef<'a>,
    slot: Slot,
}

/// What [`with_cancel`](Context::with_cancel), [`with_deadline`](Context::with_deadline),
/// [`with_timeout`](Context::with_timeout) (and their `…_cause` forms) return: the new context
/// and the [`Canceler`] that cancels it, in named fields.
///
/// Go writes `ctx, cancel := context.WithTimeout(parent, d)`; ctxtree writes
///
/// ```
/// use core::time::Duration;
/// use ctxtree::{Arena, Child, Error, ManualClock};
/// static CLOCK: ManualClock = ManualClock::new(1_000);
/// static ARENA: Arena<4> = Arena::new().with_clock(&CLOCK);
///
/// let Child { ctx, cancel } = ARENA.background().with_timeout(Duration::from_millis(50))?;
/// assert_eq!(ctx.err(), None);
/// drop(cancel); // Go's `defer cancel()` happens when `cancel` goes out of scope
/// assert_eq!(ctx.err(), Some(Error::Canceled));
/// # Ok::<(), ctxtree::CreateError>(())
/// ```
/// use ctxtree::Child;
///
/// # Why a struct and not a tuple: Go's `ctx, _ :=`
/// Dropping a `Canceler` cancels its context (RAII in place of Go's `defer cancel()`). Had the
/// constructors returned a tuple, Go's habit `let (ctx, _) = parent.with_timeout(d)?` would
/// compile and hand back a context cancelled at once: `_` drops the canceler at the end of the
/// statement, and no lint sees it (`unused_must_use` looks only at whole discarded
/// expressions, clippy's `let_underscore_must_use` only at `let _ = …`). With a struct the habit
/// is a type error:
///
/// ```compile_fail,E0308
/// static ARENA: ctxtree::Arena<2> = ctxtree::Arena::new();
/// let (ctx, _) = ARENA.background().with_cancel().unwrap(); // error[E0308]: expected `Child`, found tuple
/// # drop(ctx);
/// ```
///
/// and each way to keep the context says what happens to its canceler:
///
/// ```
/// use ctxtree::{Arena, Child, Error};
/// static ARENA: Arena<4> = Arena::new();
///
/// // Go's `ctx, _ := …` (never cancelled by hand; done with its parent or deadline): disarm.
/// let Child { ctx, cancel } = ARENA.background().with_cancel()?;
/// cancel.disarm();
/// assert_eq!(ctx.err(), None);
///
/// // One binding that cancels when it goes out of scope: `Child` derefs to its `Context`.
/// let scope = ARENA.background().with_cancel()?;
/// let step = scope.with_cancel()?; // a grandchild, through `Deref`
/// assert!(!step.is_done());
/// drop(scope);
/// assert_eq!(step.err(), Some(Error::Canceled));
///
/// // Discarding the canceler is still possible, but it is spelled out.
/// let Child { ctx, cancel: _ } = ARENA.background().with_cancel()?;
/// assert_eq!(ctx.err(), Some(Error::Canceled));
/// # Ok::<(), ctxtree::CreateError>(())
/// ```
/// use ctxtree::Child;
///
/// `#[must_use]`: a `Child` discarded whole (`parent.with_cancel()?;`) warns, as it would
/// create a context and cancel it at once.
#[must_use = "dropping a Child cancels its context at once; bind it: `let Child { ctx, cancel } = …`"]
pub struct Child<'a> {
    /// The new context.
    pub ctx: Context<'a>,
    /// Cancels `ctx` (and every context derived from it) when told to or when dropped.
    pub cancel: Canceler<'a>,
}

impl<'a> Child<'a> {
    /// The context and its canceler as a tuple, for code that stores or passes them apart.
    /// Spelled out on purpose: `let Child { ctx, cancel: _ } = parent.with_cancel()?.into_parts()` still
    /// cancels at once.
    #[inline]
    pub fn into_parts(self) -> (Context<'a>, Canceler<'a>) {
        (self.ctx, self.cancel)
    }
}

impl<'a> core::ops::Deref for Child<'a> {
    type Target = Context<'a>;
    #[inline]
    fn deref(&self) -> &Context<'a> {
        &self.ctx
    }
}

impl fmt::Debug for Child<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("ctx", &self.ctx)
            .field("cancel", &self.cancel)
            .finish()
    }
}

// Handles are two words, so that they travel in registers: a 24-byte `Context` cost ~35% of
// CancelTree in store-forwarding stalls when handles were returned through memory.
#[cfg(all(target_pointer_width = "64", not(ctxtree_loom)))]
const _: () = assert!(
    core::mem::size_of::<Context<'static>>() == 16
        && core::mem::size_of::<Canceler<'static>>() == 16
);

// SAFETY: a Context is a counted reference to a node of a `Sync` arena; all it does is atomic.
unsafe impl Send for Context<'_> {}
// SAFETY: as above.
unsafe impl Sync for Context<'_> {}
// SAFETY: as for Context: cancelling is lock-free and may happen from any thread.
unsafe impl Send for Canceler<'_> {}
// SAFETY: as above.
unsafe impl Sync for Canceler<'_> {}

impl<'a> Context<'a> {
    #[inline]
    pub(crate) fn root(arena: &'a RawArena, slot: Slot) -> Self {
        Context {
            arena: ArenaRef::new(arena),
            slot,
            src: Src::NEVER,
        }
    }

    // ------------------------------------------------------------------------------------------
    // Queries
    // ------------------------------------------------------------------------------------------

    /// The done word of this context, after a lazy deadline check; `None` while it is not done.
    ///
    /// On 64-bit targets the hot path is one address computation, one load and one test (see
    /// [`Src`]'s representation): the `head` word of the canceller (or the arena's always-zero
    /// stand-in for a context that can never be done) is at `base + 4 × src`, and a word that
    /// is neither `DONE` nor `TIMED` answers "not done" at once. A done word returns without a
    /// call; a deadline, or a canceller in a paged slot (whose stand-in word is `TIMED`), takes
    /// one cold call, so that no register is saved around the load (no push/pop).
    ///
    /// On 32-bit targets (firmware) the split is not made: the inlined fast path would be copied
    /// into every check, against the flash budget (`ci/firmware.sh`).
    #[inline(always)]
    fn done_word(&self) -> Option<Head> {
        #[cfg(target_pointer_width = "64")]
        {
            // ORDERING: Acquire pairs with the Release in `HeadWord::publish_done`: what the
            // canceller did before cancelling is visible once `DONE` is (as with Go's closed
            // Done channel). (A stand-in word is never written.)
            let w = self.src_head().load(Ordering::Acquire);
            if !w.done_or_timed() {
                return None;
            }
            if w.is_done() {
                return Some(w);
            }
            self.done_word_slow()
        }
        #[cfg(not(target_pointer_width = "64"))]
        self.done_word_slow()
    }

    /// The `head` word that `src` names: the canceller's, or a stand-in of the arena's header.
    #[cfg(target_pointer_width = "64")]
    #[inline(always)]
    fn src_head(&self) -> &HeadWord {
        // SAFETY: `src` was made for this handle's arena (it is never paired with another, see
        // `Src`), where it names either one of the header's stand-in words or the `head` of an
        // inline slot below the arena's slot count (`Src::of`): in bounds of the arena, which
        // lives for 'a, and a `HeadWord` there (offsets asserted in `state::index`). `base`
        // carries the provenance of the whole arena (`ArenaRef::new` took it from the
        // `&RawArena`, header and slots). The memory is type-stable: a slot is never returned
        // to the system, so the word is valid to read whatever became of the node; and the
        // node is still *this* context's canceller, as the handle pins it (its own node, or
        // the ancestor its node's parent reference pins: tree invariant #1), so the word read
        // is the right one.
        unsafe {
            &*self
                .arena
                .base()
                .add(self.src.byte_offset())
                .cast::<HeadWord>()
        }
    }

    /// The canceller this context asks whether it is done (itself, or its nearest canceller
    /// ancestor), `None` if it can never be done.
    #[inline]
    pub(crate) fn src_slot(&self) -> Option<Slot> {
        match self.src.at() {
            SrcAt::Never => None,
            SrcAt::Node(s) => Some(s),
            #[cfg(target_pointer_width = "64")]
            SrcAt::Own => Some(self.slot),
            #[cfg(target_pointer_width = "64")]
            SrcAt::Inherited => self.inherited_src(),
        }
    }

    /// The nearest canceller at or above this context's node: the `Src` of a value context in
    /// a paged slot, which names no node (see [`Src`]). Go's `valueCtx.Done` walks up the same
    /// way.
    #[cfg(target_pointer_width = "64")]
    #[cold]
    #[inline(never)]
    fn inherited_src(&self) -> Option<Slot> {
        let arena = self.arena.get();
        let mut s = self.slot;
        while s.is_node() {
            // SAFETY: this handle pins its node and, through parent references, every ancestor
            // (tree invariant #1).
            let (kind, parent) = unsafe { arena.node(s).kind_and_parent() };
            if kind.is_canceler() {
                return Some(s);
            }
            // Only value nodes lie between a value context and its canceller: a
            // `without_cancel` node's children get `Src::NEVER`.
            debug_assert!(matches!(kind, Kind::Value | Kind::HeapValue));
            s = parent;
        }
        debug_assert!(false, "a value context's `Src` names a canceller above it");
        None
    }

    /// The `Src` naming the canceller at `slot` of `arena`.
    #[inline(always)]
    fn src_in(arena: ArenaRef<'_>, slot: Slot) -> Src {
        #[cfg(target_pointer_width = "64")]
        let inline = arena.slots.len();
        #[cfg(not(target_pointer_width = "64"))]
        let inline = {
            let _ = arena;
            0
        };
        Src::of(inline, slot)
    }

    /// [`done_word`](Context::done_word) for a node with a deadline or a paged slot (on 64-bit
    /// targets; every check on others).
    #[cfg_attr(target_pointer_width = "64", cold, inline(never))]
    fn done_word_slow(&self) -> Option<Head> {
        let src = self.src_slot()?;
        let n = self.arena.node(src);
        // ORDERING: Acquire, as in `done_word`.
        let w = n.head.load(Ordering::Acquire);
        if w.is_done() {
            return Some(w);
        }
        if !w.timed() {
            return None;
        }
        // SAFETY: this handle pins `src` (itself or an ancestor), a canceller node.
        self.check_deadline(src, unsafe { n.deadline() })
    }

    /// [`done_word`](Context::done_word)'s deadline check, out of the hot path (which then
    /// keeps no register across a call). `src` is the canceller node.
    #[cold]
    #[inline(never)]
    fn check_deadline(&self, src: Slot, dl: u64) -> Option<Head> {
        let n = self.arena.node(src);
        // If the deadline passed and nobody recorded it yet, records it now, so that every
        // observer agrees on the error from here on.
        self.expire_src_if_passed(src, n, dl, None);
        // ORDERING: Acquire, as in `done_word`.
        let w = n.head.load(Ordering::Acquire);
        w.is_done().then_some(w)
    }

    /// Whether the context is done: cancelled, or past its deadline (Go: `Done()` is closed).
    ///
    /// One atomic load, plus a clock read only for a context that has a deadline.
    #[inline]
    pub fn is_done(&self) -> bool {
        self.done_word().is_some()
    }

    /// Why the context is done, or `None` while it is not (Go: `Err()`).
    ///
    /// `err()` returning `Some` implies `is_done()` from then on, and the error never changes.
    #[inline]
    pub fn err(&self) -> Option<Error> {
        self.done_word().map(Head::err)
    }

    /// The cause given by whoever cancelled this context first (or an ancestor, for a context
    /// cancelled through its parent); the bare [`Error`] when none was given; `None` while not
    /// done (Go: `context.Cause`).
    pub fn cause(&self) -> Option<Cause<'_>> {
        let h = self.done_word()?;
        if !h.has_cause() {
            return Some(Cause::Error(h.err()));
        }
        // ORDERING: Acquire: the slot is set before HAS_CAUSE is published (tree invariant #7).
        // (A done word came from `src`: it is a node.)
        let src = self.src_slot()?;
        let p = self.arena.node(src).cause.load(Ordering::Acquire);
        debug_assert!(!p.is_null());
        // SAFETY: the slot points to a static cause, or to a heap cause owned by `src` or by one
        // of its ancestors, all pinned by this handle for as long as `self` is borrowed.
        Some(unsafe { cause::decode(p) })
    }

    /// The deadline, if the context (or an ancestor) has one (Go: `Deadline()`).
    pub fn deadline(&self) -> Option<Instant> {
        let dl = self.deadline_ticks();
        (dl != u64::MAX).then_some(Instant::from_ticks(dl))
    }

    /// The time left until the deadline by the arena's clock (Go: `time.Until(deadline)`):
    /// `None` without a deadline (or on an arena without a [`Clock`](crate::Clock) to measure
    /// by), `Some(Duration::ZERO)` once it has passed.
    ///
    /// ```
    /// use core::time::Duration;
    /// use ctxtree::{Child, Arena, ManualClock};
    /// static CLOCK: ManualClock = ManualClock::new(1_000); // 1 tick = 1 ms
    /// static ARENA: Arena<4> = Arena::new().with_clock(&CLOCK);
    /// assert_eq!(ARENA.background().remaining(), None);
    /// let Child { ctx, cancel: _cancel } = ARENA.background().with_timeout(Duration::from_millis(50))?;
    /// CLOCK.advance(20);
    /// assert_eq!(ctx.remaining(), Some(Duration::from_millis(30)));
    /// CLOCK.advance(40);
    /// assert_eq!(ctx.remaining(), Some(Duration::ZERO));
    /// # Ok::<(), ctxtree::CreateError>(())
    /// ```
    pub fn remaining(&self) -> Option<Duration> {
        let dl = self.deadline_ticks();
        let clock = self.arena.clock()?;
        (dl != u64::MAX).then(|| clock.duration_of(dl.saturating_sub(clock.now().ticks())))
    }

    /// The effective deadline in ticks, `u64::MAX` for none.
    #[inline]
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let Some(src) = self.src_slot() else {
            return u64::MAX;
        };
        // SAFETY: this handle pins `src`, a canceller node.
        unsafe { self.arena.node(src).deadline() }
    }

    /// The arena this context lives in.
    pub fn arena(&self) -> &'a RawArena {
        self.arena.get()
    }

    /// Whether this context can ever be done (false for `Background`, `TODO`, `without_cancel`
    /// and everything derived from them without a canceller). Go: `Done()` returns nil.
    pub fn can_be_done(&self) -> bool {
        self.src != Src::NEVER
    }

    /// Tells the arena's deadline hook that something is now listening for this context's
    /// deadline (so that a timer fires it on time rather than on the next observation).
    pub(crate) fn watch(&self) {
        let dl = self.deadline_ticks();
        if let (true, Some(hook), Some(src)) =
            (dl != u64::MAX, self.arena.deadline_hook(), self.src_slot())
        {
            hook(crate::DeadlineWatch {
                at: Instant::from_ticks(dl),
                slot: src,
            });
        }
    }

    // ------------------------------------------------------------------------------------------
    // Constructors
    // ------------------------------------------------------------------------------------------

    /// Allocates and initialises a child node of `self` (see [`Context::init_taken`]).
    fn new_node(
        &self,
        kind: Kind,
        payload: Payload,
        refs: u32,
        head: Head,
    ) -> Result<Slot, CreateError> {
        let slot = self.arena.alloc_slot()?;
        self.init_taken(slot, kind, payload, refs, head);
        Ok(slot)
    }

    /// Initialises a slot just taken with `alloc_slot`. `refs` counts the handles to be returned
    /// plus one if the node will be linked into `src`'s list. Takes the child's reference on
    /// `self`.
    pub(crate) fn init_taken(
        &self,
        slot: Slot,
        kind: Kind,
        payload: Payload,
        refs: u32,
        head: Head,
    ) -> &'a Node {
        let n = self.arena.get().node(slot);
        // SAFETY: a freshly allocated slot is exclusively ours until `refs` is published.
        unsafe { n.init(kind, self.slot, payload) };
        // Published by the Release store of `refs` below.
        n.head.init(head);
        #[cfg(not(ctxtree_compact))]
        n.prev.set_pending();
        n.next.set_not_linked();
        if self.slot.is_node() {
            self.arena.acquire(self.slot);
        }
        // ORDERING: Release publishes the plain fields to any thread that takes a reference
        // with `try_acquire` (a stale traversal, the expiry scan, `dump`).
        n.refs.store(refs, Ordering::Release);
        n
    }

    /// A new canceller child (`Cancel` or `Deadline`), linked under `src`, or born done if `src`
    /// already is (tree invariant #3) — or if `src`'s deadline has passed, observed or not: Go's
    /// timer fired then, so the child is born with the parent's error and cause. `now` is a clock
    /// reading the caller already has; otherwise the clock is read only if `src` has a deadline.
    #[inline(always)]
    pub(crate) fn new_canceller(
        &self,
        kind: Kind,
        own_deadline: Option<u64>,
        dl_cause: *mut u8,
        now: Option<u64>,
    ) -> Result<Slot, CreateError> {
        self.new_canceller_or_none(kind, own_deadline, dl_cause, now)
            .ok_or(CreateError::ArenaFull)
    }

    /// [`new_canceller`](Context::new_canceller) as an `Option` (`None`: the arena is full),
    /// returned in registers (flash, on 32-bit targets: a `Result` goes through memory).
    fn new_canceller_or_none(
        &self,
        kind: Kind,
        own_deadline: Option<u64>,
        dl_cause: *mut u8,
        now: Option<u64>,
    ) -> Option<Slot> {
        let src = self.src_slot().map(|s| (s, self.arena.node(s)));
        // SAFETY: this handle pins `src`, a canceller node.
        let parent_dl = src.map_or(u64::MAX, |(_, n)| unsafe { n.deadline() });
        if let (Some((s, sn)), true) = (src, parent_dl != u64::MAX) {
            self.expire_src_if_passed(s, sn, parent_dl, now);
        }
        let deadline = own_deadline.unwrap_or(parent_dl);
        let payload = Payload {
            timer: TimerPart {
                deadline,
                cause: dl_cause,
            },
        };
        let timing = if kind == Kind::Deadline {
            debug_assert!(deadline != u64::MAX, "an own deadline is never `u64::MAX`");
            Timing::Own
        } else if deadline != u64::MAX {
            Timing::Inherited
        } else {
            Timing::Untimed
        };
        let head = Head::live(timing);
        let slot = self.arena.alloc_slot_or_none()?;
        let Some((_, sn)) = src else {
            self.init_taken(slot, kind, payload, 2, head);
            return Some(slot);
        };
        let n = self.init_taken(slot, kind, payload, 3, head);
        if let Err(Closed(h)) = self.arena.link_node(sn, slot, n) {
            // Born done (tree invariant #3): no list reference after all.
            // ORDERING: Relaxed: the count stays above 0 (our two handles).
            n.refs.fetch_sub(1, Ordering::Relaxed);
            // `link` wrote a sibling link; restore "never linked".
            n.next.set_not_linked();
            // Nobody can be waiting on a node not handed out yet: no waker runs here.
            let mut panics = Panics::new();
            let _ = n.publish(sn.rec_of(h), &mut panics);
            panics.resume();
        }
        Some(slot)
    }

    /// Records the expiry of `src`'s deadline `dl` if it has passed (by `now`, or by the clock)
    /// and `src` is not done yet, so that a child created next is born done.
    #[cold]
    #[inline(never)]
    fn expire_src_if_passed(&self, src: Slot, sn: &Node, dl: u64, now: Option<u64>) {
        let Some(now) = now.or_else(|| self.arena.clock().map(|c| c.now().ticks())) else {
            return;
        };
        // ORDERING: Relaxed: only saves an expiry of a node already done; the `link` that
        // follows re-reads the word with Acquire.
        if now >= dl && !sn.head.load(Ordering::Relaxed).is_done() {
            // As a lazy check would: cancels the node that owns the deadline, and with it `src`.
            self.arena.expire_from(src, dl);
        }
    }

    #[inline]
    pub(crate) fn pair(&self, slot: Slot) -> Child<'a> {
        Child {
            ctx: Context {
                arena: self.arena,
                slot,
                src: Context::src_in(self.arena, slot),
            },
            cancel: Canceler {
                arena: self.arena,
                slot,
            },
        }
    }

    /// A child that is cancelled when `self` is, or when its [`Canceler`] says so (Go:
    /// `WithCancel`). A child of a done context is born done, with the parent's error and cause.
    ///
    /// Errors: [`CreateError::ArenaFull`].
    #[inline]
    pub fn with_cancel(&self) -> Result<Child<'a>, CreateError> {
        let slot = self.new_canceller(Kind::Cancel, None, ptr::null_mut(), None)?;
        Ok(self.pair(slot))
    }

    /// Go's `WithCancelCause`: the same as [`with_cancel`](Context::with_cancel) — every
    /// [`Canceler`] can give a cause with [`cancel_with`](Canceler::cancel_with).
    #[inline]
    pub fn with_cancel_cause(&self) -> Result<Child<'a>, CreateError> {
        self.with_cancel()
    }

    /// A child that is done by `at` at the latest (Go: `WithDeadline`).
    ///
    /// The effective deadline is the earlier of `at` and the parent's: if the parent's is
    /// strictly earlier, this is exactly [`with_cancel`](Context::with_cancel) (as in Go; it
    /// reports the parent's deadline and expires with the parent's cause). If `at` has already
    /// passed (by the arena's clock), the child is born done with `DeadlineExceeded`.
    ///
    /// Errors: [`CreateError::ArenaFull`].
    pub fn with_deadline(&self, at: Instant) -> Result<Child<'a>, CreateError> {
        self.deadline_child(at.ticks(), ptr::null_mut(), None)
    }

    /// [`with_deadline`](Context::with_deadline) whose expiry reports `cause` (Go:
    /// `WithDeadlineCause`). The returned canceler still cancels with `Canceled` and no cause.
    pub fn with_deadline_cause(
        &self,
        at: Instant,
        cause: impl Into<CancelCause>,
    ) -> Result<Child<'a>, CreateError> {
        self.deadline_child(at.ticks(), cause.into().into_raw(), None)
    }

    /// A child with a deadline `timeout` from now by the arena's clock (Go: `WithTimeout`).
    ///
    /// Errors: [`CreateError::NoClock`] if the arena has no clock, [`CreateError::ArenaFull`].
    #[inline]
    pub fn with_timeout(&self, timeout: Duration) -> Result<Child<'a>, CreateError> {
        let (at, now) = self.timeout_to_deadline(timeout)?;
        self.deadline_child(at, ptr::null_mut(), Some(now))
    }

    /// [`with_timeout`](Context::with_timeout) whose expiry reports `cause` (Go:
    /// `WithTimeoutCause`).
    pub fn with_timeout_cause(
        &self,
        timeout: Duration,
        cause: impl Into<CancelCause>,
    ) -> Result<Child<'a>, CreateError> {
        let (at, now) = self.timeout_to_deadline(timeout)?;
        self.deadline_child(at, cause.into().into_raw(), Some(now))
    }

    /// The deadline `timeout` from now, and the clock reading it was computed from (reused by
    /// `deadline_child` for its "already past" checks: one clock read in all).
    fn timeout_to_deadline(&self, timeout: Duration) -> Result<(u64, u64), CreateError> {
        let clock = self.arena.clock().ok_or(CreateError::NoClock)?;
        let ticks = clock.ticks_for(timeout);
        let now = clock.now();
        Ok((now.add_ticks(ticks).ticks(), now.ticks()))
    }

    /// `now`: the clock reading a timeout was computed from, or `None` (read here, if there is
    /// a clock). Both "already past" checks use that one reading — the parent's (the child is
    /// then born with the parent's error and cause) and the child's own.
    fn deadline_child(
        &self,
        at: u64,
        cause: *mut u8,
        now: Option<u64>,
    ) -> Result<Child<'a>, CreateError> {
        // `u64::MAX` means "no deadline" inside a node: a deadline that far out (a saturated
        // `with_timeout(Duration::MAX)`) is still a deadline, one tick earlier.
        let at = at.min(u64::MAX - 1);
        if self.deadline_ticks() < at {
            // The parent's deadline is sooner: Go returns WithCancel(parent).
            // SAFETY: `cause` came from `into_raw` just now and was never stored.
            unsafe { cause::drop_owned(cause) };
            return self.with_cancel();
        }
        let now = now.or_else(|| self.arena.clock().map(|c| c.now().ticks()));
        let slot = match self.new_canceller(Kind::Deadline, Some(at), cause, now) {
            Ok(s) => s,
            Err(e) => {
                // SAFETY: as above.
                unsafe { cause::drop_owned(cause) };
                return Err(e);
            }
        };
        let child = self.pair(slot);
        if now.is_some_and(|t| t >= at) {
            // Already past: done at once, as Go does (unless born done with its parent's error
            // and cause: then this cancel finds it done and changes nothing).
            let rec = self.arena.deadline_rec(slot);
            let _ = self.arena.cancel_tree(slot, rec);
        }
        Ok(child)
    }

    /// A child carrying `value` under `key` (Go: `WithValue`). Lookups walk up from a context,
    /// so the nearest binding of a key wins and a parent never sees its children's values.
    ///
    /// With a [`Key<T>`](crate::Key) the value is a small `Copy` value stored in the node (no
    /// allocation); with a [`HeapKey<T>`](https://docs.rs/ctxtree/latest/ctxtree/struct.HeapKey.html) (`alloc`) it can be anything.
    ///
    /// ```
    /// use ctxtree::{Arena, Key};
    /// static REQ_ID: Key<u64> = Key::new("request-id");
    /// static ARENA: Arena<4> = Arena::new();
    /// let ctx = ARENA.background().with_value(&REQ_ID, 42)?;
    /// assert_eq!(ctx.value(&REQ_ID), Some(42));
    /// assert_eq!(ARENA.background().value(&REQ_ID), None);
    /// # Ok::<(), ctxtree::CreateError>(())
    /// ```
    ///
    /// Errors: [`CreateError::ArenaFull`] (the value is dropped).
    pub fn with_value<K: KeyKind>(
        &self,
        key: &'static K,
        value: K::Value,
    ) -> Result<Context<'a>, CreateError> {
        // On `ArenaFull` the value is dropped here, before anything was stored.
        let slot = self.arena.alloc_slot()?;
        // ORDERING: Relaxed, before the Release that publishes the node (see `KeyInfo::bound`).
        // A load first: keys are shared `static`s, so a store every time would make every
        // `with_value` of a popular key write the same cache line.
        let info = KeyInfo::of(key);
        if !info.bound.load(Ordering::Relaxed) {
            info.bound.store(true, Ordering::Relaxed);
        }
        let mut val: Inline = MaybeUninit::uninit();
        // SAFETY: `Inline` is 16 bytes (`store` writes unaligned).
        unsafe { K::store(value, val.as_mut_ptr().cast()) };
        let payload = Payload {
            value: ValuePart {
                key: ptr::from_ref(key).cast(),
                val,
            },
        };
        let kind = if K::HEAP {
            Kind::HeapValue
        } else {
            Kind::Value
        };
        self.init_taken(slot, kind, payload, 1, Head::live(Timing::Untimed));
        Ok(Context {
            arena: self.arena,
            slot,
            src: self.src.inherit(),
        })
    }

    /// The value bound to `key` by this context or its nearest ancestor that binds it (Go:
    /// `Value`). Walks up the chain: no lock, no allocation, no atomic read-modify-write.
    #[inline]
    pub fn value<K: KeyKind>(&self, key: &'static K) -> Option<K::Out> {
        // ORDERING: Relaxed: see `KeyInfo::bound` — `false` means no node on our path binds it.
        if !KeyInfo::of(key).bound.load(Ordering::Relaxed) {
            return None;
        }
        let want: *const () = ptr::from_ref(key).cast();
        // Once, outside the loop: the arena's slot count is an atomic load, which the compiler
        // does not hoist.
        let arena = self.arena.get();
        let mut s = self.slot;
        while s.is_node() {
            let n = arena.node(s);
            // SAFETY: this handle pins `slot` and, through parent references, every ancestor.
            let (kind, parent) = unsafe { n.kind_and_parent() };
            if matches!(kind, Kind::Value | Kind::HeapValue) {
                // SAFETY: as above; the `value` variant is live for value kinds.
                let k = n.payload.with(|p| unsafe { (*p).value.key });
                if k == want {
                    // SAFETY: a node whose key is `key` was written by `K::store` for this very
                    // `K` (a key's address identifies its static, hence its type).
                    return Some(
                        n.payload
                            .with(|p| unsafe { K::load((&raw const (*p).value.val).cast()) }),
                    );
                }
            }
            s = parent;
        }
        None
    }

    /// A child that keeps `self`'s values but is never cancelled and has no deadline (Go:
    /// `WithoutCancel`): for work that must outlive the request that started it.
    ///
    /// Errors: [`CreateError::ArenaFull`].
    pub fn without_cancel(&self) -> Result<Context<'a>, CreateError> {
        let slot = self.arena.alloc_slot()?;
        let head = Head::live(Timing::Untimed);
        self.init_taken(slot, Kind::WithoutCancel, Payload { empty: () }, 1, head);
        Ok(Context {
            arena: self.arena,
            slot,
            src: Src::NEVER,
        })
    }

    /// Arranges for `f` to run once after this context is done (Go: `AfterFunc`). Returns a
    /// handle whose [`stop`](AfterFunc::stop) unregisters `f` and reports whether that prevented
    /// it from running: exactly one of "`f` runs" and "`stop()` returns true" happens.
    ///
    /// `f` runs **inline** on the thread (or in the interrupt) that cancels the context, inside
    /// its `cancel()` call, or in `after_func` itself if the context is already done; a deadline
    /// fires it in whoever observes or expires the deadline (the `std` timer thread, or the
    /// firmware's [`expire`](RawArena::expire) call). Keep it short; with `std`,
    /// [`after_func_spawn`](https://docs.rs/ctxtree/latest/ctxtree/struct.Context.html#method.after_func_spawn) runs it on a new thread as Go does.
    ///
    /// If `f` panics, the panic never cuts the cancellation short: whoever ran `f` (a
    /// [`cancel`](Canceler::cancel), a deadline observation, `expire`, this call) first finishes
    /// cancelling the subtree, runs the other callbacks and wakes every waiter, then resumes the
    /// first panic (see [`Canceler::cancel`]). The `std` timer thread catches it (the panic hook
    /// still reports it) and goes on firing deadlines.
    ///
    /// `f` is stored in the node when it fits 16 bytes (8-aligned): no allocation. A larger
    /// closure is boxed automatically with `alloc` (one allocation, as
    /// [`after_func_boxed`](https://docs.rs/ctxtree/latest/ctxtree/struct.Context.html#method.after_func_boxed)); without `alloc` it is a compile error.
    /// That error comes from a `const` assertion evaluated when the call is monomorphised, so
    /// `cargo build` reports it and `cargo check` does not: stable Rust cannot bound a generic's
    /// size in its signature. On a context that can never be done, `f` is dropped unrun and no
    /// node is used.
    ///
    /// ```
    /// use core::sync::atomic::{AtomicBool, Ordering};
    /// use ctxtree::{Child, Arena};
    /// static ARENA: Arena<4> = Arena::new();
    /// static RAN: AtomicBool = AtomicBool::new(false);
    /// let Child { ctx, cancel } = ARENA.background().with_cancel()?;
    /// let _reg = ctx.after_func(|| RAN.store(true, Ordering::SeqCst))?;
    /// cancel.cancel();
    /// assert!(RAN.load(Ordering::SeqCst));
    /// # Ok::<(), ctxtree::CreateError>(())
    /// ```
    /// use ctxtree::Child;
    ///
    /// Errors: [`CreateError::ArenaFull`] (`f` is dropped unrun).
    pub fn after_func<F: FnOnce() + Send + 'static>(
        &self,
        f: F,
    ) -> Result<AfterFunc<'a>, CreateError> {
        #[cfg(not(feature = "alloc"))]
        const {
            assert!(
                fits_inline::<F>(),
                "ctxtree: an after_func closure must fit 16 bytes without the `alloc` feature"
            )
        };
        #[cfg(feature = "alloc")]
        if !fits_inline::<F>() {
            // Known at compile time: the branch not taken is removed.
            let boxed: ::alloc::boxed::Box<dyn FnOnce() + Send> = ::alloc::boxed::Box::new(f);
            return self.after_func(boxed);
        }
        let Some(src) = self.src_slot() else {
            drop(f);
            return Ok(AfterFunc::detached());
        };
        let mut env: Inline = MaybeUninit::uninit();
        // SAFETY: `Inline` is 16 bytes and F fits (asserted, or boxed, above); the write is
        // unaligned (`Inline` is only pointer-aligned on 32-bit targets).
        unsafe { ptr::write_unaligned(env.as_mut_ptr().cast::<F>(), f) };
        let payload = Payload {
            func: FuncPart {
                call: call_inline::<F>,
                env,
            },
        };
        let slot = match self.new_node(Kind::AfterFunc, payload, 2, Head::live(Timing::Untimed)) {
            Ok(s) => s,
            Err(e) => {
                // No node, but a context that is already done needs none: run `f` now, as Go
                // does, and hand back a handle whose `stop()` reports it already ran.
                let run = self.is_done();
                // SAFETY: `env` holds the F written above, not yet moved out.
                unsafe { call_inline::<F>(&mut env, run) };
                return if run {
                    Ok(AfterFunc::finished())
                } else {
                    Err(e)
                };
            }
        };
        // The handle exists before any user code runs (`f` itself, a clock, the deadline hook),
        // so that a panic there drops it and releases the node.
        let handle = AfterFunc::new(self.arena.get(), slot);
        self.arm_after_func(src, slot);
        Ok(handle)
    }

    /// Links the new `after_func` node `slot` into `src`'s list, or runs its callback at once
    /// if `src` is already done (Go: "calls f immediately"); then tells the deadline hook that
    /// something listens. A panic of the callback unwinds from here (the caller's handle
    /// releases the node).
    fn arm_after_func(&self, src: Slot, slot: Slot) {
        let n = self.arena.node(slot);
        if self.arena.link_node(self.arena.node(src), slot, n).is_err() {
            // ORDERING: Relaxed: the count stays above 0 (the caller's handle).
            n.refs.fetch_sub(1, Ordering::Relaxed);
            // Restore "never linked".
            n.next.set_not_linked();
            let mut panics = Panics::new();
            n.fire(&mut panics);
            panics.resume();
        } else if !self.is_done() {
            // (`is_done` above expired a passed deadline, which fired `f`.)
            self.watch();
        }
    }
}

/// Whether a closure of type `F` is stored in the node's 16-byte `Inline` buffer: at most 16
/// bytes and 8-byte alignment, on every target (it is moved out before it is called).
const fn fits_inline<F>() -> bool {
    core::mem::size_of::<F>() <= crate::node::INLINE_SIZE
        && core::mem::align_of::<F>() <= crate::node::INLINE_ALIGN
}

// The automatic boxing of `after_func` stores the box inline: it must fit.
#[cfg(feature = "alloc")]
const _: () = assert!(fits_inline::<::alloc::boxed::Box<dyn FnOnce() + Send>>());

/// Runs (`run`) or drops the `F` stored in `env`.
///
/// # Safety
/// `env` holds a valid `F` written by `after_func`, and is not used again.
unsafe fn call_inline<F: FnOnce()>(env: *mut Inline, run: bool) {
    // SAFETY: per the contract, an F is there and this is its only read (unaligned: `Inline` is
    // only pointer-aligned on 32-bit targets; `f` is then an aligned local).
    let f = unsafe { ptr::read_unaligned(env.cast::<F>()) };
    if run {
        f();
    }
}

impl Clone for Context<'_> {
    #[inline]
    fn clone(&self) -> Self {
        if self.slot.is_node() {
            self.arena.acquire(self.slot);
        }
        Context {
            arena: self.arena,
            slot: self.slot,
            src: self.src,
        }
    }
}

impl Drop for Context<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.slot.is_node() {
            self.arena.release(self.slot, 1);
        }
    }
}

impl<'a> Canceler<'a> {
    /// Cancels the context with [`Error::Canceled`] and no cause. Idempotent: only the first
    /// cancellation (by anyone) sets the error. When it returns, the context and every context
    /// derived from it are done, and the context is out of its parent's child list.
    ///
    /// # Panics
    /// Runs the `after_func` callbacks of the subtree and wakes its waiters inline. If any of
    /// them panics (or a waker, or the `Drop` of a value or cause freed on the way), `cancel`
    /// still cancels the whole subtree, runs every other callback, wakes every other waiter and
    /// releases every node it frees, and only then resumes the **first** panic; later ones are
    /// dropped (as .NET's `CancellationTokenSource.Cancel` runs every callback). Dropping the
    /// canceler behaves the same. Without `std` a panic cannot be caught: see the crate docs,
    /// "Panics in user code".
    pub fn cancel(&self) {
        if !self.finished() {
            let _ = self.arena.cancel_tree(self.slot, Rec::CANCELED);
        }
    }

    /// Whether cancelling would do nothing: done, no child left in its list (so every
    /// descendant is done: tree invariant #6), and out of its parent's list. The common case
    /// when a canceler is dropped after its parent was cancelled.
    #[inline]
    fn finished(&self) -> bool {
        let n = self.arena.node(self.slot);
        // ORDERING: Acquire: pairs with the Release publishing `DONE` and with the unlinks
        // (Release) that emptied the list, so the subtree's being done is visible to our caller.
        let h = n.head.load(Ordering::Acquire);
        // ORDERING: Acquire: pairs with the Release store of `UNLINKED`.
        h.is_done_and_empty() && n.next.load(Ordering::Acquire).is_unlinked()
    }

    /// Cancels with [`Error::Canceled`] and `cause` (Go: `CancelCauseFunc(cause)`). If the context
    /// is already done the cause is dropped: the first cause wins.
    pub fn cancel_with(&self, cause: impl Into<CancelCause>) {
        let raw = cause.into().into_raw();
        let mut panics = Panics::new();
        let rec = Rec {
            err: Error::Canceled,
            cause: raw,
        };
        if !self.arena.cancel_tree_in(self.slot, rec, &mut panics) {
            // SAFETY: `raw` came from `into_raw` and was not stored.
            panics.run(|| unsafe { cause::drop_owned(raw) });
        }
        panics.resume();
    }

    /// Gives up the canceler without cancelling (tokio-util's `DropGuard::disarm`): the context
    /// stays alive until it is cancelled through its parent or its deadline passes, and is
    /// released once its handles are gone.
    ///
    /// A context whose parent can be done stays in the parent's child list (one node) until the
    /// parent is done or its own deadline passes, even after its handles are gone — what Go
    /// does with a child whose `cancel` is never called. A child of `Background`, `TODO` or a
    /// `without_cancel` context is released with its last handle.
    ///
    /// This is the spelling of Go's `ctx, _ := context.WithTimeout(parent, d)` (Go's own
    /// spelling, `let (ctx, _) = …`, does not compile: see [`Child`]).
    ///
    /// ```
    /// use ctxtree::{Child, Arena, Error};
    /// static ARENA: Arena<4> = Arena::new();
    /// let Child { ctx: parent, cancel: cancel_parent } = ARENA.background().with_cancel()?;
    ///
    /// let Child { ctx, cancel } = parent.with_cancel()?;
    /// cancel.disarm(); // keeps it alive
    /// assert_eq!(ctx.err(), None);
    /// cancel_parent.cancel(); // still cancelled through its parent
    /// assert_eq!(ctx.err(), Some(Error::Canceled));
    /// # Ok::<(), ctxtree::CreateError>(())
    /// ```
    pub fn disarm(self) {
        let this = core::mem::ManuallyDrop::new(self);
        // Our reference only: the list's (if linked) stays until the node is cancelled and
        // unlinked, by its parent or its deadline.
        this.arena.release(this.slot, 1);
    }

    /// A new handle on the context this canceler cancels.
    pub fn context(&self) -> Context<'a> {
        self.arena.acquire(self.slot);
        Context {
            arena: self.arena,
            slot: self.slot,
            src: Context::src_in(self.arena, self.slot),
        }
    }
}

impl<'a> Canceler<'a> {
    /// The canceler's arena and slot, which keep its reference (for `CancelSlot`).
    pub(crate) fn into_raw(self) -> (ArenaRef<'a>, Slot) {
        let this = core::mem::ManuallyDrop::new(self);
        (this.arena, this.slot)
    }

    /// The canceler that [`into_raw`](Canceler::into_raw) gave the parts of.
    ///
    /// # Safety
    /// `arena` and `slot` came from one `into_raw`, and are used once.
    pub(crate) unsafe fn from_raw(arena: ArenaRef<'a>, slot: Slot) -> Self {
        Canceler { arena, slot }
    }
}

impl Drop for Canceler<'_> {
    fn drop(&mut self) {
        // Cancel, then drop our reference — together with the list's, if the cancel unlinked
        // the node: one atomic step instead of two.
        let mut panics = Panics::new();
        let unlinked = !self.finished()
            && self
                .arena
                .cancel_tree_keep(self.slot, Rec::CANCELED, &mut panics)
                .unlinked;
        self.arena
            .release_in(self.slot, 1 + unlinked as u32, &mut panics);
        panics.resume();
    }
}

impl fmt::Debug for Canceler<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Canceler")
            .field("context", &format_args!("{}", self.context()))
            .finish()
    }
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("name", &format_args!("{self}"))
            .field("err", &self.err())
            .field("deadline", &self.deadline())
            .finish()
    }
}

impl RawArena {
    /// The root of every tree: never done, no deadline, no values. Costs no node.
    ///
    /// `Display` prints `context.Background`.
    #[inline]
    pub fn background(&self) -> Context<'_> {
        Context::root(self, Slot::BACKGROUND)
    }

    /// Like [`background`](RawArena::background), for code that has not decided which context
    /// to use yet. `Display` prints `context.TODO`.
    #[inline]
    pub fn todo(&self) -> Context<'_> {
        Context::root(self, Slot::TODO)
    }
}

/// Go's `String()`: the chain of constructors from the root, e.g.
/// `context.Background.WithCancel.WithValue(request-id, u64)`. A chain deeper than 64 prints its
/// root, the number of elided links, and its last 32 links (the walk is iterative: no recursion).
impl fmt::Display for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::dump::write_chain(self.arena.get(), self.slot, f)
    }
}
