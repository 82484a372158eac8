//! The two database backends behind one small query interface. Store code is written once
//! against [`Db`] and [`Tx`] with `?` placeholders (both dialects accept them); the few places
//! where SQL differs ask [`Dialect`]. SQLite work runs on blocking threads so it never stalls
//! the async workers; MySQL goes through mysql_async's pool.

use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable as _;
use rusqlite::types::{ToSqlOutput, ValueRef};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Mysql,
}

/// A parameter or column value, independent of the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        Self::Int(i64::from(v))
    }
}
impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        Self::Text(v.to_string())
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}
impl From<&String> for SqlValue {
    fn from(v: &String) -> Self {
        Self::Text(v.clone())
    }
}
impl From<Vec<u8>> for SqlValue {
    fn from(v: Vec<u8>) -> Self {
        Self::Blob(v)
    }
}
impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Self::Null)
    }
}

/// Builds a parameter list: `params![a, b, c]`.
#[macro_export]
macro_rules! sql_params {
    ($($v:expr),* $(,)?) => { vec![$($crate::store::db::SqlValue::from($v)),*] };
}

/// One result row; accessors convert and name the column index on mismatch.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<SqlValue>);

impl Row {
    fn value(&self, i: usize) -> Result<&SqlValue, StoreError> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Backend(format!("column {i} missing")))
    }

    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.opt_text(i)?.unwrap_or_default())
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.value(i)? {
            SqlValue::Null => Ok(None),
            SqlValue::Text(s) => Ok(Some(s.clone())),
            SqlValue::Int(n) => Ok(Some(n.to_string())),
            SqlValue::Blob(b) => Ok(Some(String::from_utf8_lossy(b).into_owned())),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.opt_int(i)?.unwrap_or(0))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.value(i)? {
            SqlValue::Null => Ok(None),
            SqlValue::Int(n) => Ok(Some(*n)),
            // MySQL returns SUM() and DECIMAL results as text.
            SqlValue::Text(s) => s
                .split('.')
                .next()
                .unwrap_or("")
                .parse()
                .map(Some)
                .map_err(|_| StoreError::Backend(format!("column {i}: {s:?} is not an integer"))),
            SqlValue::Blob(_) => Err(StoreError::Backend(format!("column {i} is a blob"))),
        }
    }

    pub fn boolean(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.int(i)? != 0)
    }

    pub fn blob(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.value(i)? {
            SqlValue::Null => Ok(Vec::new()),
            SqlValue::Blob(b) => Ok(b.clone()),
            SqlValue::Text(s) => Ok(s.as_bytes().to_vec()),
            SqlValue::Int(n) => Ok(n.to_string().into_bytes()),
        }
    }
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            SqlValue::Int(n) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(*n)),
            SqlValue::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            SqlValue::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// Where the database lives, parsed from `--database-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    SqliteFile(String),
    SqliteMemory,
    Mysql(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let url = url.trim();
        if url == "sqlite::memory:" || url == "sqlite://:memory:" {
            return Ok(Self::SqliteMemory);
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(StoreError::Config("sqlite URL has no path".into()));
            }
            return Ok(Self::SqliteFile(path.to_string()));
        }
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let normalized = url.replacen("mariadb://", "mysql://", 1);
            mysql_async::Opts::from_url(&normalized)
                .map_err(|e| StoreError::Config(format!("bad MySQL URL: {e}")))?;
            return Ok(Self::Mysql(normalized));
        }
        Err(StoreError::Config(
            "database URL must start with sqlite:// or mysql://".into(),
        ))
    }
}

/// SQLite: one writer connection (SQLite allows one writer at a time anyway) and a few readers.
pub struct SqliteDb {
    writer: Arc<Mutex<rusqlite::Connection>>,
    readers: std::sync::Mutex<Vec<rusqlite::Connection>>,
    path: Option<String>,
}

const SQLITE_READERS: usize = 4;

