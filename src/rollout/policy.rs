//! The rollout decision as a pure function: CoreRoller's ordered checks with Nebraska's fixes
//! (re-serving a grant, completion by reaching the granted version, timeout brake only in safe
//! mode). No I/O and no clock: the caller passes the counters it read under the group lock and
//! the current time, and applies the returned decision in the same transaction.

use crate::domain::{timezone, InstanceStatus, RolloutPolicy, Version};

/// What the group's instances are doing, counted over instances active in the last day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Grants (to any version) within the last policy period.
    pub granted_in_period: i64,
    /// Granted and not finished, not yet timed out.
    pub in_progress: i64,
    /// Granted and not finished for longer than the update timeout.
    pub timed_out: i64,
    /// Instances that finished an attempt (success or failure) at the channel's current version.
    pub attempted_current: i64,
}

/// The instance's stored state for this application, plus the version it reports now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceState {
    pub reported_version: Version,
    pub status: Option<InstanceStatus>,
    pub update_in_progress: bool,
    pub last_update_version: Option<Version>,
    pub last_update_granted_ts: Option<i64>,
}

/// The package the group's channel points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub version: Version,
    /// The package blacklists the group's channel.
    pub blacklisted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    UpdateInProgress,
    NoPackage,
    UpdatesDisabled,
    OutsideOfficeHours,
    MaxUpdatesPerPeriod,
    MaxConcurrentUpdates,
    MaxTimedOutUpdates,
}

/// What a "no update" answer does to the stored instance state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoUpdateEffect {
    None,
    /// The instance reached (or can no longer get) its granted version: mark it Complete.
    Complete,
    /// The channel offers nothing newer than what the instance runs (it moved back, or was
    /// rolled back) while the instance holds a grant it never started, or waits on hold: that
    /// grant or hold is void; release it (status Undefined, no update in progress) so it is
    /// neither counted as an update in progress or timed out nor shown as waiting.
    Release,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A new grant of the target package.
    Grant,
    /// The instance already holds a grant for the target: serve it again, count nothing.
    Reserve,
    NoUpdate(NoUpdateEffect),
    Deny {
        reason: Denial,
        /// Put the instance on hold (it wants the update but policy blocks it).
        hold: bool,
        /// Disable updates on the group (safe-mode brake on timed-out updates).
        pause_group: bool,
    },
}

fn timed_out(instance: &InstanceState, policy: &RolloutPolicy, now_ms: i64) -> bool {
    match instance.last_update_granted_ts {
        Some(ts) => now_ms.saturating_sub(ts) > policy.update_timeout_ms,
        None => false,
    }
}

/// Decides what an update check gets. See the module docs for the rules' origin.
pub fn decide(
    policy: &RolloutPolicy,
    counters: &Counters,
    instance: &InstanceState,
    target: Option<&Target>,
    now_ms: i64,
) -> Decision {
    // An instance that reports the version it was granted has finished, whatever events it sent.
    if instance.update_in_progress {
        match &instance.last_update_version {
            Some(granted) if instance.reported_version >= *granted => {
                return Decision::NoUpdate(NoUpdateEffect::Complete)
            }
            None => return Decision::NoUpdate(NoUpdateEffect::Complete),
            Some(_) => {}
        }
    }

    let is_timed_out = timed_out(instance, policy, now_ms);
    if instance.update_in_progress
        && instance.status.is_some_and(InstanceStatus::is_busy)
        && !is_timed_out
    {
        return deny(Denial::UpdateInProgress, false);
    }

    let Some(target) = target else {
        return deny(Denial::NoPackage, false);
    };

    if instance.update_in_progress && instance.status == Some(InstanceStatus::UpdateGranted) {
        if target.blacklisted {
            return Decision::NoUpdate(NoUpdateEffect::Complete);
        }
        let same_target = instance.last_update_version.as_ref() == Some(&target.version);
        if same_target && !is_timed_out && instance.reported_version < target.version {
            return Decision::Reserve;
        }
    }

    if instance.reported_version >= target.version {
        let stale = instance.update_in_progress || instance.status == Some(InstanceStatus::OnHold);
        return Decision::NoUpdate(if stale {
            NoUpdateEffect::Release
        } else {
            NoUpdateEffect::None
        });
    }
    if target.blacklisted {
        return Decision::NoUpdate(NoUpdateEffect::None);
    }

    if !policy.updates_enabled {
        return deny(Denial::UpdatesDisabled, false);
    }
    if policy.office_hours {
        let open = timezone::parse_timezone("policy_timezone", &policy.timezone)
            .map(|tz| timezone::in_office_hours(tz, now_ms))
            .unwrap_or(false);
        if !open {
            return deny(Denial::OutsideOfficeHours, false);
        }
    }

    let cap = if policy.safe_mode && counters.attempted_current == 0 {
        1
    } else {
        policy.max_updates_per_period
    };
    if counters.granted_in_period >= cap {
        return deny(Denial::MaxUpdatesPerPeriod, true);
    }
    if counters.in_progress >= cap {
        return deny(Denial::MaxConcurrentUpdates, true);
    }
    if policy.safe_mode && counters.timed_out >= cap {
        return Decision::Deny {
            reason: Denial::MaxTimedOutUpdates,
            hold: true,
            pause_group: true,
        };
    }
    Decision::Grant
}

