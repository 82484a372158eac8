//! The rows the Omaha path reads and writes inside one transaction: the locked group, the
//! instance's state for an application, registration, rollout counters, grants, status changes
//! with history, events and activity. `crate::rollout` orchestrates these; the SQL lives here.

use std::sync::Arc;

use super::cache::{ChannelTarget, ConfigCache};
use super::db::Snapshot;
use super::groups::{group_from_row, GROUP_COLUMN_COUNT, GROUP_SELECT_COLUMNS};
use super::instance_cache::{CountersKey, InstanceCache};
use super::packages::load_packages;
use super::{Dialect, Queryable, Row, Store, StoreError, Tx, ACTIVE_WINDOW_MS};
use crate::domain::{ActivityClass, Group, InstanceStatus, NewActivity, RolloutPolicy, Version};
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

    pub fn fields(&self) -> RolloutFields<'_> {
        RolloutFields {
            status: self.status,
            update_in_progress: self.update_in_progress,
            last_update_version: self.last_update_version.as_deref(),
            last_update_granted_ts: self.last_update_granted_ts,
        }
    }
}

/// The rollout fields of an instance's row that the update decision reads, borrowed from the
/// row as read ([`InstanceAppState`]) or as cached (`store::instance_cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutFields<'a> {
    pub status: Option<i64>,
    pub update_in_progress: bool,
    pub last_update_version: Option<&'a str>,
    pub last_update_granted_ts: Option<i64>,
}

impl RolloutFields<'_> {
    pub fn status(&self) -> Option<InstanceStatus> {
        self.status.and_then(InstanceStatus::from_code)
    }
}

/// The stored rows of an instance for one application, as the update check reads them: the
/// rollout state plus what registration compares against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInstance {
    pub state: InstanceAppState,
    pub last_check_for_updates: i64,
    pub ip: String,
    pub alias: String,
    pub oem: String,
    pub aleph_version: String,
}

/// The columns [`StoredInstance::from_row`] reads, from `instance_applications ia` joined with
/// `instances i`.
const STORED_INSTANCE_COLUMNS: &str = "ia.group_id, ia.version, ia.status, ia.update_in_progress, \
    ia.last_update_version, ia.last_update_granted_ts, ia.last_check_for_updates, i.ip, i.alias, i.oem, \
    i.aleph_version";

impl StoredInstance {
    /// Reads the [`STORED_INSTANCE_COLUMNS`] starting at column `at`; None when the row has no
    /// instance (a LEFT JOIN that found nothing).
    fn from_row(r: &Row, at: usize) -> Result<Option<Self>, StoreError> {
        if r.opt_text(at + 1)?.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            state: InstanceAppState {
                group_id: r.opt_text(at)?,
                version: r.text(at + 1)?,
                status: r.opt_int(at + 2)?,
                update_in_progress: r.boolean(at + 3)?,
                last_update_version: r.opt_text(at + 4)?,
                last_update_granted_ts: r.opt_int(at + 5)?,
            },
            last_check_for_updates: r.int(at + 6)?,
            ip: r.text(at + 7)?,
            alias: r.text(at + 8)?,
            oem: r.text(at + 9)?,
            aleph_version: r.text(at + 10)?,
        }))
    }

    /// What registering `reg` now would change.
    pub fn registration_changes(&self, reg: &Registration<'_>, now: i64) -> RegistrationDiff {
        RegistrationDiff::new(
            self.ip != reg.ip
                || self.oem != reg.oem
                || self.aleph_version != reg.aleph_version
                || (!reg.alias.is_empty() && self.alias != reg.alias),
            self.state.group_id.as_deref() != Some(reg.group_id)
                || self.state.version != reg.version,
            self.last_check_for_updates,
            now,
        )
    }
}

/// What registering a request would change in the stored rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationDiff {
    /// IP, OEM, aleph version or (when given) alias differ: the instance row.
    pub instance: bool,
    /// Group or version differ, or the clock went back: the instance-application row.
    pub app: bool,
    /// Nothing else, but "last seen" is [`LAST_SEEN_RESOLUTION_MS`] old or more.
    pub last_seen: bool,
}

