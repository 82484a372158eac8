//! The two database backends behind one small query interface. Store code is written once
//! against [`Db`] and [`Tx`] with `?` placeholders (both dialects accept them); the few places
//! where SQL differs ask [`Dialect`]. SQLite work runs on blocking threads so it never stalls
//! the async workers; MySQL goes through mysql_async's pool.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable as _;
use rusqlite::types::{ToSqlOutput, ValueRef};
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

use super::cache::{writes_to, ConfigCache, WriteTargets, BUMP_DB_GENERATION};
use super::instance_cache::{InstanceCache, InstanceKeyOwned};
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

/// Held by a server for the life of the process on a SQLite database: one server process per
/// database file. Its caches (configuration, instance rows) and group commit rely on every write
/// passing its own writer; several replicas need MySQL/MariaDB. CLI commands (users, tokens,
/// bindings, migrations) do not take it.
#[derive(Debug)]
pub struct ServerLock {
    _file: std::fs::File,
}

impl ServerLock {
    /// Takes the lock next to a SQLite file database (`<path>-server.lock`); None for MySQL and
    /// in-memory databases. Waits up to `wait` for a server that is still shutting down.
    pub fn acquire(url: &DatabaseUrl, wait: Duration) -> Result<Option<Self>, StoreError> {
        let DatabaseUrl::SqliteFile(path) = url else {
            return Ok(None);
        };
        let lock_path = format!("{path}-server.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::Config(format!("opening {lock_path}: {e}")))?;
        let deadline = std::time::Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(Self { _file: file })),
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StoreError::Config(format!(
                        "another rollbridge server is using the SQLite database {path} \
                         (lock {lock_path}); a SQLite database serves from one process, \
                         use MySQL/MariaDB for several replicas"
                    )))
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(StoreError::Config(format!("locking {lock_path}: {e}")))
                }
            }
        }
    }
}

/// SQLite: one writer connection (SQLite allows one writer at a time anyway) and a few readers.
///
/// Group commit, in two layers:
/// - Transactions are `SAVEPOINT`s inside an outer `BEGIN IMMEDIATE` transaction (the batch).
///   `commit()` releases the savepoint; when no other caller is queued for the writer it runs the
///   real `COMMIT`, otherwise the next holder carries the batch on and the last one commits. The
///   batch's pages go to the WAL once, not once per request.
/// - The writer runs with `synchronous=NORMAL`, so `COMMIT` itself does not fsync; the WAL file
///   is then `fdatasync`ed outside the writer lock (the extra sync `synchronous=FULL` does after
///   every commit, see [`WalSync`]), one sync covering every batch committed before it started,
///   while the next batch already executes. Every caller's `commit()` resolves only after the
///   sync covering its batch succeeded, so nothing is acknowledged before it is durable.
///   Checkpoints (which sync the WAL before and the database after copying) run on a background
///   thread instead of inside a request's commit.
///
/// Statements run inline on the async worker that holds the writer: they take microseconds, and
/// a thread hop per statement costs more than the statement while holding the one writer. Only
/// `BEGIN IMMEDIATE` when another process holds the lock, and the fsync, go to blocking threads.
pub struct SqliteDb {
    writer: Arc<Mutex<Writer>>,
    /// Callers waiting for the writer; a committing caller leaves the real COMMIT to them.
    queued: AtomicUsize,
    readers: std::sync::Mutex<Vec<rusqlite::Connection>>,
    /// Readers for [`Snapshot`]s, used inline on the async workers (busy timeout zero: a busy
    /// database makes the snapshot fail fast and the caller take the transactional path).
    snapshot_readers: std::sync::Mutex<Vec<rusqlite::Connection>>,
    path: Option<String>,
    wal: Arc<WalSync>,
    /// The instance-row cache (file databases; see `store::instance_cache`).
    instances: Option<Arc<InstanceCache>>,
}

/// The writer connection and the state of the current batch.
pub struct Writer {
    conn: rusqlite::Connection,
    /// An outer transaction is open (it holds released savepoints not yet committed, or none).
    batch_open: bool,
    /// The batch contains writes (its callers must wait for COMMIT and the WAL sync).
    batch_wrote: bool,
    /// The batch wrote configuration: the cache is invalidated once more when it commits, so
    /// that entries loaded meanwhile from readers (which saw the old rows) are dropped.
    batch_config: bool,
    /// Transactions in the current batch (bounds how long a batch stays open).
    batch_len: usize,
    /// Callers whose transactions are in the batch, waiting for the real COMMIT and the sync.
    waiters: Vec<oneshot::Sender<Result<(), StoreError>>>,
    /// Instance rows the batch wrote, and writes in it that may touch any instance's rows
    /// (see `store::instance_cache`): settled when the batch is durable or failed.
    batch_instance_keys: Vec<InstanceKeyOwned>,
    batch_instances_all: usize,
    config: Arc<ConfigCache>,
    instances: Option<Arc<InstanceCache>>,
}

/// The end of a batch: its callers and the instance rows it wrote, answered together once the
/// instance cache knows those rows are final (durable, or rolled back).
struct BatchEnd {
    waiters: Vec<oneshot::Sender<Result<(), StoreError>>>,
    instance_keys: Vec<InstanceKeyOwned>,
    instances_all: usize,
    instances: Option<Arc<InstanceCache>>,
}

impl BatchEnd {
    fn finish(self, result: &Result<(), StoreError>) {
        if let Some(cache) = &self.instances {
            cache.settle(&self.instance_keys, self.instances_all);
        }
        for waiter in self.waiters {
            let _ = waiter.send(result.clone());
        }
    }
}

/// Transactions per batch before it is committed anyway (bounds the latency of the first, and
/// how long other processes wait for the write lock under sustained load).
const MAX_BATCH: usize = 256;

/// How often the background checkpointer copies new WAL frames into the database. Short, so
/// that a WAL restart (which copies what is left under the writer lock) has little left to copy.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);
/// WAL frames (pages) from which the writer restarts the WAL: 128 MiB of 4 KiB pages.
const WAL_RESTART_FRAMES: i64 = 32_768;
/// The WAL file is truncated to this size when it restarts: twice the restart size, so that in
/// steady state it is never truncated and the restarted WAL overwrites blocks the file already
/// has. Truncating gave 64 MiB back at every restart, which stalled the writer (and with it the
/// async worker it runs on) for ~27 ms per restart: freeing the blocks is synchronous in the
/// filesystem (and a discard on SSDs), and the next writes allocate them again.
const WAL_SIZE_LIMIT_BYTES: i64 = 2 * WAL_RESTART_FRAMES * 4096;
/// How long a WAL restart waits for readers still reading frames of the old WAL (their reads
/// take microseconds; SQLite's busy handler retries after 1 ms, then 2, 5, ...).
const WAL_RESTART_WAIT: Duration = Duration::from_millis(20);

