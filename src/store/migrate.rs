//! Schema migrations: `db/sqlite/NNNN_*.sql` and `db/mysql/NNNN_*.sql`, embedded in the binary,
//! applied in order and recorded in `schema_migrations`. A database migrated by a newer
//! rollbridge is refused rather than silently misread.

use mysql_async::prelude::Queryable as _;

use super::db::{map_mysql_error, Db, Dialect};
use super::{now_ms, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../db/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "sources",
        sql: include_str!("../../db/sqlite/0002_sources.sql"),
    },
    Migration {
        version: 3,
        name: "artifactory",
        sql: include_str!("../../db/sqlite/0003_artifactory.sql"),
    },
    Migration {
        version: 4,
        name: "dashboard",
        sql: include_str!("../../db/sqlite/0004_dashboard.sql"),
    },
    Migration {
        version: 5,
        name: "sync",
        sql: include_str!("../../db/sqlite/0005_sync.sql"),
    },
    Migration {
        version: 7,
        name: "perf",
        sql: include_str!("../../db/sqlite/0007_perf.sql"),
    },
    Migration {
        version: 8,
        name: "notifier",
        sql: include_str!("../../db/sqlite/0008_notifier.sql"),
    },
];

pub const MYSQL: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../db/mysql/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "sources",
        sql: include_str!("../../db/mysql/0002_sources.sql"),
    },
    Migration {
        version: 3,
        name: "artifactory",
        sql: include_str!("../../db/mysql/0003_artifactory.sql"),
    },
    Migration {
        version: 4,
        name: "dashboard",
        sql: include_str!("../../db/mysql/0004_dashboard.sql"),
    },
    Migration {
        version: 5,
        name: "sync",
        sql: include_str!("../../db/mysql/0005_sync.sql"),
    },
    Migration {
        version: 7,
        name: "perf",
        sql: include_str!("../../db/mysql/0007_perf.sql"),
    },
    Migration {
        version: 8,
        name: "notifier",
        sql: include_str!("../../db/mysql/0008_notifier.sql"),
    },
];

pub fn migrations(dialect: Dialect) -> &'static [Migration] {
    match dialect {
        Dialect::Sqlite => SQLITE,
        Dialect::Mysql => MYSQL,
    }
}

/// The newest schema this binary knows.
pub fn latest_version() -> u32 {
    SQLITE.iter().map(|m| m.version).max().unwrap_or(0)
}

const BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
    version INTEGER NOT NULL PRIMARY KEY, name VARCHAR(100) NOT NULL, applied_ts BIGINT NOT NULL)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: u32,
    pub name: String,
    pub applied_ts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied_now: Vec<u32>,
    pub all: Vec<AppliedMigration>,
}

pub async fn applied(db: &Db) -> Result<Vec<AppliedMigration>, StoreError> {
    db.exec(BOOKKEEPING, Vec::new()).await?;
    let rows = db
        .query(
            "SELECT version, name, applied_ts FROM schema_migrations ORDER BY version",
            Vec::new(),
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(AppliedMigration {
                version: u32::try_from(r.int(0)?).unwrap_or(0),
                name: r.text(1)?,
                applied_ts: r.int(2)?,
            })
        })
        .collect()
}

/// Applies pending migrations. On MySQL an advisory lock keeps replicas starting together from
/// running the same migration twice.
pub async fn migrate(db: &Db) -> Result<MigrationReport, StoreError> {
    let lock = match db.mysql_pool() {
        Some(pool) => {
            let mut conn = super::db::mysql_conn(pool).await?;
            let got: Option<i64> = conn
                .query_first("SELECT GET_LOCK('rollbridge_migrate', 120)")
                .await
                .map_err(map_mysql_error)?;
            if got != Some(1) {
                return Err(StoreError::Backend(
                    "timed out waiting for another replica's migration".into(),
                ));
            }
            Some(conn)
        }
        None => None,
    };
    let result = migrate_locked(db).await;
    if let Some(mut conn) = lock {
        let _ = conn
            .query_drop("SELECT RELEASE_LOCK('rollbridge_migrate')")
            .await;
    }
    result
}

async fn migrate_locked(db: &Db) -> Result<MigrationReport, StoreError> {
    let known = migrations(db.dialect());
    let done = applied(db).await?;
    let newest_known = known.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(newer) = done.iter().find(|m| m.version > newest_known) {
        return Err(StoreError::SchemaTooNew {
            database: newer.version,
            binary: newest_known,
        });
    }
    let mut applied_now = Vec::new();
    for migration in known {
        if done.iter().any(|m| m.version == migration.version) {
            continue;
        }
        db.exec_script(migration.sql).await?;
        db.exec(
            "INSERT INTO schema_migrations (version, name, applied_ts) VALUES (?, ?, ?)",
            crate::sql_params![i64::from(migration.version), migration.name, now_ms()],
        )
        .await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
        applied_now.push(migration.version);
    }
    Ok(MigrationReport {
        applied_now,
        all: applied(db).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two dialect folders must carry the same migrations (numbers and names), and the
    /// embedded lists must match what is on disk.
    #[test]
    fn both_dialects_have_the_same_migration_versions() {
        let on_disk = |dir: &str| -> Vec<String> {
            let path = format!("{}/db/{dir}", env!("CARGO_MANIFEST_DIR"));
            let mut names: Vec<String> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect();
            names.sort();
            names
        };
        let sqlite = on_disk("sqlite");
        let mysql = on_disk("mysql");
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, mysql, "db/sqlite and db/mysql differ");
        let embedded = |list: &[Migration]| -> Vec<String> {
            list.iter()
                .map(|m| format!("{:04}_{}.sql", m.version, m.name))
                .collect()
        };
        assert_eq!(embedded(SQLITE), sqlite, "SQLITE list out of date");
        assert_eq!(embedded(MYSQL), mysql, "MYSQL list out of date");
    }
}
