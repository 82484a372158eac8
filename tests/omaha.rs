//! Omaha integration tests: real HTTP against a spawned rollbridge, every test on SQLite and on
//! MariaDB (`both_backends!`), time driven by the harness's manual clock (never sleeping).
//!
//! Sections:
//! 1. Helpers: request builders, a parsed `Answer`, REST readers (group stats, instances,
//!    status history, activity).
//! 2. Policy acceptance cases P1–P13, P15, P16 (reference §8.2, `/work/shared/reference/
//!    coreroller-semantics.md`), plus RolloutStarted dedup and rollout completion.
//! 3. Event acceptance cases E1–E5 (§8.3).
//! 4. Omaha acceptance cases O1–O4, O9 (§8.4).
//! 5. The issue's must-haves: `--omaha-deny-as-noupdate`, `PollInterval`, office hours, pause and
//!    resume, multi-app order, `X-Forwarded-For`, `Content-Type`, the exact bytes of an update.
//! 6. Concurrency: 500 simultaneous checks never exceed `policy_max_updates_per_period`; one
//!    instance checking many times at once is granted once; one machine checking many apps at
//!    once; simultaneous checks without a package log one PackageNotFound.
//! 7. Fixture replay: `fixtures/omaha/<name>.request.xml` answered byte for byte as
//!    `<name>.response.xml` (`UPDATE_FIXTURES=1` rewrites the expected files).
//! 8. Hostile input: 400 for broken envelopes, a per-app registration error for missing
//!    attributes, never a 5xx and nothing stored.
//!
//! Semantics are rollbridge's (Nebraska-flavoured, see `src/rollout/`). Where CoreRoller and
//! Nebraska disagree, the test says which behaviour it follows:
//! - P8 follows Nebraska P8' (safe mode: timed-out grants pause the group) and P9 (without safe
//!   mode timed-out grants just stop counting), not CoreRoller's P8 (pause in any mode).
//! - P11: a second check from a granted instance re-serves the same package (Nebraska), and only
//!   Downloading/Downloaded/Installed count as busy.
//! - E1: events that cannot apply are ignored but still answered `<event status="ok"/>`; there are
//!   no per-event error codes on the wire, so the tests check that nothing changed.
//! - E5: update_engine's every-check `3/2` (previousversion "" or "0.0.0.0") changes nothing:
//!   the instance keeps its grant (Nebraska would set it to Undefined).
//! - O1: unknown tracks/apps answer `error-instanceRegistrationFailed` (CoreRoller, not
//!   Nebraska's `error-failedToRetrieveUpdatePackageInfo`). The client IP is never "invalid":
//!   a malformed `X-Forwarded-For` falls back to the peer address instead of failing.
//! - Policy denials carry `<updatecheck status="error-internal"/>` (Nebraska's shape).
//! - Failures are tested with `3/0`, the only failure update_engine sends; other `x/0` pairs
//!   (13/0, 14/0, 800/0) are not asserted either way (see the report on `EventKind`).
//!
//! Out of scope (rollbridge does not implement them): P14 (floors), O5 (product ids as appid),
//! O6 (extra files), O7 (arch routing), O8 (syncer multi-manifest), and O9's endpoint secret
//! suffix (501).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    check_xml, event, spawn_app, spawn_app_with, AppOptions, TestApp, TestDb, COREOS_APP,
    PING_CHECK, T0,
};
use rollbridge::omaha::protocol::{parse_request, parse_response, ParsedApp, PostinstallAction};
use rollbridge::store::rollout::InstanceAppState;
use serde_json::{json, Value};

// ===========================================================================================
// 1. Helpers
// ===========================================================================================

/// The CoreOS app id as update_engine sends it (braces kept; the response must echo it).
const COREOS_APPID: &str = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}";
const STABLE_GROUP: &str = "9a2deb70-37be-4026-853f-bfdd6b347bbe";
const BETA_GROUP: &str = "3fe10490-dd73-4b49-b72a-28ac19acfcdc";
const ALPHA_GROUP: &str = "5b810680-e36a-4879-b98a-4f989e80b899";
const STABLE_CHANNEL: &str = "e06064ad-4414-4904-9a6e-fd465593d1b2";
const ALPHA_CHANNEL: &str = "a87a03ad-4984-47a1-8dc4-3507bae91ee1";

/// 2026-11-28 10:00 UTC, the Saturday after `T0`.
const SATURDAY: i64 = T0 + 3 * 86_400_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// Instance status codes (CoreRoller's).
mod st {
    pub const GRANTED: i64 = 2;
    pub const ERROR: i64 = 3;
    pub const COMPLETE: i64 = 4;
    pub const INSTALLED: i64 = 5;
    pub const DOWNLOADED: i64 = 6;
    pub const DOWNLOADING: i64 = 7;
    pub const ONHOLD: i64 = 8;
}

/// Activity classes.
mod class {
    pub const PACKAGE_NOT_FOUND: i64 = 1;
    pub const ROLLOUT_STARTED: i64 = 2;
    pub const ROLLOUT_FINISHED: i64 = 3;
    pub const ROLLOUT_FAILED: i64 = 4;
    pub const INSTANCE_UPDATE_FAILED: i64 = 5;
}

// Omaha status strings.
const OK: &str = "ok";
const NOUPDATE: &str = "noupdate";
const ERROR_INTERNAL: &str = "error-internal";
const REGISTRATION_FAILED: &str = "error-instanceRegistrationFailed";
const NO_PACKAGE: &str = "error-noPackageFound";
const UPDATES_DISABLED: &str = "error-updatesDisabled";
const MAX_PER_PERIOD: &str = "error-maxUpdatesPerPeriodLimitReached";
const MAX_CONCURRENT: &str = "error-maxConcurrentUpdatesLimitReached";
const MAX_TIMED_OUT: &str = "error-maxTimedOutUpdatesLimitReached";
const IN_PROGRESS: &str = "error-updateInProgressOnInstance";

/// (app status, updatecheck status, manifest version) of one answered `<app>`.
type Summary<'a> = (&'a str, Option<&'a str>, Option<&'a str>);

fn grant(version: &str) -> Summary<'_> {
    (OK, Some(OK), Some(version))
}

const NO_UPDATE: Summary<'static> = (OK, Some(NOUPDATE), None);

fn denied(status: &str) -> Summary<'_> {
    (status, Some(ERROR_INTERNAL), None)
}

/// Where requests go: the appid/track a client sends, and the ids the REST API needs.
#[derive(Debug, Clone)]
struct Target {
    app_id: String,
    group_id: String,
    /// `appid` attribute as sent.
    appid: String,
    /// `track` attribute as sent.
    track: String,
}

impl Target {
    fn coreos_stable() -> Self {
        Self {
            app_id: COREOS_APP.into(),
            group_id: STABLE_GROUP.into(),
            appid: COREOS_APPID.into(),
            track: "stable".into(),
        }
    }

    fn with_appid(&self, appid: &str) -> Self {
        Self {
            appid: appid.into(),
            ..self.clone()
        }
    }

    fn with_track(&self, track: &str) -> Self {
        Self {
            track: track.into(),
            ..self.clone()
        }
    }

    fn api(&self) -> String {
        format!("/api/apps/{}/groups/{}", self.app_id, self.group_id)
    }
}

/// One answered `<app>`, parsed, with the whole response kept for byte-level checks.
#[derive(Debug)]
struct Answer {
    xml: String,
    app: ParsedApp,
}

impl Answer {
    fn parse(xml: String) -> Self {
        let parsed = parse_response(xml.as_bytes())
            .unwrap_or_else(|e| panic!("unparsable response ({e}): {xml}"));
        assert_eq!(parsed.apps.len(), 1, "one app expected: {xml}");
        let app = parsed.apps.into_iter().next().expect("one app");
        Self { xml, app }
    }

    fn summary(&self) -> Summary<'_> {
        let check = self.app.update_check.as_ref();
        (
            self.app.status.as_str(),
            check.map(|c| c.status.as_str()),
            check
                .and_then(|c| c.manifests.first())
                .map(|m| m.version.as_str()),
        )
    }

    fn poll_interval(&self) -> Option<u32> {
        self.app.update_check.as_ref().and_then(|c| c.poll_interval)
    }
}

fn event_prev(t: i32, r: i32, previous: &str) -> String {
    format!(r#"<event eventtype="{t}" eventresult="{r}" previousversion="{previous}"></event>"#)
}

fn event_error(code: &str) -> String {
    format!(r#"<event eventtype="3" eventresult="0" errorcode="{code}"></event>"#)
}

/// The `<app>` element of an update_engine request, for hand-built multi-app documents.
fn app_element(appid: &str, track: &str, machine: &str, version: &str, body: &str) -> String {
    format!(
        r#"<app appid="{appid}" version="{version}" track="{track}" machineid="{machine}" oem="" alephversion="{version}" board="amd64-usr">{body}</app>"#
    )
}

fn request_of(apps: &[String]) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><request protocol="3.0" version="update_engine-0.4.10" installsource="scheduler" ismachine="1"><os version="Chateau" platform="CoreOS" sp="x"></os>{}</request>"#,
        apps.concat()
    )
}

/// Pads a request with a comment inside the root element to exactly `len` bytes.
fn padded(xml: &str, len: usize) -> String {
    let (head, tail) = xml.rsplit_once("</request>").expect("a request document");
    let fill = len
        .checked_sub(xml.len() + "<!---->".len())
        .expect("document already longer than the target");
    let padded = format!("{head}<!--{}--></request>{tail}", "x".repeat(fill));
    assert_eq!(padded.len(), len);
    padded
}

/// Posts raw bytes to the Omaha endpoint with extra headers; returns (status, content type, body).
async fn post_raw(
    app: &TestApp,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut req = app
        .client
        .post(app.url(path))
        .header("content-type", "text/xml")
        .body(body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let r = req.send().await.expect("omaha POST");
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, content_type, r.text().await.expect("body"))
}

/// Posts all `requests` to the Omaha endpoint at the same moment (one task each, released
/// together); every answer must be a 200. Returns the bodies in request order.
async fn concurrently(app: &TestApp, requests: Vec<String>) -> Vec<String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(180))
        .build()
        .expect("client");
    let url = app.url("/v1/update/");
    let start = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|xml| {
            let (client, url, start) = (client.clone(), url.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let r = client
                    .post(url)
                    .header("content-type", "text/xml")
                    .body(xml)
                    .send()
                    .await
                    .expect("POST");
                let status = r.status().as_u16();
                (status, r.text().await.expect("body"))
            })
        })
        .collect();
    let mut bodies = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, 200, "{body}");
        bodies.push(body);
    }
    bodies
}

/// Posts a request that must be answered 200; returns the body.
async fn omaha_ok(app: &TestApp, xml: &str) -> String {
    let (status, body) = app.omaha(xml).await;
    assert_eq!(status, 200, "omaha answered {status}: {body}");
    body
}

async fn request(app: &TestApp, t: &Target, machine: &str, version: &str, body: &str) -> Answer {
    let xml = check_xml(&t.appid, &t.track, machine, version, body);
    let answer = Answer::parse(omaha_ok(app, &xml).await);
    assert_eq!(answer.app.appid, t.appid, "the appid is echoed verbatim");
    answer
}

/// A plain update_engine check: `<ping>` + `<updatecheck>`.
async fn check(app: &TestApp, t: &Target, machine: &str, version: &str) -> Answer {
    request(app, t, machine, version, PING_CHECK).await
}

/// A check that also reports events (applied before the check, as update_engine sends them).
async fn check_with(
    app: &TestApp,
    t: &Target,
    machine: &str,
    version: &str,
    events: &str,
) -> Answer {
    request(app, t, machine, version, &format!("{PING_CHECK}{events}")).await
}

/// An events-only request: the answer acknowledges every event and has no ping/updatecheck.
async fn send_events(
    app: &TestApp,
    t: &Target,
    machine: &str,
    version: &str,
    events: &[String],
) -> Answer {
    let answer = request(app, t, machine, version, &events.concat()).await;
    assert_eq!(
        answer.app.event_statuses,
        vec![OK; events.len()],
        "{}",
        answer.xml
    );
    assert!(answer.app.ping_status.is_none(), "{}", answer.xml);
    assert!(!answer.xml.contains("<updatecheck"), "{}", answer.xml);
    answer
}

