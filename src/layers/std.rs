//! The `std` layer: a real clock, a global growing arena, blocking waits, and a timer thread.

use ::std::pin::pin;
use ::std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock};
use ::std::task::Wake;
use ::std::thread;
use core::panic::AssertUnwindSafe;
use core::task::Waker;
use core::time::Duration;

use super::timer::{self, Inbox, SideTable, TimerStats, Wheel};
use crate::arena::{Header, RawArena};
use crate::deadline::TimerHooks;
use crate::node::Node;
use crate::state::Slot;
use crate::sync::{AtomicU64, AtomicUsize, Ordering, fence};
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
    hdr: Header::paged_const(GLOBAL_BASE, GLOBAL_PAGES)
        .with_clock_and_hook(&STD_CLOCK, timer_hook)
        .with_timer_hooks(&TIMER_HOOKS)
        .with_thread_caches(),
    slots: [],
};

/// The global arena behind [`background()`] and [`todo()`]: grows by pages as needed, ticks by
/// [`StdClock`], and has a timer thread that fires deadlines somebody waits on.
///
/// Its pages (1024 nodes, then doubling) are allocated when first needed, the first one by the
/// first context created. When memory runs out, the constructor that needed the page returns
/// [`CreateError::ArenaFull`] (counted in `stats().failed_allocs`) instead of aborting, and the
/// next one asks for the page again — as for a [growable `HeapArena`](crate::HeapArena#out-of-memory).
///
/// # The timer thread
/// A deadline is handed to the timer thread when something first listens for it (a pending
/// `done()` future, an `after_func`); blocking waits park with a timeout of their own. Handing
/// it over takes no lock and allocates nothing: each slot has a 32-byte timer entry, allocated
/// with the slot's page (so a page costs 96 bytes per slot with its nodes), that the watch marks
/// and pushes on a lock-free queue; the thread files it in a timing wheel. The entry leaves when
/// its context is done or released. The wheel rounds a deadline up by at most 16.4 µs; the rest
/// of the latency is how soon the OS runs the woken thread (measured by `ci/timer.sh`).
/// [`timer_stats`] reports the thread's figures.
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
        let node = self.src_slot().map(|src| self.arena.node(src));
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
// The timer thread of the global arena (the protocol and the wheel: `layers::timer`).
// ---------------------------------------------------------------------------------------------

/// Page geometry of the timer's side table: the global arena's.
const GLOBAL_PAGES: usize = 16;

struct Timer {
    /// One entry per slot of the global arena, made when the arena first hands the slot out.
    table: SideTable<GLOBAL_PAGES>,
    /// Slots whose entry the timer thread must look at.
    inbox: Inbox,
    /// The tick the timer thread sleeps until (`u64::MAX`: until woken; 0: it is awake and will
    /// look at the inbox before it sleeps again). See "Waking" in `layers::timer`.
    sleep_until: AtomicU64,
    /// The timer thread, once spawned.
    thread: OnceLock<thread::Thread>,
    started: Once,
    /// Published by the timer thread after each pass (statistics).
    pending: AtomicUsize,
    fired: AtomicU64,
}

static TIMER: Timer = Timer {
    table: SideTable::new(GLOBAL_BASE),
    inbox: Inbox::new(),
    sleep_until: AtomicU64::new(0),
    thread: OnceLock::new(),
    started: Once::new(),
    pending: AtomicUsize::new(0),
    fired: AtomicU64::new(0),
};

