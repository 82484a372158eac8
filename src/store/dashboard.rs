//! What the dashboard needs beyond the entity methods: login sessions (stored by digest, each with
//! its CSRF token) and a group's status history for the "versions over time" chart.

use super::{Store, StoreError};
use crate::domain::User;
use crate::sql_params;

/// A live dashboard session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: User,
    pub csrf_token: String,
    pub created_ts: i64,
    pub expires_ts: i64,
}

/// One status change of an instance in a group (oldest first when listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPoint {
    pub instance_id: String,
    pub status: i64,
    pub version: String,
    pub created_ts: i64,
}

impl Store {
    /// Records a new session; `id_hash` is the digest of the cookie value.
    pub async fn create_session(
        &self,
        id_hash: &str,
        user_id: &str,
        csrf_token: &str,
        now: i64,
        expires_ts: i64,
    ) -> Result<(), StoreError> {
        self.db()
            .exec(
                "INSERT INTO dashboard_sessions (id_hash, user_id, csrf_token, created_ts, expires_ts) VALUES (?, ?, ?, ?, ?)",
                sql_params![id_hash, user_id, csrf_token, now, expires_ts],
            )
            .await?;
        Ok(())
    }

    /// The session with this digest, unless it has expired.
    pub async fn session(&self, id_hash: &str, now: i64) -> Result<Option<Session>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT u.id, u.username, u.team_id, u.created_ts, s.csrf_token, s.created_ts, s.expires_ts \
                 FROM dashboard_sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ? AND s.expires_ts > ?",
                sql_params![id_hash, now],
            )
            .await?;
        rows.first()
            .map(|r| {
                Ok(Session {
                    user: User {
                        id: r.text(0)?,
                        username: r.text(1)?,
                        team_id: r.text(2)?,
                        created_ts: r.int(3)?,
                    },
                    csrf_token: r.text(4)?,
                    created_ts: r.int(5)?,
                    expires_ts: r.int(6)?,
                })
            })
            .transpose()
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.db()
            .exec(
                "DELETE FROM dashboard_sessions WHERE id_hash = ?",
                sql_params![id_hash],
            )
            .await?;
        Ok(())
    }

    /// Removes expired sessions; returns how many.
    pub async fn prune_sessions(&self, now: i64) -> Result<u64, StoreError> {
        self.db()
            .exec(
                "DELETE FROM dashboard_sessions WHERE expires_ts <= ?",
                sql_params![now],
            )
            .await
    }

    /// Status changes of a group's instances since `since`, oldest first, at most `limit` rows
    /// (the newest ones when there are more).
    pub async fn group_history(
        &self,
        group_id: &str,
        since: i64,
        limit: i64,
    ) -> Result<Vec<HistoryPoint>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT instance_id, status, version, created_ts FROM instance_status_history \
                 WHERE group_id = ? AND created_ts >= ? ORDER BY created_ts DESC, id DESC LIMIT ?",
                sql_params![group_id, since, limit.clamp(1, 100_000)],
            )
            .await?;
        let mut points = rows
            .iter()
            .map(|r| {
                Ok(HistoryPoint {
                    instance_id: r.text(0)?,
                    status: r.int(1)?,
                    version: r.text(2)?,
                    created_ts: r.int(3)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        points.reverse();
        Ok(points)
    }
}

impl Store {
    /// (application id, application name, group id, group name) of every group of a team, for
    /// filter pickers; ordered by application and group name.
    pub async fn group_names(
        &self,
        team_id: &str,
    ) -> Result<Vec<(String, String, String, String)>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT a.id, a.name, g.id, g.name FROM rollout_groups g JOIN applications a ON a.id = g.application_id \
                 WHERE a.team_id = ? ORDER BY a.name, g.name",
                sql_params![team_id],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?, r.text(2)?, r.text(3)?)))
            .collect()
    }
}
