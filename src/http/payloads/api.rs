//! REST routes that belong to syncing: channel floors (list, mark, unmark) and
//! `POST /api/apps/:app/packages?host=true`, which downloads and verifies the payload into the
//! hosting directory before the package is created (pointing at `<public-url>/packages/`).
//! Without `host=true` package creation falls through to the regular API.

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use super::super::{
    authenticated, json_body, limited_body, respond, with_state, ApiError, AppState,
};
use crate::domain::{CoreosActionFields, PackageInput, PackageType, User};
use crate::sync::hosting::{HostError, HostRequest};

use super::super::api::{app_of, id};

#[derive(Debug, Default, Deserialize)]
struct FloorInput {
    floor_reason: Option<String>,
}

async fn list_floors(
    state: AppState,
    user: User,
    app: String,
    channel: String,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &app).await?;
    let floors = state
        .store
        .list_floors(&app_id, &id("channel_id", &channel)?)
        .await?;
    Ok(warp::reply::json(&floors).into_response())
}

async fn add_floor(
    state: AppState,
    user: User,
    app: String,
    channel: String,
    package: String,
    body: Result<bytes::Bytes, usize>,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &app).await?;
    let body = body.map_err(ApiError::TooLarge)?;
    // The body is optional: `PUT .../floors/:package` with nothing marks without a reason.
    let input: FloorInput = if body.iter().all(u8::is_ascii_whitespace) {
        FloorInput::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Invalid(format!("malformed JSON body: {e}")))?
    };
    let reason = input.floor_reason.unwrap_or_default();
    if reason.chars().count() > crate::store::floors::MAX_REASON_CHARS {
        return Err(ApiError::Invalid(format!(
            "floor_reason: longer than {} characters",
            crate::store::floors::MAX_REASON_CHARS
        )));
    }
    let floor = state
        .store
        .add_floor(
            &app_id,
            &id("channel_id", &channel)?,
            &id("package_id", &package)?,
            &reason,
            state.now(),
        )
        .await?;
    Ok(warp::reply::json(&floor).into_response())
}

async fn remove_floor(
    state: AppState,
    user: User,
    app: String,
    channel: String,
    package: String,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &app).await?;
    state
        .store
        .remove_floor(
            &app_id,
            &id("channel_id", &channel)?,
            &id("package_id", &package)?,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `host=true` (or `1`) among the query parameters.
fn host_requested(query: &str) -> bool {
    query.split('&').any(|pair| {
        matches!(
            pair.split_once('=').unwrap_or((pair, "")),
            ("host", "true" | "1")
        )
    })
}

async fn create_hosted(
    state: AppState,
    user: User,
    app: String,
    input: PackageInput,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &app).await?;
    // Size and digests may be missing: they are filled in from the download below.
    let mut fields = input.validate_shape(&app_id)?;
    if !state.hosting.enabled() {
        return Err(ApiError::Invalid(
            "host=true: payload hosting is not enabled (start with --host-packages DIR --public-url URL)"
                .into(),
        ));
    }
    if fields.filename.is_empty() {
        return Err(ApiError::Invalid(
            "filename: is required to host a payload (url + filename is downloaded)".into(),
        ));
    }
    // Refuse duplicates before spending a download on them.
    if state
        .store
        .package_by_version(&app_id, fields.version.as_str())
        .await?
        .is_some()
    {
        return Err(ApiError::Conflict(format!(
            "a package with version {} already exists",
            fields.version
        )));
    }
    let sha256 = fields
        .coreos_action
        .as_ref()
        .map(|a| a.sha256.clone())
        .filter(|s| !s.is_empty());
    let hosted = state
        .hosting
        .host(&HostRequest {
            app_id: app_id.clone(),
            arch: crate::sync::SYNC_ARCH.into(),
            version: fields.version.as_str().to_string(),
            codebase: fields.url.clone(),
            name: fields.filename.clone(),
            size: fields.size.parse().ok(),
            sha1_b64: Some(fields.hash.clone()).filter(|h| !h.is_empty()),
            sha256_b64: sha256,
        })
        .await;
    state.metrics.observe_payload(match &hosted {
        Ok(h) if h.downloaded => "downloaded",
        Ok(_) => "reused",
        Err(e) => e.kind(),
    });
    let hosted = hosted.map_err(|e| match e {
        HostError::Io(msg) => ApiError::Internal(msg),
        other => ApiError::Invalid(format!("host=true: {other}")),
    })?;
    fields.url = hosted.url;
    fields.filename = hosted.file_name;
    if fields.size.is_empty() {
        fields.size = hosted.size.to_string();
    }
    if fields.hash.is_empty() {
        fields.hash = hosted.sha1_b64.clone();
    }
    match fields.coreos_action.as_mut() {
        Some(action) if action.sha256.is_empty() => action.sha256 = hosted.sha256_b64.clone(),
        Some(_) => {}
        None if fields.package_type == PackageType::Coreos => {
            fields.coreos_action = Some(CoreosActionFields {
                event: "postinstall".into(),
                chromeos_version: String::new(),
                sha256: hosted.sha256_b64.clone(),
                needs_admin: false,
                is_delta: false,
                disable_payload_backoff: true,
                metadata_signature_rsa: String::new(),
                metadata_size: String::new(),
                deadline: String::new(),
            })
        }
        None => {}
    }
    fields.check_complete()?;
    let package = state
        .store
        .create_package(&app_id, &fields, state.now())
        .await?;
    Ok(warp::reply::with_status(warp::reply::json(&package), StatusCode::CREATED).into_response())
}

pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let limit = state.max_body_bytes;
    let s = {
        let state = state.clone();
        move || with_state(state.clone())
    };
    let auth = {
        let state = state.clone();
        move || authenticated(state.clone())
    };
    let floors = warp::path!("api" / "apps" / String / "channels" / String / "floors")
        .and(warp::get())
        .and(s())
        .and(auth())
        .then(|a, c, s, u| respond(list_floors(s, u, a, c)))
        .or(
            warp::path!("api" / "apps" / String / "channels" / String / "floors" / String)
                .and(warp::put())
                .and(s())
                .and(auth())
                .and(limited_body(limit))
                .then(|a, c, p, s, u, b| respond(add_floor(s, u, a, c, p, b))),
        )
        .unify()
        .or(
            warp::path!("api" / "apps" / String / "channels" / String / "floors" / String)
                .and(warp::delete())
                .and(s())
                .and(auth())
                .then(|a, c, p, s, u| respond(remove_floor(s, u, a, c, p))),
        )
        .unify();
    let hosted = warp::path!("api" / "apps" / String / "packages")
        .and(warp::post())
        .and(
            warp::query::raw()
                .and_then(|q: String| async move {
                    if host_requested(&q) {
                        Ok(())
                    } else {
                        Err::<(), Rejection>(warp::reject::not_found())
                    }
                })
                .untuple_one(),
        )
        .and(s())
        .and(auth())
        .and(json_body::<PackageInput>(limit))
        .then(|a, s, u, b| respond(create_hosted(s, u, a, b)));
    floors.or(hosted).unify().boxed()
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_flag_is_read_from_the_query() {
        assert!(super::host_requested("host=true"));
        assert!(super::host_requested("a=b&host=1"));
        assert!(!super::host_requested("host=false"));
        assert!(!super::host_requested("hostx=true"));
    }
}
