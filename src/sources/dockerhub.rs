//! Docker Hub push webhooks: the payload (parsed leniently: Hub's deliveries changed shape over the
//! years), the release it describes, and the reply Hub expects at `callback_url`.

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::domain::release::normalize_hub_repository;
use crate::domain::{Artifact, Release, SourceKind};

/// The fields of a Docker Hub push payload rollbridge reads; everything else is ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct HubPayload {
    #[serde(default)]
    pub callback_url: Option<String>,
    pub push_data: PushData,
    pub repository: Repository,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PushData {
    pub tag: String,
    #[serde(default)]
    pub pusher: Option<String>,
    /// Seconds since the epoch; integer or float depending on the era of the delivery.
    #[serde(default)]
    pub pushed_at: Option<serde_json::Number>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub repo_name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub repo_url: Option<String>,
}

/// Parses a delivery and turns it into a release. `body` is the raw request body (its hash is the
/// delivery key: Hub has no delivery id, and a replay is byte-identical).
pub fn release_from_payload(body: &[u8]) -> Result<(Release, HubPayload), String> {
    let payload: HubPayload =
        serde_json::from_slice(body).map_err(|e| format!("not a Docker Hub push payload: {e}"))?;
    let raw_name = match (
        &payload.repository.repo_name,
        &payload.repository.namespace,
        &payload.repository.name,
    ) {
        (Some(full), _, _) if !full.trim().is_empty() => full.clone(),
        (_, Some(ns), Some(name)) => format!("{ns}/{name}"),
        _ => return Err("repository.repo_name is missing".into()),
    };
    let repository =
        normalize_hub_repository(&raw_name).map_err(|e| format!("repository.repo_name: {e}"))?;
    let tag = payload.push_data.tag.trim().to_string();
    if tag.is_empty()
        || tag.len() > 128
        || !tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(format!(
            "push_data.tag {:?} is not a Docker tag",
            payload.push_data.tag
        ));
    }
    let pusher = payload.push_data.pusher.clone().unwrap_or_default();
    let release = Release {
        source: SourceKind::Dockerhub,
        selector: repository.clone(),
        delivery_key: Some(hex::encode(Sha256::digest(body))),
        tag: tag.clone(),
        artifact: Artifact::Image {
            // Pull reference for the agent: Docker Hub images live at docker.io/<ns>/<name>.
            repository: format!("docker.io/{repository}"),
            tag,
            digest: None,
        },
        requested_app: None,
        requested_channel: None,
        zero_config: None,
        description: if pusher.is_empty() {
            "pushed to Docker Hub".to_string()
        } else {
            format!("pushed to Docker Hub by {pusher}")
        },
        metadata: Some(serde_json::json!({
            "pusher": pusher,
            "pushed_at": payload.push_data.pushed_at,
            "repo_url": payload.repository.repo_url,
        })),
        files: Vec::new(),
    };
    Ok((release, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gopdater_readme_payload_is_accepted() {
        let body = include_bytes!("../../fixtures/webhooks/dockerhub-push.json");
        let (release, payload) = release_from_payload(body).unwrap();
        assert_eq!(release.selector, "notarock/portfolio-ng");
        assert_eq!(release.tag, "latest");
        assert_eq!(
            payload.callback_url.as_deref(),
            Some("https://registry.hub.docker.com/u/notarock/portfolio-ng/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/")
        );
        match release.artifact {
            Artifact::Image { repository, .. } => {
                assert_eq!(repository, "docker.io/notarock/portfolio-ng")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_payloads_are_refused() {
        for body in [
            &b"{}"[..],
            b"[]",
            b"not json",
            br#"{"push_data":{"tag":"a b"},"repository":{"repo_name":"x/y"}}"#,
            br#"{"push_data":{"tag":"1.0"},"repository":{"repo_name":"../../etc"}}"#,
            br#"{"push_data":{"tag":"1.0"},"repository":{}}"#,
        ] {
            assert!(
                release_from_payload(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
