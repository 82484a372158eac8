//! In-process copy of the instance rows the Omaha path reads, so that a settled fleet's checks
//! (a known machine, nothing new to report) read no database at all. SQLite only: there the
//! server process is the only writer of the database file (enforced at startup), and every
//! write passes this process's writer connection. MySQL replicas share the database, so they
//! read it (one statement per check, see `store::rollout::check_view`).
//!
//! An entry is only used while it equals the rows' durable state:
//! - a write of an instance's rows marks its key *pending* when the statement runs (under the
//!   writer lock) and *settles* it once the batch holding the write is durable or failed; a
//!   settled key gets a new sequence number and no value;
//! - any other write to the instance tables, or to configuration (deletes cascade into instance
//!   rows), does the same for every key at once;
//! - a fill carries the sequence number read before its rows were read, and is kept only when
//!   its key (and the whole cache) was neither pending nor settled after that number.
//!
//! So a fill from a read that raced with a write is dropped, and no entry reflects a write that
//! is not durable yet. The one field allowed to differ is "last seen": it is written in batches
//! (`store::last_seen`) without voiding entries, and an entry's value may run ahead of or behind
//! the row's, which only decides when a check records "last seen" again. Memory per entry is small (hashes instead of the registration strings)
//! and the map is bounded: when full it is emptied, which is always correct.
//!
//! The cache also remembers each group's rollout counters as a read-only check last read them
//! ([`InstanceCache::counters`]), under the same sequence: a remembered value is used only while
//! no instance write has settled since it was read, and for at most [`COUNTERS_MAX_AGE_MS`] of
//! request time. Without writes, counters only fall as time passes (grants leave the period and
//! the timeout), so a remembered value is never below the durable one by more than what
//! in-flight writes add; a read-only check acts only on denials, and any answer that would grant
//! runs the locking transaction, which counts again. The worst a remembered value does is deny
//! for up to that age a machine the sliding period would already let through.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::rollout::{Registration, RegistrationDiff, RolloutFields, StoredInstance};
use crate::rollout::policy::Counters;

/// Instances kept before the map is emptied (hostile clients can invent machine ids).
const MAX_ENTRIES: usize = 500_000;
/// Distinct granted-version strings kept before the intern table is emptied.
const MAX_VERSIONS: usize = 1024;

/// "Written, not durable yet": no fill is accepted.
const PENDING: u64 = u64::MAX;

/// Longest a group's remembered rollout counters are used, in request time (see the module docs).
pub const COUNTERS_MAX_AGE_MS: i64 = 1_000;
/// Groups whose counters are remembered before the memo is emptied.
const MAX_COUNTER_GROUPS: usize = 4096;

/// A policy's parameters that the counters depend on (`store::rollout::counters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountersKey {
    pub period_interval_ms: i64,
    pub update_timeout_ms: i64,
    pub max_updates_per_period: i64,
}

/// One group's counters as read after sequence number `read_sequence`, at request time `read_at`.
#[derive(Debug, Clone, Copy)]
struct RememberedCounters {
    key: CountersKey,
    read_sequence: u64,
    read_at: i64,
    counters: Counters,
}

/// The cached rows of one instance for one application: what the Omaha path's read-only
/// decision needs. Fields it only compares for equality are kept as keyed hashes.
/// Kept compact (72 bytes): a 100,000-machine fleet holds one per machine.
#[derive(Debug, Clone)]
pub struct CachedInstance {
    group: u64,
    version: u64,
    /// ip, OEM and aleph version.
    attributes: u64,
    alias: u64,
    last_update_version: Option<Arc<str>>,
    /// [`NONE`] when there is none.
    last_update_granted_ts: i64,
    last_check_for_updates: i64,
    /// Status code, [`NO_STATUS`] when there is none.
    status: i8,
    update_in_progress: bool,
}

const NONE: i64 = i64::MIN;
const NO_STATUS: i8 = -1;

impl CachedInstance {
    /// True when the instance's row is accounted to `group_id`.
    pub fn in_group(&self, cache: &InstanceCache, group_id: &str) -> bool {
        self.group == cache.hash(group_id)
    }

