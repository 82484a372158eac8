//! Shared page pieces: the document shell with navigation, login and error pages, form helpers
//! that re-fill values and show a field's validation error inline, and small formatters (times,
//! sizes, status and severity names).

use maud::{html, Markup, DOCTYPE};

use super::{Ctx, FormState, CSRF_FIELD};
use crate::domain::{InstanceStatus, InstancesStats, Severity};

/// The page shell: head, skip link, header with navigation and logout, main content.
pub fn layout(ctx: &Ctx, title: &str, active: &str, content: Markup) -> Markup {
    let nav = [
        ("Overview", "/ui/", "overview"),
        ("Activity", "/ui/activity", "activity"),
        ("Sources", "/ui/sources", "sources"),
        ("Agents", "/ui/agents", "agents"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · rollbridge" }
                link rel="stylesheet" href="/ui/assets/app.css";
                script src="/ui/assets/app.js" defer {}
            }
            body data-refresh=(ctx.state.dashboard.refresh_seconds) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/" { "rollbridge" }
                    nav aria-label="Main" {
                        ul {
                            @for (label, href, key) in nav {
                                li {
                                    @if key == active {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div.account {
                        a href="/ui/password" aria-current=[(active == "password").then_some("page")] {
                            "Password"
                        }
                        form method="post" action="/ui/logout" {
                            (csrf(ctx))
                            button.link type="submit" { "Log out " span.user { (ctx.session.user.username) } }
                        }
                    }
                }
                main #main tabindex="-1" { (content) }
            }
        }
    }
}

/// The page shown to visitors without a session.
pub fn login_page(next: &str, error: Option<&str>, username: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Log in · rollbridge" }
                link rel="stylesheet" href="/ui/assets/app.css";
            }
            body.login {
                main #main {
                    h1 { "rollbridge" }
                    form.card method="post" action="/ui/login" {
                        h2 { "Log in" }
                        @if let Some(e) = error {
                            p.error role="alert" #login-error { (e) }
                        }
                        input type="hidden" name="next" value=(next);
                        label for="username" { "User name" }
                        input #username type="text" name="username" value=(username) autocomplete="username" required autofocus;
                        label for="password" { "Password" }
                        input #password type="password" name="password" autocomplete="current-password" required;
                        button type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

pub fn error_page(title: &str, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · rollbridge" }
                link rel="stylesheet" href="/ui/assets/app.css";
            }
            body {
                main #main {
                    h1 { (title) }
                    p role="alert" { (message) }
                    p { a href="/ui/" { "Back to the overview" } }
                }
            }
        }
    }
}

pub fn csrf(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(ctx.csrf()); }
}

/// Form context: which form this is and what (if anything) came back with an error.
pub struct F<'a> {
    pub id: &'a str,
    pub state: Option<&'a FormState>,
    /// The field names this form shows (an error naming another field shows at the top).
    pub fields: &'a [&'a str],
}

impl<'a> F<'a> {
    pub fn new(id: &'a str, state: Option<&'a FormState>, fields: &'a [&'a str]) -> Self {
        Self {
            id,
            state: state.filter(|s| s.form == id),
            fields,
        }
    }

    /// Whether this form came back with an error (it is then shown open).
    pub fn failed(&self) -> bool {
        self.state.is_some()
    }

    /// The submitted value when re-rendering, else `default`. Control characters other than
    /// tabs and line breaks are dropped: the value may be the one refused for containing them,
    /// and HTML cannot carry a NUL.
    pub fn value(&self, name: &str, default: &str) -> String {
        match self.state {
            Some(s) => s
                .values
                .get(name)
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
                .collect(),
            None => default.to_string(),
        }
    }

    pub fn checked(&self, name: &str, default: bool) -> bool {
        match self.state {
            Some(s) => s.values.flag(name),
            None => default,
        }
    }

    pub fn error(&self, name: &str) -> Option<&str> {
        self.state
            .and_then(|s| s.error.as_ref())
            .filter(|e| e.field == name)
            .map(|e| e.message.as_str())
    }

    fn input_id(&self, name: &str) -> String {
        format!("{}-{}", self.id, name.replace('.', "-"))
    }

    /// Errors that belong to no field of this form, shown above it.
    pub fn summary(&self) -> Markup {
        let error = self
            .state
            .and_then(|s| s.error.as_ref())
            .filter(|e| !self.fields.contains(&e.field.as_str()));
        html! {
            @if let Some(e) = error {
                p.error role="alert" {
                    @if !e.field.is_empty() { (e.field) ": " }
                    (e.message)
                }
            }
        }
    }

    /// A labelled input with its inline error.
    pub fn input(
        &self,
        name: &str,
        label: &str,
        kind: &str,
        default: &str,
        extra: Markup,
    ) -> Markup {
        self.input_with(name, label, kind, default, None, extra)
    }

    pub fn input_with(
        &self,
        name: &str,
        label: &str,
        kind: &str,
        default: &str,
        list: Option<&str>,
        hint: Markup,
    ) -> Markup {
        let id = self.input_id(name);
        let error = self.error(name);
        let err_id = format!("{id}-error");
        // Passwords are never echoed back into the page.
        let value = if kind == "password" {
            String::new()
        } else {
            self.value(name, default)
        };
        html! {
            div.field {
                label for=(id) { (label) }
                input id=(id) type=(kind) name=(name) value=(value)
                    list=[list] aria-invalid=[error.map(|_| "true")]
                    aria-describedby=[error.map(|_| err_id.as_str())];
                (hint)
                @if let Some(e) = error {
                    p.field-error id=(err_id) role="alert" { (e) }
                }
            }
        }
    }

    pub fn checkbox(&self, name: &str, label: &str, default: bool, hint: &str) -> Markup {
        let id = self.input_id(name);
        html! {
            div.field.check {
                input id=(id) type="checkbox" name=(name) value="1" checked[self.checked(name, default)];
                label for=(id) { (label) }
                @if !hint.is_empty() { small.hint { (hint) } }
                @if let Some(e) = self.error(name) {
                    p.field-error role="alert" { (e) }
                }
            }
        }
    }

    /// A select of (value, label) options.
    pub fn select(
        &self,
        name: &str,
        label: &str,
        options: &[(String, String)],
        default: &str,
    ) -> Markup {
        let id = self.input_id(name);
        let current = self.value(name, default);
        let error = self.error(name);
        html! {
            div.field {
                label for=(id) { (label) }
                select id=(id) name=(name) aria-invalid=[error.map(|_| "true")] {
                    @for (value, text) in options {
                        option value=(value) selected[*value == current] { (text) }
                    }
                }
                @if let Some(e) = error {
                    p.field-error role="alert" { (e) }
                }
            }
        }
    }
}

