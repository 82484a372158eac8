//! Entities with CoreRoller's field names (so the JSON API stays compatible) and the validated
//! inputs that create or change them. Timestamps are unix milliseconds, rendered as RFC 3339.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::interval::parse_interval;
use super::timezone::parse_timezone;
use super::{normalize_uuid, PackageType, ValidationError, Version};

/// Renders unix milliseconds as RFC 3339 (UTC), the form CoreRoller's API uses.
pub fn format_ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

pub(crate) fn ser_ts<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_ts(*ms))
}

fn ser_opt_ts<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&format_ts(*ms)),
        None => s.serialize_none(),
    }
}

/// Accepts `"212555113"` or `212555113` (CoreRoller stores sizes as text; clients send both).
fn de_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a string or number, got {other}"
        ))),
    }
}

/// Checks a single-line text field: at most `max` characters (MySQL `VARCHAR(n)` counts
/// characters, so `max` must not exceed the column's `n`) and no control characters (a NUL or
/// an escape sequence would end up verbatim in pages, logs and Omaha answers).
pub(crate) fn check_len(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    check_max_chars(field, value, max)?;
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// At most `max` characters (not bytes: MySQL `VARCHAR(n)` and `TEXT` limits are checked in
/// characters by the callers' maxima).
fn check_max_chars(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.chars().count() > max {
        return Err(ValidationError::new(
            field,
            format!("longer than {max} characters"),
        ));
    }
    Ok(())
}

/// Like [`check_len`] for free text (descriptions): tabs and line breaks are allowed.
pub(crate) fn check_text(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    check_max_chars(field, value, max)?;
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(ValidationError::new(
            field,
            "must not contain control characters other than tabs and line breaks",
        ));
    }
    Ok(())
}

/// A required, trimmed name of at most `max` characters without control characters.
pub fn required_name(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<String, ValidationError> {
    let name = value.unwrap_or("").trim();
    if name.is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    check_len(field, name, max)?;
    Ok(name.to_string())
}

/// Longest application name (CoreRoller's limit; the column holds 100).
pub const APP_NAME_MAX: usize = 50;
/// Longest channel name (CoreRoller's limit; the column holds 100).
pub const CHANNEL_NAME_MAX: usize = 25;
/// Longest description of an application, group or package (MySQL `TEXT` holds 65,535 bytes,
/// at most 4 per character).
pub const DESCRIPTION_MAX: usize = 10_000;
/// Longest group track (`rollout_groups.track VARCHAR(255)`).
pub const TRACK_MAX: usize = 255;

/// Decodes standard base64 (with padding), the encoding of Omaha's `hash` and `sha256`.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Checks a base64 digest field; `bytes` is the digest length it must decode to, if fixed.
pub fn check_base64(field: &str, value: &str, bytes: Option<usize>) -> Result<(), ValidationError> {
    let hexlike = !value.is_empty() && value.bytes().all(|b| b.is_ascii_hexdigit());
    let what = match bytes {
        Some(20) => "the base64 of the payload's 20-byte SHA-1",
        Some(32) => "the base64 of the payload's 32-byte SHA-256",
        _ => "base64",
    };
    match decode_base64(value) {
        Some(decoded) if bytes.is_none_or(|n| decoded.len() == n) => Ok(()),
        // A hex checksum (Artifactory, sha256sum) is the usual mistake: say so.
        _ if hexlike => Err(ValidationError::new(
            field,
            format!("looks like hex; it must be {what} (e.g. `xxd -r -p | base64`)"),
        )),
        _ => Err(ValidationError::new(field, format!("must be {what}"))),
    }
}

/// An `http://` or `https://` URL with a host and nothing that needs escaping.
fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !url.chars().any(|c| c.is_whitespace() || c == '"')
        }
        None => false,
    }
}

