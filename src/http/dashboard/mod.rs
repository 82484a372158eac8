//! The server-rendered dashboard under `/ui/` (and `/` redirecting there): login sessions with a
//! per-session CSRF token, pages rendered with maud, charts as server-side SVG, and a few lines of
//! embedded JavaScript that refresh a page's live parts by polling the same URL with `live=1`
//! (which answers JSON: `{"parts": {"<element id>": "<html>"}}`). Every page reads without
//! JavaScript. Writes go through the same validation (`GroupInput::validate`, ...) and `Store`
//! methods as the REST API, so both behave identically.
//!
//! Layout: this file holds routing and request plumbing (sessions, cookies, CSRF, form bodies,
//! responses); `views` the shared page pieces, `charts` the SVG, `pages` the GET handlers and
//! `actions` the POST handlers; `sources` the sources and agents pages with their actions.

mod actions;
mod charts;
mod pages;
mod sources;
mod views;

use bytes::Bytes;
use maud::Markup;
use rand::RngCore;
use subtle::ConstantTimeEq;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::{Reply, Response};
use warp::Filter;

use super::{limited_body, with_state, AppState};
use crate::domain::ValidationError;
use crate::store::dashboard::Session;
use crate::store::StoreError;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "rb_session";
/// Name of the hidden CSRF field in every state-changing form.
pub const CSRF_FIELD: &str = "csrf";

/// A decoded `application/x-www-form-urlencoded` body or query string, in order, with repeats
/// (checkbox lists send one pair per checked box).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    pub fn parse(raw: &str) -> Self {
        Self(
            raw.split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    /// The first value of `name`, if sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, trimmed; empty counts as absent.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A checkbox: present (any value but "0"/"false") means on.
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some(v) if v != "0" && v != "false")
    }
}

/// Decodes `%XX` escapes and `+` (space); invalid escapes are kept as written and invalid
/// UTF-8 is replaced, so hostile input never fails the request.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A logged-in request: the state, the session and the digest of its cookie.
#[derive(Clone)]
pub struct Ctx {
    pub state: AppState,
    pub session: Session,
    pub id_hash: String,
}

impl Ctx {
    pub fn now(&self) -> i64 {
        self.state.now()
    }

    pub fn team(&self) -> &str {
        &self.session.user.team_id
    }

    pub fn csrf(&self) -> &str {
        &self.session.csrf_token
    }
}

/// An error a dashboard handler turns into an HTML page.
#[derive(Debug)]
pub enum UiError {
    NotFound,
    Forbidden(String),
    BadRequest(String),
    /// The database is down or busy (503, Retry-After); the cause is logged.
    Unavailable,
    Internal(String),
}

impl From<StoreError> for UiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound,
            StoreError::Invalid(v) => Self::BadRequest(v.to_string()),
            StoreError::Conflict(m) => Self::BadRequest(m),
            e if e.is_transient() => {
                crate::http::error::log_database_unavailable(&e);
                Self::Unavailable
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<ValidationError> for UiError {
    fn from(e: ValidationError) -> Self {
        Self::BadRequest(e.to_string())
    }
}

impl UiError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here (it may have been deleted).".to_string(),
            ),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, "Forbidden", m),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            Self::Unavailable => {
                let mut response = html(
                    StatusCode::SERVICE_UNAVAILABLE,
                    views::error_page(
                        "Database unavailable",
                        "The database cannot be reached right now. Try again in a moment.",
                    ),
                );
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(crate::http::error::RETRY_AFTER_SECONDS),
                );
                return response;
            }
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "dashboard internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error",
                    "Something went wrong on the server; the details are in its log.".to_string(),
                )
            }
        };
        html(status, views::error_page(title, &message))
    }
}

/// A validation failure to show next to a form field (`field` is the input's name; an unknown
/// or empty field shows at the top of the form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// A submitted form re-rendered after an error: which form, what was typed, what is wrong.
#[derive(Debug, Clone, Default)]
pub struct FormState {
    pub form: String,
    pub values: Form,
    pub error: Option<FieldError>,
}

impl FormState {
    pub fn new(form: &str, values: Form, error: FieldError) -> Self {
        Self {
            form: form.to_string(),
            values,
            error: Some(error),
        }
    }
}

/// Turns a store/validation failure into a field error (conflicts and the like have no field).
pub fn field_error(e: StoreError) -> Result<FieldError, UiError> {
    match e {
        StoreError::Invalid(v) => Ok(FieldError {
            field: v.field,
            message: v.message,
        }),
        StoreError::Conflict(m) => Ok(FieldError {
            field: String::new(),
            message: m,
        }),
        other => Err(other.into()),
    }
}

impl From<ValidationError> for FieldError {
    fn from(v: ValidationError) -> Self {
        Self {
            field: v.field,
            message: v.message,
        }
    }
}