pub fn no_hint() -> Markup {
    html! {}
}

/// Absolute UTC time, as operators compare it with logs.
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// "3 min ago" relative to the server's clock, with the absolute time as a tooltip.
pub fn ago(ms: i64, now: i64) -> Markup {
    let secs = ((now - ms) / 1000).max(0);
    let text = if secs < 60 {
        "just now".to_string()
    } else if secs < 3600 {
        format!("{} min ago", secs / 60)
    } else if secs < 86_400 {
        format!("{} h ago", secs / 3600)
    } else {
        format!("{} d ago", secs / 86_400)
    };
    html! { time datetime=(crate::domain::format_ts(ms)) title=(time(ms)) { (text) } }
}

/// Bytes in a human unit; anything unparsable is shown as given.
pub fn size(text: &str) -> String {
    let Ok(n) = text.trim().parse::<u64>() else {
        return text.to_string();
    };
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn package_type(code: i64) -> &'static str {
    match code {
        1 => "CoreOS",
        2 => "Docker",
        3 => "Rocket",
        4 => "Other",
        _ => "Unknown",
    }
}

pub fn status_label(code: Option<i64>) -> &'static str {
    code.and_then(InstanceStatus::from_code)
        .map(InstanceStatus::label)
        .unwrap_or("Undefined")
}

pub fn status_key(code: Option<i64>) -> &'static str {
    code.and_then(InstanceStatus::from_code)
        .map(InstanceStatus::key)
        .unwrap_or("undefined")
}

/// Status counts in display order: (key, label, count).
pub fn status_counts(s: &InstancesStats) -> Vec<(&'static str, &'static str, i64)> {
    vec![
        ("complete", "Complete", s.complete),
        ("update_granted", "Granted", s.update_granted),
        ("downloading", "Downloading", s.downloading),
        ("downloaded", "Downloaded", s.downloaded),
        ("installed", "Installed", s.installed),
        ("onhold", "On hold", s.onhold),
        ("error", "Error", s.error),
        ("undefined", "Undefined", s.undefined),
    ]
}

/// Share of instances that finished the update to the channel's version.
pub fn progress(s: &InstancesStats) -> i64 {
    if s.total == 0 {
        0
    } else {
        (s.complete * 100 + s.total / 2) / s.total
    }
}

pub fn severity_name(code: i64) -> &'static str {
    Severity::from_code(code)
        .map(Severity::name)
        .unwrap_or("info")
}

pub fn activity_class(code: i64) -> &'static str {
    crate::domain::ActivityClass::from_code(code)
        .map(|c| c.name())
        .unwrap_or("Unknown")
}

pub fn paused_badge() -> Markup {
    html! { span.badge.paused title="Updates are disabled for this group" { "Paused" } }
}

/// Small coloured dot for a channel (an SVG attribute, so the CSP can forbid inline styles).
pub fn dot(color: &str) -> Markup {
    let color = if color.is_empty() { "#888" } else { color };
    html! {
        svg.dot width="12" height="12" viewBox="0 0 12 12" aria-hidden="true" {
            circle cx="6" cy="6" r="5" fill=(color) {}
        }
    }
}

/// Marks a live region: the client script replaces its contents from `?live=1`.
pub fn live(id: &str, content: Markup) -> Markup {
    html! { div id=(id) data-live aria-live="polite" { (content) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_progress() {
        assert_eq!(size("512"), "512 B");
        assert_eq!(size("212555113"), "202.7 MiB");
        assert_eq!(size("n/a"), "n/a");
        let s = InstancesStats {
            total: 3,
            complete: 2,
            ..Default::default()
        };
        assert_eq!(progress(&s), 67);
        assert_eq!(progress(&InstancesStats::default()), 0);
    }
}
