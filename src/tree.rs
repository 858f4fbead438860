//! Child lists, cancellation propagation and node release: the lock-free core.
//!
//! Each canceller node (`with_cancel`, `with_deadline`) heads an intrusive singly linked list of
//! the nodes that must be cancelled with it: its cancel and deadline children, and its
//! `after_func` and `with_linked` registrations (`src/linked.rs`) (value and without-cancel nodes take no part: a value node asks
//! its nearest canceller ancestor whether it is done). Links are slot numbers (see
//! [`crate::state::Link`]). Nothing here allocates, locks, or waits for another thread: every loop
//! retries only because another thread's atomic step succeeded.
//!
//! # Invariants
//! 1. **Reference counts.** `refs(n)` = handles on `n` (contexts, cancelers, stop handles),
//!    plus children of `n` (each child holds one on its parent), plus 1 while `n` is linked in a
//!    list, plus traversals currently standing on `n`. The thread that brings it to 0 owns `n`
//!    exclusively: it tears it down, pushes it on the free list, and releases `n`'s parent —
//!    iteratively, so releasing a 100 000-deep chain uses constant stack.
//! 2. **One list.** A node is linked in at most one list, its `owner`'s, from `link` until the
//!    one successful compare-and-swap that unlinks it. The list's reference goes to the thread
//!    whose compare-and-swap unlinked it.
//! 3. **`DONE` closes the list.** `DONE` is published with a compare-and-swap on the same word
//!    that holds the first-child link, so `link` (also a compare-and-swap on that word) either
//!    happens before it — and the cancelling traversal, which reads the list after publishing,
//!    finds the child — or after it, sees `DONE`, and creates the child done with the parent's
//!    error and cause. No cancellation is lost. After `DONE`, a list only shrinks.
//! 4. **Harris-style removal.** To unlink `c`, first set `MARK` on `c.next` (freezing it: every
//!    compare-and-swap on a `next` expects an unmarked value), then swing the predecessor's link
//!    from `c` to `c`'s successor. A searcher that meets a marked node helps unlink it. The last
//!    member of a list (`c.next` a plain `NIL`) is frozen without a mark: insertion is only at
//!    the front, so nothing can give it a successor, and no compare-and-swap expects its word
//!    to name one; the swing alone removes it (see [`crate::state::NextWord::freeze`]).
//! 5. **Reference before action.** A thread acts on a node reached through a link (reads its
//!    plain fields, publishes its state, uses it as a predecessor) only while holding a
//!    reference, taken with [`RawArena::try_acquire`] (which fails on a free slot) and then
//!    re-validated by re-reading the link it came through. A held reference pins the node's
//!    incarnation: the slot cannot be recycled under it. This is what makes type-stable memory
//!    safe without generations in the links.
//! 6. **Post-order unlinking.** A traversal unlinks a node from a closed list only after that
//!    node's own list is empty. So when any canceller finds a list empty, every node below it is
//!    done, whoever else is cancelling the same subtree; and `cancel()` returns only after the
//!    whole subtree is done, even when another thread (or the interrupted code under an
//!    interrupt handler) is cancelling it at the same time — the late canceller helps instead of
//!    waiting.
//! 7. **Cause before `DONE`.** The cause slot is claimed (one compare-and-swap from null; the
//!    first cause wins) before `DONE | HAS_CAUSE` is published with Release, so an observer that
//!    sees `DONE` never misses the cause; a canceller that loses the slot publishes the winner's
//!    error and cause, so error and cause always agree.
//! 8. **Predecessor hints.** A list member's `prev` names the node believed to precede it
//!    (`NIL`: the owner's `head`); it is only a hint, re-validated before use, kept exact by
//!    unlinks and searches so that unlinking from anywhere is O(1) expected (see
//!    [`crate::list`]). It is `PENDING` from the node's initialisation until its link
//!    succeeds, and no thread but the linker ever overwrites `PENDING`; so a pinned node
//!    whose `prev` is not `PENDING` and whose `next` names `c` without a flag is `c`'s
//!    predecessor, never a node whose link is still being attempted.

