//! The performance work of issue 5 must not change behaviour: configuration caches are
//! invalidated by writes on any replica, "last seen" throttling still records what changed,
//! group-committed writes are durable (visible to a fresh connection) once acknowledged, and
//! grants stay exact when the decision counters come from the grant buckets. Both backends; no
//! test here measures speed (bench/ does).

mod common;

use common::{spawn_app, TestApp, TestDb, T0};
use rollbridge::rollout::CheckPath;
use serde_json::{json, Value};

fn check_xml(appid: &str, track: &str, machine: &str, version: &str, alias: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<request protocol="3.0" version="update_engine-0.4.10" ismachine="1">
  <os version="Chateau" platform="CoreOS" sp="{version}_x86_64"></os>
  <app appid="{appid}" version="{version}" track="{track}" machineid="{machine}" machinealias="{alias}" oem="qemu" alephversion="{version}">
    <ping active="1"></ping>
    <updatecheck></updatecheck>
  </app>
</request>"#
    )
}

/// The version offered to `machine` (None: no update).
async fn offered(app: &TestApp, appid: &str, machine: &str, version: &str) -> Option<String> {
    let (status, body) = app
        .omaha(&check_xml(appid, "main", machine, version, ""))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("failedToRetrieve"), "{body}");
    body.split(r#"<manifest version=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string)
}

