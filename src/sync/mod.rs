//! Upstream syncer: follows another Omaha server's channels (the public Flatcar update server,
//! a Nebraska, another rollbridge). For each synced channel it periodically sends an update
//! check as a syncer client would; an update becomes local packages (downloaded and verified
//! first when payload hosting is on), floors are marked, and the channel is pointed at the
//! target. Each channel has its own schedule and backoff, so one failing channel never holds up
//! the others; failures are logged, counted (`rollbridge_sync_*` metrics) and written to the
//! activity stream once per distinct problem.

pub mod hosting;
pub mod upstream;

use std::collections::HashMap;
use std::time::Duration;

use rand::Rng as _;
use tokio::time::Instant;

use crate::config::SyncArgs;
use crate::domain::{seed, ActivityClass, CoreosActionInput, NewActivity, PackageInput, Severity};
use crate::http::AppState;
use crate::startup::Background;
use crate::store::sync::{SyncPlan, SyncedPackage};
use hosting::HostRequest;
use upstream::{Answer, CheckParams, SyncError, UpstreamPackage};

/// Architecture label of synced payloads (the syncer asks as an amd64 machine).
pub const SYNC_ARCH: &str = "amd64";

/// Upstream track names followed without configuration (Nebraska's list).
fn follows_by_name(name: &str) -> bool {
    matches!(name, "stable" | "beta" | "alpha" | "edge") || name.starts_with("lts-")
}

/// First retry after a failure; doubles per consecutive failure, capped at the interval.
const BACKOFF_BASE: Duration = Duration::from_secs(30);

/// The delay before the next attempt after `failures` consecutive failures (at least one),
/// with jitter so channels (and replicas) failing together do not retry in lockstep.
pub fn backoff(failures: u32, interval: Duration, jitter: f64) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = exp.min(interval);
    // Jitter in [0.5, 1.0] of the capped delay.
    capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// Starts the syncer when `--sync-upstream` is set.
pub fn start(ctx: &Background, args: &SyncArgs) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(url) = args.sync_upstream.clone() else {
        return Vec::new();
    };
    let client = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .user_agent(concat!("rollbridge-syncer/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "syncer: cannot build the HTTP client; sync disabled");
            return Vec::new();
        }
    };
    let app_id = match &args.sync_app {
        Some(raw) => match crate::domain::normalize_uuid("sync_app", raw) {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(error = %e, "syncer: --sync-app is not an application id; sync disabled");
                return Vec::new();
            }
        },
        None => seed::COREOS_APP_ID.to_string(),
    };
    let syncer = Syncer {
        state: ctx.state.clone(),
        client,
        url,
        app_id,
        appid: args
            .sync_upstream_appid
            .clone()
            .unwrap_or_else(|| format!("{{{}}}", seed::COREOS_APP_ID)),
        interval: args.sync_interval,
        timeout: args.sync_timeout,
        mappings: args.sync_channels.clone(),
        unrecorded: std::sync::Mutex::new(HashMap::new()),
    };
    tracing::info!(upstream = %syncer.url, interval = ?syncer.interval, "syncer started");
    vec![tokio::spawn(syncer.run(ctx.clone()))]
}

/// One configured syncer.
pub struct Syncer {
    state: AppState,
    client: reqwest::Client,
    url: String,
    /// Local application whose channels are synced.
    app_id: String,
    /// The appid sent upstream.
    appid: String,
    interval: Duration,
    timeout: Duration,
    mappings: Vec<(String, String)>,
    /// Last error per channel name for channels without a `sync_state` row (a mapped channel
    /// that does not exist yet), so those too are reported once rather than on every retry.
    unrecorded: std::sync::Mutex<HashMap<String, String>>,
}

struct Schedule {
    next_due: Instant,
    failures: u32,
}

