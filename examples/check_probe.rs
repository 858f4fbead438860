//! Assembly probe for `Context::is_done` / `err` (issue 14): `cargo rustc --release --example
//! check_probe -- --emit asm`, then read `probe_is_done` / `probe_err` in the `.s` file.
use ctxtree::{Arena, Context, Error};

#[inline(never)]
#[unsafe(no_mangle)]
pub fn probe_is_done(c: &Context<'_>) -> bool {
    c.is_done()
}

#[inline(never)]
#[unsafe(no_mangle)]
pub fn probe_err(c: &Context<'_>) -> Option<Error> {
    c.err()
}

static ARENA: Arena<4> = Arena::new();

fn main() {
    let child = ARENA.background().with_cancel().expect("arena");
    println!("{} {:?}", probe_is_done(&child), probe_err(&child));
}
