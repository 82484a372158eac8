//! The rows the Omaha path reads and writes inside one transaction: the locked group, the
//! instance's state for an application, registration, rollout counters, grants, status changes
//! with history, events and activity. `crate::rollout` orchestrates these; the SQL lives here.

use super::groups::{group_from_row, GROUP_SELECT};
use super::packages::load_packages;
use super::{Dialect, Store, StoreError, Tx, ACTIVE_WINDOW_MS};
use crate::domain::{ActivityClass, Group, InstanceStatus, NewActivity, Package, RolloutPolicy};
use crate::rollout::Counters;
use crate::sql_params;

pub use super::packages::insert_activity;

/// An instance's stored state for one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceAppState {
    pub group_id: Option<String>,
    pub version: String,
    pub status: Option<i64>,
    pub update_in_progress: bool,
    pub last_update_version: Option<String>,
    pub last_update_granted_ts: Option<i64>,
}

impl InstanceAppState {
    pub fn status(&self) -> Option<InstanceStatus> {
        self.status.and_then(InstanceStatus::from_code)
    }
}

/// What an Omaha request tells us about the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub instance_id: String,
    pub app_id: String,
    pub group_id: String,
    pub ip: String,
    pub alias: String,
    pub oem: String,
    pub aleph_version: String,
    pub version: String,
}

/// Identifies the instance-application row a write is about.
#[derive(Debug, Clone, Copy)]
pub struct InstanceKey<'a> {
    pub instance_id: &'a str,
    pub app_id: &'a str,
    pub group_id: &'a str,
}

/// Locks the group row for the rest of the transaction and returns it. On SQLite the
/// transaction already holds the database write lock (`BEGIN IMMEDIATE`).
pub async fn lock_group(tx: &mut Tx, group_id: &str) -> Result<Option<Group>, StoreError> {
    let sql = match tx.dialect() {
        Dialect::Sqlite => format!("{GROUP_SELECT} WHERE id = ?"),
        Dialect::Mysql => format!("{GROUP_SELECT} WHERE id = ? FOR UPDATE"),
    };
    let rows = tx.query(&sql, sql_params![group_id]).await?;
    rows.first().map(group_from_row).transpose()
}

/// The package the channel points at, and whether that package blacklists the channel.
pub async fn channel_target(
    tx: &mut Tx,
    channel_id: &str,
) -> Result<Option<(Package, bool)>, StoreError> {
    let packages = load_packages(
        tx,
        "p.id = (SELECT package_id FROM channels WHERE id = ?)",
        sql_params![channel_id],
    )
    .await?;
    Ok(packages.into_iter().next().map(|p| {
        let blacklisted = p.channels_blacklist.iter().any(|c| c == channel_id);
        (p, blacklisted)
    }))
}

pub async fn instance_app(
    tx: &mut Tx,
    instance_id: &str,
    app_id: &str,
) -> Result<Option<InstanceAppState>, StoreError> {
    let sql = match tx.dialect() {
        Dialect::Sqlite => "SELECT group_id, version, status, update_in_progress, last_update_version, last_update_granted_ts \
             FROM instance_applications WHERE instance_id = ? AND application_id = ?",
        Dialect::Mysql => "SELECT group_id, version, status, update_in_progress, last_update_version, last_update_granted_ts \
             FROM instance_applications WHERE instance_id = ? AND application_id = ? FOR UPDATE",
    };
    let rows = tx.query(sql, sql_params![instance_id, app_id]).await?;
    rows.first()
        .map(|r| {
            Ok(InstanceAppState {
                group_id: r.opt_text(0)?,
                version: r.text(1)?,
                status: r.opt_int(2)?,
                update_in_progress: r.boolean(3)?,
                last_update_version: r.opt_text(4)?,
                last_update_granted_ts: r.opt_int(5)?,
            })
        })
        .transpose()
}

