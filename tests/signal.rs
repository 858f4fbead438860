//! Interrupt safety, shown on the host: a POSIX signal handler — the closest thing a hosted test
//! has to a firmware interrupt — cancels contexts and creates children in the very tree that the
//! thread it interrupts is in the middle of mutating.
//!
//! A `timer_create` timer fires every 50 µs at the test's own thread (`SIGEV_THREAD_ID`), so each
//! signal stops that thread at an arbitrary instruction — halfway through a `link`, an unlink, a
//! `cancel_tree` walk, a release cascade, a free-list push or pop, a waiter registration holding
//! the waiter lock — and runs the handler to completion on top of it. The handler cannot wait for
//! the code it interrupted (which cannot run until the handler returns), so any lock or spin on a
//! state that code left behind would hang here. The handler uses only the lock-free core: no
//! allocation, no std lock, no printing; failures are recorded in atomics and asserted only after
//! the timer is disarmed. The interrupted thread avoids nothing in particular (it allocates, it
//! registers `done()` waiters): the handler never needs anything it could be holding.
//!
//! Checked, over many thousands of interrupts: nothing hangs; a context cancelled by the handler
//! has its whole subtree done when the handler returns, including the children the interrupted
//! code was creating or releasing; every `after_func` runs exactly once; and at the end every node
//! is back in the arena.

#![cfg(target_os = "linux")]

use ctxtree::Child;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskCx, Wake, Waker};
use std::time::{Duration, Instant};

use ctxtree::{Arena, Canceler, Context, Key};

static ARENA: Arena<128> = Arena::new();
static KEY: Key<u64> = Key::new("iteration");

/// A long-lived root that both sides create children under (never cancelled).
static ROOT: OnceLock<Child<'static>> = OnceLock::new();

/// The mid-level context the interrupted thread is working under; the handler cancels it now and
/// then, and creates children under it. Owned by the thread; published as a raw pointer. The
/// handler runs on the same thread, atomically with respect to it, so a non-null pointer it reads
/// is alive for the handler's whole run (the thread swaps it to null before dropping it).
struct Shared {
    ctx: Context<'static>,
    cancel: Canceler<'static>,
}
static SHARED: AtomicPtr<Shared> = AtomicPtr::new(ptr::null_mut());

static HANDLED: AtomicUsize = AtomicUsize::new(0);
static HANDLER_CANCELS: AtomicUsize = AtomicUsize::new(0);
static HANDLER_FULL: AtomicUsize = AtomicUsize::new(0);
/// Bit set of failed checks (0 = none): asserted once the timer is disarmed.
static FAILED: AtomicU32 = AtomicU32::new(0);
static AF_REGISTERED: AtomicUsize = AtomicUsize::new(0);
static AF_RAN: AtomicUsize = AtomicUsize::new(0);
static WAKES: AtomicUsize = AtomicUsize::new(0);

const F_HANDLER_CHILD_NOT_DONE: u32 = 1 << 0;
const F_HANDLER_CANCEL_INCOMPLETE: u32 = 1 << 1;
const F_BORN_LIVE_UNDER_DONE: u32 = 1 << 2;
const F_HELD_CHILD_LIVE_UNDER_DONE: u32 = 1 << 3;
const F_OWN_CANCEL_INCOMPLETE: u32 = 1 << 4;
const F_VALUE_LOST: u32 = 1 << 5;
const F_ROOT_DONE: u32 = 1 << 6;

fn fail(bit: u32) {
    FAILED.fetch_or(bit, Ordering::Relaxed);
}

