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
/// An arena calls only [`now`](Clock::now) and [`ticks_per_second`](Clock::ticks_per_second)
/// through the clock (a [`ClockRef`]: no trait-object vtable), so a firmware that never asks
/// for a `Duration` does not link [`duration_of`](Clock::duration_of). Both conversions use
/// 64-bit arithmetic only (no `u128`).
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
        ticks_for(self.ticks_per_second(), d)
    }

    /// `ticks` as a `Duration`, saturating.
    fn duration_of(&self, ticks: u64) -> Duration {
        duration_of(self.ticks_per_second(), ticks)
    }
}

/// The clock of an arena, as [`RawArena::clock`](crate::RawArena::clock) returns it: a thin
/// pointer to a `'static` clock and to the table of its two functions. Arenas keep a clock in
/// this form (two words that are null until a clock is bound), so that a `static` arena bound
/// to a clock at boot stays in `.bss`, and no trait-object vtable drags unused provided methods
/// into a firmware image.
#[derive(Clone, Copy)]
pub struct ClockRef {
    data: *const (),
    fns: &'static ClockFns,
}

/// A clock's two functions, for a [`ClockRef`]; one `static` table per clock type.
pub(crate) struct ClockFns {
    now: unsafe fn(*const ()) -> Instant,
    ticks_per_second: unsafe fn(*const ()) -> u64,
}

/// # Safety
/// `data` came from a `&'static C` (see [`ClockRef::of`]).
unsafe fn now_of<C: Clock>(data: *const ()) -> Instant {
    // SAFETY: per the contract, `data` is a `&'static C`.
    unsafe { &*data.cast::<C>() }.now()
}

/// # Safety
/// As for [`now_of`].
unsafe fn ticks_per_second_of<C: Clock>(data: *const ()) -> u64 {
    // SAFETY: per the contract, `data` is a `&'static C`.
    unsafe { &*data.cast::<C>() }.ticks_per_second()
}

/// The function table of `C` (promoted to a `static` by `&Fns::<C>::FNS`).
struct Fns<C>(core::marker::PhantomData<C>);

impl<C: Clock> Fns<C> {
    const FNS: ClockFns = ClockFns {
        now: now_of::<C>,
        ticks_per_second: ticks_per_second_of::<C>,
    };
}

impl ClockRef {
    /// Whether `self` and `other` are the same clock: the same object and the same functions
    /// (two zero-sized clocks of different types may share an address; a table duplicated by the
    /// linker only makes two references to one clock look different, which costs a conversion).
    pub(crate) fn same_as(&self, other: &ClockRef) -> bool {
        core::ptr::eq(self.data, other.data) && core::ptr::eq(self.fns, other.fns)
    }
}

impl ClockRef {
    /// The reference to `clock`.
    pub(crate) const fn of<C: Clock>(clock: &'static C) -> ClockRef {
        ClockRef {
            data: core::ptr::from_ref(clock).cast(),
            fns: &Fns::<C>::FNS,
        }
    }

    /// The two words an arena stores (see `arena::ClockCell`).
    pub(crate) fn into_raw(self) -> (*mut (), *mut ClockFns) {
        self.into_raw_const()
    }

    /// [`into_raw`](ClockRef::into_raw) in a `const` context.
    pub(crate) const fn into_raw_const(self) -> (*mut (), *mut ClockFns) {
        (
            self.data.cast_mut(),
            core::ptr::from_ref(self.fns).cast_mut(),
        )
    }

    /// The reference from the two words of [`into_raw`](ClockRef::into_raw).
    ///
    /// # Safety
    /// `data` and `fns` came from one `into_raw`.
    pub(crate) unsafe fn from_raw(data: *mut (), fns: *mut ClockFns) -> ClockRef {
        ClockRef {
            data,
            // SAFETY: per the contract, `fns` is a `&'static ClockFns`.
            fns: unsafe { &*fns },
        }
    }
}

impl ClockRef {
    /// The current instant (as [`Clock::now`], without importing the trait).
    #[inline]
    pub fn now(&self) -> Instant {
        Clock::now(self)
    }

    /// How many ticks make one second (as [`Clock::ticks_per_second`]).
    #[inline]
    pub fn ticks_per_second(&self) -> u64 {
        Clock::ticks_per_second(self)
    }

    /// `d` in ticks, rounded up, saturating (as [`Clock::ticks_for`]).
    #[inline]
    pub fn ticks_for(&self, d: Duration) -> u64 {
        ticks_for(self.ticks_per_second(), d)
    }

