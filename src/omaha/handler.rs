//! Answers an Omaha request: resolves each `<app>` to an application and group, validates what
//! registration needs, runs the rollout check and builds the response. Per-app problems become
//! per-app statuses (HTTP 200); only a broken envelope is an error for the caller.

use std::net::IpAddr;

use super::protocol::{
    self, AppRequest, AppResponse, Manifest, PostinstallAction, ProtocolError, Response,
    UpdateCheck,
};
use super::status;
use crate::domain::{self, seed, EventKind, Group, Package, PackageType, Version};
use crate::rollout::check::{self, CheckPath, CheckRequest, UpdateAnswer};
use crate::rollout::events::ReportedEvent;
use crate::store::Store;

#[derive(Debug, Clone, Default)]
pub struct OmahaOptions {
    /// Answer policy denials as `noupdate` (update_engine logs any other status as error 34).
    pub deny_as_noupdate: bool,
    /// Update checks by how they were answered (exported on `/metrics` by the HTTP layer).
    pub checks: CheckCounters,
}

/// `omaha_checks_total{path}`: checks answered from the instance cache (`cached`, SQLite), from
/// a read snapshot (`snapshot`) or by the locking transaction (`transaction`). A settled fleet
/// should be nearly all `cached` (SQLite) or `snapshot` (MySQL).
#[derive(Debug, Clone)]
pub struct CheckCounters {
    pub family: prometheus::IntCounterVec,
    cached: prometheus::IntCounter,
    snapshot: prometheus::IntCounter,
    transaction: prometheus::IntCounter,
}

impl Default for CheckCounters {
    fn default() -> Self {
        // A static, valid definition: construction cannot fail at run time.
        let family = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "omaha_checks_total",
                "Omaha app checks by how they were answered: cached, snapshot or transaction",
            ),
            &["path"],
        )
        .expect("static counter definition");
        Self {
            cached: family.with_label_values(&["cached"]),
            snapshot: family.with_label_values(&["snapshot"]),
            transaction: family.with_label_values(&["transaction"]),
            family,
        }
    }
}

impl CheckCounters {
    /// Checks answered so far by `path`.
    pub fn count_of(&self, path: CheckPath) -> u64 {
        self.counter(path).get()
    }

    fn counter(&self, path: CheckPath) -> &prometheus::IntCounter {
        match path {
            CheckPath::Cached => &self.cached,
            CheckPath::Snapshot => &self.snapshot,
            CheckPath::Transaction => &self.transaction,
        }
    }
}

/// Parses and answers one request body. `client_ip` is already resolved from the peer address
/// or `X-Forwarded-For`.
pub async fn handle(
    store: &Store,
    options: &OmahaOptions,
    body: &[u8],
    client_ip: IpAddr,
    now: i64,
) -> Result<String, ProtocolError> {
    let request = protocol::parse_request(body)?;
    let mut response = Response {
        apps: Vec::with_capacity(request.apps.len()),
    };
    let client_ip = client_ip.to_string();
    for app in &request.apps {
        if let Some(answer) = super::multi::answer_syncer(store, &request, app).await {
            response.apps.push(answer);
            continue;
        }
        // Boxed: the check's future is kilobytes; moving it through every caller costs more than
        // one allocation.
        response
            .apps
            .push(Box::pin(answer_app(store, options, app, &client_ip, now)).await);
    }
    Ok(response.to_xml())
}

pub(super) fn error_app<'a>(app: &AppRequest<'a>, app_status: &'static str) -> AppResponse<'a> {
    AppResponse {
        appid: app.appid.clone(),
        status: app_status,
        ping: app.ping,
        update_check: app.update_check.then(|| UpdateCheck {
            manifests: Vec::new(),
            status: status::ERROR_INTERNAL,
            poll_interval: None,
            manifest: None,
        }),
        events: app.events.len(),
    }
}

/// Why an `<app>` could not be registered; logged at debug level, answered with one status.
fn registration_problem(app: &AppRequest<'_>) -> Option<String> {
    let id = app.machine_id.trim();
    if id.is_empty() {
        return Some("missing machineid".into());
    }
    if id.len() > 128 || id.chars().any(|c| c.is_control()) {
        return Some("machineid too long or not printable".into());
    }
    if app.machine_alias.len() > 255 || app.oem.len() > 255 || app.aleph_version.len() > 255 {
        return Some("attribute too long".into());
    }
    None
}

pub(super) async fn resolve_group(
    store: &Store,
    app_id: &str,
    track: &str,
) -> Result<Option<std::sync::Arc<Group>>, crate::store::StoreError> {
    let track = track.trim();
    if track.is_empty() || track.len() > 256 {
        return Ok(None);
    }
    if app_id == seed::COREOS_APP_ID {
        if let Some(group_id) = seed::coreos_group_for_track(track) {
            return store.group_for_track(app_id, group_id).await;
        }
    }
    let track = domain::normalize_uuid("track", track).unwrap_or_else(|_| track.to_string());
    store.group_for_track(app_id, &track).await
}

