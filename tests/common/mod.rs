//! Shared test harness: a fresh database per test on SQLite (temp file) or MariaDB (a database
//! created on `TEST_MYSQL_URL` and dropped afterwards), a server spawned on a free port, and a
//! macro that runs one test body on both backends. Under `CI=true` a missing MariaDB fails the
//! MySQL half instead of skipping it.
#![allow(dead_code)]

use std::net::SocketAddr;

use clap::Parser as _;
use rollbridge::clock::Clock;
use rollbridge::config::{Cli, Command, ServeArgs};
use rollbridge::http::AppState;
use rollbridge::store::Store;

pub const COREOS_APP: &str = "e96281a6-d1af-4bde-9a0a-97b76e56dc57";
/// 2026-11-25 10:00 UTC, a Wednesday: inside office hours in most of Europe.
pub const T0: i64 = 1_795_600_800_000;

pub struct TestDb {
    pub url: String,
    mysql_drop: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        Self {
            url,
            mysql_drop: None,
            _dir: Some(dir),
        }
    }

    /// A fresh MariaDB database, or None (locally) when TEST_MYSQL_URL is not set.
    pub async fn mysql() -> Option<Self> {
        let ci = std::env::var("CI")
            .map(|v| v == "true" || v == "1")
            .unwrap_or(false);
        let Ok(base) = std::env::var("TEST_MYSQL_URL") else {
            assert!(
                !ci,
                "CI=true but TEST_MYSQL_URL is not set: the MySQL tests must run in CI"
            );
            eprintln!("TEST_MYSQL_URL not set: skipping the MySQL half of this test");
            return None;
        };
        let name = format!("rbt_{}", uuid::Uuid::new_v4().simple());
        let opts = mysql_async::Opts::from_url(&base).expect("TEST_MYSQL_URL is a valid MySQL URL");
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .unwrap_or_else(|e| panic!("MariaDB at TEST_MYSQL_URL unreachable: {e}"));
        use mysql_async::prelude::Queryable;
        conn.query_drop(format!(
            "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        ))
        .await
        .expect("create test database");
        drop(conn);
        let (prefix, _) = base
            .rsplit_once('/')
            .expect("TEST_MYSQL_URL has a database path");
        let url = format!("{prefix}/{name}");
        Some(Self {
            url,
            mysql_drop: Some((base, name)),
            _dir: None,
        })
    }

    pub async fn store(&self) -> Store {
        Store::open(&self.url).await.expect("open store")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var("TEST_KEEP_DB").is_ok() {
            return;
        }
        if let Some((base, name)) = self.mysql_drop.take() {
            // Drop runs inside a runtime; use a separate thread with its own.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    use mysql_async::prelude::Queryable;
                    if let Ok(opts) = mysql_async::Opts::from_url(&base) {
                        if let Ok(mut conn) = mysql_async::Conn::new(opts).await {
                            let _ = conn
                                .query_drop(format!("DROP DATABASE IF EXISTS {name}"))
                                .await;
                            let _ = conn.disconnect().await;
                        }
                    }
                });
            })
            .join();
        }
    }
}

/// Runs `$body(db: TestDb)` once on SQLite and once on MariaDB.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = $crate::common::TestDb::sqlite().await;
                super::$body(db).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn mysql() {
                if let Some(db) = $crate::common::TestDb::mysql().await {
                    super::$body(db).await;
                }
            }
        }
    };
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub clock: Clock,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub db: TestDb,
}

pub struct AppOptions {
    pub clock: Clock,
    pub deny_as_noupdate: bool,
    pub max_body_bytes: usize,
    /// More `rollbridge serve` flags, exactly as on the command line.
    pub extra_args: Vec<String>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            clock: Clock::manual(T0),
            deny_as_noupdate: false,
            max_body_bytes: 1024 * 1024,
            extra_args: Vec::new(),
        }
    }
}

