//! Docker Hub's `callback_url`: after a delivery is processed rollbridge reports the outcome there
//! (`state` success/failure/error), in the background, with a timeout and a few retries. The URL
//! comes from an unsigned body, so only allow-listed hosts are ever contacted.

use std::time::Duration;

use serde::Serialize;

use crate::telemetry::WarnThrottle;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallbackBody {
    pub state: &'static str,
    pub description: String,
    pub context: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
}

impl CallbackBody {
    pub fn new(state: &'static str, description: &str) -> Self {
        // Docker Hub documents at most 255 characters for the description.
        Self {
            state,
            description: description.chars().take(255).collect(),
            context: "rollbridge",
            target_url: None,
        }
    }
}

/// Whether `url` may be called: http(s) and a host in `allowed` (exact, case-insensitive).
pub fn is_allowed(url: &str, allowed: &[String]) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    if !matches!(parsed.scheme(), "https" | "http") {
        return false;
    }
    let Some(host) = parsed.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    allowed.iter().any(|a| a.eq_ignore_ascii_case(host))
}

/// How many times a callback is attempted, and how long each may take.
const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Callbacks in flight at most: each may wait on DNS and a slow Docker Hub, and DNS lookups run
/// on the blocking thread pool the SQLite store also uses, so a burst must not fill it.
const MAX_IN_FLIGHT: usize = 16;

fn in_flight() -> &'static std::sync::Arc<tokio::sync::Semaphore> {
    static SLOTS: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> =
        std::sync::OnceLock::new();
    SLOTS.get_or_init(|| std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)))
}

/// Posts `body` to `url` in the background; never blocks the caller. When too many callbacks
/// are already in flight this one is dropped with a warning (the release itself is stored).
pub fn spawn(client: reqwest::Client, url: String, body: CallbackBody) {
    let Ok(permit) = in_flight().clone().try_acquire_owned() else {
        static DROPPED: WarnThrottle = WarnThrottle::new(Duration::from_secs(10));
        if let Some(also_dropped) = DROPPED.admit() {
            tracing::warn!(
                also_dropped,
                "Docker Hub callback dropped: {MAX_IN_FLIGHT} callbacks already in flight \
                 (also_dropped: since the last such warning)"
            );
        }
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        for attempt in 1..=ATTEMPTS {
            let result = client.post(&url).timeout(TIMEOUT).json(&body).send().await;
            match result {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(state = body.state, "Docker Hub callback delivered");
                    return;
                }
                // A 4xx will not get better (Hub answers 400 to late callbacks).
                Ok(r) if r.status().is_client_error() => {
                    tracing::warn!(status = %r.status(), "Docker Hub callback refused");
                    return;
                }
                Ok(r) => {
                    tracing::warn!(status = %r.status(), attempt, "Docker Hub callback failed")
                }
                Err(e) => tracing::warn!(error = %e, attempt, "Docker Hub callback failed"),
            }
            tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_hosts() {
        let allowed = vec![
            "registry.hub.docker.com".to_string(),
            "127.0.0.1".to_string(),
        ];
        assert!(is_allowed(
            "https://registry.hub.docker.com/u/a/b/hook/x/",
            &allowed
        ));
        assert!(is_allowed("http://127.0.0.1:9999/cb", &allowed));
        assert!(!is_allowed(
            "https://registry.hub.docker.com.evil.example/",
            &allowed
        ));
        assert!(!is_allowed(
            "http://169.254.169.254/latest/meta-data",
            &allowed
        ));
        assert!(!is_allowed("file:///etc/passwd", &allowed));
        assert!(!is_allowed("not a url", &allowed));
        assert_eq!(
            CallbackBody::new("success", &"x".repeat(400))
                .description
                .len(),
            255
        );
    }
}
