//! Driving deadlines: the expiry scan a firmware timer calls, and the watch hook.
//!
//! Deadlines are enforced two ways. *Lazily*: every observation of a context that has a
//! deadline (`is_done`, `err`, `cause`, `done().poll`) compares it with the clock and, if it has
//! passed, records the expiry (cancelling the node that owns the deadline, with its cause) before
//! answering — so every observer agrees on the outcome. *Proactively*: [`RawArena::expire`]
//! cancels whatever is due and returns the next deadline, for a timer interrupt (firmware) or a
//! timer thread (`std`) to call, so that `after_func` callbacks and waiting tasks run on time.
//!
//! # Go's timeline, however late a deadline is seen
//! Both ways may see a deadline long after it passed, in any order, from any thread. What
//! observers see is still a state Go could produce with its timers firing exactly at their
//! deadlines (the first `DONE` published on a node wins, tree invariant #7, so each rule below
//! only has to make every publisher pick a Go-possible record):
//! - **Earliest deadline first.** A node's effective deadline is the earliest on its path, and
//!   a lazy check expires the node that owns it. When an expiry's traversal reaches a `Deadline`
//!   descendant (whose deadline can only be earlier or equal), that descendant's timer fired
//!   first: it gets its own error and cause, and its subtree inherits them. Equal deadlines:
//!   the inner one fires first (Go could fire either).
//! - **A child of an overdue parent** is born done with the parent's error and cause: creating
//!   it checks the parent's deadline against the clock first (only if the parent has one).
//! - **A cancel after a deadline passed** finds the deadline fired: the cancel's "now" is read
//!   from the clock (at most once per cancel, only when it meets a node with a deadline); a
//!   node whose deadline is strictly earlier is expired with its own cause instead. At the very
//!   tick, the cancel wins; without a clock, only `expire` says a deadline passed.
//!
//! See `tree::When`, `RawArena::publish_root`, `RawArena::fired_first` and
//! `Context::new_canceller`.

use crate::arena::RawArena;
use crate::node::Kind;
use crate::state::Slot;
use crate::sync::Ordering;
use crate::time::Instant;
use crate::unwind::Panics;

/// A deadline someone started listening for, passed to the arena's deadline hook (see
/// [`Arena::with_deadline_hook`](crate::Arena::with_deadline_hook)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeadlineWatch {
    pub(crate) at: Instant,
    pub(crate) slot: Slot,
}

/// Per-slot hooks of a timer that keeps storage of its own beside the arena's slots (the `std`
/// global arena's timer, `layers::timer`), so that watching a deadline needs neither a lock
/// nor an allocation, and a released context leaves the timer at once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimerHooks {
    /// Called before slot `index` is first handed out from the arena's never-used tail (so at
    /// most once per slot, and never on the free-stack path): makes the timer's storage for it
    /// exist. False refuses the slot: the constructor gets `ArenaFull`, as for a page the
    /// allocator refuses.
    pub(crate) grow: fn(u32) -> bool,
    /// Called when a `Cancel` or `Deadline` node with a deadline is done (by the thread that
    /// published it done, holding a reference) and again when it is torn down (by the thread
    /// that owns it exclusively, before its slot returns to the free stack).
    pub(crate) forget: fn(Slot),
}

impl DeadlineWatch {
    /// When the deadline falls due.
    pub fn at(&self) -> Instant {
        self.at
    }
}

