//! The actions (POST, after the session and CSRF checks in `mod.rs`): log in and out, change the
//! password, create applications, channels, packages and groups, promote, blacklist, edit a
//! group's policy, pause and resume. Inputs go through the same validated input types and
//! `Store` methods as the REST API; on a validation error nothing is stored and the page is
//! rendered again with the submitted values and the error next to its field.

use warp::http::StatusCode;
use warp::reply::Response;

use super::pages::{self, app_url, group_url};
use super::{
    field_error, html, lookup_user_password, redirect, safe_next, session_cookie, start_session,
    views, with_cookie, ActionRoute, Ctx, FieldError, Form, FormState, PageRoute, UiError,
};
use crate::domain::{
    normalize_uuid, ApplicationInput, ChannelInput, CoreosActionInput, GroupInput, PackageInput,
};
use crate::http::AppState;
use crate::store::StoreError;

/// Checks the credentials and starts a session (303 to `next`), or shows the form again.
pub async fn login(state: AppState, client: std::net::IpAddr, form: Form) -> Response {
    let username = form.get("username").unwrap_or("").trim().to_string();
    let password = form.get("password").unwrap_or("").to_string();
    let next = safe_next(form.get("next"));
    let user = match lookup_user_password(&state, client, &username, &password).await {
        Ok(Ok(user)) => user,
        Ok(Err(seconds)) => {
            let message = format!("Too many failed logins. Try again in {seconds} seconds.");
            let mut response = html(
                StatusCode::TOO_MANY_REQUESTS,
                views::login_page(&next, Some(&message), &username),
            );
            response
                .headers_mut()
                .insert(warp::http::header::RETRY_AFTER, seconds.into());
            return response;
        }
        Err(e) => return e.into_response(),
    };
    let Some(user) = user else {
        return html(
            StatusCode::UNAUTHORIZED,
            views::login_page(&next, Some("Wrong user name or password."), &username),
        );
    };
    match start_session(&state, &user.id).await {
        Ok(cookie) => with_cookie(redirect(&next), &cookie),
        Err(e) => e.into_response(),
    }
}

pub async fn run(
    ctx: Ctx,
    route: ActionRoute,
    client: std::net::IpAddr,
    form: Form,
) -> Result<Response, UiError> {
    match route {
        ActionRoute::Logout => logout(ctx).await,
        ActionRoute::Password => password(ctx, client, form).await,
        ActionRoute::CreateApp => create_app(ctx, form).await,
        ActionRoute::CreateChannel { app } => create_channel(ctx, &app, form).await,
        ActionRoute::CreatePackage { app } => create_package(ctx, &app, form).await,
        ActionRoute::CreateGroup { app } => create_group(ctx, &app, form).await,
        ActionRoute::Promote { app, channel } => promote(ctx, &app, &channel, form).await,
        ActionRoute::Blacklist { app, package } => blacklist(ctx, &app, &package, form).await,
        ActionRoute::Policy { app, group } => policy(ctx, &app, &group, form).await,
        ActionRoute::Pause { app, group } => set_enabled(ctx, &app, &group, false).await,
        ActionRoute::Resume { app, group } => set_enabled(ctx, &app, &group, true).await,
        ActionRoute::CreateBinding => super::sources::create_binding(ctx, form).await,
        ActionRoute::UpdateBinding { app, binding } => {
            super::sources::update_binding(ctx, &app, &binding, form).await
        }
        ActionRoute::DeleteBinding { app, binding } => {
            super::sources::delete_binding(ctx, &app, &binding).await
        }
        ActionRoute::PollNow => super::sources::poll_now(ctx).await,
    }
}

/// Shows `route` again with the form's values and the error (status 400, nothing stored).
async fn again(
    ctx: &Ctx,
    route: PageRoute,
    form_id: &str,
    form: Form,
    error: FieldError,
) -> Result<Response, UiError> {
    let state = FormState::new(form_id, form, error);
    let page = pages::render(ctx, &route, &Form::default(), Some(&state)).await?;
    Ok(html(page.status, page.markup))
}

