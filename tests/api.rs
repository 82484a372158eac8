//! Black-box tests of the CoreRoller-compatible REST API over a real socket: every `/api` route,
//! the seed data, JSON shapes, authentication (Basic and Bearer), validation (400 naming the
//! field, nothing stored), conflicts (409, including both blacklist rules), cascades, request
//! ids, health and metrics, and hostile input that must never produce a 5xx. Every test runs on
//! SQLite and on MariaDB through `both_backends!`.

mod common;

use common::{check_xml, event, first_app, spawn_app, TestApp, TestDb, COREOS_APP, PING_CHECK, T0};
use serde_json::{json, Value};

const STABLE_CHANNEL: &str = "e06064ad-4414-4904-9a6e-fd465593d1b2";
const BETA_CHANNEL: &str = "128b8c29-5058-4643-8e67-a1a0e3c641c9";
const ALPHA_CHANNEL: &str = "a87a03ad-4984-47a1-8dc4-3507bae91ee1";
const STABLE_GROUP: &str = "9a2deb70-37be-4026-853f-bfdd6b347bbe";
const BETA_GROUP: &str = "3fe10490-dd73-4b49-b72a-28ac19acfcdc";
const ALPHA_GROUP: &str = "5b810680-e36a-4879-b98a-4f989e80b899";

/// `T0` as the API renders it.
const T0_RFC3339: &str = "2026-11-25T10:00:00.000Z";

/// The seed example from the CoreRoller README, verbatim.
const SEED_PACKAGE: &str = r#"{"type":1,"filename":"update.gz","url":"https://update.release.core-os.net/amd64-usr/1122.2.0/","version":"1122.2.0","size":"212555113","hash":"+ZFmPWzv1OdfmKHaGSojbK5Xj3k=","coreos_action":{"sha256":"cSBzKN9Yp6v1pC1Tm3nuAs2rsyaNqR3p0ylH8dyVg1g="}}"#;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Status code and JSON body (`Value::Null` for an empty body).
async fn parts(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("response body");
    if text.is_empty() {
        return (status, Value::Null);
    }
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text}"));
    (status, value)
}

/// Asserts an error response: the status, the `{"error": "..."}` shape and that the message
/// contains `needle`. Returns the message.
async fn expect_error(r: reqwest::Response, status: u16, needle: &str) -> String {
    let (got, body) = parts(r).await;
    assert_eq!(
        got, status,
        "expected {status} mentioning {needle:?}, got {got}: {body}"
    );
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("error body without `error`: {body}"))
        .to_string();
    assert!(
        message.contains(needle),
        "error {message:?} does not mention {needle:?}"
    );
    message
}

/// Asserts a successful response with the given status and returns the JSON body.
async fn expect_json(r: reqwest::Response, status: u16) -> Value {
    let (got, body) = parts(r).await;
    assert_eq!(got, status, "unexpected status, body: {body}");
    body
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn arr(v: &Value) -> &Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
}

fn ids(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = arr(v).iter().map(|x| s(&x["id"]).to_string()).collect();
    out.sort();
    out
}

