//! The Docker side of the agent (bollard): list managed containers, pull, recreate with the
//! same configuration, wait for health, roll back, clean up.
//!
//! The recreate order is the rollback-friendly one: pull first (a failed pull touches nothing),
//! stop the old container and rename it aside (kept until the new one is healthy), create and
//! start the replacement under the original name, wait for health; on failure the replacement
//! is removed and the old container is renamed back and started.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::auth::DockerCredentials;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HealthStatusEnum, ImageConfig,
    NetworkConnectRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, ListImagesOptions,
    RemoveContainerOptions, RemoveImageOptions, RenameContainerOptions, StopContainerOptions,
    TagImageOptions,
};
use bollard::Docker;
use futures_util::StreamExt;

use super::matching::ImageRef;

/// Why a step failed; `code` goes into the Omaha `errorcode`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub code: ErrorCode,
    pub message: String,
}

/// Error codes the agent reports with event 3/0 (rollbridge-specific, documented in docs/agent.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadPackage = 2001,
    Pull = 2002,
    Create = 2003,
    Start = 2004,
    Unhealthy = 2005,
    /// The package's image is from another repository than the container's (refused unless
    /// `--allow-repository-change`).
    RepositoryChanged = 2006,
}

impl ErrorCode {
    pub fn code(self) -> i32 {
        self as i32
    }
}

fn step(code: ErrorCode, message: impl Into<String>) -> StepError {
    StepError {
        code,
        message: message.into(),
    }
}

/// A container as the agent sees it when deciding what to do.
#[derive(Debug, Clone)]
pub struct ManagedContainer {
    pub id: String,
    /// Without the leading '/'.
    pub name: String,
    /// `Config.Image` as the user gave it (`repo:tag`).
    pub image: String,
    /// The image id the container runs.
    pub image_id: String,
    pub labels: HashMap<String, String>,
    pub running: bool,
}

/// A connected Docker daemon.
#[derive(Clone)]
pub struct Runtime {
    docker: Docker,
}

/// Settings of one recreate.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    pub grace: Duration,
    pub timeout: Duration,
}

/// What a successful recreate left behind, so it can still be undone (rolling updates keep
/// every old container until the whole application is healthy).
#[derive(Debug, Clone)]
pub struct Replaced {
    pub name: String,
    pub old_id: String,
    pub old_image_id: String,
    pub old_was_running: bool,
    pub new_id: String,
    pub aside_name: String,
    /// For `--rm` containers (gone once stopped): how to rebuild the old one on rollback.
    pub rebuild_old: Option<CreatePlan>,
}

