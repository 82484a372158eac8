//! Channel floors (Nebraska's multi-step updates): packages of a channel that every client must
//! install on its way to the channel's target. The Omaha path reads them inside the update-check
//! transaction (`floor_versions`, `load_floor`); the REST API and the syncer mark and unmark them.

use serde::Serialize;

use super::packages::load_packages;
use super::{Dialect, Queryable, Store, StoreError};
use crate::domain::{Package, ValidationError, Version};
use crate::sql_params;

/// Longest floor reason kept (longer reasons from upstream are cut).
pub const MAX_REASON_CHARS: usize = 1000;

/// A floor of a channel: the package and why it is mandatory.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChannelFloor {
    pub channel_id: String,
    pub package_id: String,
    pub version: String,
    pub floor_reason: String,
    pub package: Package,
}

/// Versions and package ids of a channel's floors, unsorted; cheap enough for every check.
pub async fn floor_versions<Q: Queryable>(
    q: &mut Q,
    channel_id: &str,
) -> Result<Vec<(Version, String)>, StoreError> {
    let rows = q
        .query(
            "SELECT p.version, f.package_id FROM channel_floors f JOIN packages p ON p.id = f.package_id \
             WHERE f.channel_id = ?",
            sql_params![channel_id],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        // Stored versions were validated on write; an unparsable one cannot be a hop.
        if let Ok(v) = Version::parse(&r.text(0)?) {
            out.push((v, r.text(1)?));
        }
    }
    Ok(out)
}

/// One package with its blacklist (for the hop the Omaha path serves).
pub async fn load_floor<Q: Queryable>(
    q: &mut Q,
    package_id: &str,
) -> Result<Option<Package>, StoreError> {
    Ok(load_packages(q, "p.id = ?", sql_params![package_id])
        .await?
        .into_iter()
        .next())
}

/// Every floor of a channel with its package, lowest version first.
pub async fn channel_floors<Q: Queryable>(
    q: &mut Q,
    channel_id: &str,
) -> Result<Vec<ChannelFloor>, StoreError> {
    let rows = q
        .query(
            "SELECT package_id, reason FROM channel_floors WHERE channel_id = ?",
            sql_params![channel_id],
        )
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let packages = load_packages(
        q,
        "p.id IN (SELECT package_id FROM channel_floors WHERE channel_id = ?)",
        sql_params![channel_id],
    )
    .await?;
    let mut floors = Vec::with_capacity(rows.len());
    for r in &rows {
        let package_id = r.text(0)?;
        if let Some(package) = packages.iter().find(|p| p.id == package_id) {
            floors.push(ChannelFloor {
                channel_id: channel_id.to_string(),
                package_id,
                version: package.version.clone(),
                floor_reason: r.text(1)?,
                package: package.clone(),
            });
        }
    }
    floors.sort_by(|a, b| crate::domain::version::cmp_version_text(&a.version, &b.version));
    Ok(floors)
}

/// Marks (or re-marks with a new reason) a package as a floor of a channel. The caller checked
/// that both belong to the same application.
pub async fn mark_floor<Q: Queryable>(
    q: &mut Q,
    channel_id: &str,
    package_id: &str,
    reason: &str,
    now: i64,
) -> Result<(), StoreError> {
    let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
    let sql = match q.dialect() {
        Dialect::Sqlite => {
            "INSERT INTO channel_floors (channel_id, package_id, reason, created_ts) VALUES (?, ?, ?, ?) \
             ON CONFLICT (channel_id, package_id) DO UPDATE SET reason = excluded.reason"
        }
        Dialect::Mysql => {
            "INSERT INTO channel_floors (channel_id, package_id, reason, created_ts) VALUES (?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE reason = VALUES(reason)"
        }
    };
    q.exec(sql, sql_params![channel_id, package_id, reason, now])
        .await?;
    Ok(())
}

