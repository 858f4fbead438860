//! `ctxtree::signal::notify_context` under real signals sent with `kill(2)`.
//!
//! The signals go to a **child process**: this test binary re-executed with `CHILD_ROLE` set,
//! running one test (`--exact`), which is the child's side of that test. A stray SIGINT can
//! therefore never reach the test runner. The parent reads the child's stdout line by line
//! (each wait bounded: 10 s), sends the signals, and checks how the child ended; a child that
//! does not end in time is killed and the test fails.

#![cfg(all(unix, feature = "signal", not(miri)))]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ctxtree::Error;
use ctxtree::signal::{Notify, STOPPED, SignalReceived, notify_context};
use signal_hook::consts::{SIGINT, SIGKILL, SIGSEGV, SIGTERM, SIGUSR2};

const CHILD_ROLE: &str = "CTXTREE_SIGNAL_NOTIFY_CHILD";
const LIMIT: Duration = Duration::from_secs(10);

fn is_child() -> bool {
    std::env::var_os(CHILD_ROLE).is_some()
}

/// The child's side: print a line the parent waits for.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@{line}").unwrap();
    out.flush().unwrap();
}

/// The child's side: block until the parent writes a line (or closes stdin).
fn wait_for_parent() {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// The child's side: SIGINTs delivered so far (once [`count_sigints`] is called).
static SIGINTS: AtomicUsize = AtomicUsize::new(0);

/// The child's side: counts every SIGINT delivered from now on. Call it after the first
/// `notify_context` on SIGINT (which looks at the disposition it replaces).
fn count_sigints() {
    // SAFETY: the action is one atomic add, which is async-signal-safe.
    unsafe {
        signal_hook::low_level::register(SIGINT, || {
            SIGINTS.fetch_add(1, Ordering::SeqCst);
        })
    }
    .unwrap();
}

/// The child's side: waits (at most `LIMIT`) until `n` SIGINTs were delivered. `kill` makes a
/// signal pending; on a busy machine it can be delivered after the child has read the parent's
/// next line, and so after a `stop` that the parent meant to come later (SIGINT would then take
/// its default action, and kill).
fn await_sigints(n: usize) {
    let end = Instant::now() + LIMIT;
    while SIGINTS.load(Ordering::SeqCst) < n && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The parent's side of one child.
struct Kid {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Kid {
    fn spawn(test: &str) -> Kid {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD_ROLE, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The harness may print "test name ... " on the same line first.
                if let Some((_, l)) = line.split_once('@') {
                    if tx.send(l.to_string()).is_err() {
                        return;
                    }
                }
            }
        });
        Kid {
            child,
            stdin,
            lines,
        }
    }

    /// The child's next line.
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(LIMIT) {
            Ok(l) => l,
            Err(e) => {
                let _ = self.child.kill();
                panic!("no line from the child within {LIMIT:?}: {e}");
            }
        }
    }

    fn kill(&self, sig: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: `kill` has no memory effects; the pid is our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
    }

    fn go(&mut self) {
        let _ = writeln!(self.stdin, "go");
        let _ = self.stdin.flush();
    }

    /// How the child ended (killed and a failure if it takes longer than the limit).
    fn end(&mut self) -> ExitStatus {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the child did not end within {LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Kid {
    /// A failed assertion leaves no child behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal_of(cause: &ctxtree::Cause<'_>) -> Option<i32> {
    cause
        .to_arc()
        .downcast_ref::<SignalReceived>()
        .map(SignalReceived::signal)
}

#[test]
fn sigint_cancels_the_context_with_the_signal_as_cause_and_does_not_kill() {
    if is_child() {
        let ctxtree::Child {
            ctx: parent,
            cancel: _keep,
        } = ctxtree::background().with_cancel().unwrap();
        let Notify { ctx, stop } = notify_context(&parent, &[SIGINT, SIGTERM]).unwrap();
        let ctxtree::Child {
            ctx: work,
            cancel: _w,
        } = ctx.with_cancel().unwrap(); // derived work is reached too
        count_sigints();
        say("ready");
        let err = work.wait_timeout(LIMIT);
        let cause = ctx.cause().map(|c| (c.to_string(), signal_of(&c)));
        say(&format!("{err:?} {cause:?} {:?}", work.err()));
        // A second SIGINT while still listening: caught, not fatal.
        wait_for_parent();
        await_sigints(2);
        drop(stop);
        say("stopped");
        return;
    }
    let mut kid =
        Kid::spawn("sigint_cancels_the_context_with_the_signal_as_cause_and_does_not_kill");
    assert_eq!(kid.line(), "ready");
    kid.kill(SIGINT);
    assert_eq!(
        kid.line(),
        format!("Some(Canceled) Some((\"signal SIGINT received\", Some({SIGINT}))) Some(Canceled)")
    );
    kid.kill(SIGINT);
    kid.go();
    assert_eq!(kid.line(), "stopped");
    let status = kid.end();
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigterm_names_itself() {
    if is_child() {
        let Notify { ctx, stop: _stop } =
            notify_context(&ctxtree::background(), &[SIGINT, SIGTERM]).unwrap();
        say("ready");
        let err = ctx.wait_timeout(LIMIT);
        say(&format!("{err:?} {}", ctx.cause().unwrap()));
        return;
    }
    let mut kid = Kid::spawn("sigterm_names_itself");
    assert_eq!(kid.line(), "ready");
    kid.kill(SIGTERM);
    assert_eq!(kid.line(), "Some(Canceled) signal SIGTERM received");
    assert!(kid.end().success());
}

#[test]
fn stop_restores_the_default_delivery() {
    if is_child() {
        let Notify { ctx, stop } = notify_context(&ctxtree::background(), &[SIGINT]).unwrap();
        stop.stop();
        say(&format!("{:?} {}", ctx.err(), ctx.cause().unwrap()));
        say("ready");
        wait_for_parent(); // killed by SIGINT while here, if the default is back
        say("survived");
        return;
    }
    let mut kid = Kid::spawn("stop_restores_the_default_delivery");
    assert_eq!(kid.line(), format!("Some(Canceled) {}", STOPPED.message()));
    assert_eq!(kid.line(), "ready");
    kid.kill(SIGINT);
    let status = kid.end();
    assert_eq!(
        status.signal(),
        Some(SIGINT),
        "terminated by SIGINT: {status:?}"
    );
}

#[test]
fn notify_again_after_stop_catches_again() {
    if is_child() {
        let Notify { ctx: _, stop } = notify_context(&ctxtree::background(), &[SIGINT]).unwrap();
        drop(stop);
        let Notify {
            ctx: first,
            stop: stop_first,
        } = notify_context(&ctxtree::background(), &[SIGINT]).unwrap();
        let Notify {
            ctx: second,
            stop: stop_second,
        } = notify_context(&ctxtree::background(), &[SIGINT]).unwrap();
        count_sigints();
        say("ready");
        let _ = first.wait_timeout(LIMIT);
        let _ = second.wait_timeout(LIMIT);
        say(&format!(
            "{} | {}",
            first.cause().unwrap(),
            second.cause().unwrap()
        ));
        // One of two stopped: the other still listens, so SIGINT stays caught.
        drop(stop_first);
        say("one stopped");
        wait_for_parent();
        await_sigints(2);
        drop(stop_second);
        say("both stopped");
        wait_for_parent(); // killed here
        say("survived");
        return;
    }
    let mut kid = Kid::spawn("notify_again_after_stop_catches_again");
    assert_eq!(kid.line(), "ready");
    kid.kill(SIGINT);
    assert_eq!(
        kid.line(),
        "signal SIGINT received | signal SIGINT received"
    );
    assert_eq!(kid.line(), "one stopped");
    kid.kill(SIGINT);
    kid.go();
    assert_eq!(kid.line(), "both stopped");
    kid.kill(SIGINT);
    let status = kid.end();
    assert_eq!(status.signal(), Some(SIGINT), "{status:?}");
}

// In-process tests: no signal is sent to this process.

#[test]
fn signals_that_cannot_be_caught_are_an_error() {
    if is_child() {
        return;
    }
    for sig in [SIGKILL, SIGSEGV, 0, -1, 1000] {
        let err = notify_context(&ctxtree::background(), &[SIGINT, sig]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{sig}");
    }
}

#[test]
fn the_parent_and_the_stop_handle_cancel_it_too() {
    if is_child() {
        return;
    }
    let ctxtree::Child {
        ctx: parent,
        cancel: cancel_parent,
    } = ctxtree::background().with_cancel().unwrap();
    let Notify { ctx, stop } = notify_context(&parent, &[SIGUSR2]).unwrap();
    assert_eq!(ctx.err(), None);
    cancel_parent.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    drop(stop);

    let Notify { ctx, stop } = notify_context(&ctxtree::background(), &[SIGUSR2]).unwrap();
    drop(stop);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(ctx.cause().unwrap().is_static(&STOPPED));
}
