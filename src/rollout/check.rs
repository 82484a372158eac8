//! One Omaha `<app>` applied to the store in ONE transaction that holds the group's lock:
//! events first (they see the stored state, as in CoreRoller), then registration, then the
//! update check (load counters → `decide()` → write the decision). Because the decision and its
//! write share the lock, concurrent checks on any number of replicas never exceed the policy.
//!
//! Most checks of a settled fleet change nothing: a known machine, nothing new to report, an
//! answer the stored state already decides. [`run`] first evaluates the same steps on a read
//! snapshot without any lock ([`read_only`]); when every step would write nothing, that answer
//! is the answer (it is what the transaction would have answered at the snapshot's moment).
//! Anything that might write (a first contact, an event that matters, a grant, a completion, a
//! due "last seen") goes to the transaction, which reads everything again under the lock.

use super::events::{apply_event, complete_instance, ReportedEvent};
use super::policy::{decide, Decision, Denial, InstanceState, NoUpdateEffect, Target};
use crate::domain::{
    ActivityClass, EventKind, Group, InstanceStatus, NewActivity, Package, Severity, Version,
};
use crate::rollout::Counters;
use std::sync::Arc;

use crate::store::cache::{ChannelTarget, ConfigCache};
use crate::store::db::Snapshot;
use crate::store::instance_cache::{CachedInstance, InstanceCache};
use crate::store::rollout::{
    self as rows, CheckReads, InstanceKey, Registration, RegistrationDiff, RolloutFields,
    StoredInstance,
};
use crate::store::{Dialect, Queryable, Row, SqlValue, Store, StoreError, Tx};

/// Everything the Omaha handler learned about one `<app>` of a request.
#[derive(Debug, Clone)]
pub struct CheckRequest<'a> {
    pub app_id: &'a str,
    /// The CoreOS/Flatcar application gets update_engine's event quirks.
    pub is_coreos: bool,
    pub group_id: &'a str,
    pub instance_id: &'a str,
    pub ip: &'a str,
    pub alias: &'a str,
    pub oem: &'a str,
    pub aleph_version: &'a str,
    pub version: Version,
    pub events: Vec<ReportedEvent>,
    pub ping: bool,
    pub update_check: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UpdateAnswer {
    Update(Box<Package>),
    NoUpdate,
    Denied(Denial),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    /// `None` when the request had no `<updatecheck>`.
    pub update: Option<UpdateAnswer>,
    pub poll_interval: i64,
    /// How the check was answered.
    pub path: CheckPath,
}

/// How a check was answered (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckPath {
    /// From the instance cache, without reading the instance's rows.
    Cached,
    /// From a read snapshot of the rows.
    Snapshot,
    /// By the locking transaction.
    Transaction,
}

const MAX_ATTEMPTS: usize = 8;

/// Runs the check, retrying when the database reports a transient conflict (deadlock, lock
/// timeout, busy, or the group row changed under a lazily taken lock) — also at commit — after a
/// short jittered pause, so a burst of contenders does not collide again in lockstep. `group` is
/// the group the request resolved to (from the configuration cache).
pub async fn run(
    store: &Store,
    req: &CheckRequest<'_>,
    group: &Group,
    now: i64,
) -> Result<CheckOutcome, StoreError> {
    match read_only(store, req, group, now).await {
        Ok(Some(outcome)) => return Ok(outcome),
        Ok(None) => {}
        // A busy reader or a dropped connection: the transaction decides.
        Err(e) => tracing::debug!(error = %e, "read-only check failed, running the full check"),
    }
    // Boxed (here and below for what most checks skip): the futures are kilobytes, and every
    // caller would otherwise carry and copy them.
    Box::pin(locked(store, req, now)).await
}

