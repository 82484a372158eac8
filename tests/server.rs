//! The HTTP server under adverse conditions, black-box over real sockets: clients that stall
//! mid-body or mid-head or sit idle (408 / closed after `--read-timeout-seconds`), bodies
//! declared over the limit (refused before they are sent; the rest read and discarded when the
//! client sends it anyway, so it sees the answer rather than a reset), shutdown with a client that never
//! finishes (bounded by `--shutdown-grace-seconds`), and a database that goes away (503 with
//! `Retry-After`, not 500) on MariaDB (a proxy the test cuts) and SQLite (a lock held by
//! another connection). Bounds on "eventually" are generous; nothing here measures speed.

mod common;

use std::time::Duration;

use common::{
    raw_exchange, read_until, read_until_closed, serve_args, spawn_app_with, AppOptions, TcpProxy,
    TestApp, TestDb, T0,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long "eventually" may take: far above the 1 s timeouts the tests configure.
const BOUND: Duration = Duration::from_secs(30);
const SECRET: &str = "hub-secret-0123456789abcdef";
const REGISTRY_TOKEN: &str = "registry-token-0123456789";
/// `admin:admin`.
const BASIC: &str = "Basic YWRtaW46YWRtaW4=";

fn args(extra: &[&str]) -> AppOptions {
    AppOptions {
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        ..AppOptions::default()
    }
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_bodies_get_408_and_idle_or_stalled_connections_close() {
    let t = spawn_app_with(
        TestDb::sqlite().await,
        args(&["--read-timeout-seconds", "1"]),
    )
    .await;

    // QA's reproduction: the Omaha endpoint (no auth), 1000 bytes declared, 8 sent.
    let answer = raw_exchange(
        t.addr,
        b"POST /v1/update/ HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n<request",
        BOUND,
    )
    .await
    .expect("a stalled Omaha body ends the connection");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"));

    // REST (authenticated), and a chunked body that stops mid-chunk.
    for request in [
        format!(
            "POST /api/apps HTTP/1.1\r\nHost: t\r\nAuthorization: {BASIC}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"name\":"
        ),
        format!(
            "POST /api/apps HTTP/1.1\r\nHost: t\r\nAuthorization: {BASIC}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n{{\"name\""
        ),
    ] {
        let answer = raw_exchange(t.addr, request.as_bytes(), BOUND)
            .await
            .expect("a stalled REST body ends the connection");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.contains("request body not received within 1 s"),
            "{answer}"
        );
        assert!(answer.to_ascii_lowercase().contains("connection: close"));
    }

    // A complete request is answered, then the idle keep-alive connection is closed.
    let answer = raw_exchange(
        t.addr,
        b"GET /v1.0/health HTTP/1.1\r\nHost: t\r\n\r\n",
        BOUND,
    )
    .await
    .expect("an idle keep-alive connection is closed");
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK", "{answer}");

    // A head that never ends.
    raw_exchange(
        t.addr,
        b"GET /v1.0/health HTTP/1.1\r\nHost: t\r\nX-Slo",
        BOUND,
    )
    .await
    .expect("a stalled head ends the connection");

    // Nothing half-received was stored; the 408s are in the metrics like any answer.
    let apps = t.get_json("/api/apps").await;
    assert_eq!(
        apps.as_array().map(Vec::len),
        Some(1),
        "only the seed: {apps}"
    );
    let metrics = t.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.contains(r#"route="/api/apps""#) && l.contains(r#"status="408""#)),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declared_length_over_the_limit_is_refused_without_the_body() {
    // An hour to send a body: only an answer that does not wait for it arrives within BOUND.
    let t = spawn_app_with(
        TestDb::sqlite().await,
        args(&["--read-timeout-seconds", "3600", "--webhook-secret", SECRET]),
    )
    .await;
    let over_rest = 1024 * 1024 + 1;
    let cases = [
        (
            format!(
                "POST /api/apps HTTP/1.1\r\nHost: t\r\nAuthorization: {BASIC}\r\n\
                 Content-Type: application/json\r\nContent-Length: {over_rest}\r\n\r\n"
            ),
            "HTTP/1.1 413",
        ),
        // A client that waits for `100 Continue` gets the refusal instead.
        (
            format!(
                "POST /api/apps HTTP/1.1\r\nHost: t\r\nAuthorization: {BASIC}\r\n\
                 Expect: 100-continue\r\nContent-Length: {over_rest}\r\n\r\n"
            ),
            "HTTP/1.1 413",
        ),
        (
            format!(
                "POST /v1.0/hooks/generic/ci HTTP/1.1\r\nHost: t\r\n\
                 Content-Length: {over_rest}\r\n\r\n"
            ),
            "HTTP/1.1 413",
        ),
        // Omaha: 64 KiB, and an oversized envelope is a 400 there.
        (
            format!(
                "POST /v1/update/ HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n<request",
                64 * 1024 + 1
            ),
            "HTTP/1.1 400",
        ),
    ];
    for (request, expected) in &cases {
        // The answer comes at once; the connection then stays open for a while to take the
        // body the client may still send (`a_refused_body_being_sent_gets_the_answer_not_a_reset`).
        let answer = first_response(t.addr, request.as_bytes())
            .await
            .unwrap_or_else(|partial| panic!("no answer without the body: {partial:?}"));
        assert!(answer.starts_with(expected), "{request}\n->\n{answer}");
        assert!(answer.contains("larger than"), "{answer}");
        assert!(!answer.contains("100 Continue"), "{answer}");
        // The unsent body would be read as the next request: the connection ends here.
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    // A declared length within the limit is read as before.
    let body = r#"{"name": "within-the-limit"}"#;
    let answer = raw_exchange(
        t.addr,
        format!(
            "POST /api/apps HTTP/1.1\r\nHost: t\r\nAuthorization: {BASIC}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
        BOUND,
    )
    .await
    .expect("answered");
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}

/// Sends `request` and reads one whole response (head and `Content-Length` body) within
/// `BOUND`, without waiting for the connection to close.
async fn first_response(addr: std::net::SocketAddr, request: &[u8]) -> Result<String, String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write the request");
    read_until(&mut stream, BOUND, |seen| {
        let text = String::from_utf8_lossy(seen);
        let Some(end) = text.find("\r\n\r\n") else {
            return false;
        };
        let length = text[..end]
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        seen.len() >= end + 4 + length
    })
    .await
}

/// Sends `head` and then `body` in full (as clients that do not wait for `100 Continue` do),
/// reading the answer meanwhile: the answer, or why there was none.
async fn send_whole_body(addr: std::net::SocketAddr, head: String, body: Vec<u8>) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let answer = tokio::spawn(async move {
        let mut seen = Vec::new();
        let _ = tokio::time::timeout(BOUND, reader.read_to_end(&mut seen)).await;
        String::from_utf8_lossy(&seen).into_owned()
    });
    let sent = async {
        writer.write_all(head.as_bytes()).await?;
        writer.write_all(&body).await?;
        writer.flush().await
    }
    .await;
    let answer = answer.await.expect("reader");
    match sent {
        Ok(()) => answer,
        Err(e) => format!("the body could not be sent ({e}); answer so far: {answer:?}"),
    }
}

/// A client that sends a too-large body without waiting (no `Expect: 100-continue`) sees the
/// refusal, not a connection reset under its write: the server reads and discards the rest of
/// the body behind its answer. 15 MiB is far more than loopback socket buffers hold, so without
/// that the write fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_body_being_sent_gets_the_answer_not_a_reset() {
    let t = spawn_app_with(TestDb::sqlite().await, args(&["--webhook-secret", SECRET])).await;
    let size = 15 * 1024 * 1024;
    let body = vec![b' '; size];
    let mut chunked = Vec::new();
    for part in body.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let cases = [
        (
            format!(
                "POST /v1.0/hooks/dockerhub/{SECRET} HTTP/1.1\r\nHost: t\r\n\
                 Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
            ),
            body.clone(),
            "HTTP/1.1 413",
        ),
        // No declared length: refused when the limit is crossed, the rest discarded as well.
        (
            format!(
                "POST /api/apps HTTP/1.1\r\nHost: t\r\nAuthorization: {BASIC}\r\n\
                 Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            chunked,
            "HTTP/1.1 413",
        ),
        (
            format!("POST /v1/update/ HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n"),
            body.clone(),
            "HTTP/1.1 400",
        ),
    ];
    for (head, body, expected) in cases {
        let answer = send_whole_body(t.addr, head.clone(), body).await;
        assert!(answer.starts_with(expected), "{head}\n->\n{answer}");
        assert!(answer.contains("larger than"), "{answer}");
    }
    // Still serving.
    assert_eq!(t.get("/v1.0/health").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_ends_even_with_a_client_that_never_finishes() {
    let db = TestDb::sqlite().await;
    // The body may take an hour: only the shutdown grace period can end this request.
    let options = args(&[
        "--read-timeout-seconds",
        "3600",
        "--shutdown-grace-seconds",
        "1",
    ]);
    let app = rollbridge::startup::App::build(
        &serve_args(&db.url, &options),
        rollbridge::clock::Clock::manual(T0),
    )
    .await
    .expect("build app");
    let addr = app.addr;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
    client
        .write_all(
            b"POST /v1/update/ HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n",
        )
        .await
        .expect("write the head");
    // `100 Continue` means the handler is reading the body: the request is in flight.
    let mut seen = Vec::new();
    tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
            let n = client.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before 100 Continue");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("100 Continue");
    assert!(
        String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    client.write_all(b"<request").await.expect("write a little");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .expect("the server stops although a client is still sending")
        .expect("server task");
    // The stalled request was dropped, not answered.
    let rest = read_until_closed(&mut client, BOUND)
        .await
        .expect("the connection is closed");
    assert_eq!(rest, "");
    drop(db);
}

// ---------------------------------------------------------------------------------------------
// Database outages
// ---------------------------------------------------------------------------------------------

/// Logs `admin` into the dashboard; returns the session cookie (`rb_session=...`).
async fn dashboard_login(t: &TestApp) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = client
        .post(t.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=admin&password=admin&next=%2Fui%2F")
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("session cookie");
    cookie.split(';').next().expect("name=value").to_string()
}

/// Asserts the answer is 503 with `Retry-After` (a JSON `error` naming the database, for the
/// API and webhooks).
async fn assert_unavailable(what: &str, r: reqwest::Response, json_body: bool) {
    let status = r.status().as_u16();
    let retry_after = r.headers().get("retry-after").cloned();
    let body = r.text().await.expect("body");
    assert_eq!(status, 503, "{what}: {body}");
    let retry_after = retry_after.unwrap_or_else(|| panic!("{what}: no Retry-After"));
    assert!(
        retry_after
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| s > 0),
        "{what}: Retry-After {retry_after:?}"
    );
    assert!(body.contains("database"), "{what}: {body}");
    if json_body {
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"));
        assert!(v["error"].is_string(), "{what}: {body}");
    }
}

/// Every entry point that needs the database, while it is unavailable: 503, never 500.
async fn assert_everything_unavailable(t: &TestApp, cookie: &str) {
    let c = &t.client;
    assert_unavailable("GET /api/apps", t.get("/api/apps").await, true).await;
    assert_unavailable(
        "POST /api/apps",
        t.post_json("/api/apps", json!({"name": "during-outage"}))
            .await,
        true,
    )
    .await;
    assert_unavailable(
        "API token",
        c.get(t.url("/api/activity"))
            .bearer_auth("some-token")
            .send()
            .await
            .expect("GET"),
        true,
    )
    .await;
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let r = c
            .request(method, t.url("/v1.0/health"))
            .send()
            .await
            .expect("health");
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
            Some("5"),
            "health"
        );
    }

    // Webhooks: the documented 503 (the sender retries), whatever step needs the database first.
    let body = br#"{"app":"web","version":"1.4.0","image":"registry.example/team/web:1.4.0"}"#;
    let r = c
        .post(t.url("/v1.0/hooks/generic/ci"))
        .header(
            "x-hub-signature-256",
            rollbridge::sources::generic::sign(SECRET.as_bytes(), body),
        )
        .body(body.to_vec())
        .send()
        .await
        .expect("generic");
    assert_unavailable("generic webhook", r, true).await;
    let r = c
        .post(t.url(&format!("/v1.0/hooks/dockerhub/{SECRET}")))
        .body(include_bytes!("../fixtures/webhooks/dockerhub-push.json").to_vec())
        .send()
        .await
        .expect("dockerhub");
    assert_unavailable("Docker Hub webhook", r, true).await;
    let r = c
        .post(t.url("/v1.0/hooks/registry"))
        .header(
            "content-type",
            "application/vnd.docker.distribution.events.v1+json",
        )
        .bearer_auth(REGISTRY_TOKEN)
        .body(include_bytes!("../fixtures/webhooks/registry-push.json").to_vec())
        .send()
        .await
        .expect("registry");
    assert_unavailable("registry webhook", r, true).await;

    // The dashboard: a page for a logged-in user, and the login form.
    let r = c
        .get(t.url("/ui/"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("page");
    assert_unavailable("dashboard page", r, false).await;
    let r = c
        .post(t.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=admin&password=admin")
        .send()
        .await
        .expect("login");
    assert_unavailable("dashboard login", r, false).await;
}

/// Polls until `GET /api/apps` succeeds again.
async fn wait_until_served(t: &TestApp) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if t.get("/api/apps").await.status() == 200 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the API did not recover"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// MariaDB goes away (every connection dropped, new ones closed at once: what a restart, a
/// network cut or a changed password followed by `KILL` look like to the pool).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_outage_is_503_not_500() {
    let Some(db) = TestDb::mysql().await else {
        return;
    };
    let proxy = TcpProxy::start(db.mysql_address().expect("host:port in TEST_MYSQL_URL")).await;
    let (prefix, rest) = db.url.rsplit_once('@').expect("user@host");
    let database = rest.split_once('/').expect("/database").1;
    // prefer_socket=false: else the driver switches to the server's unix socket, past the proxy.
    let via_proxy = format!("{prefix}@{}/{database}?prefer_socket=false", proxy.addr);
    let t = spawn_app_with(
        db.with_url(via_proxy),
        args(&[
            "--webhook-secret",
            SECRET,
            "--registry-token",
            REGISTRY_TOKEN,
        ]),
    )
    .await;
    let cookie = dashboard_login(&t).await;
    assert_eq!(t.get("/api/apps").await.status(), 200);

    proxy.cut();
    assert_everything_unavailable(&t, &cookie).await;

    proxy.restore();
    wait_until_served(&t).await;
    let r = t
        .post_json("/api/apps", json!({"name": "after-outage"}))
        .await;
    assert_eq!(r.status(), 201);
    drop(t);
    drop(db);
}

/// SQLite: another process holds the write lock past the busy timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_busy_is_503_not_500() {
    let db = TestDb::sqlite().await;
    let t = spawn_app_with(db.shared(), AppOptions::default()).await;
    let path = db.url.strip_prefix("sqlite://").expect("sqlite file");
    let other = rusqlite::Connection::open(path).expect("open the file");
    other
        .busy_timeout(Duration::from_secs(30))
        .expect("busy timeout");
    other
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");

    let r = t
        .post_json("/api/apps", json!({"name": "while-locked"}))
        .await;
    assert_unavailable("POST /api/apps while locked", r, true).await;
    // Reads go on (WAL).
    assert_eq!(t.get("/api/apps").await.status(), 200);

    other.execute_batch("ROLLBACK").expect("release the lock");
    let r = t
        .post_json("/api/apps", json!({"name": "after-lock"}))
        .await;
    assert_eq!(r.status(), 201);
}

/// `HEAD /v1.0/health` answers like GET, without a body (503 during an outage: above).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_answers_head() {
    let t = spawn_app_with(TestDb::sqlite().await, AppOptions::default()).await;
    let r = t
        .client
        .head(t.url("/v1.0/health"))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.bytes().await.expect("body").len(), 0);
    // On the wire: no body bytes after the head.
    let answer = raw_exchange(
        t.addr,
        b"HEAD /v1.0/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        BOUND,
    )
    .await
    .expect("closed");
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK", "{answer}");
    assert!(answer.ends_with("\r\n\r\n"), "{answer:?}");
}