    /// `ticks` as a `Duration`, saturating (as [`Clock::duration_of`]).
    #[inline]
    pub fn duration_of(&self, ticks: u64) -> Duration {
        duration_of(self.ticks_per_second(), ticks)
    }
}

// SAFETY: a `ClockRef` is a `&'static C` for a `C: Clock`, and `Clock: Sync`.
unsafe impl Send for ClockRef {}
// SAFETY: as above.
unsafe impl Sync for ClockRef {}

impl Clock for ClockRef {
    #[inline]
    fn now(&self) -> Instant {
        // SAFETY: `data` and `fns` were made together by `ClockRef::of::<C>`.
        unsafe { (self.fns.now)(self.data) }
    }

    #[inline]
    fn ticks_per_second(&self) -> u64 {
        // SAFETY: as above.
        unsafe { (self.fns.ticks_per_second)(self.data) }
    }
}

impl fmt::Debug for ClockRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClockRef")
            .field("ticks_per_second", &self.ticks_per_second())
            .finish()
    }
}

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// `d` in ticks of a clock of `tps` ticks per second, rounded up, saturating: with 64-bit
/// arithmetic only (no `u128`, no 64-bit division by a variable: firmware targets have neither
/// in hardware, and their software forms cost kilobytes of flash).
///
/// `d · tps = secs · tps + nanos · tps / 10⁹`, and with `tps = q · 10⁹ + r`,
/// `nanos · tps / 10⁹ = nanos · q + nanos · r / 10⁹` where `nanos · r < 10¹⁸` fits a `u64`:
/// only that last term is divided, by the constant 10⁹ ([`div_1e9`]).
pub(crate) fn ticks_for(tps: u64, d: Duration) -> u64 {
    let nanos = u64::from(d.subsec_nanos());
    let q = div_1e9(tps);
    let r = tps - q * NANOS_PER_SEC;
    let frac = nanos * r;
    let frac_q = div_1e9(frac);
    // Rounded up: a timeout never fires early.
    let frac_ticks = frac_q + u64::from(frac != frac_q * NANOS_PER_SEC);
    d.as_secs()
        .saturating_mul(tps)
        .saturating_add(nanos.saturating_mul(q))
        .saturating_add(frac_ticks)
}

/// `ticks` of a clock of `tps` ticks per second as a `Duration`, saturating (rounded down).
pub(crate) fn duration_of(tps: u64, ticks: u64) -> Duration {
    let tps = tps.max(1);
    let (secs, rest) = div_rem(ticks, tps);
    // `rest < tps`, so `rest · 10⁹ / tps < 10⁹`.
    let nanos = if cfg!(target_pointer_width = "64") {
        // `rest · 10⁹` overflows a `u64` only for clocks above 18 GHz: then the fraction
        // `rest / tps` is expanded digit by digit instead.
        match rest.checked_mul(NANOS_PER_SEC) {
            Some(p) => p / tps,
            None => fraction_digits(rest, tps),
        }
    } else {
        nanos_by_shifts(rest, tps)
    };
    // `nanos < 10⁹` already; the `min` tells the compiler so, which drops `Duration::new`'s
    // carry into the seconds and its overflow panic.
    Duration::new(secs, (nanos as u32).min(999_999_999))
}

/// `⌊rest · 10⁹ / tps⌋` for `rest < tps`, exactly and without overflow: the first nine decimal
/// digits of the fraction `rest / tps`, each by long division (`10 · rest` as ten additions
/// modulo `tps`, counting the wraps).
#[cold]
fn fraction_digits(mut rest: u64, tps: u64) -> u64 {
    let mut nanos = 0;
    for _ in 0..9 {
        let (mut acc, mut digit) = (0u64, 0u64);
        for _ in 0..10 {
            // acc + rest, modulo tps, without overflow (both are below tps).
            if acc >= tps - rest {
                acc -= tps - rest;
                digit += 1;
            } else {
                acc += rest;
            }
        }
        nanos = nanos * 10 + digit;
        rest = acc;
    }
    nanos
}

