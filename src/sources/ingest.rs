//! The one step every release goes through: find where it belongs (bindings, an explicit
//! application, or the zero-config rule), check the binding's filter, create the package
//! idempotently, promote it when it is newer than the channel's package, and record the delivery
//! and activity — all in one transaction, so a release is either fully registered or not at all.

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;

use crate::domain::release::{generated_version, version_from_tag, TagFilter};
use crate::domain::{
    new_time_ordered_id, required_name, seed, ActivityClass, Application, Artifact, Binding,
    Channel, CoreosActionInput, Package, PackageInput, PackageType, Release, Severity, Version,
};
use crate::store::sources::{self as sql, Delivery};
use crate::store::{Store, StoreError, Tx};

/// What happened to a release, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A new package was created and a channel now points at it.
    Promoted,
    /// A new package was created; no channel was moved (register only, or not newer).
    Created,
    /// The package already existed (same version, or same digest for a mutable tag).
    Existing,
    /// This delivery was seen before (replay); nothing was done again.
    Duplicate,
    /// No binding (or filter) wants this release.
    Ignored,
    /// The release was refused (bad version, digest conflict, invalid package fields).
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promoted => "promoted",
            Self::Created => "created",
            Self::Existing => "existing",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
            Self::Rejected => "rejected",
        }
    }

    /// Whether the sender did its part (the release is or was registered, or deliberately unwanted).
    pub fn is_success(self) -> bool {
        !matches!(self, Self::Rejected)
    }
}

/// The result for one application the release went to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppResult {
    pub application_id: String,
    pub application_name: String,
    pub outcome: Outcome,
    pub package_id: Option<String>,
    pub version: Option<String>,
    pub channel_id: Option<String>,
    pub message: String,
}

/// The result of ingesting one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    pub delivery_id: String,
    pub outcome: Outcome,
    pub message: String,
    pub results: Vec<AppResult>,
}

impl IngestReport {
    pub fn promoted(&self) -> bool {
        self.results.iter().any(|r| r.outcome == Outcome::Promoted)
    }
}

/// Where one release goes for one application.
struct Target {
    app: Application,
    channel: Option<String>,
    filter: String,
    allow_prerelease: bool,
    /// Zero-config targets create their channel when it is missing.
    create_channel: bool,
}

/// Ingests `release`, waking `promotions` when a channel moved. Store errors (database down) are
/// returned; everything about the release itself is in the report.
pub async fn ingest(
    store: &Store,
    promotions: &Notify,
    release: &Release,
    now: i64,
) -> Result<IngestReport, StoreError> {
    let mut attempt = 0;
    let report = loop {
        attempt += 1;
        match ingest_once(store, release, now).await {
            Ok(report) => break report,
            // A concurrent delivery of the same release won a unique key; the next attempt sees
            // its rows and answers as a replay / existing package.
            Err(StoreError::Conflict(_) | StoreError::Retryable(_)) if attempt < 4 => continue,
            // The database refused a value (too long for its column): retrying cannot help, so
            // it is a refused release, not an outage. Nothing was stored (the transaction rolled
            // back), so a corrected delivery is processed normally.
            Err(StoreError::Invalid(e)) => {
                tracing::warn!(error = %e, selector = %release.selector, "release refused by the database");
                break IngestReport {
                    delivery_id: String::new(),
                    outcome: Outcome::Rejected,
                    message: format!("refused: {e}"),
                    results: Vec::new(),
                };
            }
            Err(e) => return Err(e),
        }
    };
    if report.promoted() {
        promotions.notify_waiters();
    }
    Ok(report)
}

async fn ingest_once(
    store: &Store,
    release: &Release,
    now: i64,
) -> Result<IngestReport, StoreError> {
    let mut tx = store.begin().await?;
    if let Some(key) = &release.delivery_key {
        if let Some(previous) = sql::find_delivery(&mut tx, release.source, key).await? {
            tx.rollback().await?;
            return Ok(IngestReport {
                delivery_id: previous.id,
                outcome: Outcome::Duplicate,
                message: format!(
                    "delivery already processed ({}: {})",
                    previous.outcome, previous.message
                ),
                results: Vec::new(),
            });
        }
    }
    let targets = match resolve_targets(&mut tx, release, now).await? {
        Ok(targets) => targets,
        Err((outcome, message)) => {
            let report = finish(&mut tx, release, outcome, message, Vec::new(), now).await?;
            tx.commit().await?;
            return Ok(report);
        }
    };
    let mut results = Vec::with_capacity(targets.len());
    for target in &targets {
        results.push(ingest_into(&mut tx, release, target, now).await?);
    }
    let outcome = results
        .iter()
        .map(|r| r.outcome)
        .min()
        .unwrap_or(Outcome::Ignored);
    let message = results
        .iter()
        .map(|r| format!("{}: {}", r.application_name, r.message))
        .collect::<Vec<_>>()
        .join("; ");
    let report = finish(&mut tx, release, outcome, message, results, now).await?;
    tx.commit().await?;
    Ok(report)
}

