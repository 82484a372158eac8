//! The Docker agent: an Omaha client that pulls images and recreates matching containers.
//!
//! Each pass lists the host's containers, keeps the ones bound to an application (label
//! `rollbridge.app`, or `--owner` on the image repository; never `rollbridge.enable=false`),
//! groups them by application and sends one Omaha ping + update check per application with
//! the host's stable machine id. A grant for a Docker package is applied container by
//! container (rolling): events 13/1 (pull started), 14/1 (pulled), 800/1 (first replacement
//! running), 3/2 (all healthy, with `previousversion`), or 3/0 with an error code after the
//! previous containers were put back. The server's rollout policy decides everything else
//! (rate limits, safe mode pausing on the first failure).
//!
//! `rollbridge agent` runs this against a server over HTTP; `serve` runs it embedded for the
//! local socket and also checks at once when a release is promoted (`AppState::promotions`).

pub mod matching;
pub mod report;
pub mod runtime;
pub mod server;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng as _;

use crate::config::agent::{AgentSettings, LocalAgentMode};
use crate::http::metrics::AgentMetrics;
use crate::omaha::protocol::{AppRequest, EventRequest, Os, ParsedUpdateCheck, Request};
use crate::startup::Background;
use matching::{AppSelector, ImageRef};
use report::{ContainerReport, Outcome};
use runtime::{ErrorCode, HealthSettings, ManagedContainer, Replaced, Runtime, StepError};
use server::Server;

/// How long a package that failed on this host is not retried (unless another one is offered).
const FAILED_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// The version reported by containers whose version is unknown (anything newer is an update).
const UNKNOWN_VERSION: &str = "0.0.0";

/// `rollbridge agent`.
pub async fn run(args: crate::config::AgentArgs) -> anyhow::Result<()> {
    let settings = args.settings();
    let server = Server::remote(&args.server, &args.token)?;
    server.verify_token().await?;
    let runtime = Runtime::connect(&settings.docker)
        .await
        .with_context(|| format!("connecting to Docker at {}", settings.docker))?;
    let mut agent = Agent::new(server, runtime, settings, AgentMetrics::new()).await?;
    tracing::info!(machine_id = %agent.machine_id, server = %args.server, "rollbridge agent started");
    if args.once {
        agent.pass().await;
        agent.log_metrics();
        return Ok(());
    }
    // Listening from the start (a spawned task), but a pass in progress is finished before
    // exiting: stopping in the middle of a recreate would leave a container aside.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::startup::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    loop {
        agent.pass().await;
        agent.log_metrics();
        if *stop_rx.borrow() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(jittered(agent.settings.interval)) => {}
            _ = stop_rx.changed() => return Ok(()),
        }
    }
}

/// Starts the agent embedded in `serve` when enabled: `--local-agent`, or by default when the
/// Docker socket answers.
pub fn start_local(
    ctx: &Background,
    args: &crate::config::LocalAgentArgs,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mode = args.mode();
    if mode == LocalAgentMode::Off {
        return Vec::new();
    }
    let settings = args.settings();
    let mut ctx = ctx.clone();
    vec![tokio::spawn(async move {
        let runtime = match tokio::time::timeout(
            Duration::from_secs(5),
            Runtime::connect(&settings.docker),
        )
        .await
        {
            Ok(Ok(runtime)) => runtime,
            Ok(Err(e)) if mode == LocalAgentMode::On => {
                tracing::error!(docker = %settings.docker, error = %e, "local agent: Docker is not reachable; agent not started");
                return;
            }
            Err(_) if mode == LocalAgentMode::On => {
                tracing::error!(docker = %settings.docker, "local agent: Docker did not answer; agent not started");
                return;
            }
            _ => {
                tracing::info!(docker = %settings.docker, "local agent off: no Docker socket");
                return;
            }
        };
        let server = Server::Local {
            state: ctx.state.clone(),
        };
        let metrics = ctx.state.metrics.agent().clone();
        let promotions = ctx.state.promotions.clone();
        let mut agent = match Agent::new(server, runtime, settings, metrics).await {
            Ok(agent) => agent,
            Err(e) => {
                tracing::error!(error = %e, "local agent not started");
                return;
            }
        };
        tracing::info!(machine_id = %agent.machine_id, "local agent started");
        loop {
            // Registered before the pass so a promotion during it is not lost.
            let notified = promotions.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            agent.pass().await;
            if ctx.is_shutting_down() {
                return;
            }
            tokio::select! {
                _ = notified => tracing::debug!("local agent: release promoted, checking now"),
                keep_going = ctx.sleep(jittered(agent.settings.interval)) => {
                    if !keep_going {
                        return;
                    }
                }
            }
        }
    })]
}

