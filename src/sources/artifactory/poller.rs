//! The poll loop. Each round lists the app folders of the deploy repository, picks each app's
//! newest `.deploy` version by semver order (artifactory-monitor compared strings, so `1.0.9-1`
//! beat `1.0.10-1`), and processes it unless the state row of (domain, environment, app) says it
//! is done, or that it failed with the same payload checksum (retried only when the payload
//! changes or on `/v1.0/force`). A version is marked in progress before anything is written, and
//! a marked version is simply processed again on the next round — ingest is idempotent — so a
//! crash mid-deploy is resumed instead of wedging the app.
//!
//! Artifactory failures (5xx, 429, timeouts, unreachable) end the round and back off
//! exponentially with jitter, honouring `Retry-After`; 401/403/404 on the repository also fail the
//! round loudly (never "zero apps"). Rounds run in their own task, so even a panic is logged and
//! counted, not fatal. With MySQL only the replica holding an advisory lock polls.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::client::{ArtAuth, ArtClient, ArtError, DownloadError};
use super::deploy::DeployClient;
use super::payload::{self, Payload};
use super::{AppReport, ArtHandle, PollReport, Settings};
use crate::config::ArtifactoryArgs;
use crate::domain::{
    ActivityClass, Artifact, Release, ReleaseFile, Severity, SourceKind, Version, ZeroConfigTarget,
};
use crate::http::AppState;
use crate::sources::ingest::{self, Outcome};
use crate::startup::Background;
use crate::store::artifactory::ArtState;
use crate::store::leader::LeaderLock;
use crate::store::StoreError;

/// Largest payload downloaded (compressed). Unpacked size is limited separately.
const MAX_DOWNLOAD_BYTES: usize = payload::MAX_UNPACKED_BYTES as usize;

/// Why a round stopped early: Artifactory or the database is unhealthy; retry with backoff.
#[derive(Debug)]
struct RoundError {
    message: String,
    retry_after: Option<Duration>,
}

impl From<StoreError> for RoundError {
    fn from(e: StoreError) -> Self {
        Self {
            message: format!("database: {e}"),
            retry_after: None,
        }
    }
}

fn art_failure(context: &str, e: &ArtError) -> RoundError {
    RoundError {
        message: format!("Artifactory {context}: {e}"),
        retry_after: e.retry_after(),
    }
}

pub struct Poller {
    state: AppState,
    handle: Arc<ArtHandle>,
    client: ArtClient,
    deploy: Option<DeployClient>,
    domain: String,
    environment: String,
    deploy_repo: String,
    payload_repo: String,
    polling: Duration,
    backoff_max: Duration,
}

/// Removes `user:password@` from a URL for display.
fn without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(invalid URL)".to_string(),
    }
}

/// Repository, domain, environment and app folder names go into URLs and payload names
/// unescaped: allow only characters that need no escaping (folders with others are skipped).
fn valid_name(what: &str, value: &str) -> Result<String, String> {
    let v = value.trim().trim_matches('/');
    if v.is_empty()
        || v.len() > 190
        || v.contains("..")
        || !v.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@' | b'+')
        })
    {
        return Err(format!("{what} {value:?} is not a valid name"));
    }
    Ok(v.to_string())
}