use core::ptr;

use crate::Error;
use crate::arena::RawArena;
use crate::cause::{self, TAG_BORROWED, TAG_DEADLINE};
use crate::node::{Kind, Node};
use crate::state::{Claim, Head, Publish, Slot};
use crate::sync::{self, Ordering};
use crate::unwind::Panics;

/// How a node is being cancelled: the error and a tagged cause pointer (null = none).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rec {
    pub(crate) err: Error,
    pub(crate) cause: *mut u8,
}

impl Rec {
    pub(crate) const CANCELED: Rec = Rec {
        err: Error::Canceled,
        cause: ptr::null_mut(),
    };
}

/// What [`RawArena::cancel_tree_keep`] did besides cancelling.
#[must_use]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cancelled {
    /// `rec.cause` was stored in the root's cause slot (else an owned cause is the caller's to
    /// drop).
    pub(crate) cause_taken: bool,
    /// This call unlinked the root from its owner's list: the list's reference on it is now the
    /// caller's.
    pub(crate) unlinked: bool,
}

/// One step of the cancelling walk (see [`RawArena::descend`]).
enum Descend<'a> {
    /// The first child, now held and published done: walk into it.
    Into(Slot, &'a Node),
    /// The list changed, or its first child was an `AfterFunc` now fired and gone: look again.
    Again,
    /// The list is empty.
    Empty,
}

/// When a cancellation happens on Go's timeline, as far as a node that owns a deadline is
/// concerned: if its deadline is at or before that instant, Go's timer for it fired first, and
/// the node is done with its own deadline's error and cause, not with the cancellation reaching
/// it (DESIGN §4, "Go's timeline when deadlines are seen late").
///
/// A traversal derives it from its record instead of carrying it in [`Rec`]: an expiry
/// (`DeadlineExceeded`) cancels the node that owns the deadline that fired, so it is that node's
/// deadline; a plain cancel happens "now", read from the clock lazily, at most once per
/// traversal, and only when a node with a deadline is met — contexts without deadlines never
/// read the clock.
#[derive(Clone, Copy, Debug)]
enum When {
    /// A plain cancel, the clock not read yet.
    Unread,
    /// The cancellation happens at this tick: deadlines before it have fired.
    At(u64),
    /// A plain cancel in an arena without a clock: only [`RawArena::expire`] says that a
    /// deadline has passed, and it expires that deadline itself.
    NoClock,
}

impl When {
    /// Whether the deadline `dl` fired before this cancellation: strictly earlier. At the very
    /// tick, Go's timer and the cancel race and either may come first; ctxtree lets the cancel
    /// win (an observer that looked first, at that tick, would have let the deadline win: the
    /// lazy check's `now >= dl`; the first `DONE` published decides).
    #[inline]
    ///
    /// The clock is user code: if reading it panics, the panic joins `panics` (resumed when the
    /// traversal is over, as for a callback) and the cancel is taken to come first, as without
    /// a clock — the traversal still cancels and releases the whole subtree.
    fn passed(&mut self, arena: &RawArena, dl: u64, panics: &mut Panics) -> bool {
        if let When::Unread = *self {
            *self = match arena.clock() {
                Some(c) => panics
                    .call(|| c.now().ticks())
                    .map_or(When::NoClock, When::At),
                None => When::NoClock,
            };
        }
        match *self {
            When::At(t) => dl < t,
            When::Unread | When::NoClock => false,
        }
    }
}

impl RawArena {
    /// Takes a reference on `slot` unless it is free. See invariant #5.
    #[inline]
    pub(crate) fn try_acquire(&self, slot: Slot) -> bool {
        self.node(slot).try_acquire()
    }