/// The check without the transaction: `Some(outcome)` when applying the request would write
/// nothing, `None` when it may write (see the module docs). The instance's rows come from the
/// instance cache (SQLite) or from one statement that also reads the group row; each condition
/// below mirrors what the transactional steps would do with the same rows.
pub async fn read_only(
    store: &Store,
    req: &CheckRequest<'_>,
    group: &Group,
    now: i64,
) -> Result<Option<CheckOutcome>, StoreError> {
    let cache = store.instance_cache();
    if let Some(cache) = cache {
        if let Some(cached) = cache.get(req.app_id, req.instance_id) {
            let mut reads = LazySnapshot {
                store,
                snapshot: None,
            };
            let view = InstanceView::Cached(&cached, cache);
            let answer = answer_read_only(&mut reads, group, view, req, now).await?;
            return Ok(answer.map(|a| settle_read_only(store, req, a, now)));
        }
    }
    // Taken before the rows are read: a write racing with this read voids the fill below.
    let read_sequence = cache.map(|c| c.sequence());
    let Some(mut snapshot) = store.snapshot().await? else {
        return Ok(None);
    };
    let Some((group, stored)) =
        rows::check_view(&mut snapshot, req.group_id, req.instance_id, req.app_id).await?
    else {
        return Ok(None);
    };
    // A first contact registers the machine.
    let Some(stored) = stored else {
        return Ok(None);
    };
    let answer = answer_read_only(
        &mut snapshot,
        &group,
        InstanceView::Stored(&stored),
        req,
        now,
    )
    .await?;
    let Some(answer) = answer else {
        return Ok(None);
    };
    if let (Some(cache), Some(read_sequence)) = (cache, read_sequence) {
        cache.fill(req.app_id, req.instance_id, &stored, read_sequence);
    }
    Ok(Some(settle_read_only(store, req, answer, now)))
}

/// Records a due "last seen" of a read-only check for the batched write (and in the cached
/// rows, so that the next checks do not record it again).
fn settle_read_only(
    store: &Store,
    req: &CheckRequest<'_>,
    answer: ReadOnly,
    now: i64,
) -> CheckOutcome {
    if answer.last_seen_due {
        store.record_last_seen(req.app_id, req.instance_id, now);
        if let Some(cache) = store.instance_cache() {
            cache.touch(req.app_id, req.instance_id, now);
        }
    }
    answer.outcome
}

/// The instance's rows as [`read_only`] got them.
#[derive(Clone, Copy)]
enum InstanceView<'a> {
    Stored(&'a StoredInstance),
    Cached(&'a CachedInstance, &'a InstanceCache),
}

impl InstanceView<'_> {
    fn in_group(&self, group_id: &str) -> bool {
        match self {
            Self::Stored(s) => s.state.group_id.as_deref() == Some(group_id),
            Self::Cached(c, cache) => c.in_group(cache, group_id),
        }
    }

    fn fields(&self) -> RolloutFields<'_> {
        match self {
            Self::Stored(s) => s.state.fields(),
            Self::Cached(c, _) => c.fields(),
        }
    }

    /// What registering the request would change (see `rows::register`).
    fn registration_changes(&self, req: &CheckRequest<'_>, now: i64) -> RegistrationDiff {
        let reg = registration(req);
        match self {
            Self::Stored(s) => s.registration_changes(&reg, now),
            Self::Cached(c, cache) => c.registration_changes(cache, &reg, now),
        }
    }
}

/// Reads for a check answered from the instance cache: a snapshot is only opened when the
/// decision needs the database (counters, floors, a configuration cache miss).
struct LazySnapshot<'a> {
    store: &'a Store,
    snapshot: Option<Snapshot>,
}

impl Queryable for LazySnapshot<'_> {
    fn dialect(&self) -> Dialect {
        self.store.dialect()
    }

    async fn query(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<Vec<Row>, StoreError> {
        if self.snapshot.is_none() {
            self.snapshot = self.store.snapshot().await?;
        }
        match &mut self.snapshot {
            Some(snapshot) => snapshot.query(sql, params).await,
            None => Err(StoreError::Backend(
                "no read snapshot on this backend".into(),
            )),
        }
    }

    async fn exec(&mut self, _sql: &str, _params: Vec<SqlValue>) -> Result<u64, StoreError> {
        Err(StoreError::Backend("a read snapshot cannot write".into()))
    }
}

impl CheckReads for LazySnapshot<'_> {
    fn config_cache(&self) -> &Arc<ConfigCache> {
        self.store.db().cache()
    }

    async fn lock_group_for_reads(&mut self, _group_id: &str) -> Result<(), StoreError> {
        Ok(())
    }

    fn counters_memo(&self) -> Option<&InstanceCache> {
        self.store.instance_cache().map(|cache| cache.as_ref())
    }
}