fn deny(reason: Denial, hold: bool) -> Decision {
    Decision::Deny {
        reason,
        hold,
        pause_group: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn policy(safe: bool, max: i64) -> RolloutPolicy {
        RolloutPolicy {
            updates_enabled: true,
            safe_mode: safe,
            office_hours: false,
            timezone: String::new(),
            period_interval_ms: 900_000,
            max_updates_per_period: max,
            update_timeout_ms: 3_600_000,
            auto_pause_on_failure: true,
        }
    }

    fn fresh(version: &str) -> InstanceState {
        InstanceState {
            reported_version: v(version),
            status: None,
            update_in_progress: false,
            last_update_version: None,
            last_update_granted_ts: None,
        }
    }

    fn target(version: &str) -> Target {
        Target {
            version: v(version),
            blacklisted: false,
        }
    }

    #[test]
    fn up_to_date_instances_get_no_update() {
        let d = decide(
            &policy(true, 2),
            &Counters::default(),
            &fresh("12.1.0"),
            Some(&target("12.1.0")),
            0,
        );
        assert_eq!(d, Decision::NoUpdate(NoUpdateEffect::None));
        let d = decide(
            &policy(true, 2),
            &Counters::default(),
            &fresh("1010.5.0+2016-05-27-1832"),
            Some(&target("12.1.0")),
            0,
        );
        assert_eq!(d, Decision::NoUpdate(NoUpdateEffect::None));
    }

    #[test]
    fn grants_and_holds_are_released_when_the_channel_offers_nothing_newer() {
        // Granted 2.0.0, never started; the channel went back to 1.0.0, which it runs.
        let granted = InstanceState {
            status: Some(InstanceStatus::UpdateGranted),
            update_in_progress: true,
            last_update_version: Some(v("2.0.0")),
            last_update_granted_ts: Some(0),
            ..fresh("1.0.0")
        };
        let d = decide(
            &policy(false, 1),
            &Counters::default(),
            &granted,
            Some(&target("1.0.0")),
            10,
        );
        assert_eq!(d, Decision::NoUpdate(NoUpdateEffect::Release));
        // Waiting on hold for 2.0.0 when the channel went back.
        let held = InstanceState {
            status: Some(InstanceStatus::OnHold),
            ..fresh("1.0.0")
        };
        let d = decide(
            &policy(false, 1),
            &Counters::default(),
            &held,
            Some(&target("1.0.0")),
            10,
        );
        assert_eq!(d, Decision::NoUpdate(NoUpdateEffect::Release));
        // Still behind the channel: the hold stands, nothing is released.
        let d = decide(
            &policy(false, 1),
            &Counters {
                granted_in_period: 1,
                ..Counters::default()
            },
            &held,
            Some(&target("2.0.0")),
            10,
        );
        assert!(matches!(d, Decision::Deny { .. }), "{d:?}");
        // A download under way is left alone (update_engine finishes what it fetched).
        let busy = InstanceState {
            status: Some(InstanceStatus::Downloading),
            ..granted.clone()
        };
        let d = decide(
            &policy(false, 1),
            &Counters::default(),
            &busy,
            Some(&target("1.0.0")),
            10,
        );
        assert_eq!(
            d,
            Decision::Deny {
                reason: Denial::UpdateInProgress,
                hold: false,
                pause_group: false
            }
        );
    }

    #[test]
    fn safe_mode_caps_at_one_until_the_first_attempt_finishes() {
        let p = policy(true, 4);
        let one_granted = Counters {
            granted_in_period: 1,
            in_progress: 1,
            ..Default::default()
        };
        let d = decide(&p, &one_granted, &fresh("1.0.0"), Some(&target("2.0.0")), 0);
        assert!(matches!(
            d,
            Decision::Deny {
                reason: Denial::MaxUpdatesPerPeriod,
                hold: true,
                ..
            }
        ));
        let attempted = Counters {
            attempted_current: 1,
            granted_in_period: 1,
            ..Default::default()
        };
        assert_eq!(
            decide(&p, &attempted, &fresh("1.0.0"), Some(&target("2.0.0")), 0),
            Decision::Grant
        );
    }

    #[test]
    fn a_granted_instance_is_served_the_same_package_again() {
        let mut inst = fresh("1.0.0");
        inst.status = Some(InstanceStatus::UpdateGranted);
        inst.update_in_progress = true;
        inst.last_update_version = Some(v("2.0.0"));
        inst.last_update_granted_ts = Some(0);
        let full = Counters {
            granted_in_period: 9,
            in_progress: 9,
            ..Default::default()
        };
        assert_eq!(
            decide(&policy(false, 1), &full, &inst, Some(&target("2.0.0")), 10),
            Decision::Reserve
        );
        inst.status = Some(InstanceStatus::Downloading);
        assert!(matches!(
            decide(&policy(false, 1), &full, &inst, Some(&target("2.0.0")), 10),
            Decision::Deny {
                reason: Denial::UpdateInProgress,
                ..
            }
        ));
        inst.reported_version = v("2.0.0");
        assert_eq!(
            decide(&policy(false, 1), &full, &inst, Some(&target("2.0.0")), 10),
            Decision::NoUpdate(NoUpdateEffect::Complete)
        );
    }

    #[test]
    fn timed_out_updates_pause_only_in_safe_mode() {
        let c = Counters {
            timed_out: 1,
            attempted_current: 1,
            ..Default::default()
        };
        let d = decide(
            &policy(true, 1),
            &c,
            &fresh("1.0.0"),
            Some(&target("2.0.0")),
            0,
        );
        assert_eq!(
            d,
            Decision::Deny {
                reason: Denial::MaxTimedOutUpdates,
                hold: true,
                pause_group: true
            }
        );
        assert_eq!(
            decide(
                &policy(false, 1),
                &c,
                &fresh("1.0.0"),
                Some(&target("2.0.0")),
                0
            ),
            Decision::Grant
        );
    }

    #[test]
    fn office_hours_are_enforced_in_the_group_timezone() {
        let mut p = policy(false, 5);
        p.office_hours = true;
        p.timezone = "Europe/Berlin".into();
        let saturday = chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
            .unwrap()
            .timestamp_millis();
        let wednesday = chrono::DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .timestamp_millis();
        assert!(matches!(
            decide(
                &p,
                &Counters::default(),
                &fresh("1.0.0"),
                Some(&target("2.0.0")),
                saturday
            ),
            Decision::Deny {
                reason: Denial::OutsideOfficeHours,
                hold: false,
                ..
            }
        ));
        assert_eq!(
            decide(
                &p,
                &Counters::default(),
                &fresh("1.0.0"),
                Some(&target("2.0.0")),
                wednesday
            ),
            Decision::Grant
        );
    }

    fn status_strategy() -> impl Strategy<Value = Option<InstanceStatus>> {
        prop_oneof![Just(None), (1i64..=8).prop_map(InstanceStatus::from_code)]
    }

    proptest! {
        #[test]
        fn decide_never_breaks_the_policy(
            enabled in any::<bool>(), safe in any::<bool>(), max in 1i64..10,
            granted in 0i64..12, in_progress in 0i64..12, timed_out in 0i64..12, attempted in 0i64..12,
            inst_minor in 0u64..5, target_minor in 0u64..5, granted_minor in proptest::option::of(0u64..5),
            busy in any::<bool>(), status in status_strategy(), blacklisted in any::<bool>(),
            grant_age in 0i64..10_000_000, now in 10_000_000i64..20_000_000,
        ) {
            let mut p = policy(safe, max);
            p.updates_enabled = enabled;
            let counters = Counters { granted_in_period: granted, in_progress, timed_out, attempted_current: attempted };
            let inst = InstanceState {
                reported_version: v(&format!("1.{inst_minor}.0")),
                status,
                update_in_progress: busy,
                last_update_version: granted_minor.map(|m| v(&format!("1.{m}.0"))),
                last_update_granted_ts: Some(now - grant_age),
            };
            let t = Target { version: v(&format!("1.{target_minor}.0")), blacklisted };
            let d = decide(&p, &counters, &inst, Some(&t), now);
            if d == Decision::Grant {
                let cap = if safe && attempted == 0 { 1 } else { max };
                prop_assert!(enabled, "granted while updates are disabled");
                prop_assert!(granted < cap && in_progress < cap, "granted beyond the cap");
                prop_assert!(inst.reported_version < t.version, "granted to an instance at or above the target");
                prop_assert!(!blacklisted);
            }
            if d == Decision::Reserve {
                prop_assert!(inst.reported_version < t.version);
                prop_assert!(!blacklisted);
            }
        }
    }
}