impl Syncer {
    async fn run(self, mut ctx: Background) {
        match self.state.store.app_by_id(&self.app_id).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::error!(app = %self.app_id, "syncer: the application to sync does not exist; sync disabled");
                return;
            }
            // A database hiccup at start is not fatal: the loop reports it per channel.
            Err(e) => tracing::warn!(error = %e, "syncer: checking the application failed"),
        }
        let mut schedule: HashMap<String, Schedule> = HashMap::new();
        loop {
            if ctx.is_shutting_down() {
                return;
            }
            let channels = self.channels().await;
            let now = Instant::now();
            for (local, track) in &channels {
                let entry = schedule.entry(local.clone()).or_insert(Schedule {
                    next_due: now,
                    failures: 0,
                });
                if entry.next_due > Instant::now() {
                    continue;
                }
                match self.sync_channel(local, track).await {
                    Ok(()) => {
                        entry.failures = 0;
                        entry.next_due = Instant::now() + self.interval;
                    }
                    Err(_) => {
                        entry.failures = entry.failures.saturating_add(1);
                        let jitter = rand::thread_rng().gen::<f64>();
                        entry.next_due =
                            Instant::now() + backoff(entry.failures, self.interval, jitter);
                    }
                }
                if ctx.is_shutting_down() {
                    return;
                }
            }
            schedule.retain(|name, _| channels.iter().any(|(l, _)| l == name));
            let wake = schedule
                .values()
                .map(|s| s.next_due)
                .min()
                .unwrap_or_else(|| Instant::now() + self.interval);
            let delay = wake
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(50));
            if !ctx.sleep(delay).await {
                return;
            }
        }
    }

    /// The channels to sync as (local name, upstream track): channels of the application named
    /// like an upstream track, plus the configured mappings (which win for their channel).
    async fn channels(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> =
            match self.state.store.list_channels(&self.app_id).await {
                Ok(channels) => channels
                    .into_iter()
                    .filter(|c| follows_by_name(&c.name))
                    .map(|c| (c.name.clone(), c.name))
                    .collect(),
                Err(e) => {
                    tracing::error!(error = %e, "syncer: listing channels failed");
                    Vec::new()
                }
            };
        for (local, upstream) in &self.mappings {
            out.retain(|(l, _)| l != local);
            out.push((local.clone(), upstream.clone()));
        }
        out
    }

    /// One sync of one channel, with its outcome recorded (log, metrics, activity, state).
    pub async fn sync_channel(&self, local: &str, track: &str) -> Result<(), SyncError> {
        let result = self.try_sync(local, track).await;
        let metrics = &self.state.metrics;
        let now = self.state.now();
        let channel = self
            .state
            .store
            .channel_by_name(&self.app_id, local)
            .await
            .ok()
            .flatten();
        match &result {
            Ok(()) => {
                metrics.observe_sync(local, "ok");
                self.unrecorded
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(local);
                if let Some(channel) = &channel {
                    if let Err(e) = self
                        .state
                        .store
                        .record_sync_attempt(&channel.id, None, now)
                        .await
                    {
                        tracing::warn!(error = %e, "syncer: recording the attempt failed");
                    }
                }
            }
            Err(e) => {
                metrics.observe_sync(local, e.kind());
                tracing::warn!(channel = local, track, error = %e, "syncer: channel sync failed");
                let message = e.to_string();
                let recorded = match &channel {
                    Some(c) => self
                        .state
                        .store
                        .record_sync_attempt(&c.id, Some(&message), now)
                        .await
                        .ok(),
                    None => None,
                };
                let is_new = recorded.unwrap_or_else(|| {
                    let mut unrecorded = self
                        .unrecorded
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    unrecorded
                        .insert(local.to_string(), message.clone())
                        .as_ref()
                        != Some(&message)
                });
                if is_new {
                    self.failure_activity(local, track, channel.map(|c| c.id), &message)
                        .await;
                }
            }
        }
        result
    }

    async fn failure_activity(
        &self,
        local: &str,
        track: &str,
        channel_id: Option<String>,
        message: &str,
    ) {
        let activity = NewActivity {
            class: ActivityClass::UpstreamSyncFailed,
            severity: Severity::Error,
            version: "0.0.0".into(),
            application_id: self.app_id.clone(),
            group_id: None,
            channel_id,
            instance_id: None,
            description: format!(
                "Sync of channel {local} from upstream track {track} failed; the channel was left untouched: {message}"
            ),
        };
        let mut db = self.state.store.db().clone();
        if let Err(e) =
            crate::store::rollout::insert_activity(&mut db, &activity, self.state.now()).await
        {
            tracing::warn!(error = %e, "syncer: writing the activity entry failed");
        }
    }

    async fn try_sync(&self, local: &str, track: &str) -> Result<(), SyncError> {
        let store = &self.state.store;
        let channel = store
            .channel_by_name(&self.app_id, local)
            .await?
            .ok_or_else(|| {
                SyncError::Invalid(format!(
                    "application {} has no channel named {local}",
                    self.app_id
                ))
            })?;
        let machine_id = store
            .sync_machine_id(&channel.id, track, self.state.now())
            .await?;
        let version = channel
            .package
            .as_ref()
            .map(|p| p.version.clone())
            .unwrap_or_else(|| "0.0.0".into());
        let params = CheckParams {
            appid: self.appid.clone(),
            track: track.to_string(),
            version,
            machine_id,
            boot_id: format!("{{{}}}", crate::domain::new_id()),
        };
        let answer = upstream::check(&self.client, &self.url, self.timeout, &params).await?;
        let Answer::Update { packages, target } = answer else {
            return Ok(());
        };
        let mut plan = SyncPlan {
            packages: Vec::with_capacity(packages.len()),
            target,
        };
        for package in &packages {
            plan.packages.push(self.prepare(package, track).await?);
        }
        let applied = store
            .apply_sync(&self.app_id, &channel.id, &plan, self.state.now())
            .await?;
        if !applied.created.is_empty() || applied.channel_updated.is_some() {
            tracing::info!(
                channel = local,
                track,
                created = ?applied.created,
                floors = ?applied.floors,
                now_at = ?applied.channel_updated,
                "syncer: channel synced"
            );
        }
        if applied.channel_updated.is_some() {
            self.state.promotions.notify_waiters();
        }
        Ok(())
    }

    /// The package to store for one upstream package: hosted locally when hosting is on and
    /// the version is new here (an existing package is never downloaded again).
    async fn prepare(&self, p: &UpstreamPackage, track: &str) -> Result<SyncedPackage, SyncError> {
        let exists = self
            .state
            .store
            .package_by_version(&self.app_id, p.version.as_str())
            .await?
            .is_some();
        let (url, filename) = if self.state.hosting.enabled() && !exists {
            let hosted = self
                .state
                .hosting
                .host(&HostRequest {
                    app_id: self.app_id.clone(),
                    arch: SYNC_ARCH.into(),
                    version: p.version.as_str().to_string(),
                    codebase: p.codebase.clone(),
                    name: p.name.clone(),
                    size: p.size,
                    sha1_b64: Some(p.sha1_b64.clone()),
                    sha256_b64: Some(p.sha256_b64.clone()),
                })
                .await;
            self.state.metrics.observe_payload(match &hosted {
                Ok(h) if h.downloaded => "downloaded",
                Ok(_) => "reused",
                Err(e) => e.kind(),
            });
            let hosted = hosted?;
            (hosted.url, hosted.file_name)
        } else {
            (p.codebase.clone(), p.name.clone())
        };
        // update_engine inserts the '/' when an upstream codebase lacks it; stored packages
        // keep the form every client can use.
        let url = if url.ends_with('/') {
            url
        } else {
            format!("{url}/")
        };
        let action = p.action.clone().unwrap_or_default();
        let input = PackageInput {
            package_type: Some(crate::domain::PackageType::Coreos.code()),
            version: Some(p.version.as_str().to_string()),
            url: Some(url),
            filename: Some(filename),
            description: Some(format!("Synced from upstream track {track}")),
            size: p.size.map(|s| s.to_string()),
            hash: Some(p.sha1_b64.clone()),
            channels_blacklist: None,
            coreos_action: Some(CoreosActionInput {
                event: Some("postinstall".into()),
                chromeos_version: Some(action.chromeos_version),
                sha256: Some(p.sha256_b64.clone()),
                needs_admin: Some(action.needs_admin),
                is_delta: Some(action.is_delta),
                // update_engine backs off between payload URLs unless told not to; syncers
                // have always stored true (CoreRoller, Nebraska).
                disable_payload_backoff: Some(p.action.is_none() || action.disable_payload_backoff),
                metadata_signature_rsa: Some(action.metadata_signature_rsa),
                metadata_size: Some(action.metadata_size),
                deadline: Some(action.deadline),
                id: None,
                created_ts: None,
            }),
            image_repository: None,
            image_digest: None,
        };
        let fields = input
            .validate(&self.app_id)
            .map_err(|e| SyncError::Invalid(format!("upstream package {}: {e}", p.version)))?;
        let floor_reason = p.is_floor.then(|| {
            if p.floor_reason.trim().is_empty() {
                format!("Synced from upstream track {track}")
            } else {
                p.floor_reason.clone()
            }
        });
        Ok(SyncedPackage {
            fields,
            floor_reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let hour = Duration::from_secs(3600);
        assert_eq!(backoff(1, hour, 1.0), Duration::from_secs(30));
        assert_eq!(backoff(2, hour, 1.0), Duration::from_secs(60));
        assert_eq!(backoff(3, hour, 0.0), Duration::from_secs(60));
        assert_eq!(backoff(40, hour, 1.0), hour);
        let short = Duration::from_millis(200);
        assert_eq!(backoff(5, short, 1.0), short);
    }

    #[test]
    fn tracks_followed_by_name() {
        for name in ["stable", "beta", "alpha", "edge", "lts-2024"] {
            assert!(follows_by_name(name));
        }
        assert!(!follows_by_name("canary"));
    }
}