impl Poller {
    pub fn from_args(ctx: &Background, args: &ArtifactoryArgs) -> Result<Arc<Self>, String> {
        let endpoint = args.art_endpoint.clone().unwrap_or_default();
        let required = |what: &str, v: &Option<String>| {
            v.as_deref()
                .ok_or_else(|| format!("--{what} is required with --art-endpoint"))
                .and_then(|v| valid_name(what, v))
        };
        let domain = required("domain", &args.domain)?;
        let environment = required("environment", &args.environment)?;
        let deploy_repo = required("art-deploy-repo", &args.art_deploy_repo)?;
        let payload_repo = required("art-payload-repo", &args.art_payload_repo)?;
        let auth = if let Some(token) = args.art_token.clone().filter(|t| !t.is_empty()) {
            ArtAuth::Bearer(token)
        } else if let Some(key) = args.art_api_key.clone().filter(|k| !k.is_empty()) {
            ArtAuth::ApiKey(key)
        } else if let Some(user) = args.art_userid.clone().filter(|u| !u.is_empty()) {
            ArtAuth::Basic {
                user,
                password: args.art_password.clone().unwrap_or_default(),
            }
        } else {
            ArtAuth::Anonymous
        };
        let timeout = Duration::from_secs(args.art_timeout);
        let auth_kind = auth.kind();
        let client = ArtClient::new(&endpoint, auth, timeout)?;
        let deploy = match (&args.deploy_url, &args.deploy_token) {
            (Some(url), Some(token)) => Some(DeployClient::new(
                url,
                token,
                Duration::from_secs(args.deploy_status_interval),
                timeout,
            )?),
            _ => None,
        };
        let settings = Settings {
            endpoint: without_credentials(client.api_url()),
            auth: auth_kind,
            domain: domain.clone(),
            environment: environment.clone(),
            polling_seconds: args.art_polling,
            timeout_seconds: args.art_timeout,
            backoff_max_seconds: args.art_backoff_max,
            deploy_repo: deploy_repo.clone(),
            payload_repo: payload_repo.clone(),
            deploy_url: args.deploy_url.as_deref().map(without_credentials),
        };
        let handle = ctx.state.artifactory.clone();
        if handle.settings.set(settings).is_err() {
            return Err("an Artifactory poller is already running in this process".into());
        }
        Ok(Arc::new(Self {
            state: ctx.state.clone(),
            handle,
            client,
            deploy,
            domain,
            environment,
            deploy_repo,
            payload_repo,
            polling: Duration::from_secs(args.art_polling),
            backoff_max: Duration::from_secs(args.art_backoff_max),
        }))
    }

    fn lock_name(&self) -> String {
        let digest = hex::encode(Sha256::digest(
            format!("{}/{}", self.domain, self.environment).as_bytes(),
        ));
        format!("rollbridge_artifactory_{}", &digest[..24])
    }

    /// Polls until shutdown: first round at once, then every `--art-polling` seconds, sooner
    /// on `/v1.0/force`, later after failures.
    pub async fn run(self: Arc<Self>, mut bg: Background) {
        tracing::info!(
            endpoint = %self.handle.settings().map(|s| s.endpoint.as_str()).unwrap_or(""),
            domain = %self.domain, environment = %self.environment,
            "Artifactory poller started"
        );
        let mut leader: Option<LeaderLock> = None;
        loop {
            if bg.is_shutting_down() {
                break;
            }
            let delay = match LeaderLock::ensure(&self.state.store, &mut leader, &self.lock_name())
                .await
            {
                true => {
                    let poller = self.clone();
                    let mut round = tokio::spawn(async move { poller.round().await });
                    let finished = tokio::select! {
                        r = &mut round => Some(r),
                        _ = shutdown_requested(&mut bg.shutdown) => None,
                    };
                    let Some(finished) = finished else {
                        // Stop mid-round: an in-progress marker left behind is resumed at the
                        // next start (ingest is idempotent).
                        round.abort();
                        break;
                    };
                    match finished {
                        Ok(delay) => delay,
                        Err(e) => {
                            // A bug, not an input: log it, count it, keep polling.
                            self.handle.metrics.panics.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(error = %e, "Artifactory poll round panicked");
                            let (round, _) = self.handle.begin_round();
                            self.finish_failed_round(
                                round,
                                false,
                                format!("internal error: {e}"),
                                Vec::new(),
                            );
                            self.polling
                        }
                    }
                }
                false => {
                    let (round, _) = self.handle.begin_round();
                    self.handle.end_round(PollReport {
                        round,
                        started_ts: self.state.now(),
                        finished_ts: self.state.now(),
                        ok: true,
                        forced: false,
                        leader: false,
                        error: Some("another replica holds the poller lock; standing by".into()),
                        apps: Vec::new(),
                    });
                    self.polling
                }
            };
            tokio::select! {
                alive = bg.sleep(delay) => if !alive { break },
                _ = self.handle.force.notified() => {},
            }
        }
        if let Some(lock) = leader.take() {
            lock.release().await;
        }
        tracing::info!("Artifactory poller stopped");
    }