/// Headers every dashboard response carries: no caching of private pages, a strict CSP (no
/// inline script or style, nothing from other origins), no framing, no sniffing.
fn harden(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

pub fn html(status: StatusCode, markup: Markup) -> Response {
    let mut response = warp::reply::with_status(markup.into_string(), status).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    harden(response)
}

/// 303 See Other: the browser follows with a GET (post/redirect/get).
pub fn redirect(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    harden(response)
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    harden(warp::reply::with_status(warp::reply::json(value), status).into_response())
}

/// Only same-site dashboard paths are accepted as a post-login destination (no open redirect).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.contains("//")
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => "/ui/".to_string(),
    }
}

fn session_cookie(state: &AppState, value: &str, max_age_secs: i64) -> String {
    let mut cookie = format!(
        "{SESSION_COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}"
    );
    if max_age_secs > 0 {
        let expires = chrono::Utc::now() + chrono::Duration::seconds(max_age_secs);
        cookie.push_str(&format!(
            "; Expires={}",
            expires.format("%a, %d %b %Y %H:%M:%S GMT")
        ));
    } else {
        cookie.push_str("; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
    }
    if state.dashboard.secure_cookie {
        cookie.push_str("; Secure");
    }
    cookie
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Creates a session for `user_id`; returns the cookie to set.
async fn start_session(state: &AppState, user_id: &str) -> Result<String, UiError> {
    let now = state.now();
    // Expired sessions are pruned at each login: cheap, and keeps the table bounded.
    state.store.prune_sessions(now).await?;
    let value = random_hex();
    let digest = crate::auth::token_digest(&value);
    let lifetime = state.dashboard.session_ms();
    state
        .store
        .create_session(&digest, user_id, &random_hex(), now, now + lifetime)
        .await?;
    Ok(session_cookie(state, &value, lifetime / 1000))
}

/// The user when `password` is theirs (argon2 off the async workers, failures limited per client
/// and user: `http::check_password`); `Err(seconds)` when the client must wait first.
async fn lookup_user_password(
    state: &AppState,
    client: std::net::IpAddr,
    username: &str,
    password: &str,
) -> Result<Result<Option<crate::domain::User>, u64>, UiError> {
    match crate::http::check_password(state, client, username, password, false).await {
        Ok(user) => Ok(Ok(user)),
        Err(crate::http::ApiError::TooManyAttempts(seconds)) => Ok(Err(seconds)),
        // Already logged where the store error was mapped.
        Err(crate::http::ApiError::Unavailable(_)) => Err(UiError::Unavailable),
        Err(e) => Err(UiError::Internal(e.to_string())),
    }
}

/// The logged-in context for a request's cookie, if its session is valid.
async fn lookup(state: &AppState, cookie: Option<&str>) -> Result<Option<Ctx>, UiError> {
    let Some(value) = cookie.filter(|v| !v.is_empty() && v.len() <= 256) else {
        return Ok(None);
    };
    let digest = crate::auth::token_digest(value);
    Ok(state
        .store
        .session(&digest, state.now())
        .await?
        .map(|session| Ctx {
            state: state.clone(),
            session,
            id_hash: digest,
        }))
}

fn csrf_ok(ctx: &Ctx, form: &Form) -> bool {
    let given = form.get(CSRF_FIELD).unwrap_or("");
    !given.is_empty() && bool::from(given.as_bytes().ct_eq(ctx.csrf().as_bytes()))
}

/// The login page for a request that needs a session.
fn to_login(path: &str) -> Response {
    redirect(&format!("/ui/login?next={}", encode(path)))
}

/// The query string, empty when absent.
fn raw_query() -> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// A dashboard page (GET).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageRoute {
    Overview,
    Activity,
    Password,
    App { app: String },
    Group { app: String, group: String },
    Instance { app: String },
    Package { app: String, package: String },
    Sources,
    Agents,
}

/// A dashboard action (POST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionRoute {
    Logout,
    Password,
    CreateApp,
    CreateChannel { app: String },
    CreatePackage { app: String },
    CreateGroup { app: String },
    Promote { app: String, channel: String },
    Blacklist { app: String, package: String },
    Policy { app: String, group: String },
    Pause { app: String, group: String },
    Resume { app: String, group: String },
    CreateBinding,
    UpdateBinding { app: String, binding: String },
    DeleteBinding { app: String, binding: String },
    PollNow,
}

/// The path below `/ui/`, split and percent-decoded.
fn segments(tail: &str) -> Vec<String> {
    tail.split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect()
}

