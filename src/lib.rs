//! Go's `context` package for every Rust target: cancellation trees, deadlines, timeouts,
//! causes, request-scoped values, `AfterFunc` and `WithoutCancel`, on a `no_std`, lock-free,
//! allocation-free core.
//!
//! ```
//! use core::time::Duration;
//! use ctxtree::{Child, Arena, Error, Key, ManualClock};
//!
//! static CLOCK: ManualClock = ManualClock::new(1_000); // ticks of 1 ms
//! static ARENA: Arena<64> = Arena::new().with_clock(&CLOCK);
//! static REQUEST: Key<u32> = Key::new("request");
//!
//! let req = ARENA.background().with_value(&REQUEST, 7)?;
//! let Child { ctx, cancel } = req.with_timeout(Duration::from_millis(50))?;
//! let Child { ctx: step, cancel: _step_cancel } = ctx.with_cancel()?;
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
//! | `AfterFunc(b, func() { cancel(Cause(b)) })` merge recipe | [`Context::with_linked`] (.NET: `CreateLinkedTokenSource`) |
//! | `<-ctx.Done()` | [`Context::is_done`], [`Context::done`]`.await`, `std`: [`Context::wait`] |
//! | `ctx.Err()`, `ctx.Deadline()` | [`Context::err`], [`Context::deadline`] |
//! | `Canceled`, `DeadlineExceeded` | [`Error::Canceled`], [`Error::DeadlineExceeded`] |
//! | gRPC's `grpc-timeout`, `metadata`; OpenTelemetry's propagators | [`propagate::grpc_timeout`], [`propagate::inject`], [`propagate::extract`] |
//! | `http.Request.Context()` | `tower` feature: `ctxtree::tower::ServerLayer` |
//! | `signal.NotifyContext` | `signal` feature (unix): `ctxtree::signal::notify_context` |
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
//! * `http`: [`propagate::Carrier`] for `http::HeaderMap`.
//! * `tower`: `tower` layers giving a server request its context (cancelled when the client
//!   goes away) and carrying a client request's deadline (`ctxtree::tower`).
//! * `signal` (unix): `ctxtree::signal::notify_context`, Go's `signal.NotifyContext`.
//!
//! Between processes, with no feature: [`propagate`] — the `grpc-timeout` codec, a header
//! [`Carrier`](propagate::Carrier), `inject` and `extract`.
//! * `defmt`: `defmt::Format` for [`Error`], [`CreateError`], [`ArenaStats`], [`Instant`] and
//!   the causes, and `RawArena::dump_defmt`: firmware logs them without `core::fmt`.
//! * `embassy-time`: `EmbassyClock`, a [`Clock`] on embassy-time's driver, and
//!   `EmbassyDeadlines`, the task that fires deadlines on time (with the recipe of an embassy
//!   application).

// Links to items of features that are off: to their docs.rs pages instead of broken intra-doc
// links (`cargo doc --no-default-features` with `-D warnings`, ci/nostd.sh). With the feature on
// (docs.rs builds all of them), the same `[`X`]` is an intra-doc link.
#![cfg_attr(
    not(feature = "alloc"),
    doc = "",
    doc = "[`HeapArena`]: https://docs.rs/ctxtree/latest/ctxtree/struct.HeapArena.html",
    doc = "[`HeapKey`]: https://docs.rs/ctxtree/latest/ctxtree/struct.HeapKey.html"
)]
#![cfg_attr(
    not(feature = "std"),
    doc = "",
    doc = "[`background()`]: https://docs.rs/ctxtree/latest/ctxtree/fn.background.html",
    doc = "[`todo()`]: https://docs.rs/ctxtree/latest/ctxtree/fn.todo.html",
    doc = "[`StdClock`]: https://docs.rs/ctxtree/latest/ctxtree/struct.StdClock.html",
    doc = "[`Context::wait`]: https://docs.rs/ctxtree/latest/ctxtree/struct.Context.html#method.wait"
)]
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
mod linked;
mod list;
mod node;
#[cfg(feature = "alloc")]
mod pages;
pub mod propagate;
#[cfg(any(feature = "std", ctxtree_loom))]
mod slot_cache;
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
pub use context::{Canceler, Child, Context};
pub use deadline::DeadlineWatch;
pub use dump::Tree;
pub use error::{CreateError, Error};
pub use future::{Done, DoneOwned, RunUntilDone, RunUntilDoneOwned};
pub use node::Node;
pub use time::{Clock, ClockRef, Instant, ManualClock};
pub use value::{Key, KeyKind};

#[cfg(feature = "alloc")]
pub use layers::alloc::{HeapArena, HeapKey};
#[cfg(all(feature = "embassy-time", not(ctxtree_loom)))]
pub use layers::embassy_time::{EmbassyClock, EmbassyDeadlines};
#[cfg(all(feature = "signal", unix, not(ctxtree_loom)))]
pub use layers::signal;
#[cfg(all(feature = "std", not(ctxtree_loom)))]
pub use layers::std::{StdClock, background, global_arena, timer_stats, todo};
#[cfg(all(feature = "std", not(ctxtree_loom)))]
pub use layers::timer::TimerStats;
#[cfg(all(feature = "tokio", not(ctxtree_loom)))]
pub use layers::tokio::*;
#[cfg(all(feature = "tower", not(ctxtree_loom)))]
pub use layers::tower;

/// Per-call-site atomic read-modify-write counters: a diagnostic build only
/// (`--cfg ctxtree_count_rmw`, see `tests/rmw_count.rs`).
#[cfg(all(ctxtree_count_rmw, not(ctxtree_loom), feature = "std"))]
#[doc(hidden)]
pub use sync::rmw_count;

#[cfg(all(test, ctxtree_loom))]
#[path = "../loom-tests/mod.rs"]
mod loom_tests;

/// The README's examples, compiled and run as doctests so that the README stays true.
#[cfg(all(doctest, feature = "std"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
