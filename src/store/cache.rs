//! In-process cache of the configuration rows every Omaha request reads (application, group by
//! track, the package a channel points at), so the hot path does not run five queries to learn
//! what changes a few times a day.
//!
//! Invalidation is by generation, never by time: every entry is tagged with the generation read
//! *before* it was loaded and is only used while the generation is unchanged. The generation is
//! bumped
//! - by every write statement that touches a configuration table, when it runs and again when
//!   its transaction ends (entries loaded in between, possibly from a reader that did not see the
//!   uncommitted write yet, are dropped with the second bump), whichever store method issued it
//!   (the check is on the SQL text in `db`, so write paths added later are covered too);
//! - across replicas (MySQL): such writes also increment the `rb_config_generation` row in the
//!   same transaction; readers compare that row with the last value they saw (one primary-key
//!   read, folded into the group read inside the Omaha transaction) and bump locally on change.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::domain::{Application, Group, Package};

/// Tables whose rows the cache holds (or that cascade into them).
const CONFIG_TABLES: &[&str] = &[
    "applications",
    "rollout_groups",
    "channels",
    "packages",
    "package_channel_blacklist",
    "coreos_actions",
    "teams",
];

/// Entries per map before the map is emptied: unknown app ids sent by hostile clients are cached
/// as misses and must not grow memory without bound.
const MAX_ENTRIES: usize = 4096;

/// The statement every configuration write adds (in its own transaction) for other replicas.
pub const BUMP_DB_GENERATION: &str =
    "UPDATE rb_config_generation SET generation = generation + 1 WHERE id = 1";

/// How long a read of the generation row vouches for the application and group lookups done
/// outside a transaction (MySQL). The channel's package, read inside the Omaha transaction, is
/// always checked against the row read in that transaction.
pub const DB_GENERATION_REUSE_MS: u64 = 20;

fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

struct Entry<V> {
    generation: u64,
    value: V,
}

type Map<K, V> = RwLock<HashMap<K, Entry<V>>>;

/// A channel's package and whether that package blacklists the channel. Shared, so that a
/// cache hit costs a reference count, not a copy of the package.
pub type ChannelTarget = Option<Arc<(Package, bool)>>;

pub struct ConfigCache {
    generation: AtomicU64,
    db_generation: AtomicI64,
    observed_at_ms: AtomicU64,
    apps: Map<String, Option<Arc<Application>>>,
    /// Keyed by `app id + '\n' + track` (neither contains a newline: ids are UUIDs, tracks are
    /// trimmed single-line attribute values).
    groups: Map<String, Option<Arc<Group>>>,
    targets: Map<String, ChannelTarget>,
    /// Shared by the same handles, invalidated by instance writes too (see its module).
    group_stats: super::group_stats::GroupStatsCache,
}

impl Default for ConfigCache {
    fn default() -> Self {
        Self {
            generation: AtomicU64::new(0),
            db_generation: AtomicI64::new(i64::MIN),
            observed_at_ms: AtomicU64::new(0),
            apps: RwLock::default(),
            groups: RwLock::default(),
            targets: RwLock::default(),
            group_stats: super::group_stats::GroupStatsCache::default(),
        }
    }
}

fn get<K, Q, V>(map: &Map<K, V>, key: &Q, generation: u64) -> Option<V>
where
    K: Eq + Hash + Borrow<Q>,
    Q: Eq + Hash + ?Sized,
    V: Clone,
{
    let map = map.read().ok()?;
    map.get(key)
        .filter(|e| e.generation == generation)
        .map(|e| e.value.clone())
}

fn put<K: Eq + Hash, V>(map: &Map<K, V>, key: K, generation: u64, value: V) {
    if let Ok(mut map) = map.write() {
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, Entry { generation, value });
    }
}

impl ConfigCache {
    /// A cache for a database that only this process writes (SQLite: one server per file),
    /// whose group stats need not age for other processes' writes.
    pub fn for_own_database() -> Self {
        Self {
            group_stats: super::group_stats::GroupStatsCache::with_max_age(
                super::group_stats::OWN_DB_MAX_AGE,
            ),
            ..Self::default()
        }
    }

    /// The group page's stats rows (`store::group_stats`).
    pub fn group_stats(&self) -> &super::group_stats::GroupStatsCache {
        &self.group_stats
    }

    /// The generation to tag a load with (read it before loading) or to validate an entry.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Invalidates every entry.
    pub fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Records the database's generation row; a change (another replica wrote configuration)
    /// invalidates every entry.
    pub fn observe_db_generation(&self, value: i64) {
        self.observed_at_ms.store(monotonic_ms(), Ordering::SeqCst);
        if self.db_generation.swap(value, Ordering::SeqCst) != value {
            self.bump();
        }
    }

    /// True when the generation row was read less than [`DB_GENERATION_REUSE_MS`] ago (under
    /// load every Omaha transaction reads it, so lookups outside a transaction need not).
    pub fn db_generation_is_fresh(&self) -> bool {
        let at = self.observed_at_ms.load(Ordering::SeqCst);
        at != 0 && monotonic_ms().saturating_sub(at) < DB_GENERATION_REUSE_MS
    }

    pub fn app(&self, id: &str, generation: u64) -> Option<Option<Arc<Application>>> {
        get(&self.apps, id, generation)
    }

    pub fn put_app(&self, id: &str, generation: u64, value: Option<Arc<Application>>) {
        put(&self.apps, id.to_string(), generation, value);
    }