    fn finish_failed_round(&self, round: u64, forced: bool, message: String, apps: Vec<AppReport>) {
        let now = self.state.now();
        self.handle
            .metrics
            .poll_failures
            .fetch_add(1, Ordering::Relaxed);
        self.handle
            .metrics
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed);
        self.handle
            .metrics
            .last_poll_ts
            .store(now, Ordering::Relaxed);
        self.handle.set_last_error(Some(message.clone()));
        self.handle.end_round(PollReport {
            round,
            started_ts: now,
            finished_ts: now,
            ok: false,
            forced,
            leader: true,
            error: Some(message),
            apps,
        });
    }

    /// One round; returns the delay before the next one.
    async fn round(self: Arc<Self>) -> Duration {
        let (round, forced) = self.handle.begin_round();
        let started_ts = self.state.now();
        self.handle.metrics.polls.fetch_add(1, Ordering::Relaxed);
        let mut apps = Vec::new();
        let result = self.walk(forced, &mut apps).await;
        let now = self.state.now();
        self.handle
            .metrics
            .last_poll_ts
            .store(now, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.handle
                    .metrics
                    .consecutive_failures
                    .store(0, Ordering::Relaxed);
                self.handle
                    .metrics
                    .last_success_ts
                    .store(now, Ordering::Relaxed);
                if apps.iter().all(|a| a.action != "error") {
                    self.handle.set_last_error(None);
                }
                self.handle.end_round(PollReport {
                    round,
                    started_ts,
                    finished_ts: now,
                    ok: true,
                    forced,
                    leader: true,
                    error: None,
                    apps,
                });
                self.polling
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "Artifactory poll failed; backing off");
                self.handle.metrics.backoffs.fetch_add(1, Ordering::Relaxed);
                self.finish_failed_round(round, forced, e.message.clone(), apps);
                let failures = self
                    .handle
                    .metrics
                    .consecutive_failures
                    .load(Ordering::Relaxed);
                backoff(
                    self.polling.min(FIRST_RETRY),
                    self.backoff_max,
                    failures,
                    e.retry_after,
                    rand::random::<f64>(),
                )
            }
        }
    }

    async fn walk(&self, forced: bool, apps: &mut Vec<AppReport>) -> Result<(), RoundError> {
        let children = self
            .client
            .folder(&self.deploy_repo, "")
            .await
            .map_err(|e| art_failure(&format!("listing {}", self.deploy_repo), &e))?;
        let mut folders: Vec<String> = children
            .into_iter()
            .filter(|c| c.folder && valid_name("app", &c.name).is_ok())
            .map(|c| c.name)
            .collect();
        folders.sort();
        folders.dedup();
        for app in folders {
            let report = self.process_app(&app, forced).await?;
            if report.action == "error" || report.action == "rejected" {
                tracing::warn!(app = %report.app, action = %report.action, message = %report.message, "Artifactory app");
            } else if report.action == "registered" {
                tracing::info!(app = %report.app, version = ?report.latest, outcome = ?report.outcome, "Artifactory release ingested");
            }
            apps.push(report);
        }
        Ok(())
    }

    async fn process_app(&self, app: &str, forced: bool) -> Result<AppReport, RoundError> {
        let mut report = AppReport {
            app: app.to_string(),
            latest: None,
            action: "up-to-date".into(),
            outcome: None,
            package_id: None,
            resumed: false,
            message: String::new(),
        };
        let children = match self.client.folder(&self.deploy_repo, app).await {
            Ok(c) => c,
            Err(e) if e.is_transient() => return Err(art_failure(&format!("listing {app}"), &e)),
            Err(e) => {
                report.action = "error".into();
                report.message = format!("listing {}/{app}: {e}", self.deploy_repo);
                self.handle.set_last_error(Some(report.message.clone()));
                return Ok(report);
            }
        };
        let latest = children
            .iter()
            .filter(|c| !c.folder)
            .filter_map(|c| c.name.strip_suffix(".deploy"))
            .filter_map(|v| Version::parse(v).ok())
            .max();
        let Some(latest) = latest else {
            report.action = "empty".into();
            report.message = "no <semver>.deploy request".into();
            return Ok(report);
        };
        report.latest = Some(latest.to_string());
        let now = self.state.now();
        let mut st = self
            .state
            .store
            .artifactory_state(&self.domain, &self.environment, app)
            .await?
            .unwrap_or_else(|| ArtState {
                domain: self.domain.clone(),
                environment: self.environment.clone(),
                app: app.to_string(),
                updated_ts: now,
                ..ArtState::default()
            });
        let last = st
            .last_version
            .as_deref()
            .and_then(|v| Version::parse(v).ok());
        if last.as_ref().is_some_and(|l| *l >= latest) {
            if st.in_progress_version.is_some() {
                st.in_progress_version = None;
                st.in_progress_ts = None;
                st.updated_ts = now;
                self.state.store.save_artifactory_state(&st).await?;
            }
            report.message = format!("{latest} already processed");
            return Ok(report);
        }
        report.resumed = st.in_progress_version.as_deref() == Some(latest.as_str());
        let tar_name = format!("{}-{}-{app}-{latest}.tar.gz", self.domain, self.environment);
        let tar_path = format!("{app}/{tar_name}");
        let info = match self.client.file_info(&self.payload_repo, &tar_path).await {
            Ok(info) => Ok(info),
            Err(e) if e.is_transient() => {
                return Err(art_failure(&format!("file info {tar_name}"), &e))
            }
            Err(e) => Err(format!("payload {}/{tar_path}: {e}", self.payload_repo)),
        };
        let checksum = match &info {
            Ok(i) => i
                .sha256
                .clone()
                .or_else(|| i.sha1.clone())
                .unwrap_or_else(|| format!("size:{}", i.size)),
            Err(_) => "missing".to_string(),
        };
        if !forced
            && st.failed_version.as_deref() == Some(latest.as_str())
            && st.failed_checksum.as_deref() == Some(checksum.as_str())
        {
            report.action = "skipped-failed".into();
            report.message = format!(
                "{latest} failed before with the same payload ({}); waiting for a new payload or /v1.0/force",
                st.failed_reason.clone().unwrap_or_default()
            );
            return Ok(report);
        }
        let info = match info {
            Ok(i) => i,
            Err(reason) => {
                return self
                    .reject(st, &latest, &checksum, reason, None, report)
                    .await
            }
        };
        st.in_progress_version = Some(latest.to_string());
        st.in_progress_ts = Some(now);
        st.updated_ts = now;
        self.state.store.save_artifactory_state(&st).await?;
        let bytes = match self
            .client
            .download(&self.payload_repo, &tar_path, &info, MAX_DOWNLOAD_BYTES)
            .await
        {
            Ok(b) => b,
            Err(DownloadError::Transient(e)) => {
                return Err(art_failure(&format!("downloading {tar_name}"), &e))
            }
            Err(DownloadError::Rejected(reason)) => {
                return self
                    .reject(st, &latest, &checksum, reason, None, report)
                    .await
            }
        };
        let dir = tar_name.trim_end_matches(".tar.gz").to_string();
        let version_text = latest.to_string();
        let unpacked = {
            let bytes = bytes.clone();
            tokio::task::spawn_blocking(move || payload::unpack(&bytes, &dir, &version_text))
                .await
                .unwrap_or_else(|e| Err(format!("unpacking failed: {e}")))
        };
        let payload = match unpacked {
            Ok(p) => p,
            Err(reason) => {
                return self
                    .reject(st, &latest, &checksum, reason, None, report)
                    .await
            }
        };
        let release = self.release(app, &latest, &tar_name, &bytes, &payload);
        let ingested = ingest::ingest(
            &self.state.store,
            &self.state.promotions,
            &release,
            self.state.now(),
        )
        .await?;
        self.state
            .metrics
            .observe_release("artifactory", ingested.outcome.as_str());
        report.outcome = Some(ingested.outcome.as_str().to_string());
        report.package_id = ingested.results.iter().find_map(|r| r.package_id.clone());
        report.message = ingested.message.clone();
        match ingested.outcome {
            Outcome::Rejected => {
                let name = payload.vars.name.clone();
                let reason = format!("refused: {}", ingested.message);
                return self
                    .reject(st, &latest, &checksum, reason, Some(&name), report)
                    .await;
            }
            Outcome::Ignored => report.action = "ignored".into(),
            Outcome::Promoted | Outcome::Created => {
                report.action = "registered".into();
                self.handle.metrics.releases.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Existing | Outcome::Duplicate => report.action = "registered".into(),
        }
        if let (Some(deploy), true) = (&self.deploy, report.action == "registered") {
            let app_id = ingested.results.first().map(|r| r.application_id.clone());
            self.submit_deploy(deploy, &payload, app_id.as_deref(), &latest)
                .await;
        }
        st.last_version = Some(latest.to_string());
        st.last_checksum = Some(checksum);
        st.in_progress_version = None;
        st.in_progress_ts = None;
        st.failed_version = None;
        st.failed_checksum = None;
        st.failed_reason = None;
        st.failures = 0;
        st.updated_ts = self.state.now();
        self.state.store.save_artifactory_state(&st).await?;
        Ok(report)
    }

    fn release(
        &self,
        app: &str,
        version: &Version,
        tar_name: &str,
        bytes: &[u8],
        payload: &Payload,
    ) -> Release {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let sha1 = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(bytes));
        let mut files = vec![ReleaseFile {
            name: payload.unit_name.clone(),
            content: payload.unit.clone().into_bytes(),
        }];
        if let (Some(name), Some(raw)) = (&payload.etcd2_file, &payload.etcd2_raw) {
            files.push(ReleaseFile {
                name: name.clone(),
                content: raw.clone(),
            });
        }
        if let Some(readme) = &payload.readme {
            files.push(ReleaseFile {
                name: "README.md".into(),
                content: readme.clone(),
            });
        }
        files.push(ReleaseFile {
            name: payload.metadata_file.clone(),
            content: payload.metadata_raw.clone(),
        });
        Release {
            source: SourceKind::Artifactory,
            selector: app.to_string(),
            delivery_key: Some(format!(
                "{}/{}/{app}/{version}/{sha256}",
                self.domain, self.environment
            )),
            tag: version.to_string(),
            artifact: Artifact::Download {
                url: format!("{}/", self.client.download_url(&self.payload_repo, app)),
                filename: tar_name.to_string(),
                size: Some(bytes.len() as u64),
                sha1_base64: Some(sha1),
                sha256_base64: Some(
                    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes)),
                ),
            },
            requested_app: None,
            requested_channel: None,
            zero_config: Some(ZeroConfigTarget {
                application_name: payload.vars.name.clone(),
                channel_name: self.environment.clone(),
            }),
            description: format!(
                "{} {} (image {}, {} instances) from Artifactory {}/{app}",
                payload.vars.name,
                payload.vars.version,
                payload.vars.image_version,
                payload.vars.num_instances,
                self.deploy_repo
            ),
            metadata: Some(payload.metadata.clone()),
            files,
        }
    }

    /// Records a rejected payload: state (so it is not retried until it changes), activity on
    /// the app when it exists, else a log line, the metric and the poller's last error.
    async fn reject(
        &self,
        mut st: ArtState,
        version: &Version,
        checksum: &str,
        reason: String,
        metadata_name: Option<&str>,
        mut report: AppReport,
    ) -> Result<AppReport, RoundError> {
        let now = self.state.now();
        st.in_progress_version = None;
        st.in_progress_ts = None;
        st.failed_version = Some(version.to_string());
        st.failed_checksum = Some(checksum.to_string());
        st.failed_reason = Some(reason.clone());
        st.failures += 1;
        st.updated_ts = now;
        self.state.store.save_artifactory_state(&st).await?;
        self.handle.metrics.rejected.fetch_add(1, Ordering::Relaxed);
        let description = format!(
            "Artifactory payload {}/{} rejected: {reason}",
            st.app, version
        );
        match self
            .state
            .store
            .artifactory_app_for(&st.app, metadata_name)
            .await?
        {
            Some(app_id) => {
                self.state
                    .store
                    .artifactory_activity(
                        &app_id,
                        ActivityClass::ReleaseRejected,
                        Severity::Warning,
                        version.as_str(),
                        &description,
                        now,
                    )
                    .await?;
            }
            None => {
                tracing::warn!(app = %st.app, version = %version, reason = %reason, "Artifactory payload rejected (no application yet to attach activity to)");
                self.handle.set_last_error(Some(description.clone()));
            }
        }
        report.action = "rejected".into();
        report.message = reason;
        Ok(report)
    }

    async fn submit_deploy(
        &self,
        deploy: &DeployClient,
        payload: &Payload,
        app_id: Option<&str>,
        version: &Version,
    ) {
        let outcome = deploy.submit(payload).await;
        self.handle.metrics.deploys.fetch_add(1, Ordering::Relaxed);
        let (class, severity) = if outcome.success {
            (ActivityClass::ReleaseRegistered, Severity::Info)
        } else {
            self.handle
                .metrics
                .deploy_failures
                .fetch_add(1, Ordering::Relaxed);
            (ActivityClass::SourceError, Severity::Warning)
        };
        let description = format!(
            "coreos-deploy {} {}: {}{}",
            payload.vars.name,
            version,
            outcome.message,
            outcome
                .deploy_id
                .as_deref()
                .map(|id| format!(" (deployID {id})"))
                .unwrap_or_default()
        );
        tracing::info!(success = outcome.success, message = %description, "coreos-deploy submission");
        if let Some(app_id) = app_id {
            if let Err(e) = self
                .state
                .store
                .artifactory_activity(
                    app_id,
                    class,
                    severity,
                    version.as_str(),
                    &description,
                    self.state.now(),
                )
                .await
            {
                tracing::warn!(error = %e, "recording the coreos-deploy outcome failed");
            }
        }
    }
}

