//! The HTTP/1.1 server: accepts connections until shutdown, then lets open connections finish
//! (graceful, for at most `ServerOptions::shutdown_grace`), and routes each request. Omaha update
//! checks (`POST /v1/update/`, nearly all of a fleet's traffic) and the health probe
//! (`GET|HEAD /v1.0/health`, polled by load balancers) are answered directly; every other
//! request goes through the warp routes (`http::routes`). All get the same request id, metrics
//! and access log (`http::finish_response`).
//!
//! Slow clients cannot hold the server: a request head must arrive within
//! `ServerOptions::read_timeout` (hyper's header timeout, which also closes idle keep-alive
//! connections), and a body within as long once the server starts reading it (else 408 and the
//! connection closes, as nginx and Apache answer). A body whose declared `Content-Length` is
//! over the limit is refused without reading it (`http::limited_body`, [`omaha`]).
//!
//! Why not `warp::serve`: its filter tree costs more CPU per request than the whole Omaha answer
//! from the read snapshot, and its HTTP/1-or-2 detection wraps every connection's reads. Plain
//! HTTP/2 (h2c) is not offered: Omaha clients, agents and browsers speak HTTP/1.1 to a plain
//! listener.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::Either;
use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use warp::http::{Method, Request, StatusCode};
use warp::reply::Response;

use super::{finish_response, request_id_from, AppState, PeerAddr};
use crate::omaha::protocol::MAX_BODY_BYTES;

/// How long clients and shutdown may take (`--read-timeout-seconds`,
/// `--shutdown-grace-seconds`).
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// For a request head (and an idle keep-alive connection), then for its body.
    pub read_timeout: Duration,
    /// How long open connections may take to finish after the shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// Serves `listener` until `shutdown` resolves, then waits for open connections to finish, for
/// at most `options.shutdown_grace`: a client that neither finishes nor goes away must not keep
/// the process alive.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let routes = warp::service(super::routes(state.clone()));
    // Shared by every connection's router: the fast paths clone one pointer per request.
    let state = Arc::new(state);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        // Finished connections leave the set here, so it holds only open ones.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                accept_failed(e).await;
                continue;
            }
        };
        // Responses are written whole; waiting for more data to coalesce only adds latency.
        let _ = stream.set_nodelay(true);
        let service = Front {
            state: state.clone(),
            routes: routes.clone(),
            peer,
            read_timeout: options.read_timeout,
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(options.read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(e) = connection.await {
                // Clients that go away mid-request are normal, not a server error.
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            grace_s = options.shutdown_grace.as_secs(),
            "shutdown: connections still open after the grace period are dropped"
        );
    }
    // Drops what is left (nothing after a clean drain).
    connections.shutdown().await;
}

/// Accept errors: a connection reset before it was accepted is nothing; anything else (out of
/// file descriptors, most likely) gets a pause, so the loop does not spin.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; pausing for a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// One connection's request router.
#[derive(Clone)]
struct Front<S> {
    state: Arc<AppState>,
    routes: S,
    peer: SocketAddr,
    read_timeout: Duration,
}

type OmahaFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> hyper::service::Service<Request<Incoming>> for Front<S>
where
    S: tower_service::Service<Request<TimedBody>, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<OmahaFuture, S::Future>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let timed_out = BodyTimedOut::new(self.read_timeout);
        let mut request = request.map(|body| TimedBody::new(body, timed_out.clone()));
        let path = request.uri().path();
        if request.method() == Method::POST && super::omaha::is_omaha_path(path) {
            let state = self.state.clone();
            let peer = self.peer;
            return Either::Left(Box::pin(async move {
                Ok(omaha(state, request, peer, timed_out).await)
            }));
        }
        let method = request.method();
        if (method == Method::GET || method == Method::HEAD) && path == "/v1.0/health" {
            let state = self.state.clone();
            return Either::Left(Box::pin(async move { Ok(health(state, request).await) }));
        }
        request.extensions_mut().insert(PeerAddr(self.peer));
        request.extensions_mut().insert(timed_out);
        let mut routes = self.routes.clone();
        Either::Right(routes.call(request))
    }
}