/// Creates or refreshes the instance and its application row (version, group, last check).
pub async fn register(tx: &mut Tx, reg: &Registration, now: i64) -> Result<(), StoreError> {
    let (instance_sql, app_sql) = match tx.dialect() {
        Dialect::Sqlite => (
            "INSERT INTO instances (id, ip, alias, oem, aleph_version, created_ts) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET ip = excluded.ip, \
             alias = CASE WHEN excluded.alias <> '' THEN excluded.alias ELSE instances.alias END, \
             oem = excluded.oem, aleph_version = excluded.aleph_version",
            "INSERT INTO instance_applications (instance_id, application_id, group_id, version, status, \
             last_check_for_updates, update_in_progress, created_ts) VALUES (?, ?, ?, ?, NULL, ?, 0, ?) \
             ON CONFLICT (instance_id, application_id) DO UPDATE SET group_id = excluded.group_id, \
             version = excluded.version, last_check_for_updates = excluded.last_check_for_updates",
        ),
        Dialect::Mysql => (
            "INSERT INTO instances (id, ip, alias, oem, aleph_version, created_ts) VALUES (?, ?, ?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE ip = VALUES(ip), alias = IF(VALUES(alias) <> '', VALUES(alias), alias), \
             oem = VALUES(oem), aleph_version = VALUES(aleph_version)",
            "INSERT INTO instance_applications (instance_id, application_id, group_id, version, status, \
             last_check_for_updates, update_in_progress, created_ts) VALUES (?, ?, ?, ?, NULL, ?, 0, ?) \
             ON DUPLICATE KEY UPDATE group_id = VALUES(group_id), version = VALUES(version), \
             last_check_for_updates = VALUES(last_check_for_updates)",
        ),
    };
    tx.exec(
        instance_sql,
        sql_params![
            &reg.instance_id,
            &reg.ip,
            &reg.alias,
            &reg.oem,
            &reg.aleph_version,
            now
        ],
    )
    .await?;
    tx.exec(
        app_sql,
        sql_params![
            &reg.instance_id,
            &reg.app_id,
            &reg.group_id,
            &reg.version,
            now,
            now
        ],
    )
    .await?;
    Ok(())
}

/// The rollout counters of a group (CoreRoller's UpdatesStats), over instances active in the last day.
pub async fn counters(
    tx: &mut Tx,
    group_id: &str,
    target_version: &str,
    policy: &RolloutPolicy,
    now: i64,
) -> Result<Counters, StoreError> {
    let rows = tx
        .query(
            "SELECT \
             COALESCE(SUM(CASE WHEN last_update_granted_ts > ? THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN update_in_progress = 1 AND last_update_granted_ts >= ? THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN update_in_progress = 1 AND last_update_granted_ts < ? THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN update_in_progress = 0 AND last_update_version = ? THEN 1 ELSE 0 END), 0) \
             FROM instance_applications WHERE group_id = ? AND last_check_for_updates > ?",
            sql_params![
                now - policy.period_interval_ms,
                now - policy.update_timeout_ms,
                now - policy.update_timeout_ms,
                target_version,
                group_id,
                now - ACTIVE_WINDOW_MS
            ],
        )
        .await?;
    let Some(r) = rows.first() else {
        return Ok(Counters::default());
    };
    Ok(Counters {
        granted_in_period: r.int(0)?,
        in_progress: r.int(1)?,
        timed_out: r.int(2)?,
        attempted_current: r.int(3)?,
    })
}

async fn history(
    tx: &mut Tx,
    key: InstanceKey<'_>,
    status: InstanceStatus,
    version: &str,
    error_code: &str,
    now: i64,
) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO instance_status_history (instance_id, application_id, group_id, status, version, error_code, created_ts) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        sql_params![key.instance_id, key.app_id, key.group_id, status.code(), version, error_code, now],
    )
    .await?;
    Ok(())
}

/// Records a grant: status UpdateGranted, in progress, granted version and time, history.
pub async fn grant(
    tx: &mut Tx,
    key: InstanceKey<'_>,
    version: &str,
    now: i64,
) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE instance_applications SET status = ?, update_in_progress = 1, last_update_version = ?, \
         last_update_granted_ts = ? WHERE instance_id = ? AND application_id = ?",
        sql_params![InstanceStatus::UpdateGranted.code(), version, now, key.instance_id, key.app_id],
    )
    .await?;
    history(tx, key, InstanceStatus::UpdateGranted, version, "", now).await
}

