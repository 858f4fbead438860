//! Contexts between processes: three real OS processes on 127.0.0.1, plain HTTP/1.1 over std
//! `TcpStream`s, one thread per connection.
//!
//! ```text
//! cargo run --example between_processes --features signal
//! ```
//!
//! This program is the **client**; it starts itself twice more (`current_exe()` with a role
//! argument) as the **gateway** and the **backend**, and prints one merged timeline:
//!
//! 1. The client calls the gateway with a 300 ms deadline; the gateway works 20 ms, then calls
//!    the backend. Each hop sends what it has left as `grpc-timeout` (so it shrinks), and the
//!    backend's 2 s of slow work is cancelled at the deadline. Usually by the client's copy of
//!    it, the first to expire: each callee's deadline is its receipt time plus what it was
//!    sent, so later by the transit time, and the client's hang-up at its deadline reaches the
//!    gateway and the backend first ("client went away"); either way, at the deadline.
//! 2. The client hangs up mid-request: the gateway sees its connection close and cancels the
//!    request's context, which abandons its call to the backend, whose context is cancelled
//!    in turn — within milliseconds.
//! 3. The client sends SIGINT to the gateway: `ctxtree::signal::notify_context` cancels the
//!    gateway's server context, and with it the request in flight, with the signal as cause.
//!
//! How cancellation crosses the wire here: a deadline travels as `grpc-timeout`; a cancel
//! travels as a closed connection (the caller's `after_func` shuts its socket down when its
//! context is done; the callee's watcher thread reads EOF and cancels the request's context).
//!
//! Every process ends by itself: children on the client's signal, when their stdin closes (the
//! client went away), or after 20 s; the client kills them if anything goes wrong.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ctxtree::propagate::{Header, Propagator};
use ctxtree::{Context, Key, StaticCause};

static REQUEST_ID: Key<u64> = Key::new("request-id");
static REQUEST_ID_HEADER: Header<Key<u64>> = Header::new("x-request-id", &REQUEST_ID);
/// The request id travels with the deadline; a server gives a request at most 10 s.
static PROPAGATOR: Propagator<'static> = Propagator::new()
    .with_fields(&[&REQUEST_ID_HEADER])
    .with_max_timeout(Duration::from_secs(10));

static CLIENT_GONE: StaticCause = StaticCause::new("client went away");
static RESPONDED: StaticCause = StaticCause::new("response sent");
static HUNG_UP: StaticCause = StaticCause::new("client hung up");
static PARENT_GONE: StaticCause = StaticCause::new("the demo's client process is gone");

/// How long any child process lives at most.
const LIFETIME: Duration = Duration::from_secs(20);
/// Every wait of the client for its children.
const PATIENCE: Duration = Duration::from_secs(5);

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A child's event, on its stdout: `EV <µs since the Unix epoch> <text>`; the client merges
/// them with its own (one machine, one clock).
fn log(event: impl Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "EV {} {event}", now_us());
    let _ = out.flush();
}