extern "C" fn on_signal(_: libc::c_int) {
    let n = HANDLED.fetch_add(1, Ordering::Relaxed);
    let Some(Child { ctx: root, .. }) = ROOT.get() else {
        return;
    };
    if root.is_done() {
        fail(F_ROOT_DONE);
    }
    // A child and grandchild of the root, cancelled from here: done before `cancel` returns.
    match root.with_cancel() {
        Ok(Child { ctx: c, cancel: k }) => {
            let g = c.with_value(&KEY, n as u64).and_then(|v| v.with_cancel());
            k.cancel();
            let g_done = g.as_ref().map_or(true, |g| g.is_done());
            if !c.is_done() || !g_done {
                fail(F_HANDLER_CHILD_NOT_DONE);
            }
        }
        Err(_) => {
            HANDLER_FULL.fetch_add(1, Ordering::Relaxed);
        }
    }
    let p = SHARED.load(Ordering::Acquire);
    if p.is_null() {
        return;
    }
    // SAFETY: the interrupted thread nulls the pointer before dropping the box, and cannot run
    // while this handler does: non-null means alive until we return.
    let m = unsafe { &*p };
    // A child under the context the interrupted code is linking into / unlinking from / walking.
    match m.ctx.with_cancel() {
        Ok(Child { ctx: c, cancel: _k }) => {
            if m.ctx.is_done() && !c.is_done() {
                fail(F_BORN_LIVE_UNDER_DONE);
            }
            // Dropped here: cancelled, unlinked and freed under the interrupted code's feet.
        }
        Err(_) => {
            HANDLER_FULL.fetch_add(1, Ordering::Relaxed);
        }
    }
    if n.is_multiple_of(8) {
        m.cancel.cancel();
        HANDLER_CANCELS.fetch_add(1, Ordering::Relaxed);
        if !m.ctx.is_done() {
            fail(F_HANDLER_CANCEL_INCOMPLETE);
        }
    }
}

/// Counts wake-ups (which may come from the handler: an atomic add, no allocation, and never
/// the last reference).
struct CountWakes;

impl Wake for CountWakes {
    fn wake(self: Arc<Self>) {
        WAKES.fetch_add(1, Ordering::Relaxed);
    }
}

/// Timer firing `SIGUSR1` at the calling thread every `period`; disarmed and deleted on drop.
struct Timer(libc::timer_t);

impl Timer {
    fn start(period: Duration) -> Timer {
        // SAFETY: plain libc calls with valid, initialised arguments; the handler is an
        // `extern "C" fn(c_int)` that only touches atomics and the lock-free core.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, ptr::null_mut()), 0);

            let mut sev: libc::sigevent = std::mem::zeroed();
            sev.sigev_notify = libc::SIGEV_THREAD_ID;
            sev.sigev_signo = libc::SIGUSR1;
            sev.sigev_notify_thread_id = libc::gettid();
            let mut id: libc::timer_t = std::mem::zeroed();
            assert_eq!(
                libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id),
                0
            );
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: period.as_nanos() as libc::c_long,
            };
            let spec = libc::itimerspec {
                it_interval: ts,
                it_value: ts,
            };
            assert_eq!(libc::timer_settime(id, 0, &spec, ptr::null_mut()), 0);
            Timer(id)
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // SAFETY: `self.0` is a timer created above and not yet deleted. Deleting it disarms it.
        unsafe {
            libc::timer_delete(self.0);
        }
    }
}

/// Publishes a fresh mid-level context for the handler to use.
fn publish_shared(root: &Context<'static>) {
    let Child { ctx, cancel } = root.with_cancel().expect("arena sized for the test");
    let b = Box::into_raw(Box::new(Shared { ctx, cancel }));
    SHARED.store(b, Ordering::Release);
}