    /// What registering `reg` now would change: the same rules as
    /// [`StoredInstance::registration_changes`].
    pub fn registration_changes(
        &self,
        cache: &InstanceCache,
        reg: &Registration<'_>,
        now: i64,
    ) -> RegistrationDiff {
        RegistrationDiff::new(
            self.attributes != cache.attributes(reg.ip, reg.oem, reg.aleph_version)
                || (!reg.alias.is_empty() && self.alias != cache.hash(reg.alias)),
            self.group != cache.hash(reg.group_id) || self.version != cache.hash(reg.version),
            self.last_check_for_updates,
            now,
        )
    }

    pub fn fields(&self) -> RolloutFields<'_> {
        RolloutFields {
            status: (self.status != NO_STATUS).then_some(i64::from(self.status)),
            update_in_progress: self.update_in_progress,
            last_update_version: self.last_update_version.as_deref(),
            last_update_granted_ts: (self.last_update_granted_ts != NONE)
                .then_some(self.last_update_granted_ts),
        }
    }
}

struct Slot {
    /// Writes of this key not durable yet (no fill is accepted while there are any).
    pending: u32,
    /// Sequence number of the last settle of this key.
    changed_at: u64,
    value: Option<CachedInstance>,
}

impl Inner {
    /// Drops every entry but keeps the marks of writes still pending (dropping them would let
    /// a fill in before those writes are durable).
    fn drop_entries(&mut self) {
        let mut kept = 0;
        for slots in self.apps.values_mut() {
            slots.retain(|_, slot| slot.pending > 0);
            kept += slots.len();
        }
        self.apps.retain(|_, slots| !slots.is_empty());
        self.entries = kept;
    }
}

#[derive(Default)]
struct Inner {
    /// Sequence number of the last settle of every key, or [`PENDING`] while writes that touch
    /// every key are not durable yet (counted in `pending_all`).
    cleared_at: u64,
    pending_all: usize,
    /// application id → machine id → slot (few applications: no key string to build per lookup).
    apps: HashMap<Box<str>, HashMap<Box<str>, Slot>>,
    entries: usize,
    versions: HashMap<Box<str>, Arc<str>>,
}

pub struct InstanceCache {
    sequence: AtomicU64,
    hasher: RandomState,
    inner: Mutex<Inner>,
    /// group id → its rollout counters as last read (see the module docs).
    counters: Mutex<HashMap<Box<str>, RememberedCounters>>,
}

impl Default for InstanceCache {
    fn default() -> Self {
        Self {
            sequence: AtomicU64::new(1),
            hasher: RandomState::new(),
            inner: Mutex::new(Inner::default()),
            counters: Mutex::default(),
        }
    }
}

/// One key whose rows a write transaction changed.
pub type InstanceKeyOwned = (String, String);

impl InstanceCache {
    fn hash(&self, value: &str) -> u64 {
        self.hasher.hash_one(value)
    }

    fn attributes(&self, ip: &str, oem: &str, aleph_version: &str) -> u64 {
        self.hasher.hash_one((ip, oem, aleph_version))
    }

