//! The upstream syncer's rows: its stable machine id per channel, the outcome of its attempts, and
//! applying one upstream answer (create missing packages, mark floors, point the channel) in ONE
//! transaction so a failure half-way leaves the channel as it was.

use super::floors::mark_floor;
use super::packages::{channel_package_activity, insert_action, load_channels, load_packages};
use super::{Dialect, Queryable, Store, StoreError};
use crate::domain::{new_id, Channel, PackageFields};
use crate::sql_params;

/// One package of an upstream answer, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedPackage {
    pub fields: PackageFields,
    /// `Some(reason)` when upstream marked it as a floor of the channel.
    pub floor_reason: Option<String>,
}

/// What one upstream answer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPlan {
    pub packages: Vec<SyncedPackage>,
    /// Index into `packages` of the version the channel should point at (`None`: floors only).
    pub target: Option<usize>,
}

/// What applying a plan changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncApplied {
    pub created: Vec<String>,
    pub floors: Vec<String>,
    /// The version the channel now points at, when it changed.
    pub channel_updated: Option<String>,
}

/// The syncer's bookkeeping for one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    pub channel_id: String,
    pub machine_id: String,
    pub upstream_track: String,
    pub last_attempt_ts: Option<i64>,
    pub last_success_ts: Option<i64>,
    pub last_error: String,
    pub consecutive_failures: i64,
}

/// Longest error text kept in `sync_state.last_error`.
const MAX_ERROR_CHARS: usize = 2000;

impl Store {
    /// The channel of `app_id` named `name`, with its package.
    pub async fn channel_by_name(
        &self,
        app_id: &str,
        name: &str,
    ) -> Result<Option<Channel>, StoreError> {
        let mut db = self.db().clone();
        Ok(load_channels(
            &mut db,
            "application_id = ? AND name = ?",
            sql_params![app_id, name],
        )
        .await?
        .into_iter()
        .next())
    }

