//! The Docker agent against a real dockerd and a local registry (`scripts/services.sh docker
//! registry`). Test images are built offline from the static busybox (`docker import`) and
//! pushed as `127.0.0.1:5000/demo/web:1.0.0`, `1.1.0` and a broken `1.2.0`. Under `CI=true` a
//! missing daemon or registry fails these tests; locally they skip with a note.
//!
//! Releases are published the way a webhook ends up doing it (`publish_release`): a type-2
//! package through the REST API, the channel moved to it, `state.promotions` woken.
//!
//! Every test uses its own names (random suffix) and removes its containers, networks and
//! volumes on drop, also when it fails.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const REPO: &str = "127.0.0.1:5000/demo/web";

// ---------------------------------------------------------------------------
// Services and images
// ---------------------------------------------------------------------------

fn ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running docker {args:?}: {e}"))
}

/// `docker ARGS`, asserting success; returns trimmed stdout.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// True when dockerd and the registry answer; under CI their absence is a failure.
fn services_ready() -> bool {
    let docker_up = Command::new("docker")
        .args(["info", "--format", "{{.ID}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let registry_up = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5000".parse().expect("address"),
        Duration::from_secs(2),
    )
    .is_ok();
    if docker_up && registry_up {
        return true;
    }
    assert!(
        !ci(),
        "CI=true but dockerd (up: {docker_up}) or the registry on 127.0.0.1:5000 (up: {registry_up}) is missing: run scripts/services.sh docker registry"
    );
    eprintln!(
        "dockerd or registry not available: skipping (run scripts/services.sh docker registry)"
    );
    false
}

#[derive(Debug, Clone)]
struct TestImage {
    repo: String,
    version: &'static str,
    digest: String,
}

impl TestImage {
    fn build(repo: &str, version: &'static str, cmd: &str) -> Self {
        Self {
            repo: repo.to_string(),
            version,
            digest: build_image(repo, version, cmd, true),
        }
    }

    fn tagged(&self) -> String {
        format!("{}:{}", self.repo, self.version)
    }
}

/// busybox httpd as PID 1 ignores SIGTERM; the shell wrapper exits on it, so `docker stop`
/// takes milliseconds instead of the 10 s kill timeout.
const SERVE: &str = r#"CMD ["/bin/sh","-c","trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]"#;

#[derive(Debug, Clone)]
struct Images {
    v100: TestImage,
    v110: TestImage,
    v120: TestImage,
}

/// Builds and pushes one image from the static busybox; returns its registry digest.
fn build_image(repo: &str, version: &str, cmd: &str, healthcheck: bool) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    for sub in ["bin", "www", "data"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("copy /bin/busybox (busybox-static)");
    for tool in ["sh", "httpd", "cat", "sleep", "wget", "echo", "ls"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).expect("symlink");
    }
    std::fs::write(root.join("www/index.html"), format!("web {version}\n")).expect("index");
    let out_dir = tempfile::tempdir().expect("temp dir");
    let tarball = out_dir.path().join("rootfs.tar");
    let status = Command::new("tar")
        .args(["-C"])
        .arg(root)
        .args(["-cf"])
        .arg(&tarball)
        .arg(".")
        .status()
        .expect("tar");
    assert!(status.success(), "tar failed");
    let reference = format!("{repo}:{version}");
    let env = format!("ENV APP_DEFAULT=img-{version}");
    let mut args: Vec<String> = vec![
        "import".into(),
        "-c".into(),
        cmd.into(),
        "-c".into(),
        "EXPOSE 8080".into(),
        "-c".into(),
        env,
    ];
    if healthcheck {
        args.push("-c".into());
        args.push("HEALTHCHECK --interval=1s --timeout=2s --retries=3 CMD wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1".into());
    }
    args.push(tarball.display().to_string());
    args.push(reference.clone());
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    docker_ok(&arg_refs);
    docker_ok(&["push", &reference]);
    let digests = docker_ok(&[
        "image",
        "inspect",
        &reference,
        "--format",
        "{{range .RepoDigests}}{{println .}}{{end}}",
    ]);
    let digest = digests
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{repo}@")))
        .unwrap_or_else(|| panic!("no registry digest for {reference}: {digests}"))
        .to_string();
    digest
}