/// Changes the status (history only when it actually changes). `finish` ends the update
/// attempt (clears in-progress); `version` optionally sets the running version.
#[allow(clippy::too_many_arguments)]
pub async fn set_status(
    tx: &mut Tx,
    key: InstanceKey<'_>,
    current: Option<InstanceStatus>,
    status: InstanceStatus,
    history_version: &str,
    error_code: &str,
    finish: bool,
    version: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let mut sql = String::from("UPDATE instance_applications SET status = ?");
    let mut params = sql_params![status.code()];
    if finish {
        sql.push_str(", update_in_progress = 0");
    }
    if let Some(v) = version {
        sql.push_str(", version = ?");
        params.push(v.into());
    }
    sql.push_str(" WHERE instance_id = ? AND application_id = ?");
    params.push(key.instance_id.into());
    params.push(key.app_id.into());
    tx.exec(&sql, params).await?;
    if current != Some(status) || !error_code.is_empty() {
        history(tx, key, status, history_version, error_code, now).await?;
    }
    Ok(())
}

pub async fn insert_event(
    tx: &mut Tx,
    key: InstanceKey<'_>,
    (event_type, event_result): (i32, i32),
    previous_version: &str,
    error_code: &str,
    now: i64,
) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO events (instance_id, application_id, event_type, event_result, previous_version, error_code, created_ts) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        sql_params![
            key.instance_id,
            key.app_id,
            i64::from(event_type),
            i64::from(event_result),
            previous_version,
            error_code,
            now
        ],
    )
    .await?;
    Ok(())
}

pub async fn set_updates_enabled(
    tx: &mut Tx,
    group_id: &str,
    enabled: bool,
) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE rollout_groups SET policy_updates_enabled = ? WHERE id = ?",
        sql_params![enabled, group_id],
    )
    .await?;
    Ok(())
}

pub async fn set_rollout_in_progress(
    tx: &mut Tx,
    group_id: &str,
    in_progress: bool,
) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE rollout_groups SET rollout_in_progress = ? WHERE id = ?",
        sql_params![in_progress, group_id],
    )
    .await?;
    Ok(())
}

/// True when an activity entry of this class exists for the group (and version, if given)
/// since `since_ms`: used to write RolloutStarted and PackageNotFound once, not on every check.
pub async fn activity_exists(
    tx: &mut Tx,
    group_id: &str,
    class: ActivityClass,
    version: Option<&str>,
    since_ms: i64,
) -> Result<bool, StoreError> {
    let rows = match version {
        Some(v) => {
            tx.query(
                "SELECT 1 FROM activity WHERE group_id = ? AND class = ? AND version = ? AND created_ts >= ? LIMIT 1",
                sql_params![group_id, class.code(), v, since_ms],
            )
            .await?
        }
        None => {
            tx.query(
                "SELECT 1 FROM activity WHERE group_id = ? AND class = ? AND created_ts >= ? LIMIT 1",
                sql_params![group_id, class.code(), since_ms],
            )
            .await?
        }
    };
    Ok(!rows.is_empty())
}

pub async fn add_activity(tx: &mut Tx, activity: &NewActivity, now: i64) -> Result<(), StoreError> {
    insert_activity(tx, activity, now).await
}

/// Versions run by the group's active instances, with counts.
pub async fn group_versions(
    tx: &mut Tx,
    group_id: &str,
    now: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = tx
        .query(
            "SELECT version, COUNT(*) FROM instance_applications WHERE group_id = ? AND last_check_for_updates > ? GROUP BY version",
            sql_params![group_id, now - ACTIVE_WINDOW_MS],
        )
        .await?;
    rows.iter().map(|r| Ok((r.text(0)?, r.int(1)?))).collect()
}

impl Store {
    /// Test and operator helper: sets an instance's rollout fields directly.
    pub async fn force_instance_state(
        &self,
        instance_id: &str,
        app_id: &str,
        state: &InstanceAppState,
    ) -> Result<(), StoreError> {
        self.db()
            .exec(
                "UPDATE instance_applications SET status = ?, update_in_progress = ?, last_update_version = ?, \
                 last_update_granted_ts = ?, version = ? WHERE instance_id = ? AND application_id = ?",
                sql_params![
                    state.status,
                    state.update_in_progress,
                    state.last_update_version.clone(),
                    state.last_update_granted_ts,
                    &state.version,
                    instance_id,
                    app_id
                ],
            )
            .await?;
        Ok(())
    }
}