static TIMER_HOOKS: TimerHooks = TimerHooks {
    grow: |slot| TIMER.table.grow(slot),
    forget: |slot| timer::forget(&TIMER.table, &TIMER.inbox, slot.index()),
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The global arena's deadline hook: record the watch in the slot's timer entry, and wake the
/// timer thread if it sleeps past the deadline. No lock and no allocation (the thread is
/// spawned by the first watch of the process).
fn timer_hook(w: DeadlineWatch) {
    TIMER.started.call_once(|| {
        // If the thread cannot be spawned, deadlines still hold lazily (every observation checks
        // the clock); only proactive wake-ups are lost.
        if let Ok(h) = thread::Builder::new()
            .name("ctxtree-timer".into())
            .spawn(timer_thread)
        {
            let _ = TIMER.thread.set(h.thread().clone());
        }
    });
    let at = w.at.ticks();
    if timer::request(&TIMER.table, &TIMER.inbox, w.slot.index(), at) {
        // ORDERING: SeqCst fence: pairs with the timer's fence between its `sleep_until` store
        // and its last look at the inbox (see "Waking" in `layers::timer`).
        fence(Ordering::SeqCst);
        // ORDERING: Relaxed: ordered by the fence above.
        if at < TIMER.sleep_until.load(Ordering::Relaxed) {
            if let Some(t) = TIMER.thread.get() {
                t.unpark();
            }
        }
    }
}

/// Figures of the global arena's timer thread from its last pass: deadlines filed (watched,
/// neither fired nor released) and fired so far. Also asks the thread to look at its inbox now,
/// so that a caller polling these figures sees releases without waiting for its housekeeping.
///
/// ```
/// use ctxtree::Child;
/// use std::time::Duration;
/// let Child { ctx, cancel } = ctxtree::background().with_timeout(Duration::from_secs(3600))?;
/// let _ = ctx.after_func(|| {})?; // watches the deadline
/// drop((ctx, cancel)); // released: the timer drops its entry
/// let _ = ctxtree::timer_stats().pending; // 0 once the timer has looked (other threads aside)
/// # Ok::<(), ctxtree::CreateError>(())
/// ```
pub fn timer_stats() -> TimerStats {
    if let Some(t) = TIMER.thread.get() {
        t.unpark();
    }
    // ORDERING: Relaxed: statistics.
    TimerStats {
        pending: TIMER.pending.load(Ordering::Relaxed),
        fired: TIMER.fired.load(Ordering::Relaxed),
    }
}

fn timer_thread() {
    let mut wheel = Wheel::new(STD_CLOCK.now().ticks());
    loop {
        let now = STD_CLOCK.now().ticks();
        let mut busy = false;
        timer::drain(&TIMER.table, &TIMER.inbox, |slot, want| {
            busy = true;
            if wheel.filed(&TIMER.table, slot) == Some(want) {
                return;
            }
            wheel.unfile(&TIMER.table, slot);
            if want != 0 && want <= now {
                fire(slot, want, now);
            } else if want != 0 {
                wheel.file(&TIMER.table, slot, want);
            }
        });
        wheel.poll(&TIMER.table, now, |slot, at| fire(slot, at, now));
        // ORDERING: Relaxed: a statistic.
        TIMER.pending.store(wheel.len(), Ordering::Relaxed);
        // While anything is filed, or watches keep coming, wake for housekeeping: released
        // entries leave, and a watch whose deadline is later than that need not wake us (a
        // churn of watched one-hour timeouts costs no wake-up each). Idle, sleep until woken.
        let mut until = wheel.next_deadline().unwrap_or(u64::MAX);
        if wheel.len() != 0 || busy {
            until = until.min(now.saturating_add(timer::HOUSEKEEPING_NS));
        }
        // ORDERING: Relaxed, then a SeqCst fence: pairs with the fence of a watcher between its
        // request and its load of `sleep_until` ("Waking" in `layers::timer`).
        TIMER.sleep_until.store(until, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if TIMER.inbox.is_empty() {
            match until {
                u64::MAX => thread::park(),
                _ => thread::park_timeout(Duration::from_nanos(
                    until.saturating_sub(STD_CLOCK.now().ticks()),
                )),
            }
        }
        // ORDERING: Relaxed: awake; a watcher that misses this store unparks a thread that
        // looks at the inbox anyway.
        TIMER.sleep_until.store(0, Ordering::Relaxed);
    }
}

/// Fires the entry of `slot` filed at `at` (unfiled already), on the timer thread.
fn fire(slot: u32, at: u64, now: u64) {
    let w = DeadlineWatch {
        at: Instant::from_ticks(at),
        slot: Slot::new(slot),
    };
    // A callback that panics has had its panic reported by the panic hook, and `expire_watch`
    // finished the expiry before resuming it: drop it here, so that this thread (started once)
    // lives on and keeps firing every other deadline.
    let _ = ::std::panic::catch_unwind(AssertUnwindSafe(|| {
        GLOBAL_REF.expire_watch(w, Instant::from_ticks(now));
    }));
    timer::fired(&TIMER.table, slot, at);
    // ORDERING: Relaxed: a statistic.
    TIMER.fired.fetch_add(1, Ordering::Relaxed);
}

static GLOBAL_REF: &RawArena = &GLOBAL;