/// `interval` ± 10 %, so a fleet started together does not check in lockstep.
fn jittered(interval: Duration) -> Duration {
    let factor = rand::thread_rng().gen_range(0.9..=1.1);
    interval.mul_f64(factor).max(Duration::from_millis(100))
}

/// Containers of one application on this host.
struct Unit {
    app_id: String,
    track: String,
    containers: Vec<ManagedContainer>,
}

/// What one grant turned into.
#[derive(Debug)]
enum UpdateResult {
    Updated,
    AlreadyCurrent,
    Failed(StepError),
    Skipped,
}

/// The package's image would move a container to another repository: refused (see
/// `--allow-repository-change`). Containers whose image is not a reference (an image id)
/// cannot be compared and are not held against the package.
fn repository_change(unit: &Unit, image: &ImageRef) -> Option<StepError> {
    let wanted = image.normalized_repository();
    unit.containers.iter().find_map(|c| {
        if c.image.starts_with("sha256:") {
            return None;
        }
        let running = ImageRef::parse(&c.image)?;
        (running.normalized_repository() != wanted).then(|| StepError {
            code: ErrorCode::RepositoryChanged,
            message: format!(
                "the package's image {} is from another repository than container {}'s {} (start the agent with --allow-repository-change to accept)",
                image.repository, c.name, running.repository
            ),
        })
    })
}

pub struct Agent {
    server: Server,
    runtime: Runtime,
    settings: AgentSettings,
    machine_id: String,
    alias: String,
    docker_version: String,
    metrics: AgentMetrics,
    versions: state::Versions,
    /// app id → (package reference, when it failed).
    failed: HashMap<String, (String, Instant)>,
    /// The container this agent runs in: never recreated (stopping it would stop the update).
    own_container: Option<String>,
}

impl Agent {
    pub async fn new(
        server: Server,
        runtime: Runtime,
        settings: AgentSettings,
        metrics: AgentMetrics,
    ) -> anyhow::Result<Self> {
        let (docker_id, host, docker_version) = runtime.identity().await?;
        let machine_id = state::machine_id(settings.state_dir.as_deref(), &docker_id)?;
        let versions = state::Versions::load(settings.state_dir.as_deref());
        Ok(Self {
            server,
            runtime,
            machine_id,
            alias: host,
            docker_version,
            metrics,
            versions,
            failed: HashMap::new(),
            own_container: state::own_container_id(),
            settings,
        })
    }

    /// The machine id this agent reports with.
    pub fn machine_id(&self) -> &str {
        &self.machine_id
    }

    fn log_metrics(&self) {
        let get = |v: &prometheus::IntCounterVec, r: &str| v.with_label_values(&[r]).get();
        tracing::info!(
            pulls_ok = get(&self.metrics.pulls, "ok"),
            pulls_failed = get(&self.metrics.pulls, "error"),
            recreates_ok = get(&self.metrics.recreates, "ok"),
            recreates_failed = get(&self.metrics.recreates, "error"),
            rollbacks = self.metrics.rollbacks.get(),
            "agent counters"
        );
    }

    /// One reconcile pass over every managed application on the host. Errors are logged per
    /// application; one bad application never stops the others.
    pub async fn pass(&mut self) {
        // Anything aside for longer than an update can take was left by a crash.
        let stale_after = self.settings.health_timeout + Duration::from_secs(300);
        match self.runtime.recover_aside(stale_after).await {
            Ok(restored) => {
                for name in restored {
                    tracing::warn!(container = %name, "agent: restored a container left aside by an interrupted update");
                }
            }
            Err(e) => tracing::warn!(error = %e, "agent: checking for interrupted updates failed"),
        }
        let units = match self.units().await {
            Ok(units) => units,
            Err(e) => {
                tracing::warn!(error = %e, "agent: listing containers failed");
                return;
            }
        };
        for unit in units {
            if let Err(e) = self.check(&unit).await {
                tracing::warn!(app = %unit.app_id, error = %e, "agent: update check failed");
            }
        }
    }

