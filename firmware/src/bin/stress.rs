//! A real firmware for ctxtree, run under QEMU by `ci/firmware.sh` (lm3s6965evb, Cortex-M3;
//! microbit, Cortex-M0 without compare-and-swap).
//!
//! The main loop builds and tears down trees of contexts — a job with a value, a timeout, a
//! cancel child and an `after_func` — while the SysTick interrupt, every few hundred
//! instructions, in the same tree:
//! * advances the clock and drives deadlines with `ARENA.expire(now)`;
//! * cancels the job the main loop is working on, through a [`CancelSlot`] (no mutex, no
//!   critical section), with its own cause;
//! * creates and cancels contexts with deadlines of its own under a subtree of the same root,
//!   and checks that the ones past their deadline are done.
//!
//! Both sides check Go's invariants as they go: `err()` implies `is_done()`, a cancelled parent
//! has cancelled children with its error and cause, a child born under a done parent is done,
//! an `after_func` has run once its context is done, values are found, and `stats().live`
//! comes back to its baseline. Then, with the interrupt off, it measures the stack of the
//! deepest operations (cancelling, then releasing, the longest chain the arena holds) by
//! painting the stack. It prints a summary over semihosting and exits with a status.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use core::time::Duration;
use ctxtree::Child;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use ctxtree::{Arena, CancelSlot, Canceler, Clock, Context, Error, Key, ManualClock, StaticCause};

/// Slots: the lm3s6965 has 64 KiB of RAM (48 B a node: a 1,000-deep chain fits), the nRF51
/// 16 KiB.
#[cfg(not(feature = "microbit"))]
const SLOTS: usize = 1_040;
#[cfg(feature = "microbit")]
const SLOTS: usize = 150;

/// Main-loop iterations.
#[cfg(not(feature = "microbit"))]
const ITERATIONS: u32 = 4_000;
#[cfg(feature = "microbit")]
const ITERATIONS: u32 = 2_000;

/// SysTick period in core cycles: short, so that interrupts land inside ctxtree calls.
const SYSTICK_RELOAD: u32 = 2_000;

/// In `.bss` (checked by `ci/firmware.sh`): the clock is bound at boot.
static ARENA: Arena<SLOTS> = Arena::new();
/// One tick per SysTick interrupt.
static CLOCK: ManualClock = ManualClock::new(1_000);

/// The main loop's current job, for the interrupt to cancel.
static JOB: CancelSlot = CancelSlot::new();
/// The subtree the interrupt works in, handed over at boot.
static ISR_BASE: CancelSlot = CancelSlot::new();

static ISR_CAUSE: StaticCause = StaticCause::with_code(0x15, "cancelled by the SysTick handler");
static MAIN_CAUSE: StaticCause = StaticCause::with_code(0x3A, "cancelled by the main loop");
static ID: Key<u32> = Key::new("job-id");

// Counters: each has one writer (main or the interrupt), so a load and a store suffice
// (thumbv6m has no atomic read-modify-write).
static TICKS: AtomicU32 = AtomicU32::new(0);
static ISR_JOB_CANCELS: AtomicU32 = AtomicU32::new(0);
static ISR_CREATED: AtomicU32 = AtomicU32::new(0);
static ISR_EXPIRED_SEEN: AtomicU32 = AtomicU32::new(0);
static ISR_FAILURES: AtomicU32 = AtomicU32::new(0);
static ISR_FULL: AtomicU32 = AtomicU32::new(0);
/// The interrupt landed while the main loop was inside a ctxtree call.
static ISR_INSIDE: AtomicU32 = AtomicU32::new(0);
static IN_CALL: AtomicBool = AtomicBool::new(false);
/// Main asks the interrupt to drop its contexts; the interrupt says it has.
static ISR_STOP: AtomicBool = AtomicBool::new(false);
static ISR_STOPPED: AtomicBool = AtomicBool::new(false);
/// Set by the current job's `after_func` (run by whoever cancels: main or the interrupt).
static AF_RAN: AtomicBool = AtomicBool::new(false);

fn bump(c: &AtomicU32) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("firmware: PANIC: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::nop();
    }
}

/// Checks `cond`, printing `what` and exiting with a failure status if it does not hold.
fn check(cond: bool, what: &str, iteration: u32) {
    if !cond {
        hprintln!("firmware: FAILED at iteration {}: {}", iteration, what);
        debug::exit(debug::EXIT_FAILURE);
    }
}

