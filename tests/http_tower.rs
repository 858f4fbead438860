//! The `tower` layers under a real hyper 1 server and client, and under axum, over loopback
//! sockets (127.0.0.1 only). Every wait is bounded by `within` (30 s); nothing asserts on how
//! fast things are, only on what happens and in which order (deadlines are long enough for an
//! instrumented build to reach the server before them).

#![cfg(all(feature = "tower", not(miri)))]

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use ctxtree::propagate::{Header, Propagator, Rejections};
use ctxtree::tower::{CLIENT_GONE, ClientLayer, RESPONDED, ServerLayer};
use ctxtree::{Arena, Child, Context, Error, Key};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tower::{Layer, Service, ServiceExt, service_fn};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bounds every wait of these tests.
async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after 30 s: {what}"))
}

/// Serves `svc` (a tower service) with hyper 1 on a fresh loopback port, one task per
/// connection, for as long as the runtime lives.
async fn serve<S>(svc: S) -> std::net::SocketAddr
where
    S: Service<Request<hyper::body::Incoming>, Response = Response<Full<Bytes>>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
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

/// A hyper 1 client connection to `addr`, as a tower service.
async fn connect(
    addr: std::net::SocketAddr,
) -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<hyper::body::Incoming>,
    Error = hyper::Error,
    Future = impl Future<Output = Result<Response<hyper::body::Incoming>, hyper::Error>> + Send,
> + Send {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    // One request at a time, each after the connection is ready again (keep-alive).
    let sender = std::sync::Arc::new(tokio::sync::Mutex::new(sender));
    service_fn(move |req| {
        let sender = sender.clone();
        async move {
            let mut sender = sender.lock().await;
            sender.ready().await?;
            sender.send_request(req).await
        }
    })
}

async fn body_text(resp: Response<hyper::body::Incoming>) -> String {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn ctx_of<B>(req: &Request<B>) -> Context<'static> {
    req.extensions()
        .get::<Context<'static>>()
        .expect("ServerLayer puts the request's context in the extensions")
        .clone()
}

static REQUEST_ID: Key<u64> = Key::new("request-id");
static REQUEST_ID_HEADER: Header<Key<u64>> = Header::new("x-request-id", &REQUEST_ID);
static PROPAGATOR: Propagator<'static> = Propagator::new().with_fields(&[&REQUEST_ID_HEADER]);