async fn answer_app<'a>(
    store: &Store,
    options: &OmahaOptions,
    app: &AppRequest<'a>,
    client_ip: &str,
    now: i64,
) -> AppResponse<'a> {
    let Ok(app_id) = domain::normalize_uuid("appid", &app.appid) else {
        return error_app(app, status::INSTANCE_REGISTRATION_FAILED);
    };
    let known_app = match store.app_by_id(&app_id).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "omaha: loading application failed");
            return error_app(app, status::FAILED_TO_RETRIEVE);
        }
    };
    if known_app.is_none() {
        return error_app(app, status::INSTANCE_REGISTRATION_FAILED);
    }
    let group = match resolve_group(store, &app_id, &app.track).await {
        Ok(Some(group)) => group,
        Ok(None) => return error_app(app, status::INSTANCE_REGISTRATION_FAILED),
        Err(e) => {
            tracing::error!(error = %e, "omaha: loading group failed");
            return error_app(app, status::FAILED_TO_RETRIEVE);
        }
    };
    let Ok(version) = Version::parse(&app.version) else {
        return error_app(app, status::INSTANCE_REGISTRATION_FAILED);
    };
    if let Some(problem) = registration_problem(app) {
        tracing::debug!(%problem, "omaha: registration refused");
        return error_app(app, status::INSTANCE_REGISTRATION_FAILED);
    }
    let events = app
        .events
        .iter()
        .map(|e| ReportedEvent {
            kind: match (e.event_type, e.event_result) {
                (Some(t), Some(r)) => EventKind::from_pair(t, r),
                _ => None,
            },
            previous_version: e.previous_version.chars().take(255).collect(),
            error_code: e.error_code.chars().take(100).collect(),
        })
        .collect();
    let request = CheckRequest {
        is_coreos: app_id == seed::COREOS_APP_ID,
        app_id: &app_id,
        group_id: &group.id,
        instance_id: app.machine_id.trim(),
        ip: client_ip,
        alias: &app.machine_alias,
        oem: &app.oem,
        aleph_version: &app.aleph_version,
        version,
        events,
        ping: app.ping,
        update_check: app.update_check,
    };
    let outcome = match check::run(store, &request, &group, now).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!(error = %e, "omaha: update check failed");
            return error_app(app, status::FAILED_TO_RETRIEVE);
        }
    };
    options.checks.counter(outcome.path).inc();
    let poll_interval = u32::try_from(outcome.poll_interval).ok().filter(|s| *s > 0);
    let (app_status, update_check) = match outcome.update {
        None => (status::OK, None),
        Some(UpdateAnswer::Update(package)) => (
            status::OK,
            Some(UpdateCheck {
                manifests: Vec::new(),
                status: status::OK,
                poll_interval,
                manifest: Some(manifest(&package)),
            }),
        ),
        Some(UpdateAnswer::NoUpdate) => (status::OK, Some(no_update(poll_interval))),
        Some(UpdateAnswer::Denied(_)) if options.deny_as_noupdate => {
            (status::OK, Some(no_update(poll_interval)))
        }
        Some(UpdateAnswer::Denied(denial)) => (
            status::denial_status(denial),
            Some(UpdateCheck {
                manifests: Vec::new(),
                status: status::ERROR_INTERNAL,
                poll_interval: None,
                manifest: None,
            }),
        ),
    };
    AppResponse {
        appid: app.appid.clone(),
        status: app_status,
        ping: app.ping,
        update_check: if app.update_check { update_check } else { None },
        events: app.events.len(),
    }
}

pub(super) fn no_update(poll_interval: Option<u32>) -> UpdateCheck {
    UpdateCheck {
        manifests: Vec::new(),
        status: status::NO_UPDATE,
        poll_interval,
        manifest: None,
    }
}

pub(super) fn manifest(package: &Package) -> Manifest {
    let action = if PackageType::from_code(package.package_type) == Some(PackageType::Coreos) {
        let a = package.coreos_action.as_ref();
        Some(PostinstallAction {
            sha256: a.map(|a| a.sha256.clone()).unwrap_or_default(),
            needs_admin: a.is_some_and(|a| a.needs_admin),
            is_delta: a.is_some_and(|a| a.is_delta),
            disable_payload_backoff: a.is_none_or(|a| a.disable_payload_backoff),
            chromeos_version: a.map(|a| a.chromeos_version.clone()).unwrap_or_default(),
            metadata_signature_rsa: a
                .map(|a| a.metadata_signature_rsa.clone())
                .unwrap_or_default(),
            metadata_size: a.map(|a| a.metadata_size.clone()).unwrap_or_default(),
            deadline: a.map(|a| a.deadline.clone()).unwrap_or_default(),
        })
    } else {
        None
    };
    Manifest {
        codebase: package.url.clone(),
        version: package.version.clone(),
        package_name: package.filename.clone(),
        package_hash: package.hash.clone(),
        package_size: package.size.clone(),
        action,
    }
}
