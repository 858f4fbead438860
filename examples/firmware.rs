//! Firmware, simulated on the host: `cargo run --example firmware`.
//!
//! Everything a microcontroller build would do with ctxtree, with threads standing in for tasks
//! and for the timer interrupt:
//! * a `static` arena of 16 nodes and a tick counter (`ManualClock`, 1 tick = 1 ms) that the
//!   "timer interrupt" advances and then calls `ARENA.expire(now)` on;
//! * a supervisor context with a watchdog deadline (a `StaticCause` with a fault code);
//! * two subsystems, each with tasks that have their own timeouts;
//! * a fault (a "sensor bus" error interrupt) that cancels one subsystem's subtree with a cause,
//!   through a `CancelSlot` in a `static` (what a real interrupt handler can reach: no mutex);
//! * an `after_func` that powers the radio down, run inside the interrupt that expires it.
//!
//! It prints the tree before and after, what each task saw, and the arena statistics.
//!
//! The arena, the clock and the cancel slot are all-zero `static`s (`.bss` on a chip): the
//! clock and the deadline hook are bound at boot. `firmware/` has the same pieces as a real
//! `cortex-m-rt` firmware, run under QEMU by `ci/firmware.sh`.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use core::time::Duration;
use ctxtree::Child;
use std::thread;

use ctxtree::{
    Arena, CancelSlot, Clock, Context, DeadlineWatch, Error, Key, ManualClock, StaticCause,
};

static CLOCK: ManualClock = ManualClock::new(1_000);
/// All zero until boot binds the clock and the hook: `.bss` on a chip.
static ARENA: Arena<16> = Arena::new();
/// The sensors subsystem's canceler, where the bus-fault interrupt handler can reach it.
static SENSORS: CancelSlot = CancelSlot::new();

static WATCHDOG: StaticCause =
    StaticCause::with_code(0x57, "watchdog: supervisor missed its deadline");
static BUS_FAULT: StaticCause = StaticCause::with_code(0x0F, "sensor bus fault (I2C NACK)");
static TASK: Key<&'static str> = Key::new("task");

/// The earliest deadline someone listens for: what a real timer's compare register would hold.
static ARMED_AT: AtomicU32 = AtomicU32::new(u32::MAX);
static RADIO_POWERED: AtomicBool = AtomicBool::new(true);

/// The arena's deadline hook: "program the compare register" for the earliest watched deadline.
fn arm_timer(w: DeadlineWatch) {
    ARMED_AT.fetch_min(w.at().ticks() as u32, Ordering::SeqCst);
}

/// What one task saw.
struct Outcome {
    task: &'static str,
    err: Error,
    cause: String,
    at_tick: u64,
}

/// A task: do a unit of work per tick until the context is done, like a firmware loop that
/// checks `is_done()` between steps (one atomic load, plus a counter read if it has a deadline).
fn task(ctx: Context<'static>) -> Outcome {
    loop {
        if let Some(err) = ctx.err() {
            return Outcome {
                task: ctx.value(&TASK).unwrap_or("?"),
                err,
                cause: ctx.cause().map(|c| c.to_string()).unwrap_or_default(),
                at_tick: CLOCK.now().ticks(),
            };
        }
        thread::sleep(Duration::from_micros(200)); // "work"
    }
}

