//! End to end over real loopback sockets (127.0.0.1), with hyper 1 and the `tower` layers: a
//! client calls a gateway, which calls a backend.
//!
//! * The deadline shrinks hop by hop (each `grpc-timeout` is what the sender had left), and the
//!   backend's slow work stops at the deadline (2 s), not at its 60 s.
//! * A client that drops its connection mid-request cancels the gateway's request context,
//!   which abandons the gateway's call to the backend, which cancels the backend's.
//!
//! Every wait is bounded (`within`, 30 s); assertions are on order and outcome, with one
//! generous bound (work stops within 20 s, not 60 s) that no scheduler delay should reach. The
//! deadline is 2 s so that the request surely reaches the backend before it, even in an
//! instrumented build (ThreadSanitizer).

#![cfg(all(feature = "tower", not(miri)))]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ctxtree::propagate::grpc_timeout;
use ctxtree::tower::{CLIENT_GONE, ClientLayer, ServerLayer};
use ctxtree::{Child, Context, Error};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tower::{Layer, Service, ServiceExt, service_fn};

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after 30 s: {what}"))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn serve<S>(svc: S) -> SocketAddr
where
    S: Service<Request<Incoming>, Response = Response<Full<Bytes>>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// One request over a fresh hyper 1 connection, through the client layer.
async fn call(addr: SocketAddr, ctx: Context<'static>) -> Result<Response<Incoming>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    sender.ready().await?;
    let mut client = ClientLayer::new().layer(service_fn(move |req| sender.send_request(req)));
    let mut req = Request::new(Empty::<Bytes>::new());
    req.extensions_mut().insert(ctx);
    client.ready().await?.call(req).await
}

/// What a tier saw: the `grpc-timeout` it received, and its request context.
struct Seen {
    header: Option<Duration>,
    ctx: Context<'static>,
}

fn seen(req: &Request<Incoming>) -> Seen {
    Seen {
        header: req
            .headers()
            .get(grpc_timeout::HEADER)
            .map(|v| grpc_timeout::decode(v.as_bytes()).unwrap()),
        ctx: req.extensions().get::<Context<'static>>().unwrap().clone(),
    }
}

/// The backend: slow work (60 s) under the request's context; reports what it saw, and how and
/// when its work stopped.
async fn backend(
    tx: mpsc::UnboundedSender<Seen>,
    done: mpsc::UnboundedSender<(Error, Instant)>,
) -> SocketAddr {
    serve(ServerLayer::new(ctxtree::background()).layer(service_fn(
        move |req: Request<Incoming>| {
            let s = seen(&req);
            let ctx = s.ctx.clone();
            tx.send(s).unwrap();
            let done = done.clone();
            // The work runs in a task of its own under the request's context, so it is stopped by
            // the context (deadline, or client gone), not by hyper dropping the handler.
            let work = tokio::spawn(async move {
                let out = ctx
                    .run_until_done_owned(tokio::time::sleep(Duration::from_secs(60)))
                    .await;
                if let Err(e) = out {
                    done.send((e, Instant::now())).unwrap();
                }
            });
            async move {
                let _ = work.await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
            }
        },
    )))
    .await
}

/// The gateway: calls the backend under its request's context and relays the outcome.
async fn gateway(backend: SocketAddr, tx: mpsc::UnboundedSender<Seen>) -> SocketAddr {
    serve(ServerLayer::new(ctxtree::background()).layer(service_fn(
        move |req: Request<Incoming>| {
            let s = seen(&req);
            let ctx = s.ctx.clone();
            tx.send(s).unwrap();
            async move {
                let resp = match call(backend, ctx).await {
                    Ok(r) => {
                        Response::new(Full::new(r.into_body().collect().await.unwrap().to_bytes()))
                    }
                    Err(e) => {
                        let mut r = Response::new(Full::new(Bytes::from(e.to_string())));
                        *r.status_mut() = StatusCode::GATEWAY_TIMEOUT;
                        r
                    }
                };
                Ok::<_, Infallible>(resp)
            }
        },
    )))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_shrinks_hop_by_hop_and_stops_the_backend_at_the_deadline() {
    let (back_tx, mut back_seen) = mpsc::unbounded_channel();
    let (done_tx, mut back_done) = mpsc::unbounded_channel();
    let (gw_tx, mut gw_seen) = mpsc::unbounded_channel();
    let back = backend(back_tx, done_tx).await;
    let gw = gateway(back, gw_tx).await;

    let start = Instant::now();
    let Child {
        ctx,
        cancel: _cancel,
    } = ctxtree::background()
        .with_timeout(Duration::from_secs(2))
        .unwrap();
    let err = within("the client's call", call(gw, ctx.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<Error>(),
        Some(&Error::DeadlineExceeded),
        "{err}"
    );

    let g = within("the gateway saw it", gw_seen.recv()).await.unwrap();
    let b = within("the backend saw it", back_seen.recv())
        .await
        .unwrap();
    let (g_header, b_header) = (g.header.unwrap(), b.header.unwrap());
    assert!(g_header <= Duration::from_secs(2), "{g_header:?}");
    assert!(
        b_header < g_header,
        "shrinks: gateway {g_header:?}, backend {b_header:?}"
    );
    assert!(b.ctx.deadline().is_some() && g.ctx.deadline().is_some());

    // The backend's 60 s of work stopped at the deadline: its own (DeadlineExceeded), or the
    // gateway's just before it, which closed the connection (Canceled, client gone).
    let (e, at) = within("the backend's work stops", back_done.recv())
        .await
        .unwrap();
    assert!(
        at.duration_since(start) < Duration::from_secs(20),
        "{:?}",
        at.duration_since(start)
    );
    match e {
        Error::DeadlineExceeded => {}
        Error::Canceled => assert!(b.ctx.cause().unwrap().is_static(&CLIENT_GONE)),
    }
    assert!(g.ctx.is_done() && b.ctx.is_done());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_cancels_the_gateway_and_the_backend() {
    let (back_tx, mut back_seen) = mpsc::unbounded_channel();
    let (done_tx, mut back_done) = mpsc::unbounded_channel();
    let (gw_tx, mut gw_seen) = mpsc::unbounded_channel();
    let back = backend(back_tx, done_tx).await;
    let gw = gateway(back, gw_tx).await;

    // A raw client with no deadline: writes a request, waits until the backend works on it,
    // then closes its socket.
    let mut sock = TcpStream::connect(gw).await.unwrap();
    sock.write_all(b"GET / HTTP/1.1\r\nhost: gateway\r\n\r\n")
        .await
        .unwrap();
    let g = within("the gateway's handler starts", gw_seen.recv())
        .await
        .unwrap();
    let b = within("the backend's handler starts", back_seen.recv())
        .await
        .unwrap();
    assert_eq!((g.header, b.header), (None, None), "no deadline anywhere");
    assert_eq!((g.ctx.err(), b.ctx.err()), (None, None));
    let start = Instant::now();
    drop(sock);

    assert_eq!(
        within("the gateway's context", g.ctx.done()).await,
        Error::Canceled
    );
    assert!(g.ctx.cause().unwrap().is_static(&CLIENT_GONE));
    let (e, at) = within("the backend's work stops", back_done.recv())
        .await
        .unwrap();
    assert_eq!(e, Error::Canceled);
    assert!(b.ctx.cause().unwrap().is_static(&CLIENT_GONE));
    assert!(at.duration_since(start) < Duration::from_secs(20));
}
