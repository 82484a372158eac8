//! The pages (GET): overview, application, package, group, instance, activity and password
//! change (the sources and agents pages are in `sources`). Each
//! returns the whole document and its live parts; actions re-render a page with a `FormState`
//! to show validation errors inline next to the submitted values.

use maud::{html, Markup};
use warp::http::StatusCode;

use super::views::{self, ago, csrf, dot, live, no_hint, paused_badge, time, F};
use super::{charts, encode, Ctx, Form, FormState, Page, PageRoute, UiError};
use crate::domain::{
    normalize_uuid, Activity, Application, Channel, Group, InstanceStatus, Package,
};
use crate::store::instances::{ActivityFilter, InstanceFilter};

const DAY: i64 = 86_400_000;
const INSTANCES_PER_PAGE: i64 = 25;
const ACTIVITY_PER_PAGE: i64 = 50;

pub async fn render(
    ctx: &Ctx,
    route: &PageRoute,
    q: &Form,
    fs: Option<&FormState>,
) -> Result<Page, UiError> {
    let mut page = match route {
        PageRoute::Overview => overview(ctx, fs).await?,
        PageRoute::Activity => activity(ctx, q).await?,
        PageRoute::Password => password(ctx, fs, false),
        PageRoute::App { app } => app_page(ctx, app, fs).await?,
        PageRoute::Group { app, group } => group_page(ctx, app, group, q, fs).await?,
        PageRoute::Instance { app } => instance_page(ctx, app, q).await?,
        PageRoute::Package { app, package } => package_page(ctx, app, package).await?,
        PageRoute::Sources => super::sources::sources_page(ctx, q, fs).await?,
        PageRoute::Agents => super::sources::agents_page(ctx).await?,
    };
    if fs.and_then(|f| f.error.as_ref()).is_some() {
        page.status = StatusCode::BAD_REQUEST;
    }
    Ok(page)
}

fn page(ctx: &Ctx, title: &str, active: &str, body: Markup, live: Vec<(String, Markup)>) -> Page {
    Page {
        status: StatusCode::OK,
        markup: views::layout(ctx, title, active, body),
        live,
    }
}

/// The application, checked to belong to the user's team; a malformed id is simply not found.
async fn app_of(ctx: &Ctx, raw: &str) -> Result<Application, UiError> {
    let id = normalize_uuid("app_id", raw).map_err(|_| UiError::NotFound)?;
    Ok(ctx.state.store.app(ctx.team(), &id).await?)
}

pub fn app_url(app_id: &str) -> String {
    format!("/ui/apps/{app_id}")
}

pub fn group_url(app_id: &str, group_id: &str) -> String {
    format!("/ui/apps/{app_id}/groups/{group_id}")
}

pub fn instance_url(app_id: &str, instance_id: &str) -> String {
    format!("/ui/apps/{app_id}/instance?id={}", encode(instance_id))
}

fn channel_version(g: &Group) -> Option<&str> {
    g.channel
        .as_ref()
        .and_then(|c| c.package.as_ref())
        .map(|p| p.version.as_str())
}

// ---------------------------------------------------------------- overview

async fn overview(ctx: &Ctx, fs: Option<&FormState>) -> Result<Page, UiError> {
    let now = ctx.now();
    let store = &ctx.state.store;
    let mut apps = Vec::new();
    for app in store.list_apps(ctx.team()).await? {
        let groups = store.list_groups(&app.id, now).await?;
        let count = store.app_instance_count(&app.id, now).await?;
        apps.push((app, groups, count));
    }
    let recent = store
        .list_activity(&ActivityFilter {
            team_id: ctx.team().to_string(),
            start_ms: now - 7 * DAY,
            end_ms: now + 60_000,
            page: 1,
            per_page: 10,
            ..Default::default()
        })
        .await?;

    let source_warnings = super::sources::source_warnings(ctx).await?;
    let warnings = html! {
        @let paused: Vec<_> = apps.iter().flat_map(|(a, gs, _)| gs.iter().filter(|g| !g.policy_updates_enabled).map(move |g| (a, g))).collect();
        @let failing: Vec<_> = apps.iter().flat_map(|(a, gs, _)| gs.iter().filter(|g| g.instances_stats.as_ref().is_some_and(|s| s.error > 0)).map(move |g| (a, g))).collect();
        @let sources_ok = source_warnings.0.is_empty();
        @if paused.is_empty() && failing.is_empty() && sources_ok {
            p.ok { "No warnings: no paused groups, no failing instances, no sources in error." }
        } @else {
            ul.warnings {
                (source_warnings)
                @for (a, g) in &paused {
                    li.warning {
                        (paused_badge()) " "
                        a href=(group_url(&a.id, &g.id)) { (a.name) " / " (g.name) }
                        " — updates are paused"
                    }
                }
                @for (a, g) in &failing {
                    li.error {
                        span.badge.error { "Failing" } " "
                        a href=(format!("{}?status=3", group_url(&a.id, &g.id))) { (a.name) " / " (g.name) }
                        " — " (g.instances_stats.as_ref().map(|s| s.error).unwrap_or(0)) " instance(s) reported an error"
                    }
                }
            }
        }
    };
    let apps_html = html! {
        @if apps.is_empty() {
            p.empty { "No applications yet. Create one below." }
        }
        @for (app, groups, count) in &apps {
            section.card.app {
                h3 { a href=(app_url(&app.id)) { (app.name) } }
                p.meta { (count) " active instance" @if *count != 1 { "s" } @if !app.description.is_empty() { " · " (app.description) } }
                @if groups.is_empty() {
                    p.empty { "No groups." }
                } @else {
                    (groups_table(&app.id, groups))
                }
            }
        }
    };
    let recent_html = activity_list(&recent, now);
    let f = F::new("new-app", fs, &["name", "description"]);
    let body = html! {
        h1 { "Overview" }
        section aria-labelledby="warnings-h" {
            h2 #warnings-h { "Warnings" }
            (live("warnings", warnings.clone()))
        }
        section aria-labelledby="apps-h" {
            h2 #apps-h { "Applications" }
            (live("apps", apps_html.clone()))
            details.create open[f.failed()] {
                summary { "New application" }
                form method="post" action="/ui/apps" #new-app {
                    (csrf(ctx))
                    (f.summary())
                    (f.input("name", "Name", "text", "", no_hint()))
                    (f.input("description", "Description", "text", "", no_hint()))
                    button type="submit" { "Create application" }
                }
            }
        }
        section aria-labelledby="recent-h" {
            h2 #recent-h { "Recent activity" }
            (live("recent", recent_html.clone()))
            p { a href="/ui/activity" { "All activity" } }
        }
    };
    Ok(page(
        ctx,
        "Overview",
        "overview",
        body,
        vec![
            ("warnings".into(), warnings),
            ("apps".into(), apps_html),
            ("recent".into(), recent_html),
        ],
    ))
}

