//! How the agent talks to rollbridge: over HTTP (remote agent: Omaha endpoint plus a few REST
//! calls, authenticated with an API token) or in-process (embedded agent: the same Omaha
//! handler and store, no network hop). Both speak the same Omaha documents, built with
//! `omaha::protocol::Request::to_xml` and read with `parse_response`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::Context as _;

use super::matching::normalize_repository;
use super::report::ContainerReport;
use crate::domain::{normalize_uuid, PackageType};
use crate::http::AppState;
use crate::omaha::protocol::{self, ParsedResponse, Request};

/// Largest REST answer the agent reads (the application list of a big installation fits).
const MAX_REST_BYTES: usize = 8 * 1024 * 1024;

/// The agent's view of an application's groups: what it may send as `track`.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub id: String,
    pub track: String,
}

pub enum Server {
    Remote {
        http: reqwest::Client,
        /// Without a trailing slash.
        base: String,
        token: String,
    },
    Local {
        state: AppState,
    },
}

impl Server {
    pub fn remote(base: &str, token: &str) -> anyhow::Result<Self> {
        let url =
            reqwest::Url::parse(base).with_context(|| format!("--server {base:?} is not a URL"))?;
        anyhow::ensure!(
            matches!(url.scheme(), "http" | "https"),
            "--server must be an http:// or https:// URL"
        );
        anyhow::ensure!(
            !token.trim().is_empty(),
            "an API token is required (--token or ROLLBRIDGE_AGENT_TOKEN)"
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("rollbridge-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self::Remote {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
        })
    }

    /// Fails unless the server accepts the token (the agent refuses to run unauthenticated).
    pub async fn verify_token(&self) -> anyhow::Result<()> {
        if let Self::Remote { .. } = self {
            self.get_json("/api/apps?perpage=1")
                .await
                .context("the server did not accept the agent's API token")?;
        }
        Ok(())
    }

    /// Sends one Omaha request and parses the answer.
    pub async fn omaha(&self, request: &Request<'_>) -> anyhow::Result<ParsedResponse> {
        let xml = request.to_xml();
        let body = match self {
            Self::Remote { http, base, token } => {
                let response = http
                    .post(format!("{base}/v1/update/"))
                    .bearer_auth(token)
                    .header("content-type", "text/xml; charset=utf-8")
                    .body(xml)
                    .send()
                    .await
                    .context("Omaha request")?;
                let status = response.status();
                let bytes = read_limited(response, protocol::MAX_BODY_BYTES).await?;
                anyhow::ensure!(
                    status.is_success(),
                    "Omaha request answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(200)
                        .collect::<String>()
                );
                bytes
            }
            Self::Local { state } => crate::omaha::handle(
                &state.store,
                &state.omaha,
                xml.as_bytes(),
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                state.now(),
            )
            .await
            .context("Omaha request")?
            .into_bytes(),
        };
        protocol::parse_response(&body).context("Omaha response")
    }

    /// Resolves the value of a `rollbridge.app` label: an application id as is, a name by lookup
    /// (remote: among the applications the token's team sees).
    pub async fn app_by_label(&self, label: &str) -> anyhow::Result<Option<String>> {
        if let Ok(id) = normalize_uuid("rollbridge.app", label) {
            return Ok(Some(id));
        }
        match self {
            Self::Remote { .. } => {
                let apps = self.get_json("/api/apps?perpage=1000").await?;
                Ok(apps
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["name"].as_str() == Some(label))
                    .and_then(|a| a["id"].as_str().map(str::to_string)))
            }
            Self::Local { state } => Ok(state
                .store
                .app_by_name(crate::domain::seed::DEFAULT_TEAM_ID, label)
                .await?
                .map(|a| a.id)),
        }
    }

    /// The application publishing Docker packages of `repository` (owner matching).
    pub async fn app_by_repository(&self, repository: &str) -> anyhow::Result<Option<String>> {
        let wanted = normalize_repository(repository);
        let docker = PackageType::Docker as i64;
        match self {
            Self::Remote { .. } => {
                let apps = self.get_json("/api/apps?perpage=1000").await?;
                for app in apps.as_array().into_iter().flatten() {
                    let Some(id) = app["id"].as_str() else {
                        continue;
                    };
                    let packages = self.get_json(&format!("/api/apps/{id}/packages")).await?;
                    let found = packages.as_array().into_iter().flatten().any(|p| {
                        p["type"].as_i64() == Some(docker)
                            && p["url"]
                                .as_str()
                                .is_some_and(|u| normalize_repository(u) == wanted)
                    });
                    if found {
                        return Ok(Some(id.to_string()));
                    }
                }
                Ok(None)
            }
            Self::Local { state } => {
                let apps = state
                    .store
                    .list_apps(crate::domain::seed::DEFAULT_TEAM_ID)
                    .await?;
                for app in apps {
                    let packages = state.store.list_packages(&app.id).await?;
                    if packages
                        .iter()
                        .any(|p| p.package_type == docker && normalize_repository(&p.url) == wanted)
                    {
                        return Ok(Some(app.id));
                    }
                }
                Ok(None)
            }
        }
    }

    /// The application's groups (id and track).
    pub async fn groups(&self, app_id: &str) -> anyhow::Result<Vec<GroupInfo>> {
        match self {
            Self::Remote { .. } => {
                let groups = self.get_json(&format!("/api/apps/{app_id}/groups")).await?;
                Ok(groups
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| {
                        Some(GroupInfo {
                            id: g["id"].as_str()?.to_string(),
                            track: g["track"].as_str().unwrap_or_default().to_string(),
                        })
                    })
                    .collect())
            }
            Self::Local { state } => Ok(state
                .store
                .list_groups(app_id, state.now())
                .await?
                .into_iter()
                .map(|g| GroupInfo {
                    id: g.id,
                    track: g.track,
                })
                .collect()),
        }
    }

    /// Records a per-container outcome in the activity stream.
    pub async fn report(&self, report: &ContainerReport) -> anyhow::Result<()> {
        match self {
            Self::Remote { http, base, token } => {
                let response = http
                    .post(format!("{base}/api/agent/activity"))
                    .bearer_auth(token)
                    .json(report)
                    .send()
                    .await?;
                let status = response.status();
                if !status.is_success() {
                    let body = read_limited(response, 4096).await.unwrap_or_default();
                    anyhow::bail!(
                        "activity report answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                Ok(())
            }
            Self::Local { state } => {
                let app_id = normalize_uuid("application_id", &report.application_id)?;
                let team = state
                    .store
                    .app_by_id(&app_id)
                    .await?
                    .map(|a| a.team_id.clone())
                    .unwrap_or_default();
                report.record(&state.store, &team, state.now()).await?;
                Ok(())
            }
        }
    }

    async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let Self::Remote { http, base, token } = self else {
            anyhow::bail!("REST calls are only made by the remote agent");
        };
        let response = http
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status();
        let body = read_limited(response, MAX_REST_BYTES).await?;
        anyhow::ensure!(status.is_success(), "GET {path} answered {status}");
        serde_json::from_slice(&body).with_context(|| format!("GET {path}: malformed JSON"))
    }
}

/// Reads a response body, refusing more than `limit` bytes.
async fn read_limited(response: reqwest::Response, limit: usize) -> anyhow::Result<Vec<u8>> {
    use futures_util::StreamExt;
    let mut stream = response.bytes_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        anyhow::ensure!(
            out.len() + chunk.len() <= limit,
            "response larger than {limit} bytes"
        );
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