fn main() -> Result<(), ctxtree::CreateError> {
    // Boot: bind the clock and the timer hook.
    ARENA.set_clock(&CLOCK).expect("the arena has no clock yet");
    ARENA.set_deadline_hook(arm_timer);
    let root = ARENA.background();
    let now = CLOCK.now();

    // The supervisor must finish its cycle within 400 ticks, or the watchdog cause fires.
    let Child {
        ctx: supervisor,
        cancel: _sup,
    } = root.with_deadline_cause(now.add_ticks(400), &WATCHDOG)?;

    // Sensors: the IMU has 300 ticks; the barometer only 60 (it will time out).
    let Child {
        ctx: sensors,
        cancel: sensors_cancel,
    } = supervisor.with_cancel()?;
    // Hand the canceler to the bus-fault "interrupt handler" (nothing was bound before).
    assert!(
        SENSORS
            .bind(sensors_cancel)
            .is_ok_and(|prev| prev.is_none())
    );
    let imu_ctx = sensors.with_value(&TASK, "imu")?;
    let Child {
        ctx: imu,
        cancel: _imu,
    } = imu_ctx.with_timeout(Duration::from_millis(300))?;
    let baro_ctx = sensors.with_value(&TASK, "baro")?;
    let Child {
        ctx: baro,
        cancel: _baro,
    } = baro_ctx.with_timeout(Duration::from_millis(60))?;

    // Comms: the radio asks for 1000 ticks but cannot outlive the supervisor's watchdog.
    let Child {
        ctx: comms,
        cancel: _comms,
    } = supervisor.with_cancel()?;
    let radio_ctx = comms.with_value(&TASK, "radio")?;
    let Child {
        ctx: radio,
        cancel: _radio,
    } = radio_ctx.with_timeout(Duration::from_millis(1000))?;
    let logger = comms.with_value(&TASK, "logger")?;
    let _power_down = radio.after_func(|| RADIO_POWERED.store(false, Ordering::SeqCst))?;

    println!(
        "== the tree at tick {} ==\n{}",
        CLOCK.now().ticks(),
        ARENA.tree()
    );
    println!(
        "radio deadline: {:?} (asked 1000, capped by the watchdog); timer armed for tick {}\n",
        radio.deadline().map(|d| d.ticks()),
        ARMED_AT.load(Ordering::SeqCst)
    );

    let mut outcomes: Vec<Outcome> = thread::scope(|s| {
        let workers: Vec<_> = [imu, baro, radio, logger]
            .into_iter()
            .map(|ctx| s.spawn(move || task(ctx)))
            .collect();

        // The timer interrupt: 1 tick per 0.5 ms of host time, then the expiry scan. At tick
        // 150 a "bus fault interrupt" cancels the sensors subtree with a cause.
        s.spawn(move || {
            for tick in 1..=450u64 {
                thread::sleep(Duration::from_micros(500));
                CLOCK.advance(1);
                let next = ARENA.expire(CLOCK.now());
                ARMED_AT.store(
                    next.map_or(u32::MAX, |n| n.ticks() as u32),
                    Ordering::SeqCst,
                );
                if tick == 150 {
                    // The bus-fault interrupt handler: lock-free, no mutex around the canceler.
                    SENSORS.cancel_with(&BUS_FAULT);
                    println!(
                        "== tick 150: bus fault, sensors cancelled ==\n{}",
                        ARENA.tree()
                    );
                }
            }
        });
        workers
            .into_iter()
            .map(|w| w.join().expect("task panicked"))
            .collect()
    });

    outcomes.sort_by_key(|o| o.at_tick);
    println!("== what each task saw ==");
    for o in &outcomes {
        println!(
            "  {:<7} tick {:>3}: {:<26} cause: {}",
            o.task,
            o.at_tick,
            o.err.to_string(),
            o.cause
        );
    }
    println!(
        "radio powered down by its after_func: {}",
        !RADIO_POWERED.load(Ordering::SeqCst)
    );
    println!(
        "supervisor: {:?}, cause: {}",
        supervisor.err(),
        supervisor
            .cause()
            .map(|c| c.to_string())
            .unwrap_or_default()
    );

    println!(
        "\n== the tree at the end (tick {}) ==\n{}",
        CLOCK.now().ticks(),
        ARENA.tree()
    );
    println!("stats while the handles live: {:?}", ARENA.stats());
    drop((
        sensors,
        comms,
        imu_ctx,
        baro_ctx,
        radio_ctx,
        supervisor,
        _power_down,
        _sup,
        _comms,
    ));
    drop((_imu, _baro, _radio));
    println!("stats after release:          {:?}", ARENA.stats());
    Ok(())
}