/// Checks that a channel and a package belong to `app_id` and that the package does not
/// blacklist the channel (a floor nobody may install would wedge every client below it).
async fn check_floor<Q: Queryable>(
    q: &mut Q,
    app_id: &str,
    channel_id: &str,
    package_id: &str,
) -> Result<(), StoreError> {
    let channel = q
        .query(
            "SELECT id FROM channels WHERE id = ? AND application_id = ?",
            sql_params![channel_id, app_id],
        )
        .await?;
    if channel.is_empty() {
        return Err(StoreError::NotFound);
    }
    let package = q
        .query(
            "SELECT id FROM packages WHERE id = ? AND application_id = ?",
            sql_params![package_id, app_id],
        )
        .await?;
    if package.is_empty() {
        return Err(ValidationError::new(
            "package_id",
            format!("package {package_id} does not belong to this application"),
        )
        .into());
    }
    let blacklisted = q
        .query(
            "SELECT 1 FROM package_channel_blacklist WHERE package_id = ? AND channel_id = ?",
            sql_params![package_id, channel_id],
        )
        .await?;
    if !blacklisted.is_empty() {
        return Err(StoreError::Conflict(format!(
            "package {package_id} is blacklisted for this channel and cannot be a floor"
        )));
    }
    Ok(())
}

impl Store {
    /// The floors of a channel of `app_id`, lowest version first (404 for another app's channel).
    pub async fn list_floors(
        &self,
        app_id: &str,
        channel_id: &str,
    ) -> Result<Vec<ChannelFloor>, StoreError> {
        let mut db = self.db().clone();
        let channel = db
            .query(
                "SELECT id FROM channels WHERE id = ? AND application_id = ?",
                sql_params![channel_id, app_id],
            )
            .await?;
        if channel.is_empty() {
            return Err(StoreError::NotFound);
        }
        channel_floors(&mut db, channel_id).await
    }

    /// Marks a package as a floor of a channel (idempotent; a new reason replaces the old one).
    pub async fn add_floor(
        &self,
        app_id: &str,
        channel_id: &str,
        package_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<ChannelFloor, StoreError> {
        let mut tx = self.begin().await?;
        check_floor(&mut tx, app_id, channel_id, package_id).await?;
        mark_floor(&mut tx, channel_id, package_id, reason, now).await?;
        let floor = channel_floors(&mut tx, channel_id)
            .await?
            .into_iter()
            .find(|f| f.package_id == package_id)
            .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(floor)
    }

    /// Removes a floor mark (404 when the package was not a floor of the channel).
    pub async fn remove_floor(
        &self,
        app_id: &str,
        channel_id: &str,
        package_id: &str,
    ) -> Result<(), StoreError> {
        let n = self
            .db()
            .exec(
                "DELETE FROM channel_floors WHERE channel_id = ? AND package_id = ? \
                 AND channel_id IN (SELECT id FROM channels WHERE application_id = ?)",
                sql_params![channel_id, package_id, app_id],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

/// What a channel offers a syncer: its target package, whether that package blacklists the
/// channel, and the channel's floors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPlan {
    pub channel_id: String,
    pub target: Package,
    pub blacklisted: bool,
    pub floors: Vec<ChannelFloor>,
}

impl Store {
    /// The channel's target and floors (`None` when the channel has no package).
    pub async fn channel_plan(&self, channel_id: &str) -> Result<Option<ChannelPlan>, StoreError> {
        let mut db = self.db().clone();
        let target = load_packages(
            &mut db,
            "p.id = (SELECT package_id FROM channels WHERE id = ?)",
            sql_params![channel_id],
        )
        .await?
        .into_iter()
        .next();
        let Some(target) = target else {
            return Ok(None);
        };
        let floors = channel_floors(&mut db, channel_id).await?;
        Ok(Some(ChannelPlan {
            channel_id: channel_id.to_string(),
            blacklisted: target.channels_blacklist.iter().any(|c| c == channel_id),
            target,
            floors,
        }))
    }
}
