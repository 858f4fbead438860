//! The `embassy-time` layer on the host, on embassy-time's `MockDriver` (a dev-dependency): a
//! time driver whose clock moves only when a test advances it, and which wakes the timers due.
//!
//! The futures are polled by hand, one step at a time, with wakers that record being woken, so
//! each test states exactly which wake-up happens when.
#![cfg(feature = "embassy-time")]

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskCx, Poll, Wake, Waker};

use core::time::Duration;
use ctxtree::{Arena, Child, Clock, DeadlineWatch, EmbassyClock, EmbassyDeadlines, Error, Instant};
use embassy_time::MockDriver;

static CLOCK: EmbassyClock = EmbassyClock::new();

/// The mock driver's time is global to this test binary: the tests take turns.
fn serial() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn advance(d: Duration) {
    MockDriver::get().advance(embassy_time::Duration::from_micros(d.as_micros() as u64));
}

/// A waker that records that it was woken.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Flag {
    /// Whether it was woken since the last call.
    fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

fn poll_with<F: Future + ?Sized>(f: Pin<&mut F>, flag: &Arc<Flag>) -> Poll<F::Output> {
    let waker = Waker::from(flag.clone());
    f.poll(&mut TaskCx::from_waker(&waker))
}

#[test]
fn the_clock_is_the_driver() {
    let _turn = serial();
    assert_eq!(CLOCK.ticks_per_second(), embassy_time::TICK_HZ);
    let before = CLOCK.now();
    assert_eq!(before.ticks(), embassy_time::Instant::now().as_ticks());
    advance(Duration::from_millis(3));
    assert_eq!(
        CLOCK.now().ticks_since(before),
        3 * embassy_time::TICK_HZ / 1_000
    );
    // Tick for tick, both ways.
    let at = embassy_time::Instant::from_ticks(12_345);
    assert_eq!(Instant::from(at), Instant::from_ticks(12_345));
    assert_eq!(embassy_time::Instant::from(Instant::from_ticks(12_345)), at);
}

#[test]
fn a_timeout_on_the_embassy_clock_expires_when_the_driver_says() {
    static ARENA: Arena<4> = Arena::new().with_clock(&CLOCK);
    let _turn = serial();
    let Child {
        ctx,
        cancel: _cancel,
    } = ARENA
        .background()
        .with_timeout(Duration::from_millis(10))
        .unwrap();
    assert_eq!(
        ctx.deadline().unwrap().ticks_since(CLOCK.now()),
        10 * embassy_time::TICK_HZ / 1_000
    );
    advance(Duration::from_millis(9));
    assert_eq!(ctx.err(), None);
    advance(Duration::from_millis(1));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn the_deadline_task_wakes_a_done_waiter_at_its_deadline() {
    static DEADLINES: EmbassyDeadlines = EmbassyDeadlines::new();
    fn on_watch(w: DeadlineWatch) {
        DEADLINES.watch(w);
    }
    static ARENA: Arena<4> = Arena::new().with_clock(&CLOCK).with_deadline_hook(on_watch);
    let _turn = serial();
    let (task_flag, waiter_flag) = (Arc::new(Flag::default()), Arc::new(Flag::default()));
    let mut task = pin!(DEADLINES.run(&ARENA));
    let Child {
        ctx,
        cancel: _cancel,
    } = ARENA
        .background()
        .with_timeout(Duration::from_millis(50))
        .unwrap();
    let mut done = pin!(ctx.done());
    assert!(poll_with(done.as_mut(), &waiter_flag).is_pending());
    // The task scans (nothing due), arms its timer for the deadline, sleeps.
    assert!(poll_with(task.as_mut(), &task_flag).is_pending());
    advance(Duration::from_millis(49));
    assert!(!task_flag.take(), "woken before the deadline");
    assert!(!waiter_flag.take());
    advance(Duration::from_millis(1));
    assert!(task_flag.take(), "the driver's timer did not wake the task");
    assert!(!waiter_flag.take(), "nothing expired the context yet");
    // The task runs: `expire` cancels the context and wakes its waiter; nothing is left due.
    assert!(poll_with(task.as_mut(), &task_flag).is_pending());
    assert!(waiter_flag.take(), "the waiter was not woken by the expiry");
    assert!(poll_with(done.as_mut(), &waiter_flag).is_ready());
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    // With no deadline pending, the task sleeps until a watch: time alone never wakes it.
    advance(Duration::from_secs(5));
    assert!(!task_flag.take());
}

#[test]
fn an_earlier_deadline_rearms_the_sleeping_task_and_a_later_one_does_not() {
    static DEADLINES: EmbassyDeadlines = EmbassyDeadlines::new();
    fn on_watch(w: DeadlineWatch) {
        DEADLINES.watch(w);
    }
    static ARENA: Arena<8> = Arena::new().with_clock(&CLOCK).with_deadline_hook(on_watch);
    let _turn = serial();
    let task_flag = Arc::new(Flag::default());
    let flags: [Arc<Flag>; 3] = Default::default();
    let mut task = pin!(DEADLINES.run(&ARENA));
    let Child {
        ctx: slow,
        cancel: _c1,
    } = ARENA
        .background()
        .with_timeout(Duration::from_secs(1))
        .unwrap();
    let mut slow_done = pin!(slow.done());
    assert!(poll_with(slow_done.as_mut(), &flags[0]).is_pending());
    assert!(poll_with(task.as_mut(), &task_flag).is_pending()); // armed for 1 s

    // A later deadline being awaited leaves the task asleep.
    let Child {
        ctx: later,
        cancel: _c2,
    } = ARENA
        .background()
        .with_timeout(Duration::from_secs(2))
        .unwrap();
    let mut later_done = pin!(later.done());
    assert!(poll_with(later_done.as_mut(), &flags[1]).is_pending());
    assert!(!task_flag.take(), "a later deadline woke the task");

    // An earlier one wakes it, and it re-arms for that one.
    let Child {
        ctx: fast,
        cancel: _c3,
    } = ARENA
        .background()
        .with_timeout(Duration::from_millis(10))
        .unwrap();
    let mut fast_done = pin!(fast.done());
    assert!(poll_with(fast_done.as_mut(), &flags[2]).is_pending());
    assert!(
        task_flag.take(),
        "an earlier deadline did not wake the task"
    );
    assert!(poll_with(task.as_mut(), &task_flag).is_pending());
    advance(Duration::from_millis(10));
    assert!(task_flag.take(), "the re-armed timer did not fire at 10 ms");
    assert!(poll_with(task.as_mut(), &task_flag).is_pending());
    assert!(flags[2].take());
    assert!(poll_with(fast_done.as_mut(), &flags[2]).is_ready());
    assert_eq!(fast.err(), Some(Error::DeadlineExceeded));
    assert_eq!((slow.err(), later.err()), (None, None));
    assert!(!flags[0].take() && !flags[1].take());

    // The slow one next, at 1 s.
    advance(Duration::from_millis(989));
    assert!(!task_flag.take());
    advance(Duration::from_millis(1));
    assert!(task_flag.take());
    assert!(poll_with(task.as_mut(), &task_flag).is_pending());
    assert!(flags[0].take());
    assert!(poll_with(slow_done.as_mut(), &flags[0]).is_ready());
    assert_eq!(slow.err(), Some(Error::DeadlineExceeded));
    assert_eq!(later.err(), None);
}
