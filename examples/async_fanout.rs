//! The fan-out of `examples/fanout.rs` with tokio tasks instead of threads.
//!
//! Each request gets a 150 ms deadline (`with_timeout`) and a request id (`with_value`); the
//! backends run as tasks under a fan-out context (`with_cancel_cause`) that the first answer
//! cancels. Two backends spawn their work as a task of its own with
//! `tokio::spawn(ctx.run_until_done_owned(..))` — an owned, `'static` future that drops the
//! work the moment the context is done; the third streams pages in a `select!` on `ctx.done()`.
//! The handler itself waits for the first answer with `fanout.run_until_done(..)`, and a watcher
//! task spawned with `tokio::spawn(fanout.done_owned())` reports how the fan-out ended.
//!
//! The fan-out context is *linked* (`req.with_linked(&shutdown)`): it is also done when the
//! server's shutdown context is, with the shutdown's cause. Each request also writes an audit
//! record in a task that must outlive the request but not run forever: Go's
//! `ctx, _ := WithTimeout(WithoutCancel(req), time.Second)`, spelled with `without_cancel` and a
//! *disarmed* canceler.
//!
//! * Request 1: `cache` answers at 50 ms and wins; `db` and `search` are cancelled by the win.
//! * Request 2: `cache` misses; `db` and `search` outlive the deadline and see
//!   `context deadline exceeded`, as does the request.
//! * Request 3: the server shuts down at 60 ms: every backend and the request stop with the
//!   shutdown's cause, while the request's own context is left alone; the audit records of all
//!   three requests are still written.
//!
//! Nothing polls the deadline: ctxtree's timer thread wakes the tasks waiting on it.
//!
//! Run with `cargo run --example async_fanout`.

use ctxtree::Child;
use std::time::{Duration, Instant};

use ctxtree::{CancelCause, Context, Error, HeapKey, StaticCause};
use tokio::sync::mpsc;

static REQUEST_ID: HeapKey<String> = HeapKey::new("request-id");

const REQUEST_TIMEOUT: Duration = Duration::from_millis(150);

static SHUTDOWN: StaticCause = StaticCause::new("server shutting down");

#[derive(Clone, Copy)]
struct Backend {
    name: &'static str,
    latency: Duration,
    hit: bool,
    style: Style,
}

#[derive(Clone, Copy)]
enum Style {
    /// The whole call in a task of its own: `tokio::spawn(ctx.run_until_done_owned(..))`.
    Guarded,
    /// A loop of page fetches racing `ctx.done()` in `select!`.
    Streams,
}

/// What a backend saw: its answer (`None` for a miss) or why it stopped.
type Outcome = Result<Option<String>, (Error, Option<String>)>;

/// A simulated backend call.
async fn call(b: Backend, ctx: Context<'static>, start: Instant) -> (Outcome, Duration) {
    let id = ctx.value(&REQUEST_ID).expect("every request has an id");
    let answer = move || b.hit.then(|| format!("{}: profile for {id}", b.name));
    let stopped = |e: Error| (e, ctx.cause().filter(|c| !c.is(e)).map(|c| c.to_string()));
    let outcome = match b.style {
        Style::Guarded => {
            // The future owns its handle on `ctx`: it is `'static`, so it can be spawned.
            let work = tokio::spawn(ctx.run_until_done_owned(async move {
                tokio::time::sleep(b.latency).await;
                answer()
            }));
            work.await.expect("backend work").map_err(stopped)
        }
        Style::Streams => {
            let page = b.latency / 8;
            let mut pages = 0;
            loop {
                tokio::select! {
                    e = ctx.done() => break Err(stopped(e)),
                    () = tokio::time::sleep(page) => {
                        pages += 1;
                        if pages == 8 {
                            break Ok(answer());
                        }
                    }
                }
            }
        }
    };
    (outcome, start.elapsed())
}