    fn next_sequence(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The sequence number a fill must carry: read it before reading the rows.
    pub fn sequence(&self) -> u64 {
        self.sequence.load(Ordering::SeqCst)
    }

    /// The cached rows, if they are known to be the durable ones.
    pub fn get(&self, app_id: &str, instance_id: &str) -> Option<CachedInstance> {
        let inner = self.inner.lock().ok()?;
        if inner.cleared_at == PENDING {
            return None;
        }
        inner.apps.get(app_id)?.get(instance_id)?.value.clone()
    }

    /// Offers rows read after `read_sequence` was taken; kept only if nothing touched the key
    /// since.
    pub fn fill(
        &self,
        app_id: &str,
        instance_id: &str,
        stored: &StoredInstance,
        read_sequence: u64,
    ) {
        let Some(group_id) = stored.state.group_id.as_deref() else {
            return;
        };
        // Status codes are 1–8; anything else is not cached (the rows are read instead).
        let status = match stored.state.status {
            None => NO_STATUS,
            Some(code) => match i8::try_from(code) {
                Ok(code) if code >= 0 => code,
                _ => return,
            },
        };
        let value = CachedInstance {
            group: self.hash(group_id),
            version: self.hash(&stored.state.version),
            attributes: self.attributes(&stored.ip, &stored.oem, &stored.aleph_version),
            alias: self.hash(&stored.alias),
            last_update_version: None,
            last_update_granted_ts: stored.state.last_update_granted_ts.unwrap_or(NONE),
            last_check_for_updates: stored.last_check_for_updates,
            status,
            update_in_progress: stored.state.update_in_progress,
        };
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.cleared_at > read_sequence {
            return; // PENDING, or settled after the read began
        }
        let last_update_version = stored
            .state
            .last_update_version
            .as_deref()
            .map(|v| intern(&mut inner.versions, v));
        let value = CachedInstance {
            last_update_version,
            ..value
        };
        if inner.entries >= MAX_ENTRIES {
            inner.drop_entries();
        }
        let Inner { apps, entries, .. } = &mut *inner;
        let slots = apps.entry(app_id.into()).or_default();
        match slots.get_mut(instance_id) {
            Some(slot) => {
                if slot.pending == 0 && slot.changed_at <= read_sequence {
                    slot.value = Some(value);
                }
            }
            None => {
                slots.insert(
                    instance_id.into(),
                    Slot {
                        pending: 0,
                        changed_at: 0,
                        value: Some(value),
                    },
                );
                *entries += 1;
            }
        }
    }

    /// The instance was seen at `seen_ms` ("last seen" recorded for a batched write): the entry
    /// says so, so that the next checks do not record it again.
    pub fn touch(&self, app_id: &str, instance_id: &str, seen_ms: i64) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if let Some(value) = inner
            .apps
            .get_mut(app_id)
            .and_then(|slots| slots.get_mut(instance_id))
            .and_then(|slot| slot.value.as_mut())
        {
            value.last_check_for_updates = value.last_check_for_updates.max(seen_ms);
        }
    }

    /// A write of these rows is running: no entry or fill for them until [`Self::settle`].
    pub fn mark_pending(&self, app_id: &str, instance_id: &str) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let Inner { apps, entries, .. } = &mut *inner;
        let slots = apps.entry(app_id.into()).or_default();
        match slots.get_mut(instance_id) {
            Some(slot) => {
                slot.pending += 1;
                slot.value = None;
            }
            None => {
                slots.insert(
                    instance_id.into(),
                    Slot {
                        pending: 1,
                        changed_at: 0,
                        value: None,
                    },
                );
                *entries += 1;
            }
        }
    }

    /// A write that may touch any instance's rows is running.
    pub fn mark_all_pending(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.cleared_at = PENDING;
            inner.pending_all += 1;
            inner.drop_entries();
        }
    }

    /// The batch holding these writes is durable (or failed): their keys may be filled again
    /// by reads that start from now on.
    pub fn settle(&self, keys: &[InstanceKeyOwned], all: usize) {
        if keys.is_empty() && all == 0 {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let settled_at = self.next_sequence();
        for (app_id, instance_id) in keys {
            if let Some(slot) = inner
                .apps
                .get_mut(app_id.as_str())
                .and_then(|slots| slots.get_mut(instance_id.as_str()))
            {
                slot.pending = slot.pending.saturating_sub(1);
                slot.changed_at = settled_at;
                slot.value = None;
            }
        }
        if all > 0 {
            inner.pending_all = inner.pending_all.saturating_sub(all);
            inner.drop_entries();
            inner.cleared_at = if inner.pending_all > 0 {
                PENDING
            } else {
                settled_at
            };
        }
    }

    /// The group's counters remembered for `key`, if no instance write settled since they were
    /// read and they were read at most [`COUNTERS_MAX_AGE_MS`] before `now`. Read at a later
    /// `now` than this reader's is fine: counters only fall as time passes.
    pub fn counters(&self, group_id: &str, key: CountersKey, now: i64) -> Option<Counters> {
        let memo = self.counters.lock().ok()?;
        let entry = memo.get(group_id)?;
        let usable = entry.key == key
            && entry.read_sequence == self.sequence()
            && now.saturating_sub(entry.read_at) <= COUNTERS_MAX_AGE_MS;
        usable.then_some(entry.counters)
    }

    /// Remembers counters read at request time `read_at` by a read that began at sequence
    /// number `read_sequence` (taken before the read, as for a fill).
    pub fn remember_counters(
        &self,
        group_id: &str,
        key: CountersKey,
        read_sequence: u64,
        read_at: i64,
        counters: Counters,
    ) {
        if read_sequence != self.sequence() {
            return; // a write settled during the read
        }
        let Ok(mut memo) = self.counters.lock() else {
            return;
        };
        let entry = RememberedCounters {
            key,
            read_sequence,
            read_at,
            counters,
        };
        if let Some(slot) = memo.get_mut(group_id) {
            *slot = entry;
            return;
        }
        if memo.len() >= MAX_COUNTER_GROUPS {
            memo.clear();
        }
        memo.insert(group_id.into(), entry);
    }

    /// Forgets everything at once (schema changes, a lost batch).
    pub fn clear(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.drop_entries();
            if inner.pending_all == 0 {
                inner.cleared_at = self.next_sequence();
            }
        }
    }
}

