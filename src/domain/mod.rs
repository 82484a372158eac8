//! The vocabulary of rollbridge: versions, durations, statuses, rollout policies and the validation
//! rules every entry point shares. Nothing in here does I/O or reads a clock, so the rules can be
//! tested in isolation and reused by the REST API, the Omaha handler and the release sources.

pub mod ids;
pub mod interval;
pub mod model;
pub mod release;
pub mod status;
pub mod timezone;
pub mod version;

pub use ids::{new_id, new_time_ordered_id, normalize_uuid};
pub use interval::{format_interval, parse_interval};
pub use model::*;
pub use release::{
    Artifact, Binding, BindingFields, BindingInput, Release, ReleaseFile, SourceKind,
    ZeroConfigTarget,
};
pub use status::{ActivityClass, EventKind, InstanceStatus, PackageType, Severity};
pub use version::Version;

/// A rejected input value, naming the field so API clients can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Well-known ids of the data every installation starts with (CoreRoller's fixed ids, so existing
/// update_engine configurations and tooling keep working).
pub mod seed {
    pub const DEFAULT_TEAM_ID: &str = "d89342dc-9214-441d-a4af-bdd837a3b239";
    pub const COREOS_APP_ID: &str = "e96281a6-d1af-4bde-9a0a-97b76e56dc57";
    pub const STABLE_GROUP_ID: &str = "9a2deb70-37be-4026-853f-bfdd6b347bbe";
    pub const BETA_GROUP_ID: &str = "3fe10490-dd73-4b49-b72a-28ac19acfcdc";
    pub const ALPHA_GROUP_ID: &str = "5b810680-e36a-4879-b98a-4f989e80b899";
    pub const STABLE_CHANNEL_ID: &str = "e06064ad-4414-4904-9a6e-fd465593d1b2";
    pub const BETA_CHANNEL_ID: &str = "128b8c29-5058-4643-8e67-a1a0e3c641c9";
    pub const ALPHA_CHANNEL_ID: &str = "a87a03ad-4984-47a1-8dc4-3507bae91ee1";

    /// The fixed group for a CoreOS track name, as update_engine sends it in `track`.
    pub fn coreos_group_for_track(track: &str) -> Option<&'static str> {
        match track {
            "stable" => Some(STABLE_GROUP_ID),
            "beta" => Some(BETA_GROUP_ID),
            "alpha" => Some(ALPHA_GROUP_ID),
            _ => None,
        }
    }
}
