//! The release-source and agent pages: bindings (create, edit, delete through the same
//! `BindingInput::validate` and `Store` methods as the REST API; secrets are write-only), recent
//! deliveries per source with their outcome, the Artifactory poller's state with a "Poll now"
//! button (what `/v1.0/force` does), and the Docker hosts running the agent with their
//! containers and last update outcome. Also the overview's "sources in error" warnings.

use std::collections::BTreeMap;
use std::time::Duration;

use maud::{html, Markup};
use warp::http::StatusCode;
use warp::reply::Response;

use super::pages::{app_url, group_url, instance_url};
use super::views::{self, ago, csrf, live, no_hint, time, F};
use super::UiError;
use super::{field_error, html as html_response, redirect, Ctx, FieldError, Form, FormState, Page};
use crate::domain::{
    normalize_uuid, Activity, ActivityClass, Application, BindingInput, SourceKind,
};
use crate::store::sources::Delivery;

/// Deliveries shown per source.
const DELIVERIES_PER_SOURCE: i64 = 15;
/// Agent reports read to build the agents page (newest first).
const AGENT_REPORTS: i64 = 2000;
/// How long "Poll now" waits for the round before answering "queued".
const POLL_WAIT: Duration = Duration::from_secs(5);
/// Deliveries younger than this count as "recent" for the overview warning.
const RECENT_MS: i64 = 24 * 3_600_000;

const KINDS: [SourceKind; 4] = [
    SourceKind::Dockerhub,
    SourceKind::Registry,
    SourceKind::Artifactory,
    SourceKind::Generic,
];

fn kind_label(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Dockerhub => "Docker Hub",
        SourceKind::Registry => "Registry notifications",
        SourceKind::Artifactory => "Artifactory",
        SourceKind::Generic => "Generic webhooks",
    }
}

fn outcome_badge(outcome: &str) -> Markup {
    // The class is chosen from a fixed list; anything else is shown neutral (and escaped).
    let class = match outcome {
        "promoted" | "created" | "existing" | "duplicate" | "ignored" | "rejected" => {
            format!("badge out-{outcome}")
        }
        _ => "badge".to_string(),
    };
    html! { span class=(class) { (outcome) } }
}

/// Deliveries of the team's applications, plus those that never reached an application
/// (rejected or unbound): an operator needs to see those to fix the sender.
fn visible(d: &Delivery, apps: &BTreeMap<String, Application>) -> bool {
    d.application_id
        .as_ref()
        .is_none_or(|id| apps.contains_key(id))
}

async fn team_apps(ctx: &Ctx) -> Result<BTreeMap<String, Application>, UiError> {
    Ok(ctx
        .state
        .store
        .list_apps(ctx.team())
        .await?
        .into_iter()
        .map(|a| (a.id.clone(), a))
        .collect())
}

// ---------------------------------------------------------------- sources page

