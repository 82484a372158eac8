//! Payload hosting: downloads a package's payload (`codebase + name`) into the hosting directory,
//! verifying size, SHA-1 and SHA-256 while streaming, and publishes it under
//! `<public-url>/packages/`. A download lands in a hidden temporary file first and is renamed
//! into place only once every check passed, so a crash, a timeout or a mismatch never leaves a
//! file that could be served.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use futures_util::StreamExt;
use sha1::{Digest, Sha1};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

use crate::config::SyncArgs;

/// Payload hosting as configured (`--host-packages`, `--public-url`, `--packages-auth`).
#[derive(Default)]
pub struct Hosting {
    dir: Option<PathBuf>,
    /// `<public-url>/packages/`.
    packages_url: Option<String>,
    auth: Option<(String, String)>,
    max_bytes: u64,
    download_timeout: Duration,
    client: Option<reqwest::Client>,
}

impl std::fmt::Debug for Hosting {
    // Hand-written so the download password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosting")
            .field("dir", &self.dir)
            .field("packages_url", &self.packages_url)
            .field(
                "auth",
                &self.auth.as_ref().map(|(user, _)| (user, "<redacted>")),
            )
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// What to download and what it must hash to. Hashes are base64 as in Omaha answers; at least
/// one of them is required.
#[derive(Debug, Clone, Default)]
pub struct HostRequest {
    pub app_id: String,
    pub arch: String,
    pub version: String,
    /// The package's `url` (Omaha codebase); the payload is `codebase + name`.
    pub codebase: String,
    pub name: String,
    pub size: Option<u64>,
    pub sha1_b64: Option<String>,
    pub sha256_b64: Option<String>,
}

/// A payload in the hosting directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosted {
    /// The stored file name (`<app>-<arch>-<version>-<name>`), the package's new `filename`.
    pub file_name: String,
    /// `<public-url>/packages/`, the package's new `url`.
    pub url: String,
    pub size: u64,
    pub sha1_b64: String,
    pub sha256_b64: String,
    /// False when a verified copy was already there.
    pub downloaded: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("payload hosting is not enabled (--host-packages)")]
    Disabled,
    #[error("{0}")]
    Invalid(String),
    #[error("downloading {url} failed: {reason}")]
    Download { url: String, reason: String },
    #[error("payload {url} does not match: {reason}")]
    Mismatch { url: String, reason: String },
    #[error("hosting directory: {0}")]
    Io(String),
}

impl HostError {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Invalid(_) => "invalid",
            Self::Download { .. } => "download",
            Self::Mismatch { .. } => "mismatch",
            Self::Io(_) => "io",
        }
    }
}

/// A file name safe to serve: one path segment of `[A-Za-z0-9._+-]`, not hidden, bounded.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

/// `<app>-<arch>-<version>-<name>`, or an error naming the part that cannot be a file name.
pub fn stored_name(
    app_id: &str,
    arch: &str,
    version: &str,
    name: &str,
) -> Result<String, HostError> {
    let file = format!("{app_id}-{arch}-{version}-{name}");
    if is_safe_name(name) && is_safe_name(&file) {
        Ok(file)
    } else {
        Err(HostError::Invalid(format!(
            "payload name {name:?} (version {version:?}) cannot be stored as a file name"
        )))
    }
}

/// `codebase + name`, with a `/` between them when the codebase lacks one (update_engine does
/// the same). Only http(s) URLs are fetched.
pub fn payload_url(codebase: &str, name: &str) -> Result<String, HostError> {
    let codebase = codebase.trim();
    if !(codebase.starts_with("http://") || codebase.starts_with("https://")) {
        return Err(HostError::Invalid(format!(
            "payload codebase {codebase:?} is not an http(s) URL"
        )));
    }
    let sep = if codebase.ends_with('/') { "" } else { "/" };
    let url = format!("{codebase}{sep}{name}");
    reqwest::Url::parse(&url)
        .map_err(|e| HostError::Invalid(format!("payload URL {url:?}: {e}")))?;
    Ok(url)
}

fn decode_b64(field: &str, value: &str, len: usize) -> Result<Vec<u8>, HostError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| HostError::Invalid(format!("{field} {value:?} is not base64")))?;
    if bytes.len() != len {
        return Err(HostError::Invalid(format!(
            "{field} {value:?} is not a {len}-byte digest"
        )));
    }
    Ok(bytes)
}

