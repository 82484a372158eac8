//! Upstream sync, payload hosting and floors, end to end over real sockets: a fake upstream
//! Omaha server written here (Nebraska's answer shape: one shared `<urls>`, flagged manifests)
//! or a second rollbridge acts as upstream; the syncer under test runs inside a spawned
//! rollbridge on SQLite and MariaDB.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::{check_xml, first_app, TestApp, TestDb, COREOS_APP, PING_CHECK};
use rollbridge::omaha::protocol::{self, parse_response, Request};
use serde_json::{json, Value};
use sha1::Digest as _;
use warp::Filter;

const STABLE_CHANNEL: &str = "e06064ad-4414-4904-9a6e-fd465593d1b2";
const BETA_CHANNEL: &str = "128b8c29-5058-4643-8e67-a1a0e3c641c9";
const STABLE_GROUP: &str = "9a2deb70-37be-4026-853f-bfdd6b347bbe";
const APPID: &str = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}";
const PAYLOAD_NAME: &str = "flatcar_production_update.gz";

// ---------------------------------------------------------------------------
// Fake upstream
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Release {
    version: String,
    size: u64,
    sha1: String,
    sha256: String,
    floor: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Normal,
    Status500,
    Malformed,
    Hang,
    /// A well-formed answer larger than any Omaha answer may be.
    Huge,
}

struct FakeState {
    base: String,
    mode: Mode,
    /// Releases per track, lowest first; the last one is the track's target.
    tracks: HashMap<String, Vec<Release>>,
    payloads: HashMap<String, Vec<u8>>,
    downloads: HashMap<String, usize>,
    requests: Vec<Request<'static>>,
}

#[derive(Clone)]
struct Fake(Arc<Mutex<FakeState>>);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn payload_bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

impl Fake {
    async fn start() -> Self {
        let fake = Fake(Arc::new(Mutex::new(FakeState {
            base: String::new(),
            mode: Mode::Normal,
            tracks: HashMap::new(),
            payloads: HashMap::new(),
            downloads: HashMap::new(),
            requests: Vec::new(),
        })));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        fake.0.lock().unwrap().base = format!("http://{addr}");
        let omaha_fake = fake.clone();
        let omaha = warp::path!("v1" / "update")
            .and(warp::post())
            .and(warp::body::bytes())
            .then(move |body: bytes::Bytes| {
                let fake = omaha_fake.clone();
                async move { fake.answer(&body).await }
            });
        let payload_fake = fake.clone();
        let payloads = warp::path!("payloads" / String / String)
            .and(warp::get())
            .map(move |version: String, name: String| {
                let mut state = payload_fake.0.lock().unwrap();
                let key = format!("{version}/{name}");
                *state.downloads.entry(key.clone()).or_default() += 1;
                match state.payloads.get(&key) {
                    Some(bytes) => warp::http::Response::builder()
                        .status(200)
                        .body(bytes.clone())
                        .unwrap(),
                    None => warp::http::Response::builder()
                        .status(404)
                        .body(Vec::new())
                        .unwrap(),
                }
            });
        tokio::spawn(warp::serve(omaha.or(payloads)).incoming(listener).run());
        fake
    }

    fn url(&self) -> String {
        format!("{}/v1/update/", self.0.lock().unwrap().base)
    }

    fn set_mode(&self, mode: Mode) {
        self.0.lock().unwrap().mode = mode;
    }

    /// Publishes `version` on `track` with a payload; `announced_sha256` overrides the hash
    /// the answer announces (to simulate a corrupted mirror).
    fn release(
        &self,
        track: &str,
        version: &str,
        payload: Vec<u8>,
        floor: Option<&str>,
        announced_sha256: Option<String>,
    ) {
        let mut state = self.0.lock().unwrap();
        let release = Release {
            version: version.into(),
            size: payload.len() as u64,
            sha1: b64(&sha1::Sha1::digest(&payload)),
            sha256: announced_sha256.unwrap_or_else(|| b64(&sha2::Sha256::digest(&payload))),
            floor: floor.map(str::to_string),
        };
        state
            .payloads
            .insert(format!("{version}/{PAYLOAD_NAME}"), payload);
        let list = state.tracks.entry(track.into()).or_default();
        list.push(release);
        list.sort_by(|a, b| {
            semver::Version::parse(&a.version)
                .unwrap()
                .cmp(&semver::Version::parse(&b.version).unwrap())
        });
    }

    fn downloads(&self, version: &str) -> usize {
        let state = self.0.lock().unwrap();
        state
            .downloads
            .get(&format!("{version}/{PAYLOAD_NAME}"))
            .copied()
            .unwrap_or(0)
    }

    fn requests_for(&self, track: &str) -> Vec<Request<'static>> {
        let state = self.0.lock().unwrap();
        state
            .requests
            .iter()
            .filter(|r| r.apps.first().is_some_and(|a| a.track == track))
            .cloned()
            .collect()
    }

    async fn answer(&self, body: &[u8]) -> warp::http::Response<String> {
        let (mode, xml) = {
            let mut state = self.0.lock().unwrap();
            let request = protocol::parse_request(body).expect("the syncer sends valid XML");
            state.requests.push(request.clone().into_owned());
            (state.mode, render(&state, &request))
        };
        let reply = |status: u16, body: String| {
            warp::http::Response::builder()
                .status(status)
                .header("content-type", "text/xml")
                .body(body)
                .unwrap()
        };
        match mode {
            Mode::Normal => reply(200, xml),
            Mode::Status500 => reply(500, "internal error".into()),
            Mode::Malformed => reply(
                200,
                "<response protocol=\"3.0\"><app status=\"ok\"><updatecheck".into(),
            ),
            Mode::Huge => reply(
                200,
                format!(
                    "<response protocol=\"3.0\"><!-- {} --></response>",
                    "x".repeat(100 * 1024)
                ),
            ),
            Mode::Hang => {
                tokio::time::sleep(Duration::from_secs(10)).await;
                reply(200, xml)
            }
        }
    }
}