/// Records the delivery row and builds the report.
async fn finish(
    tx: &mut Tx,
    release: &Release,
    outcome: Outcome,
    message: String,
    results: Vec<AppResult>,
    now: i64,
) -> Result<IngestReport, StoreError> {
    let first = results.first();
    let delivery = Delivery {
        id: new_time_ordered_id(),
        source: release.source.as_str().to_string(),
        delivery_key: release.delivery_key.clone(),
        selector: release.selector.clone(),
        version: first
            .and_then(|r| r.version.clone())
            .unwrap_or_else(|| release.tag.clone()),
        outcome: outcome.as_str().to_string(),
        message: message.clone(),
        application_id: first.map(|r| r.application_id.clone()),
        package_id: first.and_then(|r| r.package_id.clone()),
        created_ts: now,
    };
    sql::insert_delivery(tx, &delivery).await?;
    Ok(IngestReport {
        delivery_id: delivery.id,
        outcome,
        message,
        results,
    })
}

type Resolution = Result<Vec<Target>, (Outcome, String)>;

async fn resolve_targets(
    tx: &mut Tx,
    release: &Release,
    now: i64,
) -> Result<Resolution, StoreError> {
    let bindings = sql::bindings_matching(tx, release.source, &release.selector).await?;
    if let Some(wanted) = &release.requested_app {
        let Some(app) = sql::app_by_id_or_name(tx, wanted).await? else {
            return Ok(Err((
                Outcome::Rejected,
                format!("no application {wanted:?}"),
            )));
        };
        let binding = bindings.iter().find(|b| b.application_id == app.id);
        if !bindings.is_empty() && binding.is_none() {
            return Ok(Err((
                Outcome::Rejected,
                format!(
                    "the {} binding {:?} does not deliver to application {:?}",
                    release.source.as_str(),
                    release.selector,
                    app.name
                ),
            )));
        }
        return Ok(Ok(vec![Target {
            channel: release
                .requested_channel
                .clone()
                .or_else(|| binding.and_then(|b| b.channel_id.clone())),
            filter: binding.map(|b| b.tag_filter.clone()).unwrap_or_default(),
            allow_prerelease: binding.map(|b| b.allow_prerelease).unwrap_or(true),
            create_channel: false,
            app,
        }]));
    }
    if !bindings.is_empty() {
        let mut targets = Vec::with_capacity(bindings.len());
        for binding in &bindings {
            if let Some(target) = binding_target(tx, binding).await? {
                targets.push(target);
            }
        }
        return Ok(Ok(targets));
    }
    if let Some(zero) = &release.zero_config {
        // Created without the REST API: names must fit their columns (`VARCHAR(100)`). The
        // API's shorter limits are not applied, so existing metadata names and environments
        // keep working.
        const NAME_COLUMN_MAX: usize = 100;
        let names = required_name("name", Some(&zero.application_name), NAME_COLUMN_MAX)
            .map_err(|e| format!("application {e}"))
            .and_then(|_| {
                required_name("name", Some(&zero.channel_name), NAME_COLUMN_MAX)
                    .map_err(|e| format!("channel {e}"))
            });
        if let Err(message) = names {
            return Ok(Err((Outcome::Rejected, message)));
        }
        let app = match sql::app_by_id_or_name(tx, &zero.application_name).await? {
            Some(app) => app,
            None => {
                sql::create_app_named(
                    tx,
                    &zero.application_name,
                    &format!("created by the {} source", release.source.as_str()),
                    now,
                )
                .await?
            }
        };
        return Ok(Ok(vec![Target {
            app,
            channel: Some(zero.channel_name.clone()),
            filter: String::new(),
            allow_prerelease: true,
            create_channel: true,
        }]));
    }
    Ok(Err((
        Outcome::Ignored,
        format!(
            "no {} binding matches {:?}",
            release.source.as_str(),
            release.selector
        ),
    )))
}

async fn binding_target(tx: &mut Tx, binding: &Binding) -> Result<Option<Target>, StoreError> {
    Ok(sql::app_by_id_or_name(tx, &binding.application_id)
        .await?
        .map(|app| Target {
            app,
            channel: binding.channel_id.clone(),
            filter: binding.tag_filter.clone(),
            allow_prerelease: binding.allow_prerelease,
            create_channel: false,
        }))
}

fn result(target: &Target, outcome: Outcome, message: impl Into<String>) -> AppResult {
    AppResult {
        application_id: target.app.id.clone(),
        application_name: target.app.name.clone(),
        outcome,
        package_id: None,
        version: None,
        channel_id: None,
        message: message.into(),
    }
}

