//! Users and API tokens. Passwords arrive already hashed (argon2, see `crate::auth`); tokens
//! are stored as SHA-256 digests, so a database leak reveals neither.

use super::{Store, StoreError};
use crate::domain::{new_id, ApiToken, User};
use crate::sql_params;

/// A user with the stored password hash, for login checks.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
    pub password_is_default: bool,
}

const USER_COLUMNS: &str = "id, username, team_id, created_ts, password_hash, password_is_default";

fn user_from_row(r: &super::Row) -> Result<UserCredentials, StoreError> {
    Ok(UserCredentials {
        user: User {
            id: r.text(0)?,
            username: r.text(1)?,
            team_id: r.text(2)?,
            created_ts: r.int(3)?,
        },
        password_hash: r.text(4)?,
        password_is_default: r.boolean(5)?,
    })
}

impl Store {
    pub async fn user_by_name(
        &self,
        username: &str,
    ) -> Result<Option<UserCredentials>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?"),
                sql_params![username],
            )
            .await?;
        rows.first().map(user_from_row).transpose()
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserCredentials>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"),
                sql_params![id],
            )
            .await?;
        rows.first().map(user_from_row).transpose()
    }

    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        team_id: &str,
        now: i64,
    ) -> Result<User, StoreError> {
        let id = new_id();
        self.db()
            .exec(
                "INSERT INTO users (id, username, password_hash, password_is_default, team_id, created_ts) VALUES (?, ?, ?, 0, ?, ?)",
                sql_params![&id, username, password_hash, team_id, now],
            )
            .await?;
        Ok(User {
            id,
            username: username.to_string(),
            team_id: team_id.to_string(),
            created_ts: now,
        })
    }

    /// Sets a user's password and ends their dashboard sessions — all of them, or all but
    /// `keep_session` (the session that made the change) — in one transaction: whoever knew
    /// the old password must not stay logged in.
    pub async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        keep_session: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        // Looked up rather than judged by affected rows: MySQL reports 0 for an unchanged row.
        let rows = tx
            .query(
                "SELECT id FROM users WHERE username = ?",
                sql_params![username],
            )
            .await?;
        let Some(user_id) = rows.first().map(|r| r.text(0)).transpose()? else {
            tx.rollback().await?;
            return Err(StoreError::NotFound);
        };
        tx.exec(
            "UPDATE users SET password_hash = ?, password_is_default = 0 WHERE id = ?",
            sql_params![password_hash, &user_id],
        )
        .await?;
        tx.exec(
            "DELETE FROM dashboard_sessions WHERE user_id = ? AND id_hash <> ?",
            sql_params![&user_id, keep_session.unwrap_or("")],
        )
        .await?;
        tx.commit().await
    }

    pub async fn create_token(
        &self,
        name: &str,
        user_id: &str,
        token_hash: &str,
        now: i64,
    ) -> Result<ApiToken, StoreError> {
        let id = new_id();
        self.db()
            .exec(
                "INSERT INTO api_tokens (id, name, token_hash, user_id, created_ts, last_used_ts) VALUES (?, ?, ?, ?, ?, NULL)",
                sql_params![&id, name, token_hash, user_id, now],
            )
            .await?;
        Ok(ApiToken {
            id,
            name: name.to_string(),
            user_id: user_id.to_string(),
            created_ts: now,
            last_used_ts: None,
        })
    }

    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT id, name, user_id, created_ts, last_used_ts FROM api_tokens ORDER BY created_ts, id",
                Vec::new(),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ApiToken {
                    id: r.text(0)?,
                    name: r.text(1)?,
                    user_id: r.text(2)?,
                    created_ts: r.int(3)?,
                    last_used_ts: r.opt_int(4)?,
                })
            })
            .collect()
    }

    pub async fn revoke_token(&self, id: &str) -> Result<(), StoreError> {
        let n = self
            .db()
            .exec("DELETE FROM api_tokens WHERE id = ?", sql_params![id])
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The user owning a token (by digest); records use at most once a minute.
    pub async fn user_for_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<User>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT u.id, u.username, u.team_id, u.created_ts, t.id, t.last_used_ts \
                 FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?",
                sql_params![token_hash],
            )
            .await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let last_used = r.opt_int(5)?.unwrap_or(0);
        if now - last_used > 60_000 {
            self.db()
                .exec(
                    "UPDATE api_tokens SET last_used_ts = ? WHERE id = ?",
                    sql_params![now, r.text(4)?],
                )
                .await?;
        }
        Ok(Some(User {
            id: r.text(0)?,
            username: r.text(1)?,
            team_id: r.text(2)?,
            created_ts: r.int(3)?,
        }))
    }
}