    /// The syncer's state for a channel, if it ever ran for it.
    pub async fn sync_state(&self, channel_id: &str) -> Result<Option<SyncState>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT channel_id, machine_id, upstream_track, last_attempt_ts, last_success_ts, last_error, \
                 consecutive_failures FROM sync_state WHERE channel_id = ?",
                sql_params![channel_id],
            )
            .await?;
        rows.first()
            .map(|r| {
                Ok(SyncState {
                    channel_id: r.text(0)?,
                    machine_id: r.text(1)?,
                    upstream_track: r.text(2)?,
                    last_attempt_ts: r.opt_int(3)?,
                    last_success_ts: r.opt_int(4)?,
                    last_error: r.text(5)?,
                    consecutive_failures: r.int(6)?,
                })
            })
            .transpose()
    }

    /// The syncer's machine id for a channel: created once (`{uuid}`, braces like Nebraska's
    /// syncer so upstream servers can tell it from real machines) and kept across restarts.
    pub async fn sync_machine_id(
        &self,
        channel_id: &str,
        upstream_track: &str,
        now: i64,
    ) -> Result<String, StoreError> {
        let ignore = match self.dialect() {
            Dialect::Sqlite => "INSERT OR IGNORE",
            Dialect::Mysql => "INSERT IGNORE",
        };
        self.db()
            .exec(
                &format!(
                    "{ignore} INTO sync_state (channel_id, machine_id, upstream_track, last_error, \
                     consecutive_failures, created_ts) VALUES (?, ?, ?, '', 0, ?)"
                ),
                sql_params![channel_id, format!("{{{}}}", new_id()), upstream_track, now],
            )
            .await?;
        self.sync_state(channel_id)
            .await?
            .map(|s| s.machine_id)
            .ok_or(StoreError::NotFound)
    }

    /// Records an attempt. Returns true when `error` is a new problem (differs from the last
    /// recorded error), so callers write one activity entry per problem, not one per retry.
    pub async fn record_sync_attempt(
        &self,
        channel_id: &str,
        error: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let previous = self.sync_state(channel_id).await?;
        let Some(previous) = previous else {
            return Err(StoreError::NotFound);
        };
        match error {
            None => {
                self.db()
                    .exec(
                        "UPDATE sync_state SET last_attempt_ts = ?, last_success_ts = ?, last_error = '', \
                         consecutive_failures = 0 WHERE channel_id = ?",
                        sql_params![now, now, channel_id],
                    )
                    .await?;
                Ok(false)
            }
            Some(error) => {
                let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
                self.db()
                    .exec(
                        "UPDATE sync_state SET last_attempt_ts = ?, last_error = ?, \
                         consecutive_failures = consecutive_failures + 1 WHERE channel_id = ?",
                        sql_params![now, &error, channel_id],
                    )
                    .await?;
                Ok(previous.last_error != error)
            }
        }
    }

    /// Applies an upstream answer to a channel in one transaction: packages missing locally are
    /// created, existing ones must match upstream's size and SHA-1 (else nothing changes), floors
    /// are marked, and the channel is pointed at the target (ChannelPackageUpdated activity).
    pub async fn apply_sync(
        &self,
        app_id: &str,
        channel_id: &str,
        plan: &SyncPlan,
        now: i64,
    ) -> Result<SyncApplied, StoreError> {
        let mut tx = self.begin().await?;
        let mut applied = SyncApplied::default();
        let mut ids = Vec::with_capacity(plan.packages.len());
        for synced in &plan.packages {
            let f = &synced.fields;
            let existing = load_packages(
                &mut tx,
                "p.application_id = ? AND p.version = ?",
                sql_params![app_id, f.version.as_str()],
            )
            .await?
            .into_iter()
            .next();
            let id = match existing {
                Some(p) => {
                    let differs = |ours: &str, theirs: &str| {
                        !ours.is_empty() && !theirs.is_empty() && ours != theirs
                    };
                    if differs(&p.hash, &f.hash) || differs(&p.size, &f.size) {
                        return Err(StoreError::Conflict(format!(
                            "local package {} differs from upstream (size or SHA-1)",
                            f.version
                        )));
                    }
                    p.id
                }
                None => {
                    let id = insert_synced(&mut tx, app_id, f, now).await?;
                    applied.created.push(f.version.as_str().to_string());
                    id
                }
            };
            if let Some(reason) = &synced.floor_reason {
                mark_floor(&mut tx, channel_id, &id, reason, now).await?;
                applied.floors.push(f.version.as_str().to_string());
            }
            ids.push(id);
        }
        if let Some(target_id) = plan.target.and_then(|i| ids.get(i)) {
            let channel = load_channels(&mut tx, "id = ?", sql_params![channel_id])
                .await?
                .into_iter()
                .next()
                .ok_or(StoreError::NotFound)?;
            if channel.package_id.as_deref() != Some(target_id.as_str()) {
                let blacklisted = tx
                    .query(
                        "SELECT 1 FROM package_channel_blacklist WHERE package_id = ? AND channel_id = ?",
                        sql_params![target_id, channel_id],
                    )
                    .await?;
                if !blacklisted.is_empty() {
                    return Err(StoreError::Conflict(format!(
                        "upstream target {} is blacklisted for channel {}",
                        plan.packages
                            .get(plan.target.unwrap_or_default())
                            .map(|p| p.fields.version.as_str())
                            .unwrap_or_default(),
                        channel.name
                    )));
                }
                tx.exec(
                    "UPDATE channels SET package_id = ? WHERE id = ?",
                    sql_params![target_id, channel_id],
                )
                .await?;
                let channel = load_channels(&mut tx, "id = ?", sql_params![channel_id])
                    .await?
                    .into_iter()
                    .next()
                    .ok_or(StoreError::NotFound)?;
                if let Some(package) = &channel.package {
                    channel_package_activity(&mut tx, &channel, package, now).await?;
                    applied.channel_updated = Some(package.version.clone());
                }
            }
        }
        tx.commit().await?;
        Ok(applied)
    }
}

async fn insert_synced<Q: Queryable>(
    q: &mut Q,
    app_id: &str,
    f: &PackageFields,
    now: i64,
) -> Result<String, StoreError> {
    let id = new_id();
    q.exec(
        "INSERT INTO packages (id, application_id, type, version, url, filename, description, size, hash, \
         image_repository, image_digest, created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        sql_params![
            &id,
            app_id,
            f.package_type.code(),
            f.version.as_str(),
            &f.url,
            &f.filename,
            &f.description,
            &f.size,
            &f.hash,
            &f.image_repository,
            &f.image_digest,
            now
        ],
    )
    .await?;
    if let Some(action) = &f.coreos_action {
        insert_action(q, &id, action, now).await?;
    }
    Ok(id)
}