/// Restarts the WAL from the writer connection between batches (blocking: run it off the async
/// workers). Why: the background checkpoints are PASSIVE, and a WAL is only reused from its start
/// when a writer begins while every frame is checkpointed; under sustained writes that moment
/// never comes, the WAL grows without bound (GiBs in the benchmark) and every page a reader
/// looks up searches a longer WAL index. `RESTART` copies the few frames the checkpointer has not
/// and waits (briefly) for readers to leave the old frames, so the next batch writes from the
/// start; the writer lock is ours meanwhile, and callers queue as for any batch. The caller holds
/// [`WalSync::checkpointing`], so the restart never waits in SQLite's busy handler for a
/// background checkpoint (its sleeps grow to tens of milliseconds).
fn restart_wal(conn: &rusqlite::Connection) {
    let started = std::time::Instant::now();
    let restarted = conn.busy_timeout(WAL_RESTART_WAIT).and_then(|()| {
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| {
            row.get::<_, i64>(0)
        })
    });
    let _ = conn.busy_timeout(Duration::ZERO);
    match restarted {
        Ok(0) => tracing::debug!(elapsed = ?started.elapsed(), "SQLite WAL restarted"),
        // Readers were still on the old frames: the checkpointer asks again later.
        Ok(_) => {
            tracing::debug!(elapsed = ?started.elapsed(), "SQLite WAL restart postponed: readers busy")
        }
        Err(e) => tracing::warn!(error = %e, "SQLite WAL restart failed"),
    }
}

const SQLITE_READERS: usize = 4;
/// Snapshot readers kept open (one per async worker that may hold one at a time is plenty).
const SQLITE_SNAPSHOT_READERS: usize = 16;

/// Makes committed WAL frames durable: `fdatasync` of the `-wal` file, coalesced (a caller whose
/// commit is already covered by a finished sync does not sync again; one sync at a time).
pub struct WalSync {
    wal_path: Option<std::path::PathBuf>,
    /// Batches committed so far (sequence number of the latest).
    committed: AtomicU64,
    /// Every batch up to this sequence number is durable.
    synced: AtomicU64,
    syncing: Mutex<()>,
    in_flight: AtomicBool,
    file: std::sync::Mutex<Option<Arc<std::fs::File>>>,
    /// Set by the checkpointer when the WAL holds [`WAL_RESTART_FRAMES`] or more: the writer
    /// restarts it before its next batch (see [`restart_wal`]).
    restart_wanted: AtomicBool,
    /// Held by whoever checkpoints (background checkpointer or the writer's restart), so that
    /// they never wait for each other inside SQLite.
    checkpointing: std::sync::Mutex<()>,
}

impl WalSync {
    fn new(db_path: Option<&str>) -> Self {
        Self {
            wal_path: db_path.map(|p| std::path::PathBuf::from(format!("{p}-wal"))),
            committed: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            syncing: Mutex::new(()),
            in_flight: AtomicBool::new(false),
            file: std::sync::Mutex::new(None),
            restart_wanted: AtomicBool::new(false),
            checkpointing: std::sync::Mutex::new(()),
        }
    }

