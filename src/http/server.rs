//! The HTTP/1.1 server: accepts connections until shutdown, then lets open connections finish
//! (graceful), and routes each request. Omaha update checks (`POST /v1/update/`, nearly all of
//! a fleet's traffic) and the health probe (`GET /v1.0/health`, polled by load balancers) are
//! answered directly; every other request goes through the warp routes (`http::routes`). All get
//! the same request id, metrics and access log (`http::finish_response`).
//!
//! Why not `warp::serve`: its filter tree costs more CPU per request than the whole Omaha answer
//! from the read snapshot, and its HTTP/1-or-2 detection wraps every connection's reads. Plain
//! HTTP/2 (h2c) is not offered: Omaha clients, agents and browsers speak HTTP/1.1 to a plain
//! listener.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::future::Either;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use warp::http::{Method, Request};
use warp::reply::Response;

use super::{client_ip_from, finish_response, request_id_from, AppState, PeerAddr};
use crate::omaha::protocol::MAX_BODY_BYTES;

/// A client must send its request head within this time (slow-header clients hold a connection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `listener` until `shutdown` resolves, then waits for open connections to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let routes = warp::service(super::routes(state.clone()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
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
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Clients that go away mid-request are normal, not a server error.
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
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
    state: AppState,
    routes: S,
    peer: SocketAddr,
}

type OmahaFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> hyper::service::Service<Request<Incoming>> for Front<S>
where
    S: tower_service::Service<Request<Incoming>, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<OmahaFuture, S::Future>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        if request.method() == Method::POST && super::omaha::is_omaha_path(request.uri().path()) {
            let state = self.state.clone();
            let peer = self.peer;
            return Either::Left(Box::pin(
                async move { Ok(omaha(state, request, peer).await) },
            ));
        }
        if request.method() == Method::GET && request.uri().path() == "/v1.0/health" {
            let state = self.state.clone();
            return Either::Left(Box::pin(async move { Ok(health(state, request).await) }));
        }
        request.extensions_mut().insert(PeerAddr(self.peer));
        let mut routes = self.routes.clone();
        Either::Right(routes.call(request))
    }
}

/// `GET /v1.0/health` without the filter tree: the same answer as the warp route.
async fn health(state: AppState, request: Request<Incoming>) -> Response {
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
        &Method::GET,
        "/v1.0/health",
        response,
    )
}

/// `POST /v1/update/` without the filter tree: the same answer as the warp route.
async fn omaha(state: AppState, request: Request<Incoming>, peer: SocketAddr) -> Response {
    let started = Instant::now();
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let id = request_id_from(header("x-request-id"));
    let ip = client_ip_from(header("x-forwarded-for"), Some(peer));
    let path = request.uri().path().to_string();
    // Larger than the limit, or broken off: the same answer either way (as `limited_body`).
    let body = http_body_util::Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|_| MAX_BODY_BYTES);
    let response = super::omaha::answer(state.clone(), body, ip).await;
    finish_response(&state.metrics, started, &id, &Method::POST, &path, response)
}