    /// Takes one more reference on a node the caller already holds one on.
    #[inline]
    pub(crate) fn acquire(&self, slot: Slot) {
        // ORDERING: Relaxed, as `Arc::clone`: the caller's own reference already orders it.
        self.node(slot).refs.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops `n` references on `slot`; on the last, tears the node down, frees it and releases
    /// its parent, and so on up (invariant #1).
    #[inline]
    pub(crate) fn release(&self, slot: Slot, n: u32) {
        self.release_node(slot, self.node(slot), n);
    }

    /// [`release`](RawArena::release) with the node already looked up.
    #[inline]
    pub(crate) fn release_node(&self, slot: Slot, node: &Node, n: u32) {
        // ORDERING: Release: this holder's accesses happen-before the teardown (the last
        // releaser's Acquire fence in `release_last`).
        let old = node.refs.fetch_sub(n, Ordering::Release);
        debug_assert!(old >= n, "ctxtree: reference count underflow");
        if old == n {
            self.release_last(slot);
        }
    }

    /// [`release`](RawArena::release), leaving a panic of user code run by a teardown to the
    /// caller's accumulator (see [`crate::unwind`]). Out of line on 32-bit targets (flash).
    #[cfg_attr(target_pointer_width = "64", inline)]
    #[cfg_attr(not(target_pointer_width = "64"), inline(never))]
    pub(crate) fn release_in(&self, slot: Slot, n: u32, panics: &mut Panics) {
        self.release_node_in(slot, self.node(slot), n, panics);
    }

    /// [`release_node`](RawArena::release_node), leaving a panic of user code run by a teardown
    /// to the caller's accumulator.
    // Out of line on 32-bit targets: one copy instead of one per call site (flash; see
    // `RawArena::node`).
    #[cfg_attr(target_pointer_width = "64", inline)]
    #[cfg_attr(not(target_pointer_width = "64"), inline(never))]
    pub(crate) fn release_node_in(&self, slot: Slot, node: &Node, n: u32, panics: &mut Panics) {
        // ORDERING: Release, as in `release_node`.
        let old = node.refs.fetch_sub(n, Ordering::Release);
        debug_assert!(old >= n, "ctxtree: reference count underflow");
        if old == n {
            self.release_last_in(slot, panics);
        }
    }

    /// The count of `slot` just reached 0: free it, release its parent, and so on up. A panic in
    /// user code run by a teardown (a heap value's or a cause's `Drop`) is resumed once the whole
    /// cascade is done.
    #[inline(never)]
    fn release_last(&self, slot: Slot) {
        let mut panics = Panics::new();
        self.release_last_in(slot, &mut panics);
        panics.resume();
    }

    /// [`release_last`](RawArena::release_last) with the caller's accumulator. Every step runs
    /// whatever user code panics: the teardown finishes, the slot is pushed, the parent released.
    fn release_last_in(&self, mut slot: Slot, panics: &mut Panics) {
        loop {
            // ORDERING: Acquire, pairing with every earlier holder's Release decrement (they form
            // one release sequence ending in the decrement that reached 0): see
            // `sync::acquire_released`.
            sync::acquire_released(&self.node(slot).refs);
            // SAFETY: the count reached 0: we own the node exclusively (invariant #1).
            let parent = unsafe { self.node(slot).parent() };
            // SAFETY: as above.
            unsafe { self.teardown(slot, panics) };
            self.push(slot);
            if !parent.is_node() {
                return;
            }
            slot = parent;
            // ORDERING: Release, as in `release`.
            let old = self.node(slot).refs.fetch_sub(1, Ordering::Release);
            debug_assert!(old >= 1, "ctxtree: reference count underflow");
            if old != 1 {
                return;
            }
        }
    }

    /// Drops what a dead node owns and resets its words. The drops run user code (a heap
    /// value's, a cause's or an unrun closure's `Drop`): a panic there is kept in `panics` and
    /// the teardown goes on.
    ///
    /// # Safety
    /// The caller owns the node exclusively (its count just reached 0).
    unsafe fn teardown(&self, slot: Slot, panics: &mut Panics) {
        let node = self.node(slot);
        // ORDERING: Relaxed: exclusive ownership (the Acquire fence in `release_last` ordered
        // all earlier accesses); a load and a store, not a swap: nobody else can write it.
        let c = node.cause.load(Ordering::Relaxed);
        if !c.is_null() {
            // ORDERING: Relaxed, as above.
            node.cause.store(ptr::null_mut(), Ordering::Relaxed);
            // SAFETY: slot pointers come from `CancelCause::into_raw`; an owned one is ours now.
            panics.run(|| unsafe { cause::drop_owned(c) });
        }
        // SAFETY: exclusive ownership.
        let kind = unsafe { node.kind() };
        if kind.is_canceler() {
            // (A context released without ever being done: a disarmed canceler's.)
            self.forget_timer(slot, node);
        }
        match kind {
            Kind::Deadline => panics.run(|| {
                // SAFETY: a deadline node's cause is owned by it.
                unsafe { cause::drop_owned(node.payload().timer.cause) }
            }),
            Kind::HeapValue => panics.run(|| {
                // SAFETY: a heap value node holds an `Owned` written by its key's `store`.
                unsafe { crate::value::drop_owned(&node.payload().value.val) }
            }),
            // A link registration's target reference: dropped by a stop, kept by a firing
            // until now (see `linked::fire_link`).
            // ORDERING: Relaxed: exclusive ownership.
            Kind::Link if !node.head.load(Ordering::Relaxed).is_stopped() => {
                panics.run(|| {
                    node.payload.with_mut(|p| {
                        // SAFETY: the target is still held, and we own the node.
                        unsafe { ((*p).func.call)(&raw mut (*p).func.env, false) }
                    })
                });
            }
            // ORDERING: Relaxed: exclusive ownership.
            Kind::AfterFunc if !node.head.load(Ordering::Relaxed).is_done() => {
                // Neither fired nor stopped (its context was released while never done): drop
                // the closure unrun.
                panics.run(|| {
                    node.payload.with_mut(|p| {
                        // SAFETY: the closure is still in place, and we own the node.
                        unsafe { ((*p).func.call)(&raw mut (*p).func.env, false) }
                    })
                });
            }
            _ => {}
        }
        debug_assert!(
            // SAFETY: exclusive ownership: nothing else touches the waiter list.
            unsafe { node.waiters.is_empty() },
            "waiter left on a freed node"
        );
        node.head.reset();
        // SAFETY: exclusive ownership.
        unsafe { node.clear() };
    }
}

impl Node {
    /// Takes a reference on this node unless it is free. See invariant #5.
    // Out of line on 32-bit targets: one copy instead of one per call site (flash; see
    // `RawArena::node`).
    #[cfg_attr(target_pointer_width = "64", inline)]
    #[cfg_attr(not(target_pointer_width = "64"), inline(never))]
    pub(crate) fn try_acquire(&self) -> bool {
        let refs = &self.refs;
        // ORDERING: Acquire, also on the failure path below: a count read as 0 was written by
        // the Release decrement that freed the node, and that release came after the unlink that
        // took the node out of the list we reached it through. Acquiring it makes the caller's
        // re-read of that link see the unlink, so a traversal that retries on a free slot
        // ("the link has moved on") really finds it moved on; with Relaxed, nothing but the
        // hardware's eventual visibility would end the retry (loom: a livelock of `cancel_tree`
        // vs `AfterFunc::stop` in loom-tests/after_func_stop_vs_cancel.rs).
        let mut c = refs.load(Ordering::Acquire);
        loop {
            if c == 0 {
                return false;
            }
            // ORDERING: Acquire pairs with the Release that published the node's initial count
            // (its plain fields are then visible) and with earlier holders' Release decrements.
            match refs.compare_exchange_weak(c, c + 1, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => return true,
                Err(x) => c = x,
            }
        }
    }

