//! Optional submission of each new release to a coreos-deploy service, exactly as
//! coreos-artifactory-monitor did through coreos-deploy-client: `POST <url>/v1.0/deploy` with a
//! bearer token and `{serviceName, version, numInstances, serviceTemplate, etcd2Keys}`, then
//! `GET <url>/v1.0/status/<deployID>` until the status is no longer Started (at most 7 polls, the
//! original's bound; still Started afterwards counts as Failed).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::payload::Payload;

/// coreos-deploy's status codes (`db/db_connect.go`: Started=1, Success=2, Failed=3).
const STARTED: i64 = 1;
const SUCCESS: i64 = 2;
/// The original polled `maxPollStatusCount + 1` = 7 times.
pub const MAX_STATUS_POLLS: u32 = 7;

#[derive(Clone)]
pub struct DeployClient {
    http: reqwest::Client,
    url: String,
    token: String,
    interval: Duration,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeployRequest<'a> {
    service_name: &'a str,
    version: &'a str,
    num_instances: u32,
    service_template: &'a str,
    etcd2_keys: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct DeployResponse {
    #[serde(rename = "deployID")]
    deploy_id: String,
}

#[derive(Deserialize)]
struct StatusResponse {
    status: i64,
    #[serde(default)]
    message: String,
}

/// How a submission ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeployOutcome {
    pub deploy_id: Option<String>,
    pub success: bool,
    pub message: String,
}

impl DeployClient {
    pub fn new(
        url: &str,
        token: &str,
        interval: Duration,
        timeout: Duration,
    ) -> Result<Self, String> {
        let url = url.trim().trim_end_matches('/').to_string();
        reqwest::Url::parse(&url).map_err(|e| format!("--deploy-url: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            http,
            url,
            token: token.to_string(),
            interval,
        })
    }

    /// Submits `payload` and follows its status (bounded: at most [`MAX_STATUS_POLLS`] polls;
    /// a shutdown aborts the whole round task).
    pub async fn submit(&self, payload: &Payload) -> DeployOutcome {
        let body = DeployRequest {
            service_name: &payload.vars.name,
            version: &payload.vars.version,
            num_instances: payload.vars.num_instances,
            service_template: &payload.unit,
            etcd2_keys: payload
                .etcd2_keys
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        };
        let failed = |deploy_id: Option<String>, message: String| DeployOutcome {
            deploy_id,
            success: false,
            message,
        };
        let response = match self
            .http
            .post(format!("{}/v1.0/deploy", self.url))
            .header("accept", "application/json")
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return failed(
                    None,
                    format!("coreos-deploy unreachable: {}", e.without_url()),
                )
            }
        };
        if !response.status().is_success() {
            return failed(
                None,
                format!(
                    "coreos-deploy refused the deploy: HTTP {}",
                    response.status()
                ),
            );
        }
        let deploy_id = match response.json::<DeployResponse>().await {
            Ok(r) if !r.deploy_id.is_empty() && r.deploy_id.len() <= 128 => r.deploy_id,
            _ => return failed(None, "coreos-deploy answered without a deployID".into()),
        };
        let mut last = String::from("still Started");
        for _ in 0..MAX_STATUS_POLLS {
            tokio::time::sleep(self.interval).await;
            let status = self
                .http
                .get(format!("{}/v1.0/status/{}", self.url, deploy_id))
                .header("accept", "application/json")
                .bearer_auth(&self.token)
                .send()
                .await;
            let parsed = match status {
                Ok(r) if r.status().is_success() => r.json::<StatusResponse>().await.ok(),
                Ok(r) => {
                    last = format!("status HTTP {}", r.status());
                    None
                }
                Err(e) => {
                    last = format!("status unreachable: {}", e.without_url());
                    None
                }
            };
            match parsed {
                Some(s) if s.status == STARTED => continue,
                Some(s) => {
                    return DeployOutcome {
                        deploy_id: Some(deploy_id),
                        success: s.status == SUCCESS,
                        message: if s.status == SUCCESS {
                            "coreos-deploy succeeded".to_string()
                        } else {
                            format!("coreos-deploy failed: {}", s.message)
                        },
                    }
                }
                None => continue,
            }
        }
        failed(
            Some(deploy_id),
            format!("coreos-deploy did not finish ({last})"),
        )
    }
}