impl RegistrationDiff {
    pub fn new(instance: bool, app: bool, last_check: i64, now: i64) -> Self {
        Self {
            instance,
            app: app || now < last_check,
            last_seen: now - last_check >= LAST_SEEN_RESOLUTION_MS,
        }
    }

    /// Nothing to write (a check within [`LAST_SEEN_RESOLUTION_MS`] with the same attributes).
    pub fn is_none(&self) -> bool {
        !(self.instance || self.app || self.last_seen)
    }
}

/// What an Omaha request tells us about the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration<'a> {
    pub instance_id: &'a str,
    pub app_id: &'a str,
    pub group_id: &'a str,
    pub ip: &'a str,
    pub alias: &'a str,
    pub oem: &'a str,
    pub aleph_version: &'a str,
    pub version: &'a str,
}

/// Identifies the instance-application row a write is about.
#[derive(Debug, Clone, Copy)]
pub struct InstanceKey<'a> {
    pub instance_id: &'a str,
    pub app_id: &'a str,
    pub group_id: &'a str,
}

/// Reads the group the check runs in. SQLite: the transaction already holds the database write
/// lock (`BEGIN IMMEDIATE`), so this is the locked row. MySQL: a plain read, so that checks which
/// change nothing group-wide (the common case) run in parallel; the row is locked by
/// [`ensure_group_locked`] before anything that depends on group-wide state (counters, grants,
/// group flags, rollout activity), and if it changed in between the transaction is retried, which
/// makes it equivalent to having locked the row here. The same read returns the configuration
/// generation (cross-replica cache invalidation).
pub async fn lock_group(tx: &mut Tx, group_id: &str) -> Result<Option<Group>, StoreError> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "{GROUP_SELECT_COLUMNS}, (SELECT generation FROM rb_config_generation WHERE id = 1) FROM rollout_groups WHERE id = ?"
        )
    });
    let rows = tx.query(&SQL, sql_params![group_id]).await?;
    let Some(row) = rows.into_iter().next() else {
        return Ok(None);
    };
    if let Some(generation) = row.opt_int(GROUP_COLUMN_COUNT)? {
        tx.cache().observe_db_generation(generation);
    }
    let group = group_from_row(&row)?;
    let locked = tx.dialect() == Dialect::Sqlite;
    let mut columns = row.0;
    columns.truncate(GROUP_COLUMN_COUNT);
    tx.memo.group = Some((group_id.to_string(), Row(columns), locked));
    Ok(Some(group))
}

/// Takes the group's row lock (MySQL) if this transaction does not hold it yet, and fails with a
/// retryable error when the row changed since [`lock_group`] read it.
pub async fn ensure_group_locked(tx: &mut Tx, group_id: &str) -> Result<(), StoreError> {
    if tx.dialect() == Dialect::Sqlite {
        return Ok(());
    }
    let seen = match &tx.memo.group {
        Some((id, _, true)) if id == group_id => return Ok(()),
        Some((id, row, false)) if id == group_id => Some(row.0.clone()),
        _ => None,
    };
    let rows = tx
        .query(
            &format!("{GROUP_SELECT_COLUMNS} FROM rollout_groups WHERE id = ? FOR UPDATE"),
            sql_params![group_id],
        )
        .await?;
    let Some(row) = rows.into_iter().next() else {
        return Err(StoreError::NotFound);
    };
    if seen.is_some_and(|seen| seen != row.0) {
        return Err(StoreError::Retryable(
            "the group changed while the update check ran".into(),
        ));
    }
    tx.memo.group = Some((group_id.to_string(), row, true));
    Ok(())
}

