//! The per-container outcome an agent reports for the activity stream, validated the same way
//! whether it arrives over HTTP (remote agent) or in-process (embedded agent).

use serde::{Deserialize, Serialize};

use crate::domain::{normalize_uuid, ActivityClass, NewActivity, Severity, ValidationError};
use crate::store::{Store, StoreError};

/// `POST /api/agent/activity` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerReport {
    pub application_id: String,
    /// The Omaha track (group id or track name) the agent checks with.
    #[serde(default)]
    pub track: Option<String>,
    /// The agent's machine id.
    pub instance_id: String,
    pub container: String,
    /// The version the container runs now (after success) or was to run (after a rollback).
    pub version: String,
    pub outcome: Outcome,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Updated,
    RolledBack,
}

fn invalid(field: &str, message: &str) -> StoreError {
    StoreError::Invalid(ValidationError::new(field, message))
}

fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<(), StoreError> {
    if required && value.trim().is_empty() {
        return Err(invalid(field, "is required"));
    }
    if value.len() > max {
        return Err(invalid(field, &format!("is longer than {max} bytes")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(())
}

impl ContainerReport {
    /// Validates the report and records it; `team_id` is the reporting user's team (the
    /// application must belong to it).
    pub async fn record(&self, store: &Store, team_id: &str, now: i64) -> Result<(), StoreError> {
        let app_id = normalize_uuid("application_id", &self.application_id)?;
        check_text("instance_id", &self.instance_id, 128, true)?;
        check_text("container", &self.container, 255, true)?;
        check_text("version", &self.version, 255, true)?;
        check_text("message", &self.message, 2000, false)?;
        if let Some(track) = &self.track {
            check_text("track", track, 256, false)?;
        }
        store.app(team_id, &app_id).await?;
        let group_id = match self
            .track
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            Some(track) => store
                .group_for_track(&app_id, track)
                .await?
                .map(|g| g.id.clone()),
            None => None,
        };
        let (class, severity, verb) = match self.outcome {
            Outcome::Updated => (
                ActivityClass::ContainerUpdated,
                Severity::Success,
                "updated to",
            ),
            Outcome::RolledBack => (
                ActivityClass::ContainerRolledBack,
                Severity::Error,
                "rolled back from",
            ),
        };
        let mut description = format!(
            "container {} on {} {verb} {}",
            self.container.trim(),
            self.instance_id.trim(),
            self.version.trim()
        );
        if !self.message.trim().is_empty() {
            description.push_str(": ");
            description.push_str(self.message.trim());
        }
        store
            .add_agent_activity(
                &NewActivity {
                    class,
                    severity,
                    version: self.version.trim().to_string(),
                    application_id: app_id,
                    group_id,
                    channel_id: None,
                    instance_id: Some(self.instance_id.trim().to_string()),
                    description,
                },
                now,
            )
            .await
    }
}