/// Groups of an application: channel, versions, status counts, progress, paused badge.
fn groups_table(app_id: &str, groups: &[Group]) -> Markup {
    html! {
        div.scroll {
            table.groups {
                thead { tr { th scope="col" { "Group" } th scope="col" { "Channel" } th scope="col" { "Versions" } th scope="col" { "Status" } th scope="col" { "Progress" } } }
                tbody {
                    @for g in groups {
                        @let stats = g.instances_stats.clone().unwrap_or_default();
                        tr {
                            th scope="row" {
                                a href=(group_url(app_id, &g.id)) { (g.name) }
                                @if !g.policy_updates_enabled { " " (paused_badge()) }
                                @if g.rollout_in_progress { " " span.badge.rolling { "Rolling out" } }
                            }
                            td {
                                @match &g.channel {
                                    Some(c) => {
                                        (dot(&c.color)) " " (c.name) " "
                                        @match channel_version(g) { Some(v) => { span.version { (v) } } None => { span.muted { "no package" } } }
                                    }
                                    None => { span.muted { "none" } }
                                }
                            }
                            td.bar { (charts::version_bar(g.version_breakdown.as_deref().unwrap_or(&[]))) }
                            td { (status_summary(&stats)) }
                            td.progress {
                                @let pct = views::progress(&stats);
                                progress max="100" value=(pct) aria-label=(format!("{} rollout progress", g.name)) { (pct) "%" }
                                " " span.pct { (pct) "%" }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn status_summary(stats: &crate::domain::InstancesStats) -> Markup {
    html! {
        ul.counts {
            li { span.count.total { (stats.total) } " total" }
            @for (key, label, n) in views::status_counts(stats) {
                @if n > 0 {
                    li { span class=(format!("count st-{key}")) { (n) } " " (label) }
                }
            }
        }
    }
}

fn activity_list(entries: &[Activity], now: i64) -> Markup {
    html! {
        @if entries.is_empty() {
            p.empty { "No activity in this period." }
        } @else {
            ol.activity {
                @for a in entries {
                    @let sev = views::severity_name(a.severity);
                    li class=(format!("sev sev-{sev}")) {
                        span class=(format!("badge sev-{sev}")) { (sev) }
                        " "
                        strong { (views::activity_class(a.class)) }
                        " · " (a.application_name)
                        @if let Some(g) = &a.group_name { " / " a href=(group_url(&a.application_id, a.group_id.as_deref().unwrap_or(""))) { (g) } }
                        @if let Some(c) = &a.channel_name { " · channel " (c) }
                        @if !a.version.is_empty() { " · " span.version { (a.version) } }
                        @if let Some(i) = &a.instance_id { " · " a href=(instance_url(&a.application_id, i)) { (i) } }
                        @if !a.description.is_empty() { div.desc { (a.description) } }
                        div.when { (ago(a.created_ts, now)) " · " (time(a.created_ts)) }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- application

async fn app_page(ctx: &Ctx, raw: &str, fs: Option<&FormState>) -> Result<Page, UiError> {
    let app = app_of(ctx, raw).await?;
    let now = ctx.now();
    let store = &ctx.state.store;
    let groups = store.list_groups(&app.id, now).await?;
    let channels = store.list_channels(&app.id).await?;
    let packages = store.list_packages(&app.id).await?;
    let count = store.app_instance_count(&app.id, now).await?;
    let groups_html = html! {
        @if groups.is_empty() { p.empty { "No groups yet." } } @else { (groups_table(&app.id, &groups)) }
    };
    let base = app_url(&app.id);
    let fg = F::new(
        "new-group",
        fs,
        &["name", "description", "channel_id", "track"],
    );
    let fc = F::new("new-channel", fs, &["name", "color", "package_id"]);
    let fp = F::new(
        "new-package",
        fs,
        &[
            "type",
            "version",
            "url",
            "filename",
            "size",
            "hash",
            "coreos_action.sha256",
            "image_repository",
            "image_digest",
            "description",
        ],
    );
    let mut channel_options = vec![(String::new(), "(none)".to_string())];
    channel_options.extend(channels.iter().map(|c| (c.id.clone(), c.name.clone())));
    let mut package_options = vec![(String::new(), "(none)".to_string())];
    package_options.extend(packages.iter().map(|p| (p.id.clone(), p.version.clone())));
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" { a href="/ui/" { "Overview" } " › " span aria-current="page" { (app.name) } }
        h1 { (app.name) }
        p.meta { (count) " active instances" @if !app.description.is_empty() { " · " (app.description) } " · id " code { (app.id) } }

        section #groups aria-labelledby="groups-h" {
            h2 #groups-h { "Groups" }
            (live("groups-live", groups_html.clone()))
            details.create open[fg.failed()] {
                summary { "New group" }
                form method="post" action=(format!("{base}/groups")) #new-group {
                    (csrf(ctx))
                    (fg.summary())
                    (fg.input("name", "Name", "text", "", no_hint()))
                    (fg.input("description", "Description", "text", "", no_hint()))
                    (fg.select("channel_id", "Channel", &channel_options, ""))
                    (fg.input("track", "Omaha track (empty: the group id)", "text", "", no_hint()))
                    p.hint { "New groups start with safe mode on and one update per 15 minutes; edit the policy on the group's page." }
                    button type="submit" { "Create group" }
                }
            }
        }

        section #channels aria-labelledby="channels-h" {
            h2 #channels-h { "Channels" }
            @if channels.is_empty() { p.empty { "No channels yet." } } @else {
                div.scroll {
                    table {
                        thead { tr { th scope="col" { "Channel" } th scope="col" { "Current package" } th scope="col" { "Promote" } } }
                        tbody {
                            @for c in &channels {
                                tr {
                                    th scope="row" { (dot(&c.color)) " " (c.name) }
                                    td { @match &c.package { Some(p) => { span.version { (p.version) } " " span.muted { "(" (views::package_type(p.package_type)) ")" } } None => { span.muted { "none" } } } }
                                    td { (promote_form(ctx, &base, c, &packages, fs)) }
                                }
                            }
                        }
                    }
                }
            }
            details.create open[fc.failed()] {
                summary { "New channel" }
                form method="post" action=(format!("{base}/channels")) #new-channel {
                    (csrf(ctx))
                    (fc.summary())
                    (fc.input("name", "Name", "text", "", no_hint()))
                    (fc.input("color", "Colour", "color", "#1565c0", no_hint()))
                    (fc.select("package_id", "Package", &package_options, ""))
                    button type="submit" { "Create channel" }
                }
            }
        }

        section #packages aria-labelledby="packages-h" {
            h2 #packages-h { "Packages" }
            @if packages.is_empty() { p.empty { "No packages yet." } } @else {
                div.scroll {
                    table.packages {
                        thead { tr { th scope="col" { "Version" } th scope="col" { "Type" } th scope="col" { "Size" } th scope="col" { "Payload" } th scope="col" { "Created" } th scope="col" { "Channels" } th scope="col" { "Blacklist" } } }
                        tbody {
                            @for p in &packages {
                                (package_row(ctx, &base, p, &channels, fs))
                            }
                        }
                    }
                }
            }
            details.create open[fp.failed()] {
                summary { "New package" }
                form method="post" action=(format!("{base}/packages")) #new-package {
                    (csrf(ctx))
                    (fp.summary())
                    (fp.select("type", "Type", &[("1".into(), "CoreOS".into()), ("2".into(), "Docker".into()), ("3".into(), "Rocket".into()), ("4".into(), "Other".into())], "4"))
                    (fp.input("version", "Version (semver)", "text", "", no_hint()))
                    (fp.input("url", "Base URL", "text", "", no_hint()))
                    (fp.input("filename", "File name", "text", "", no_hint()))
                    (fp.input("size", "Size (bytes)", "text", "", no_hint()))
                    (fp.input("hash", "SHA-1 (base64)", "text", "", no_hint()))
                    (fp.input("coreos_action.sha256", "SHA-256 (base64, CoreOS postinstall)", "text", "", no_hint()))
                    (fp.input("image_repository", "Docker image repository", "text", "", no_hint()))
                    (fp.input("image_digest", "Docker image digest (sha256:…)", "text", "", no_hint()))
                    (fp.input("description", "Description", "text", "", no_hint()))
                    button type="submit" { "Create package" }
                }
            }
        }
    };
    Ok(page(
        ctx,
        &app.name,
        "overview",
        body,
        vec![("groups-live".into(), groups_html)],
    ))
}

fn promote_form(
    ctx: &Ctx,
    base: &str,
    c: &Channel,
    packages: &[Package],
    fs: Option<&FormState>,
) -> Markup {
    let id = format!("promote-{}", c.id);
    let f = F::new(&id, fs, &["package_id"]);
    let options: Vec<(String, String)> = packages
        .iter()
        .filter(|p| !p.channels_blacklist.contains(&c.id))
        .map(|p| (p.id.clone(), p.version.clone()))
        .collect();
    html! {
        @if options.is_empty() {
            span.muted { "no eligible package" }
        } @else {
            form.inline method="post" action=(format!("{base}/channels/{}/promote", c.id)) id=(id) {
                (csrf(ctx))
                (f.summary())
                (f.select("package_id", &format!("Package for {}", c.name), &options, c.package_id.as_deref().unwrap_or("")))
                button type="submit" { "Promote" }
            }
        }
    }
}

/// Files larger than this are listed but not shown inline (they can be downloaded).
const MAX_INLINE_FILE: usize = 64 * 1024;

pub fn package_url(app_id: &str, package_id: &str) -> String {
    format!("/ui/apps/{app_id}/packages/{package_id}")
}

/// One package: everything the application page's row shows, plus where it came from (source,
/// selector, image tag, metadata) and every file it ships (README, unit file, etcd2 keys) as
/// escaped plain text with its SHA-256. Loaded on its own page so the application page (and its
/// live refresh) never reads file contents.
async fn package_page(ctx: &Ctx, raw_app: &str, raw_package: &str) -> Result<Page, UiError> {
    let app = app_of(ctx, raw_app).await?;
    let package_id = normalize_uuid("id", raw_package).map_err(|_| UiError::NotFound)?;
    let store = &ctx.state.store;
    let p = store.package(&app.id, &package_id).await?;
    let channels = store.list_channels(&app.id).await?;
    let source = store.package_source(&p.id).await?;
    let mut files = Vec::new();
    if let Some(src) = &source {
        for f in &src.files {
            files.push(store.package_file(&p.id, &f.name).await?);
        }
    }
    let on: Vec<&Channel> = channels
        .iter()
        .filter(|c| c.package_id.as_deref() == Some(p.id.as_str()))
        .collect();
    let sha256 = p
        .coreos_action
        .as_ref()
        .map(|a| a.sha256.as_str())
        .unwrap_or("");
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/ui/" { "Overview" } " › " a href=(app_url(&app.id)) { (app.name) }
            " › " a href=(format!("{}#packages", app_url(&app.id))) { "Packages" }
            " › " span aria-current="page" { (p.version) }
        }
        h1 { "Package " span.version { (p.version) } }
        dl.details #package-details {
            dt { "Type" } dd { (views::package_type(p.package_type)) }
            dt { "Size" } dd { (views::size(&p.size)) }
            @if p.package_type == 2 || !p.image_repository.is_empty() {
                dt { "Image" } dd { code { (p.image_repository) } }
                dt { "Digest" } dd { code.hash { (p.image_digest) } }
            } @else {
                dt { "Payload" } dd { code { (p.url) (p.filename) } }
            }
            dt { "SHA-1" } dd { code.hash { (p.hash) } }
            @if !sha256.is_empty() { dt { "SHA-256" } dd { code.hash { (sha256) } } }
            dt { "Created" } dd { (time(p.created_ts)) }
            dt { "Channels" } dd { @for c in &on { span.chip { (dot(&c.color)) " " (c.name) } " " } @if on.is_empty() { span.muted { "—" } } }
            @if !p.description.is_empty() { dt { "Description" } dd { (p.description) } }
        }
        section #source aria-labelledby="source-h" {
            h2 #source-h { "Source" }
            @match &source {
                None => { p.muted { "Created through the API or the dashboard (no release source)." } }
                Some(src) => {
                    dl.details #package-source {
                        dt { "Source" } dd { (src.source) }
                        dt { "Selector" } dd { code { (src.selector) } }
                        dt { "Image tag" } dd { @if src.image_tag.is_empty() { span.muted { "—" } } @else { code { (src.image_tag) } } }
                    }
                    @if let Some(m) = &src.metadata {
                        h3 { "Metadata" }
                        pre.file #package-metadata { (serde_json::to_string_pretty(m).unwrap_or_default()) }
                    }
                }
            }
        }
        @if !files.is_empty() {
            section #files aria-labelledby="files-h" {
                h2 #files-h { "Files" }
                @for f in &files {
                    section.file.card {
                        h3 { code { (f.name) } }
                        p.meta {
                            (views::size(&f.content.len().to_string())) " · SHA-256 " code.hash { (f.sha256) }
                            " · " a href=(format!("/v1.0/packages/{}/files/{}", p.id, encode(&f.name))) { "download (API)" }
                        }
                        @if f.content.len() <= MAX_INLINE_FILE {
                            pre.file { (String::from_utf8_lossy(&f.content)) }
                        } @else {
                            p.muted { "Too large to show here; download it." }
                        }
                    }
                }
            }
        }
    };
    Ok(page(
        ctx,
        &format!("{} {}", app.name, p.version),
        "overview",
        body,
        Vec::new(),
    ))
}

fn package_row(
    ctx: &Ctx,
    base: &str,
    p: &Package,
    channels: &[Channel],
    fs: Option<&FormState>,
) -> Markup {
    let id = format!("blacklist-{}", p.id);
    let f = F::new(&id, fs, &[]);
    let on: Vec<&Channel> = channels
        .iter()
        .filter(|c| c.package_id.as_deref() == Some(p.id.as_str()))
        .collect();
    let sha256 = p
        .coreos_action
        .as_ref()
        .map(|a| a.sha256.as_str())
        .unwrap_or("");
    html! {
        tr id=(format!("package-{}", p.id)) {
            th scope="row" { a href=(package_url(&p.application_id, &p.id)) title="Package details, source and files" { span.version { (p.version) } } }
            td { (views::package_type(p.package_type)) }
            td { (views::size(&p.size)) }
            td.payload {
                @if p.package_type == 2 || !p.image_repository.is_empty() {
                    div { "Image " code { (p.image_repository) } }
                    @if !p.image_digest.is_empty() { div { "Digest " code.hash { (p.image_digest) } } }
                } @else {
                    div { code { (p.url) (p.filename) } }
                }
                @if !p.hash.is_empty() { div { "SHA-1 " code.hash { (p.hash) } } }
                @if !sha256.is_empty() { div { "SHA-256 " code.hash { (sha256) } } }
                @if !p.description.is_empty() { div.muted { (p.description) } }
            }
            td { (time(p.created_ts)) }
            td { @for c in &on { span.chip { (dot(&c.color)) " " (c.name) } " " } @if on.is_empty() { span.muted { "—" } } }
            td {
                @if channels.is_empty() { span.muted { "—" } } @else {
                    details open[f.failed()] {
                        summary { @if p.channels_blacklist.is_empty() { "none" } @else { (p.channels_blacklist.len()) " blacklisted" } }
                        form method="post" action=(format!("{base}/packages/{}/blacklist", p.id)) id=(id) {
                            (csrf(ctx))
                            (f.summary())
                            fieldset {
                                legend { "Never serve " (p.version) " on:" }
                                @for c in channels {
                                    @let cid = format!("{id}-{}", c.id);
                                    div.check {
                                        input type="checkbox" id=(cid) name="channels_blacklist" value=(c.id) checked[p.channels_blacklist.contains(&c.id)];
                                        label for=(cid) { (c.name) }
                                    }
                                }
                            }
                            button type="submit" { "Save blacklist" }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- group

async fn group_page(
    ctx: &Ctx,
    raw_app: &str,
    raw_group: &str,
    q: &Form,
    fs: Option<&FormState>,
) -> Result<Page, UiError> {
    let app = app_of(ctx, raw_app).await?;
    let group_id = normalize_uuid("group_id", raw_group).map_err(|_| UiError::NotFound)?;
    let now = ctx.now();
    let store = &ctx.state.store;
    let group = store.group(&app.id, &group_id, now).await?;
    let channels = store.list_channels(&app.id).await?;
    let stats = group.instances_stats.clone().unwrap_or_default();
    let breakdown = group.version_breakdown.clone().unwrap_or_default();
    let base = group_url(&app.id, &group.id);

    let (range_label, range_ms) = match q.get("range") {
        Some("24h") => ("24h", DAY),
        Some("30d") => ("30d", 30 * DAY),
        _ => ("7d", 7 * DAY),
    };
    let history = store
        .group_history(&group.id, now - range_ms, 20_000)
        .await?;

    // Instance table filters (the same ones the REST API offers).
    let search = q.text("search");
    let status = q
        .get("status")
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(InstanceStatus::from_code);
    let version = q.text("version");
    let page_no = q
        .get("page")
        .and_then(|p| p.parse::<i64>().ok())
        .unwrap_or(1)
        .clamp(1, 1_000_000);
    let (total, instances) = store
        .list_instances(
            &app.id,
            &group.id,
            &InstanceFilter {
                status,
                version: version.clone(),
                search: search.clone(),
                page: page_no,
                per_page: INSTANCES_PER_PAGE,
            },
            now,
        )
        .await?;
    let pages = ((total + INSTANCES_PER_PAGE - 1) / INSTANCES_PER_PAGE).max(1);
    let filter_query = |page: i64| {
        let mut parts = Vec::new();
        if let Some(s) = &search {
            parts.push(format!("search={}", encode(s)));
        }
        if let Some(s) = status {
            parts.push(format!("status={}", s.code()));
        }
        if let Some(v) = &version {
            parts.push(format!("version={}", encode(v)));
        }
        if range_label != "7d" {
            parts.push(format!("range={range_label}"));
        }
        parts.push(format!("page={page}"));
        format!("{base}?{}", parts.join("&"))
    };

    let summary = html! {
        div.stats {
            div.stat { span.big { (stats.total) } " active instances" }
            div.stat {
                span.big { (views::progress(&stats)) "%" }
                @match channel_version(&group) { Some(v) => { " on " span.version { (v) } } None => { " (no package on the channel)" } }
            }
            @for (key, label, n) in views::status_counts(&stats) {
                div class=(format!("stat st-{key}")) { span.big { (n) } " " (label) }
            }
        }
        div.charts {
            section.chart-box aria-label="Status breakdown" {
                h3 { "Status breakdown" }
                (charts::status_breakdown(&stats))
            }
            section.chart-box aria-label="Versions over time" {
                h3 { "Versions over time" }
                p.ranges {
                    @for (key, label) in [("24h", "24 hours"), ("7d", "7 days"), ("30d", "30 days")] {
                        @if key == range_label { strong aria-current="true" { (label) } } @else { a href=(format!("{base}?range={key}")) { (label) } }
                        " "
                    }
                }
                (charts::versions_over_time(&history, now - range_ms, now))
            }
        }
    };
    let instances_html = html! {
        p.meta { (total) " matching instance" @if total != 1 { "s" } }
        @if instances.is_empty() {
            p.empty { "No instances match." }
        } @else {
            div.scroll {
                table.instances {
                    thead { tr { th scope="col" { "Instance" } th scope="col" { "Alias" } th scope="col" { "IP" } th scope="col" { "Version" } th scope="col" { "Status" } th scope="col" { "Last seen" } } }
                    tbody {
                        @for i in &instances {
                            @let ia = i.application.as_ref();
                            @let st = ia.and_then(|a| a.status);
                            tr {
                                th scope="row" { a href=(instance_url(&app.id, &i.id)) { code { (i.id) } } }
                                td { (i.alias) }
                                td { (i.ip) }
                                td { span.version { (ia.map(|a| a.version.as_str()).unwrap_or("")) } }
                                td { span class=(format!("status st-{}", views::status_key(st))) { (views::status_label(st)) } }
                                td { @if let Some(a) = ia { (ago(a.last_check_for_updates, now)) } }
                            }
                        }
                    }
                }
            }
        }
        @if pages > 1 {
            nav.pager aria-label="Instance pages" {
                @if page_no > 1 { a href=(filter_query(page_no - 1)) rel="prev" { "‹ Previous" } }
                span { "Page " (page_no) " of " (pages) }
                @if page_no < pages { a href=(filter_query(page_no + 1)) rel="next" { "Next ›" } }
            }
        }
    };

    let mut status_options = vec![(String::new(), "any".to_string())];
    status_options.extend(
        (1..=8)
            .filter_map(InstanceStatus::from_code)
            .map(|s| (s.code().to_string(), s.label().to_string())),
    );
    let mut version_options = vec![(String::new(), "any".to_string())];
    version_options.extend(
        breakdown
            .iter()
            .map(|v| (v.version.clone(), v.version.clone())),
    );
    let fq = F::new("filter", None, &[]);

    let fields = [
        "name",
        "description",
        "channel_id",
        "track",
        "policy_updates_enabled",
        "policy_safe_mode",
        "policy_office_hours",
        "policy_timezone",
        "policy_period_interval",
        "policy_max_updates_per_period",
        "policy_update_timeout",
        "policy_auto_pause_on_failure",
        "policy_poll_interval",
    ];
    let fp = F::new("policy", fs, &fields);
    let mut channel_options = vec![(String::new(), "(none)".to_string())];
    channel_options.extend(channels.iter().map(|c| (c.id.clone(), c.name.clone())));

    let body = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/ui/" { "Overview" } " › " a href=(app_url(&app.id)) { (app.name) } " › " span aria-current="page" { (group.name) }
        }
        div.titlebar {
            h1 { (group.name) @if !group.policy_updates_enabled { " " (paused_badge()) } }
            form method="post" action=(format!("{base}/{}", if group.policy_updates_enabled { "pause" } else { "resume" })) #pause-form {
                (csrf(ctx))
                @if group.policy_updates_enabled {
                    button.danger #pause type="submit" { "Pause updates" }
                } @else {
                    button.primary #resume type="submit" { "Resume updates" }
                }
            }
        }
        p.meta {
            "Channel " @match &group.channel { Some(c) => { (dot(&c.color)) " " (c.name) } None => { "none" } }
            " · track " code { (group.track) }
            @if group.rollout_in_progress { " · " span.badge.rolling { "Rolling out" } }
            @if !group.description.is_empty() { " · " (group.description) }
        }
        (live("group-summary", summary.clone()))

        section #instances aria-labelledby="instances-h" {
            h2 #instances-h { "Instances" }
            form.filters method="get" action=(base) role="search" {
                (fq.input("search", "Search id, alias or IP", "search", search.as_deref().unwrap_or(""), no_hint()))
                (fq.select("status", "Status", &status_options, &status.map(|s| s.code().to_string()).unwrap_or_default()))
                (fq.select("version", "Version", &version_options, version.as_deref().unwrap_or("")))
                @if range_label != "7d" { input type="hidden" name="range" value=(range_label); }
                button type="submit" { "Filter" }
            }
            (live("instances", instances_html.clone()))
        }

        section #policy aria-labelledby="policy-h" {
            h2 #policy-h { "Rollout policy" }
            form.policy method="post" action=(format!("{base}/policy")) #policy-form novalidate {
                (csrf(ctx))
                (fp.summary())
                div.grid {
                    (fp.input("name", "Name", "text", &group.name, no_hint()))
                    (fp.input("description", "Description", "text", &group.description, no_hint()))
                    (fp.select("channel_id", "Channel", &channel_options, group.channel_id.as_deref().unwrap_or("")))
                    (fp.input("track", "Omaha track", "text", &group.track, no_hint()))
                }
                fieldset {
                    legend { "Switches" }
                    (fp.checkbox("policy_updates_enabled", "Updates enabled", group.policy_updates_enabled, "off = paused"))
                    (fp.checkbox("policy_safe_mode", "Safe mode", group.policy_safe_mode, "one instance first; the rest wait for it to finish"))
                    (fp.checkbox("policy_office_hours", "Office hours only", group.policy_office_hours, "Mon–Fri 09:00–17:00 in the timezone below"))
                    (fp.checkbox("policy_auto_pause_on_failure", "Pause on first failure", group.policy_auto_pause_on_failure, ""))
                }
                div.grid {
                    (fp.input_with("policy_timezone", "Timezone", "text", group.policy_timezone.as_deref().unwrap_or(""), Some("timezones"), html! { small.hint { "IANA name, e.g. Europe/Berlin" } }))
                    (fp.input("policy_period_interval", "Period", "text", &group.policy_period_interval, html! { small.hint { "e.g. 15 minutes" } }))
                    (fp.input("policy_max_updates_per_period", "Max updates per period", "number", &group.policy_max_updates_per_period.to_string(), no_hint()))
                    (fp.input("policy_update_timeout", "Update timeout", "text", &group.policy_update_timeout, html! { small.hint { "e.g. 60 minutes" } }))
                    (fp.input("policy_poll_interval", "Client poll interval (seconds, 0 = client default)", "number", &group.policy_poll_interval.to_string(), no_hint()))
                }
                datalist #timezones {
                    @for tz in chrono_tz::TZ_VARIANTS.iter() { option value=(tz.name()) {} }
                }
                button.primary type="submit" { "Save policy" }
            }
        }
    };
    Ok(page(
        ctx,
        &group.name,
        "overview",
        body,
        vec![
            ("group-summary".into(), summary),
            ("instances".into(), instances_html),
        ],
    ))
}

// ---------------------------------------------------------------- instance

async fn instance_page(ctx: &Ctx, raw_app: &str, q: &Form) -> Result<Page, UiError> {
    let app = app_of(ctx, raw_app).await?;
    let instance_id = q.get("id").ok_or(UiError::NotFound)?;
    let store = &ctx.state.store;
    let now = ctx.now();
    let instance = store.instance(&app.id, instance_id).await?;
    let ia = instance.application.clone();
    let group = match ia.as_ref().and_then(|a| a.group_id.clone()) {
        Some(g) => store.group(&app.id, &g, now).await.ok(),
        None => None,
    };
    let history = store.status_history(&app.id, &instance.id, 50).await?;
    let events = store.instance_events(&app.id, &instance.id, 50).await?;
    let details = html! {
        dl.details {
            dt { "Version" } dd { span.version { (ia.as_ref().map(|a| a.version.as_str()).unwrap_or("")) } }
            dt { "Status" } dd { @let st = ia.as_ref().and_then(|a| a.status); span class=(format!("status st-{}", views::status_key(st))) { (views::status_label(st)) } }
            dt { "Group" } dd { @match &group { Some(g) => { a href=(group_url(&app.id, &g.id)) { (g.name) } } None => { span.muted { "none" } } } }
            dt { "IP" } dd { (instance.ip) }
            dt { "Alias" } dd { (instance.alias) }
            dt { "Last seen" } dd { @if let Some(a) = &ia { (ago(a.last_check_for_updates, now)) " · " (time(a.last_check_for_updates)) } }
            dt { "Last update granted" } dd {
                @if let Some(a) = &ia {
                    @if let Some(t) = a.last_update_granted_ts { (time(t)) } @else { "never" }
                    @if let Some(v) = &a.last_update_version { " · " span.version { (v) } }
                }
            }
            dt { "OEM" } dd { (instance.oem) }
            dt { "First seen" } dd { (time(instance.created_ts)) }
        }
    };
    let history_html = html! {
        div.scroll {
            table {
                caption { "Status history (newest first)" }
                thead { tr { th scope="col" { "When" } th scope="col" { "Status" } th scope="col" { "Version" } th scope="col" { "Error code" } } }
                tbody {
                    @for h in &history {
                        tr {
                            td { (time(h.created_ts)) }
                            td { span class=(format!("status st-{}", views::status_key(Some(h.status)))) { (views::status_label(Some(h.status))) } }
                            td { span.version { (h.version) } }
                            td { code { (h.error_code) } }
                        }
                    }
                    @if history.is_empty() { tr { td colspan="4" { "No status changes yet." } } }
                }
            }
        }
        div.scroll {
            table {
                caption { "Events (newest first)" }
                thead { tr { th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Result" } th scope="col" { "Previous version" } th scope="col" { "Error code" } } }
                tbody {
                    @for e in &events {
                        tr class=[(e.event_result == 0).then_some("failed")] {
                            td { (time(e.created_ts)) }
                            td { (e.event_type) " " span.muted { (e.description) } }
                            td { (e.event_result) @if e.event_result == 0 { " " span.badge.error { "error" } } }
                            td { span.version { (e.previous_version) } }
                            td { code { (e.error_code) } }
                        }
                    }
                    @if events.is_empty() { tr { td colspan="5" { "No events yet." } } }
                }
            }
        }
    };
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/ui/" { "Overview" } " › " a href=(app_url(&app.id)) { (app.name) }
            @if let Some(g) = &group { " › " a href=(group_url(&app.id, &g.id)) { (g.name) } }
            " › " span aria-current="page" { "Instance" }
        }
        h1 { "Instance " code { (instance.id) } }
        (live("instance-details", details.clone()))
        (live("instance-history", history_html.clone()))
    };
    Ok(page(
        ctx,
        &format!("Instance {}", instance.id),
        "overview",
        body,
        vec![
            ("instance-details".into(), details),
            ("instance-history".into(), history_html),
        ],
    ))
}

// ---------------------------------------------------------------- activity

/// `YYYY-MM-DDTHH:MM` (a datetime-local input, read as UTC) or RFC 3339.
fn parse_local(text: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.timestamp_millis())
        })
}