/// `x / 10⁹`, by a multiplication and shifts rather than a 64-bit division (a library call of
/// about a kilobyte on 32-bit targets): `⌊x / 10⁹⌋ = ⌊⌊x / 2⁹⌋ · M / 2⁷⁵⌋` with
/// `M = ⌈2⁷⁵ / 5⁹⌉ = 0x44B8_2FA0_9B5A_53` for every `u64` `x` (the constant compilers use; tested
/// against `u128` division at the edges and on random values). Out of line on 32-bit targets
/// (flash: [`ticks_for`] calls it twice).
#[cfg_attr(target_pointer_width = "64", inline)]
#[cfg_attr(not(target_pointer_width = "64"), inline(never))]
pub(crate) const fn div_1e9(x: u64) -> u64 {
    mul_hi(x >> 9, 0x0044_B82F_A09B_5A53) >> 11
}

/// `x / 10`: on 32-bit targets by a multiplication and a shift (`⌊x · M / 2⁶⁷⌋` with
/// `M = ⌈2⁶⁷ / 10⌉ = 0xCCCC_CCCC_CCCC_CCCD`, exact for every `u64`), so that printing a
/// number in a firmware needs no 64-bit division routine (flash); elsewhere the compiler's own
/// (the same multiplication).
#[inline]
pub(crate) fn div_10(x: u64) -> u64 {
    if cfg!(target_pointer_width = "64") {
        x / 10
    } else {
        div_10_by_mul(x)
    }
}

/// [`div_10`]'s 32-bit form.
#[inline]
const fn div_10_by_mul(x: u64) -> u64 {
    mul_hi(x, 0xCCCC_CCCC_CCCC_CCCD) >> 3
}

/// `(n / d, n % d)` for `d > 0` (`d == 0` gives `(u64::MAX, n)` on 32-bit targets, and panics
/// elsewhere, as `/` does; callers never pass it). On 32-bit targets by binary long division,
/// 64 shift-and-subtract steps, instead of the 64-bit division routine (close to a kilobyte of
/// flash on a Cortex-M, pulled in by `Duration` conversions only); elsewhere the hardware's.
#[inline]
pub(crate) fn div_rem(n: u64, d: u64) -> (u64, u64) {
    if cfg!(target_pointer_width = "64") {
        (n / d, n % d)
    } else {
        div_rem_by_shifts(n, d)
    }
}

/// [`div_rem`]'s 32-bit form.
#[inline]
fn div_rem_by_shifts(n: u64, d: u64) -> (u64, u64) {
    div_wide(0, n, d)
}

/// [`duration_of`]'s fraction on 32-bit targets: `⌊rest · 10⁹ / tps⌋` for `rest < tps`, exact
/// for every clock, by one long division of the 94-bit product (no digit-by-digit expansion
/// for clocks above 18 GHz, and no second division routine).
#[inline]
fn nanos_by_shifts(rest: u64, tps: u64) -> u64 {
    div_wide(
        mul_hi(rest, NANOS_PER_SEC),
        rest.wrapping_mul(NANOS_PER_SEC),
        tps,
    )
    .0
}

/// `(⌊(hi · 2⁶⁴ + lo) / d⌋, remainder)` for `hi < d` (the quotient then fits a `u64`), by
/// binary long division: 64 shift-and-subtract steps.
#[cfg_attr(not(target_pointer_width = "64"), inline(never))]
fn div_wide(hi: u64, lo: u64, d: u64) -> (u64, u64) {
    debug_assert!(hi < d);
    // `lo`'s bits move into `r` from the top while the quotient's bits fill `n` from the
    // bottom.
    let (mut n, mut r) = (lo, hi);
    for _ in 0..64 {
        // `r < d` before the shift; `carry` is the bit shifted out of `r`, so the true
        // remainder is `carry · 2⁶⁴ + r`, which is `≥ d` whenever `carry` is set (and then
        // `r - d` wraps to the true difference, below `d`).
        let carry = r >> 63;
        r = (r << 1) | (n >> 63);
        n <<= 1;
        if carry != 0 || r >= d {
            r = r.wrapping_sub(d);
            n |= 1;
        }
    }
    (n, r)
}

/// The high 64 bits of the 128-bit product `a · b`, from four 32 × 32 → 64-bit products.
#[inline]
const fn mul_hi(a: u64, b: u64) -> u64 {
    let (a0, a1) = (a & 0xFFFF_FFFF, a >> 32);
    let (b0, b1) = (b & 0xFFFF_FFFF, b >> 32);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 32) + (p01 & 0xFFFF_FFFF) + (p10 & 0xFFFF_FFFF);
    p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32)
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

#[cfg(all(test, not(ctxtree_loom)))]
mod tests {
    extern crate std;
    use super::*;

