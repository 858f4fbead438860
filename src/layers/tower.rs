//! The `tower` feature: a request's context on both sides of an HTTP call.
//!
//! * [`ServerLayer`]: gives each incoming request a context — a child of the server's own
//!   context (its shutdown context) with the caller's `grpc-timeout` as its deadline — and puts
//!   it in the request's extensions as a `Context<'static>`. The context is cancelled when the
//!   response future completes (the handler is done) or is **dropped before completing**: the
//!   server gave up on the request, which is what hyper does when the client closes its
//!   connection mid-request. Go: `http.Request.Context()`.
//! * [`ClientLayer`]: for an outgoing request whose extensions hold a `Context<'static>`, writes
//!   its remaining time as `grpc-timeout`, fails fast with `DeadlineExceeded` (or `Canceled`)
//!   when it is already done, and abandons the call — dropping the inner future, which closes
//!   the connection — as soon as the context is done while it is in flight.
//!
//! Both are plain tower middleware over `http::Request`/`http::Response`: hyper 1 (through
//! hyper-util's `TowerToHyperService`), axum (`Router::layer`, handlers take
//! `Extension<Context<'static>>`), and any tower client.
//!
//! ```
//! use std::time::Duration;
//! use ctxtree::tower::{ClientLayer, ServerLayer};
//! use ctxtree::Context;
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // The server: a handler that reads the request's context.
//! let ctxtree::Child { ctx: shutdown, cancel: _stop } = ctxtree::background().with_cancel()?;
//! let server = ServerLayer::new(shutdown).layer(service_fn(|req: http::Request<()>| async move {
//!     let ctx = req.extensions().get::<Context<'static>>().expect("set by ServerLayer");
//!     let left = ctx.remaining().expect("the caller's deadline");
//!     Ok::<_, std::convert::Infallible>(http::Response::new(format!("{left:?}")))
//! }));
//!
//! // The client: the request carries its caller's context; here the "network" is the server.
//! let mut client = ClientLayer::new().layer(server);
//! let ctxtree::Child { ctx, cancel: _cancel } = ctxtree::background().with_timeout(Duration::from_millis(300))?;
//! let mut req = http::Request::new(());
//! req.extensions_mut().insert(ctx);
//! let resp = client.ready().await?.call(req).await?;
//! assert!(resp.body().ends_with("ms")); // a little under 300 ms
//! # Ok(())
//! # }
//! ```

use ::alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context as TaskCx, Poll};

use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::propagate::{InjectError, Propagator};
use crate::{Canceler, Context, CreateError, RunUntilDoneOwned, StaticCause};

/// The error type of [`Client`]: the inner service's error, boxed, or a ctxtree [`Error`]
/// (`downcast_ref::<ctxtree::Error>()`) when the context was done (tower's convention, as its
/// `Timeout` middleware).
///
/// [`Error`]: crate::Error
pub type BoxError = Box<dyn core::error::Error + Send + Sync>;

/// The cause of a request's context when its response future was dropped before it completed:
/// the server abandoned the request, because its client went away (hyper drops the future when
/// the connection closes) or it is shutting down.
pub static CLIENT_GONE: StaticCause =
    StaticCause::new("request abandoned before its response (client went away)");

/// The cause of a request's context once its response is ready: the handler is done, and so is
/// whatever it left running under the request (Go cancels the request's context when
/// `ServeHTTP` returns).
pub static RESPONDED: StaticCause = StaticCause::new("request done: response returned");

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// A `tower::Layer` that gives each request a context (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct ServerLayer {
    parent: Context<'static>,
    propagator: Propagator<'static>,
}

impl ServerLayer {
    /// Requests' contexts are children of `parent`: cancelling it (the server's shutdown)
    /// cancels every request in flight. Deadline only, no request values, no cap.
    pub fn new(parent: Context<'static>) -> Self {
        ServerLayer {
            parent,
            propagator: Propagator::new(),
        }
    }

    /// Extracts with `propagator`: its request values and its cap on incoming timeouts.
    pub fn with_propagator(mut self, propagator: Propagator<'static>) -> Self {
        self.propagator = propagator;
        self
    }
}

impl<S> Layer<S> for ServerLayer {
    type Service = Server<S>;

    fn layer(&self, inner: S) -> Server<S> {
        Server {
            inner,
            parent: self.parent.clone(),
            propagator: self.propagator,
        }
    }
}