/// Takes the mid-level context back (the handler can no longer see it) and drops it.
fn retire_shared() {
    let p = SHARED.swap(ptr::null_mut(), Ordering::AcqRel);
    if !p.is_null() {
        // SAFETY: made by `Box::into_raw` in `publish_shared`; the handler cannot see it now.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// One round of mutations under the shared context, with checks that hold whenever the
/// handler's cancels are atomic with respect to this thread.
fn round(i: u64, held: &mut VecDeque<(Context<'static>, Canceler<'static>)>, waker: &Waker) {
    let p = SHARED.load(Ordering::Acquire);
    // SAFETY: only this thread retires it, and not during this round.
    let m = unsafe { &*p };
    let Ok(Child { ctx: c, cancel: k }) = m.ctx.with_cancel() else {
        return;
    };
    // Born under a done parent => born done (the handler's cancel completed before we resumed).
    if m.ctx.is_done() && !c.is_done() {
        fail(F_BORN_LIVE_UNDER_DONE);
    }
    match i % 5 {
        0 => {
            // A value child and a grandchild; the value must be seen whatever happens.
            if let Ok(v) = c.with_value(&KEY, i) {
                if v.value(&KEY) != Some(i) {
                    fail(F_VALUE_LOST);
                }
                if let Ok(Child { ctx: g, cancel: gk }) = v.with_cancel() {
                    k.cancel();
                    if !g.is_done() {
                        fail(F_OWN_CANCEL_INCOMPLETE);
                    }
                    drop((g, gk));
                }
            }
        }
        1 => {
            // An after_func: runs exactly once, by whoever cancels first (maybe the handler).
            if let Ok(af) = c.after_func(|| {
                AF_RAN.fetch_add(1, Ordering::Relaxed);
            }) {
                AF_REGISTERED.fetch_add(1, Ordering::Relaxed);
                if i % 10 == 1 && af.stop() {
                    AF_REGISTERED.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        2 => {
            // A `done()` future registered (taking the waiter lock, which the handler's cancel
            // then finds held: it delegates the drain), then dropped (deregistered).
            let mut fut = std::pin::pin!(c.done());
            let _ = Pin::as_mut(&mut fut).poll(&mut TaskCx::from_waker(waker));
            let _ = Pin::as_mut(&mut fut).poll(&mut TaskCx::from_waker(waker));
        }
        3 => {
            // Keep it a while: M's list grows, and its middle children get unlinked later.
            held.push_back((c.clone(), k));
            if held.len() > 6 {
                let (old, old_k) = held.pop_front().unwrap();
                drop(old_k);
                if !old.is_done() {
                    fail(F_OWN_CANCEL_INCOMPLETE);
                }
            }
            return;
        }
        _ => {
            k.cancel();
            if !c.is_done() {
                fail(F_OWN_CANCEL_INCOMPLETE);
            }
        }
    }
    // Every held child of a done parent is done.
    if m.ctx.is_done() && held.iter().any(|(h, _)| !h.is_done()) {
        fail(F_HELD_CHILD_LIVE_UNDER_DONE);
    }
}

#[test]
fn signal_handler_cancels_the_tree_the_interrupted_thread_mutates() {
    // Run on a thread of our own: the timer signals exactly this thread.
    let worker = std::thread::spawn(|| {
        let root = &ROOT
            .get_or_init(|| ARENA.background().with_cancel().unwrap())
            .ctx;
        let baseline = ARENA.stats().live;
        assert_eq!(baseline, 1);
        let waker = Waker::from(Arc::new(CountWakes));
        let mut held = VecDeque::with_capacity(8);
        let start = Instant::now();
        let timer = Timer::start(Duration::from_micros(50));
        let mut i = 0u64;
        publish_shared(root);
        while (HANDLED.load(Ordering::Relaxed) < 50_000
            && start.elapsed() < Duration::from_secs(20))
            || i < 100_000
        {
            round(i, &mut held, &waker);
            i += 1;
            if i.is_multiple_of(64) {
                // A new mid-level context now and then: the old one (maybe cancelled by the
                // handler, maybe not) is dropped with what it holds.
                held.clear();
                retire_shared();
                publish_shared(root);
            }
            if FAILED.load(Ordering::Relaxed) != 0 || start.elapsed() > Duration::from_secs(60) {
                break;
            }
        }
        drop(timer);
        held.clear();
        retire_shared();
        (i, baseline, start.elapsed())
    });
    // A deadlock (a handler waiting for the code it interrupted) is a failure, not a hang.
    let watchdog = Instant::now();
    while !worker.is_finished() {
        if watchdog.elapsed() > Duration::from_secs(120) {
            eprintln!("signal: no progress after 120 s: deadlock between handler and thread");
            std::process::abort();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = worker.join().unwrap();
    let (rounds, baseline, took) = report;
    let handled = HANDLED.load(Ordering::Relaxed);
    eprintln!(
        "signal: {rounds} rounds, {handled} interrupts ({} cancels of the shared context, \
         {} handler creations refused) in {took:.2?}; {} wake-ups",
        HANDLER_CANCELS.load(Ordering::Relaxed),
        HANDLER_FULL.load(Ordering::Relaxed),
        WAKES.load(Ordering::Relaxed),
    );
    assert_eq!(FAILED.load(Ordering::Relaxed), 0, "failed checks (bit set)");
    assert!(handled > 5_000, "only {handled} interrupts handled");
    assert!(HANDLER_CANCELS.load(Ordering::Relaxed) > 500);
    assert_eq!(
        AF_RAN.load(Ordering::Relaxed),
        AF_REGISTERED.load(Ordering::Relaxed),
        "an after_func ran twice or never"
    );
    let root = &ROOT.get().unwrap().ctx;
    assert!(!root.is_done());
    assert_eq!(ARENA.stats().live, baseline, "nodes leaked");
    // Every slot is reusable: the free list survived the interrupts intact.
    let all: Vec<_> = (1..ARENA.stats().capacity)
        .map(|_| root.with_cancel().expect("a slot was lost"))
        .collect();
    assert!(root.with_cancel().is_err());
    drop(all);
    assert_eq!(ARENA.stats().live, baseline);
}