async fn new_package(app: &TestApp, app_id: &str, version: &str) -> String {
    let r = app
        .post_json(
            &format!("/api/apps/{app_id}/packages"),
            json!({"type": 4, "version": version, "url": "https://pkgs.example.com/", "filename": "p.tgz",
                   "size": "1", "hash": "aGFzaA=="}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let p: Value = r.json().await.expect("package");
    p["id"].as_str().expect("id").to_string()
}

async fn point(app: &TestApp, app_id: &str, channel_id: &str, package_id: &str) {
    let r = app
        .put_json(
            &format!("/api/apps/{app_id}/channels/{channel_id}"),
            json!({"package_id": package_id}),
        )
        .await;
    assert_eq!(r.status(), 200);
}

/// Two servers on one (MySQL) database, as two replicas behind a load balancer.
async fn two_replicas(db: TestDb) -> (TestApp, TestApp) {
    let second = db.shared();
    let a = spawn_app(db).await;
    let b = spawn_app(second).await;
    (a, b)
}

/// A channel promotion through one replica is served at once by another replica that had the
/// old package cached (the generation row, read with the check's rows).
async fn replicas_invalidate_each_others_caches(db: TestDb) {
    let (a, b) = two_replicas(db).await;
    let (app_id, channel_id, _group, _pkg) = a
        .setup_rollout("1.0.0", json!({"policy_max_updates_per_period": 1000}))
        .await;
    // Warm replica b's caches (application, group, channel target).
    assert_eq!(
        offered(&b, &app_id, "m1", "0.9.0").await.as_deref(),
        Some("1.0.0")
    );
    assert_eq!(
        offered(&b, &app_id, "m2", "0.9.0").await.as_deref(),
        Some("1.0.0")
    );
    let p2 = new_package(&a, &app_id, "2.0.0").await;
    point(&a, &app_id, &channel_id, &p2).await;
    assert_eq!(
        offered(&b, &app_id, "m3", "0.9.0").await.as_deref(),
        Some("2.0.0")
    );
    // And the same replica's own writes invalidate its cache too.
    let p3 = new_package(&b, &app_id, "3.0.0").await;
    point(&b, &app_id, &channel_id, &p3).await;
    assert_eq!(
        offered(&b, &app_id, "m4", "0.9.0").await.as_deref(),
        Some("3.0.0")
    );
    assert_eq!(
        offered(&a, &app_id, "m5", "0.9.0").await.as_deref(),
        Some("3.0.0")
    );
}
/// Replicas share a MySQL database; a SQLite file has one server process (next test).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_caches() {
    if let Some(db) = TestDb::mysql().await {
        replicas_invalidate_each_others_caches(db).await;
    }
}

async fn group_stats_of(app: &TestApp, path: &str) -> Value {
    app.get_json(path).await["instances_stats"].clone()
}

/// The group page's stats are shared by readers while nothing changes; every write this
/// process commits (a new machine, an event, an alias) shows in the next read at once.
async fn group_stats_follow_every_write(db: TestDb) {
    let app = spawn_app(db).await;
    let (app_id, _channel, group_id, _pkg) = app
        .setup_rollout("2.0.0", json!({"policy_max_updates_per_period": 1000}))
        .await;
    let path = format!("/api/apps/{app_id}/groups/{group_id}");
    assert_eq!(group_stats_of(&app, &path).await["total"], 0);
    for n in 1..=3 {
        assert_eq!(
            offered(&app, &app_id, &format!("m{n}"), "1.0.0")
                .await
                .as_deref(),
            Some("2.0.0")
        );
        // Read twice: the second read is the shared entry and must be the same.
        for _ in 0..2 {
            let s = group_stats_of(&app, &path).await;
            assert_eq!(s["total"], n, "{s}");
            assert_eq!(s["update_granted"], n, "{s}");
        }
    }
    let downloading = format!("{}{}", common::PING_CHECK, common::event(13, 1));
    check_with(&app, &app_id, "m1", "1.0.0", &downloading).await;
    let s = group_stats_of(&app, &path).await;
    assert_eq!(s["downloading"], 1, "{s}");
    assert_eq!(s["update_granted"], 2, "{s}");
    // Concurrent readers agree.
    let reads = futures_util::future::join_all((0..8).map(|_| group_stats_of(&app, &path))).await;
    assert!(reads.iter().all(|r| *r == s), "{reads:?}");
    // A machine not seen for a day drops out of the active window.
    app.clock.advance_ms(25 * 3_600_000);
    assert_eq!(group_stats_of(&app, &path).await["total"], 0);
}
both_backends!(group_stats, group_stats_follow_every_write);

/// Another replica's writes reach a replica's shared stats within their age limit (a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_stats_see_other_replicas() {
    let Some(db) = TestDb::mysql().await else {
        return;
    };
    let (a, b) = two_replicas(db).await;
    let (app_id, _channel, group_id, _pkg) = a
        .setup_rollout("2.0.0", json!({"policy_max_updates_per_period": 1000}))
        .await;
    let path = format!("/api/apps/{app_id}/groups/{group_id}");
    assert_eq!(a.get_json(&path).await["instances_stats"]["total"], 0);
    assert_eq!(
        offered(&b, &app_id, "m1", "1.0.0").await.as_deref(),
        Some("2.0.0")
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if a.get_json(&path).await["instances_stats"]["total"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replica a never saw replica b's new machine"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A second server on the same SQLite file is refused (its caches and the first one's would not
/// see each other's writes), and starts once the first has stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_server_per_sqlite_file() {
    let db = TestDb::sqlite().await;
    let second = db.shared();
    let first = spawn_app(db).await;
    let options = common::AppOptions::default();
    let args = common::serve_args(&second.url, &options);
    let refused = rollbridge::startup::App::build(&args, options.clock.clone()).await;
    let message = format!("{:#}", refused.err().expect("second server refused"));
    assert!(
        message.contains("another rollbridge server is using the SQLite database"),
        "{message}"
    );
    let db = first.stop().await;
    let again = spawn_app(db).await;
    assert_eq!(again.get("/v1.0/health").await.status(), 200);
}

/// An application deleted through one replica is unknown to the other at once. MySQL only:
/// replicas share a MySQL database; a SQLite file has one server process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleted_application_is_forgotten_by_other_replicas() {
    if let Some(db) = TestDb::mysql().await {
        deleted_application_is_forgotten(db).await;
    }
}

async fn deleted_application_is_forgotten(db: TestDb) {
    let (a, b) = two_replicas(db).await;
    let (app_id, _channel, _group, _pkg) = a.setup_rollout("1.0.0", json!({})).await;
    assert!(offered(&b, &app_id, "m1", "0.9.0").await.is_some());
    assert_eq!(a.delete(&format!("/api/apps/{app_id}")).await.status(), 204);
    // Lookups outside a transaction trust a generation read of the last few milliseconds.
    tokio::time::sleep(std::time::Duration::from_millis(
        2 * rollbridge::store::cache::DB_GENERATION_REUSE_MS,
    ))
    .await;
    let (status, body) = b
        .omaha(&check_xml(&app_id, "main", "m2", "0.9.0", ""))
        .await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"status="error-instanceRegistrationFailed""#),
        "{body}"
    );
}

