//! The `embassy-time` layer: [`EmbassyClock`], a [`Clock`] on embassy-time's driver, and
//! [`EmbassyDeadlines`], the async task that fires an arena's deadlines on time.
//!
//! The recipe for an embassy application is in [`EmbassyDeadlines`]'s docs (and the README).

use core::cell::RefCell;
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::task::{Poll, Waker};

use critical_section::Mutex;

use crate::arena::RawArena;
use crate::deadline::DeadlineWatch;
use crate::time::{Clock, Instant};

/// A [`Clock`] that reads embassy-time's driver: one ctxtree tick is one embassy tick, and
/// [`ticks_per_second`](Clock::ticks_per_second) is [`embassy_time::TICK_HZ`] (chosen by the
/// application's `tick-hz-*` feature of embassy-time; 1 MHz by default).
///
/// `now()` is the driver's `now()`: monotonic, non-blocking, callable from an interrupt
/// handler, as [`Clock`] requires. So an [`Instant`] of this clock and an
/// [`embassy_time::Instant`] are the same number, and convert into each other with `From`.
///
/// ```
/// use ctxtree::{Clock, EmbassyClock};
/// assert_eq!(EmbassyClock::new().ticks_per_second(), embassy_time::TICK_HZ);
/// let now: embassy_time::Instant = EmbassyClock::new().now().into();
/// assert!(now <= embassy_time::Instant::now());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmbassyClock;

impl EmbassyClock {
    /// The clock (it has no state: every `EmbassyClock` reads the same driver).
    pub const fn new() -> Self {
        EmbassyClock
    }
}

impl Clock for EmbassyClock {
    fn now(&self) -> Instant {
        embassy_time::Instant::now().into()
    }

    fn ticks_per_second(&self) -> u64 {
        embassy_time::TICK_HZ
    }
}

/// An embassy instant as a ctxtree one, tick for tick (for an arena on [`EmbassyClock`]).
impl From<embassy_time::Instant> for Instant {
    fn from(at: embassy_time::Instant) -> Self {
        Instant::from_ticks(at.as_ticks())
    }
}

/// A ctxtree instant as an embassy one, tick for tick (for an arena on [`EmbassyClock`]):
/// `Timer::at(deadline.into())`.
impl From<Instant> for embassy_time::Instant {
    fn from(at: Instant) -> Self {
        embassy_time::Instant::from_ticks(at.ticks())
    }
}

/// The deadline driver of one arena on [`EmbassyClock`]: [`run`](EmbassyDeadlines::run) is the
/// body of an embassy task that fires the arena's deadlines on time, and
/// [`watch`](EmbassyDeadlines::watch) is what the arena's deadline hook calls.
///
/// `const`-constructed, so it lives in a `static`; one per arena, one `run` task per driver.
///
/// # Recipe: an embassy application
/// One `static` arena on the embassy clock, one task that drives its deadlines, and any number
/// of tasks that await `done()`:
///
/// ```no_run
/// use core::time::Duration;
/// use ctxtree::{Arena, Child, DeadlineWatch, EmbassyClock, EmbassyDeadlines};
///
/// static CLOCK: EmbassyClock = EmbassyClock::new();
/// static DEADLINES: EmbassyDeadlines = EmbassyDeadlines::new();
/// fn on_watch(w: DeadlineWatch) {
///     DEADLINES.watch(w); // a task started listening for `w.at()`: wake the deadline task
/// }
/// static ARENA: Arena<32> = Arena::new().with_clock(&CLOCK).with_deadline_hook(on_watch);
///
/// // #[embassy_executor::task]
/// async fn deadline_task() -> ! {
///     // `loop { let next = ARENA.expire(now); Timer::at(next).await }`, woken early when an
///     // earlier deadline starts being awaited.
///     DEADLINES.run(&ARENA).await
/// }
///
/// // #[embassy_executor::task]
/// async fn request() {
///     let Ok(Child { ctx, cancel: _cancel }) = ARENA.background().with_timeout(Duration::from_millis(50)) else {
///         return; // ArenaFull: refuse the request
///     };
///     ctx.done().await; // woken by `deadline_task` 50 ms from now, or by an earlier cancel
///     assert_eq!(ctx.err(), Some(ctxtree::Error::DeadlineExceeded));
/// }
///
/// // #[embassy_executor::main]
/// // async fn main(spawner: embassy_executor::Spawner) {
/// //     spawner.spawn(deadline_task()).unwrap();
/// //     spawner.spawn(request()).unwrap();
/// // }
/// # let _ = (deadline_task(), request());
/// ```
///
/// The binary links a time driver (the HAL's, e.g. `embassy-stm32`'s `time-driver-*` feature)
/// and a `critical-section` implementation (embassy-time needs both anyway); ctxtree names
/// neither.
///
/// # Why a deadline task, and why the hook
/// Deadlines are checked lazily by every observation (`is_done`, `err`, a polled `done()`), but a
/// task parked in `ctx.done().await` observes nothing until something wakes it. The deadline task
/// cancels what is due with [`RawArena::expire`] and sleeps until the next deadline. While it
/// sleeps, a new context may start being awaited with an *earlier* deadline: the arena's
/// deadline hook ([`Arena::with_deadline_hook`](crate::Arena::with_deadline_hook)) reports it,
/// and [`EmbassyDeadlines::watch`] wakes the task to re-arm its timer. Deadlines nobody awaits
/// never wake it (they still expire on observation, and at the next scan).
///
/// # Protocol
/// The state (the sleeping task's waker, the deadline its timer is armed for, a "re-scan" flag)
/// is behind a `critical-section` mutex: the hook may run in any task or interrupt, and each
/// side holds the lock for a few loads and stores, never while waking or scanning.
/// * `run` clears the flag and arms for "never" *before* it scans, so a watch that arrives during
///   the scan always sets the flag; after the scan it arms for the earliest deadline left and
///   sleeps until then or until the flag is set (checked under the lock where the waker is
///   stored, so a watch between the check and the sleep still wakes it).
/// * `watch` sets the flag and takes the waker only for a deadline earlier than the armed one:
///   a later deadline will be found by the scan that follows the armed one.
#[derive(Debug)]
pub struct EmbassyDeadlines {
    state: Mutex<RefCell<DriverState>>,
}