/// The read-only evaluation proper, whichever way the rows were read.
async fn answer_read_only<Q: CheckReads>(
    q: &mut Q,
    group: &Group,
    instance: InstanceView<'_>,
    req: &CheckRequest<'_>,
    now: i64,
) -> Result<Option<ReadOnly>, StoreError> {
    let path = match instance {
        InstanceView::Stored(_) => CheckPath::Snapshot,
        InstanceView::Cached(..) => CheckPath::Cached,
    };
    if !events_change_nothing(req, instance) {
        return Ok(None);
    }
    let no_check = CheckOutcome {
        update: None,
        poll_interval: group.policy_poll_interval,
        path,
    };
    if !(req.ping || req.update_check) {
        return Ok(Some(ReadOnly {
            outcome: no_check,
            last_seen_due: false,
        }));
    }
    // A due "last seen" alone does not need the transaction: it is written in a batch
    // (`store::last_seen`) once the answer is known to write nothing else.
    let registration = instance.registration_changes(req, now);
    if registration.instance || registration.app {
        return Ok(None);
    }
    if !req.update_check {
        return Ok(Some(ReadOnly {
            outcome: no_check,
            last_seen_due: registration.last_seen,
        }));
    }
    let plan = plan_update(q, group, req, Some(instance.fields()), now).await?;
    let answer = match plan.decision {
        Decision::Grant
        | Decision::NoUpdate(NoUpdateEffect::Complete | NoUpdateEffect::Release) => {
            return Ok(None)
        }
        Decision::Reserve => match plan.target.as_deref() {
            Some((package, _)) => UpdateAnswer::Update(Box::new(package.clone())),
            None => UpdateAnswer::Denied(Denial::NoPackage),
        },
        Decision::NoUpdate(NoUpdateEffect::None) => UpdateAnswer::NoUpdate,
        Decision::Deny {
            reason,
            hold,
            pause_group,
        } => {
            if pause_group && group.policy_updates_enabled {
                return Ok(None);
            }
            if hold && !hold_is_recorded(&plan.instance) {
                return Ok(None);
            }
            if reason == Denial::NoPackage && !package_not_found_reported(q, &group.id, now).await?
            {
                return Ok(None);
            }
            UpdateAnswer::Denied(reason)
        }
    };
    Ok(Some(ReadOnly {
        outcome: CheckOutcome {
            update: Some(answer),
            poll_interval: group.policy_poll_interval,
            path,
        },
        last_seen_due: registration.last_seen,
    }))
}

/// A check answered without the transaction, and whether its "last seen" is due.
struct ReadOnly {
    outcome: CheckOutcome,
    last_seen_due: bool,
}

/// True when no event of the request would be stored or change the instance (see
/// `events::apply_event`): unknown pairs, events for another group, and, with no update in
/// progress, anything but a failure are ignored there.
fn events_change_nothing(req: &CheckRequest<'_>, instance: InstanceView<'_>) -> bool {
    req.events.iter().all(|event| match event.kind {
        None => true,
        Some(kind) => {
            !instance.in_group(req.group_id)
                || (!instance.fields().update_in_progress && kind != EventKind::UpdateFailed)
        }
    })
}

fn registration<'a>(req: &'a CheckRequest<'_>) -> Registration<'a> {
    Registration {
        instance_id: req.instance_id,
        app_id: req.app_id,
        group_id: req.group_id,
        ip: req.ip,
        alias: req.alias,
        oem: req.oem,
        aleph_version: req.aleph_version,
        version: req.version.as_str(),
    }
}

/// Moves the instance to `status` with no update in progress (a hold, or a void grant
/// released); the history entry names the version it was granted, if any.
async fn end_grant(
    tx: &mut Tx,
    key: InstanceKey<'_>,
    current_status: Option<InstanceStatus>,
    instance: &InstanceState,
    status: InstanceStatus,
    now: i64,
) -> Result<(), StoreError> {
    let version = instance
        .last_update_version
        .as_ref()
        .map(|v| v.as_str().to_string())
        .unwrap_or_default();
    rows::set_status(
        tx,
        key,
        current_status,
        status,
        &version,
        "",
        true,
        None,
        now,
    )
    .await
}

/// A denial that puts the instance on hold writes nothing when it already is on hold.
fn hold_is_recorded(instance: &InstanceState) -> bool {
    instance.status == Some(InstanceStatus::OnHold) && !instance.update_in_progress
}

