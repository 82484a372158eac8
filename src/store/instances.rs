//! Read side of the fleet: instances of a group with filters and paging, an instance's status
//! history and events, and the activity stream.

use super::{Store, StoreError, ACTIVE_WINDOW_MS};
use crate::domain::{
    Activity, Instance, InstanceApplication, InstanceEvent, InstanceStatus, StatusHistoryEntry,
};
use crate::sql_params;

#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    pub status: Option<InstanceStatus>,
    pub version: Option<String>,
    /// Substring of id, alias or IP.
    pub search: Option<String>,
    pub page: i64,
    pub per_page: i64,
}

#[derive(Debug, Clone, Default)]
pub struct ActivityFilter {
    pub team_id: String,
    pub app_id: Option<String>,
    pub group_id: Option<String>,
    pub channel_id: Option<String>,
    pub instance_id: Option<String>,
    pub version: Option<String>,
    pub severity: Option<i64>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub page: i64,
    pub per_page: i64,
}

const INSTANCE_SELECT: &str = "SELECT i.id, i.ip, i.alias, i.oem, i.aleph_version, i.created_ts, ia.instance_id, \
    ia.application_id, ia.group_id, ia.version, ia.created_ts, ia.status, ia.last_check_for_updates, \
    ia.last_update_granted_ts, ia.last_update_version, ia.update_in_progress \
    FROM instance_applications ia JOIN instances i ON i.id = ia.instance_id";

fn instance_from_row(r: &super::Row) -> Result<Instance, StoreError> {
    Ok(Instance {
        id: r.text(0)?,
        ip: r.text(1)?,
        alias: r.text(2)?,
        oem: r.text(3)?,
        aleph_version: r.text(4)?,
        created_ts: r.int(5)?,
        application: Some(InstanceApplication {
            instance_id: r.text(6)?,
            application_id: r.text(7)?,
            group_id: r.opt_text(8)?,
            version: r.text(9)?,
            created_ts: r.int(10)?,
            status: r.opt_int(11)?,
            last_check_for_updates: r.int(12)?,
            last_update_granted_ts: r.opt_int(13)?,
            last_update_version: r.opt_text(14)?,
            update_in_progress: r.boolean(15)?,
        }),
    })
}

/// Escapes LIKE wildcards so a search for `_` finds underscores only.
fn like_pattern(text: &str) -> String {
    // '!' as the escape character: a backslash means different things in MySQL and SQLite literals.
    let escaped = text
        .replace('!', "!!")
        .replace('%', "!%")
        .replace('_', "!_");
    format!("%{escaped}%")
}

