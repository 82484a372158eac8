//! Persistence. [`Store`] is the typed facade the rest of rollbridge uses; [`db::Db`] is the
//! enum over the two backends (SQLite, MySQL/MariaDB) underneath it. Every entity method is
//! written once against the shared query interface, so both backends behave identically and one
//! conformance suite covers them. Only this module contains SQL.

pub mod agent;
pub mod apps;
pub mod artifactory;
pub mod cache;
pub mod dashboard;
pub mod db;
pub mod floors;
pub mod group_stats;
pub mod groups;
pub mod instance_cache;
pub mod instances;
pub mod last_seen;
pub mod leader;
pub mod migrate;
pub mod packages;
pub mod rollout;
pub mod sources;
pub mod sync;
pub mod users;

use crate::domain::seed;
pub use db::{DatabaseUrl, Db, Dialect, Queryable, Row, SqlValue, Tx};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(crate::domain::ValidationError),
    #[error("database busy, try again: {0}")]
    Retryable(String),
    /// The database cannot be reached or refuses us (connection refused or lost, access
    /// denied, too many connections, server shutting down, files unusable): an outage, not a
    /// bug, so callers answer "try again later" (HTTP 503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database configuration: {0}")]
    Config(String),
    #[error("database schema version {database} is newer than this rollbridge (knows up to {binary}); upgrade rollbridge")]
    SchemaTooNew { database: u32, binary: u32 },
    #[error("database error: {0}")]
    Backend(String),
}

impl StoreError {
    /// True for failures a later retry may not meet: the database is unreachable, or busy past
    /// the retries (lock waits, deadlocks, SQLite's busy timeout). Answered 503, not 500.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Retryable(_))
    }
}

impl From<crate::domain::ValidationError> for StoreError {
    fn from(e: crate::domain::ValidationError) -> Self {
        Self::Invalid(e)
    }
}

/// Wall-clock now in unix milliseconds. Only used for bookkeeping timestamps; rollout decisions
/// receive their time from the caller's clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Instances that have not checked in for a day are not counted (CoreRoller's active window).
pub const ACTIVE_WINDOW_MS: i64 = 86_400_000;

#[derive(Clone)]
pub struct Store {
    db: Db,
    /// "Last seen" of settled instances, written in batches (see [`last_seen`]).
    last_seen: std::sync::Arc<last_seen::LastSeen>,
}

