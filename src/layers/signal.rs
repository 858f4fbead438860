//! The `signal` feature (unix): Go's `signal.NotifyContext`, a context cancelled by an OS signal.
//!
//! ```no_run
//! use signal_hook::consts::{SIGINT, SIGTERM};
//! let ctxtree::signal::Notify { ctx, stop } = ctxtree::signal::notify_context(&ctxtree::background(), &[SIGINT, SIGTERM])?;
//! let err = ctx.wait(); // Ctrl-C
//! println!("shutting down: {err}, {}", ctx.cause().unwrap()); // "... signal SIGINT received"
//! drop(stop); // a second Ctrl-C now terminates the process again
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Why the path from the signal handler is async-signal-safe
//! A signal handler may run on top of any instruction of any thread, including one that holds
//! the allocator's lock, a mutex, or is halfway through a ctxtree operation. ctxtree's cancel is
//! lock-free and allocation-free, so the tree itself could be cancelled from a handler (the
//! core's tests do: `tests/signal.rs`). But a cancel does more than flip states: it **wakes**
//! whatever waits on the context — `Waker::wake` of async tasks (which may lock a scheduler
//! queue), unparking threads blocked in `wait()`, running `after_func` callbacks (arbitrary user
//! code), dropping heap causes. None of that is async-signal-safe.
//!
//! So the handler does none of it. The path is:
//! 1. signal-hook-registry's handler (installed once per signal) runs the actions registered
//!    for the signal. Ours is signal-hook's `iterator::Signals` action: it sets the signal's
//!    pending flag (an atomic store) and writes one byte to a non-blocking self-pipe
//!    (`send(2)`, async-signal-safe). That is all that runs in signal context.
//! 2. A helper thread, started by [`notify_context`], is blocked reading that pipe. The kernel
//!    wakes it; in ordinary thread context it reads the pending signals and calls
//!    [`Canceler::cancel_with`] with a [`SignalReceived`] cause — where waking tasks and
//!    threads, running callbacks and allocating the cause are all fine.
//!
//! The cost is one thread per notify context, blocked in `recv(2)` until [`Stop`] ends it.

use ::alloc::boxed::Box;
use ::std::io;
// signal-hook takes a `core` `AtomicBool` (not the `sync` shim's): it is read in its handler.
use ::std::sync::{Arc, Mutex};
use ::std::thread::JoinHandle;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use signal_hook::iterator::{Handle, Signals};
use signal_hook::low_level::signal_name;

use crate::{CancelCause, Canceler, Child, Context};

/// The cause of a context cancelled by [`notify_context`]: which signal arrived.
///
/// ```no_run
/// # let ctx = ctxtree::background();
/// use ctxtree::signal::SignalReceived;
/// let sig = ctx.cause().and_then(|c| c.to_arc().downcast_ref::<SignalReceived>().map(|s| s.signal()));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SignalReceived {
    signal: i32,
}

impl SignalReceived {
    /// The signal number (e.g. `libc::SIGINT`).
    pub fn signal(&self) -> i32 {
        self.signal
    }

    /// The signal's name (`"SIGINT"`), if signal-hook knows it.
    pub fn name(&self) -> Option<&'static str> {
        signal_name(self.signal)
    }
}

impl fmt::Display for SignalReceived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "signal {name} received"),
            None => write!(f, "signal {} received", self.signal),
        }
    }
}

impl core::error::Error for SignalReceived {}

/// The cause of a context whose [`Stop`] was dropped (or called) before any signal arrived.
pub static STOPPED: crate::StaticCause =
    crate::StaticCause::new("signal notification stopped before any signal");

/// A child of `parent` that is cancelled when one of `signals` arrives (with a
/// [`SignalReceived`] cause naming it), when `parent` is done, or when the [`Stop`] handle is
/// dropped or [`stop`](Stop::stop)ped (Go: `signal.NotifyContext`).
///
/// While the handle lives, the signals are caught: they no longer terminate the process (the
/// first cancels the context, later ones are ignored). Stopping restores their default
/// delivery — a second Ctrl-C after the first was handled and stopped terminates, as in Go —
/// for each signal whose disposition was the default when first registered here; a signal
/// that had a handler installed outside signal-hook before keeps calling it (signal-hook
/// chains to it). A signal another signal-hook user also registered is left to that user.
///
/// Needs a `'static` parent ([`background()`](crate::background), a `static` arena, a leaked
/// `HeapArena`): the canceler moves to the helper thread (see the [module docs](self)).
///
/// Errors: an [`io::Error`] of kind `InvalidInput` for a signal that cannot be caught
/// (`SIGKILL`, `SIGSTOP`, and the synchronous `SIGILL`, `SIGFPE`, `SIGSEGV`, which
/// signal-hook forbids) or a number out of range; another `io::Error` for a signal
/// signal-hook does not know (when its default must be restored), a failed registration or
/// thread spawn; and [`CreateError`](crate::CreateError) as an `io::Error` from the arena.
pub fn notify_context(parent: &Context<'static>, signals: &[i32]) -> io::Result<Notify> {
    for &sig in signals {
        if sig <= 0 || sig >= 128 || signal_hook::consts::FORBIDDEN.contains(&sig) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                ::std::format!("signal {sig} cannot be caught"),
            ));
        }
    }
    let Child { ctx, cancel } = parent.with_cancel()?;
    let listening = Listening::start(signals)?;
    let mut iter = Signals::new(signals)?;
    let handle = iter.handle();
    let thread = ::std::thread::Builder::new()
        .name("ctxtree-signal".into())
        .spawn(move || {
            // `forever` blocks in `recv` on the self-pipe; it ends when `Handle::close` runs.
            let mut cancel = Some(cancel);
            for sig in iter.forever() {
                if let Some(c) = cancel.take() {
                    c.cancel_with(CancelCause::error(SignalReceived { signal: sig }));
                }
            }
            // Dropping `iter` here unregisters the actions (with the last handle).
            cancel
        })?;
    Ok(Notify {
        ctx,
        stop: Stop {
            handle,
            thread: Some(thread),
            listening,
        },
    })
}