/// Runs a store write; a validation error or conflict comes back as a field error.
fn split<T>(result: Result<T, StoreError>) -> Result<Result<T, FieldError>, UiError> {
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(e) => field_error(e).map(Err),
    }
}

async fn app_id(ctx: &Ctx, raw: &str) -> Result<String, UiError> {
    let id = normalize_uuid("app_id", raw).map_err(|_| UiError::NotFound)?;
    ctx.state.store.app(ctx.team(), &id).await?;
    Ok(id)
}

fn id_of(raw: &str) -> Result<String, UiError> {
    normalize_uuid("id", raw).map_err(|_| UiError::NotFound)
}

/// `Some(Some(id))` for a chosen id, `Some(None)` for "(none)": the API's "clear" form.
fn chosen(form: &Form, name: &str) -> Option<Option<String>> {
    Some(form.text(name))
}

async fn logout(ctx: Ctx) -> Result<Response, UiError> {
    ctx.state.store.delete_session(&ctx.id_hash).await?;
    Ok(with_cookie(
        redirect("/ui/login"),
        &session_cookie(&ctx.state, "", 0),
    ))
}

async fn password(ctx: Ctx, client: std::net::IpAddr, form: Form) -> Result<Response, UiError> {
    let fail = |field: &str, message: &str| FieldError {
        field: field.to_string(),
        message: message.to_string(),
    };
    let current = form.get("current").unwrap_or("").to_string();
    let new = form.get("password").unwrap_or("").to_string();
    let checked =
        lookup_user_password(&ctx.state, client, &ctx.session.user.username, &current).await?;
    let error = if let Err(seconds) = checked {
        Some(fail(
            "current",
            &format!("was wrong too often: try again in {seconds} seconds"),
        ))
    } else if matches!(checked, Ok(None)) {
        Some(fail("current", "is wrong"))
    } else if new != form.get("confirm").unwrap_or("") {
        Some(fail("confirm", "does not match the new password"))
    } else {
        crate::auth::validate_new_password(&new)
            .err()
            .map(FieldError::from)
    };
    if let Some(error) = error {
        let state = FormState::new("password", form, error);
        let mut page = pages::password(&ctx, Some(&state), false);
        page.status = StatusCode::BAD_REQUEST;
        return Ok(html(page.status, page.markup));
    }
    let hash = tokio::task::spawn_blocking(move || crate::auth::hash_password(&new))
        .await
        .map_err(|e| UiError::Internal(e.to_string()))?
        .map_err(UiError::Internal)?;
    let store = &ctx.state.store;
    store
        .set_password(&ctx.session.user.username, &hash, Some(&ctx.id_hash))
        .await?;
    let page = pages::password(&ctx, None, true);
    Ok(html(StatusCode::OK, page.markup))
}

async fn create_app(ctx: Ctx, form: Form) -> Result<Response, UiError> {
    let input = ApplicationInput {
        name: form.get("name").map(str::to_string),
        description: form.get("description").map(str::to_string),
        ..Default::default()
    };
    let result = match input.validate() {
        Ok(fields) => split(
            ctx.state
                .store
                .create_app(ctx.team(), &fields, None, ctx.now())
                .await,
        )?,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(app) => Ok(redirect(&app_url(&app.id))),
        Err(e) => again(&ctx, PageRoute::Overview, "new-app", form, e).await,
    }
}

async fn create_channel(ctx: Ctx, raw: &str, form: Form) -> Result<Response, UiError> {
    let app = app_id(&ctx, raw).await?;
    let input = ChannelInput {
        name: form.get("name").map(str::to_string),
        color: form.get("color").map(str::to_string),
        package_id: chosen(&form, "package_id"),
    };
    let result = match input.validate(None) {
        Ok(fields) => split(
            ctx.state
                .store
                .create_channel(&app, &fields, ctx.now())
                .await,
        )?,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(_) => Ok(redirect(&format!("{}#channels", app_url(&app)))),
        Err(e) => again(&ctx, PageRoute::App { app }, "new-channel", form, e).await,
    }
}