/// A SHA-256 given as base64 (Omaha postinstall `sha256`) or as 64 hex digits (Nebraska's
/// `hash_sha256`), normalised to base64.
pub fn sha256_to_b64(value: &str) -> Result<String, HostError> {
    let value = value.trim();
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        let bytes = hex::decode(value)
            .map_err(|_| HostError::Invalid(format!("sha256 {value:?} is not hex")))?;
        return Ok(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    decode_b64("sha256", value, 32)?;
    Ok(value.to_string())
}

impl Hosting {
    /// Validates the options: the directory is created if missing and must be writable, the
    /// public URL must be http(s), the auth must be `USER:PASSWORD`.
    pub fn from_args(args: &SyncArgs) -> anyhow::Result<Self> {
        let auth = match &args.packages_auth {
            Some(raw) => {
                let (user, password) = raw
                    .split_once(':')
                    .filter(|(u, p)| !u.is_empty() && !p.is_empty())
                    .context("--packages-auth must be USER:PASSWORD")?;
                Some((user.to_string(), password.to_string()))
            }
            None => None,
        };
        let Some(dir) = &args.host_packages else {
            return Ok(Self {
                auth,
                ..Self::default()
            });
        };
        let public = args
            .public_url
            .as_deref()
            .context("--host-packages needs --public-url")?
            .trim()
            .trim_end_matches('/');
        let parsed = reqwest::Url::parse(public).context("--public-url is not a URL")?;
        anyhow::ensure!(
            matches!(parsed.scheme(), "http" | "https"),
            "--public-url must be an http(s) URL"
        );
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the hosting directory {}", dir.display()))?;
        let probe = dir.join(format!(".probe-{}", crate::domain::new_id()));
        std::fs::write(&probe, b"probe")
            .with_context(|| format!("the hosting directory {} is not writable", dir.display()))?;
        let _ = std::fs::remove_file(&probe);
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            // A mirror that stops sending fails the download long before the overall timeout.
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("rollbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the download client")?;
        Ok(Self {
            dir: Some(dir.clone()),
            packages_url: Some(format!("{public}/packages/")),
            auth,
            max_bytes: args.host_max_bytes,
            download_timeout: args.host_download_timeout,
            client: Some(client),
        })
    }

    pub fn enabled(&self) -> bool {
        self.dir.is_some()
    }

    /// `<public-url>/packages/` when hosting is on.
    pub fn packages_url(&self) -> Option<&str> {
        self.packages_url.as_deref()
    }

    /// Basic credentials required on `/packages/`, if any.
    pub fn auth(&self) -> Option<(&str, &str)> {
        self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The path of a hosted file, when hosting is on and the name is safe.
    pub fn file_path(&self, name: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        is_safe_name(name).then(|| dir.join(name))
    }

    /// Downloads and verifies a payload unless a verified copy is already stored.
    pub async fn host(&self, req: &HostRequest) -> Result<Hosted, HostError> {
        let (Some(dir), Some(packages_url), Some(client)) =
            (&self.dir, &self.packages_url, &self.client)
        else {
            return Err(HostError::Disabled);
        };
        let file_name = stored_name(&req.app_id, &req.arch, &req.version, &req.name)?;
        let url = payload_url(&req.codebase, &req.name)?;
        let sha1 = match &req.sha1_b64 {
            Some(v) if !v.trim().is_empty() => Some(decode_b64("hash (SHA-1)", v, 20)?),
            _ => None,
        };
        let sha256 = match &req.sha256_b64 {
            Some(v) if !v.trim().is_empty() => Some(decode_b64("sha256", &sha256_to_b64(v)?, 32)?),
            _ => None,
        };
        if sha1.is_none() && sha256.is_none() {
            return Err(HostError::Invalid(format!(
                "payload {url} has neither a SHA-1 nor a SHA-256 to verify it against"
            )));
        }
        let expected = Expected {
            size: req.size,
            sha1,
            sha256,
        };
        let final_path = dir.join(&file_name);
        if let Ok(digests) = digest_file(&final_path).await {
            if expected.check(&digests).is_ok() {
                return Ok(hosted(file_name, packages_url, &digests, false));
            }
        }
        let digests = tokio::time::timeout(
            self.download_timeout,
            self.download(client, &url, dir, &final_path, &expected),
        )
        .await
        .map_err(|_| HostError::Download {
            url: url.clone(),
            reason: format!("timed out after {:?}", self.download_timeout),
        })??;
        Ok(hosted(file_name, packages_url, &digests, true))
    }

    async fn download(
        &self,
        client: &reqwest::Client,
        url: &str,
        dir: &Path,
        final_path: &Path,
        expected: &Expected,
    ) -> Result<Digests, HostError> {
        let partial = PartialFile(dir.join(format!(".partial-{}", crate::domain::new_id())));
        let digests = fetch_into(client, url, &partial.0, expected, self.max_bytes).await?;
        expected
            .check(&digests)
            .map_err(|reason| HostError::Mismatch {
                url: url.to_string(),
                reason,
            })?;
        tokio::fs::rename(&partial.0, final_path)
            .await
            .map_err(|e| HostError::Io(format!("storing {}: {e}", final_path.display())))?;
        Ok(digests)
    }
}

fn hosted(file_name: String, packages_url: &str, d: &Digests, downloaded: bool) -> Hosted {
    let b64 = base64::engine::general_purpose::STANDARD;
    Hosted {
        file_name,
        url: packages_url.to_string(),
        size: d.size,
        sha1_b64: b64.encode(d.sha1),
        sha256_b64: b64.encode(d.sha256),
        downloaded,
    }
}

/// Removes the temporary file when dropped (error paths, timeouts, cancellation); after the
/// rename there is nothing left to remove and the error is ignored.
struct PartialFile(PathBuf);

impl Drop for PartialFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Expected {
    size: Option<u64>,
    sha1: Option<Vec<u8>>,
    sha256: Option<Vec<u8>>,
}

impl Expected {
    fn check(&self, d: &Digests) -> Result<(), String> {
        if let Some(size) = self.size {
            if size != d.size {
                return Err(format!("size is {} bytes, expected {size}", d.size));
            }
        }
        if let Some(sha1) = &self.sha1 {
            if sha1.as_slice() != d.sha1.as_slice() {
                return Err("SHA-1 differs from the announced hash".into());
            }
        }
        if let Some(sha256) = &self.sha256 {
            if sha256.as_slice() != d.sha256.as_slice() {
                return Err("SHA-256 differs from the announced sha256".into());
            }
        }
        Ok(())
    }
}

struct Digests {
    size: u64,
    sha1: [u8; 20],
    sha256: [u8; 32],
}

async fn fetch_into(
    client: &reqwest::Client,
    url: &str,
    path: &Path,
    expected: &Expected,
    max_bytes: u64,
) -> Result<Digests, HostError> {
    let fail = |reason: String| HostError::Download {
        url: url.to_string(),
        reason,
    };
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("HTTP {}", response.status())));
    }
    let limit = expected.size.unwrap_or(max_bytes).min(max_bytes);
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(HostError::Mismatch {
            url: url.to_string(),
            reason: format!("larger than {limit} bytes"),
        });
    }
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| HostError::Io(format!("creating {}: {e}", path.display())))?;
    let mut sha1 = Sha1::new();
    let mut sha256 = Sha256::new();
    let mut size: u64 = 0;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| fail(e.to_string()))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(HostError::Mismatch {
                url: url.to_string(),
                reason: format!("larger than {limit} bytes"),
            });
        }
        sha1.update(&chunk);
        sha256.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| HostError::Io(format!("writing {}: {e}", path.display())))?;
    }
    file.sync_all()
        .await
        .map_err(|e| HostError::Io(format!("writing {}: {e}", path.display())))?;
    Ok(Digests {
        size,
        sha1: sha1.finalize().into(),
        sha256: sha256.finalize().into(),
    })
}