    /// Called right after a COMMIT, under the writer lock: the batch's sequence number.
    fn committed(&self) -> u64 {
        self.committed.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// `fdatasync` of the WAL through a file handle kept open between syncs.
    fn sync_file(&self) -> Result<(), StoreError> {
        let Some(path) = &self.wal_path else {
            return Ok(());
        };
        let error = |e: std::io::Error| StoreError::Backend(format!("syncing the SQLite WAL: {e}"));
        let file = {
            let mut slot = self
                .file
                .lock()
                .map_err(|_| StoreError::Backend("WAL sync state poisoned".into()))?;
            match slot.as_ref() {
                Some(file) => file.clone(),
                None => {
                    let file = Arc::new(std::fs::File::open(path).map_err(error)?);
                    *slot = Some(file.clone());
                    file
                }
            }
        };
        let result = file.sync_data().map_err(error);
        if result.is_err() {
            // Reopen next time (the file may have been replaced).
            if let Ok(mut slot) = self.file.lock() {
                *slot = None;
            }
        }
        result
    }

    /// A sync is running: a batch committed now could not be acknowledged before the next one.
    fn in_flight(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Blocking variant of [`WalSync::sync_to`] for callers outside the runtime.
    fn sync_blocking(&self, seq: u64) -> Result<(), StoreError> {
        let covered = self.committed.load(Ordering::SeqCst);
        self.sync_file()?;
        self.synced.fetch_max(covered.max(seq), Ordering::SeqCst);
        Ok(())
    }

    /// Returns once batch `seq` is durable.
    async fn sync_to(self: &Arc<Self>, seq: u64) -> Result<(), StoreError> {
        if self.wal_path.is_none() {
            return Ok(()); // in-memory database: nothing to sync
        }
        loop {
            if self.synced.load(Ordering::SeqCst) >= seq {
                return Ok(());
            }
            let _one_at_a_time = self.syncing.lock().await;
            if self.synced.load(Ordering::SeqCst) >= seq {
                return Ok(());
            }
            // Everything committed before the sync starts is in the file and gets covered.
            let covered = self.committed.load(Ordering::SeqCst);
            self.in_flight.store(true, Ordering::SeqCst);
            let this = self.clone();
            let result = tokio::task::spawn_blocking(move || this.sync_file())
                .await
                .map_err(join_error);
            self.in_flight.store(false, Ordering::SeqCst);
            result??;
            self.synced.fetch_max(covered, Ordering::SeqCst);
        }
    }
}

/// Checkpoints the WAL into the database from its own connection, off the request path. PASSIVE
/// checkpoints never block the writer; with `synchronous=FULL` on this connection they sync the
/// WAL before and the database after copying, so the WAL can then be reused safely.
fn spawn_checkpointer(db: &Arc<SqliteDb>) {
    let Some(path) = db.path.clone() else {
        return;
    };
    let weak = Arc::downgrade(db);
    let wal = db.wal.clone();
    let spawned = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let Ok(conn) = open_sqlite(Some(&path)) else {
                return;
            };
            let mut last = 0;
            loop {
                std::thread::sleep(CHECKPOINT_INTERVAL);
                // Stops when the database handle is gone.
                if weak.strong_count() == 0 {
                    return;
                }
                let committed = wal.committed.load(Ordering::SeqCst);
                if committed == last {
                    continue;
                }
                last = committed;
                let checkpointed = {
                    let _checkpointing = wal.checkpointing.lock();
                    // (busy, frames in the WAL, frames checkpointed)
                    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                        row.get::<_, i64>(1)
                    })
                };
                match checkpointed {
                    Ok(frames) if frames >= WAL_RESTART_FRAMES => {
                        wal.restart_wanted.store(true, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "SQLite checkpoint failed"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the SQLite checkpoint thread");
    }
}

impl Writer {
    /// Ends the batch: COMMIT (or nothing when none is open). Returns the batch's sequence
    /// number when it wrote something (the WAL must be synced for it) and what to answer.
    fn commit_batch(&mut self, wal: &WalSync) -> (Result<Option<u64>, StoreError>, BatchEnd) {
        let result = if !self.batch_open {
            Ok(None)
        } else if self.conn.is_autocommit() {
            Err(StoreError::Backend("transaction batch lost".into()))
        } else {
            self.conn
                .execute_batch("COMMIT")
                .map(|_| self.batch_wrote.then(|| wal.committed()))
                .map_err(map_sqlite_error)
        };
        if result.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        if std::mem::take(&mut self.batch_config) {
            self.config.bump();
        }
        self.batch_open = false;
        self.batch_wrote = false;
        self.batch_len = 0;
        (result, self.take_end())
    }

    fn take_end(&mut self) -> BatchEnd {
        BatchEnd {
            waiters: std::mem::take(&mut self.waiters),
            instance_keys: std::mem::take(&mut self.batch_instance_keys),
            instances_all: std::mem::take(&mut self.batch_instances_all),
            instances: self.instances.clone(),
        }
    }

    /// The outer transaction ended on its own (SQLite rolls back on I/O errors, disk full):
    /// every batched caller's work is gone and each must hear so.
    fn abort_batch(&mut self, error: &StoreError) {
        if std::mem::take(&mut self.batch_config) {
            self.config.bump();
        }
        self.batch_open = false;
        self.batch_wrote = false;
        self.batch_len = 0;
        self.take_end().finish(&Err(error.clone()));
    }
}

/// Commits the batch (inline: without fsync it takes microseconds), releases the writer, and has
/// a task make the batch durable and answer its callers (a task, so that a cancelled caller
/// cannot leave the others unanswered).
fn flush_writer(db: &Arc<SqliteDb>, mut guard: OwnedMutexGuard<Writer>) {
    let (result, end) = guard.commit_batch(&db.wal);
    drop(guard);
    match result {
        Ok(Some(seq)) => {
            let Ok(handle) = tokio::runtime::Handle::try_current() else {
                // No runtime (shutting down): sync right here.
                end.finish(&db.wal.sync_blocking(seq));
                return;
            };
            let db = db.clone();
            handle.spawn(async move {
                end.finish(&db.wal.sync_to(seq).await);
                // Batches held back while this sync ran (see `release_writer`) go now.
                let ticket = QueueTicket::new(&db);
                let guard = db.writer.clone().lock_owned().await;
                ticket.acquired();
                release_writer(&db, guard);
            });
        }
        Ok(None) => end.finish(&Ok(())),
        Err(e) => end.finish(&Err(e)),
    }
}

/// Releases the writer: commits the batch when nobody is queued to carry it on (or it is full).
///
/// While a WAL sync is running, a batch with writes stays open too: its callers could not be
/// answered before the next sync anyway, and a bigger batch writes each page once. The task that
/// ran the sync commits it afterwards.
fn release_writer(db: &Arc<SqliteDb>, guard: OwnedMutexGuard<Writer>) {
    if !guard.batch_open {
        return;
    }
    let full = guard.batch_len >= MAX_BATCH;
    if !full && db.queued.load(Ordering::SeqCst) > 0 {
        return;
    }
    if !full && guard.batch_wrote && db.wal.in_flight() {
        return;
    }
    flush_writer(db, guard);
}

/// Counts a caller as queued for the writer while it waits; if it gives up (its future is
/// dropped), whatever batch it was expected to carry on is committed by a task instead.
struct QueueTicket {
    db: Arc<SqliteDb>,
    waiting: bool,
}

impl QueueTicket {
    fn new(db: &Arc<SqliteDb>) -> Self {
        db.queued.fetch_add(1, Ordering::SeqCst);
        Self {
            db: db.clone(),
            waiting: true,
        }
    }

    fn acquired(mut self) {
        self.waiting = false;
        self.db.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for QueueTicket {
    fn drop(&mut self) {
        if !self.waiting {
            return;
        }
        self.db.queued.fetch_sub(1, Ordering::SeqCst);
        let db = self.db.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let ticket = QueueTicket::new(&db);
                let guard = db.writer.clone().lock_owned().await;
                ticket.acquired();
                release_writer(&db, guard);
            });
        }
    }
}

impl SqliteDb {
    fn new(conn: rusqlite::Connection, path: Option<String>, cache: Arc<ConfigCache>) -> Arc<Self> {
        // In-memory databases have no snapshot readers, so nothing would ever fill it.
        let instances = path.as_ref().map(|_| Arc::new(InstanceCache::default()));
        let db = Arc::new(Self {
            writer: Arc::new(Mutex::new(Writer {
                conn,
                batch_open: false,
                batch_wrote: false,
                batch_config: false,
                batch_len: 0,
                waiters: Vec::new(),
                batch_instance_keys: Vec::new(),
                batch_instances_all: 0,
                config: cache,
                instances: instances.clone(),
            })),
            queued: AtomicUsize::new(0),
            readers: std::sync::Mutex::new(Vec::new()),
            snapshot_readers: std::sync::Mutex::new(Vec::new()),
            wal: Arc::new(WalSync::new(path.as_deref())),
            path,
            instances,
        });
        spawn_checkpointer(&db);
        db
    }

    async fn lock_writer(self: &Arc<Self>) -> OwnedMutexGuard<Writer> {
        let ticket = QueueTicket::new(self);
        let guard = self.writer.clone().lock_owned().await;
        ticket.acquired();
        guard
    }

    /// The writer with a batch open (starting one takes the database write lock).
    async fn begin_batch(self: &Arc<Self>) -> Result<OwnedMutexGuard<Writer>, StoreError> {
        let mut guard = self.lock_writer().await;
        if guard.batch_open && !guard.conn.is_autocommit() {
            guard.batch_len += 1;
            return Ok(guard);
        }
        if !guard.conn.is_autocommit() {
            let _ = guard.conn.execute_batch("ROLLBACK");
        }
        // Only when no background checkpoint runs (else at a later batch).
        if self.wal.restart_wanted.load(Ordering::SeqCst)
            && self.wal.checkpointing.try_lock().is_ok()
        {
            self.wal.restart_wanted.store(false, Ordering::SeqCst);
            let wal = self.wal.clone();
            guard = tokio::task::spawn_blocking(move || {
                let _checkpointing = wal.checkpointing.lock();
                restart_wal(&guard.conn);
                guard
            })
            .await
            .map_err(join_error)?;
        }
        // The writer's busy timeout is zero: only another process can hold the lock, and then
        // the wait happens on a blocking thread.
        match guard.conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {}
            Err(rusqlite::Error::SqliteFailure(code, _))
                if code.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                guard = tokio::task::spawn_blocking(move || {
                    let waited = guard
                        .conn
                        .busy_timeout(Duration::from_secs(10))
                        .and_then(|_| guard.conn.execute_batch("BEGIN IMMEDIATE"));
                    let _ = guard.conn.busy_timeout(Duration::ZERO);
                    waited.map(|_| guard).map_err(map_sqlite_error)
                })
                .await
                .map_err(join_error)??;
            }
            Err(e) => return Err(map_sqlite_error(e)),
        }
        guard.batch_open = true;
        guard.batch_wrote = false;
        guard.batch_len = 1;
        Ok(guard)
    }