async fn create_package(ctx: Ctx, raw: &str, form: Form) -> Result<Response, UiError> {
    let app = app_id(&ctx, raw).await?;
    let package_type = match form.get("type").map(str::parse::<i64>) {
        Some(Ok(t)) => Some(t),
        None => None,
        Some(Err(_)) => {
            let e = FieldError {
                field: "type".into(),
                message: "must be 1 (CoreOS), 2 (Docker), 3 (Rocket) or 4 (Other)".into(),
            };
            return again(&ctx, PageRoute::App { app }, "new-package", form, e).await;
        }
    };
    let input = PackageInput {
        package_type,
        version: form.get("version").map(|v| v.trim().to_string()),
        url: form.get("url").map(str::to_string),
        filename: form.get("filename").map(|v| v.trim().to_string()),
        description: form.get("description").map(str::to_string),
        size: form.text("size"),
        hash: form.get("hash").map(|v| v.trim().to_string()),
        channels_blacklist: None,
        coreos_action: form
            .text("coreos_action.sha256")
            .map(|sha256| CoreosActionInput {
                sha256: Some(sha256),
                ..Default::default()
            }),
        image_repository: form.get("image_repository").map(|v| v.trim().to_string()),
        image_digest: form.get("image_digest").map(|v| v.trim().to_string()),
    };
    let result = match input.validate(&app) {
        Ok(fields) => split(
            ctx.state
                .store
                .create_package(&app, &fields, ctx.now())
                .await,
        )?,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(_) => Ok(redirect(&format!("{}#packages", app_url(&app)))),
        Err(e) => again(&ctx, PageRoute::App { app }, "new-package", form, e).await,
    }
}

async fn create_group(ctx: Ctx, raw: &str, form: Form) -> Result<Response, UiError> {
    let app = app_id(&ctx, raw).await?;
    let input = GroupInput {
        name: form.get("name").map(str::to_string),
        description: form.get("description").map(str::to_string),
        channel_id: chosen(&form, "channel_id"),
        track: form.text("track"),
        ..Default::default()
    };
    let result = match input.validate(None) {
        Ok(fields) => split(ctx.state.store.create_group(&app, &fields, ctx.now()).await)?,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(group) => Ok(redirect(&group_url(&app, &group.id))),
        Err(e) => again(&ctx, PageRoute::App { app }, "new-group", form, e).await,
    }
}

async fn promote(ctx: Ctx, raw: &str, channel: &str, form: Form) -> Result<Response, UiError> {
    let app = app_id(&ctx, raw).await?;
    let channel_id = id_of(channel)?;
    let store = &ctx.state.store;
    let current = store.channel(&app, &channel_id).await?;
    let input = ChannelInput {
        package_id: chosen(&form, "package_id"),
        ..Default::default()
    };
    let result = match input.validate(Some(&current)) {
        Ok(fields) => split(
            store
                .update_channel(&app, &channel_id, &fields, ctx.now())
                .await,
        )?,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(_) => {
            // Wakes an embedded agent so it checks for the promoted release at once.
            ctx.state.promotions.notify_waiters();
            Ok(redirect(&format!("{}#channels", app_url(&app))))
        }
        Err(e) => {
            let form_id = format!("promote-{channel_id}");
            again(&ctx, PageRoute::App { app }, &form_id, form, e).await
        }
    }
}