async fn instance(app: &TestApp, app_id: &str, group_id: &str, machine: &str) -> Value {
    app.get_json(&format!(
        "/api/apps/{app_id}/groups/{group_id}/instances/{machine}"
    ))
    .await
}

/// "Last seen" is refreshed at most once a minute, but a changed alias or version is stored at
/// once.
async fn last_seen_is_throttled_but_changes_are_not(db: TestDb) {
    let app = spawn_app(db).await;
    let (app_id, _channel, group_id, _pkg) = app.setup_rollout("1.0.0", json!({})).await;
    let check = |version: &'static str, alias: &'static str| {
        let xml = check_xml(&app_id, "main", "m1", version, alias);
        let app = &app;
        async move {
            let (status, body) = app.omaha(&xml).await;
            assert_eq!(status, 200, "{body}");
        }
    };
    let last_seen = |v: &Value| v["application"]["last_check_for_updates"].clone();
    check("1.0.0", "first").await;
    let before = instance(&app, &app_id, &group_id, "m1").await;
    app.clock.advance_ms(30_000);
    check("1.0.0", "first").await;
    let same = instance(&app, &app_id, &group_id, "m1").await;
    assert_eq!(
        last_seen(&same),
        last_seen(&before),
        "refreshed within a minute"
    );
    app.clock.advance_ms(1_000);
    check("1.0.0", "second").await;
    let renamed = instance(&app, &app_id, &group_id, "m1").await;
    assert_eq!(renamed["alias"], "second", "alias change stored at once");
    app.clock.advance_ms(1_000);
    check("1.1.0", "second").await;
    let upgraded = instance(&app, &app_id, &group_id, "m1").await;
    assert_eq!(upgraded["application"]["version"], "1.1.0");
    assert_ne!(last_seen(&upgraded), last_seen(&before));
    app.clock.advance_ms(61_000);
    check("1.1.0", "second").await;
    let later = instance(&app, &app_id, &group_id, "m1").await;
    assert_ne!(
        last_seen(&later),
        last_seen(&upgraded),
        "refreshed after a minute"
    );
    let seen_ms = chrono::DateTime::parse_from_rfc3339(
        later["application"]["last_check_for_updates"]
            .as_str()
            .expect("timestamp"),
    )
    .expect("rfc3339")
    .timestamp_millis();
    assert_eq!(seen_ms, T0 + 30_000 + 1_000 + 1_000 + 61_000);
}
both_backends!(last_seen, last_seen_is_throttled_but_changes_are_not);

/// A flush writes every pending "last seen" (more than one transaction's worth, in batches of
/// every size), never moves a newer stored value back, and leaves rows it has no entry for alone.
async fn last_seen_flush_writes_every_pending_value(db: TestDb) {
    let app = spawn_app(db).await;
    let (app_id, _channel, group_id, _pkg) = app.setup_rollout("1.0.0", json!({})).await;
    // A store of its own: the server's background flusher would take entries mid-test.
    let db = app.stop().await;
    let store = &db.store().await;
    const MACHINES: i64 = 1_234;
    let mut tx = store.begin().await.expect("begin");
    for n in 0..MACHINES {
        let machine = format!("flush-{n:05}");
        tx.exec(
            "INSERT INTO instances (id, ip, created_ts) VALUES (?, '10.0.0.1', ?)",
            vec![machine.as_str().into(), T0.into()],
        )
        .await
        .expect("instance");
        tx.exec(
            "INSERT INTO instance_applications (instance_id, application_id, group_id, version, \
             last_check_for_updates, created_ts) VALUES (?, ?, ?, '1.0.0', ?, ?)",
            vec![
                machine.as_str().into(),
                app_id.as_str().into(),
                group_id.as_str().into(),
                T0.into(),
                T0.into(),
            ],
        )
        .await
        .expect("instance application");
    }
    tx.commit().await.expect("commit");
    // Every machine but the last ten gets a pending value; each seventh already has a newer one.
    for n in 0..MACHINES - 10 {
        let machine = format!("flush-{n:05}");
        if n % 7 == 0 {
            store
                .db()
                .exec(
                    "UPDATE instance_applications SET last_check_for_updates = ? \
                     WHERE instance_id = ?",
                    vec![(T0 + 900_000).into(), machine.as_str().into()],
                )
                .await
                .expect("newer");
        }
        store.record_last_seen(&app_id, &machine, T0 + 60_000 + n);
    }
    assert_eq!(store.last_seen_pending(), (MACHINES - 10) as usize);
    let written = store.flush_last_seen().await.expect("flush");
    assert_eq!(written, (MACHINES - 10) as usize);
    assert_eq!(store.last_seen_pending(), 0);
    let rows = store
        .db()
        .query(
            "SELECT instance_id, last_check_for_updates FROM instance_applications \
             WHERE instance_id LIKE 'flush-%' ORDER BY instance_id",
            vec![],
        )
        .await
        .expect("rows");
    assert_eq!(rows.len(), MACHINES as usize);
    for (n, row) in rows.iter().enumerate() {
        let n = n as i64;
        assert_eq!(row.text(0).expect("id"), format!("flush-{n:05}"));
        let expected = if n >= MACHINES - 10 {
            T0
        } else if n % 7 == 0 {
            T0 + 900_000
        } else {
            T0 + 60_000 + n
        };
        assert_eq!(row.int(1).expect("seen"), expected, "machine {n}");
    }
}
both_backends!(last_seen_flush, last_seen_flush_writes_every_pending_value);