/// A handler that answers with what its context says: remaining time in µs (or "none"), the
/// request id, and the rejected headers.
async fn describe(
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let ctx = ctx_of(&req);
    let rejected = req
        .extensions()
        .get::<Rejections>()
        .expect("set with the context");
    let left = ctx
        .remaining()
        .map_or("none".to_string(), |d| d.as_micros().to_string());
    let id = ctx
        .value(&REQUEST_ID)
        .map_or("none".to_string(), |v| v.to_string());
    let why: Vec<String> = rejected.iter().map(ToString::to_string).collect();
    Ok(Response::new(Full::new(Bytes::from(format!(
        "{left} {id} {}",
        why.join("; ")
    )))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_server_gives_each_request_the_callers_deadline_and_values() {
    let Child {
        ctx: shutdown,
        cancel: _stop,
    } = ctxtree::background().with_cancel().unwrap();
    let svc = ServerLayer::new(shutdown)
        .with_propagator(PROPAGATOR)
        .layer(service_fn(describe));
    let addr = serve(svc).await;

    let mut client = connect(addr).await;
    let req = Request::builder()
        .header("grpc-timeout", "250m")
        .header("x-request-id", "17")
        .body(Empty::new())
        .unwrap();
    let text = body_text(
        within("response", client.ready().await.unwrap().call(req))
            .await
            .unwrap(),
    )
    .await;
    let mut parts = text.splitn(3, ' ');
    let left: u128 = parts.next().unwrap().parse().unwrap();
    assert!(left > 0 && left <= 250_000, "{text}");
    assert_eq!(parts.next(), Some("17"));
    assert_eq!(parts.next(), Some(""));

    // Malformed headers are dropped, said why, and the request still runs.
    let req = Request::builder()
        .header("grpc-timeout", "250ms")
        .header("x-request-id", "seventeen")
        .body(Empty::new())
        .unwrap();
    let text = body_text(
        within("response", client.ready().await.unwrap().call(req))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        text,
        "none none grpc-timeout dropped: grpc-timeout: unknown unit 's' (expected one of H M S m u n); \
         x-request-id dropped: invalid byte at position 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_context_ends_when_the_response_is_ready_or_the_server_shuts_down() {
    let Child {
        ctx: shutdown,
        cancel: stop,
    } = ctxtree::background().with_cancel().unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<Context<'static>>();
    let svc =
        ServerLayer::new(shutdown).layer(service_fn(move |req: Request<hyper::body::Incoming>| {
            let ctx = ctx_of(&req);
            seen_tx.send(ctx.clone()).unwrap();
            async move {
                if req.uri().path() == "/wait" {
                    // Runs until its context is done: here, the server's shutdown.
                    let err = ctx.done().await;
                    return Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                        err.to_string(),
                    ))));
                }
                Ok(Response::new(Full::new(Bytes::from_static(b"quick"))))
            }
        }));
    let addr = serve(svc).await;
    let mut client = connect(addr).await;

    // Done: cancelled with RESPONDED by the time the client has the response.
    let req = Request::get("/quick").body(Empty::new()).unwrap();
    let resp = within("quick", client.ready().await.unwrap().call(req))
        .await
        .unwrap();
    let ctx = within("the handler starts", seen.recv()).await.unwrap();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(ctx.cause().unwrap().is_static(&RESPONDED));
    assert_eq!(body_text(resp).await, "quick");

    // Shutdown: the server's context reaches every request in flight.
    let call = tokio::spawn(
        client
            .ready()
            .await
            .unwrap()
            .call(Request::get("/wait").body(Empty::new()).unwrap()),
    );
    let ctx = within("the handler starts", seen.recv()).await.unwrap();
    assert_eq!(ctx.err(), None);
    stop.cancel();
    let resp = within("the handler ends", call).await.unwrap().unwrap();
    assert_eq!(body_text(resp).await, "context canceled");
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_response_future_cancels_with_client_gone() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<Context<'static>>();
    let mut svc =
        ServerLayer::new(ctxtree::background()).layer(service_fn(move |req: Request<()>| {
            seen_tx.send(ctx_of(&req)).unwrap();
            std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>()
        }));
    let fut = svc.ready().await.unwrap().call(Request::new(()));
    let ctx = within("the handler starts", seen.recv()).await.unwrap();
    assert_eq!(ctx.err(), None);
    drop(fut);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(ctx.cause().unwrap().is_static(&CLIENT_GONE));
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_arena_answers_503_without_running_the_handler() {
    static SMALL: Arena<1> = Arena::new();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let Child {
        ctx: held,
        cancel: keep,
    } = SMALL.background().with_cancel().unwrap(); // the only node
    let parent = SMALL.background();
    let mut svc = ServerLayer::new(parent).layer(service_fn(move |_req: Request<()>| {
        // ORDERING: Relaxed: a plain count, read after the calls it counts have returned.
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ran")))) }
    }));
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 0);
    // Room again: the same service serves.
    drop((held, keep));
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn the_client_layer_fails_fast_on_a_done_context_without_calling_the_service() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let mut client = ClientLayer::new().layer(service_fn(move |_req: Request<()>| {
        // ORDERING: Relaxed: a plain count, read after the calls it counts have returned.
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async { Ok::<_, Infallible>(Response::new(())) }
    }));

    let Child { ctx, cancel } = ctxtree::background()
        .with_timeout(Duration::from_millis(1))
        .unwrap();
    ctx.wait();
    let mut req = Request::new(());
    req.extensions_mut().insert(ctx);
    let err = client.ready().await.unwrap().call(req).await.unwrap_err();
    assert_eq!(err.downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
    drop(cancel);

    let Child { ctx, cancel } = ctxtree::background().with_cancel().unwrap();
    cancel.cancel();
    let mut req = Request::new(());
    req.extensions_mut().insert(ctx);
    let err = client.ready().await.unwrap().call(req).await.unwrap_err();
    assert_eq!(err.downcast_ref::<Error>(), Some(&Error::Canceled));
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "never called"
    );

    // Without a context: passed through untouched.
    client
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_layer_injects_and_gives_up_when_the_deadline_passes_in_flight() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<(Option<String>, Context<'static>)>();
    let svc = ServerLayer::new(ctxtree::background()).layer(service_fn(
        move |req: Request<hyper::body::Incoming>| {
            let sent = req
                .headers()
                .get("grpc-timeout")
                .map(|v| v.to_str().unwrap().to_string());
            let ctx = ctx_of(&req);
            seen_tx.send((sent, ctx.clone())).unwrap();
            async move {
                // Slow work that stops at its deadline (60 s otherwise).
                let _ = ctx
                    .run_until_done(tokio::time::sleep(Duration::from_secs(60)))
                    .await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"late"))))
            }
        },
    ));
    let addr = serve(svc).await;
    let mut client = ClientLayer::new()
        .with_propagator(PROPAGATOR)
        .layer(connect(addr).await);

    let req_ctx = ctxtree::background().with_value(&REQUEST_ID, 5).unwrap();
    let Child {
        ctx,
        cancel: _cancel,
    } = req_ctx.with_timeout(Duration::from_secs(2)).unwrap();
    let mut req = Request::new(Empty::new());
    req.extensions_mut().insert(ctx.clone());
    let err = within(
        "the client gives up",
        client.ready().await.unwrap().call(req),
    )
    .await
    .unwrap_err();
    assert_eq!(err.downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));

    let (sent, server_ctx) = within("the server saw it", seen.recv()).await.unwrap();
    let sent = sent.expect("grpc-timeout injected");
    let sent = ctxtree::propagate::grpc_timeout::decode(sent.as_bytes()).unwrap();
    assert!(
        sent > Duration::ZERO && sent <= Duration::from_secs(2),
        "{sent:?}"
    );
    // The server's copy of the deadline ends it too (or the dropped connection does first).
    let err = within("the server's context ends", server_ctx.done()).await;
    assert!(matches!(err, Error::DeadlineExceeded | Error::Canceled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_handlers_take_the_context_as_an_extension() {
    use axum::{Extension, Router, routing::get};
    let app = Router::new()
        .route(
            "/",
            get(|Extension(ctx): Extension<Context<'static>>| async move {
                format!("{:?}", ctx.deadline().is_some())
            }),
        )
        .layer(ServerLayer::new(ctxtree::background()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut client = connect(addr).await;
    let req = Request::get("/")
        .header("grpc-timeout", "5S")
        .body(Empty::new())
        .unwrap();
    let resp = within("axum answers", client.ready().await.unwrap().call(req))
        .await
        .unwrap();
    assert_eq!(body_text(resp).await, "true");
    let req = Request::get("/").body(Empty::new()).unwrap();
    let resp = within("axum answers", client.ready().await.unwrap().call(req))
        .await
        .unwrap();
    assert_eq!(body_text(resp).await, "false");
}
