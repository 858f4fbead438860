//! The `std` layer: a real clock, a global growing arena, blocking waits, and a timer thread.

use ::std::collections::BTreeSet;
use ::std::pin::pin;
use ::std::sync::{Arc, Condvar, Mutex, MutexGuard, Once, OnceLock};
use ::std::task::Wake;
use ::std::thread;
use ::std::vec::Vec;
use core::panic::AssertUnwindSafe;
use core::task::Waker;
use core::time::Duration;

use crate::arena::{Header, RawArena};
use crate::node::Node;
use crate::state::Slot;
use crate::time::{Clock, Instant};
use crate::waiters::{self, Waiter};
use crate::{AfterFunc, Context, CreateError, DeadlineWatch, Error};

/// The operating system's monotonic clock, in nanoseconds since an epoch one day before the
/// first time it is used, so that `std` instants taken a little before the first use (a program
/// that reads the clock, then creates its first context) still convert exactly. Earlier
/// instants map to tick 0.
///
/// ```
/// use ctxtree::{Clock, StdClock};
/// let a = StdClock.now();
/// std::thread::sleep(std::time::Duration::from_millis(1));
/// assert!(StdClock.now().ticks_since(a) >= 1_000_000);
/// let soon = std::time::Instant::now() + std::time::Duration::from_secs(1);
/// assert_eq!(StdClock::to_std(StdClock::instant(soon)), soon);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct StdClock;

fn epoch() -> ::std::time::Instant {
    static EPOCH: OnceLock<::std::time::Instant> = OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = ::std::time::Instant::now();
        // A day of headroom where the platform's clock can go that far back; less otherwise.
        [86_400, 3_600, 60, 1]
            .into_iter()
            .find_map(|s| now.checked_sub(Duration::from_secs(s)))
            .unwrap_or(now)
    })
}

impl StdClock {
    /// The arena instant of a `std` instant (instants before the epoch map to tick 0).
    pub fn instant(at: ::std::time::Instant) -> Instant {
        let ns = at.saturating_duration_since(epoch()).as_nanos();
        Instant::from_ticks(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// The `std` instant of an arena instant.
    pub fn to_std(at: Instant) -> ::std::time::Instant {
        epoch() + Duration::from_nanos(at.ticks())
    }
}

impl Clock for StdClock {
    fn now(&self) -> Instant {
        Self::instant(::std::time::Instant::now())
    }

    fn ticks_per_second(&self) -> u64 {
        1_000_000_000
    }
}

static STD_CLOCK: StdClock = StdClock;

/// Page 0 of the global arena; later pages double, up to 16 pages: 1024 × (2¹⁶ − 1) nodes, just
/// under the link limit (2²⁶ − 2).
const GLOBAL_BASE: usize = 1024;

static GLOBAL: RawArena<[Node; 0]> = RawArena {
    hdr: Header::paged_const(GLOBAL_BASE, 16).with_clock_and_hook(&STD_CLOCK, timer_hook),
    slots: [],
};

/// The global arena behind [`background()`] and [`todo()`]: grows by pages as needed, ticks by
/// [`StdClock`], and has a timer thread that fires deadlines somebody waits on.
///
/// Its pages (1024 nodes, then doubling) are allocated when first needed, the first one by the
/// first context created. When memory runs out, the constructor that needed the page returns
/// [`CreateError::ArenaFull`] (counted in `stats().failed_allocs`) instead of aborting, and the
/// next one asks for the page again — as for a [growable `HeapArena`](crate::HeapArena#out-of-memory).
pub fn global_arena() -> &'static RawArena {
    GLOBAL_REF
}

/// Go's `context.Background()` on the global arena. Never done, costs nothing.
///
/// ```
/// use ctxtree::Child;
/// use std::time::Duration;
/// let Child { ctx, cancel: _cancel } = ctxtree::background().with_timeout(Duration::from_millis(20))?;
/// assert_eq!(ctx.wait(), ctxtree::Error::DeadlineExceeded);
/// # Ok::<(), ctxtree::CreateError>(())
/// ```
pub fn background() -> Context<'static> {
    GLOBAL_REF.background()
}

/// Go's `context.TODO()` on the global arena.
pub fn todo() -> Context<'static> {
    GLOBAL_REF.todo()
}

// ---------------------------------------------------------------------------------------------
// Blocking waits.
// ---------------------------------------------------------------------------------------------

/// Unparks a thread; one per thread, made on its first wait (so waits allocate nothing).
struct Unparker(thread::Thread);

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

::std::thread_local! {
    static UNPARKER: Waker = Waker::from(Arc::new(Unparker(thread::current())));
}

/// Deregisters a waiter when a wait ends, however it ends.
struct Registration<'w> {
    node: &'w Node,
    waiter: &'w Waiter,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        waiters::deregister(self.node.wait_list(), self.waiter);
    }
}