/// The service [`ServerLayer`] makes.
///
/// A request gets, in its extensions, its `Context<'static>` and the
/// [`Rejections`](crate::propagate::Rejections) of the headers dropped as malformed. If the
/// context cannot be made ([`CreateError`]: a fixed arena full), the request is answered `503
/// Service Unavailable` with an empty body and not passed on (hence `ResBody: Default`).
#[derive(Clone, Debug)]
pub struct Server<S> {
    inner: S,
    parent: Context<'static>,
    propagator: Propagator<'static>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Server<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ServerFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut TaskCx<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match self.propagator.extract(&self.parent, req.headers()) {
            Ok(x) => {
                req.extensions_mut().insert(x.ctx);
                req.extensions_mut().insert(x.rejected);
                ServerFuture {
                    inner: Some(self.inner.call(req)),
                    guard: Guard(Some(x.cancel)),
                    refused: None,
                    _body: PhantomData,
                }
            }
            Err(e) => ServerFuture {
                inner: None,
                guard: Guard(None),
                refused: Some(e),
                _body: PhantomData,
            },
        }
    }
}

/// Cancels the request's context when dropped with it still armed: the response future went
/// away before completing.
struct Guard(Option<Canceler<'static>>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(cancel) = self.0.take() {
            cancel.cancel_with(&CLIENT_GONE);
        }
    }
}

pin_project! {
    /// The response future of [`Server`]: the inner one, with the request's canceler.
    pub struct ServerFuture<F, B> {
        #[pin]
        inner: Option<F>,
        guard: Guard,
        refused: Option<CreateError>,
        _body: PhantomData<fn() -> B>,
    }
}

impl<F, B, E> Future for ServerFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            // The context could not be made: 503, without running the handler.
            let mut resp = Response::new(B::default());
            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return Poll::Ready(Ok(resp));
        };
        let out = core::task::ready!(inner.poll(cx));
        if let Some(cancel) = this.guard.0.take() {
            cancel.cancel_with(&RESPONDED);
        }
        Poll::Ready(out)
    }
}

impl<F, B> fmt::Debug for ServerFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerFuture")
            .field("running", &self.guard.0.is_some())
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// A `tower::Layer` that carries an outgoing request's context to the server (see the
/// [module docs](self)).
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientLayer {
    propagator: Propagator<'static>,
}

impl ClientLayer {
    /// Injects the deadline only.
    pub fn new() -> Self {
        ClientLayer {
            propagator: Propagator::new(),
        }
    }

    /// Injects with `propagator`: its request values too.
    pub fn with_propagator(mut self, propagator: Propagator<'static>) -> Self {
        self.propagator = propagator;
        self
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = Client<S>;

    fn layer(&self, inner: S) -> Client<S> {
        Client {
            inner,
            propagator: self.propagator,
        }
    }
}

/// The service [`ClientLayer`] makes.
///
/// A request without a `Context<'static>` in its extensions passes through untouched. One with
/// a context:
/// * already done: fails at once with the context's [`Error`](crate::Error), without calling
///   the inner service;
/// * otherwise: gets `grpc-timeout` (and the propagator's values) and is sent; if the context
///   is done before the response, the inner future is dropped and the call fails with the
///   context's error.
#[derive(Clone, Debug)]
pub struct Client<S> {
    inner: S,
    propagator: Propagator<'static>,
}

impl<S, B> Service<Request<B>> for Client<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ClientFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskCx<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some(ctx) = req.extensions().get::<Context<'static>>().cloned() else {
            return ClientFuture {
                state: ClientState::Plain {
                    fut: self.inner.call(req),
                },
            };
        };
        let state = match self.propagator.inject(&ctx, req.headers_mut()) {
            Ok(_) => ClientState::Guarded {
                fut: ctx.run_until_done_owned(self.inner.call(req)),
            },
            Err(InjectError::Done(e)) => ClientState::Failed {
                error: Some(Box::new(e)),
            },
            Err(other) => ClientState::Failed {
                error: Some(Box::new(other)),
            },
        };
        ClientFuture { state }
    }
}

pin_project! {
    #[project = ClientStateProj]
    enum ClientState<F> {
        Plain { #[pin] fut: F },
        Guarded { #[pin] fut: RunUntilDoneOwned<'static, F> },
        Failed { error: Option<BoxError> },
    }
}

pin_project! {
    /// The response future of [`Client`].
    pub struct ClientFuture<F> {
        #[pin]
        state: ClientState<F>,
    }
}

impl<F, T, E> Future for ClientFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            ClientStateProj::Plain { fut } => fut.poll(cx).map_err(Into::into),
            ClientStateProj::Guarded { fut } => match core::task::ready!(fut.poll(cx)) {
                Ok(out) => Poll::Ready(out.map_err(Into::into)),
                Err(done) => Poll::Ready(Err(Box::new(done))),
            },
            ClientStateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| Box::new(crate::Error::Canceled)))),
        }
    }
}

impl<F> fmt::Debug for ClientFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientFuture")
    }
}