    /// Marks this node done with `rec` unless it already is (first error and first cause win;
    /// invariant #7), and wakes its waiters (every one, whatever a waker does: its panic goes to
    /// `panics`). Returns whether `rec.cause` was stored in the slot (if it was an owned heap
    /// cause and was not, the caller must drop it). Out of line on 32-bit targets (flash: three
    /// call sites, each a compare-and-swap loop and the waiters' drain).
    #[cfg_attr(not(target_pointer_width = "64"), inline(never))]
    #[cfg_attr(target_pointer_width = "64", inline)]
    pub(crate) fn publish(&self, rec: Rec, panics: &mut Panics) -> bool {
        // ORDERING: Acquire: a done word is followed by reading its cause.
        let seen = self.head.load(Ordering::Acquire);
        if seen.is_done() {
            return false;
        }
        let (taken, err, has_cause) = if rec.cause.is_null() {
            (false, rec.err, false)
        } else {
            let (taken, won) = self.claim_cause(rec);
            (taken, cause::err_of(won), true)
        };
        if let Publish::Published { had_waiters: true } =
            self.head.publish_done(seen, err, has_cause)
        {
            crate::waiters::drain_in(self.wait_list(), panics);
        }
        taken
    }

    /// Claims the cause slot for `rec.cause` (non-null), unless a cause is there already (the
    /// first cause wins, invariant #7). Returns whether it was stored, and the slot's pointer.
    #[inline]
    fn claim_cause(&self, rec: Rec) -> (bool, *mut u8) {
        let tag = if rec.err == Error::DeadlineExceeded {
            TAG_DEADLINE
        } else {
            0
        };
        let want = cause::with_tags(rec.cause, tag);
        // ORDERING: Release publishes the cause's referent to readers of the slot; Acquire on
        // failure so that the winner's cause is visible before we publish it.
        match self.cause.compare_exchange(
            ptr::null_mut(),
            want,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => (true, want),
            Err(cur) => (false, cur),
        }
    }