async fn ingest_into(
    tx: &mut Tx,
    release: &Release,
    target: &Target,
    now: i64,
) -> Result<AppResult, StoreError> {
    let filter = match TagFilter::parse(&target.filter) {
        Ok(f) => f,
        Err(e) => {
            return Ok(result(
                target,
                Outcome::Rejected,
                format!("binding tag_filter: {e}"),
            ))
        }
    };
    let tagged_version = version_from_tag(&release.tag);
    if !filter.matches(&release.tag, tagged_version.as_ref()) {
        return Ok(result(
            target,
            Outcome::Ignored,
            format!(
                "tag {:?} does not pass the filter {:?}",
                release.tag, target.filter
            ),
        ));
    }
    if tagged_version.as_ref().is_some_and(Version::is_prerelease) && !target.allow_prerelease {
        return Ok(result(
            target,
            Outcome::Ignored,
            format!(
                "{} is a pre-release and the binding does not allow them",
                release.tag
            ),
        ));
    }
    if target.app.id == seed::COREOS_APP_ID {
        if let Some(problem) = coreos_problem(&release.artifact) {
            return Ok(result(target, Outcome::Rejected, problem));
        }
    }
    let digest = match &release.artifact {
        Artifact::Image { digest, .. } => digest.clone(),
        Artifact::Download { .. } => None,
    };
    // Same image content already registered: nothing new (mutable tags pushed again unchanged).
    if let (Artifact::Image { repository, .. }, Some(d)) = (&release.artifact, &digest) {
        if let Some(existing) = sql::package_by_digest_tx(tx, &target.app.id, repository, d).await?
        {
            let mut r = result(
                target,
                Outcome::Existing,
                format!(
                    "image {repository}@{d} is already package {}",
                    existing.version
                ),
            );
            r.package_id = Some(existing.id.clone());
            r.version = Some(existing.version.clone());
            return maybe_promote(tx, target, &existing, r, now).await;
        }
    }
    let version = match (tagged_version, &release.artifact) {
        (Some(v), _) => v,
        (None, Artifact::Image { .. }) => {
            let previous = sql::highest_version_tx(tx, &target.app.id).await?;
            generated_version(previous.as_ref(), &release.tag, digest.as_deref(), now)
        }
        (None, Artifact::Download { .. }) => {
            return Ok(result(
                target,
                Outcome::Rejected,
                format!("{:?} is not a semantic version", release.tag),
            ))
        }
    };
    if let Some(existing) = sql::package_by_version_tx(tx, &target.app.id, version.as_str()).await?
    {
        if let (Some(new_digest), false) = (&digest, existing.image_digest.is_empty()) {
            if *new_digest != existing.image_digest {
                let message = format!(
                    "version {} already exists with digest {}; a re-pushed tag with other content is refused (versions are immutable)",
                    version, existing.image_digest
                );
                sql::release_activity(
                    tx,
                    ActivityClass::ReleaseRejected,
                    Severity::Warning,
                    &target.app.id,
                    None,
                    version.as_str(),
                    &message,
                    now,
                )
                .await?;
                return Ok(result(target, Outcome::Rejected, message));
            }
        }
        let mut r = result(
            target,
            Outcome::Existing,
            format!("package {} already exists", existing.version),
        );
        r.package_id = Some(existing.id.clone());
        r.version = Some(existing.version.clone());
        return maybe_promote(tx, target, &existing, r, now).await;
    }
    let input = package_input(release, &version, &target.app.id);
    let fields = match input.validate(&target.app.id) {
        Ok(f) => f,
        Err(e) => return Ok(result(target, Outcome::Rejected, e.to_string())),
    };
    let files: Vec<(String, Vec<u8>, String)> = release
        .files
        .iter()
        .map(|f| {
            (
                f.name.clone(),
                f.content.clone(),
                hex::encode(Sha256::digest(&f.content)),
            )
        })
        .collect();
    let image_tag = match &release.artifact {
        Artifact::Image { tag, .. } => tag.clone(),
        Artifact::Download { .. } => release
            .metadata
            .as_ref()
            .and_then(|m| m.get("imageVersion"))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string(),
    };
    let package = sql::insert_sourced_package(
        tx,
        &target.app.id,
        &fields,
        release.source,
        &release.selector,
        &image_tag,
        release.metadata.as_ref(),
        &files,
        now,
    )
    .await?;
    sql::release_activity(
        tx,
        ActivityClass::ReleaseRegistered,
        Severity::Info,
        &target.app.id,
        None,
        &package.version,
        &format!(
            "{} release {} from {:?} registered as package {}",
            release.source.as_str(),
            release.tag,
            release.selector,
            package.version
        ),
        now,
    )
    .await?;
    let mut r = result(
        target,
        Outcome::Created,
        format!("package {} created", package.version),
    );
    r.package_id = Some(package.id.clone());
    r.version = Some(package.version.clone());
    maybe_promote(tx, target, &package, r, now).await
}