/// Every acknowledged write is committed: a fresh connection sees all of them right after the
/// responses arrive (SQLite batches many requests into one COMMIT and syncs the WAL once).
async fn acknowledged_writes_are_committed(db: TestDb) {
    const N: usize = 120;
    let url = db.url.clone();
    let app = spawn_app(db).await;
    let (app_id, _channel, _group, _pkg) = app.setup_rollout("1.0.0", json!({})).await;
    let mut tasks = Vec::new();
    for i in 0..N {
        let client = app.client.clone();
        let target = app.url("/v1/update/");
        let xml = check_xml(&app_id, "main", &format!("durable-{i}"), "0.9.0", "");
        tasks.push(tokio::spawn(async move {
            let r = client.post(target).body(xml).send().await.expect("post");
            assert_eq!(r.status(), 200);
            r.text().await.expect("body")
        }));
    }
    for t in tasks {
        let body = t.await.expect("task");
        assert!(body.contains(r#"<manifest version="1.0.0""#), "{body}");
    }
    let fresh = rollbridge::store::Store::connect(&url)
        .await
        .expect("connect");
    let rows = fresh
        .db()
        .query(
            "SELECT COUNT(*), SUM(CASE WHEN status = 2 THEN 1 ELSE 0 END) FROM instance_applications WHERE application_id = ?",
            vec![app_id.clone().into()],
        )
        .await
        .expect("count");
    assert_eq!(rows[0].int(0).expect("count"), N as i64);
    assert_eq!(rows[0].int(1).expect("granted"), N as i64);
    fresh.close().await;
}
both_backends!(durable_writes, acknowledged_writes_are_committed);

/// With the counters taken from the grant buckets, the limit still holds exactly, frees up when
/// the period passes, and grants forced into the past do not count.
async fn bucketed_counters_keep_the_limit(db: TestDb) {
    let app = spawn_app(db).await;
    let (app_id, _channel, _group, _pkg) = app
        .setup_rollout(
            "1.0.0",
            json!({"policy_max_updates_per_period": 3, "policy_period_interval": "10 minutes",
                   "policy_update_timeout": "5 minutes"}),
        )
        .await;
    let mut granted = 0;
    for i in 0..6 {
        if offered(&app, &app_id, &format!("b{i}"), "0.9.0")
            .await
            .is_some()
        {
            granted += 1;
        }
    }
    assert_eq!(granted, 3);
    // After the period and the update timeout, three more.
    app.clock.advance_ms(11 * 60_000);
    let mut granted = 0;
    for i in 6..12 {
        if offered(&app, &app_id, &format!("b{i}"), "0.9.0")
            .await
            .is_some()
        {
            granted += 1;
        }
    }
    assert_eq!(granted, 3);
}
both_backends!(bucketed_counters, bucketed_counters_keep_the_limit);

/// (checks answered without the transaction: cached or from a snapshot, checks that ran the
/// transaction) so far.
fn paths(app: &TestApp) -> (u64, u64) {
    let checks = &app.state.omaha.checks;
    (
        checks.count_of(CheckPath::Cached) + checks.count_of(CheckPath::Snapshot),
        checks.count_of(CheckPath::Transaction),
    )
}

fn cached(app: &TestApp) -> u64 {
    app.state.omaha.checks.count_of(CheckPath::Cached)
}

async fn check_with(
    app: &TestApp,
    appid: &str,
    machine: &str,
    version: &str,
    body: &str,
) -> String {
    let xml = common::check_xml(appid, "main", machine, version, body);
    let (status, response) = app.omaha(&xml).await;
    assert_eq!(status, 200, "{response}");
    response
}

async fn count_rows(app: &TestApp, sql: &str, machine: &str) -> i64 {
    let rows = app
        .state
        .store
        .db()
        .query(sql, vec![machine.into()])
        .await
        .expect("count");
    rows[0].int(0).expect("count")
}

/// A known machine with nothing new is answered from the read snapshot and writes nothing;
/// anything that must be stored (first contact, a failure event, a changed alias) runs the
/// transaction and is stored; a due "last seen" alone is written in a batch.
async fn steady_state_checks_take_the_read_only_path(db: TestDb) {
    let app = spawn_app(db).await;
    let (app_id, _channel, group_id, _pkg) = app.setup_rollout("1.0.0", json!({})).await;
    let noupdate = r#"<updatecheck status="noupdate""#;
    let every_check = r#"<ping active="1"></ping><updatecheck></updatecheck><event eventtype="3" eventresult="2" previousversion=""></event>"#;

    assert!(check_with(&app, &app_id, "m1", "1.0.0", common::PING_CHECK)
        .await
        .contains(noupdate));
    assert_eq!(paths(&app), (0, 1), "first contact registers");
    let registered = instance(&app, &app_id, &group_id, "m1").await;

    app.clock.advance_ms(10_000);
    assert!(check_with(&app, &app_id, "m1", "1.0.0", common::PING_CHECK)
        .await
        .contains(noupdate));
    assert!(check_with(&app, &app_id, "m1", "1.0.0", every_check)
        .await
        .contains(noupdate));
    assert_eq!(paths(&app), (2, 1), "nothing new: read-only");
    assert_eq!(
        instance(&app, &app_id, &group_id, "m1").await,
        registered,
        "nothing written"
    );

    // A failure report is stored even without an update in progress.
    let failed = format!("{}{}", common::PING_CHECK, common::event(3, 0));
    check_with(&app, &app_id, "m1", "1.0.0", &failed).await;
    assert_eq!(paths(&app), (2, 2));
    let sql =
        "SELECT COUNT(*) FROM events WHERE instance_id = ? AND event_type = 3 AND event_result = 0";
    assert_eq!(count_rows(&app, sql, "m1").await, 1);

    // A new alias is stored at once.
    let xml = check_xml(&app_id, "main", "m1", "1.0.0", "renamed");
    assert_eq!(app.omaha(&xml).await.0, 200);
    assert_eq!(paths(&app), (2, 3));
    assert_eq!(
        instance(&app, &app_id, &group_id, "m1").await["alias"],
        "renamed"
    );
    assert_eq!(app.omaha(&xml).await.0, 200);
    assert_eq!(paths(&app), (3, 3));

    // "Last seen" is due after a minute: recorded without the transaction, written in a batch
    // (REST reads write pending ones first).
    app.clock.advance_ms(61_000);
    assert_eq!(app.omaha(&xml).await.0, 200);
    assert_eq!(paths(&app), (4, 3));
    assert_eq!(app.state.store.last_seen_pending(), 1);
    let seen = instance(&app, &app_id, &group_id, "m1").await;
    assert_eq!(app.state.store.last_seen_pending(), 0);
    assert_ne!(
        seen["application"]["last_check_for_updates"],
        registered["application"]["last_check_for_updates"]
    );
}
both_backends!(read_only_path, steady_state_checks_take_the_read_only_path);

/// Answers the read snapshot gives are the ones the transaction gives: a granted machine asking
/// again gets the same package, a machine held back by the limit gets the same denial (and is
/// not rewritten), a paused group denies; what frees a slot or grants runs the transaction.
async fn read_only_answers_match_the_transaction(db: TestDb) {
    let app = spawn_app(db).await;
    let (app_id, _channel, group_id, _pkg) = app
        .setup_rollout(
            "2.0.0",
            json!({"policy_max_updates_per_period": 1, "policy_period_interval": "10 minutes",
                   "policy_update_timeout": "5 minutes"}),
        )
        .await;
    let manifest = r#"<manifest version="2.0.0""#;
    let limited = r#"status="error-maxUpdatesPerPeriodLimitReached""#;

    assert!(check_with(&app, &app_id, "a", "1.0.0", common::PING_CHECK)
        .await
        .contains(manifest));
    assert_eq!(paths(&app), (0, 1));
    // Asking again before downloading: the same grant, served without writing.
    assert!(check_with(&app, &app_id, "a", "1.0.0", common::PING_CHECK)
        .await
        .contains(manifest));
    assert_eq!(paths(&app), (1, 1));

    // The second machine is over the limit: put on hold once, then denied read-only.
    let first = check_with(&app, &app_id, "b", "1.0.0", common::PING_CHECK).await;
    assert!(first.contains(limited), "{first}");
    assert_eq!(paths(&app), (1, 2));
    let held = instance(&app, &app_id, &group_id, "b").await;
    assert_eq!(held["application"]["status"], 8, "on hold: {held}");
    let history_sql = "SELECT COUNT(*) FROM instance_status_history WHERE instance_id = ?";
    let history = count_rows(&app, history_sql, "b").await;
    let again = check_with(&app, &app_id, "b", "1.0.0", common::PING_CHECK).await;
    assert_eq!(again, first, "same answer from the snapshot");
    assert_eq!(paths(&app), (2, 2));
    assert_eq!(
        count_rows(&app, history_sql, "b").await,
        history,
        "not rewritten"
    );

    // Pausing the group: the granted-but-idle machine keeps its grant, the other is denied.
    let r = app
        .put_json(
            &format!("/api/apps/{app_id}/groups/{group_id}"),
            json!({"policy_updates_enabled": false}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let paused = check_with(&app, &app_id, "b", "1.0.0", common::PING_CHECK).await;
    assert!(
        paused.contains(r#"status="error-updatesDisabled""#),
        "{paused}"
    );
    assert_eq!(paths(&app), (3, 2));
    let r = app
        .put_json(
            &format!("/api/apps/{app_id}/groups/{group_id}"),
            json!({"policy_updates_enabled": true}),
        )
        .await;
    assert_eq!(r.status(), 200);

    // Once the period and the timeout passed, the held machine is granted (a write).
    app.clock.advance_ms(11 * 60_000);
    assert!(check_with(&app, &app_id, "b", "1.0.0", common::PING_CHECK)
        .await
        .contains(manifest));
    let (_, transactions) = paths(&app);
    assert_eq!(transactions, 3);
    assert_eq!(
        instance(&app, &app_id, &group_id, "b").await["application"]["status"],
        2,
        "granted"
    );
}
both_backends!(read_only_answers, read_only_answers_match_the_transaction);

/// A denied machine's next checks may reuse the group's counters (SQLite remembers them), but
/// never past a write: the moment a grant ends, the next check counts again and is granted.
async fn remembered_counters_follow_writes(db: TestDb) {
    let app = spawn_app(db).await;
    let (app_id, _channel, _group, _pkg) = app
        .setup_rollout(
            "2.0.0",
            json!({"policy_max_updates_per_period": 1, "policy_period_interval": "1 minute",
                   "policy_update_timeout": "1 hour", "policy_safe_mode": false,
                   "policy_auto_pause_on_failure": false}),
        )
        .await;
    assert_eq!(
        offered(&app, &app_id, "a", "1.0.0").await.as_deref(),
        Some("2.0.0")
    );
    // The period is over, but a's update is still in progress: b waits for it.
    app.clock.advance_ms(2 * 60_000);
    for _ in 0..3 {
        assert_eq!(offered(&app, &app_id, "b", "1.0.0").await, None);
    }
    let (read_only, _) = paths(&app);
    assert!(read_only >= 2, "denials answered read-only");
    // a's attempt ends (a failure report, no new check); at the same instant, b is let through.
    check_with(&app, &app_id, "a", "1.0.0", &common::event(3, 0)).await;
    assert_eq!(
        offered(&app, &app_id, "b", "1.0.0").await.as_deref(),
        Some("2.0.0")
    );
    assert_eq!(
        offered(&app, &app_id, "c", "1.0.0").await,
        None,
        "limit kept"
    );
}
both_backends!(remembered_counters, remembered_counters_follow_writes);

/// A machine another replica knows as settled gets a promotion at once: the snapshot reads the
/// configuration generation with its rows, so no replica answers from an old channel target.
async fn settled_machines_see_promotions_on_every_replica(db: TestDb) {
    let (a, b) = two_replicas(db).await;
    let (app_id, channel_id, _group, _pkg) = a
        .setup_rollout("1.0.0", json!({"policy_max_updates_per_period": 1000}))
        .await;
    assert_eq!(offered(&b, &app_id, "settled", "1.0.0").await, None);
    assert_eq!(offered(&b, &app_id, "settled", "1.0.0").await, None);
    assert_eq!(paths(&b).0, 1, "settled machine answered read-only");
    let p2 = new_package(&a, &app_id, "2.0.0").await;
    point(&a, &app_id, &channel_id, &p2).await;
    assert_eq!(
        offered(&b, &app_id, "settled", "1.0.0").await.as_deref(),
        Some("2.0.0")
    );
}
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn promotions_seen() {
    if let Some(db) = TestDb::mysql().await {
        settled_machines_see_promotions_on_every_replica(db).await;
    }
}

/// SQLite: a settled machine is answered from the instance cache after one snapshot read, and
/// every write that could change its rows (its own check that writes, a configuration change,
/// a direct state change) takes it out until a new read; the answers stay the transaction's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settled_machines_are_answered_from_the_instance_cache() {
    let app = spawn_app(TestDb::sqlite().await).await;
    let (app_id, channel_id, _group, _pkg) = app.setup_rollout("1.0.0", json!({})).await;
    let noupdate = r#"<updatecheck status="noupdate""#;
    let check =
        |version: &'static str| check_with(&app, &app_id, "m1", version, common::PING_CHECK);

    assert!(check("1.0.0").await.contains(noupdate));
    assert_eq!((paths(&app), cached(&app)), ((0, 1), 0), "first contact");
    assert!(check("1.0.0").await.contains(noupdate));
    assert_eq!(
        (paths(&app), cached(&app)),
        ((1, 1), 0),
        "snapshot read, cache filled"
    );
    assert!(check("1.0.0").await.contains(noupdate));
    assert!(check("1.0.0").await.contains(noupdate));
    assert_eq!(
        (paths(&app), cached(&app)),
        ((3, 1), 2),
        "answered from the cache"
    );

    // A promotion (configuration write) voids the cache: the machine is granted at once.
    let p2 = new_package(&app, &app_id, "2.0.0").await;
    point(&app, &app_id, &channel_id, &p2).await;
    assert!(check("1.0.0")
        .await
        .contains(r#"<manifest version="2.0.0""#));
    assert_eq!(
        (paths(&app), cached(&app)),
        ((3, 2), 2),
        "granted by the transaction"
    );
    // Asking again: the same grant, from a snapshot, then from the cache.
    assert!(check("1.0.0")
        .await
        .contains(r#"<manifest version="2.0.0""#));
    assert!(check("1.0.0")
        .await
        .contains(r#"<manifest version="2.0.0""#));
    assert_eq!((paths(&app), cached(&app)), ((5, 2), 3));

    // A direct state change of the rows (an operator action) is not answered from the cache.
    app.state
        .store
        .force_instance_state(
            "m1",
            &app_id,
            &rollbridge::store::rollout::InstanceAppState {
                group_id: None,
                version: "2.0.0".into(),
                status: Some(4),
                update_in_progress: false,
                last_update_version: Some("2.0.0".into()),
                last_update_granted_ts: None,
            },
        )
        .await
        .expect("force state");
    assert!(check("2.0.0").await.contains(noupdate));
    assert_eq!(cached(&app), 3, "not from the cache after the forced write");

    // The machine's own writes: an event that is stored.
    let (_, transactions) = paths(&app);
    check("2.0.0").await;
    check("2.0.0").await;
    let failed = format!("{}{}", common::PING_CHECK, common::event(3, 0));
    let before = cached(&app);
    check_with(&app, &app_id, "m1", "2.0.0", &failed).await;
    assert_eq!(
        paths(&app).1,
        transactions + 1,
        "the failure report is a write"
    );
    assert_eq!(cached(&app), before, "and was not answered from the cache");
    let sql =
        "SELECT COUNT(*) FROM events WHERE instance_id = ? AND event_type = 3 AND event_result = 0";
    assert_eq!(count_rows(&app, sql, "m1").await, 1);
}

/// Sustained writes, with readers beside them, keep the SQLite WAL bounded. The background
/// checkpoints are passive, and a WAL only starts over when a write begins while every frame is
/// checkpointed; under a steady stream of writes that moment never came and the WAL grew by every
/// page written (GiBs in the benchmark, with every read searching a longer WAL index).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sustained_writes_keep_the_wal_bounded() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    const BLOB: usize = 64 << 10;
    const WRITERS: usize = 8;
    const TRANSACTIONS_PER_WRITER: usize = 200;
    const BLOBS_PER_TRANSACTION: usize = 4;
    // 8 × 200 × 4 × 64 KiB = 400 MiB of pages written; the WAL restarts from 128 MiB.
    const WAL_BOUND: u64 = 192 << 20;
    const WAL_RESTART_SIZE: u64 = 128 << 20;

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("wal.db");
    let wal_path = dir.path().join("wal.db-wal");
    let store = rollbridge::store::Store::open(&format!("sqlite://{}", path.display()))
        .await
        .expect("open");
    store
        .db()
        .exec(
            "CREATE TABLE wal_fill (id INTEGER PRIMARY KEY, payload BLOB)",
            vec![],
        )
        .await
        .expect("table");

    let stop = Arc::new(AtomicBool::new(false));
    let largest_wal = Arc::new(AtomicU64::new(0));
    // Smallest size seen once the WAL had reached the restart size: a restart must reuse the
    // file's blocks, not give them back (truncating stalled the writer at every restart).
    let smallest_after_restart = Arc::new(AtomicU64::new(u64::MAX));
    let mut background = Vec::new();
    for _ in 0..2 {
        let (store, stop) = (store.clone(), stop.clone());
        background.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(Some(mut snapshot)) = store.snapshot().await {
                    let _ = snapshot
                        .query("SELECT count(*) FROM wal_fill WHERE id < 8", vec![])
                        .await;
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    {
        let (stop, largest_wal, smallest, wal_path) = (
            stop.clone(),
            largest_wal.clone(),
            smallest_after_restart.clone(),
            wal_path.clone(),
        );
        background.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(meta) = std::fs::metadata(&wal_path) {
                    largest_wal.fetch_max(meta.len(), Ordering::SeqCst);
                    if largest_wal.load(Ordering::SeqCst) >= WAL_RESTART_SIZE {
                        smallest.fetch_min(meta.len(), Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }));
    }

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..TRANSACTIONS_PER_WRITER {
                let mut tx = store.begin().await.expect("begin");
                for b in 0..BLOBS_PER_TRANSACTION {
                    // A fixed set of rows rewritten: the database stays small, the WAL gets
                    // every page.
                    let id = (writer * BLOBS_PER_TRANSACTION + b) as i64;
                    let payload = vec![(n % 251) as u8; BLOB];
                    tx.exec(
                        "INSERT OR REPLACE INTO wal_fill (id, payload) VALUES (?, ?)",
                        rollbridge::sql_params![id, payload],
                    )
                    .await
                    .expect("write");
                }
                tx.commit().await.expect("commit");
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    stop.store(true, Ordering::SeqCst);
    for task in background {
        task.await.expect("background task");
    }
    if let Ok(meta) = std::fs::metadata(&wal_path) {
        largest_wal.fetch_max(meta.len(), Ordering::SeqCst);
    }
    let largest = largest_wal.load(Ordering::SeqCst);
    assert!(
        largest < WAL_BOUND,
        "the WAL grew to {} MiB while 400 MiB of pages were written",
        largest >> 20
    );
    assert!(
        largest >= WAL_RESTART_SIZE,
        "the test must write enough for the WAL to restart (it reached {} MiB)",
        largest >> 20
    );
    let smallest = smallest_after_restart.load(Ordering::SeqCst);
    assert!(
        smallest >= WAL_RESTART_SIZE,
        "the WAL file was truncated to {} MiB after it restarted: its blocks should be reused",
        smallest >> 20
    );
    let rows = store
        .db()
        .query("SELECT count(*) FROM wal_fill", vec![])
        .await
        .expect("count");
    assert_eq!(
        rows[0].int(0).expect("count"),
        (WRITERS * BLOBS_PER_TRANSACTION) as i64
    );
}