fn cause_of(ctx: &Context<'_>) -> String {
    match (ctx.err(), ctx.cause()) {
        (Some(err), Some(cause)) if cause.to_string() != err.to_string() => {
            format!("{err} ({cause})")
        }
        (Some(err), _) => err.to_string(),
        (None, _) => "not done".into(),
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("no deadline".into(), |d| {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("backend") => server("backend", None),
        Some("gateway") => server("gateway", args.get(2).and_then(|p| p.parse().ok())),
        _ => client(),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1, just enough
// ---------------------------------------------------------------------------------------------

/// Reads a request or response head: the first line and the headers (names lower-cased).
fn read_head(r: &mut impl BufRead) -> std::io::Result<(String, BTreeMap<String, String>)> {
    let mut first = String::new();
    if r.read_line(&mut first)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let mut headers = BTreeMap::new();
    for _ in 0..100 {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
            return Ok((first.trim().to_string(), headers));
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Err(std::io::ErrorKind::InvalidData.into())
}

fn write_response(mut s: &TcpStream, status: &str, body: &str) {
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Calls `port` under `ctx`: sends what `ctx` carries, and shuts the socket down if `ctx` is
/// done before the answer (the callee sees its client go away). Returns the status line and
/// body, or why there is none.
fn call(who: &str, port: u16, ctx: &Context<'static>) -> Result<(String, String), String> {
    let id = ctx.value(&REQUEST_ID).unwrap_or(0);
    let mut headers = BTreeMap::new();
    let sent = PROPAGATOR
        .inject(ctx, &mut headers)
        .map_err(|e| format!("not sent: {e}"))?;
    let target = if who == "client" {
        "gateway"
    } else {
        "backend"
    };
    log_as(
        who,
        format!(
            "#{id} calls {target}, grpc-timeout: {}",
            sent.map_or("(none)".into(), |t| t.to_string())
        ),
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let mut req = String::from("GET /work HTTP/1.1\r\nhost: 127.0.0.1\r\n");
    for (k, v) in &headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .map_err(|e| e.to_string())?;
    // Abort on done: the std timer thread runs this at the deadline, a canceller at a cancel.
    let aborter = stream.try_clone().map_err(|e| e.to_string())?;
    let abort = ctx
        .after_func(move || {
            let _ = aborter.shutdown(Shutdown::Both);
        })
        .map_err(|e| e.to_string())?;
    let mut r = BufReader::new(&stream);
    let answer = read_head(&mut r).and_then(|(status, h)| {
        let len: usize = h
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len.min(4096)];
        r.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    });
    if !abort.stop() {
        return Err(format!("call abandoned: {}", cause_of(ctx)));
    }
    answer.map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// The gateway and the backend
// ---------------------------------------------------------------------------------------------

/// Runs a server until its context ends: SIGINT/SIGTERM (gateway), stdin closed, or 20 s.
fn server(name: &'static str, backend_port: Option<u16>) {
    let root = ctxtree::background();
    // The gateway's server context ends on SIGINT/SIGTERM, with the signal as its cause.
    let (signalled, stop_signals) = if name == "gateway" {
        let ctxtree::signal::Notify { ctx, stop } =
            ctxtree::signal::notify_context(&root, &[libc::SIGINT, libc::SIGTERM])
                .expect("catch SIGINT/SIGTERM");
        (ctx, Some(stop))
    } else {
        (root.clone(), None)
    };
    let ctxtree::Child {
        ctx: alive,
        cancel: stay,
    } = signalled.with_timeout(LIFETIME).expect("context");
    thread::spawn(move || {
        // Our stdin is the client's pipe: EOF means the client is gone.
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        stay.cancel_with(&PARENT_GONE);
    });
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    println!("LISTEN {}", listener.local_addr().expect("addr").port());
    let _ = std::io::stdout().flush();

    let mut conns = Vec::new();
    while !alive.is_done() {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let parent = alive.clone();
                conns.push(thread::spawn(move || {
                    connection(stream, parent, backend_port)
                }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let _ = alive.wait_timeout(Duration::from_millis(1));
            }
            Err(e) => {
                log(format!("accept failed: {e}"));
                break;
            }
        }
    }
    log(format!("shutting down: {}", cause_of(&alive)));
    for c in conns {
        let _ = c.join();
    }
    drop(stop_signals);
}

/// One request: its context comes from the headers, under the server's context; a watcher
/// thread cancels it when the connection closes.
fn connection(stream: TcpStream, parent: Context<'static>, backend: Option<u16>) {
    let mut r = BufReader::new(&stream);
    let Ok((_, headers)) = read_head(&mut r) else {
        return;
    };
    let Ok(x) = PROPAGATOR.extract(&parent, &headers) else {
        write_response(&stream, "503 Service Unavailable", "no context");
        return;
    };
    let ctx = x.ctx;
    let cancel = Arc::new(x.cancel);
    let id = ctx.value(&REQUEST_ID).unwrap_or(0);
    log(format!(
        "#{id} received, grpc-timeout: {} -> request context has {}",
        headers.get("grpc-timeout").map_or("(none)", String::as_str),
        ms(ctx.remaining())
    ));
    let watcher = {
        let cancel = Arc::clone(&cancel);
        let mut s = stream.try_clone().expect("clone");
        thread::spawn(move || {
            let mut buf = [0u8; 256];
            // Ends at EOF: the client closed, or we did after answering (then a no-op).
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            cancel.cancel_with(&CLIENT_GONE);
        })
    };
    let (status, body) = match backend {
        Some(port) => gateway_work(&ctx, port),
        None => backend_work(&ctx),
    };
    write_response(&stream, status, &body);
    cancel.cancel_with(&RESPONDED);
    let _ = stream.shutdown(Shutdown::Both);
    let _ = watcher.join();
}

fn gateway_work(ctx: &Context<'static>, backend: u16) -> (&'static str, String) {
    let id = ctx.value(&REQUEST_ID).unwrap_or(0);
    // 20 ms of the gateway's own work first (auth, routing, ...).
    if ctx.wait_timeout(Duration::from_millis(20)).is_some() {
        log(format!(
            "#{id} cancelled before calling the backend: {}",
            cause_of(ctx)
        ));
        return ("503 Service Unavailable", cause_of(ctx));
    }
    match call("gateway", backend, ctx) {
        Ok((status, body)) => {
            log(format!("#{id} backend answered {status}: {body}"));
            ("200 OK", body)
        }
        Err(why) => {
            log(format!("#{id} {why}"));
            let status = if ctx.err() == Some(ctxtree::Error::DeadlineExceeded) {
                "504 Gateway Timeout"
            } else {
                "503 Service Unavailable"
            };
            (status, why)
        }
    }
}

fn backend_work(ctx: &Context<'static>) -> (&'static str, String) {
    let id = ctx.value(&REQUEST_ID).unwrap_or(0);
    log(format!("#{id} starts 2 s of slow work"));
    let start = Instant::now();
    match ctx.wait_timeout(Duration::from_secs(2)) {
        None => ("200 OK", "work done".into()),
        Some(_) => {
            let why = cause_of(ctx);
            log(format!(
                "#{id} work cancelled after {:.1} ms: {why}",
                start.elapsed().as_secs_f64() * 1e3
            ));
            ("504 Gateway Timeout", why)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client: starts the others, runs the scenes, prints the timeline
// ---------------------------------------------------------------------------------------------

type Timeline = Arc<Mutex<Vec<(u64, &'static str, String)>>>;

static TIMELINE: Mutex<Vec<(u64, &'static str, String)>> = Mutex::new(Vec::new());

fn log_as(who: &str, event: impl Display) {
    if who == "client" {
        record("client", event.to_string());
    } else {
        log(event);
    }
}

fn record(who: &'static str, event: String) {
    TIMELINE.lock().unwrap().push((now_us(), who, event));
}

/// The children, killed when this is dropped (also when the client panics).
struct Children(Vec<(&'static str, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Starts `role`; returns it, its stdin (its lifeline), its port, and the thread that copies
/// its events into the timeline.
fn start(
    role: &'static str,
    extra: Option<u16>,
    timeline: &Timeline,
) -> (Child, ChildStdin, u16, thread::JoinHandle<()>) {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.arg(role);
    if let Some(p) = extra {
        cmd.arg(p.to_string());
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (port_tx, port_rx) = mpsc::channel();
    let timeline = Arc::clone(timeline);
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(p) = line.strip_prefix("LISTEN ") {
                let _ = port_tx.send(p.parse::<u16>().unwrap_or(0));
            } else if let Some(rest) = line.strip_prefix("EV ") {
                if let Some((t, text)) = rest.split_once(' ') {
                    let t = t.parse().unwrap_or(0);
                    timeline.lock().unwrap().push((t, role, text.to_string()));
                }
            }
        }
    });
    let port = port_rx.recv_timeout(PATIENCE).expect("the child listens");
    (child, stdin, port, reader)
}

fn client() {
    let t0 = now_us();
    let timeline: Timeline = Arc::new(Mutex::new(Vec::new()));
    let mut children = Children(Vec::new());
    let (backend, backend_stdin, backend_port, backend_reader) = start("backend", None, &timeline);
    let backend_pid = backend.id();
    children.0.push(("backend", backend));
    let (gateway, gateway_stdin, gateway_port, gateway_reader) =
        start("gateway", Some(backend_port), &timeline);
    let gateway_pid = gateway.id();
    children.0.push(("gateway", gateway));
    // A watchdog: whatever happens, the demo ends within 15 s (children killed on the way out).
    thread::spawn(|| {
        thread::sleep(Duration::from_secs(15));
        eprintln!("between_processes: took longer than 15 s; giving up");
        std::process::exit(1);
    });

    let root = ctxtree::background();

    record(
        "client",
        "--- scene 1: a 300 ms deadline, client -> gateway -> backend ---".into(),
    );
    let req = root.with_value(&REQUEST_ID, 1).unwrap();
    let ctxtree::Child {
        ctx,
        cancel: _cancel,
    } = req.with_timeout(Duration::from_millis(300)).unwrap();
    let out = call("client", gateway_port, &ctx);
    record("client", format!("#1 result: {}", describe(&out)));
    thread::sleep(Duration::from_millis(100)); // let the other hops log their end

    record(
        "client",
        "--- scene 2: the client hangs up mid-request ---".into(),
    );
    let req = root.with_value(&REQUEST_ID, 2).unwrap();
    let ctxtree::Child { ctx, cancel } = req.with_timeout(Duration::from_secs(5)).unwrap();
    let hangup = thread::spawn(move || {
        thread::sleep(Duration::from_millis(150));
        record("client", "#2 hangs up (closes its connection)".into());
        cancel.cancel_with(&HUNG_UP);
    });
    let out = call("client", gateway_port, &ctx);
    record("client", format!("#2 result: {}", describe(&out)));
    let _ = hangup.join();
    thread::sleep(Duration::from_millis(100));

    record(
        "client",
        "--- scene 3: SIGINT to the gateway mid-request ---".into(),
    );
    let req = root.with_value(&REQUEST_ID, 3).unwrap();
    let ctxtree::Child {
        ctx,
        cancel: _cancel,
    } = req.with_timeout(Duration::from_secs(5)).unwrap();
    let interrupt = thread::spawn(move || {
        thread::sleep(Duration::from_millis(150));
        record(
            "client",
            format!("sends SIGINT to the gateway (pid {gateway_pid})"),
        );
        let pid = libc::pid_t::try_from(gateway_pid).expect("pid");
        // SAFETY: `kill` only sends a signal; the pid is our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGINT) };
    });
    let out = call("client", gateway_port, &ctx);
    record("client", format!("#3 result: {}", describe(&out)));
    let _ = interrupt.join();

    // The end: the gateway exits on its own; the backend when its stdin closes.
    drop(gateway_stdin);
    wait_exit(&mut children, "gateway");
    drop(backend_stdin);
    wait_exit(&mut children, "backend");
    let _ = (gateway_reader.join(), backend_reader.join());

    let mut events: Vec<_> = TIMELINE.lock().unwrap().drain(..).collect();
    events.extend(timeline.lock().unwrap().drain(..));
    events.sort_by_key(|e| e.0);
    println!(
        "between_processes: client (pid {}), gateway (pid {gateway_pid}), backend (pid {backend_pid}) on 127.0.0.1",
        std::process::id()
    );
    println!("{:>9}  {:<8} event", "ms", "process");
    for (t, who, text) in events {
        let at = t.saturating_sub(t0) as f64 / 1e3;
        println!("{at:>9.1}  {who:<8} {text}");
    }
}

fn describe(out: &Result<(String, String), String>) -> String {
    match out {
        Ok((status, body)) => format!("{status}: {body}"),
        Err(why) => why.clone(),
    }
}

/// Waits (bounded) for a child to exit and records how; kills it if it does not.
fn wait_exit(children: &mut Children, role: &str) {
    let deadline = Instant::now() + PATIENCE;
    for (name, child) in &mut children.0 {
        if *name != role {
            continue;
        }
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    record("client", format!("{role} exited: {status}"));
                    return;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                _ => {
                    record("client", format!("{role} did not exit in time: killed"));
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }
}
