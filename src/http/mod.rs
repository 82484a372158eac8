//! HTTP: the one list of routes (`routes`), shared request plumbing (state, auth, bounded
//! bodies, request ids, metrics) and the handlers in `api` (CoreRoller-compatible REST),
//! `omaha` (update protocol) and `ops` (health, metrics). Only this module names warp.

pub mod agent;
pub mod api;
pub mod bindings;
pub mod dashboard;
pub mod error;
pub mod hooks;
pub mod metrics;
pub mod omaha;
pub mod ops;
pub mod payloads;
pub mod proxies;
pub mod query;
pub mod server;
pub mod v1;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use warp::filters::path::FullPath;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, Method};
use warp::reply::Response;
use warp::{Buf, Filter, Rejection};

use crate::auth::CredentialCache;
use crate::clock::Clock;
use crate::domain::User;
use crate::omaha::OmahaOptions;
use crate::store::Store;
pub use error::ApiError;

/// Everything handlers need, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: Clock,
    pub omaha: Arc<OmahaOptions>,
    pub max_body_bytes: usize,
    /// Dashboard options (sessions, cookie flags, refresh interval).
    pub dashboard: Arc<crate::config::DashboardArgs>,
    pub credentials: Arc<CredentialCache>,
    /// Failed-login limits and the argon2 verification slots.
    pub logins: Arc<crate::auth::LoginGuard>,
    pub metrics: Arc<metrics::Metrics>,
    /// Woken after a release was promoted to a channel (the embedded agent checks at once).
    pub promotions: Arc<tokio::sync::Notify>,
    /// Webhook secrets, registry access, callback and notification settings.
    pub sources: Arc<crate::config::SourcesArgs>,
    /// Outbound HTTP (callbacks, digest lookups, notifications): one connection pool.
    pub http_client: reqwest::Client,
    /// Payload hosting (`--host-packages`); disabled unless configured at startup.
    pub hosting: Arc<crate::sync::hosting::Hosting>,
    /// The Artifactory poller's shared state (`/v1.0/force`, `/v1.0/info`, `/v1.0/metrics`).
    pub artifactory: Arc<crate::sources::artifactory::ArtHandle>,
    /// Peers whose `X-Forwarded-For` names the client (`--trusted-proxies`).
    pub trusted_proxies: Arc<proxies::TrustedProxies>,
}

