//! A small Artifactory REST client: folder and file info from the storage API and artifact
//! downloads. Unlike artifactory-monitor it checks every HTTP status (a 401/404 is an error, never
//! "no apps"), decodes `{"errors":[...]}` bodies, verifies size and SHA-256 of downloads, bounds
//! what it reads, and tells transient failures (5xx, 429, timeouts) from permanent ones.

use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// How the poller authenticates to Artifactory.
#[derive(Clone)]
pub enum ArtAuth {
    Anonymous,
    Basic { user: String, password: String },
    ApiKey(String),
    Bearer(String),
}

impl ArtAuth {
    /// The kind, for `/v1.0/info` (never the secret).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Basic { .. } => "basic",
            Self::ApiKey(_) => "api-key",
            Self::Bearer(_) => "bearer",
        }
    }
}

impl std::fmt::Debug for ArtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtError {
    /// Artifactory answered with a non-success status.
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Connection refused, reset, or timed out.
    Transport(String),
    /// The answer could not be understood or broke a limit.
    Invalid(String),
}

impl ArtError {
    /// 5xx, 429, 408 and transport failures are worth retrying later with backoff.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Self::Transport(_) => true,
            Self::Invalid(_) => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Status { status: 404, .. })
    }
}

impl std::fmt::Display for ArtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status {
                status, message, ..
            } => write!(f, "HTTP {status}: {message}"),
            Self::Transport(m) => write!(f, "unreachable: {m}"),
            Self::Invalid(m) => write!(f, "invalid answer: {m}"),
        }
    }
}

/// One entry of a folder's `children`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// The name without the leading `/`.
    pub name: String,
    pub folder: bool,
}

/// What the storage API says about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub size: u64,
    /// Lower-case hex; absent on old Artifactory versions.
    pub sha256: Option<String>,
    pub sha1: Option<String>,
}

#[derive(Deserialize)]
struct RawFolder {
    #[serde(default)]
    children: Vec<RawChild>,
}

#[derive(Deserialize)]
struct RawChild {
    uri: String,
    /// Servers send booleans; the documentation quotes strings. Accept both.
    folder: serde_json::Value,
}

#[derive(Deserialize)]
struct RawFile {
    /// Documented as a string, sometimes an integer.
    size: serde_json::Value,
    #[serde(default)]
    checksums: RawChecksums,
}

#[derive(Deserialize, Default)]
struct RawChecksums {
    sha256: Option<String>,
    sha1: Option<String>,
}

#[derive(Deserialize)]
struct RawErrors {
    errors: Vec<RawErrorItem>,
}

#[derive(Deserialize)]
struct RawErrorItem {
    #[serde(default)]
    message: String,
}

/// Metadata answers larger than this are refused (a folder listing of thousands of versions is
/// still far below it).
const MAX_JSON_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct ArtClient {
    http: reqwest::Client,
    /// `https://host/artifactory/api`, without trailing slash.
    api: String,
    /// `https://host/artifactory` (the API URL minus `/api`), for downloads.
    base: String,
    auth: ArtAuth,
}