async fn digest_file(path: &Path) -> std::io::Result<Digests> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await?;
    let mut sha1 = Sha1::new();
    let mut sha256 = Sha256::new();
    let mut size: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        sha1.update(chunk);
        sha256.update(chunk);
        size += n as u64;
    }
    Ok(Digests {
        size,
        sha1: sha1.finalize().into(),
        sha256: sha256.finalize().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_safe_segments() {
        assert!(is_safe_name(
            "e96-amd64-3815.2.1-flatcar_production_update.gz"
        ));
        assert!(is_safe_name("x-1.0.0+build.5-a.gz"));
        for bad in ["", ".partial-x", "../x", "a/b", "a\\b", "a b", "a%2fb"] {
            assert!(!is_safe_name(bad), "{bad:?}");
        }
        assert!(stored_name("app", "amd64", "1.0.0", "../etc/passwd").is_err());
    }

    #[test]
    fn payload_urls_join_like_update_engine() {
        assert_eq!(
            payload_url("http://h/a/", "x.gz").unwrap(),
            "http://h/a/x.gz"
        );
        assert_eq!(
            payload_url("http://h/a", "x.gz").unwrap(),
            "http://h/a/x.gz"
        );
        assert!(payload_url("file:///etc/", "passwd").is_err());
    }

    #[test]
    fn sha256_is_accepted_as_hex_or_base64() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let b64 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert_eq!(sha256_to_b64(hex).unwrap(), b64);
        assert_eq!(sha256_to_b64(b64).unwrap(), b64);
        assert!(sha256_to_b64("nope").is_err());
    }
}