#[derive(Debug)]
struct DriverState {
    /// The `run` task, while it sleeps.
    waker: Option<Waker>,
    /// The deadline (ticks) the `run` task sleeps until; `u64::MAX` while it scans, or when no
    /// deadline is pending.
    armed_for: u64,
    /// A watch for a deadline earlier than `armed_for` arrived: scan again.
    rescan: bool,
}

impl EmbassyDeadlines {
    /// A driver with no task running yet.
    pub const fn new() -> Self {
        EmbassyDeadlines {
            state: Mutex::new(RefCell::new(DriverState {
                waker: None,
                armed_for: u64::MAX,
                rescan: false,
            })),
        }
    }

    /// Called by the arena's deadline hook: something started awaiting a context with the
    /// deadline `w.at()`. Wakes the [`run`](EmbassyDeadlines::run) task if its timer is armed
    /// for later. Non-blocking (a short critical section) and callable from an interrupt.
    pub fn watch(&self, w: DeadlineWatch) {
        let waker = critical_section::with(|cs| {
            let mut st = self.state.borrow_ref_mut(cs);
            if w.at().ticks() < st.armed_for {
                st.rescan = true;
                st.waker.take()
            } else {
                None
            }
        });
        // Woken outside the critical section: a waker runs executor code.
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The deadline task's body: forever, [`expire`](RawArena::expire) what is due on `arena`,
    /// then sleep (`embassy_time::Timer::at`) until the earliest deadline left, or until
    /// [`watch`](EmbassyDeadlines::watch) reports an earlier one.
    ///
    /// `arena` must run on [`EmbassyClock`] (its deadlines are embassy ticks), and its deadline
    /// hook must call this driver's `watch`. `after_func` callbacks of expired contexts run in
    /// this task.
    pub async fn run(&self, arena: &RawArena) -> ! {
        loop {
            self.with(|st| {
                st.armed_for = u64::MAX;
                st.rescan = false;
            });
            let next = arena.expire(EmbassyClock.now());
            self.with(|st| st.armed_for = next.map_or(u64::MAX, Instant::ticks));
            let mut timer = next.map(|at| embassy_time::Timer::at(at.into()));
            poll_fn(|cx| {
                let (rescan, old) = self.with(|st| {
                    if st.rescan {
                        return (true, None);
                    }
                    let old = match &st.waker {
                        Some(w) if w.will_wake(cx.waker()) => None,
                        _ => st.waker.replace(cx.waker().clone()),
                    };
                    (false, old)
                });
                // A replaced waker is dropped outside the critical section.
                drop(old);
                if rescan {
                    return Poll::Ready(());
                }
                match &mut timer {
                    // `Timer` is `Unpin`.
                    Some(t) => Pin::new(t).poll(cx),
                    None => Poll::Pending,
                }
            })
            .await;
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut DriverState) -> R) -> R {
        critical_section::with(|cs| f(&mut self.state.borrow_ref_mut(cs)))
    }
}

impl Default for EmbassyDeadlines {
    fn default() -> Self {
        Self::new()
    }
}
