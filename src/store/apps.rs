//! Applications, including CoreRoller's `clone_from`: a new application gets copies of another's
//! channels (without packages) and groups (pointing at the copied channels, updates enabled).

use super::packages::load_channels;
use super::{Queryable, Row, Store, StoreError, ACTIVE_WINDOW_MS};
use crate::domain::{new_id, Application, ApplicationFields};
use crate::sql_params;

const APP_SELECT: &str = "SELECT id, name, description, created_ts, team_id FROM applications";

fn app_from_row(r: &Row) -> Result<Application, StoreError> {
    Ok(Application {
        id: r.text(0)?,
        name: r.text(1)?,
        description: r.text(2)?,
        created_ts: r.int(3)?,
        team_id: r.text(4)?,
    })
}

impl Store {
    pub async fn list_apps(&self, team_id: &str) -> Result<Vec<Application>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("{APP_SELECT} WHERE team_id = ? ORDER BY created_ts DESC, name"),
                sql_params![team_id],
            )
            .await?;
        rows.iter().map(app_from_row).collect()
    }

    pub async fn app(&self, team_id: &str, app_id: &str) -> Result<Application, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("{APP_SELECT} WHERE team_id = ? AND id = ?"),
                sql_params![team_id, app_id],
            )
            .await?;
        rows.first()
            .map(app_from_row)
            .transpose()?
            .ok_or(StoreError::NotFound)
    }

    /// Looks an application up by id in any team (the Omaha endpoint has no team). Served from
    /// the configuration cache while its generation is current.
    pub async fn app_by_id(
        &self,
        app_id: &str,
    ) -> Result<Option<std::sync::Arc<Application>>, StoreError> {
        let generation = self.config_generation().await?;
        if let Some(hit) = self.db().cache().app(app_id, generation) {
            return Ok(hit);
        }
        let rows = self
            .db()
            .query(&format!("{APP_SELECT} WHERE id = ?"), sql_params![app_id])
            .await?;
        let app = rows
            .first()
            .map(app_from_row)
            .transpose()?
            .map(std::sync::Arc::new);
        self.db().cache().put_app(app_id, generation, app.clone());
        Ok(app)
    }

    pub async fn app_by_name(
        &self,
        team_id: &str,
        name: &str,
    ) -> Result<Option<Application>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("{APP_SELECT} WHERE team_id = ? AND name = ?"),
                sql_params![team_id, name],
            )
            .await?;
        rows.first().map(app_from_row).transpose()
    }

    pub async fn create_app(
        &self,
        team_id: &str,
        f: &ApplicationFields,
        clone_from: Option<&str>,
        now: i64,
    ) -> Result<Application, StoreError> {
        let mut tx = self.begin().await?;
        let id = new_id();
        tx.exec(
            "INSERT INTO applications (id, name, description, team_id, created_ts) VALUES (?, ?, ?, ?, ?)",
            sql_params![&id, &f.name, &f.description, team_id, now],
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!("an application named {:?} already exists", f.name)),
            other => other,
        })?;
        if let Some(source) = clone_from {
            let exists = tx
                .query(
                    "SELECT id FROM applications WHERE id = ? AND team_id = ?",
                    sql_params![source, team_id],
                )
                .await?;
            if exists.is_empty() {
                return Err(crate::domain::ValidationError::new(
                    "clone_from",
                    format!("application {source} not found"),
                )
                .into());
            }
            clone_app_contents(&mut tx, source, &id, now).await?;
        }
        tx.commit().await?;
        self.app(team_id, &id).await
    }

    pub async fn update_app(
        &self,
        team_id: &str,
        app_id: &str,
        f: &ApplicationFields,
    ) -> Result<Application, StoreError> {
        let n = self
            .db()
            .exec(
                "UPDATE applications SET name = ?, description = ? WHERE id = ? AND team_id = ?",
                sql_params![&f.name, &f.description, app_id, team_id],
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::Conflict(format!(
                    "an application named {:?} already exists",
                    f.name
                )),
                other => other,
            })?;
        if n == 0 {
            // MySQL reports 0 affected rows when nothing changed; check existence explicitly.
            return self.app(team_id, app_id).await;
        }
        self.app(team_id, app_id).await
    }

    pub async fn delete_app(&self, team_id: &str, app_id: &str) -> Result<(), StoreError> {
        if app_id == crate::domain::seed::COREOS_APP_ID {
            // Seeded again at every start, so a deletion would only seem to work.
            return Err(StoreError::Conflict(
                "the built-in CoreOS application cannot be deleted (it is re-created at every start)"
                    .into(),
            ));
        }
        let n = self
            .db()
            .exec(
                "DELETE FROM applications WHERE id = ? AND team_id = ?",
                sql_params![app_id, team_id],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Instances of the application seen in the last day.
    pub async fn app_instance_count(&self, app_id: &str, now: i64) -> Result<i64, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT COUNT(*) FROM instance_applications WHERE application_id = ? AND last_check_for_updates > ?",
                sql_params![app_id, now - ACTIVE_WINDOW_MS],
            )
            .await?;
        rows.first()
            .map(|r| r.int(0))
            .transpose()
            .map(|n| n.unwrap_or(0))
    }
}

async fn clone_app_contents<Q: Queryable>(
    q: &mut Q,
    source: &str,
    target: &str,
    now: i64,
) -> Result<(), StoreError> {
    let channels = load_channels(q, "application_id = ?", sql_params![source]).await?;
    let mut channel_map = Vec::new();
    for (i, c) in channels.iter().enumerate() {
        let new = new_id();
        q.exec(
            "INSERT INTO channels (id, name, color, application_id, package_id, created_ts) VALUES (?, ?, ?, ?, NULL, ?)",
            sql_params![&new, &c.name, &c.color, target, now + i as i64],
        )
        .await?;
        channel_map.push((c.id.clone(), new));
    }
    let rows = q
        .query(
            "SELECT id, name, description, channel_id, track, policy_safe_mode, policy_office_hours, policy_timezone, \
             policy_period_interval, policy_max_updates_per_period, policy_update_timeout, policy_auto_pause_on_failure, \
             policy_poll_interval FROM rollout_groups WHERE application_id = ? ORDER BY created_ts",
            sql_params![source],
        )
        .await?;
    for (i, r) in rows.iter().enumerate() {
        let new = new_id();
        let old_id = r.text(0)?;
        let old_track = r.text(4)?;
        // Tracks that were the old group's id follow the new id; named tracks are kept.
        let track = if old_track == old_id {
            new.clone()
        } else {
            old_track
        };
        let channel = r.opt_text(3)?.and_then(|old| {
            channel_map
                .iter()
                .find(|(o, _)| *o == old)
                .map(|(_, n)| n.clone())
        });
        q.exec(
            "INSERT INTO rollout_groups (id, name, description, application_id, channel_id, track, rollout_in_progress, \
             policy_updates_enabled, policy_safe_mode, policy_office_hours, policy_timezone, policy_period_interval, \
             policy_max_updates_per_period, policy_update_timeout, policy_auto_pause_on_failure, policy_poll_interval, created_ts) \
             VALUES (?, ?, ?, ?, ?, ?, 0, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            sql_params![
                &new,
                r.text(1)?,
                r.text(2)?,
                target,
                channel,
                track,
                r.boolean(5)?,
                r.boolean(6)?,
                r.opt_text(7)?,
                r.text(8)?,
                r.int(9)?,
                r.text(10)?,
                r.boolean(11)?,
                r.int(12)?,
                now + i as i64
            ],
        )
        .await?;
    }
    Ok(())
}
