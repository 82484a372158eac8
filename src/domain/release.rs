//! Releases and bindings: the one value every source produces ([`Release`]) and the rule that maps
//! a source selector to an application and a channel ([`Binding`]). Also the pure helpers the
//! ingest step needs: tag filters, version derivation from Docker tags, repository normalisation.

use serde::{Deserialize, Serialize};

use super::{normalize_uuid, ValidationError, Version};

/// Where a release came from; also the `kind` of a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Dockerhub,
    Registry,
    Artifactory,
    Generic,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dockerhub => "dockerhub",
            Self::Registry => "registry",
            Self::Artifactory => "artifactory",
            Self::Generic => "generic",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "dockerhub" => Self::Dockerhub,
            "registry" => Self::Registry,
            "artifactory" => Self::Artifactory,
            "generic" => Self::Generic,
            _ => return None,
        })
    }
}

/// What a package points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Artifact {
    /// A container image: `repository` without tag (e.g. `127.0.0.1:5000/demo/web`).
    Image {
        repository: String,
        tag: String,
        digest: Option<String>,
    },
    /// A downloadable payload (Omaha `codebase` + `name`).
    Download {
        url: String,
        filename: String,
        size: Option<u64>,
        /// SHA-1, base64, as Omaha's `hash` attribute carries it.
        sha1_base64: Option<String>,
        /// SHA-256, base64, as update_engine's postinstall action carries it (CoreOS payloads).
        sha256_base64: Option<String>,
    },
}

/// A file shipped with a release (unit file, etcd2 keys, README), stored with the package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFile {
    pub name: String,
    pub content: Vec<u8>,
}

/// Where an unbound release goes when its source needs no configuration (the Artifactory poller
/// behaves like artifactory-monitor: application named after the metadata, channel after the
/// environment, both created on first sight).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZeroConfigTarget {
    pub application_name: String,
    pub channel_name: String,
}

/// A release as a source saw it, before any lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub source: SourceKind,
    /// The binding `match` key: Docker Hub `repo_name`, registry repository (with host), Artifactory
    /// app folder, or generic webhook name.
    pub selector: String,
    /// Deduplicates replays of one delivery (event id, delivery header, payload hash).
    pub delivery_key: Option<String>,
    /// The tag or version as the source gave it.
    pub tag: String,
    pub artifact: Artifact,
    /// Generic webhooks may name the application (id or name) and channel (id or name) directly.
    pub requested_app: Option<String>,
    pub requested_channel: Option<String>,
    pub zero_config: Option<ZeroConfigTarget>,
    pub description: String,
    /// Source-specific metadata kept with the package (JSON object).
    pub metadata: Option<serde_json::Value>,
    pub files: Vec<ReleaseFile>,
}

/// A stored binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binding {
    pub id: String,
    pub application_id: String,
    pub kind: SourceKind,
    #[serde(rename = "match")]
    pub match_value: String,
    pub channel_id: Option<String>,
    pub tag_filter: String,
    pub allow_prerelease: bool,
    /// The secret itself is never serialized.
    #[serde(skip)]
    pub secret: Option<String>,
    pub has_secret: bool,
    #[serde(serialize_with = "super::model::ser_ts")]
    pub created_ts: i64,
}

/// A binding as the API receives it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingInput {
    pub kind: Option<String>,
    #[serde(rename = "match")]
    pub match_value: Option<String>,
    #[serde(default)]
    pub channel_id: Option<String>,
    #[serde(default)]
    pub tag_filter: Option<String>,
    #[serde(default)]
    pub allow_prerelease: Option<bool>,
    /// `null`/absent keeps the current secret on update; `""` removes it.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    #[serde(default)]
    pub application_id: Option<serde_json::Value>,
    #[serde(default)]
    pub has_secret: Option<serde_json::Value>,
    #[serde(default)]
    pub created_ts: Option<serde_json::Value>,
}

/// A validated binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingFields {
    pub kind: SourceKind,
    pub match_value: String,
    pub channel_id: Option<String>,
    pub tag_filter: String,
    pub allow_prerelease: bool,
    /// `None`: keep (update) / none (create); `Some(None)`: remove; `Some(Some(s))`: set.
    pub secret: Option<Option<String>>,
}