impl AppState {
    pub fn new(store: Store, clock: Clock, omaha: OmahaOptions, max_body_bytes: usize) -> Self {
        let metrics = metrics::Metrics::new();
        let _ = metrics
            .registry()
            .register(Box::new(omaha.checks.family.clone()));
        Self {
            store,
            clock,
            omaha: Arc::new(omaha),
            max_body_bytes,
            dashboard: Arc::new(crate::config::DashboardArgs::default()),
            credentials: Arc::new(CredentialCache::default()),
            logins: Arc::default(),
            metrics: Arc::new(metrics),
            promotions: Arc::new(tokio::sync::Notify::new()),
            sources: Arc::new(crate::config::SourcesArgs::default()),
            http_client: outbound_client(),
            hosting: Arc::default(),
            artifactory: Arc::default(),
            trusted_proxies: Arc::default(),
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}

pub fn with_state(
    state: AppState,
) -> impl Filter<Extract = (AppState,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// Reads the body up to `limit` bytes, whatever the transfer encoding; more is an error. A
/// declared `Content-Length` over the limit is that error at once, without waiting for a body
/// that would be refused anyway; the rest of a refused body is read and discarded behind the
/// answer ([`DRAIN_LIMIT_BYTES`]).
pub fn limited_body(
    limit: usize,
) -> impl Filter<Extract = (Result<Bytes, usize>,), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-length")
        .and(warp::header::optional::<String>("expect"))
        .and(warp::body::stream())
        .then(
            move |declared: Option<String>, expect: Option<String>, stream| async move {
                // hyper has refused malformed lengths already; anything unparsable is left to the read.
                let declared = declared.and_then(|d| d.trim().parse::<u64>().ok());
                let drains = drains_refused_body(declared, expect.as_deref());
                if declared.is_some_and(|n| n > limit as u64) {
                    if drains {
                        tokio::spawn(discard(Box::pin(stream), 0));
                    }
                    return Err(limit);
                }
                collect_limited(stream, limit, drains).await
            },
        )
}

/// How much of a refused (too large) body is read and thrown away after the answer, before the
/// connection closes. A client still writing its body when the server answers and closes gets
/// a connection reset under its write instead of the 413 (unread bytes make the kernel reset
/// the connection): what nginx's lingering close avoids. Larger bodies are cut off.
pub const DRAIN_LIMIT_BYTES: u64 = 16 * 1024 * 1024;

/// Whether a refused body with this declared length is read and discarded: not when the client
/// waits for `100 Continue` before sending it (it sends nothing then), nor when it is larger
/// than [`DRAIN_LIMIT_BYTES`].
pub fn drains_refused_body(declared: Option<u64>, expect: Option<&str>) -> bool {
    let waits_for_go_ahead = expect.is_some_and(|e| e.trim().eq_ignore_ascii_case("100-continue"));
    !waits_for_go_ahead && declared.is_none_or(|n| n <= DRAIN_LIMIT_BYTES)
}

/// Reads and drops the rest of a refused body, until [`DRAIN_LIMIT_BYTES`] in all (`read` so far)
/// or an error (the body read timeout ends a slow one). Both servers' bodies: warp's stream and
/// `http::server`'s (as a data stream).
pub(crate) async fn discard<S, B, E>(mut stream: Pin<Box<S>>, mut read: u64)
where
    S: futures_util::Stream<Item = Result<B, E>> + ?Sized,
    B: Buf,
{
    while read <= DRAIN_LIMIT_BYTES {
        match stream.next().await {
            Some(Ok(chunk)) => read += chunk.remaining() as u64,
            _ => return,
        }
    }
}

/// Marks `response` as the connection's last: for answers given without reading the whole body
/// (too large, too late), whose unread rest leaves the connection unable to carry another
/// request. A client reusing it would see its next request fail.
pub fn closing_connection(mut response: Response) -> Response {
    response.headers_mut().insert(
        warp::http::header::CONNECTION,
        HeaderValue::from_static("close"),
    );
    response
}

async fn collect_limited<S, B>(stream: S, limit: usize, drains: bool) -> Result<Bytes, usize>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf + Send + 'static,
{
    let mut stream = Box::pin(stream);
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let Ok(mut chunk) = chunk else {
            return Err(limit);
        };
        if buf.len() + chunk.remaining() > limit {
            if drains {
                let read = (buf.len() + chunk.remaining()) as u64;
                tokio::spawn(discard(stream, read));
            }
            return Err(limit);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            buf.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}

/// A JSON body of at most `state.max_body_bytes`, parsed into `T` (400 with the parser's
/// message on malformed JSON, 413 when too large).
pub fn json_body<T: serde::de::DeserializeOwned + Send>(
    limit: usize,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    limited_body(limit).and_then(|body: Result<Bytes, usize>| async move {
        let body = body.map_err(|n| warp::reject::custom(ApiError::TooLarge(n)))?;
        // The path names the offending field (`policy_max_updates_per_period: invalid type ...`).
        let mut de = serde_json::Deserializer::from_slice(&body);
        let parsed = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
            let path = e.path().to_string();
            if path.is_empty() || path == "." {
                format!("malformed JSON body: {}", e.inner())
            } else {
                format!("malformed JSON body: {path}: {}", e.inner())
            }
        });
        parsed
            .and_then(|value| {
                de.end()
                    .map(|()| value)
                    .map_err(|e| format!("malformed JSON body: {e}"))
            })
            .map_err(|message| warp::reject::custom(ApiError::Invalid(message)))
    })
}

/// Authenticates `Authorization: Basic` (users) or `Bearer` (API tokens).
pub fn authenticated(state: AppState) -> impl Filter<Extract = (User,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(client_ip(&state))
        .and_then(move |header: Option<String>, client: std::net::IpAddr| {
            let state = state.clone();
            async move {
                match check_authorization(&state, header.as_deref(), client).await {
                    Ok(user) => Ok(user),
                    Err(e) => Err(warp::reject::custom(e)),
                }
            }
        })
}

pub async fn check_authorization(
    state: &AppState,
    header: Option<&str>,
    client: std::net::IpAddr,
) -> Result<User, ApiError> {
    use base64::Engine as _;
    let header = header.ok_or(ApiError::Unauthorized)?.trim();
    let now = state.now();
    if let Some(token) = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
    {
        let digest = crate::auth::token_digest(token.trim());
        return state
            .store
            .user_for_token(&digest, now)
            .await
            .map_err(ApiError::from)?
            .ok_or(ApiError::Unauthorized);
    }
    if let Some(encoded) = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| ApiError::Unauthorized)?;
        let text = String::from_utf8(decoded).map_err(|_| ApiError::Unauthorized)?;
        let (username, password) = text.split_once(':').ok_or(ApiError::Unauthorized)?;
        return match check_password(state, client, username, password, true).await? {
            Some(user) => Ok(user),
            None => Err(ApiError::Unauthorized),
        };
    }
    Err(ApiError::Unauthorized)
}

