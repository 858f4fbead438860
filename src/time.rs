//! Time as the arena sees it: an [`Instant`] in ticks of a [`Clock`] the arena is given.
//!
//! Firmware has a tick counter, not a wall clock, so the core counts in opaque `u64` ticks and
//! asks the clock how many make a second only to turn a `Duration` (a timeout) into ticks. With
//! `std`, [`StdClock`](crate::StdClock) ticks in nanoseconds.

use core::fmt;
use core::time::Duration;

use crate::sync::{AtomicUsize, Ordering};

/// A point in time, in ticks of the arena's [`Clock`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The instant `ticks` ticks after the clock's epoch.
    pub const fn from_ticks(ticks: u64) -> Self {
        Instant(ticks)
    }

    /// Ticks since the clock's epoch.
    pub const fn ticks(self) -> u64 {
        self.0
    }

    /// This instant plus `ticks`, saturating (a deadline too far out is simply "never").
    pub const fn add_ticks(self, ticks: u64) -> Self {
        Instant(self.0.saturating_add(ticks))
    }

    /// Ticks from `earlier` to `self`, or 0 if `earlier` is later.
    pub const fn ticks_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instant({})", self.0)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

/// A source of [`Instant`]s for an arena.
///
/// `now` must be monotonic and must not block; it may be called from interrupt context (by a
/// lazy deadline check inside `is_done()`), so on firmware read a hardware counter.
///
/// ```
/// use ctxtree::{Clock, Instant};
/// struct Ticks; // e.g. a SysTick or RTC counter at 32.768 kHz
/// impl Clock for Ticks {
///     fn now(&self) -> Instant { Instant::from_ticks(42) }
///     fn ticks_per_second(&self) -> u64 { 32_768 }
/// }
/// assert_eq!(Ticks.ticks_for(core::time::Duration::from_millis(500)), 16_384);
/// ```
pub trait Clock: Sync {
    /// The current instant.
    fn now(&self) -> Instant;

    /// How many ticks make one second.
    fn ticks_per_second(&self) -> u64;

    /// `d` in ticks, rounded up (a timeout never fires early), saturating.
    fn ticks_for(&self, d: Duration) -> u64 {
        let tps = self.ticks_per_second() as u128;
        let t = (d.as_nanos() * tps).div_ceil(1_000_000_000);
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// `ticks` as a `Duration`, saturating.
    fn duration_of(&self, ticks: u64) -> Duration {
        let tps = self.ticks_per_second().max(1) as u128;
        let nanos = ticks as u128 * 1_000_000_000 / tps;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to: for tests, simulations, and firmware that keeps time
/// in a counter it increments from a timer interrupt.
///
/// Ticks are stored in an `AtomicUsize`: on 32-bit targets a `ManualClock` wraps after 2³² ticks.
///
/// ```
/// use ctxtree::{Child, Arena, Clock, ManualClock, Instant};
/// static CLOCK: ManualClock = ManualClock::new(1_000); // 1 tick = 1 ms
/// static ARENA: Arena<8> = Arena::new().with_clock(&CLOCK);
/// let Child { ctx, cancel: _cancel } = ARENA.background().with_timeout(core::time::Duration::from_millis(5))?;
/// CLOCK.advance(4);
/// assert!(!ctx.is_done());
/// CLOCK.advance(1);
/// assert_eq!(ctx.err(), Some(ctxtree::Error::DeadlineExceeded));
/// # Ok::<(), ctxtree::CreateError>(())
/// ```
#[derive(Debug)]
pub struct ManualClock {
    ticks: AtomicUsize,
    per_second: u64,
}

impl ManualClock {
    /// A clock at tick 0 whose ticks are `ticks_per_second` to the second.
    #[cfg(not(ctxtree_loom))]
    pub const fn new(ticks_per_second: u64) -> Self {
        ManualClock {
            ticks: AtomicUsize::new(0),
            per_second: ticks_per_second,
        }
    }

    /// A clock at tick 0 whose ticks are `ticks_per_second` to the second.
    #[cfg(ctxtree_loom)]
    pub fn new(ticks_per_second: u64) -> Self {
        ManualClock {
            ticks: AtomicUsize::new(0),
            per_second: ticks_per_second,
        }
    }

    /// Moves the clock forward by `ticks`.
    pub fn advance(&self, ticks: u64) {
        // ORDERING: Release so that whatever the advancing thread did before is visible to a
        // thread that observes the new time (tests sequence on it); pairs with `now`'s Acquire.
        self.ticks.fetch_add(ticks as usize, Ordering::Release);
    }

    /// Sets the clock to `at` if that is later than now (the clock never goes back).
    pub fn set(&self, at: Instant) {
        // ORDERING: as in `advance`.
        self.ticks.fetch_max(at.ticks() as usize, Ordering::Release);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        // ORDERING: Acquire pairs with the Release in `advance` / `set`.
        Instant(self.ticks.load(Ordering::Acquire) as u64)
    }

    fn ticks_per_second(&self) -> u64 {
        self.per_second
    }
}
