//! Operational endpoints: `/v1.0/health` (GET or HEAD, no auth) and Prometheus text at `/metrics`.

use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use super::{authenticated, with_state, AppState};

/// `GET|HEAD /v1.0/health`: 200 when the database answers, 503 with `Retry-After` otherwise
/// (HEAD: the status alone). The server answers it directly (load balancers poll it); the warp route answers the
/// same way.
pub async fn health(state: &AppState) -> Response {
    // A trivial query proves the database answers, not only the process.
    match state.store.ping().await {
        Ok(()) => warp::reply::json(&serde_json::json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            let body = warp::reply::json(
                &serde_json::json!({"status": "unavailable", "error": "database unavailable"}),
            );
            // As every other 503 of the server: when a poller should look again.
            let body = warp::reply::with_header(
                body,
                warp::http::header::RETRY_AFTER,
                super::error::RETRY_AFTER_SECONDS.to_string(),
            );
            warp::reply::with_status(body, warp::http::StatusCode::SERVICE_UNAVAILABLE)
                .into_response()
        }
    }
}

pub fn routes(state: AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let health = warp::path!("v1.0" / "health")
        .and(warp::get().or(warp::head()).unify())
        .and(with_state(state.clone()))
        .then(|state: AppState| async move { health(&state).await });
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(authenticated(state.clone()))
        .and(with_state(state))
        .map(|_user, state: AppState| {
            warp::reply::with_header(
                state.metrics.render(),
                "content-type",
                "text/plain; version=0.0.4",
            )
            .into_response()
        });
    health.or(metrics).unify()
}
