//! Go's `context` package for every Rust target: cancellation trees, deadlines, timeouts,
//! causes, request-scoped values, `AfterFunc` and `WithoutCancel`, on a `no_std`, lock-free,
//! allocation-free core.
//!
//! ```
//! use core::time::Duration;
//! use ctxtree::{Arena, Error, Key, ManualClock};
//!
//! static CLOCK: ManualClock = ManualClock::new(1_000); // ticks of 1 ms
//! static ARENA: Arena<64> = Arena::new().with_clock(&CLOCK);
//! static REQUEST: Key<u32> = Key::new("request");
//!
//! let req = ARENA.background().with_value(&REQUEST, 7)?;
//! let (ctx, cancel) = req.with_timeout(Duration::from_millis(50))?;
//! let (step, _step_cancel) = ctx.with_cancel()?;
//! assert_eq!(step.value(&REQUEST), Some(7));
//!
//! CLOCK.advance(50);
//! assert_eq!(step.err(), Some(Error::DeadlineExceeded)); // the parent's deadline reached it
//! drop(cancel);
//! # Ok::<(), ctxtree::CreateError>(())
//! ```
//!
//! # The pieces
//! * An [`Arena<N>`] holds `N` context nodes of one cache line each; it can be a `static`.
//!   Running out is [`CreateError::ArenaFull`], never a panic or a wait. With `alloc`,
//!   [`HeapArena`] is sized at run time or grows by pages; with `std`, [`background()`] uses a
//!   global growing arena.
//! * A [`Context`] is a counted handle on a node. [`Context::with_cancel`] and friends return a
//!   child and a [`Canceler`], which cancels when dropped — Rust's `defer cancel()`.
//! * Queries — [`is_done`](Context::is_done), [`err`](Context::err),
//!   [`cause`](Context::cause), [`deadline`](Context::deadline), [`value`](Context::value) —
//!   are wait-free loads; `is_done` is one atomic load for a context without a deadline.
//! * async: [`Context::done`] is a future; [`Context::run_until_done`] guards another one.
//!
//! # Go → ctxtree
//! | Go | ctxtree |
//! |---|---|
//! | `context.Background()`, `TODO()` | [`RawArena::background`], [`RawArena::todo`]; `std`: [`background()`], [`todo()`] |
//! | `WithCancel`, `WithCancelCause` | [`Context::with_cancel`], [`Context::with_cancel_cause`] → `(Context, Canceler)` |
//! | `cancel()`, `cancel(cause)` | [`Canceler::cancel`], [`Canceler::cancel_with`]; dropping the canceler cancels |
//! | `Cause(ctx)` | [`Context::cause`] |
//! | `WithDeadline`, `WithTimeout` (+`Cause`) | [`Context::with_deadline`], [`Context::with_timeout`], `…_cause` |
//! | `WithValue`, `ctx.Value(k)` | [`Context::with_value`], [`Context::value`] with a `static` [`Key`] |
//! | `WithoutCancel` | [`Context::without_cancel`] |
//! | `AfterFunc(ctx, f)` → `stop` | [`Context::after_func`] → [`AfterFunc::stop`] |
//! | `<-ctx.Done()` | [`Context::is_done`], [`Context::done`]`.await`, `std`: [`Context::wait`] |
//! | `ctx.Err()`, `ctx.Deadline()` | [`Context::err`], [`Context::deadline`] |
//! | `Canceled`, `DeadlineExceeded` | [`Error::Canceled`], [`Error::DeadlineExceeded`] |
//! | (tokio-util) `CancellationToken` | `tokio` feature: `Context::to_cancellation_token`, `context_from_token` |
//!
//! # Design
//! * **Nodes and handles.** Each node has a reference count; handles, children (on their
//!   parent), list membership and in-flight traversals each hold one. Memory is type-stable
//!   (slots are recycled, never returned), which is what lets lock-free traversals read stale
//!   slots safely; they act on a node only after taking a reference on it.
//! * **One word of state.** A canceller node's `head` word holds both its done state (done
//!   flag, error, cause flag) and the link to its first child, so publishing "done" closes the
//!   child list in the same atomic step: a concurrent `with_cancel` either links in time to be
//!   cancelled, or sees the parent done and is born done. See [`tree`](crate#design) invariants
//!   in the source (`src/tree.rs`).
//! * **Cancellation** walks the child lists iteratively, post-order, and helps any concurrent
//!   canceller instead of waiting for it, so `cancel()` returns with the whole subtree done even
//!   when an interrupt handler cancels a tree the interrupted code is cancelling.
//! * **Lock-free** means no spin lock, no mutex, no waiting for another thread on any
//!   context operation: every loop retries only because another thread's atomic step
//!   succeeded. The one lock is the waiter list of `done()` futures, which a canceller never
//!   waits on (it hands the wake-up to the lock holder). On targets without compare-and-swap,
//!   `portable-atomic`'s critical-section fallback supplies it.
//!
//! # Panics in user code
//! ctxtree runs your code inside its own operations: `after_func` callbacks and wakers during a
//! cancel or an expiry, the `Drop` of a [`HeapKey`] value or a heap cause when a node is freed,
//! a cause's `Display` in [`RawArena::dump`], a [`Clock`] and a deadline hook. A panic there
//! never leaves a descendant uncancelled, never loses another wake-up, never leaks a slot or a
//! reference, and never leaves the arena locked or half-updated: the operation finishes
//! everything it had to do (the whole subtree cancelled, every other callback run once, every
//! waiter woken, every freed node returned) and then resumes the **first** panic; later ones
//! are dropped. That is [`Canceler::cancel`], dropping a [`Canceler`], [`RawArena::expire`], a
//! query that observes a passed deadline, and a release that frees a node. The `std` timer
//! thread catches the panics of the callbacks it runs (the panic hook still reports them) and
//! keeps firing deadlines.
//!
//! This needs `catch_unwind`, so `std`. Without `std`, firmware builds with `panic = "abort"` or
//! a panic handler that halts, and nothing unwinds. A `no_std` build that does unwind aborts
//! when a panic leaves user code inside an operation, rather than let a half-cancelled tree be
//! caught and used.
//!
//! # Features
//! * `std` (default): [`StdClock`], the global arena behind [`background()`], blocking waits, a
//!   timer thread that fires deadlines on time, `after_func_spawn`.
//! * `alloc`: [`HeapKey`] values of any type, heap causes, boxed `after_func` closures,
//!   [`HeapArena`].
//! * `tokio`: conversions to and from `tokio_util::sync::CancellationToken`.

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(docsrs, doc(auto_cfg(hide(ctxtree_loom))))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::undocumented_unsafe_blocks,
    clippy::std_instead_of_core,
    clippy::alloc_instead_of_core
)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod after_func;
mod arena;
mod cancel_slot;
mod cause;
mod context;
mod deadline;
mod dump;
mod error;
mod future;
mod list;
mod node;
#[cfg(feature = "alloc")]
mod pages;
mod state;
mod sync;
mod time;
mod tree;
mod unwind;
mod value;
mod waiters;

mod layers;

pub use after_func::AfterFunc;
pub use arena::{Arena, ArenaStats, ClockAlreadySet, RawArena};
pub use cancel_slot::CancelSlot;
pub use cause::{CancelCause, Cause, SharedCause, StaticCause};
pub use context::{Canceler, Context};
pub use deadline::DeadlineWatch;
pub use dump::Tree;
pub use error::{CreateError, Error};
pub use future::{Done, DoneOwned, RunUntilDone, RunUntilDoneOwned};
pub use node::Node;
pub use time::{Clock, ClockRef, Instant, ManualClock};
pub use value::{Key, KeyKind};

#[cfg(feature = "alloc")]
pub use layers::alloc::{HeapArena, HeapKey};
#[cfg(all(feature = "std", not(ctxtree_loom)))]
pub use layers::std::{StdClock, background, global_arena, todo};
#[cfg(all(feature = "tokio", not(ctxtree_loom)))]
pub use layers::tokio::*;

#[cfg(all(test, ctxtree_loom))]
#[path = "../loom-tests/mod.rs"]
mod loom_tests;

/// The README's examples, compiled and run as doctests so that the README stays true.
#[cfg(all(doctest, feature = "std"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
