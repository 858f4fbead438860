#![no_std]
#![no_main]
use cortex_m_rt::entry;
use panic_halt_local as _;
mod panic_halt_local {
    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! { loop {} }
}
#[entry]
fn main() -> ! { loop {} }