fn open_sqlite(path: Option<&str>) -> Result<rusqlite::Connection, StoreError> {
    let conn = match path {
        Some(p) => rusqlite::Connection::open(p),
        None => rusqlite::Connection::open_in_memory(),
    }
    .map_err(map_sqlite_error)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(map_sqlite_error)?;
    // WAL lets readers run beside the writer; FULL sync keeps every acknowledged write durable.
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        .map_err(map_sqlite_error)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

fn sqlite_rows(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[SqlValue],
) -> Result<Vec<Row>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_sqlite_error)?;
    let columns = stmt.column_count();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(map_sqlite_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(map_sqlite_error)? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(match row.get_ref(i).map_err(map_sqlite_error)? {
                ValueRef::Null => SqlValue::Null,
                ValueRef::Integer(n) => SqlValue::Int(n),
                ValueRef::Real(f) => SqlValue::Int(f as i64),
                ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
            });
        }
        out.push(Row(values));
    }
    Ok(out)
}

fn sqlite_exec(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[SqlValue],
) -> Result<u64, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_sqlite_error)?;
    let n = stmt
        .execute(rusqlite::params_from_iter(params.iter()))
        .map_err(map_sqlite_error)?;
    Ok(n as u64)
}

/// A transaction left open by a cancelled task is rolled back before the writer is reused.
fn reset_writer(conn: &rusqlite::Connection) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

pub fn map_sqlite_error(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(code, msg) = &e {
        let text = msg.clone().unwrap_or_else(|| code.to_string());
        match code.extended_code {
            // UNIQUE, PRIMARY KEY
            2067 | 1555 => return StoreError::Conflict(text),
            // FOREIGN KEY
            787 => {
                return StoreError::Conflict(format!("referenced row missing or in use: {text}"))
            }
            _ => {}
        }
        if code.code == rusqlite::ErrorCode::DatabaseBusy
            || code.code == rusqlite::ErrorCode::DatabaseLocked
        {
            return StoreError::Retryable(text);
        }
    }
    StoreError::Backend(e.to_string())
}

pub fn map_mysql_error(e: mysql_async::Error) -> StoreError {
    if let mysql_async::Error::Server(server) = &e {
        match server.code {
            1062 => return StoreError::Conflict(server.message.clone()),
            1451 | 1452 => {
                return StoreError::Conflict(format!(
                    "referenced row missing or in use: {}",
                    server.message
                ))
            }
            1213 | 1205 => return StoreError::Retryable(server.message.clone()),
            _ => {}
        }
    }
    StoreError::Backend(e.to_string())
}

fn mysql_params(params: Vec<SqlValue>) -> mysql_async::Params {
    if params.is_empty() {
        return mysql_async::Params::Empty;
    }
    mysql_async::Params::Positional(
        params
            .into_iter()
            .map(|p| match p {
                SqlValue::Null => mysql_async::Value::NULL,
                SqlValue::Int(n) => mysql_async::Value::Int(n),
                SqlValue::Text(s) => mysql_async::Value::Bytes(s.into_bytes()),
                SqlValue::Blob(b) => mysql_async::Value::Bytes(b),
            })
            .collect(),
    )
}

fn mysql_row(row: mysql_async::Row) -> Row {
    Row(row
        .unwrap()
        .into_iter()
        .map(|v| match v {
            mysql_async::Value::NULL => SqlValue::Null,
            mysql_async::Value::Int(n) => SqlValue::Int(n),
            mysql_async::Value::UInt(n) => SqlValue::Int(i64::try_from(n).unwrap_or(i64::MAX)),
            mysql_async::Value::Bytes(b) => match String::from_utf8(b) {
                Ok(s) => SqlValue::Text(s),
                Err(e) => SqlValue::Blob(e.into_bytes()),
            },
            mysql_async::Value::Float(f) => SqlValue::Int(f as i64),
            mysql_async::Value::Double(f) => SqlValue::Int(f as i64),
            other => SqlValue::Text(other.as_sql(true)),
        })
        .collect())
}