/// Resolves once shutdown was requested (never, if the signal's sender is gone).
async fn shutdown_requested(rx: &mut tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The first retry after a failed round comes after this long (or the polling interval, when
/// that is shorter); each further consecutive failure doubles it up to `--art-backoff-max`.
const FIRST_RETRY: Duration = Duration::from_secs(10);

/// The delay after `failures` consecutive failed rounds: `first` doubled per further failure,
/// capped at `max`, ±20 % jitter (`unit` in [0, 1)), never below `Retry-After`.
pub fn backoff(
    first: Duration,
    max: Duration,
    failures: u64,
    retry_after: Option<Duration>,
    unit: f64,
) -> Duration {
    let exp = failures.saturating_sub(1).min(20) as u32;
    let base = first.saturating_mul(2u32.saturating_pow(exp)).min(max);
    let jitter = 0.8 + 0.4 * unit.clamp(0.0, 1.0);
    let jittered = base.mul_f64(jitter).min(max);
    jittered.max(retry_after.unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(10), s(100), 1, None, 0.5), s(10));
        assert_eq!(backoff(s(10), s(100), 2, None, 0.5), s(20));
        assert_eq!(backoff(s(10), s(100), 3, None, 0.5), s(40));
        assert_eq!(backoff(s(10), s(100), 30, None, 0.5), s(100));
        assert!(backoff(s(10), s(100), 2, None, 0.0) >= s(16));
        assert!(backoff(s(10), s(100), 2, None, 0.999) <= s(24));
        assert_eq!(backoff(s(10), s(100), 1, Some(s(300)), 0.5), s(300));
    }

    #[test]
    fn semver_order_not_string_order() {
        let mut v: Vec<Version> = ["1.0.9-1", "1.0.10-1", "1.0.1-22"]
            .iter()
            .map(|t| Version::parse(t).unwrap())
            .collect();
        v.sort();
        assert_eq!(v.last().unwrap().as_str(), "1.0.10-1");
    }

    #[test]
    fn names_must_be_url_safe() {
        assert_eq!(valid_name("app", "/video-mobile/").unwrap(), "video-mobile");
        assert!(valid_name("app", "a#b").is_err());
        assert!(valid_name("app", "a b").is_err());
        assert!(valid_name("app", "..").is_err());
        assert!(valid_name("app", "a/b").is_err());
    }

    #[test]
    fn credentials_are_removed_from_urls() {
        assert_eq!(
            without_credentials("https://u:p@deploy.example/x"),
            "https://deploy.example/x"
        );
    }
}
