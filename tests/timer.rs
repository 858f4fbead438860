//! The global arena's timer thread (src/layers/timer.rs): watching a deadline takes no lock and
//! allocates nothing after warm-up, an entry leaves when its context is done or released, and
//! watched deadlines fire through the timer (not through a lazy check on the test's thread).
//!
//! Two measurements are `#[ignore]`d (run them with `ci/timer.sh`, in release mode): the RSS of
//! 10⁶ watched one-hour timeouts created and released, and the firing latency with 10⁵ deadlines
//! pending. They print figures; they assert only what no timing can break.
//!
//! The tests share the process-wide timer, whose `pending` count they read: they run one at a
//! time (`serial`).
#![cfg(feature = "std")]

use ctxtree::Child;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, mpsc};
use std::task::{Context as TaskCx, Waker};
use std::thread;
use std::time::{Duration, Instant as StdInstant};

use ctxtree::{Canceler, Clock, Context, Error, StdClock};

// A counting allocator: allocations per thread (tests/support/counting_alloc.rs).
#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocs;

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const HOUR: Duration = Duration::from_secs(3600);

/// One test at a time: they all read the process-wide timer's `pending` count.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Polls `ctx.done()` once, which watches its deadline (the first poll of a pending future).
fn watch(ctx: &Context<'_>) {
    let mut done = pin!(ctx.done());
    assert!(
        done.as_mut()
            .poll(&mut TaskCx::from_waker(Waker::noop()))
            .is_pending()
    );
}