impl BindingInput {
    pub fn validate(&self, current: Option<&Binding>) -> Result<BindingFields, ValidationError> {
        let kind_text = self
            .kind
            .clone()
            .or_else(|| current.map(|b| b.kind.as_str().to_string()))
            .ok_or_else(|| ValidationError::new("kind", "is required"))?;
        let kind = SourceKind::parse(kind_text.trim()).ok_or_else(|| {
            ValidationError::new(
                "kind",
                "must be one of dockerhub, registry, artifactory, generic",
            )
        })?;
        let raw_match = self
            .match_value
            .clone()
            .or_else(|| current.map(|b| b.match_value.clone()))
            .ok_or_else(|| ValidationError::new("match", "is required"))?;
        let match_value = normalize_selector(kind, &raw_match)
            .map_err(|message| ValidationError::new("match", message))?;
        let channel_id = match &self.channel_id {
            Some(id) if !id.trim().is_empty() => Some(normalize_uuid("channel_id", id)?),
            Some(_) => None,
            None => current.and_then(|b| b.channel_id.clone()),
        };
        let tag_filter = self
            .tag_filter
            .clone()
            .or_else(|| current.map(|b| b.tag_filter.clone()))
            .unwrap_or_default()
            .trim()
            .to_string();
        TagFilter::parse(&tag_filter).map_err(|m| ValidationError::new("tag_filter", m))?;
        let allow_prerelease = self
            .allow_prerelease
            .or_else(|| current.map(|b| b.allow_prerelease))
            .unwrap_or(false);
        let secret = match &self.secret {
            None => None,
            Some(s) if s.is_empty() => Some(None),
            Some(s) => {
                if s.len() < 16 {
                    return Err(ValidationError::new(
                        "secret",
                        "must be at least 16 characters (it authenticates webhooks)",
                    ));
                }
                if s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(ValidationError::new(
                        "secret",
                        "must be at most 255 printable ASCII characters without spaces",
                    ));
                }
                Some(Some(s.clone()))
            }
        };
        Ok(BindingFields {
            kind,
            match_value,
            channel_id,
            tag_filter,
            allow_prerelease,
            secret,
        })
    }
}

/// Normalises a binding's `match` for its kind so that equal things compare equal.
pub fn normalize_selector(kind: SourceKind, raw: &str) -> Result<String, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err("is required".into());
    }
    if text.len() > 255 {
        return Err("longer than 255 characters".into());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    match kind {
        SourceKind::Dockerhub => normalize_hub_repository(text),
        SourceKind::Registry => {
            let lower = text.to_ascii_lowercase();
            if lower.contains("//") || lower.starts_with('/') || lower.ends_with('/') {
                return Err("must be a repository like registry.example:5000/team/app".into());
            }
            Ok(lower)
        }
        SourceKind::Artifactory => {
            let name = text.trim_matches('/');
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err("must be one Artifactory folder name".into());
            }
            Ok(name.to_string())
        }
        SourceKind::Generic => {
            if !text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err("must use only letters, digits, '-', '_' and '.'".into());
            }
            Ok(text.to_string())
        }
    }
}

/// Docker Hub repository names: `nginx` ≡ `library/nginx` ≡ `docker.io/library/nginx`
/// ≡ `index.docker.io/library/nginx`; always `namespace/name`, lower case.
pub fn normalize_hub_repository(raw: &str) -> Result<String, String> {
    let lower = raw.trim().to_ascii_lowercase();
    // Distribution's limit for a repository name (and the longest binding `match`).
    if lower.len() > 255 {
        return Err("longer than 255 characters".into());
    }
    let stripped = ["docker.io/", "index.docker.io/", "registry-1.docker.io/"]
        .iter()
        .find_map(|prefix| lower.strip_prefix(prefix))
        .unwrap_or(&lower);
    let parts: Vec<&str> = stripped.split('/').collect();
    let valid_part = |p: &str| {
        !p.is_empty()
            && p.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            })
    };
    match parts.as_slice() {
        [name] if valid_part(name) => Ok(format!("library/{name}")),
        [namespace, name] if valid_part(namespace) && valid_part(name) => {
            Ok(format!("{namespace}/{name}"))
        }
        _ => Err(format!(
            "{raw:?} is not a Docker Hub repository (namespace/name)"
        )),
    }
}

/// A binding's tag filter: empty (everything), a glob (`v*`, `release-?.*`), or a semver range
/// (`>=1.0.0 <2.0.0`, `^1.2`, `~1.4`; space- or comma-separated comparators).
#[derive(Debug, Clone)]
pub enum TagFilter {
    All,
    Glob(glob::Pattern),
    Range(semver::VersionReq),
}

