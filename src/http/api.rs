//! CoreRoller-compatible REST API under `/api`: applications (with `clone_from`), groups (with
//! stats), channels, packages, instances, status history, activity and password changes. JSON
//! field names and nesting follow CoreRoller; every route requires Basic or Bearer auth.

use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use super::{authenticated, json_body, query, respond, with_state, ApiError, AppState};
use crate::domain::{
    normalize_uuid, ApplicationInput, ChannelInput, CoreosActionInput, GroupInput, InstanceStatus,
    PackageInput, User,
};
use crate::store::instances::{ActivityFilter, InstanceFilter};

fn ok_json<T: serde::Serialize>(value: &T) -> Result<Response, ApiError> {
    Ok(warp::reply::json(value).into_response())
}

fn created_json<T: serde::Serialize>(value: &T) -> Result<Response, ApiError> {
    Ok(warp::reply::with_status(warp::reply::json(value), StatusCode::CREATED).into_response())
}

fn no_content() -> Result<Response, ApiError> {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The 1-based page a client asked for, bounded so `(page - 1) * per_page` (per_page is at most
/// 1000 everywhere) cannot overflow: a huge `page` is an empty page, not a panic.
fn page_number(raw: Option<i64>) -> i64 {
    raw.unwrap_or(1).clamp(1, 1_000_000)
}

/// Largest `perpage` served; more is served as this many.
const MAX_PER_PAGE: i64 = 1000;

/// The page size a client asked for. Zero or negative means "no preference", the endpoint's
/// `default`, as CoreRoller reads it (its clients send `perpage=0` for that); not one item.
fn per_page(raw: Option<i64>, default: i64) -> i64 {
    match raw {
        Some(n) if n > 0 => n.min(MAX_PER_PAGE),
        _ => default,
    }
}

pub(super) fn id(field: &str, raw: &str) -> Result<String, ApiError> {
    normalize_uuid(field, raw).map_err(ApiError::from)
}

/// The application, checked to belong to the caller's team (404 otherwise).
pub(super) async fn app_of(state: &AppState, user: &User, raw: &str) -> Result<String, ApiError> {
    let app_id = id("app_id", raw)?;
    state.store.app(&user.team_id, &app_id).await?;
    Ok(app_id)
}

#[derive(Debug, Deserialize, Default)]
struct AppQuery {
    clone_from: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct PageQuery {
    #[serde(default, deserialize_with = "query::int")]
    page: Option<i64>,
    #[serde(default, deserialize_with = "query::int")]
    perpage: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
struct InstancesQuery {
    #[serde(default, deserialize_with = "query::int")]
    status: Option<i64>,
    version: Option<String>,
    search: Option<String>,
    #[serde(default, deserialize_with = "query::int")]
    page: Option<i64>,
    #[serde(default, deserialize_with = "query::int")]
    perpage: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
struct HistoryQuery {
    #[serde(default, deserialize_with = "query::int")]
    limit: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
struct ActivityQuery {
    app: Option<String>,
    group: Option<String>,
    channel: Option<String>,
    instance: Option<String>,
    version: Option<String>,
    #[serde(default, deserialize_with = "query::int")]
    severity: Option<i64>,
    start: Option<String>,
    end: Option<String>,
    #[serde(default, deserialize_with = "query::int")]
    page: Option<i64>,
    #[serde(default, deserialize_with = "query::int")]
    perpage: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct PasswordInput {
    password: Option<String>,
}

async fn app_json(
    state: &AppState,
    app: &crate::domain::Application,
) -> Result<serde_json::Value, ApiError> {
    let now = state.now();
    let groups = state.store.list_groups(&app.id, now).await?;
    let channels = state.store.list_channels(&app.id).await?;
    let packages = state.store.list_packages(&app.id).await?;
    let count = state.store.app_instance_count(&app.id, now).await?;
    let mut value = serde_json::to_value(app).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "groups".into(),
            serde_json::to_value(groups).unwrap_or_default(),
        );
        obj.insert(
            "channels".into(),
            serde_json::to_value(channels).unwrap_or_default(),
        );
        obj.insert(
            "packages".into(),
            serde_json::to_value(packages).unwrap_or_default(),
        );
        obj.insert("instances".into(), json!({ "count": count }));
    }
    Ok(value)
}

async fn list_apps(state: AppState, user: User, q: PageQuery) -> Result<Response, ApiError> {
    let apps = state.store.list_apps(&user.team_id).await?;
    let per_page = per_page(q.perpage, 500) as usize;
    let page = page_number(q.page) as usize;
    let mut out = Vec::new();
    for app in apps.iter().skip((page - 1) * per_page).take(per_page) {
        out.push(app_json(&state, app).await?);
    }
    ok_json(&out)
}

async fn get_app(state: AppState, user: User, raw: String) -> Result<Response, ApiError> {
    let app_id = id("app_id", &raw)?;
    let app = state.store.app(&user.team_id, &app_id).await?;
    ok_json(&app_json(&state, &app).await?)
}

async fn create_app(
    state: AppState,
    user: User,
    q: AppQuery,
    input: ApplicationInput,
) -> Result<Response, ApiError> {
    let fields = input.validate()?;
    let clone_from = q
        .clone_from
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| id("clone_from", s))
        .transpose()?;
    let app = state
        .store
        .create_app(&user.team_id, &fields, clone_from.as_deref(), state.now())
        .await?;
    created_json(&app_json(&state, &app).await?)
}

async fn update_app(
    state: AppState,
    user: User,
    raw: String,
    input: ApplicationInput,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    let current = state.store.app(&user.team_id, &app_id).await?;
    let merged = ApplicationInput {
        name: input.name.or(Some(current.name)),
        description: input.description.or(Some(current.description)),
        ..Default::default()
    };
    let app = state
        .store
        .update_app(&user.team_id, &app_id, &merged.validate()?)
        .await?;
    ok_json(&app_json(&state, &app).await?)
}

async fn delete_app(state: AppState, user: User, raw: String) -> Result<Response, ApiError> {
    let app_id = id("app_id", &raw)?;
    state.store.delete_app(&user.team_id, &app_id).await?;
    no_content()
}

async fn list_groups(state: AppState, user: User, raw: String) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    ok_json(&state.store.list_groups(&app_id, state.now()).await?)
}

async fn get_group(
    state: AppState,
    user: User,
    raw: String,
    group: String,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    ok_json(
        &state
            .store
            .group(&app_id, &id("group_id", &group)?, state.now())
            .await?,
    )
}

async fn create_group(
    state: AppState,
    user: User,
    raw: String,
    input: GroupInput,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    let fields = input.validate(None)?;
    created_json(
        &state
            .store
            .create_group(&app_id, &fields, state.now())
            .await?,
    )
}

async fn update_group(
    state: AppState,
    user: User,
    raw: String,
    group: String,
    input: GroupInput,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    let group_id = id("group_id", &group)?;
    let current = state.store.group(&app_id, &group_id, state.now()).await?;
    let fields = input.validate(Some(&current))?;
    ok_json(
        &state
            .store
            .update_group(&app_id, &group_id, &fields, state.now())
            .await?,
    )
}

async fn delete_group(
    state: AppState,
    user: User,
    raw: String,
    group: String,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    state
        .store
        .delete_group(&app_id, &id("group_id", &group)?)
        .await?;
    no_content()
}

async fn list_channels(state: AppState, user: User, raw: String) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    ok_json(&state.store.list_channels(&app_id).await?)
}

async fn get_channel(
    state: AppState,
    user: User,
    raw: String,
    channel: String,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    ok_json(
        &state
            .store
            .channel(&app_id, &id("channel_id", &channel)?)
            .await?,
    )
}

async fn create_channel(
    state: AppState,
    user: User,
    raw: String,
    input: ChannelInput,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    let fields = input.validate(None)?;
    created_json(
        &state
            .store
            .create_channel(&app_id, &fields, state.now())
            .await?,
    )
}

async fn update_channel(
    state: AppState,
    user: User,
    raw: String,
    channel: String,
    input: ChannelInput,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    let channel_id = id("channel_id", &channel)?;
    let current = state.store.channel(&app_id, &channel_id).await?;
    let fields = input.validate(Some(&current))?;
    let updated = state
        .store
        .update_channel(&app_id, &channel_id, &fields, state.now())
        .await?;
    // A manual promotion is a promotion too: the embedded Docker agent checks at once.
    if updated.package_id != current.package_id {
        state.promotions.notify_waiters();
    }
    ok_json(&updated)
}

async fn delete_channel(
    state: AppState,
    user: User,
    raw: String,
    channel: String,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    state
        .store
        .delete_channel(&app_id, &id("channel_id", &channel)?)
        .await?;
    no_content()
}

async fn list_packages(state: AppState, user: User, raw: String) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    ok_json(&state.store.list_packages(&app_id).await?)
}

async fn get_package(
    state: AppState,
    user: User,
    raw: String,
    package: String,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    ok_json(
        &state
            .store
            .package(&app_id, &id("package_id", &package)?)
            .await?,
    )
}

async fn create_package(
    state: AppState,
    user: User,
    raw: String,
    input: PackageInput,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    let fields = input.validate(&app_id)?;
    created_json(
        &state
            .store
            .create_package(&app_id, &fields, state.now())
            .await?,
    )
}

async fn update_package(
    state: AppState,
    user: User,
    raw: String,
    package: String,
    input: PackageInput,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    let package_id = id("package_id", &package)?;
    let current = state.store.package(&app_id, &package_id).await?;
    // Missing fields keep their current values, so a PUT of just `channels_blacklist` works.
    let keep_action = input.coreos_action.is_none();
    let merged = PackageInput {
        package_type: input.package_type.or(Some(current.package_type)),
        version: input.version.or(Some(current.version)),
        url: input.url.or(Some(current.url)),
        filename: input.filename.or(Some(current.filename)),
        description: input.description.or(Some(current.description)),
        size: input.size.or(Some(current.size)),
        hash: input.hash.or(Some(current.hash)),
        channels_blacklist: input
            .channels_blacklist
            .or(Some(current.channels_blacklist)),
        coreos_action: input
            .coreos_action
            .or_else(|| current.coreos_action.as_ref().map(CoreosActionInput::from)),
        image_repository: input.image_repository.or(Some(current.image_repository)),
        image_digest: input.image_digest.or(Some(current.image_digest)),
    };
    let mut fields = merged.validate(&app_id)?;
    if keep_action {
        // Validated with the stored action; left as stored (not rewritten).
        fields.coreos_action = None;
    }
    ok_json(
        &state
            .store
            .update_package(&app_id, &package_id, &fields, state.now())
            .await?,
    )
}

async fn delete_package(
    state: AppState,
    user: User,
    raw: String,
    package: String,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    state
        .store
        .delete_package(&app_id, &id("package_id", &package)?)
        .await?;
    no_content()
}

async fn list_instances(
    state: AppState,
    user: User,
    raw: String,
    group: String,
    q: InstancesQuery,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    let group_id = id("group_id", &group)?;
    state.store.group(&app_id, &group_id, state.now()).await?;
    let status = match q.status {
        Some(code) => Some(
            InstanceStatus::from_code(code)
                .ok_or_else(|| ApiError::Invalid("status: must be between 1 and 8".into()))?,
        ),
        None => None,
    };
    let filter = InstanceFilter {
        status,
        version: q.version.filter(|v| !v.is_empty()),
        search: q.search,
        page: page_number(q.page),
        per_page: per_page(q.perpage, 50),
    };
    let (total, instances) = state
        .store
        .list_instances(&app_id, &group_id, &filter, state.now())
        .await?;
    ok_json(&json!({ "total": total, "instances": instances }))
}

async fn get_instance(
    state: AppState,
    user: User,
    raw: String,
    group: String,
    instance: String,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    let group_id = id("group_id", &group)?;
    state.store.group(&app_id, &group_id, state.now()).await?;
    ok_json(&state.store.instance(&app_id, &instance).await?)
}

async fn status_history(
    state: AppState,
    user: User,
    raw: String,
    group: String,
    instance: String,
    q: HistoryQuery,
) -> Result<Response, ApiError> {
    let app_id = app_of(&state, &user, &raw).await?;
    let group_id = id("group_id", &group)?;
    state.store.group(&app_id, &group_id, state.now()).await?;
    state.store.instance(&app_id, &instance).await?;
    ok_json(
        &state
            .store
            .status_history(&app_id, &instance, q.limit.unwrap_or(20))
            .await?,
    )
}

fn parse_time(field: &str, raw: &Option<String>, default: i64) -> Result<i64, ApiError> {
    match raw.as_deref().filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .map_err(|_| ApiError::Invalid(format!("{field}: {text:?} is not an RFC 3339 time"))),
    }
}