/// What [`notify_context`] returns: the context and the [`Stop`] handle that ends it, in named
/// fields — a struct for the reason [`Child`](crate::Child) is one: Go's
/// `ctx, _ := signal.NotifyContext(…)` transcribed as `let (ctx, _) = …` would drop `stop` at
/// once and cancel the context before the first signal. It does not compile:
///
/// ```compile_fail,E0308
/// let (ctx, _) = ctxtree::signal::notify_context(&ctxtree::background(), &[libc::SIGINT]).unwrap();
/// # drop(ctx);
/// ```
///
/// A `Notify` derefs to its context.
#[must_use = "dropping a Notify stops the notification and cancels its context at once"]
#[derive(Debug)]
pub struct Notify {
    /// Cancelled when a signal arrives, the parent is done, or `stop` ends.
    pub ctx: Context<'static>,
    /// Stops catching the signals and cancels `ctx` (when dropped, too).
    pub stop: Stop,
}

impl core::ops::Deref for Notify {
    type Target = Context<'static>;
    fn deref(&self) -> &Context<'static> {
        &self.ctx
    }
}

/// Ends a [`notify_context`]: stops catching its signals, restores their default delivery, and
/// cancels the context (cause [`STOPPED`] if no signal came first). Dropping it does the same.
/// Go: the `stop` function.
#[must_use = "dropping the Stop handle stops the notification and cancels the context at once"]
pub struct Stop {
    handle: Handle,
    thread: Option<JoinHandle<Option<Canceler<'static>>>>,
    listening: Listening,
}

impl Stop {
    /// Stops now (the same as dropping the handle).
    pub fn stop(self) {}
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            // The thread returns its canceler if no signal came. If it panicked (a callback run
            // by the cancel panicked), the context is cancelled all the same: ctxtree finishes
            // a cancel before resuming a panic.
            if let Ok(Some(cancel)) = t.join() {
                cancel.cancel_with(&STOPPED);
            }
        }
        self.listening.stop();
    }
}

impl fmt::Debug for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stop")
            .field("signals", &self.listening.signals)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Default delivery after stop
// ---------------------------------------------------------------------------------------------

/// Per signal: how many notify contexts listen, and the flag of the "emulate the default action"
/// action that stands in for the default disposition once none does (signal-hook never
/// uninstalls its handler, so "restore the default" means running it ourselves).
struct Registry {
    listeners: [u32; 128],
    /// `Some` once a default-emulating action is registered for the signal: its condition
    /// (`true` = nobody listens, act as the default).
    default_flag: [Option<Arc<AtomicBool>>; 128],
    /// Whether the signal's disposition was looked at (on its first registration here).
    seen: [bool; 128],
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    listeners: [0; 128],
    default_flag: [const { None }; 128],
    seen: [false; 128],
});

fn registry() -> ::std::sync::MutexGuard<'static, Registry> {
    // Nothing panics while the lock is held; recover from poisoning anyway.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `sig`'s current disposition is the default (no handler installed by anyone).
fn is_default_disposition(sig: i32) -> bool {
    let mut old = core::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null `act` only reads the current disposition into `old`, valid for writes.
    let rc = unsafe { libc::sigaction(sig, core::ptr::null(), old.as_mut_ptr()) };
    // SAFETY: `sigaction` filled it in on success; zeroed is a valid `sigaction` anyway.
    rc == 0 && unsafe { old.assume_init() }.sa_sigaction == libc::SIG_DFL
}

/// The signals one notify context listens to, counted in [`REGISTRY`] while it lives.
struct Listening {
    signals: Box<[i32]>,
    stopped: bool,
}

impl Listening {
    fn start(signals: &[i32]) -> io::Result<Self> {
        let mut reg = registry();
        // First everything that can fail, changing no count: a failure leaves nothing to undo.
        for &sig in signals {
            let i = sig as usize;
            if reg.seen[i] {
                continue;
            }
            if is_default_disposition(sig) {
                // True: nobody listens yet, so act as the default does. Registered before our
                // own action, so there is no moment with signal-hook's handler installed and
                // nothing standing in for the default.
                let flag = Arc::new(AtomicBool::new(true));
                signal_hook::flag::register_conditional_default(sig, Arc::clone(&flag))?;
                reg.default_flag[i] = Some(flag);
            }
            reg.seen[i] = true;
        }
        for &sig in signals {
            let i = sig as usize;
            reg.listeners[i] += 1;
            if let Some(flag) = &reg.default_flag[i] {
                // ORDERING: SeqCst, as signal-hook's action loads it: a handler on any thread
                // sees "somebody listens" before our action is registered (after this returns).
                flag.store(false, Ordering::SeqCst);
            }
        }
        Ok(Listening {
            signals: signals.into(),
            stopped: false,
        })
    }

    fn stop(&mut self) {
        if core::mem::replace(&mut self.stopped, true) {
            return;
        }
        let mut reg = registry();
        for &sig in self.signals.iter() {
            let i = sig as usize;
            reg.listeners[i] -= 1;
            if reg.listeners[i] == 0 {
                if let Some(flag) = &reg.default_flag[i] {
                    // ORDERING: SeqCst, as above: from now on the signal acts as its default.
                    flag.store(true, Ordering::SeqCst);
                }
            }
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        // Also on the error paths of `notify_context` (registration or spawn failed).
        self.stop();
    }
}