    /// The record a child inherits from this done canceller, whose done word (loaded with
    /// Acquire) is `h`: the same error, and the cause, borrowed. Out of line on 32-bit targets
    /// (flash).
    #[cfg_attr(target_pointer_width = "64", inline)]
    #[cfg_attr(not(target_pointer_width = "64"), inline(never))]
    pub(crate) fn rec_of(&self, h: Head) -> Rec {
        debug_assert!(h.is_done());
        let cause = if h.has_cause() {
            // ORDERING: Acquire: the cause's referent (see `publish`).
            let p = self.cause.load(Ordering::Acquire);
            cause::with_tags(cause::strip_err(p), TAG_BORROWED)
        } else {
            ptr::null_mut()
        };
        Rec {
            err: h.err(),
            cause,
        }
    }

    /// Claims and runs an `after_func` node's closure, unless it already fired or was stopped.
    /// The caller holds a reference on it. A panic of the closure goes to `panics`. Out of line
    /// on 32-bit targets (flash).
    #[cfg_attr(not(target_pointer_width = "64"), inline(never))]
    pub(crate) fn fire(&self, panics: &mut Panics) {
        if self.head.claim_fire() == Claim::AlreadyDone {
            return;
        }
        panics.run(|| {
            self.payload.with_mut(|p| {
                // SAFETY: we won the claim, so the closure is ours to consume exactly once, and
                // our reference keeps the node alive while it runs.
                unsafe { ((*p).func.call)(&raw mut (*p).func.env, true) }
            })
        });
    }
}

impl RawArena {
    /// [`Node::publish`] on `slot` (for the unit tests).
    #[cfg(all(test, not(ctxtree_loom)))]
    pub(crate) fn publish(&self, slot: Slot, rec: Rec) -> bool {
        let mut panics = Panics::new();
        let taken = self.node(slot).publish(rec, &mut panics);
        panics.resume();
        taken
    }

    /// The record a child inherits from its done canceller `parent` (for the unit tests).
    #[cfg(all(test, not(ctxtree_loom)))]
    pub(crate) fn child_rec(&self, parent: Slot) -> Rec {
        let n = self.node(parent);
        // ORDERING: Acquire pairs with `publish`'s Release: the cause slot is set if HAS_CAUSE.
        n.rec_of(n.head.load(Ordering::Acquire))
    }

