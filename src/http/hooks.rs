//! Webhook receivers under `/v1.0/hooks/`: Docker Hub (secret in the path), registry notifications
//! (bearer token), generic signed webhooks (HMAC-SHA256 of the raw body); and the files a release
//! carried, at `/v1.0/packages/<id>/files[/<name>]`. Each receiver turns its input into a
//! `Release` and hands it to `sources::ingest`.

use bytes::Bytes;
use serde_json::json;
use subtle::ConstantTimeEq as _;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::Filter;

use super::{
    authenticated, check_authorization, client_ip, limited_body, respond, with_state, ApiError,
    AppState,
};
use crate::domain::{Artifact, SourceKind, User};
use crate::sources::callback::{self, CallbackBody};
use crate::sources::ingest::{self, IngestReport, Outcome};
use crate::sources::{digest, dockerhub, generic, registry};
use crate::store::StoreError;
use crate::telemetry::WarnThrottle;

pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let s = || with_state(state.clone());
    let limit = state.max_body_bytes;
    let dockerhub = warp::path!("v1.0" / "hooks" / "dockerhub" / String)
        .and(warp::post())
        .and(s())
        .and(limited_body(limit))
        .then(|secret, s, body| respond(dockerhub_hook(s, secret, body)));
    let registry = warp::path!("v1.0" / "hooks" / "registry")
        .and(warp::post())
        .and(s())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("content-type"))
        .and(client_ip(&state))
        .and(limited_body(limit))
        .then(|s, auth, ctype, client, body| respond(registry_hook(s, auth, ctype, client, body)));
    let generic = warp::path!("v1.0" / "hooks" / "generic" / String)
        .and(warp::post())
        .and(s())
        .and(warp::header::optional::<String>("x-hub-signature-256"))
        .and(delivery_id())
        .and(limited_body(limit))
        .then(|name, s, sig, delivery, body| respond(generic_hook(s, name, sig, delivery, body)));
    let files = warp::path!("v1.0" / "packages" / String / "files")
        .and(warp::get())
        .and(s())
        .and(authenticated(state.clone()))
        .then(|id, s, _u: User| respond(list_files(s, id)));
    let file = warp::path!("v1.0" / "packages" / String / "files" / String)
        .and(warp::get())
        .and(s())
        .and(authenticated(state.clone()))
        .then(|id, name, s, _u: User| respond(get_file(s, id, name)));
    dockerhub
        .or(registry)
        .unify()
        .or(generic)
        .unify()
        .or(files)
        .unify()
        .or(file)
        .unify()
        .boxed()
}

/// The sender's delivery id (GitHub's header, else a generic one), when it is sane.
fn delivery_id() -> impl Filter<Extract = (Option<String>,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("x-github-delivery")
        .and(warp::header::optional::<String>("x-delivery-id"))
        .and(warp::header::optional::<String>("x-request-id"))
        .map(|a: Option<String>, b: Option<String>, c: Option<String>| {
            a.or(b).or(c).filter(|id| {
                !id.is_empty() && id.len() <= 200 && id.bytes().all(|b| b.is_ascii_graphic())
            })
        })
}

