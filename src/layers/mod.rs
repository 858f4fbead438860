//! The `alloc` and `std` layers, built on the core and gated by features: a build without them
//! compiles none of this and pays nothing for it.

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