/// Go's invariants on a done-or-not context whose canceller ancestor is `parent`: `err` implies
/// `is_done`, a done parent has a done child with the same error and cause (unless the child's
/// own deadline fired first: then `DeadlineExceeded`).
fn consistent(parent: &Context<'_>, child: &Context<'_>) -> bool {
    // In this order: the parent first (once done, its whole subtree is: a cancel by the
    // interrupt completes before the main loop resumes), then the child's error, then its done
    // flag (an error, once seen, is never taken back).
    let parent_err = parent.err();
    let child_err = child.err();
    if child_err.is_some() && !child.is_done() {
        return false;
    }
    match parent_err {
        None => true,
        Some(e) => match child_err {
            None => false,
            Some(ce) if ce == e => {
                child.cause().and_then(|c| c.code()) == parent.cause().and_then(|c| c.code())
                    || ce == Error::DeadlineExceeded
            }
            Some(ce) => ce == Error::DeadlineExceeded,
        },
    }
}

/// What the interrupt keeps between ticks: its subtree and a few children with deadlines.
struct IsrState {
    base: Context<'static>,
    _base_cancel: Canceler<'static>,
    kids: [Option<(Context<'static>, Canceler<'static>)>; 4],
}

#[exception]
fn SysTick() {
    static mut STATE: Option<IsrState> = None;
    if IN_CALL.load(Ordering::Relaxed) {
        bump(&ISR_INSIDE);
    }
    bump(&TICKS);
    let tick = TICKS.load(Ordering::Relaxed);
    CLOCK.advance(1);
    let now = CLOCK.now();
    ARENA.expire(now);

    if ISR_STOP.load(Ordering::Relaxed) {
        *STATE = None; // drops (cancels) the interrupt's contexts
        ISR_STOPPED.store(true, Ordering::Relaxed);
        return;
    }
    if STATE.is_none()
        && let Some(c) = ISR_BASE.take()
    {
        *STATE = Some(IsrState {
            base: c.context(),
            _base_cancel: c,
            kids: [None, None, None, None],
        });
    }

    // Every third tick: cancel whatever job the main loop is on.
    if tick.is_multiple_of(3) && JOB.is_bound() {
        JOB.cancel_with(&ISR_CAUSE);
        bump(&ISR_JOB_CANCELS);
    }

    let Some(state) = STATE.as_mut() else {
        return;
    };
    let i = tick as usize % state.kids.len();
    // Check the child of this slot before replacing it: past its deadline, `expire` above made
    // it done with `DeadlineExceeded`.
    if let Some((kid, _)) = &state.kids[i] {
        let due = kid.deadline().is_some_and(|d| d <= now);
        if due {
            if kid.err() != Some(Error::DeadlineExceeded) {
                bump(&ISR_FAILURES);
            }
            bump(&ISR_EXPIRED_SEEN);
        }
        if !consistent(&state.base, kid) {
            bump(&ISR_FAILURES);
        }
    }
    state.kids[i] = None; // cancels and releases it
    match state
        .base
        .with_timeout(Duration::from_millis(1 + tick as u64 % 3))
    {
        Ok(pair) => {
            if !consistent(&state.base, &pair.ctx) {
                bump(&ISR_FAILURES);
            }
            state.kids[i] = Some(pair.into_parts());
            bump(&ISR_CREATED);
        }
        Err(_) => bump(&ISR_FULL),
    }
}

/// Runs `f` flagged as "inside a ctxtree call", so the interrupt can count its landings.
fn inside<R>(f: impl FnOnce() -> R) -> R {
    IN_CALL.store(true, Ordering::Relaxed);
    let r = f();
    IN_CALL.store(false, Ordering::Relaxed);
    r
}