/// `rollbridge serve` arguments as the CLI would parse them (so every option keeps its default).
pub fn serve_args(db_url: &str, options: &AppOptions) -> ServeArgs {
    let mut argv: Vec<String> = [
        "rollbridge",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        db_url,
        "--max-body-bytes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.push(options.max_body_bytes.to_string());
    if options.deny_as_noupdate {
        argv.push("--omaha-deny-as-noupdate".into());
    }
    // The embedded Docker agent is on by default when a socket answers; only tests that ask
    // for it (`--local-agent`) get one.
    if !options.extra_args.iter().any(|a| a == "--local-agent") {
        argv.push("--no-local-agent".into());
    }
    argv.extend(options.extra_args.iter().cloned());
    let cli = Cli::try_parse_from(argv).expect("serve arguments parse");
    match cli.command {
        Command::Serve(args) => *args,
        _ => unreachable!("serve was given"),
    }
}

pub async fn spawn_app(db: TestDb) -> TestApp {
    spawn_app_with(db, AppOptions::default()).await
}

pub async fn spawn_app_with(db: TestDb, options: AppOptions) -> TestApp {
    let args = serve_args(&db.url, &options);
    let app = rollbridge::startup::App::build(&args, options.clock.clone())
        .await
        .expect("build app");
    let addr = app.addr;
    let state = app.state.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        state,
        clock: options.clock,
        shutdown: Some(tx),
        db,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .basic_auth("admin", Some("admin"))
            .send()
            .await
            .expect("GET")
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path).await;
        assert!(r.status().is_success(), "GET {path} -> {}", r.status());
        r.json().await.expect("json")
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .request(method, self.url(path))
            .basic_auth("admin", Some("admin"))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.send_json(reqwest::Method::POST, path, &body).await
    }

    pub async fn put_json(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.send_json(reqwest::Method::PUT, path, &body).await
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .basic_auth("admin", Some("admin"))
            .send()
            .await
            .expect("DELETE")
    }

    /// Posts an Omaha request; returns (HTTP status, body).
    pub async fn omaha(&self, xml: &str) -> (u16, String) {
        let r = self
            .client
            .post(self.url("/v1/update/"))
            .header("content-type", "text/xml")
            .body(xml.to_string())
            .send()
            .await
            .expect("omaha POST");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    /// Creates an app, a channel pointing at a package of `version`, and a group with `policy`
    /// (JSON fields merged over a permissive default). Returns (app_id, channel_id, group_id, package_id).
    pub async fn setup_rollout(
        &self,
        version: &str,
        policy: serde_json::Value,
    ) -> (String, String, String, String) {
        let name = format!("app-{}", uuid::Uuid::new_v4().simple());
        let app: serde_json::Value = self
            .post_json("/api/apps", serde_json::json!({"name": name}))
            .await
            .json()
            .await
            .expect("app");
        let app_id = app["id"].as_str().expect("app id").to_string();
        let pkg: serde_json::Value = self
            .post_json(
                &format!("/api/apps/{app_id}/packages"),
                serde_json::json!({"type": 4, "version": version, "url": "https://pkgs.example.com/", "filename": "pkg.tgz", "size": "1024", "hash": "aGFzaA=="}),
            )
            .await
            .json()
            .await
            .expect("package");
        let package_id = pkg["id"].as_str().expect("package id").to_string();
        let channel: serde_json::Value = self
            .post_json(
                &format!("/api/apps/{app_id}/channels"),
                serde_json::json!({"name": "main", "color": "#000", "package_id": package_id}),
            )
            .await
            .json()
            .await
            .expect("channel");
        let channel_id = channel["id"].as_str().expect("channel id").to_string();
        let mut body = serde_json::json!({
            "name": "group", "channel_id": channel_id, "policy_updates_enabled": true, "policy_safe_mode": false,
            "policy_period_interval": "15 minutes", "policy_max_updates_per_period": 1000, "policy_update_timeout": "60 minutes",
            "track": "main"
        });
        if let (Some(obj), Some(extra)) = (body.as_object_mut(), policy.as_object()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        let r = self
            .post_json(&format!("/api/apps/{app_id}/groups"), body)
            .await;
        assert_eq!(r.status(), 201, "create group");
        let group: serde_json::Value = r.json().await.expect("group");
        let group_id = group["id"].as_str().expect("group id").to_string();
        (app_id, channel_id, group_id, package_id)
    }
}

/// An update_engine-style request for one app.
pub fn check_xml(appid: &str, track: &str, machine: &str, version: &str, body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<request protocol="3.0" version="update_engine-0.4.10" updaterversion="update_engine-0.4.10" installsource="scheduler" ismachine="1">
  <os version="Chateau" platform="CoreOS" sp="{version}_x86_64"></os>
  <app appid="{appid}" version="{version}" track="{track}" bootid="{{11111111-2222-3333-4444-555555555555}}" machineid="{machine}" oem="" alephversion="{version}" board="amd64-usr">
    {body}
  </app>
</request>"#
    )
}

pub const PING_CHECK: &str = r#"<ping active="1"></ping><updatecheck></updatecheck>"#;