/// The user when `password` is theirs; `None` when it is not (or the user does not exist),
/// counted as a failure for `client` and `username` ([`crate::auth::LoginGuard`]); an error
/// when they must wait first. `cached`: a Basic check verified in the last minute is accepted
/// without argon2 (see [`CredentialCache`]).
pub async fn check_password(
    state: &AppState,
    client: std::net::IpAddr,
    username: &str,
    password: &str,
    cached: bool,
) -> Result<Option<User>, ApiError> {
    let now = state.now();
    if let Some(wait) = state.logins.retry_after(client, username, now) {
        return Err(ApiError::TooManyAttempts(wait));
    }
    let creds = if username.is_empty() || password.is_empty() || password.len() > 1024 {
        None
    } else {
        state.store.user_by_name(username).await?
    };
    let ok = match &creds {
        Some(creds)
            if cached
                && state
                    .credentials
                    .is_cached(username, password, &creds.password_hash, now) =>
        {
            true
        }
        Some(creds) => {
            let _slot = state.logins.verification_slot().await;
            let credentials = state.credentials.clone();
            let hash = creds.password_hash.clone();
            let (user, pass) = (username.to_string(), password.to_string());
            // argon2 is deliberately slow: keep it off the async workers.
            tokio::task::spawn_blocking(move || credentials.verify(&user, &pass, &hash, now))
                .await
                .unwrap_or(false)
        }
        None => false,
    };
    if ok {
        state.logins.record_success(client);
        Ok(creds.map(|c| c.user))
    } else {
        state.logins.record_failure(client, username, now);
        Ok(None)
    }
}

/// Turns a handler result into a response.
pub async fn respond<F>(fut: F) -> Response
where
    F: std::future::Future<Output = Result<Response, ApiError>>,
{
    match fut.await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// A request id: the caller's `X-Request-Id` when it is sane, else a fresh one.
pub fn request_id_from(given: Option<&str>) -> String {
    given
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(crate::domain::new_id)
}

fn request_id() -> impl Filter<Extract = (String,), Error = Rejection> + Clone {
    warp::header::optional::<String>("x-request-id")
        .map(|given: Option<String>| request_id_from(given.as_deref()))
}

/// What every response gets on its way out: the metrics observation, the access log line and
/// the `X-Request-Id` header.
pub fn finish_response(
    metrics: &metrics::Metrics,
    started: Instant,
    id: &str,
    method: &Method,
    path: &str,
    mut response: Response,
) -> Response {
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let route = metrics::route_label(path);
    metrics.observe(route, method.as_str(), status, elapsed.as_secs_f64());
    tracing::info!(request_id = %id, method = %method, route, status, elapsed_ms = elapsed.as_millis() as u64, "request");
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// All routes, with request ids, access logging and metrics around them.
pub fn routes(state: AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let metrics = state.metrics.clone();
    let store = state.store.clone();
    let inner = omaha::routes(state.clone())
        .or(ops::routes(state.clone()))
        .unify()
        .or(v1::routes(state.clone()))
        .unify()
        .or(hooks::routes(state.clone()))
        .unify()
        .or(bindings::routes(state.clone()))
        .unify()
        .or(payloads::routes(state.clone()))
        .unify()
        .or(dashboard::routes(state.clone()))
        .unify()
        .or(agent::routes(state.clone()))
        .unify()
        .or(api::routes(state))
        .unify()
        .recover(error::recover)
        .unify();
    warp::any()
        .map(Instant::now)
        .and(request_id())
        .and(warp::method())
        .and(warp::path::full())
        .and(fresh_last_seen(store))
        .and(warp::ext::optional::<server::BodyTimedOut>())
        .and(inner)
        .map(
            move |started: Instant,
                  id: String,
                  method: Method,
                  path: FullPath,
                  timed_out: Option<server::BodyTimedOut>,
                  response| {
                let response = timed_out.and_then(|t| t.response()).unwrap_or(response);
                finish_response(&metrics, started, &id, &method, path.as_str(), response)
            },
        )
}

/// REST and dashboard reads show "last seen" and count active instances by it: the batched
/// "last seen" values (`store::last_seen`) are written first, so what a reader sees includes
/// every check answered before the request.
fn fresh_last_seen(store: Store) -> impl Filter<Extract = (), Error = Infallible> + Clone {
    warp::path::full()
        .then(move |path: FullPath| {
            let store = store.clone();
            async move {
                let path = path.as_str();
                if path.starts_with("/api/") || path.starts_with("/ui") {
                    if let Err(e) = store.flush_last_seen().await {
                        tracing::warn!(error = %e, "writing \"last seen\" before a read failed");
                    }
                }
            }
        })
        .untuple_one()
}

/// The outbound HTTP client: bounded connect time, an identifying user agent.
pub fn outbound_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .user_agent(concat!("rollbridge/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// A filter that matches nothing, for a route group with no routes yet.
pub fn no_routes() -> BoxedFilter<(Response,)> {
    warp::any()
        .and_then(|| async { Err::<Response, Rejection>(warp::reject::not_found()) })
        .boxed()
}

/// The TCP peer of a request, put into its extensions by `http::server`.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The client address of a request (see `http::proxies`): the peer, or what a trusted proxy
/// says in `X-Forwarded-For`.
pub fn client_ip(
    state: &AppState,
) -> impl Filter<Extract = (std::net::IpAddr,), Error = Rejection> + Clone {
    let trusted = state.trusted_proxies.clone();
    warp::header::optional::<String>("x-forwarded-for")
        .and(warp::ext::optional::<PeerAddr>())
        .map(move |forwarded: Option<String>, peer: Option<PeerAddr>| {
            trusted.client_ip(forwarded.as_deref(), peer.map(|p| p.0))
        })
}
