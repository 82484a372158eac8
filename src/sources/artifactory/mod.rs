//! The Artifactory deploy-request poller, a drop-in replacement for coreos-artifactory-monitor:
//! it walks `<deploy repo>/<app>/<version>.deploy`, downloads and validates
//! `<payload repo>/<app>/<domain>-<env>-<app>-<version>.tar.gz`, and feeds each new version through
//! the common ingest step (optionally also submitting it to coreos-deploy).
//!
//! [`ArtHandle`] is the part shared with HTTP (`/v1.0/force`, `/v1.0/info`, `/v1.0/metrics`):
//! settings without secrets, counters, the last round's report and the force queue.

pub mod client;
pub mod deploy;
pub mod payload;
pub mod poller;
pub mod template;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{watch, Notify};

/// Poller settings as shown by `/v1.0/info` (no passwords, keys or tokens).
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub endpoint: String,
    pub auth: &'static str,
    pub domain: String,
    pub environment: String,
    pub polling_seconds: u64,
    pub timeout_seconds: u64,
    pub backoff_max_seconds: u64,
    pub deploy_repo: String,
    pub payload_repo: String,
    /// coreos-deploy URL without credentials, when configured.
    pub deploy_url: Option<String>,
}

/// Counters for `/v1.0/metrics` (fixed names, bounded).
#[derive(Debug, Default)]
pub struct PollMetrics {
    pub polls: AtomicU64,
    pub poll_failures: AtomicU64,
    pub backoffs: AtomicU64,
    pub releases: AtomicU64,
    pub rejected: AtomicU64,
    pub deploys: AtomicU64,
    pub deploy_failures: AtomicU64,
    pub panics: AtomicU64,
    pub last_poll_ts: AtomicI64,
    pub last_success_ts: AtomicI64,
    pub consecutive_failures: AtomicU64,
}

/// What one app folder yielded in a round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppReport {
    pub app: String,
    pub latest: Option<String>,
    /// `up-to-date`, `registered`, `rejected`, `skipped-failed`, `ignored`, `error`, `empty`.
    pub action: String,
    pub outcome: Option<String>,
    pub package_id: Option<String>,
    pub resumed: bool,
    pub message: String,
}

/// One poll round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PollReport {
    pub round: u64,
    pub started_ts: i64,
    pub finished_ts: i64,
    pub ok: bool,
    pub forced: bool,
    pub leader: bool,
    pub error: Option<String>,
    pub apps: Vec<AppReport>,
}

/// The state shared between the poller task and the HTTP handlers.
pub struct ArtHandle {
    settings: OnceLock<Settings>,
    force: Notify,
    force_retry: AtomicBool,
    running: AtomicBool,
    started: AtomicU64,
    completed: watch::Sender<u64>,
    last_report: Mutex<Option<PollReport>>,
    last_error: Mutex<Option<String>>,
    pub metrics: PollMetrics,
}

impl Default for ArtHandle {
    fn default() -> Self {
        Self {
            settings: OnceLock::new(),
            force: Notify::new(),
            force_retry: AtomicBool::new(false),
            running: AtomicBool::new(false),
            started: AtomicU64::new(0),
            completed: watch::Sender::new(0),
            last_report: Mutex::new(None),
            last_error: Mutex::new(None),
            metrics: PollMetrics::default(),
        }
    }
}

/// The answer to `/v1.0/force`.
#[derive(Debug, Clone, Serialize)]
pub struct ForceAnswer {
    /// True when the forced round had not finished within the wait (it runs later).
    pub queued: bool,
    /// Whether a round was running when the answer was given.
    pub running: bool,
    pub report: Option<PollReport>,
}

/// `/v1.0/metrics` counters of the poller.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsSnapshot {
    pub configured: bool,
    pub running: bool,
    pub polls: u64,
    pub poll_failures: u64,
    pub consecutive_failures: u64,
    pub backoffs: u64,
    pub releases: u64,
    pub rejected: u64,
    pub deploys: u64,
    pub deploy_failures: u64,
    pub last_poll_ts: Option<i64>,
    pub last_success_ts: Option<i64>,
    pub last_error: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking holder cannot leave these plain values inconsistent; keep serving.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ArtHandle {
    pub fn settings(&self) -> Option<&Settings> {
        self.settings.get()
    }

    pub fn last_report(&self) -> Option<PollReport> {
        lock(&self.last_report).clone()
    }

    pub fn set_last_error(&self, error: Option<String>) {
        *lock(&self.last_error) = error;
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Asks for a poll now (and a retry of failed payloads). Waits at most `wait` for that round
    /// to finish; never longer. `None` when the poller is not configured.
    pub async fn force(&self, wait: Duration) -> Option<ForceAnswer> {
        self.settings.get()?;
        self.force_retry.store(true, Ordering::SeqCst);
        // Any round that starts from now on serves this request.
        let target = self.started.load(Ordering::SeqCst) + 1;
        let mut rx = self.completed.subscribe();
        // notify_one keeps a permit when the poller is busy: exactly one queued round.
        self.force.notify_one();
        let finished = !wait.is_zero()
            && matches!(
                tokio::time::timeout(wait, rx.wait_for(|done| *done >= target)).await,
                Ok(Ok(_))
            );
        let report = self.last_report();
        Some(ForceAnswer {
            queued: !finished,
            running: self.is_running(),
            report: if finished { report } else { None },
        })
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let m = &self.metrics;
        let ts = |v: &AtomicI64| Some(v.load(Ordering::Relaxed)).filter(|t| *t > 0);
        MetricsSnapshot {
            configured: self.settings.get().is_some(),
            running: self.is_running(),
            polls: m.polls.load(Ordering::Relaxed),
            poll_failures: m.poll_failures.load(Ordering::Relaxed),
            consecutive_failures: m.consecutive_failures.load(Ordering::Relaxed),
            backoffs: m.backoffs.load(Ordering::Relaxed),
            releases: m.releases.load(Ordering::Relaxed),
            rejected: m.rejected.load(Ordering::Relaxed),
            deploys: m.deploys.load(Ordering::Relaxed),
            deploy_failures: m.deploy_failures.load(Ordering::Relaxed),
            last_poll_ts: ts(&m.last_poll_ts),
            last_success_ts: ts(&m.last_success_ts),
            last_error: lock(&self.last_error).clone(),
        }
    }

    fn begin_round(&self) -> (u64, bool) {
        self.running.store(true, Ordering::SeqCst);
        let round = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        (round, self.force_retry.swap(false, Ordering::SeqCst))
    }

    fn end_round(&self, report: PollReport) {
        let round = report.round;
        *lock(&self.last_report) = Some(report);
        self.running.store(false, Ordering::SeqCst);
        self.completed
            .send_modify(|done| *done = (*done).max(round));
    }
}

/// Starts the poller when `--art-endpoint` is set.
pub fn start(
    ctx: &crate::startup::Background,
    args: &crate::config::ArtifactoryArgs,
) -> Option<tokio::task::JoinHandle<()>> {
    args.art_endpoint.as_ref()?;
    match poller::Poller::from_args(ctx, args) {
        Ok(poller) => Some(tokio::spawn(poller.run(ctx.clone()))),
        Err(e) => {
            tracing::error!(error = %e, "Artifactory poller not started");
            ctx.state.artifactory.set_last_error(Some(e));
            None
        }
    }
}
