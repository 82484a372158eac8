//! Groups and their statistics. Stats are one grouped query per group over its active
//! instances (status × version), shared by concurrent readers until a write changes them
//! (`store::group_stats`) and folded in Rust per request; never run per Omaha request.

use super::packages::{load_channels, stored_version};
use super::{Queryable, Row, Store, StoreError, ACTIVE_WINDOW_MS};
use crate::domain::{
    new_id, Group, GroupFields, InstanceStatus, InstancesStats, ValidationError, VersionCount,
};
use crate::sql_params;

pub(crate) const GROUP_SELECT_COLUMNS: &str = "SELECT id, name, description, created_ts, rollout_in_progress, application_id, \
    channel_id, policy_updates_enabled, policy_safe_mode, policy_office_hours, policy_timezone, policy_period_interval, \
    policy_max_updates_per_period, policy_update_timeout, policy_auto_pause_on_failure, policy_poll_interval, track";
pub(crate) const GROUP_COLUMN_COUNT: usize = 17;
pub(crate) const GROUP_SELECT: &str = "SELECT id, name, description, created_ts, rollout_in_progress, application_id, \
    channel_id, policy_updates_enabled, policy_safe_mode, policy_office_hours, policy_timezone, policy_period_interval, \
    policy_max_updates_per_period, policy_update_timeout, policy_auto_pause_on_failure, policy_poll_interval, track \
    FROM rollout_groups";

pub(crate) fn group_from_row(r: &Row) -> Result<Group, StoreError> {
    Ok(Group {
        id: r.text(0)?,
        name: r.text(1)?,
        description: r.text(2)?,
        created_ts: r.int(3)?,
        rollout_in_progress: r.boolean(4)?,
        application_id: r.text(5)?,
        channel_id: r.opt_text(6)?,
        channel: None,
        policy_updates_enabled: r.boolean(7)?,
        policy_safe_mode: r.boolean(8)?,
        policy_office_hours: r.boolean(9)?,
        policy_timezone: r.opt_text(10)?,
        policy_period_interval: r.text(11)?,
        policy_max_updates_per_period: r.int(12)?,
        policy_update_timeout: r.text(13)?,
        policy_auto_pause_on_failure: r.boolean(14)?,
        policy_poll_interval: r.int(15)?,
        track: r.text(16)?,
        instances_stats: None,
        version_breakdown: None,
    })
}

/// Loads groups matching `filter`, with their channel (and its package) embedded.
pub(crate) async fn load_groups<Q: Queryable>(
    q: &mut Q,
    filter: &str,
    params: Vec<super::SqlValue>,
) -> Result<Vec<Group>, StoreError> {
    let rows = q
        .query(
            &format!("{GROUP_SELECT} WHERE {filter} ORDER BY created_ts DESC, name"),
            params,
        )
        .await?;
    let mut groups = rows
        .iter()
        .map(group_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let channel_ids: Vec<super::SqlValue> = groups
        .iter()
        .filter_map(|g| g.channel_id.clone())
        .map(Into::into)
        .collect();
    if !channel_ids.is_empty() {
        let filter = format!("id IN ({})", super::placeholders(channel_ids.len()));
        let channels = load_channels(q, &filter, channel_ids).await?;
        for g in &mut groups {
            g.channel = g
                .channel_id
                .as_ref()
                .and_then(|id| channels.iter().find(|c| &c.id == id).cloned());
        }
    }
    Ok(groups)
}

/// Folds (status, version, count) rows into CoreRoller's stats and version breakdown. An
/// instance without a status that already runs the channel's version counts as complete.
pub fn fold_stats(
    rows: &[(Option<i64>, String, i64)],
    channel_version: Option<&str>,
) -> (InstancesStats, Vec<VersionCount>) {
    let target = channel_version.and_then(stored_version);
    let mut stats = InstancesStats::default();
    let mut versions: Vec<VersionCount> = Vec::new();
    for (status, version, count) in rows {
        stats.total += count;
        let status = status.and_then(InstanceStatus::from_code);
        let slot = match status {
            None | Some(InstanceStatus::Undefined) => {
                let up_to_date = match (&target, stored_version(version)) {
                    (Some(t), Some(v)) => v >= *t,
                    _ => false,
                };
                if up_to_date {
                    &mut stats.complete
                } else {
                    &mut stats.undefined
                }
            }
            Some(InstanceStatus::UpdateGranted) => &mut stats.update_granted,
            Some(InstanceStatus::Error) => &mut stats.error,
            Some(InstanceStatus::Complete) => &mut stats.complete,
            Some(InstanceStatus::Installed) => &mut stats.installed,
            Some(InstanceStatus::Downloaded) => &mut stats.downloaded,
            Some(InstanceStatus::Downloading) => &mut stats.downloading,
            Some(InstanceStatus::OnHold) => &mut stats.onhold,
        };
        *slot += count;
        match versions.iter_mut().find(|v| v.version == *version) {
            Some(v) => v.instances += count,
            None => versions.push(VersionCount {
                version: version.clone(),
                instances: *count,
                percentage: 0.0,
            }),
        }
    }
    for v in &mut versions {
        v.percentage = if stats.total > 0 {
            (v.instances as f64) * 100.0 / (stats.total as f64)
        } else {
            0.0
        };
    }
    versions.sort_by(|a, b| crate::domain::version::cmp_version_text(&b.version, &a.version));
    (stats, versions)
}

pub(crate) async fn group_stat_rows<Q: Queryable>(
    q: &mut Q,
    group_id: &str,
    now: i64,
) -> Result<Vec<(Option<i64>, String, i64)>, StoreError> {
    let rows = q
        .query(
            // `+` keeps the planner on the (group, status, version, last check) index, which
            // delivers the rows in GROUP BY order, instead of the last-check range index that
            // needs a temporary b-tree to group 100,000 rows.
            "SELECT status, version, COUNT(*) FROM instance_applications \
             WHERE group_id = ? AND +last_check_for_updates > ? GROUP BY status, version",
            sql_params![group_id, now - ACTIVE_WINDOW_MS],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.opt_int(0)?, r.text(1)?, r.int(2)?)))
        .collect()
}