    /// [`Node::fire`] on `slot` (for the unit tests).
    #[cfg(all(test, not(ctxtree_loom)))]
    pub(crate) fn fire(&self, slot: Slot) {
        let mut panics = Panics::new();
        self.node(slot).fire(&mut panics);
        panics.resume();
    }

    /// The record of `slot`'s own deadline expiring (a `Deadline` node the caller holds).
    pub(crate) fn deadline_rec(&self, slot: Slot) -> Rec {
        // SAFETY: the caller holds a reference on a `Deadline` node.
        let c = unsafe { self.node(slot).payload().timer.cause };
        let cause = if c.is_null() {
            c
        } else {
            cause::with_tags(c, TAG_BORROWED)
        };
        Rec {
            err: Error::DeadlineExceeded,
            cause,
        }
    }

    /// Cancels `root` and its whole subtree with `rec`, then unlinks `root` from its owner's list.
    /// The caller holds a reference on `root`, a `Cancel` or `Deadline` node. Returns whether
    /// `rec.cause` was stored (see [`Node::publish`]).
    ///
    /// Iterative post-order walk over the child lists (invariant #6): stack use is constant
    /// whatever the depth; the walk holds one reference on each node of its current path, so
    /// it can climb back through `owner` links.
    ///
    /// User code run on the way (callbacks, wakers, drops) cannot cut it short: the first panic
    /// is resumed once the whole subtree is done and every reference released.
    pub(crate) fn cancel_tree(&self, root: Slot, rec: Rec) -> bool {
        let mut panics = Panics::new();
        let taken = self.cancel_tree_in(root, rec, &mut panics);
        panics.resume();
        taken
    }

    /// [`cancel_tree`](RawArena::cancel_tree), leaving the panics to the caller's accumulator.
    pub(crate) fn cancel_tree_in(&self, root: Slot, rec: Rec, panics: &mut Panics) -> bool {
        let done = self.cancel_tree_keep(root, rec, panics);
        if done.unlinked {
            self.release_in(root, 1, panics);
        }
        done.cause_taken
    }

    /// [`cancel_tree_in`](RawArena::cancel_tree_in), except that if this call unlinked `root`,
    /// the list's reference on it is handed to the caller ([`Cancelled::unlinked`]) instead of
    /// released, so that a caller about to drop its own reference releases both in one step.
    ///
    /// Go's timeline (DESIGN §4): a node that owns a deadline and is reached after that deadline
    /// passed is done with its own deadline's error and cause — its timer fired first — and its
    /// subtree inherits that (see [`When`], [`RawArena::publish_root`] and
    /// [`RawArena::fired_first`]).
    pub(crate) fn cancel_tree_keep(&self, root: Slot, rec: Rec, panics: &mut Panics) -> Cancelled {
        let mut cur = root;
        let mut cn = self.node(root);
        let (cause_taken, mut when) = self.publish_root(root, cn, rec, panics);
        loop {
            match self.descend(cn, &mut when, panics) {
                Descend::Into(c, ch) => (cur, cn) = (c, ch),
                Descend::Again => {}
                Descend::Empty => {
                    // cur's list is empty and closed: its whole subtree is done (invariant #6).
                    // SAFETY: we hold a reference on cur (the caller's, for root).
                    let owner = unsafe { self.list_owner(cn) };
                    if cur == root {
                        let unlinked =
                            owner.is_some_and(|o| self.unlink_node(self.node(o), cur, cn, panics));
                        return Cancelled {
                            cause_taken,
                            unlinked,
                        };
                    }
                    // We descended into cur from its owner, on which we still hold a reference:
                    // it has one (invariant #2). Were it ever `None`, climbing to the root
                    // instead keeps every step memory-safe and the walk finite (the root's list
                    // is walked again), at the cost of the references held on the skipped
                    // path: no panic path on the cancel path (no formatting code in firmware).
                    let owner = owner.unwrap_or(root);
                    let on = self.node(owner);
                    let mine = self.unlink_node(on, cur, cn, panics);
                    self.release_node_in(cur, cn, 1 + mine as u32, panics);
                    (cur, cn) = (owner, on);
                }
            }
        }
    }