pub fn event(t: i32, r: i32) -> String {
    format!(r#"<event eventtype="{t}" eventresult="{r}"></event>"#)
}

/// Parses the first app of a response: (app status, updatecheck status, manifest version).
pub fn first_app(xml: &str) -> (String, Option<String>, Option<String>) {
    let parsed = rollbridge::omaha::protocol::parse_response(xml.as_bytes())
        .unwrap_or_else(|e| panic!("bad response {e}: {xml}"));
    let app = parsed.apps.into_iter().next().expect("one app");
    let uc = app.update_check.as_ref().map(|u| u.status.clone());
    let version = app
        .update_check
        .as_ref()
        .and_then(|u| u.manifests.first())
        .map(|m| m.version.clone());
    (app.status, uc, version)
}

/// Like `spawn_app_with`, but listening on a free port chosen before the server starts, so
/// options that must name the server's own URL (`--public-url`) can be built from `base`.
pub async fn spawn_app_on_port(
    db: TestDb,
    mut options: AppOptions,
    port: u16,
    more_args: impl FnOnce(&str) -> Vec<String>,
) -> TestApp {
    let base = format!("http://127.0.0.1:{port}");
    options.extra_args.extend(more_args(&base));
    let mut args = serve_args(&db.url, &options);
    args.listen = SocketAddr::from(([127, 0, 0, 1], port));
    start_with_args(db, args, options.clock).await
}

/// Like `spawn_app_with`, but without the `--no-local-agent` the harness adds: the embedded
/// Docker agent then follows its default (on when the Docker socket answers).
pub async fn spawn_app_default_agent(db: TestDb, options: AppOptions) -> TestApp {
    let mut args = serve_args(&db.url, &options);
    args.local_agent.no_local_agent = false;
    start_with_args(db, args, options.clock).await
}

async fn start_with_args(db: TestDb, args: ServeArgs, clock: Clock) -> TestApp {
    let app = rollbridge::startup::App::build(&args, clock.clone())
        .await
        .expect("build app");
    let addr = app.addr;
    let state = app.state.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        state,
        clock,
        shutdown: Some(tx),
        db,
    }
}

/// A port that was free a moment ago (bind to port 0, read it, release it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl TestApp {
    /// Stops the server and hands back its database, so a test can start a new server on the
    /// same data (restart scenarios).
    pub async fn stop(mut self) -> TestDb {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Close our keep-alive connections so the graceful shutdown does not wait for them.
        self.client = reqwest::Client::new();
        // Give the background tasks a moment to see the shutdown signal.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let placeholder = TestDb {
            url: String::new(),
            mysql_drop: None,
            _dir: None,
        };
        std::mem::replace(&mut self.db, placeholder)
    }

    /// Creates an API token for `admin` and returns it (for `Authorization: Bearer`).
    pub async fn admin_token(&self) -> String {
        let admin = self
            .state
            .store
            .user_by_name("admin")
            .await
            .expect("lookup admin")
            .expect("admin exists");
        let (token, digest) = rollbridge::auth::new_token();
        self.state
            .store
            .create_token("test", &admin.user.id, &digest, self.clock.now_ms())
            .await
            .expect("create token");
        token
    }
}

impl TestDb {
    /// A second handle on the same database (another replica); only the original drops it.
    pub fn shared(&self) -> TestDb {
        TestDb {
            url: self.url.clone(),
            mysql_drop: None,
            _dir: None,
        }
    }
}

impl TestDb {
    /// The same database reached through another URL (a proxy); only the original drops it.
    pub fn with_url(&self, url: String) -> TestDb {
        TestDb {
            url,
            mysql_drop: None,
            _dir: None,
        }
    }

    /// `host:port` of a MySQL URL.
    pub fn mysql_address(&self) -> Option<String> {
        let (_, rest) = self.url.strip_prefix("mysql://")?.rsplit_once('@')?;
        Some(rest.split('/').next()?.to_string())
    }
}

/// A TCP proxy in front of a server (MariaDB) that a test can cut: open connections are dropped
/// and new ones closed at once, as when the database goes away; `restore` lets them through
/// again.
pub struct TcpProxy {
    pub addr: SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::AbortHandle,
}

impl TcpProxy {
    pub async fn start(target: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, open2) = (up.clone(), open.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                open2.lock().expect("proxy lock").push(task.abort_handle());
            }
        })
        .abort_handle();
        Self {
            addr,
            up,
            open,
            accept,
        }
    }

    /// Drops every open connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for task in self.open.lock().expect("proxy lock").drain(..) {
            task.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Writes `request` to `addr` as is and reads until the server closes the connection, for at
/// most `bound` (a generous limit on "eventually", not a speed requirement). Err(what was read)
/// when the connection was still open then.
pub async fn raw_exchange(
    addr: SocketAddr,
    request: &[u8],
    bound: std::time::Duration,
) -> Result<String, String> {
    use tokio::io::AsyncWriteExt as _;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write the request");
    read_until_closed(&mut stream, bound).await
}

/// Reads from `stream` until EOF (or a reset) for at most `bound`; see [`raw_exchange`].
pub async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    bound: std::time::Duration,
) -> Result<String, String> {
    read_until(stream, bound, |_| false).await
}

/// Reads from `stream` until `done(what was read)`, EOF or a reset, for at most `bound`: the
/// text read, as `Err` when the bound ran out first.
pub async fn read_until(
    stream: &mut tokio::net::TcpStream,
    bound: std::time::Duration,
    done: impl Fn(&[u8]) -> bool,
) -> Result<String, String> {
    use tokio::io::AsyncReadExt as _;
    let mut seen = Vec::new();
    let read = tokio::time::timeout(bound, async {
        let mut buf = [0u8; 4096];
        while !done(&seen) {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&seen).into_owned();
    match read {
        Ok(()) => Ok(text),
        Err(_) => Err(text),
    }
}
