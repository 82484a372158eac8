//! `POST /v1/update/` and `POST /omaha/` (with or without the trailing slash): no auth, body
//! capped at 64 KiB (larger is a 400, as Nebraska answers), response `text/xml`.
//!
//! The server (`http::server`) answers these requests directly, without the warp filter tree
//! (they are nearly all of a fleet's traffic); the warp route below answers the same way and
//! covers the other methods on these paths. Both go through [`answer`].

use std::net::IpAddr;

use bytes::Bytes;
use warp::filters::path::FullPath;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use super::{client_ip, limited_body, with_state, AppState};
use crate::omaha::protocol::MAX_BODY_BYTES;

/// The Omaha endpoint's paths.
pub fn is_omaha_path(path: &str) -> bool {
    matches!(path, "/v1/update" | "/v1/update/" | "/omaha" | "/omaha/")
}

fn omaha_path() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path::full()
        .and_then(|path: FullPath| async move {
            if is_omaha_path(path.as_str()) {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

fn bad_request(message: String) -> Response {
    warp::reply::with_status(message, StatusCode::BAD_REQUEST).into_response()
}

/// Answers one Omaha request body (`Err(limit)`: the body was larger than the limit, or broken).
pub async fn answer(state: &AppState, body: Result<Bytes, usize>, ip: IpAddr) -> Response {
    let Ok(body) = body else {
        let response = bad_request(format!("request body larger than {MAX_BODY_BYTES} bytes\n"));
        return super::closing_connection(response);
    };
    // Run to completion even if the client goes away, so no transaction is cut short.
    let now = state.now();
    let (store, options) = (state.store.clone(), state.omaha.clone());
    let task =
        tokio::spawn(async move { crate::omaha::handle(&store, &options, &body, ip, now).await });
    match task.await {
        Ok(Ok(xml)) => {
            warp::reply::with_header(xml, "content-type", "text/xml; charset=utf-8").into_response()
        }
        Ok(Err(e)) => bad_request(format!("{e}\n")),
        Err(e) => {
            tracing::error!(error = %e, "omaha handler task failed");
            warp::reply::with_status("internal error\n", StatusCode::INTERNAL_SERVER_ERROR)
                .into_response()
        }
    }
}

pub fn routes(state: AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    // Path before method: a GET to an unknown path must stay a 404, not become a 405 here.
    omaha_path()
        .and(warp::post())
        .and(client_ip(&state))
        .and(with_state(state))
        .and(limited_body(MAX_BODY_BYTES))
        .then(
            |ip, state: AppState, body: Result<Bytes, usize>| async move {
                answer(&state, body, ip).await
            },
        )
}
