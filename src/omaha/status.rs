//! Omaha status strings, exactly as CoreRoller and Nebraska send them (update_engine only reads
//! the `<updatecheck status>`; operators' tooling reads the app status).

use crate::rollout::Denial;

pub const OK: &str = "ok";
pub const NO_UPDATE: &str = "noupdate";
pub const ERROR_INTERNAL: &str = "error-internal";
pub const NO_PACKAGE_FOUND: &str = "error-noPackageFound";
pub const UNKNOWN_APPLICATION_OR_GROUP: &str = "error-unknownApplicationOrGroup";
pub const INSTANCE_REGISTRATION_FAILED: &str = "error-instanceRegistrationFailed";
pub const MAX_UPDATES_PER_PERIOD: &str = "error-maxUpdatesPerPeriodLimitReached";
pub const MAX_CONCURRENT_UPDATES: &str = "error-maxConcurrentUpdatesLimitReached";
pub const MAX_TIMED_OUT_UPDATES: &str = "error-maxTimedOutUpdatesLimitReached";
pub const UPDATES_DISABLED: &str = "error-updatesDisabled";
pub const COULD_NOT_CHECK_STATS: &str = "error-couldNotCheckUpdatesStats";
pub const UPDATE_IN_PROGRESS: &str = "error-updateInProgressOnInstance";
pub const FAILED_TO_RETRIEVE: &str = "error-failedToRetrieveUpdatePackageInfo";

/// The app status for a policy denial.
pub fn denial_status(denial: Denial) -> &'static str {
    match denial {
        Denial::UpdateInProgress => UPDATE_IN_PROGRESS,
        Denial::NoPackage => NO_PACKAGE_FOUND,
        Denial::UpdatesDisabled | Denial::OutsideOfficeHours => UPDATES_DISABLED,
        Denial::MaxUpdatesPerPeriod => MAX_UPDATES_PER_PERIOD,
        Denial::MaxConcurrentUpdates => MAX_CONCURRENT_UPDATES,
        Denial::MaxTimedOutUpdates => MAX_TIMED_OUT_UPDATES,
    }
}
