//! The group page's stats rows (status × version counts over a group's active instances),
//! computed once and shared by the readers that come while they are current.
//!
//! Why: the computation is a scan of the group's index entries — linear in the group's size
//! (~25 ms for 100,000 instances on MariaDB) — and a dashboard or API poller asks for the same
//! group over and over while nothing changes. Without sharing, concurrent readers each run the
//! scan and queue behind one another on the database.
//!
//! Freshness rules (a reader never sees less than what was committed before it asked on this
//! process):
//! - every committed write that touches an instance or configuration table bumps
//!   [`GroupStatsCache::write_generation`] after its commit (the check is on the SQL text in
//!   `db`, like the configuration cache's); an entry is only used by readers that started at or
//!   before the generation the entry's computation started at;
//! - concurrent readers with a stale or missing entry wait for one computation (single flight);
//! - writes on *other* replicas (MySQL) are not seen by the generation: entries also age, after
//!   [`SHARED_DB_MAX_AGE`] (a second); with a database no other process writes (SQLite: one
//!   server per file) only the activity window moves, and they age after [`OWN_DB_MAX_AGE`];
//! - an aged entry is served at once and refreshed behind the answer by a background task (one
//!   at a time), so a reader waits for the scan only when this process's data changed — not
//!   once a second, which put the scan's 30–50 ms in the group page's p99;
//! - the activity window moves with the clock: an entry is current for up to its maximum age
//!   after the `now` it was computed for, and served aged for up to a minute of clock movement.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::StoreError;

/// How long an entry stands in for writes this process cannot see (other replicas on MySQL).
pub const SHARED_DB_MAX_AGE: Duration = Duration::from_secs(1);

/// How long an entry stands in when every write goes through this process (SQLite): only the
/// day-long activity window moved under it.
pub const OWN_DB_MAX_AGE: Duration = Duration::from_secs(10);

/// How far the clock may have moved past an entry's `now` for it to stand in while it is
/// refreshed: the activity window is a day long, so a minute changes nothing but instances at
/// its very edge.
const WINDOW_SLACK_MS: i64 = 60_000;

/// Groups kept before the map is emptied (deleted groups must not accumulate).
const MAX_GROUPS: usize = 4096;

/// (status, version, instances) rows of one group.
pub type StatRows = Arc<Vec<(Option<i64>, String, i64)>>;

struct Entry {
    rows: StatRows,
    /// The write generation read before the computation started.
    generation: u64,
    /// The `now` (ms) the activity window was computed for.
    now_ms: i64,
    computed_at: Instant,
}

#[derive(Default)]
struct Slot {
    entry: Mutex<Option<Arc<Entry>>>,
    /// Held by the one reader (or background refresh) computing the entry.
    computing: Arc<tokio::sync::Mutex<()>>,
}

impl Slot {
    fn current(&self) -> Option<Arc<Entry>> {
        self.entry.lock().ok().and_then(|e| e.clone())
    }

    fn store(&self, rows: StatRows, generation: u64, now_ms: i64) {
        if let Ok(mut entry) = self.entry.lock() {
            *entry = Some(Arc::new(Entry {
                rows,
                generation,
                now_ms,
                computed_at: Instant::now(),
            }));
        }
    }
}

pub struct GroupStatsCache {
    write_generation: AtomicU64,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// How long an entry is current without a local write (see the module docs).
    max_age: Duration,
}

impl Default for GroupStatsCache {
    /// The cautious age: other processes may write the database.
    fn default() -> Self {
        Self::with_max_age(SHARED_DB_MAX_AGE)
    }
}

/// What an entry is good for, for a reader that started at `generation` and asks for `now_ms`.
#[derive(Debug, PartialEq, Eq)]
enum Fit {
    Current,
    /// Current for this process, older than [`MAX_AGE`].
    Aged,
    Unusable,
}

impl Entry {
    fn fit(&self, generation: u64, now_ms: i64, max_age: Duration) -> Fit {
        let max_age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        if self.generation < generation || now_ms < self.now_ms {
            return Fit::Unusable;
        }
        if now_ms - self.now_ms >= WINDOW_SLACK_MS {
            // The clock moved on (the activity window with it): manual clocks in tests, or an
            // entry nobody read for a while.
            return Fit::Unusable;
        }
        if self.computed_at.elapsed() >= max_age || now_ms - self.now_ms >= max_age_ms {
            return Fit::Aged;
        }
        Fit::Current
    }
}