/// A database handle: cheap to clone.
#[derive(Clone)]
pub enum Db {
    Sqlite(Arc<SqliteDb>),
    Mysql(mysql_async::Pool),
}

impl Db {
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, StoreError> {
        match url {
            DatabaseUrl::SqliteMemory => {
                let conn = tokio::task::spawn_blocking(|| open_sqlite(None))
                    .await
                    .map_err(join_error)??;
                Ok(Self::Sqlite(Arc::new(SqliteDb {
                    writer: Arc::new(Mutex::new(conn)),
                    readers: std::sync::Mutex::new(Vec::new()),
                    path: None,
                })))
            }
            DatabaseUrl::SqliteFile(path) => {
                let path = path.clone();
                let p = path.clone();
                let conn = tokio::task::spawn_blocking(move || open_sqlite(Some(&p)))
                    .await
                    .map_err(join_error)??;
                Ok(Self::Sqlite(Arc::new(SqliteDb {
                    writer: Arc::new(Mutex::new(conn)),
                    readers: std::sync::Mutex::new(Vec::new()),
                    path: Some(path),
                })))
            }
            DatabaseUrl::Mysql(url) => {
                let opts =
                    mysql_async::OptsBuilder::from_opts(
                        mysql_async::Opts::from_url(url)
                            .map_err(|e| StoreError::Config(format!("bad MySQL URL: {e}")))?,
                    )
                    .pool_opts(mysql_async::PoolOpts::default().with_constraints(
                        mysql_async::PoolConstraints::new(1, 48).unwrap_or_default(),
                    ))
                    .stmt_cache_size(256);
                let pool = mysql_async::Pool::new(opts);
                // Fail fast with a clear error when the server is unreachable.
                let mut conn = pool.get_conn().await.map_err(map_mysql_error)?;
                conn.query_drop(
                    "SET SESSION sql_mode = CONCAT(@@sql_mode, ',STRICT_TRANS_TABLES')",
                )
                .await
                .map_err(map_mysql_error)?;
                drop(conn);
                Ok(Self::Mysql(pool))
            }
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite(_) => Dialect::Sqlite,
            Self::Mysql(_) => Dialect::Mysql,
        }
    }

    /// A read outside any transaction (SQLite: on a reader connection).
    pub async fn query(&self, sql: &str, params: Vec<SqlValue>) -> Result<Vec<Row>, StoreError> {
        match self {
            Self::Sqlite(db) => {
                if db.path.is_none() {
                    return self.with_writer(sql, params, sqlite_rows).await;
                }
                let db = db.clone();
                let sql = sql.to_string();
                tokio::task::spawn_blocking(move || {
                    let reader = db.readers.lock().ok().and_then(|mut r| r.pop());
                    let conn = match reader {
                        Some(c) => c,
                        None => open_sqlite(db.path.as_deref())?,
                    };
                    let result = sqlite_rows(&conn, &sql, &params);
                    if let Ok(mut readers) = db.readers.lock() {
                        if readers.len() < SQLITE_READERS {
                            readers.push(conn);
                        }
                    }
                    result
                })
                .await
                .map_err(join_error)?
            }
            Self::Mysql(pool) => {
                let mut conn = pool.get_conn().await.map_err(map_mysql_error)?;
                let rows: Vec<mysql_async::Row> = conn
                    .exec(sql, mysql_params(params))
                    .await
                    .map_err(map_mysql_error)?;
                Ok(rows.into_iter().map(mysql_row).collect())
            }
        }
    }

