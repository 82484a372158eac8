//! The syncer's Omaha client: one update check per channel, shaped like Nebraska's syncer
//! (`version="CoreOSUpdateEngine-0.1.0.0"`, `installsource="scheduler"`, its own machine id,
//! `multi_manifest_ok="true"`), and the interpretation of the answer into packages to create.
//! Everything upstream says is validated here before the store sees it.

use std::time::Duration;

use futures_util::StreamExt;

use crate::domain::Version;
use crate::omaha::multi::SYNCER_VERSION;
use crate::omaha::protocol::{
    self, AppRequest, Os, ParsedManifest, ParsedResponse, PostinstallAction, Request,
};
use crate::sync::hosting::{self, HostError};

/// Why one channel's sync failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    #[error("upstream answered HTTP {0}")]
    Status(u16),
    #[error("upstream answer is malformed: {0}")]
    Malformed(String),
    #[error("upstream refused the check: {0}")]
    Refused(String),
    #[error("{0}")]
    Invalid(String),
    #[error("payload: {0}")]
    Host(#[from] HostError),
    #[error("storing the sync failed: {0}")]
    Store(String),
}

impl SyncError {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::Status(_) => "http_status",
            Self::Malformed(_) => "malformed",
            Self::Refused(_) => "refused",
            Self::Invalid(_) => "invalid",
            Self::Host(e) => match e {
                HostError::Mismatch { .. } => "payload_mismatch",
                _ => "payload",
            },
            Self::Store(_) => "store",
        }
    }
}

impl From<crate::store::StoreError> for SyncError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Store(e.to_string())
    }
}

/// One package upstream offered, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPackage {
    pub version: Version,
    /// Where the payload lives (the manifest's own `<urls>`, else the update check's).
    pub codebase: String,
    pub name: String,
    pub size: Option<u64>,
    /// SHA-1, base64 (Omaha `hash`); may be empty.
    pub sha1_b64: String,
    /// SHA-256, base64 (postinstall `sha256` or package `hash_sha256`); may be empty.
    pub sha256_b64: String,
    pub action: Option<PostinstallAction>,
    pub is_floor: bool,
    pub floor_reason: String,
}

/// An interpreted upstream answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    NoUpdate,
    /// Packages lowest version first; `target` indexes the one the channel should point at
    /// (`None` when upstream sent only floors).
    Update {
        packages: Vec<UpstreamPackage>,
        target: Option<usize>,
    },
}

/// Who is asking: one channel's identity upstream.
#[derive(Debug, Clone)]
pub struct CheckParams {
    pub appid: String,
    pub track: String,
    pub version: String,
    pub machine_id: String,
    pub boot_id: String,
}

/// The request the syncer sends.
pub fn request(p: &CheckParams) -> Request<'_> {
    Request {
        protocol: "3.0".into(),
        version: SYNCER_VERSION.into(),
        updater_version: SYNCER_VERSION.into(),
        install_source: "scheduler".into(),
        is_machine: "1".into(),
        os: Some(Os {
            platform: "CoreOS".into(),
            version: "Chateau".into(),
            sp: format!("{}_x86_64", p.version).into(),
            arch: "x64".into(),
        }),
        apps: vec![AppRequest {
            appid: p.appid.as_str().into(),
            version: p.version.as_str().into(),
            track: p.track.as_str().into(),
            machine_id: p.machine_id.as_str().into(),
            boot_id: p.boot_id.as_str().into(),
            board: "amd64-usr".into(),
            multi_manifest_ok: true,
            update_check: true,
            ..AppRequest::default()
        }],
    }
}

