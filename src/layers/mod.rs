//! The `alloc` and `std` layers, built on the core and gated by features: a build without them
//! compiles none of this and pays nothing for it.

#[cfg(feature = "alloc")]
pub(crate) mod alloc;
#[cfg(feature = "std")]
pub(crate) mod std;