    pub fn group(&self, app_id: &str, track: &str, generation: u64) -> Option<Option<Arc<Group>>> {
        let mut key = String::with_capacity(app_id.len() + track.len() + 1);
        key.push_str(app_id);
        key.push('\n');
        key.push_str(track);
        get(&self.groups, key.as_str(), generation)
    }

    pub fn put_group(&self, app_id: &str, track: &str, generation: u64, value: Option<Arc<Group>>) {
        put(
            &self.groups,
            format!("{app_id}\n{track}"),
            generation,
            value,
        );
    }

    pub fn target(&self, channel_id: &str, generation: u64) -> Option<ChannelTarget> {
        get(&self.targets, channel_id, generation)
    }

    pub fn put_target(&self, channel_id: &str, generation: u64, value: ChannelTarget) {
        put(&self.targets, channel_id.to_string(), generation, value);
    }
}

/// Which cached tables a statement writes (see [`writes_to`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteTargets {
    /// A configuration table (the configuration cache and group stats go stale).
    pub config: bool,
    /// An instance table (`store::instance_cache` and group stats go stale).
    pub instances: bool,
}

/// The cached tables `sql` writes: it is a write (INSERT/UPDATE/DELETE/REPLACE) naming the table
/// as a whole word (`instance_applications` is not `applications`). One pass over the words of
/// the statement: this runs for every statement of every write transaction, the Omaha path's
/// included. Schema changes go through `exec_script`, which invalidates unconditionally.
pub fn writes_to(sql: &str) -> WriteTargets {
    let mut words = sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty());
    let is_write = words.next().is_some_and(|verb| {
        ["INSERT", "UPDATE", "DELETE", "REPLACE"]
            .iter()
            .any(|w| verb.eq_ignore_ascii_case(w))
    });
    let mut targets = WriteTargets::default();
    if !is_write {
        return targets;
    }
    for word in words {
        if !targets.config && CONFIG_TABLES.contains(&word) {
            targets.config = true;
        } else if !targets.instances && INSTANCE_TABLES.contains(&word) {
            targets.instances = true;
        }
        if targets.config && targets.instances {
            break;
        }
    }
    targets
}

/// True when `sql` writes a configuration table (see [`writes_to`]).
pub fn touches_config(sql: &str) -> bool {
    writes_to(sql).config
}

/// Tables whose rows `store::instance_cache` holds, or counts (the grant buckets behind a
/// group's remembered rollout counters).
const INSTANCE_TABLES: &[&str] = &[
    "instances",
    "instance_applications",
    "rollout_grant_buckets",
];

/// True when `sql` writes an instance table (see [`writes_to`]).
pub fn touches_instances(sql: &str) -> bool {
    writes_to(sql).instances
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_finds_both_kinds_of_tables() {
        assert_eq!(
            writes_to("DELETE FROM instance_applications WHERE group_id IN (SELECT id FROM rollout_groups)"),
            WriteTargets { config: true, instances: true }
        );
        assert_eq!(
            writes_to("insert into `instances` (id) values (?)"),
            WriteTargets {
                config: false,
                instances: true
            }
        );
        assert_eq!(
            writes_to("SELECT 1 FROM packages, instances"),
            WriteTargets::default()
        );
        assert_eq!(writes_to(""), WriteTargets::default());
    }

    #[test]
    fn config_writes_are_recognised_by_whole_table_names() {
        assert!(touches_config("INSERT INTO packages (id) VALUES (?)"));
        assert!(touches_config(
            "  update rollout_groups SET policy_updates_enabled = ? WHERE id = ?"
        ));
        assert!(touches_config("DELETE FROM applications WHERE id = ?"));
        assert!(touches_config(
            "INSERT INTO package_channel_blacklist (package_id, channel_id) VALUES (?, ?)"
        ));
        assert!(!touches_config(
            "INSERT INTO instance_applications (instance_id) VALUES (?)"
        ));
        assert!(!touches_config("SELECT * FROM packages"));
        assert!(!touches_config("UPDATE instances SET ip = ? WHERE id = ?"));
        assert!(!touches_config(
            "INSERT INTO activity (class, channel_id) VALUES (?, ?)"
        ));
        assert!(touches_instances(
            "UPDATE instances SET ip = ? WHERE id = ?"
        ));
        assert!(touches_instances(
            "UPDATE instance_applications SET status = ? WHERE instance_id = ?"
        ));
        assert!(!touches_instances(
            "INSERT INTO instance_status_history (instance_id) VALUES (?)"
        ));
        assert!(!touches_instances("SELECT * FROM instances"));
        // Grant buckets feed the remembered rollout counters (`store::instance_cache`).
        assert!(touches_instances(
            "INSERT INTO rollout_grant_buckets (group_id, bucket_ts, grants) VALUES (?, ?, 1)"
        ));
    }

    #[test]
    fn entries_are_only_served_for_their_generation() {
        let cache = ConfigCache::default();
        let g = cache.generation();
        cache.put_app("a", g, None);
        assert_eq!(cache.app("a", g), Some(None));
        cache.bump();
        assert_eq!(cache.app("a", cache.generation()), None);
        let g = cache.generation();
        cache.observe_db_generation(5);
        assert_ne!(cache.generation(), g, "first observation invalidates");
        let g = cache.generation();
        cache.observe_db_generation(5);
        assert_eq!(cache.generation(), g, "same value: entries stay valid");
        cache.observe_db_generation(6);
        assert_ne!(cache.generation(), g);
    }
}
