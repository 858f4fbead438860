//! The `alloc`, `std`, `tokio`, `defmt` and `embassy-time` layers, built on the core and gated by
//! features: a build without them compiles none of this and pays nothing for it.

#[cfg(feature = "alloc")]
pub(crate) mod alloc;
// The std layer's global arena is a `static`, which needs `const` atomics: not under loom.
#[cfg(all(feature = "std", not(ctxtree_loom)))]
pub(crate) mod std;
// The global arena's timer: its lock-free protocol is model-checked under loom (with `alloc`).
#[cfg(any(
    all(feature = "std", not(ctxtree_loom)),
    all(feature = "alloc", ctxtree_loom)
))]
pub(crate) mod timer;
#[cfg(all(feature = "tokio", not(ctxtree_loom)))]
pub(crate) mod tokio;
// `Carrier` for `http::HeaderMap` (a trait impl: nothing to name publicly).
#[cfg(feature = "http")]
pub(crate) mod http;
#[cfg(all(feature = "tower", not(ctxtree_loom)))]
pub mod tower;
// Unix only: signal-hook's self-pipe and `sigaction`.
#[cfg(all(feature = "signal", unix, not(ctxtree_loom)))]
pub mod signal;
// `defmt::Format` impls and `RawArena::dump_defmt`: impls and inherent methods, nothing to
// re-export.
#[cfg(feature = "defmt")]
mod defmt;
// embassy-time's driver as a `Clock`, and the deadline task. Its waker slot is a `static`
// (`const` constructors): not under loom.
#[cfg(all(feature = "embassy-time", not(ctxtree_loom)))]
pub(crate) mod embassy_time;