/// Sends one update check and interprets the answer.
pub async fn check(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    params: &CheckParams,
) -> Result<Answer, SyncError> {
    let body = request(params).to_xml();
    let fetch = async {
        let response = client
            .post(url)
            .header("content-type", "text/xml; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(|e| SyncError::Unreachable(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(SyncError::Status(status.as_u16()));
        }
        // Omaha answers are small; refuse to buffer more than a request may carry.
        let mut buf = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| SyncError::Unreachable(e.to_string()))?;
            if buf.len() + chunk.len() > protocol::MAX_BODY_BYTES {
                return Err(SyncError::Malformed(format!(
                    "answer larger than {} bytes",
                    protocol::MAX_BODY_BYTES
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    let buf = tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| SyncError::Unreachable(format!("no answer within {timeout:?}")))??;
    let parsed = protocol::parse_response(&buf).map_err(|e| SyncError::Malformed(e.to_string()))?;
    interpret(&parsed)
}

/// Turns a parsed answer into validated packages (or an error naming what is wrong).
pub fn interpret(parsed: &ParsedResponse) -> Result<Answer, SyncError> {
    let app = parsed
        .apps
        .first()
        .ok_or_else(|| SyncError::Malformed("no <app> in the answer".into()))?;
    if app.status != "ok" {
        return Err(SyncError::Refused(format!("app status {:?}", app.status)));
    }
    let check = app
        .update_check
        .as_ref()
        .ok_or_else(|| SyncError::Malformed("no <updatecheck> in the answer".into()))?;
    match check.status.as_str() {
        "noupdate" => return Ok(Answer::NoUpdate),
        "ok" => {}
        other => return Err(SyncError::Refused(format!("updatecheck status {other:?}"))),
    }
    if check.manifests.is_empty() {
        return Err(SyncError::Malformed(
            "updatecheck ok without <manifest>".into(),
        ));
    }
    let shared = check.codebases.first().cloned().unwrap_or_default();
    let explicit_target = check.manifests.iter().position(|m| m.is_target);
    let target_version = explicit_target
        .or_else(|| check.manifests.iter().rposition(|m| !m.is_floor))
        .and_then(|i| check.manifests.get(i))
        .map(|m| m.version.clone());
    let mut packages = Vec::with_capacity(check.manifests.len());
    for m in &check.manifests {
        packages.push(package(m, &shared, target_version.as_deref())?);
    }
    packages.sort_by(|a, b| a.version.cmp(&b.version));
    if packages.windows(2).any(|w| w[0].version == w[1].version) {
        return Err(SyncError::Malformed(
            "the same version twice in one answer".into(),
        ));
    }
    let target = target_version.and_then(|t| {
        packages
            .iter()
            .position(|p| p.version.as_str() == t.as_str())
    });
    Ok(Answer::Update { packages, target })
}

fn package(
    m: &ParsedManifest,
    shared: &str,
    target_version: Option<&str>,
) -> Result<UpstreamPackage, SyncError> {
    let version = Version::parse(&m.version).map_err(|_| {
        SyncError::Invalid(format!("upstream version {:?} is not semver", m.version))
    })?;
    let first = m.packages.first().ok_or_else(|| {
        SyncError::Invalid(format!("upstream manifest {} has no <package>", m.version))
    })?;
    if first.name.is_empty() || first.name.contains('/') || first.name.contains('\\') {
        return Err(SyncError::Invalid(format!(
            "upstream package name {:?} of {} is not a file name",
            first.name, m.version
        )));
    }
    let size = match first.size.trim() {
        "" => None,
        text => Some(text.parse::<u64>().map_err(|_| {
            SyncError::Invalid(format!(
                "upstream size {text:?} of {} is not a number",
                m.version
            ))
        })?),
    };
    let codebase = match m.codebases.first() {
        Some(own) => own.clone(),
        None => floor_codebase(shared, target_version, m.version.as_str()),
    };
    if codebase.is_empty() {
        return Err(SyncError::Invalid(format!(
            "upstream gave no codebase for {}",
            m.version
        )));
    }
    let sha256 = m
        .postinstall
        .as_ref()
        .map(|a| a.sha256.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| first.hash_sha256.clone());
    let sha256_b64 = if sha256.is_empty() {
        String::new()
    } else {
        hosting::sha256_to_b64(&sha256)?
    };
    Ok(UpstreamPackage {
        version,
        codebase,
        name: first.name.clone(),
        size,
        sha1_b64: first.hash.clone(),
        sha256_b64,
        action: m.postinstall.clone(),
        is_floor: m.is_floor,
        floor_reason: m.floor_reason.clone(),
    })
}

/// Nebraska writes one `<urls>` (the target's) for every manifest. Flatcar's codebases carry
/// the version as a path segment (`.../amd64-usr/3815.2.1/`), so a floor's payload is at the
/// same URL with its own version; other layouts keep the shared URL.
fn floor_codebase(shared: &str, target_version: Option<&str>, version: &str) -> String {
    match target_version {
        Some(target) if target != version => {
            let needle = format!("/{target}/");
            if shared.contains(&needle) {
                shared.replacen(&needle, &format!("/{version}/"), 1)
            } else {
                shared.to_string()
            }
        }
        _ => shared.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_round_trips_and_looks_like_a_syncer() {
        let params = CheckParams {
            appid: "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}".into(),
            track: "stable".into(),
            version: "0.0.0".into(),
            machine_id: "{m}".into(),
            boot_id: "{b}".into(),
        };
        let req = request(&params);
        let xml = req.to_xml();
        let parsed = protocol::parse_request(xml.as_bytes()).unwrap();
        assert_eq!(parsed, req);
        assert_eq!(parsed.install_source, "scheduler");
        assert!(parsed.apps[0].multi_manifest_ok);
        assert!(!parsed.apps[0].ping);
    }

    #[test]
    fn floors_take_their_version_into_a_versioned_codebase() {
        let shared = "https://u/amd64-usr/3000.0.0/";
        assert_eq!(
            floor_codebase(shared, Some("3000.0.0"), "2000.0.0"),
            "https://u/amd64-usr/2000.0.0/"
        );
        assert_eq!(
            floor_codebase("https://u/p/", Some("3000.0.0"), "2000.0.0"),
            "https://u/p/"
        );
    }

    #[test]
    fn hostile_answers_are_errors() {
        let refused = protocol::parse_response(
            br#"<response protocol="3.0"><app appid="x" status="error-unknownApplication"/></response>"#,
        )
        .unwrap();
        assert!(matches!(interpret(&refused), Err(SyncError::Refused(_))));
        let bad_version = protocol::parse_response(
            br#"<response protocol="3.0"><app appid="x" status="ok"><updatecheck status="ok"><urls><url codebase="http://u/"/></urls><manifest version="../../x"><packages><package name="a" hash="" size="1"/></packages></manifest></updatecheck></app></response>"#,
        )
        .unwrap();
        assert!(matches!(
            interpret(&bad_version),
            Err(SyncError::Invalid(_))
        ));
        let bad_name = protocol::parse_response(
            br#"<response protocol="3.0"><app appid="x" status="ok"><updatecheck status="ok"><urls><url codebase="http://u/"/></urls><manifest version="1.0.0"><packages><package name="../a" hash="" size="1"/></packages></manifest></updatecheck></app></response>"#,
        )
        .unwrap();
        assert!(matches!(interpret(&bad_name), Err(SyncError::Invalid(_))));
    }
}