impl ArtClient {
    pub fn new(endpoint: &str, auth: ArtAuth, timeout: Duration) -> Result<Self, String> {
        let api = endpoint.trim().trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&api).map_err(|e| format!("--art-endpoint: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("--art-endpoint must be an http(s) URL".into());
        }
        let base = api.strip_suffix("/api").unwrap_or(&api).to_string();
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("rollbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            http,
            api,
            base,
            auth,
        })
    }

    pub fn api_url(&self) -> &str {
        &self.api
    }

    /// The plain download URL of `<repo>/<path>`.
    pub fn download_url(&self, repo: &str, path: &str) -> String {
        format!("{}/{}/{}", self.base, repo, path.trim_start_matches('/'))
    }

    fn storage_url(&self, repo: &str, path: &str) -> String {
        format!(
            "{}/storage/{}/{}",
            self.api,
            repo,
            path.trim_start_matches('/')
        )
    }

    fn request(&self, url: &str) -> reqwest::RequestBuilder {
        let builder = self.http.get(url).header("accept", "application/json");
        match &self.auth {
            ArtAuth::Anonymous => builder,
            ArtAuth::Basic { user, password } => builder.basic_auth(user, Some(password)),
            ArtAuth::ApiKey(key) => builder.header("X-JFrog-Art-Api", key),
            ArtAuth::Bearer(token) => builder.bearer_auth(token),
        }
    }

    async fn send(&self, url: &str) -> Result<reqwest::Response, ArtError> {
        let response = self
            .request(url)
            .send()
            .await
            .map_err(|e| ArtError::Transport(describe(e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = read_limited(response, 64 * 1024).await.unwrap_or_default();
        let message = serde_json::from_slice::<RawErrors>(&body)
            .ok()
            .map(|e| {
                e.errors
                    .into_iter()
                    .map(|i| i.message)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("unexpected status")
                    .to_string()
            });
        Err(ArtError::Status {
            status: status.as_u16(),
            message,
            retry_after,
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, ArtError> {
        let response = self.send(url).await?;
        let body = read_limited(response, MAX_JSON_BYTES).await?;
        serde_json::from_slice(&body).map_err(|e| ArtError::Invalid(format!("{url}: {e}")))
    }

    /// `GET <api>/storage/<repo>/<path>/` → the folder's children.
    pub async fn folder(&self, repo: &str, path: &str) -> Result<Vec<Child>, ArtError> {
        let url = format!("{}/", self.storage_url(repo, path).trim_end_matches('/'));
        let raw: RawFolder = self.json(&url).await?;
        raw.children
            .into_iter()
            .map(|c| {
                let folder = match &c.folder {
                    serde_json::Value::Bool(b) => *b,
                    serde_json::Value::String(s) => s == "true",
                    other => {
                        return Err(ArtError::Invalid(format!(
                            "child {:?}: folder is {other}",
                            c.uri
                        )))
                    }
                };
                Ok(Child {
                    name: c.uri.trim_start_matches('/').to_string(),
                    folder,
                })
            })
            .collect()
    }

    /// `GET <api>/storage/<repo>/<path>` on a file → size and checksums.
    pub async fn file_info(&self, repo: &str, path: &str) -> Result<FileInfo, ArtError> {
        let raw: RawFile = self.json(&self.storage_url(repo, path)).await?;
        let size = match &raw.size {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| ArtError::Invalid(format!("{path}: size is {}", raw.size)))?;
        let hex_ok = |s: &String| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        Ok(FileInfo {
            size,
            sha256: raw
                .checksums
                .sha256
                .filter(hex_ok)
                .map(|s| s.to_ascii_lowercase()),
            sha1: raw
                .checksums
                .sha1
                .filter(hex_ok)
                .map(|s| s.to_ascii_lowercase()),
        })
    }

    /// Downloads `<repo>/<path>` and checks it against `info` (size, then SHA-256 or SHA-1).
    pub async fn download(
        &self,
        repo: &str,
        path: &str,
        info: &FileInfo,
        max_bytes: usize,
    ) -> Result<Vec<u8>, DownloadError> {
        if info.size > max_bytes as u64 {
            return Err(DownloadError::Rejected(format!(
                "payload is {} bytes, more than the {max_bytes} allowed",
                info.size
            )));
        }
        let response = self
            .send(&self.download_url(repo, path))
            .await
            .map_err(DownloadError::from_art)?;
        let body = read_limited(response, max_bytes)
            .await
            .map_err(DownloadError::from_art)?;
        if body.len() as u64 != info.size {
            return Err(DownloadError::Rejected(format!(
                "size mismatch: downloaded {} bytes, Artifactory reports {}",
                body.len(),
                info.size
            )));
        }
        if let Some(expected) = &info.sha256 {
            let actual = hex::encode(Sha256::digest(&body));
            if &actual != expected {
                return Err(DownloadError::Rejected(format!(
                    "checksum mismatch: sha256 {actual}, Artifactory reports {expected}"
                )));
            }
        } else if let Some(expected) = &info.sha1 {
            let actual = hex::encode(sha1::Sha1::digest(&body));
            if &actual != expected {
                return Err(DownloadError::Rejected(format!(
                    "checksum mismatch: sha1 {actual}, Artifactory reports {expected}"
                )));
            }
        }
        Ok(body)
    }
}

/// A download either failed in transit (retry later) or produced something to refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadError {
    Transient(ArtError),
    Rejected(String),
}

impl DownloadError {
    fn from_art(e: ArtError) -> Self {
        if e.is_transient() {
            Self::Transient(e)
        } else {
            Self::Rejected(format!("download failed: {e}"))
        }
    }
}

async fn read_limited(response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ArtError> {
    let mut stream = response.bytes_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ArtError::Transport(describe(e)))?;
        if body.len() + chunk.len() > limit {
            return Err(ArtError::Invalid(format!(
                "answer larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `Retry-After` as seconds or an HTTP date; capped at one hour.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let seconds = match value.parse::<u64>() {
        Ok(s) => s,
        Err(_) => {
            let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            let delta = when.timestamp() - chrono::Utc::now().timestamp();
            u64::try_from(delta).unwrap_or(0)
        }
    };
    Some(Duration::from_secs(seconds.min(3600)))
}

/// A transport error without the URL's credentials (reqwest omits userinfo, but be explicit).
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        e.without_url().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("999999"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::from_secs(0))
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn transient_errors() {
        let status = |s| ArtError::Status {
            status: s,
            message: String::new(),
            retry_after: None,
        };
        assert!(status(500).is_transient());
        assert!(status(429).is_transient());
        assert!(!status(401).is_transient());
        assert!(!status(404).is_transient());
        assert!(ArtError::Transport("x".into()).is_transient());
    }

    #[test]
    fn download_urls_drop_the_api_suffix() {
        let c = ArtClient::new(
            "https://acme.jfrog.io/artifactory/api/",
            ArtAuth::Anonymous,
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            c.download_url("payloads", "/app/x.tar.gz"),
            "https://acme.jfrog.io/artifactory/payloads/app/x.tar.gz"
        );
        assert_eq!(
            c.storage_url("deploys", "/app"),
            "https://acme.jfrog.io/artifactory/api/storage/deploys/app"
        );
        assert!(ArtClient::new("ftp://x/api", ArtAuth::Anonymous, Duration::from_secs(1)).is_err());
    }
}