async fn list_activity(
    state: AppState,
    user: User,
    q: ActivityQuery,
) -> Result<Response, ApiError> {
    let now = state.now();
    let opt_id = |field: &str, v: &Option<String>| -> Result<Option<String>, ApiError> {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| id(field, s))
            .transpose()
    };
    if let Some(s) = q.severity {
        if !(1..=4).contains(&s) {
            return Err(ApiError::Invalid(
                "severity: must be between 1 and 4".into(),
            ));
        }
    }
    let filter = ActivityFilter {
        team_id: user.team_id.clone(),
        app_id: opt_id("app", &q.app)?,
        group_id: opt_id("group", &q.group)?,
        channel_id: opt_id("channel", &q.channel)?,
        instance_id: q.instance.clone().filter(|s| !s.is_empty()),
        version: q.version.clone().filter(|s| !s.is_empty()),
        severity: q.severity,
        start_ms: parse_time("start", &q.start, now - 3 * 86_400_000)?,
        end_ms: parse_time("end", &q.end, now + 60_000)?,
        page: page_number(q.page),
        per_page: per_page(q.perpage, 100),
    };
    ok_json(&state.store.list_activity(&filter).await?)
}

async fn change_password(
    state: AppState,
    user: User,
    input: PasswordInput,
) -> Result<Response, ApiError> {
    let password = input.password.unwrap_or_default();
    crate::auth::validate_new_password(&password)?;
    let hash = tokio::task::spawn_blocking(move || crate::auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::Internal)?;
    state
        .store
        .set_password(&user.username, &hash, None)
        .await?;
    no_content()
}

