//! The size probe of ctxtree's flash budget (issue 11, item 1): exactly the core API a firmware
//! uses — a `static` arena with a clock, `with_cancel`, `with_timeout`, `with_value`,
//! `after_func`, `cancel_with`, `err`, `is_done`, `value`, `cause`, `expire`, `stats` — and
//! nothing else: no formatting, no semihosting output. `ci/firmware.sh` builds it with and
//! without ctxtree (`probe-baseline`) and measures the difference of `.text` + `.rodata`.
//!
//! Variants (features): `probe-semihosting` (panic-semihosting instead of a halting panic
//! handler: any panic path reachable from the API would drag in `core::fmt`), `probe-fmt`
//! (also `Display` of a context and the tree `dump`).
#![no_std]
#![no_main]

use core::hint::black_box;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m_rt::entry;
use cortex_m_semihosting::debug;

#[cfg(not(feature = "probe-semihosting"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        cortex_m::asm::nop();
    }
}
#[cfg(feature = "probe-semihosting")]
use panic_semihosting as _;

static SINK: AtomicU32 = AtomicU32::new(0);

// Out of line: the probe's glue is one copy (also in the baseline, so it cancels out), not a
// load, an xor and a store at each of the nine uses, which would count as ctxtree's flash.
#[inline(never)]
fn sink(v: u32) {
    // A load and a store: thumbv6m has no atomic read-modify-write.
    SINK.store(
        SINK.load(Ordering::Relaxed) ^ black_box(v),
        Ordering::Relaxed,
    );
}

#[cfg(not(feature = "probe-baseline"))]
mod api {
    use core::time::Duration;

    use ctxtree::{Arena, Child, Clock, Instant, Key, ManualClock, StaticCause};

    use super::sink;

    static CLOCK: ManualClock = ManualClock::new(1_000);
    pub(crate) static ARENA: Arena<32> = Arena::new();
    static ID: Key<u32> = Key::new("id");
    static CAUSE: StaticCause = StaticCause::with_code(7, "probe");

    pub(crate) fn run() -> Result<(), ctxtree::CreateError> {
        ARENA.set_clock(&CLOCK).ok();
        let root = ARENA.background();
        let Child { ctx: job, cancel } = root.with_cancel()?;
        let req = job.with_value(&ID, core::hint::black_box(42))?;
        let Child {
            ctx: step,
            cancel: _step,
        } = req.with_timeout(Duration::from_millis(5))?;
        let _reg = step.after_func(|| sink(1))?;
        sink(step.value(&ID).unwrap_or(0));
        sink(step.is_done() as u32);
        CLOCK.advance(3);
        let next = ARENA.expire(CLOCK.now());
        sink(next.map_or(0, |i: Instant| i.ticks() as u32));
        cancel.cancel_with(&CAUSE);
        sink(step.err().is_some() as u32);
        sink(step.cause().and_then(|c| c.code()).unwrap_or(0));
        #[cfg(feature = "probe-fmt")]
        {
            use core::fmt::Write;
            struct Null;
            impl Write for Null {
                fn write_str(&mut self, s: &str) -> core::fmt::Result {
                    sink(s.len() as u32);
                    Ok(())
                }
            }
            let _ = write!(Null, "{step}");
            let _ = ARENA.dump(&mut Null);
        }
        sink(ARENA.stats().live as u32);
        Ok(())
    }
}

#[entry]
fn main() -> ! {
    #[cfg(not(feature = "probe-baseline"))]
    sink(api::run().is_ok() as u32);
    sink(7);
    debug::exit(if SINK.load(Ordering::Relaxed) != 0 {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::nop();
    }
}