/// The reads an update-check decision makes, either inside the check's transaction (which
/// locks the group row first on MySQL, so the decision and its writes agree) or on a read
/// [`Snapshot`] (no locks: its caller only acts on answers that write nothing).
pub trait CheckReads: Queryable {
    fn config_cache(&self) -> &Arc<ConfigCache>;
    /// Makes the group-wide state about to be read stable until the end of the transaction.
    fn lock_group_for_reads(
        &mut self,
        group_id: &str,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send;
    /// Where a read-only reader may take and leave a group's rollout counters (see
    /// `store::instance_cache`); `None` for the transaction, which always counts.
    fn counters_memo(&self) -> Option<&InstanceCache> {
        None
    }
}

impl CheckReads for Tx {
    fn config_cache(&self) -> &Arc<ConfigCache> {
        self.cache()
    }
    async fn lock_group_for_reads(&mut self, group_id: &str) -> Result<(), StoreError> {
        ensure_group_locked(self, group_id).await
    }
}

impl CheckReads for Snapshot {
    fn config_cache(&self) -> &Arc<ConfigCache> {
        self.cache()
    }
    async fn lock_group_for_reads(&mut self, _group_id: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The group and the instance's stored rows in ONE statement (one consistent read on both
/// backends, one round trip on MySQL), with the configuration generation (cross-replica cache
/// invalidation, as in [`lock_group`]). None when the group does not exist.
pub async fn check_view(
    snapshot: &mut Snapshot,
    group_id: &str,
    instance_id: &str,
    app_id: &str,
) -> Result<Option<(Group, Option<StoredInstance>)>, StoreError> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let group_columns = GROUP_SELECT_COLUMNS
            .trim_start_matches("SELECT ")
            .split(", ")
            .map(|c| format!("g.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT {group_columns}, (SELECT generation FROM rb_config_generation WHERE id = 1), \
             {STORED_INSTANCE_COLUMNS} FROM rollout_groups g \
             LEFT JOIN instance_applications ia ON ia.instance_id = ? AND ia.application_id = ? \
             LEFT JOIN instances i ON i.id = ia.instance_id WHERE g.id = ?"
        )
    });
    let rows = snapshot
        .query(&SQL, sql_params![instance_id, app_id, group_id])
        .await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    if let Some(generation) = row.opt_int(GROUP_COLUMN_COUNT)? {
        snapshot.cache().observe_db_generation(generation);
    }
    let group = group_from_row(row)?;
    let stored = StoredInstance::from_row(row, GROUP_COLUMN_COUNT + 1)?;
    Ok(Some((group, stored)))
}

/// The package the channel points at, and whether that package blacklists the channel. Served
/// from the configuration cache when its generation is current.
pub async fn channel_target<Q: CheckReads>(
    tx: &mut Q,
    channel_id: &str,
) -> Result<ChannelTarget, StoreError> {
    let generation = tx.config_cache().generation();
    if let Some(hit) = tx.config_cache().target(channel_id, generation) {
        return Ok(hit);
    }
    // Boxed: a cache miss is rare, and its future would enlarge every check's.
    let packages = Box::pin(load_packages(
        tx,
        "p.id = (SELECT package_id FROM channels WHERE id = ?)",
        sql_params![channel_id],
    ))
    .await?;
    let target = packages.into_iter().next().map(|p| {
        let blacklisted = p.channels_blacklist.iter().any(|c| c == channel_id);
        Arc::new((p, blacklisted))
    });
    tx.config_cache()
        .put_target(channel_id, generation, target.clone());
    Ok(target)
}

/// "Last seen" (`last_check_for_updates`) is written at most this often per instance when
/// nothing else about it changed: the active window is a day and the dashboard shows minutes.
pub const LAST_SEEN_RESOLUTION_MS: i64 = 60_000;

pub async fn instance_app(
    tx: &mut Tx,
    instance_id: &str,
    app_id: &str,
) -> Result<Option<InstanceAppState>, StoreError> {
    static SQLITE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {STORED_INSTANCE_COLUMNS} FROM instance_applications ia JOIN instances i ON i.id = ia.instance_id \
             WHERE ia.instance_id = ? AND ia.application_id = ?"
        )
    });
    static MYSQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{} FOR UPDATE", *SQLITE));
    let sql = match tx.dialect() {
        Dialect::Sqlite => SQLITE.as_str(),
        Dialect::Mysql => MYSQL.as_str(),
    };
    let rows = tx.query(sql, sql_params![instance_id, app_id]).await?;
    let stored = match rows.first() {
        Some(row) => StoredInstance::from_row(row, 0)?,
        None => None,
    };
    let state = stored.as_ref().map(|s| s.state.clone());
    // Every write to the instance tables in this transaction is about this instance.
    tx.set_instance_key(app_id, instance_id);
    // Registration right after this read compares against it instead of writing blindly.
    tx.memo.instance = Some((instance_id.to_string(), app_id.to_string(), stored));
    Ok(state)
}

