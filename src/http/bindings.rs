//! Bindings REST API: `/api/apps/:app/bindings[/:id]` (list, create, get, update, delete). A
//! binding's secret is write-only: responses say `has_secret`, never the value.

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::Filter;

use super::{authenticated, json_body, respond, with_state, ApiError, AppState};
use crate::domain::{normalize_uuid, BindingInput, User};

use super::api::app_of;

async fn list(state: AppState, user: User, app: String) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &app).await?;
    Ok(warp::reply::json(&state.store.list_bindings(&app_id).await?).into_response())
}

async fn create(
    state: AppState,
    user: User,
    app: String,
    input: BindingInput,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &app).await?;
    let fields = input.validate(None)?;
    let binding = state
        .store
        .create_binding(&app_id, &fields, state.now())
        .await?;
    Ok(warp::reply::with_status(warp::reply::json(&binding), StatusCode::CREATED).into_response())
}

async fn get(state: AppState, user: User, app: String, id: String) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &app).await?;
    let id = normalize_uuid("binding_id", &id)?;
    Ok(warp::reply::json(&state.store.binding(&app_id, &id).await?).into_response())
}

async fn update(
    state: AppState,
    user: User,
    app: String,
    id: String,
    input: BindingInput,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &app).await?;
    let id = normalize_uuid("binding_id", &id)?;
    let current = state.store.binding(&app_id, &id).await?;
    let fields = input.validate(Some(&current))?;
    Ok(
        warp::reply::json(&state.store.update_binding(&app_id, &id, &fields).await?)
            .into_response(),
    )
}

async fn delete(
    state: AppState,
    user: User,
    app: String,
    id: String,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &app).await?;
    let id = normalize_uuid("binding_id", &id)?;
    state.store.delete_binding(&app_id, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let s = || with_state(state.clone());
    let auth = || authenticated(state.clone());
    let limit = state.max_body_bytes;
    warp::path!("api" / "apps" / String / "bindings")
        .and(warp::get())
        .and(s())
        .and(auth())
        .then(|a, s, u| respond(list(s, u, a)))
        .or(warp::path!("api" / "apps" / String / "bindings")
            .and(warp::post())
            .and(s())
            .and(auth())
            .and(json_body::<BindingInput>(limit))
            .then(|a, s, u, b| respond(create(s, u, a, b))))
        .unify()
        .or(warp::path!("api" / "apps" / String / "bindings" / String)
            .and(warp::get())
            .and(s())
            .and(auth())
            .then(|a, i, s, u| respond(get(s, u, a, i))))
        .unify()
        .or(warp::path!("api" / "apps" / String / "bindings" / String)
            .and(warp::put())
            .and(s())
            .and(auth())
            .and(json_body::<BindingInput>(limit))
            .then(|a, i, s, u, b| respond(update(s, u, a, i, b))))
        .unify()
        .or(warp::path!("api" / "apps" / String / "bindings" / String)
            .and(warp::delete())
            .and(s())
            .and(auth())
            .then(|a, i, s, u| respond(delete(s, u, a, i))))
        .unify()
        .boxed()
}