    fn ticks_ref(tps: u64, d: Duration) -> u64 {
        let Some(p) = d.as_nanos().checked_mul(u128::from(tps)) else {
            return u64::MAX;
        };
        u64::try_from(p.div_ceil(1_000_000_000)).unwrap_or(u64::MAX)
    }

    fn duration_ref(tps: u64, ticks: u64) -> Duration {
        let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(tps.max(1));
        let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        Duration::new(secs, (nanos % 1_000_000_000) as u32)
    }

    /// A small xorshift generator: the same values on every run.
    fn values(seed: u64, n: usize) -> impl Iterator<Item = u64> {
        let mut x = seed;
        (0..n).map(move |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
    }

    #[test]
    fn div_10_and_div_rem_match_division() {
        let edges = [
            0,
            1,
            9,
            10,
            11,
            99,
            100,
            u64::MAX,
            u64::MAX - 1,
            1 << 63,
            (1 << 63) - 1,
        ];
        let n = if cfg!(miri) { 200 } else { 100_000 };
        for x in edges.into_iter().chain(values(0x2545_F491_4F6C_DD1D, n)) {
            assert_eq!(div_10_by_mul(x), x / 10, "x = {x}");
            assert_eq!(div_10(x), x / 10, "x = {x}");
            for d in edges.into_iter().chain(values(x | 1, 4)).chain([
                x >> 33,
                x >> 1,
                1_000_000,
                32_768,
            ]) {
                let d = d.max(1);
                assert_eq!(div_rem_by_shifts(x, d), (x / d, x % d), "{x} / {d}");
                assert_eq!(div_rem(x, d), (x / d, x % d), "{x} / {d}");
            }
        }
    }

    // Both: fewer random values under Miri (interpreted, about 10,000 times slower); every
    // edge still.
    #[test]
    fn div_1e9_matches_division() {
        let edges = [
            0,
            1,
            999_999_999,
            1_000_000_000,
            1_000_000_001,
            u64::MAX,
            u64::MAX - 1,
            u64::MAX / 1_000_000_000 * 1_000_000_000,
            u64::MAX / 1_000_000_000 * 1_000_000_000 - 1,
        ];
        for x in edges.into_iter().chain(values(
            0x9E37_79B9_7F4A_7C15,
            if cfg!(miri) { 200 } else { 200_000 },
        )) {
            assert_eq!(div_1e9(x), x / 1_000_000_000, "x = {x}");
            // Near every multiple of 10⁹ reached by the random values too.
            let m = x / 1_000_000_000 * 1_000_000_000;
            for y in [m, m.wrapping_sub(1), m.wrapping_add(1)] {
                assert_eq!(div_1e9(y), y / 1_000_000_000, "y = {y}");
            }
        }
    }

    #[test]
    fn conversions_match_u128_arithmetic() {
        let clocks = [
            1,
            1_000,
            32_768,
            1_000_000,
            48_000_000,
            1_000_000_000,
            4_000_000_000,
            u32::MAX as u64,
            1u64 << 40,
            u64::MAX,
        ];
        let durations = [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_millis(500),
            Duration::new(1, 999_999_999),
            Duration::new(1_000_000, 1),
            Duration::MAX,
        ];
        for &tps in clocks.iter().chain(
            values(7, if cfg!(miri) { 3 } else { 300 })
                .collect::<std::vec::Vec<_>>()
                .iter(),
        ) {
            for &d in &durations {
                assert_eq!(ticks_for(tps, d), ticks_ref(tps, d), "tps {tps}, {d:?}");
            }
            for x in values(tps | 1, if cfg!(miri) { 3 } else { 300 }) {
                let d = Duration::new(x >> 20, (x % 1_000_000_000) as u32);
                assert_eq!(ticks_for(tps, d), ticks_ref(tps, d), "tps {tps}, {d:?}");
                for t in [x, x >> 32, x >> 50, x % tps.max(1)] {
                    assert_eq!(duration_of(tps, t), duration_ref(tps, t), "tps {tps}, {t}");
                    // The 32-bit targets' fraction, for every clock (18 GHz and above too).
                    let rest = t % tps.max(1);
                    let want = u128::from(rest) * 1_000_000_000 / u128::from(tps.max(1));
                    assert_eq!(
                        u128::from(nanos_by_shifts(rest, tps.max(1))),
                        want,
                        "tps {tps}, {rest}"
                    );
                }
            }
        }
    }
}