impl Store {
    /// Active instances of a group; returns (total matching, page).
    pub async fn list_instances(
        &self,
        app_id: &str,
        group_id: &str,
        filter: &InstanceFilter,
        now: i64,
    ) -> Result<(i64, Vec<Instance>), StoreError> {
        let mut clause = String::from(
            "ia.application_id = ? AND ia.group_id = ? AND ia.last_check_for_updates > ?",
        );
        let mut params = sql_params![app_id, group_id, now - ACTIVE_WINDOW_MS];
        if let Some(status) = filter.status {
            clause.push_str(" AND ia.status = ?");
            params.push(status.code().into());
        }
        if let Some(version) = &filter.version {
            clause.push_str(" AND ia.version = ?");
            params.push(version.into());
        }
        if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
            clause.push_str(" AND (i.id LIKE ? ESCAPE '!' OR i.alias LIKE ? ESCAPE '!' OR i.ip LIKE ? ESCAPE '!')");
            let pattern = like_pattern(search);
            params.push(pattern.clone().into());
            params.push(pattern.clone().into());
            params.push(pattern.into());
        }
        let total = self
            .db()
            .query(
                &format!("SELECT COUNT(*) FROM instance_applications ia JOIN instances i ON i.id = ia.instance_id WHERE {clause}"),
                params.clone(),
            )
            .await?
            .first()
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
        let per_page = filter.per_page.clamp(1, 1000);
        let page = filter.page.max(1);
        params.push(per_page.into());
        params.push((page - 1).saturating_mul(per_page).into());
        let rows = self
            .db()
            .query(
                &format!("{INSTANCE_SELECT} WHERE {clause} ORDER BY ia.last_check_for_updates DESC, i.id LIMIT ? OFFSET ?"),
                params,
            )
            .await?;
        Ok((
            total,
            rows.iter()
                .map(instance_from_row)
                .collect::<Result<_, _>>()?,
        ))
    }

    pub async fn instance(&self, app_id: &str, instance_id: &str) -> Result<Instance, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("{INSTANCE_SELECT} WHERE ia.application_id = ? AND ia.instance_id = ?"),
                sql_params![app_id, instance_id],
            )
            .await?;
        rows.first()
            .map(instance_from_row)
            .transpose()?
            .ok_or(StoreError::NotFound)
    }

    /// Newest first.
    pub async fn status_history(
        &self,
        app_id: &str,
        instance_id: &str,
        limit: i64,
    ) -> Result<Vec<StatusHistoryEntry>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT status, version, error_code, created_ts FROM instance_status_history \
                 WHERE application_id = ? AND instance_id = ? ORDER BY created_ts DESC, id DESC LIMIT ?",
                sql_params![app_id, instance_id, limit.clamp(1, 1000)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StatusHistoryEntry {
                    status: r.int(0)?,
                    version: r.text(1)?,
                    error_code: r.text(2)?,
                    created_ts: r.int(3)?,
                })
            })
            .collect()
    }

    /// Newest first.
    pub async fn instance_events(
        &self,
        app_id: &str,
        instance_id: &str,
        limit: i64,
    ) -> Result<Vec<InstanceEvent>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT event_type, event_result, previous_version, error_code, created_ts FROM events \
                 WHERE application_id = ? AND instance_id = ? ORDER BY created_ts DESC, id DESC LIMIT ?",
                sql_params![app_id, instance_id, limit.clamp(1, 1000)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let (t, res) = (r.int(0)?, r.int(1)?);
                let description = crate::domain::EventKind::from_pair(t as i32, res as i32)
                    .map(|k| k.description().to_string())
                    .unwrap_or_default();
                Ok(InstanceEvent {
                    event_type: t,
                    event_result: res,
                    previous_version: r.text(2)?,
                    error_code: r.text(3)?,
                    description,
                    created_ts: r.int(4)?,
                })
            })
            .collect()
    }

    /// Activity of the team's applications, newest first.
    pub async fn list_activity(&self, f: &ActivityFilter) -> Result<Vec<Activity>, StoreError> {
        let mut clause =
            String::from("app.team_id = ? AND a.created_ts >= ? AND a.created_ts <= ?");
        let mut params = sql_params![&f.team_id, f.start_ms, f.end_ms];
        let mut add = |column: &str, value: &Option<String>| {
            if let Some(v) = value {
                clause.push_str(&format!(" AND {column} = ?"));
                params.push(v.into());
            }
        };
        add("a.application_id", &f.app_id);
        add("a.group_id", &f.group_id);
        add("a.channel_id", &f.channel_id);
        add("a.instance_id", &f.instance_id);
        add("a.version", &f.version);
        if let Some(severity) = f.severity {
            clause.push_str(" AND a.severity = ?");
            params.push(severity.into());
        }
        let per_page = f.per_page.clamp(1, 1000);
        params.push(per_page.into());
        params.push((f.page.max(1) - 1).saturating_mul(per_page).into());
        let rows = self
            .db()
            .query(
                &format!(
                    "{ACTIVITY_SELECT} WHERE {clause} ORDER BY a.created_ts DESC, a.id DESC LIMIT ? OFFSET ?"
                ),
                params,
            )
            .await?;
        rows.iter().map(activity_from_row).collect()
    }
}

/// Activity rows with the names of what they refer to; `activity_from_row` reads them.
pub(crate) const ACTIVITY_SELECT: &str = "SELECT a.id, a.created_ts, a.class, a.severity, a.version, \
    a.application_id, app.name, a.group_id, g.name, a.channel_id, c.name, a.instance_id, a.description \
    FROM activity a JOIN applications app ON app.id = a.application_id \
    LEFT JOIN rollout_groups g ON g.id = a.group_id LEFT JOIN channels c ON c.id = a.channel_id";

pub(crate) fn activity_from_row(r: &super::Row) -> Result<Activity, StoreError> {
    Ok(Activity {
        id: r.int(0)?,
        created_ts: r.int(1)?,
        class: r.int(2)?,
        severity: r.int(3)?,
        version: r.text(4)?,
        application_id: r.text(5)?,
        application_name: r.text(6)?,
        group_id: r.opt_text(7)?,
        group_name: r.opt_text(8)?,
        channel_id: r.opt_text(9)?,
        channel_name: r.opt_text(10)?,
        instance_id: r.opt_text(11)?,
        description: r.text(12)?,
    })
}