impl Store {
    async fn with_stats(&self, mut groups: Vec<Group>, now: i64) -> Result<Vec<Group>, StoreError> {
        let db = self.db().clone();
        for g in &mut groups {
            let stats_cache = db.cache().group_stats();
            let rows = stats_cache
                .get_or_compute(&g.id, now, || {
                    let mut db = db.clone();
                    let group_id = g.id.clone();
                    async move { group_stat_rows(&mut db, &group_id, now).await }
                })
                .await?;
            let version = g
                .channel
                .as_ref()
                .and_then(|c| c.package.as_ref())
                .map(|p| p.version.as_str());
            let (stats, breakdown) = fold_stats(&rows, version);
            g.instances_stats = Some(stats);
            g.version_breakdown = Some(breakdown);
        }
        Ok(groups)
    }

    pub async fn list_groups(&self, app_id: &str, now: i64) -> Result<Vec<Group>, StoreError> {
        let mut db = self.db().clone();
        let groups = load_groups(&mut db, "application_id = ?", sql_params![app_id]).await?;
        self.with_stats(groups, now).await
    }

    pub async fn group(&self, app_id: &str, group_id: &str, now: i64) -> Result<Group, StoreError> {
        let mut db = self.db().clone();
        let groups = load_groups(
            &mut db,
            "application_id = ? AND id = ?",
            sql_params![app_id, group_id],
        )
        .await?;
        self.with_stats(groups, now)
            .await?
            .into_iter()
            .next()
            .ok_or(StoreError::NotFound)
    }

    /// Finds the group an Omaha `track` names: a group id, or the group's track name. Served
    /// from the configuration cache while its generation is current.
    pub async fn group_for_track(
        &self,
        app_id: &str,
        track: &str,
    ) -> Result<Option<std::sync::Arc<Group>>, StoreError> {
        let generation = self.config_generation().await?;
        if let Some(hit) = self.db().cache().group(app_id, track, generation) {
            return Ok(hit);
        }
        let group = self
            .load_group_for_track(app_id, track)
            .await?
            .map(std::sync::Arc::new);
        self.db()
            .cache()
            .put_group(app_id, track, generation, group.clone());
        Ok(group)
    }

    async fn load_group_for_track(
        &self,
        app_id: &str,
        track: &str,
    ) -> Result<Option<Group>, StoreError> {
        let mut db = self.db().clone();
        let mut groups = load_groups(
            &mut db,
            "application_id = ? AND (id = ? OR track = ?)",
            sql_params![app_id, track, track],
        )
        .await?;
        // An exact id match wins over a track name.
        groups.sort_by_key(|g| g.id != track);
        Ok(groups.into_iter().next())
    }