impl TagFilter {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self::All);
        }
        if text.len() > 255 {
            return Err("longer than 255 characters".into());
        }
        if text.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        let looks_like_range = text.starts_with(['<', '>', '=', '^', '~']);
        if looks_like_range {
            let comparators = text
                .split([' ', ','])
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            return semver::VersionReq::parse(&comparators)
                .map(Self::Range)
                .map_err(|e| format!("{text:?} is not a semver range ({e})"));
        }
        glob::Pattern::new(text)
            .map(Self::Glob)
            .map_err(|e| format!("{text:?} is not a glob pattern ({e})"))
    }

    /// Whether a release with this tag (and derived version, if any) passes.
    pub fn matches(&self, tag: &str, version: Option<&Version>) -> bool {
        match self {
            Self::All => true,
            Self::Glob(pattern) => pattern.matches(tag),
            Self::Range(req) => version.is_some_and(|v| {
                // Compare as a release: a range says which releases, `allow_prerelease` says
                // whether pre-releases of them count (semver's own rule would hide most).
                let mut plain = v.semver().clone();
                plain.pre = semver::Prerelease::EMPTY;
                plain.build = semver::BuildMetadata::EMPTY;
                req.matches(&plain)
            }),
        }
    }
}

/// The version a tag stands for: `1.2.3` and `v1.2.3` are versions; `latest`, `main` are not.
pub fn version_from_tag(tag: &str) -> Option<Version> {
    let trimmed = tag.trim();
    let bare = trimmed
        .strip_prefix('v')
        .or_else(|| trimmed.strip_prefix('V'))
        .unwrap_or(trimmed);
    Version::parse(bare).ok()
}

/// A version for a mutable tag (`latest`): the patch after `previous`, with the tag and a short
/// digest (or the push time) as build metadata so operators can tell what it was. It orders after
/// `previous` and after every earlier generated version.
pub fn generated_version(
    previous: Option<&Version>,
    tag: &str,
    digest: Option<&str>,
    now_ms: i64,
) -> Version {
    let base = previous
        .map(|v| {
            let s = v.semver();
            (s.major, s.minor, s.patch.saturating_add(1))
        })
        .unwrap_or((0, 0, 1));
    let tag_part: String = tag
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let tag_part = if tag_part.is_empty() {
        "tag".to_string()
    } else {
        tag_part
    };
    let suffix = match digest.and_then(|d| d.strip_prefix("sha256:")) {
        Some(hex) => hex.chars().take(12).collect::<String>(),
        None => format!("t{}", now_ms.max(0) / 1000),
    };
    let text = format!("{}.{}.{}+{tag_part}.{suffix}", base.0, base.1, base.2);
    // Only ASCII alphanumerics, '-' and '.' went in, so this parses; fall back defensively.
    Version::parse(&text).unwrap_or_else(|_| {
        Version::parse(&format!("{}.{}.{}", base.0, base.1, base.2))
            .unwrap_or_else(|_| Version::parse("0.0.1").expect("literal version parses"))
    })
}

