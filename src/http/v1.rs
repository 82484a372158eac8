//! artifactory-monitor's operational API under `/v1.0` (besides `/v1.0/health`, in `ops`):
//! `GET /v1.0/info` (settings, per-app poller state and bindings, never secrets), `GET /v1.0/metrics` (JSON counters
//! with fixed names) and `GET|POST /v1.0/force` (poll now; answers within `wait` seconds even
//! while a round runs, queueing one). All need an API token or user credentials.

use std::time::Duration;

use serde::Deserialize;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use super::{authenticated, respond, with_state, ApiError, AppState};

/// Longest `/v1.0/force?wait=` accepted, in seconds.
const MAX_FORCE_WAIT: u64 = 30;
const DEFAULT_FORCE_WAIT: u64 = 5;

#[derive(Debug, Deserialize)]
struct ForceQuery {
    #[serde(default, deserialize_with = "super::query::uint")]
    wait: Option<u64>,
}

pub fn routes(state: AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let info = warp::path!("v1.0" / "info")
        .and(warp::get())
        .and(authenticated(state.clone()))
        .and(with_state(state.clone()))
        .then(|_user, state: AppState| respond(info(state)));
    let metrics = warp::path!("v1.0" / "metrics")
        .and(warp::get())
        .and(authenticated(state.clone()))
        .and(with_state(state.clone()))
        .map(|_user, state: AppState| metrics(&state));
    let force = warp::path!("v1.0" / "force")
        .and(warp::get().or(warp::post()).unify())
        .and(authenticated(state.clone()))
        .and(super::query::query::<ForceQuery>())
        .and(with_state(state))
        .then(|_user, q: ForceQuery, state: AppState| respond(force(state, q)));
    info.or(metrics).unify().or(force).unify()
}

/// The machine's host name (no environment lookup; Linux exposes it in procfs).
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

async fn info(state: AppState) -> Result<Response, ApiError> {
    let bindings = state.store.all_bindings().await?;
    let settings = state.artifactory.settings().cloned();
    // Per-app poller state (last/in-progress/failed version): what operators ask first.
    let apps = match &settings {
        Some(s) => {
            state
                .store
                .artifactory_states(&s.domain, &s.environment)
                .await?
        }
        None => Vec::new(),
    };
    let body = serde_json::json!({
        "name": "rollbridge",
        "version": env!("CARGO_PKG_VERSION"),
        "hostname": hostname(),
        "domain": settings.as_ref().map(|s| s.domain.clone()),
        "environment": settings.as_ref().map(|s| s.environment.clone()),
        "polling": settings.as_ref().map(|s| serde_json::json!({
            "interval_seconds": s.polling_seconds,
            "timeout_seconds": s.timeout_seconds,
            "backoff_max_seconds": s.backoff_max_seconds,
        })),
        "artifactory": settings,
        "apps": apps,
        "bindings": bindings,
    });
    Ok(warp::reply::json(&body).into_response())
}

fn metrics(state: &AppState) -> Response {
    let art = state.artifactory.snapshot();
    let to_time = |ts: Option<i64>| {
        ts.and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    let body = serde_json::json!({
        "requests": state.metrics.requests_total(),
        "polls": art.polls,
        "releases": art.releases,
        "failures": art.poll_failures + art.rejected + art.deploy_failures,
        "last_poll_time": to_time(art.last_poll_ts),
        "last_success_time": to_time(art.last_success_ts),
        "artifactory": art,
    });
    warp::reply::json(&body).into_response()
}

async fn force(state: AppState, q: ForceQuery) -> Result<Response, ApiError> {
    let wait = Duration::from_secs(q.wait.unwrap_or(DEFAULT_FORCE_WAIT).min(MAX_FORCE_WAIT));
    let answer = state.artifactory.force(wait).await.ok_or_else(|| {
        ApiError::Conflict("the Artifactory poller is not configured (--art-endpoint)".into())
    })?;
    let status = if answer.queued {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok(warp::reply::with_status(warp::reply::json(&answer), status).into_response())
}
