//! The server-rendered dashboard (`/ui/...`).

use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::AppState;

pub fn routes(_state: AppState) -> BoxedFilter<(Response,)> {
    super::no_routes()
}
