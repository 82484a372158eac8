//! Hosted update payloads served at `/packages/` (range requests for update_engine resumes).

use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::AppState;

pub fn routes(_state: AppState) -> BoxedFilter<(Response,)> {
    super::no_routes()
}