    pub async fn create_group(
        &self,
        app_id: &str,
        f: &GroupFields,
        now: i64,
    ) -> Result<Group, StoreError> {
        let mut tx = self.begin().await?;
        let id = new_id();
        if let Some(channel_id) = &f.channel_id {
            check_group_channel(&mut tx, app_id, channel_id).await?;
        }
        let track = f.track.clone().unwrap_or_else(|| id.clone());
        check_track(&mut tx, app_id, &id, &track).await?;
        tx.exec(
            "INSERT INTO rollout_groups (id, name, description, application_id, channel_id, track, rollout_in_progress, \
             policy_updates_enabled, policy_safe_mode, policy_office_hours, policy_timezone, policy_period_interval, \
             policy_max_updates_per_period, policy_update_timeout, policy_auto_pause_on_failure, policy_poll_interval, created_ts) \
             VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            sql_params![
                &id,
                &f.name,
                &f.description,
                app_id,
                f.channel_id.clone(),
                track,
                f.policy_updates_enabled,
                f.policy_safe_mode,
                f.policy_office_hours,
                f.policy_timezone.clone(),
                &f.policy_period_interval,
                f.policy_max_updates_per_period,
                &f.policy_update_timeout,
                f.policy_auto_pause_on_failure,
                f.policy_poll_interval,
                now
            ],
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!("a group with name {:?} or that track already exists", f.name)),
            other => other,
        })?;
        tx.commit().await?;
        self.group(app_id, &id, now).await
    }

    pub async fn update_group(
        &self,
        app_id: &str,
        group_id: &str,
        f: &GroupFields,
        now: i64,
    ) -> Result<Group, StoreError> {
        let mut tx = self.begin().await?;
        let exists = tx
            .query(
                "SELECT id FROM rollout_groups WHERE id = ? AND application_id = ?",
                sql_params![group_id, app_id],
            )
            .await?;
        if exists.is_empty() {
            return Err(StoreError::NotFound);
        }
        if let Some(channel_id) = &f.channel_id {
            check_group_channel(&mut tx, app_id, channel_id).await?;
        }
        if let Some(track) = &f.track {
            check_track(&mut tx, app_id, group_id, track).await?;
        }
        tx.exec(
            "UPDATE rollout_groups SET name = ?, description = ?, channel_id = ?, track = COALESCE(?, track), \
             policy_updates_enabled = ?, policy_safe_mode = ?, policy_office_hours = ?, policy_timezone = ?, \
             policy_period_interval = ?, policy_max_updates_per_period = ?, policy_update_timeout = ?, \
             policy_auto_pause_on_failure = ?, policy_poll_interval = ? WHERE id = ?",
            sql_params![
                &f.name,
                &f.description,
                f.channel_id.clone(),
                f.track.clone(),
                f.policy_updates_enabled,
                f.policy_safe_mode,
                f.policy_office_hours,
                f.policy_timezone.clone(),
                &f.policy_period_interval,
                f.policy_max_updates_per_period,
                &f.policy_update_timeout,
                f.policy_auto_pause_on_failure,
                f.policy_poll_interval,
                group_id
            ],
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!("a group with name {:?} or that track already exists", f.name)),
            other => other,
        })?;
        tx.commit().await?;
        self.group(app_id, group_id, now).await
    }

    pub async fn delete_group(&self, app_id: &str, group_id: &str) -> Result<(), StoreError> {
        let n = self
            .db()
            .exec(
                "DELETE FROM rollout_groups WHERE id = ? AND application_id = ?",
                sql_params![group_id, app_id],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

/// Omaha resolves a track to the group with that id before any group with that track name,
/// so a track naming another group of the application would make this group unreachable.
async fn check_track<Q: Queryable>(
    q: &mut Q,
    app_id: &str,
    group_id: &str,
    track: &str,
) -> Result<(), StoreError> {
    // The CoreOS application's stable/beta/alpha tracks always go to the seeded groups.
    if app_id == crate::domain::seed::COREOS_APP_ID {
        if let Some(seeded) = crate::domain::seed::coreos_group_for_track(track) {
            if seeded != group_id {
                return Err(StoreError::Conflict(format!(
                    "track {track:?} of the CoreOS application always resolves to its seeded group {seeded}"
                )));
            }
        }
    }
    let rows = q
        .query(
            "SELECT id FROM rollout_groups WHERE application_id = ? AND id = ? AND id <> ?",
            sql_params![app_id, track, group_id],
        )
        .await?;
    if !rows.is_empty() {
        return Err(StoreError::Conflict(format!(
            "track {track:?} is the id of another group of this application (Omaha would send its machines there)"
        )));
    }
    Ok(())
}

async fn check_group_channel<Q: Queryable>(
    q: &mut Q,
    app_id: &str,
    channel_id: &str,
) -> Result<(), StoreError> {
    let rows = q
        .query(
            "SELECT id FROM channels WHERE id = ? AND application_id = ?",
            sql_params![channel_id, app_id],
        )
        .await?;
    if rows.is_empty() {
        return Err(ValidationError::new(
            "channel_id",
            format!("channel {channel_id} does not belong to this application"),
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_to_date_instances_without_status_count_as_complete() {
        let rows = vec![
            (None, "12.1.0".to_string(), 1),
            (None, "0.1.0".to_string(), 1),
            (Some(4), "12.1.0".to_string(), 1),
        ];
        let (stats, versions) = fold_stats(&rows, Some("12.1.0"));
        assert_eq!(stats.total, 3);
        assert_eq!(stats.complete, 2);
        assert_eq!(stats.undefined, 1);
        assert_eq!(versions[0].version, "12.1.0");
        assert_eq!(versions[0].instances, 2);
        let (stats, _) = fold_stats(&rows, None);
        assert_eq!(stats.undefined, 2);
        assert_eq!(stats.complete, 1);
    }
}