/// Waits until the timer reports `want` pending entries (it drains its inbox when asked for
/// its figures). Bounded: 10 s of 1 ms naps; this is not a speed claim.
fn wait_pending(want: usize) {
    let start = StdInstant::now();
    loop {
        let got = ctxtree::timer_stats().pending;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the timer still has {got} entries pending, expected {want}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// `n` one-hour timeouts on the global arena, each watched.
fn watched_timeouts(n: usize) -> Vec<(Context<'static>, Canceler<'static>)> {
    (0..n)
        .map(|_| {
            let Child { ctx, cancel } = ctxtree::background()
                .with_timeout(HOUR)
                .expect("global arena");
            watch(&ctx);
            (ctx, cancel)
        })
        .collect()
}

/// Resident set size of this process, in KiB (Linux; `None` elsewhere).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Entries leave
// ---------------------------------------------------------------------------------------------

#[test]
fn entries_leave_the_timer_when_their_contexts_are_released() {
    let _s = serial();
    wait_pending(0);
    let held = watched_timeouts(1000);
    wait_pending(1000);
    // Watching again (more futures on the same contexts) adds nothing.
    held.iter().for_each(|(ctx, _)| watch(ctx));
    wait_pending(1000);
    drop(held);
    wait_pending(0);
}

#[test]
fn entries_leave_the_timer_when_their_contexts_are_cancelled_and_still_held() {
    let _s = serial();
    wait_pending(0);
    let held = watched_timeouts(500);
    wait_pending(500);
    // Cancelled through their parent: every descendant with a deadline leaves too.
    let Child {
        ctx: parent,
        cancel: cancel_parent,
    } = ctxtree::background().with_cancel().unwrap();
    let children: Vec<_> = (0..500)
        .map(|_| {
            let Child { ctx, cancel } = parent.with_timeout(HOUR).unwrap();
            watch(&ctx);
            (ctx, cancel)
        })
        .collect();
    wait_pending(1000);
    let contexts: Vec<Context<'static>> = held
        .into_iter()
        .map(|(ctx, cancel)| {
            cancel.cancel();
            ctx
        })
        .collect();
    wait_pending(500);
    cancel_parent.cancel();
    wait_pending(0);
    assert!(contexts.iter().all(|c| c.err() == Some(Error::Canceled)));
    assert!(
        children
            .iter()
            .all(|(c, _)| c.err() == Some(Error::Canceled))
    );
}

#[test]
fn a_context_that_disarms_its_canceler_leaves_the_timer_when_released() {
    let _s = serial();
    wait_pending(0);
    let Child { ctx, cancel } = ctxtree::background().with_timeout(HOUR).unwrap();
    cancel.disarm();
    watch(&ctx);
    wait_pending(1);
    drop(ctx); // released without ever being done: the teardown drops the entry
    wait_pending(0);
}

// ---------------------------------------------------------------------------------------------
// Deadlines fire through the timer
// ---------------------------------------------------------------------------------------------

/// Runs `ctx.done()` to completion on another thread and returns its error; `None` if it does
/// not complete within 10 s (only the timer thread can complete it: nothing observes `ctx`).
fn done_on_another_thread(ctx: &Context<'static>) -> Option<Error> {
    let (tx, rx) = mpsc::channel();
    let waiter = ctx.clone();
    let h = thread::spawn(move || {
        let _ = tx.send(futures::executor::block_on(waiter.done()));
    });
    let got = rx.recv_timeout(Duration::from_secs(10)).ok();
    if got.is_some() {
        h.join().unwrap();
    }
    got
}

#[test]
fn a_deadline_fires_among_many_pending_and_released_ones() {
    let _s = serial();
    let held = watched_timeouts(2000);
    // Released ones in between, some in slots the next contexts reuse.
    drop(watched_timeouts(100));
    let Child {
        ctx,
        cancel: _cancel,
    } = ctxtree::background()
        .with_timeout(Duration::from_millis(30))
        .unwrap();
    assert_eq!(done_on_another_thread(&ctx), Some(Error::DeadlineExceeded));
    drop(held);
}

#[test]
fn a_slot_reused_with_an_earlier_deadline_fires_the_new_one() {
    let _s = serial();
    for round in 0..20 {
        // The free stack is LIFO: the next context takes this slot, with a new deadline that
        // the timer must file (a stale one-hour entry must not hide it).
        let Child { ctx: old, cancel } = ctxtree::background().with_timeout(HOUR).unwrap();
        watch(&old);
        cancel.disarm();
        drop(old);
        let Child {
            ctx,
            cancel: _cancel,
        } = ctxtree::background()
            .with_timeout(Duration::from_millis(5))
            .unwrap();
        assert_eq!(
            done_on_another_thread(&ctx),
            Some(Error::DeadlineExceeded),
            "round {round}"
        );
    }
}

#[test]
fn deadlines_watched_out_of_order_fire_in_deadline_order() {
    let _s = serial();
    static FIRED: Mutex<Vec<u32>> = Mutex::new(Vec::new());
    let ms = [40u32, 10, 30, 20, 50];
    let held: Vec<_> = ms
        .iter()
        .map(|&m| {
            let Child { ctx, cancel } = ctxtree::background()
                .with_timeout(Duration::from_millis(u64::from(m)))
                .unwrap();
            let stop = ctx
                .after_func(move || FIRED.lock().unwrap().push(m))
                .unwrap();
            (ctx, cancel, stop)
        })
        .collect();
    let start = StdInstant::now();
    while FIRED.lock().unwrap().len() < ms.len() {
        assert!(start.elapsed() < Duration::from_secs(10), "not all fired");
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(*FIRED.lock().unwrap(), [10, 20, 30, 40, 50]);
    drop(held);
}

// ---------------------------------------------------------------------------------------------
// No allocation on the watch path
// ---------------------------------------------------------------------------------------------

#[test]
fn watching_a_deadline_allocates_nothing_after_warm_up() {
    let _s = serial();
    // Warm-up: the timer thread, the arena's and the side table's pages for these slots.
    drop(watched_timeouts(10_000));
    let held: Vec<_> = (0..10_000)
        .map(|_| ctxtree::background().with_timeout(HOUR).unwrap())
        .collect();
    let before = allocs();
    for ctx in &held {
        watch(ctx); // the first watch of each: the deadline hook runs
    }
    let watched = allocs() - before;
    assert_eq!(
        watched, 0,
        "watching 10 000 deadlines allocated {watched} times"
    );

    // Create, watch, release in a loop: nothing allocates either (the slots are warm).
    let before = allocs();
    for _ in 0..10_000 {
        let Child { ctx, cancel } = ctxtree::background().with_timeout(HOUR).unwrap();
        watch(&ctx);
        drop((ctx, cancel));
    }
    let churn = allocs() - before;
    assert_eq!(churn, 0, "create + watch + release allocated {churn} times");
    drop(held);
    wait_pending(0);
}

// ---------------------------------------------------------------------------------------------
// Measurements (ci/timer.sh)
// ---------------------------------------------------------------------------------------------

#[test]
#[ignore = "a measurement: run by ci/timer.sh in release mode"]
fn measure_rss_of_a_million_watched_timeouts_created_and_released() {
    let _s = serial();
    // Warm-up: the first pages and the timer thread.
    drop(watched_timeouts(1000));
    wait_pending(0);
    let before = rss_kib();
    for _ in 0..1_000_000 {
        let Child { ctx, cancel } = ctxtree::background().with_timeout(HOUR).unwrap();
        watch(&ctx);
        drop((ctx, cancel));
    }
    let after = rss_kib();
    wait_pending(0);
    let settled = rss_kib();
    println!(
        "timer RSS: 10^6 watched one-hour timeouts created and released: before {before:?} KiB, \
         after {after:?} KiB, after the timer drained {settled:?} KiB"
    );
    if let (Some(b), Some(a)) = (before, after) {
        // Flat: the old timer grew by 36 MiB here. 2 MiB of slack for the allocator's noise.
        assert!(a <= b + 2048, "RSS grew from {b} KiB to {a} KiB");
    }
}

#[test]
#[ignore = "a measurement: run by ci/timer.sh in release mode"]
fn measure_firing_latency_with_100k_pending() {
    const MEASURED: usize = 10_000;
    const PENDING: usize = 100_000;
    static FIRED_AT: OnceLock<Vec<AtomicU64>> = OnceLock::new();
    let _s = serial();
    let fired_at = FIRED_AT.get_or_init(|| (0..MEASURED).map(|_| AtomicU64::new(0)).collect());
    let background_load = watched_timeouts(PENDING);
    wait_pending(PENDING);
    // Deadlines spread over 1 s, starting 200 ms from now, each with an `after_func` (which
    // watches it) that records when the timer thread ran it.
    let start = StdClock.now();
    let measured: Vec<_> = (0..MEASURED)
        .map(|i| {
            let offset = Duration::from_millis(200) + Duration::from_micros(100 * i as u64);
            let Child { ctx, cancel } = ctxtree::background()
                .with_deadline(start.add_ticks(offset.as_nanos() as u64))
                .unwrap();
            let stop = ctx
                .after_func(move || {
                    let now = StdClock.now().ticks();
                    FIRED_AT.get().unwrap()[i].store(now, Ordering::Relaxed);
                })
                .unwrap();
            (ctx, cancel, stop)
        })
        .collect();
    let pending = ctxtree::timer_stats().pending;
    let t0 = StdInstant::now();
    while fired_at.iter().any(|f| f.load(Ordering::Relaxed) == 0) {
        assert!(t0.elapsed() < Duration::from_secs(20), "not all fired");
        thread::sleep(Duration::from_millis(10));
    }
    let mut late_us: Vec<f64> = measured
        .iter()
        .enumerate()
        .map(|(i, (ctx, _, _))| {
            let due = ctx.deadline().unwrap().ticks();
            let at = fired_at[i].load(Ordering::Relaxed);
            assert!(at >= due, "fired before its deadline");
            (at - due) as f64 / 1000.0
        })
        .collect();
    late_us.sort_by(f64::total_cmp);
    let p = |q: f64| late_us[((late_us.len() - 1) as f64 * q) as usize];
    println!(
        "timer latency, {MEASURED} deadlines over 1 s with {pending} pending: p50 {:.0} µs, \
         p90 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs; {} of {MEASURED} within 1 ms",
        p(0.5),
        p(0.9),
        p(0.99),
        p(0.999),
        late_us[late_us.len() - 1],
        late_us.iter().filter(|&&l| l <= 1000.0).count(),
    );
    drop(measured);
    drop(background_load);
    wait_pending(0);
}