/// An image repository (`host[:port]/namespace/name`) as container packages carry in `url`.
fn is_image_repository(text: &str) -> bool {
    let mut parts = text.split('/');
    let first = parts.next().unwrap_or("");
    // Only the first component may carry a port, and the port is digits.
    let first_ok = match first.split_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        }
        None => {
            !first.is_empty()
                && first
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        }
    };
    first_ok
        && parts.all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        })
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Team {
    pub id: String,
    pub name: String,
    #[serde(serialize_with = "ser_ts", skip_deserializing)]
    pub created_ts: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Application {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(serialize_with = "ser_ts")]
    pub created_ts: i64,
    pub team_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationInput {
    pub name: Option<String>,
    pub description: Option<String>,
    // Ignored on write; accepted so clients can send back what they read.
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    #[serde(default)]
    pub team_id: Option<serde_json::Value>,
    #[serde(default)]
    pub created_ts: Option<serde_json::Value>,
    #[serde(default)]
    pub groups: Option<serde_json::Value>,
    #[serde(default)]
    pub channels: Option<serde_json::Value>,
    #[serde(default)]
    pub packages: Option<serde_json::Value>,
    #[serde(default)]
    pub instances: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationFields {
    pub name: String,
    pub description: String,
}

impl ApplicationInput {
    pub fn validate(&self) -> Result<ApplicationFields, ValidationError> {
        let description = self.description.clone().unwrap_or_default();
        check_text("description", &description, DESCRIPTION_MAX)?;
        Ok(ApplicationFields {
            name: required_name("name", self.name.as_deref(), APP_NAME_MAX)?,
            description,
        })
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CoreosAction {
    pub id: String,
    pub event: String,
    pub chromeos_version: String,
    pub sha256: String,
    pub needs_admin: bool,
    pub is_delta: bool,
    pub disable_payload_backoff: bool,
    pub metadata_signature_rsa: String,
    pub metadata_size: String,
    pub deadline: String,
    #[serde(serialize_with = "ser_ts")]
    pub created_ts: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Package {
    pub id: String,
    #[serde(rename = "type")]
    pub package_type: i64,
    pub version: String,
    pub url: String,
    pub filename: String,
    pub description: String,
    pub size: String,
    pub hash: String,
    #[serde(serialize_with = "ser_ts")]
    pub created_ts: i64,
    pub channels_blacklist: Vec<String>,
    pub application_id: String,
    pub coreos_action: Option<CoreosAction>,
    /// Docker packages: image repository (`registry/namespace/name`) and manifest digest.
    pub image_repository: String,
    pub image_digest: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CoreosActionInput {
    pub event: Option<String>,
    pub chromeos_version: Option<String>,
    pub sha256: Option<String>,
    pub needs_admin: Option<bool>,
    pub is_delta: Option<bool>,
    pub disable_payload_backoff: Option<bool>,
    pub metadata_signature_rsa: Option<String>,
    pub metadata_size: Option<String>,
    pub deadline: Option<String>,
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    #[serde(default)]
    pub created_ts: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PackageInput {
    #[serde(rename = "type")]
    pub package_type: Option<i64>,
    pub version: Option<String>,
    pub url: Option<String>,
    pub filename: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "de_string_or_number")]
    pub size: Option<String>,
    pub hash: Option<String>,
    pub channels_blacklist: Option<Vec<String>>,
    pub coreos_action: Option<CoreosActionInput>,
    pub image_repository: Option<String>,
    pub image_digest: Option<String>,
}

impl From<&CoreosAction> for CoreosActionInput {
    /// A stored action as input again (to re-validate a package with it on a partial update).
    fn from(a: &CoreosAction) -> Self {
        Self {
            event: Some(a.event.clone()),
            chromeos_version: Some(a.chromeos_version.clone()),
            sha256: Some(a.sha256.clone()),
            needs_admin: Some(a.needs_admin),
            is_delta: Some(a.is_delta),
            disable_payload_backoff: Some(a.disable_payload_backoff),
            metadata_signature_rsa: Some(a.metadata_signature_rsa.clone()),
            metadata_size: Some(a.metadata_size.clone()),
            deadline: Some(a.deadline.clone()),
            id: None,
            created_ts: None,
        }
    }
}

/// A CoreOS postinstall action after validation (defaults as in CoreRoller's schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreosActionFields {
    pub event: String,
    pub chromeos_version: String,
    pub sha256: String,
    pub needs_admin: bool,
    pub is_delta: bool,
    pub disable_payload_backoff: bool,
    pub metadata_signature_rsa: String,
    pub metadata_size: String,
    pub deadline: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFields {
    pub package_type: PackageType,
    pub version: Version,
    pub url: String,
    pub filename: String,
    pub description: String,
    pub size: String,
    pub hash: String,
    pub channels_blacklist: Vec<String>,
    pub coreos_action: Option<CoreosActionFields>,
    pub image_repository: String,
    pub image_digest: String,
}

impl PackageInput {
    /// Validates a package of application `app_id`: [`Self::validate_shape`], then
    /// [`PackageFields::check_complete`].
    pub fn validate(&self, app_id: &str) -> Result<PackageFields, ValidationError> {
        let fields = self.validate_shape(app_id)?;
        fields.check_complete()?;
        Ok(fields)
    }

    /// Checks every given field (lengths, characters, formats, the CoreOS application's type)
    /// without requiring what a CoreOS package may still get filled in (hosting downloads the
    /// payload and fills in its size and digests).
    pub fn validate_shape(&self, app_id: &str) -> Result<PackageFields, ValidationError> {
        let type_code = self.package_type.ok_or_else(|| {
            ValidationError::new(
                "type",
                "is required (1 CoreOS, 2 Docker, 3 Rocket, 4 Other)",
            )
        })?;
        let package_type = PackageType::from_code(type_code).ok_or_else(|| {
            ValidationError::new(
                "type",
                "must be 1 (CoreOS), 2 (Docker), 3 (Rocket) or 4 (Other)",
            )
        })?;
        if app_id == super::seed::COREOS_APP_ID && package_type != PackageType::Coreos {
            return Err(ValidationError::new(
                "type",
                "must be 1 (CoreOS): the CoreOS application's packages are update_engine payloads",
            ));
        }
        let version = Version::parse_field(
            "version",
            self.version
                .as_deref()
                .ok_or_else(|| ValidationError::new("version", "is required"))?,
        )?;
        let url = self.url.clone().unwrap_or_default().trim().to_string();
        if url.is_empty() {
            return Err(ValidationError::new("url", "is required"));
        }
        check_len("url", &url, 1024)?;
        match package_type {
            // Container packages name their image repository here (or a web page).
            PackageType::Docker | PackageType::Rocket => {
                if !is_http_url(&url) && !is_image_repository(&url) {
                    return Err(ValidationError::new(
                        "url",
                        "must be an http(s) URL or an image repository (host[:port]/name)",
                    ));
                }
            }
            PackageType::Coreos | PackageType::Other => {
                if !is_http_url(&url) {
                    return Err(ValidationError::new(
                        "url",
                        "must be an http:// or https:// URL (the payload's location)",
                    ));
                }
            }
        }
        let filename = self.filename.clone().unwrap_or_default();
        check_len("filename", &filename, 255)?;
        if filename.contains('/') || filename.contains('\\') {
            return Err(ValidationError::new(
                "filename",
                "must not contain path separators",
            ));
        }
        let description = self.description.clone().unwrap_or_default();
        check_text("description", &description, DESCRIPTION_MAX)?;
        let size_text = self.size.clone().unwrap_or_default().trim().to_string();
        // Stored as the number's own digits, so the text always fits `VARCHAR(32)`.
        let size = if size_text.is_empty() {
            String::new()
        } else {
            match size_text.parse::<u64>() {
                Ok(n) => n.to_string(),
                Err(_) => {
                    return Err(ValidationError::new("size", "must be a number of bytes"));
                }
            }
        };
        let hash = self.hash.clone().unwrap_or_default().trim().to_string();
        check_len("hash", &hash, 128)?;
        if !hash.is_empty() {
            let sha1_len = (package_type == PackageType::Coreos).then_some(20);
            check_base64("hash", &hash, sha1_len)?;
        }
        let mut channels_blacklist = Vec::new();
        for raw in self.channels_blacklist.iter().flatten() {
            let id = normalize_uuid("channels_blacklist", raw)?;
            if !channels_blacklist.contains(&id) {
                channels_blacklist.push(id);
            }
        }
        let coreos_action = self
            .coreos_action
            .as_ref()
            .map(CoreosActionInput::validate)
            .transpose()?;
        let image_repository = self.image_repository.clone().unwrap_or_default();
        check_len("image_repository", &image_repository, 512)?;
        let image_digest = self.image_digest.clone().unwrap_or_default();
        if !image_digest.is_empty() && !is_digest(&image_digest) {
            return Err(ValidationError::new(
                "image_digest",
                "must look like sha256:<64 hex>",
            ));
        }
        Ok(PackageFields {
            package_type,
            version,
            url,
            filename,
            description,
            size,
            hash,
            channels_blacklist,
            coreos_action,
            image_repository,
            image_digest,
        })
    }
}

impl PackageFields {
    /// Packages update_engine installs (type 1; the CoreOS application takes no other type)
    /// must carry what it checks before it downloads anything, or every machine would fail the
    /// update and pause the rollout.
    pub fn check_complete(&self) -> Result<(), ValidationError> {
        if self.package_type == PackageType::Coreos {
            // update_engine: codebase + name is the download, size > 0, and the postinstall
            // action's sha256 is what the payload is verified against.
            if !self.url.ends_with('/') {
                return Err(ValidationError::new(
                    "url",
                    "must end with '/' for a CoreOS package (update_engine appends the filename)",
                ));
            }
            if self.filename.trim().is_empty() {
                return Err(ValidationError::new(
                    "filename",
                    "is required for a CoreOS package",
                ));
            }
            if self.size.parse::<u64>().unwrap_or(0) == 0 {
                return Err(ValidationError::new(
                    "size",
                    "is required for a CoreOS package: the payload's size in bytes (> 0)",
                ));
            }
            if self.hash.is_empty() {
                return Err(ValidationError::new(
                    "hash",
                    "is required for a CoreOS package: the base64 of the payload's SHA-1",
                ));
            }
            if self
                .coreos_action
                .as_ref()
                .is_none_or(|a| a.sha256.is_empty())
            {
                return Err(ValidationError::new(
                    "coreos_action.sha256",
                    "is required for a CoreOS package: the base64 of the payload's SHA-256",
                ));
            }
        }
        Ok(())
    }
}

/// A content digest as Docker writes it: `sha256:` followed by 64 lower-case hex digits.
pub fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:")
        .map(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .unwrap_or(false)
}

impl CoreosActionInput {
    pub fn validate(&self) -> Result<CoreosActionFields, ValidationError> {
        let text =
            |field: &str, v: &Option<String>, max: usize| -> Result<String, ValidationError> {
                let value = v.clone().unwrap_or_default();
                check_len(field, &value, max)?;
                Ok(value)
            };
        let event = text("coreos_action.event", &self.event, 20)?;
        let sha256 = text("coreos_action.sha256", &self.sha256, 128)?
            .trim()
            .to_string();
        if !sha256.is_empty() {
            check_base64("coreos_action.sha256", &sha256, Some(32))?;
        }
        Ok(CoreosActionFields {
            event: if event.is_empty() {
                "postinstall".to_string()
            } else {
                event
            },
            chromeos_version: text(
                "coreos_action.chromeos_version",
                &self.chromeos_version,
                255,
            )?,
            sha256,
            needs_admin: self.needs_admin.unwrap_or(false),
            is_delta: self.is_delta.unwrap_or(false),
            disable_payload_backoff: self.disable_payload_backoff.unwrap_or(true),
            metadata_signature_rsa: text(
                "coreos_action.metadata_signature_rsa",
                &self.metadata_signature_rsa,
                1024,
            )?,
            metadata_size: text("coreos_action.metadata_size", &self.metadata_size, 100)?,
            deadline: text("coreos_action.deadline", &self.deadline, 100)?,
        })
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub color: String,
    #[serde(serialize_with = "ser_ts")]
    pub created_ts: i64,
    pub application_id: String,
    pub package_id: Option<String>,
    pub package: Option<Package>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChannelInput {
    pub name: Option<String>,
    pub color: Option<String>,
    /// `Some(None)` (JSON null) clears the package; absent keeps it on update.
    #[serde(default, deserialize_with = "de_double_option")]
    pub package_id: Option<Option<String>>,
}

fn de_double_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::<String>::deserialize(d)?))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelFields {
    pub name: String,
    pub color: String,
    pub package_id: Option<String>,
}

impl ChannelInput {
    /// Validates against the current channel (for updates) or defaults (for creation).
    pub fn validate(&self, current: Option<&Channel>) -> Result<ChannelFields, ValidationError> {
        let name = match (&self.name, current) {
            (None, Some(c)) => c.name.clone(),
            (name, _) => required_name("name", name.as_deref(), CHANNEL_NAME_MAX)?,
        };
        let color = match (&self.color, current) {
            (None, Some(c)) => c.color.clone(),
            (color, _) => color.clone().unwrap_or_default(),
        };
        check_len("color", &color, 25)?;
        let package_id = match (&self.package_id, current) {
            (None, Some(c)) => c.package_id.clone(),
            (None, None) | (Some(None), _) => None,
            (Some(Some(id)), _) if id.is_empty() => None,
            (Some(Some(id)), _) => Some(normalize_uuid("package_id", id)?),
        };
        Ok(ChannelFields {
            name,
            color,
            package_id,
        })
    }
}

/// Instance status counts of a group, CoreRoller's `instances_stats`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct InstancesStats {
    pub total: i64,
    pub undefined: i64,
    pub update_granted: i64,
    pub error: i64,
    pub complete: i64,
    pub installed: i64,
    pub downloaded: i64,
    pub downloading: i64,
    pub onhold: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VersionCount {
    pub version: String,
    pub instances: i64,
    pub percentage: f64,
}

/// The rollout policy of a group, in the units the engine uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutPolicy {
    pub updates_enabled: bool,
    pub safe_mode: bool,
    pub office_hours: bool,
    pub timezone: String,
    pub period_interval_ms: i64,
    pub max_updates_per_period: i64,
    pub update_timeout_ms: i64,
    pub auto_pause_on_failure: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(serialize_with = "ser_ts")]
    pub created_ts: i64,
    pub rollout_in_progress: bool,
    pub application_id: String,
    pub channel_id: Option<String>,
    pub channel: Option<Channel>,
    pub policy_updates_enabled: bool,
    pub policy_safe_mode: bool,
    pub policy_office_hours: bool,
    pub policy_timezone: Option<String>,
    pub policy_period_interval: String,
    pub policy_max_updates_per_period: i64,
    pub policy_update_timeout: String,
    /// Pause the group when the first finished attempt at a version fails.
    pub policy_auto_pause_on_failure: bool,
    /// Seconds sent to clients as `<updatecheck PollInterval>`; 0 sends none.
    pub policy_poll_interval: i64,
    pub track: String,
    pub instances_stats: Option<InstancesStats>,
    pub version_breakdown: Option<Vec<VersionCount>>,
}

impl Group {
    /// The policy in engine units. Stored text was validated on write; unparsable legacy text
    /// falls back to the safest reading (tiny period, short timeout) rather than failing checks.
    pub fn policy(&self) -> RolloutPolicy {
        RolloutPolicy {
            updates_enabled: self.policy_updates_enabled,
            safe_mode: self.policy_safe_mode,
            office_hours: self.policy_office_hours,
            timezone: self.policy_timezone.clone().unwrap_or_default(),
            period_interval_ms: parse_interval(
                "policy_period_interval",
                &self.policy_period_interval,
            )
            .unwrap_or(60_000),
            max_updates_per_period: self.policy_max_updates_per_period,
            update_timeout_ms: parse_interval("policy_update_timeout", &self.policy_update_timeout)
                .unwrap_or(3_600_000),
            auto_pause_on_failure: self.policy_auto_pause_on_failure,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GroupInput {
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "de_double_option")]
    pub channel_id: Option<Option<String>>,
    pub policy_updates_enabled: Option<bool>,
    pub policy_safe_mode: Option<bool>,
    pub policy_office_hours: Option<bool>,
    #[serde(default, deserialize_with = "de_double_option")]
    pub policy_timezone: Option<Option<String>>,
    pub policy_period_interval: Option<String>,
    pub policy_max_updates_per_period: Option<i64>,
    pub policy_update_timeout: Option<String>,
    pub policy_auto_pause_on_failure: Option<bool>,
    pub policy_poll_interval: Option<i64>,
    pub track: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFields {
    pub name: String,
    pub description: String,
    pub channel_id: Option<String>,
    pub policy_updates_enabled: bool,
    pub policy_safe_mode: bool,
    pub policy_office_hours: bool,
    pub policy_timezone: Option<String>,
    pub policy_period_interval: String,
    pub policy_max_updates_per_period: i64,
    pub policy_update_timeout: String,
    pub policy_auto_pause_on_failure: bool,
    pub policy_poll_interval: i64,
    /// `None` on creation means "use the group id", as CoreRoller clients expect.
    pub track: Option<String>,
}

impl GroupInput {
    /// Validates a create (`current = None`, CoreRoller's defaults fill gaps) or a partial update.
    pub fn validate(&self, current: Option<&Group>) -> Result<GroupFields, ValidationError> {
        let name = match (&self.name, current) {
            (None, Some(g)) => g.name.clone(),
            (name, _) => required_name("name", name.as_deref(), 50)?,
        };
        let description = self
            .description
            .clone()
            .or_else(|| current.map(|g| g.description.clone()))
            .unwrap_or_default();
        check_text("description", &description, DESCRIPTION_MAX)?;
        let channel_id = match (&self.channel_id, current) {
            (None, Some(g)) => g.channel_id.clone(),
            (None, None) | (Some(None), _) => None,
            (Some(Some(id)), _) if id.is_empty() => None,
            (Some(Some(id)), _) => Some(normalize_uuid("channel_id", id)?),
        };
        let flag = |v: Option<bool>, cur: Option<bool>, default: bool| v.or(cur).unwrap_or(default);
        let policy_updates_enabled = flag(
            self.policy_updates_enabled,
            current.map(|g| g.policy_updates_enabled),
            true,
        );
        let policy_safe_mode = flag(
            self.policy_safe_mode,
            current.map(|g| g.policy_safe_mode),
            true,
        );
        let policy_office_hours = flag(
            self.policy_office_hours,
            current.map(|g| g.policy_office_hours),
            false,
        );
        let policy_auto_pause_on_failure = flag(
            self.policy_auto_pause_on_failure,
            current.map(|g| g.policy_auto_pause_on_failure),
            true,
        );
        let policy_timezone = match (&self.policy_timezone, current) {
            (None, Some(g)) => g.policy_timezone.clone(),
            (None, None) | (Some(None), _) => None,
            (Some(Some(tz)), _) if tz.trim().is_empty() => None,
            (Some(Some(tz)), _) => Some(parse_timezone("policy_timezone", tz)?.name().to_string()),
        };
        if policy_office_hours && policy_timezone.is_none() {
            return Err(ValidationError::new(
                "policy_timezone",
                "is required when policy_office_hours is on",
            ));
        }
        let policy_period_interval = self
            .policy_period_interval
            .clone()
            .or_else(|| current.map(|g| g.policy_period_interval.clone()))
            .unwrap_or_else(|| "15 minutes".to_string());
        parse_interval("policy_period_interval", &policy_period_interval)?;
        let policy_update_timeout = self
            .policy_update_timeout
            .clone()
            .or_else(|| current.map(|g| g.policy_update_timeout.clone()))
            .unwrap_or_else(|| "60 minutes".to_string());
        parse_interval("policy_update_timeout", &policy_update_timeout)?;
        let policy_max_updates_per_period = self
            .policy_max_updates_per_period
            .or(current.map(|g| g.policy_max_updates_per_period))
            .unwrap_or(1);
        if policy_max_updates_per_period <= 0 || policy_max_updates_per_period > 1_000_000_000 {
            return Err(ValidationError::new(
                "policy_max_updates_per_period",
                "must be between 1 and 1000000000",
            ));
        }
        let policy_poll_interval = self
            .policy_poll_interval
            .or(current.map(|g| g.policy_poll_interval))
            .unwrap_or(0);
        if !(0..=86_400).contains(&policy_poll_interval) {
            return Err(ValidationError::new(
                "policy_poll_interval",
                "must be between 0 and 86400 seconds",
            ));
        }
        let track = match &self.track {
            Some(t) if !t.trim().is_empty() => {
                let t = t.trim();
                check_len("track", t, TRACK_MAX)?;
                // Omaha lookups normalise a UUID-shaped track (braces, case); store it that way
                // so the group is found by what it was given.
                Some(normalize_uuid("track", t).unwrap_or_else(|_| t.to_string()))
            }
            _ => current.map(|g| g.track.clone()),
        };
        Ok(GroupFields {
            name,
            description,
            channel_id,
            policy_updates_enabled,
            policy_safe_mode,
            policy_office_hours,
            policy_timezone,
            policy_period_interval: policy_period_interval.trim().to_string(),
            policy_max_updates_per_period,
            policy_update_timeout: policy_update_timeout.trim().to_string(),
            policy_auto_pause_on_failure,
            policy_poll_interval,
            track,
        })
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InstanceApplication {
    pub instance_id: String,
    pub application_id: String,
    pub group_id: Option<String>,
    pub version: String,
    #[serde(serialize_with = "ser_ts")]
    pub created_ts: i64,
    pub status: Option<i64>,
    #[serde(serialize_with = "ser_ts")]
    pub last_check_for_updates: i64,
    #[serde(serialize_with = "ser_opt_ts")]
    pub last_update_granted_ts: Option<i64>,
    pub last_update_version: Option<String>,
    pub update_in_progress: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub ip: String,
    pub alias: String,
    pub oem: String,
    pub aleph_version: String,
    #[serde(serialize_with = "ser_ts")]
    pub created_ts: i64,
    pub application: Option<InstanceApplication>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatusHistoryEntry {
    pub status: i64,
    pub version: String,
    pub error_code: String,
    #[serde(serialize_with = "ser_ts")]
    pub created_ts: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InstanceEvent {
    pub event_type: i64,
    pub event_result: i64,
    pub previous_version: String,
    pub error_code: String,
    pub description: String,
    #[serde(serialize_with = "ser_ts")]
    pub created_ts: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Activity {
    pub id: i64,
    #[serde(serialize_with = "ser_ts")]
    pub created_ts: i64,
    pub class: i64,
    pub severity: i64,
    pub version: String,
    pub application_id: String,
    pub application_name: String,
    pub group_id: Option<String>,
    pub group_name: Option<String>,
    pub channel_id: Option<String>,
    pub channel_name: Option<String>,
    pub instance_id: Option<String>,
    pub description: String,
}

/// An activity entry about to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewActivity {
    pub class: super::ActivityClass,
    pub severity: super::Severity,
    pub version: String,
    pub application_id: String,
    pub group_id: Option<String>,
    pub channel_id: Option<String>,
    pub instance_id: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub team_id: String,
    #[serde(serialize_with = "ser_ts")]
    pub created_ts: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub user_id: String,
    #[serde(serialize_with = "ser_ts")]
    pub created_ts: i64,
    #[serde(serialize_with = "ser_opt_ts")]
    pub last_used_ts: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_package_example_validates() {
        let input: PackageInput = serde_json::from_str(
            r#"{"type":1,"filename":"update.gz","url":"https://example.com/1122.2.0/","version":"1122.2.0","size":"212555113","hash":"+ZFmPWzv1OdfmKHaGSojbK5Xj3k=","coreos_action":{"sha256":"cSBzKN9Yp6v1pC1Tm3nuAs2rsyaNqR3p0ylH8dyVg1g="}}"#,
        )
        .unwrap();
        let fields = input.validate(super::super::seed::COREOS_APP_ID).unwrap();
        assert_eq!(fields.size, "212555113");
        let action = fields.coreos_action.unwrap();
        assert_eq!(
            action.sha256,
            "cSBzKN9Yp6v1pC1Tm3nuAs2rsyaNqR3p0ylH8dyVg1g="
        );
        assert!(action.disable_payload_backoff);
        assert_eq!(action.event, "postinstall");
    }

    #[test]
    fn group_validation_names_the_field() {
        let bad_tz = GroupInput {
            name: Some("g".into()),
            policy_office_hours: Some(true),
            policy_timezone: Some(Some("Nowhere/Else".into())),
            ..Default::default()
        };
        assert_eq!(bad_tz.validate(None).unwrap_err().field, "policy_timezone");
        let bad_period = GroupInput {
            name: Some("g".into()),
            policy_period_interval: Some("soon".into()),
            ..Default::default()
        };
        assert_eq!(
            bad_period.validate(None).unwrap_err().field,
            "policy_period_interval"
        );
        let zero_max = GroupInput {
            name: Some("g".into()),
            policy_max_updates_per_period: Some(0),
            ..Default::default()
        };
        assert_eq!(
            zero_max.validate(None).unwrap_err().field,
            "policy_max_updates_per_period"
        );
    }

    fn coreos_package() -> serde_json::Value {
        serde_json::json!({"type":1,"filename":"update.gz","url":"https://example.com/1122.2.0/","version":"1122.2.0","size":"212555113","hash":"+ZFmPWzv1OdfmKHaGSojbK5Xj3k=","coreos_action":{"sha256":"cSBzKN9Yp6v1pC1Tm3nuAs2rsyaNqR3p0ylH8dyVg1g="}})
    }

    fn package_error(value: serde_json::Value, app_id: &str) -> String {
        let input: PackageInput = serde_json::from_value(value).unwrap();
        input.validate(app_id).unwrap_err().field
    }

    #[test]
    fn coreos_packages_carry_what_update_engine_needs() {
        let app = "00000000-0000-4000-8000-000000000001";
        for (field, broken) in [
            ("filename", serde_json::json!(null)),
            ("size", serde_json::json!(null)),
            ("size", serde_json::json!("0")),
            ("hash", serde_json::json!(null)),
            ("hash", serde_json::json!("s&<\"")),
            // Hex SHA-1 (Artifactory's form) is not what update_engine compares.
            (
                "hash",
                serde_json::json!("f991663d6cefd4e75f98a1da192a236cae578f79"),
            ),
            ("coreos_action", serde_json::json!(null)),
            ("coreos_action", serde_json::json!({"sha256": ""})),
            (
                "coreos_action",
                serde_json::json!({"sha256": "+ZFmPWzv1OdfmKHaGSojbK5Xj3k="}),
            ),
            ("url", serde_json::json!("javascript:alert(1)")),
            ("url", serde_json::json!("https://example.com/update.gz")),
        ] {
            let mut value = coreos_package();
            value[field] = broken.clone();
            let expected = if field == "coreos_action" {
                "coreos_action.sha256"
            } else {
                field
            };
            assert_eq!(package_error(value, app), expected, "{field} = {broken}");
        }
        let mut other = coreos_package();
        other["type"] = serde_json::json!(4);
        assert_eq!(
            package_error(other.clone(), super::super::seed::COREOS_APP_ID),
            "type"
        );
        let input: PackageInput = serde_json::from_value(other).unwrap();
        assert!(input.validate(app).is_ok());
    }

    #[test]
    fn any_package_has_base64_digests_and_a_safe_url() {
        let app = "00000000-0000-4000-8000-000000000001";
        let base = serde_json::json!({"type": 4, "version": "1.0.0", "url": "https://dl.example/"});
        for (field, value, bad) in [
            ("hash", serde_json::json!("aGFzaA=="), false),
            ("hash", serde_json::json!("s&<\""), true),
            ("url", serde_json::json!("javascript:alert(1)"), true),
            ("url", serde_json::json!("ftp://x/"), true),
            ("url", serde_json::json!("http://"), true),
            (
                "size",
                serde_json::json!("0000000000000000000000000000000000042"),
                false,
            ),
            ("coreos_action", serde_json::json!({"sha256": "zz"}), true),
            ("filename", serde_json::json!("a\u{0}b"), true),
        ] {
            let mut v = base.clone();
            v[field] = value.clone();
            let input: PackageInput = serde_json::from_value(v).unwrap();
            assert_eq!(input.validate(app).is_err(), bad, "{field} = {value}");
        }
        // Sizes are stored as their number, so any accepted text fits the column.
        let mut v = base.clone();
        v["size"] = serde_json::json!("+0042");
        let input: PackageInput = serde_json::from_value(v).unwrap();
        assert_eq!(input.validate(app).unwrap().size, "42");
        // Container packages name their repository in `url`.
        let mut docker = base.clone();
        docker["type"] = serde_json::json!(2);
        for (url, ok) in [
            ("127.0.0.1:5000/demo/web", true),
            ("docker.io/library/nginx", true),
            ("https://hub.docker.com/r/library/nginx", true),
            ("javascript:alert(1)", false),
            ("javascript:alert", false),
        ] {
            docker["url"] = serde_json::json!(url);
            let input: PackageInput = serde_json::from_value(docker.clone()).unwrap();
            assert_eq!(input.validate(app).is_ok(), ok, "{url}");
        }
    }

    #[test]
    fn names_refuse_control_characters() {
        let app = ApplicationInput {
            name: Some("x\u{0}y".into()),
            ..Default::default()
        };
        assert_eq!(app.validate().unwrap_err().field, "name");
        let described = ApplicationInput {
            name: Some("x".into()),
            description: Some("line one\n\tline two\r\n".into()),
            ..Default::default()
        };
        assert!(described.validate().is_ok());
        let group = GroupInput {
            name: Some("g".into()),
            track: Some("a\u{1b}[31m".into()),
            ..Default::default()
        };
        assert_eq!(group.validate(None).unwrap_err().field, "track");
        let channel = ChannelInput {
            name: Some("c\u{7f}".into()),
            ..Default::default()
        };
        assert_eq!(channel.validate(None).unwrap_err().field, "name");
    }

    #[test]
    fn tracks_fit_their_column_and_uuids_are_normalised() {
        let group = |track: String| GroupInput {
            name: Some("g".into()),
            track: Some(track),
            ..Default::default()
        };
        assert!(group("a".repeat(TRACK_MAX)).validate(None).is_ok());
        assert_eq!(
            group("a".repeat(TRACK_MAX + 1))
                .validate(None)
                .unwrap_err()
                .field,
            "track"
        );
        let fields = group("{9A2DEB70-37BE-4026-853F-BFDD6B347BBE}".into())
            .validate(None)
            .unwrap();
        assert_eq!(
            fields.track.as_deref(),
            Some("9a2deb70-37be-4026-853f-bfdd6b347bbe")
        );
    }

    #[test]
    fn digests_are_checked() {
        assert!(is_digest(&format!("sha256:{}", "a".repeat(64))));
        assert!(!is_digest("sha256:xyz"));
        assert!(!is_digest(&"a".repeat(71)));
    }
}