    /// One write statement in its own transaction; returns the affected row count.
    pub async fn exec(&self, sql: &str, params: Vec<SqlValue>) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(_) => self.with_writer(sql, params, sqlite_exec).await,
            Self::Mysql(pool) => {
                let mut conn = pool.get_conn().await.map_err(map_mysql_error)?;
                conn.exec_drop(sql, mysql_params(params))
                    .await
                    .map_err(map_mysql_error)?;
                Ok(conn.affected_rows())
            }
        }
    }

    async fn with_writer<T: Send + 'static>(
        &self,
        sql: &str,
        params: Vec<SqlValue>,
        f: fn(&rusqlite::Connection, &str, &[SqlValue]) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let Self::Sqlite(db) = self else {
            return Err(StoreError::Backend("not a SQLite database".into()));
        };
        let guard = db.writer.clone().lock_owned().await;
        let sql = sql.to_string();
        tokio::task::spawn_blocking(move || {
            reset_writer(&guard);
            f(&guard, &sql, &params)
        })
        .await
        .map_err(join_error)?
    }

    /// Runs a multi-statement script (migrations). SQLite: atomically. MySQL: statement by
    /// statement (DDL commits implicitly there), so scripts must be re-runnable.
    pub async fn exec_script(&self, script: &str) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(db) => {
                let guard = db.writer.clone().lock_owned().await;
                let script = script.to_string();
                tokio::task::spawn_blocking(move || {
                    reset_writer(&guard);
                    guard
                        .execute_batch(&format!("BEGIN IMMEDIATE;\n{script}\nCOMMIT;"))
                        .map_err(|e| {
                            reset_writer(&guard);
                            map_sqlite_error(e)
                        })
                })
                .await
                .map_err(join_error)?
            }
            Self::Mysql(pool) => {
                let mut conn = pool.get_conn().await.map_err(map_mysql_error)?;
                for statement in split_statements(script) {
                    conn.query_drop(statement).await.map_err(map_mysql_error)?;
                }
                Ok(())
            }
        }
    }

    /// Opens a write transaction. SQLite takes the database write lock at once (`BEGIN
    /// IMMEDIATE`), which serialises all writers; MySQL callers lock rows they depend on.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        match self {
            Self::Sqlite(db) => {
                let guard = db.writer.clone().lock_owned().await;
                let guard = tokio::task::spawn_blocking(move || {
                    reset_writer(&guard);
                    guard
                        .execute_batch("BEGIN IMMEDIATE")
                        .map(|_| guard)
                        .map_err(map_sqlite_error)
                })
                .await
                .map_err(join_error)??;
                Ok(Tx::Sqlite(Some(guard)))
            }
            Self::Mysql(pool) => {
                let mut opts = mysql_async::TxOpts::default();
                opts.with_isolation_level(mysql_async::IsolationLevel::ReadCommitted);
                let tx = pool
                    .start_transaction(opts)
                    .await
                    .map_err(map_mysql_error)?;
                Ok(Tx::Mysql(tx))
            }
        }
    }

    /// Runs `f` on a dedicated MySQL connection (advisory locks need one connection).
    pub fn mysql_pool(&self) -> Option<&mysql_async::Pool> {
        match self {
            Self::Mysql(pool) => Some(pool),
            Self::Sqlite(_) => None,
        }
    }

    pub async fn close(self) {
        if let Self::Mysql(pool) = self {
            let _ = pool.disconnect().await;
        }
    }
}

/// Splits a migration script on `;` at line ends, dropping comments and blank statements.
pub fn split_statements(script: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let stmt = current.trim().trim_end_matches(';').trim().to_string();
            if !stmt.is_empty() {
                statements.push(stmt);
            }
            current.clear();
        }
    }
    let rest = current.trim();
    if !rest.is_empty() {
        statements.push(rest.to_string());
    }
    statements
}

fn join_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::Backend(format!("database task failed: {e}"))
}

