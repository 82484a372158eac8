//! Numeric codes shared with CoreRoller's API and the Omaha protocol: instance statuses,
//! event (type, result) pairs, activity classes and severities, package types.

use serde::{Deserialize, Serialize};

/// Status of an instance for one application (CoreRoller's codes 1–8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InstanceStatus {
    Undefined = 1,
    UpdateGranted = 2,
    Error = 3,
    Complete = 4,
    Installed = 5,
    Downloaded = 6,
    Downloading = 7,
    OnHold = 8,
}

impl InstanceStatus {
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => Self::Undefined,
            2 => Self::UpdateGranted,
            3 => Self::Error,
            4 => Self::Complete,
            5 => Self::Installed,
            6 => Self::Downloaded,
            7 => Self::Downloading,
            8 => Self::OnHold,
            _ => return None,
        })
    }

    pub fn code(self) -> i64 {
        self as i64
    }

    /// Name used in stats JSON and query filters.
    pub fn key(self) -> &'static str {
        match self {
            Self::Undefined => "undefined",
            Self::UpdateGranted => "update_granted",
            Self::Error => "error",
            Self::Complete => "complete",
            Self::Installed => "installed",
            Self::Downloaded => "downloaded",
            Self::Downloading => "downloading",
            Self::OnHold => "onhold",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Undefined => "Undefined",
            Self::UpdateGranted => "Granted",
            Self::Error => "Error",
            Self::Complete => "Complete",
            Self::Installed => "Installed",
            Self::Downloaded => "Downloaded",
            Self::Downloading => "Downloading",
            Self::OnHold => "On hold",
        }
    }

    /// Busy statuses: the instance is working on a granted update.
    pub fn is_busy(self) -> bool {
        matches!(self, Self::Downloading | Self::Downloaded | Self::Installed)
    }
}

/// The six (eventtype, eventresult) pairs rollbridge understands; any other pair is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// 3/0: the update failed.
    UpdateFailed,
    /// 3/1: update applied (before reboot for update_engine).
    UpdateInstalled,
    /// 3/2: instance runs the new version.
    UpdateComplete,
    /// 13/1: download started.
    DownloadStarted,
    /// 14/1: download finished.
    DownloadFinished,
    /// 800/1: installed, completion prevented by the instance.
    Installed,
}

impl EventKind {
    pub fn from_pair(event_type: i32, result: i32) -> Option<Self> {
        Some(match (event_type, result) {
            (3, 0) => Self::UpdateFailed,
            (3, 1) => Self::UpdateInstalled,
            (3, 2) => Self::UpdateComplete,
            (13, 1) => Self::DownloadStarted,
            (14, 1) => Self::DownloadFinished,
            (800, 1) => Self::Installed,
            _ => return None,
        })
    }

    pub fn pair(self) -> (i32, i32) {
        match self {
            Self::UpdateFailed => (3, 0),
            Self::UpdateInstalled => (3, 1),
            Self::UpdateComplete => (3, 2),
            Self::DownloadStarted => (13, 1),
            Self::DownloadFinished => (14, 1),
            Self::Installed => (800, 1),
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::UpdateFailed => "Instance reported an error during an update step",
            Self::UpdateInstalled => "Updater has processed and applied package",
            Self::UpdateComplete => "Instance upgraded to current channel version",
            Self::DownloadStarted => "Instance started downloading the update package",
            Self::DownloadFinished => "Update package arrived successfully",
            Self::Installed => "Update package installed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityClass {
    PackageNotFound = 1,
    RolloutStarted = 2,
    RolloutFinished = 3,
    RolloutFailed = 4,
    InstanceUpdateFailed = 5,
    ChannelPackageUpdated = 6,
    /// A source delivered a release that became a package (promoted or not).
    ReleaseRegistered = 7,
    /// A source delivered something that was refused (bad payload, downgrade, filter).
    ReleaseRejected = 8,
    /// A source failed (poller cannot reach Artifactory, callback failed, ...).
    SourceError = 9,
    /// The upstream syncer could not check or apply a channel (the channel was left untouched).
    UpstreamSyncFailed = 10,
    /// A Docker agent replaced a container (per-container outcome of an update).
    ContainerUpdated = 11,
    /// A Docker agent put the previous container back after a failed update.
    ContainerRolledBack = 12,
}

impl ActivityClass {
    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => Self::PackageNotFound,
            2 => Self::RolloutStarted,
            3 => Self::RolloutFinished,
            4 => Self::RolloutFailed,
            5 => Self::InstanceUpdateFailed,
            6 => Self::ChannelPackageUpdated,
            7 => Self::ReleaseRegistered,
            8 => Self::ReleaseRejected,
            9 => Self::SourceError,
            10 => Self::UpstreamSyncFailed,
            11 => Self::ContainerUpdated,
            12 => Self::ContainerRolledBack,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::PackageNotFound => "PackageNotFound",
            Self::RolloutStarted => "RolloutStarted",
            Self::RolloutFinished => "RolloutFinished",
            Self::RolloutFailed => "RolloutFailed",
            Self::InstanceUpdateFailed => "InstanceUpdateFailed",
            Self::ChannelPackageUpdated => "ChannelPackageUpdated",
            Self::ReleaseRegistered => "ReleaseRegistered",
            Self::ReleaseRejected => "ReleaseRejected",
            Self::SourceError => "SourceError",
            Self::UpstreamSyncFailed => "UpstreamSyncFailed",
            Self::ContainerUpdated => "ContainerUpdated",
            Self::ContainerRolledBack => "ContainerRolledBack",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Success = 1,
    Info = 2,
    Warning = 3,
    Error = 4,
}

impl Severity {
    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => Self::Success,
            2 => Self::Info,
            3 => Self::Warning,
            4 => Self::Error,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

/// Package types as CoreRoller numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageType {
    Coreos = 1,
    Docker = 2,
    Rocket = 3,
    Other = 4,
}

impl PackageType {
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => Self::Coreos,
            2 => Self::Docker,
            3 => Self::Rocket,
            4 => Self::Other,
            _ => return None,
        })
    }

    pub fn code(self) -> i64 {
        self as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in 1..=8 {
            assert_eq!(InstanceStatus::from_code(code).unwrap().code(), code);
        }
        assert!(InstanceStatus::from_code(9).is_none());
        for (t, r) in [(3, 0), (3, 1), (3, 2), (13, 1), (14, 1), (800, 1)] {
            assert_eq!(EventKind::from_pair(t, r).unwrap().pair(), (t, r));
        }
        assert!(EventKind::from_pair(1000, 1).is_none());
        assert!(EventKind::from_pair(3, 1000).is_none());
        assert!(EventKind::from_pair(2, 1).is_none());
    }
}
