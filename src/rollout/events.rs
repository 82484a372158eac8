//! Omaha events (download started/finished, installed, complete, failed) and what they do to an
//! instance's status, the group's rollout flag and the activity stream. update_engine sends
//! `3/2` on every check (with an empty or `0.0.0.0` previous version), so completion is decided
//! by the version the instance reports, not by the event alone.

use crate::domain::{
    ActivityClass, EventKind, Group, InstanceStatus, NewActivity, Severity, Version,
};
use crate::store::rollout::{self as rows, InstanceAppState, InstanceKey};
use crate::store::{StoreError, Tx};

use super::check::CheckRequest;

/// An `<event>` as reported; `kind` is None for (type, result) pairs rollbridge does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedEvent {
    pub kind: Option<EventKind>,
    pub previous_version: String,
    pub error_code: String,
}

/// Applies one event. Unknown pairs, unknown instances and events from instances without an
/// update in progress change nothing (failures are still recorded, for the audit trail).
pub async fn apply_event(
    tx: &mut Tx,
    group: &mut Group,
    key: InstanceKey<'_>,
    req: &CheckRequest<'_>,
    state: &mut Option<InstanceAppState>,
    event: &ReportedEvent,
    now: i64,
) -> Result<(), StoreError> {
    let Some(kind) = event.kind else {
        tracing::debug!(
            instance = key.instance_id,
            "ignoring unknown event type/result"
        );
        return Ok(());
    };
    let Some(current) = state.as_mut() else {
        return Ok(());
    };
    if current.group_id.as_deref() != Some(key.group_id) {
        // Events are accounted to the group the instance was granted in.
        return Ok(());
    }
    if !current.update_in_progress {
        if kind == EventKind::UpdateFailed {
            rows::insert_event(
                tx,
                key,
                kind.pair(),
                &event.previous_version,
                &event.error_code,
                now,
            )
            .await?;
        }
        return Ok(());
    }
    let granted = current.last_update_version.clone().unwrap_or_default();
    let status = current.status();
    let reached = match (Version::parse(&granted), &req.version) {
        (Ok(g), v) => *v >= g,
        (Err(_), _) => false,
    };
    let completes = match kind {
        EventKind::UpdateComplete => {
            reached
                || (!req.is_coreos
                    && !event.previous_version.is_empty()
                    && event.previous_version != "0.0.0.0")
        }
        // Generic applications often cannot "reboot": 3/1 is their completion (Nebraska).
        EventKind::UpdateInstalled => !req.is_coreos,
        _ => false,
    };
    // update_engine's every-check 3/2 with nothing new is noise, not an event worth storing.
    if kind == EventKind::UpdateComplete && !completes {
        return Ok(());
    }
    rows::insert_event(
        tx,
        key,
        kind.pair(),
        &event.previous_version,
        &event.error_code,
        now,
    )
    .await?;
    if completes {
        let version = if reached {
            req.version.as_str().to_string()
        } else {
            granted.clone()
        };
        complete_instance(tx, group, key, status, &granted, &version, now).await?;
        current.status = Some(InstanceStatus::Complete.code());
        current.update_in_progress = false;
        current.version = version;
        return Ok(());
    }
    let next = match kind {
        EventKind::DownloadStarted => InstanceStatus::Downloading,
        EventKind::DownloadFinished => InstanceStatus::Downloaded,
        EventKind::Installed => InstanceStatus::Installed,
        EventKind::UpdateFailed => InstanceStatus::Error,
        EventKind::UpdateInstalled | EventKind::UpdateComplete => return Ok(()),
    };
    let failed = next == InstanceStatus::Error;
    rows::set_status(
        tx,
        key,
        status,
        next,
        &granted,
        if failed { &event.error_code } else { "" },
        failed,
        None,
        now,
    )
    .await?;
    current.status = Some(next.code());
    if failed {
        current.update_in_progress = false;
        instance_failed(tx, group, key, &granted, &event.error_code, now).await?;
    }
    Ok(())
}

