//! "Last seen" (`last_check_for_updates`) of instances whose check changed nothing else, kept
//! in memory and written in batches instead of one transaction per check.
//!
//! Why: update_engine checks every few tens of minutes, so nearly every check of a real fleet
//! is due for a new "last seen" while nothing else about the instance changed. Writing it in the
//! check would put every check on the write path (the group lock, the commit, the fsync) for a
//! value that only feeds the dashboard and the one-day activity window. Batched, such a check
//! stays read-only; a second of "last seen" can be lost on a crash, nothing a client was told.
//!
//! Writes never move a stored value backwards (a check's own transaction may have written a
//! newer one meanwhile), and a failed flush puts its entries back for the next one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::db::{Dialect, SqlValue};
use super::{Store, StoreError};
use crate::sql_params;

/// How often the background flusher writes what was recorded.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Rows per write transaction (bounds how long one flush holds the SQLite writer).
const ROWS_PER_TRANSACTION: usize = 500;

/// Entries kept before new ones are dropped (a flush that keeps failing must not grow memory
/// without bound; a dropped entry only delays a "last seen").
const MAX_PENDING: usize = 1_000_000;

/// (application id, instance id).
type Key = (Box<str>, Box<str>);

/// A recorded "last seen": the instance and when it was seen.
type Seen = (Key, i64);

/// (application id, instance id) → the latest time it was seen.
#[derive(Default)]
pub struct LastSeen {
    pending: Mutex<HashMap<Key, i64>>,
}

impl LastSeen {
    /// Records that the instance checked in at `seen_ms` (the latest of several wins).
    pub fn record(&self, app_id: &str, instance_id: &str, seen_ms: i64) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if let Some(at) = pending.get_mut(&(app_id.into(), instance_id.into())) {
            *at = (*at).max(seen_ms);
            return;
        }
        if pending.len() < MAX_PENDING {
            pending.insert((app_id.into(), instance_id.into()), seen_ms);
        }
    }

    /// Recorded and not written yet.
    pub fn pending(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    fn take(&self) -> Vec<Seen> {
        match self.pending.lock() {
            Ok(mut pending) => pending.drain().collect(),
            Err(_) => Vec::new(),
        }
    }

    fn put_back(&self, entries: Vec<Seen>) {
        for ((app_id, instance_id), seen_ms) in entries {
            self.record(&app_id, &instance_id, seen_ms);
        }
    }
}

impl Store {
    /// Records a "last seen" to be written by the next flush (see the module docs).
    pub fn record_last_seen(&self, app_id: &str, instance_id: &str, seen_ms: i64) {
        self.last_seen().record(app_id, instance_id, seen_ms);
    }

    /// "Last seen" values recorded and not written yet.
    pub fn last_seen_pending(&self) -> usize {
        self.last_seen().pending()
    }

    /// Writes every recorded "last seen"; returns how many were written.
    pub async fn flush_last_seen(&self) -> Result<usize, StoreError> {
        let entries = self.last_seen().take();
        let total = entries.len();
        let mut rest = entries.as_slice();
        while !rest.is_empty() {
            let (chunk, later) = rest.split_at(rest.len().min(ROWS_PER_TRANSACTION));
            if let Err(e) = self.write_last_seen(chunk).await {
                self.last_seen().put_back(rest.to_vec());
                return Err(e);
            }
            rest = later;
        }
        Ok(total)
    }

