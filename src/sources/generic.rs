//! Generic signed webhooks (GitHub's scheme): `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the
//! raw body>`, verified in constant time before the body is parsed.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::domain::model::check_base64;
use crate::domain::release::{normalize_selector, parse_image_reference};
use crate::domain::{Artifact, Release, SourceKind};

type HmacSha256 = Hmac<Sha256>;

/// Checks `header` (`sha256=<hex>`) against the HMAC of `body` under `secret`.
pub fn verify_signature(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// `sha256=<hex>` for `body` under `secret` (used by notifications and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The body of a generic webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericPayload {
    /// Application id or name. Optional when the webhook's binding names the application.
    #[serde(default)]
    pub app: Option<String>,
    pub version: String,
    /// Download URL of the payload (codebase + file name).
    #[serde(default)]
    pub url: Option<String>,
    /// Image reference (`registry/ns/name[:tag][@digest]`).
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
    /// Channel id or name to promote to (else the binding's channel).
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    /// SHA-1 of the payload, base64 (Omaha's `hash`).
    #[serde(default)]
    pub hash: Option<String>,
    /// SHA-256 of the payload, base64 (update_engine's postinstall `sha256`); required, with
    /// `size` and `hash`, for the CoreOS application.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Parses a verified body into a release for webhook `name`.
pub fn release_from_payload(
    name: &str,
    body: &[u8],
    delivery_id: Option<String>,
) -> Result<Release, String> {
    let selector =
        normalize_selector(SourceKind::Generic, name).map_err(|e| format!("webhook name: {e}"))?;
    let p: GenericPayload =
        serde_json::from_slice(body).map_err(|e| format!("malformed JSON body: {e}"))?;
    let version = p.version.trim().to_string();
    if version.is_empty() || version.len() > 128 {
        return Err("version: must be 1 to 128 characters".into());
    }
    if version.chars().any(char::is_control) {
        return Err("version: must not contain control characters".into());
    }
    if let Some(hash) = &p.hash {
        check_base64("hash", hash.trim(), None).map_err(|e| e.to_string())?;
    }
    if let Some(sha256) = &p.sha256 {
        check_base64("sha256", sha256.trim(), Some(32)).map_err(|e| e.to_string())?;
    }
    let artifact = match (&p.image, &p.url) {
        (Some(_), Some(_)) => return Err("give either image or url, not both".into()),
        (Some(image), None) => {
            let (repository, tag, digest_in_ref) =
                parse_image_reference(image).map_err(|e| format!("image: {e}"))?;
            let digest = match (&p.digest, digest_in_ref) {
                (Some(d), _) if !crate::domain::model::is_digest(d) => {
                    return Err("digest: must look like sha256:<64 hex>".into())
                }
                (Some(d), Some(r)) if *d != r => {
                    return Err("digest differs from the image reference's".into())
                }
                (Some(d), _) => Some(d.clone()),
                (None, r) => r,
            };
            Artifact::Image {
                repository,
                tag: tag.unwrap_or_else(|| version.clone()),
                digest,
            }
        }
        (None, Some(url)) => {
            let (codebase, filename) = split_download_url(url)?;
            Artifact::Download {
                url: codebase,
                filename,
                size: p.size,
                sha1_base64: p.hash.as_ref().map(|h| h.trim().to_string()),
                sha256_base64: p.sha256.as_ref().map(|h| h.trim().to_string()),
            }
        }
        (None, None) => return Err("one of image or url is required".into()),
    };
    // The sender's delivery id alone is no identity: proxies set X-Request-Id, and every
    // webhook name shares the id space. A replay is the same id, name and body.
    let delivery_key =
        delivery_id.map(|id| format!("{selector}:{id}:{}", hex::encode(Sha256::digest(body))));
    Ok(Release {
        source: SourceKind::Generic,
        selector,
        delivery_key,
        tag: version,
        artifact,
        requested_app: p.app.clone().filter(|a| !a.trim().is_empty()),
        requested_channel: p.channel.clone().filter(|c| !c.trim().is_empty()),
        zero_config: None,
        description: p.description.clone().unwrap_or_default(),
        metadata: None,
        files: Vec::new(),
    })
}

/// `https://host/path/file.tgz` → (`https://host/path/`, `file.tgz`).
fn split_download_url(url: &str) -> Result<(String, String), String> {
    let url = url.trim();
    if url.len() > 1024 || !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err("url: must be an http(s) URL of at most 1024 characters".into());
    }
    let Some(slash) = url.rfind('/') else {
        return Err("url: has no file name".into());
    };
    let (codebase, filename) = url.split_at(slash + 1);
    if filename.is_empty() || codebase.len() <= "https://".len() {
        return Err("url: must end with a file name".into());
    }
    Ok((codebase.to_string(), filename.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let body = br#"{"version":"1.0.0"}"#;
        let good = sign(b"0123456789abcdef", body);
        assert!(verify_signature(b"0123456789abcdef", body, Some(&good)));
        assert!(!verify_signature(b"0123456789abcdeX", body, Some(&good)));
        assert!(!verify_signature(b"0123456789abcdef", b"{}", Some(&good)));
        assert!(!verify_signature(b"0123456789abcdef", body, None));
        assert!(!verify_signature(
            b"0123456789abcdef",
            body,
            Some("sha1=00")
        ));
        assert!(!verify_signature(
            b"0123456789abcdef",
            body,
            Some("sha256=zz")
        ));
        assert!(!verify_signature(
            b"0123456789abcdef",
            body,
            Some(&good[..good.len() - 2])
        ));
    }

    #[test]
    fn replays_are_keyed_by_name_id_and_body() {
        let one = br#"{"version":"1.0.0","image":"a/b"}"#;
        let two = br#"{"version":"2.0.0","image":"a/b"}"#;
        let key = |name: &str, body: &[u8], id: Option<&str>| {
            release_from_payload(name, body, id.map(str::to_string))
                .unwrap()
                .delivery_key
        };
        assert_eq!(key("ci", one, Some("d1")), key("ci", one, Some("d1")));
        assert_ne!(key("ci", one, Some("d1")), key("ci5", one, Some("d1")));
        assert_ne!(key("ci", one, Some("d1")), key("ci", two, Some("d1")));
        assert_ne!(key("ci", one, Some("d1")), key("ci", one, Some("d2")));
        assert_eq!(key("ci", one, None), None);
    }

    #[test]
    fn payloads() {
        let r = release_from_payload(
            "ci",
            br#"{"app":"web","version":"1.2.0","image":"127.0.0.1:5000/demo/web:1.2.0"}"#,
            None,
        )
        .unwrap();
        assert_eq!(r.tag, "1.2.0");
        assert_eq!(r.requested_app.as_deref(), Some("web"));
        let r = release_from_payload(
            "ci",
            br#"{"version":"2.0.0","url":"https://dl.example/app/app-2.0.0.tgz","size":10}"#,
            Some("d1".into()),
        )
        .unwrap();
        assert_eq!(
            r.artifact,
            Artifact::Download {
                url: "https://dl.example/app/".into(),
                filename: "app-2.0.0.tgz".into(),
                size: Some(10),
                sha1_base64: None,
                sha256_base64: None,
            }
        );
        for bad in [
            &br#"{"version":"1.0.0"}"#[..],
            br#"{"version":"","image":"a/b"}"#,
            br#"{"version":"1","image":"a/b","url":"https://x/y"}"#,
            br#"{"version":"1","url":"ftp://x/y"}"#,
            br#"{"version":"1","url":"https://x/"}"#,
            br#"{"version":"1","image":"a/b","digest":"md5:1"}"#,
            br#"{"version":"1","image":"a/b","extra":1}"#,
            br#"{"version":"1","url":"https://x/y","hash":"s&<\""}"#,
            br#"{"version":"1","url":"https://x/y","sha256":"aGFzaA=="}"#,
            br#"{"version":"1","url":"https://x/y","sha256":"2c89002956"}"#,
            br#"{"version":"1\u0000","image":"a/b"}"#,
        ] {
            assert!(
                release_from_payload("ci", bad, None).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(
            release_from_payload("bad name", br#"{"version":"1","image":"a/b"}"#, None).is_err()
        );
    }
}