async fn instance_failed(
    tx: &mut Tx,
    group: &mut Group,
    key: InstanceKey<'_>,
    granted: &str,
    error_code: &str,
    now: i64,
) -> Result<(), StoreError> {
    rows::add_activity(
        tx,
        &NewActivity {
            class: ActivityClass::InstanceUpdateFailed,
            severity: Severity::Error,
            version: granted.to_string(),
            application_id: group.application_id.clone(),
            group_id: Some(group.id.clone()),
            channel_id: group.channel_id.clone(),
            instance_id: Some(key.instance_id.to_string()),
            description: format!(
                "Instance {} failed to update to {granted} (error code {error_code})",
                key.instance_id
            ),
        },
        now,
    )
    .await?;
    if !group.policy_auto_pause_on_failure || !group.policy_updates_enabled {
        return Ok(());
    }
    let policy = group.policy();
    let counters = rows::exact_counters(tx, &group.id, granted, &policy, now).await?;
    // This failure is the first finished attempt at the version: stop the rollout.
    if counters.attempted_current == 1 {
        rows::set_updates_enabled(tx, &group.id, false).await?;
        rows::set_rollout_in_progress(tx, &group.id, false).await?;
        group.policy_updates_enabled = false;
        group.rollout_in_progress = false;
        rows::add_activity(
            tx,
            &NewActivity {
                class: ActivityClass::RolloutFailed,
                severity: Severity::Error,
                version: granted.to_string(),
                application_id: group.application_id.clone(),
                group_id: Some(group.id.clone()),
                channel_id: group.channel_id.clone(),
                instance_id: None,
                description: format!(
                    "The first update to {granted} in group {} failed; the group's updates have been disabled",
                    group.name
                ),
            },
            now,
        )
        .await?;
    }
    Ok(())
}

/// Marks the instance Complete and finishes the group's rollout when every active instance runs
/// the channel's version (instances that were already up to date count as finished).
pub async fn complete_instance(
    tx: &mut Tx,
    group: &mut Group,
    key: InstanceKey<'_>,
    current: Option<InstanceStatus>,
    granted: &str,
    version: &str,
    now: i64,
) -> Result<(), StoreError> {
    rows::set_status(
        tx,
        key,
        current,
        InstanceStatus::Complete,
        granted,
        "",
        true,
        Some(version),
        now,
    )
    .await?;
    finish_rollout_if_done(tx, group, now).await?;
    Ok(())
}

/// Clears the group's "rollout in progress" (with a `RolloutFinished` entry) when no active
/// instance is behind the channel's version; returns whether it did. Runs after a completion
/// and from [`crate::rollout::sweep`] (instances that went silent, or reached the version
/// without reporting a completion, never trigger the first).
pub async fn finish_rollout_if_done(
    tx: &mut Tx,
    group: &mut Group,
    now: i64,
) -> Result<bool, StoreError> {
    if !group.rollout_in_progress {
        return Ok(false);
    }
    let Some(channel_id) = group.channel_id.clone() else {
        return Ok(false);
    };
    let Some(target) = rows::channel_target(tx, &channel_id).await? else {
        return Ok(false);
    };
    let (package, _) = &*target;
    let Ok(target) = Version::parse(&package.version) else {
        return Ok(false);
    };
    if rows::any_active_behind(tx, &group.id, &target, now).await? {
        return Ok(false);
    }
    rows::set_rollout_in_progress(tx, &group.id, false).await?;
    group.rollout_in_progress = false;
    rows::add_activity(
        tx,
        &NewActivity {
            class: ActivityClass::RolloutFinished,
            severity: Severity::Success,
            version: package.version.clone(),
            application_id: group.application_id.clone(),
            group_id: Some(group.id.clone()),
            channel_id: Some(channel_id),
            instance_id: None,
            description: format!(
                "Rollout of {} finished in group {}",
                package.version, group.name
            ),
        },
        now,
    )
    .await?;
    Ok(true)
}
