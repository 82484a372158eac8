//! `POST /api/agent/activity`: remote Docker agents report per-container outcomes (updated,
//! rolled back) for the activity stream. Authenticated like the rest of `/api` (the agent uses
//! its API token); the body is bounded and validated before anything is stored.

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::Filter;

use super::{authenticated, json_body, respond, with_state, ApiError, AppState};
use crate::agent::report::ContainerReport;
use crate::domain::User;

/// Agent reports are small; a smaller cap than the general REST limit.
const MAX_REPORT_BYTES: usize = 16 * 1024;

async fn add_report(
    state: AppState,
    user: User,
    report: ContainerReport,
) -> Result<Response, ApiError> {
    report
        .record(&state.store, &user.team_id, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "agent" / "activity")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(authenticated(state.clone()))
        .and(json_body::<ContainerReport>(
            MAX_REPORT_BYTES.min(state.max_body_bytes),
        ))
        .then(|s, u, r| respond(add_report(s, u, r)))
        .boxed()
}