/// Nebraska's multi-manifest shape: one `<urls>` holding the target's (versioned) codebase.
fn render(state: &FakeState, request: &Request) -> String {
    let app = request.apps.first().expect("one app");
    let head = r#"<?xml version="1.0" encoding="UTF-8"?><response protocol="3.0" server="fake"><daystart elapsed_seconds="0"></daystart>"#;
    let Some(releases) = state.tracks.get(&*app.track) else {
        return format!(
            r#"{head}<app appid="{}" status="error-failedToRetrieveUpdatePackageInfo"><updatecheck status="error-internal"></updatecheck></app></response>"#,
            app.appid
        );
    };
    let current = semver::Version::parse(&app.version).expect("semver version");
    let target = releases.last().expect("a release");
    let ahead: Vec<&Release> = releases
        .iter()
        .filter(|r| semver::Version::parse(&r.version).unwrap() > current)
        .filter(|r| r.floor.is_some() || r.version == target.version)
        .collect();
    let has_floors = ahead
        .iter()
        .any(|r| r.floor.is_some() && r.version != target.version);
    if ahead.is_empty() || (has_floors && !app.multi_manifest_ok) {
        return format!(
            r#"{head}<app appid="{}" status="ok"><updatecheck status="noupdate"></updatecheck></app></response>"#,
            app.appid
        );
    }
    let mut manifests = String::new();
    for r in &ahead {
        let mut flags = String::new();
        if let Some(reason) = &r.floor {
            flags.push_str(&format!(r#" is_floor="true" floor_reason="{reason}""#));
        }
        if r.version == target.version {
            flags.push_str(r#" is_target="true""#);
        }
        manifests.push_str(&format!(
            r#"<manifest version="{v}"{flags}><packages><package name="{PAYLOAD_NAME}" hash="{sha1}" size="{size}" required="true"></package></packages><actions><action event="postinstall" sha256="{sha256}" needsadmin="false" IsDeltaPayload="false" DisablePayloadBackoff="true"></action></actions></manifest>"#,
            v = r.version,
            sha1 = r.sha1,
            size = r.size,
            sha256 = r.sha256,
        ));
    }
    format!(
        r#"{head}<app appid="{appid}" status="ok"><updatecheck status="ok"><urls><url codebase="{base}/payloads/{target}/"></url></urls>{manifests}</updatecheck></app></response>"#,
        appid = app.appid,
        base = state.base,
        target = target.version,
    )
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Polls `probe` until it returns `Some`, for at most 30 s (the syncer runs on real time).
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn channel(app: &TestApp, channel_id: &str) -> Value {
    app.get_json(&format!("/api/apps/{COREOS_APP}/channels/{channel_id}"))
        .await
}

async fn channel_version(app: &TestApp, channel_id: &str) -> Option<String> {
    channel(app, channel_id).await["package"]["version"]
        .as_str()
        .map(str::to_string)
}

async fn wait_for_version(app: &TestApp, channel_id: &str, version: &str) -> Value {
    eventually(&format!("channel {channel_id} at {version}"), || async {
        let c = channel(app, channel_id).await;
        (c["package"]["version"] == version).then_some(c)
    })
    .await
}

async fn activity(app: &TestApp) -> Vec<Value> {
    app.get_json(&format!("/api/activity?app={COREOS_APP}&perpage=500"))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn sync_failures(app: &TestApp, needle: &str) -> Vec<Value> {
    activity(app)
        .await
        .into_iter()
        .filter(|a| a["class"] == 10 && a["description"].as_str().unwrap_or("").contains(needle))
        .collect()
}

async fn metrics(app: &TestApp) -> String {
    app.client
        .get(app.url("/metrics"))
        .basic_auth("admin", Some("admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Value of `rollbridge_sync_checks_total{channel,outcome}` (0 when absent).
fn sync_count(metrics: &str, channel: &str, outcome: &str) -> u64 {
    let needle =
        format!("rollbridge_sync_checks_total{{channel=\"{channel}\",outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn spawn_syncing(db: TestDb, upstream: &str, extra: &[&str]) -> TestApp {
    let mut args = vec![
        "--sync-upstream".to_string(),
        upstream.to_string(),
        "--sync-interval".into(),
        "300ms".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    common::spawn_app_with(
        db,
        common::AppOptions {
            extra_args: args,
            ..Default::default()
        },
    )
    .await
}

// ---------------------------------------------------------------------------
// Syncer
// ---------------------------------------------------------------------------

async fn syncer_follows_upstream_channels(db: TestDb) {
    let fake = Fake::start().await;
    fake.release("stable", "3000.0.0", payload_bytes(1, 1000), None, None);
    fake.release("beta", "3100.0.0", payload_bytes(2, 1000), None, None);
    let app = spawn_syncing(db, &fake.url(), &[]).await;

    let stable = wait_for_version(&app, STABLE_CHANNEL, "3000.0.0").await;
    wait_for_version(&app, BETA_CHANNEL, "3100.0.0").await;
    let pkg = &stable["package"];
    let base = fake.0.lock().unwrap().base.clone();
    assert_eq!(pkg["type"], 1);
    assert_eq!(pkg["url"], format!("{base}/payloads/3000.0.0/"));
    assert_eq!(pkg["filename"], PAYLOAD_NAME);
    assert_eq!(pkg["size"], "1000");
    assert_eq!(
        pkg["hash"],
        b64(&sha1::Sha1::digest(payload_bytes(1, 1000)))
    );
    assert_eq!(
        pkg["coreos_action"]["sha256"],
        b64(&sha2::Sha256::digest(payload_bytes(1, 1000)))
    );
    assert_eq!(pkg["coreos_action"]["disable_payload_backoff"], true);
    assert!(activity(&app).await.iter().any(|a| a["class"] == 6
        && a["version"] == "3000.0.0"
        && a["channel_id"] == STABLE_CHANNEL));

    // A later upstream release is picked up on a following sync.
    fake.release("stable", "3001.0.0", payload_bytes(3, 1200), None, None);
    wait_for_version(&app, STABLE_CHANNEL, "3001.0.0").await;

    // The syncer asks like Nebraska's syncer, with one stable machine id per channel, kept in
    // the database, and the channel's current version.
    let stable_requests = fake.requests_for("stable");
    let beta_requests = fake.requests_for("beta");
    assert!(stable_requests.len() >= 2);
    let ids: Vec<&str> = stable_requests
        .iter()
        .map(|r| &*r.apps[0].machine_id)
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_ne!(ids[0], beta_requests[0].apps[0].machine_id);
    let state = app
        .state
        .store
        .sync_state(STABLE_CHANNEL)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.machine_id, ids[0]);
    assert_eq!(state.upstream_track, "stable");
    let first = &stable_requests[0];
    assert_eq!(first.install_source, "scheduler");
    assert_eq!(first.version, "CoreOSUpdateEngine-0.1.0.0");
    assert_eq!(first.apps[0].appid, APPID);
    assert_eq!(first.apps[0].version, "0.0.0");
    assert!(first.apps[0].multi_manifest_ok && first.apps[0].update_check);
    assert!(stable_requests
        .iter()
        .any(|r| r.apps[0].version == "3000.0.0"));

    // alpha exists locally but not upstream: it fails on its own, reported once.
    eventually("alpha failure recorded", || async {
        (sync_count(&metrics(&app).await, "alpha", "refused") >= 2).then_some(())
    })
    .await;
    assert_eq!(sync_failures(&app, "channel alpha").await.len(), 1);
    assert_eq!(
        channel_version(&app, "a87a03ad-4984-47a1-8dc4-3507bae91ee1").await,
        None
    );
    // Its requests did not register as instances here either.
    let instances = app
        .get_json(&format!(
            "/api/apps/{COREOS_APP}/groups/{STABLE_GROUP}/instances"
        ))
        .await;
    assert_eq!(instances["total"].as_i64().unwrap_or(0), 0, "{instances}");
}
both_backends!(
    syncer_follows_upstream_channels,
    syncer_follows_upstream_channels
);

async fn failing_upstream_is_survived(db: TestDb) {
    let fake = Fake::start().await;
    fake.release("stable", "3000.0.0", payload_bytes(1, 100), None, None);
    fake.set_mode(Mode::Status500);
    let app = spawn_syncing(db, &fake.url(), &["--sync-timeout", "300ms"]).await;

    for (mode, outcome) in [
        (Mode::Status500, "http_status"),
        (Mode::Malformed, "malformed"),
        (Mode::Hang, "unreachable"),
        (Mode::Huge, "malformed"),
    ] {
        fake.set_mode(mode);
        let before = sync_count(&metrics(&app).await, "stable", outcome);
        eventually(&format!("{outcome} counted twice"), || async {
            (sync_count(&metrics(&app).await, "stable", outcome) >= before + 2).then_some(())
        })
        .await;
        assert_eq!(channel_version(&app, STABLE_CHANNEL).await, None);
    }
    // Each kind of failure is in the activity stream once.
    for (needle, count) in [
        ("HTTP 500", 1),
        ("no answer within", 1),
        ("larger than", 1),
        // The truncated document and the oversized one.
        ("upstream answer is malformed", 2),
    ] {
        let stable: Vec<Value> = sync_failures(&app, needle)
            .await
            .into_iter()
            .filter(|a| a["channel_id"] == STABLE_CHANNEL)
            .collect();
        assert_eq!(stable.len(), count, "{needle}: {stable:?}");
    }
    let state = app
        .state
        .store
        .sync_state(STABLE_CHANNEL)
        .await
        .unwrap()
        .unwrap();
    assert!(state.consecutive_failures >= 6, "{state:?}");

    // Once upstream recovers, the channel follows it.
    fake.set_mode(Mode::Normal);
    wait_for_version(&app, STABLE_CHANNEL, "3000.0.0").await;
    // The success is recorded just after the channel moved.
    let state = eventually("the success recorded", || async {
        let state = app.state.store.sync_state(STABLE_CHANNEL).await.unwrap()?;
        (state.consecutive_failures == 0).then_some(state)
    })
    .await;
    assert_eq!(state.last_error, "");
    assert!(state.last_success_ts.is_some());
}
both_backends!(failing_upstream_is_survived, failing_upstream_is_survived);

// ---------------------------------------------------------------------------
// Hosting
// ---------------------------------------------------------------------------

async fn spawn_hosting(
    db: TestDb,
    upstream: Option<&str>,
    extra: &[&str],
) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().display().to_string();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let upstream = upstream.map(str::to_string);
    let app = common::spawn_app_on_port(
        db,
        common::AppOptions::default(),
        common::free_port(),
        move |base| {
            let mut args = vec![
                "--host-packages".to_string(),
                dir_arg,
                "--public-url".into(),
                base.to_string(),
            ];
            if let Some(upstream) = upstream {
                args.extend([
                    "--sync-upstream".to_string(),
                    upstream,
                    "--sync-interval".into(),
                    "300ms".into(),
                ]);
            }
            args.extend(extra);
            args
        },
    )
    .await;
    (app, dir)
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn hosting_downloads_verifies_and_serves(db: TestDb) {
    let fake = Fake::start().await;
    let good = payload_bytes(7, 300_000);
    fake.release("stable", "3000.0.0", good.clone(), None, None);
    // beta announces a SHA-256 that does not match its payload.
    fake.release(
        "beta",
        "3100.0.0",
        payload_bytes(8, 5000),
        None,
        Some(b64(&sha2::Sha256::digest(b"something else"))),
    );
    let (app, dir) = spawn_hosting(db, Some(&fake.url()), &[]).await;

    let stable = wait_for_version(&app, STABLE_CHANNEL, "3000.0.0").await;
    let stored = format!("{COREOS_APP}-amd64-3000.0.0-{PAYLOAD_NAME}");
    assert_eq!(stable["package"]["url"], format!("{}/packages/", app.base));
    assert_eq!(stable["package"]["filename"], stored);
    assert_eq!(stable["package"]["size"], "300000");

    // The wrong SHA-256 is rejected: beta untouched, the activity stream says why, nothing
    // (not even a partial file) is left behind.
    let failures = eventually("beta hash mismatch reported", || async {
        let f = sync_failures(&app, "channel beta").await;
        (!f.is_empty()).then_some(f)
    })
    .await;
    assert!(
        failures[0]["description"]
            .as_str()
            .unwrap()
            .contains("SHA-256"),
        "{failures:?}"
    );
    assert_eq!(failures[0]["severity"], 4);
    assert_eq!(channel_version(&app, BETA_CHANNEL).await, None);
    let packages = app
        .get_json(&format!("/api/apps/{COREOS_APP}/packages"))
        .await;
    assert!(!packages
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["version"] == "3100.0.0"));

    // Several more sync rounds: the stable payload was downloaded once.
    eventually("more sync rounds", || async {
        (sync_count(&metrics(&app).await, "stable", "ok") >= 4).then_some(())
    })
    .await;
    assert_eq!(fake.downloads("3000.0.0"), 1);
    assert!(fake.downloads("3100.0.0") >= 1);
    // Only the verified payload is stored. beta keeps retrying, so at most the one download
    // in flight may exist as a hidden partial file; failed ones never pile up.
    let files = files_in(dir.path());
    let (partial, stored_files): (Vec<String>, Vec<String>) =
        files.into_iter().partition(|f| f.starts_with(".partial-"));
    assert_eq!(stored_files, vec![stored.clone()]);
    assert!(partial.len() <= 1, "{partial:?}");

    // Served back: full, ranges, HEAD, 416.
    let url = app.url(&format!("/packages/{stored}"));
    let full = app.client.get(&url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["content-length"], "300000");
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(full.bytes().await.unwrap().as_ref(), good.as_slice());
    let part = app
        .client
        .get(&url)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 1000-1999/300000");
    assert_eq!(part.headers()["content-length"], "1000");
    assert_eq!(part.bytes().await.unwrap().as_ref(), &good[1000..2000]);
    let resume = app
        .client
        .get(&url)
        .header("range", "bytes=299990-")
        .send()
        .await
        .unwrap();
    assert_eq!(resume.status(), 206);
    assert_eq!(resume.bytes().await.unwrap().as_ref(), &good[299_990..]);
    let suffix = app
        .client
        .get(&url)
        .header("range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(suffix.bytes().await.unwrap().as_ref(), &good[299_995..]);
    let beyond = app
        .client
        .get(&url)
        .header("range", "bytes=300000-")
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);
    assert_eq!(beyond.headers()["content-range"], "bytes */300000");
    let head = app.client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "300000");
    assert!(head.bytes().await.unwrap().is_empty());
    for missing in [
        "/packages/nope.gz",
        "/packages/.partial-x",
        "/packages/..%2f..%2fetc%2fpasswd",
    ] {
        let r = app.client.get(app.url(missing)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{missing}");
    }

    // An update_engine check against this server points at its own /packages/, and the
    // payload downloaded from there is upstream's, byte for byte.
    let (status, xml) = app
        .omaha(&check_xml(
            APPID,
            "stable",
            "machine-hosted-1",
            "2000.0.0",
            PING_CHECK,
        ))
        .await;
    assert_eq!(status, 200);
    let parsed = parse_response(xml.as_bytes()).unwrap();
    let check = parsed.apps[0].update_check.clone().unwrap();
    assert_eq!(check.status, "ok", "{xml}");
    assert_eq!(check.codebases, vec![format!("{}/packages/", app.base)]);
    let manifest = &check.manifests[0];
    assert_eq!(manifest.packages[0].name, stored);
    assert_eq!(
        manifest.postinstall.as_ref().unwrap().sha256,
        b64(&sha2::Sha256::digest(&good))
    );
    let downloaded = app
        .client
        .get(format!(
            "{}{}",
            check.codebases[0], manifest.packages[0].name
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(downloaded.as_ref(), good.as_slice());
    assert!(metrics(&app)
        .await
        .contains("rollbridge_payload_downloads_total{outcome=\"mismatch\"}"));
}
both_backends!(
    hosting_downloads_verifies_and_serves,
    hosting_downloads_verifies_and_serves
);

async fn api_packages_can_be_hosted(db: TestDb) {
    let fake = Fake::start().await;
    let bytes = payload_bytes(9, 4096);
    fake.release("other", "5.0.0", bytes.clone(), None, None);
    let base = fake.0.lock().unwrap().base.clone();
    let (app, dir) = spawn_hosting(db, None, &[]).await;
    let body = |version: &str, sha256: String| {
        json!({
            "type": 1, "version": version, "url": format!("{base}/payloads/5.0.0/"),
            "filename": PAYLOAD_NAME, "size": "4096", "hash": b64(&sha1::Sha1::digest(&bytes)),
            "coreos_action": {"sha256": sha256}
        })
    };
    // Wrong SHA-256: refused, nothing stored.
    let bad = app
        .post_json(
            &format!("/api/apps/{COREOS_APP}/packages?host=true"),
            body("5.0.0", b64(&sha2::Sha256::digest(b"nope"))),
        )
        .await;
    assert_eq!(bad.status(), 400);
    let err: Value = bad.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("SHA-256"), "{err}");
    assert!(files_in(dir.path()).is_empty());
    let listed = app
        .get_json(&format!("/api/apps/{COREOS_APP}/packages"))
        .await;
    assert!(listed.as_array().unwrap().is_empty());

    // Announced smaller than it is: the download stops at the announced size.
    let mut short = body("5.0.0", b64(&sha2::Sha256::digest(&bytes)));
    short["size"] = json!("100");
    let r = app
        .post_json(&format!("/api/apps/{COREOS_APP}/packages?host=true"), short)
        .await;
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.unwrap();
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("larger than 100 bytes"),
        "{err}"
    );
    assert!(files_in(dir.path()).is_empty());
    // A payload URL that does not exist.
    let mut missing = body("5.0.0", b64(&sha2::Sha256::digest(&bytes)));
    missing["url"] = json!(format!("{base}/payloads/9.9.9/"));
    let r = app
        .post_json(
            &format!("/api/apps/{COREOS_APP}/packages?host=true"),
            missing,
        )
        .await;
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("HTTP 404"), "{err}");

    let created = app
        .post_json(
            &format!("/api/apps/{COREOS_APP}/packages?host=true"),
            body("5.0.0", b64(&sha2::Sha256::digest(&bytes))),
        )
        .await;
    assert_eq!(created.status(), 201);
    let pkg: Value = created.json().await.unwrap();
    let stored = format!("{COREOS_APP}-amd64-5.0.0-{PAYLOAD_NAME}");
    assert_eq!(pkg["url"], format!("{}/packages/", app.base));
    assert_eq!(pkg["filename"], stored);
    let served = app
        .client
        .get(app.url(&format!("/packages/{stored}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(served.as_ref(), bytes.as_slice());
    // Duplicate version: 409 before any download.
    let downloads = fake.downloads("5.0.0");
    let dup = app
        .post_json(
            &format!("/api/apps/{COREOS_APP}/packages?host=true"),
            body("5.0.0", b64(&sha2::Sha256::digest(&bytes))),
        )
        .await;
    assert_eq!(dup.status(), 409);
    assert_eq!(fake.downloads("5.0.0"), downloads);
    // Without host=true the regular API stores the URL as given.
    let plain = app
        .post_json(
            &format!("/api/apps/{COREOS_APP}/packages?host=false"),
            body("5.0.1", b64(&sha2::Sha256::digest(&bytes))),
        )
        .await;
    assert_eq!(plain.status(), 201);
    let plain: Value = plain.json().await.unwrap();
    assert_eq!(plain["url"], format!("{base}/payloads/5.0.0/"));
    // Hosting fills in what a CoreOS package needs and was not given (size, SHA-1)...
    let sha256 = b64(&sha2::Sha256::digest(&bytes));
    let filled = app
        .post_json(
            &format!("/api/apps/{COREOS_APP}/packages?host=true"),
            json!({"type": 1, "version": "5.0.2", "url": format!("{base}/payloads/5.0.0/"),
                   "filename": PAYLOAD_NAME, "coreos_action": {"sha256": sha256}}),
        )
        .await;
    assert_eq!(filled.status(), 201);
    let filled: Value = filled.json().await.unwrap();
    assert_eq!(filled["size"], "4096");
    assert_eq!(filled["hash"], b64(&sha1::Sha1::digest(&bytes)));
    // ...while the regular API refuses such an incomplete CoreOS package.
    let r = app
        .post_json(
            &format!("/api/apps/{COREOS_APP}/packages"),
            json!({"type": 1, "version": "5.0.3", "url": format!("{base}/payloads/5.0.0/"),
                   "filename": PAYLOAD_NAME, "coreos_action": {"sha256": sha256}}),
        )
        .await;
    assert_eq!(r.status(), 400);
}
both_backends!(api_packages_can_be_hosted, api_packages_can_be_hosted);

#[tokio::test]
async fn host_true_without_hosting_is_a_clear_error() {
    let app = common::spawn_app(TestDb::sqlite().await).await;
    let r = app
        .post_json(
            &format!("/api/apps/{COREOS_APP}/packages?host=true"),
            json!({"type": 1, "version": "1.0.0", "url": "http://127.0.0.1:9/", "filename": "x.gz", "size": 4,
                   "hash": "+ZFmPWzv1OdfmKHaGSojbK5Xj3k=",
                   "coreos_action": {"sha256": "cSBzKN9Yp6v1pC1Tm3nuAs2rsyaNqR3p0ylH8dyVg1g="}}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("--host-packages"),
        "{err}"
    );
    assert_eq!(
        app.client
            .get(app.url("/packages/x.gz"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn packages_auth_requires_basic_credentials() {
    let (app, dir) = spawn_hosting(
        TestDb::sqlite().await,
        None,
        &["--packages-auth", "fleet:s3cret"],
    )
    .await;
    std::fs::write(dir.path().join("a-amd64-1.0.0-x.gz"), b"payload").unwrap();
    let url = app.url("/packages/a-amd64-1.0.0-x.gz");
    let none = app.client.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert!(none.headers().contains_key("www-authenticate"));
    let wrong = app
        .client
        .get(&url)
        .basic_auth("fleet", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let admin = app
        .client
        .get(&url)
        .basic_auth("admin", Some("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 401, "API users are not download users");
    let right = app
        .client
        .get(&url)
        .basic_auth("fleet", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!(right.bytes().await.unwrap().as_ref(), b"payload");
}

// ---------------------------------------------------------------------------
// Floors
// ---------------------------------------------------------------------------

async fn put_policy_unthrottled(app: &TestApp) {
    let r = app
        .put_json(
            &format!("/api/apps/{COREOS_APP}/groups/{STABLE_GROUP}"),
            json!({"policy_safe_mode": false, "policy_max_updates_per_period": 1000}),
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
}

async fn check(
    app: &TestApp,
    machine: &str,
    version: &str,
    body: &str,
) -> (String, Option<String>, Option<String>) {
    let (status, xml) = app
        .omaha(&check_xml(APPID, "stable", machine, version, body))
        .await;
    assert_eq!(status, 200);
    first_app(&xml)
}

/// P14's walk: grant, a re-check gets the same hop, the first check at the hop's version
/// completes it (no update), the next check gets the next hop.
async fn walk(app: &TestApp, machine: &str, from: &str, hops: &[&str]) {
    let mut current = from.to_string();
    for hop in hops {
        let (_, uc, version) = check(app, machine, &current, PING_CHECK).await;
        assert_eq!(
            (uc.as_deref(), version.as_deref()),
            (Some("ok"), Some(*hop)),
            "{machine} at {current}"
        );
        let (_, _, again) = check(app, machine, &current, PING_CHECK).await;
        assert_eq!(
            again.as_deref(),
            Some(*hop),
            "re-check at {current} serves the same hop"
        );
        let (_, uc, _) = check(app, machine, hop, PING_CHECK).await;
        assert_eq!(uc.as_deref(), Some("noupdate"), "{machine} reporting {hop}");
        current = hop.to_string();
    }
    let (_, uc, _) = check(app, machine, &current, PING_CHECK).await;
    assert_eq!(uc.as_deref(), Some("noupdate"));
}

/// update_engine's own walk: download/install events, then the first check after the reboot
/// reports 3/2 with the previous version and is offered the next hop in the same answer.
async fn walk_like_update_engine(app: &TestApp, machine: &str, from: &str, hops: &[&str]) {
    let (_, uc, version) = check(app, machine, from, PING_CHECK).await;
    assert_eq!(
        (uc.as_deref(), version.as_deref()),
        (Some("ok"), Some(hops[0]))
    );
    let mut previous = from.to_string();
    for (i, hop) in hops.iter().enumerate() {
        for (t, r) in [(13, 1), (14, 1), (3, 1)] {
            let body = format!(r#"<event eventtype="{t}" eventresult="{r}"></event>"#);
            check(app, machine, &previous, &body).await;
        }
        let body = format!(
            r#"<ping active="1"></ping><updatecheck></updatecheck><event eventtype="3" eventresult="2" previousversion="{previous}"></event>"#
        );
        let (_, uc, version) = check(app, machine, hop, &body).await;
        match hops.get(i + 1) {
            Some(next) => assert_eq!(
                (uc.as_deref(), version.as_deref()),
                (Some("ok"), Some(*next)),
                "{machine} rebooted into {hop}"
            ),
            None => assert_eq!(uc.as_deref(), Some("noupdate")),
        }
        previous = hop.to_string();
    }
    let instance = app
        .get_json(&format!(
            "/api/apps/{COREOS_APP}/groups/{STABLE_GROUP}/instances/{machine}"
        ))
        .await;
    assert_eq!(
        instance["application"]["version"],
        *hops.last().unwrap(),
        "{instance}"
    );
}

async fn create_coreos_package(app: &TestApp, version: &str) -> String {
    let r = app
        .post_json(
            &format!("/api/apps/{COREOS_APP}/packages"),
            json!({"type": 1, "version": version, "url": format!("https://up.example.com/amd64-usr/{version}/"),
                   "filename": PAYLOAD_NAME, "size": "1000", "hash": b64(&sha1::Sha1::digest(version.as_bytes())),
                   "coreos_action": {"sha256": b64(&sha2::Sha256::digest(version.as_bytes()))}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn floors_are_synced_and_walked(db: TestDb) {
    // Upstream: another rollbridge whose stable channel has floors 2000 and 2500, target 3000.
    let upstream = common::spawn_app(TestDb::sqlite().await).await;
    let mut ids = HashMap::new();
    for v in ["2000.0.0", "2500.0.0", "3000.0.0"] {
        ids.insert(v, create_coreos_package(&upstream, v).await);
    }
    for (v, reason) in [("2000.0.0", "cgroups v2"), ("2500.0.0", "systemd upgrade")] {
        let r = upstream
            .put_json(
                &format!(
                    "/api/apps/{COREOS_APP}/channels/{STABLE_CHANNEL}/floors/{}",
                    ids[v]
                ),
                json!({"floor_reason": reason}),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let r = upstream
        .put_json(
            &format!("/api/apps/{COREOS_APP}/channels/{STABLE_CHANNEL}"),
            json!({"package_id": ids["3000.0.0"]}),
        )
        .await;
    assert_eq!(r.status(), 200);

    let app = spawn_syncing(db, &upstream.url("/v1/update/"), &[]).await;
    wait_for_version(&app, STABLE_CHANNEL, "3000.0.0").await;
    let packages = app
        .get_json(&format!("/api/apps/{COREOS_APP}/packages"))
        .await;
    let mut versions: Vec<&str> = packages
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["version"].as_str().unwrap())
        .collect();
    versions.sort();
    assert_eq!(versions, ["2000.0.0", "2500.0.0", "3000.0.0"]);
    let floor = packages
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["version"] == "2000.0.0")
        .unwrap();
    assert_eq!(floor["url"], "https://up.example.com/amd64-usr/2000.0.0/");
    let floors = app
        .get_json(&format!(
            "/api/apps/{COREOS_APP}/channels/{STABLE_CHANNEL}/floors"
        ))
        .await;
    let marked: Vec<(&str, &str)> = floors
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["version"].as_str().unwrap(),
                f["floor_reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        marked,
        [("2000.0.0", "cgroups v2"), ("2500.0.0", "systemd upgrade")]
    );
    // The syncer's requests did not become machines of the upstream fleet.
    let instances = upstream
        .get_json(&format!(
            "/api/apps/{COREOS_APP}/groups/{STABLE_GROUP}/instances"
        ))
        .await;
    assert_eq!(instances["total"].as_i64().unwrap_or(0), 0, "{instances}");

    // A client at 1000 is walked 1000 -> 2000 -> 2500 -> 3000 (P14), others start mid-way.
    put_policy_unthrottled(&app).await;
    walk(
        &app,
        "machine-p14-1000",
        "1000.0.0",
        &["2000.0.0", "2500.0.0", "3000.0.0"],
    )
    .await;
    walk(
        &app,
        "machine-p14-1500",
        "1500.0.0",
        &["2000.0.0", "2500.0.0", "3000.0.0"],
    )
    .await;
    walk(
        &app,
        "machine-p14-2200",
        "2200.0.0",
        &["2500.0.0", "3000.0.0"],
    )
    .await;
    walk(&app, "machine-p14-2700", "2700.0.0", &["3000.0.0"]).await;
    walk_like_update_engine(
        &app,
        "machine-ue",
        "1000.0.0",
        &["2000.0.0", "2500.0.0", "3000.0.0"],
    )
    .await;

    // Multi-manifest answer for a syncer asking this server; a legacy syncer gets noupdate.
    let syncer_request = |multi: bool| {
        format!(
            r#"<request protocol="3.0" version="CoreOSUpdateEngine-0.1.0.0" installsource="scheduler" ismachine="1"><app appid="{APPID}" version="1000.0.0" track="stable" machineid="{{syncer-1}}"{}><updatecheck/></app></request>"#,
            if multi {
                r#" multi_manifest_ok="true""#
            } else {
                ""
            }
        )
    };
    let (_, xml) = app.omaha(&syncer_request(true)).await;
    let check = parse_response(xml.as_bytes()).unwrap().apps[0]
        .update_check
        .clone()
        .unwrap();
    let flags: Vec<(&str, bool, bool)> = check
        .manifests
        .iter()
        .map(|m| (m.version.as_str(), m.is_floor, m.is_target))
        .collect();
    assert_eq!(
        flags,
        [
            ("2000.0.0", true, false),
            ("2500.0.0", true, false),
            ("3000.0.0", false, true)
        ]
    );
    assert_eq!(check.manifests[0].floor_reason, "cgroups v2");
    let (_, xml) = app.omaha(&syncer_request(false)).await;
    assert_eq!(first_app(&xml).1.as_deref(), Some("noupdate"));

    // Unmarking a floor through the API lets clients skip it.
    let r = app
        .delete(&format!(
            "/api/apps/{COREOS_APP}/channels/{STABLE_CHANNEL}/floors/{}",
            floors[1]["package_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.status(), 204);
    walk(&app, "machine-after-unmark", "2100.0.0", &["3000.0.0"]).await;
    let r = app
        .delete(&format!(
            "/api/apps/{COREOS_APP}/channels/{STABLE_CHANNEL}/floors/{}",
            floors[1]["package_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.status(), 404);
}
both_backends!(floors_are_synced_and_walked, floors_are_synced_and_walked);

async fn floors_from_a_nebraska_shaped_upstream(db: TestDb) {
    // Fake upstream with floors whose payloads live under their own version directory, while
    // the answer carries only the target's codebase (Nebraska's shape).
    let fake = Fake::start().await;
    fake.release(
        "stable",
        "2000.0.0",
        payload_bytes(20, 2000),
        Some("floor one"),
        None,
    );
    fake.release(
        "stable",
        "2500.0.0",
        payload_bytes(25, 2500),
        Some("floor two"),
        None,
    );
    fake.release("stable", "3000.0.0", payload_bytes(30, 3000), None, None);
    let (app, dir) = spawn_hosting(db, Some(&fake.url()), &[]).await;
    wait_for_version(&app, STABLE_CHANNEL, "3000.0.0").await;
    // Every payload was downloaded from its own directory and verified.
    for v in ["2000.0.0", "2500.0.0", "3000.0.0"] {
        assert_eq!(fake.downloads(v), 1, "{v}");
    }
    assert_eq!(files_in(dir.path()).len(), 3);
    let floors = app
        .get_json(&format!(
            "/api/apps/{COREOS_APP}/channels/{STABLE_CHANNEL}/floors"
        ))
        .await;
    assert_eq!(floors.as_array().unwrap().len(), 2);
    put_policy_unthrottled(&app).await;
    walk(
        &app,
        "machine-hosted-walk",
        "1000.0.0",
        &["2000.0.0", "2500.0.0", "3000.0.0"],
    )
    .await;
    // The first hop's payload is served from here and matches upstream's.
    let (_, xml) = app
        .omaha(&check_xml(
            APPID,
            "stable",
            "machine-hosted-2",
            "1000.0.0",
            PING_CHECK,
        ))
        .await;
    let check = parse_response(xml.as_bytes()).unwrap().apps[0]
        .update_check
        .clone()
        .unwrap();
    let url = format!(
        "{}{}",
        check.codebases[0], check.manifests[0].packages[0].name
    );
    let bytes = app
        .client
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), payload_bytes(20, 2000).as_slice());
}
both_backends!(
    floors_from_a_nebraska_shaped_upstream,
    floors_from_a_nebraska_shaped_upstream
);

async fn floor_api_rejects_bad_input(db: TestDb) {
    let app = common::spawn_app(db).await;
    let pkg = create_coreos_package(&app, "10.0.0").await;
    let base = format!("/api/apps/{COREOS_APP}/channels/{STABLE_CHANNEL}/floors");
    // No body is fine (no reason); a malformed body is a 400.
    let ok = app
        .client
        .put(app.url(&format!("{base}/{pkg}")))
        .basic_auth("admin", Some("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let bad = app
        .client
        .put(app.url(&format!("{base}/{pkg}")))
        .basic_auth("admin", Some("admin"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let r = app.put_json(&format!("{base}/not-a-uuid"), json!({})).await;
    assert_eq!(r.status(), 400);
    let r = app
        .put_json(&format!("{base}/{}", uuid::Uuid::new_v4()), json!({}))
        .await;
    assert_eq!(r.status(), 400);
    let r = app
        .put_json(
            &format!("{base}/{pkg}"),
            json!({"floor_reason": "x".repeat(5000)}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = app
        .get(&format!(
            "/api/apps/{COREOS_APP}/channels/{}/floors",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!(r.status(), 404);
    // A blacklisted package cannot become a floor.
    let other = create_coreos_package(&app, "11.0.0").await;
    let r = app
        .put_json(
            &format!("/api/apps/{COREOS_APP}/packages/{other}"),
            json!({"channels_blacklist": [STABLE_CHANNEL]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app.put_json(&format!("{base}/{other}"), json!({})).await;
    assert_eq!(r.status(), 409);
    // Without credentials: 401.
    let r = app.client.get(app.url(&base)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let listed = app.get_json(&base).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
}
both_backends!(floor_api_rejects_bad_input, floor_api_rejects_bad_input);

async fn mapped_channels_follow_their_upstream_track(db: TestDb) {
    let fake = Fake::start().await;
    fake.release("lts-2024", "3510.3.0", payload_bytes(4, 64), None, None);
    let app = spawn_syncing(db, &fake.url(), &["--sync-channel", "lts=lts-2024"]).await;
    // The mapped channel does not exist yet: reported, and the other channels carry on.
    eventually("missing channel retried", || async {
        (sync_count(&metrics(&app).await, "lts", "invalid") >= 3).then_some(())
    })
    .await;
    assert_eq!(sync_failures(&app, "no channel named lts").await.len(), 1);
    let created = app
        .post_json(
            &format!("/api/apps/{COREOS_APP}/channels"),
            json!({"name": "lts", "color": "#123456"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let lts: Value = created.json().await.unwrap();
    wait_for_version(&app, lts["id"].as_str().unwrap(), "3510.3.0").await;
    assert!(fake
        .requests_for("lts-2024")
        .iter()
        .all(|r| r.apps[0].multi_manifest_ok));
    // No upstream track is asked for under the local name.
    assert!(fake.requests_for("lts").is_empty());
}
both_backends!(
    mapped_channels_follow_their_upstream_track,
    mapped_channels_follow_their_upstream_track
);
