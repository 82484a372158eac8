//! Store conformance suite: the same test bodies run against SQLite and MariaDB
//! (`both_backends!`), covering every entity's create/read/update/delete, unique constraints,
//! case-sensitive names, cascade deletes, the blacklist rules, users and tokens, and migrations
//! (idempotent; a newer schema is refused).

mod common;

use common::TestDb;
use rollbridge::domain::{
    ActivityClass, ApplicationInput, ChannelInput, GroupInput, NewActivity, PackageInput, Severity,
};
use rollbridge::store::instances::{ActivityFilter, InstanceFilter};
use rollbridge::store::rollout::{self as rows, InstanceKey, Registration};
use rollbridge::store::{Store, StoreError};

const TEAM: &str = rollbridge::domain::seed::DEFAULT_TEAM_ID;
const NOW: i64 = common::T0;

async fn seeded(db: &TestDb) -> Store {
    let store = db.store().await;
    rollbridge::startup::seed(&store, Some("s3cret-pass"), NOW)
        .await
        .expect("seed");
    store
}

fn app_input(name: &str) -> rollbridge::domain::ApplicationFields {
    ApplicationInput {
        name: Some(name.into()),
        description: Some("d".into()),
        ..Default::default()
    }
    .validate()
    .unwrap()
}

fn package_input(version: &str, blacklist: Vec<String>) -> rollbridge::domain::PackageFields {
    PackageInput {
        package_type: Some(1),
        version: Some(version.into()),
        url: Some("https://example.com/".into()),
        filename: Some("update.gz".into()),
        size: Some("100".into()),
        hash: Some("+ZFmPWzv1OdfmKHaGSojbK5Xj3k=".into()),
        channels_blacklist: Some(blacklist),
        coreos_action: Some(rollbridge::domain::CoreosActionInput {
            sha256: Some("cSBzKN9Yp6v1pC1Tm3nuAs2rsyaNqR3p0ylH8dyVg1g=".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
    .validate(common::COREOS_APP)
    .unwrap()
}

fn channel_input(name: &str, package: Option<&str>) -> rollbridge::domain::ChannelFields {
    ChannelInput {
        name: Some(name.into()),
        color: Some("#fff".into()),
        package_id: Some(package.map(String::from)),
    }
    .validate(None)
    .unwrap()
}

fn group_input(name: &str, channel: Option<&str>) -> rollbridge::domain::GroupFields {
    GroupInput {
        name: Some(name.into()),
        channel_id: Some(channel.map(String::from)),
        policy_period_interval: Some("15 minutes".into()),
        policy_update_timeout: Some("1 hour".into()),
        policy_max_updates_per_period: Some(3),
        policy_timezone: Some(Some("Europe/Berlin".into())),
        ..Default::default()
    }
    .validate(None)
    .unwrap()
}

async fn seed_data_is_present_and_idempotent(db: TestDb) {
    let store = seeded(&db).await;
    rollbridge::startup::seed(&store, Some("other"), NOW)
        .await
        .unwrap();
    let apps = store.list_apps(TEAM).await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].id, common::COREOS_APP);
    let groups = store.list_groups(common::COREOS_APP, NOW).await.unwrap();
    let mut tracks: Vec<_> = groups.iter().map(|g| g.track.clone()).collect();
    tracks.sort();
    assert_eq!(tracks, ["alpha", "beta", "stable"]);
    let stable = groups.iter().find(|g| g.track == "stable").unwrap();
    assert_eq!(stable.id, "9a2deb70-37be-4026-853f-bfdd6b347bbe");
    assert!(stable.policy_safe_mode);
    assert_eq!(stable.policy_max_updates_per_period, 2);
    assert_eq!(
        stable.channel.as_ref().unwrap().id,
        "e06064ad-4414-4904-9a6e-fd465593d1b2"
    );
    // The first password stays: seeding again does not reset it.
    let admin = store.user_by_name("admin").await.unwrap().unwrap();
    assert!(rollbridge::auth::verify_password(
        "s3cret-pass",
        &admin.password_hash
    ));
    assert!(!admin.password_is_default);
}
both_backends!(seed_data, seed_data_is_present_and_idempotent);

async fn applications_crud_and_unique_names(db: TestDb) {
    let store = seeded(&db).await;
    let app = store
        .create_app(TEAM, &app_input("web"), None, NOW)
        .await
        .unwrap();
    assert_eq!(store.app(TEAM, &app.id).await.unwrap().name, "web");
    let dup = store.create_app(TEAM, &app_input("web"), None, NOW).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    // Names are case-sensitive on both backends.
    store
        .create_app(TEAM, &app_input("Web"), None, NOW)
        .await
        .unwrap();
    let updated = store
        .update_app(TEAM, &app.id, &app_input("web2"))
        .await
        .unwrap();
    assert_eq!(updated.name, "web2");
    assert!(store.app_by_name(TEAM, "web2").await.unwrap().is_some());
    store.delete_app(TEAM, &app.id).await.unwrap();
    assert!(matches!(
        store.app(TEAM, &app.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_app(TEAM, &app.id).await,
        Err(StoreError::NotFound)
    ));
}
both_backends!(applications, applications_crud_and_unique_names);

async fn packages_channels_groups_crud(db: TestDb) {
    let store = seeded(&db).await;
    let app = store
        .create_app(TEAM, &app_input("svc"), None, NOW)
        .await
        .unwrap();
    let pkg = store
        .create_package(&app.id, &package_input("1.0.0", vec![]), NOW)
        .await
        .unwrap();
    assert_eq!(
        pkg.coreos_action.as_ref().unwrap().sha256,
        "cSBzKN9Yp6v1pC1Tm3nuAs2rsyaNqR3p0ylH8dyVg1g="
    );
    assert!(matches!(
        store
            .create_package(&app.id, &package_input("1.0.0", vec![]), NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let pkg2 = store
        .create_package(&app.id, &package_input("1.10.0", vec![]), NOW)
        .await
        .unwrap();
    let listed = store.list_packages(&app.id).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|p| p.version.as_str())
            .collect::<Vec<_>>(),
        ["1.10.0", "1.0.0"],
        "newest version first"
    );

    let channel = store
        .create_channel(&app.id, &channel_input("stable", Some(&pkg.id)), NOW)
        .await
        .unwrap();
    assert_eq!(channel.package.as_ref().unwrap().version, "1.0.0");
    assert!(matches!(
        store
            .create_channel(&app.id, &channel_input("stable", None), NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let moved = store
        .update_channel(
            &app.id,
            &channel.id,
            &channel_input("stable", Some(&pkg2.id)),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(moved.package_id.as_deref(), Some(pkg2.id.as_str()));

    let group = store
        .create_group(&app.id, &group_input("prod", Some(&channel.id)), NOW)
        .await
        .unwrap();
    assert_eq!(group.track, group.id, "track defaults to the id");
    assert_eq!(
        group
            .channel
            .as_ref()
            .unwrap()
            .package
            .as_ref()
            .unwrap()
            .version,
        "1.10.0"
    );
    assert!(matches!(
        store
            .create_group(&app.id, &group_input("prod", None), NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let mut changed = group_input("prod", Some(&channel.id));
    changed.policy_updates_enabled = false;
    changed.track = Some("production".into());
    let updated = store
        .update_group(&app.id, &group.id, &changed, NOW)
        .await
        .unwrap();
    assert!(!updated.policy_updates_enabled);
    assert_eq!(
        store
            .group_for_track(&app.id, "production")
            .await
            .unwrap()
            .unwrap()
            .id,
        group.id
    );
    assert_eq!(
        store
            .group_for_track(&app.id, &group.id)
            .await
            .unwrap()
            .unwrap()
            .id,
        group.id
    );
    assert!(
        store
            .group_for_track(&app.id, "PRODUCTION")
            .await
            .unwrap()
            .is_none(),
        "tracks are case-sensitive"
    );

    // Cascades: deleting the package a channel points at clears the channel's package.
    store.delete_package(&app.id, &pkg2.id).await.unwrap();
    assert_eq!(
        store
            .channel(&app.id, &channel.id)
            .await
            .unwrap()
            .package_id,
        None
    );
    // Deleting the channel clears the group's channel.
    store.delete_channel(&app.id, &channel.id).await.unwrap();
    assert_eq!(
        store
            .group(&app.id, &group.id, NOW)
            .await
            .unwrap()
            .channel_id,
        None
    );
    store.delete_group(&app.id, &group.id).await.unwrap();
    assert!(matches!(
        store.group(&app.id, &group.id, NOW).await,
        Err(StoreError::NotFound)
    ));
    // Deleting the app removes everything below it.
    store.delete_app(TEAM, &app.id).await.unwrap();
    assert!(store.list_packages(&app.id).await.unwrap().is_empty());
    assert!(store.list_channels(&app.id).await.unwrap().is_empty());
}
both_backends!(packages_channels_groups, packages_channels_groups_crud);

async fn blacklist_rules_hold(db: TestDb) {
    let store = seeded(&db).await;
    let app = store
        .create_app(TEAM, &app_input("bl"), None, NOW)
        .await
        .unwrap();
    let other = store
        .create_app(TEAM, &app_input("other"), None, NOW)
        .await
        .unwrap();
    let a = store
        .create_channel(&app.id, &channel_input("a", None), NOW)
        .await
        .unwrap();
    let b = store
        .create_channel(&app.id, &channel_input("b", None), NOW)
        .await
        .unwrap();
    let pkg = store
        .create_package(&app.id, &package_input("2.0.0", vec![a.id.clone()]), NOW)
        .await
        .unwrap();
    assert_eq!(pkg.channels_blacklist, vec![a.id.clone()]);
    // Rule 1: a channel cannot point at a package that blacklists it.
    assert!(matches!(
        store
            .update_channel(&app.id, &a.id, &channel_input("a", Some(&pkg.id)), NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .update_channel(&app.id, &b.id, &channel_input("b", Some(&pkg.id)), NOW)
        .await
        .unwrap();
    // Rule 2: a package cannot newly blacklist a channel that points at it.
    assert!(matches!(
        store
            .update_package(
                &app.id,
                &pkg.id,
                &package_input("2.0.0", vec![a.id.clone(), b.id.clone()]),
                NOW
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .package(&app.id, &pkg.id)
            .await
            .unwrap()
            .channels_blacklist,
        vec![a.id.clone()],
        "nothing half-stored"
    );
    // Channels of another application are not valid blacklist entries, nor packages of another app.
    let foreign = store
        .create_channel(&other.id, &channel_input("x", None), NOW)
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_package(
                &app.id,
                &package_input("3.0.0", vec![foreign.id.clone()]),
                NOW
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(store
        .package_by_version(&app.id, "3.0.0")
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        store
            .update_channel(
                &other.id,
                &foreign.id,
                &channel_input("x", Some(&pkg.id)),
                NOW
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
    // Deleting a blacklisted channel removes the blacklist entry.
    store.delete_channel(&app.id, &a.id).await.unwrap();
    assert!(store
        .package(&app.id, &pkg.id)
        .await
        .unwrap()
        .channels_blacklist
        .is_empty());
}
both_backends!(blacklists, blacklist_rules_hold);

async fn clone_from_copies_channels_and_groups(db: TestDb) {
    let store = seeded(&db).await;
    let clone = store
        .create_app(
            TEAM,
            &app_input("flatcar-clone"),
            Some(common::COREOS_APP),
            NOW,
        )
        .await
        .unwrap();
    let channels = store.list_channels(&clone.id).await.unwrap();
    assert_eq!(channels.len(), 3);
    assert!(channels.iter().all(|c| c.package_id.is_none()));
    let groups = store.list_groups(&clone.id, NOW).await.unwrap();
    assert_eq!(groups.len(), 3);
    for g in &groups {
        let channel = g.channel_id.as_ref().expect("cloned group has a channel");
        assert!(
            channels.iter().any(|c| &c.id == channel),
            "group points at a cloned channel"
        );
        assert!(g.policy_updates_enabled);
    }
}
both_backends!(clone_from, clone_from_copies_channels_and_groups);

async fn instances_history_events_and_activity(db: TestDb) {
    let store = seeded(&db).await;
    let app = store
        .create_app(TEAM, &app_input("fleet"), None, NOW)
        .await
        .unwrap();
    let pkg = store
        .create_package(&app.id, &package_input("2.0.0", vec![]), NOW)
        .await
        .unwrap();
    let channel = store
        .create_channel(&app.id, &channel_input("c", Some(&pkg.id)), NOW)
        .await
        .unwrap();
    let group = store
        .create_group(&app.id, &group_input("g", Some(&channel.id)), NOW)
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    for (i, machine) in ["m-1", "m-2", "host_3"].iter().enumerate() {
        let (ip, alias) = (format!("10.0.0.{i}"), format!("alias-{i}"));
        rows::register(
            &mut tx,
            &Registration {
                instance_id: machine,
                app_id: &app.id,
                group_id: &group.id,
                ip: &ip,
                alias: &alias,
                oem: "",
                aleph_version: "",
                version: "1.0.0",
            },
            NOW,
        )
        .await
        .unwrap();
    }
    let key = InstanceKey {
        instance_id: "m-1",
        app_id: &app.id,
        group_id: &group.id,
    };
    rows::grant(&mut tx, key, "2.0.0", NOW).await.unwrap();
    rows::insert_event(&mut tx, key, (3, 0), "", "1234", NOW + 1)
        .await
        .unwrap();
    rows::add_activity(
        &mut tx,
        &NewActivity {
            class: ActivityClass::RolloutStarted,
            severity: Severity::Info,
            version: "2.0.0".into(),
            application_id: app.id.clone(),
            group_id: Some(group.id.clone()),
            channel_id: None,
            instance_id: None,
            description: "started".into(),
        },
        NOW,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let all = InstanceFilter {
        page: 1,
        per_page: 10,
        ..Default::default()
    };
    let (total, list) = store
        .list_instances(&app.id, &group.id, &all, NOW)
        .await
        .unwrap();
    assert_eq!(total, 3);
    assert_eq!(list.len(), 3);
    let search = InstanceFilter {
        search: Some("host_".into()),
        page: 1,
        per_page: 10,
        ..Default::default()
    };
    let (total, list) = store
        .list_instances(&app.id, &group.id, &search, NOW)
        .await
        .unwrap();
    assert_eq!(
        (total, list[0].id.as_str()),
        (1, "host_3"),
        "underscore is literal in search"
    );
    let granted = InstanceFilter {
        status: Some(rollbridge::domain::InstanceStatus::UpdateGranted),
        page: 1,
        per_page: 10,
        ..Default::default()
    };
    assert_eq!(
        store
            .list_instances(&app.id, &group.id, &granted, NOW)
            .await
            .unwrap()
            .0,
        1
    );
    let page2 = InstanceFilter {
        page: 2,
        per_page: 2,
        ..Default::default()
    };
    assert_eq!(
        store
            .list_instances(&app.id, &group.id, &page2, NOW)
            .await
            .unwrap()
            .1
            .len(),
        1
    );
    // Instances silent for more than a day drop out.
    assert_eq!(
        store
            .list_instances(&app.id, &group.id, &all, NOW + 86_400_001)
            .await
            .unwrap()
            .0,
        0
    );

    let history = store.status_history(&app.id, "m-1", 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].status, history[0].version.as_str()),
        (2, "2.0.0")
    );
    let events = store.instance_events(&app.id, "m-1", 10).await.unwrap();
    assert_eq!(
        (
            events[0].event_type,
            events[0].event_result,
            events[0].error_code.as_str()
        ),
        (3, 0, "1234")
    );
    let g = store.group(&app.id, &group.id, NOW).await.unwrap();
    let stats = g.instances_stats.unwrap();
    assert_eq!(
        (stats.total, stats.update_granted, stats.undefined),
        (3, 1, 2)
    );

    let filter = ActivityFilter {
        team_id: TEAM.into(),
        app_id: Some(app.id.clone()),
        start_ms: NOW - 1000,
        end_ms: NOW + 1000,
        page: 1,
        per_page: 50,
        ..Default::default()
    };
    let activity = store.list_activity(&filter).await.unwrap();
    assert!(activity
        .iter()
        .any(|a| a.class == 2 && a.group_name.as_deref() == Some("g")));
    let errors_only = ActivityFilter {
        severity: Some(4),
        ..filter.clone()
    };
    assert!(store
        .list_activity(&errors_only)
        .await
        .unwrap()
        .iter()
        .all(|a| a.severity == 4));

    // Deleting the group keeps instances but detaches them; deleting the app removes them.
    store.delete_group(&app.id, &group.id).await.unwrap();
    assert_eq!(
        store
            .instance(&app.id, "m-1")
            .await
            .unwrap()
            .application
            .unwrap()
            .group_id,
        None
    );
    store.delete_app(TEAM, &app.id).await.unwrap();
    assert!(matches!(
        store.instance(&app.id, "m-1").await,
        Err(StoreError::NotFound)
    ));
}
both_backends!(instances, instances_history_events_and_activity);

async fn users_and_tokens(db: TestDb) {
    let store = seeded(&db).await;
    let admin = store.user_by_name("admin").await.unwrap().unwrap();
    let (token, digest) = rollbridge::auth::new_token();
    let created = store
        .create_token("ci", &admin.user.id, &digest, NOW)
        .await
        .unwrap();
    assert_eq!(
        store
            .user_for_token(&digest, NOW)
            .await
            .unwrap()
            .unwrap()
            .username,
        "admin"
    );
    assert!(store
        .user_for_token(&rollbridge::auth::token_digest("nope"), NOW)
        .await
        .unwrap()
        .is_none());
    let listed = store.list_tokens().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_ts, Some(NOW));
    assert!(
        !format!("{listed:?}").contains(&token),
        "token secrets are never stored"
    );
    store.revoke_token(&created.id).await.unwrap();
    assert!(store.user_for_token(&digest, NOW).await.unwrap().is_none());
    assert!(matches!(
        store.revoke_token(&created.id).await,
        Err(StoreError::NotFound)
    ));
    // A password change ends the user's dashboard sessions, but the one that made it.
    for session in ["s-kept", "s-other"] {
        store
            .create_session(session, &admin.user.id, "csrf", NOW, NOW + 3_600_000)
            .await
            .unwrap();
    }
    store
        .set_password(
            "admin",
            &rollbridge::auth::hash_password("new-password").unwrap(),
            Some("s-kept"),
        )
        .await
        .unwrap();
    let admin = store.user_by_name("admin").await.unwrap().unwrap();
    assert!(rollbridge::auth::verify_password(
        "new-password",
        &admin.password_hash
    ));
    assert!(store.session("s-kept", NOW).await.unwrap().is_some());
    assert!(store.session("s-other", NOW).await.unwrap().is_none());
    // From the API or the CLI (no session of its own): every session ends.
    store
        .set_password("admin", &admin.password_hash, None)
        .await
        .unwrap();
    assert!(store.session("s-kept", NOW).await.unwrap().is_none());
    assert!(matches!(
        store.set_password("ghost", "x", None).await,
        Err(StoreError::NotFound)
    ));
    store.create_user("ops", "hash", TEAM, NOW).await.unwrap();
    assert!(matches!(
        store.create_user("ops", "hash", TEAM, NOW).await,
        Err(StoreError::Conflict(_))
    ));
}
both_backends!(users_tokens, users_and_tokens);

async fn migrations_are_idempotent_and_refuse_newer_schemas(db: TestDb) {
    let store = seeded(&db).await;
    let app = store
        .create_app(TEAM, &app_input("keep"), None, NOW)
        .await
        .unwrap();
    let before = store.migrate().await.unwrap();
    assert!(
        before.applied_now.is_empty(),
        "second migrate applies nothing"
    );
    assert_eq!(before.all.len(), rollbridge::store::migrate::SQLITE.len());
    // Re-running every migration script changes nothing either (MySQL has no DDL rollback, so a
    // crash mid-script re-runs it), indexes included: MySQL 8 has no CREATE INDEX IF NOT EXISTS.
    for migration in rollbridge::store::migrate::migrations(store.dialect()) {
        if let Err(e) = store.db().exec_script(migration.sql).await {
            panic!("re-running migration {} failed: {e}", migration.version);
        }
    }
    assert_eq!(store.app(TEAM, &app.id).await.unwrap().name, "keep");
    // A schema from a newer rollbridge is refused.
    store
        .db()
        .exec(
            "INSERT INTO schema_migrations (version, name, applied_ts) VALUES (9999, 'future', 0)",
            Vec::new(),
        )
        .await
        .unwrap();
    let err = Store::open(&db.url)
        .await
        .err()
        .expect("newer schema must be refused");
    assert!(
        matches!(err, StoreError::SchemaTooNew { database: 9999, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("newer"));
}
both_backends!(
    migrations,
    migrations_are_idempotent_and_refuse_newer_schemas
);

/// A MySQL host that accepts the TCP connection and never sends its greeting (a hung server,
/// or a proxy in front of a dead one): opening the store fails with "unavailable" after the
/// connect timeout instead of waiting forever. Needs no MariaDB: the listener stands in for it.
#[tokio::test]
async fn a_silent_mysql_host_is_unavailable_not_a_hang() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let url = format!("mysql://rollbridge:secret@{addr}/rollbridge");
    let opened = tokio::time::timeout(
        rollbridge::store::db::MYSQL_CONNECT_TIMEOUT * 4,
        Store::open(&url),
    )
    .await
    .expect("Store::open returned instead of hanging");
    let err = opened.err().expect("no MySQL server there");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(
        err.to_string().contains("no MySQL connection within"),
        "{err}"
    );
    held.abort();
}