fn secret_eq(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

fn body_or_413(body: Result<Bytes, usize>) -> Result<Bytes, ApiError> {
    body.map_err(ApiError::TooLarge)
}

/// 200 with the report for outcomes the sender can consider done; 422 for refused releases.
fn report_response(report: &IngestReport) -> Result<Response, ApiError> {
    let status = if report.outcome == Outcome::Rejected {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let mut value = serde_json::to_value(report).map_err(|e| ApiError::Internal(e.to_string()))?;
    if report.outcome == Outcome::Rejected {
        if let Some(obj) = value.as_object_mut() {
            obj.insert("error".into(), json!(report.message));
        }
    }
    Ok(warp::reply::with_status(warp::reply::json(&value), status).into_response())
}

/// A failed ingest: the database down or busy (or still racing a concurrent delivery of the
/// same release after the retries) is the sender's to retry, 503; a problem with the values is
/// a client error a retry would repeat; anything else is a bug, 500.
fn ingest_failed(e: StoreError) -> ApiError {
    match e {
        StoreError::Invalid(_) | StoreError::NotFound => {
            tracing::warn!(error = %e, "ingest refused");
            ApiError::from(e)
        }
        e if e.is_transient() || matches!(e, StoreError::Conflict(_)) => {
            super::error::log_database_unavailable(&e);
            ApiError::Unavailable("the database is unavailable; retry the delivery".into())
        }
        e => ApiError::from(e),
    }
}

async fn dockerhub_hook(
    state: AppState,
    secret: String,
    body: Result<Bytes, usize>,
) -> Result<Response, ApiError> {
    let global_ok = state
        .sources
        .webhook_secret
        .as_deref()
        .is_some_and(|expected| secret_eq(&secret, expected));
    // A wrong secret answers exactly like an unknown path: 404, nothing parsed into the store.
    // Oversized is 413 whatever the secret (it says nothing about the secret, and the answer must
    // close the connection since the rest of the body was not read).
    let body = body.map_err(ApiError::TooLarge)?;
    let parsed = dockerhub::release_from_payload(&body);
    let (mut release, payload) = match parsed {
        Ok(p) => p,
        Err(message) if global_ok => return Err(ApiError::Invalid(message)),
        Err(_) => return Err(ApiError::NotFound),
    };
    let bindings = state
        .store
        .bindings_for(SourceKind::Dockerhub, &release.selector)
        .await?;
    if !global_ok {
        let binding_ok = bindings
            .iter()
            .filter_map(|b| b.secret.as_deref())
            .any(|expected| secret_eq(&secret, expected));
        if !binding_ok {
            return Err(ApiError::NotFound);
        }
    }
    // Only a mutable tag of a bound repository needs the digest (to tell a re-push of unchanged
    // content from a new image); the lookup can take seconds when the registry is far or down.
    if let Artifact::Image { tag, digest: d, .. } = &mut release.artifact {
        if !bindings.is_empty() && crate::domain::release::version_from_tag(tag).is_none() {
            *d = digest::resolve(
                &state.http_client,
                &state.sources.dockerhub_registry,
                &release.selector,
                tag,
            )
            .await;
        }
    }
    let report = ingest::ingest(&state.store, &state.promotions, &release, state.now()).await;
    let callback_url = payload.callback_url.filter(|u| !u.is_empty());
    let (cb_state, description) = match &report {
        Ok(r) if matches!(r.outcome, Outcome::Rejected | Outcome::Ignored) => {
            ("failure", r.message.clone())
        }
        Ok(r) => ("success", r.message.clone()),
        Err(_) => (
            "error",
            "rollbridge could not store the release".to_string(),
        ),
    };
    if let Some(url) = callback_url {
        if callback::is_allowed(&url, &state.sources.callback_allow_hosts) {
            callback::spawn(
                state.http_client.clone(),
                url,
                CallbackBody::new(cb_state, &description),
            );
        } else {
            // The URL comes from the (unsigned) body: one warning per interval, not per request.
            static NOT_ALLOWED: WarnThrottle =
                WarnThrottle::new(std::time::Duration::from_secs(10));
            if let Some(also_refused) = NOT_ALLOWED.admit() {
                tracing::warn!(
                    also_refused,
                    "Docker Hub callback_url host is not allowed (--callback-allow-host); not called"
                );
            }
        }
    }
    // The ingest outcome, as for the other sources (`cb_state` is only the callback's vocabulary);
    // a failed ingest is not a release outcome and is not counted, as elsewhere.
    let report = report.map_err(ingest_failed)?;
    state
        .metrics
        .observe_release("dockerhub", report.outcome.as_str());
    report_response(&report)
}

/// Media types a registry notification may carry (distribution 2.x and 3.x), plus plain JSON.
fn registry_media_type_ok(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "application/vnd.docker.distribution.events.v1+json"
            | "application/vnd.docker.distribution.events.v2+json"
            | "application/json"
    )
}

async fn registry_hook(
    state: AppState,
    authorization: Option<String>,
    content_type: Option<String>,
    client: std::net::IpAddr,
    body: Result<Bytes, usize>,
) -> Result<Response, ApiError> {
    let token_ok = match (&state.sources.registry_token, authorization.as_deref()) {
        (Some(expected), Some(header)) => header
            .trim()
            .strip_prefix("Bearer ")
            .is_some_and(|given| secret_eq(given.trim(), expected)),
        _ => false,
    };
    if !token_ok {
        check_authorization(&state, authorization.as_deref(), client).await?;
    }
    if !registry_media_type_ok(content_type.as_deref()) {
        return Err(ApiError::Status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected application/vnd.docker.distribution.events.v1+json (or v2)".into(),
        ));
    }
    let body = body_or_413(body)?;
    let envelope = match registry::parse_envelope(&body) {
        Ok(e) => e,
        Err(message) => {
            // The registry retries every non-2xx forever from an in-memory queue; a malformed
            // envelope would never succeed, so it is acknowledged, logged and reported.
            tracing::warn!(error = %message, "registry notification refused");
            state.metrics.observe_release("registry", "malformed");
            return Ok(warp::reply::with_status(
                warp::reply::json(&json!({ "error": message, "accepted": 0 })),
                StatusCode::ACCEPTED,
            )
            .into_response());
        }
    };
    let mut reports = Vec::new();
    let mut skipped = Vec::new();
    let mut invalid = Vec::new();
    for event in &envelope.events {
        match registry::classify(event) {
            registry::EventKind::Release(release) => {
                let report = ingest::ingest(&state.store, &state.promotions, &release, state.now())
                    .await
                    .map_err(ingest_failed)?;
                state
                    .metrics
                    .observe_release("registry", report.outcome.as_str());
                reports.push(report);
            }
            registry::EventKind::Skipped(reason) => skipped.push(reason),
            registry::EventKind::Invalid(reason) => {
                // Acknowledged like a malformed envelope: the registry would retry a 4xx
                // forever, and the event can never succeed.
                tracing::warn!(error = %reason, "registry event refused");
                state.metrics.observe_release("registry", "rejected");
                invalid.push(reason);
            }
        }
    }
    Ok(warp::reply::json(&json!({
        "accepted": reports.len(),
        "skipped": skipped.len(),
        "rejected": invalid,
        "releases": reports,
    }))
    .into_response())
}