static IMAGES: std::sync::OnceLock<Images> = std::sync::OnceLock::new();
static BUILD_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The three test images, built and pushed once per test binary.
fn images() -> Images {
    if let Some(i) = IMAGES.get() {
        return i.clone();
    }
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = IMAGES.get() {
        return i.clone();
    }
    let images = Images {
        v100: TestImage::build(REPO, "1.0.0", SERVE),
        v110: TestImage::build(REPO, "1.1.0", SERVE),
        // Broken: exits at once.
        v120: TestImage::build(REPO, "1.2.0", r#"CMD ["/bin/sh","-c","exit 3"]"#),
    };
    let _ = IMAGES.set(images.clone());
    images
}

async fn images_async() -> Images {
    tokio::task::spawn_blocking(images)
        .await
        .expect("image build")
}

// ---------------------------------------------------------------------------
// Docker fixtures
// ---------------------------------------------------------------------------

/// Unique names for one test; everything carrying the suffix is removed on drop.
struct Scene {
    suffix: String,
    networks: Vec<String>,
    volumes: Vec<String>,
    /// Local image references to remove.
    images: Vec<String>,
}

impl Scene {
    fn new(test: &str) -> Self {
        Self {
            suffix: format!(
                "rbt{}-{}",
                test,
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            networks: Vec::new(),
            volumes: Vec::new(),
            images: Vec::new(),
        }
    }

    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.suffix)
    }

    fn network(&mut self, what: &str) -> String {
        let name = self.name(what);
        docker_ok(&["network", "create", &name]);
        self.networks.push(name.clone());
        name
    }

    fn volume(&mut self, what: &str) -> String {
        let name = self.name(what);
        docker_ok(&["volume", "create", &name]);
        self.volumes.push(name.clone());
        name
    }

    /// `docker run -d --name <suffix-what> ARGS IMAGE`; returns the container name.
    fn run(&self, what: &str, args: &[&str], image: &str) -> String {
        let name = self.name(what);
        let mut argv = vec!["run", "-d", "--name", &name];
        argv.extend_from_slice(args);
        argv.push(image);
        docker_ok(&argv);
        name
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        // Replacements and containers set aside during an update carry the suffix too.
        let ids = docker(&["ps", "-aq", "--filter", &format!("name={}", self.suffix)]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = docker(&["rm", "-f", id]);
        }
        for n in &self.networks {
            let _ = docker(&["network", "rm", n]);
        }
        for v in &self.volumes {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
        for i in &self.images {
            let _ = docker(&["rmi", i]);
        }
    }
}

fn inspect(name: &str) -> Value {
    let out = docker_ok(&["inspect", name]);
    let v: Value = serde_json::from_str(&out).expect("inspect json");
    v[0].clone()
}

fn image_ref_of(name: &str) -> String {
    inspect(name)["Config"]["Image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn running(name: &str) -> bool {
    let out = docker(&["inspect", "--format", "{{.State.Running}}", name]);
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "true"
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

// ---------------------------------------------------------------------------
// Server fixtures
// ---------------------------------------------------------------------------

struct Rollout {
    app_id: String,
    app_name: String,
    channel_id: String,
    group_id: String,
}

/// An application with a channel at `initial` (a Docker package) and one group tracking
/// `stable` with `policy` merged over a permissive default.
async fn setup(app: &TestApp, initial: &TestImage, policy: Value) -> Rollout {
    let app_name = format!("web-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let r = app.post_json("/api/apps", json!({"name": app_name})).await;
    assert!(r.status().is_success(), "create app: {}", r.status());
    let app_id = r.json::<Value>().await.expect("app")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let package_id = create_docker_package(app, &app_id, initial).await;
    let r = app
        .post_json(
            &format!("/api/apps/{app_id}/channels"),
            json!({"name": "main", "color": "#000", "package_id": package_id}),
        )
        .await;
    assert!(r.status().is_success(), "create channel: {}", r.status());
    let channel_id = r.json::<Value>().await.expect("channel")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let mut body = json!({
        "name": "production", "channel_id": channel_id, "policy_updates_enabled": true,
        "policy_safe_mode": false, "policy_period_interval": "1 minute",
        "policy_max_updates_per_period": 100, "policy_update_timeout": "60 minutes", "track": "stable"
    });
    if let (Some(obj), Some(extra)) = (body.as_object_mut(), policy.as_object()) {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    let r = app
        .post_json(&format!("/api/apps/{app_id}/groups"), body)
        .await;
    assert_eq!(r.status(), 201, "create group");
    let group_id = r.json::<Value>().await.expect("group")["id"]
        .as_str()
        .expect("id")
        .to_string();
    Rollout {
        app_id,
        app_name,
        channel_id,
        group_id,
    }
}

async fn create_docker_package(app: &TestApp, app_id: &str, image: &TestImage) -> String {
    let r = app
        .post_json(
            &format!("/api/apps/{app_id}/packages"),
            json!({
                "type": 2,
                "version": image.version,
                "url": image.repo,
                "filename": format!("{}@{}", image.version, image.digest),
                "image_repository": image.repo,
                "image_digest": image.digest,
            }),
        )
        .await;
    let status = r.status();
    let body: Value = r.json().await.expect("package json");
    assert!(status.is_success(), "create package: {status} {body}");
    body["id"].as_str().expect("package id").to_string()
}

/// Publishes a release as CI would: a signed generic webhook (GitHub's HMAC scheme) to a binding
/// of the rollout's application that promotes to its channel. The server's ingest creates the
/// Docker package and wakes the embedded agent.
async fn publish_release(app: &TestApp, rollout: &Rollout, image: &TestImage) {
    const HOOK: &str = "agent-tests";
    const SECRET: &str = "agent-webhook-secret-0123456789";
    let r = app
        .post_json(
            &format!("/api/apps/{}/bindings", rollout.app_id),
            json!({"kind": "generic", "match": HOOK, "channel_id": rollout.channel_id, "secret": SECRET}),
        )
        .await;
    assert!(
        r.status().is_success() || r.status() == 409,
        "binding: {}",
        r.status()
    );
    let body = serde_json::to_vec(&json!({
        "version": image.version,
        "image": format!("{}:{}@{}", image.repo, image.version, image.digest),
    }))
    .expect("json");
    let signature = rollbridge::sources::generic::sign(SECRET.as_bytes(), &body);
    let r = app
        .client
        .post(app.url(&format!("/v1.0/hooks/generic/{HOOK}")))
        .header("x-hub-signature-256", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("webhook");
    let status = r.status();
    let report: Value = r.json().await.expect("webhook report");
    assert_eq!(status, 200, "webhook: {report}");
    assert_eq!(report["outcome"], "promoted", "webhook: {report}");
}

/// Waits up to `secs` for `cond`, re-sending the promotion signal every second (as a webhook
/// sender retries), so a signal sent while the agent was still starting is not the only one.
async fn wait_for<F, Fut>(app: &TestApp, secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last_nudge = Instant::now();
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        if last_nudge.elapsed() >= Duration::from_secs(1) {
            app.state.promotions.notify_waiters();
            last_nudge = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn instances(app: &TestApp, r: &Rollout) -> Vec<Value> {
    app.get_json(&format!(
        "/api/apps/{}/groups/{}/instances?perpage=100",
        r.app_id, r.group_id
    ))
    .await["instances"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The single agent instance of the rollout: (machine id, status, version).
async fn agent_instance(app: &TestApp, r: &Rollout) -> Option<(String, Option<i64>, String)> {
    let list = instances(app, r).await;
    let i = list.first()?;
    Some((
        i["id"].as_str()?.to_string(),
        i["application"]["status"].as_i64(),
        i["application"]["version"].as_str()?.to_string(),
    ))
}

/// Events of an instance, oldest first, as (type, result, previous version, error code).
async fn events(app: &TestApp, r: &Rollout, machine: &str) -> Vec<(i64, i64, String, String)> {
    let mut list = app
        .state
        .store
        .instance_events(&r.app_id, machine, 100)
        .await
        .expect("events");
    list.reverse();
    list.into_iter()
        .map(|e| {
            (
                e.event_type,
                e.event_result,
                e.previous_version,
                e.error_code,
            )
        })
        .collect()
}

async fn activity(app: &TestApp, r: &Rollout) -> Vec<Value> {
    app.get_json(&format!("/api/activity?app={}&perpage=1000", r.app_id))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

const COMPLETE: i64 = 4;
const ERROR: i64 = 3;

fn agent_args() -> AppOptions {
    AppOptions {
        extra_args: [
            "--local-agent",
            // Only promotions (and the start) trigger checks: proves the nudge path.
            "--agent-interval",
            "1h",
            "--agent-health-grace",
            "1s",
            "--agent-health-timeout",
            "30s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// Publish 1.1.0 → the container named the same runs 1.1.0 with env, named volume (and its
/// data), port binding, network alias, labels and restart policy preserved; events
/// 13/1, 14/1, 800/1, 3/2 recorded; the instance Complete; unlabeled and
/// `rollbridge.enable=false` containers untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn update_preserves_settings_and_reports_every_step() {
    if !services_ready() {
        return;
    }
    let images = images_async().await;
    let app = spawn_app_with(TestDb::sqlite().await, agent_args()).await;
    let rollout = setup(&app, &images.v100, json!({})).await;
    let mut scene = Scene::new("upd");
    let net = scene.network("net");
    let vol = scene.volume("data");
    let port = free_port();
    let app_label = format!("rollbridge.app={}", rollout.app_id);
    let publish = format!("127.0.0.1:{port}:8080");
    let mount = format!("{vol}:/data");
    let v100 = format!("{REPO}:1.0.0");
    let web = scene.run(
        "web",
        &[
            "--network",
            &net,
            "--network-alias",
            "web-alias",
            "-e",
            "MODE=prod",
            "-e",
            "GREETING=hello world",
            "-v",
            &mount,
            "-p",
            &publish,
            "--label",
            &app_label,
            "--label",
            "team=blue",
            "--restart",
            "unless-stopped",
        ],
        &v100,
    );
    let plain = scene.run("plain", &[], &v100);
    let disabled = scene.run(
        "disabled",
        &["--label", &app_label, "--label", "rollbridge.enable=false"],
        &v100,
    );
    docker_ok(&["exec", &web, "sh", "-c", "echo keep-me > /data/marker"]);
    let before = inspect(&web);
    let plain_id = inspect(&plain)["Id"].clone();
    let disabled_id = inspect(&disabled)["Id"].clone();

    publish_release(&app, &rollout, &images.v110).await;
    wait_for(&app, 90, "the instance to complete 1.1.0", || async {
        matches!(agent_instance(&app, &rollout).await, Some((_, Some(COMPLETE), v)) if v == "1.1.0")
    })
    .await;

    // The container named the same runs 1.1.0 (pulled by digest, tagged repo:tag).
    let after = inspect(&web);
    assert_ne!(after["Id"], before["Id"], "the container was recreated");
    assert_eq!(after["Config"]["Image"], format!("{REPO}:1.1.0"));
    let image_digests = docker_ok(&[
        "image",
        "inspect",
        &format!("{REPO}:1.1.0"),
        "--format",
        "{{json .RepoDigests}}",
    ]);
    assert!(
        image_digests.contains(&images.v110.digest),
        "{image_digests}"
    );
    assert_eq!(after["State"]["Running"], true);
    assert_eq!(after["State"]["Health"]["Status"], "healthy");
    // Env: the user's values kept, the image default follows the new image.
    let env: HashSet<String> = after["Config"]["Env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    assert!(env.contains("MODE=prod"), "{env:?}");
    assert!(env.contains("GREETING=hello world"), "{env:?}");
    assert!(env.contains("APP_DEFAULT=img-1.1.0"), "{env:?}");
    assert!(!env.contains("APP_DEFAULT=img-1.0.0"), "{env:?}");
    // Named volume, with its data.
    let mounts = after["Mounts"].as_array().expect("mounts");
    assert!(
        mounts.iter().any(|m| m["Type"] == "volume"
            && m["Name"] == vol.as_str()
            && m["Destination"] == "/data"),
        "{mounts:?}"
    );
    assert_eq!(docker_ok(&["exec", &web, "cat", "/data/marker"]), "keep-me");
    // Port binding, and it serves the new version there.
    assert_eq!(
        after["HostConfig"]["PortBindings"],
        before["HostConfig"]["PortBindings"]
    );
    assert_eq!(
        after["HostConfig"]["PortBindings"]["8080/tcp"][0]["HostPort"],
        port.to_string()
    );
    let body = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .expect("GET the container")
        .text()
        .await
        .expect("body");
    assert_eq!(body.trim(), "web 1.1.0");
    // User network with its alias.
    let aliases = after["NetworkSettings"]["Networks"][&net]["Aliases"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(aliases.iter().any(|a| a == "web-alias"), "{aliases:?}");
    let old_short = &before["Id"].as_str().expect("id")[..12];
    assert!(
        !aliases.iter().any(|a| a == old_short),
        "old short id alias dropped: {aliases:?}"
    );
    // Labels and restart policy.
    assert_eq!(
        after["Config"]["Labels"]["rollbridge.app"],
        rollout.app_id.as_str()
    );
    assert_eq!(after["Config"]["Labels"]["team"], "blue");
    assert_eq!(
        after["HostConfig"]["RestartPolicy"]["Name"],
        "unless-stopped"
    );
    // The old container is gone.
    let leftovers = docker_ok(&[
        "ps",
        "-aq",
        "--filter",
        &format!("name={}-web-rollbridge-old", scene.suffix),
    ]);
    assert!(leftovers.is_empty(), "old container left behind");

    // Omaha events in order, and the instance Complete on 1.1.0.
    let (machine, _, _) = agent_instance(&app, &rollout).await.expect("instance");
    let evs = events(&app, &rollout, &machine).await;
    let kinds: Vec<(i64, i64)> = evs.iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(kinds, [(13, 1), (14, 1), (800, 1), (3, 2)], "{evs:?}");
    assert_eq!(evs[3].2, "1.0.0", "3/2 carries previousversion");
    let instance = app
        .get_json(&format!(
            "/api/apps/{}/groups/{}/instances/{machine}",
            rollout.app_id, rollout.group_id
        ))
        .await;
    assert!(
        !instance["alias"].as_str().unwrap_or_default().is_empty(),
        "alias = docker host name: {instance}"
    );
    // Per-container outcome in the activity stream.
    let acts = activity(&app, &rollout).await;
    assert!(
        acts.iter()
            .any(|a| a["class"] == 11
                && a["description"].as_str().unwrap_or_default().contains(&web)),
        "{acts:?}"
    );
    // Metrics of the embedded agent.
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.contains("rollbridge_agent_pulls_total{result=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rollbridge_agent_recreates_total{result=\"ok\"}"),
        "{metrics}"
    );

    // Never touched: no label, and enable=false.
    assert_eq!(inspect(&plain)["Id"], plain_id);
    assert_eq!(image_ref_of(&plain), v100);
    assert_eq!(inspect(&disabled)["Id"], disabled_id);
    assert_eq!(image_ref_of(&disabled), v100);
}

/// Broken 1.2.0 (exits at once) → the 1.1.0 container is back and running under its name,
/// 3/0 with the agent's error code recorded, the safe-mode group paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_release_is_rolled_back_and_pauses_the_safe_mode_group() {
    if !services_ready() {
        return;
    }
    let images = images_async().await;
    let app = spawn_app_with(TestDb::sqlite().await, agent_args()).await;
    let rollout = setup(&app, &images.v110, json!({"policy_safe_mode": true})).await;
    let mut scene = Scene::new("bad");
    let vol = scene.volume("data");
    let app_label = format!("rollbridge.app={}", rollout.app_id);
    let mount = format!("{vol}:/data");
    let v110 = format!("{REPO}:1.1.0");
    let web = scene.run(
        "web",
        &[
            "--label",
            &app_label,
            "-v",
            &mount,
            "--restart",
            "on-failure:5",
        ],
        &v110,
    );
    // Registered on 1.1.0 before the bad release arrives.
    wait_for(&app, 30, "the agent to register", || async {
        agent_instance(&app, &rollout).await.is_some()
    })
    .await;
    let before = inspect(&web);

    publish_release(&app, &rollout, &images.v120).await;
    wait_for(&app, 90, "the failure to be reported", || async {
        matches!(
            agent_instance(&app, &rollout).await,
            Some((_, Some(ERROR), _))
        )
    })
    .await;

    let after = inspect(&web);
    assert_eq!(after["Id"], before["Id"], "the original container is back");
    assert_eq!(after["Config"]["Image"], v110);
    assert!(running(&web), "the 1.1.0 container runs again");
    let replacements = docker_ok(&["ps", "-aq", "--filter", &format!("name={}", scene.suffix)]);
    assert_eq!(
        replacements.lines().count(),
        1,
        "no replacement or aside container left"
    );

    let (machine, _, version) = agent_instance(&app, &rollout).await.expect("instance");
    assert_eq!(version, "1.1.0");
    let evs = events(&app, &rollout, &machine).await;
    let last = evs.last().expect("events");
    assert_eq!((last.0, last.1), (3, 0), "{evs:?}");
    assert_eq!(last.3, "2005", "unhealthy/exited error code: {evs:?}");
    assert!(!evs.iter().any(|e| (e.0, e.1) == (3, 2)), "{evs:?}");
    let group = app
        .get_json(&format!(
            "/api/apps/{}/groups/{}",
            rollout.app_id, rollout.group_id
        ))
        .await;
    assert_eq!(
        group["policy_updates_enabled"], false,
        "safe mode paused the rollout: {group}"
    );
    let acts = activity(&app, &rollout).await;
    assert!(
        acts.iter()
            .any(|a| a["class"] == 12
                && a["description"].as_str().unwrap_or_default().contains(&web)),
        "{acts:?}"
    );
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.contains("rollbridge_agent_rollbacks_total 1"),
        "{metrics}"
    );
}

/// Two containers of one app: updated one after the other, never both down at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_containers_roll_one_at_a_time() {
    if !services_ready() {
        return;
    }
    let images = images_async().await;
    let app = spawn_app_with(TestDb::sqlite().await, agent_args()).await;
    let rollout = setup(&app, &images.v100, json!({})).await;
    let scene = Scene::new("roll");
    let app_label = format!("rollbridge.app={}", rollout.app_id);
    let v100 = format!("{REPO}:1.0.0");
    let a = scene.run("a", &["--label", &app_label], &v100);
    let b = scene.run("b", &["--label", &app_label], &v100);

    // Sample which of the two names are running while the update goes on.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (a, b, stop) = (a.clone(), b.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = docker(&["ps", "--filter", "status=running", "--format", "{{.Names}}"]);
                let names: HashSet<String> = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect();
                samples.push((names.contains(&a), names.contains(&b)));
                std::thread::sleep(Duration::from_millis(50));
            }
            samples
        })
    };
    publish_release(&app, &rollout, &images.v110).await;
    wait_for(&app, 120, "both containers to run 1.1.0", || async {
        matches!(agent_instance(&app, &rollout).await, Some((_, Some(COMPLETE), v)) if v == "1.1.0")
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");
    assert!(samples.len() > 10, "sampled the update");
    assert!(
        samples.iter().all(|(x, y)| *x || *y),
        "both containers were down at once: {samples:?}"
    );
    // Rolling order: every moment a was down comes before every moment b was down.
    let last_a_down = samples.iter().rposition(|(x, _)| !*x);
    let first_b_down = samples.iter().position(|(_, y)| !*y);
    if let (Some(a_down), Some(b_down)) = (last_a_down, first_b_down) {
        assert!(
            a_down < b_down,
            "a and b were replaced out of order: {samples:?}"
        );
    }
    assert_eq!(image_ref_of(&a), format!("{REPO}:1.1.0"));
    assert_eq!(image_ref_of(&b), format!("{REPO}:1.1.0"));
    // One after the other: a finished (healthy) before b started.
    let started = |n: &str| {
        inspect(n)["State"]["StartedAt"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        started(&a) < started(&b),
        "a ({}) before b ({})",
        started(&a),
        started(&b)
    );
    let (machine, _, _) = agent_instance(&app, &rollout).await.expect("instance");
    let kinds: Vec<(i64, i64)> = events(&app, &rollout, &machine)
        .await
        .iter()
        .map(|e| (e.0, e.1))
        .collect();
    assert_eq!(kinds, [(13, 1), (14, 1), (800, 1), (3, 2)]);
}

/// `rollbridge agent` as a separate process against a separately started server: refuses a bad
/// token, resolves the application by name, updates the container, reports Complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_agent_process_updates_containers() {
    if !services_ready() {
        return;
    }
    let images = images_async().await;
    let app = spawn_app(TestDb::sqlite().await).await;
    let rollout = setup(&app, &images.v100, json!({})).await;
    let token = format!("rbt-{}", uuid::Uuid::new_v4().simple());
    let admin = app
        .state
        .store
        .user_by_name("admin")
        .await
        .expect("user")
        .expect("admin");
    app.state
        .store
        .create_token(
            "agent",
            &admin.user.id,
            &rollbridge::auth::token_digest(&token),
            T0,
        )
        .await
        .expect("token");
    let scene = Scene::new("remote");
    let v100 = format!("{REPO}:1.0.0");
    let labels = [
        format!("rollbridge.app={}", rollout.app_name),
        "rollbridge.group=stable".to_string(),
    ];
    let web = scene.run(
        "web",
        &["--label", &labels[0], "--label", &labels[1]],
        &v100,
    );
    let state_dir = tempfile::tempdir().expect("state dir");
    let bin = env!("CARGO_BIN_EXE_rollbridge");

    // A wrong token: the agent refuses to run.
    let refused = tokio::process::Command::new(bin)
        .args(["agent", "--once", "--server", &app.base, "--token", "wrong"])
        .arg("--state-dir")
        .arg(state_dir.path())
        .env_remove("ROLLBRIDGE_AGENT_TOKEN")
        .output()
        .await
        .expect("run agent");
    assert!(!refused.status.success(), "bad token must be refused");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("token"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let mut child = tokio::process::Command::new(bin)
        .args([
            "agent",
            "--server",
            &app.base,
            "--interval",
            "1s",
            "--health-grace",
            "1s",
        ])
        .arg("--state-dir")
        .arg(state_dir.path())
        .env("ROLLBRIDGE_AGENT_TOKEN", &token)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn agent");
    wait_for(&app, 30, "the remote agent to register", || async {
        agent_instance(&app, &rollout).await.is_some()
    })
    .await;
    publish_release(&app, &rollout, &images.v110).await;
    wait_for(&app, 90, "the remote agent to complete 1.1.0", || async {
        matches!(agent_instance(&app, &rollout).await, Some((_, Some(COMPLETE), v)) if v == "1.1.0")
    })
    .await;
    let _ = child.kill().await;

    assert_eq!(image_ref_of(&web), format!("{REPO}:1.1.0"));
    assert!(running(&web));
    let machine_file =
        std::fs::read_to_string(state_dir.path().join("machine-id")).expect("machine id persisted");
    let (machine, _, _) = agent_instance(&app, &rollout).await.expect("instance");
    assert_eq!(
        machine,
        machine_file.trim(),
        "the persisted machine id is the instance id"
    );
    let kinds: Vec<(i64, i64)> = events(&app, &rollout, &machine)
        .await
        .iter()
        .map(|e| (e.0, e.1))
        .collect();
    assert_eq!(kinds, [(13, 1), (14, 1), (800, 1), (3, 2)]);
    let acts = activity(&app, &rollout).await;
    assert!(
        acts.iter()
            .any(|a| a["class"] == 11
                && a["description"].as_str().unwrap_or_default().contains(&web)),
        "the remote agent's report reached the activity stream: {acts:?}"
    );
}

/// `POST /api/agent/activity`: authenticated, validated, stored (both backends; no Docker).
async fn activity_endpoint_validates_reports(db: TestDb) {
    let app = spawn_app(db).await;
    let (app_id, _, _, _) = app.setup_rollout("1.0.0", json!({})).await;
    let good = json!({
        "application_id": app_id, "track": "main", "instance_id": "m-1",
        "container": "web", "version": "1.1.0", "outcome": "updated", "message": "from 1.0.0"
    });
    let anonymous = app
        .client
        .post(app.url("/api/agent/activity"))
        .json(&good)
        .send()
        .await
        .expect("post");
    assert_eq!(anonymous.status(), 401);
    let r = app.post_json("/api/agent/activity", good.clone()).await;
    assert_eq!(r.status(), 204);
    let acts = app
        .get_json(&format!("/api/activity?app={app_id}&perpage=100"))
        .await;
    let entry = acts
        .as_array()
        .expect("array")
        .iter()
        .find(|a| a["class"] == 11)
        .cloned()
        .expect("agent activity");
    assert_eq!(entry["version"], "1.1.0");
    assert_eq!(entry["instance_id"], "m-1");
    assert!(
        entry["group_id"].is_string(),
        "track resolved to the group: {entry}"
    );
    assert!(entry["description"]
        .as_str()
        .unwrap_or_default()
        .contains("web"));

    let mut bad_cases = Vec::new();
    for (field, value) in [
        ("application_id", json!("not-a-uuid")),
        ("application_id", json!(uuid::Uuid::new_v4().to_string())),
        ("instance_id", json!("")),
        ("container", json!("x".repeat(300))),
        ("version", json!("1.0\u{0}")),
        ("outcome", json!("exploded")),
        ("message", json!("m".repeat(5000))),
    ] {
        let mut body = good.clone();
        body[field] = value;
        bad_cases.push((field, body));
    }
    let mut extra = good.clone();
    extra["unknown"] = json!(1);
    bad_cases.push(("unknown", extra));
    for (field, body) in bad_cases {
        let r = app.post_json("/api/agent/activity", body).await;
        let status = r.status().as_u16();
        assert!(status == 400 || status == 404, "{field}: {status}");
        let err: Value = r.json().await.expect("error json");
        assert!(err["error"].is_string(), "{field}: {err}");
    }
    // Its own client: the server closes the connection after refusing the body.
    let huge = json!({"message": "x".repeat(64 * 1024)});
    let r = reqwest::Client::new()
        .post(app.url("/api/agent/activity"))
        .basic_auth("admin", Some("admin"))
        .json(&huge)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);
    let count = app
        .get_json(&format!("/api/activity?app={app_id}&perpage=100"))
        .await
        .as_array()
        .expect("array")
        .iter()
        .filter(|a| a["class"] == 11)
        .count();
    assert_eq!(count, 1, "nothing stored from bad reports");
}

both_backends!(activity_endpoint, activity_endpoint_validates_reports);

/// `--owner`: an unlabeled container whose image is under the namespace is bound to the
/// application publishing that repository and updated; `--cleanup --keep 0` then drops the
/// previous image's references in that repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owner_matching_binds_by_repository_and_cleanup_removes_the_old_image() {
    if !services_ready() {
        return;
    }
    let _ = images_async().await;
    let mut scene = Scene::new("own");
    // A namespace of its own, with images of their own (so no other test's container uses them).
    let owner = scene.suffix.replace('-', "");
    let repo = format!("127.0.0.1:5000/{owner}/web");
    let (v100, v110) = {
        let repo = repo.clone();
        tokio::task::spawn_blocking(move || {
            (
                TestImage::build(&repo, "1.0.0", SERVE),
                TestImage::build(&repo, "1.1.0", SERVE),
            )
        })
        .await
        .expect("build")
    };
    scene.images.push(v100.tagged());
    scene.images.push(v110.tagged());
    let mut options = agent_args();
    options.extra_args.extend(
        [
            "--agent-owner",
            &owner,
            "--agent-cleanup",
            "--agent-keep",
            "0",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let app = spawn_app_with(TestDb::sqlite().await, options).await;
    let rollout = setup(&app, &v100, json!({})).await;
    let web = scene.run("web", &[], &v100.tagged());
    let unrelated = scene.run("unrelated", &[], &format!("{REPO}:1.0.0"));
    let unrelated_id = inspect(&unrelated)["Id"].clone();

    publish_release(&app, &rollout, &v110).await;
    wait_for(&app, 90, "the owner-matched container to run 1.1.0", || async {
        matches!(agent_instance(&app, &rollout).await, Some((_, Some(COMPLETE), v)) if v == "1.1.0")
    })
    .await;
    assert_eq!(image_ref_of(&web), v110.tagged());
    assert!(running(&web));
    assert_eq!(
        inspect(&unrelated)["Id"],
        unrelated_id,
        "other namespaces untouched"
    );
    // Cleanup: the previous image's references in this repository are gone, others stay.
    assert!(
        !docker(&["image", "inspect", &v100.tagged()])
            .status
            .success(),
        "the previous image was removed"
    );
    assert!(docker(&["image", "inspect", &v110.tagged()])
        .status
        .success());
    assert!(docker(&["image", "inspect", &format!("{REPO}:1.0.0")])
        .status
        .success());
}

/// Crash recovery: a container left renamed aside by an interrupted update (and nothing under
/// its name) is renamed back and started on the next pass; a fresh aside container (an update
/// in progress) is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interrupted_update_is_recovered() {
    if !services_ready() {
        return;
    }
    let _ = images_async().await;
    let app = spawn_app_with(TestDb::sqlite().await, agent_args()).await;
    let scene = Scene::new("crash");
    let v100 = format!("{REPO}:1.0.0");
    let stale = scene.run("web", &[], &v100);
    let fresh = scene.run("api", &[], &v100);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let stale_aside = format!("{stale}-rollbridge-old-{}", now - 3600);
    let fresh_aside = format!("{fresh}-rollbridge-old-{now}");
    for (name, aside) in [(&stale, &stale_aside), (&fresh, &fresh_aside)] {
        docker_ok(&["stop", "-t", "1", name]);
        docker_ok(&["rename", name, aside]);
    }
    wait_for(
        &app,
        30,
        "the stale aside container to be restored",
        || async { running(&stale) },
    )
    .await;
    assert!(
        !docker(&["inspect", &stale_aside]).status.success(),
        "renamed back"
    );
    assert!(
        !running(&fresh_aside),
        "an update in progress is not interfered with"
    );
    assert!(docker(&["inspect", &fresh_aside]).status.success());
}

/// Hostile or broken grants: a digest the registry does not have (pull error inside the
/// stream) and a package name that is no image tag. Each is reported as 3/0 with its error
/// code, and the container is never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_grants_fail_cleanly_without_touching_the_container() {
    if !services_ready() {
        return;
    }
    let images = images_async().await;
    let app = spawn_app_with(TestDb::sqlite().await, agent_args()).await;
    let rollout = setup(
        &app,
        &images.v100,
        json!({"policy_auto_pause_on_failure": false}),
    )
    .await;
    let scene = Scene::new("badgrant");
    let app_label = format!("rollbridge.app={}", rollout.app_id);
    let web = scene.run("web", &["--label", &app_label], &format!("{REPO}:1.0.0"));
    let before = inspect(&web)["Id"].clone();

    let missing = TestImage {
        repo: REPO.to_string(),
        version: "1.5.0",
        digest: format!("sha256:{}", "0".repeat(64)),
    };
    publish_release(&app, &rollout, &missing).await;
    let last_error = |codes: Vec<(i64, i64, String, String)>| {
        codes
            .into_iter()
            .rev()
            .find(|e| (e.0, e.1) == (3, 0))
            .map(|e| e.3)
    };
    wait_for(&app, 60, "the pull failure to be reported", || async {
        match agent_instance(&app, &rollout).await {
            Some((machine, _, _)) => {
                last_error(events(&app, &rollout, &machine).await).as_deref() == Some("2002")
            }
            None => false,
        }
    })
    .await;
    assert_eq!(
        inspect(&web)["Id"],
        before,
        "pull failure: container untouched"
    );
    assert!(running(&web));

    // A package whose name is no tag (the server accepts any file name).
    let package = app
        .post_json(
            &format!("/api/apps/{}/packages", rollout.app_id),
            json!({"type": 2, "version": "1.6.0", "url": REPO, "filename": "1.6.0;rm -rf"}),
        )
        .await;
    assert!(package.status().is_success());
    let package_id = package.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let r = app
        .put_json(
            &format!(
                "/api/apps/{}/channels/{}",
                rollout.app_id, rollout.channel_id
            ),
            json!({"name": "main", "color": "#000", "package_id": package_id}),
        )
        .await;
    assert!(r.status().is_success());
    wait_for(&app, 60, "the bad package to be reported", || async {
        match agent_instance(&app, &rollout).await {
            Some((machine, _, _)) => {
                last_error(events(&app, &rollout, &machine).await).as_deref() == Some("2001")
            }
            None => false,
        }
    })
    .await;
    assert_eq!(
        inspect(&web)["Id"],
        before,
        "bad package: container untouched"
    );
    assert_eq!(image_ref_of(&web), format!("{REPO}:1.0.0"));
    assert!(running(&web));

    // A release of another repository (a leaked webhook secret naming any image) does not
    // move the container to it.
    let (registry, _) = REPO.split_once('/').expect("registry host");
    let foreign = TestImage {
        repo: format!("{registry}/elsewhere/other"),
        version: "1.7.0",
        digest: format!("sha256:{}", "1".repeat(64)),
    };
    publish_release(&app, &rollout, &foreign).await;
    wait_for(&app, 60, "the repository change to be refused", || async {
        match agent_instance(&app, &rollout).await {
            Some((machine, _, _)) => {
                last_error(events(&app, &rollout, &machine).await).as_deref() == Some("2006")
            }
            None => false,
        }
    })
    .await;
    assert_eq!(
        inspect(&web)["Id"],
        before,
        "foreign image: container untouched"
    );
    assert_eq!(image_ref_of(&web), format!("{REPO}:1.0.0"));
    assert!(running(&web));
}

/// A hostile or broken server: oversized, malformed and DOCTYPE answers to the agent's Omaha
/// requests are errors (nothing is acted on), as are non-2xx answers and a rejected token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_client_rejects_hostile_server_answers() {
    use rollbridge::agent::server::Server;
    use rollbridge::omaha::protocol::{AppRequest, Request};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let huge = format!(
        "<response protocol=\"3.0\">{}</response>",
        "<!-- x -->".repeat(10_000)
    );
    let answers: Vec<(u16, String)> = vec![
        (200, huge),
        (200, "<response protocol=\"3.0\"><app".into()),
        (
            200,
            r#"<!DOCTYPE r [<!ENTITY a "aaaa">]><response protocol="3.0"/>"#.into(),
        ),
        (500, "<response protocol=\"3.0\"/>".into()),
        (401, "{\"error\":\"authentication required\"}".into()),
    ];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = answers.clone();
    tokio::spawn(async move {
        for (status, body) in served {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            // Read the request head and body (enough for these small requests).
            let mut buf = vec![0u8; 65536];
            let _ = socket.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    let server = Server::remote(&format!("http://{addr}"), "token").expect("server");
    let request = Request {
        protocol: "3.0".into(),
        apps: vec![AppRequest {
            appid: uuid::Uuid::new_v4().to_string().into(),
            version: "1.0.0".into(),
            track: "stable".into(),
            machine_id: "m".into(),
            ping: true,
            update_check: true,
            ..AppRequest::default()
        }],
        ..Request::default()
    };
    for (status, _) in answers.iter().take(4) {
        let result = server.omaha(&request).await;
        assert!(
            result.is_err(),
            "answer with status {status} must be refused: {result:?}"
        );
    }
    assert!(
        server.verify_token().await.is_err(),
        "a 401 is a refused token"
    );
    assert!(Server::remote("ftp://x", "t").is_err());
    assert!(Server::remote("http://x", " ").is_err());
}

/// A `--rm` container disappears when stopped: after a failed update it is rebuilt from its
/// saved configuration on the old image, under its name and running.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auto_remove_container_is_rebuilt_on_rollback() {
    if !services_ready() {
        return;
    }
    let images = images_async().await;
    let app = spawn_app_with(TestDb::sqlite().await, agent_args()).await;
    let rollout = setup(&app, &images.v110, json!({})).await;
    let scene = Scene::new("rm");
    let app_label = format!("rollbridge.app={}", rollout.app_id);
    let v110 = format!("{REPO}:1.1.0");
    let web = scene.run(
        "web",
        &[
            "--rm", "--label", &app_label, "--label", "team=red", "-e", "MODE=rm",
        ],
        &v110,
    );
    wait_for(&app, 30, "the agent to register", || async {
        agent_instance(&app, &rollout).await.is_some()
    })
    .await;
    publish_release(&app, &rollout, &images.v120).await;
    wait_for(&app, 90, "the failure to be reported", || async {
        matches!(
            agent_instance(&app, &rollout).await,
            Some((_, Some(ERROR), _))
        )
    })
    .await;
    let after = inspect(&web);
    assert_eq!(after["Config"]["Image"], v110, "rebuilt on the old image");
    assert_eq!(after["State"]["Running"], true);
    assert_eq!(after["HostConfig"]["AutoRemove"], true);
    assert_eq!(after["Config"]["Labels"]["team"], "red");
    let env = after["Config"]["Env"].to_string();
    assert!(env.contains("MODE=rm"), "{env}");
    let all = docker_ok(&["ps", "-aq", "--filter", &format!("name={}", scene.suffix)]);
    assert_eq!(all.lines().count(), 1, "only the rebuilt container is left");
}

/// Without `--local-agent` / `--no-local-agent`, `serve` runs the embedded agent because the
/// Docker socket answers: a labelled container's host shows up as an instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_agent_is_on_by_default_when_docker_answers() {
    if !services_ready() {
        return;
    }
    let images = images_async().await;
    let options = AppOptions {
        extra_args: ["--agent-interval", "1h", "--agent-health-grace", "1s"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..Default::default()
    };
    let app = spawn_app_default_agent(TestDb::sqlite().await, options).await;
    let rollout = setup(&app, &images.v100, json!({})).await;
    let scene = Scene::new("auto");
    let app_label = format!("rollbridge.app={}", rollout.app_id);
    scene.run("web", &["--label", &app_label], &format!("{REPO}:1.0.0"));
    wait_for(&app, 30, "the default-on agent to register", || async {
        matches!(agent_instance(&app, &rollout).await, Some((_, _, v)) if v == "1.0.0")
    })
    .await;
}