/// One job: build a small tree under `root`, let the interrupt (or the main loop itself) cancel
/// it, check everything, tear it down.
fn job(root: &Context<'static>, n: u32) {
    AF_RAN.store(false, Ordering::Relaxed);
    let Ok(Child { ctx: job, cancel }) = inside(|| root.with_cancel()) else {
        check(false, "arena full creating a job", n);
        return;
    };
    // The previous job, if the interrupt did not cancel it, ends here.
    if let Ok(prev) = JOB.bind(cancel) {
        drop(prev);
    }
    let built = inside(|| -> Result<_, ctxtree::CreateError> {
        let req = job.with_value(&ID, n)?;
        let Child {
            ctx: step,
            cancel: step_cancel,
        } = req.with_timeout(Duration::from_millis(4))?;
        let Child {
            ctx: leaf,
            cancel: leaf_cancel,
        } = step.with_cancel()?;
        let reg = leaf.after_func(|| AF_RAN.store(true, Ordering::Relaxed))?;
        Ok((req, step, step_cancel, leaf, leaf_cancel, reg))
    });
    let Ok((req, step, step_cancel, leaf, leaf_cancel, reg)) = built else {
        check(false, "arena full building a job", n);
        return;
    };
    check(leaf.value(&ID) == Some(n), "value lookup", n);
    // Work until done: the interrupt cancels every third tick, the step's deadline is 4 ticks
    // away, and every fifth job the main loop cancels it itself. Bounded in ticks (QEMU's
    // SysTick follows the host's clock, not the instruction count: a poll count alone would
    // not bound the wait in ticks) and in polls.
    let start = TICKS.load(Ordering::Relaxed);
    let mut polls = 0u32;
    while !inside(|| leaf.is_done())
        && TICKS.load(Ordering::Relaxed).wrapping_sub(start) < 20
        && polls < 100_000_000
    {
        check(consistent(&job, &step), "job/step mid-flight", n);
        check(consistent(&step, &leaf), "step/leaf mid-flight", n);
        if n.is_multiple_of(5)
            && polls == 10
            && let Some(c) = JOB.take()
        {
            c.cancel_with(&MAIN_CAUSE);
        }
        polls += 1;
    }
    if !leaf.is_done() {
        hprintln!(
            "firmware: job {} still live after {} polls: ticks {}, now {:?}, deadline {:?}, job {:?}, step {:?}, bound {}",
            n,
            polls,
            TICKS.load(Ordering::Relaxed),
            CLOCK.now(),
            leaf.deadline(),
            job.err(),
            step.err(),
            JOB.is_bound()
        );
    }
    check(leaf.is_done(), "the job never ended", n);
    check(consistent(&job, &step), "job/step done", n);
    check(consistent(&step, &leaf), "step/leaf done", n);
    check(AF_RAN.load(Ordering::Relaxed), "after_func did not run", n);
    if job.is_done() {
        let code = job.cause().and_then(|c| c.code());
        check(
            job.err() == Some(Error::Canceled)
                && (code == Some(ISR_CAUSE.code()) || code == Some(MAIN_CAUSE.code())),
            "job error and cause",
            n,
        );
    } else {
        // Only the step's deadline fired: the job itself is live.
        check(
            step.err() == Some(Error::DeadlineExceeded),
            "step deadline",
            n,
        );
    }
    // A child created under a done context is born done, with its error.
    if let Ok(Child {
        ctx: late,
        cancel: _late_cancel,
    }) = inside(|| leaf.with_cancel())
    {
        check(late.err() == leaf.err(), "child of a done context", n);
    }
    inside(|| drop((reg, leaf_cancel, leaf, step_cancel, step, req, job)));
    if let Some(c) = JOB.take() {
        drop(c);
    }
}

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap();
    ARENA.set_clock(&CLOCK).unwrap();

    let Child {
        ctx: root,
        cancel: root_cancel,
    } = ARENA.background().with_cancel().unwrap();
    let Child {
        ctx: isr_base,
        cancel: isr_base_cancel,
    } = root.with_cancel().unwrap();
    drop(isr_base); // the interrupt gets a handle through the canceler
    let _ = ISR_BASE.bind(isr_base_cancel);

    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(SYSTICK_RELOAD);
    cp.SYST.clear_current();
    cp.SYST.enable_counter();
    cp.SYST.enable_interrupt();

    let mut peak_live = 0;
    for n in 1..=ITERATIONS {
        job(&root, n);
        peak_live = peak_live.max(ARENA.stats().live);
        check(
            ISR_FAILURES.load(Ordering::Relaxed) == 0,
            "an invariant checked in the interrupt",
            n,
        );
    }

    // Stop the interrupt's work (it drops its contexts), then the interrupt itself.
    ISR_STOP.store(true, Ordering::Relaxed);
    let mut spins = 0u32;
    while !ISR_STOPPED.load(Ordering::Relaxed) && spins < 10_000_000 {
        spins += 1;
    }
    check(
        ISR_STOPPED.load(Ordering::Relaxed),
        "interrupt did not stop",
        0,
    );
    cp.SYST.disable_interrupt();
    cp.SYST.disable_counter();
    if let Some(c) = ISR_BASE.take() {
        drop(c); // never taken (the interrupt never ran): release it here
    }
    // Everything but the root is released: `live` is back to its baseline.
    let live = ARENA.stats().live;
    check(
        live == 1,
        "stats().live after the stress is not 1 (the root)",
        0,
    );

    // The deepest operation: cancel, then release, the longest chain the arena holds.
    let depth = SLOTS - 2;
    let (cancel_stack, release_stack) = deepest(&root, depth);
    drop(root_cancel);
    drop(root);
    let stats = ARENA.stats();
    check(stats.live == 0, "nodes left after the teardown", 0);

    hprintln!(
        "firmware: OK: {} iterations, {} SysTick interrupts ({} inside a ctxtree call), {} jobs cancelled by the interrupt, {} contexts created and {} seen expired by it, {} refused (arena full); peak live {}, high water {} of {}",
        ITERATIONS,
        TICKS.load(Ordering::Relaxed),
        ISR_INSIDE.load(Ordering::Relaxed),
        ISR_JOB_CANCELS.load(Ordering::Relaxed),
        ISR_CREATED.load(Ordering::Relaxed),
        ISR_EXPIRED_SEEN.load(Ordering::Relaxed),
        ISR_FULL.load(Ordering::Relaxed),
        peak_live,
        stats.high_water,
        stats.capacity,
    );
    hprintln!(
        "firmware: stack: cancel of a {}-deep chain {} B, its release {} B; node {} B, arena {} B",
        depth,
        cancel_stack,
        release_stack,
        core::mem::size_of::<ctxtree::Node>(),
        core::mem::size_of_val(&ARENA),
    );
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::nop();
    }
}