/// What registration would change, judged from the row [`instance_app`] read in this
/// transaction (None: unknown, write everything).
fn registration_changes(tx: &mut Tx, reg: &Registration<'_>, now: i64) -> Option<(bool, bool)> {
    let (instance_id, app_id, stored) = tx.memo.instance.take()?;
    if instance_id != reg.instance_id || app_id != reg.app_id {
        return None;
    }
    let diff = stored?.registration_changes(reg, now);
    Some((diff.instance, diff.app || diff.last_seen))
}

/// Creates or refreshes the instance and its application row (version, group, last check).
///
/// Rows that would not change are not written: an instance checking again with the same
/// attributes within [`LAST_SEEN_RESOLUTION_MS`] costs no write at all.
pub async fn register(tx: &mut Tx, reg: &Registration<'_>, now: i64) -> Result<(), StoreError> {
    let (write_instance, write_app) = registration_changes(tx, reg, now).unwrap_or((true, true));
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
    if write_instance {
        tx.exec(
            instance_sql,
            sql_params![
                reg.instance_id,
                reg.ip,
                reg.alias,
                reg.oem,
                reg.aleph_version,
                now
            ],
        )
        .await?;
    }
    if !write_app {
        return Ok(());
    }
    // MySQL: the foreign-key check of this write takes a shared lock on the group row; taking the
    // exclusive lock first means no transaction ever upgrades (the upgrade deadlocks).
    ensure_group_locked(tx, reg.group_id).await?;
    tx.exec(
        app_sql,
        sql_params![
            reg.instance_id,
            reg.app_id,
            reg.group_id,
            reg.version,
            now,
            now
        ],
    )
    .await?;
    Ok(())
}

/// Policy windows up to this long use the grant buckets; longer ones count exactly.
const BUCKET_RETENTION_MS: i64 = 7 * 86_400_000;
const BUCKET_MS: i64 = 60_000;

/// The counters an update-check decision needs, cheaply. Outside safe mode `decide` only compares
/// `granted_in_period` and `in_progress` with `max_updates_per_period` (`timed_out` and
/// `attempted_current` are read in safe mode only, and are 0 here). The grant buckets give an
/// upper bound of both; while the bound is below the limit the decision is the same as with the
/// exact counts, so the group's instances are only counted (through the grant-time index, over
/// the recent grants only) once the bound reaches the limit. Safe mode counts exactly.
pub async fn counters<Q: CheckReads>(
    tx: &mut Q,
    group_id: &str,
    target_version: &str,
    policy: &RolloutPolicy,
    now: i64,
) -> Result<Counters, StoreError> {
    tx.lock_group_for_reads(group_id).await?;
    let window = policy.period_interval_ms.max(policy.update_timeout_ms);
    if policy.safe_mode || !(0..=BUCKET_RETENTION_MS).contains(&window) {
        return exact_counters(tx, group_id, target_version, policy, now).await;
    }
    let key = CountersKey {
        period_interval_ms: policy.period_interval_ms,
        update_timeout_ms: policy.update_timeout_ms,
        max_updates_per_period: policy.max_updates_per_period,
    };
    // Taken before the rows are read: a write settling during the read voids what it counted.
    let read_sequence = match tx.counters_memo() {
        Some(memo) => match memo.counters(group_id, key, now) {
            Some(counters) => return Ok(counters),
            None => Some(memo.sequence()),
        },
        None => None,
    };
    let counters = bucket_counters(tx, group_id, policy, now).await?;
    if let (Some(memo), Some(read_sequence)) = (tx.counters_memo(), read_sequence) {
        memo.remember_counters(group_id, key, read_sequence, now, counters);
    }
    Ok(counters)
}