async fn blacklist(ctx: Ctx, raw: &str, package: &str, form: Form) -> Result<Response, UiError> {
    let app = app_id(&ctx, raw).await?;
    let package_id = id_of(package)?;
    let store = &ctx.state.store;
    let current = store.package(&app, &package_id).await?;
    // Everything but the blacklist keeps its current value (as a REST PUT of just the list).
    let input = PackageInput {
        package_type: Some(current.package_type),
        version: Some(current.version),
        url: Some(current.url),
        filename: Some(current.filename),
        description: Some(current.description),
        size: Some(current.size),
        hash: Some(current.hash),
        channels_blacklist: Some(form.all("channels_blacklist")),
        coreos_action: current.coreos_action.as_ref().map(CoreosActionInput::from),
        image_repository: Some(current.image_repository),
        image_digest: Some(current.image_digest),
    };
    let result = match input.validate(&app) {
        Ok(mut fields) => {
            // Validated with the stored action; left as stored (not rewritten).
            fields.coreos_action = None;
            split(
                store
                    .update_package(&app, &package_id, &fields, ctx.now())
                    .await,
            )?
        }
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(_) => Ok(redirect(&format!("{}#packages", app_url(&app)))),
        Err(e) => {
            let form_id = format!("blacklist-{package_id}");
            again(&ctx, PageRoute::App { app }, &form_id, form, e).await
        }
    }
}

/// A whole-number form field; an unparsable value is that field's error.
fn number(form: &Form, name: &str) -> Result<Option<i64>, FieldError> {
    match form.text(name) {
        None => Ok(None),
        Some(text) => text.parse::<i64>().map(Some).map_err(|_| FieldError {
            field: name.to_string(),
            message: format!("{text:?} is not a whole number"),
        }),
    }
}

async fn policy(ctx: Ctx, raw: &str, group: &str, form: Form) -> Result<Response, UiError> {
    let app = app_id(&ctx, raw).await?;
    let group_id = id_of(group)?;
    let store = &ctx.state.store;
    let current = store.group(&app, &group_id, ctx.now()).await?;
    let route = PageRoute::Group {
        app: app.clone(),
        group: group_id.clone(),
    };
    let numbers = number(&form, "policy_max_updates_per_period")
        .and_then(|max| number(&form, "policy_poll_interval").map(|poll| (max, poll)));
    let (max, poll) = match numbers {
        Ok(v) => v,
        Err(e) => return again(&ctx, route, "policy", form, e).await,
    };
    // Every policy field is on the form, so unchecked boxes mean "off".
    let input = GroupInput {
        name: form.get("name").map(str::to_string),
        description: form.get("description").map(str::to_string),
        channel_id: chosen(&form, "channel_id"),
        policy_updates_enabled: Some(form.flag("policy_updates_enabled")),
        policy_safe_mode: Some(form.flag("policy_safe_mode")),
        policy_office_hours: Some(form.flag("policy_office_hours")),
        policy_timezone: Some(form.text("policy_timezone")),
        policy_period_interval: form.get("policy_period_interval").map(str::to_string),
        policy_max_updates_per_period: max,
        policy_update_timeout: form.get("policy_update_timeout").map(str::to_string),
        policy_auto_pause_on_failure: Some(form.flag("policy_auto_pause_on_failure")),
        policy_poll_interval: poll,
        track: form.text("track"),
    };
    let result = match input.validate(Some(&current)) {
        Ok(fields) => split(
            store
                .update_group(&app, &group_id, &fields, ctx.now())
                .await,
        )?,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(_) => Ok(redirect(&format!("{}#policy", group_url(&app, &group_id)))),
        Err(e) => again(&ctx, route, "policy", form, e).await,
    }
}

async fn set_enabled(ctx: Ctx, raw: &str, group: &str, enabled: bool) -> Result<Response, UiError> {
    let app = app_id(&ctx, raw).await?;
    let group_id = id_of(group)?;
    let store = &ctx.state.store;
    let current = store.group(&app, &group_id, ctx.now()).await?;
    let input = GroupInput {
        policy_updates_enabled: Some(enabled),
        ..Default::default()
    };
    let fields = input.validate(Some(&current))?;
    store
        .update_group(&app, &group_id, &fields, ctx.now())
        .await?;
    Ok(redirect(&group_url(&app, &group_id)))
}