/// "No package" is reported to the activity stream at most hourly per group.
async fn package_not_found_reported<Q: CheckReads>(
    q: &mut Q,
    group_id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    Box::pin(rows::activity_exists(
        q,
        group_id,
        ActivityClass::PackageNotFound,
        None,
        now - 3_600_000,
    ))
    .await
}

/// The transactional check, retried on transient conflicts.
async fn locked(
    store: &Store,
    req: &CheckRequest<'_>,
    now: i64,
) -> Result<CheckOutcome, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut tx = store.begin().await?;
        let result = match run_in(&mut tx, req, now).await {
            Ok(outcome) => tx.commit().await.map(|()| outcome),
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        };
        match result {
            Ok(outcome) => return Ok(outcome),
            Err(StoreError::Retryable(msg)) if attempt < MAX_ATTEMPTS => {
                tracing::debug!(attempt, %msg, "retrying update check");
                let pause_ms = rand::random::<u64>() % (2 * attempt as u64 + 1);
                tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn run_in(tx: &mut Tx, req: &CheckRequest<'_>, now: i64) -> Result<CheckOutcome, StoreError> {
    let mut group = rows::lock_group(tx, req.group_id)
        .await?
        .ok_or(StoreError::NotFound)?;
    let key = InstanceKey {
        instance_id: req.instance_id,
        app_id: req.app_id,
        group_id: req.group_id,
    };
    let mut state = rows::instance_app(tx, req.instance_id, req.app_id).await?;
    for event in &req.events {
        apply_event(tx, &mut group, key, req, &mut state, event, now).await?;
    }
    if !(req.ping || req.update_check) {
        return Ok(CheckOutcome {
            update: None,
            poll_interval: group.policy_poll_interval,
            path: CheckPath::Transaction,
        });
    }
    rows::register(tx, &registration(req), now).await?;
    let update = if req.update_check {
        Some(update_check(tx, &mut group, key, req, state.as_ref(), now).await?)
    } else {
        None
    };
    Ok(CheckOutcome {
        update,
        poll_interval: group.policy_poll_interval,
        path: CheckPath::Transaction,
    })
}

/// What an update check decides, from reads only.
struct UpdatePlan {
    /// The package on offer (the channel's, or the next floor on the way to it), and whether
    /// it blacklists the channel.
    target: ChannelTarget,
    target_version: Option<Version>,
    instance: InstanceState,
    decision: Decision,
}

/// Reads what the decision needs (the channel's target, floors, counters when policy needs
/// them) and decides. In the transaction the counters are read under the group's lock.
async fn plan_update<Q: CheckReads>(
    q: &mut Q,
    group: &Group,
    req: &CheckRequest<'_>,
    stored: Option<RolloutFields<'_>>,
    now: i64,
) -> Result<UpdatePlan, StoreError> {
    let target = match &group.channel_id {
        Some(channel_id) => rows::channel_target(q, channel_id).await?,
        None => None,
    };
    let target = Box::pin(super::floors::next_hop(
        q,
        group.channel_id.as_deref(),
        &req.version,
        target,
    ))
    .await?;
    let target_version = target
        .as_ref()
        .and_then(|t| Version::parse(&t.0.version).ok());
    let policy = group.policy();
    let instance = InstanceState {
        reported_version: req.version.clone(),
        status: stored.and_then(|s| s.status()),
        update_in_progress: stored.is_some_and(|s| s.update_in_progress),
        last_update_version: stored
            .and_then(|s| s.last_update_version)
            .and_then(|v| Version::parse(v).ok()),
        last_update_granted_ts: stored.and_then(|s| s.last_update_granted_ts),
    };
    // Counters cost a read of the group's grants: only read them when policy needs them.
    let needs_counters = target_version
        .as_ref()
        .is_some_and(|t| req.version < *t && policy.updates_enabled);
    let counters: Counters = match (target.as_deref(), needs_counters) {
        (Some((package, _)), true) => {
            Box::pin(rows::counters(q, &group.id, &package.version, &policy, now)).await?
        }
        _ => Default::default(),
    };
    let target_view = match (target.as_deref(), &target_version) {
        (Some((_, blacklisted)), Some(version)) => Some(Target {
            version: version.clone(),
            blacklisted: *blacklisted,
        }),
        _ => None,
    };
    let decision = decide(&policy, &counters, &instance, target_view.as_ref(), now);
    Ok(UpdatePlan {
        target,
        target_version,
        instance,
        decision,
    })
}

async fn update_check(
    tx: &mut Tx,
    group: &mut Group,
    key: InstanceKey<'_>,
    req: &CheckRequest<'_>,
    stored: Option<&rows::InstanceAppState>,
    now: i64,
) -> Result<UpdateAnswer, StoreError> {
    let UpdatePlan {
        target,
        target_version,
        instance,
        decision,
    } = plan_update(tx, group, req, stored.map(|s| s.fields()), now).await?;
    let current_status = instance.status;
    match decision {
        Decision::Grant => {
            let Some((package, _)) = target.as_deref() else {
                return Ok(UpdateAnswer::Denied(Denial::NoPackage));
            };
            rows::grant(tx, key, &package.version, now).await?;
            if !rows::activity_exists(
                tx,
                &group.id,
                ActivityClass::RolloutStarted,
                Some(&package.version),
                0,
            )
            .await?
            {
                rows::add_activity(
                    tx,
                    &NewActivity {
                        class: ActivityClass::RolloutStarted,
                        severity: Severity::Info,
                        version: package.version.clone(),
                        application_id: group.application_id.clone(),
                        group_id: Some(group.id.clone()),
                        channel_id: group.channel_id.clone(),
                        instance_id: None,
                        description: format!(
                            "Rollout of {} started in group {}",
                            package.version, group.name
                        ),
                    },
                    now,
                )
                .await?;
            }
            if !group.rollout_in_progress {
                rows::set_rollout_in_progress(tx, &group.id, true).await?;
                group.rollout_in_progress = true;
            }
            Ok(UpdateAnswer::Update(Box::new(package.clone())))
        }
        Decision::Reserve => match target.as_deref() {
            Some((package, _)) => Ok(UpdateAnswer::Update(Box::new(package.clone()))),
            None => Ok(UpdateAnswer::Denied(Denial::NoPackage)),
        },
        Decision::NoUpdate(effect) => {
            if effect == NoUpdateEffect::Release {
                end_grant(
                    tx,
                    key,
                    current_status,
                    &instance,
                    InstanceStatus::Undefined,
                    now,
                )
                .await?;
            }
            if effect == NoUpdateEffect::Complete {
                let granted = instance
                    .last_update_version
                    .as_ref()
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_else(|| req.version.as_str().to_string());
                complete_instance(
                    tx,
                    group,
                    key,
                    current_status,
                    &granted,
                    req.version.as_str(),
                    now,
                )
                .await?;
            }
            Ok(UpdateAnswer::NoUpdate)
        }
        Decision::Deny {
            reason,
            hold,
            pause_group,
        } => {
            // Once an hour per group is enough to tell the operator; every check would flood.
            if reason == Denial::NoPackage
                && !package_not_found_reported(tx, &group.id, now).await?
            {
                rows::add_activity(
                    tx,
                    &NewActivity {
                        class: ActivityClass::PackageNotFound,
                        severity: Severity::Warning,
                        version: "0.0.0".into(),
                        application_id: group.application_id.clone(),
                        group_id: Some(group.id.clone()),
                        channel_id: group.channel_id.clone(),
                        instance_id: None,
                        description: format!(
                            "Group {} has no channel or its channel has no package",
                            group.name
                        ),
                    },
                    now,
                )
                .await?;
            }
            if hold && !hold_is_recorded(&instance) {
                end_grant(
                    tx,
                    key,
                    current_status,
                    &instance,
                    InstanceStatus::OnHold,
                    now,
                )
                .await?;
            }
            if pause_group && group.policy_updates_enabled {
                rows::set_updates_enabled(tx, &group.id, false).await?;
                group.policy_updates_enabled = false;
                rows::add_activity(
                    tx,
                    &NewActivity {
                        class: ActivityClass::RolloutFailed,
                        severity: Severity::Error,
                        version: target_version
                            .map(|v| v.as_str().to_string())
                            .unwrap_or_default(),
                        application_id: group.application_id.clone(),
                        group_id: Some(group.id.clone()),
                        channel_id: group.channel_id.clone(),
                        instance_id: None,
                        description: format!(
                            "Updates in group {} timed out; the group's updates have been disabled",
                            group.name
                        ),
                    },
                    now,
                )
                .await?;
            }
            Ok(UpdateAnswer::Denied(reason))
        }
    }
}