fn intern(versions: &mut HashMap<Box<str>, Arc<str>>, version: &str) -> Arc<str> {
    if let Some(v) = versions.get(version) {
        return v.clone();
    }
    if versions.len() >= MAX_VERSIONS {
        versions.clear();
    }
    let v: Arc<str> = version.into();
    versions.insert(version.into(), v.clone());
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rollout::{InstanceAppState, LAST_SEEN_RESOLUTION_MS};

    fn stored(version: &str) -> StoredInstance {
        StoredInstance {
            state: InstanceAppState {
                group_id: Some("g".into()),
                version: version.into(),
                status: Some(4),
                update_in_progress: false,
                last_update_version: Some(version.into()),
                last_update_granted_ts: Some(5),
            },
            last_check_for_updates: 1_000,
            ip: "10.0.0.1".into(),
            alias: String::new(),
            oem: "qemu".into(),
            aleph_version: "1.0.0".into(),
        }
    }

    fn reg<'a>(version: &'a str, ip: &'a str) -> Registration<'a> {
        Registration {
            instance_id: "m",
            app_id: "a",
            group_id: "g",
            ip,
            alias: "",
            oem: "qemu",
            aleph_version: "1.0.0",
            version,
        }
    }

    #[test]
    fn a_fill_is_served_and_compares_like_the_rows() {
        let cache = InstanceCache::default();
        let seq = cache.sequence();
        cache.fill("a", "m", &stored("1.0.0"), seq);
        let hit = cache.get("a", "m").expect("filled");
        assert!(hit.in_group(&cache, "g"));
        assert!(!hit.in_group(&cache, "h"));
        assert_eq!(hit.fields().last_update_version, Some("1.0.0"));
        let rows = stored("1.0.0");
        for (version, ip, now) in [
            ("1.0.0", "10.0.0.1", 2_000),
            ("1.1.0", "10.0.0.1", 2_000),
            ("1.0.0", "10.0.0.2", 2_000),
            ("1.0.0", "10.0.0.1", 1_000 + LAST_SEEN_RESOLUTION_MS),
            ("1.0.0", "10.0.0.1", 500),
        ] {
            let r = reg(version, ip);
            assert_eq!(
                hit.registration_changes(&cache, &r, now),
                rows.registration_changes(&r, now),
                "{version} {ip} {now}"
            );
        }
        assert!(cache.get("a", "other").is_none());
        assert!(cache.get("b", "m").is_none());
    }

    #[test]
    fn writes_void_entries_and_racing_fills_until_durable() {
        let cache = InstanceCache::default();
        cache.fill("a", "m", &stored("1.0.0"), cache.sequence());
        // A write starts: the entry goes, and no fill is taken while it is pending.
        let before = cache.sequence();
        cache.mark_pending("a", "m");
        assert!(cache.get("a", "m").is_none());
        cache.fill("a", "m", &stored("1.0.0"), cache.sequence());
        assert!(cache.get("a", "m").is_none(), "pending: fill refused");
        // Durable: a fill from a read that began before is stale and refused; a new one is kept.
        cache.settle(&[("a".into(), "m".into())], 0);
        cache.fill("a", "m", &stored("1.0.0"), before);
        assert!(
            cache.get("a", "m").is_none(),
            "read began before the write settled"
        );
        cache.fill("a", "m", &stored("2.0.0"), cache.sequence());
        assert_eq!(
            cache
                .get("a", "m")
                .expect("filled")
                .fields()
                .last_update_version,
            Some("2.0.0")
        );
    }

    #[test]
    fn two_pending_writes_of_one_key_need_both_settled() {
        let cache = InstanceCache::default();
        cache.mark_pending("a", "m");
        cache.mark_pending("a", "m");
        cache.settle(&[("a".into(), "m".into())], 0);
        cache.fill("a", "m", &stored("1.0.0"), cache.sequence());
        assert!(cache.get("a", "m").is_none(), "one write still pending");
        cache.settle(&[("a".into(), "m".into())], 0);
        cache.fill("a", "m", &stored("1.0.0"), cache.sequence());
        assert!(cache.get("a", "m").is_some());
    }

    #[test]
    fn writes_to_any_instance_void_everything_until_durable() {
        let cache = InstanceCache::default();
        cache.fill("a", "m", &stored("1.0.0"), cache.sequence());
        cache.mark_pending("a", "busy");
        let before = cache.sequence();
        cache.mark_all_pending();
        assert!(cache.get("a", "m").is_none());
        cache.fill("a", "m", &stored("1.0.0"), cache.sequence());
        assert!(cache.get("a", "m").is_none(), "refused while pending");
        cache.settle(&[], 1);
        cache.fill("a", "m", &stored("1.0.0"), before);
        assert!(cache.get("a", "m").is_none(), "read began before the clear");
        cache.fill("a", "m", &stored("1.0.0"), cache.sequence());
        assert!(cache.get("a", "m").is_some());
        // The key pending before the clear is still pending after it.
        cache.fill("a", "busy", &stored("1.0.0"), cache.sequence());
        assert!(cache.get("a", "busy").is_none());
        cache.settle(&[("a".into(), "busy".into())], 0);
        cache.fill("a", "busy", &stored("1.0.0"), cache.sequence());
        assert!(cache.get("a", "busy").is_some());
    }

    #[test]
    fn remembered_counters_last_until_a_write_settles_or_they_age() {
        let cache = InstanceCache::default();
        let key = CountersKey {
            period_interval_ms: 60_000,
            update_timeout_ms: 3_600_000,
            max_updates_per_period: 5,
        };
        let counted = Counters {
            granted_in_period: 5,
            in_progress: 2,
            ..Counters::default()
        };
        cache.remember_counters("g", key, cache.sequence(), 10_000, counted);
        assert_eq!(cache.counters("g", key, 10_000), Some(counted));
        assert_eq!(
            cache.counters("g", key, 10_000 + COUNTERS_MAX_AGE_MS),
            Some(counted)
        );
        // Read at a later time than this reader's: counters only fall as time passes.
        assert_eq!(cache.counters("g", key, 9_000), Some(counted));
        assert_eq!(
            cache.counters("g", key, 10_001 + COUNTERS_MAX_AGE_MS),
            None,
            "aged"
        );
        assert_eq!(cache.counters("h", key, 10_000), None, "another group");
        let other_policy = CountersKey {
            max_updates_per_period: 6,
            ..key
        };
        assert_eq!(cache.counters("g", other_policy, 10_000), None);

        // Any instance write that becomes durable voids them, also one that was pending before
        // they were read.
        cache.mark_pending("a", "m");
        cache.remember_counters("g", key, cache.sequence(), 10_000, counted);
        assert_eq!(cache.counters("g", key, 10_000), Some(counted));
        cache.settle(&[("a".into(), "m".into())], 0);
        assert_eq!(cache.counters("g", key, 10_000), None, "settled");

        // A read that began before a settle is not remembered.
        let before = cache.sequence();
        cache.mark_all_pending();
        cache.settle(&[], 1);
        cache.remember_counters("g", key, before, 10_000, counted);
        assert_eq!(cache.counters("g", key, 10_000), None);
        cache.clear();
        cache.remember_counters("g", key, cache.sequence(), 10_000, counted);
        assert_eq!(cache.counters("g", key, 10_000), Some(counted));
    }
}