    async fn write_last_seen(&self, chunk: &[Seen]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        // Only "last seen" changes here: cached instance rows stay valid (see the method).
        tx.writes_only_last_seen();
        match tx.dialect() {
            // In-process: a statement per row costs microseconds, and the cached statement is
            // simpler for SQLite's planner than a join.
            Dialect::Sqlite => {
                for ((app_id, instance_id), seen_ms) in chunk {
                    tx.exec(
                        "UPDATE instance_applications SET last_check_for_updates = ? \
                         WHERE instance_id = ? AND application_id = ? \
                         AND last_check_for_updates < ?",
                        sql_params![*seen_ms, &**instance_id, &**app_id, *seen_ms],
                    )
                    .await?;
                }
            }
            // A round trip per row was ~10,000 statements a second for a 10,000-machine fleet,
            // all on the server's CPU: one joined UPDATE per batch of rows instead.
            Dialect::Mysql => {
                let mut sorted: Vec<&Seen> = chunk.iter().collect();
                // One lock order for every flush (several replicas flush overlapping sets).
                sorted.sort_unstable_by(|a, b| (&a.0 .1, &a.0 .0).cmp(&(&b.0 .1, &b.0 .0)));
                let mut rest = sorted.as_slice();
                while !rest.is_empty() {
                    let rows = mysql_batch_rows(rest.len());
                    let (batch, later) = rest.split_at(rows);
                    let mut params = Vec::with_capacity(rows * 3);
                    for ((app_id, instance_id), seen_ms) in batch {
                        params.push(SqlValue::from(&**instance_id));
                        params.push(SqlValue::from(&**app_id));
                        params.push(SqlValue::from(*seen_ms));
                    }
                    tx.exec(&mysql_update_sql(rows), params).await?;
                    rest = later;
                }
            }
        }
        tx.commit().await
    }
}

/// Row counts of the MySQL batched UPDATE: a few fixed statement shapes, so the prepared
/// statement cache holds them all instead of one statement per remainder size.
const MYSQL_BATCH_SIZES: [usize; 5] = [ROWS_PER_TRANSACTION, 100, 25, 5, 1];

/// The largest batch shape that fits `remaining` rows.
fn mysql_batch_rows(remaining: usize) -> usize {
    MYSQL_BATCH_SIZES
        .into_iter()
        .find(|&rows| rows <= remaining)
        .unwrap_or(1)
}

/// `UPDATE … JOIN` of `rows` (instance id, application id, seen) triples, portable to MariaDB and
/// MySQL (a `UNION ALL` derived table; MySQL has no `VALUES` table constructor of MariaDB's
/// form). Moves no value backwards, like the SQLite statement.
fn mysql_update_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(220 + rows * 28);
    sql.push_str(
        "UPDATE instance_applications ia JOIN (SELECT ? AS instance_id, ? AS application_id, \
         ? AS seen_ms",
    );
    for _ in 1..rows {
        sql.push_str(" UNION ALL SELECT ?, ?, ?");
    }
    sql.push_str(
        ") seen ON ia.instance_id = seen.instance_id AND ia.application_id = seen.application_id \
         SET ia.last_check_for_updates = seen.seen_ms \
         WHERE ia.last_check_for_updates < seen.seen_ms",
    );
    sql
}

/// Flushes every [`FLUSH_INTERVAL`] until `shutdown` turns true, then once more.
pub async fn flush_periodically(store: Store, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        let stopping = tokio::select! {
            () = tokio::time::sleep(FLUSH_INTERVAL) => *shutdown.borrow(),
            changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
        };
        if let Err(e) = store.flush_last_seen().await {
            tracing::warn!(error = %e, pending = store.last_seen().pending(), "writing \"last seen\" failed; retrying");
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_batches_use_a_few_fixed_shapes_and_cover_every_row() {
        // At most 4 of 100, 3 of 25, 4 of 5 and 4 of 1 after the full batches.
        for total in [1, 4, 5, 6, 99, 100, 499, 500, 501, 1234] {
            let mut left = total;
            let mut statements = 0;
            while left > 0 {
                let rows = mysql_batch_rows(left);
                assert!(MYSQL_BATCH_SIZES.contains(&rows) && rows <= left);
                left -= rows;
                statements += 1;
            }
            assert!(
                statements <= total / ROWS_PER_TRANSACTION + 4 + 3 + 4 + 4,
                "{total}"
            );
        }
        let sql = mysql_update_sql(3);
        assert_eq!(sql.matches('?').count(), 9);
        assert!(sql.starts_with("UPDATE instance_applications "));
    }
}