async fn generic_hook(
    state: AppState,
    name: String,
    signature: Option<String>,
    delivery: Option<String>,
    body: Result<Bytes, usize>,
) -> Result<Response, ApiError> {
    let selector = crate::domain::release::normalize_selector(SourceKind::Generic, &name)
        .map_err(|_| ApiError::NotFound)?;
    let bindings = state
        .store
        .bindings_for(SourceKind::Generic, &selector)
        .await?;
    // Which keys may sign, and what each allows: a binding's own secret (its bindings), the
    // generic secret (any application), the server-wide secret (only applications bound to
    // this name: it also sits in Docker Hub's webhook URL, so it must not reach everything).
    let binding_secrets: Vec<&str> = bindings
        .iter()
        .filter_map(|b| b.secret.as_deref())
        .collect();
    let keys: Vec<(&str, bool)> = if binding_secrets.is_empty() {
        [
            (state.sources.generic_webhook_secret.as_deref(), false),
            (state.sources.webhook_secret.as_deref(), true),
        ]
        .into_iter()
        .filter_map(|(key, bound_only)| key.map(|k| (k, bound_only)))
        .collect()
    } else {
        binding_secrets.into_iter().map(|k| (k, true)).collect()
    };
    if keys.is_empty() {
        return Err(ApiError::Status(
            StatusCode::UNAUTHORIZED,
            "no secret is configured for this webhook (binding secret, --generic-webhook-secret or --webhook-secret)".into(),
        ));
    }
    let body = body_or_413(body)?;
    let Some(&(_, bound_only)) = keys
        .iter()
        .find(|(key, _)| generic::verify_signature(key.as_bytes(), &body, signature.as_deref()))
    else {
        return Err(ApiError::Status(
            StatusCode::UNAUTHORIZED,
            "missing or wrong X-Hub-Signature-256".into(),
        ));
    };
    if bound_only && bindings.is_empty() {
        return Err(ApiError::Status(
            StatusCode::FORBIDDEN,
            format!(
                "generic webhook {selector:?} has no binding: a delivery signed with --webhook-secret only reaches applications bound to its name (create a binding, or sign with --generic-webhook-secret)"
            ),
        ));
    }
    let release =
        generic::release_from_payload(&selector, &body, delivery).map_err(ApiError::Invalid)?;
    let report = ingest::ingest(&state.store, &state.promotions, &release, state.now())
        .await
        .map_err(ingest_failed)?;
    state
        .metrics
        .observe_release("generic", report.outcome.as_str());
    report_response(&report)
}

async fn list_files(state: AppState, raw_id: String) -> Result<Response, ApiError> {
    let package_id = crate::domain::normalize_uuid("package_id", &raw_id)?;
    let source = state
        .store
        .package_source(&package_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let files: Vec<_> = source
        .files
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "size": f.size,
                "sha256": f.sha256,
                "url": format!("/v1.0/packages/{package_id}/files/{}", f.name),
            })
        })
        .collect();
    Ok(warp::reply::json(&json!({
        "package_id": package_id,
        "source": source.source,
        "selector": source.selector,
        "image_tag": source.image_tag,
        "metadata": source.metadata,
        "files": files,
    }))
    .into_response())
}

async fn get_file(state: AppState, raw_id: String, name: String) -> Result<Response, ApiError> {
    let package_id = crate::domain::normalize_uuid("package_id", &raw_id)?;
    let name = percent_decode(&name).ok_or(ApiError::NotFound)?;
    let file = state.store.package_file(&package_id, &name).await?;
    let mut response = Response::new(file.content.into());
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        warp::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = warp::http::HeaderValue::from_str(&file.sha256) {
        headers.insert("x-content-sha256", v);
    }
    headers.insert(
        "x-content-type-options",
        warp::http::HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// Decodes `%XX` escapes of a path segment (file names such as `app@.service.tmpl`).
fn percent_decode(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}
