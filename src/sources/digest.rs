//! Resolves a tag to its manifest digest through the registry API (`HEAD /v2/<name>/manifests/<tag>`,
//! `Docker-Content-Digest`), following the anonymous bearer-token challenge Docker Hub uses. Used to
//! tell whether a push of a mutable tag (`latest`) changed anything.

use std::time::Duration;

const ACCEPT: &str = "application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";

const TIMEOUT: Duration = Duration::from_secs(5);

/// The digest of `repository:tag` at `registry` (e.g. `https://registry-1.docker.io`), or `None`
/// when the registry cannot be reached or does not say. Errors are logged, never fatal: the push
/// itself then counts as a new release.
pub async fn resolve(
    client: &reqwest::Client,
    registry: &str,
    repository: &str,
    tag: &str,
) -> Option<String> {
    if registry.eq_ignore_ascii_case("off") || registry.is_empty() {
        return None;
    }
    let url = format!(
        "{}/v2/{repository}/manifests/{tag}",
        registry.trim_end_matches('/')
    );
    let first = client
        .head(&url)
        .header("accept", ACCEPT)
        .timeout(TIMEOUT)
        .send()
        .await;
    let response = match first {
        Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {
            let challenge = r
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)?;
            let token = fetch_token(client, &challenge).await?;
            client
                .head(&url)
                .header("accept", ACCEPT)
                .bearer_auth(token)
                .timeout(TIMEOUT)
                .send()
                .await
                .ok()?
        }
        Ok(r) => r,
        Err(e) => {
            tracing::info!(error = %e, registry, repository, "registry not reachable for a digest lookup");
            return None;
        }
    };
    if !response.status().is_success() {
        tracing::info!(status = %response.status(), repository, tag, "registry gave no digest");
        return None;
    }
    response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .filter(|d| crate::domain::model::is_digest(d))
        .map(str::to_string)
}

/// `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:x:pull"`.
async fn fetch_token(client: &reqwest::Client, challenge: &str) -> Option<String> {
    let params = challenge.strip_prefix("Bearer ")?;
    let mut realm = None;
    let mut query = Vec::new();
    for part in params.split(',') {
        let (key, value) = part.trim().split_once('=')?;
        let value = value.trim_matches('"').to_string();
        match key {
            "realm" => realm = Some(value),
            "service" | "scope" => query.push((key.to_string(), value)),
            _ => {}
        }
    }
    let realm = realm?;
    if !realm.starts_with("https://") && !realm.starts_with("http://") {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct TokenReply {
        token: Option<String>,
        access_token: Option<String>,
    }
    let reply: TokenReply = client
        .get(&realm)
        .query(&query)
        .timeout(TIMEOUT)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    reply.token.or(reply.access_token)
}