    /// One step down of [`cancel_tree_keep`](RawArena::cancel_tree_keep) from `cn`, a done
    /// canceller the walk holds: takes its first child, fires it (an `AfterFunc`, unlinked and
    /// released at once: `Again`) or publishes it done and returns it held (`Into`); `Empty` if
    /// the list is.
    #[inline]
    fn descend<'s>(&'s self, cn: &Node, when: &mut When, panics: &mut Panics) -> Descend<'s> {
        // ORDERING: Acquire: children's publication (see `link`).
        let first = cn.head.load(Ordering::Acquire).first();
        let Some(c) = first.slot() else {
            return Descend::Empty;
        };
        let ch = self.node(c);
        if !ch.try_acquire() {
            // Free: it was unlinked meanwhile, so the head has moved on.
            return Descend::Again;
        }
        // ORDERING: Acquire, as above (and it is the done word the child inherits).
        let h = cn.head.load(Ordering::Acquire);
        if h.first() != first {
            self.release_node_in(c, ch, 1, panics);
            return Descend::Again;
        }
        // SAFETY: we hold a reference on c.
        let kind = unsafe { ch.kind() };
        if matches!(kind, Kind::AfterFunc | Kind::Link) {
            if kind == Kind::Link {
                // A linked context's registration: it cancels that context with our record
                // (or helps whoever fired it first: invariant #6 for the linked context).
                // Through `sync::call_fire_link`: no link code in a firmware that never links.
                sync::call_fire_link(ch, cn.rec_of(h), panics, crate::linked::fire_link);
            } else {
                ch.fire(panics);
            }
            let mine = self.unlink_node(cn, c, ch, panics);
            self.release_node_in(c, ch, 1 + mine as u32, panics);
            return Descend::Again;
        }
        let rec = if kind == Kind::Deadline && self.fired_first(ch, h, when, panics) {
            self.deadline_rec(c)
        } else {
            cn.rec_of(h)
        };
        // A borrowed cause is never owned: nothing to drop whatever the outcome.
        let _ = ch.publish(rec, panics);
        self.forget_timer(c, ch);
        Descend::Into(c, ch)
    }

    /// The publish step for the root of a traversal: `rec`, unless `rec` is a plain cancel that
    /// comes after the root's (own or inherited) deadline passed unobserved — then Go's timer
    /// fired first: the deadline is expired (the node that owns it, with its cause, and its whole
    /// subtree, `root` included) and `rec` loses, as any later cancel does. Returns whether
    /// `rec.cause` was stored, and the traversal's [`When`].
    #[inline]
    fn publish_root(&self, root: Slot, rn: &Node, rec: Rec, panics: &mut Panics) -> (bool, When) {
        // SAFETY: the caller holds a reference on `root`, a `Cancel` or `Deadline` node.
        let dl = unsafe { rn.deadline() };
        if rec.err == Error::DeadlineExceeded {
            // An expiry: `root` owns the deadline that fired (`expire`, `expire_from`, a
            // `with_deadline` already past), so that deadline is when it happens.
            let taken = rn.publish(rec, panics);
            self.forget_timer(root, rn);
            return (taken, When::At(dl));
        }
        let mut when = When::Unread;
        // A plain field read, not a clock read, for a context without a deadline.
        if dl != u64::MAX {
            self.expire_if_passed(root, rn, dl, &mut when, panics);
        }
        let taken = rn.publish(rec, panics);
        self.forget_timer(root, rn);
        (taken, when)
    }

    /// Tells the arena's timer (the `std` global arena's, see `TimerHooks`) that the canceller
    /// `slot`, which the caller holds or owns, is done or torn down: its timer entry, if it has
    /// one, leaves. One predictable branch in every other arena.
    #[inline]
    fn forget_timer(&self, slot: Slot, node: &Node) {
        if let Some(timer) = self.hdr.timer() {
            // SAFETY: the caller holds a reference on (or owns) `node`, a canceller node.
            if unsafe { node.deadline() } != u64::MAX {
                (timer.forget)(slot);
            }
        }
    }

    /// [`publish_root`](RawArena::publish_root)'s deadline check, out of the hot path.
    #[cold]
    #[inline(never)]
    fn expire_if_passed(
        &self,
        root: Slot,
        rn: &Node,
        dl: u64,
        when: &mut When,
        panics: &mut Panics,
    ) {
        // ORDERING: Relaxed: only saves a clock read; `publish` re-reads the word with Acquire.
        if !rn.head.load(Ordering::Relaxed).is_done() && when.passed(self, dl, panics) {
            self.expire_from_in(root, dl, panics);
        }
    }

    /// Whether Go's timer of `ch`, a held `Deadline` node reached by a traversal through a
    /// parent whose done word is `h`, fired before that cancellation reached it: then `ch` is
    /// done with its own deadline's error and cause, and its subtree inherits them.
    ///
    /// A parent done with `DeadlineExceeded` got it from a deadline on its path, at or after
    /// `ch`'s own (a `Deadline` node's deadline is never later than its parent's: a later one
    /// makes a `Cancel` node, as in Go), so `ch`'s fired first — or at the same tick, where either
    /// order is a state Go could produce and the inner deadline is taken to fire first (as
    /// [`expire_from`](RawArena::expire_from) picks the nearest owner). A parent done with
    /// `Canceled` was cancelled no later than the traversal's [`When`].
    #[inline]
    fn fired_first(&self, ch: &Node, h: Head, when: &mut When, panics: &mut Panics) -> bool {
        // ORDERING: Relaxed: only saves a clock read for a node already done; `publish`
        // re-reads the word with Acquire.
        if ch.head.load(Ordering::Relaxed).is_done() {
            return false;
        }
        // SAFETY: the caller holds a reference on `ch`, a `Deadline` node.
        let dl = unsafe { ch.deadline() };
        h.err() == Error::DeadlineExceeded || when.passed(self, dl, panics)
    }

    /// Expires the deadline `dl` seen through canceller `src` (which the caller pins): cancels,
    /// with `DeadlineExceeded` and its cause, the node that owns that deadline — `src` itself or
    /// the nearest ancestor whose own deadline it inherited.
    ///
    /// `dl` is `src`'s effective deadline, the earliest on its path, so this expires the
    /// earliest due deadline first, as Go's timers would; of equal deadlines, the nearest (the
    /// inner one fires first; [`fired_first`](RawArena::fired_first) agrees). Deadlines above it
    /// that are due too are left to their own observers and to `expire`.
    pub(crate) fn expire_from(&self, src: Slot, dl: u64) {
        let mut panics = Panics::new();
        self.expire_from_in(src, dl, &mut panics);
        panics.resume();
    }

    /// [`expire_from`](RawArena::expire_from), leaving the panics to the caller's accumulator.
    pub(crate) fn expire_from_in(&self, src: Slot, dl: u64, panics: &mut Panics) {
        let mut s = src;
        loop {
            let n = self.node(s);
            // SAFETY: s is src or an ancestor of it, pinned by the caller (invariant #1).
            let kind = unsafe { n.kind() };
            // SAFETY: as above; `deadline` is read only on a `Deadline` node.
            if kind == Kind::Deadline && unsafe { n.deadline() } == dl {
                break;
            }
            // SAFETY: as above.
            let p = unsafe { n.parent() };
            if !p.is_node() {
                // Unreachable by construction (an inherited deadline has an owner above);
                // expiring `src` itself keeps the observable outcome right regardless.
                let rec = Rec {
                    err: Error::DeadlineExceeded,
                    cause: ptr::null_mut(),
                };
                let _ = self.cancel_tree_in(src, rec, panics);
                return;
            }
            s = p;
        }
        let rec = self.deadline_rec(s);
        let _ = self.cancel_tree_in(s, rec, panics);
    }
}

#[cfg(all(test, not(ctxtree_loom)))]
mod tests;