/// An open write transaction. Dropping it without `commit` rolls back.
pub enum Tx {
    Sqlite(Option<OwnedMutexGuard<rusqlite::Connection>>),
    Mysql(mysql_async::Transaction<'static>),
}

impl Tx {
    pub fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite(_) => Dialect::Sqlite,
            Self::Mysql(_) => Dialect::Mysql,
        }
    }

    async fn on_sqlite<T: Send + 'static>(
        slot: &mut Option<OwnedMutexGuard<rusqlite::Connection>>,
        sql: &str,
        params: Vec<SqlValue>,
        f: fn(&rusqlite::Connection, &str, &[SqlValue]) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = slot
            .take()
            .ok_or_else(|| StoreError::Backend("transaction already finished".into()))?;
        let sql = sql.to_string();
        let (guard, result) = tokio::task::spawn_blocking(move || {
            let result = f(&guard, &sql, &params);
            (guard, result)
        })
        .await
        .map_err(join_error)?;
        *slot = Some(guard);
        result
    }

    pub async fn query(
        &mut self,
        sql: &str,
        params: Vec<SqlValue>,
    ) -> Result<Vec<Row>, StoreError> {
        match self {
            Self::Sqlite(slot) => Self::on_sqlite(slot, sql, params, sqlite_rows).await,
            Self::Mysql(tx) => {
                let rows: Vec<mysql_async::Row> = tx
                    .exec(sql, mysql_params(params))
                    .await
                    .map_err(map_mysql_error)?;
                Ok(rows.into_iter().map(mysql_row).collect())
            }
        }
    }

    pub async fn exec(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(slot) => Self::on_sqlite(slot, sql, params, sqlite_exec).await,
            Self::Mysql(tx) => {
                tx.exec_drop(sql, mysql_params(params))
                    .await
                    .map_err(map_mysql_error)?;
                Ok(tx.affected_rows())
            }
        }
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(mut slot) => {
                Self::on_sqlite(&mut slot, "", Vec::new(), |conn, _, _| {
                    conn.execute_batch("COMMIT").map_err(|e| {
                        reset_writer(conn);
                        map_sqlite_error(e)
                    })
                })
                .await
            }
            Self::Mysql(tx) => tx.commit().await.map_err(map_mysql_error),
        }
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(mut slot) => {
                Self::on_sqlite(&mut slot, "", Vec::new(), |conn, _, _| {
                    reset_writer(conn);
                    Ok(())
                })
                .await
            }
            Self::Mysql(tx) => tx.rollback().await.map_err(map_mysql_error),
        }
    }
}

/// Query access shared by [`Db`] (autocommit) and [`Tx`], so read helpers work in both.
pub trait Queryable: Send {
    fn dialect(&self) -> Dialect;
    fn query(
        &mut self,
        sql: &str,
        params: Vec<SqlValue>,
    ) -> impl std::future::Future<Output = Result<Vec<Row>, StoreError>> + Send;
    fn exec(
        &mut self,
        sql: &str,
        params: Vec<SqlValue>,
    ) -> impl std::future::Future<Output = Result<u64, StoreError>> + Send;
}

impl Queryable for Db {
    fn dialect(&self) -> Dialect {
        Db::dialect(self)
    }
    async fn query(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<Vec<Row>, StoreError> {
        Db::query(self, sql, params).await
    }
    async fn exec(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<u64, StoreError> {
        Db::exec(self, sql, params).await
    }
}

impl Queryable for Tx {
    fn dialect(&self) -> Dialect {
        Tx::dialect(self)
    }
    async fn query(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<Vec<Row>, StoreError> {
        Tx::query(self, sql, params).await
    }
    async fn exec(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<u64, StoreError> {
        Tx::exec(self, sql, params).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_parse() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://rollbridge.db").unwrap(),
            DatabaseUrl::SqliteFile("rollbridge.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///data/r.db").unwrap(),
            DatabaseUrl::SqliteFile("/data/r.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite::memory:").unwrap(),
            DatabaseUrl::SqliteMemory
        );
        assert!(matches!(
            DatabaseUrl::parse("mysql://u:p@127.0.0.1:3306/db").unwrap(),
            DatabaseUrl::Mysql(_)
        ));
        assert!(DatabaseUrl::parse("postgres://x").is_err());
    }

    #[test]
    fn scripts_split_on_statement_ends() {
        let s = split_statements("-- c\nCREATE TABLE a (x INT);\n\nCREATE TABLE b (\n y INT\n);\n");
        assert_eq!(
            s,
            vec![
                "CREATE TABLE a (x INT)".to_string(),
                "CREATE TABLE b (\n y INT\n)".to_string()
            ]
        );
    }
}