impl Store {
    /// Connects and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        migrate::migrate(&store.db).await?;
        Ok(store)
    }

    /// Connects without migrating (for `rollbridge migrate` status and tests).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let url = DatabaseUrl::parse(url)?;
        Ok(Self {
            db: Db::connect(&url).await?,
            last_seen: Default::default(),
        })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub(crate) fn last_seen(&self) -> &last_seen::LastSeen {
        &self.last_seen
    }

    pub fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    pub async fn migrate(&self) -> Result<migrate::MigrationReport, StoreError> {
        migrate::migrate(&self.db).await
    }

    /// The configuration cache's current generation. MySQL: first compares the database's
    /// generation row (another replica may have written configuration) unless it was read in the
    /// last few milliseconds (`cache::DB_GENERATION_REUSE_MS`); SQLite has one server process
    /// per database file, whose writes bump the generation themselves.
    pub async fn config_generation(&self) -> Result<u64, StoreError> {
        if self.dialect() == Dialect::Mysql && !self.db.cache().db_generation_is_fresh() {
            let rows = self
                .db
                .query(
                    "SELECT generation FROM rb_config_generation WHERE id = 1",
                    Vec::new(),
                )
                .await?;
            if let Some(generation) = rows.first().map(|r| r.int(0)).transpose()? {
                self.db.cache().observe_db_generation(generation);
            }
        }
        Ok(self.db.cache().generation())
    }

    pub async fn begin(&self) -> Result<Tx, StoreError> {
        self.db.begin().await
    }

    /// The instance-row cache (SQLite file databases; see [`instance_cache`]).
    pub fn instance_cache(&self) -> Option<&std::sync::Arc<instance_cache::InstanceCache>> {
        self.db.instance_cache()
    }

    /// Proves the database answers (`SELECT 1`), as cheaply as the backend allows: on a
    /// snapshot reader where there is one (the health check runs often).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self.snapshot().await? {
            Some(mut snapshot) => snapshot.query("SELECT 1", Vec::new()).await.map(|_| ()),
            None => self.db.query("SELECT 1", Vec::new()).await.map(|_| ()),
        }
    }

    /// A read-only snapshot for short reads on the request path (None where the backend has
    /// none: in-memory SQLite). See [`db::Snapshot`].
    pub async fn snapshot(&self) -> Result<Option<db::Snapshot>, StoreError> {
        self.db.snapshot().await
    }

    pub async fn close(self) {
        self.db.close().await;
    }

    /// First-start data: the default team, the `admin` user and the CoreOS application with
    /// CoreRoller's fixed channel and group ids. Idempotent: existing rows are left alone.
    /// Returns true when the admin user was created now.
    pub async fn seed(
        &self,
        admin_password_hash: &str,
        password_is_default: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let ignore = match tx.dialect() {
            Dialect::Sqlite => "INSERT OR IGNORE",
            Dialect::Mysql => "INSERT IGNORE",
        };
        tx.exec(
            &format!("{ignore} INTO teams (id, name, created_ts) VALUES (?, 'default', ?)"),
            crate::sql_params![seed::DEFAULT_TEAM_ID, now],
        )
        .await?;
        let created_admin = tx
            .exec(
                &format!(
                    "{ignore} INTO users (id, username, password_hash, password_is_default, team_id, created_ts) \
                     VALUES (?, 'admin', ?, ?, ?, ?)"
                ),
                crate::sql_params![
                    crate::domain::new_id(),
                    admin_password_hash,
                    password_is_default,
                    seed::DEFAULT_TEAM_ID,
                    now
                ],
            )
            .await?
            > 0;
        let app_exists = !tx
            .query(
                "SELECT id FROM applications WHERE id = ?",
                crate::sql_params![seed::COREOS_APP_ID],
            )
            .await?
            .is_empty();
        if !app_exists {
            tx.exec(
                "INSERT INTO applications (id, name, description, team_id, created_ts) VALUES (?, 'CoreOS', 'Linux for massive server deployments', ?, ?)",
                crate::sql_params![seed::COREOS_APP_ID, seed::DEFAULT_TEAM_ID, now],
            )
            .await?;
            let channels = [
                (seed::STABLE_CHANNEL_ID, "stable", "#14b9d6"),
                (seed::BETA_CHANNEL_ID, "beta", "#fc7f33"),
                (seed::ALPHA_CHANNEL_ID, "alpha", "#1fbb86"),
            ];
            for (i, (id, name, color)) in channels.iter().enumerate() {
                tx.exec(
                    "INSERT INTO channels (id, name, color, application_id, package_id, created_ts) VALUES (?, ?, ?, ?, NULL, ?)",
                    crate::sql_params![*id, *name, *color, seed::COREOS_APP_ID, now + i as i64],
                )
                .await?;
            }
            // CoreRoller's seed policies: canary first (safe mode), a couple of hosts per period.
            let groups = [
                (
                    seed::STABLE_GROUP_ID,
                    "Stable",
                    "stable",
                    seed::STABLE_CHANNEL_ID,
                    2,
                    "60 minutes",
                ),
                (
                    seed::BETA_GROUP_ID,
                    "Beta",
                    "beta",
                    seed::BETA_CHANNEL_ID,
                    2,
                    "60 minutes",
                ),
                (
                    seed::ALPHA_GROUP_ID,
                    "Alpha",
                    "alpha",
                    seed::ALPHA_CHANNEL_ID,
                    1,
                    "30 minutes",
                ),
            ];
            for (i, (id, name, track, channel, max, timeout)) in groups.iter().enumerate() {
                tx.exec(
                    "INSERT INTO rollout_groups (id, name, description, application_id, channel_id, track, \
                     rollout_in_progress, policy_updates_enabled, policy_safe_mode, policy_office_hours, \
                     policy_timezone, policy_period_interval, policy_max_updates_per_period, policy_update_timeout, \
                     policy_auto_pause_on_failure, policy_poll_interval, created_ts) \
                     VALUES (?, ?, ?, ?, ?, ?, 0, 1, 1, 0, 'Australia/Sydney', '15 minutes', ?, ?, 1, 0, ?)",
                    crate::sql_params![
                        *id,
                        *name,
                        format!("CoreOS {track}"),
                        seed::COREOS_APP_ID,
                        *channel,
                        *track,
                        *max as i64,
                        *timeout,
                        now + i as i64
                    ],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(created_admin)
    }
}

/// `?, ?, ?` for an IN list.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}
