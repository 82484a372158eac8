//! Webhook receivers (`/v1.0/hooks/...`): Docker Hub, registry notifications, signed generic.

use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::AppState;

pub fn routes(_state: AppState) -> BoxedFilter<(Response,)> {
    super::no_routes()
}