pub fn page_route(tail: &str) -> Option<PageRoute> {
    let seg = segments(tail);
    let s: Vec<&str> = seg.iter().map(String::as_str).collect();
    Some(match s.as_slice() {
        [] => PageRoute::Overview,
        ["activity"] => PageRoute::Activity,
        ["password"] => PageRoute::Password,
        ["sources"] => PageRoute::Sources,
        ["agents"] => PageRoute::Agents,
        ["apps", app] => PageRoute::App {
            app: app.to_string(),
        },
        ["apps", app, "groups", group] => PageRoute::Group {
            app: app.to_string(),
            group: group.to_string(),
        },
        ["apps", app, "instance"] => PageRoute::Instance {
            app: app.to_string(),
        },
        ["apps", app, "packages", package] => PageRoute::Package {
            app: app.to_string(),
            package: package.to_string(),
        },
        _ => return None,
    })
}

pub fn action_route(tail: &str) -> Option<ActionRoute> {
    let seg = segments(tail);
    let s: Vec<&str> = seg.iter().map(String::as_str).collect();
    let own = |v: &&str| v.to_string();
    Some(match s.as_slice() {
        ["logout"] => ActionRoute::Logout,
        ["password"] => ActionRoute::Password,
        ["apps"] => ActionRoute::CreateApp,
        ["bindings"] => ActionRoute::CreateBinding,
        ["sources", "poll"] => ActionRoute::PollNow,
        ["apps", app, "bindings", binding] => ActionRoute::UpdateBinding {
            app: own(app),
            binding: own(binding),
        },
        ["apps", app, "bindings", binding, "delete"] => ActionRoute::DeleteBinding {
            app: own(app),
            binding: own(binding),
        },
        ["apps", app, "channels"] => ActionRoute::CreateChannel { app: own(app) },
        ["apps", app, "packages"] => ActionRoute::CreatePackage { app: own(app) },
        ["apps", app, "groups"] => ActionRoute::CreateGroup { app: own(app) },
        ["apps", app, "channels", channel, "promote"] => ActionRoute::Promote {
            app: own(app),
            channel: own(channel),
        },
        ["apps", app, "packages", package, "blacklist"] => ActionRoute::Blacklist {
            app: own(app),
            package: own(package),
        },
        ["apps", app, "groups", group, "policy"] => ActionRoute::Policy {
            app: own(app),
            group: own(group),
        },
        ["apps", app, "groups", group, "pause"] => ActionRoute::Pause {
            app: own(app),
            group: own(group),
        },
        ["apps", app, "groups", group, "resume"] => ActionRoute::Resume {
            app: own(app),
            group: own(group),
        },
        _ => return None,
    })
}

/// A rendered page: the whole document plus its live parts (element id → inner HTML).
pub struct Page {
    pub status: StatusCode,
    pub markup: Markup,
    pub live: Vec<(String, Markup)>,
}

/// GET plumbing: session check (login redirect, or 401 JSON for live polls), then the page;
/// `live=1` answers the page's live parts as JSON.
async fn serve_page(
    state: AppState,
    cookie: Option<String>,
    tail: String,
    query: String,
) -> Response {
    let q = Form::parse(&query);
    let live = q.get("live") == Some("1");
    let path = format!("/ui/{tail}");
    let ctx = match lookup(&state, cookie.as_deref()).await {
        Ok(Some(ctx)) => ctx,
        Ok(None) if live => {
            return json_response(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({"error": "login required"}),
            )
        }
        Ok(None) => {
            let full = if query.is_empty() {
                path
            } else {
                format!("{path}?{query}")
            };
            return to_login(&full);
        }
        Err(e) => return e.into_response(),
    };
    let Some(route) = page_route(&tail) else {
        return UiError::NotFound.into_response();
    };
    match pages::render(&ctx, &route, &q, None).await {
        Ok(page) if live => {
            let parts: serde_json::Map<String, serde_json::Value> = page
                .live
                .into_iter()
                .map(|(id, markup)| (id, serde_json::Value::String(markup.into_string())))
                .collect();
            json_response(StatusCode::OK, &serde_json::json!({ "parts": parts }))
        }
        Ok(page) => html(page.status, page.markup),
        Err(UiError::NotFound) if live => json_response(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not found"}),
        ),
        Err(e) => e.into_response(),
    }
}