/// `GET|HEAD /v1.0/health` without the filter tree: the same answer as the warp route (hyper
/// sends no body for HEAD).
async fn health(state: Arc<AppState>, request: Request<TimedBody>) -> Response {
    let started = Instant::now();
    let id = request_id_from(
        request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
    );
    let response = super::ops::health(&state).await;
    finish_response(
        &state.metrics,
        started,
        &id,
        request.method(),
        "/v1.0/health",
        response,
    )
}

/// `POST /v1/update/` without the filter tree: the same answer as the warp route.
async fn omaha(
    state: Arc<AppState>,
    request: Request<TimedBody>,
    peer: SocketAddr,
    timed_out: BodyTimedOut,
) -> Response {
    let started = Instant::now();
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let id = request_id_from(header("x-request-id"));
    let ip = state
        .trusted_proxies
        .client_ip(header("x-forwarded-for"), Some(peer));
    let path = request.uri().path().to_string();
    // Larger than the limit, or broken off: the same answer either way (as `limited_body`,
    // which also says when a refused body is read and discarded first).
    let declared = request.body().size_hint().exact();
    let drains = super::drains_refused_body(declared, header("expect"));
    let body = if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        if drains {
            discard_body(request.into_body(), 0);
        }
        Err(MAX_BODY_BYTES)
    } else {
        let mut body = request.into_body();
        // A request body nearly always arrives as one frame: kept as it is, not copied.
        let mut frames: Vec<Bytes> = Vec::with_capacity(1);
        let mut len = 0;
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        len += data.len();
                        if len > MAX_BODY_BYTES {
                            if drains {
                                discard_body(body, len as u64);
                            }
                            break Err(MAX_BODY_BYTES);
                        }
                        frames.push(data);
                    }
                }
                Some(Err(_)) => break Err(MAX_BODY_BYTES),
                None if frames.len() == 1 => break Ok(frames.pop().unwrap_or_default()),
                None => break Ok(Bytes::from(frames.concat())),
            }
        }
    };
    let response = match timed_out.response() {
        Some(late) => late,
        None => super::omaha::answer(&state, body, ip).await,
    };
    finish_response(&state.metrics, started, &id, &Method::POST, &path, response)
}

/// Reads and drops a refused body behind the answer (`http::discard`), `read` bytes of it read
/// already.
fn discard_body(body: TimedBody, read: u64) {
    let stream = Box::pin(http_body_util::BodyDataStream::new(body));
    tokio::spawn(super::discard(stream, read));
}

/// Shared by a request's [`TimedBody`] and whoever answers it: set when the body was late.
#[derive(Debug, Clone)]
pub struct BodyTimedOut {
    fired: Arc<AtomicBool>,
    timeout: Duration,
}

impl BodyTimedOut {
    fn new(timeout: Duration) -> Self {
        Self {
            fired: Arc::default(),
            timeout,
        }
    }

    /// The 408 to send instead of the handler's answer when the body was late: whatever the
    /// handler made of the broken body (413, 400) would mislead the client.
    pub fn response(&self) -> Option<Response> {
        if !self.fired.load(Ordering::Acquire) {
            return None;
        }
        let message = format!(
            "request body not received within {} s",
            self.timeout.as_secs()
        );
        let response =
            super::ApiError::Status(StatusCode::REQUEST_TIMEOUT, message).into_response();
        Some(super::closing_connection(response))
    }
}

/// A request body that fails once the client has kept the server waiting for it longer than the
/// read timeout. The clock starts when a read first has to wait, so a body already received
/// costs no timer, and a handler that reads late (after authentication) is not held against
/// the client.
pub struct TimedBody {
    inner: Incoming,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_out: BodyTimedOut,
}

impl TimedBody {
    fn new(inner: Incoming, timed_out: BodyTimedOut) -> Self {
        Self {
            inner,
            timer: None,
            timed_out,
        }
    }
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.timed_out.fired.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err("request body read timed out".into())));
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let timeout = this.timed_out.timeout;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if timer.as_mut().poll(cx).is_ready() {
            this.timed_out.fired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err("request body read timed out".into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