fn local(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M").to_string())
        .unwrap_or_default()
}

async fn activity(ctx: &Ctx, q: &Form) -> Result<Page, UiError> {
    let now = ctx.now();
    let store = &ctx.state.store;
    let apps = store.list_apps(ctx.team()).await?;
    let groups = store.group_names(ctx.team()).await?;
    let mut errors = Vec::new();
    let app = q.text("app").and_then(|a| normalize_uuid("app", &a).ok());
    let group = q
        .text("group")
        .and_then(|g| normalize_uuid("group", &g).ok());
    let severity = q
        .get("severity")
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|s| (1..=4).contains(s));
    let mut range = |field: &str, default: i64| match q.text(field) {
        None => default,
        Some(t) => parse_local(&t).unwrap_or_else(|| {
            errors.push((field.to_string(), format!("{t:?} is not a date and time")));
            default
        }),
    };
    let from = range("from", now - 7 * DAY);
    let to = range("to", now + 60_000);
    let page_no = q
        .get("page")
        .and_then(|p| p.parse::<i64>().ok())
        .unwrap_or(1)
        .clamp(1, 1_000_000);
    let filter = ActivityFilter {
        team_id: ctx.team().to_string(),
        app_id: app.clone(),
        group_id: group.clone(),
        severity,
        start_ms: from,
        end_ms: to,
        page: page_no,
        per_page: ACTIVITY_PER_PAGE,
        ..Default::default()
    };
    let entries = store.list_activity(&filter).await?;
    // A full page may have a successor; the next page says "No activity" if it had not.
    let has_next = entries.len() as i64 == ACTIVITY_PER_PAGE;
    let query_for = |page: i64| {
        let mut parts = Vec::new();
        for key in ["app", "group", "severity", "from", "to"] {
            if let Some(v) = q.text(key) {
                parts.push(format!("{key}={}", encode(&v)));
            }
        }
        parts.push(format!("page={page}"));
        format!("/ui/activity?{}", parts.join("&"))
    };
    let list = html! {
        (activity_list(&entries, now))
        @if page_no > 1 || has_next {
            nav.pager aria-label="Activity pages" {
                @if page_no > 1 { a href=(query_for(page_no - 1)) rel="prev" { "‹ Newer" } }
                span { "Page " (page_no) }
                @if has_next { a href=(query_for(page_no + 1)) rel="next" { "Older ›" } }
            }
        }
    };
    let field_error = |name: &str| {
        errors
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, m)| m.clone())
    };
    let body = html! {
        h1 { "Activity" }
        form.filters method="get" action="/ui/activity" role="search" {
            div.field {
                label for="f-app" { "Application" }
                select #f-app name="app" {
                    option value="" { "all" }
                    @for a in &apps { option value=(a.id) selected[app.as_deref() == Some(a.id.as_str())] { (a.name) } }
                }
            }
            div.field {
                label for="f-group" { "Group" }
                select #f-group name="group" {
                    option value="" { "all" }
                    @for (_, app_name, gid, gname) in &groups {
                        option value=(gid) selected[group.as_deref() == Some(gid.as_str())] { (app_name) " / " (gname) }
                    }
                }
            }
            div.field {
                label for="f-severity" { "Severity" }
                select #f-severity name="severity" {
                    option value="" { "all" }
                    @for s in 1..=4 { option value=(s) selected[severity == Some(s)] { (views::severity_name(s)) } }
                }
            }
            @for (name, label, value) in [("from", "From (UTC)", from), ("to", "To (UTC)", to)] {
                div.field {
                    label for=(format!("f-{name}")) { (label) }
                    input id=(format!("f-{name}")) type="datetime-local" name=(name) value=(q.text(name).unwrap_or_else(|| local(value)))
                        aria-invalid=[field_error(name).map(|_| "true")];
                    @if let Some(e) = field_error(name) { p.field-error role="alert" { (e) } }
                }
            }
            button type="submit" { "Filter" }
        }
        (live("activity-list", list.clone()))
    };
    let mut page = page(
        ctx,
        "Activity",
        "activity",
        body,
        vec![("activity-list".into(), list)],
    );
    if !errors.is_empty() {
        page.status = StatusCode::BAD_REQUEST;
    }
    Ok(page)
}

// ---------------------------------------------------------------- password

pub fn password(ctx: &Ctx, fs: Option<&FormState>, done: bool) -> Page {
    let f = F::new("password", fs, &["current", "password", "confirm"]);
    let body = html! {
        h1 { "Change password" }
        @if done { p.ok role="status" { "Password changed. Other sessions of this user were logged out." } }
        form.card method="post" action="/ui/password" #password-form {
            (csrf(ctx))
            (f.summary())
            (f.input("current", "Current password", "password", "", no_hint()))
            (f.input("password", "New password (at least 8 characters)", "password", "", no_hint()))
            (f.input("confirm", "New password again", "password", "", no_hint()))
            button.primary type="submit" { "Change password" }
        }
    };
    page(ctx, "Password", "password", body, Vec::new())
}
