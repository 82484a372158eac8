//! Leadership among replicas for background work that must run once per installation (the
//! Artifactory poller, notifications). SQLite has one server per file, so it always leads;
//! on MySQL the leader holds a named `GET_LOCK` on a dedicated connection, released when that
//! connection closes, so a replica that dies hands the lead over without any timeout.

use mysql_async::prelude::Queryable as _;
use sha2::{Digest, Sha256};

use super::db::map_mysql_error;
use super::{Store, StoreError};

/// Holds the lead. On MySQL this owns the dedicated connection that holds the `GET_LOCK`.
pub enum LeaderLock {
    /// SQLite: one node, nothing to coordinate.
    Single,
    Mysql {
        conn: Box<mysql_async::Conn>,
        name: String,
    },
}

impl LeaderLock {
    /// Whether this replica still holds the lock (a dropped connection loses it).
    pub async fn still_held(&mut self) -> bool {
        match self {
            Self::Single => true,
            Self::Mysql { conn, name } => {
                let held: Result<Option<Option<i64>>, _> = conn
                    .exec_first("SELECT IS_USED_LOCK(?) = CONNECTION_ID()", (name.as_str(),))
                    .await;
                matches!(held, Ok(Some(Some(1))))
            }
        }
    }

    pub async fn release(self) {
        if let Self::Mysql { mut conn, name } = self {
            let _: Result<Option<Option<i64>>, _> = conn
                .exec_first("SELECT RELEASE_LOCK(?)", (name.as_str(),))
                .await;
            let _ = conn.disconnect().await;
        }
    }

    /// Keeps `lead` current: checks a held lock is still held, else tries to take it. Returns
    /// whether this replica leads `name` now.
    pub async fn ensure(store: &Store, lead: &mut Option<LeaderLock>, name: &str) -> bool {
        if let Some(lock) = lead.as_mut() {
            if lock.still_held().await {
                return true;
            }
            tracing::warn!(lock = name, "lost the lead (database connection closed)");
            *lead = None;
        }
        match store.try_leader_lock(name).await {
            Ok(Some(lock)) => {
                tracing::info!(lock = name, "leading");
                *lead = Some(lock);
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(lock = name, error = %e, "cannot take the lead");
                false
            }
        }
    }
}

/// `GET_LOCK` names are server-wide, not per database: two installations sharing one MySQL
/// server must not take each other's locks. MySQL limits names to 64 characters.
fn scoped_lock_name(name: &str, database: &str) -> String {
    let digest = hex::encode(Sha256::digest(database.as_bytes()));
    let prefix: String = name.chars().take(40).collect();
    format!("{prefix}@{}", &digest[..16])
}

impl Store {
    /// Tries to become the one replica running `name`. SQLite: always (one node). MySQL:
    /// `GET_LOCK(name, 0)` (scoped to this database) on a dedicated connection, kept while
    /// leading; `None` when another replica holds it.
    pub async fn try_leader_lock(&self, name: &str) -> Result<Option<LeaderLock>, StoreError> {
        let Some(conn) = self.db().mysql_dedicated_conn().await else {
            return Ok(Some(LeaderLock::Single));
        };
        let mut conn = conn?;
        let name = scoped_lock_name(name, conn.opts().db_name().unwrap_or_default());
        let got: Option<Option<i64>> = conn
            .exec_first("SELECT GET_LOCK(?, 0)", (name.as_str(),))
            .await
            .map_err(map_mysql_error)?;
        if got == Some(Some(1)) {
            Ok(Some(LeaderLock::Mysql {
                conn: Box::new(conn),
                name,
            }))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_are_per_database_and_fit_mysql() {
        let long = "rollbridge_artifactory_0123456789abcdef01234567";
        let a = scoped_lock_name(long, "prod");
        let b = scoped_lock_name(long, "staging");
        assert_ne!(a, b);
        assert_eq!(a, scoped_lock_name(long, "prod"));
        assert!(a.len() <= 64 && b.len() <= 64, "{a}");
        assert!(scoped_lock_name("rollbridge_notifier", "x").starts_with("rollbridge_notifier@"));
    }
}