impl GroupStatsCache {
    /// A cache whose entries age after `max_age` ([`SHARED_DB_MAX_AGE`] or [`OWN_DB_MAX_AGE`]).
    pub fn with_max_age(max_age: Duration) -> Self {
        Self {
            write_generation: AtomicU64::new(0),
            slots: Mutex::default(),
            max_age,
        }
    }

    /// Called after a write transaction touching instance or configuration tables ended.
    pub fn note_write(&self) {
        self.write_generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn write_generation(&self) -> u64 {
        self.write_generation.load(Ordering::SeqCst)
    }

    fn slot(&self, group_id: &str) -> Arc<Slot> {
        let Ok(mut slots) = self.slots.lock() else {
            return Arc::default();
        };
        if let Some(slot) = slots.get(group_id) {
            return slot.clone();
        }
        if slots.len() >= MAX_GROUPS {
            slots.clear();
        }
        slots.entry(group_id.to_string()).or_default().clone()
    }

    /// The group's rows for `now_ms`: a usable entry, or the result of `compute` (run by one
    /// reader at a time per group). An aged entry is returned at once and `compute` runs in a
    /// background task that replaces it.
    pub async fn get_or_compute<F, Fut>(
        &self,
        group_id: &str,
        now_ms: i64,
        compute: F,
    ) -> Result<StatRows, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<(Option<i64>, String, i64)>, StoreError>> + Send + 'static,
    {
        let started_at = self.write_generation();
        let slot = self.slot(group_id);
        let waiting = match slot.current() {
            Some(e) => match e.fit(started_at, now_ms, self.max_age) {
                Fit::Current => return Ok(e.rows.clone()),
                // The aged entry holds everything this process wrote: serve it and refresh it
                // behind the answer, unless a refresh is already running.
                Fit::Aged => {
                    if let Ok(guard) = slot.computing.clone().try_lock_owned() {
                        let generation = self.write_generation();
                        let refresh = compute();
                        let slot = slot.clone();
                        tokio::spawn(async move {
                            match refresh.await {
                                Ok(rows) => slot.store(Arc::new(rows), generation, now_ms),
                                // The aged entry stays; the next reader tries again.
                                Err(e) => tracing::debug!(error = %e, "group stats refresh failed"),
                            }
                            drop(guard);
                        });
                    }
                    return Ok(e.rows.clone());
                }
                Fit::Unusable => slot.computing.clone().lock_owned().await,
            },
            None => slot.computing.clone().lock_owned().await,
        };
        // Another reader (or a refresh) may have computed it while this one waited.
        if let Some(e) = slot.current() {
            if e.fit(started_at, now_ms, self.max_age) == Fit::Current {
                return Ok(e.rows.clone());
            }
        }
        let generation = self.write_generation();
        let rows: StatRows = Arc::new(compute().await?);
        slot.store(rows.clone(), generation, now_ms);
        drop(waiting);
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn rows(n: i64) -> Vec<(Option<i64>, String, i64)> {
        vec![(Some(4), "1.0.0".to_string(), n)]
    }

    /// Reads (with a computation that must not run) until the entry holds `n`, or times out.
    async fn wait_for_rows(cache: &GroupStatsCache, group: &str, now_ms: i64, n: i64) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows = cache
                .get_or_compute(group, now_ms, || async { Ok(rows(-1)) })
                .await
                .expect("rows");
            if rows[0].2 == n || Instant::now() > deadline {
                return rows[0].2;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn aged_entries_are_served_at_once_and_refreshed_by_one_task() {
        // Every entry is aged at once: readers never wait for a refresh.
        let cache = GroupStatsCache::with_max_age(Duration::ZERO);
        let first = cache
            .get_or_compute("g", 1_000, || async { Ok(rows(1)) })
            .await;
        assert_eq!(first.expect("rows")[0].2, 1, "no entry yet: computed");
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        for _ in 0..8 {
            let runs = runs.clone();
            let mut released = released.clone();
            let served = tokio::time::timeout(
                Duration::from_secs(5),
                cache.get_or_compute("g", 1_000, || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    let _ = released.wait_for(|r| *r).await;
                    Ok(rows(2))
                }),
            )
            .await
            .expect("served without waiting for the refresh");
            assert_eq!(
                served.expect("rows")[0].2,
                1,
                "the aged entry, while the refresh is blocked"
            );
        }
        let _ = release.send(true);
        assert_eq!(wait_for_rows(&cache, "g", 1_000, 2).await, 2);
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "one refresh for all the readers that found the entry aged"
        );
        cache.note_write();
        let after_write = cache
            .get_or_compute("g", 1_000, || async { Ok(rows(3)) })
            .await;
        assert_eq!(
            after_write.expect("rows")[0].2,
            3,
            "a local write is never served aged"
        );
    }

    #[tokio::test]
    async fn entries_serve_until_a_write_or_the_clock_moves() {
        let cache = GroupStatsCache::default();
        let runs = AtomicUsize::new(0);
        let compute = |n: i64| {
            runs.fetch_add(1, Ordering::SeqCst);
            async move { Ok(rows(n)) }
        };
        let first = cache.get_or_compute("g", 1_000, || compute(1)).await;
        assert_eq!(first.expect("rows")[0].2, 1);
        let again = cache.get_or_compute("g", 1_000, || compute(2)).await;
        assert_eq!(again.expect("rows")[0].2, 1, "served from the entry");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        cache.note_write();
        let after_write = cache.get_or_compute("g", 1_000, || compute(3)).await;
        assert_eq!(
            after_write.expect("rows")[0].2,
            3,
            "a write makes readers recompute"
        );
        let later = cache.get_or_compute("g", 2_000, || compute(4)).await;
        assert_eq!(
            later.expect("rows")[0].2,
            3,
            "the activity window moved a second: served aged, refreshed behind"
        );
        let refreshed = wait_for_rows(&cache, "g", 2_000, 4).await;
        assert_eq!(refreshed, 4, "the background refresh replaced the entry");
        let far = cache.get_or_compute("g", 70_000, || compute(9)).await;
        assert_eq!(far.expect("rows")[0].2, 9, "the clock moved a minute");
        let earlier = cache.get_or_compute("g", 1_500, || compute(5)).await;
        assert_eq!(earlier.expect("rows")[0].2, 5, "a clock that went back");
        let other = cache.get_or_compute("h", 1_500, || compute(6)).await;
        assert_eq!(other.expect("rows")[0].2, 6, "entries are per group");
    }

    #[tokio::test]
    async fn a_failed_computation_stores_nothing() {
        let cache = GroupStatsCache::default();
        let failed = cache
            .get_or_compute("g", 0, || async { Err(StoreError::Backend("down".into())) })
            .await;
        assert!(failed.is_err());
        let next = cache.get_or_compute("g", 0, || async { Ok(rows(7)) }).await;
        assert_eq!(next.expect("rows")[0].2, 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_readers_share_one_computation() {
        let cache = Arc::new(GroupStatsCache::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let mut readers = Vec::new();
        for _ in 0..16 {
            let cache = cache.clone();
            let runs = runs.clone();
            let mut released = released.clone();
            readers.push(tokio::spawn(async move {
                cache
                    .get_or_compute("g", 0, || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let _ = released.wait_for(|r| *r).await;
                        Ok(rows(8))
                    })
                    .await
            }));
        }
        // Let every reader reach the slot before the first computation finishes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = release.send(true);
        for reader in readers {
            let rows = reader.await.expect("join").expect("rows");
            assert_eq!(rows[0].2, 8);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_entry_from_before_a_write_is_unusable_and_an_old_one_is_aged() {
        let entry = Entry {
            rows: Arc::new(rows(1)),
            generation: 5,
            now_ms: 10_000,
            computed_at: Instant::now(),
        };
        let shared = SHARED_DB_MAX_AGE;
        assert_eq!(entry.fit(5, 10_000, shared), Fit::Current);
        assert_eq!(
            entry.fit(4, 10_500, shared),
            Fit::Current,
            "older readers may use it"
        );
        assert_eq!(entry.fit(6, 10_000, shared), Fit::Unusable);
        assert_eq!(
            entry.fit(5, 11_000, shared),
            Fit::Aged,
            "the clock moved a second"
        );
        assert_eq!(
            entry.fit(5, 11_000, OWN_DB_MAX_AGE),
            Fit::Current,
            "only this process writes: a second changes nothing"
        );
        assert_eq!(
            entry.fit(5, 30_000, OWN_DB_MAX_AGE),
            Fit::Aged,
            "the clock moved twenty seconds"
        );
        assert_eq!(
            entry.fit(5, 70_000, shared),
            Fit::Unusable,
            "the clock moved a minute"
        );
        let aged = Entry {
            computed_at: Instant::now()
                .checked_sub(SHARED_DB_MAX_AGE)
                .expect("monotonic clock past the age"),
            ..entry
        };
        assert_eq!(aged.fit(5, 10_000, shared), Fit::Aged);
    }
}
