//! Release sources end to end over real HTTP: bindings, Docker Hub webhooks (with callback and
//! digest lookups), registry notifications (canned and from a real `docker-registry` after a real
//! `docker push`), generic signed webhooks, the promotion rule, and hostile input. Every test that
//! touches the database runs on SQLite and MariaDB.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{check_xml, first_app, spawn_app_with, AppOptions, TestApp, TestDb, PING_CHECK};
use serde_json::{json, Value};
use warp::Filter;

const SECRET: &str = "hub-secret-0123456789abcdef";
const REGISTRY_TOKEN: &str = "registry-token-0123456789";

fn options() -> AppOptions {
    AppOptions {
        extra_args: vec![
            "--webhook-secret".into(),
            SECRET.into(),
            "--generic-webhook-secret".into(),
            SECRET.into(),
            "--registry-token".into(),
            REGISTRY_TOKEN.into(),
            "--callback-allow-host".into(),
            "127.0.0.1".into(),
            "--dockerhub-registry".into(),
            "off".into(),
        ],
        ..AppOptions::default()
    }
}

/// An application with an empty channel `main` and a group following it (no policy limits).
async fn setup_app(app: &TestApp, name: &str) -> (String, String, String) {
    let r = app.post_json("/api/apps", json!({"name": name})).await;
    assert_eq!(r.status(), 201, "create app");
    let app_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .post_json(
            &format!("/api/apps/{app_id}/channels"),
            json!({"name": "main", "color": "#000"}),
        )
        .await;
    let channel_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .post_json(
            &format!("/api/apps/{app_id}/groups"),
            json!({"name": "prod", "channel_id": channel_id, "policy_updates_enabled": true,
                   "policy_safe_mode": false, "policy_max_updates_per_period": 1000,
                   "policy_period_interval": "15 minutes", "policy_update_timeout": "60 minutes",
                   "track": format!("{name}-prod")}),
        )
        .await;
    assert_eq!(r.status(), 201, "create group");
    let group_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    (app_id, channel_id, group_id)
}

async fn bind(app: &TestApp, app_id: &str, body: Value) -> Value {
    let r = app
        .post_json(&format!("/api/apps/{app_id}/bindings"), body)
        .await;
    let status = r.status();
    let value: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{value}");
    value
}

async fn packages(app: &TestApp, app_id: &str) -> Vec<Value> {
    app.get_json(&format!("/api/apps/{app_id}/packages"))
        .await
        .as_array()
        .unwrap()
        .clone()
}

async fn channel_version(app: &TestApp, app_id: &str, channel_id: &str) -> Option<String> {
    let ch = app
        .get_json(&format!("/api/apps/{app_id}/channels/{channel_id}"))
        .await;
    ch["package"]["version"].as_str().map(str::to_string)
}

/// An Omaha check from a fresh machine on the group's track; returns the offered version.
async fn omaha_offer(app: &TestApp, app_id: &str, track: &str) -> Option<String> {
    let machine = uuid::Uuid::new_v4().to_string();
    let (status, body) = app
        .omaha(&check_xml(app_id, track, &machine, "0.0.1", PING_CHECK))
        .await;
    assert_eq!(status, 200, "{body}");
    let (app_status, _uc, version) = first_app(&body);
    assert_eq!(app_status, "ok", "{body}");
    version
}

async fn post_raw(
    app: &TestApp,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.expect("post")
}

/// POSTs `body` signed (X-Hub-Signature-256) with the server-wide secret.
async fn post_signed(app: &TestApp, path: &str, body: Vec<u8>) -> reqwest::Response {
    let signature = sign(&body, SECRET);
    post_raw(app, path, body, &[("x-hub-signature-256", signature)]).await
}

fn hub_payload(repo: &str, tag: &str, callback: &str, pushed_at: f64) -> Vec<u8> {
    let mut v: Value =
        serde_json::from_slice(include_bytes!("../fixtures/webhooks/dockerhub-push.json")).unwrap();
    v["repository"]["repo_name"] = json!(repo);
    v["push_data"]["tag"] = json!(tag);
    v["push_data"]["pushed_at"] = json!(pushed_at);
    v["callback_url"] = json!(callback);
    serde_json::to_vec(&v).unwrap()
}