/// POST plumbing: body size limit, form decoding, session (login redirect) and CSRF (403)
/// checks before the action runs.
async fn serve_action(
    state: AppState,
    cookie: Option<String>,
    tail: String,
    client: std::net::IpAddr,
    fetch_site: Option<String>,
    body: Result<Bytes, usize>,
) -> Response {
    let Ok(body) = body else {
        let response = UiError::BadRequest("The form is too large.".into()).into_response();
        return crate::http::closing_connection(response);
    };
    let form = Form::parse(&String::from_utf8_lossy(&body));
    if tail == "login" {
        // Login CSRF (another site logging the browser in as someone else): the login form has
        // no session to bind a token to, so it relies on the browser saying where the form came
        // from. Clients that send no `Sec-Fetch-Site` (scripts, old browsers) are let through.
        if fetch_site.as_deref() == Some("cross-site") {
            return UiError::Forbidden(
                "Logging in from another site's form is refused. Open the login page of this server and try again."
                    .into(),
            )
            .into_response();
        }
        return actions::login(state, client, form).await;
    }
    let ctx = match lookup(&state, cookie.as_deref()).await {
        Ok(Some(ctx)) => ctx,
        Ok(None) => return to_login("/ui/"),
        Err(e) => return e.into_response(),
    };
    if !csrf_ok(&ctx, &form) {
        return UiError::Forbidden(
            "The form's security token is missing or wrong (the page may be stale). Reload the page and try again."
                .into(),
        )
        .into_response();
    }
    let Some(route) = action_route(&tail) else {
        return UiError::NotFound.into_response();
    };
    match actions::run(ctx, route, client, form).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    harden(response)
}

fn login_page(query: String) -> Response {
    let q = Form::parse(&query);
    html(
        StatusCode::OK,
        views::login_page(&safe_next(q.get("next")), None, ""),
    )
}

pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let limit = state.max_body_bytes.min(256 * 1024);
    let cookie = || warp::cookie::optional::<String>(SESSION_COOKIE);
    let tail = || warp::path::tail().map(|t: warp::filters::path::Tail| t.as_str().to_string());

    let root = warp::path::end()
        .and(warp::get().or(warp::head()).unify())
        .map(|| redirect("/ui/"));
    let assets = warp::path!("ui" / "assets" / "app.css")
        .and(warp::get())
        .map(|| asset(CSS, "text/css; charset=utf-8"))
        .or(warp::path!("ui" / "assets" / "app.js")
            .and(warp::get())
            .map(|| asset(JS, "text/javascript; charset=utf-8")))
        .unify();
    let login = warp::path!("ui" / "login")
        .and(warp::get())
        .and(raw_query())
        .map(login_page);
    // `/ui` without the slash: relative links on the pages assume `/ui/`.
    let bare = warp::path("ui")
        .and(warp::path::end())
        .and(warp::path::full())
        .and(warp::get())
        .and_then(|p: warp::filters::path::FullPath| async move {
            if p.as_str().ends_with('/') {
                Err(warp::reject::not_found())
            } else {
                Ok(redirect("/ui/"))
            }
        });
    let pages = warp::path("ui")
        .and(warp::get().or(warp::head()).unify())
        .and(with_state(state.clone()))
        .and(cookie())
        .and(tail())
        .and(raw_query())
        .then(serve_page);
    let client_ip = crate::http::client_ip(&state);
    let actions = warp::path("ui")
        .and(warp::post())
        .and(with_state(state))
        .and(cookie())
        .and(tail())
        .and(client_ip)
        .and(warp::header::optional::<String>("sec-fetch-site"))
        .and(limited_body(limit))
        .then(serve_action);

    root.or(assets)
        .unify()
        .or(login)
        .unify()
        .or(bare)
        .unify()
        .or(pages)
        .unify()
        .or(actions)
        .unify()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_like_browsers_send_them() {
        let f = Form::parse("name=a+b%26c&x=%ZZ&c=1&c=2&empty=&%3Cscript%3E=%E2%9C%93");
        assert_eq!(f.get("name"), Some("a b&c"));
        assert_eq!(f.get("x"), Some("%ZZ"));
        assert_eq!(f.all("c"), vec!["1", "2"]);
        assert_eq!(f.text("empty"), None);
        assert_eq!(f.get("<script>"), Some("✓"));
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(encode("/ui/apps?x=1 2"), "%2Fui%2Fapps%3Fx%3D1%202");
    }

    #[test]
    fn next_is_limited_to_the_dashboard() {
        assert_eq!(safe_next(Some("/ui/activity?x=1")), "/ui/activity?x=1");
        assert_eq!(safe_next(Some("https://evil.example/")), "/ui/");
        assert_eq!(safe_next(Some("//evil.example/ui/")), "/ui/");
        assert_eq!(safe_next(Some("/ui//evil.example")), "/ui/");
        assert_eq!(safe_next(Some("/ui/\\evil")), "/ui/");
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn routes_parse() {
        assert_eq!(page_route(""), Some(PageRoute::Overview));
        assert_eq!(
            page_route("apps/a/groups/g"),
            Some(PageRoute::Group {
                app: "a".into(),
                group: "g".into()
            })
        );
        assert_eq!(page_route("apps/a/groups/g/x"), None);
        assert_eq!(
            action_route("apps/a/groups/g/pause"),
            Some(ActionRoute::Pause {
                app: "a".into(),
                group: "g".into()
            })
        );
        assert_eq!(action_route("apps/a/groups/g/explode"), None);
    }
}
