//! A std service fanning one request out to three backends on threads.
//!
//! Each request gets a 150 ms deadline (`with_timeout`) and a request id (`with_value`); the
//! fan-out runs under a child (`with_cancel_cause`) that the first answer cancels, so the other
//! backends stop at once. The backends are simulated: two sleep in slices with `wait_timeout`
//! (which returns early when the context is done), one burns CPU and polls `is_done()`.
//!
//! * Request 1: `cache` answers at 50 ms and wins; `db` and `search` see `context canceled`
//!   with the cause "answered by cache".
//! * Request 2: `cache` misses, `db` and `search` outlive the deadline and see
//!   `context deadline exceeded`; the request fails with it.
//!
//! Run with `cargo run --example fanout`.

use ctxtree::Child;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ctxtree::{CancelCause, Context, Error, HeapKey};

/// The request id, readable by every backend from its context.
static REQUEST_ID: HeapKey<String> = HeapKey::new("request-id");

/// How long the request may take, end to end.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(150);

/// What a simulated backend does: answer (or miss) after `latency`, checking its context as it
/// goes, in one of two styles.
#[derive(Clone, Copy)]
struct Backend {
    name: &'static str,
    latency: Duration,
    hit: bool,
    style: Style,
}

#[derive(Clone, Copy)]
enum Style {
    /// Blocks in `ctx.wait_timeout(slice)`: woken early by cancellation or the deadline.
    Sleeps,
    /// Does CPU work in chunks and polls `ctx.is_done()` between them (one atomic load).
    Polls,
}

/// What a backend saw.
enum Outcome {
    Answered(String),
    Missed,
    /// Stopped early: the error, and the cause when one was given.
    Stopped {
        err: Error,
        cause: Option<String>,
    },
}

struct Report {
    backend: &'static str,
    outcome: Outcome,
    after: Duration,
}

/// A simulated backend call: `Some(answer)` after `latency`, unless the context ends first.
fn call(backend: Backend, ctx: &Context<'static>, start: Instant) -> Report {
    let id = ctx.value(&REQUEST_ID).expect("every request has an id");
    let stop = |err: Error| Outcome::Stopped {
        err,
        cause: ctx.cause().filter(|c| !c.is(err)).map(|c| c.to_string()),
    };
    let outcome = 'work: {
        match backend.style {
            Style::Sleeps => {
                let until = start + backend.latency;
                loop {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    if let Some(err) = ctx.wait_timeout(left.min(Duration::from_millis(20))) {
                        break 'work stop(err);
                    }
                }
            }
            Style::Polls => {
                let mut x = 0u64;
                while start.elapsed() < backend.latency {
                    for i in 0..10_000u64 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
                    }
                    std::hint::black_box(x);
                    // One atomic load (plus a clock read: this context has a deadline).
                    if ctx.is_done() {
                        break 'work stop(ctx.err().expect("done"));
                    }
                }
            }
        }
        if backend.hit {
            Outcome::Answered(format!("{}: profile for {id}", backend.name))
        } else {
            Outcome::Missed
        }
    };
    Report {
        backend: backend.name,
        outcome,
        after: start.elapsed(),
    }
}

/// Handles one request: fan out, take the first answer, cancel the rest.
fn handle(id: &str, backends: &[Backend]) -> Result<String, Error> {
    let start = Instant::now();
    let req = ctxtree::background().with_value(&REQUEST_ID, id.to_string());
    let req = req.expect("the global arena grows");
    let Child {
        ctx: req,
        cancel: _req_cancel,
    } = req.with_timeout(REQUEST_TIMEOUT).expect("arena grows");
    let Child {
        ctx: fanout,
        cancel: cancel_fanout,
    } = req.with_cancel_cause().expect("arena grows");
    println!("{id}: {fanout}");

    enum Msg {
        Report(usize, Report),
        Expired,
    }
    let (tx, rx) = mpsc::channel();
    // The request's deadline wakes the collector below (run by the timer thread; `stop` is
    // never needed: the request ends here either way).
    let deadline_tx = tx.clone();
    let _on_expiry = req
        .after_func_boxed(move || {
            let _ = deadline_tx.send(Msg::Expired);
        })
        .expect("arena grows");
    let workers: Vec<_> = backends
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            let (ctx, tx) = (fanout.clone(), tx.clone());
            thread::spawn(move || {
                let report = call(b, &ctx, start);
                let _ = tx.send(Msg::Report(i, report));
            })
        })
        .collect();
    drop(tx);

    let mut reports: Vec<Option<Report>> = backends.iter().map(|_| None).collect();
    let mut result = None;
    while reports.iter().any(Option::is_none) {
        match rx.recv().expect("every sender reports") {
            Msg::Report(i, report) => {
                if result.is_none()
                    && let Outcome::Answered(answer) = &report.outcome
                {
                    // First answer wins: stop everyone else, saying why.
                    cancel_fanout.cancel_with(CancelCause::error(Won(report.backend)));
                    result = Some(Ok(answer.clone()));
                }
                reports[i] = Some(report);
            }
            Msg::Expired => {
                if result.is_none() {
                    result = Some(Err(req.err().expect("expired")));
                }
            }
        }
    }
    for w in workers {
        w.join().expect("backend thread");
    }
    for r in reports.into_iter().flatten() {
        let ms = r.after.as_millis();
        match r.outcome {
            Outcome::Answered(a) => println!("  {:<7} answered after {ms:>3} ms: {a:?}", r.backend),
            Outcome::Missed => println!("  {:<7} missed after    {ms:>3} ms", r.backend),
            Outcome::Stopped { err, cause } => println!(
                "  {:<7} stopped after   {ms:>3} ms: {err}{}",
                r.backend,
                cause.map(|c| format!(" (cause: {c})")).unwrap_or_default()
            ),
        }
    }
    let result = result.unwrap_or_else(|| Err(req.wait()));
    println!(
        "{id}: {} in {} ms\n",
        match &result {
            Ok(a) => format!("answered {a:?}"),
            Err(e) => format!("failed: {e}"),
        },
        start.elapsed().as_millis()
    );
    result
}

/// The cause the winner's answer cancels the other backends with.
#[derive(Debug)]
struct Won(&'static str);

impl std::fmt::Display for Won {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "answered by {}", self.0)
    }
}

impl std::error::Error for Won {}

fn main() {
    let ms = Duration::from_millis;
    let live_before = ctxtree::global_arena().stats().live;

    let first = handle(
        "req-1",
        &[
            Backend {
                name: "cache",
                latency: ms(50),
                hit: true,
                style: Style::Sleeps,
            },
            Backend {
                name: "db",
                latency: ms(120),
                hit: true,
                style: Style::Sleeps,
            },
            Backend {
                name: "search",
                latency: ms(400),
                hit: true,
                style: Style::Polls,
            },
        ],
    );
    assert!(first.is_ok());

    let second = handle(
        "req-2",
        &[
            Backend {
                name: "cache",
                latency: ms(30),
                hit: false,
                style: Style::Sleeps,
            },
            Backend {
                name: "db",
                latency: ms(250),
                hit: true,
                style: Style::Sleeps,
            },
            Backend {
                name: "search",
                latency: ms(400),
                hit: true,
                style: Style::Polls,
            },
        ],
    );
    assert_eq!(second, Err(Error::DeadlineExceeded));

    // Every context of both requests has been released.
    let live_after = ctxtree::global_arena().stats().live;
    println!("global arena: {live_before} live contexts before, {live_after} after");
}