/// [`counters`] read from the grant buckets (and the instances once the bound reaches the cap).
async fn bucket_counters<Q: CheckReads>(
    tx: &mut Q,
    group_id: &str,
    policy: &RolloutPolicy,
    now: i64,
) -> Result<Counters, StoreError> {
    let period_from = now - policy.period_interval_ms;
    let timeout_from = now - policy.update_timeout_ms;
    let rows = tx
        .query(
            "SELECT COALESCE(SUM(CASE WHEN bucket_ts > ? THEN grants ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN bucket_ts > ? THEN grants ELSE 0 END), 0) \
             FROM rollout_grant_buckets WHERE group_id = ? AND bucket_ts > ?",
            sql_params![
                period_from - BUCKET_MS,
                timeout_from - BUCKET_MS,
                group_id,
                period_from.min(timeout_from) - BUCKET_MS
            ],
        )
        .await?;
    let (period_bound, timeout_bound) = match rows.first() {
        Some(r) => (r.int(0)?, r.int(1)?),
        None => (0, 0),
    };
    let cap = policy.max_updates_per_period;
    if period_bound < cap && timeout_bound < cap {
        return Ok(Counters {
            granted_in_period: period_bound,
            in_progress: timeout_bound,
            timed_out: 0,
            attempted_current: 0,
        });
    }
    let rows = tx
        .query(
            "SELECT \
             COALESCE(SUM(CASE WHEN last_update_granted_ts > ? THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN update_in_progress = 1 AND last_update_granted_ts >= ? THEN 1 ELSE 0 END), 0) \
             FROM instance_applications WHERE group_id = ? AND last_update_granted_ts >= ? \
             AND last_check_for_updates > ?",
            sql_params![
                period_from,
                timeout_from,
                group_id,
                period_from.min(timeout_from),
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
        timed_out: 0,
        attempted_current: 0,
    })
}