/// Applies the promotion rule: move the channel only forward (no accidental downgrade).
async fn maybe_promote(
    tx: &mut Tx,
    target: &Target,
    package: &Package,
    mut r: AppResult,
    now: i64,
) -> Result<AppResult, StoreError> {
    let Some(wanted) = &target.channel else {
        return Ok(r);
    };
    let channel: Channel = match sql::lock_channel(tx, &target.app.id, wanted).await? {
        Some(c) => c,
        None if target.create_channel => {
            sql::create_channel_named(tx, &target.app.id, wanted, now).await?
        }
        None => {
            r.message
                .push_str(&format!("; channel {wanted:?} not found, not promoted"));
            return Ok(r);
        }
    };
    r.channel_id = Some(channel.id.clone());
    if channel.package_id.as_deref() == Some(package.id.as_str()) {
        r.message
            .push_str(&format!("; channel {} already points at it", channel.name));
        return Ok(r);
    }
    if package.channels_blacklist.contains(&channel.id) {
        r.message
            .push_str(&format!("; blacklisted for channel {}", channel.name));
        return Ok(r);
    }
    let new_version = Version::parse(&package.version).ok();
    let current = channel
        .package
        .as_ref()
        .and_then(|p| Version::parse(&p.version).ok());
    let newer = match (&new_version, &current) {
        (Some(new), Some(cur)) => new > cur,
        (_, None) => true,
        (None, Some(_)) => false,
    };
    if !newer {
        let at = current.map(|v| v.to_string()).unwrap_or_default();
        r.message.push_str(&format!(
            "; not promoted: channel {} is at {at}, not older",
            channel.name
        ));
        sql::release_activity(
            tx,
            ActivityClass::ReleaseRegistered,
            Severity::Warning,
            &target.app.id,
            Some(&channel.id),
            &package.version,
            &format!(
                "package {} registered but not promoted: channel {} is at {at}",
                package.version, channel.name
            ),
            now,
        )
        .await?;
        return Ok(r);
    }
    sql::promote(tx, &channel, package, now).await?;
    r.outcome = Outcome::Promoted;
    r.message
        .push_str(&format!("; channel {} now points at it", channel.name));
    Ok(r)
}

/// Why a release cannot become a package of the CoreOS application, whose packages
/// update_engine installs: they need a download with its size and both digests (the package's
/// format is then checked like any other).
fn coreos_problem(artifact: &Artifact) -> Option<String> {
    const NEEDS: &str = "the CoreOS application takes only update_engine payloads: a release for it needs url, size, hash (base64 SHA-1) and sha256 (base64 SHA-256)";
    match artifact {
        Artifact::Image { .. } => Some(format!("{NEEDS}, not an image")),
        Artifact::Download {
            size,
            sha1_base64,
            sha256_base64,
            ..
        } => {
            let given = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
            let missing: Vec<&str> = [
                ("size", size.is_some_and(|s| s > 0)),
                ("hash", given(sha1_base64)),
                ("sha256", given(sha256_base64)),
            ]
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(name, _)| name)
            .collect();
            (!missing.is_empty()).then(|| format!("{NEEDS}; missing: {}", missing.join(", ")))
        }
    }
}

/// The package a release describes, as the REST API would receive it (same validation rules).
/// Downloads for the CoreOS application are CoreOS (type 1) packages with their postinstall
/// action; other downloads are type 4.
fn package_input(release: &Release, version: &Version, app_id: &str) -> PackageInput {
    match &release.artifact {
        Artifact::Image {
            repository,
            tag,
            digest,
        } => PackageInput {
            package_type: Some(PackageType::Docker.code()),
            version: Some(version.to_string()),
            url: Some(repository.clone()),
            filename: Some(match digest {
                Some(d) => format!("{tag}@{d}"),
                None => tag.clone(),
            }),
            description: Some(release.description.clone()),
            image_repository: Some(repository.clone()),
            image_digest: digest.clone(),
            ..PackageInput::default()
        },
        Artifact::Download {
            url,
            filename,
            size,
            sha1_base64,
            sha256_base64,
        } => PackageInput {
            package_type: Some(if app_id == seed::COREOS_APP_ID {
                PackageType::Coreos.code()
            } else {
                PackageType::Other.code()
            }),
            coreos_action: sha256_base64.as_ref().map(|sha256| CoreosActionInput {
                sha256: Some(sha256.clone()),
                ..CoreosActionInput::default()
            }),
            version: Some(version.to_string()),
            url: Some(url.clone()),
            filename: Some(filename.clone()),
            description: Some(release.description.clone()),
            size: size.map(|s| s.to_string()),
            hash: sha1_base64.clone(),
            ..PackageInput::default()
        },
    }
}