    /// Managed containers grouped by application (and track).
    async fn units(&mut self) -> anyhow::Result<Vec<Unit>> {
        let mut apps: HashMap<AppSelector, Option<String>> = HashMap::new();
        let mut tracks: HashMap<String, Option<String>> = HashMap::new();
        let mut units: BTreeMap<String, Unit> = BTreeMap::new();
        for mut c in self.runtime.containers().await? {
            // The list reports an image id when the container's tag has moved; use the config.
            if c.image.starts_with("sha256:") {
                c.image = self
                    .runtime
                    .configured_image(&c.id)
                    .await
                    .unwrap_or_default();
            }
            let Some(binding) = matching::binding(&c.labels, &c.image, &self.settings.owners)
            else {
                continue;
            };
            if self.own_container.as_deref() == Some(c.id.as_str()) {
                tracing::warn!(container = %c.name, "agent: not updating the container the agent runs in");
                continue;
            }
            if !apps.contains_key(&binding.app) {
                let resolved = match &binding.app {
                    AppSelector::Label(label) => self.server.app_by_label(label).await,
                    AppSelector::Repository(repo) => self.server.app_by_repository(repo).await,
                };
                let resolved = resolved.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "agent: resolving an application failed");
                    None
                });
                if resolved.is_none() {
                    tracing::warn!(container = %c.name, selector = ?binding.app, "agent: no such application; container ignored");
                }
                apps.insert(binding.app.clone(), resolved);
            }
            let Some(app_id) = apps.get(&binding.app).cloned().flatten() else {
                continue;
            };
            let track = match binding
                .group
                .clone()
                .or_else(|| self.settings.group.clone())
            {
                Some(t) => Some(t),
                None => {
                    if !tracks.contains_key(&app_id) {
                        let t = self.default_track(&app_id).await;
                        tracks.insert(app_id.clone(), t);
                    }
                    tracks.get(&app_id).cloned().flatten()
                }
            };
            let Some(track) = track else {
                tracing::warn!(container = %c.name, app = %app_id, "agent: no group for this container (label rollbridge.group or --group); ignored");
                continue;
            };
            let unit = units.entry(app_id.clone()).or_insert_with(|| Unit {
                app_id: app_id.clone(),
                track: track.clone(),
                containers: Vec::new(),
            });
            if unit.track != track {
                tracing::warn!(container = %c.name, app = %app_id, track = %unit.track, ignored_track = %track, "agent: one track per application and host; using the first");
            }
            unit.containers.push(c);
        }
        let mut units: Vec<Unit> = units.into_values().collect();
        for unit in &mut units {
            // Rolling order is stable: by name.
            unit.containers.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(units)
    }

    /// The application's only group, else its group tracking `stable`; None when ambiguous.
    async fn default_track(&self, app_id: &str) -> Option<String> {
        let groups = match self.server.groups(app_id).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(app = %app_id, error = %e, "agent: listing groups failed");
                return None;
            }
        };
        let pick = if groups.len() == 1 {
            groups.first()
        } else {
            groups.iter().find(|g| g.track == "stable")
        };
        pick.map(|g| {
            if g.track.is_empty() {
                g.id.clone()
            } else {
                g.track.clone()
            }
        })
    }

    fn version_of(&self, c: &ManagedContainer) -> String {
        self.versions
            .get(&c.image_id)
            .map(str::to_string)
            .or_else(|| matching::version_from(&c.labels, &c.image))
            .unwrap_or_else(|| UNKNOWN_VERSION.to_string())
    }

    /// The lowest version among the unit's containers (what the host as a whole runs).
    fn unit_version(&self, unit: &Unit) -> String {
        unit.containers
            .iter()
            .map(|c| self.version_of(c))
            .min_by(|a, b| {
                match (
                    crate::domain::Version::parse(a),
                    crate::domain::Version::parse(b),
                ) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => a.cmp(b),
                }
            })
            .unwrap_or_else(|| UNKNOWN_VERSION.to_string())
    }

    fn request<'a>(&'a self, unit: &'a Unit, version: &'a str) -> Request<'a> {
        Request {
            protocol: "3.0".into(),
            version: concat!("rollbridge-agent-", env!("CARGO_PKG_VERSION")).into(),
            updater_version: concat!("rollbridge-agent-", env!("CARGO_PKG_VERSION")).into(),
            install_source: "scheduler".into(),
            is_machine: "1".into(),
            os: Some(Os {
                platform: "Docker".into(),
                version: self.docker_version.as_str().into(),
                sp: "".into(),
                arch: std::env::consts::ARCH.into(),
            }),
            apps: vec![AppRequest {
                appid: unit.app_id.as_str().into(),
                version: version.into(),
                track: unit.track.as_str().into(),
                machine_id: self.machine_id.as_str().into(),
                machine_alias: self.alias.as_str().into(),
                ..AppRequest::default()
            }],
        }
    }

    async fn send_event(
        &self,
        unit: &Unit,
        version: &str,
        (event_type, result): (i32, i32),
        previous_version: &str,
        error_code: &str,
    ) {
        let mut request = self.request(unit, version);
        request.apps[0].events.push(EventRequest {
            event_type: Some(event_type),
            event_result: Some(result),
            previous_version: previous_version.into(),
            error_code: error_code.into(),
        });
        match self.server.omaha(&request).await {
            Ok(r) if r.apps.first().is_some_and(|a| a.status == "ok") => {}
            Ok(r) => {
                tracing::warn!(app = %unit.app_id, event_type, result, status = ?r.apps.first().map(|a| &a.status), "agent: event not accepted")
            }
            Err(e) => {
                tracing::warn!(app = %unit.app_id, event_type, result, error = %e, "agent: sending event failed")
            }
        }
    }

    /// Ping + update check for one application, then the update when one is granted.
    async fn check(&mut self, unit: &Unit) -> anyhow::Result<()> {
        let version = self.unit_version(unit);
        let mut request = self.request(unit, &version);
        request.apps[0].ping = true;
        request.apps[0].update_check = true;
        let response = self.server.omaha(&request).await?;
        let app = response
            .apps
            .into_iter()
            .next()
            .context("Omaha response without an <app>")?;
        if app.status != "ok" {
            use crate::omaha::status;
            // Rollout-policy answers (paused, rate limited) are normal states, not problems.
            let policy = [
                status::UPDATES_DISABLED,
                status::MAX_UPDATES_PER_PERIOD,
                status::MAX_CONCURRENT_UPDATES,
                status::MAX_TIMED_OUT_UPDATES,
                status::UPDATE_IN_PROGRESS,
            ];
            if policy.contains(&app.status.as_str()) {
                tracing::debug!(app = %unit.app_id, track = %unit.track, status = %app.status, "agent: no update now (rollout policy)");
            } else {
                tracing::warn!(app = %unit.app_id, track = %unit.track, status = %app.status, "agent: update check refused");
            }
            return Ok(());
        }
        let Some(check) = app.update_check else {
            return Ok(());
        };
        if check.status != "ok" {
            tracing::debug!(app = %unit.app_id, status = %check.status, "agent: no update");
            return Ok(());
        }
        let started = Instant::now();
        let result = self.update(unit, &version, &check).await;
        match &result {
            UpdateResult::Updated => {
                tracing::info!(app = %unit.app_id, elapsed_ms = started.elapsed().as_millis() as u64, "agent: update complete")
            }
            UpdateResult::AlreadyCurrent => {
                tracing::info!(app = %unit.app_id, "agent: containers already run the granted image")
            }
            UpdateResult::Failed(e) => {
                tracing::warn!(app = %unit.app_id, code = e.code.code(), error = %e, "agent: update failed, previous containers restored")
            }
            UpdateResult::Skipped => {}
        }
        Ok(())
    }

    async fn update(
        &mut self,
        unit: &Unit,
        current: &str,
        check: &ParsedUpdateCheck,
    ) -> UpdateResult {
        let target = check
            .manifests
            .iter()
            .find(|m| m.is_target)
            .or_else(|| check.manifests.last());
        let (new_version, image) = match (target, check.codebases.first()) {
            (Some(m), Some(codebase)) => {
                let name = m.packages.first().map(|p| p.name.as_str()).unwrap_or("");
                (
                    m.version.clone(),
                    ImageRef::parse(&format!("{}:{name}", codebase.trim_end_matches('/'))),
                )
            }
            _ => (String::new(), None),
        };
        let Some(image) = image.filter(|i| i.tag.is_some()) else {
            let err = StepError {
                code: ErrorCode::BadPackage,
                message: "the granted package is not a Docker image reference (url = repository, filename = tag[@digest])".into(),
            };
            self.send_event(unit, current, (3, 0), "", &err.code.code().to_string())
                .await;
            return UpdateResult::Failed(err);
        };
        if !self.settings.allow_repository_change {
            if let Some(err) = repository_change(unit, &image) {
                self.send_event(unit, current, (3, 0), "", &err.code.code().to_string())
                    .await;
                return UpdateResult::Failed(err);
            }
        }
        let key = image.pull_reference();
        if let Some((failed_key, at)) = self.failed.get(&unit.app_id) {
            if *failed_key == key && at.elapsed() < FAILED_RETRY_AFTER {
                tracing::debug!(app = %unit.app_id, image = %key, "agent: not retrying a package that failed here recently");
                return UpdateResult::Skipped;
            }
        }

        self.send_event(unit, current, (13, 1), "", "").await;
        let credentials =
            runtime::credentials_for(self.settings.docker_config.as_deref(), image.registry());
        tracing::info!(app = %unit.app_id, image = %key, "agent: pulling");
        let new_image_id = match self.runtime.pull(&image, credentials).await {
            Ok(id) => {
                self.metrics.pulls.with_label_values(&["ok"]).inc();
                id
            }
            Err(e) => {
                self.metrics.pulls.with_label_values(&["error"]).inc();
                return self.fail(unit, current, &key, e).await;
            }
        };
        self.send_event(unit, current, (14, 1), "", "").await;

        let health = HealthSettings {
            grace: self.settings.health_grace,
            timeout: self.settings.health_timeout,
        };
        let mut replaced: Vec<(Replaced, String)> = Vec::new();
        let mut sent_installed = false;
        for c in &unit.containers {
            if c.image_id == new_image_id {
                continue;
            }
            let old_version = self.version_of(c);
            let outcome = match self.runtime.recreate(&c.id, &image).await {
                Ok(r) => {
                    if !sent_installed {
                        self.send_event(unit, current, (800, 1), "", "").await;
                        sent_installed = true;
                    }
                    match self.runtime.wait_healthy(&r, &health).await {
                        Ok(()) => Ok(r),
                        Err(e) => {
                            self.runtime.undo(&r).await;
                            Err(e)
                        }
                    }
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(r) => {
                    self.metrics.recreates.with_label_values(&["ok"]).inc();
                    tracing::info!(container = %r.name, image = %image.tagged(), "agent: container replaced and healthy");
                    replaced.push((r, old_version));
                }
                Err(e) => {
                    self.metrics.recreates.with_label_values(&["error"]).inc();
                    self.metrics.rollbacks.inc();
                    self.report(unit, &c.name, &new_version, Outcome::RolledBack, &e.message)
                        .await;
                    // Put the already replaced containers back too: the host runs one version.
                    for (r, _) in replaced.iter().rev() {
                        self.runtime.undo(r).await;
                        self.metrics.rollbacks.inc();
                        self.report(
                            unit,
                            &r.name,
                            &new_version,
                            Outcome::RolledBack,
                            "rolled back with the rest of the application",
                        )
                        .await;
                    }
                    return self.fail(unit, current, &key, e).await;
                }
            }
        }
        if replaced.is_empty() {
            // Nothing to recreate (e.g. a re-check after an interrupted update): report done.
            self.versions.remember(&new_image_id, &new_version);
            self.send_event(unit, &new_version, (3, 2), current, "")
                .await;
            return UpdateResult::AlreadyCurrent;
        }
        for (r, _) in &replaced {
            self.runtime.finish(r).await;
        }
        self.versions.remember(&new_image_id, &new_version);
        for (r, old_version) in &replaced {
            let message = format!("from {old_version} ({})", image.tagged());
            self.report(unit, &r.name, &new_version, Outcome::Updated, &message)
                .await;
        }
        self.send_event(unit, &new_version, (3, 2), current, "")
            .await;
        self.failed.remove(&unit.app_id);
        if self.settings.cleanup {
            let removed = self
                .runtime
                .cleanup_images(&image.repository, &new_image_id, self.settings.keep)
                .await;
            if removed > 0 {
                tracing::info!(repository = %image.repository, removed, "agent: removed previous images");
            }
        }
        UpdateResult::Updated
    }

    async fn fail(&mut self, unit: &Unit, current: &str, key: &str, e: StepError) -> UpdateResult {
        self.failed
            .insert(unit.app_id.clone(), (key.to_string(), Instant::now()));
        self.send_event(unit, current, (3, 0), "", &e.code.code().to_string())
            .await;
        UpdateResult::Failed(e)
    }

    async fn report(
        &self,
        unit: &Unit,
        container: &str,
        version: &str,
        outcome: Outcome,
        message: &str,
    ) {
        let report = ContainerReport {
            application_id: unit.app_id.clone(),
            track: Some(unit.track.clone()),
            instance_id: self.machine_id.clone(),
            container: container.to_string(),
            version: version.to_string(),
            outcome,
            message: message.chars().take(1000).collect(),
        };
        if let Err(e) = self.server.report(&report).await {
            tracing::warn!(container, error = %e, "agent: reporting the outcome failed");
        }
    }
}