fn poller_state(ctx: &Ctx, states: &[crate::store::artifactory::ArtState]) -> Markup {
    let art = &ctx.state.artifactory;
    let snap = art.snapshot();
    let now = ctx.now();
    let settings = art.settings();
    html! {
        @match settings {
            None => {
                p.muted #poller-status { "Not configured (start the server with " code { "--art-endpoint" } " to poll Artifactory)." }
                @if let Some(e) = &snap.last_error { p.error role="alert" #poller-error { "Last error: " (e) } }
            }
            Some(s) => {
                dl.details #poller-status {
                    dt { "Endpoint" } dd { code { (s.endpoint) } }
                    dt { "Domain / environment" } dd { (s.domain) " / " (s.environment) }
                    dt { "Polling" } dd { "every " (s.polling_seconds) " s, timeout " (s.timeout_seconds) " s, backoff up to " (s.backoff_max_seconds) " s" }
                    dt { "State" } dd { @if snap.running { span.badge.rolling { "Polling now" } } @else { "idle" } }
                    dt { "Last poll" } dd { @match snap.last_poll_ts { Some(t) => { (ago(t, now)) " · " (time(t)) } None => { "never" } } }
                    dt { "Last success" } dd { @match snap.last_success_ts { Some(t) => { (ago(t, now)) " · " (time(t)) } None => { "never" } } }
                    dt { "Last error" } dd {
                        @match &snap.last_error { Some(e) => { span.error #poller-error { (e) } } None => { span.ok { "none" } } }
                    }
                    dt { "Backoff" } dd #poller-backoff {
                        @if snap.consecutive_failures > 0 {
                            span.badge.error { "Backing off" } " after " (snap.consecutive_failures) " consecutive failed round(s)"
                        } @else { "no" }
                        " · " (snap.backoffs) " backoff(s) since start"
                    }
                    dt { "Counters" } dd { (snap.polls) " polls, " (snap.releases) " releases, " (snap.rejected) " rejected, " (snap.deploys) " deploys (" (snap.deploy_failures) " failed)" }
                }
                h3 { "Per application" }
                @if states.is_empty() { p.empty { "No application seen yet." } } @else {
                    div.scroll {
                        table #poller-apps {
                            thead { tr { th scope="col" { "Application" } th scope="col" { "Last version" } th scope="col" { "In progress" } th scope="col" { "Failed version" } th scope="col" { "Failures" } th scope="col" { "Updated" } } }
                            tbody {
                                @for st in states {
                                    tr {
                                        th scope="row" { (st.app) }
                                        td { span.version { (st.last_version.as_deref().unwrap_or("—")) } }
                                        td { span.version { (st.in_progress_version.as_deref().unwrap_or("—")) } }
                                        td {
                                            @match &st.failed_version {
                                                Some(v) => { span.version { (v) } " " span.badge.error { "rejected" } @if let Some(r) = &st.failed_reason { div.desc { (r) } } }
                                                None => { "—" }
                                            }
                                        }
                                        td { (st.failures) }
                                        td { (time(st.updated_ts)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn deliveries_html(
    by_kind: &[(SourceKind, Vec<Delivery>)],
    apps: &BTreeMap<String, Application>,
    now: i64,
) -> Markup {
    html! {
        @for (kind, list) in by_kind {
            section.card id=(format!("deliveries-{}", kind.as_str())) {
                h3 { (kind_label(*kind)) }
                @if list.is_empty() { p.empty { "No deliveries yet." } } @else {
                    div.scroll {
                        table.deliveries {
                            thead { tr { th scope="col" { "When" } th scope="col" { "Selector" } th scope="col" { "Version" } th scope="col" { "Outcome" } th scope="col" { "Application" } th scope="col" { "Message" } } }
                            tbody {
                                @for d in list {
                                    tr class=[(d.outcome == "rejected").then_some("failed")] {
                                        td { (ago(d.created_ts, now)) }
                                        td { code { (d.selector) } }
                                        td { span.version { (d.version) } }
                                        td { (outcome_badge(&d.outcome)) }
                                        td {
                                            @match d.application_id.as_ref().and_then(|id| apps.get(id)) {
                                                Some(a) => { a href=(app_url(&a.id)) { (a.name) } @if let Some(p) = &d.package_id { " " a href=(format!("{}#package-{p}", app_url(&a.id))) { "package" } } }
                                                None => { span.muted { "—" } }
                                            }
                                        }
                                        td.desc { (d.message) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

const BINDING_FIELDS: &[&str] = &[
    "app_id",
    "kind",
    "match",
    "channel_id",
    "tag_filter",
    "allow_prerelease",
    "secret",
    "remove_secret",
];

fn kind_options() -> Vec<(String, String)> {
    KINDS
        .iter()
        .map(|k| (k.as_str().to_string(), kind_label(*k).to_string()))
        .collect()
}

pub async fn sources_page(ctx: &Ctx, q: &Form, fs: Option<&FormState>) -> Result<Page, UiError> {
    let store = &ctx.state.store;
    let now = ctx.now();
    let apps = team_apps(ctx).await?;
    let bindings: Vec<_> = store
        .all_bindings()
        .await?
        .into_iter()
        .filter(|b| apps.contains_key(&b.application_id))
        .collect();
    // Every channel of the team, labelled with its application: the binding's channel must be
    // one of the binding's application (the store checks; the error shows inline).
    let mut channels = Vec::new();
    for app in apps.values() {
        for c in store.list_channels(&app.id).await? {
            channels.push((app.clone(), c));
        }
    }
    let mut channel_options = vec![(String::new(), "(none: register only)".to_string())];
    channel_options.extend(
        channels
            .iter()
            .map(|(a, c)| (c.id.clone(), format!("{} / {}", a.name, c.name))),
    );
    let channel_name = |id: &Option<String>| -> String {
        id.as_ref()
            .and_then(|id| channels.iter().find(|(_, c)| &c.id == id))
            .map(|(_, c)| c.name.clone())
            .unwrap_or_default()
    };
    let mut app_options = vec![(String::new(), "(choose)".to_string())];
    app_options.extend(apps.values().map(|a| (a.id.clone(), a.name.clone())));

    let mut by_kind = Vec::new();
    for kind in KINDS {
        let list: Vec<Delivery> = store
            .recent_deliveries(Some(kind), DELIVERIES_PER_SOURCE * 2)
            .await?
            .into_iter()
            .filter(|d| visible(d, &apps))
            .take(DELIVERIES_PER_SOURCE as usize)
            .collect();
        by_kind.push((kind, list));
    }
    let states = match ctx.state.artifactory.settings() {
        Some(s) => store.artifactory_states(&s.domain, &s.environment).await?,
        None => Vec::new(),
    };
    let poller = poller_state(ctx, &states);
    let deliveries = deliveries_html(&by_kind, &apps, now);
    let polled = match q.get("polled") {
        Some("done") => Some(("ok", "A poll round ran; its result is below.")),
        Some("queued") => Some((
            "ok",
            "A poll round is queued; the state below refreshes when it has run.",
        )),
        Some("unconfigured") => Some((
            "error",
            "The Artifactory poller is not configured (--art-endpoint).",
        )),
        _ => None,
    };
    let fb = F::new("new-binding", fs, BINDING_FIELDS);
    let body = html! {
        h1 { "Sources" }
        section #poller aria-labelledby="poller-h" {
            div.titlebar {
                h2 #poller-h { "Artifactory poller" }
                form method="post" action="/ui/sources/poll" #poll-form {
                    (csrf(ctx))
                    button.primary #poll-now type="submit" disabled[ctx.state.artifactory.settings().is_none()] { "Poll now" }
                }
            }
            @if let Some((class, text)) = polled { p class=(class) role="status" #poll-result { (text) } }
            (live("poller-live", poller.clone()))
        }
        section #bindings aria-labelledby="bindings-h" {
            h2 #bindings-h { "Bindings" }
            p.hint { "A binding sends releases of one source selector (Docker Hub repository, registry repository, Artifactory folder or generic webhook name) to an application, and optionally promotes them to a channel." }
            @if bindings.is_empty() { p.empty { "No bindings yet." } } @else {
                div.scroll {
                    table.bindings {
                        thead { tr { th scope="col" { "Application" } th scope="col" { "Source" } th scope="col" { "Match" } th scope="col" { "Channel" } th scope="col" { "Tag filter" } th scope="col" { "Pre-releases" } th scope="col" { "Secret" } th scope="col" { "Edit" } } }
                        tbody {
                            @for b in &bindings {
                                @let fid = format!("binding-{}", b.id);
                                @let fe = F::new(&fid, fs, BINDING_FIELDS);
                                @let action = format!("/ui/apps/{}/bindings/{}", b.application_id, b.id);
                                tr id=(fid) {
                                    td { @if let Some(a) = apps.get(&b.application_id) { a href=(app_url(&a.id)) { (a.name) } } }
                                    td { (kind_label(b.kind)) }
                                    td { code.match { (b.match_value) } }
                                    td { @let n = channel_name(&b.channel_id); @if n.is_empty() { span.muted { "register only" } } @else { (n) } }
                                    td { @if b.tag_filter.is_empty() { span.muted { "all" } } @else { code { (b.tag_filter) } } }
                                    td { @if b.allow_prerelease { "allowed" } @else { "no" } }
                                    td.secret { @if b.has_secret { "set" } @else { span.muted { "not set" } } }
                                    td {
                                        details open[fe.failed()] {
                                            summary { "Edit" }
                                            form method="post" action=(action) id=(format!("{fid}-form")) {
                                                (csrf(ctx))
                                                (fe.summary())
                                                (fe.select("kind", "Source", &kind_options(), b.kind.as_str()))
                                                (fe.input("match", "Match", "text", &b.match_value, no_hint()))
                                                (fe.select("channel_id", "Channel", &channel_options, b.channel_id.as_deref().unwrap_or("")))
                                                (fe.input("tag_filter", "Tag filter", "text", &b.tag_filter, no_hint()))
                                                (fe.checkbox("allow_prerelease", "Allow pre-releases", b.allow_prerelease, ""))
                                                (fe.input("secret", "New secret (empty: keep)", "password", "", no_hint()))
                                                (fe.checkbox("remove_secret", "Remove the secret", false, ""))
                                                button type="submit" { "Save binding" }
                                            }
                                            form method="post" action=(format!("{action}/delete")) id=(format!("{fid}-delete")) {
                                                (csrf(ctx))
                                                button.danger type="submit" { "Delete binding" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            details.create open[fb.failed()] {
                summary { "New binding" }
                form method="post" action="/ui/bindings" #new-binding {
                    (csrf(ctx))
                    (fb.summary())
                    (fb.select("app_id", "Application", &app_options, ""))
                    (fb.select("kind", "Source", &kind_options(), "generic"))
                    (fb.input("match", "Match", "text", "", html! { small.hint { "e.g. acme/web, registry.example:5000/team/web, an Artifactory folder, or a webhook name" } }))
                    (fb.select("channel_id", "Channel", &channel_options, ""))
                    (fb.input("tag_filter", "Tag filter (empty: all; glob or semver range)", "text", "", no_hint()))
                    (fb.checkbox("allow_prerelease", "Allow pre-releases", false, ""))
                    (fb.input("secret", "Webhook secret (optional, at least 16 characters)", "password", "", no_hint()))
                    button type="submit" { "Create binding" }
                }
            }
        }
        section #deliveries aria-labelledby="deliveries-h" {
            h2 #deliveries-h { "Recent deliveries" }
            (live("deliveries-live", deliveries.clone()))
        }
    };
    let mut page = Page {
        status: StatusCode::OK,
        markup: views::layout(ctx, "Sources", "sources", body),
        live: vec![
            ("poller-live".into(), poller),
            ("deliveries-live".into(), deliveries),
        ],
    };
    if fs.and_then(|f| f.error.as_ref()).is_some() {
        page.status = StatusCode::BAD_REQUEST;
    }
    Ok(page)
}

// ---------------------------------------------------------------- binding actions

/// The binding form as the API's input: the secret is only sent when typed (or removed).
fn binding_input(form: &Form) -> BindingInput {
    let secret = if form.flag("remove_secret") {
        Some(String::new())
    } else {
        form.text("secret")
    };
    BindingInput {
        kind: form.get("kind").map(str::to_string),
        match_value: form.get("match").map(str::to_string),
        channel_id: Some(form.get("channel_id").unwrap_or("").to_string()),
        tag_filter: Some(form.get("tag_filter").unwrap_or("").to_string()),
        allow_prerelease: Some(form.flag("allow_prerelease")),
        secret,
        ..Default::default()
    }
}

async fn again(
    ctx: &Ctx,
    form_id: &str,
    form: Form,
    error: FieldError,
) -> Result<Response, UiError> {
    let state = FormState::new(form_id, form, error);
    let page = sources_page(ctx, &Form::default(), Some(&state)).await?;
    Ok(html_response(page.status, page.markup))
}

/// The application of a form or URL, checked to belong to the user's team.
async fn team_app(ctx: &Ctx, raw: &str) -> Result<Option<String>, UiError> {
    let Ok(id) = normalize_uuid("app_id", raw) else {
        return Ok(None);
    };
    match ctx.state.store.app(ctx.team(), &id).await {
        Ok(_) => Ok(Some(id)),
        Err(crate::store::StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn create_binding(ctx: Ctx, form: Form) -> Result<Response, UiError> {
    let Some(app) = team_app(&ctx, form.get("app_id").unwrap_or("")).await? else {
        let e = FieldError {
            field: "app_id".into(),
            message: "choose an application".into(),
        };
        return again(&ctx, "new-binding", form, e).await;
    };
    let result = match binding_input(&form).validate(None) {
        Ok(fields) => ctx
            .state
            .store
            .create_binding(&app, &fields, ctx.now())
            .await
            .map_err(field_error),
        Err(e) => Err(Ok(e.into())),
    };
    match result {
        Ok(_) => Ok(redirect("/ui/sources#bindings")),
        Err(Ok(e)) => again(&ctx, "new-binding", form, e).await,
        Err(Err(e)) => Err(e),
    }
}

pub async fn update_binding(
    ctx: Ctx,
    app: &str,
    binding: &str,
    form: Form,
) -> Result<Response, UiError> {
    let app = team_app(&ctx, app).await?.ok_or(UiError::NotFound)?;
    let binding_id = normalize_uuid("id", binding).map_err(|_| UiError::NotFound)?;
    let store = &ctx.state.store;
    let current = store.binding(&app, &binding_id).await?;
    let form_id = format!("binding-{binding_id}");
    let result = match binding_input(&form).validate(Some(&current)) {
        Ok(fields) => store
            .update_binding(&app, &binding_id, &fields)
            .await
            .map_err(field_error),
        Err(e) => Err(Ok(e.into())),
    };
    match result {
        Ok(_) => Ok(redirect("/ui/sources#bindings")),
        Err(Ok(e)) => again(&ctx, &form_id, form, e).await,
        Err(Err(e)) => Err(e),
    }
}

pub async fn delete_binding(ctx: Ctx, app: &str, binding: &str) -> Result<Response, UiError> {
    let app = team_app(&ctx, app).await?.ok_or(UiError::NotFound)?;
    let binding_id = normalize_uuid("id", binding).map_err(|_| UiError::NotFound)?;
    ctx.state.store.delete_binding(&app, &binding_id).await?;
    Ok(redirect("/ui/sources#bindings"))
}

/// "Poll now": exactly what `/v1.0/force` does (queue a round, wait a little for it).
pub async fn poll_now(ctx: Ctx) -> Result<Response, UiError> {
    let result = match ctx.state.artifactory.force(POLL_WAIT).await {
        None => "unconfigured",
        Some(answer) if answer.queued => "queued",
        Some(_) => "done",
    };
    Ok(redirect(&format!("/ui/sources?polled={result}#poller")))
}

// ---------------------------------------------------------------- overview warning

/// The overview's "sources in error" entries: the poller's last error or backoff, and
/// rejected deliveries of the last day.
pub async fn source_warnings(ctx: &Ctx) -> Result<Markup, UiError> {
    let now = ctx.now();
    let snap = ctx.state.artifactory.snapshot();
    let apps = team_apps(ctx).await?;
    let rejected: Vec<Delivery> = ctx
        .state
        .store
        .recent_deliveries(None, 100)
        .await?
        .into_iter()
        .filter(|d| d.outcome == "rejected" && d.created_ts >= now - RECENT_MS && visible(d, &apps))
        .collect();
    Ok(html! {
        @if let Some(e) = &snap.last_error {
            li.error #source-warning-poller {
                span.badge.error { "Source error" } " "
                a href="/ui/sources#poller" { "Artifactory poller" } " — " (e)
                @if snap.consecutive_failures > 0 { " (backing off after " (snap.consecutive_failures) " failed round(s))" }
            }
        } @else if snap.consecutive_failures > 0 {
            li.error #source-warning-poller {
                span.badge.error { "Source error" } " "
                a href="/ui/sources#poller" { "Artifactory poller" } " — backing off after " (snap.consecutive_failures) " failed round(s)"
            }
        }
        @if let Some(last) = rejected.first() {
            li.error #source-warning-rejected {
                span.badge.error { "Rejected" } " "
                a href="/ui/sources#deliveries" { (rejected.len()) " delivery(ies) rejected in the last 24 h" }
                " — latest: " code { (last.source) " " (last.selector) } " " (last.message)
            }
        }
    })
}

// ---------------------------------------------------------------- agents page

/// One container as the agent last reported it.
struct ContainerView {
    name: String,
    report: Activity,
}

/// One host (agent instance) of one application.
struct HostView {
    app_id: String,
    app_name: String,
    instance_id: String,
    containers: BTreeMap<String, ContainerView>,
    last: Activity,
}

/// The container name in an agent report's description ("container <name> on <host> ...").
fn container_of(a: &Activity) -> String {
    let instance = a.instance_id.as_deref().unwrap_or("");
    a.description
        .strip_prefix("container ")
        .and_then(|rest| rest.split_once(&format!(" on {instance} ")))
        .map(|(name, _)| name.to_string())
        .unwrap_or_else(|| "?".to_string())
}

fn report_outcome(a: &Activity) -> Markup {
    if a.class == ActivityClass::ContainerRolledBack.code() {
        html! { span.badge.out-rolled_back { "rolled back" } }
    } else {
        html! { span.badge.out-updated { "updated" } }
    }
}

pub async fn agents_page(ctx: &Ctx) -> Result<Page, UiError> {
    let store = &ctx.state.store;
    let now = ctx.now();
    let reports = store.agent_reports(ctx.team(), AGENT_REPORTS).await?;
    // Reports come newest first: the first one seen per host/container is the current one.
    let mut hosts: BTreeMap<(String, String), HostView> = BTreeMap::new();
    for r in reports {
        let Some(instance_id) = r.instance_id.clone() else {
            continue;
        };
        let key = (r.application_name.clone(), instance_id.clone());
        let host = hosts.entry(key).or_insert_with(|| HostView {
            app_id: r.application_id.clone(),
            app_name: r.application_name.clone(),
            instance_id,
            containers: BTreeMap::new(),
            last: r.clone(),
        });
        let name = container_of(&r);
        host.containers
            .entry(name.clone())
            .or_insert(ContainerView { name, report: r });
    }
    let mut rows = Vec::new();
    for host in hosts.into_values() {
        // What the server knows from Omaha: version, status, last check, the last 3/0 error.
        // A report can name a machine id that never sent an Omaha request: shown as such.
        let instance = match store.instance(&host.app_id, &host.instance_id).await {
            Ok(i) => Some(i),
            Err(crate::store::StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        let events = store
            .instance_events(&host.app_id, &host.instance_id, 20)
            .await?;
        let last_update = events.into_iter().find(|e| e.event_type == 3);
        rows.push((host, instance, last_update));
    }
    let list = html! {
        @if rows.is_empty() {
            p.empty { "No agent has reported yet. A host appears here once the rollbridge agent on it has updated or rolled back a container." }
        } @else {
            div.scroll {
                table.agents #agents-table {
                    thead { tr { th scope="col" { "Host" } th scope="col" { "Application" } th scope="col" { "Version / status" } th scope="col" { "Last update" } th scope="col" { "Containers" } th scope="col" { "Last seen" } } }
                    tbody {
                        @for (host, instance, last_update) in &rows {
                            @let ia = instance.as_ref().and_then(|i| i.application.as_ref());
                            tr.agent {
                                th scope="row" {
                                    a href=(instance_url(&host.app_id, &host.instance_id)) { code { (host.instance_id) } }
                                    @if let Some(i) = instance { @if !i.alias.is_empty() { div { (i.alias) } } @if !i.ip.is_empty() { div.muted { (i.ip) } } }
                                }
                                td {
                                    a href=(app_url(&host.app_id)) { (host.app_name) }
                                    @if let Some(g) = &host.last.group_name { " / " a href=(group_url(&host.app_id, host.last.group_id.as_deref().unwrap_or(""))) { (g) } }
                                }
                                td {
                                    @if let Some(a) = ia {
                                        span.version { (a.version) } " "
                                        span class=(format!("status st-{}", views::status_key(a.status))) { (views::status_label(a.status)) }
                                    } @else { span.muted { "not registered" } }
                                }
                                td.outcome {
                                    @match last_update {
                                        Some(e) if e.event_result == 0 => {
                                            span.badge.out-failed { "failed" } " 3/0"
                                            @if !e.error_code.is_empty() { " error " code { (e.error_code) } }
                                            " · " (time(e.created_ts))
                                        }
                                        Some(e) => {
                                            span.badge.out-updated { "complete" } " 3/" (e.event_result)
                                            @if !e.previous_version.is_empty() { " from " span.version { (e.previous_version) } }
                                            " · " (time(e.created_ts))
                                        }
                                        None => { (report_outcome(&host.last)) " · " (time(host.last.created_ts)) }
                                    }
                                }
                                td {
                                    ul.containers {
                                        @for c in host.containers.values() {
                                            li {
                                                code { (c.name) } " " span.version { (c.report.version) } " " (report_outcome(&c.report))
                                                " " span.muted { (ago(c.report.created_ts, now)) }
                                                @if let Some((_, msg)) = c.report.description.split_once(": ") { div.desc { (msg) } }
                                            }
                                        }
                                    }
                                }
                                td { @if let Some(a) = ia { (ago(a.last_check_for_updates, now)) } }
                            }
                        }
                    }
                }
            }
        }
    };
    let body = html! {
        h1 { "Agents" }
        p.hint { "Docker hosts running the rollbridge agent, with their containers as the agent last reported them (per-container activity) and the host's Omaha state." }
        (live("agents-live", list.clone()))
    };
    Ok(Page {
        status: StatusCode::OK,
        markup: views::layout(ctx, "Agents", "agents", body),
        live: vec![("agents-live".into(), list)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(description: &str, instance: &str) -> Activity {
        Activity {
            id: 1,
            created_ts: 0,
            class: ActivityClass::ContainerUpdated.code(),
            severity: 1,
            version: "1.0.0".into(),
            application_id: String::new(),
            application_name: String::new(),
            group_id: None,
            group_name: None,
            channel_id: None,
            channel_name: None,
            instance_id: Some(instance.into()),
            description: description.into(),
        }
    }

    #[test]
    fn container_names_come_from_the_report() {
        assert_eq!(
            container_of(&report(
                "container web on host-1 updated to 1.1.0",
                "host-1"
            )),
            "web"
        );
        assert_eq!(
            container_of(&report(
                "container db on h rolled back from 2.0.0: unhealthy",
                "h"
            )),
            "db"
        );
        assert_eq!(container_of(&report("something else", "h")), "?");
    }

    #[test]
    fn outcome_classes_are_fixed() {
        let hostile = outcome_badge("\"><script>").into_string();
        assert!(hostile.contains("class=\"badge\""));
        assert!(!hostile.contains("<script>"));
        assert!(outcome_badge("rejected")
            .into_string()
            .contains("out-rejected"));
    }
}