fn assert_rfc3339(v: &Value) {
    let text = s(v);
    assert!(
        chrono::DateTime::parse_from_rfc3339(text).is_ok(),
        "{text:?} is not RFC 3339"
    );
    assert!(text.ends_with('Z'), "{text:?} is not UTC");
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn new_app(t: &TestApp, name: &str) -> String {
    let body = expect_json(
        t.post_json(
            "/api/apps",
            json!({"name": name, "description": "test app"}),
        )
        .await,
        201,
    )
    .await;
    s(&body["id"]).to_string()
}

async fn new_package(t: &TestApp, app_id: &str, version: &str) -> Value {
    let body = json!({"type": 4, "version": version, "url": "https://pkgs.example.com/", "filename": "pkg.tgz", "size": 1024, "hash": "aGFzaA=="});
    expect_json(
        t.post_json(&format!("/api/apps/{app_id}/packages"), body)
            .await,
        201,
    )
    .await
}

async fn new_channel(t: &TestApp, app_id: &str, name: &str, package_id: Option<&str>) -> Value {
    let body = json!({"name": name, "color": "#123456", "package_id": package_id});
    expect_json(
        t.post_json(&format!("/api/apps/{app_id}/channels"), body)
            .await,
        201,
    )
    .await
}

async fn new_group(t: &TestApp, app_id: &str, body: Value) -> Value {
    expect_json(
        t.post_json(&format!("/api/apps/{app_id}/groups"), body)
            .await,
        201,
    )
    .await
}

/// An Omaha ping + update check; asserts HTTP 200 and returns the XML.
async fn check(t: &TestApp, appid: &str, track: &str, machine: &str, version: &str) -> String {
    let r = t
        .client
        .post(t.url("/v1/update/"))
        .body(check_xml(appid, track, machine, version, PING_CHECK))
        .send()
        .await
        .expect("omaha");
    assert_eq!(r.status(), 200, "omaha check");
    r.text().await.expect("omaha body")
}

async fn list(t: &TestApp, path: &str) -> Vec<Value> {
    arr(&t.get_json(path).await).clone()
}

async fn instances(t: &TestApp, app_id: &str, group_id: &str, query: &str) -> (i64, Vec<String>) {
    let body = t
        .get_json(&format!(
            "/api/apps/{app_id}/groups/{group_id}/instances{query}"
        ))
        .await;
    let total = body["total"]
        .as_i64()
        .unwrap_or_else(|| panic!("no total: {body}"));
    let ids = arr(&body["instances"])
        .iter()
        .map(|i| s(&i["id"]).to_string())
        .collect();
    (total, ids)
}

async fn activity(t: &TestApp, query: &str) -> Vec<Value> {
    list(t, &format!("/api/activity{query}")).await
}

// ---------------------------------------------------------------------------------------------
// Seed data
// ---------------------------------------------------------------------------------------------

both_backends!(
    the_coreos_app_is_seeded_with_fixed_channels_and_groups,
    the_coreos_app_is_seeded_with_fixed_channels_and_groups
);
async fn the_coreos_app_is_seeded_with_fixed_channels_and_groups(db: TestDb) {
    let t = spawn_app(db).await;
    let app = t.get_json(&format!("/api/apps/{COREOS_APP}")).await;
    assert_eq!(app["id"], COREOS_APP);
    assert_eq!(app["name"], "CoreOS");
    assert_eq!(app["created_ts"], T0_RFC3339);
    assert_eq!(app["instances"]["count"], 0);
    assert_eq!(app["packages"], json!([]));

    let channels = arr(&app["channels"]);
    let by_name: Vec<(&str, &str)> = channels
        .iter()
        .map(|c| (s(&c["name"]), s(&c["id"])))
        .collect();
    for (name, id) in [
        ("stable", STABLE_CHANNEL),
        ("beta", BETA_CHANNEL),
        ("alpha", ALPHA_CHANNEL),
    ] {
        assert!(
            by_name.contains(&(name, id)),
            "channel {name} {id} missing from {by_name:?}"
        );
    }
    assert_eq!(channels.len(), 3);
    assert!(channels
        .iter()
        .all(|c| c["package_id"].is_null() && c["application_id"] == COREOS_APP));

    let groups = arr(&app["groups"]);
    assert_eq!(groups.len(), 3);
    for (id, track, channel) in [
        (STABLE_GROUP, "stable", STABLE_CHANNEL),
        (BETA_GROUP, "beta", BETA_CHANNEL),
        (ALPHA_GROUP, "alpha", ALPHA_CHANNEL),
    ] {
        let g = groups
            .iter()
            .find(|g| g["id"] == id)
            .unwrap_or_else(|| panic!("group {id} missing"));
        assert_eq!(g["track"], track);
        assert_eq!(g["channel_id"], channel);
        assert_eq!(g["channel"]["id"], channel);
        assert_eq!(g["channel"]["name"], track);
        assert_eq!(g["policy_safe_mode"], true);
        assert_eq!(g["policy_updates_enabled"], true);
        assert_eq!(g["policy_office_hours"], false);
        assert_eq!(g["policy_timezone"], "Australia/Sydney");
        assert_eq!(g["policy_period_interval"], "15 minutes");
    }
    // CoreRoller's seed policies: stable/beta 2 per period and 60 minutes, alpha 1 and 30.
    let stable = t
        .get_json(&format!("/api/apps/{COREOS_APP}/groups/{STABLE_GROUP}"))
        .await;
    assert_eq!(stable["policy_max_updates_per_period"], 2);
    assert_eq!(stable["policy_update_timeout"], "60 minutes");
    let alpha = t
        .get_json(&format!("/api/apps/{COREOS_APP}/groups/{ALPHA_GROUP}"))
        .await;
    assert_eq!(alpha["policy_max_updates_per_period"], 1);
    assert_eq!(alpha["policy_update_timeout"], "30 minutes");

    // Ids are accepted in upper case (clients send them that way) and answered in lower case.
    let upper = t
        .get_json(&format!("/api/apps/{}", COREOS_APP.to_uppercase()))
        .await;
    assert_eq!(upper["id"], COREOS_APP);
}

both_backends!(
    the_seed_package_example_is_accepted_verbatim,
    the_seed_package_example_is_accepted_verbatim
);
async fn the_seed_package_example_is_accepted_verbatim(db: TestDb) {
    let t = spawn_app(db).await;
    let r = t
        .client
        .post(t.url(&format!("/api/apps/{COREOS_APP}/packages")))
        .basic_auth("admin", Some("admin"))
        .header("content-type", "application/json")
        .body(SEED_PACKAGE)
        .send()
        .await
        .expect("POST");
    let created = expect_json(r, 201).await;
    assert_eq!(created["type"], 1);
    assert_eq!(created["version"], "1122.2.0");
    assert_eq!(
        created["url"],
        "https://update.release.core-os.net/amd64-usr/1122.2.0/"
    );
    assert_eq!(created["filename"], "update.gz");
    assert_eq!(created["size"], "212555113");
    assert_eq!(created["hash"], "+ZFmPWzv1OdfmKHaGSojbK5Xj3k=");
    assert_eq!(created["application_id"], COREOS_APP);
    assert_eq!(created["channels_blacklist"], json!([]));
    assert_eq!(created["created_ts"], T0_RFC3339);
    let action = &created["coreos_action"];
    assert_eq!(
        action["sha256"],
        "cSBzKN9Yp6v1pC1Tm3nuAs2rsyaNqR3p0ylH8dyVg1g="
    );
    // CoreRoller's column defaults for the fields the example leaves out.
    assert_eq!(action["event"], "postinstall");
    assert_eq!(action["needs_admin"], false);
    assert_eq!(action["is_delta"], false);
    assert_eq!(action["disable_payload_backoff"], true);
    assert_rfc3339(&action["created_ts"]);

    let id = s(&created["id"]);
    let fetched = t
        .get_json(&format!("/api/apps/{COREOS_APP}/packages/{id}"))
        .await;
    assert_eq!(fetched, created);
    let listed = list(&t, &format!("/api/apps/{COREOS_APP}/packages")).await;
    assert_eq!(listed, vec![created.clone()]);
    // Also stored, not only echoed: the store reads it back.
    let stored = t
        .state
        .store
        .package(COREOS_APP, id)
        .await
        .expect("stored package");
    assert_eq!(
        stored.coreos_action.expect("action").sha256,
        "cSBzKN9Yp6v1pC1Tm3nuAs2rsyaNqR3p0ylH8dyVg1g="
    );

    // A partial update keeps the action.
    let updated = expect_json(
        t.put_json(
            &format!("/api/apps/{COREOS_APP}/packages/{id}"),
            json!({"description": "Stable 1122.2.0"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(updated["description"], "Stable 1122.2.0");
    assert_eq!(
        updated["coreos_action"]["sha256"],
        "cSBzKN9Yp6v1pC1Tm3nuAs2rsyaNqR3p0ylH8dyVg1g="
    );
    assert_eq!(updated["version"], "1122.2.0");
}

// ---------------------------------------------------------------------------------------------
// Applications
// ---------------------------------------------------------------------------------------------

both_backends!(
    apps_can_be_created_listed_updated_and_deleted,
    apps_can_be_created_listed_updated_and_deleted
);
async fn apps_can_be_created_listed_updated_and_deleted(db: TestDb) {
    let t = spawn_app(db).await;
    let name = unique("app");
    let created = expect_json(
        t.post_json("/api/apps", json!({"name": name, "description": "first"}))
            .await,
        201,
    )
    .await;
    let id = s(&created["id"]).to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    assert_eq!(created["name"], name.as_str());
    assert_eq!(created["description"], "first");
    assert_eq!(created["created_ts"], T0_RFC3339);
    assert_eq!(created["groups"], json!([]));
    assert_eq!(created["channels"], json!([]));
    assert_eq!(created["packages"], json!([]));
    assert_eq!(created["instances"], json!({"count": 0}));
    assert!(created["team_id"].is_string());

    let apps = list(&t, "/api/apps").await;
    assert_eq!(apps.len(), 2, "seeded CoreOS plus the new app");
    let listed = apps
        .iter()
        .find(|a| a["id"] == id.as_str())
        .expect("listed");
    assert_eq!(listed, &created);
    assert!(apps.iter().any(|a| a["id"] == COREOS_APP));
    // Paging over the list.
    assert_eq!(list(&t, "/api/apps?perpage=1&page=1").await.len(), 1);
    assert_eq!(list(&t, "/api/apps?perpage=1&page=2").await.len(), 1);
    assert_eq!(list(&t, "/api/apps?perpage=1&page=3").await.len(), 0);

    // Full and partial updates.
    let renamed = unique("renamed");
    let updated = expect_json(
        t.put_json(
            &format!("/api/apps/{id}"),
            json!({"name": renamed, "description": "second"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(updated["name"], renamed.as_str());
    assert_eq!(updated["description"], "second");
    let partial = expect_json(
        t.put_json(&format!("/api/apps/{id}"), json!({"description": "third"}))
            .await,
        200,
    )
    .await;
    assert_eq!(
        partial["name"],
        renamed.as_str(),
        "a missing name keeps the current one"
    );
    assert_eq!(partial["description"], "third");
    // Writing the same values again is fine (MySQL reports 0 changed rows then).
    expect_json(
        t.put_json(&format!("/api/apps/{id}"), json!({"description": "third"}))
            .await,
        200,
    )
    .await;
    let fetched = t.get_json(&format!("/api/apps/{id}")).await;
    assert_eq!(fetched["name"], renamed.as_str());
    assert_eq!(fetched["description"], "third");
    assert_eq!(fetched["created_ts"], T0_RFC3339);

    let r = t.delete(&format!("/api/apps/{id}")).await;
    assert_eq!(r.status(), 204);
    assert!(r.text().await.expect("body").is_empty());
    expect_error(t.get(&format!("/api/apps/{id}")).await, 404, "not found").await;
    expect_error(t.delete(&format!("/api/apps/{id}")).await, 404, "not found").await;
    expect_error(
        t.put_json(&format!("/api/apps/{id}"), json!({"name": "x"}))
            .await,
        404,
        "not found",
    )
    .await;
    let apps = list(&t, "/api/apps").await;
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0]["id"], COREOS_APP);
}

both_backends!(
    clone_from_copies_channels_without_packages_and_groups_onto_the_copies,
    clone_from_copies_channels_without_packages_and_groups_onto_the_copies
);
async fn clone_from_copies_channels_without_packages_and_groups_onto_the_copies(db: TestDb) {
    let t = spawn_app(db).await;
    let (src, main_channel, main_group, _pkg) = t
        .setup_rollout("2.0.0", json!({"policy_updates_enabled": false}))
        .await;
    let beta = new_channel(&t, &src, "beta", None).await;
    let canary = new_group(&t, &src, json!({"name": "canary", "channel_id": beta["id"], "policy_safe_mode": true, "policy_max_updates_per_period": 3})).await;
    assert_eq!(
        canary["track"], canary["id"],
        "a group created without a track uses its id"
    );

    let name = unique("clone");
    let clone = expect_json(
        t.post_json(
            &format!("/api/apps?clone_from={src}"),
            json!({"name": name}),
        )
        .await,
        201,
    )
    .await;
    let clone_id = s(&clone["id"]).to_string();
    assert_ne!(clone_id, src);
    assert_eq!(clone["name"], name.as_str());
    assert_eq!(clone["packages"], json!([]), "packages are not copied");

    let channels = list(&t, &format!("/api/apps/{clone_id}/channels")).await;
    let mut names: Vec<&str> = channels.iter().map(|c| s(&c["name"])).collect();
    names.sort();
    assert_eq!(names, vec!["beta", "main"]);
    for c in &channels {
        assert!(
            c["package_id"].is_null() && c["package"].is_null(),
            "copied channel keeps no package: {c}"
        );
        assert_eq!(c["application_id"], clone_id.as_str());
        assert_eq!(
            c["color"],
            if c["name"] == "beta" {
                "#123456"
            } else {
                "#000"
            }
        );
        assert_ne!(c["id"], main_channel.as_str());
        assert_ne!(c["id"], beta["id"]);
    }
    let channel_id =
        |n: &str| s(&channels.iter().find(|c| c["name"] == n).expect("channel")["id"]).to_string();

    let groups = list(&t, &format!("/api/apps/{clone_id}/groups")).await;
    assert_eq!(groups.len(), 2);
    let group = groups
        .iter()
        .find(|g| g["name"] == "group")
        .expect("copied group");
    assert_ne!(group["id"], main_group.as_str());
    assert_eq!(group["application_id"], clone_id.as_str());
    assert_eq!(
        group["channel_id"],
        channel_id("main").as_str(),
        "points at the copied channel"
    );
    assert_eq!(group["channel"]["name"], "main");
    assert_eq!(group["track"], "main", "named tracks are kept");
    assert_eq!(
        group["policy_updates_enabled"], true,
        "clones start with updates enabled"
    );
    assert_eq!(group["policy_safe_mode"], false);
    assert_eq!(group["policy_max_updates_per_period"], 1000);
    assert_eq!(group["rollout_in_progress"], false);
    let copied_canary = groups
        .iter()
        .find(|g| g["name"] == "canary")
        .expect("copied canary");
    assert_eq!(copied_canary["channel_id"], channel_id("beta").as_str());
    assert_eq!(
        copied_canary["track"], copied_canary["id"],
        "an id track follows the new id"
    );
    assert_eq!(copied_canary["policy_safe_mode"], true);
    assert_eq!(copied_canary["policy_max_updates_per_period"], 3);

    // The source is untouched.
    let source = t.get_json(&format!("/api/apps/{src}")).await;
    assert_eq!(arr(&source["packages"]).len(), 1);
    assert_eq!(arr(&source["channels"]).len(), 2);
    let src_group = t
        .get_json(&format!("/api/apps/{src}/groups/{main_group}"))
        .await;
    assert_eq!(src_group["policy_updates_enabled"], false);
    assert_eq!(src_group["channel_id"], main_channel.as_str());

    // Cloning the seeded CoreOS app keeps its track names and policies.
    let coreos_clone = expect_json(
        t.post_json(
            &format!("/api/apps?clone_from={COREOS_APP}"),
            json!({"name": unique("coreos-copy")}),
        )
        .await,
        201,
    )
    .await;
    let groups = arr(&coreos_clone["groups"]);
    let mut tracks: Vec<&str> = groups.iter().map(|g| s(&g["track"])).collect();
    tracks.sort();
    assert_eq!(tracks, vec!["alpha", "beta", "stable"]);
    assert!(groups
        .iter()
        .all(|g| g["policy_timezone"] == "Australia/Sydney"
            && g["channel"]["application_id"] == coreos_clone["id"]));
}

both_backends!(
    clone_from_an_unknown_or_invalid_app_is_rejected_and_creates_nothing,
    clone_from_an_unknown_or_invalid_app_is_rejected_and_creates_nothing
);
async fn clone_from_an_unknown_or_invalid_app_is_rejected_and_creates_nothing(db: TestDb) {
    let t = spawn_app(db).await;
    let missing = uuid::Uuid::new_v4();
    expect_error(
        t.post_json(
            &format!("/api/apps?clone_from={missing}"),
            json!({"name": "ghost"}),
        )
        .await,
        400,
        "clone_from",
    )
    .await;
    expect_error(
        t.post_json("/api/apps?clone_from=not-a-uuid", json!({"name": "ghost"}))
            .await,
        400,
        "clone_from",
    )
    .await;
    let apps = list(&t, "/api/apps").await;
    assert!(
        apps.iter().all(|a| a["name"] != "ghost"),
        "the failed clone left an app behind: {apps:?}"
    );
    // The name is still free.
    new_app(&t, "ghost").await;
}

// ---------------------------------------------------------------------------------------------
// Groups, channels, packages
// ---------------------------------------------------------------------------------------------

both_backends!(
    groups_can_be_created_read_updated_and_deleted,
    groups_can_be_created_read_updated_and_deleted
);
async fn groups_can_be_created_read_updated_and_deleted(db: TestDb) {
    let t = spawn_app(db).await;
    let app_id = new_app(&t, &unique("groups")).await;
    let pkg = new_package(&t, &app_id, "3.1.4").await;
    let channel = new_channel(&t, &app_id, "stable", Some(s(&pkg["id"]))).await;

    // Defaults are CoreRoller's.
    let g = new_group(
        &t,
        &app_id,
        json!({"name": "prod", "channel_id": channel["id"]}),
    )
    .await;
    let gid = s(&g["id"]).to_string();
    assert_eq!(g["name"], "prod");
    assert_eq!(g["description"], "");
    assert_eq!(g["track"], gid.as_str());
    assert_eq!(g["application_id"], app_id.as_str());
    assert_eq!(g["policy_updates_enabled"], true);
    assert_eq!(g["policy_safe_mode"], true);
    assert_eq!(g["policy_office_hours"], false);
    assert!(g["policy_timezone"].is_null());
    assert_eq!(g["policy_period_interval"], "15 minutes");
    assert_eq!(g["policy_max_updates_per_period"], 1);
    assert_eq!(g["policy_update_timeout"], "60 minutes");
    assert_eq!(g["rollout_in_progress"], false);
    assert_eq!(g["created_ts"], T0_RFC3339);
    // Embedded channel with its package, stats and version breakdown.
    assert_eq!(g["channel_id"], channel["id"]);
    assert_eq!(g["channel"]["name"], "stable");
    assert_eq!(g["channel"]["package"]["version"], "3.1.4");
    assert_eq!(g["channel"]["package"]["id"], pkg["id"]);
    assert_eq!(
        g["instances_stats"],
        json!({"total": 0, "undefined": 0, "update_granted": 0, "error": 0, "complete": 0, "installed": 0, "downloaded": 0, "downloading": 0, "onhold": 0})
    );
    assert_eq!(g["version_breakdown"], json!([]));

    let fetched = t
        .get_json(&format!("/api/apps/{app_id}/groups/{gid}"))
        .await;
    assert_eq!(fetched, g);

    // Office hours with a valid zone, a custom track; untouched fields keep their values.
    let updated = expect_json(
        t.put_json(
            &format!("/api/apps/{app_id}/groups/{gid}"),
            json!({"policy_office_hours": true, "policy_timezone": "Europe/Berlin", "track": "production", "policy_max_updates_per_period": 5, "policy_period_interval": "2 hours"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(updated["policy_office_hours"], true);
    assert_eq!(updated["policy_timezone"], "Europe/Berlin");
    assert_eq!(updated["track"], "production");
    assert_eq!(updated["policy_max_updates_per_period"], 5);
    assert_eq!(updated["policy_period_interval"], "2 hours");
    assert_eq!(updated["name"], "prod");
    assert_eq!(updated["channel_id"], channel["id"]);
    assert_eq!(updated["policy_safe_mode"], true);

    // An explicit null clears the channel.
    let cleared = expect_json(
        t.put_json(
            &format!("/api/apps/{app_id}/groups/{gid}"),
            json!({"channel_id": null}),
        )
        .await,
        200,
    )
    .await;
    assert!(cleared["channel_id"].is_null() && cleared["channel"].is_null());
    assert_eq!(cleared["track"], "production");

    let second = new_group(
        &t,
        &app_id,
        json!({"name": "canary", "description": "first hosts", "track": "canary"}),
    )
    .await;
    assert_eq!(second["description"], "first hosts");
    let groups = list(&t, &format!("/api/apps/{app_id}/groups")).await;
    let mut expected = vec![gid.clone(), s(&second["id"]).to_string()];
    expected.sort();
    assert_eq!(ids(&Value::Array(groups)), expected);

    // A group is only reachable through its own application.
    let other = new_app(&t, &unique("other")).await;
    expect_error(
        t.get(&format!("/api/apps/{other}/groups/{gid}")).await,
        404,
        "not found",
    )
    .await;
    expect_error(
        t.delete(&format!("/api/apps/{other}/groups/{gid}")).await,
        404,
        "not found",
    )
    .await;

    let r = t.delete(&format!("/api/apps/{app_id}/groups/{gid}")).await;
    assert_eq!(r.status(), 204);
    expect_error(
        t.get(&format!("/api/apps/{app_id}/groups/{gid}")).await,
        404,
        "not found",
    )
    .await;
    expect_error(
        t.put_json(
            &format!("/api/apps/{app_id}/groups/{gid}"),
            json!({"name": "x"}),
        )
        .await,
        404,
        "not found",
    )
    .await;
    expect_error(
        t.delete(&format!("/api/apps/{app_id}/groups/{gid}")).await,
        404,
        "not found",
    )
    .await;
    let groups = list(&t, &format!("/api/apps/{app_id}/groups")).await;
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["name"], "canary");
}

both_backends!(
    channels_can_be_created_read_updated_and_deleted,
    channels_can_be_created_read_updated_and_deleted
);
async fn channels_can_be_created_read_updated_and_deleted(db: TestDb) {
    let t = spawn_app(db).await;
    let app_id = new_app(&t, &unique("channels")).await;
    let pkg = new_package(&t, &app_id, "1.0.0").await;
    let pkg_id = s(&pkg["id"]).to_string();

    let c = new_channel(&t, &app_id, "edge", None).await;
    let cid = s(&c["id"]).to_string();
    assert_eq!(c["name"], "edge");
    assert_eq!(c["color"], "#123456");
    assert_eq!(c["application_id"], app_id.as_str());
    assert!(c["package_id"].is_null() && c["package"].is_null());
    assert_eq!(c["created_ts"], T0_RFC3339);
    assert_eq!(
        t.get_json(&format!("/api/apps/{app_id}/channels/{cid}"))
            .await,
        c
    );

    let pointed = expect_json(
        t.put_json(
            &format!("/api/apps/{app_id}/channels/{cid}"),
            json!({"package_id": pkg_id}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(pointed["package_id"], pkg_id.as_str());
    assert_eq!(pointed["package"]["version"], "1.0.0");
    assert_eq!(pointed["package"]["channels_blacklist"], json!([]));
    assert_eq!(
        pointed["name"], "edge",
        "a missing name keeps the current one"
    );

    // Absent package_id keeps it; rename and recolour.
    let renamed = expect_json(
        t.put_json(
            &format!("/api/apps/{app_id}/channels/{cid}"),
            json!({"name": "edge2", "color": "#fff"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(renamed["name"], "edge2");
    assert_eq!(renamed["color"], "#fff");
    assert_eq!(renamed["package_id"], pkg_id.as_str());

    let unset = expect_json(
        t.put_json(
            &format!("/api/apps/{app_id}/channels/{cid}"),
            json!({"package_id": null}),
        )
        .await,
        200,
    )
    .await;
    assert!(unset["package_id"].is_null() && unset["package"].is_null());

    let second = new_channel(&t, &app_id, "lts", Some(&pkg_id)).await;
    assert_eq!(second["package"]["id"], pkg_id.as_str());
    let channels = list(&t, &format!("/api/apps/{app_id}/channels")).await;
    let mut names: Vec<&str> = channels.iter().map(|c| s(&c["name"])).collect();
    names.sort();
    assert_eq!(names, vec!["edge2", "lts"]);

    let r = t
        .delete(&format!("/api/apps/{app_id}/channels/{cid}"))
        .await;
    assert_eq!(r.status(), 204);
    expect_error(
        t.get(&format!("/api/apps/{app_id}/channels/{cid}")).await,
        404,
        "not found",
    )
    .await;
    expect_error(
        t.delete(&format!("/api/apps/{app_id}/channels/{cid}"))
            .await,
        404,
        "not found",
    )
    .await;
    expect_error(
        t.put_json(
            &format!("/api/apps/{app_id}/channels/{cid}"),
            json!({"name": "x"}),
        )
        .await,
        404,
        "not found",
    )
    .await;
    assert_eq!(
        list(&t, &format!("/api/apps/{app_id}/channels"))
            .await
            .len(),
        1
    );
}

both_backends!(
    packages_can_be_created_read_updated_and_deleted,
    packages_can_be_created_read_updated_and_deleted
);
async fn packages_can_be_created_read_updated_and_deleted(db: TestDb) {
    let t = spawn_app(db).await;
    let app_id = new_app(&t, &unique("packages")).await;
    let p = new_package(&t, &app_id, "1.0.0").await;
    let pid = s(&p["id"]).to_string();
    assert_eq!(p["type"], 4);
    assert_eq!(p["version"], "1.0.0");
    assert_eq!(p["size"], "1024", "a numeric size is stored as text");
    assert_eq!(p["hash"], "aGFzaA==");
    assert_eq!(p["application_id"], app_id.as_str());
    assert!(
        p["coreos_action"].is_null(),
        "only packages sent with an action have one"
    );
    assert_eq!(p["channels_blacklist"], json!([]));
    assert_eq!(p["created_ts"], T0_RFC3339);
    assert_eq!(
        t.get_json(&format!("/api/apps/{app_id}/packages/{pid}"))
            .await,
        p
    );

    // Newest version first, by semver (1.10.0 > 1.9.0).
    new_package(&t, &app_id, "1.10.0").await;
    new_package(&t, &app_id, "1.9.0").await;
    let versions: Vec<String> = list(&t, &format!("/api/apps/{app_id}/packages"))
        .await
        .iter()
        .map(|p| s(&p["version"]).to_string())
        .collect();
    assert_eq!(versions, vec!["1.10.0", "1.9.0", "1.0.0"]);

    // Partial update keeps what is not sent.
    let updated = expect_json(
        t.put_json(
            &format!("/api/apps/{app_id}/packages/{pid}"),
            json!({"description": "first release", "version": "1.0.1"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(updated["description"], "first release");
    assert_eq!(updated["version"], "1.0.1");
    assert_eq!(updated["url"], "https://pkgs.example.com/");
    assert_eq!(updated["filename"], "pkg.tgz");
    assert_eq!(updated["type"], 4);
    // Adding an action to an existing package.
    let with_action = expect_json(
        t.put_json(
            &format!("/api/apps/{app_id}/packages/{pid}"),
            json!({"coreos_action": {"sha256": "cSBzKN9Yp6v1pC1Tm3nuAs2rsyaNqR3p0ylH8dyVg1g=", "is_delta": true}}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        with_action["coreos_action"]["sha256"],
        "cSBzKN9Yp6v1pC1Tm3nuAs2rsyaNqR3p0ylH8dyVg1g="
    );
    assert_eq!(with_action["coreos_action"]["is_delta"], true);
    assert_eq!(
        t.get_json(&format!("/api/apps/{app_id}/packages/{pid}"))
            .await,
        with_action
    );

    let r = t
        .delete(&format!("/api/apps/{app_id}/packages/{pid}"))
        .await;
    assert_eq!(r.status(), 204);
    expect_error(
        t.get(&format!("/api/apps/{app_id}/packages/{pid}")).await,
        404,
        "not found",
    )
    .await;
    expect_error(
        t.delete(&format!("/api/apps/{app_id}/packages/{pid}"))
            .await,
        404,
        "not found",
    )
    .await;
    expect_error(
        t.put_json(
            &format!("/api/apps/{app_id}/packages/{pid}"),
            json!({"description": "x"}),
        )
        .await,
        404,
        "not found",
    )
    .await;
    assert_eq!(
        list(&t, &format!("/api/apps/{app_id}/packages"))
            .await
            .len(),
        2
    );
    // The version is free again.
    new_package(&t, &app_id, "1.0.1").await;
}

both_backends!(
    objects_read_from_the_api_can_be_written_back_unchanged,
    objects_read_from_the_api_can_be_written_back_unchanged
);
async fn objects_read_from_the_api_can_be_written_back_unchanged(db: TestDb) {
    // CoreRoller's UI PUTs back what it GETs, embedded objects and read-only fields included.
    let t = spawn_app(db).await;
    let (app_id, channel_id, group_id, package_id) = t.setup_rollout("1.2.3", json!({})).await;
    for path in [
        format!("/api/apps/{app_id}"),
        format!("/api/apps/{app_id}/groups/{group_id}"),
        format!("/api/apps/{app_id}/channels/{channel_id}"),
        format!("/api/apps/{app_id}/packages/{package_id}"),
    ] {
        let before = t.get_json(&path).await;
        let after = expect_json(t.put_json(&path, before.clone()).await, 200).await;
        assert_eq!(after, before, "round trip of {path}");
    }
}

// ---------------------------------------------------------------------------------------------
// Instances, status history, activity
// ---------------------------------------------------------------------------------------------

both_backends!(
    instances_can_be_filtered_searched_and_paged,
    instances_can_be_filtered_searched_and_paged
);
async fn instances_can_be_filtered_searched_and_paged(db: TestDb) {
    let t = spawn_app(db).await;
    let (app_id, _channel, group_id, _pkg) = t.setup_rollout("2.0.0", json!({})).await;
    let (_, uc, version) =
        first_app(&check(&t, &app_id, "main", "machine-alpha-0001", "1.0.0").await);
    assert_eq!(
        (uc.as_deref(), version.as_deref()),
        (Some("ok"), Some("2.0.0")),
        "alpha is granted 2.0.0"
    );
    t.clock.advance_ms(1_000);
    let (_, uc, _) = first_app(&check(&t, &app_id, "main", "machine-beta-0002", "2.0.0").await);
    assert_eq!(uc.as_deref(), Some("noupdate"), "beta is up to date");
    t.clock.advance_ms(1_000);
    // The group id works as a track too.
    let (_, uc, _) = first_app(&check(&t, &app_id, &group_id, "other-0003", "1.5.0").await);
    assert_eq!(uc.as_deref(), Some("ok"));
    t.clock.advance_ms(1_000);
    // alpha starts downloading.
    let (status, _) = t
        .omaha(&check_xml(
            &app_id,
            "main",
            "machine-alpha-0001",
            "1.0.0",
            &event(13, 1),
        ))
        .await;
    assert_eq!(status, 200);

    let base = format!("/api/apps/{app_id}/groups/{group_id}/instances");
    let all = t.get_json(&base).await;
    assert_eq!(all["total"], 3);
    let list = arr(&all["instances"]);
    assert_eq!(list.len(), 3);
    let alpha = list
        .iter()
        .find(|i| i["id"] == "machine-alpha-0001")
        .expect("alpha listed");
    assert_eq!(alpha["ip"], "127.0.0.1");
    assert_rfc3339(&alpha["created_ts"]);
    let a = &alpha["application"];
    assert_eq!(a["application_id"], app_id.as_str());
    assert_eq!(a["group_id"], group_id.as_str());
    assert_eq!(a["version"], "1.0.0");
    assert_eq!(a["status"], 7);
    assert_eq!(a["last_update_version"], "2.0.0");
    assert_eq!(a["update_in_progress"], true);
    assert_eq!(a["last_check_for_updates"], T0_RFC3339);
    assert_eq!(a["last_update_granted_ts"], T0_RFC3339);
    let beta = list
        .iter()
        .find(|i| i["id"] == "machine-beta-0002")
        .expect("beta listed");
    assert!(beta["application"]["status"].is_null());
    assert!(beta["application"]["last_update_granted_ts"].is_null());
    assert_eq!(beta["application"]["update_in_progress"], false);

    assert_eq!(
        instances(&t, &app_id, &group_id, "?status=2").await,
        (1, vec!["other-0003".to_string()])
    );
    assert_eq!(
        instances(&t, &app_id, &group_id, "?status=7").await,
        (1, vec!["machine-alpha-0001".to_string()])
    );
    assert_eq!(
        instances(&t, &app_id, &group_id, "?status=4").await,
        (0, vec![])
    );
    assert_eq!(
        instances(&t, &app_id, &group_id, "?version=2.0.0").await,
        (1, vec!["machine-beta-0002".to_string()])
    );
    assert_eq!(
        instances(&t, &app_id, &group_id, "?status=2&version=1.5.0")
            .await
            .0,
        1
    );
    assert_eq!(
        instances(&t, &app_id, &group_id, "?status=2&version=1.0.0")
            .await
            .0,
        0
    );
    assert_eq!(
        instances(&t, &app_id, &group_id, "?search=alpha").await,
        (1, vec!["machine-alpha-0001".to_string()])
    );
    assert_eq!(
        instances(&t, &app_id, &group_id, "?search=machine-")
            .await
            .0,
        2
    );
    assert_eq!(
        instances(&t, &app_id, &group_id, "?search=127.0.0").await.0,
        3,
        "search matches the IP"
    );
    // LIKE wildcards are literal.
    assert_eq!(instances(&t, &app_id, &group_id, "?search=%25").await.0, 0);
    assert_eq!(instances(&t, &app_id, &group_id, "?search=_").await.0, 0);
    assert_eq!(
        instances(&t, &app_id, &group_id, "?search=%27%20OR%201%3D1%20--")
            .await
            .0,
        0
    );

    // Paging: total is the full count, pages are disjoint and cover everything.
    let (total1, page1) = instances(&t, &app_id, &group_id, "?perpage=2&page=1").await;
    let (total2, page2) = instances(&t, &app_id, &group_id, "?perpage=2&page=2").await;
    let (total3, page3) = instances(&t, &app_id, &group_id, "?perpage=2&page=3").await;
    assert_eq!((total1, total2, total3), (3, 3, 3));
    assert_eq!((page1.len(), page2.len(), page3.len()), (2, 1, 0));
    let mut seen: Vec<String> = page1.into_iter().chain(page2).collect();
    seen.sort();
    assert_eq!(
        seen,
        vec!["machine-alpha-0001", "machine-beta-0002", "other-0003"]
    );

    // Single instance.
    let one = t.get_json(&format!("{base}/machine-alpha-0001")).await;
    assert_eq!(one["id"], "machine-alpha-0001");
    assert_eq!(one["application"]["status"], 7);
    expect_error(
        t.get(&format!("{base}/no-such-machine")).await,
        404,
        "not found",
    )
    .await;

    // The group's stats and version breakdown reflect the fleet; the app counts its instances.
    let group = t
        .get_json(&format!("/api/apps/{app_id}/groups/{group_id}"))
        .await;
    let stats = &group["instances_stats"];
    assert_eq!(stats["total"], 3);
    assert_eq!(stats["update_granted"], 1);
    assert_eq!(stats["downloading"], 1);
    assert_eq!(
        stats["complete"], 1,
        "an up-to-date instance without status counts as complete"
    );
    assert_eq!(stats["undefined"], 0);
    let breakdown = arr(&group["version_breakdown"]);
    let versions: Vec<&str> = breakdown.iter().map(|v| s(&v["version"])).collect();
    assert_eq!(versions, vec!["2.0.0", "1.5.0", "1.0.0"]);
    for v in breakdown {
        assert_eq!(v["instances"], 1);
        let pct = v["percentage"].as_f64().expect("percentage");
        assert!((pct - 100.0 / 3.0).abs() < 0.01, "percentage {pct}");
    }
    assert_eq!(
        t.get_json(&format!("/api/apps/{app_id}")).await["instances"]["count"],
        3
    );

    // Instances that have not checked in for over a day drop out.
    t.clock.advance_ms(86_400_000 + 10_000);
    assert_eq!(instances(&t, &app_id, &group_id, "").await.0, 0);
    assert_eq!(
        t.get_json(&format!("/api/apps/{app_id}")).await["instances"]["count"],
        0
    );
}

both_backends!(
    status_history_lists_status_changes_newest_first,
    status_history_lists_status_changes_newest_first
);
async fn status_history_lists_status_changes_newest_first(db: TestDb) {
    let t = spawn_app(db).await;
    let (app_id, _channel, group_id, _pkg) = t.setup_rollout("2.0.0", json!({})).await;
    check(&t, &app_id, "main", "host-1", "1.0.0").await;
    t.clock.advance_ms(1_000);
    t.omaha(&check_xml(
        &app_id,
        "main",
        "host-1",
        "1.0.0",
        &event(13, 1),
    ))
    .await;
    t.clock.advance_ms(1_000);
    t.omaha(&check_xml(
        &app_id,
        "main",
        "host-1",
        "1.0.0",
        &event(14, 1),
    ))
    .await;
    check(&t, &app_id, "main", "host-2", "2.0.0").await;

    let base = format!("/api/apps/{app_id}/groups/{group_id}/instances");
    let history = list(&t, &format!("{base}/host-1/status_history")).await;
    let statuses: Vec<i64> = history
        .iter()
        .map(|h| h["status"].as_i64().expect("status"))
        .collect();
    assert_eq!(statuses, vec![6, 7, 2], "downloaded, downloading, granted");
    assert!(
        history.iter().all(|h| h["version"] == "2.0.0"),
        "history carries the granted version: {history:?}"
    );
    assert_eq!(history[0]["created_ts"], rfc3339_ms(T0 + 2_000));
    assert_eq!(history[2]["created_ts"], T0_RFC3339);
    assert_eq!(history[0]["error_code"], "");

    let limited = list(&t, &format!("{base}/host-1/status_history?limit=1")).await;
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0]["status"], 6);
    // An instance without status changes has an empty history; an unknown one is a 404.
    assert_eq!(
        list(&t, &format!("{base}/host-2/status_history")).await,
        Vec::<Value>::new()
    );
    expect_error(
        t.get(&format!("{base}/host-3/status_history")).await,
        404,
        "not found",
    )
    .await;
    // The group in the path is checked too: malformed is a 400, unknown or foreign a 404.
    let apps = format!("/api/apps/{app_id}/groups");
    expect_error(
        t.get(&format!("{apps}/not-a-uuid/instances/host-1")).await,
        400,
        "group_id",
    )
    .await;
    expect_error(
        t.get(&format!(
            "{apps}/not-a-uuid/instances/host-1/status_history"
        ))
        .await,
        400,
        "group_id",
    )
    .await;
    let stray = uuid::Uuid::new_v4();
    expect_error(
        t.get(&format!("{apps}/{stray}/instances/host-1")).await,
        404,
        "not found",
    )
    .await;
    expect_error(
        t.get(&format!("{apps}/{stray}/instances/host-1/status_history"))
            .await,
        404,
        "not found",
    )
    .await;
    expect_error(
        t.get(&format!(
            "{apps}/{STABLE_GROUP}/instances/host-1/status_history"
        ))
        .await,
        404,
        "not found",
    )
    .await;
    // ...also through another application.
    expect_error(
        t.get(&format!(
            "/api/apps/{COREOS_APP}/groups/{STABLE_GROUP}/instances/host-1/status_history"
        ))
        .await,
        404,
        "not found",
    )
    .await;
}

fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

both_backends!(
    activity_can_be_filtered_by_app_group_channel_severity_and_time,
    activity_can_be_filtered_by_app_group_channel_severity_and_time
);
async fn activity_can_be_filtered_by_app_group_channel_severity_and_time(db: TestDb) {
    let t = spawn_app(db).await;
    // setup_rollout points a new channel at a package: one ChannelPackageUpdated.
    let (app_id, channel_id, group_id, pkg_id) = t.setup_rollout("2.0.0", json!({})).await;
    // First grant in the group: RolloutStarted.
    check(&t, &app_id, "main", "host-1", "1.0.0").await;
    t.clock.advance_ms(60_000);
    // A channel pointed at the package later: another ChannelPackageUpdated; repeating it adds none.
    let later = new_channel(&t, &app_id, "later", None).await;
    let later_id = s(&later["id"]).to_string();
    expect_json(
        t.put_json(
            &format!("/api/apps/{app_id}/channels/{later_id}"),
            json!({"package_id": pkg_id}),
        )
        .await,
        200,
    )
    .await;
    expect_json(
        t.put_json(
            &format!("/api/apps/{app_id}/channels/{later_id}"),
            json!({"package_id": pkg_id}),
        )
        .await,
        200,
    )
    .await;
    // The seeded stable channel has no package: PackageNotFound (Warning) in the CoreOS app.
    check(&t, COREOS_APP, "stable", "host-2", "1.0.0").await;

    let mine = activity(&t, &format!("?app={app_id}")).await;
    let mut classes: Vec<i64> = mine
        .iter()
        .map(|a| a["class"].as_i64().expect("class"))
        .collect();
    classes.sort();
    assert_eq!(classes, vec![2, 6, 6], "{mine:?}");
    for a in &mine {
        assert_eq!(a["application_id"], app_id.as_str());
        assert_eq!(
            a["application_name"],
            t.get_json(&format!("/api/apps/{app_id}")).await["name"]
        );
        assert_eq!(a["severity"], 2, "Info");
        assert_eq!(a["version"], "2.0.0");
        assert_rfc3339(&a["created_ts"]);
        assert!(a["id"].is_i64());
    }
    // Newest first.
    assert_eq!(mine[0]["channel_id"], later_id.as_str());
    assert_eq!(mine[0]["created_ts"], rfc3339_ms(T0 + 60_000));

    let by_group = activity(&t, &format!("?group={group_id}")).await;
    assert_eq!(by_group.len(), 1);
    assert_eq!(by_group[0]["class"], 2);
    assert_eq!(by_group[0]["group_id"], group_id.as_str());
    assert_eq!(by_group[0]["group_name"], "group");

    let by_channel = activity(&t, &format!("?channel={later_id}")).await;
    assert_eq!(by_channel.len(), 1);
    assert_eq!(by_channel[0]["class"], 6);
    assert_eq!(by_channel[0]["channel_name"], "later");
    assert!(s(&by_channel[0]["description"]).contains("2.0.0"));
    let first_channel = activity(&t, &format!("?channel={channel_id}&app={app_id}")).await;
    assert!(first_channel
        .iter()
        .any(|a| a["class"] == 6 && a["created_ts"] == T0_RFC3339));

    let warnings = activity(&t, "?severity=3").await;
    assert!(!warnings.is_empty());
    assert!(warnings.iter().all(|a| a["severity"] == 3));
    let not_found = warnings
        .iter()
        .find(|a| a["application_id"] == COREOS_APP)
        .expect("PackageNotFound for CoreOS");
    assert_eq!(not_found["class"], 1);
    assert_eq!(not_found["group_id"], STABLE_GROUP);
    assert_eq!(
        activity(&t, &format!("?app={app_id}&severity=3"))
            .await
            .len(),
        0
    );
    assert_eq!(
        activity(&t, &format!("?app={app_id}&severity=2"))
            .await
            .len(),
        3
    );

    // Time window.
    let start = rfc3339(T0 + 30_000);
    let after = activity(&t, &format!("?app={app_id}&start={start}")).await;
    assert_eq!(
        after.len(),
        1,
        "only the later channel change is after {start}"
    );
    let end = rfc3339(T0 + 30_000);
    assert_eq!(
        activity(&t, &format!("?app={app_id}&end={end}"))
            .await
            .len(),
        2
    );
    assert_eq!(
        activity(
            &t,
            &format!("?app={app_id}&start={}", rfc3339(T0 + 3_600_000))
        )
        .await
        .len(),
        0
    );
    assert_eq!(
        activity(
            &t,
            &format!(
                "?app={app_id}&start={}&end={}",
                rfc3339(T0 - 60_000),
                rfc3339(T0 + 3_600_000)
            )
        )
        .await
        .len(),
        3
    );
    // Default window: the last three days.
    t.clock.advance_ms(4 * 86_400_000);
    assert_eq!(activity(&t, &format!("?app={app_id}")).await.len(), 0);
    assert_eq!(
        activity(&t, &format!("?app={app_id}&start={}", rfc3339(T0 - 60_000)))
            .await
            .len(),
        3
    );

    // Paging.
    assert_eq!(
        activity(
            &t,
            &format!(
                "?app={app_id}&start={}&perpage=2&page=2",
                rfc3339(T0 - 60_000)
            )
        )
        .await
        .len(),
        1
    );

    // Bad filters name the parameter.
    expect_error(t.get("/api/activity?start=yesterday").await, 400, "start").await;
    expect_error(t.get("/api/activity?end=2026-13-45").await, 400, "end").await;
    expect_error(t.get("/api/activity?severity=7").await, 400, "severity").await;
    expect_error(t.get("/api/activity?app=not-a-uuid").await, 400, "app").await;
    expect_error(t.get("/api/activity?group=nope").await, 400, "group").await;
}

// ---------------------------------------------------------------------------------------------
// Auth, password, ops endpoints, request ids
// ---------------------------------------------------------------------------------------------

both_backends!(
    requests_without_valid_credentials_are_rejected_and_tokens_work,
    requests_without_valid_credentials_are_rejected_and_tokens_work
);
async fn requests_without_valid_credentials_are_rejected_and_tokens_work(db: TestDb) {
    let t = spawn_app(db).await;
    let url = t.url("/api/apps");

    let r = t.client.get(&url).send().await.expect("GET");
    assert_eq!(r.status(), 401);
    let challenge = r
        .headers()
        .get("www-authenticate")
        .expect("WWW-Authenticate")
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(challenge.starts_with("Basic"), "{challenge}");
    expect_error(r, 401, "authentication required").await;

    for (user, pass) in [
        ("admin", "wrong"),
        ("admin", ""),
        ("nobody", "admin"),
        ("ADMIN", "admin"),
    ] {
        let r = t
            .client
            .get(&url)
            .basic_auth(user, Some(pass))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 401, "{user}:{pass}");
        assert!(r.headers().contains_key("www-authenticate"));
    }
    for header in [
        "Basic !!!not-base64!!!",
        "Basic YWRtaW4=",
        "Bearer ",
        "Bearer garbage",
        "Token abc",
        "Digest username=admin",
    ] {
        let r = t
            .client
            .get(&url)
            .header("authorization", header)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 401, "{header:?}");
    }
    // Writes need auth too, and nothing is created without it.
    let r = t
        .client
        .post(&url)
        .json(&json!({"name": "sneaky"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 401);
    let r = t
        .client
        .delete(t.url(&format!("/api/apps/{COREOS_APP}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), 401);
    let apps = list(&t, "/api/apps").await;
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0]["id"], COREOS_APP);

    // Bearer tokens.
    let admin = t
        .state
        .store
        .user_by_name("admin")
        .await
        .expect("lookup")
        .expect("admin exists");
    let (token, digest) = rollbridge::auth::new_token();
    assert_eq!(digest, rollbridge::auth::token_digest(&token));
    let record = t
        .state
        .store
        .create_token(
            "ci",
            &admin.user.id,
            &rollbridge::auth::token_digest(&token),
            t.clock.now_ms(),
        )
        .await
        .expect("token");
    let r = t
        .client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    let apps: Value = r.json().await.expect("json");
    assert_eq!(arr(&apps).len(), 1);
    let r = t
        .client
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({"name": "made-with-token"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 201);
    let tokens = t.state.store.list_tokens().await.expect("tokens");
    assert_eq!(
        tokens
            .iter()
            .find(|x| x.id == record.id)
            .expect("token listed")
            .last_used_ts,
        Some(T0),
        "use is recorded"
    );
    // The digest itself is not a token.
    let r = t
        .client
        .get(&url)
        .bearer_auth(&digest)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 401);

    t.state
        .store
        .revoke_token(&record.id)
        .await
        .expect("revoke");
    let r = t
        .client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 401, "a revoked token is refused");
}

/// Wrong passwords are limited per client address (20 in 5 minutes) and per user name (100,
/// from any address); the client then gets 429 with Retry-After, even with the right password,
/// while other clients and API tokens are unaffected. The dashboard login form shows the wait.
#[tokio::test]
async fn failed_logins_are_throttled_per_client_and_per_user() {
    let t = spawn_app(TestDb::sqlite().await).await;
    let token = t.admin_token().await;
    let url = t.url("/api/apps");
    let basic =
        |ip: String, user: &'static str, password: &'static str| basic_from(&t, ip, user, password);
    let attacker = "203.0.113.1".to_string();
    for i in 0..20 {
        let r = basic(attacker.clone(), "admin", "guess")
            .await
            .expect("GET");
        assert_eq!(r.status(), 401, "attempt {i}");
    }
    let r = basic(attacker.clone(), "admin", "admin")
        .await
        .expect("GET");
    let wait: u64 = r
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&wait), "{wait}");
    expect_error(r, 429, "too many failed logins").await;
    let r = basic("203.0.113.2".into(), "admin", "admin")
        .await
        .expect("GET");
    assert_eq!(r.status(), 200, "another client is not throttled");
    let r = t
        .client
        .get(&url)
        .header("x-forwarded-for", &attacker)
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200, "API tokens are not throttled");

    // The dashboard's login form from the throttled client.
    let r = t
        .client
        .post(t.url("/ui/login"))
        .header("x-forwarded-for", &attacker)
        .form(&[
            ("username", "admin"),
            ("password", "admin"),
            ("next", "/ui/"),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let page = r.text().await.unwrap();
    assert!(page.contains("Too many failed logins"), "{page}");

    // One user name guessed from many addresses.
    for i in 0..100 {
        let r = basic(format!("198.51.100.{i}"), "ops", "guess")
            .await
            .expect("GET");
        assert_eq!(r.status(), 401, "attempt {i}");
    }
    let r = basic("192.0.2.9".into(), "ops", "guess")
        .await
        .expect("GET");
    expect_error(r, 429, "too many failed logins").await;
    let r = basic("192.0.2.9".into(), "admin", "admin")
        .await
        .expect("GET");
    assert_eq!(r.status(), 200, "other user names are not affected");
}

/// With `--trusted-proxies none` a client cannot pick the address its failures count against
/// (nor the IP its instance is stored with) by sending `X-Forwarded-For`: every request here
/// comes from the same peer, whatever the header says.
#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let t = common::spawn_app_with(
        TestDb::sqlite().await,
        common::AppOptions {
            extra_args: vec!["--trusted-proxies".into(), "none".into()],
            ..Default::default()
        },
    )
    .await;
    for i in 0..20 {
        let r = basic_from(&t, format!("198.51.100.{i}"), "admin", "guess")
            .await
            .expect("GET");
        assert_eq!(r.status(), 401, "attempt {i}");
    }
    let r = basic_from(&t, "198.51.100.250".into(), "admin", "admin")
        .await
        .expect("GET");
    expect_error(r, 429, "too many failed logins").await;
}

/// `GET /api/apps` with Basic auth, claiming to come from `ip` (`X-Forwarded-For`).
fn basic_from(
    t: &TestApp,
    ip: String,
    user: &str,
    password: &str,
) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> {
    t.client
        .get(t.url("/api/apps"))
        .header("x-forwarded-for", ip)
        .basic_auth(user, Some(password))
        .send()
}

both_backends!(
    changing_the_password_retires_the_old_one,
    changing_the_password_retires_the_old_one
);
async fn changing_the_password_retires_the_old_one(db: TestDb) {
    let t = spawn_app(db).await;
    // Warm any credential cache with the old password first.
    t.get_json("/api/apps").await;
    expect_error(
        t.put_json("/api/password", json!({"password": "short"}))
            .await,
        400,
        "password",
    )
    .await;
    expect_error(
        t.put_json("/api/password", json!({})).await,
        400,
        "password",
    )
    .await;
    t.get_json("/api/apps").await;
    // A dashboard session opened with the old password.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = browser
        .post(t.url("/ui/login"))
        .form(&[
            ("username", "admin"),
            ("password", "admin"),
            ("next", "/ui/"),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 303);
    let cookie = login
        .headers()
        .get("set-cookie")
        .expect("session cookie")
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = |cookie: String| browser.get(t.url("/ui/")).header("cookie", cookie).send();
    assert_eq!(page(cookie.clone()).await.expect("GET").status(), 200);

    let r = t
        .put_json(
            "/api/password",
            json!({"password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let after = page(cookie).await.expect("GET");
    assert_eq!(
        after.status(),
        303,
        "the old session ended with the password"
    );
    assert!(after.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/ui/login"));
    let old = t
        .client
        .get(t.url("/api/apps"))
        .basic_auth("admin", Some("admin"))
        .send()
        .await
        .expect("GET");
    assert_eq!(old.status(), 401, "the old password no longer works");
    let new = t
        .client
        .get(t.url("/api/apps"))
        .basic_auth("admin", Some("correct horse battery"))
        .send()
        .await
        .expect("GET");
    assert_eq!(new.status(), 200);
    let apps: Value = new.json().await.expect("json");
    assert_eq!(arr(&apps)[0]["id"], COREOS_APP);
    // Unauthenticated password changes are refused.
    let r = t
        .client
        .put(t.url("/api/password"))
        .json(&json!({"password": "hijacked-password"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), 401);
    let still = t
        .client
        .get(t.url("/api/apps"))
        .basic_auth("admin", Some("correct horse battery"))
        .send()
        .await
        .expect("GET");
    assert_eq!(still.status(), 200);
}

both_backends!(
    health_metrics_and_request_ids,
    health_metrics_and_request_ids
);
async fn health_metrics_and_request_ids(db: TestDb) {
    let t = spawn_app(db).await;
    let r = t
        .client
        .get(t.url("/v1.0/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(r.status(), 200);
    let id = r
        .headers()
        .get("x-request-id")
        .expect("request id")
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(!id.is_empty());
    assert_eq!(r.json::<Value>().await.expect("json")["status"], "ok");

    t.get_json("/api/apps").await;
    let r = t
        .client
        .get(t.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(r.status(), 401, "metrics need auth");
    let r = t.get("/metrics").await;
    assert_eq!(r.status(), 200);
    assert!(r
        .headers()
        .get("content-type")
        .expect("type")
        .to_str()
        .expect("ascii")
        .starts_with("text/plain"));
    let text = r.text().await.expect("text");
    assert!(text.contains("rollbridge_http_requests_total"), "{text}");
    assert!(
        text.contains(r#"route="/api/apps""#),
        "requests are labelled by route: {text}"
    );
    assert!(text.contains(r#"status="401""#));
    assert!(text.contains("rollbridge_http_request_duration_seconds"));

    // Every response carries a request id: success, errors, unknown routes, Omaha.
    let responses = vec![
        t.get("/api/apps").await,
        t.client.get(t.url("/api/apps")).send().await.expect("401"),
        t.get("/api/apps/not-a-uuid").await,
        t.get(&format!("/api/apps/{}", uuid::Uuid::new_v4())).await,
        t.get("/no/such/route").await,
        t.client
            .post(t.url("/v1/update/"))
            .body(check_xml(COREOS_APP, "stable", "m1", "1.0.0", PING_CHECK))
            .send()
            .await
            .expect("omaha"),
    ];
    let mut seen = Vec::new();
    for r in responses {
        let status = r.status();
        let id = r
            .headers()
            .get("x-request-id")
            .unwrap_or_else(|| panic!("no request id on a {status}"))
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(!id.is_empty());
        assert!(!seen.contains(&id), "request ids are fresh per request");
        seen.push(id);
    }
    // A sane incoming id is echoed; an unreasonable one is replaced.
    let r = t
        .client
        .get(t.url("/api/apps"))
        .basic_auth("admin", Some("admin"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .expect("GET");
    assert_eq!(
        r.headers().get("x-request-id").expect("id"),
        "trace-abc-123"
    );
    let r = t
        .client
        .get(t.url("/v1.0/health"))
        .header("X-Request-Id", "upstream.42")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.headers().get("x-request-id").expect("id"), "upstream.42");
    let long = "x".repeat(500);
    for bad in ["has space", long.as_str()] {
        let r = t
            .client
            .get(t.url("/v1.0/health"))
            .header("x-request-id", bad)
            .send()
            .await
            .expect("GET");
        let got = r
            .headers()
            .get("x-request-id")
            .expect("id")
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(
            !got.is_empty() && got != bad,
            "{bad:?} should have been replaced, got {got:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

both_backends!(
    invalid_input_is_a_400_naming_the_field_and_stores_nothing,
    invalid_input_is_a_400_naming_the_field_and_stores_nothing
);
async fn invalid_input_is_a_400_naming_the_field_and_stores_nothing(db: TestDb) {
    let t = spawn_app(db).await;
    let app_id = new_app(&t, &unique("valid")).await;
    let packages = format!("/api/apps/{app_id}/packages");
    let good_pkg =
        json!({"type": 4, "version": "1.0.0", "url": "https://x.example/", "filename": "a.tgz"});
    let with = |k: &str, v: Value| {
        let mut body = good_pkg.clone();
        body[k] = v;
        body
    };

    // Packages.
    for (body, field) in [
        (with("version", json!("1.2")), "version"),
        (with("version", json!("not-a-version")), "version"),
        (with("version", json!("")), "version"),
        (with("type", json!(9)), "type"),
        (with("type", json!(0)), "type"),
        (with("url", json!("")), "url"),
        (with("size", json!("lots")), "size"),
        (with("filename", json!("../etc/passwd")), "filename"),
        (
            with("channels_blacklist", json!(["not-a-uuid"])),
            "channels_blacklist",
        ),
        (
            with(
                "channels_blacklist",
                json!([uuid::Uuid::new_v4().to_string()]),
            ),
            "channels_blacklist",
        ),
        (with("image_digest", json!("sha256:xyz")), "image_digest"),
    ] {
        expect_error(t.post_json(&packages, body.clone()).await, 400, field).await;
    }
    assert_eq!(
        list(&t, &packages).await,
        Vec::<Value>::new(),
        "nothing stored"
    );
    let pkg = new_package(&t, &app_id, "1.0.0").await;
    let pid = s(&pkg["id"]).to_string();
    expect_error(
        t.put_json(&format!("{packages}/{pid}"), json!({"version": "v1"}))
            .await,
        400,
        "version",
    )
    .await;
    assert_eq!(
        t.get_json(&format!("{packages}/{pid}")).await,
        pkg,
        "a rejected update changes nothing"
    );

    // Ids in the path.
    expect_error(t.get("/api/apps/not-a-uuid/groups").await, 400, "app_id").await;
    expect_error(
        t.post_json("/api/apps/not-a-uuid/groups", json!({"name": "g"}))
            .await,
        400,
        "app_id",
    )
    .await;
    expect_error(t.get("/api/apps/not-a-uuid").await, 400, "app_id").await;
    expect_error(
        t.get(&format!("/api/apps/{app_id}/groups/not-a-uuid"))
            .await,
        400,
        "group_id",
    )
    .await;
    expect_error(
        t.get(&format!("/api/apps/{app_id}/channels/not-a-uuid"))
            .await,
        400,
        "channel_id",
    )
    .await;
    expect_error(
        t.get(&format!("/api/apps/{app_id}/packages/not-a-uuid"))
            .await,
        400,
        "package_id",
    )
    .await;
    let unknown = uuid::Uuid::new_v4();
    expect_error(
        t.get(&format!("/api/apps/{unknown}")).await,
        404,
        "not found",
    )
    .await;
    for kind in ["groups", "channels", "packages"] {
        expect_error(
            t.get(&format!("/api/apps/{unknown}/{kind}")).await,
            404,
            "not found",
        )
        .await;
    }
    expect_error(
        t.post_json(&format!("/api/apps/{unknown}/groups"), json!({"name": "g"}))
            .await,
        404,
        "not found",
    )
    .await;
    expect_error(
        t.post_json(&format!("/api/apps/{unknown}/packages"), good_pkg.clone())
            .await,
        404,
        "not found",
    )
    .await;

    // Apps.
    expect_error(
        t.post_json("/api/apps", json!({"description": "no name"}))
            .await,
        400,
        "name",
    )
    .await;
    expect_error(
        t.post_json("/api/apps", json!({"name": "   "})).await,
        400,
        "name",
    )
    .await;
    expect_error(
        t.post_json("/api/apps", json!({"name": "n".repeat(51)}))
            .await,
        400,
        "name",
    )
    .await;
    assert_eq!(list(&t, "/api/apps").await.len(), 2);
    expect_error(
        t.put_json(&format!("/api/apps/{app_id}"), json!({"name": ""}))
            .await,
        400,
        "name",
    )
    .await;
    assert_eq!(
        t.get_json(&format!("/api/apps/{app_id}")).await["description"],
        "test app"
    );
    assert!(t.get_json(&format!("/api/apps/{app_id}")).await["name"]
        .as_str()
        .is_some_and(|n| n.starts_with("valid-")));

    // Groups.
    let groups = format!("/api/apps/{app_id}/groups");
    let other_app = new_app(&t, &unique("other")).await;
    let foreign_channel = new_channel(&t, &other_app, "theirs", None).await;
    for (body, field) in [
        (
            json!({"name": "g", "policy_timezone": "Nowhere/Else"}),
            "policy_timezone",
        ),
        (
            json!({"name": "g", "policy_office_hours": true, "policy_timezone": "Mars/Olympus"}),
            "policy_timezone",
        ),
        (
            json!({"name": "g", "policy_office_hours": true}),
            "policy_timezone",
        ),
        (
            json!({"name": "g", "policy_office_hours": true, "policy_timezone": ""}),
            "policy_timezone",
        ),
        (
            json!({"name": "g", "policy_period_interval": "soon"}),
            "policy_period_interval",
        ),
        (
            json!({"name": "g", "policy_period_interval": ""}),
            "policy_period_interval",
        ),
        (
            json!({"name": "g", "policy_update_timeout": "forever"}),
            "policy_update_timeout",
        ),
        (
            json!({"name": "g", "policy_max_updates_per_period": 0}),
            "policy_max_updates_per_period",
        ),
        (
            json!({"name": "g", "policy_max_updates_per_period": -3}),
            "policy_max_updates_per_period",
        ),
        (
            json!({"name": "g", "policy_poll_interval": -1}),
            "policy_poll_interval",
        ),
        (
            json!({"name": "g", "channel_id": "not-a-uuid"}),
            "channel_id",
        ),
        (
            json!({"name": "g", "channel_id": foreign_channel["id"]}),
            "channel_id",
        ),
        (
            json!({"name": "g", "channel_id": uuid::Uuid::new_v4().to_string()}),
            "channel_id",
        ),
        (json!({"name": ""}), "name"),
        (json!({"policy_safe_mode": false}), "name"),
    ] {
        expect_error(t.post_json(&groups, body.clone()).await, 400, field).await;
    }
    assert_eq!(
        list(&t, &groups).await,
        Vec::<Value>::new(),
        "no group stored"
    );
    let g = new_group(&t, &app_id, json!({"name": "g", "track": "g"})).await;
    let gid = s(&g["id"]).to_string();
    expect_error(
        t.put_json(
            &format!("{groups}/{gid}"),
            json!({"policy_office_hours": true}),
        )
        .await,
        400,
        "policy_timezone",
    )
    .await;
    expect_error(
        t.put_json(
            &format!("{groups}/{gid}"),
            json!({"policy_timezone": "Nowhere/Else"}),
        )
        .await,
        400,
        "policy_timezone",
    )
    .await;
    expect_error(
        t.put_json(
            &format!("{groups}/{gid}"),
            json!({"policy_max_updates_per_period": 0}),
        )
        .await,
        400,
        "policy_max_updates_per_period",
    )
    .await;
    assert_eq!(
        t.get_json(&format!("{groups}/{gid}")).await,
        g,
        "rejected updates change nothing"
    );

    // Channels.
    let channels = format!("/api/apps/{app_id}/channels");
    let foreign_pkg = new_package(&t, &other_app, "9.9.9").await;
    expect_error(
        t.post_json(
            &channels,
            json!({"name": "c", "package_id": foreign_pkg["id"]}),
        )
        .await,
        400,
        "package_id",
    )
    .await;
    expect_error(
        t.post_json(&channels, json!({"name": "c", "package_id": "nope"}))
            .await,
        400,
        "package_id",
    )
    .await;
    expect_error(
        t.post_json(&channels, json!({"name": "", "color": "#000"}))
            .await,
        400,
        "name",
    )
    .await;
    expect_error(
        t.post_json(
            &channels,
            json!({"name": "a-very-long-channel-name-indeed"}),
        )
        .await,
        400,
        "name",
    )
    .await;
    assert_eq!(
        list(&t, &channels).await,
        Vec::<Value>::new(),
        "no channel stored"
    );
    let c = new_channel(&t, &app_id, "c", None).await;
    let cid = s(&c["id"]).to_string();
    expect_error(
        t.put_json(
            &format!("{channels}/{cid}"),
            json!({"package_id": foreign_pkg["id"]}),
        )
        .await,
        400,
        "package_id",
    )
    .await;
    assert!(t.get_json(&format!("{channels}/{cid}")).await["package_id"].is_null());
    // Activity stays clean: no ChannelPackageUpdated for the refused change.
    assert!(activity(&t, &format!("?channel={cid}")).await.is_empty());

    // Query parameters.
    expect_error(
        t.get(&format!("{groups}/{gid}/instances?status=99")).await,
        400,
        "status",
    )
    .await;
    expect_error(
        t.get(&format!("{groups}/{gid}/instances?status=0")).await,
        400,
        "status",
    )
    .await;
    expect_error(
        t.get(&format!("{groups}/{gid}/instances?status=two")).await,
        400,
        "query",
    )
    .await;
}

both_backends!(
    malformed_oversized_and_mistyped_bodies_are_rejected,
    malformed_oversized_and_mistyped_bodies_are_rejected
);
async fn malformed_oversized_and_mistyped_bodies_are_rejected(db: TestDb) {
    let t = spawn_app(db).await;
    let raw = |path: &str, method: reqwest::Method, body: Vec<u8>| {
        t.client
            .request(method, t.url(path))
            .basic_auth("admin", Some("admin"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let packages = format!("/api/apps/{COREOS_APP}/packages");

    for body in [
        r#"{"name":"#,
        "",
        "not json",
        "[1,2,3]",
        "null",
        r#"{"name": "a"} trailing"#,
    ] {
        let r = raw("/api/apps", reqwest::Method::POST, body.as_bytes().to_vec())
            .await
            .expect("POST");
        expect_error(r, 400, "JSON").await;
    }
    let r = raw(
        &packages,
        reqwest::Method::POST,
        b"\xff\xfe\x00garbage".to_vec(),
    )
    .await
    .expect("POST");
    expect_error(r, 400, "JSON").await;

    // Wrong JSON types: the parser's message, which quotes the offending value and its position
    // (serde_json does not name the field).
    for (body, value) in [
        (
            json!({"type": "one", "version": "1.0.0", "url": "https://x/"}),
            "\"one\"",
        ),
        (
            json!({"type": 1, "version": 100, "url": "https://x/"}),
            "100",
        ),
        (
            json!({"type": 1, "version": "1.0.0", "url": "https://x/", "size": true}),
            "true",
        ),
        (
            json!({"type": 1, "version": "1.0.0", "url": "https://x/", "channels_blacklist": "abc"}),
            "\"abc\"",
        ),
        (
            json!({"type": 1.5, "version": "1.0.0", "url": "https://x/"}),
            "1.5",
        ),
    ] {
        let message = expect_error(
            t.post_json(&packages, body.clone()).await,
            400,
            "malformed JSON",
        )
        .await;
        assert!(
            message.contains(value) && message.contains("column"),
            "{message} should quote {value} and its position"
        );
    }
    let message = expect_error(
        t.post_json("/api/apps", json!({"name": ["a"]})).await,
        400,
        "invalid type",
    )
    .await;
    assert!(message.contains("malformed JSON"), "{message}");
    expect_error(
        t.post_json(
            &format!("/api/apps/{COREOS_APP}/groups"),
            json!({"name": "g", "policy_safe_mode": "yes"}),
        )
        .await,
        400,
        "invalid type",
    )
    .await;
    expect_error(
        t.post_json(
            &format!("/api/apps/{COREOS_APP}/groups"),
            json!({"name": "g", "policy_max_updates_per_period": "5"}),
        )
        .await,
        400,
        "invalid type",
    )
    .await;
    expect_error(
        t.put_json("/api/password", json!({"password": 12345678}))
            .await,
        400,
        "invalid type",
    )
    .await;
    assert_eq!(list(&t, &packages).await, Vec::<Value>::new());
    assert_eq!(
        list(&t, &format!("/api/apps/{COREOS_APP}/groups"))
            .await
            .len(),
        3
    );

    // Bodies over the 1 MiB limit.
    let huge =
        serde_json::to_vec(&json!({"name": "big", "description": "x".repeat(1024 * 1024 + 10)}))
            .expect("json");
    let r = raw("/api/apps", reqwest::Method::POST, huge.clone())
        .await
        .expect("POST");
    expect_error(r, 413, "larger than").await;
    let r = raw(
        &format!("/api/apps/{COREOS_APP}"),
        reqwest::Method::PUT,
        huge,
    )
    .await
    .expect("PUT");
    expect_error(r, 413, "larger than").await;
    let apps = list(&t, "/api/apps").await;
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0]["name"], "CoreOS");
    // Just under the limit is fine (the description limit then applies).
    let under = serde_json::to_vec(&json!({"name": "fits", "description": "y".repeat(9_000)}))
        .expect("json");
    let r = raw("/api/apps", reqwest::Method::POST, under)
        .await
        .expect("POST");
    assert_eq!(r.status(), 201);
}

// ---------------------------------------------------------------------------------------------
// Conflicts and blacklists
// ---------------------------------------------------------------------------------------------

both_backends!(duplicates_are_conflicts, duplicates_are_conflicts);
async fn duplicates_are_conflicts(db: TestDb) {
    let t = spawn_app(db).await;
    let name = unique("dup");
    let app_id = new_app(&t, &name).await;
    expect_error(
        t.post_json("/api/apps", json!({"name": name})).await,
        409,
        "already exists",
    )
    .await;
    expect_error(
        t.post_json("/api/apps", json!({"name": "CoreOS"})).await,
        409,
        "already exists",
    )
    .await;
    expect_error(
        t.put_json(&format!("/api/apps/{app_id}"), json!({"name": "CoreOS"}))
            .await,
        409,
        "already exists",
    )
    .await;
    assert_eq!(list(&t, "/api/apps").await.len(), 2);
    assert_eq!(
        t.get_json(&format!("/api/apps/{app_id}")).await["name"],
        name.as_str()
    );

    // Packages: same version in the same app; another app may reuse it.
    let p1 = new_package(&t, &app_id, "1.0.0").await;
    let p2 = new_package(&t, &app_id, "1.1.0").await;
    let body = json!({"type": 4, "version": "1.0.0", "url": "https://other.example/"});
    expect_error(
        t.post_json(&format!("/api/apps/{app_id}/packages"), body.clone())
            .await,
        409,
        "1.0.0",
    )
    .await;
    // A rename onto an existing version says so like a create does, never the raw DB error.
    let message = expect_error(
        t.put_json(
            &format!("/api/apps/{app_id}/packages/{}", s(&p2["id"])),
            json!({"version": "1.0.0"}),
        )
        .await,
        409,
        "a package with version 1.0.0 already exists",
    )
    .await;
    for raw in ["UNIQUE", "Duplicate entry", "uq_packages", "constraint"] {
        assert!(
            !message.contains(raw),
            "{message:?} leaks the database error"
        );
    }
    assert_eq!(
        t.get_json(&format!("/api/apps/{app_id}/packages/{}", s(&p2["id"])))
            .await["version"],
        "1.1.0"
    );
    assert_eq!(
        list(&t, &format!("/api/apps/{app_id}/packages"))
            .await
            .len(),
        2
    );
    let mut coreos: Value = serde_json::from_str(SEED_PACKAGE).expect("seed package");
    coreos["version"] = json!("1.0.0");
    expect_json(
        t.post_json(&format!("/api/apps/{COREOS_APP}/packages"), coreos)
            .await,
        201,
    )
    .await;

    // Channels: same name in the same app.
    let c1 = new_channel(&t, &app_id, "stable", Some(s(&p1["id"]))).await;
    let c2 = new_channel(&t, &app_id, "beta", None).await;
    expect_error(
        t.post_json(
            &format!("/api/apps/{app_id}/channels"),
            json!({"name": "stable"}),
        )
        .await,
        409,
        "stable",
    )
    .await;
    expect_error(
        t.put_json(
            &format!("/api/apps/{app_id}/channels/{}", s(&c2["id"])),
            json!({"name": "stable"}),
        )
        .await,
        409,
        "stable",
    )
    .await;
    assert_eq!(
        t.get_json(&format!("/api/apps/{app_id}/channels/{}", s(&c2["id"])))
            .await["name"],
        "beta"
    );
    assert_eq!(
        list(&t, &format!("/api/apps/{app_id}/channels"))
            .await
            .len(),
        2
    );
    new_channel(&t, &app_id, "stable-2", None).await;

    // Groups: same name, or same track (explicit or another group's id).
    let g1 = new_group(
        &t,
        &app_id,
        json!({"name": "prod", "track": "prod-track", "channel_id": c1["id"]}),
    )
    .await;
    let g2 = new_group(&t, &app_id, json!({"name": "canary"})).await;
    let groups = format!("/api/apps/{app_id}/groups");
    expect_error(
        t.post_json(&groups, json!({"name": "prod"})).await,
        409,
        "already exists",
    )
    .await;
    expect_error(
        t.post_json(&groups, json!({"name": "other", "track": "prod-track"}))
            .await,
        409,
        "already exists",
    )
    .await;
    expect_error(
        t.post_json(&groups, json!({"name": "other", "track": g2["id"]}))
            .await,
        409,
        "another group",
    )
    .await;
    expect_error(
        t.put_json(
            &format!("{groups}/{}", s(&g2["id"])),
            json!({"name": "prod"}),
        )
        .await,
        409,
        "already exists",
    )
    .await;
    expect_error(
        t.put_json(
            &format!("{groups}/{}", s(&g2["id"])),
            json!({"track": "prod-track"}),
        )
        .await,
        409,
        "already exists",
    )
    .await;
    let unchanged = t.get_json(&format!("{groups}/{}", s(&g2["id"]))).await;
    assert_eq!(unchanged["name"], "canary");
    assert_eq!(unchanged["track"], g2["id"]);
    assert_eq!(list(&t, &groups).await.len(), 2);
    // Names are per application: the CoreOS app can have a "prod" group too.
    new_group(
        &t,
        COREOS_APP,
        json!({"name": "prod", "track": "prod-track"}),
    )
    .await;
    assert_eq!(
        t.get_json(&format!("{groups}/{}", s(&g1["id"]))).await["track"],
        "prod-track"
    );
}

both_backends!(
    blacklist_rules_are_enforced_both_ways,
    blacklist_rules_are_enforced_both_ways
);
async fn blacklist_rules_are_enforced_both_ways(db: TestDb) {
    let t = spawn_app(db).await;
    let app_id = new_app(&t, &unique("blacklist")).await;
    let p = new_package(&t, &app_id, "1.0.0").await;
    let pid = s(&p["id"]).to_string();
    let c = new_channel(&t, &app_id, "c", None).await;
    let cid = s(&c["id"]).to_string();

    // Blacklisting a channel that does not point at the package is fine (duplicates collapse)...
    let blacklisted = expect_json(
        t.put_json(
            &format!("/api/apps/{app_id}/packages/{pid}"),
            json!({"channels_blacklist": [cid, cid.to_uppercase()]}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(blacklisted["channels_blacklist"], json!([cid]));
    assert_eq!(
        t.get_json(&format!("/api/apps/{app_id}/packages/{pid}"))
            .await["channels_blacklist"],
        json!([cid])
    );
    // ...and then the channel cannot be pointed at it.
    expect_error(
        t.put_json(
            &format!("/api/apps/{app_id}/channels/{cid}"),
            json!({"package_id": pid}),
        )
        .await,
        409,
        "blacklisted",
    )
    .await;
    let channel = t
        .get_json(&format!("/api/apps/{app_id}/channels/{cid}"))
        .await;
    assert!(
        channel["package_id"].is_null(),
        "the refused change was not stored"
    );
    assert!(activity(&t, &format!("?channel={cid}")).await.is_empty());

    // Other direction: a channel points at q; q cannot newly blacklist it.
    let q = new_package(&t, &app_id, "2.0.0").await;
    let qid = s(&q["id"]).to_string();
    let d = new_channel(&t, &app_id, "d", Some(&qid)).await;
    let did = s(&d["id"]).to_string();
    expect_error(
        t.put_json(
            &format!("/api/apps/{app_id}/packages/{qid}"),
            json!({"channels_blacklist": [did]}),
        )
        .await,
        409,
        "points at",
    )
    .await;
    assert_eq!(
        t.get_json(&format!("/api/apps/{app_id}/packages/{qid}"))
            .await["channels_blacklist"],
        json!([])
    );
    // Blacklisting a channel on creation works; pointing it at that package afterwards is refused.
    let body = json!({"type": 4, "version": "3.0.0", "url": "https://x.example/", "channels_blacklist": [did]});
    let r = expect_json(
        t.post_json(&format!("/api/apps/{app_id}/packages"), body)
            .await,
        201,
    )
    .await;
    let rid = s(&r["id"]).to_string();
    assert_eq!(r["channels_blacklist"], json!([did]));
    expect_error(
        t.put_json(
            &format!("/api/apps/{app_id}/channels/{did}"),
            json!({"package_id": rid}),
        )
        .await,
        409,
        "blacklisted",
    )
    .await;
    assert_eq!(
        t.get_json(&format!("/api/apps/{app_id}/channels/{did}"))
            .await["package_id"],
        qid.as_str()
    );

    // Removing the blacklist entry lifts the restriction.
    let cleared = expect_json(
        t.put_json(
            &format!("/api/apps/{app_id}/packages/{pid}"),
            json!({"channels_blacklist": []}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(cleared["channels_blacklist"], json!([]));
    let pointed = expect_json(
        t.put_json(
            &format!("/api/apps/{app_id}/channels/{cid}"),
            json!({"package_id": pid}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(pointed["package_id"], pid.as_str());
    // A blacklist entry must name a channel of this application.
    let foreign = new_channel(&t, COREOS_APP, "foreign", None).await;
    expect_error(
        t.put_json(
            &format!("/api/apps/{app_id}/packages/{qid}"),
            json!({"channels_blacklist": [foreign["id"]]}),
        )
        .await,
        400,
        "channels_blacklist",
    )
    .await;

    // Deleting a blacklisted channel drops it from the package's list.
    assert_eq!(
        t.delete(&format!("/api/apps/{app_id}/channels/{did}"))
            .await
            .status(),
        204
    );
    assert_eq!(
        t.get_json(&format!("/api/apps/{app_id}/packages/{rid}"))
            .await["channels_blacklist"],
        json!([])
    );
}

// ---------------------------------------------------------------------------------------------
// Cascades
// ---------------------------------------------------------------------------------------------

both_backends!(
    deletes_cascade_or_clear_references,
    deletes_cascade_or_clear_references
);
async fn deletes_cascade_or_clear_references(db: TestDb) {
    let t = spawn_app(db).await;
    // Deleting a package a channel points at leaves the channel without package.
    let (app_id, channel_id, group_id, package_id) = t.setup_rollout("1.0.0", json!({})).await;
    let r = t
        .delete(&format!("/api/apps/{app_id}/packages/{package_id}"))
        .await;
    assert_eq!(r.status(), 204);
    let channel = t
        .get_json(&format!("/api/apps/{app_id}/channels/{channel_id}"))
        .await;
    assert!(
        channel["package_id"].is_null() && channel["package"].is_null(),
        "{channel}"
    );
    let group = t
        .get_json(&format!("/api/apps/{app_id}/groups/{group_id}"))
        .await;
    assert_eq!(group["channel_id"], channel_id.as_str());
    assert!(group["channel"]["package"].is_null());

    // Deleting a channel leaves its groups without channel.
    let r = t
        .delete(&format!("/api/apps/{app_id}/channels/{channel_id}"))
        .await;
    assert_eq!(r.status(), 204);
    let group = t
        .get_json(&format!("/api/apps/{app_id}/groups/{group_id}"))
        .await;
    assert!(
        group["channel_id"].is_null() && group["channel"].is_null(),
        "{group}"
    );
    assert_eq!(group["name"], "group");

    // Deleting an application removes everything it owns.
    let (app2, channel2, group2, package2) = t.setup_rollout("5.0.0", json!({})).await;
    check(&t, &app2, "main", "doomed-host", "4.0.0").await;
    assert_eq!(activity(&t, &format!("?app={app2}")).await.len(), 2);
    let r = t.delete(&format!("/api/apps/{app2}")).await;
    assert_eq!(r.status(), 204);
    for path in [
        format!("/api/apps/{app2}"),
        format!("/api/apps/{app2}/groups"),
        format!("/api/apps/{app2}/groups/{group2}"),
        format!("/api/apps/{app2}/channels/{channel2}"),
        format!("/api/apps/{app2}/packages/{package2}"),
        format!("/api/apps/{app2}/groups/{group2}/instances"),
    ] {
        expect_error(t.get(&path).await, 404, "not found").await;
    }
    // Gone from the database, not just hidden behind the missing app.
    let store = &t.state.store;
    assert!(store
        .list_channels(&app2)
        .await
        .expect("channels")
        .is_empty());
    assert!(store
        .list_packages(&app2)
        .await
        .expect("packages")
        .is_empty());
    assert!(store
        .list_groups(&app2, t.clock.now_ms())
        .await
        .expect("groups")
        .is_empty());
    assert!(store.instance(&app2, "doomed-host").await.is_err());
    assert_eq!(activity(&t, &format!("?app={app2}")).await.len(), 0);
    // The other application is untouched.
    assert_eq!(
        t.get_json(&format!("/api/apps/{app_id}/groups/{group_id}"))
            .await["name"],
        "group"
    );
    let names: Vec<String> = list(&t, "/api/apps")
        .await
        .iter()
        .map(|a| s(&a["id"]).to_string())
        .collect();
    assert!(
        names.contains(&app_id)
            && names.contains(&COREOS_APP.to_string())
            && !names.contains(&app2)
    );
}

// ---------------------------------------------------------------------------------------------
// Query strings
// ---------------------------------------------------------------------------------------------

both_backends!(
    query_errors_name_the_field_and_paging_has_defaults,
    query_errors_name_the_field_and_paging_has_defaults
);
async fn query_errors_name_the_field_and_paging_has_defaults(db: TestDb) {
    let t = spawn_app(db).await;
    let (app_id, _channel, group_id, _pkg) = t.setup_rollout("2.0.0", json!({})).await;
    for host in ["host-1", "host-2", "host-3"] {
        check(&t, &app_id, "main", host, "1.0.0").await;
    }
    let instances_path = format!("/api/apps/{app_id}/groups/{group_id}/instances");

    // A value of the wrong type: 400 naming the parameter, the expected type and the value.
    let cases = [
        (
            "/api/activity?severity=abc".to_string(),
            r#"severity: expected an integer, got "abc""#,
        ),
        (
            format!("{instances_path}?status=abc"),
            r#"status: expected an integer, got "abc""#,
        ),
        (
            "/api/apps?perpage=ten".to_string(),
            r#"perpage: expected an integer, got "ten""#,
        ),
        (
            format!("{instances_path}?page=1.5"),
            r#"page: expected an integer, got "1.5""#,
        ),
        (
            format!("{instances_path}/host-1/status_history?limit=x"),
            r#"limit: expected an integer, got "x""#,
        ),
        (
            "/v1.0/force?wait=-1".to_string(),
            r#"wait: expected a non-negative integer, got "-1""#,
        ),
    ];
    for (path, needle) in &cases {
        expect_error(t.get(path).await, 400, needle).await;
    }
    // Empty values are absent, as a form sends them.
    assert_eq!(
        instances(&t, &app_id, &group_id, "?status=&perpage=")
            .await
            .1
            .len(),
        3
    );

    // perpage 0 or negative means the endpoint's default page size (CoreRoller reads it so),
    // not a page of one.
    for query in ["?perpage=0", "?perpage=-5"] {
        let (total, ids) = instances(&t, &app_id, &group_id, query).await;
        assert_eq!((total, ids.len()), (3, 3), "{query}");
        assert_eq!(
            list(&t, &format!("/api/apps{query}")).await.len(),
            2,
            "{query}"
        );
    }
    assert_eq!(
        instances(&t, &app_id, &group_id, "?perpage=2")
            .await
            .1
            .len(),
        2
    );
    let all = activity(&t, &format!("?app={app_id}")).await;
    assert!(all.len() >= 2, "{all:?}");
    for query in ["perpage=0", "perpage=-5"] {
        assert_eq!(
            activity(&t, &format!("?app={app_id}&{query}")).await,
            all,
            "{query}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------

both_backends!(
    hostile_input_never_causes_a_server_error,
    hostile_input_never_causes_a_server_error
);
async fn hostile_input_never_causes_a_server_error(db: TestDb) {
    let t = spawn_app(db).await;
    let (app_id, _channel, group_id, _pkg) = t.setup_rollout("2.0.0", json!({})).await;
    check(&t, &app_id, "main", "host-1", "1.0.0").await;
    let instances = format!("/api/apps/{app_id}/groups/{group_id}/instances");

    // (path, expected status)
    let cases: Vec<(String, u16)> = vec![
        ("/api/apps/%00/groups".into(), 400),
        ("/api/apps/%00".into(), 400),
        ("/api/apps/%ff%fe".into(), 400),
        (format!("/api/apps/{app_id}/groups/%00"), 400),
        ("/api/%00".into(), 404),
        ("/no/such/route".into(), 404),
        ("/api/apps/extra/segments/that/do/not/exist".into(), 404),
        ("/v1/update/".into(), 405),
        (format!("{instances}?perpage=1000000000"), 200),
        (format!("{instances}?perpage=0"), 200),
        (format!("{instances}?perpage=-5"), 200),
        (format!("{instances}?page=-5"), 200),
        (format!("{instances}?page=0"), 200),
        (format!("{instances}?page=9223372036854775807"), 200),
        (
            format!("{instances}?page=9223372036854775807&perpage=9223372036854775807"),
            200,
        ),
        (format!("{instances}?page=99999999999999999999999"), 400),
        (format!("{instances}?status=99"), 400),
        (format!("{instances}?status=-1"), 400),
        (format!("{instances}?status=9223372036854775807"), 400),
        (format!("{instances}?search=%00"), 200),
        (format!("{instances}?search={}", "a".repeat(5000)), 200),
        (
            format!("{instances}?version=%27%3B%20DROP%20TABLE%20instances%3B%20--"),
            200,
        ),
        (format!("{instances}/%00"), 404),
        (format!("{instances}/{}", "z".repeat(2000)), 404),
        (format!("{instances}/host-1/status_history?limit=-1"), 200),
        (
            format!("{instances}/host-1/status_history?limit=9223372036854775807"),
            200,
        ),
        ("/api/apps?page=-1&perpage=-1".into(), 200),
        (
            "/api/apps?page=9223372036854775807&perpage=1000".into(),
            200,
        ),
        ("/api/apps?perpage=9223372036854775807".into(), 200),
        ("/api/activity?page=-3&perpage=1000000".into(), 200),
        (
            "/api/activity?page=9223372036854775807&perpage=1000".into(),
            200,
        ),
        ("/api/activity?severity=-9223372036854775808".into(), 400),
        ("/api/activity?start=%00".into(), 400),
        (
            "/api/activity?instance=%27%20OR%20%271%27%3D%271".into(),
            200,
        ),
        ("/api/activity?version=%00".into(), 200),
    ];
    for (path, expected) in &cases {
        let r = t.get(path).await;
        let status = r.status().as_u16();
        let body = r.text().await.expect("body");
        assert!(status < 500, "GET {path} -> {status}: {body}");
        assert_eq!(status, *expected, "GET {path}: {body}");
        if status >= 400 {
            let v: Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("GET {path}: error body not JSON ({e}): {body}"));
            assert!(v["error"].is_string(), "GET {path}: {body}");
        }
    }
    // Pages past the end are empty, not errors.
    let body = t
        .get_json(&format!("{instances}?page=9223372036854775807"))
        .await;
    assert_eq!(body["total"], 1);
    assert_eq!(body["instances"], json!([]));
    assert_eq!(
        list(&t, "/api/apps?page=9223372036854775807&perpage=1000").await,
        Vec::<Value>::new()
    );
    // Negative or zero paging falls back to the first page.
    assert_eq!(
        instances_ids(&t, &format!("{instances}?page=-5")).await,
        vec!["host-1"]
    );

    // Hostile bodies: odd unicode is stored verbatim, not choked on (control characters are
    // refused: see `control_characters_are_refused`).
    let odd = "name with\u{202e} 🦀";
    let created = expect_json(
        t.post_json(
            "/api/apps",
            json!({"name": odd, "description": "'; DROP TABLE applications; --"}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(created["name"], odd);
    assert_eq!(
        t.get_json(&format!("/api/apps/{}", s(&created["id"])))
            .await["description"],
        "'; DROP TABLE applications; --"
    );
    // Unknown methods and routes answer with JSON errors.
    let r = t
        .client
        .patch(t.url("/api/apps"))
        .basic_auth("admin", Some("admin"))
        .send()
        .await
        .expect("PATCH");
    assert!(r.status().is_client_error(), "PATCH -> {}", r.status());
    let r = t
        .client
        .post(t.url(&format!("/api/apps/{app_id}/groups/{group_id}/instances")))
        .basic_auth("admin", Some("admin"))
        .send()
        .await
        .expect("POST");
    assert!(
        r.status().is_client_error(),
        "POST instances -> {}",
        r.status()
    );
    // The server is still healthy afterwards.
    assert_eq!(t.get_json("/v1.0/health").await["status"], "ok");
}

async fn instances_ids(t: &TestApp, path: &str) -> Vec<String> {
    arr(&t.get_json(path).await["instances"])
        .iter()
        .map(|i| s(&i["id"]).to_string())
        .collect()
}

/// A JSON type error names the field it is about, and nothing is stored.
async fn type_errors_name_the_field(db: TestDb) {
    let app = spawn_app(db).await;
    let r = app
        .post_json(
            &format!("/api/apps/{COREOS_APP}/groups"),
            json!({"name": "typed", "track": "typed", "policy_max_updates_per_period": "many"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let message = r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("policy_max_updates_per_period"),
        "{message}"
    );
    let groups = app
        .get_json(&format!("/api/apps/{COREOS_APP}/groups"))
        .await;
    assert!(groups
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g["name"] != "typed"));
    let r = app.post_json("/api/apps", json!({"name": "x"})).await;
    assert_eq!(r.status(), 201);
    let r = app
        .client
        .post(app.url("/api/apps"))
        .basic_auth("admin", Some("admin"))
        .body(r#"{"name": "y"} trailing"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
both_backends!(json_type_errors, type_errors_name_the_field);

// ---------------------------------------------------------------------------------------------
// Validation against the columns, control characters, CoreOS packages, tracks, the seeded app
// ---------------------------------------------------------------------------------------------

/// `prefix` padded with `fill` to exactly `len` characters.
fn padded(prefix: &str, fill: char, len: usize) -> String {
    let mut text = prefix.to_string();
    while text.chars().count() < len {
        text.push(fill);
    }
    text
}

/// Sets `field` (`a.b` for nested objects) of `body` to `value`.
fn set_field(body: &mut Value, field: &str, value: Value) {
    match field.split_once('.') {
        Some((outer, inner)) => {
            if !body[outer].is_object() {
                body[outer] = json!({});
            }
            body[outer][inner] = value;
        }
        None => body[field] = value,
    }
}

/// Every text field accepts its longest value and refuses one character more with a 400
/// naming it — on MariaDB too, whose `VARCHAR(n)` holds n characters (4-byte ones included):
/// each limit is at most its column, so nothing reaches the database too long (before, a
/// 256-character track was a 500 on MariaDB).
async fn text_limits_fit_the_columns(db: TestDb) {
    let t = spawn_app(db).await;
    let app_id = new_app(&t, &unique("limits")).await;
    let apps = "/api/apps".to_string();
    let groups = format!("/api/apps/{app_id}/groups");
    let channels = format!("/api/apps/{app_id}/channels");
    let packages = format!("/api/apps/{app_id}/packages");
    let bindings = format!("/api/apps/{app_id}/bindings");
    let mut n = 0;
    // (collection, field, longest, fill character, base body given a unique tag)
    type Base = fn(&str) -> Value;
    // A valid package of type "other" whose version carries the case's unique suffix.
    let other_package: Base =
        |u| json!({"type": 4, "version": format!("1.0.0-{u}"), "url": "https://dl.example/"});
    let cases: Vec<(&String, &str, usize, char, Base)> = vec![
        (&apps, "name", 50, '🦀', |u| json!({ "name": u })),
        (&apps, "description", 10_000, '🦀', |u| json!({ "name": u })),
        (&groups, "name", 50, '🦀', |u| json!({ "name": u })),
        (&groups, "track", 255, 'a', |u| json!({ "name": u })),
        (&groups, "track", 255, '🦀', |u| json!({ "name": u })),
        (
            &groups,
            "description",
            10_000,
            'é',
            |u| json!({ "name": u }),
        ),
        (&channels, "name", 25, '🦀', |u| json!({ "name": u })),
        (&channels, "color", 25, '#', |u| json!({ "name": u })),
        (
            &packages,
            "url",
            1024,
            'a',
            |u| json!({"type": 4, "version": format!("1.0.0-{u}")}),
        ),
        (&packages, "filename", 255, '🦀', other_package),
        (&packages, "description", 10_000, '🦀', other_package),
        (&packages, "hash", 128, 'A', other_package),
        (
            &packages,
            "image_repository",
            512,
            'a',
            |u| json!({"type": 2, "version": format!("1.0.0-{u}"), "url": "registry.example/team/app"}),
        ),
        (
            &packages,
            "version",
            255,
            'a',
            |_| json!({"type": 4, "url": "https://dl.example/"}),
        ),
        (&packages, "coreos_action.event", 20, 'e', other_package),
        (
            &packages,
            "coreos_action.chromeos_version",
            255,
            '🦀',
            other_package,
        ),
        (
            &packages,
            "coreos_action.metadata_signature_rsa",
            1024,
            'A',
            other_package,
        ),
        (
            &packages,
            "coreos_action.metadata_size",
            100,
            '1',
            other_package,
        ),
        (&packages, "coreos_action.deadline", 100, 'd', other_package),
        (&bindings, "match", 255, 'm', |_| json!({"kind": "generic"})),
        (
            &bindings,
            "tag_filter",
            255,
            'v',
            |u| json!({"kind": "generic", "match": u}),
        ),
        (
            &bindings,
            "secret",
            255,
            's',
            |u| json!({"kind": "generic", "match": u}),
        ),
    ];
    for (path, field, max, fill, base) in cases {
        for len in [max, max + 1] {
            n += 1;
            let tag = format!("u{n}x{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
            let mut body = base(&tag);
            let prefix = match field {
                "url" => "https://dl.example/".to_string(),
                "version" => format!("1.0.{n}-"),
                "hash" | "color" => String::new(),
                _ => tag.clone(),
            };
            let value = padded(&prefix, fill, len);
            set_field(&mut body, field, json!(value));
            let r = t.post_json(path, body.clone()).await;
            if len == max {
                let created = expect_json(r, 201).await;
                let stored = match field.split_once('.') {
                    Some((outer, inner)) => &created[outer][inner],
                    None => &created[field],
                };
                if field != "secret" {
                    assert_eq!(stored, &json!(value), "{path} {field} stored intact");
                }
            } else {
                let message = expect_error(r, 400, field).await;
                assert!(
                    message.contains(&format!("{max}")),
                    "{field}: {message} should give the limit"
                );
            }
        }
    }
    // Updates have the same limits (QA's case: a 256-character track on an existing group).
    let group = expect_json(t.post_json(&groups, json!({"name": "t256"})).await, 201).await;
    let path = format!("{groups}/{}", s(&group["id"]));
    expect_error(
        t.put_json(&path, json!({"track": "a".repeat(256)})).await,
        400,
        "track",
    )
    .await;
    let updated = expect_json(
        t.put_json(&path, json!({"track": "b".repeat(255)})).await,
        200,
    )
    .await;
    assert_eq!(updated["track"], "b".repeat(255));
    // A size is stored as its number (zero-padded text would overflow the column).
    let body = json!({"type": 4, "version": "9.9.9", "url": "https://dl.example/", "size": format!("{}7", "0".repeat(40))});
    assert_eq!(
        expect_json(t.post_json(&packages, body).await, 201).await["size"],
        "7"
    );
}
both_backends!(text_limits, text_limits_fit_the_columns);

/// NUL and other control characters are refused in names, tracks, versions, URLs and file
/// names (400 naming the field, nothing stored); descriptions may hold tabs and line breaks.
async fn control_characters_are_refused(db: TestDb) {
    let t = spawn_app(db).await;
    let app_id = new_app(&t, &unique("ctl")).await;
    let before = list(&t, "/api/apps").await.len();
    for bad in ["x\u{0}y", "x\u{1b}[31my", "x\u{7f}", "x\u{85}y", "x\ny"] {
        let groups = format!("/api/apps/{app_id}/groups");
        let channels = format!("/api/apps/{app_id}/channels");
        let bindings = format!("/api/apps/{app_id}/bindings");
        let cases = [
            ("/api/apps", json!({"name": bad}), "name"),
            (&groups, json!({"name": bad}), "name"),
            (&groups, json!({"name": "g", "track": bad}), "track"),
            (&channels, json!({"name": bad}), "name"),
            (&channels, json!({"name": "c", "color": bad}), "color"),
            (
                &bindings,
                json!({"kind": "generic", "match": "ci", "tag_filter": bad}),
                "tag_filter",
            ),
        ];
        for (path, body, field) in cases {
            expect_error(t.post_json(path, body).await, 400, field).await;
        }
        let packages = format!("/api/apps/{app_id}/packages");
        let package = json!({"type": 4, "version": "1.0.0", "url": "https://dl.example/"});
        for field in ["version", "url", "filename", "hash"] {
            let mut body = package.clone();
            body[field] = json!(format!("{}{bad}", body[field].as_str().unwrap_or("a")));
            expect_error(t.post_json(&packages, body).await, 400, field).await;
        }
    }
    expect_error(
        t.post_json("/api/apps", json!({"name": "d", "description": "a\u{0}b"}))
            .await,
        400,
        "description",
    )
    .await;
    assert_eq!(list(&t, "/api/apps").await.len(), before);
    assert!(list(&t, &format!("/api/apps/{app_id}/groups"))
        .await
        .is_empty());
    assert!(list(&t, &format!("/api/apps/{app_id}/channels"))
        .await
        .is_empty());
    assert!(list(&t, &format!("/api/apps/{app_id}/packages"))
        .await
        .is_empty());
    // Descriptions keep their layout.
    let app = expect_json(
        t.post_json(
            "/api/apps",
            json!({"name": "layout", "description": "one\n\ttwo\r\n"}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(app["description"], "one\n\ttwo\r\n");
    // Renaming is checked too.
    expect_error(
        t.put_json(&format!("/api/apps/{app_id}"), json!({"name": "x\u{0}"}))
            .await,
        400,
        "name",
    )
    .await;
}
both_backends!(control_characters, control_characters_are_refused);

/// CoreOS packages carry what update_engine checks (filename, size, base64 SHA-1 hash, base64
/// SHA-256 in the postinstall action, an http(s) codebase ending in '/'); otherwise 400 naming
/// the field and nothing stored, so no machine is handed an unusable update.
async fn coreos_packages_are_complete(db: TestDb) {
    let t = spawn_app(db).await;
    let packages = format!("/api/apps/{COREOS_APP}/packages");
    let seed: Value = serde_json::from_str(SEED_PACKAGE).expect("seed package");
    // QA's case.
    expect_error(
        t.post_json(
            &packages,
            json!({"type": 1, "version": "9999.0.0", "url": "http://x/"}),
        )
        .await,
        400,
        "filename",
    )
    .await;
    let hex_sha1 = "f991663d6cefd4e75f98a1da192a236cae578f79";
    let hex_sha256 = "7120732834df58a7abf5a42d539e7b80adacab291a8dd1dd29d329147f1dc958";
    for (field, value, needle) in [
        ("filename", json!(""), "filename"),
        ("size", Value::Null, "size"),
        ("size", json!("0"), "size"),
        ("hash", Value::Null, "hash"),
        ("hash", json!("s&<\""), "hash"),
        ("hash", json!(hex_sha1), "looks like hex"),
        ("coreos_action", Value::Null, "coreos_action.sha256"),
        (
            "coreos_action",
            json!({"sha256": "s&<\""}),
            "coreos_action.sha256",
        ),
        (
            "coreos_action",
            json!({"sha256": hex_sha256}),
            "looks like hex",
        ),
        (
            "coreos_action",
            json!({"sha256": "+ZFmPWzv1OdfmKHaGSojbK5Xj3k="}),
            "32-byte",
        ),
        ("url", json!("javascript:alert(1)"), "url"),
        (
            "url",
            json!("https://update.example/update.gz"),
            "end with '/'",
        ),
        ("type", json!(4), "type"),
    ] {
        let mut body = seed.clone();
        body[field] = value.clone();
        expect_error(t.post_json(&packages, body).await, 400, needle).await;
    }
    assert!(list(&t, &packages).await.is_empty());
    // Any type: digests are base64, URLs http(s).
    let app_id = new_app(&t, &unique("types")).await;
    let other = format!("/api/apps/{app_id}/packages");
    for (field, value) in [
        ("hash", json!("s&<\"")),
        ("url", json!("javascript:alert(1)")),
        ("coreos_action", json!({"sha256": hex_sha256})),
    ] {
        let mut body = json!({"type": 4, "version": "1.0.0", "url": "https://dl.example/"});
        body[field] = value;
        let field = if field == "coreos_action" {
            "coreos_action.sha256"
        } else {
            field
        };
        expect_error(t.post_json(&other, body).await, 400, field).await;
    }
    assert!(list(&t, &other).await.is_empty());

    // The complete package is accepted, and an Omaha check gets every attribute filled in.
    let created = expect_json(t.post_json(&packages, seed.clone()).await, 201).await;
    let id = s(&created["id"]).to_string();
    // A partial update keeps (and is checked with) the stored action.
    let updated = expect_json(
        t.put_json(&format!("{packages}/{id}"), json!({"description": "kept"}))
            .await,
        200,
    )
    .await;
    assert_eq!(updated["coreos_action"], created["coreos_action"]);
    expect_error(
        t.put_json(&format!("{packages}/{id}"), json!({"size": "0"}))
            .await,
        400,
        "size",
    )
    .await;
    let r = t
        .put_json(
            &format!("/api/apps/{COREOS_APP}/channels/{STABLE_CHANNEL}"),
            json!({"package_id": id}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let (status, xml) = t
        .omaha(&check_xml(
            COREOS_APP,
            "stable",
            "m-complete",
            "1000.0.0",
            PING_CHECK,
        ))
        .await;
    assert_eq!(status, 200);
    for attribute in [
        r#"name="update.gz""#,
        r#"hash="+ZFmPWzv1OdfmKHaGSojbK5Xj3k=""#,
        r#"size="212555113""#,
        r#"sha256="cSBzKN9Yp6v1pC1Tm3nuAs2rsyaNqR3p0ylH8dyVg1g=""#,
    ] {
        assert!(xml.contains(attribute), "{attribute} missing: {xml}");
    }
}
both_backends!(coreos_packages, coreos_packages_are_complete);

/// A group's track may not be another group's id: Omaha resolves an id first, so the group
/// would be unreachable by its track. 409 on create and update, braces and case included.
async fn tracks_cannot_name_another_group(db: TestDb) {
    let t = spawn_app(db).await;
    let app_id = new_app(&t, &unique("tracks")).await;
    let groups = format!("/api/apps/{app_id}/groups");
    let a = expect_json(t.post_json(&groups, json!({"name": "a"})).await, 201).await;
    let a_id = s(&a["id"]).to_string();
    assert_eq!(a["track"], a_id.as_str(), "the default track is the id");
    for track in [a_id.clone(), format!("{{{}}}", a_id.to_uppercase())] {
        expect_error(
            t.post_json(&groups, json!({"name": "b", "track": track}))
                .await,
            409,
            "another group",
        )
        .await;
    }
    let b = expect_json(
        t.post_json(&groups, json!({"name": "b", "track": "bee"}))
            .await,
        201,
    )
    .await;
    let b_path = format!("{groups}/{}", s(&b["id"]));
    expect_error(
        t.put_json(&b_path, json!({"track": a_id.to_uppercase()}))
            .await,
        409,
        "another group",
    )
    .await;
    assert_eq!(t.get_json(&b_path).await["track"], "bee");
    // Its own id is fine (stored in the form Omaha looks up).
    let b_id = s(&b["id"]).to_string();
    let own = expect_json(
        t.put_json(
            &b_path,
            json!({"track": format!("{{{}}}", b_id.to_uppercase())}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(own["track"], b_id.as_str());
    assert_eq!(list(&t, &groups).await.len(), 2);
    // The CoreOS application's named tracks always go to its seeded groups, even when the
    // seeded group's own track was changed.
    expect_json(
        t.put_json(
            &format!("/api/apps/{COREOS_APP}/groups/{STABLE_GROUP}"),
            json!({"track": "stable-old"}),
        )
        .await,
        200,
    )
    .await;
    expect_error(
        t.post_json(
            &format!("/api/apps/{COREOS_APP}/groups"),
            json!({"name": "second stable", "track": "stable"}),
        )
        .await,
        409,
        "seeded group",
    )
    .await;
}
both_backends!(tracks_of_other_groups, tracks_cannot_name_another_group);

/// The seeded CoreOS application is re-created at every start: deleting it is refused (409)
/// instead of answering 204 for a deletion that does not last.
async fn the_coreos_application_cannot_be_deleted(db: TestDb) {
    let t = spawn_app(db).await;
    expect_error(
        t.delete(&format!("/api/apps/{COREOS_APP}")).await,
        409,
        "cannot be deleted",
    )
    .await;
    expect_error(
        t.delete(&format!("/api/apps/{}", COREOS_APP.to_uppercase()))
            .await,
        409,
        "CoreOS",
    )
    .await;
    assert_eq!(
        t.get_json(&format!("/api/apps/{COREOS_APP}")).await["name"],
        "CoreOS"
    );
    assert_eq!(
        list(&t, &format!("/api/apps/{COREOS_APP}/groups"))
            .await
            .len(),
        3
    );
    // Other applications are deleted as before.
    let app_id = new_app(&t, &unique("gone")).await;
    assert_eq!(t.delete(&format!("/api/apps/{app_id}")).await.status(), 204);
}
both_backends!(coreos_app_delete, the_coreos_application_cannot_be_deleted);
