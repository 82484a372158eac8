//! Docker registry (distribution) notifications: the envelope of events, of which only manifest
//! pushes with a tag are releases (blob pushes and pulls are noise).

use serde::Deserialize;

use crate::domain::{Artifact, Release, SourceKind};

#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub target: Option<Target>,
    #[serde(default)]
    pub request: Option<RequestInfo>,
    #[serde(default)]
    pub actor: Option<Actor>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Target {
    #[serde(default, rename = "mediaType")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RequestInfo {
    #[serde(default)]
    pub host: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Actor {
    #[serde(default)]
    pub name: Option<String>,
}

/// Manifest media types: a push of one of these (with a tag) is a release.
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Longest repository name with its host (distribution's `NameTotalLengthMax`).
pub const MAX_REPOSITORY_LEN: usize = 255;

/// Upper bound on events per envelope (the registry sends one; batching is allowed).
pub const MAX_EVENTS: usize = 1000;

/// What one event became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Release(Box<Release>),
    /// Not a release (pull, blob, untagged manifest, ...), with the reason.
    Skipped(String),
    /// A manifest push that cannot be a release as sent (invalid digest, name too long).
    Invalid(String),
}

pub fn parse_envelope(body: &[u8]) -> Result<Envelope, String> {
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| format!("not a registry notification envelope: {e}"))?;
    if envelope.events.len() > MAX_EVENTS {
        return Err(format!("more than {MAX_EVENTS} events in one envelope"));
    }
    Ok(envelope)
}

/// Turns one event into a release when it is a tagged manifest push.
pub fn classify(event: &Event) -> EventKind {
    if event.action.as_deref() != Some("push") {
        return EventKind::Skipped(format!(
            "action {:?}",
            event.action.as_deref().unwrap_or("")
        ));
    }
    let Some(target) = &event.target else {
        return EventKind::Skipped("no target".into());
    };
    let media_type = target.media_type.as_deref().unwrap_or("");
    if !MANIFEST_TYPES.contains(&media_type) {
        return EventKind::Skipped(format!("media type {media_type:?} is not a manifest"));
    }
    let Some(tag) = target.tag.as_deref().filter(|t| !t.is_empty()) else {
        return EventKind::Skipped("manifest pushed by digest (no tag)".into());
    };
    let valid_tag = tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !valid_tag {
        return EventKind::Skipped(format!("tag {tag:?} is not a Docker tag"));
    }
    let Some(repo) = target.repository.as_deref().filter(|r| valid_repository(r)) else {
        return EventKind::Skipped("missing or invalid target.repository".into());
    };
    // The digest is the release's identity (dedupe, re-push detection): a malformed one is
    // refused, as the generic webhook does, rather than dropped.
    let digest = match target.digest.as_deref().filter(|d| !d.is_empty()) {
        Some(d) if crate::domain::model::is_digest(d) => Some(d.to_string()),
        Some(d) => {
            return EventKind::Invalid(format!(
                "target.digest {:?} must look like sha256:<64 hex>",
                d.chars().take(80).collect::<String>()
            ))
        }
        None => None,
    };
    let host = event
        .request
        .as_ref()
        .and_then(|r| r.host.as_deref())
        .filter(|h| valid_host(h));
    // The repository never carries the registry host; the request does.
    let repository = match host {
        Some(h) => format!("{}/{}", h.to_ascii_lowercase(), repo.to_ascii_lowercase()),
        None => repo.to_ascii_lowercase(),
    };
    // Distribution's own limit for a name with its host, and the longest binding `match`.
    if repository.len() > MAX_REPOSITORY_LEN {
        return EventKind::Invalid(format!(
            "repository {repository:?} is longer than {MAX_REPOSITORY_LEN} characters with its host"
        ));
    }
    let actor = event
        .actor
        .as_ref()
        .and_then(|a| a.name.clone())
        .unwrap_or_default();
    EventKind::Release(Box::new(Release {
        source: SourceKind::Registry,
        selector: repository.clone(),
        // The digest is the release's identity; the event id only identifies this delivery.
        delivery_key: match (&digest, &event.id) {
            (Some(d), _) => Some(format!("{repository}:{tag}@{d}")),
            (None, Some(id)) => Some(format!("event:{id}")),
            (None, None) => None,
        },
        tag: tag.to_string(),
        artifact: Artifact::Image {
            repository,
            tag: tag.to_string(),
            digest,
        },
        requested_app: None,
        requested_channel: None,
        zero_config: None,
        description: if actor.is_empty() {
            "pushed to the registry".to_string()
        } else {
            format!("pushed to the registry by {actor}")
        },
        metadata: Some(serde_json::json!({ "event_id": event.id, "media_type": media_type })),
        files: Vec::new(),
    }))
}