pub fn routes(state: AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let s = || with_state(state.clone());
    let auth = || authenticated(state.clone());
    let limit = state.max_body_bytes;

    let apps = warp::path!("api" / "apps")
        .and(warp::get())
        .and(s())
        .and(auth())
        .and(query::query::<PageQuery>())
        .then(|s, u, q| respond(list_apps(s, u, q)))
        .or(warp::path!("api" / "apps")
            .and(warp::post())
            .and(s())
            .and(auth())
            .and(query::query::<AppQuery>())
            .and(json_body::<ApplicationInput>(limit))
            .then(|s, u, q, b| respond(create_app(s, u, q, b))))
        .unify()
        .or(warp::path!("api" / "apps" / String)
            .and(warp::get())
            .and(s())
            .and(auth())
            .then(|a, s, u| respond(get_app(s, u, a))))
        .unify()
        .or(warp::path!("api" / "apps" / String)
            .and(warp::put())
            .and(s())
            .and(auth())
            .and(json_body::<ApplicationInput>(limit))
            .then(|a, s, u, b| respond(update_app(s, u, a, b))))
        .unify()
        .or(warp::path!("api" / "apps" / String)
            .and(warp::delete())
            .and(s())
            .and(auth())
            .then(|a, s, u| respond(delete_app(s, u, a))))
        .unify()
        .boxed();

    let groups = warp::path!("api" / "apps" / String / "groups")
        .and(warp::get())
        .and(s())
        .and(auth())
        .then(|a, s, u| respond(list_groups(s, u, a)))
        .or(warp::path!("api" / "apps" / String / "groups")
            .and(warp::post())
            .and(s())
            .and(auth())
            .and(json_body::<GroupInput>(limit))
            .then(|a, s, u, b| respond(create_group(s, u, a, b))))
        .unify()
        .or(warp::path!("api" / "apps" / String / "groups" / String)
            .and(warp::get())
            .and(s())
            .and(auth())
            .then(|a, g, s, u| respond(get_group(s, u, a, g))))
        .unify()
        .or(warp::path!("api" / "apps" / String / "groups" / String)
            .and(warp::put())
            .and(s())
            .and(auth())
            .and(json_body::<GroupInput>(limit))
            .then(|a, g, s, u, b| respond(update_group(s, u, a, g, b))))
        .unify()
        .or(warp::path!("api" / "apps" / String / "groups" / String)
            .and(warp::delete())
            .and(s())
            .and(auth())
            .then(|a, g, s, u| respond(delete_group(s, u, a, g))))
        .unify()
        .or(
            warp::path!("api" / "apps" / String / "groups" / String / "instances")
                .and(warp::get())
                .and(s())
                .and(auth())
                .and(query::query::<InstancesQuery>())
                .then(|a, g, s, u, q| respond(list_instances(s, u, a, g, q))),
        )
        .unify()
        .or(
            warp::path!("api" / "apps" / String / "groups" / String / "instances" / String)
                .and(warp::get())
                .and(s())
                .and(auth())
                .then(|a, g, i, s, u| respond(get_instance(s, u, a, g, i))),
        )
        .unify()
        .or(warp::path!(
            "api" / "apps" / String / "groups" / String / "instances" / String / "status_history"
        )
        .and(warp::get())
        .and(s())
        .and(auth())
        .and(query::query::<HistoryQuery>())
        .then(|a, g, i, s, u, q| respond(status_history(s, u, a, g, i, q))))
        .unify()
        .boxed();

    let channels = warp::path!("api" / "apps" / String / "channels")
        .and(warp::get())
        .and(s())
        .and(auth())
        .then(|a, s, u| respond(list_channels(s, u, a)))
        .or(warp::path!("api" / "apps" / String / "channels")
            .and(warp::post())
            .and(s())
            .and(auth())
            .and(json_body::<ChannelInput>(limit))
            .then(|a, s, u, b| respond(create_channel(s, u, a, b))))
        .unify()
        .or(warp::path!("api" / "apps" / String / "channels" / String)
            .and(warp::get())
            .and(s())
            .and(auth())
            .then(|a, c, s, u| respond(get_channel(s, u, a, c))))
        .unify()
        .or(warp::path!("api" / "apps" / String / "channels" / String)
            .and(warp::put())
            .and(s())
            .and(auth())
            .and(json_body::<ChannelInput>(limit))
            .then(|a, c, s, u, b| respond(update_channel(s, u, a, c, b))))
        .unify()
        .or(warp::path!("api" / "apps" / String / "channels" / String)
            .and(warp::delete())
            .and(s())
            .and(auth())
            .then(|a, c, s, u| respond(delete_channel(s, u, a, c))))
        .unify()
        .boxed();

    let packages = warp::path!("api" / "apps" / String / "packages")
        .and(warp::get())
        .and(s())
        .and(auth())
        .then(|a, s, u| respond(list_packages(s, u, a)))
        .or(warp::path!("api" / "apps" / String / "packages")
            .and(warp::post())
            .and(s())
            .and(auth())
            .and(json_body::<PackageInput>(limit))
            .then(|a, s, u, b| respond(create_package(s, u, a, b))))
        .unify()
        .or(warp::path!("api" / "apps" / String / "packages" / String)
            .and(warp::get())
            .and(s())
            .and(auth())
            .then(|a, p, s, u| respond(get_package(s, u, a, p))))
        .unify()
        .or(warp::path!("api" / "apps" / String / "packages" / String)
            .and(warp::put())
            .and(s())
            .and(auth())
            .and(json_body::<PackageInput>(limit))
            .then(|a, p, s, u, b| respond(update_package(s, u, a, p, b))))
        .unify()
        .or(warp::path!("api" / "apps" / String / "packages" / String)
            .and(warp::delete())
            .and(s())
            .and(auth())
            .then(|a, p, s, u| respond(delete_package(s, u, a, p))))
        .unify()
        .boxed();

    let misc = warp::path!("api" / "activity")
        .and(warp::get())
        .and(s())
        .and(auth())
        .and(query::query::<ActivityQuery>())
        .then(|s, u, q| respond(list_activity(s, u, q)))
        .or(warp::path!("api" / "password")
            .and(warp::put())
            .and(s())
            .and(auth())
            .and(json_body::<PasswordInput>(limit))
            .then(|s, u, b| respond(change_password(s, u, b))))
        .unify()
        .boxed();

    apps.or(groups)
        .unify()
        .or(channels)
        .unify()
        .or(packages)
        .unify()
        .or(misc)
        .unify()
}