/// Splits an image reference `host:port/ns/name:tag@sha256:...` into (repository, tag, digest).
/// The tag defaults to `latest` when neither tag nor digest is given.
pub fn parse_image_reference(
    reference: &str,
) -> Result<(String, Option<String>, Option<String>), String> {
    let reference = reference.trim();
    if reference.is_empty() || reference.len() > 512 {
        return Err("image reference must be 1 to 512 characters".into());
    }
    if reference
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("image reference must not contain spaces".into());
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((r, d)) => {
            if !super::model::is_digest(d) {
                return Err(format!("{d:?} is not a sha256 digest"));
            }
            (r, Some(d.to_string()))
        }
        None => (reference, None),
    };
    // A ':' after the last '/' separates the tag; one before it is a registry port.
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (repository, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (
            &rest[..last_slash + i],
            Some(rest[last_slash + i + 1..].to_string()),
        ),
        None => (rest, None),
    };
    if repository.is_empty() || repository.ends_with('/') || repository.starts_with('/') {
        return Err(format!("{reference:?} has no repository"));
    }
    if !repository
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b))
    {
        return Err(format!("{repository:?} is not an image repository"));
    }
    if let Some(t) = &tag {
        if t.is_empty()
            || t.len() > 128
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err("image tag must be 1 to 128 letters, digits, '.', '_' or '-'".into());
        }
    }
    Ok((repository.to_ascii_lowercase(), tag, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names_normalise() {
        for raw in [
            "nginx",
            "library/nginx",
            "docker.io/library/nginx",
            "index.docker.io/library/nginx",
        ] {
            assert_eq!(normalize_hub_repository(raw).unwrap(), "library/nginx");
        }
        assert_eq!(
            normalize_hub_repository("Notarock/Portfolio-NG").unwrap(),
            "notarock/portfolio-ng"
        );
        assert!(normalize_hub_repository("a/b/c").is_err());
        assert!(normalize_hub_repository("acme/").is_err());
    }

    #[test]
    fn tag_filters() {
        let all = TagFilter::parse("").unwrap();
        assert!(all.matches("latest", None));
        let glob = TagFilter::parse("v*").unwrap();
        assert!(glob.matches("v1.2.3", version_from_tag("v1.2.3").as_ref()));
        assert!(!glob.matches("1.2.3", None));
        let range = TagFilter::parse(">=1.0.0 <2.0.0").unwrap();
        assert!(range.matches("1.5.0", version_from_tag("1.5.0").as_ref()));
        assert!(range.matches("1.5.0-rc.1", version_from_tag("1.5.0-rc.1").as_ref()));
        assert!(!range.matches("2.0.0", version_from_tag("2.0.0").as_ref()));
        assert!(!range.matches("latest", None));
        assert!(TagFilter::parse(">=banana").is_err());
        assert!(TagFilter::parse("[").is_err());
    }

    #[test]
    fn versions_from_tags() {
        assert_eq!(version_from_tag("v1.2.3").unwrap().as_str(), "1.2.3");
        assert_eq!(version_from_tag("1.0.10-1").unwrap().as_str(), "1.0.10-1");
        assert!(version_from_tag("latest").is_none());
        assert!(version_from_tag("1.2").is_none());
    }

    #[test]
    fn generated_versions_order_after_the_previous_one() {
        let prev = Version::parse("1.4.2").unwrap();
        let next = generated_version(
            Some(&prev),
            "latest",
            Some(&format!("sha256:{}", "a".repeat(64))),
            0,
        );
        assert_eq!(next.as_str(), "1.4.3+latest.aaaaaaaaaaaa");
        assert!(next > prev);
        let again = generated_version(Some(&next), "latest", None, 1_700_000_000_000);
        assert!(again > next);
        assert_eq!(again.as_str(), "1.4.4+latest.t1700000000");
        assert_eq!(
            generated_version(None, "feature/x", None, 0).as_str(),
            "0.0.1+feature-x.t0"
        );
    }

    #[test]
    fn image_references() {
        assert_eq!(
            parse_image_reference("127.0.0.1:5000/demo/web:1.1.0").unwrap(),
            ("127.0.0.1:5000/demo/web".into(), Some("1.1.0".into()), None)
        );
        assert_eq!(
            parse_image_reference("127.0.0.1:5000/demo/web").unwrap(),
            ("127.0.0.1:5000/demo/web".into(), None, None)
        );
        let digest = format!("sha256:{}", "b".repeat(64));
        assert_eq!(
            parse_image_reference(&format!("acme/web:2@{digest}")).unwrap(),
            ("acme/web".into(), Some("2".into()), Some(digest))
        );
        assert!(parse_image_reference("acme/web@sha256:zz").is_err());
        assert!(parse_image_reference(":1.0").is_err());
        assert!(parse_image_reference("a b").is_err());
    }

    #[test]
    fn binding_validation() {
        let input = BindingInput {
            kind: Some("dockerhub".into()),
            match_value: Some("docker.io/Notarock/portfolio-ng".into()),
            tag_filter: Some(">=1.0.0 <2.0.0".into()),
            ..Default::default()
        };
        let f = input.validate(None).unwrap();
        assert_eq!(f.match_value, "notarock/portfolio-ng");
        assert_eq!(f.kind, SourceKind::Dockerhub);
        let bad = BindingInput {
            kind: Some("ftp".into()),
            match_value: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(bad.validate(None).unwrap_err().field, "kind");
        let short_secret = BindingInput {
            kind: Some("generic".into()),
            match_value: Some("ci".into()),
            secret: Some("short".into()),
            ..Default::default()
        };
        assert_eq!(short_secret.validate(None).unwrap_err().field, "secret");
    }
}