impl Context<'_> {
    /// Blocks the thread until the context is done and returns its error (Go: `<-ctx.Done()`).
    ///
    /// The thread parks — no busy waiting, no allocation — and is unparked by the cancelling
    /// thread, or wakes at the context's deadline by itself. On a context that can never be done
    /// this blocks forever, as receiving from Go's nil channel does.
    pub fn wait(&self) -> Error {
        loop {
            if let Some(e) = self.wait_until(None) {
                return e;
            }
        }
    }

    /// [`wait`](Context::wait) for at most `timeout`; `None` if the context is still not done.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Error> {
        let limit = ::std::time::Instant::now().checked_add(timeout);
        match limit {
            Some(at) => self.wait_until(Some(at)),
            None => Some(self.wait()),
        }
    }

    /// [`wait`](Context::wait) until the `std` instant `at` at the latest.
    pub fn wait_deadline(&self, at: ::std::time::Instant) -> Option<Error> {
        self.wait_until(Some(at))
    }

    fn wait_until(&self, limit: Option<::std::time::Instant>) -> Option<Error> {
        if let Some(e) = self.err() {
            return Some(e);
        }
        let waiter = pin!(Waiter::new());
        let node = self.src.slot().map(|src| self.arena.node(src));
        let _reg = node.map(|node| Registration {
            node,
            waiter: &waiter,
        });
        UNPARKER.with(|waker| {
            loop {
                if let Some(node) = node {
                    // SAFETY: the waiter is pinned on this stack frame, registered only on
                    // `node`, and deregistered by `_reg` before the frame ends.
                    if unsafe { waiters::register(node.wait_list(), &node.head, &waiter, waker) }
                        .is_ready()
                    {
                        return self.err();
                    }
                }
                let now = ::std::time::Instant::now();
                let mut sleep = limit.map(|l| l.saturating_duration_since(now));
                if let (Some(clock), Some(dl)) = (self.arena.clock(), self.deadline()) {
                    let left = clock.duration_of(dl.ticks_since(clock.now()));
                    sleep = Some(sleep.map_or(left, |s| s.min(left)));
                }
                match sleep {
                    Some(d) if d.is_zero() => {}
                    Some(d) => thread::park_timeout(d),
                    None => thread::park(),
                }
                if let Some(e) = self.err() {
                    return Some(e);
                }
                if limit.is_some_and(|l| ::std::time::Instant::now() >= l) {
                    return None;
                }
            }
        })
    }
}

impl<'a> Context<'a> {
    /// [`after_func`](Context::after_func) that runs `f` on a new thread, as Go runs AfterFunc
    /// callbacks in their own goroutine: the cancelling thread only spawns it.
    pub fn after_func_spawn(
        &self,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<AfterFunc<'a>, CreateError> {
        self.after_func_boxed(move || {
            // A failed spawn (resource exhaustion) runs `f` inline rather than losing it.
            let slot = Arc::new(Mutex::new(Some(f)));
            let theirs = slot.clone();
            let spawned = thread::Builder::new()
                .name("ctxtree-after-func".into())
                .spawn(move || {
                    let f = lock(&theirs).take();
                    if let Some(f) = f {
                        f();
                    }
                });
            let unspawned = if spawned.is_err() {
                lock(&slot).take()
            } else {
                None
            };
            if let Some(f) = unspawned {
                f();
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The timer thread of the global arena.
// ---------------------------------------------------------------------------------------------

struct Timer {
    /// Deadlines someone listens for, as (ticks, slot): ordered and deduplicated.
    queue: Mutex<BTreeSet<(u64, Slot)>>,
    cv: Condvar,
    started: Once,
}

static TIMER: Timer = Timer {
    queue: Mutex::new(BTreeSet::new()),
    cv: Condvar::new(),
    started: Once::new(),
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The global arena's deadline hook: queue the watch and make sure the timer thread runs.
fn timer_hook(w: DeadlineWatch) {
    TIMER.started.call_once(|| {
        // If the thread cannot be spawned, deadlines still hold lazily (every observation checks
        // the clock); only proactive wake-ups are lost.
        let _ = thread::Builder::new()
            .name("ctxtree-timer".into())
            .spawn(timer_thread);
    });
    let mut q = lock(&TIMER.queue);
    let first = q.first().map(|e| e.0);
    q.insert((w.at.ticks(), w.slot));
    if first.is_none_or(|f| w.at.ticks() < f) {
        TIMER.cv.notify_one();
    }
}

fn timer_thread() {
    let mut due: Vec<(u64, Slot)> = Vec::new();
    let mut q = lock(&TIMER.queue);
    loop {
        let now = STD_CLOCK.now().ticks();
        while due.len() < 256 {
            match q.first() {
                Some(&(at, _)) if at <= now => due.extend(q.pop_first()),
                _ => break,
            }
        }
        if !due.is_empty() {
            drop(q);
            for (at, slot) in due.drain(..) {
                let w = DeadlineWatch {
                    at: Instant::from_ticks(at),
                    slot,
                };
                // A callback that panics has had its panic reported by the panic hook, and
                // `expire_watch` finished the expiry before resuming it: drop it here, so that
                // this thread (started once) lives on and keeps firing every other deadline.
                let _ = ::std::panic::catch_unwind(AssertUnwindSafe(|| {
                    GLOBAL_REF.expire_watch(w, Instant::from_ticks(now));
                }));
            }
            q = lock(&TIMER.queue);
            continue;
        }
        q = match q.first() {
            Some(&(at, _)) => {
                TIMER
                    .cv
                    .wait_timeout(q, Duration::from_nanos(at - now))
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            None => TIMER.cv.wait(q).unwrap_or_else(|p| p.into_inner()),
        };
    }
}

static GLOBAL_REF: &RawArena = &GLOBAL;