/// The rollout counters of a group (CoreRoller's UpdatesStats), over instances active in the
/// last day, all four exact (one scan of the group's active instances).
pub async fn exact_counters<Q: CheckReads>(
    tx: &mut Q,
    group_id: &str,
    target_version: &str,
    policy: &RolloutPolicy,
    now: i64,
) -> Result<Counters, StoreError> {
    tx.lock_group_for_reads(group_id).await?;
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

/// Counts a grant in its minute bucket (see [`counters`]); buckets older than the retention are
/// dropped now and then.
async fn count_grant(tx: &mut Tx, group_id: &str, granted_ts: i64) -> Result<(), StoreError> {
    let bucket = granted_ts - granted_ts.rem_euclid(BUCKET_MS);
    let sql = match tx.dialect() {
        Dialect::Sqlite => {
            "INSERT INTO rollout_grant_buckets (group_id, bucket_ts, grants) VALUES (?, ?, 1) \
             ON CONFLICT (group_id, bucket_ts) DO UPDATE SET grants = grants + 1"
        }
        Dialect::Mysql => {
            "INSERT INTO rollout_grant_buckets (group_id, bucket_ts, grants) VALUES (?, ?, 1) \
             ON DUPLICATE KEY UPDATE grants = grants + 1"
        }
    };
    tx.exec(sql, sql_params![group_id, bucket]).await?;
    // Once per bucket-hour is plenty; the first grant of the hour cleans up.
    if bucket % 3_600_000 == 0 {
        tx.exec(
            "DELETE FROM rollout_grant_buckets WHERE group_id = ? AND bucket_ts < ?",
            sql_params![group_id, bucket - BUCKET_RETENTION_MS - 86_400_000],
        )
        .await?;
    }
    Ok(())
}

async fn history(
    tx: &mut Tx,
    key: InstanceKey<'_>,
    status: InstanceStatus,
    version: &str,
    error_code: &str,
    now: i64,
) -> Result<(), StoreError> {
    ensure_group_locked(tx, key.group_id).await?;
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
    count_grant(tx, key.group_id, now).await?;
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
    ensure_group_locked(tx, group_id).await?;
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
    ensure_group_locked(tx, group_id).await?;
    tx.exec(
        "UPDATE rollout_groups SET rollout_in_progress = ? WHERE id = ?",
        sql_params![in_progress, group_id],
    )
    .await?;
    Ok(())
}

/// True when an activity entry of this class exists for the group (and version, if given)
/// since `since_ms`: used to write RolloutStarted and PackageNotFound once, not on every check.
pub async fn activity_exists<Q: CheckReads>(
    tx: &mut Q,
    group_id: &str,
    class: ActivityClass,
    version: Option<&str>,
    since_ms: i64,
) -> Result<bool, StoreError> {
    tx.lock_group_for_reads(group_id).await?;
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
    if let Some(group_id) = &activity.group_id {
        ensure_group_locked(tx, group_id).await?;
    }
    insert_activity(tx, activity, now).await
}

/// True when an instance of the group active in the last day runs a version below `target`
/// (or one that does not parse). Seeks the group's distinct versions through the
/// (group, version) index instead of scanning its instances, and stops at the first behind.
pub async fn any_active_behind(
    tx: &mut Tx,
    group_id: &str,
    target: &Version,
    now: i64,
) -> Result<bool, StoreError> {
    ensure_group_locked(tx, group_id).await?;
    let mut after: Option<String> = None;
    loop {
        let rows = match &after {
            None => {
                tx.query(
                    "SELECT MIN(version) FROM instance_applications WHERE group_id = ?",
                    sql_params![group_id],
                )
                .await?
            }
            Some(previous) => {
                tx.query(
                    "SELECT MIN(version) FROM instance_applications WHERE group_id = ? AND version > ?",
                    sql_params![group_id, previous],
                )
                .await?
            }
        };
        let Some(version) = rows.first().map(|r| r.opt_text(0)).transpose()?.flatten() else {
            return Ok(false);
        };
        let behind = Version::parse(&version)
            .map(|v| v < *target)
            .unwrap_or(true);
        if behind {
            // The (group, version) index, named: the covering stats index (group, status,
            // version, last check) looks cheaper to the planner but scans the whole group on
            // every completion.
            macro_rules! active_on_version {
                ($index_hint:literal) => {
                    concat!(
                        "SELECT 1 FROM instance_applications ",
                        $index_hint,
                        " WHERE group_id = ? AND version = ? AND last_check_for_updates > ? LIMIT 1"
                    )
                };
            }
            let sql = match tx.dialect() {
                Dialect::Sqlite => {
                    active_on_version!("INDEXED BY idx_instance_applications_group_version")
                }
                Dialect::Mysql => {
                    active_on_version!("FORCE INDEX (idx_instance_applications_group_version)")
                }
            };
            let active = tx
                .query(sql, sql_params![group_id, &version, now - ACTIVE_WINDOW_MS])
                .await?;
            if !active.is_empty() {
                return Ok(true);
            }
        }
        after = Some(version);
    }
}

impl Store {
    /// Groups whose rollout is marked in progress (`rollout::sweep` re-checks them).
    pub async fn groups_rolling_out(&self) -> Result<Vec<String>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT id FROM rollout_groups WHERE rollout_in_progress = 1",
                Vec::new(),
            )
            .await?;
        rows.iter().map(|r| r.text(0)).collect()
    }

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
        // Keep the grant buckets an upper bound of what the instances say (see `counters`).
        if let Some(ts) = state.last_update_granted_ts {
            let mut tx = self.begin().await?;
            let rows = tx
                .query(
                    "SELECT group_id FROM instance_applications WHERE instance_id = ? AND application_id = ?",
                    sql_params![instance_id, app_id],
                )
                .await?;
            if let Some(group_id) = rows.first().map(|r| r.opt_text(0)).transpose()?.flatten() {
                count_grant(&mut tx, &group_id, ts).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }
}