impl Runtime {
    /// Connects to `unix:///path`, `tcp://host:port` or `http://host:port` and negotiates the
    /// API version (Debian's dockerd 20.10 speaks 1.41).
    pub async fn connect(endpoint: &str) -> anyhow::Result<Self> {
        let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
            Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)?
        } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
            let addr = endpoint.replacen("tcp://", "http://", 1);
            Docker::connect_with_http(&addr, 120, bollard::API_DEFAULT_VERSION)?
        } else {
            anyhow::bail!("unsupported Docker endpoint {endpoint:?} (use unix:// or tcp://)");
        };
        let docker = docker.negotiate_version().await?;
        docker.ping().await?;
        Ok(Self { docker })
    }

    /// The daemon's id, host name and version (id and name are stable per host: the default
    /// machine id and the alias).
    pub async fn identity(&self) -> anyhow::Result<(String, String, String)> {
        let info = self.docker.info().await?;
        Ok((
            info.id.unwrap_or_default(),
            info.name.unwrap_or_default(),
            info.server_version.unwrap_or_default(),
        ))
    }

    /// Every container, running or not, with what matching needs.
    pub async fn containers(&self) -> anyhow::Result<Vec<ManagedContainer>> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await?;
        let mut out = Vec::with_capacity(list.len());
        for c in list {
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default();
            // Containers set aside during an update are never managed themselves.
            if name.contains(ASIDE_MARKER) {
                continue;
            }
            out.push(ManagedContainer {
                id: c.id.unwrap_or_default(),
                name,
                image: c.image.unwrap_or_default(),
                image_id: c.image_id.unwrap_or_default(),
                labels: c.labels.unwrap_or_default(),
                running: matches!(
                    c.state,
                    Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                ),
            });
        }
        Ok(out)
    }

    /// Crash recovery: a container set aside by an update that never finished (the agent was
    /// killed between rename and cleanup) is renamed back and started when nothing else took
    /// its name, so a host is never left without the service. Returns the restored names.
    pub async fn recover_aside(&self, older_than: Duration) -> anyhow::Result<Vec<String>> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await?;
        let names: std::collections::HashSet<String> = list
            .iter()
            .filter_map(|c| c.names.as_ref()?.first().cloned())
            .map(|n| n.trim_start_matches('/').to_string())
            .collect();
        let mut restored = Vec::new();
        for c in &list {
            let Some(name) = c.names.as_ref().and_then(|n| n.first()) else {
                continue;
            };
            let name = name.trim_start_matches('/');
            let Some((base, stamp)) = name.split_once(ASIDE_MARKER) else {
                continue;
            };
            let stale = stamp
                .parse::<u64>()
                .is_ok_and(|t| unix_now().saturating_sub(t) > older_than.as_secs());
            if base.is_empty() || !stale || names.contains(base) {
                continue;
            }
            let Some(id) = c.id.as_deref() else { continue };
            self.docker
                .rename_container(
                    id,
                    RenameContainerOptions {
                        name: base.to_string(),
                    },
                )
                .await?;
            self.restart_old(id, base, true).await;
            restored.push(base.to_string());
        }
        Ok(restored)
    }

    /// The configured image of a container (`Config.Image`), which the list call may report as
    /// an id once the tag moved.
    pub async fn configured_image(&self, id: &str) -> anyhow::Result<String> {
        let c = self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await?;
        Ok(c.config.and_then(|c| c.image).unwrap_or_default())
    }

    /// Pulls `image` (by digest when known, then tags it `repo:tag`) and returns the image id.
    /// Errors inside the progress stream (HTTP 200) are errors too.
    pub async fn pull(
        &self,
        image: &ImageRef,
        credentials: Option<DockerCredentials>,
    ) -> Result<String, StepError> {
        let (from, tag) = match &image.digest {
            Some(d) => (image.repository.clone(), d.clone()),
            None => (
                image.repository.clone(),
                image.tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        };
        let mut stream = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(from),
                tag: Some(tag),
                ..Default::default()
            }),
            None,
            credentials,
        );
        let mut last_status = String::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| {
                step(
                    ErrorCode::Pull,
                    format!("pull {}: {e}", image.pull_reference()),
                )
            })?;
            if let Some(error) = info.error.or(info.error_detail.and_then(|d| d.message)) {
                return Err(step(
                    ErrorCode::Pull,
                    format!("pull {}: {error}", image.pull_reference()),
                ));
            }
            if let Some(status) = info.status {
                // Progress lines repeat; log each distinct one once.
                if status != last_status {
                    tracing::debug!(image = %image.pull_reference(), layer = info.id.as_deref().unwrap_or(""), %status, "pull progress");
                    last_status = status;
                }
            }
        }
        if image.digest.is_some() {
            if let Some(tag) = &image.tag {
                self.docker
                    .tag_image(
                        &image.pull_reference(),
                        Some(TagImageOptions {
                            repo: Some(image.repository.clone()),
                            tag: Some(tag.clone()),
                        }),
                    )
                    .await
                    .map_err(|e| step(ErrorCode::Pull, format!("tag {}: {e}", image.tagged())))?;
            }
        }
        let inspected = self
            .docker
            .inspect_image(&image.tagged_or_digest())
            .await
            .map_err(|e| step(ErrorCode::Pull, format!("inspect {}: {e}", image.tagged())))?;
        inspected
            .id
            .ok_or_else(|| step(ErrorCode::Pull, "pulled image has no id"))
    }

    /// Replaces container `id` by one created from `image` with the same configuration and
    /// starts it (when the old one was running). On failure everything is put back as it was;
    /// on success the caller waits for health ([`Runtime::wait_healthy`]) and then either
    /// [`Runtime::finish`]es or [`Runtime::undo`]es.
    pub async fn recreate(&self, id: &str, image: &ImageRef) -> Result<Replaced, StepError> {
        let old = self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| step(ErrorCode::Create, format!("inspect container: {e}")))?;
        let name = old
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let old_id = old.id.clone().unwrap_or_else(|| id.to_string());
        let old_image_id = old.image.clone().unwrap_or_default();
        let old_image_config = match self.docker.inspect_image(&old_image_id).await {
            Ok(i) => i.config,
            // The old image may be gone (pruned); then every setting is kept verbatim.
            Err(_) => None,
        };
        let old_was_running = old.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let plan = CreatePlan::from_inspect(&old, old_image_config.as_ref(), &image.tagged());
        // The time in the name lets crash recovery tell a stale aside container from one an
        // update in progress (possibly another agent's) still holds.
        let aside_name = format!("{name}{ASIDE_MARKER}{}", unix_now());

        // Stop first: the replacement usually binds the same host ports.
        let stop_timeout = old
            .config
            .as_ref()
            .and_then(|c| c.stop_timeout)
            .unwrap_or(10);
        let stop = StopContainerOptions {
            t: Some(stop_timeout.clamp(0, i64::from(i32::MAX)) as i32),
            signal: None,
        };
        let aside = RenameContainerOptions {
            name: aside_name.clone(),
        };
        // A `--rm` container is deleted by Docker once stopped: rename it while it runs, and keep
        // its configuration (with the old image) to rebuild it if the update fails.
        let auto_remove = old
            .host_config
            .as_ref()
            .and_then(|h| h.auto_remove)
            .unwrap_or(false);
        let rebuild_old = if auto_remove {
            // Rebuild from the old reference while it still names the old image (a moved tag,
            // e.g. `latest`, would give the new one): else from the image id.
            let old_ref = old
                .config
                .as_ref()
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            let same = match self.docker.inspect_image(&old_ref).await {
                Ok(i) => i.id.as_deref() == Some(old_image_id.as_str()),
                Err(_) => false,
            };
            let reference = if same { old_ref } else { old_image_id.clone() };
            Some(CreatePlan::from_inspect(&old, None, &reference))
        } else {
            None
        };
        if auto_remove {
            self.docker
                .rename_container(&old_id, aside)
                .await
                .map_err(|e| step(ErrorCode::Create, format!("rename {name}: {e}")))?;
            if old_was_running {
                if let Err(e) = self.docker.stop_container(&old_id, Some(stop)).await {
                    let _ = self
                        .docker
                        .rename_container(&old_id, RenameContainerOptions { name: name.clone() })
                        .await;
                    return Err(step(ErrorCode::Create, format!("stop {name}: {e}")));
                }
            }
        } else {
            if old_was_running {
                self.docker
                    .stop_container(&old_id, Some(stop))
                    .await
                    .map_err(|e| step(ErrorCode::Create, format!("stop {name}: {e}")))?;
            }
            if let Err(e) = self.docker.rename_container(&old_id, aside).await {
                self.restart_old(&old_id, &name, old_was_running).await;
                return Err(step(ErrorCode::Create, format!("rename {name}: {e}")));
            }
        }
        let replaced = Replaced {
            name: name.clone(),
            old_id: old_id.clone(),
            old_image_id,
            old_was_running,
            new_id: String::new(),
            aside_name,
            rebuild_old,
        };
        match self.create_and_start(&name, &plan).await {
            Ok(new_id) => Ok(Replaced { new_id, ..replaced }),
            Err((new_id, err)) => {
                self.undo(&Replaced {
                    new_id: new_id.unwrap_or_default(),
                    ..replaced
                })
                .await;
                Err(err)
            }
        }
    }

    async fn create_and_start(
        &self,
        name: &str,
        plan: &CreatePlan,
    ) -> Result<String, (Option<String>, StepError)> {
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.to_string()),
                    ..Default::default()
                }),
                plan.body.clone(),
            )
            .await
            .map_err(|e| (None, step(ErrorCode::Create, format!("create {name}: {e}"))))?;
        let new_id = created.id;
        for (network, endpoint) in &plan.extra_networks {
            self.docker
                .connect_network(
                    network,
                    NetworkConnectRequest {
                        container: Some(new_id.clone()),
                        endpoint_config: Some(endpoint.clone()),
                    },
                )
                .await
                .map_err(|e| {
                    (
                        Some(new_id.clone()),
                        step(
                            ErrorCode::Create,
                            format!("connect {name} to {network}: {e}"),
                        ),
                    )
                })?;
        }
        if !plan.start {
            return Ok(new_id);
        }
        self.docker
            .start_container(
                &new_id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| {
                (
                    Some(new_id.clone()),
                    step(ErrorCode::Start, format!("start {name}: {e}")),
                )
            })?;
        Ok(new_id)
    }

    /// Healthy = Docker healthcheck `healthy`; without a healthcheck, still running (and not
    /// restarted) after the grace period. A replacement that was not started (the old container
    /// was stopped) has nothing to wait for.
    pub async fn wait_healthy(
        &self,
        r: &Replaced,
        health: &HealthSettings,
    ) -> Result<(), StepError> {
        if !r.old_was_running {
            return Ok(());
        }
        let (id, name) = (r.new_id.as_str(), r.name.as_str());
        let started = Instant::now();
        let mut first_restart_count = None;
        loop {
            let c = self
                .docker
                .inspect_container(
                    id,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .map_err(|e| step(ErrorCode::Unhealthy, format!("inspect {name}: {e}")))?;
            let restarts = c.restart_count.unwrap_or(0);
            let first = *first_restart_count.get_or_insert(restarts);
            let state = c.state.unwrap_or_default();
            let running = state.running.unwrap_or(false);
            if !running || state.restarting.unwrap_or(false) || restarts > first {
                return Err(step(
                    ErrorCode::Unhealthy,
                    format!(
                        "{name} stopped after start (exit code {}{})",
                        state.exit_code.unwrap_or(0),
                        state
                            .error
                            .filter(|e| !e.is_empty())
                            .map(|e| format!(", {e}"))
                            .unwrap_or_default()
                    ),
                ));
            }
            match state.health.and_then(|h| h.status) {
                Some(HealthStatusEnum::HEALTHY) => return Ok(()),
                Some(HealthStatusEnum::UNHEALTHY) => {
                    return Err(step(ErrorCode::Unhealthy, format!("{name} is unhealthy")))
                }
                Some(HealthStatusEnum::STARTING) => {
                    if started.elapsed() >= health.timeout {
                        return Err(step(
                            ErrorCode::Unhealthy,
                            format!("{name} not healthy after {}s", health.timeout.as_secs()),
                        ));
                    }
                }
                _ => {
                    if started.elapsed() >= health.grace {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Removes the replacement and puts the old container back under its name.
    pub async fn undo(&self, r: &Replaced) {
        if !r.new_id.is_empty() {
            let _ = self
                .docker
                .stop_container(
                    &r.new_id,
                    Some(StopContainerOptions {
                        t: Some(5),
                        signal: None,
                    }),
                )
                .await;
            if let Err(e) = self
                .docker
                .remove_container(
                    &r.new_id,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await
            {
                // Also the normal case for a `--rm` replacement, which Docker removes itself.
                tracing::debug!(container = %r.name, error = %e, "rollback: removing the replacement");
            }
            self.wait_gone(&r.new_id).await;
        }
        if let Some(plan) = &r.rebuild_old {
            // The old `--rm` container is gone: rebuild it from its saved configuration.
            if let Err((_, e)) = self.create_and_start(&r.name, plan).await {
                tracing::error!(container = %r.name, error = %e, "rollback: rebuilding the old container failed");
            }
            return;
        }
        if let Err(e) = self
            .docker
            .rename_container(
                &r.old_id,
                RenameContainerOptions {
                    name: r.name.clone(),
                },
            )
            .await
        {
            tracing::error!(container = %r.name, error = %e, "rollback: renaming the old container back failed");
        }
        self.restart_old(&r.old_id, &r.name, r.old_was_running)
            .await;
    }

    /// Waits (bounded) until a removed container is really gone, so its name is free again.
    async fn wait_gone(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            match self
                .docker
                .inspect_container(
                    id,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
            {
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return,
                Err(_) | Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        tracing::warn!(container = %id, "rollback: the replacement is still being removed");
    }

    async fn restart_old(&self, id: &str, name: &str, was_running: bool) {
        if !was_running {
            return;
        }
        if let Err(e) = self
            .docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
        {
            tracing::error!(container = %name, error = %e, "rollback: starting the old container failed");
        }
    }

    /// Removes the old container after a successful update (its named volumes stay).
    pub async fn finish(&self, r: &Replaced) {
        if r.rebuild_old.is_some() {
            // `--rm`: Docker removed it when it stopped.
            return;
        }
        if let Err(e) = self
            .docker
            .remove_container(
                &r.old_id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
        {
            tracing::warn!(container = %r.aside_name, error = %e, "removing the previous container failed");
        }
    }

    /// `--cleanup`: removes this repository's references (tags and digests) to images no
    /// container uses, except `current` and the newest `keep` others. Images are untagged, never
    /// force-removed, so an image also tagged for another repository stays for it. Returns how
    /// many images lost their references.
    pub async fn cleanup_images(&self, repository: &str, current: &str, keep: usize) -> usize {
        let Ok(images) = self
            .docker
            .list_images(Some(ListImagesOptions {
                all: false,
                ..Default::default()
            }))
            .await
        else {
            return 0;
        };
        let used: std::collections::HashSet<String> = match self.containers_including_aside().await
        {
            Ok(ids) => ids,
            Err(_) => return 0,
        };
        let wanted = super::matching::normalize_repository(repository);
        let ours = |reference: &String| {
            ImageRef::parse(reference).is_some_and(|r| r.normalized_repository() == wanted)
        };
        let mut candidates: Vec<_> = images
            .into_iter()
            .filter(|i| i.id != current && !used.contains(&i.id))
            .filter(|i| i.repo_tags.iter().chain(i.repo_digests.iter()).any(ours))
            .collect();
        candidates.sort_by_key(|i| std::cmp::Reverse(i.created));
        let mut removed = 0;
        for image in candidates.into_iter().skip(keep) {
            let mut ok = true;
            for reference in image
                .repo_tags
                .iter()
                .chain(image.repo_digests.iter())
                .filter(|r| ours(r))
            {
                if let Err(e) = self
                    .docker
                    .remove_image(reference, None::<RemoveImageOptions>, None)
                    .await
                {
                    ok = false;
                    tracing::warn!(image = %reference, error = %e, "cleanup: removing image failed");
                }
            }
            if ok {
                removed += 1;
            }
        }
        removed
    }

    /// Image ids of every container, including those set aside during an update.
    async fn containers_including_aside(
        &self,
    ) -> anyhow::Result<std::collections::HashSet<String>> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await?;
        Ok(list.into_iter().filter_map(|c| c.image_id).collect())
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Part of the name of a container set aside during an update (followed by unix seconds).
pub const ASIDE_MARKER: &str = "-rollbridge-old-";

impl ImageRef {
    fn tagged_or_digest(&self) -> String {
        match (&self.tag, &self.digest) {
            (None, Some(_)) => self.pull_reference(),
            _ => self.tagged(),
        }
    }
}

/// The create call for a replacement, derived from the old container's inspect.
#[derive(Debug, Clone)]
pub struct CreatePlan {
    pub body: ContainerCreateBody,
    /// Networks beyond the first (older APIs accept only one at create time).
    pub extra_networks: Vec<(String, EndpointSettings)>,
    /// Start only what was running.
    pub start: bool,
}

impl CreatePlan {
    /// Keeps the user's settings and drops values that only came from the old image, so the new
    /// image's defaults apply (Watchtower's rule): env entries, labels, exposed ports and volumes
    /// declared by the old image, and cmd/entrypoint/workdir/user/healthcheck equal to its.
    pub fn from_inspect(
        old: &ContainerInspectResponse,
        old_image: Option<&ImageConfig>,
        new_image: &str,
    ) -> Self {
        let c = old.config.clone().unwrap_or_default();
        let img = old_image.cloned().unwrap_or_default();
        let has_image = old_image.is_some();
        let same = |a: &Option<Vec<String>>, b: &Option<Vec<String>>| {
            has_image && a.as_deref().unwrap_or_default() == b.as_deref().unwrap_or_default()
        };
        let env = c.env.clone().map(|env| {
            let from_image: std::collections::HashSet<&String> = img.env.iter().flatten().collect();
            env.into_iter()
                .filter(|e| !from_image.contains(e))
                .collect::<Vec<_>>()
        });
        let labels = c.labels.clone().map(|labels| {
            let from_image = img.labels.clone().unwrap_or_default();
            labels
                .into_iter()
                .filter(|(k, v)| from_image.get(k) != Some(v))
                .collect::<HashMap<_, _>>()
        });
        let host_config = old.host_config.clone();
        let mut exposed = c.exposed_ports.clone().unwrap_or_default();
        for port in img.exposed_ports.iter().flat_map(|p| p.keys()) {
            exposed.remove(port);
        }
        if let Some(bindings) = host_config.as_ref().and_then(|h| h.port_bindings.as_ref()) {
            for port in bindings.keys() {
                exposed.insert(port.clone(), HashMap::new());
            }
        }
        let mut volumes = c.volumes.clone().unwrap_or_default();
        for v in img.volumes.iter().flat_map(|v| v.keys()) {
            volumes.remove(v);
        }
        let entrypoint_same = same(&c.entrypoint, &img.entrypoint);
        let cmd_same = same(&c.cmd, &img.cmd);
        let network_mode = host_config
            .as_ref()
            .and_then(|h| h.network_mode.clone())
            .unwrap_or_default();
        let short_id: String = old
            .id
            .as_deref()
            .unwrap_or_default()
            .chars()
            .take(12)
            .collect();
        let mut networks: Vec<(String, EndpointSettings)> = old
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|(name, ep)| (name, portable_endpoint(ep, &short_id)))
            .collect();
        // The network named by NetworkMode goes into the create call; the rest are connected.
        networks.sort_by_key(|(name, _)| (name != &network_mode, name.clone()));
        let special = network_mode == "host"
            || network_mode == "none"
            || network_mode.starts_with("container:");
        let (first, extra) = if special || networks.is_empty() {
            (None, Vec::new())
        } else {
            let mut it = networks.into_iter();
            (it.next(), it.collect())
        };
        let hostname_from_id = c.hostname.as_deref() == Some(short_id.as_str());
        let body = ContainerCreateBody {
            // A hostname equal to the old short id was generated by Docker: let it generate anew.
            hostname: if hostname_from_id || network_mode.starts_with("container:") {
                None
            } else {
                c.hostname.clone()
            },
            domainname: c.domainname.clone(),
            user: if has_image && c.user == img.user {
                None
            } else {
                c.user.clone()
            },
            attach_stdin: c.attach_stdin,
            attach_stdout: c.attach_stdout,
            attach_stderr: c.attach_stderr,
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            tty: c.tty,
            open_stdin: c.open_stdin,
            stdin_once: c.stdin_once,
            env,
            // Cmd follows the image only when the entrypoint does too (Watchtower's rule).
            cmd: if cmd_same && entrypoint_same {
                None
            } else {
                c.cmd.clone()
            },
            healthcheck: if has_image && c.healthcheck == img.healthcheck {
                None
            } else {
                c.healthcheck.clone()
            },
            args_escaped: None,
            image: Some(new_image.to_string()),
            volumes: (!volumes.is_empty()).then_some(volumes),
            working_dir: if has_image && c.working_dir == img.working_dir {
                None
            } else {
                c.working_dir.clone()
            },
            entrypoint: if entrypoint_same {
                None
            } else {
                c.entrypoint.clone()
            },
            network_disabled: c.network_disabled,
            mac_address: None,
            on_build: None,
            labels,
            stop_signal: if has_image && c.stop_signal == img.stop_signal {
                None
            } else {
                c.stop_signal.clone()
            },
            stop_timeout: c.stop_timeout,
            shell: if has_image && c.shell == img.shell {
                None
            } else {
                c.shell.clone()
            },
            host_config,
            networking_config: first.map(|(name, ep)| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(name, ep)])),
            }),
        };
        let start = old.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        Self {
            body,
            extra_networks: extra,
            start,
        }
    }
}

/// Keeps what the user configured on an endpoint (aliases minus the old short id, static IPs,
/// links, driver options) and drops what Docker assigned at run time.
fn portable_endpoint(ep: EndpointSettings, short_id: &str) -> EndpointSettings {
    EndpointSettings {
        ipam_config: ep.ipam_config,
        links: ep.links,
        aliases: ep.aliases.map(|a| {
            a.into_iter()
                .filter(|alias| alias != short_id)
                .collect::<Vec<_>>()
        }),
        driver_opts: ep.driver_opts,
        ..Default::default()
    }
}

/// Registry credentials for `registry` (None = Docker Hub) from a Docker client config file
/// (`auths` entries with `auth` or `identitytoken`). Credential helpers are not supported.
pub fn credentials_for(config: Option<&Path>, registry: Option<&str>) -> Option<DockerCredentials> {
    let text = std::fs::read_to_string(config?).ok()?;
    credentials_from_json(&text, registry)
}

pub fn credentials_from_json(text: &str, registry: Option<&str>) -> Option<DockerCredentials> {
    use base64::Engine as _;
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    let auths = json.get("auths")?.as_object()?;
    let wanted = registry.unwrap_or("docker.io");
    let hub = registry.is_none();
    let (server, entry) = auths.iter().find(|(key, _)| {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default();
        host == wanted
            || (hub
                && matches!(
                    host,
                    "index.docker.io" | "registry-1.docker.io" | "docker.io"
                ))
    })?;
    if let Some(token) = entry.get("identitytoken").and_then(|v| v.as_str()) {
        return Some(DockerCredentials {
            identitytoken: Some(token.to_string()),
            serveraddress: Some(server.clone()),
            ..Default::default()
        });
    }
    let auth = entry.get("auth").and_then(|v| v.as_str())?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some(DockerCredentials {
        username: Some(user.to_string()),
        password: Some(pass.to_string()),
        serveraddress: Some(server.clone()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{
        ContainerConfig, ContainerState, HostConfig, NetworkSettings, PortBinding, RestartPolicy,
        RestartPolicyNameEnum,
    };

    #[test]
    fn credentials_are_read_per_registry() {
        let config = r#"{"auths": {
            "127.0.0.1:5000": {"auth": "dXNlcjpwYXNz"},
            "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
            "ghcr.io": {"identitytoken": "tok"}
        }}"#;
        let c = credentials_from_json(config, Some("127.0.0.1:5000")).unwrap();
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("user"), Some("pass"))
        );
        let c = credentials_from_json(config, None).unwrap();
        assert_eq!(c.username.as_deref(), Some("hub"));
        let c = credentials_from_json(config, Some("ghcr.io")).unwrap();
        assert_eq!(c.identitytoken.as_deref(), Some("tok"));
        assert!(credentials_from_json(config, Some("quay.io")).is_none());
        assert!(credentials_from_json("not json", None).is_none());
        assert!(
            credentials_from_json(r#"{"auths": {"x.io": {"auth": "!!"}}}"#, Some("x.io")).is_none()
        );
    }

    #[test]
    fn plan_keeps_user_settings_and_drops_old_image_defaults() {
        let old = ContainerInspectResponse {
            id: Some("0123456789abcdef".into()),
            name: Some("/web".into()),
            config: Some(ContainerConfig {
                hostname: Some("0123456789ab".into()),
                env: Some(vec!["APP_DEFAULT=img".into(), "MODE=prod".into()]),
                cmd: Some(vec!["/bin/httpd".into()]),
                labels: Some(HashMap::from([
                    ("rollbridge.app".into(), "web".into()),
                    ("from.image".into(), "1".into()),
                ])),
                exposed_ports: Some(HashMap::from([("8080/tcp".into(), HashMap::new())])),
                image: Some("demo/web:1.0.0".into()),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                network_mode: Some("appnet".into()),
                port_bindings: Some(HashMap::from([(
                    "8080/tcp".into(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some("18080".into()),
                    }]),
                )])),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                networks: Some(HashMap::from([
                    (
                        "appnet".into(),
                        EndpointSettings {
                            aliases: Some(vec!["0123456789ab".into(), "web-alias".into()]),
                            ip_address: Some("172.20.0.2".into()),
                            network_id: Some("n1".into()),
                            ..Default::default()
                        },
                    ),
                    ("other".into(), EndpointSettings::default()),
                ])),
                ..Default::default()
            }),
            state: Some(ContainerState {
                running: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let image = ImageConfig {
            env: Some(vec!["APP_DEFAULT=img".into()]),
            cmd: Some(vec!["/bin/httpd".into()]),
            labels: Some(HashMap::from([("from.image".into(), "1".into())])),
            exposed_ports: Some(HashMap::from([("8080/tcp".into(), HashMap::new())])),
            ..Default::default()
        };
        let plan = CreatePlan::from_inspect(&old, Some(&image), "demo/web:1.1.0");
        let b = &plan.body;
        assert_eq!(b.image.as_deref(), Some("demo/web:1.1.0"));
        assert_eq!(b.env.as_deref(), Some(&["MODE=prod".to_string()][..]));
        assert_eq!(b.cmd, None, "cmd follows the new image");
        assert_eq!(b.hostname, None, "generated hostname regenerated");
        let labels = b.labels.as_ref().unwrap();
        assert_eq!(
            labels.get("rollbridge.app").map(String::as_str),
            Some("web")
        );
        assert!(!labels.contains_key("from.image"));
        assert!(
            b.exposed_ports.as_ref().unwrap().contains_key("8080/tcp"),
            "bound ports stay exposed"
        );
        assert_eq!(b.host_config, old.host_config);
        let endpoints = b
            .networking_config
            .as_ref()
            .unwrap()
            .endpoints_config
            .as_ref()
            .unwrap();
        let ep = endpoints.get("appnet").expect("NetworkMode network first");
        assert_eq!(ep.aliases.as_deref(), Some(&["web-alias".to_string()][..]));
        assert_eq!(ep.ip_address, None, "runtime fields dropped");
        assert_eq!(plan.extra_networks.len(), 1);
        assert_eq!(plan.extra_networks[0].0, "other");
        assert!(plan.start);

        // Without the old image everything is kept verbatim.
        let plan = CreatePlan::from_inspect(&old, None, "demo/web:1.1.0");
        assert_eq!(plan.body.env.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            plan.body.cmd.as_deref(),
            Some(&["/bin/httpd".to_string()][..])
        );
    }
}