impl RawArena {
    /// Cancels, with `DeadlineExceeded` (and their deadline causes), the contexts whose deadline
    /// is at or before `now`, and returns the earliest deadline still pending.
    ///
    /// Lock-free, allocation-free and callable from an interrupt handler; it scans the slots
    /// used so far (O(high-water mark), one load per slot without a deadline), which is what
    /// firmware arenas of a few hundred nodes want. Callbacks registered with `after_func` on the
    /// expired contexts run inside this call; if one panics, the scan still expires everything
    /// due, then resumes the first panic (see [`Canceler::cancel`](crate::Canceler::cancel)).
    ///
    /// ```
    /// use ctxtree::{Child, Arena, Error, Instant};
    /// static ARENA: Arena<8> = Arena::new(); // no clock: deadlines fire only through expire
    /// let Child { ctx, cancel: _c } = ARENA.background().with_deadline(Instant::from_ticks(100))?;
    /// assert_eq!(ARENA.expire(Instant::from_ticks(99)), Some(Instant::from_ticks(100)));
    /// assert!(!ctx.is_done());
    /// assert_eq!(ARENA.expire(Instant::from_ticks(100)), None);
    /// assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    /// # Ok::<(), ctxtree::CreateError>(())
    /// ```
    pub fn expire(&self, now: Instant) -> Option<Instant> {
        let mut panics = Panics::new();
        let mut next = u64::MAX;
        for s in (0..self.used()).map(Slot::new) {
            let n = self.node(s);
            // ORDERING: Acquire: a done node whose list is empty is skipped, and its subtree is
            // then done for this thread too: the unlink that emptied the list (Release, after
            // the children were published done) happens-before what the caller reads next.
            let h = n.head.load(Ordering::Acquire);
            // Skip nodes without a deadline, and done ones whose cancel has finished. A done
            // node whose list is not empty is being cancelled right now (by a thread this
            // interrupt may have preempted): if it is due, we help finish its subtree (tree
            // invariant #6), so that everything due is done when `expire` returns (loom:
            // loom-tests/concurrent_cancel_causes.rs, `expiry_vs_cancel_with_cause_never_mix`).
            if !h.has_own_deadline() || h.is_done_and_empty() {
                continue;
            }
            if !self.try_acquire(s) {
                continue;
            }
            if let Some((dl, done)) = self.own_deadline(s) {
                if dl <= now.ticks() {
                    // Expires it, or, if it is already done, helps its cancel finish.
                    let rec = self.deadline_rec(s);
                    let _ = self.cancel_tree_in(s, rec, &mut panics);
                } else if !done {
                    next = next.min(dl);
                }
            }
            self.release_in(s, 1, &mut panics);
        }
        panics.resume();
        (next != u64::MAX).then_some(Instant::from_ticks(next))
    }

    /// The own deadline of a `Deadline` node the caller holds, and whether it is done.
    fn own_deadline(&self, s: Slot) -> Option<(u64, bool)> {
        let n = self.node(s);
        // SAFETY: the caller holds a reference.
        if unsafe { n.kind() } != Kind::Deadline {
            return None;
        }
        // ORDERING: Acquire: see `Context::done_word`.
        let done = n.head.load(Ordering::Acquire).is_done();
        // SAFETY: a held `Deadline` node.
        Some((unsafe { n.deadline() }, done))
    }

    /// Expires the context behind `watch` if its deadline is at or before `now` (O(1); for a
    /// timer that keeps its own queue of watches, as the `std` timer thread does). A stale
    /// watch — its context gone, or its slot reused — is ignored, or, if the slot now holds a
    /// context that is itself due, expires that one, which is just as right.
    ///
    /// Returns true if the context was (or already is) done.
    pub fn expire_watch(&self, watch: DeadlineWatch, now: Instant) -> bool {
        let s = watch.slot;
        if s.index() >= self.used() || !self.try_acquire(s) {
            return false;
        }
        let n = self.node(s);
        // SAFETY: we hold a reference.
        let kind = unsafe { n.kind() };
        let mut done = false;
        if kind.is_canceler() {
            // ORDERING: Acquire: see `Context::done_word`.
            done = n.head.load(Ordering::Acquire).is_done();
            // SAFETY: a held canceller node.
            let dl = unsafe { n.deadline() };
            if dl <= now.ticks() {
                // Expires it, or, if it is already done, helps a cancel still in flight finish
                // the subtree (as in `expire`). `expire_from` resumes a callback's panic only
                // once it is done; ours is resumed after we release `s`.
                let mut panics = Panics::new();
                panics.run(|| self.expire_from(s, dl));
                self.release_in(s, 1, &mut panics);
                panics.resume();
                return true;
            }
        }
        self.release(s, 1);
        done
    }
}