fn valid_repository(repo: &str) -> bool {
    // Distribution's grammar: path components of [a-z0-9] separated by [._-], joined by '/'.
    repo.len() <= 255
        && repo.split('/').all(|part| {
            let bytes = part.as_bytes();
            !bytes.is_empty()
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        })
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_push_with_tag_is_a_release() {
        let body = include_bytes!("../../fixtures/webhooks/registry-push.json");
        let envelope = parse_envelope(body).unwrap();
        let kinds: Vec<EventKind> = envelope.events.iter().map(classify).collect();
        let releases: Vec<&Release> = kinds
            .iter()
            .filter_map(|k| match k {
                EventKind::Release(r) => Some(r.as_ref()),
                EventKind::Skipped(_) | EventKind::Invalid(_) => None,
            })
            .collect();
        assert_eq!(releases.len(), 1, "{kinds:?}");
        let r = releases[0];
        assert_eq!(r.selector, "127.0.0.1:5000/demo/web");
        assert_eq!(r.tag, "1.1.0");
        match &r.artifact {
            Artifact::Image { digest, .. } => {
                assert!(digest.as_deref().unwrap().starts_with("sha256:"))
            }
            other => panic!("{other:?}"),
        }
    }

    fn push(repository: &str, tag: &str, digest: &str) -> Event {
        let body = serde_json::json!({"events": [{
            "id": "e1", "action": "push",
            "target": {"mediaType": MANIFEST_TYPES[0], "repository": repository, "tag": tag, "digest": digest},
            "request": {"host": "registry.example.com:5000"}
        }]});
        parse_envelope(body.to_string().as_bytes())
            .unwrap()
            .events
            .remove(0)
    }

    #[test]
    fn invalid_digests_and_overlong_names_are_refused() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(
            classify(&push("team/web", "1.0.0", &good)),
            EventKind::Release(_)
        ));
        for digest in ["sha256:zz", "md5:00", &format!("sha256:{}", "A".repeat(64))] {
            assert!(
                matches!(classify(&push("team/web", "1.0.0", digest)), EventKind::Invalid(ref m) if m.contains("target.digest")),
                "{digest}"
            );
        }
        // 25 characters of host + '/' + 229 = 255: fits; one more does not.
        let fits = format!("team/{}", "r".repeat(224));
        assert!(matches!(
            classify(&push(&fits, "1.0.0", &good)),
            EventKind::Release(_)
        ));
        let long = format!("team/{}", "r".repeat(225));
        assert!(matches!(
            classify(&push(&long, "1.0.0", &good)),
            EventKind::Invalid(_)
        ));
    }

    #[test]
    fn hostile_envelopes() {
        assert!(parse_envelope(b"{}").is_err());
        assert!(parse_envelope(b"{\"events\": 3}").is_err());
        let many = format!("{{\"events\": [{}]}}", vec!["{}"; MAX_EVENTS + 1].join(","));
        assert!(parse_envelope(many.as_bytes()).is_err());
        let evil = br#"{"events":[{"action":"push","target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","repository":"../x","tag":"1.0.0"}}]}"#;
        let env = parse_envelope(evil).unwrap();
        assert!(matches!(classify(&env.events[0]), EventKind::Skipped(_)));
    }
}