/// A real HTTP server recording JSON bodies POSTed to it.
async fn recorder() -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let store = seen.clone();
    let route = warp::post().and(warp::body::json()).map(move |v: Value| {
        store.lock().unwrap().push(v);
        warp::reply()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (addr, seen)
}

async fn wait_for<F: Fn() -> bool>(what: &str, check: F) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn sign(body: &[u8], secret: &str) -> String {
    rollbridge::sources::generic::sign(secret.as_bytes(), body)
}

// ---------------------------------------------------------------------------

async fn binding_crud_and_validation(db: TestDb) {
    let app = spawn_app_with(db, options()).await;
    let (app_id, channel_id, _) = setup_app(&app, "web").await;
    let b = bind(
        &app,
        &app_id,
        json!({"kind": "dockerhub", "match": "docker.io/Acme/Web", "channel_id": channel_id,
               "tag_filter": ">=1.0.0 <2.0.0", "secret": "binding-secret-0123456789"}),
    )
    .await;
    assert_eq!(b["match"], "acme/web");
    assert_eq!(b["has_secret"], true);
    assert!(
        b.get("secret").is_none(),
        "secret must never be returned: {b}"
    );
    let id = b["id"].as_str().unwrap();
    let got = app
        .get_json(&format!("/api/apps/{app_id}/bindings/{id}"))
        .await;
    assert_eq!(got, b);
    // Update keeps the secret unless given; "" removes it.
    let r = app
        .put_json(
            &format!("/api/apps/{app_id}/bindings/{id}"),
            json!({"tag_filter": "v*"}),
        )
        .await;
    let updated: Value = r.json().await.unwrap();
    assert_eq!(updated["tag_filter"], "v*");
    assert_eq!(updated["has_secret"], true);
    let r = app
        .put_json(
            &format!("/api/apps/{app_id}/bindings/{id}"),
            json!({"secret": ""}),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["has_secret"], false);
    // Duplicates and bad input.
    let r = app
        .post_json(
            &format!("/api/apps/{app_id}/bindings"),
            json!({"kind": "dockerhub", "match": "acme/web"}),
        )
        .await;
    assert_eq!(r.status(), 409);
    for (body, field) in [
        (json!({"kind": "ftp", "match": "x"}), "kind"),
        (json!({"kind": "dockerhub", "match": "a/b/c"}), "match"),
        (
            json!({"kind": "generic", "match": "ci", "tag_filter": ">=x"}),
            "tag_filter",
        ),
        (
            json!({"kind": "generic", "match": "ci", "secret": "short"}),
            "secret",
        ),
        (
            json!({"kind": "generic", "match": "ci", "channel_id": "not-a-uuid"}),
            "channel_id",
        ),
        (
            json!({"kind": "generic", "match": "ci", "surprise": 1}),
            "surprise",
        ),
    ] {
        let r = app
            .post_json(&format!("/api/apps/{app_id}/bindings"), body.clone())
            .await;
        assert_eq!(r.status(), 400, "{body}");
        let msg = r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains(field), "{msg} should name {field}");
    }
    // A channel of another application is refused.
    let (_, other_channel, _) = setup_app(&app, "other").await;
    let r = app
        .post_json(
            &format!("/api/apps/{app_id}/bindings"),
            json!({"kind": "generic", "match": "ci", "channel_id": other_channel}),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        app.get_json(&format!("/api/apps/{app_id}/bindings"))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = app
        .delete(&format!("/api/apps/{app_id}/bindings/{id}"))
        .await;
    assert_eq!(r.status(), 204);
    let r = app.get(&format!("/api/apps/{app_id}/bindings/{id}")).await;
    assert_eq!(r.status(), 404);
    // Auth required.
    let r = app
        .client
        .get(app.url(&format!("/api/apps/{app_id}/bindings")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
both_backends!(binding_crud, binding_crud_and_validation);

/// The Docker Hub payload of gopdater's README: accepted, package created, channel promoted, an
/// Omaha check granted it, the callback told `success`; a replay changes nothing; a wrong secret
/// is a 404 that stores nothing.
async fn dockerhub_end_to_end(db: TestDb) {
    let app = spawn_app_with(db, options()).await;
    let (app_id, channel_id, _) = setup_app(&app, "portfolio").await;
    bind(
        &app,
        &app_id,
        json!({"kind": "dockerhub", "match": "notarock/portfolio-ng", "channel_id": channel_id}),
    )
    .await;
    let (cb_addr, callbacks) = recorder().await;
    let callback = format!("http://{cb_addr}/u/notarock/portfolio-ng/hook/abc/");
    let body = hub_payload(
        "notarock/portfolio-ng",
        "v1.2.0",
        &callback,
        1_795_600_000.0,
    );

    let wrong = post_raw(
        &app,
        "/v1.0/hooks/dockerhub/not-the-secret-xxxxxxxx",
        body.clone(),
        &[],
    )
    .await;
    assert_eq!(wrong.status(), 404);
    assert!(packages(&app, &app_id).await.is_empty());

    let r = post_raw(
        &app,
        &format!("/v1.0/hooks/dockerhub/{SECRET}"),
        body.clone(),
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["outcome"], "promoted", "{report}");
    let pkgs = packages(&app, &app_id).await;
    assert_eq!(pkgs.len(), 1);
    assert_eq!(pkgs[0]["version"], "1.2.0");
    assert_eq!(pkgs[0]["type"], 2);
    assert_eq!(pkgs[0]["url"], "docker.io/notarock/portfolio-ng");
    assert_eq!(pkgs[0]["filename"], "v1.2.0");
    // Deliveries and packages get time-ordered (v7) ids: a batch of inserts shares index pages.
    for id in [&report["delivery_id"], &pkgs[0]["id"]] {
        let id = uuid::Uuid::parse_str(id.as_str().unwrap_or_default()).expect("a UUID");
        assert_eq!(id.get_version_num(), 7, "{id} should be time-ordered");
    }
    assert_eq!(
        channel_version(&app, &app_id, &channel_id).await.as_deref(),
        Some("1.2.0")
    );
    assert_eq!(
        omaha_offer(&app, &app_id, "portfolio-prod")
            .await
            .as_deref(),
        Some("1.2.0")
    );
    wait_for("the callback", || !callbacks.lock().unwrap().is_empty()).await;
    let cb = callbacks.lock().unwrap()[0].clone();
    assert_eq!(cb["state"], "success");
    assert_eq!(cb["context"], "rollbridge");

    // The same delivery again is a replay.
    let r = post_raw(&app, &format!("/v1.0/hooks/dockerhub/{SECRET}"), body, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "duplicate");
    assert_eq!(packages(&app, &app_id).await.len(), 1);

    // The fixture verbatim (tag `latest`, callback host not allow-listed): accepted, not called.
    let fixture = include_bytes!("../fixtures/webhooks/dockerhub-push.json").to_vec();
    let r = post_raw(
        &app,
        &format!("/v1.0/hooks/dockerhub/{SECRET}"),
        fixture,
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["outcome"], "promoted", "{report}");
    let pkgs = packages(&app, &app_id).await;
    assert_eq!(pkgs.len(), 2);
    let generated = pkgs
        .iter()
        .find(|p| p["filename"] == "latest")
        .expect("latest package");
    assert!(
        generated["version"]
            .as_str()
            .unwrap()
            .starts_with("1.2.1+latest."),
        "{generated}"
    );

    // Hostile bodies with the right secret: clear 400s, nothing stored.
    for bad in [
        &b"{"[..],
        b"[]",
        br#"{"push_data":{"tag":"x y"},"repository":{"repo_name":"a/b"}}"#,
    ] {
        let r = post_raw(
            &app,
            &format!("/v1.0/hooks/dockerhub/{SECRET}"),
            bad.to_vec(),
            &[],
        )
        .await;
        assert_eq!(r.status(), 400);
        assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    }
    let huge = vec![b' '; 2 * 1024 * 1024];
    let r = post_raw(&app, &format!("/v1.0/hooks/dockerhub/{SECRET}"), huge, &[]).await;
    assert_eq!(r.status(), 413);
    // The unread rest of the body makes the connection unusable: the answer says so.
    assert_eq!(r.headers()["connection"], "close");
    assert_eq!(packages(&app, &app_id).await.len(), 2);

    // Counted by ingest outcome, as every source is (not by the callback's success/failure):
    // two promotions and the replay; refused requests are no releases.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        release_count(&metrics, "dockerhub", "promoted"),
        2,
        "{metrics}"
    );
    assert_eq!(
        release_count(&metrics, "dockerhub", "duplicate"),
        1,
        "{metrics}"
    );
    for callback_state in ["success", "failure", "error"] {
        assert_eq!(
            release_count(&metrics, "dockerhub", callback_state),
            0,
            "{metrics}"
        );
    }
}
both_backends!(dockerhub, dockerhub_end_to_end);

/// `rollbridge_releases_total{source,outcome}` from Prometheus text (0 when absent).
fn release_count(metrics: &str, source: &str, outcome: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("rollbridge_releases_total{"))
        .filter(|l| {
            l.contains(&format!(r#"source="{source}""#))
                && l.contains(&format!(r#"outcome="{outcome}""#))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A binding's own secret authenticates only its repository; unbound repositories are ignored
/// (callback `failure`).
async fn dockerhub_binding_secret(db: TestDb) {
    let app = spawn_app_with(db, options()).await;
    let (app_id, channel_id, _) = setup_app(&app, "svc").await;
    let own = "binding-secret-abcdefghijkl";
    bind(
        &app,
        &app_id,
        json!({"kind": "dockerhub", "match": "acme/svc", "channel_id": channel_id, "secret": own}),
    )
    .await;
    let (cb_addr, callbacks) = recorder().await;
    let body = hub_payload("acme/svc", "2.0.0", &format!("http://{cb_addr}/cb"), 1.0);
    let r = post_raw(&app, &format!("/v1.0/hooks/dockerhub/{own}"), body, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        channel_version(&app, &app_id, &channel_id).await.as_deref(),
        Some("2.0.0")
    );
    // The binding secret does not open other repositories.
    let other = hub_payload("acme/other", "2.0.0", &format!("http://{cb_addr}/cb"), 2.0);
    let r = post_raw(
        &app,
        &format!("/v1.0/hooks/dockerhub/{own}"),
        other.clone(),
        &[],
    )
    .await;
    assert_eq!(r.status(), 404);
    // With the server secret an unbound repository is accepted but ignored.
    let r = post_raw(&app, &format!("/v1.0/hooks/dockerhub/{SECRET}"), other, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "ignored");
    wait_for("two callbacks", || callbacks.lock().unwrap().len() == 2).await;
    let states: Vec<String> = callbacks
        .lock()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap().to_string())
        .collect();
    assert!(
        states.contains(&"success".to_string()) && states.contains(&"failure".to_string()),
        "{states:?}"
    );
}
both_backends!(dockerhub_secret, dockerhub_binding_secret);

/// A registry speaking the v2 API for digest lookups (answers HEAD manifests with a digest the
/// test controls, behind Docker Hub's bearer-token challenge).
async fn fake_registry(digest: Arc<Mutex<String>>) -> SocketAddr {
    let token = warp::path!("token").map(|| warp::reply::json(&json!({"token": "t0k"})));
    let addr_cell: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let cell = addr_cell.clone();
    let manifests = warp::head()
        .and(warp::path!("v2" / String / String / "manifests" / String))
        .and(warp::header::optional::<String>("authorization"))
        .map(move |_ns: String, _name: String, _tag: String, auth: Option<String>| {
            let addr = cell.lock().unwrap().expect("address set");
            if auth.as_deref() != Some("Bearer t0k") {
                return warp::http::Response::builder()
                    .status(401)
                    .header(
                        "www-authenticate",
                        format!(r#"Bearer realm="http://{addr}/token",service="registry.test",scope="repository:x:pull""#),
                    )
                    .body(String::new())
                    .unwrap();
            }
            warp::http::Response::builder()
                .status(200)
                .header("docker-content-digest", digest.lock().unwrap().clone())
                .body(String::new())
                .unwrap()
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    *addr_cell.lock().unwrap() = Some(addr);
    tokio::spawn(warp::serve(token.or(manifests)).incoming(listener).run());
    addr
}

/// `latest` pushed again: a new package only when the registry reports another digest.
async fn dockerhub_mutable_tag_digest(db: TestDb) {
    let digest = Arc::new(Mutex::new(format!("sha256:{}", "a".repeat(64))));
    let registry = fake_registry(digest.clone()).await;
    let mut opts = options();
    let pos = opts.extra_args.iter().position(|a| a == "off").unwrap();
    opts.extra_args[pos] = format!("http://{registry}");
    let app = spawn_app_with(db, opts).await;
    let (app_id, channel_id, _) = setup_app(&app, "latest").await;
    bind(
        &app,
        &app_id,
        json!({"kind": "dockerhub", "match": "acme/edge", "channel_id": channel_id}),
    )
    .await;
    let push = |at: f64| hub_payload("acme/edge", "latest", "", at);
    let r = post_raw(
        &app,
        &format!("/v1.0/hooks/dockerhub/{SECRET}"),
        push(1.0),
        &[],
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "promoted");
    let first = channel_version(&app, &app_id, &channel_id).await.unwrap();
    assert_eq!(first, "0.0.1+latest.aaaaaaaaaaaa");
    // Pushed again, same content.
    let r = post_raw(
        &app,
        &format!("/v1.0/hooks/dockerhub/{SECRET}"),
        push(2.0),
        &[],
    )
    .await;
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["outcome"], "existing", "{report}");
    assert_eq!(packages(&app, &app_id).await.len(), 1);
    // New content.
    *digest.lock().unwrap() = format!("sha256:{}", "b".repeat(64));
    let r = post_raw(
        &app,
        &format!("/v1.0/hooks/dockerhub/{SECRET}"),
        push(3.0),
        &[],
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "promoted");
    let pkgs = packages(&app, &app_id).await;
    assert_eq!(pkgs.len(), 2);
    assert_eq!(
        channel_version(&app, &app_id, &channel_id).await.as_deref(),
        Some("0.0.2+latest.bbbbbbbbbbbb")
    );
    let newest = pkgs
        .iter()
        .find(|p| p["version"] == "0.0.2+latest.bbbbbbbbbbbb")
        .unwrap();
    assert_eq!(newest["image_digest"], format!("sha256:{}", "b".repeat(64)));
    assert_eq!(
        newest["filename"],
        format!("latest@sha256:{}", "b".repeat(64))
    );
}
both_backends!(dockerhub_digest, dockerhub_mutable_tag_digest);

/// Registry notifications: bearer token, manifest pushes only, dedupe by digest, promotion.
async fn registry_canned(db: TestDb) {
    let app = spawn_app_with(db, options()).await;
    let (app_id, channel_id, _) = setup_app(&app, "reg").await;
    bind(
        &app,
        &app_id,
        json!({"kind": "registry", "match": "127.0.0.1:5000/demo/web", "channel_id": channel_id}),
    )
    .await;
    let body = include_bytes!("../fixtures/webhooks/registry-push.json").to_vec();
    let ctype = (
        "content-type",
        "application/vnd.docker.distribution.events.v1+json".to_string(),
    );
    let r = post_raw(
        &app,
        "/v1.0/hooks/registry",
        body.clone(),
        std::slice::from_ref(&ctype),
    )
    .await;
    assert_eq!(r.status(), 401);
    let r = post_raw(
        &app,
        "/v1.0/hooks/registry",
        body.clone(),
        &[
            ctype.clone(),
            ("authorization", "Bearer wrong-token-000000000".into()),
        ],
    )
    .await;
    assert_eq!(r.status(), 401);
    assert!(packages(&app, &app_id).await.is_empty());
    let auth = ("authorization", format!("Bearer {REGISTRY_TOKEN}"));
    let r = post_raw(
        &app,
        "/v1.0/hooks/registry",
        body.clone(),
        &[ctype.clone(), auth.clone()],
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 1, "{v}");
    assert_eq!(v["skipped"], 2, "{v}");
    assert_eq!(
        channel_version(&app, &app_id, &channel_id).await.as_deref(),
        Some("1.1.0")
    );
    assert_eq!(
        omaha_offer(&app, &app_id, "reg-prod").await.as_deref(),
        Some("1.1.0")
    );
    let r = post_raw(
        &app,
        "/v1.0/hooks/registry",
        body,
        &[ctype.clone(), auth.clone()],
    )
    .await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["releases"][0]["outcome"],
        "duplicate"
    );
    assert_eq!(packages(&app, &app_id).await.len(), 1);
    // Wrong media type: 415. A malformed envelope from the authenticated registry is acknowledged
    // (the registry would retry it forever) with the error in the body.
    let r = post_raw(
        &app,
        "/v1.0/hooks/registry",
        b"{}".to_vec(),
        &[("content-type", "text/plain".into()), auth.clone()],
    )
    .await;
    assert_eq!(r.status(), 415);
    let r = post_raw(
        &app,
        "/v1.0/hooks/registry",
        b"{\"events\":7}".to_vec(),
        &[ctype, auth],
    )
    .await;
    assert_eq!(r.status(), 202);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    // API tokens work too (the registry's headers may carry one).
    assert_eq!(packages(&app, &app_id).await.len(), 1);
}
both_backends!(registry, registry_canned);

/// One registry event, as distribution sends it.
fn registry_event(host: &str, repository: &str, tag: &str, digest: &str) -> Value {
    json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "timestamp": "2026-12-05T10:00:00Z",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "size": 528, "digest": digest, "length": 528,
            "repository": repository, "tag": tag,
            "url": format!("https://{host}/v2/{repository}/manifests/{digest}")
        },
        "request": {"id": "r1", "addr": "10.0.0.1", "host": host, "method": "PUT", "useragent": "docker/27"},
        "actor": {"name": "ci"},
        "source": {"addr": "registry:5000"}
    })
}

async fn post_registry(app: &TestApp, events: Vec<Value>) -> (u16, Value) {
    let r = post_raw(
        app,
        "/v1.0/hooks/registry",
        serde_json::to_vec(&json!({ "events": events })).unwrap(),
        &[
            (
                "content-type",
                "application/vnd.docker.distribution.events.v1+json".to_string(),
            ),
            ("authorization", format!("Bearer {REGISTRY_TOKEN}")),
        ],
    )
    .await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Long repository names: the delivery key (`repository:tag@digest`) outgrows MySQL's
/// `VARCHAR(255)` and is stored hashed, so the release is registered once and its replay is a
/// duplicate (before: 503 on MariaDB, retried by the registry forever). Invalid digests and
/// names beyond distribution's 255 characters are refused in the 200 answer, nothing stored.
async fn registry_long_names_and_bad_digests(db: TestDb) {
    let app = spawn_app_with(db, options()).await;
    let (app_id, channel_id, _) = setup_app(&app, "long").await;
    let host = "registry.example.com:5000";
    let repository = format!("team/{}", "a".repeat(125));
    assert_eq!(repository.len(), 130);
    bind(
        &app,
        &app_id,
        json!({"kind": "registry", "match": format!("{host}/{repository}"), "channel_id": channel_id,
               "allow_prerelease": true}),
    )
    .await;
    let tag = "1.24.0-build.20261205.abcdef0123456789";
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let event = registry_event(host, &repository, tag, &digest);
    let (status, v) = post_registry(&app, vec![event.clone()]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["releases"][0]["outcome"], "promoted", "{v}");
    // The registry retries (a new event id, the same push): one package.
    let mut again = event.clone();
    again["id"] = json!("another-event-id");
    let (status, v) = post_registry(&app, vec![again]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["releases"][0]["outcome"], "duplicate", "{v}");
    assert_eq!(packages(&app, &app_id).await.len(), 1);
    assert_eq!(
        channel_version(&app, &app_id, &channel_id).await.as_deref(),
        Some(tag)
    );

    // Invalid digests are refused like the generic webhook refuses them.
    let (status, v) = post_registry(
        &app,
        vec![registry_event(host, &repository, "1.25.0", "sha256:zz")],
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["accepted"], 0, "{v}");
    let rejected = v["rejected"][0].as_str().unwrap_or_default();
    assert!(rejected.contains("sha256:<64 hex>"), "{v}");
    // Longer than 255 characters with the host: refused, answered 200 (no endless retries).
    let too_long = format!("team/{}", "b".repeat(255 - host.len() - 5));
    let (status, v) = post_registry(
        &app,
        vec![registry_event(host, &too_long, "1.0.0", &digest)],
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v["rejected"][0]
            .as_str()
            .unwrap_or_default()
            .contains("longer than 255"),
        "{v}"
    );
    assert_eq!(packages(&app, &app_id).await.len(), 1);
}
both_backends!(registry_long, registry_long_names_and_bad_digests);

/// Generic webhooks: HMAC signature, replays, explicit app/channel, promotion rule, filters.
async fn generic_end_to_end(db: TestDb) {
    let app = spawn_app_with(db, options()).await;
    let (app_id, channel_id, _) = setup_app(&app, "gen").await;
    let hook_secret = "generic-binding-secret-000";
    bind(
        &app,
        &app_id,
        json!({"kind": "generic", "match": "ci", "channel_id": channel_id, "secret": hook_secret,
               "tag_filter": ">=1.0.0 <3.0.0"}),
    )
    .await;
    let send = |body: Value, secret: &'static str, delivery: &'static str| {
        let bytes = serde_json::to_vec(&body).unwrap();
        let sig = sign(&bytes, secret);
        let app = &app;
        async move {
            post_raw(
                app,
                "/v1.0/hooks/generic/ci",
                bytes,
                &[
                    ("x-hub-signature-256", sig),
                    ("x-github-delivery", delivery.to_string()),
                    ("content-type", "application/json".into()),
                ],
            )
            .await
        }
    };
    let release =
        json!({"app": app_id, "version": "1.1.0", "image": "127.0.0.1:5000/demo/web:1.1.0"});
    // Unsigned / wrongly signed: 401, nothing stored.
    let r = post_raw(
        &app,
        "/v1.0/hooks/generic/ci",
        serde_json::to_vec(&release).unwrap(),
        &[],
    )
    .await;
    assert_eq!(r.status(), 401);
    let r = send(release.clone(), "generic-binding-secret-001", "d0").await;
    assert_eq!(r.status(), 401);
    // The server-wide secret does not override a binding's own.
    let r = send(release.clone(), SECRET, "d0").await;
    assert_eq!(r.status(), 401);
    assert!(packages(&app, &app_id).await.is_empty());

    let r = send(release.clone(), hook_secret, "d1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "promoted");
    assert_eq!(
        omaha_offer(&app, &app_id, "gen-prod").await.as_deref(),
        Some("1.1.0")
    );
    // A replay of delivery d1 is deduplicated...
    let r = send(release.clone(), hook_secret, "d1").await;
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "duplicate");
    assert_eq!(packages(&app, &app_id).await.len(), 1);
    // ...but the same id with another body is another delivery (see `generic_replays`).
    let r = send(
        json!({"app": app_id, "version": "1.0.9", "image": "127.0.0.1:5000/demo/web:1.0.9"}),
        hook_secret,
        "d1",
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "created");
    assert_eq!(packages(&app, &app_id).await.len(), 2);
    // An older release registers without moving the channel.
    let r = send(
        json!({"version": "1.0.5", "image": "127.0.0.1:5000/demo/web:1.0.5"}),
        hook_secret,
        "d2",
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["outcome"], "created", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("not promoted"),
        "{v}"
    );
    assert_eq!(
        channel_version(&app, &app_id, &channel_id).await.as_deref(),
        Some("1.1.0")
    );
    // Outside the binding's range: ignored, nothing stored.
    let r = send(
        json!({"version": "3.0.0", "image": "127.0.0.1:5000/demo/web:3.0.0"}),
        hook_secret,
        "d3",
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "ignored");
    // Pre-release not allowed by the binding.
    let r = send(
        json!({"version": "2.0.0-rc.1", "image": "127.0.0.1:5000/demo/web:2.0.0-rc.1"}),
        hook_secret,
        "d4",
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "ignored");
    assert_eq!(packages(&app, &app_id).await.len(), 3);
    // Another application than the binding's: refused.
    let (other_app, _, _) = setup_app(&app, "gen2").await;
    let r = send(
        json!({"app": other_app, "version": "2.0.0", "image": "x/y:2.0.0"}),
        hook_secret,
        "d5",
    )
    .await;
    assert_eq!(r.status(), 422);
    assert!(packages(&app, &other_app).await.is_empty());
    // Bad bodies, correctly signed: 400 naming the problem.
    for (body, needle) in [
        (json!({"version": "2.0.0"}), "image or url"),
        (
            json!({"version": "2.0.0", "url": "file:///etc/passwd"}),
            "url",
        ),
        (
            json!({"version": "2.0.0", "image": "a/b", "digest": "sha256:xyz"}),
            "digest",
        ),
    ] {
        let r = send(body, hook_secret, "d6").await;
        assert_eq!(r.status(), 400);
        let msg = r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains(needle), "{msg}");
    }
    // A non-semver version does not pass a semver range filter.
    let r = send(
        json!({"version": "nightly", "url": "https://dl.example/app/app.tgz"}),
        hook_secret,
        "d7",
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "ignored");
    assert_eq!(packages(&app, &app_id).await.len(), 3);
}
both_backends!(generic, generic_end_to_end);

/// POSTs `body` to generic webhook `name`, signed with the server-wide secret, with a delivery
/// id in `header`. Returns (status, JSON body).
async fn send_generic(
    app: &TestApp,
    name: &str,
    body: &Value,
    header: &str,
    delivery: &str,
) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let sig = sign(&bytes, SECRET);
    let r = post_raw(
        app,
        &format!("/v1.0/hooks/generic/{name}"),
        bytes,
        &[
            ("x-hub-signature-256", sig),
            (header, delivery.to_string()),
            ("content-type", "application/json".into()),
        ],
    )
    .await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// A delivery id is no identity on its own: every generic webhook name shares the id space and
/// proxies set `X-Request-Id`. A replay is the same id, the same webhook and the same body;
/// anything else is processed, never answered with another delivery's outcome.
async fn generic_replays_need_the_same_name_and_body(db: TestDb) {
    let app = spawn_app_with(db, options()).await;
    let (app_id, _, _) = setup_app(&app, "replays").await;
    let image = |v: &str| json!({"app": app_id, "version": v, "image": format!("127.0.0.1:5000/demo/web:{v}")});
    for header in ["x-github-delivery", "x-delivery-id", "x-request-id"] {
        let id = format!("{header}-1");
        let base = match header {
            "x-github-delivery" => 1,
            "x-delivery-id" => 2,
            _ => 3,
        };
        let first = image(&format!("{base}.0.0"));
        let (status, v) = send_generic(&app, "ci", &first, header, &id).await;
        assert_eq!(
            (status, v["outcome"].as_str()),
            (200, Some("created")),
            "{v}"
        );
        // Same id, another webhook name, another (correctly signed) release.
        let (status, v) =
            send_generic(&app, "ci5", &image(&format!("{base}.1.0")), header, &id).await;
        assert_eq!(
            (status, v["outcome"].as_str()),
            (200, Some("created")),
            "{v}"
        );
        // Same id and name, another body.
        let (status, v) =
            send_generic(&app, "ci", &image(&format!("{base}.2.0")), header, &id).await;
        assert_eq!(
            (status, v["outcome"].as_str()),
            (200, Some("created")),
            "{v}"
        );
        // The true replay is still recognised, with its own outcome.
        let (status, v) = send_generic(&app, "ci", &first, header, &id).await;
        assert_eq!(
            (status, v["outcome"].as_str()),
            (200, Some("duplicate")),
            "{v}"
        );
        let (_, v) = send_generic(&app, "ci5", &image(&format!("{base}.1.0")), header, &id).await;
        assert_eq!(v["outcome"], "duplicate", "{v}");
    }
    let versions: Vec<String> = packages(&app, &app_id)
        .await
        .iter()
        .map(|p| p["version"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(versions.len(), 9, "{versions:?}");
}
both_backends!(generic_replays, generic_replays_need_the_same_name_and_body);

/// The CoreOS application's packages are update_engine payloads: a generic webhook for it must
/// carry what a type-1 package needs, and then creates one (with its postinstall action).
async fn generic_releases_for_the_coreos_application(db: TestDb) {
    let app = spawn_app_with(db, options()).await;
    let coreos = common::COREOS_APP;
    let sha1 = "+ZFmPWzv1OdfmKHaGSojbK5Xj3k=";
    let sha256 = "cSBzKN9Yp6v1pC1Tm3nuAs2rsyaNqR3p0ylH8dyVg1g=";
    let full = json!({"app": coreos, "version": "9999.0.0", "url": "https://dl.example/9999.0.0/update.gz",
                      "size": 212555113, "hash": sha1, "sha256": sha256});
    let without = |field: &str| {
        let mut v = full.clone();
        v.as_object_mut().unwrap().remove(field);
        v
    };
    for (body, needle) in [
        (without("sha256"), "sha256"),
        (without("hash"), "hash"),
        (without("size"), "size"),
        (
            json!({"app": coreos, "version": "9999.0.0", "url": "http://x/update.gz"}),
            "CoreOS application",
        ),
        (
            json!({"app": "CoreOS", "version": "9999.0.0", "image": "127.0.0.1:5000/demo/web:1.0.0"}),
            "not an image",
        ),
    ] {
        let (status, v) = send_generic(&app, "coreos-ci", &body, "x-github-delivery", "c1").await;
        assert_eq!(status, 422, "{body}: {v}");
        let error = v["error"].as_str().unwrap();
        assert!(error.contains(needle), "{error:?} should mention {needle}");
    }
    // Digests in the wrong encoding: 400 naming the field.
    let mut hex = full.clone();
    hex["sha256"] = json!("7120732834df58a7abf5a42d539e7b80adacab291a8dd1dd29d329147f1dc958");
    let (status, v) = send_generic(&app, "coreos-ci", &hex, "x-github-delivery", "c2").await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("sha256"), "{v}");
    assert!(packages(&app, coreos).await.is_empty());

    let (status, v) = send_generic(&app, "coreos-ci", &full, "x-github-delivery", "c3").await;
    assert_eq!(
        (status, v["outcome"].as_str()),
        (200, Some("created")),
        "{v}"
    );
    let pkg = &packages(&app, coreos).await[0];
    assert_eq!(pkg["type"], 1);
    assert_eq!(pkg["url"], "https://dl.example/9999.0.0/");
    assert_eq!(pkg["filename"], "update.gz");
    assert_eq!(pkg["size"], "212555113");
    assert_eq!(pkg["hash"], sha1);
    assert_eq!(pkg["coreos_action"]["sha256"], sha256);
    assert_eq!(pkg["coreos_action"]["event"], "postinstall");
}
both_backends!(generic_coreos, generic_releases_for_the_coreos_application);

/// Without a binding, the server-wide secret and an explicit `app` + `channel` deliver.
async fn generic_unbound_with_server_secret(db: TestDb) {
    let app = spawn_app_with(db, options()).await;
    let (app_id, channel_id, _) = setup_app(&app, "unbound").await;
    let body = serde_json::to_vec(&json!({"app": "unbound", "version": "4.0.0", "url": "https://dl.example/u/u-4.0.0.tgz", "channel": "main", "size": 3})).unwrap();
    let r = post_signed(&app, "/v1.0/hooks/generic/deploys", body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        channel_version(&app, &app_id, &channel_id).await.as_deref(),
        Some("4.0.0")
    );
    let pkg = &packages(&app, &app_id).await[0];
    assert_eq!(pkg["url"], "https://dl.example/u/");
    assert_eq!(pkg["filename"], "u-4.0.0.tgz");
    assert_eq!(pkg["type"], 4);
    // A download needs a semantic version: 422, nothing stored.
    let body = serde_json::to_vec(
        &json!({"app": "unbound", "version": "nightly", "url": "https://dl.example/u/n.tgz"}),
    )
    .unwrap();
    let r = post_signed(&app, "/v1.0/hooks/generic/deploys", body).await;
    assert_eq!(r.status(), 422);
    assert!(r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("semantic version"));
    assert_eq!(packages(&app, &app_id).await.len(), 1);
    // Unknown application: 422.
    let body =
        serde_json::to_vec(&json!({"app": "nope", "version": "1.0.0", "image": "a/b"})).unwrap();
    let r = post_signed(&app, "/v1.0/hooks/generic/deploys", body).await;
    assert_eq!(r.status(), 422);
}
both_backends!(generic_unbound, generic_unbound_with_server_secret);

/// Concurrent deliveries of one release create one package.
async fn concurrent_duplicates(db: TestDb) {
    let app = spawn_app_with(db, options()).await;
    let (app_id, channel_id, _) = setup_app(&app, "race").await;
    bind(
        &app,
        &app_id,
        json!({"kind": "registry", "match": "127.0.0.1:5000/demo/web", "channel_id": channel_id}),
    )
    .await;
    let body = include_bytes!("../fixtures/webhooks/registry-push.json").to_vec();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = app.client.clone();
        let url = app.url("/v1.0/hooks/registry");
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .header(
                    "content-type",
                    "application/vnd.docker.distribution.events.v1+json",
                )
                .bearer_auth(REGISTRY_TOKEN)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(packages(&app, &app_id).await.len(), 1);
    assert_eq!(
        channel_version(&app, &app_id, &channel_id).await.as_deref(),
        Some("1.1.0")
    );
}
both_backends!(concurrent, concurrent_duplicates);

/// Files shipped with a release are served with their SHA-256; the zero-config rule creates the
/// application and the channel.
async fn files_and_zero_config(db: TestDb) {
    use rollbridge::domain::{Artifact, Release, ReleaseFile, SourceKind, ZeroConfigTarget};
    let app = spawn_app_with(db, options()).await;
    let release = Release {
        source: SourceKind::Artifactory,
        selector: "video-mobile".into(),
        delivery_key: Some("k1".into()),
        tag: "1.0.10-1".into(),
        artifact: Artifact::Download {
            url: "https://art.example/artifactory/payloads/video-mobile/".into(),
            filename: "example.com-development-video-mobile-1.0.10-1.tar.gz".into(),
            size: Some(10),
            sha1_base64: None,
            sha256_base64: None,
        },
        requested_app: None,
        requested_channel: None,
        zero_config: Some(ZeroConfigTarget {
            application_name: "example-video-mobile".into(),
            channel_name: "development".into(),
        }),
        description: "payload".into(),
        metadata: Some(
            json!({"name": "example-video-mobile", "version": "1.0.10-1", "imageVersion": "1.0.10-1", "numInstances": 2}),
        ),
        files: vec![
            ReleaseFile {
                name: "example-video-mobile@.service".into(),
                content: b"[Service]\nExecStart=/bin/true\n".to_vec(),
            },
            ReleaseFile {
                name: "README.md".into(),
                content: b"# hi <script>\n".to_vec(),
            },
        ],
    };
    let report = rollbridge::sources::ingest::ingest(
        &app.state.store,
        &app.state.promotions,
        &release,
        common::T0,
    )
    .await
    .unwrap();
    assert_eq!(report.outcome.as_str(), "promoted", "{report:?}");
    let package_id = report.results[0].package_id.clone().unwrap();
    let listing = app
        .get_json(&format!("/v1.0/packages/{package_id}/files"))
        .await;
    assert_eq!(listing["image_tag"], "1.0.10-1");
    assert_eq!(listing["metadata"]["numInstances"], 2);
    let files = listing["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let unit = files
        .iter()
        .find(|f| f["name"] == "example-video-mobile@.service")
        .unwrap();
    let r = app.get(unit["url"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    let sha = r.headers()["x-content-sha256"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(sha, unit["sha256"].as_str().unwrap());
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        b"[Service]\nExecStart=/bin/true\n"
    );
    let r = app
        .get(&format!("/v1.0/packages/{package_id}/files/nope"))
        .await;
    assert_eq!(r.status(), 404);
    let r = app
        .client
        .get(app.url(&format!("/v1.0/packages/{package_id}/files")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Second delivery of the same version (other key): existing, still one package.
    let mut again = release.clone();
    again.delivery_key = Some("k2".into());
    let report = rollbridge::sources::ingest::ingest(
        &app.state.store,
        &app.state.promotions,
        &again,
        common::T0,
    )
    .await
    .unwrap();
    assert_eq!(report.outcome.as_str(), "existing");
    let apps = app.get_json("/api/apps").await;
    let created = apps
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "example-video-mobile")
        .expect("app created");
    let app_id = created["id"].as_str().unwrap();
    let channels = app.get_json(&format!("/api/apps/{app_id}/channels")).await;
    assert_eq!(channels[0]["name"], "development");
    assert_eq!(channels[0]["package"]["version"], "1.0.10-1");
    assert_eq!(packages(&app, app_id).await.len(), 1);
    // Names that would not fit their columns (VARCHAR(100)) or carry control characters are
    // refused as the release, not as a database failure; nothing is created.
    let before = apps.as_array().unwrap().len();
    for (application_name, channel_name, needle) in [
        (
            "a".repeat(101),
            "development".to_string(),
            "application name",
        ),
        ("long-env".to_string(), "e".repeat(101), "channel name"),
        (
            "nul\u{0}name".to_string(),
            "development".to_string(),
            "application name",
        ),
    ] {
        let mut odd = release.clone();
        odd.delivery_key = Some(format!("k-{needle}-{}", application_name.len()));
        odd.zero_config = Some(ZeroConfigTarget {
            application_name,
            channel_name,
        });
        let report = rollbridge::sources::ingest::ingest(
            &app.state.store,
            &app.state.promotions,
            &odd,
            common::T0,
        )
        .await
        .unwrap();
        assert_eq!(report.outcome.as_str(), "rejected", "{report:?}");
        assert!(report.message.contains(needle), "{report:?}");
    }
    assert_eq!(
        app.get_json("/api/apps").await.as_array().unwrap().len(),
        before
    );
}
both_backends!(files, files_and_zero_config);

// ---------------------------------------------------------------------------
// A real registry after a real `docker push`
// ---------------------------------------------------------------------------

fn ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// Whether dockerd and docker-registry are here; under CI their absence fails the test.
fn docker_available() -> bool {
    let docker = std::process::Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let registry = std::process::Command::new("docker-registry")
        .arg("--version")
        .output()
        .is_ok();
    if !(docker && registry) {
        assert!(
            !ci(),
            "CI=true but dockerd or docker-registry is unavailable (scripts/services.sh docker)"
        );
        eprintln!("dockerd or docker-registry unavailable: skipping the real registry test");
    }
    docker && registry
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An image made offline from the static busybox binary.
fn import_image(reference: &str, dir: &std::path::Path) {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
    std::fs::write(root.join("version"), reference).unwrap();
    let tarball = dir.join("rootfs.tar");
    run(
        "tar",
        &[
            "-C",
            root.to_str().unwrap(),
            "-cf",
            tarball.to_str().unwrap(),
            ".",
        ],
    );
    run("docker", &["import", tarball.to_str().unwrap(), reference]);
}

async fn real_registry_push(db: TestDb) {
    if !docker_available() {
        return;
    }
    let app = spawn_app_with(db, options()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let (app_id, channel_id, _) = setup_app(&app, "pushed").await;
    bind(
        &app,
        &app_id,
        json!({"kind": "registry", "match": format!("{host}/demo/web"), "channel_id": channel_id}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}\nhttp:\n  addr: {host}\nnotifications:\n  endpoints:\n    - name: rollbridge\n      url: {url}\n      headers:\n        Authorization: [Bearer {REGISTRY_TOKEN}]\n      timeout: 2s\n      threshold: 3\n      backoff: 1s\n",
        root = dir.path().join("data").display(),
        url = app.url("/v1.0/hooks/registry"),
    );
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, config).unwrap();
    let registry = std::process::Command::new("docker-registry")
        .args(["serve", config_path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start docker-registry");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _registry = Kill(registry);
    {
        let client = reqwest::Client::new();
        let mut up = false;
        for _ in 0..100 {
            if client
                .get(format!("http://{host}/v2/"))
                .send()
                .await
                .is_ok()
            {
                up = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(up, "docker-registry did not start");
        let reference = format!("{host}/demo/web:1.1.0");
        import_image(&reference, dir.path());
        let push = tokio::task::spawn_blocking({
            let reference = reference.clone();
            move || run("docker", &["push", &reference])
        })
        .await
        .unwrap();
        assert!(push.contains("digest: sha256:"), "{push}");
        let digest = push
            .split_whitespace()
            .skip_while(|w| *w != "digest:")
            .nth(1)
            .unwrap()
            .to_string();
        let mut promoted = None;
        for _ in 0..100 {
            promoted = channel_version(&app, &app_id, &channel_id).await;
            if promoted.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(
            promoted.as_deref(),
            Some("1.1.0"),
            "no notification reached rollbridge"
        );
        let pkg = &packages(&app, &app_id).await[0];
        assert_eq!(pkg["image_repository"], format!("{host}/demo/web"));
        assert_eq!(pkg["image_digest"], digest);
        assert_eq!(
            omaha_offer(&app, &app_id, "pushed-prod").await.as_deref(),
            Some("1.1.0")
        );
        let _ = std::process::Command::new("docker")
            .args(["rmi", &reference])
            .output();
    }
}
both_backends!(real_registry, real_registry_push);

/// (signature header when it verified, else `bad`; body) per request.
type Recorded = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A real HTTP server recording (signature header, JSON body) of each POST; answers `status`.
async fn header_recorder(status: u16) -> (SocketAddr, Recorded) {
    let seen: Recorded = Arc::default();
    let store = seen.clone();
    let route = warp::post()
        .and(warp::header::optional::<String>(
            "x-rollbridge-signature-256",
        ))
        .and(warp::body::bytes())
        .map(move |sig: Option<String>, body: bytes::Bytes| {
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            // Keep the raw body's signature check next to the value.
            store.lock().unwrap().push((
                sig.filter(|s| s == &sign(&body, "notify-secret-0123456789"))
                    .or(Some(String::from("bad"))),
                value,
            ));
            warp::reply::with_status(
                warp::reply(),
                warp::http::StatusCode::from_u16(status).unwrap(),
            )
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (addr, seen)
}

/// Activity reaches a signed JSON webhook and a Slack-compatible endpoint; a failing endpoint
/// delays nobody (the webhook that caused the activity answers normally).
async fn notifications(db: TestDb) {
    let (hook_addr, hook_seen) = header_recorder(200).await;
    let (slack_addr, slack_seen) = header_recorder(200).await;
    let (broken_addr, broken_seen) = header_recorder(500).await;
    let mut opts = options();
    opts.extra_args.extend([
        "--notify-webhook".to_string(),
        format!("http://{hook_addr}/hook,http://{broken_addr}/down"),
        "--notify-secret".into(),
        "notify-secret-0123456789".into(),
        "--notify-slack".into(),
        format!("http://{slack_addr}/services/T000/B000/XXX"),
    ]);
    let app = spawn_app_with(db, opts).await;
    let (app_id, _channel_id, _) = setup_app(&app, "notified").await;
    let body = serde_json::to_vec(
        &json!({"app": app_id, "version": "1.0.0", "image": "x/y:1.0.0", "channel": "main"}),
    )
    .unwrap();
    let r = post_signed(&app, "/v1.0/hooks/generic/deploys", body).await;
    assert_eq!(r.status(), 200);
    wait_for("webhook notifications", || {
        hook_seen.lock().unwrap().len() >= 2
    })
    .await;
    wait_for("slack notifications", || {
        slack_seen.lock().unwrap().len() >= 2
    })
    .await;
    let hook = hook_seen.lock().unwrap().clone();
    let classes: Vec<&str> = hook
        .iter()
        .map(|(_, v)| v["class"].as_str().unwrap())
        .collect();
    assert!(
        classes.contains(&"ReleaseRegistered") && classes.contains(&"ChannelPackageUpdated"),
        "{classes:?}"
    );
    for (sig, value) in &hook {
        assert_ne!(
            sig.as_deref(),
            Some("bad"),
            "signature must verify: {value}"
        );
        assert_eq!(value["application_name"], "notified");
    }
    let slack = slack_seen.lock().unwrap().clone();
    assert!(
        slack
            .iter()
            .all(|(_, v)| v["text"].as_str().unwrap().contains("notified")),
        "{slack:?}"
    );
    // The broken endpoint was retried (more than one attempt for the first entry).
    wait_for("retries to the broken endpoint", || {
        broken_seen.lock().unwrap().len() >= 3
    })
    .await;
}
both_backends!(notify, notifications);

/// A generic webhook delivery of `body` to `name`, signed with `secret`.
async fn post_generic(app: &TestApp, name: &str, secret: &str, body: Value) -> reqwest::Response {
    let bytes = serde_json::to_vec(&body).unwrap();
    let signature = sign(&bytes, secret);
    post_raw(
        app,
        &format!("/v1.0/hooks/generic/{name}"),
        bytes,
        &[("x-hub-signature-256", signature)],
    )
    .await
}

/// What each key may do on a generic webhook: the server-wide `--webhook-secret` (it also sits
/// in Docker Hub's webhook URL) only reaches applications bound to the webhook's name; the
/// generic secret may name any application; a binding's own secret is the only key for its name.
async fn generic_webhook_keys_are_scoped(db: TestDb) {
    const SERVER_WIDE: &str = "server-wide-secret-0123456789";
    const GENERIC: &str = "generic-ci-secret-0123456789";
    let mut opts = options();
    opts.extra_args = vec![
        "--webhook-secret".into(),
        SERVER_WIDE.into(),
        "--generic-webhook-secret".into(),
        GENERIC.into(),
        "--dockerhub-registry".into(),
        "off".into(),
    ];
    let app = spawn_app_with(db, opts).await;
    let (web, web_channel, _) = setup_app(&app, "web").await;
    let (other, _, _) = setup_app(&app, "other").await;
    let release = |app: &str, version: &str| json!({"app": app, "version": version, "image": format!("acme/x:{version}"), "channel": "main"});
    // Unbound name: the server-wide secret is refused (403, nothing stored), the generic one works.
    let r = post_generic(&app, "ci", SERVER_WIDE, release("other", "1.0.0")).await;
    assert_eq!(r.status(), 403);
    let message = r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("binding"), "{message}");
    assert!(packages(&app, &other).await.is_empty());
    let r = post_generic(&app, "ci", GENERIC, release("other", "1.0.0")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(packages(&app, &other).await.len(), 1);
    // Bound name without a secret: the server-wide secret reaches the bound application only.
    let r = app
        .post_json(
            &format!("/api/apps/{web}/bindings"),
            json!({"kind": "generic", "match": "web-ci", "channel_id": web_channel}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = post_generic(&app, "web-ci", SERVER_WIDE, release("web", "1.1.0")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(packages(&app, &web).await.len(), 1);
    let r = post_generic(&app, "web-ci", SERVER_WIDE, release("other", "1.1.0")).await;
    assert_eq!(
        packages(&app, &other).await.len(),
        1,
        "not delivered: {}",
        r.status()
    );
    // A binding with its own secret: only that secret signs for the name.
    let r = app
        .post_json(
            &format!("/api/apps/{web}/bindings"),
            json!({"kind": "generic", "match": "web-own", "channel_id": web_channel, "secret": "binding-secret-0123456789"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    for key in [SERVER_WIDE, GENERIC] {
        assert_eq!(
            post_generic(&app, "web-own", key, release("web", "1.2.0"))
                .await
                .status(),
            401
        );
    }
    let r = post_generic(
        &app,
        "web-own",
        "binding-secret-0123456789",
        release("web", "1.2.0"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(packages(&app, &web).await.len(), 2);
}
both_backends!(generic_keys, generic_webhook_keys_are_scoped);

/// Options with one signed notification webhook at `hook`.
fn notifying(hook: SocketAddr) -> AppOptions {
    let mut opts = options();
    opts.extra_args.extend([
        "--notify-webhook".to_string(),
        format!("http://{hook}/hook"),
        "--notify-secret".into(),
        "notify-secret-0123456789".into(),
    ]);
    opts
}

/// A generic webhook release of `version` through `app` (two activity entries: registered,
/// channel updated).
async fn release(app: &TestApp, app_id: &str, version: &str) {
    let body = serde_json::to_vec(
        &json!({"app": app_id, "version": version, "image": format!("x/y:{version}"), "channel": "main"}),
    )
    .unwrap();
    let r = post_signed(app, "/v1.0/hooks/generic/deploys", body).await;
    assert_eq!(r.status(), 200, "release {version}");
}

/// Activity ids the recorder received, in arrival order.
fn notified_ids(seen: &Recorded) -> Vec<i64> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(_, v)| v["id"].as_i64().expect("activity id"))
        .collect()
}

/// Waits until every activity entry in the database was notified, then a little longer for
/// duplicates to show, and asserts each one arrived exactly once.
async fn assert_each_notified_once(store: &rollbridge::store::Store, seen: &Recorded, after: i64) {
    let expected: Vec<i64> = store
        .activity_after(after, 1000)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert!(!expected.is_empty());
    wait_for("every activity entry notified", || {
        let got = notified_ids(seen);
        expected.iter().all(|id| got.contains(id))
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut got = notified_ids(seen);
    got.retain(|id| *id > after);
    got.sort_unstable();
    assert_eq!(got, expected, "each entry exactly once");
}

/// Two replicas with the same notification endpoint: each activity entry is sent once (one
/// replica leads), and when the leader stops the other takes over where it stopped, entries
/// written during the hand-over included.
async fn notifications_once_across_replicas(db: TestDb) {
    let (hook_addr, seen) = header_recorder(200).await;
    let second = db.shared();
    let a = spawn_app_with(db, notifying(hook_addr)).await;
    let (app_id, _channel_id, _) = setup_app(&a, "replicated").await;
    release(&a, &app_id, "1.0.0").await;
    // `a` notifies, so it leads; `b` starts as the standby.
    wait_for("the first notification", || !notified_ids(&seen).is_empty()).await;
    let b = spawn_app_with(second, notifying(hook_addr)).await;
    for (i, replica) in [&a, &b, &a, &b].into_iter().enumerate() {
        release(replica, &app_id, &format!("1.1.{i}")).await;
    }
    let store = b.state.store.clone();
    assert_each_notified_once(&store, &seen, 0).await;
    // Hand-over: entries written right after the leader stops are sent by the new leader.
    let _db = a.stop().await;
    release(&b, &app_id, "1.2.0").await;
    release(&b, &app_id, "1.2.1").await;
    assert_each_notified_once(&store, &seen, 0).await;
}

#[tokio::test]
async fn notify_replicas_mysql() {
    let Some(db) = TestDb::mysql().await else {
        return;
    };
    notifications_once_across_replicas(db).await;
}

/// Turning notifications on does not replay the activity written before; a restart resumes
/// where the notifier stopped (an entry written while the server was down is sent).
async fn notifications_start_fresh_and_resume(db: TestDb) {
    let (hook_addr, seen) = header_recorder(200).await;
    let quiet = spawn_app_with(db, options()).await;
    let (app_id, _channel_id, _) = setup_app(&quiet, "resumed").await;
    release(&quiet, &app_id, "1.0.0").await;
    let before = quiet.state.store.last_activity_id().await.unwrap();
    assert!(before > 0);
    let db = quiet.stop().await;

    let app = spawn_app_with(db, notifying(hook_addr)).await;
    release(&app, &app_id, "1.1.0").await;
    let store = app.state.store.clone();
    assert_each_notified_once(&store, &seen, before).await;
    assert!(
        notified_ids(&seen).iter().all(|id| *id > before),
        "activity from before notifications were on was replayed: {:?}",
        notified_ids(&seen)
    );

    let db = app.stop().await;
    let offline = db.store().await;
    offline
        .add_agent_activity(
            &rollbridge::domain::NewActivity {
                class: rollbridge::domain::ActivityClass::ContainerRolledBack,
                severity: rollbridge::domain::Severity::Warning,
                version: "1.1.0".into(),
                application_id: app_id.clone(),
                group_id: None,
                channel_id: None,
                instance_id: Some("host-1".into()),
                description: "written while the server was down".into(),
            },
            common::T0,
        )
        .await
        .unwrap();
    drop(offline);
    let app = spawn_app_with(db, notifying(hook_addr)).await;
    let store = app.state.store.clone();
    assert_each_notified_once(&store, &seen, before).await;
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .any(|(_, v)| v["description"] == "written while the server was down"));
}
both_backends!(notify_resume, notifications_start_fresh_and_resume);

/// `rollbridge binding create|list|delete` against a database file.
#[tokio::test]
async fn binding_cli() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cli.db").display());
    let bin = env!("CARGO_BIN_EXE_rollbridge");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .args(["--database-url", &url])
            .env_remove("ROLLBRIDGE_BINDING_SECRET")
            .output()
            .expect("run rollbridge");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The seeded CoreOS application and its stable channel, by name.
    let (ok, id, err) = cli(&[
        "binding",
        "create",
        "--app",
        "CoreOS",
        "--kind",
        "generic",
        "--match",
        "os-builds",
        "--channel",
        "stable",
        "--tag-filter",
        ">=2000.0.0",
    ]);
    assert!(ok, "{err}");
    let id = id.trim().to_string();
    assert_eq!(id.len(), 36, "{id}");
    let (ok, listing, _) = cli(&["binding", "list"]);
    assert!(ok);
    assert!(
        listing.contains(&id)
            && listing.contains("generic\tos-builds")
            && listing.contains("secret=no"),
        "{listing}"
    );
    let (ok, _, err) = cli(&[
        "binding", "create", "--app", "nope", "--kind", "generic", "--match", "x",
    ]);
    assert!(!ok && err.contains("no application"), "{err}");
    let (ok, _, err) = cli(&[
        "binding", "create", "--app", "CoreOS", "--kind", "ftp", "--match", "x",
    ]);
    assert!(!ok && err.contains("kind"), "{err}");
    let (ok, _, _) = cli(&["binding", "delete", &id]);
    assert!(ok);
    let (_, listing, _) = cli(&["binding", "list"]);
    assert!(!listing.contains(&id));
}