/// Builds a `depth`-deep chain of cancel contexts under `root` (keeping only the top canceler
/// and the deepest handle), then measures the stack that cancelling it from the top, and then
/// releasing its deepest handle (which frees the whole chain), use.
fn deepest(root: &Context<'static>, depth: usize) -> (usize, usize) {
    let Child {
        ctx: top,
        cancel: top_cancel,
    } = root.with_cancel().unwrap();
    let mut deep = top;
    for _ in 1..depth {
        let Child { ctx: child, cancel } = deep.with_cancel().unwrap();
        cancel.disarm(); // stays linked under its parent until the parent is cancelled
        deep = child;
    }
    check(ARENA.stats().live == depth + 1, "chain length", 0);
    let cancel_stack = stack_of(|| top_cancel.cancel());
    check(
        deep.err() == Some(Error::Canceled),
        "the chain's bottom is cancelled",
        0,
    );
    drop(top_cancel);
    let release_stack = stack_of(move || drop(deep));
    (cancel_stack, release_stack)
}

const PAINT: u32 = 0xC0DE_CAFE;
/// Bytes painted below the caller's stack pointer.
const PAINTED: usize = 2_048;

/// The stack `f` uses, in bytes below the caller's stack pointer, by painting.
#[inline(never)]
fn stack_of(f: impl FnOnce()) -> usize {
    let sp = cortex_m::register::msp::read() as usize;
    // Leave the top 64 bytes to `paint`'s own frame.
    let top = sp - 64;
    let bottom = sp - PAINTED;
    paint(bottom, top);
    f();
    let mut a = bottom;
    // SAFETY: [bottom, top) is stack memory below our frame, word-aligned (the stack pointer
    // is 8-aligned), unused by anyone but `f`, which has returned.
    while a < top && unsafe { core::ptr::read_volatile(a as *const u32) } == PAINT {
        a += 4;
    }
    check(a > bottom, "the painted stack region was exhausted", 0);
    sp - a
}

#[inline(never)]
fn paint(bottom: usize, top: usize) {
    let mut a = bottom;
    while a < top {
        // SAFETY: stack memory below the caller's frame and below our own (which lies in the
        // unpainted 64 bytes under the caller's stack pointer), word-aligned.
        unsafe { core::ptr::write_volatile(a as *mut u32, PAINT) };
        a += 4;
    }
}