    /// The writer with no batch open (for scripts that manage their own transaction).
    async fn idle_writer(self: &Arc<Self>) -> Result<OwnedMutexGuard<Writer>, StoreError> {
        let mut guard = self.lock_writer().await;
        if guard.batch_open {
            let (result, end) = guard.commit_batch(&self.wal);
            let result = match result {
                Ok(Some(seq)) => self.wal.sync_to(seq).await,
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            end.finish(&result);
        }
        Ok(guard)
    }
}

/// MySQL connections kept open when idle.
const MYSQL_POOL_MIN: usize = 2;
/// MySQL connections at most, per server process. More than the database's cores can run at
/// once only adds context switches in the database; a request waiting for a connection waits in
/// the pool's queue instead.
const MYSQL_POOL_MAX: usize = 16;

/// True when the URL's query string sets `pool_min` or `pool_max`.
fn url_sets_pool_size(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| {
            let key = pair.split_once('=').map_or(pair, |(key, _)| key);
            key == "pool_min" || key == "pool_max"
        })
    })
}

/// The writer connection: no busy wait on the async worker, WAL synced by [`WalSync`], no
/// checkpoints inside request commits.
fn open_sqlite_writer(path: Option<&str>) -> Result<rusqlite::Connection, StoreError> {
    let conn = open_sqlite(path)?;
    // temp_store=MEMORY keeps the savepoint sub-journal in memory: every transaction of a batch
    // is a savepoint, and on disk the sub-journal (which grows until the batch commits) cost a
    // pwrite of every page each transaction touched.
    conn.execute_batch(
        "PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; PRAGMA temp_store=MEMORY;",
    )
    .map_err(map_sqlite_error)?;
    // A restarted WAL gives its disk space back down to this size.
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)
        .map_err(map_sqlite_error)?;
    conn.busy_timeout(Duration::ZERO)
        .map_err(map_sqlite_error)?;
    Ok(conn)
}

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

/// A parameterless statement through the prepared-statement cache (savepoints run per request).
fn run_cached(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
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
        match code.code {
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                return StoreError::Retryable(text)
            }
            // The file or its disk failed us (gone, unreadable, full, remounted read-only):
            // the environment, not the statement.
            rusqlite::ErrorCode::CannotOpen
            | rusqlite::ErrorCode::SystemIoFailure
            | rusqlite::ErrorCode::DiskFull
            | rusqlite::ErrorCode::ReadOnly => return StoreError::Unavailable(text),
            _ => {}
        }
    }
    StoreError::Backend(e.to_string())
}

/// Server error codes that mean "the database will not serve us now", not "this statement is
/// wrong": too many connections (1040), access denied (1044, 1045: a changed password or
/// revoked grant), shutting down (1053), host blocked or not allowed (1129, 1130), user
/// connection limits (1203, 1226), connection killed (1927, MariaDB), offline mode (3032),
/// disconnected for inactivity (4031, MySQL 8).
const MYSQL_UNAVAILABLE: &[u16] = &[
    1040, 1044, 1045, 1053, 1129, 1130, 1203, 1226, 1927, 3032, 4031,
];

/// Longest wait for a MySQL connection (a pooled one, or a new one with its handshake).
/// mysql_async has no connect timeout of its own: a host that drops packets would hold the
/// caller for the kernel's TCP timeout (minutes), and one that accepts but never answers,
/// forever. Past this the database counts as unavailable (503 with Retry-After).
pub const MYSQL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection from `pool`, within [`MYSQL_CONNECT_TIMEOUT`].
pub async fn mysql_conn(pool: &mysql_async::Pool) -> Result<mysql_async::Conn, StoreError> {
    within_connect_timeout(pool.get_conn()).await
}