/// Registers an instance without asking for an update (`<ping>` only).
async fn ping(app: &TestApp, t: &Target, machine: &str, version: &str) {
    let answer = request(app, t, machine, version, r#"<ping active="1"></ping>"#).await;
    assert_eq!(answer.summary(), (OK, None, None), "{}", answer.xml);
    assert_eq!(answer.app.ping_status.as_deref(), Some(OK));
}

// ----- REST -----

async fn rollout(app: &TestApp, version: &str, policy: Value) -> Target {
    let (app_id, _channel, group_id, _package) = app.setup_rollout(version, policy).await;
    Target {
        appid: app_id.clone(),
        app_id,
        group_id,
        track: "main".into(),
    }
}

async fn create_group(app: &TestApp, app_id: &str, body: Value) -> Target {
    let r = app
        .post_json(&format!("/api/apps/{app_id}/groups"), body)
        .await;
    assert_eq!(r.status(), 201, "create group");
    let group: Value = r.json().await.expect("group json");
    Target {
        app_id: app_id.into(),
        group_id: group["id"].as_str().expect("group id").into(),
        appid: app_id.into(),
        track: group["track"].as_str().expect("track").into(),
    }
}

async fn create_channel(app: &TestApp, app_id: &str, name: &str) -> String {
    let r = app
        .post_json(
            &format!("/api/apps/{app_id}/channels"),
            json!({"name": name, "color": "#123456"}),
        )
        .await;
    assert_eq!(r.status(), 201, "create channel");
    let channel: Value = r.json().await.expect("channel json");
    channel["id"].as_str().expect("channel id").into()
}

async fn create_package(app: &TestApp, app_id: &str, body: Value) -> Value {
    let r = app
        .post_json(&format!("/api/apps/{app_id}/packages"), body)
        .await;
    assert_eq!(r.status(), 201, "create package");
    r.json().await.expect("package json")
}

async fn point_channel(app: &TestApp, app_id: &str, channel_id: &str, package_id: &str) {
    let r = app
        .put_json(
            &format!("/api/apps/{app_id}/channels/{channel_id}"),
            json!({ "package_id": package_id }),
        )
        .await;
    assert_eq!(r.status(), 200, "point channel at package");
}

/// A Flatcar-style type-1 package of `version` on the seeded CoreOS stable channel.
async fn coreos_release(app: &TestApp, version: &str) -> Value {
    coreos_release_on(app, version, STABLE_CHANNEL).await
}

async fn coreos_release_on(app: &TestApp, version: &str, channel: &str) -> Value {
    let package = create_package(
        app,
        COREOS_APP,
        json!({
            "type": 1,
            "version": version,
            "url": format!("https://update.release.flatcar-linux.net/amd64-usr/{version}/"),
            "filename": "flatcar_production_update.gz",
            "size": "465881871",
            "hash": "r3nufcxgMTZaxYEqL+x2zIoeClk=",
            "coreos_action": {"sha256": "LIkAKVZY2EJFiwTmltiJZLFLA5xT/FodbjVgqkyF/y8="}
        }),
    )
    .await;
    point_channel(
        app,
        COREOS_APP,
        channel,
        package["id"].as_str().expect("id"),
    )
    .await;
    package
}

async fn update_group(app: &TestApp, t: &Target, patch: Value) -> Value {
    let r = app.put_json(&t.api(), patch).await;
    assert_eq!(r.status(), 200, "update group");
    r.json().await.expect("group json")
}

async fn group(app: &TestApp, t: &Target) -> Value {
    app.get_json(&t.api()).await
}

async fn stats(app: &TestApp, t: &Target) -> Value {
    group(app, t).await["instances_stats"].clone()
}

const STAT_KEYS: [&str; 8] = [
    "undefined",
    "update_granted",
    "error",
    "complete",
    "installed",
    "downloaded",
    "downloading",
    "onhold",
];

/// Asserts every status count (unlisted ones must be 0) and that `total` is their sum.
fn assert_stats(stats: &Value, expected: &[(&str, i64)]) {
    for (key, _) in expected {
        assert!(STAT_KEYS.contains(key), "unknown stat {key}");
    }
    let mut total = 0;
    for key in STAT_KEYS {
        let want = expected
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(0, |(_, n)| *n);
        total += want;
        assert_eq!(
            stats[key].as_i64(),
            Some(want),
            "instances_stats.{key} in {stats}"
        );
    }
    assert_eq!(
        stats["total"].as_i64(),
        Some(total),
        "instances_stats.total in {stats}"
    );
}

async fn instances(app: &TestApp, t: &Target) -> Value {
    app.get_json(&format!("{}/instances?perpage=1000", t.api()))
        .await
}

/// The instance's `application` object (status, version, last_update_version, ...).
async fn instance_app(app: &TestApp, t: &Target, machine: &str) -> Value {
    app.get_json(&format!("{}/instances/{machine}", t.api()))
        .await["application"]
        .clone()
}

async fn status_of(app: &TestApp, t: &Target, machine: &str) -> Option<i64> {
    instance_app(app, t, machine).await["status"].as_i64()
}

/// Status history, newest first, as (status, version).
async fn history(app: &TestApp, t: &Target, machine: &str) -> Vec<(i64, String)> {
    history_rows(app, t, machine)
        .await
        .iter()
        .map(|h| {
            (
                h["status"].as_i64().expect("status"),
                h["version"].as_str().expect("version").to_string(),
            )
        })
        .collect()
}

async fn history_rows(app: &TestApp, t: &Target, machine: &str) -> Vec<Value> {
    let v = app
        .get_json(&format!("{}/instances/{machine}/status_history", t.api()))
        .await;
    v.as_array().expect("history array").clone()
}

async fn activity(app: &TestApp, app_id: &str) -> Vec<Value> {
    let v = app
        .get_json(&format!("/api/activity?app={app_id}&perpage=1000"))
        .await;
    v.as_array().expect("activity array").clone()
}

fn of_class(entries: &[Value], class: i64) -> Vec<Value> {
    entries
        .iter()
        .filter(|a| a["class"].as_i64() == Some(class))
        .cloned()
        .collect()
}

fn h(status: i64, version: &str) -> (i64, String) {
    (status, version.to_string())
}

// ===========================================================================================
// 2. Policy acceptance cases (§8.2)
// ===========================================================================================

/// P1: instances at (or above) the channel version get `noupdate`; build metadata is ignored.
async fn p01_up_to_date_instances_get_no_update(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(
        &app,
        "12.1.0",
        json!({"policy_safe_mode": true, "policy_max_updates_per_period": 2}),
    )
    .await;
    assert_eq!(check(&app, &t, "p1-a", "12.1.0").await.summary(), NO_UPDATE);
    assert_eq!(
        check(&app, &t, "p1-b", "1010.5.0+2016-05-27-1832")
            .await
            .summary(),
        NO_UPDATE
    );
    assert_eq!(
        check(&app, &t, "p1-c", "12.1.0+build.7").await.summary(),
        NO_UPDATE
    );
    // Nothing granted: up-to-date instances without a status count as complete.
    let g = group(&app, &t).await;
    assert_stats(&g["instances_stats"], &[("complete", 3)]);
    assert_eq!(g["rollout_in_progress"], false);
    for m in ["p1-a", "p1-b", "p1-c"] {
        assert_eq!(history(&app, &t, m).await, vec![], "{m}");
    }
}
both_backends!(p01_up_to_date, p01_up_to_date_instances_get_no_update);

/// P2: bad appid/track, unknown app/group, a group of another app → registration failure and
/// nothing stored; a group whose channel has no package → `error-noPackageFound`.
async fn p02_bad_inputs_fail_registration(db: TestDb) {
    let app = spawn_app(db).await;
    let a = rollout(&app, "12.1.0", json!({})).await;
    let b = rollout(&app, "12.1.0", json!({})).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let cases = [
        (a.with_appid("not-a-uuid"), "appid is not a UUID"),
        (a.with_track("not-a-group"), "track names no group"),
        (
            a.with_appid(&format!("{{{unknown}}}")),
            "unknown application",
        ),
        (a.with_track(&unknown), "unknown group id"),
        (a.with_track(&b.group_id), "group of another application"),
    ];
    for (t, why) in &cases {
        let answer = check(&app, t, "p2-bad", "12.0.0").await;
        assert_eq!(answer.summary(), denied(REGISTRATION_FAILED), "{why}");
        assert_eq!(answer.app.ping_status.as_deref(), Some(OK), "{why}");
    }
    assert_eq!(instances(&app, &a).await["total"], 0);
    assert_eq!(instances(&app, &b).await["total"], 0);
    // The same track name resolves per application.
    assert_eq!(
        check(&app, &b, "p2-b", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_eq!(instances(&app, &b).await["total"], 1);
    assert_eq!(instances(&app, &a).await["total"], 0);

    let empty = create_channel(&app, &b.app_id, "empty").await;
    let nopkg = create_group(
        &app,
        &b.app_id,
        json!({"name": "nopkg", "track": "nopkg", "channel_id": empty, "policy_safe_mode": false}),
    )
    .await;
    let answer = check(&app, &nopkg, "p2-nopkg", "12.0.0").await;
    assert_eq!(answer.summary(), denied(NO_PACKAGE));
}
both_backends!(p02_bad_inputs, p02_bad_inputs_fail_registration);

/// P3: a group without a channel → `error-noPackageFound` and one PackageNotFound activity per
/// hour per group (CoreRoller wrote one per check).
async fn p03_group_without_channel(db: TestDb) {
    let app = spawn_app(db).await;
    let base = rollout(&app, "12.1.0", json!({})).await;
    let t = create_group(
        &app,
        &base.app_id,
        json!({"name": "nochannel", "track": "nochannel", "policy_safe_mode": false}),
    )
    .await;
    let not_found = |acts: &[Value]| of_class(acts, class::PACKAGE_NOT_FOUND);
    assert_eq!(
        check(&app, &t, "p3-a", "1.0.0").await.summary(),
        denied(NO_PACKAGE)
    );
    assert_eq!(
        check(&app, &t, "p3-b", "1.0.0").await.summary(),
        denied(NO_PACKAGE)
    );
    let acts = not_found(&activity(&app, &base.app_id).await);
    assert_eq!(acts.len(), 1, "deduplicated: {acts:?}");
    assert_eq!(acts[0]["group_id"], json!(t.group_id));
    assert_eq!(acts[0]["severity"], 3, "warning");
    assert_eq!(acts[0]["version"], "0.0.0");
    // The instances are registered (not on hold: they were not refused by policy).
    assert_stats(&stats(&app, &t).await, &[("undefined", 2)]);

    app.clock.advance_ms(30 * MINUTE);
    assert_eq!(
        check(&app, &t, "p3-a", "1.0.0").await.summary(),
        denied(NO_PACKAGE)
    );
    assert_eq!(not_found(&activity(&app, &base.app_id).await).len(), 1);
    app.clock.advance_ms(31 * MINUTE);
    assert_eq!(
        check(&app, &t, "p3-a", "1.0.0").await.summary(),
        denied(NO_PACKAGE)
    );
    assert_eq!(
        not_found(&activity(&app, &base.app_id).await).len(),
        2,
        "one per hour"
    );
}
both_backends!(p03_no_channel, p03_group_without_channel);

/// P4: updates disabled → `error-updatesDisabled`, and the instance is not put on hold.
async fn p04_updates_disabled(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(&app, "12.1.0", json!({"policy_updates_enabled": false})).await;
    assert_eq!(
        check(&app, &t, "p4", "12.0.0").await.summary(),
        denied(UPDATES_DISABLED)
    );
    assert_eq!(status_of(&app, &t, "p4").await, None);
    assert_eq!(history(&app, &t, "p4").await, vec![]);
    assert_stats(&stats(&app, &t).await, &[("undefined", 1)]);
}
both_backends!(p04_disabled, p04_updates_disabled);

/// P5: safe mode caps at one grant until the first attempt at the version finishes.
async fn p05_safe_mode_canary(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(
        &app,
        "12.1.0",
        json!({"policy_safe_mode": true, "policy_max_updates_per_period": 2}),
    )
    .await;
    assert_eq!(
        check(&app, &t, "p5-a", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_eq!(
        check(&app, &t, "p5-b", "12.0.0").await.summary(),
        denied(MAX_PER_PERIOD)
    );
    assert_eq!(
        check(&app, &t, "p5-c", "12.0.0").await.summary(),
        denied(MAX_PER_PERIOD)
    );
    assert_eq!(status_of(&app, &t, "p5-a").await, Some(st::GRANTED));
    assert_eq!(status_of(&app, &t, "p5-b").await, Some(st::ONHOLD));
    assert_stats(
        &stats(&app, &t).await,
        &[("update_granted", 1), ("onhold", 2)],
    );
    assert_eq!(group(&app, &t).await["rollout_in_progress"], true);
}
both_backends!(p05_safe_mode, p05_safe_mode_canary);

/// P6: without safe mode the configured max applies; raising it lets the next instance in.
async fn p06_max_updates_per_period(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(
        &app,
        "12.1.0",
        json!({"policy_safe_mode": false, "policy_max_updates_per_period": 1}),
    )
    .await;
    assert_eq!(
        check(&app, &t, "p6-a", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_eq!(
        check(&app, &t, "p6-b", "12.0.0").await.summary(),
        denied(MAX_PER_PERIOD)
    );
    let g = update_group(&app, &t, json!({"policy_max_updates_per_period": 2})).await;
    assert_eq!(g["policy_max_updates_per_period"], 2);
    assert_eq!(
        check(&app, &t, "p6-c", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_stats(
        &stats(&app, &t).await,
        &[("update_granted", 2), ("onhold", 1)],
    );
}
both_backends!(p06_max_per_period, p06_max_updates_per_period);

/// P7: per-period limit, then (after the period) the concurrency limit, then a completion frees
/// a slot.
async fn p07_period_then_concurrency(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(
        &app,
        "12.1.0",
        json!({"policy_safe_mode": false, "policy_period_interval": "100 milliseconds",
               "policy_max_updates_per_period": 2, "policy_update_timeout": "60 minutes"}),
    )
    .await;
    assert_eq!(
        check(&app, &t, "p7-a", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_eq!(
        check(&app, &t, "p7-b", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_eq!(
        check(&app, &t, "p7-c", "12.0.0").await.summary(),
        denied(MAX_PER_PERIOD)
    );
    app.clock.advance_ms(101);
    assert_eq!(
        check(&app, &t, "p7-c", "12.0.0").await.summary(),
        denied(MAX_CONCURRENT)
    );
    assert_eq!(status_of(&app, &t, "p7-c").await, Some(st::ONHOLD));
    // p7-a finishes: it runs 12.1.0 and reports 3/2.
    let done = check_with(&app, &t, "p7-a", "12.1.0", &event_prev(3, 2, "12.0.0")).await;
    assert_eq!(done.summary(), NO_UPDATE);
    assert_eq!(status_of(&app, &t, "p7-a").await, Some(st::COMPLETE));
    assert_eq!(
        check(&app, &t, "p7-c", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_stats(
        &stats(&app, &t).await,
        &[("update_granted", 2), ("complete", 1)],
    );
}
both_backends!(p07_period_concurrency, p07_period_then_concurrency);

/// P8 (Nebraska P8'): in safe mode a timed-out grant pauses the group; the next check then
/// finds updates disabled. CoreRoller's P8 (pause without safe mode too) is deliberately not
/// followed; see P9.
async fn p08_timeouts_pause_in_safe_mode(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(
        &app,
        "12.1.0",
        json!({"policy_safe_mode": true, "policy_period_interval": "10 milliseconds",
               "policy_max_updates_per_period": 1, "policy_update_timeout": "500 milliseconds"}),
    )
    .await;
    assert_eq!(
        check(&app, &t, "p8-a", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    app.clock.advance_ms(11);
    assert_eq!(
        check(&app, &t, "p8-b", "12.0.0").await.summary(),
        denied(MAX_CONCURRENT)
    );
    app.clock.advance_ms(490);
    assert_eq!(
        check(&app, &t, "p8-b", "12.0.0").await.summary(),
        denied(MAX_TIMED_OUT)
    );
    let g = group(&app, &t).await;
    assert_eq!(g["policy_updates_enabled"], false, "the group is paused");
    let failed = of_class(&activity(&app, &t.app_id).await, class::ROLLOUT_FAILED);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["group_id"], json!(t.group_id));
    assert_eq!(
        check(&app, &t, "p8-c", "12.0.0").await.summary(),
        denied(UPDATES_DISABLED)
    );
    assert_eq!(status_of(&app, &t, "p8-b").await, Some(st::ONHOLD));
    // A paused group still records completions: the slow canary finally reboots into 12.1.0.
    let done = check_with(&app, &t, "p8-a", "12.1.0", &event_prev(3, 2, "12.0.0")).await;
    assert_eq!(done.summary(), NO_UPDATE);
    assert_eq!(status_of(&app, &t, "p8-a").await, Some(st::COMPLETE));
}
both_backends!(p08_timeout_brake, p08_timeouts_pause_in_safe_mode);

/// P9 (Nebraska): without safe mode timed-out grants stop counting as in progress; new grants
/// resume and the group is not paused.
async fn p09_timeouts_resume_without_safe_mode(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(
        &app,
        "12.1.0",
        json!({"policy_safe_mode": false, "policy_period_interval": "10 milliseconds",
               "policy_max_updates_per_period": 2, "policy_update_timeout": "500 milliseconds"}),
    )
    .await;
    assert_eq!(
        check(&app, &t, "p9-a", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_eq!(
        check(&app, &t, "p9-b", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    app.clock.advance_ms(11);
    assert_eq!(
        check(&app, &t, "p9-c", "12.0.0").await.summary(),
        denied(MAX_CONCURRENT)
    );
    app.clock.advance_ms(490);
    assert_eq!(
        check(&app, &t, "p9-c", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_eq!(group(&app, &t).await["policy_updates_enabled"], true);
    assert!(of_class(&activity(&app, &t.app_id).await, class::ROLLOUT_FAILED).is_empty());
}
both_backends!(p09_timeout_no_brake, p09_timeouts_resume_without_safe_mode);

/// A channel moved back voids the grants nobody started and the holds: the instances' next
/// checks release them (status Undefined, no update in progress), so the next release's
/// safe-mode rollout is not paused at once by a stale grant counted as timed out.
async fn channel_rollback_releases_stale_grants_and_holds(db: TestDb) {
    let app = spawn_app(db).await;
    let (app_id, channel_id, group_id, _pkg2) = app
        .setup_rollout(
            "2.0.0",
            json!({"policy_safe_mode": false, "policy_max_updates_per_period": 1}),
        )
        .await;
    let t = Target {
        appid: app_id.clone(),
        app_id: app_id.clone(),
        group_id,
        track: "main".into(),
    };
    let package = |version: &str| json!({"type": 4, "version": version, "url": "https://pkgs.example.com/", "filename": "pkg.tgz", "size": "1024", "hash": "aGFzaA=="});
    let pkg1 = create_package(&app, &app_id, package("1.0.0")).await;
    assert_eq!(
        check(&app, &t, "rv01", "1.0.0").await.summary(),
        grant("2.0.0")
    );
    assert_eq!(
        check(&app, &t, "rv02", "1.0.0").await.summary(),
        denied(MAX_PER_PERIOD)
    );
    assert_eq!(status_of(&app, &t, "rv02").await, Some(st::ONHOLD));
    point_channel(&app, &app_id, &channel_id, pkg1["id"].as_str().unwrap()).await;
    for machine in ["rv01", "rv02"] {
        assert_eq!(check(&app, &t, machine, "1.0.0").await.summary(), NO_UPDATE);
        assert_eq!(
            status_of(&app, &t, machine).await,
            Some(1),
            "{machine} released"
        );
    }
    // Up to date without a status: counted as complete, nothing in progress or on hold.
    assert_stats(&stats(&app, &t).await, &[("complete", 2)]);
    // Checks after the release write nothing more.
    assert_eq!(check(&app, &t, "rv01", "1.0.0").await.summary(), NO_UPDATE);

    // The next release, in safe mode, long after the void grant's timeout.
    update_group(
        &app,
        &t,
        json!({"policy_safe_mode": true, "policy_update_timeout": "5 minutes",
               "policy_max_updates_per_period": 10, "policy_period_interval": "5 minutes"}),
    )
    .await;
    app.clock.advance_ms(10 * 60_000);
    let pkg3 = create_package(&app, &app_id, package("3.0.0")).await;
    point_channel(&app, &app_id, &channel_id, pkg3["id"].as_str().unwrap()).await;
    assert_eq!(
        check(&app, &t, "rv02", "1.0.0").await.summary(),
        grant("3.0.0")
    );
    assert_eq!(group(&app, &t).await["policy_updates_enabled"], true);
    assert!(of_class(&activity(&app, &app_id).await, class::ROLLOUT_FAILED).is_empty());
}
both_backends!(
    channel_rollback,
    channel_rollback_releases_stale_grants_and_holds
);

/// A rollout whose last instance behind goes silent finishes once that instance leaves the
/// one-day active window: the periodic sweep (here every second) re-checks groups marked in
/// progress. While the instance is active and behind, the sweep leaves the rollout running.
async fn silent_instances_let_a_rollout_finish(db: TestDb) {
    let mut options = AppOptions::default();
    options
        .extra_args
        .extend(["--rollout-sweep-seconds".to_string(), "1".into()]);
    let app = spawn_app_with(db, options).await;
    let t = rollout(&app, "12.1.0", json!({"policy_safe_mode": false})).await;
    assert_eq!(
        check(&app, &t, "quiet-1", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_eq!(group(&app, &t).await["rollout_in_progress"], true);
    // Active and behind: sweeps change nothing.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(group(&app, &t).await["rollout_in_progress"], true);
    assert!(of_class(&activity(&app, &t.app_id).await, class::ROLLOUT_FINISHED).is_empty());
    // The machine never reports back; a day later it is no longer active.
    app.clock.advance_ms(25 * 3_600_000);
    let mut finished = false;
    for _ in 0..100 {
        if group(&app, &t).await["rollout_in_progress"] == false {
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(finished, "the sweep finishes the rollout");
    let finished = of_class(&activity(&app, &t.app_id).await, class::ROLLOUT_FINISHED);
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0]["version"], "12.1.0");
}
both_backends!(
    silent_rollout_finishes,
    silent_instances_let_a_rollout_finish
);

/// P10: a safe-mode rollout over three instances from canary to finish, with one failure and a
/// retry; `rollout_in_progress` clears only when every instance runs the new version.
async fn p10_full_rollout(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(
        &app,
        "12.1.0",
        json!({"policy_safe_mode": true, "policy_max_updates_per_period": 4}),
    )
    .await;
    for m in ["p10-1", "p10-2", "p10-3"] {
        ping(&app, &t, m, "12.0.0").await;
    }
    assert_stats(&stats(&app, &t).await, &[("undefined", 3)]);
    assert_eq!(group(&app, &t).await["rollout_in_progress"], false);

    assert_eq!(
        check(&app, &t, "p10-1", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_eq!(
        check(&app, &t, "p10-2", "12.0.0").await.summary(),
        denied(MAX_PER_PERIOD)
    );
    assert_eq!(
        check(&app, &t, "p10-3", "12.0.0").await.summary(),
        denied(MAX_PER_PERIOD)
    );
    assert_eq!(group(&app, &t).await["rollout_in_progress"], true);
    assert_stats(
        &stats(&app, &t).await,
        &[("update_granted", 1), ("onhold", 2)],
    );

    send_events(&app, &t, "p10-1", "12.0.0", &[event(13, 1)]).await;
    assert_stats(&stats(&app, &t).await, &[("downloading", 1), ("onhold", 2)]);

    let done = check_with(&app, &t, "p10-1", "12.1.0", &event_prev(3, 2, "12.0.0")).await;
    assert_eq!(done.summary(), NO_UPDATE);
    // The canary succeeded: the configured max (4) applies now.
    assert_eq!(
        check(&app, &t, "p10-2", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_eq!(
        check(&app, &t, "p10-3", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_stats(
        &stats(&app, &t).await,
        &[("complete", 1), ("update_granted", 2)],
    );

    let done = check_with(&app, &t, "p10-2", "12.1.0", &event_prev(3, 2, "12.0.0")).await;
    assert_eq!(done.summary(), NO_UPDATE);
    send_events(&app, &t, "p10-3", "12.0.0", &[event_error("268437959")]).await;
    assert_stats(&stats(&app, &t).await, &[("complete", 2), ("error", 1)]);
    let g = group(&app, &t).await;
    assert_eq!(g["rollout_in_progress"], true);
    assert_eq!(
        g["policy_updates_enabled"], true,
        "not the first attempt: no pause"
    );

    assert_eq!(
        check(&app, &t, "p10-3", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    let done = check_with(&app, &t, "p10-3", "12.1.0", &event_prev(3, 2, "12.0.0")).await;
    assert_eq!(done.summary(), NO_UPDATE);
    assert_stats(&stats(&app, &t).await, &[("complete", 3)]);
    assert_eq!(group(&app, &t).await["rollout_in_progress"], false);

    let acts = activity(&app, &t.app_id).await;
    assert_eq!(of_class(&acts, class::ROLLOUT_STARTED).len(), 1, "{acts:?}");
    let finished = of_class(&acts, class::ROLLOUT_FINISHED);
    assert_eq!(finished.len(), 1, "{acts:?}");
    assert_eq!(finished[0]["version"], "12.1.0");
    assert_eq!(of_class(&acts, class::INSTANCE_UPDATE_FAILED).len(), 1);
    assert!(of_class(&acts, class::ROLLOUT_FAILED).is_empty());
}
both_backends!(p10_rollout_lifecycle, p10_full_rollout);

/// P11 (Nebraska): a granted instance that checks again is served the same package without
/// counting a second grant; once it reports Downloading it is busy.
async fn p11_second_check_reserves_grant(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(
        &app,
        "12.1.0",
        json!({"policy_safe_mode": false, "policy_max_updates_per_period": 1}),
    )
    .await;
    assert_eq!(
        check(&app, &t, "p11-a", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_eq!(
        check(&app, &t, "p11-a", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_eq!(
        history(&app, &t, "p11-a").await,
        vec![h(st::GRANTED, "12.1.0")]
    );
    assert_stats(&stats(&app, &t).await, &[("update_granted", 1)]);
    // The re-serve was not a second grant, and did not free the only slot either.
    assert_eq!(
        check(&app, &t, "p11-b", "12.0.0").await.summary(),
        denied(MAX_PER_PERIOD)
    );
    send_events(&app, &t, "p11-a", "12.0.0", &[event(13, 1)]).await;
    assert_eq!(
        check(&app, &t, "p11-a", "12.0.0").await.summary(),
        denied(IN_PROGRESS)
    );
    assert_eq!(status_of(&app, &t, "p11-a").await, Some(st::DOWNLOADING));
    let acts = activity(&app, &t.app_id).await;
    assert_eq!(of_class(&acts, class::ROLLOUT_STARTED).len(), 1, "{acts:?}");
    // Busy only until the grant times out (60 minutes): then the policy decides again, and
    // without safe mode a timed-out grant no longer takes a slot.
    app.clock.advance_ms(61 * MINUTE);
    assert_eq!(
        check(&app, &t, "p11-a", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    let hist = history(&app, &t, "p11-a").await;
    assert_eq!(hist.first(), Some(&h(st::GRANTED, "12.1.0")), "{hist:?}");
    assert_eq!(
        hist.len(),
        3,
        "granted, downloading, granted again: {hist:?}"
    );
}
both_backends!(p11_reserve, p11_second_check_reserves_grant);

/// P12 (Nebraska): an instance granted 12.1.0 that checks in reporting 12.1.0 is complete, even
/// without any event.
async fn p12_reaching_the_granted_version_completes(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(&app, "12.1.0", json!({"policy_safe_mode": false})).await;
    assert_eq!(
        check(&app, &t, "p12", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_eq!(check(&app, &t, "p12", "12.1.0").await.summary(), NO_UPDATE);
    let hist = history(&app, &t, "p12").await;
    assert_eq!(hist.first(), Some(&h(st::COMPLETE, "12.1.0")), "{hist:?}");
    let ia = instance_app(&app, &t, "p12").await;
    assert_eq!(ia["status"], st::COMPLETE);
    assert_eq!(ia["version"], "12.1.0");
    assert_eq!(ia["update_in_progress"], false);
    assert_eq!(group(&app, &t).await["rollout_in_progress"], false);
    // Further checks change nothing.
    assert_eq!(check(&app, &t, "p12", "12.1.0").await.summary(), NO_UPDATE);
    assert_eq!(history(&app, &t, "p12").await.len(), 2);
}
both_backends!(
    p12_version_reached,
    p12_reaching_the_granted_version_completes
);

/// P13: status history after grant, 13/1 and 3/2 is newest first, all at the granted version.
async fn p13_status_history_order(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(&app, "12.1.0", json!({"policy_safe_mode": false})).await;
    assert_eq!(
        check(&app, &t, "p13", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    app.clock.advance_ms(1_000);
    send_events(&app, &t, "p13", "12.0.0", &[event(13, 1)]).await;
    app.clock.advance_ms(1_000);
    let done = check_with(&app, &t, "p13", "12.1.0", &event_prev(3, 2, "12.0.0")).await;
    assert_eq!(done.summary(), NO_UPDATE);
    assert_eq!(
        history(&app, &t, "p13").await,
        vec![
            h(st::COMPLETE, "12.1.0"),
            h(st::DOWNLOADING, "12.1.0"),
            h(st::GRANTED, "12.1.0")
        ]
    );
    let rows = history_rows(&app, &t, "p13").await;
    let ts: Vec<&str> = rows
        .iter()
        .map(|r| r["created_ts"].as_str().expect("ts"))
        .collect();
    assert!(ts[0] > ts[1] && ts[1] > ts[2], "newest first: {ts:?}");
}
both_backends!(p13_history, p13_status_history_order);

/// P15: a grant without `last_update_version` is closed as Complete (noupdate); the next check
/// goes through the policy again and is granted.
async fn p15_grant_without_version_completes(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(&app, "12.1.0", json!({"policy_safe_mode": false})).await;
    ping(&app, &t, "p15", "12.0.0").await;
    app.state
        .store
        .force_instance_state(
            "p15",
            &t.app_id,
            &InstanceAppState {
                group_id: Some(t.group_id.clone()),
                version: "12.0.0".into(),
                status: Some(st::GRANTED),
                update_in_progress: true,
                last_update_version: None,
                last_update_granted_ts: Some(T0),
            },
        )
        .await
        .expect("force state");
    assert_eq!(check(&app, &t, "p15", "12.0.0").await.summary(), NO_UPDATE);
    let ia = instance_app(&app, &t, "p15").await;
    assert_eq!(ia["status"], st::COMPLETE);
    assert_eq!(ia["update_in_progress"], false);
    assert_eq!(
        check(&app, &t, "p15", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    let hist = history(&app, &t, "p15").await;
    let statuses: Vec<i64> = hist.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, vec![st::GRANTED, st::COMPLETE], "{hist:?}");
    assert_eq!(hist[0].1, "12.1.0");
}
both_backends!(
    p15_null_granted_version,
    p15_grant_without_version_completes
);

/// P16: stats count an up-to-date instance without status as complete, an outdated one as
/// undefined; without a channel only explicit Complete stays complete.
async fn p16_stats_of_statusless_instances(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(&app, "12.1.0", json!({"policy_safe_mode": false})).await;
    ping(&app, &t, "p16-current", "12.1.0").await;
    ping(&app, &t, "p16-old", "0.1.0").await;
    assert_eq!(
        check(&app, &t, "p16-done", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    let done = check_with(&app, &t, "p16-done", "12.1.0", &event_prev(3, 2, "12.0.0")).await;
    assert_eq!(done.summary(), NO_UPDATE);
    let g = group(&app, &t).await;
    assert_stats(&g["instances_stats"], &[("complete", 2), ("undefined", 1)]);
    let breakdown: Vec<(String, i64)> = g["version_breakdown"]
        .as_array()
        .expect("version_breakdown")
        .iter()
        .map(|v| {
            (
                v["version"].as_str().expect("version").to_string(),
                v["instances"].as_i64().expect("instances"),
            )
        })
        .collect();
    assert_eq!(
        breakdown,
        vec![("12.1.0".to_string(), 2), ("0.1.0".to_string(), 1)]
    );

    let g = update_group(&app, &t, json!({"channel_id": null})).await;
    assert_eq!(g["channel_id"], Value::Null);
    assert_stats(&stats(&app, &t).await, &[("complete", 1), ("undefined", 2)]);
}
both_backends!(p16_stats, p16_stats_of_statusless_instances);

/// RolloutStarted is written once per (group, version): not again for later grants of the
/// same version, again for a new channel version and for another group.
async fn rollout_started_once_per_group_and_version(db: TestDb) {
    let app = spawn_app(db).await;
    let (app_id, channel_id, group_id, _) = app
        .setup_rollout("12.1.0", json!({"policy_safe_mode": false}))
        .await;
    let t = Target {
        appid: app_id.clone(),
        app_id: app_id.clone(),
        group_id,
        track: "main".into(),
    };
    let other = create_group(
        &app,
        &app_id,
        json!({"name": "other", "track": "other", "channel_id": channel_id,
               "policy_safe_mode": false, "policy_max_updates_per_period": 10}),
    )
    .await;
    for m in ["rs-1", "rs-2", "rs-3"] {
        assert_eq!(
            check(&app, &t, m, "12.0.0").await.summary(),
            grant("12.1.0")
        );
    }
    assert_eq!(
        check(&app, &other, "rs-4", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    let started = |acts: &[Value]| {
        let mut v: Vec<(String, String)> = of_class(acts, class::ROLLOUT_STARTED)
            .iter()
            .map(|a| {
                (
                    a["group_id"].as_str().expect("group").to_string(),
                    a["version"].as_str().expect("version").to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let mut want = vec![
        (t.group_id.clone(), "12.1.0".to_string()),
        (other.group_id.clone(), "12.1.0".to_string()),
    ];
    want.sort();
    assert_eq!(started(&activity(&app, &app_id).await), want);

    let next = create_package(
        &app,
        &app_id,
        json!({"type": 4, "version": "12.2.0", "url": "https://pkgs.example.com/", "filename": "pkg.tgz"}),
    )
    .await;
    point_channel(&app, &app_id, &channel_id, next["id"].as_str().expect("id")).await;
    assert_eq!(
        check(&app, &t, "rs-5", "12.0.0").await.summary(),
        grant("12.2.0")
    );
    assert_eq!(
        check(&app, &t, "rs-6", "12.1.0").await.summary(),
        grant("12.2.0")
    );
    want.push((t.group_id.clone(), "12.2.0".to_string()));
    want.sort();
    assert_eq!(started(&activity(&app, &app_id).await), want);
}
both_backends!(
    rollout_started_dedup,
    rollout_started_once_per_group_and_version
);

/// Instances that were already up to date count as finished: the rollout ends when the only
/// outdated instance completes (CoreRoller never finished such a rollout).
async fn rollout_finishes_with_up_to_date_instances(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(&app, "12.1.0", json!({"policy_safe_mode": false})).await;
    ping(&app, &t, "rf-current", "12.1.0").await;
    ping(&app, &t, "rf-newer", "12.2.0").await;
    assert_eq!(
        check(&app, &t, "rf-old", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_eq!(group(&app, &t).await["rollout_in_progress"], true);
    let done = check_with(&app, &t, "rf-old", "12.1.0", &event_prev(3, 2, "12.0.0")).await;
    assert_eq!(done.summary(), NO_UPDATE);
    assert_eq!(group(&app, &t).await["rollout_in_progress"], false);
    let acts = activity(&app, &t.app_id).await;
    assert_eq!(
        of_class(&acts, class::ROLLOUT_FINISHED).len(),
        1,
        "{acts:?}"
    );
    assert_stats(&stats(&app, &t).await, &[("complete", 3)]);
}
both_backends!(
    rollout_finish_counts_up_to_date,
    rollout_finishes_with_up_to_date_instances
);

// ===========================================================================================
// 3. Event acceptance cases (§8.3)
// ===========================================================================================

/// E1: events that cannot apply (unknown instance/app/group, no update in progress, unknown
/// type/result pair) are acknowledged and change nothing.
async fn e1_events_that_cannot_apply(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(&app, "12.1.0", json!({"policy_safe_mode": false})).await;

    // Unknown instance: acknowledged, nothing registered.
    send_events(&app, &t, "e1-ghost", "12.0.0", &[event(13, 1)]).await;
    assert_eq!(instances(&app, &t).await["total"], 0);

    // Unknown application / group: registration error, events still acknowledged.
    let unknown = uuid::Uuid::new_v4().to_string();
    for bad in [t.with_appid(&unknown), t.with_track("no-such-group")] {
        let answer = request(&app, &bad, "e1-ghost", "12.0.0", &event(13, 1)).await;
        assert_eq!(answer.summary(), (REGISTRATION_FAILED, None, None));
        assert_eq!(answer.app.event_statuses, vec![OK]);
    }
    assert_eq!(instances(&app, &t).await["total"], 0);

    // Registered but no update in progress: ignored.
    ping(&app, &t, "e1-idle", "12.0.0").await;
    send_events(&app, &t, "e1-idle", "12.0.0", &[event(13, 1), event(14, 1)]).await;
    assert_eq!(status_of(&app, &t, "e1-idle").await, None);
    assert_eq!(history(&app, &t, "e1-idle").await, vec![]);

    // Granted, then unknown pairs: ignored.
    assert_eq!(
        check(&app, &t, "e1-idle", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    send_events(
        &app,
        &t,
        "e1-idle",
        "12.0.0",
        &[event(1000, 1), event(3, 1000), event(2, 1), event(6, 1)],
    )
    .await;
    assert_eq!(status_of(&app, &t, "e1-idle").await, Some(st::GRANTED));
    assert_eq!(
        history(&app, &t, "e1-idle").await,
        vec![h(st::GRANTED, "12.1.0")]
    );

    // A known, granted instance whose request fails registration: its events are not applied.
    let unknown_group = t.with_track("no-such-group");
    let answer = request(&app, &unknown_group, "e1-idle", "12.0.0", &event(13, 1)).await;
    assert_eq!(answer.summary(), (REGISTRATION_FAILED, None, None));
    let answer = request(&app, &t, "e1-idle", "not-semver", &event(13, 1)).await;
    assert_eq!(answer.summary(), (REGISTRATION_FAILED, None, None));
    assert_eq!(answer.app.event_statuses, vec![OK]);
    assert_eq!(status_of(&app, &t, "e1-idle").await, Some(st::GRANTED));
    assert_eq!(history(&app, &t, "e1-idle").await.len(), 1);
}
both_backends!(e1_ignored_events, e1_events_that_cannot_apply);

/// E2: the progress events walk a granted instance through Downloading, Downloaded, Installed
/// and Complete (braced appid accepted); a later failure is Error without pausing the group.
async fn e2_event_transitions(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(
        &app,
        "12.1.0",
        json!({"policy_safe_mode": false, "policy_max_updates_per_period": 10}),
    )
    .await;
    let braced = t.with_appid(&format!("{{{}}}", t.app_id.to_uppercase()));
    assert_eq!(
        check(&app, &t, "e2-a", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    assert_eq!(
        check(&app, &t, "e2-b", "12.0.0").await.summary(),
        grant("12.1.0")
    );

    for (ev, status) in [
        (event(13, 1), st::DOWNLOADING),
        (event(14, 1), st::DOWNLOADED),
        (event(800, 1), st::INSTALLED),
    ] {
        send_events(&app, &braced, "e2-a", "12.0.0", std::slice::from_ref(&ev)).await;
        assert_eq!(
            status_of(&app, &t, "e2-a").await,
            Some(status),
            "after {ev}"
        );
    }
    let done = check_with(&app, &braced, "e2-a", "12.1.0", &event_prev(3, 2, "12.0.0")).await;
    assert_eq!(done.summary(), NO_UPDATE);
    let ia = instance_app(&app, &t, "e2-a").await;
    assert_eq!(ia["status"], st::COMPLETE);
    assert_eq!(ia["version"], "12.1.0");

    send_events(&app, &t, "e2-b", "12.0.0", &[event_error("268435490")]).await;
    assert_eq!(status_of(&app, &t, "e2-b").await, Some(st::ERROR));
    let rows = history_rows(&app, &t, "e2-b").await;
    assert_eq!(rows[0]["status"], st::ERROR);
    assert_eq!(rows[0]["error_code"], "268435490");
    assert_eq!(group(&app, &t).await["policy_updates_enabled"], true);
    let acts = activity(&app, &t.app_id).await;
    let failed = of_class(&acts, class::INSTANCE_UPDATE_FAILED);
    assert_eq!(failed.len(), 1, "{acts:?}");
    assert_eq!(failed[0]["instance_id"], "e2-b");
    assert_eq!(failed[0]["version"], "12.1.0");
    assert!(of_class(&acts, class::ROLLOUT_FAILED).is_empty());
}
both_backends!(e2_transitions, e2_event_transitions);

/// E3: the first finished attempt failing pauses the group (`policy_auto_pause_on_failure`,
/// default on); with the setting off the group keeps going.
async fn e3_first_failure_pauses(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(
        &app,
        "12.1.0",
        json!({"policy_safe_mode": true, "policy_max_updates_per_period": 2}),
    )
    .await;
    assert_eq!(group(&app, &t).await["policy_auto_pause_on_failure"], true);
    assert_eq!(
        check(&app, &t, "e3-a", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    send_events(&app, &t, "e3-a", "12.0.0", &[event_error("7")]).await;
    assert_eq!(status_of(&app, &t, "e3-a").await, Some(st::ERROR));
    let g = group(&app, &t).await;
    assert_eq!(g["policy_updates_enabled"], false);
    assert_eq!(g["rollout_in_progress"], false);
    let failed = of_class(&activity(&app, &t.app_id).await, class::ROLLOUT_FAILED);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["version"], "12.1.0");
    assert_eq!(
        check(&app, &t, "e3-b", "12.0.0").await.summary(),
        denied(UPDATES_DISABLED)
    );

    let keep_going = rollout(
        &app,
        "12.1.0",
        json!({"policy_safe_mode": true, "policy_max_updates_per_period": 2,
               "policy_auto_pause_on_failure": false}),
    )
    .await;
    let k = &keep_going;
    assert_eq!(
        check(&app, k, "e3-c", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    send_events(&app, k, "e3-c", "12.0.0", &[event_error("7")]).await;
    assert_eq!(status_of(&app, k, "e3-c").await, Some(st::ERROR));
    assert_eq!(group(&app, k).await["policy_updates_enabled"], true);
    assert!(of_class(&activity(&app, &k.app_id).await, class::ROLLOUT_FAILED).is_empty());
    // The failed canary counts as an attempt: the configured max applies.
    assert_eq!(
        check(&app, k, "e3-d", "12.0.0").await.summary(),
        grant("12.1.0")
    );
}
both_backends!(e3_auto_pause, e3_first_failure_pauses);

/// E4 (Nebraska): a generic app completes on 3/1; the CoreOS app stays Installed on 3/1 and
/// completes on 3/2 once it runs the new version.
async fn e4_update_installed_event(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(&app, "12.1.0", json!({"policy_safe_mode": false})).await;
    assert_eq!(
        check(&app, &t, "e4-generic", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    send_events(&app, &t, "e4-generic", "12.0.0", &[event(3, 1)]).await;
    let ia = instance_app(&app, &t, "e4-generic").await;
    assert_eq!(ia["status"], st::COMPLETE);
    assert_eq!(
        ia["version"], "12.1.0",
        "completion records the granted version"
    );
    assert_eq!(ia["update_in_progress"], false);

    coreos_release(&app, "2191.5.0").await;
    let c = Target::coreos_stable();
    assert_eq!(
        check(&app, &c, "e4-coreos", "2191.0.0").await.summary(),
        grant("2191.5.0")
    );
    send_events(&app, &c, "e4-coreos", "2191.0.0", &[event(800, 1)]).await;
    assert_eq!(status_of(&app, &c, "e4-coreos").await, Some(st::INSTALLED));
    send_events(&app, &c, "e4-coreos", "2191.0.0", &[event(3, 1)]).await;
    assert_eq!(status_of(&app, &c, "e4-coreos").await, Some(st::INSTALLED));
    let done = check_with(
        &app,
        &c,
        "e4-coreos",
        "2191.5.0",
        &event_prev(3, 2, "2191.0.0"),
    )
    .await;
    assert_eq!(done.summary(), NO_UPDATE);
    let ia = instance_app(&app, &c, "e4-coreos").await;
    assert_eq!(ia["status"], st::COMPLETE);
    assert_eq!(ia["version"], "2191.5.0");
}
both_backends!(e4_installed_event, e4_update_installed_event);

/// E5: update_engine's every-check 3/2 (previousversion "0.0.0.0" or "") and a 3/2 from an
/// instance still on the old version complete nothing on the CoreOS app. Adapted: Nebraska
/// resets the instance to Undefined; rollbridge keeps the grant and re-serves it.
async fn e5_coreos_boot_event_is_ignored(db: TestDb) {
    let app = spawn_app(db).await;
    coreos_release(&app, "2191.5.0").await;
    let c = Target::coreos_stable();
    assert_eq!(
        check(&app, &c, "e5", "2191.0.0").await.summary(),
        grant("2191.5.0")
    );
    for previous in ["0.0.0.0", ""] {
        let again = check_with(&app, &c, "e5", "2191.0.0", &event_prev(3, 2, previous)).await;
        assert_eq!(
            again.summary(),
            grant("2191.5.0"),
            "previousversion {previous:?}"
        );
        assert_eq!(again.app.event_statuses, vec![OK]);
        assert_eq!(status_of(&app, &c, "e5").await, Some(st::GRANTED));
    }
    send_events(&app, &c, "e5", "2191.0.0", &[event_prev(3, 2, "2191.0.0")]).await;
    let ia = instance_app(&app, &c, "e5").await;
    assert_eq!(ia["status"], st::GRANTED);
    assert_eq!(ia["update_in_progress"], true);
    assert_eq!(ia["version"], "2191.0.0");
    assert_eq!(
        history(&app, &c, "e5").await,
        vec![h(st::GRANTED, "2191.5.0")]
    );
    assert_stats(&stats(&app, &c).await, &[("update_granted", 1)]);
}
both_backends!(e5_boot_event, e5_coreos_boot_event_is_ignored);

// ===========================================================================================
// 4. Omaha acceptance cases (§8.4)
// ===========================================================================================

/// O1: invalid track, appid or version → `error-instanceRegistrationFailed` with the appid
/// echoed; a malformed `X-Forwarded-For` falls back to the peer address (adapted: CoreRoller
/// failed registration on an invalid IP).
async fn o1_registration_failures(db: TestDb) {
    let app = spawn_app(db).await;
    coreos_release(&app, "2191.5.0").await;
    let c = Target::coreos_stable();
    let cases = [
        (c.with_track("invalid-track"), "2191.0.0", "unknown track"),
        (
            c.with_appid("invalid-app-uuid"),
            "2191.0.0",
            "appid not a UUID",
        ),
        (c.clone(), "", "empty version"),
        (c.clone(), "2191", "not semver"),
        (c.with_track(""), "2191.0.0", "empty track"),
    ];
    for (t, version, why) in &cases {
        let answer = check(&app, t, "o1", version).await;
        assert_eq!(answer.summary(), denied(REGISTRATION_FAILED), "{why}");
        assert_eq!(answer.app.appid, t.appid, "{why}: appid echoed");
    }
    assert_eq!(instances(&app, &c).await["total"], 0);

    let xml = check_xml(COREOS_APPID, "stable", "o1-ip", "2191.0.0", PING_CHECK);
    let (status, _, body) = post_raw(
        &app,
        "/v1/update/",
        xml.into_bytes(),
        &[("x-forwarded-for", "not-an-ip")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(Answer::parse(body).summary(), grant("2191.5.0"));
    let listed = instances(&app, &c).await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["instances"][0]["ip"], "127.0.0.1");
}
both_backends!(o1_registration, o1_registration_failures);

/// Machine ids are kept as sent apart from surrounding whitespace: ids differing only in case
/// are different instances on both backends.
async fn machine_ids_are_exact(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(&app, "12.1.0", json!({"policy_safe_mode": false})).await;
    for machine in ["Case-M", "case-m", "  padded\t"] {
        assert_eq!(
            check(&app, &t, machine, "12.0.0").await.summary(),
            grant("12.1.0"),
            "{machine:?}"
        );
    }
    let listed = instances(&app, &t).await;
    let mut ids: Vec<&str> = listed["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| i["id"].as_str().expect("id"))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec!["Case-M", "case-m", "padded"]);
    assert_eq!(
        history(&app, &t, "padded").await,
        vec![h(st::GRANTED, "12.1.0")]
    );
}
both_backends!(o1_machine_ids, machine_ids_are_exact);

/// O2: the CoreOS app at the channel version: an events-only 3/0 gets only an event ack; checks
/// with the boot 3/2 get `noupdate`, with a ping ack only when pinged.
async fn o2_coreos_no_update_shapes(db: TestDb) {
    let app = spawn_app(db).await;
    coreos_release(&app, "640.0.0").await;
    let c = Target::coreos_stable();

    let answer = send_events(&app, &c, "o2", "640.0.0", &[event_error("0")]).await;
    assert_eq!(answer.summary(), (OK, None, None));

    let boot = event_prev(3, 2, "0.0.0.0");
    let answer = request(&app, &c, "o2", "640.0.0", &format!("<updatecheck/>{boot}")).await;
    assert_eq!(answer.summary(), NO_UPDATE);
    assert_eq!(answer.app.ping_status, None);
    assert_eq!(answer.app.event_statuses, vec![OK]);

    let answer = check_with(&app, &c, "o2", "640.0.0", &boot).await;
    assert_eq!(answer.summary(), NO_UPDATE);
    assert_eq!(answer.app.ping_status.as_deref(), Some(OK));

    assert_eq!(
        check(&app, &c, "o2-newer", "666.0.0").await.summary(),
        NO_UPDATE
    );
    assert_stats(&stats(&app, &c).await, &[("complete", 2)]);
}
both_backends!(o2_no_update, o2_coreos_no_update_shapes);

/// O3: the full CoreOS flow: the manifest carries the package and postinstall action exactly as
/// stored; progress events get no updatecheck; the new version checks in to `noupdate`.
async fn o3_coreos_full_flow(db: TestDb) {
    let app = spawn_app(db).await;
    let package = create_package(
        &app,
        COREOS_APP,
        json!({
            "type": 1, "version": "99640.0.0", "url": "http://sample.url/pkg/",
            "filename": "coreosupdate.tgz", "size": "123456", "hash": "+LXvjiaPkeYDLHoNKlf9qbJwvnk=",
            "coreos_action": {"sha256": "cSBzKN9Yp6v1pC1Tm3nuAs2rsyaNqR3p0ylH8dyVg1g=", "metadata_size": "42",
                              "metadata_signature_rsa": "c2lnbmF0dXJl", "deadline": "2026-12-01"}
        }),
    )
    .await;
    point_channel(
        &app,
        COREOS_APP,
        STABLE_CHANNEL,
        package["id"].as_str().expect("id"),
    )
    .await;
    let c = Target::coreos_stable();

    let answer = check(&app, &c, "o3", "610.0.0").await;
    assert_eq!(answer.summary(), grant("99640.0.0"));
    let uc = answer.app.update_check.as_ref().expect("updatecheck");
    assert_eq!(
        uc.codebases,
        vec![package["url"].as_str().expect("url").to_string()]
    );
    let manifest = &uc.manifests[0];
    assert_eq!(manifest.packages.len(), 1);
    let p = &manifest.packages[0];
    assert_eq!(p.name, package["filename"].as_str().expect("filename"));
    assert_eq!(p.hash, package["hash"].as_str().expect("hash"));
    assert_eq!(p.size, package["size"].as_str().expect("size"));
    assert!(p.required);
    let a = &package["coreos_action"];
    let text = |k: &str| a[k].as_str().expect(k).to_string();
    let flag = |k: &str| a[k].as_bool().expect(k);
    assert_eq!(
        manifest.postinstall,
        Some(PostinstallAction {
            sha256: text("sha256"),
            needs_admin: flag("needs_admin"),
            is_delta: flag("is_delta"),
            disable_payload_backoff: flag("disable_payload_backoff"),
            chromeos_version: text("chromeos_version"),
            metadata_signature_rsa: text("metadata_signature_rsa"),
            metadata_size: text("metadata_size"),
            deadline: text("deadline"),
        })
    );

    for (ev, status) in [
        (event(13, 1), st::DOWNLOADING),
        (event(14, 1), st::DOWNLOADED),
        (event(3, 1), st::DOWNLOADED),
    ] {
        send_events(&app, &c, "o3", "610.0.0", &[ev]).await;
        assert_eq!(status_of(&app, &c, "o3").await, Some(status));
    }
    let done = request(
        &app,
        &c,
        "o3",
        "99640.0.0",
        &format!("<updatecheck/>{}", event_prev(3, 2, "610.0.0")),
    )
    .await;
    assert_eq!(done.summary(), NO_UPDATE);
    assert_eq!(status_of(&app, &c, "o3").await, Some(st::COMPLETE));
    assert_eq!(
        check(&app, &c, "o3", "99640.0.0").await.summary(),
        NO_UPDATE
    );
    assert_eq!(
        history(&app, &c, "o3").await,
        vec![
            h(st::COMPLETE, "99640.0.0"),
            h(st::DOWNLOADED, "99640.0.0"),
            h(st::DOWNLOADING, "99640.0.0"),
            h(st::GRANTED, "99640.0.0"),
        ]
    );
}
both_backends!(o3_full_flow, o3_coreos_full_flow);

/// O4: track and appid resolution: CoreOS track names, group ids, track names of custom groups,
/// braces and case in the appid (echoed verbatim).
async fn o4_track_and_appid_resolution(db: TestDb) {
    let app = spawn_app(db).await;
    coreos_release_on(&app, "3000.0.0", ALPHA_CHANNEL).await;
    let c = Target::coreos_stable();
    let alpha = Target {
        group_id: ALPHA_GROUP.into(),
        track: "alpha".into(),
        ..c.clone()
    };

    let answer = check(&app, &c.with_track("invalid-group"), "o4-x", "2999.0.0").await;
    assert_eq!(answer.summary(), denied(REGISTRATION_FAILED));
    assert_eq!(
        check(&app, &alpha, "o4-a", "2999.0.0").await.summary(),
        grant("3000.0.0")
    );
    assert_eq!(instances(&app, &alpha).await["total"], 1);

    // A group id as track, and an upper-case appid without braces.
    let by_id = alpha
        .with_track(ALPHA_GROUP)
        .with_appid(&COREOS_APP.to_uppercase());
    assert_eq!(
        check(&app, &by_id, "o4-b", "3000.0.0").await.summary(),
        NO_UPDATE
    );
    let braced = alpha.with_appid("{E96281A6-D1AF-4BDE-9A0A-97B76E56DC57}");
    assert_eq!(
        check(&app, &braced, "o4-c", "3000.0.0").await.summary(),
        NO_UPDATE
    );
    assert_eq!(instances(&app, &alpha).await["total"], 3);
    // `beta` is its own group (no package on its channel).
    let beta = Target {
        group_id: BETA_GROUP.into(),
        track: "beta".into(),
        ..c.clone()
    };
    assert_eq!(
        check(&app, &beta, "o4-d", "1.0.0").await.summary(),
        denied(NO_PACKAGE)
    );
    assert_eq!(instances(&app, &beta).await["total"], 1);
    assert_eq!(instances(&app, &c).await["total"], 0);

    // Custom groups: by id or by track name.
    let t = rollout(&app, "2.0.0", json!({"policy_safe_mode": false})).await;
    assert_eq!(
        check(&app, &t, "o4-e", "1.0.0").await.summary(),
        grant("2.0.0")
    );
    let by_group_id = t.with_track(&t.group_id);
    assert_eq!(
        check(&app, &by_group_id, "o4-f", "1.0.0").await.summary(),
        grant("2.0.0")
    );
    assert_eq!(instances(&app, &t).await["total"], 2);
}
both_backends!(o4_resolution, o4_track_and_appid_resolution);

/// O9: every Omaha path answers; 64 KiB is accepted and one byte more is a 400.
async fn o9_endpoints_and_body_limit(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(&app, "12.1.0", json!({"policy_safe_mode": false})).await;
    for (i, path) in ["/v1/update", "/v1/update/", "/omaha", "/omaha/"]
        .iter()
        .enumerate()
    {
        let xml = check_xml(&t.appid, &t.track, &format!("o9-{i}"), "12.1.0", PING_CHECK);
        let (status, content_type, body) = post_raw(&app, path, xml.into_bytes(), &[]).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            content_type.starts_with("text/xml"),
            "{path}: {content_type}"
        );
        assert_eq!(Answer::parse(body).summary(), NO_UPDATE, "{path}");
    }
    let xml = check_xml(&t.appid, &t.track, "o9-x", "12.1.0", PING_CHECK);
    let (status, _, _) = post_raw(&app, "/v1/updates", xml.clone().into_bytes(), &[]).await;
    assert_eq!(status, 404);
    let r = app
        .client
        .get(app.url("/v1/update/"))
        .send()
        .await
        .expect("GET");
    assert!(
        r.status().is_client_error(),
        "GET on the Omaha endpoint: {}",
        r.status()
    );
    assert_eq!(instances(&app, &t).await["total"], 4);

    let limit = 64 * 1024;
    let xml = check_xml(&t.appid, &t.track, "o9-limit", "12.0.0", PING_CHECK);
    let (status, _, body) =
        post_raw(&app, "/v1/update/", padded(&xml, limit).into_bytes(), &[]).await;
    assert_eq!(status, 200, "exactly 64 KiB is accepted");
    assert_eq!(Answer::parse(body).summary(), grant("12.1.0"));
    let xml = check_xml(&t.appid, &t.track, "o9-over", "12.0.0", PING_CHECK);
    let (status, _, _) = post_raw(
        &app,
        "/v1/update/",
        padded(&xml, limit + 1).into_bytes(),
        &[],
    )
    .await;
    assert_eq!(status, 400, "64 KiB + 1 is rejected");
    assert_eq!(instances(&app, &t).await["total"], 5);
}
both_backends!(o9_http, o9_endpoints_and_body_limit);

// ===========================================================================================
// 5. Must-haves from the issue
// ===========================================================================================

/// `--omaha-deny-as-noupdate`: policy denials are answered app `ok` + `noupdate` (the instance is
/// still put on hold); registration failures stay errors.
async fn deny_as_noupdate(db: TestDb) {
    let options = AppOptions {
        deny_as_noupdate: true,
        ..AppOptions::default()
    };
    let app = spawn_app_with(db, options).await;
    let t = rollout(
        &app,
        "12.1.0",
        json!({"policy_safe_mode": false, "policy_max_updates_per_period": 1}),
    )
    .await;
    assert_eq!(
        check(&app, &t, "dn-a", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    let answer = check(&app, &t, "dn-b", "12.0.0").await;
    assert_eq!(answer.summary(), NO_UPDATE);
    assert!(!answer.xml.contains("error-"), "{}", answer.xml);
    assert_eq!(status_of(&app, &t, "dn-b").await, Some(st::ONHOLD));

    update_group(&app, &t, json!({"policy_updates_enabled": false})).await;
    assert_eq!(check(&app, &t, "dn-c", "12.0.0").await.summary(), NO_UPDATE);
    send_events(&app, &t, "dn-a", "12.0.0", &[event(13, 1)]).await;
    assert_eq!(check(&app, &t, "dn-a", "12.0.0").await.summary(), NO_UPDATE);

    let answer = check(&app, &t.with_track("nope"), "dn-d", "12.0.0").await;
    assert_eq!(answer.summary(), denied(REGISTRATION_FAILED));
}
both_backends!(deny_noupdate, deny_as_noupdate);

/// `policy_poll_interval: 300` is sent as `PollInterval="300"` on ok and noupdate answers; the
/// default (0) sends no attribute.
async fn poll_interval(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(
        &app,
        "12.1.0",
        json!({"policy_safe_mode": false, "policy_poll_interval": 300}),
    )
    .await;
    assert_eq!(group(&app, &t).await["policy_poll_interval"], 300);
    let answer = check(&app, &t, "pi-a", "12.0.0").await;
    assert_eq!(answer.summary(), grant("12.1.0"));
    assert_eq!(answer.poll_interval(), Some(300));
    assert!(
        answer
            .xml
            .contains(r#"<updatecheck status="ok" PollInterval="300">"#),
        "{}",
        answer.xml
    );
    let answer = check(&app, &t, "pi-b", "12.1.0").await;
    assert_eq!(answer.summary(), NO_UPDATE);
    assert!(
        answer
            .xml
            .contains(r#"<updatecheck status="noupdate" PollInterval="300"/>"#),
        "{}",
        answer.xml
    );

    let plain = rollout(&app, "12.1.0", json!({"policy_safe_mode": false})).await;
    let answer = check(&app, &plain, "pi-c", "12.0.0").await;
    assert_eq!(answer.summary(), grant("12.1.0"));
    assert_eq!(answer.poll_interval(), None);
    assert!(!answer.xml.contains("PollInterval"), "{}", answer.xml);
}
both_backends!(poll_interval_attr, poll_interval);

/// Office hours (Mon–Fri 09:00–16:59) are enforced in the group's timezone.
async fn office_hours(db: TestDb) {
    let app = spawn_app(db).await;
    let policy = |tz: &str| {
        json!({"policy_safe_mode": false, "policy_max_updates_per_period": 100,
               "policy_office_hours": true, "policy_timezone": tz})
    };
    let berlin = rollout(&app, "12.1.0", policy("Europe/Berlin")).await;
    let b = &berlin;

    app.clock.set_ms(SATURDAY);
    assert_eq!(
        check(&app, b, "oh-1", "12.0.0").await.summary(),
        denied(UPDATES_DISABLED)
    );
    assert_eq!(status_of(&app, b, "oh-1").await, None, "not put on hold");
    app.clock.set_ms(T0);
    assert_eq!(
        check(&app, b, "oh-1", "12.0.0").await.summary(),
        grant("12.1.0")
    );

    // Berlin is UTC+1 in November: 15:59 UTC is 16:59 local (open), 16:00 UTC is 17:00 (closed),
    // 07:59 UTC is 08:59 (closed), 08:00 UTC is 09:00 (open).
    for (at, machine, open) in [
        (T0 + 6 * HOUR - MINUTE, "oh-2", true),
        (T0 + 6 * HOUR, "oh-3", false),
        (T0 - 2 * HOUR - MINUTE, "oh-4", false),
        (T0 - 2 * HOUR, "oh-5", true),
    ] {
        app.clock.set_ms(at);
        let want = if open {
            grant("12.1.0")
        } else {
            denied(UPDATES_DISABLED)
        };
        assert_eq!(
            check(&app, b, machine, "12.0.0").await.summary(),
            want,
            "{machine}"
        );
    }

    // At T0 (10:00 UTC) New York is at 05:00: closed there, open five hours later.
    let new_york = rollout(&app, "12.1.0", policy("America/New_York")).await;
    app.clock.set_ms(T0);
    assert_eq!(
        check(&app, &new_york, "oh-ny", "12.0.0").await.summary(),
        denied(UPDATES_DISABLED)
    );
    app.clock.set_ms(T0 + 5 * HOUR);
    assert_eq!(
        check(&app, &new_york, "oh-ny", "12.0.0").await.summary(),
        grant("12.1.0")
    );
}
both_backends!(office_hours_tz, office_hours);

/// Pausing and resuming a group through the REST API takes effect on the next check.
async fn pause_and_resume(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(&app, "12.1.0", json!({"policy_safe_mode": false})).await;
    let g = update_group(&app, &t, json!({"policy_updates_enabled": false})).await;
    assert_eq!(g["policy_updates_enabled"], false);
    assert_eq!(
        check(&app, &t, "pr", "12.0.0").await.summary(),
        denied(UPDATES_DISABLED)
    );
    let g = update_group(&app, &t, json!({"policy_updates_enabled": true})).await;
    assert_eq!(g["policy_updates_enabled"], true);
    assert_eq!(
        check(&app, &t, "pr", "12.0.0").await.summary(),
        grant("12.1.0")
    );
}
both_backends!(pause_resume, pause_and_resume);

/// A request with several `<app>`s is answered app by app, in request order.
async fn multi_app_in_order(db: TestDb) {
    let app = spawn_app(db).await;
    coreos_release(&app, "2191.5.0").await;
    let a = rollout(&app, "2.0.0", json!({"policy_safe_mode": false})).await;
    let b = rollout(&app, "3.0.0", json!({"policy_safe_mode": false})).await;
    let unknown = format!("{{{}}}", uuid::Uuid::new_v4());
    let xml = request_of(&[
        app_element(&b.appid, "main", "multi", "3.0.0", PING_CHECK),
        app_element(&unknown, "stable", "multi", "1.0.0", PING_CHECK),
        app_element(COREOS_APPID, "stable", "multi", "2191.0.0", PING_CHECK),
        app_element(
            &a.appid,
            "main",
            "multi",
            "1.0.0",
            &format!("{PING_CHECK}{}", event(13, 1)),
        ),
    ]);
    let body = omaha_ok(&app, &xml).await;
    let parsed = parse_response(body.as_bytes()).expect("response");
    let got: Vec<(&str, &str, Option<&str>)> = parsed
        .apps
        .iter()
        .map(|p| {
            (
                p.appid.as_str(),
                p.status.as_str(),
                p.update_check.as_ref().map(|u| u.status.as_str()),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (b.appid.as_str(), OK, Some(NOUPDATE)),
            (unknown.as_str(), REGISTRATION_FAILED, Some(ERROR_INTERNAL)),
            (COREOS_APPID, OK, Some(OK)),
            (a.appid.as_str(), OK, Some(OK)),
        ],
        "{body}"
    );
    assert_eq!(parsed.apps[3].event_statuses, vec![OK]);
    assert_eq!(status_of(&app, &a, "multi").await, Some(st::GRANTED));
    assert_eq!(
        status_of(&app, &Target::coreos_stable(), "multi").await,
        Some(st::GRANTED)
    );
    assert_eq!(instances(&app, &b).await["total"], 1);
}
both_backends!(multi_app, multi_app_in_order);

/// The instance IP is the nearest `X-Forwarded-For` entry that is not a trusted proxy (the test
/// client connects over loopback, trusted by default), else the peer address.
async fn forwarded_for(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(&app, "12.1.0", json!({"policy_safe_mode": false})).await;
    for (machine, header, want) in [
        ("xff-1", Some("203.0.113.7, 10.0.0.1"), "203.0.113.7"),
        ("xff-2", Some("2001:db8::1"), "2001:db8::1"),
        ("xff-3", None, "127.0.0.1"),
    ] {
        let xml = check_xml(&t.appid, &t.track, machine, "12.0.0", PING_CHECK);
        let headers: Vec<(&str, &str)> =
            header.map(|v| ("x-forwarded-for", v)).into_iter().collect();
        let (status, _, _) = post_raw(&app, "/v1/update/", xml.into_bytes(), &headers).await;
        assert_eq!(status, 200);
        let inst = app
            .get_json(&format!("{}/instances/{machine}", t.api()))
            .await;
        assert_eq!(inst["ip"], want, "{machine}");
    }
}
both_backends!(x_forwarded_for, forwarded_for);

/// The exact bytes of a full update for a type-1 package on the seeded CoreOS stable channel.
async fn exact_update_response(db: TestDb) {
    let app = spawn_app(db).await;
    let package = coreos_release(&app, "2191.5.0").await;
    assert_eq!(package["type"], 1);
    let xml = check_xml(
        COREOS_APPID,
        "stable",
        "0123456789abcdef0123456789abcdef",
        "2191.0.0",
        &format!("{PING_CHECK}{}", event_prev(3, 2, "0.0.0.0")),
    );
    let (status, content_type, body) = post_raw(&app, "/v1/update/", xml.into_bytes(), &[]).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/xml"), "{content_type}");
    let expected = concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?>"#,
        "\n",
        r#"<response protocol="3.0" server="rollbridge"><daystart elapsed_seconds="0"/>"#,
        r#"<app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" status="ok"><ping status="ok"/>"#,
        r#"<updatecheck status="ok"><urls><url codebase="https://update.release.flatcar-linux.net/amd64-usr/2191.5.0/"/></urls>"#,
        r#"<manifest version="2191.5.0"><packages><package name="flatcar_production_update.gz" hash="r3nufcxgMTZaxYEqL+x2zIoeClk=" size="465881871" required="true"/></packages>"#,
        r#"<actions><action event="postinstall" sha256="LIkAKVZY2EJFiwTmltiJZLFLA5xT/FodbjVgqkyF/y8=" needsadmin="false" IsDelta="false" DisablePayloadBackoff="true"/></actions>"#,
        r#"</manifest></updatecheck><event status="ok"/></app></response>"#
    );
    assert_eq!(body, expected);
}
both_backends!(exact_bytes, exact_update_response);

// ===========================================================================================
// 6. Concurrency
// ===========================================================================================

/// 500 distinct instances check at the same moment against a group allowing 7 grants: exactly 7
/// are granted, every other one is told the period limit was reached and is on hold.
async fn concurrent_checks_respect_the_limit(db: TestDb) {
    const N: usize = 500;
    let app = spawn_app(db).await;
    let t = rollout(
        &app,
        "12.1.0",
        json!({"policy_safe_mode": false, "policy_max_updates_per_period": 7}),
    )
    .await;
    let requests = (0..N)
        .map(|i| {
            check_xml(
                &t.appid,
                &t.track,
                &format!("conc-{i:03}"),
                "12.0.0",
                PING_CHECK,
            )
        })
        .collect();
    let answers = concurrently(&app, requests).await;
    let (mut granted, mut limited, mut other) = (0, 0, Vec::new());
    for body in answers {
        let answer = Answer::parse(body);
        if answer.summary() == grant("12.1.0") {
            granted += 1;
        } else if answer.summary() == denied(MAX_PER_PERIOD) {
            limited += 1;
        } else {
            other.push(answer.xml);
        }
    }
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    assert_eq!((granted, limited), (7, N - 7));
    assert_stats(
        &stats(&app, &t).await,
        &[("update_granted", 7), ("onhold", (N - 7) as i64)],
    );
    let acts = activity(&app, &t.app_id).await;
    assert_eq!(of_class(&acts, class::ROLLOUT_STARTED).len(), 1);
}
both_backends!(concurrency_500, concurrent_checks_respect_the_limit);

/// Many simultaneous checks from ONE granted-to-be instance: one grant, every answer serves the
/// same package, and exactly one UpdateGranted history row.
async fn concurrent_checks_from_one_instance(db: TestDb) {
    const N: usize = 40;
    let app = spawn_app(db).await;
    let t = rollout(
        &app,
        "12.1.0",
        json!({"policy_safe_mode": false, "policy_max_updates_per_period": 1}),
    )
    .await;
    let xml = check_xml(&t.appid, &t.track, "same-machine", "12.0.0", PING_CHECK);
    let answers = concurrently(&app, vec![xml; N]).await;
    for body in answers {
        assert_eq!(Answer::parse(body).summary(), grant("12.1.0"));
    }
    assert_eq!(
        history(&app, &t, "same-machine").await,
        vec![h(st::GRANTED, "12.1.0")]
    );
    assert_stats(&stats(&app, &t).await, &[("update_granted", 1)]);
}
both_backends!(
    concurrency_one_instance,
    concurrent_checks_from_one_instance
);

/// Simultaneous checks in a group without a package write one PackageNotFound, not one each.
async fn concurrent_checks_without_package(db: TestDb) {
    const N: usize = 50;
    let app = spawn_app(db).await;
    let base = rollout(&app, "12.1.0", json!({})).await;
    let t = create_group(
        &app,
        &base.app_id,
        json!({"name": "nochannel", "track": "nochannel", "policy_safe_mode": false}),
    )
    .await;
    let requests = (0..N)
        .map(|i| check_xml(&t.appid, &t.track, &format!("np-{i}"), "1.0.0", PING_CHECK))
        .collect();
    for body in concurrently(&app, requests).await {
        assert_eq!(Answer::parse(body).summary(), denied(NO_PACKAGE));
    }
    let acts = activity(&app, &t.app_id).await;
    assert_eq!(
        of_class(&acts, class::PACKAGE_NOT_FOUND).len(),
        1,
        "{acts:?}"
    );
    assert_stats(&stats(&app, &t).await, &[("undefined", N as i64)]);
}
both_backends!(concurrency_no_package, concurrent_checks_without_package);

/// One machine running many applications checks for all of them at once (separate requests,
/// separate groups, so no shared group lock): every app is registered and granted.
async fn concurrent_checks_of_one_machine_across_apps(db: TestDb) {
    const N: usize = 24;
    let app = spawn_app(db).await;
    let mut targets = Vec::new();
    for _ in 0..N {
        targets.push(rollout(&app, "2.0.0", json!({"policy_safe_mode": false})).await);
    }
    let requests = targets
        .iter()
        .map(|t| check_xml(&t.appid, &t.track, "shared-machine", "1.0.0", PING_CHECK))
        .collect();
    for body in concurrently(&app, requests).await {
        assert_eq!(Answer::parse(body).summary(), grant("2.0.0"));
    }
    for t in &targets {
        assert_eq!(
            status_of(&app, t, "shared-machine").await,
            Some(st::GRANTED)
        );
    }
}
both_backends!(
    concurrency_one_machine_many_apps,
    concurrent_checks_of_one_machine_across_apps
);

// ===========================================================================================
// 7. Fixture replay
// ===========================================================================================

const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/omaha");

/// How a request fixture is replayed: every fixture runs on a fresh database with a type-1
/// 2191.5.0 package on the seeded CoreOS stable channel (safe mode, max 2), after the `before`
/// fixtures have been posted, and must leave its instance with `status_after`.
struct FixturePlan {
    before: &'static [&'static str],
    status_after: i64,
}

fn fixture_plan(name: &str) -> FixturePlan {
    let plan = |before, status_after| FixturePlan {
        before,
        status_after,
    };
    match name {
        // A fresh 2191.0.0 instance is granted 2191.5.0: the full manifest.
        "update-check" => plan(&[], st::GRANTED),
        // The boot 3/2 (previousversion 0.0.0.0) of a granted instance is ignored and the grant
        // is served again.
        "boot-event" => plan(&["update-check"], st::GRANTED),
        // Progress events after the grant: acknowledged, no ping/updatecheck in the answer.
        "event-download-started" => plan(&["update-check"], st::DOWNLOADING),
        "event-download-finished" => {
            plan(&["update-check", "event-download-started"], st::DOWNLOADED)
        }
        // 3/1 from the CoreOS app leaves the status alone.
        "event-installed" => plan(
            &["update-check", "event-download-started", "event-download-finished"],
            st::DOWNLOADED,
        ),
        // The instance rebooted into 2191.5.0 and reports 3/2: noupdate, Complete.
        "event-complete" => plan(
            &[
                "update-check",
                "event-download-started",
                "event-download-finished",
                "event-installed",
            ],
            st::COMPLETE,
        ),
        // The download failed: Error (and, as the first attempt, the group pauses).
        "event-error" => plan(&["update-check", "event-download-started"], st::ERROR),
        // A bare client at 0.0.0 (updatecheck, no ping) is granted 2191.5.0.
        "fake-client" => plan(&[], st::GRANTED),
        // CoreOS granted; the second app is not registered in rollbridge, so it gets a
        // registration error, in request order.
        "multi-app" => plan(&[], st::GRANTED),
        other => panic!(
            "fixtures/omaha/{other}.request.xml has no replay plan: add one to fixture_plan() in tests/omaha.rs"
        ),
    }
}

fn fixture_request(name: &str) -> String {
    let path = format!("{FIXTURE_DIR}/{name}.request.xml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Another fresh database on the same backend as the one the test was given.
async fn fresh_db(sqlite: bool) -> TestDb {
    if sqlite {
        TestDb::sqlite().await
    } else {
        TestDb::mysql()
            .await
            .expect("TEST_MYSQL_URL was set for the first database")
    }
}

async fn fixture_replay(db: TestDb) {
    let mut names: Vec<String> = std::fs::read_dir(FIXTURE_DIR)
        .expect("fixture dir")
        .filter_map(|e| {
            let name = e
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            name.strip_suffix(".request.xml").map(str::to_string)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 9, "fixtures missing: {names:?}");
    // No stale expectations without a request.
    for entry in std::fs::read_dir(FIXTURE_DIR).expect("fixture dir") {
        let file = entry
            .expect("dir entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some(name) = file.strip_suffix(".response.xml") {
            assert!(
                names.iter().any(|n| n == name),
                "{file} has no request fixture"
            );
        }
    }
    let update = std::env::var_os("UPDATE_FIXTURES").is_some();
    let sqlite = db.url.starts_with("sqlite");
    let mut first = Some(db);
    for name in &names {
        let plan = fixture_plan(name);
        let db = match first.take() {
            Some(db) => db,
            None => fresh_db(sqlite).await,
        };
        let app = spawn_app(db).await;
        coreos_release(&app, "2191.5.0").await;
        for before in plan.before {
            omaha_ok(&app, &fixture_request(before)).await;
        }
        let request = fixture_request(name);
        let body = omaha_ok(&app, &request).await;
        let path = format!("{FIXTURE_DIR}/{name}.response.xml");
        if update {
            std::fs::write(&path, &body).unwrap_or_else(|e| panic!("{path}: {e}"));
        } else {
            let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("{path}: {e} (run with UPDATE_FIXTURES=1 to create it, then review it)")
            });
            assert_eq!(body, expected, "{name}: the response differs from {path}");
        }
        let machine = parse_request(request.as_bytes())
            .expect("fixture parses")
            .apps[0]
            .machine_id
            .clone();
        let status = status_of(&app, &Target::coreos_stable(), &machine).await;
        assert_eq!(
            status,
            Some(plan.status_after),
            "{name}: instance status afterwards"
        );
    }
}
both_backends!(fixtures, fixture_replay);

// ===========================================================================================
// 8. Hostile input
// ===========================================================================================

/// Broken envelopes are a 400 (never a 5xx); apps missing what registration needs get
/// `error-instanceRegistrationFailed`; none of it stores anything.
async fn hostile_input(db: TestDb) {
    let app = spawn_app(db).await;
    // A valid request would be granted and stored: make sure these are not.
    coreos_release(&app, "2191.5.0").await;
    let valid = |machine: &str| check_xml(COREOS_APPID, "stable", machine, "2191.0.0", PING_CHECK);

    let lol = concat!(
        r#"<?xml version="1.0"?><!DOCTYPE request [<!ENTITY a "aaaaaaaaaa">"#,
        r#"<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">"#,
        r#"<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">]>"#,
        r#"<request protocol="3.0"><app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" version="2191.0.0" track="stable" machineid="&e;"><updatecheck/></app></request>"#
    );
    let xxe = concat!(
        r#"<?xml version="1.0"?><!DOCTYPE request [<!ENTITY x SYSTEM "file:///etc/passwd">]>"#,
        r#"<request protocol="3.0"><app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" version="2191.0.0" track="stable" machineid="&x;"><updatecheck/></app></request>"#
    );
    let many_apps = format!(
        r#"<request protocol="3.0">{}</request>"#,
        "<app/>".repeat(10_000)
    );
    assert!(many_apps.len() <= 64 * 1024, "10,000 <app/> fit in 64 KiB");
    let full_apps = request_of(
        &(0..33)
            .map(|i| {
                app_element(
                    COREOS_APPID,
                    "stable",
                    &format!("h-{i}"),
                    "2191.0.0",
                    PING_CHECK,
                )
            })
            .collect::<Vec<_>>(),
    );
    let many_events = check_xml(
        COREOS_APPID,
        "stable",
        "h-events",
        "2191.0.0",
        &format!("{PING_CHECK}{}", event(13, 1).repeat(17)),
    );
    let deep = format!(
        r#"<request protocol="3.0">{}{}</request>"#,
        "<x>".repeat(40),
        "</x>".repeat(40)
    );
    let mut non_utf8 = valid("h-utf8").into_bytes();
    let at = non_utf8
        .windows(6)
        .position(|w| w == b"h-utf8")
        .expect("machine id");
    non_utf8[at] = 0xff;
    non_utf8[at + 1] = 0xfe;
    let latin1 = {
        let mut bytes = valid("h-latin\u{e9}")
            .replace(r#"encoding="UTF-8""#, r#"encoding="ISO-8859-1""#)
            .into_bytes();
        let at = bytes
            .windows(2)
            .position(|w| w == "\u{e9}".as_bytes())
            .expect("é");
        bytes.splice(at..at + 2, [0xe9]);
        bytes
    };

    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", Vec::new()),
        ("not XML", b"hello, omaha".to_vec()),
        (
            "unclosed element",
            valid("h-1").replace("</request>", "").into_bytes(),
        ),
        (
            "mismatched end tag",
            valid("h-2").replace("</app>", "</ap>").into_bytes(),
        ),
        (
            "two roots",
            format!("{}<request protocol=\"3.0\"/>", valid("h-3")).into_bytes(),
        ),
        ("wrong root", br#"<response protocol="3.0"/>"#.to_vec()),
        (
            "no protocol",
            valid("h-4").replace(r#"protocol="3.0""#, "").into_bytes(),
        ),
        (
            "protocol 2.0",
            valid("h-5")
                .replace(r#"protocol="3.0""#, r#"protocol="2.0""#)
                .into_bytes(),
        ),
        ("DOCTYPE entity expansion", lol.as_bytes().to_vec()),
        ("DOCTYPE external entity", xxe.as_bytes().to_vec()),
        (
            "undeclared entity",
            valid("h-6").replace("h-6", "&xxe;").into_bytes(),
        ),
        (
            "64 KiB + 1",
            padded(&valid("h-big"), 64 * 1024 + 1).into_bytes(),
        ),
        ("10,000 <app/>", many_apps.into_bytes()),
        ("33 full apps", full_apps.into_bytes()),
        ("17 events in one app", many_events.into_bytes()),
        ("nesting 40 deep", deep.into_bytes()),
        ("non-UTF-8 bytes", non_utf8),
        ("Latin-1 document", latin1),
        (
            "NUL character reference",
            valid("h-7").replace("h-7", "h&#0;7").into_bytes(),
        ),
    ];
    for (why, body) in bad {
        let (status, _, text) = post_raw(&app, "/v1/update/", body, &[]).await;
        assert_eq!(status, 400, "{why}: {text}");
    }

    let app_xml = |attrs: &str| {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><request protocol="3.0"><app {attrs}><ping active="1"/><updatecheck/></app></request>"#
        )
    };
    let appid = format!(r#"appid="{COREOS_APPID}""#);
    let long_id = "m".repeat(129);
    let missing = [
        (
            "no machineid",
            format!(r#"{appid} version="2191.0.0" track="stable""#),
            COREOS_APPID,
        ),
        (
            "blank machineid",
            format!(r#"{appid} version="2191.0.0" track="stable" machineid="  ""#),
            COREOS_APPID,
        ),
        (
            "machineid over 128 chars",
            format!(r#"{appid} version="2191.0.0" track="stable" machineid="{long_id}""#),
            COREOS_APPID,
        ),
        (
            "no version",
            format!(r#"{appid} track="stable" machineid="h-nover""#),
            COREOS_APPID,
        ),
        (
            "no track",
            format!(r#"{appid} version="2191.0.0" machineid="h-notrack""#),
            COREOS_APPID,
        ),
        (
            "no appid",
            r#"version="2191.0.0" track="stable" machineid="h-noappid""#.to_string(),
            "",
        ),
    ];
    for (why, attrs, echoed) in missing {
        let (status, _, body) =
            post_raw(&app, "/v1/update/", app_xml(&attrs).into_bytes(), &[]).await;
        assert_eq!(status, 200, "{why}: {body}");
        let answer = Answer::parse(body);
        assert_eq!(answer.summary(), denied(REGISTRATION_FAILED), "{why}");
        assert_eq!(answer.app.appid, echoed, "{why}");
    }

    // Markup characters in the appid are unescaped, and escaped again in the echo.
    let weird = r#"{&quot;&amp;&lt;x&gt;&apos;}"#;
    let body = omaha_ok(
        &app,
        &request_of(&[app_element(
            weird, "stable", "h-weird", "2191.0.0", PING_CHECK,
        )]),
    )
    .await;
    assert!(
        body.contains(&format!(
            r#"<app appid="{weird}" status="{REGISTRATION_FAILED}">"#
        )),
        "{body}"
    );
    let answer = Answer::parse(body);
    assert_eq!(answer.app.appid, r#"{"&<x>'}"#);

    for group_id in [STABLE_GROUP, BETA_GROUP, ALPHA_GROUP] {
        let t = Target {
            group_id: group_id.into(),
            ..Target::coreos_stable()
        };
        let listed = instances(&app, &t).await;
        assert_eq!(listed["total"], 0, "{group_id}: {listed}");
        assert_eq!(listed["instances"], json!([]));
    }
    let coreos = app.get_json(&format!("/api/apps/{COREOS_APP}")).await;
    assert_eq!(coreos["instances"]["count"], 0);
    assert!(of_class(&activity(&app, COREOS_APP).await, class::ROLLOUT_STARTED).is_empty());
}
both_backends!(hostile, hostile_input);

/// Oversized event fields are cut to what the store keeps (error code 100 characters, previous
/// version 255), on both backends, instead of failing the request.
async fn oversized_event_fields_are_truncated(db: TestDb) {
    let app = spawn_app(db).await;
    let t = rollout(&app, "12.1.0", json!({"policy_safe_mode": false})).await;
    assert_eq!(
        check(&app, &t, "big-event", "12.0.0").await.summary(),
        grant("12.1.0")
    );
    let ev = format!(
        r#"<event eventtype="3" eventresult="0" errorcode="{}" previousversion="{}"/>"#,
        "9".repeat(300),
        "\u{1F600}".repeat(300)
    );
    send_events(&app, &t, "big-event", "12.0.0", &[ev]).await;
    let rows = history_rows(&app, &t, "big-event").await;
    assert_eq!(rows[0]["status"], st::ERROR);
    assert_eq!(rows[0]["error_code"], "9".repeat(100));
    let failed = of_class(
        &activity(&app, &t.app_id).await,
        class::INSTANCE_UPDATE_FAILED,
    );
    assert_eq!(failed.len(), 1);
}
both_backends!(oversized_event_fields, oversized_event_fields_are_truncated);
