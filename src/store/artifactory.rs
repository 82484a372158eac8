//! Artifactory poller persistence: per-(domain, environment, app) state (`artifactory_state`,
//! migration 0003), activity for payloads the poller rejected, and the MySQL advisory lock that
//! elects the one replica that polls.

use super::{Dialect, Row, Store, StoreError};
use crate::domain::{ActivityClass, NewActivity, Severity};
use crate::sql_params;

/// What the poller remembers about one app folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ArtState {
    pub domain: String,
    pub environment: String,
    pub app: String,
    /// The newest version processed successfully (registered, or deliberately ignored).
    pub last_version: Option<String>,
    pub last_checksum: Option<String>,
    /// A version whose processing started and has not finished (resumed after a crash).
    pub in_progress_version: Option<String>,
    pub in_progress_ts: Option<i64>,
    /// A version whose payload was rejected, with the payload checksum it had.
    pub failed_version: Option<String>,
    pub failed_checksum: Option<String>,
    pub failed_reason: Option<String>,
    pub failures: i64,
    pub updated_ts: i64,
}

const STATE_SELECT: &str = "SELECT domain, environment, app, last_version, last_checksum, \
    in_progress_version, in_progress_ts, failed_version, failed_checksum, failed_reason, failures, \
    updated_ts FROM artifactory_state";

fn state_from_row(r: &Row) -> Result<ArtState, StoreError> {
    Ok(ArtState {
        domain: r.text(0)?,
        environment: r.text(1)?,
        app: r.text(2)?,
        last_version: r.opt_text(3)?,
        last_checksum: r.opt_text(4)?,
        in_progress_version: r.opt_text(5)?,
        in_progress_ts: r.opt_int(6)?,
        failed_version: r.opt_text(7)?,
        failed_checksum: r.opt_text(8)?,
        failed_reason: r.opt_text(9)?,
        failures: r.int(10)?,
        updated_ts: r.int(11)?,
    })
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

impl Store {
    pub async fn artifactory_state(
        &self,
        domain: &str,
        environment: &str,
        app: &str,
    ) -> Result<Option<ArtState>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("{STATE_SELECT} WHERE domain = ? AND environment = ? AND app = ?"),
                sql_params![domain, environment, app],
            )
            .await?;
        rows.first().map(state_from_row).transpose()
    }

    pub async fn artifactory_states(
        &self,
        domain: &str,
        environment: &str,
    ) -> Result<Vec<ArtState>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("{STATE_SELECT} WHERE domain = ? AND environment = ? ORDER BY app"),
                sql_params![domain, environment],
            )
            .await?;
        rows.iter().map(state_from_row).collect()
    }

    /// Writes the whole state row (created when missing).
    pub async fn save_artifactory_state(&self, s: &ArtState) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let insert = match tx.dialect() {
            Dialect::Sqlite => "INSERT OR IGNORE",
            Dialect::Mysql => "INSERT IGNORE",
        };
        tx.exec(
            &format!(
                "{insert} INTO artifactory_state (domain, environment, app, failures, updated_ts) \
                 VALUES (?, ?, ?, 0, ?)"
            ),
            sql_params![&s.domain, &s.environment, &s.app, s.updated_ts],
        )
        .await?;
        tx.exec(
            "UPDATE artifactory_state SET last_version = ?, last_checksum = ?, \
             in_progress_version = ?, in_progress_ts = ?, failed_version = ?, failed_checksum = ?, \
             failed_reason = ?, failures = ?, updated_ts = ? \
             WHERE domain = ? AND environment = ? AND app = ?",
            sql_params![
                s.last_version.clone(),
                s.last_checksum.clone(),
                s.in_progress_version.clone(),
                s.in_progress_ts,
                s.failed_version.clone(),
                s.failed_checksum.clone(),
                s.failed_reason.as_deref().map(|r| truncate(r, 2000)),
                s.failures,
                s.updated_ts,
                &s.domain,
                &s.environment,
                &s.app
            ],
        )
        .await?;
        tx.commit().await
    }

    /// The application a payload of `folder` belongs to, if it exists yet: the artifactory
    /// binding of the folder, else the application named like the metadata `name`, else the one
    /// named like the folder.
    pub async fn artifactory_app_for(
        &self,
        folder: &str,
        metadata_name: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT application_id FROM bindings WHERE kind = 'artifactory' AND match_value = ? \
                 ORDER BY created_ts LIMIT 1",
                sql_params![folder],
            )
            .await?;
        if let Some(row) = rows.first() {
            return Ok(Some(row.text(0)?));
        }
        for name in metadata_name.into_iter().chain(std::iter::once(folder)) {
            let rows = self
                .db()
                .query(
                    "SELECT id FROM applications WHERE name = ? ORDER BY created_ts LIMIT 1",
                    sql_params![name],
                )
                .await?;
            if let Some(row) = rows.first() {
                return Ok(Some(row.text(0)?));
            }
        }
        Ok(None)
    }

    /// Records an activity entry about an Artifactory payload for `application_id`.
    pub async fn artifactory_activity(
        &self,
        application_id: &str,
        class: ActivityClass,
        severity: Severity,
        version: &str,
        description: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut db = self.db().clone();
        super::packages::insert_activity(
            &mut db,
            &NewActivity {
                class,
                severity,
                version: truncate(version, 255),
                application_id: application_id.to_string(),
                group_id: None,
                channel_id: None,
                instance_id: None,
                description: truncate(description, 2000),
            },
            now,
        )
        .await
    }
}