async fn handle(
    id: &str,
    shutdown: &Context<'static>,
    backends: &[Backend],
) -> Result<String, Error> {
    let start = Instant::now();
    let req = ctxtree::background()
        .with_value(&REQUEST_ID, id.to_string())
        .expect("the global arena grows");
    let Child {
        ctx: req,
        cancel: _req_cancel,
    } = req.with_timeout(REQUEST_TIMEOUT).expect("arena grows");
    // Done when the request is (its deadline), when the server shuts down, or when the first
    // answer cancels it; values and name from `req`.
    let Child {
        ctx: fanout,
        cancel: cancel_fanout,
    } = req.with_linked(shutdown).expect("arena grows");
    // The audit record: not cancelled with the request, yet bounded by its own second. Its
    // canceler is disarmed (Go's `ctx, _ :=`): the task owns its context and ends on its own.
    let Child {
        ctx: audit,
        cancel: audit_cancel,
    } = req
        .without_cancel()
        .and_then(|c| c.with_timeout(Duration::from_secs(1)))
        .expect("arena grows");
    audit_cancel.disarm();
    let audit_id = id.to_string();
    let audit = tokio::spawn(audit.run_until_done_owned(async move {
        tokio::time::sleep(Duration::from_millis(20)).await; // the write
        audit_id
    }));
    println!("{id}: {fanout}");
    // Reports how the fan-out ended; it owns its handle, so it needs no borrow of `fanout`.
    let watcher = tokio::spawn(fanout.done_owned());

    let (tx, mut rx) = mpsc::unbounded_channel();
    let tasks: Vec<_> = backends
        .iter()
        .map(|&b| {
            let (ctx, tx) = (fanout.clone(), tx.clone());
            tokio::spawn(async move {
                let (outcome, after) = call(b, ctx, start).await;
                if let Ok(Some(answer)) = &outcome {
                    let _ = tx.send((b.name, answer.clone()));
                }
                (b.name, outcome, after)
            })
        })
        .collect();
    drop(tx);

    // Wait for the first answer, for as long as the fan-out lives (the request's deadline, or
    // the server's shutdown).
    let first = fanout
        .run_until_done(async {
            match rx.recv().await {
                Some(answer) => answer,
                None => std::future::pending().await, // every backend missed: wait it out
            }
        })
        .await;
    let result = first.map(|(winner, answer)| {
        // First answer wins: stop everyone else, saying why.
        cancel_fanout.cancel_with(CancelCause::error(Won(winner)));
        answer
    });

    for t in tasks {
        let (name, outcome, after) = t.await.expect("backend task");
        let ms = after.as_millis();
        match outcome {
            Ok(Some(a)) => println!("  {name:<7} answered after {ms:>3} ms: {a:?}"),
            Ok(None) => println!("  {name:<7} missed after    {ms:>3} ms"),
            Err((e, cause)) => println!(
                "  {name:<7} stopped after   {ms:>3} ms: {e}{}",
                cause.map(|c| format!(" (cause: {c})")).unwrap_or_default()
            ),
        }
    }
    // A background task that outlives the request would use `req.without_cancel()`; here the
    // fan-out is over, and `done()` says how.
    let how = watcher.await.expect("watcher task");
    match audit.await.expect("audit task") {
        Ok(written) => println!("  audit   record of {written} written"),
        Err(e) => println!("  audit   record lost: {e}"),
    }
    println!(
        "{id}: {} in {} ms (fan-out ended: {how})\n",
        match &result {
            Ok(a) => format!("answered {a:?}"),
            Err(e) => format!("failed: {e}"),
        },
        start.elapsed().as_millis()
    );
    result
}

#[derive(Debug)]
struct Won(&'static str);

impl std::fmt::Display for Won {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "answered by {}", self.0)
    }
}

impl std::error::Error for Won {}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let ms = Duration::from_millis;
    let backend = |name, latency, hit, style| Backend {
        name,
        latency: ms(latency),
        hit,
        style,
    };

    let Child {
        ctx: shutdown,
        cancel: stop_server,
    } = ctxtree::background().with_cancel().expect("arena grows");

    let first = handle(
        "req-1",
        &shutdown,
        &[
            backend("cache", 50, true, Style::Guarded),
            backend("db", 120, true, Style::Guarded),
            backend("search", 400, true, Style::Streams),
        ],
    )
    .await;
    assert!(first.is_ok());

    let second = handle(
        "req-2",
        &shutdown,
        &[
            backend("cache", 30, false, Style::Guarded),
            backend("db", 250, true, Style::Guarded),
            backend("search", 400, true, Style::Streams),
        ],
    )
    .await;
    assert_eq!(second, Err(Error::DeadlineExceeded));

    // The server shuts down 60 ms into request 3.
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(ms(60)).await;
        println!("  -- server shutting down --");
        stop_server.cancel_with(&SHUTDOWN);
    });
    let third = handle(
        "req-3",
        &shutdown,
        &[
            backend("cache", 100, true, Style::Guarded),
            backend("db", 120, true, Style::Guarded),
            backend("search", 400, true, Style::Streams),
        ],
    )
    .await;
    stopper.await.expect("stopper task");
    assert_eq!(third, Err(Error::Canceled));
    assert!(shutdown.cause().is_some_and(|c| c.is_static(&SHUTDOWN)));

    println!(
        "global arena: {} live context after the three requests (the shutdown context)",
        ctxtree::global_arena().stats().live
    );
}