async fn within_connect_timeout(
    connecting: impl std::future::Future<Output = Result<mysql_async::Conn, mysql_async::Error>>,
) -> Result<mysql_async::Conn, StoreError> {
    match tokio::time::timeout(MYSQL_CONNECT_TIMEOUT, connecting).await {
        Ok(conn) => conn.map_err(map_mysql_error),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no MySQL connection within {} s",
            MYSQL_CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

pub fn map_mysql_error(e: mysql_async::Error) -> StoreError {
    use mysql_async::{DriverError, Error};
    match &e {
        Error::Server(server) => match server.code {
            1062 => return StoreError::Conflict(server.message.clone()),
            1451 | 1452 => {
                return StoreError::Conflict(format!(
                    "referenced row missing or in use: {}",
                    server.message
                ))
            }
            1213 | 1205 => return StoreError::Retryable(server.message.clone()),
            // Data too long, out of range, incorrect string value: the value, not the database,
            // is the problem, and it stays one on every retry. Validation keeps values inside
            // their columns; this is the safety net that keeps a miss from looking like an outage.
            1406 | 1264 | 1366 => {
                return StoreError::Invalid(crate::domain::ValidationError::new(
                    mysql_column(&server.message).unwrap_or("value"),
                    format!("refused by the database: {}", server.message),
                ))
            }
            code if MYSQL_UNAVAILABLE.contains(&code) => {
                return StoreError::Unavailable(server.to_string())
            }
            _ => {}
        },
        // No connection could be made, or it broke (refused, reset, closed by the server).
        Error::Io(_)
        | Error::Driver(DriverError::ConnectionClosed | DriverError::PoolDisconnected) => {
            return StoreError::Unavailable(e.to_string())
        }
        _ => {}
    }
    StoreError::Backend(e.to_string())
}

/// The column a MySQL data error names (`... for column 'delivery_key' at row 1`).
fn mysql_column(message: &str) -> Option<&str> {
    let start = message.find("column '")? + "column '".len();
    let len = message[start..].find('\'')?;
    Some(&message[start..start + len])
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

/// A database handle: cheap to clone. Both variants carry the configuration cache, so that
/// write statements anywhere invalidate it (see `store::cache`).
#[derive(Clone)]
pub enum Db {
    Sqlite(Arc<SqliteDb>, Arc<ConfigCache>),
    /// The pool, the cache and the options (for connections outside the pool).
    Mysql(mysql_async::Pool, Arc<ConfigCache>, mysql_async::Opts),
}

impl Db {
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let cache = Arc::new(match url {
            DatabaseUrl::Mysql(_) => ConfigCache::default(),
            _ => ConfigCache::for_own_database(),
        });
        match url {
            DatabaseUrl::SqliteMemory => {
                let conn = tokio::task::spawn_blocking(|| open_sqlite_writer(None))
                    .await
                    .map_err(join_error)??;
                Ok(Self::Sqlite(
                    SqliteDb::new(conn, None, cache.clone()),
                    cache,
                ))
            }
            DatabaseUrl::SqliteFile(path) => {
                let p = path.clone();
                let conn = tokio::task::spawn_blocking(move || open_sqlite_writer(Some(&p)))
                    .await
                    .map_err(join_error)??;
                Ok(Self::Sqlite(
                    SqliteDb::new(conn, Some(path.clone()), cache.clone()),
                    cache,
                ))
            }
            DatabaseUrl::Mysql(url) => {
                let url_opts = mysql_async::Opts::from_url(url)
                    .map_err(|e| StoreError::Config(format!("bad MySQL URL: {e}")))?;
                // `?pool_min=&pool_max=` in the URL win over the default size.
                let constraints = if url_sets_pool_size(url) {
                    url_opts.pool_opts().constraints()
                } else {
                    mysql_async::PoolConstraints::new(MYSQL_POOL_MIN, MYSQL_POOL_MAX)
                        .unwrap_or_default()
                };
                let opts = mysql_async::OptsBuilder::from_opts(url_opts)
                    // No COM_RESET_CONNECTION when a connection goes back to the pool: it
                    // costs a round trip per query and drops the server-side prepared
                    // statements, which made the statement cache useless. Transactions are
                    // ended by mysql_async itself; the store keeps no other session state.
                    // Idle connections are kept (up to the maximum) for a minute: with a zero idle
                    // TTL mysql_async keeps only `min` idle connections and closes every other one
                    // it gets back, so under concurrency nearly every query paid a new connection
                    // (TCP + handshake + socket reconnect + init statements).
                    .pool_opts(
                        mysql_async::PoolOpts::default()
                            .with_constraints(constraints)
                            .with_inactive_connection_ttl(Duration::from_secs(60))
                            .with_reset_connection(false),
                    )
                    .stmt_cache_size(256)
                    // READ COMMITTED for the whole session, so starting a transaction is one
                    // round trip instead of two (`SET TRANSACTION ...` + `START TRANSACTION`).
                    // Strict mode on every connection: a value that does not fit is an error, not
                    // a silently truncated row.
                    .init(vec![
                        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                        "SET SESSION sql_mode = CONCAT(@@sql_mode, ',STRICT_TRANS_TABLES')",
                    ]);
                let opts = mysql_async::Opts::from(opts);
                let pool = mysql_async::Pool::new(opts.clone());
                // Fail fast with a clear error when the server is unreachable.
                drop(mysql_conn(&pool).await?);
                Ok(Self::Mysql(pool, cache, opts))
            }
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite(..) => Dialect::Sqlite,
            Self::Mysql(..) => Dialect::Mysql,
        }
    }

    /// The instance-row cache: SQLite file databases only (see `store::instance_cache`).
    pub fn instance_cache(&self) -> Option<&Arc<InstanceCache>> {
        match self {
            Self::Sqlite(db, _) => db.instances.as_ref(),
            Self::Mysql(..) => None,
        }
    }

    /// The configuration cache shared by every clone of this handle.
    pub fn cache(&self) -> &Arc<ConfigCache> {
        match self {
            Self::Sqlite(_, cache) | Self::Mysql(_, cache, _) => cache,
        }
    }

    /// A read outside any transaction (SQLite: on a reader connection).
    pub async fn query(&self, sql: &str, params: Vec<SqlValue>) -> Result<Vec<Row>, StoreError> {
        match self {
            Self::Sqlite(db, _) => {
                if db.path.is_none() {
                    // In-memory databases have no separate readers.
                    let mut tx = self.begin().await?;
                    let rows = tx.query(sql, params).await?;
                    tx.commit().await?;
                    return Ok(rows);
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
            Self::Mysql(pool, _, _) => {
                let mut conn = mysql_conn(pool).await?;
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
        if let Self::Mysql(pool, _, _) = self {
            let targets = writes_to(sql);
            if !targets.config {
                let mut conn = mysql_conn(pool).await?;
                let result = conn.exec_drop(sql, mysql_params(params)).await;
                if targets.instances {
                    self.cache().group_stats().note_write();
                }
                result.map_err(map_mysql_error)?;
                return Ok(conn.affected_rows());
            }
        }
        // SQLite: through the group-committing writer. MySQL configuration writes: with the
        // generation bump in the same transaction.
        let mut tx = self.begin().await?;
        let n = tx.exec(sql, params).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Runs a multi-statement script (migrations). SQLite: atomically. MySQL: statement by
    /// statement (DDL commits implicitly there), so scripts must be re-runnable.
    pub async fn exec_script(&self, script: &str) -> Result<(), StoreError> {
        let result = match self {
            Self::Sqlite(db, _) => {
                let guard = db.idle_writer().await?;
                let script = script.to_string();
                tokio::task::spawn_blocking(move || {
                    // Migrations are rare: a full sync at their COMMIT, like before.
                    let _ = guard.conn.busy_timeout(Duration::from_secs(10));
                    let _ = guard.conn.execute_batch("PRAGMA synchronous=FULL");
                    let result = guard
                        .conn
                        .execute_batch(&format!("BEGIN IMMEDIATE;\n{script}\nCOMMIT;"));
                    let _ = guard.conn.execute_batch("PRAGMA synchronous=NORMAL");
                    let _ = guard.conn.busy_timeout(Duration::ZERO);
                    result.map_err(|e| {
                        if !guard.conn.is_autocommit() {
                            let _ = guard.conn.execute_batch("ROLLBACK");
                        }
                        map_sqlite_error(e)
                    })
                })
                .await
                .map_err(join_error)?
            }
            Self::Mysql(pool, _, _) => {
                let mut conn = mysql_conn(pool).await?;
                let mut result = Ok(());
                for statement in split_statements(script) {
                    match conn.query_drop(&statement).await {
                        Ok(()) => {}
                        // `CREATE INDEX IF NOT EXISTS` is MariaDB-only (MySQL 8 refuses the
                        // syntax), so scripts use plain `CREATE INDEX` and a re-run (after a
                        // crash between DDL statements) treats "duplicate key name" as done.
                        Err(mysql_async::Error::Server(e))
                            if e.code == ER_DUP_KEYNAME && is_create_index(&statement) => {}
                        Err(e) => {
                            result = Err(map_mysql_error(e));
                            break;
                        }
                    }
                }
                result
            }
        };
        // A script may change anything.
        self.cache().bump();
        self.cache().group_stats().note_write();
        if let Some(instances) = self.instance_cache() {
            instances.clear();
        }
        result
    }

    /// Opens a write transaction. SQLite: a savepoint in the writer's current batch (which holds
    /// the database write lock, `BEGIN IMMEDIATE`), so all writers are serialised; MySQL callers
    /// lock rows they depend on.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let (inner, cache) = match self {
            Self::Sqlite(db, cache) => {
                let guard = db.begin_batch().await?;
                if let Err(e) = run_cached(&guard.conn, "SAVEPOINT rb_tx") {
                    release_writer(db, guard);
                    return Err(map_sqlite_error(e));
                }
                (
                    TxInner::Sqlite(SqliteTx {
                        guard: Some(guard),
                        db: db.clone(),
                        wrote: false,
                    }),
                    cache.clone(),
                )
            }
            Self::Mysql(pool, cache, _) => {
                // READ COMMITTED is the session's level (set when the connection was opened).
                let opts = mysql_async::TxOpts::default();
                let tx = pool
                    .start_transaction(opts)
                    .await
                    .map_err(map_mysql_error)?;
                (TxInner::Mysql(Some(tx)), cache.clone())
            }
        };
        Ok(Tx {
            inner,
            cache,
            config_dirty: false,
            instance_key: None,
            instance_marked: false,
            instances_all_marked: false,
            last_seen_only: false,
            stats_dirty: false,
            memo: TxMemo::default(),
        })
    }

    /// A read-only view for short reads on the request path (see [`Snapshot`]). None for an
    /// in-memory SQLite database, which has no connection besides the writer.
    pub async fn snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        match self {
            Self::Sqlite(db, cache) => {
                let Some(path) = db.path.as_deref() else {
                    return Ok(None);
                };
                let pooled = db.snapshot_readers.lock().ok().and_then(|mut r| r.pop());
                let conn = match pooled {
                    Some(conn) => conn,
                    None => {
                        // Opening reads the schema: a one-off cost per pooled connection.
                        let conn = open_sqlite(Some(path))?;
                        conn.busy_timeout(Duration::ZERO)
                            .map_err(map_sqlite_error)?;
                        conn
                    }
                };
                Ok(Some(Snapshot {
                    inner: SnapshotInner::Sqlite {
                        db: db.clone(),
                        conn: Some(conn),
                    },
                    cache: cache.clone(),
                }))
            }
            Self::Mysql(pool, cache, _) => {
                let conn = mysql_conn(pool).await?;
                Ok(Some(Snapshot {
                    inner: SnapshotInner::Mysql(conn),
                    cache: cache.clone(),
                }))
            }
        }
    }

    /// The MySQL pool (advisory locks held for a short while take one of its connections).
    pub fn mysql_pool(&self) -> Option<&mysql_async::Pool> {
        match self {
            Self::Mysql(pool, _, _) => Some(pool),
            Self::Sqlite(..) => None,
        }
    }

    /// A new MySQL connection outside the pool, for a lock held as long as the process runs
    /// (which must not take one of the few connections requests share). `None` on SQLite.
    pub async fn mysql_dedicated_conn(&self) -> Option<Result<mysql_async::Conn, StoreError>> {
        match self {
            Self::Mysql(_, _, opts) => {
                Some(within_connect_timeout(mysql_async::Conn::new(opts.clone())).await)
            }
            Self::Sqlite(..) => None,
        }
    }

    pub async fn close(self) {
        match self {
            Self::Mysql(pool, _, _) => {
                let _ = pool.disconnect().await;
            }
            Self::Sqlite(db, _) => {
                // Commit whatever batch is still open before the process goes away.
                if let Ok(guard) = db.idle_writer().await {
                    drop(guard);
                }
            }
        }
    }
}

/// Splits a migration script on `;` at line ends, dropping comments and blank statements.
/// MySQL/MariaDB "Duplicate key name" (an index of that name already exists).
const ER_DUP_KEYNAME: u16 = 1061;

/// `CREATE [UNIQUE] INDEX ...`, whatever the case and spacing.
fn is_create_index(statement: &str) -> bool {
    let words: Vec<&str> = statement.split_whitespace().take(3).collect();
    let is = |i: usize, word: &str| words.get(i).is_some_and(|w| w.eq_ignore_ascii_case(word));
    is(0, "CREATE") && (is(1, "INDEX") || (is(1, "UNIQUE") && is(2, "INDEX")))
}

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

/// Read-only access for the Omaha fast path: no write lock, no transaction to commit.
///
/// SQLite: a pooled reader connection, run inline on the async worker (the reads are a few
/// index lookups; a thread hop would cost more than they do). MySQL: one pooled connection.
/// On both, each statement is its own consistent read of committed data (no transaction
/// around them: BEGIN and COMMIT would cost as much as the reads); callers put what must agree
/// into one statement. It never sees another caller's uncommitted work; writes are refused.
pub struct Snapshot {
    inner: SnapshotInner,
    cache: Arc<ConfigCache>,
}

enum SnapshotInner {
    Sqlite {
        db: Arc<SqliteDb>,
        conn: Option<rusqlite::Connection>,
    },
    Mysql(mysql_async::Conn),
}

impl Snapshot {
    /// The configuration cache (see `store::cache`).
    pub fn cache(&self) -> &Arc<ConfigCache> {
        &self.cache
    }

    pub fn dialect(&self) -> Dialect {
        match self.inner {
            SnapshotInner::Sqlite { .. } => Dialect::Sqlite,
            SnapshotInner::Mysql(_) => Dialect::Mysql,
        }
    }

    pub async fn query(
        &mut self,
        sql: &str,
        params: Vec<SqlValue>,
    ) -> Result<Vec<Row>, StoreError> {
        match &mut self.inner {
            SnapshotInner::Sqlite { conn, .. } => {
                let conn = conn
                    .as_ref()
                    .ok_or_else(|| StoreError::Backend("snapshot already closed".into()))?;
                sqlite_rows(conn, sql, &params)
            }
            SnapshotInner::Mysql(conn) => {
                let rows: Vec<mysql_async::Row> = conn
                    .exec(sql, mysql_params(params))
                    .await
                    .map_err(map_mysql_error)?;
                Ok(rows.into_iter().map(mysql_row).collect())
            }
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let SnapshotInner::Sqlite { db, conn } = &mut self.inner {
            let Some(conn) = conn.take() else {
                return;
            };
            if !conn.is_autocommit() {
                return; // not pooled in a state it should never be in
            }
            if let Ok(mut pool) = db.snapshot_readers.lock() {
                if pool.len() < SQLITE_SNAPSHOT_READERS {
                    pool.push(conn);
                }
            }
        }
    }
}

/// Per-transaction notes the store's Omaha code keeps between its own calls (rows it already
/// read), so it does not read them twice. Any write clears `instance`.
#[derive(Debug, Default)]
pub struct TxMemo {
    /// (instance id, application id, the rows `rollout::instance_app` read).
    pub instance: Option<(String, String, Option<super::rollout::StoredInstance>)>,
    /// (group id, the row `rollout::lock_group` read, whether it is locked).
    pub group: Option<(String, Row, bool)>,
}

/// An open write transaction. Dropping it without `commit` rolls back.
pub struct Tx {
    inner: TxInner,
    cache: Arc<ConfigCache>,
    /// A configuration table was written: the cache is invalidated again when the transaction ends.
    config_dirty: bool,
    /// (application id, instance id) this transaction's instance-table writes are about (the
    /// Omaha check's instance); None: they may be about any instance.
    instance_key: Option<InstanceKeyOwned>,
    /// The instance cache was told about this transaction's writes (see [`Tx::mark_instance_writes`]).
    instance_marked: bool,
    instances_all_marked: bool,
    /// Its instance-table writes only set "last seen" (see [`Tx::writes_only_last_seen`]).
    last_seen_only: bool,
    /// It wrote an instance or configuration table: group stats computed before its commit are
    /// stale once it ends (`store::group_stats`).
    stats_dirty: bool,
    pub memo: TxMemo,
}

enum TxInner {
    Sqlite(SqliteTx),
    Mysql(Option<mysql_async::Transaction<'static>>),
}

struct SqliteTx {
    /// None once the transaction is finished (or the batch under it was lost).
    guard: Option<OwnedMutexGuard<Writer>>,
    db: Arc<SqliteDb>,
    wrote: bool,
}

impl SqliteTx {
    fn run<T>(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        f: fn(&rusqlite::Connection, &str, &[SqlValue]) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self
            .guard
            .as_mut()
            .ok_or_else(|| StoreError::Backend("transaction already finished".into()))?;
        let result = f(&guard.conn, sql, params);
        if let Err(e) = &result {
            if guard.conn.is_autocommit() {
                // The error ended the outer transaction (and this savepoint with it).
                guard.abort_batch(e);
                if let Some(guard) = self.guard.take() {
                    release_writer(&self.db, guard);
                }
            }
        }
        result
    }

    /// Undoes this transaction's statements; the batch (other callers' work) stays.
    fn rollback(&mut self) {
        let Some(mut guard) = self.guard.take() else {
            return;
        };
        if guard
            .conn
            .execute_batch("ROLLBACK TO rb_tx; RELEASE rb_tx")
            .is_err()
            || guard.conn.is_autocommit()
        {
            let error = StoreError::Backend("transaction batch lost during rollback".into());
            if !guard.conn.is_autocommit() {
                let _ = guard.conn.execute_batch("ROLLBACK");
            }
            guard.abort_batch(&error);
        }
        release_writer(&self.db, guard);
    }

    async fn commit(&mut self, wrote_config: bool) -> Result<(), StoreError> {
        let mut guard = self
            .guard
            .take()
            .ok_or_else(|| StoreError::Backend("transaction already finished".into()))?;
        if let Err(e) = run_cached(&guard.conn, "RELEASE rb_tx") {
            let e = map_sqlite_error(e);
            if guard.conn.is_autocommit() {
                guard.abort_batch(&e);
            } else {
                let _ = guard.conn.execute_batch("ROLLBACK TO rb_tx; RELEASE rb_tx");
            }
            release_writer(&self.db, guard);
            return Err(e);
        }
        if !self.wrote && !guard.batch_wrote {
            // Nothing written and nothing uncommitted seen: nothing to wait for.
            release_writer(&self.db, guard);
            return Ok(());
        }
        guard.batch_wrote = true;
        guard.batch_config |= wrote_config;
        let (sender, receiver) = oneshot::channel();
        guard.waiters.push(sender);
        // Commits now unless a queued caller carries the batch on (see `SqliteDb`).
        release_writer(&self.db, guard);
        receiver
            .await
            .unwrap_or_else(|_| Err(StoreError::Backend("commit result lost".into())))
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let TxInner::Sqlite(tx) = &mut self.inner {
            tx.rollback();
        }
        if self.config_dirty {
            self.cache.bump();
        }
    }
}

impl Tx {
    pub fn dialect(&self) -> Dialect {
        match self.inner {
            TxInner::Sqlite(_) => Dialect::Sqlite,
            TxInner::Mysql(_) => Dialect::Mysql,
        }
    }

    /// The configuration cache (see `store::cache`).
    pub fn cache(&self) -> &Arc<ConfigCache> {
        &self.cache
    }

    fn mysql<'a>(
        tx: &'a mut Option<mysql_async::Transaction<'static>>,
    ) -> Result<&'a mut mysql_async::Transaction<'static>, StoreError> {
        tx.as_mut()
            .ok_or_else(|| StoreError::Backend("transaction already finished".into()))
    }

    pub async fn query(
        &mut self,
        sql: &str,
        params: Vec<SqlValue>,
    ) -> Result<Vec<Row>, StoreError> {
        match &mut self.inner {
            TxInner::Sqlite(tx) => tx.run(sql, &params, sqlite_rows),
            TxInner::Mysql(tx) => {
                let rows: Vec<mysql_async::Row> = Self::mysql(tx)?
                    .exec(sql, mysql_params(params))
                    .await
                    .map_err(map_mysql_error)?;
                Ok(rows.into_iter().map(mysql_row).collect())
            }
        }
    }

    /// Declares that this transaction's writes to the instance tables are all about one
    /// instance (the Omaha check's), so the instance cache forgets only that one.
    pub fn set_instance_key(&mut self, app_id: &str, instance_id: &str) {
        if self.instance_key.is_none() {
            self.instance_key = Some((app_id.to_string(), instance_id.to_string()));
        }
    }

    /// Declares that this transaction's instance-table writes only move "last seen" forward
    /// (`store::last_seen`): the instance cache keeps its entries, whose older "last seen" can
    /// only make a check record one again, never skip a write.
    pub fn writes_only_last_seen(&mut self) {
        self.last_seen_only = true;
    }

    /// SQLite: before a statement that writes instance rows (or configuration, which cascades
    /// into them) runs, the instance cache marks them pending, and the batch remembers to
    /// settle them once it is durable (see `store::instance_cache`).
    /// `config` / `instances`: the statement writes a configuration / instance table.
    fn mark_instance_writes(&mut self, config: bool, instances: bool) {
        let TxInner::Sqlite(tx) = &mut self.inner else {
            return;
        };
        let Some(guard) = tx.guard.as_mut() else {
            return;
        };
        let Some(cache) = guard.instances.clone() else {
            return;
        };
        if !config && (self.last_seen_only || !instances) {
            return;
        }
        match (&self.instance_key, config) {
            (Some((app_id, instance_id)), false) => {
                if !self.instance_marked {
                    cache.mark_pending(app_id, instance_id);
                    guard
                        .batch_instance_keys
                        .push((app_id.clone(), instance_id.clone()));
                    self.instance_marked = true;
                }
            }
            _ => {
                if !self.instances_all_marked {
                    cache.mark_all_pending();
                    guard.batch_instances_all += 1;
                    self.instances_all_marked = true;
                }
            }
        }
    }

    pub async fn exec(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<u64, StoreError> {
        self.memo.instance = None;
        // The SQL text is scanned once per statement (this is on the Omaha write path).
        let WriteTargets { config, instances } = writes_to(sql);
        self.mark_instance_writes(config, instances);
        self.stats_dirty |= config || instances;
        if !self.config_dirty && config {
            self.config_dirty = true;
            self.cache.bump();
            self.exec_raw(BUMP_DB_GENERATION, Vec::new()).await?;
        }
        self.exec_raw(sql, params).await
    }

    async fn exec_raw(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<u64, StoreError> {
        match &mut self.inner {
            TxInner::Sqlite(tx) => {
                tx.wrote = true;
                tx.run(sql, &params, sqlite_exec)
            }
            TxInner::Mysql(tx) => {
                let tx = Self::mysql(tx)?;
                tx.exec_drop(sql, mysql_params(params))
                    .await
                    .map_err(map_mysql_error)?;
                Ok(tx.affected_rows())
            }
        }
    }

    /// Commits. SQLite: resolves once the batch holding this transaction is durably committed.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        let result = match &mut self.inner {
            TxInner::Sqlite(tx) => tx.commit(self.config_dirty).await,
            TxInner::Mysql(tx) => match tx.take() {
                Some(tx) => tx.commit().await.map_err(map_mysql_error),
                None => Err(StoreError::Backend("transaction already finished".into())),
            },
        };
        // Before the caller learns of the commit; also after a failed one, which may have
        // committed all the same (a lost connection during COMMIT).
        if self.stats_dirty {
            self.cache.group_stats().note_write();
        }
        result
    }

    pub async fn rollback(mut self) -> Result<(), StoreError> {
        match &mut self.inner {
            TxInner::Sqlite(tx) => {
                tx.rollback();
                Ok(())
            }
            TxInner::Mysql(tx) => match tx.take() {
                Some(tx) => tx.rollback().await.map_err(map_mysql_error),
                None => Ok(()),
            },
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

impl Queryable for Snapshot {
    fn dialect(&self) -> Dialect {
        Snapshot::dialect(self)
    }
    async fn query(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<Vec<Row>, StoreError> {
        Snapshot::query(self, sql, params).await
    }
    async fn exec(&mut self, _sql: &str, _params: Vec<SqlValue>) -> Result<u64, StoreError> {
        Err(StoreError::Backend("a read snapshot cannot write".into()))
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
    fn mysql_data_errors_name_their_column() {
        assert_eq!(
            mysql_column("Data too long for column 'delivery_key' at row 1"),
            Some("delivery_key")
        );
        assert_eq!(mysql_column("Out of range value"), None);
    }

    #[test]
    fn pool_size_in_the_url_is_noticed() {
        assert!(!url_sets_pool_size("mysql://u:p@h:3306/db"));
        assert!(!url_sets_pool_size(
            "mysql://u:p@h:3306/db?stmt_cache_size=10"
        ));
        assert!(url_sets_pool_size("mysql://u:p@h:3306/db?pool_max=8"));
        assert!(url_sets_pool_size(
            "mysql://u:p@h:3306/db?prefer_socket=false&pool_min=1"
        ));
        // A value that merely contains the name is not the key.
        assert!(!url_sets_pool_size("mysql://u:p@h:3306/db?x=pool_max"));
    }

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

    fn server_error(code: u16) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: format!("error {code}"),
            state: "HY000".into(),
        })
    }

    #[test]
    fn mysql_outages_are_unavailable_and_bugs_are_not() {
        for code in [
            1040, 1044, 1045, 1053, 1129, 1130, 1203, 1226, 1927, 3032, 4031,
        ] {
            let e = map_mysql_error(server_error(code));
            assert!(matches!(e, StoreError::Unavailable(_)), "{code}: {e:?}");
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = map_mysql_error(mysql_async::Error::Io(mysql_async::IoError::Io(refused)));
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        for driver in [
            mysql_async::DriverError::ConnectionClosed,
            mysql_async::DriverError::PoolDisconnected,
        ] {
            let e = map_mysql_error(mysql_async::Error::Driver(driver));
            assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        }
        assert!(matches!(
            map_mysql_error(server_error(1213)),
            StoreError::Retryable(_)
        ));
        assert!(matches!(
            map_mysql_error(server_error(1062)),
            StoreError::Conflict(_)
        ));
        // A wrong statement is a bug: 500, not "try again".
        for code in [1064, 1146, 1054] {
            let e = map_mysql_error(server_error(code));
            assert!(matches!(e, StoreError::Backend(_)), "{code}: {e:?}");
            assert!(!e.is_transient());
        }
    }

    #[test]
    fn sqlite_busy_and_unusable_files_are_transient() {
        let failure = |code: i32| {
            map_sqlite_error(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        for code in [
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_LOCKED,
            rusqlite::ffi::SQLITE_CANTOPEN,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_READONLY,
        ] {
            assert!(failure(code).is_transient(), "{code}");
        }
        assert!(!failure(rusqlite::ffi::SQLITE_ERROR).is_transient());
        // A wrong statement (no such table) is a bug, not an outage.
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let e = map_sqlite_error(conn.execute("SELECT * FROM nowhere", []).unwrap_err());
        assert!(matches!(e, StoreError::Backend(_)), "{e:?}");
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
