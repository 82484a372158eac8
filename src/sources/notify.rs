//! Notifications: every activity entry (at or above a severity) is sent to the configured
//! endpoints — generic JSON webhooks (body signed with HMAC-SHA256) and Slack-compatible incoming
//! webhooks (`{"text": ...}`). The notifier follows the activity table, so nothing on the webhook
//! or Omaha path waits for it; a slow or failing endpoint only delays its own queue, and a full
//! queue drops (and counts) rather than grows without bound.
//!
//! With several MySQL replicas only one notifies (`store::leader`, lock `rollbridge_notifier`),
//! else every replica would send every entry. Where it got to is stored (`notifier_state`, with
//! a heartbeat while idle), so the replica taking over — or this one after a restart — resumes
//! there. When nobody notified for [`RESUME_WINDOW_MS`] (notifications just turned on, or a long
//! outage) it starts after the newest entry at its own startup, and entries older than
//! [`MAX_BACKLOG_AGE_MS`] are never sent: a notification that late misleads more than it helps.
//! A hand-over may repeat what the old leader queued in its last half second.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use crate::config::SourcesArgs;
use crate::domain::{Activity, ActivityClass, Severity};
use crate::startup::Background;
use crate::store::leader::LeaderLock;

/// One configured endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// JSON body, `X-Rollbridge-Signature-256: sha256=<hex>` when a secret is set.
    Webhook { url: String, secret: Option<String> },
    /// Slack-compatible incoming webhook.
    Slack { url: String },
}

impl Endpoint {
    fn label(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::Slack { .. } => "slack",
        }
    }
}

/// The endpoints and threshold from the command line.
pub fn endpoints(args: &SourcesArgs) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for url in args.notify_webhooks.iter().filter(|u| !u.trim().is_empty()) {
        out.push(Endpoint::Webhook {
            url: url.trim().to_string(),
            secret: args.notify_secret.clone(),
        });
    }
    for url in args.notify_slack.iter().filter(|u| !u.trim().is_empty()) {
        out.push(Endpoint::Slack {
            url: url.trim().to_string(),
        });
    }
    out
}

/// True when an entry of `severity` is sent under the `--notify-min-severity` `threshold`.
/// Ranked by how much an operator wants to hear of it, not by CoreRoller's codes (success is
/// 1, below info): routine information, then outcomes (success), warnings, errors. So the
/// default (`info`) sends everything and `success` drops only the routine entries.
pub fn is_notified(severity: Severity, threshold: Severity) -> bool {
    fn rank(severity: Severity) -> u8 {
        match severity {
            Severity::Info => 0,
            Severity::Success => 1,
            Severity::Warning => 2,
            Severity::Error => 3,
        }
    }
    rank(severity) >= rank(threshold)
}

pub fn min_severity(text: &str) -> Severity {
    match text.trim().to_ascii_lowercase().as_str() {
        "success" => Severity::Success,
        "warning" => Severity::Warning,
        "error" => Severity::Error,
        _ => Severity::Info,
    }
}

/// The generic JSON body of an activity entry.
pub fn webhook_body(a: &Activity) -> serde_json::Value {
    let class = ActivityClass::from_code(a.class)
        .map(|c| c.name())
        .unwrap_or("Unknown");
    let severity = Severity::from_code(a.severity)
        .map(|s| s.name())
        .unwrap_or("info");
    json!({
        "id": a.id,
        "created_ts": crate::domain::model::format_ts(a.created_ts),
        "class": class,
        "severity": severity,
        "application_id": a.application_id,
        "application_name": a.application_name,
        "group_id": a.group_id,
        "group_name": a.group_name,
        "channel_id": a.channel_id,
        "channel_name": a.channel_name,
        "instance_id": a.instance_id,
        "version": a.version,
        "description": a.description,
    })
}

/// The Slack text of an activity entry.
pub fn slack_text(a: &Activity) -> String {
    let class = ActivityClass::from_code(a.class)
        .map(|c| c.name())
        .unwrap_or("Unknown");
    let severity = Severity::from_code(a.severity)
        .map(|s| s.name())
        .unwrap_or("info");
    let mut where_ = a.application_name.clone();
    if let Some(g) = &a.group_name {
        where_.push_str(&format!(" / group {g}"));
    }
    if let Some(c) = &a.channel_name {
        where_.push_str(&format!(" / channel {c}"));
    }
    let version = if a.version.is_empty() {
        String::new()
    } else {
        format!(" {}", a.version)
    };
    format!(
        "[{severity}] {class}{version} ({where_}): {}",
        a.description
    )
}

const QUEUE: usize = 1000;
const ATTEMPTS: u32 = 4;
const TIMEOUT: Duration = Duration::from_secs(10);

/// How often a standby replica tries to take the lead.
const STANDBY_RETRY: Duration = Duration::from_secs(2);

/// How often the leader reads new activity.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

/// Entries read per round (a full page is followed at once by the next).
const PAGE: i64 = 200;

/// Entries older than this when read are not sent.
pub const MAX_BACKLOG_AGE_MS: i64 = 15 * 60 * 1000;

/// A stored cursor is resumed only if the notifier wrote it this recently.
pub const RESUME_WINDOW_MS: i64 = 5 * 60 * 1000;

/// How often an idle leader refreshes the stored cursor's time (well within the window).
const HEARTBEAT_MS: i64 = 60 * 1000;

/// The leader lock's name (scoped to the database by `store::leader`).
const LOCK_NAME: &str = "rollbridge_notifier";

/// Starts the feed follower and one sender per endpoint; nothing when no endpoint is configured.
/// Reads the newest activity entry first, before the server answers requests: with no recent
/// notifier state, what this process writes from then on is what gets notified.
pub async fn start(ctx: &Background, args: &SourcesArgs) -> Vec<tokio::task::JoinHandle<()>> {
    let endpoints = endpoints(args);
    if endpoints.is_empty() {
        return Vec::new();
    }
    let newest_at_start = match ctx.state.store.last_activity_id().await {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(error = %e, "notifier: cannot read the activity feed yet");
            None
        }
    };
    let threshold = min_severity(&args.notify_min_severity);
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for endpoint in endpoints {
        let (tx, rx) = mpsc::channel::<Activity>(QUEUE);
        senders.push((endpoint.label(), tx));
        tasks.push(tokio::spawn(send_loop(ctx.clone(), endpoint, rx)));
    }
    tasks.push(tokio::spawn(follow(
        ctx.clone(),
        senders,
        threshold,
        newest_at_start,
    )));
    tasks
}

/// Reads new activity entries and hands them to every endpoint's queue, while this replica
/// leads (see the module docs).
async fn follow(
    mut ctx: Background,
    senders: Vec<(&'static str, mpsc::Sender<Activity>)>,
    threshold: Severity,
    newest_at_start: Option<i64>,
) {
    let mut lead: Option<LeaderLock> = None;
    // Where this replica got to; read from the store each time it takes the lead.
    let mut cursor: Option<i64> = None;
    // When this replica last wrote the stored cursor.
    let mut heartbeat = 0;
    loop {
        if !LeaderLock::ensure(&ctx.state.store, &mut lead, LOCK_NAME).await {
            cursor = None;
            if !ctx.sleep(STANDBY_RETRY).await {
                break;
            }
            continue;
        }
        let full_page = match follow_once(
            &ctx,
            &mut cursor,
            &mut heartbeat,
            newest_at_start,
            &senders,
            threshold,
        )
        .await
        {
            Ok(read) => read >= PAGE as usize,
            Err(e) => {
                tracing::warn!(error = %e, "notifier: reading activity failed");
                false
            }
        };
        if !full_page && !ctx.sleep(FOLLOW_INTERVAL).await {
            break;
        }
        if ctx.is_shutting_down() {
            break;
        }
    }
    if let Some(lock) = lead.take() {
        lock.release().await;
    }
}

/// One page of new activity: queued for every endpoint, the cursor stored. Returns how many
/// entries were read.
async fn follow_once(
    ctx: &Background,
    cursor: &mut Option<i64>,
    heartbeat: &mut i64,
    newest_at_start: Option<i64>,
    senders: &[(&'static str, mpsc::Sender<Activity>)],
    threshold: Severity,
) -> Result<usize, crate::store::StoreError> {
    let store = &ctx.state.store;
    let now = ctx.state.clock.now_ms();
    let from = match *cursor {
        Some(at) => at,
        None => {
            let at = match store.notifier_cursor().await? {
                Some((at, written)) if now - written <= RESUME_WINDOW_MS => at,
                stale => {
                    let newest = match newest_at_start {
                        Some(id) => id,
                        None => store.last_activity_id().await?,
                    };
                    let at = newest.max(stale.map_or(0, |(at, _)| at));
                    tracing::info!(
                        activity_id = at,
                        "notifier: no recent notifier state, starting after the newest activity at startup"
                    );
                    at
                }
            };
            store.save_notifier_cursor(at, now).await?;
            *heartbeat = now;
            at
        }
    };
    *cursor = Some(from);
    let entries = store.activity_after(from, PAGE).await?;
    let Some(last) = entries.last().map(|e| e.id) else {
        if now - *heartbeat >= HEARTBEAT_MS {
            store.save_notifier_cursor(from, now).await?;
            *heartbeat = now;
        }
        return Ok(0);
    };
    let mut stale = 0usize;
    for entry in &entries {
        if now - entry.created_ts > MAX_BACKLOG_AGE_MS {
            stale += 1;
            continue;
        }
        let severity = Severity::from_code(entry.severity).unwrap_or(Severity::Info);
        if !is_notified(severity, threshold) {
            continue;
        }
        for (label, tx) in senders {
            if tx.try_send(entry.clone()).is_err() {
                tracing::warn!(endpoint = label, "notification queue full: entry dropped");
                ctx.state.metrics.observe_notification(label, "dropped");
            }
        }
    }
    if stale > 0 {
        tracing::warn!(
            entries = stale,
            "notifier: skipped activity older than {} minutes",
            MAX_BACKLOG_AGE_MS / 60_000
        );
    }
    // Stored after queueing: a crash loses at most what was queued and not yet sent. A failed
    // store is retried with the next page; this replica goes on from its own cursor.
    *cursor = Some(last);
    store.save_notifier_cursor(last, now).await?;
    *heartbeat = now;
    Ok(entries.len())
}

async fn send_loop(ctx: Background, endpoint: Endpoint, mut rx: mpsc::Receiver<Activity>) {
    let client = ctx.state.http_client.clone();
    while let Some(entry) = rx.recv().await {
        let (url, body, signature) = match &endpoint {
            Endpoint::Webhook { url, secret } => {
                let body = serde_json::to_vec(&webhook_body(&entry)).unwrap_or_default();
                let signature = secret
                    .as_deref()
                    .map(|s| super::generic::sign(s.as_bytes(), &body));
                (url.clone(), body, signature)
            }
            Endpoint::Slack { url } => (
                url.clone(),
                serde_json::to_vec(&json!({ "text": slack_text(&entry) })).unwrap_or_default(),
                None,
            ),
        };
        let mut delivered = false;
        for attempt in 1..=ATTEMPTS {
            let mut request = client
                .post(&url)
                .timeout(TIMEOUT)
                .header("content-type", "application/json")
                .body(body.clone());
            if let Some(sig) = &signature {
                request = request.header("x-rollbridge-signature-256", sig);
            }
            match request.send().await {
                Ok(r) if r.status().is_success() => {
                    delivered = true;
                    break;
                }
                Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                    tracing::warn!(endpoint = endpoint.label(), status = %r.status(), "notification refused");
                    break;
                }
                Ok(r) => {
                    tracing::warn!(endpoint = endpoint.label(), status = %r.status(), attempt, "notification failed")
                }
                Err(e) => {
                    tracing::warn!(endpoint = endpoint.label(), error = %e, attempt, "notification failed")
                }
            }
            if ctx.is_shutting_down() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
        }
        ctx.state.metrics.observe_notification(
            endpoint.label(),
            if delivered { "delivered" } else { "failed" },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Activity {
        Activity {
            id: 7,
            created_ts: 0,
            class: ActivityClass::RolloutFailed.code(),
            severity: Severity::Error.code(),
            version: "1.2.0".into(),
            application_id: "a".into(),
            application_name: "web".into(),
            group_id: Some("g".into()),
            group_name: Some("prod".into()),
            channel_id: None,
            channel_name: None,
            instance_id: None,
            description: "paused".into(),
        }
    }

    #[test]
    fn bodies() {
        let a = entry();
        assert_eq!(
            slack_text(&a),
            "[error] RolloutFailed 1.2.0 (web / group prod): paused"
        );
        let v = webhook_body(&a);
        assert_eq!(v["class"], "RolloutFailed");
        assert_eq!(v["severity"], "error");
        assert_eq!(min_severity("WARNING"), Severity::Warning);
        assert_eq!(min_severity("bogus"), Severity::Info);
    }

    #[test]
    fn thresholds_rank_outcomes_above_routine_entries() {
        use Severity::*;
        let all = [Info, Success, Warning, Error];
        let sent = |threshold| {
            all.into_iter()
                .filter(|s| is_notified(*s, threshold))
                .collect::<Vec<_>>()
        };
        assert_eq!(sent(Info), all, "the default sends everything");
        assert_eq!(sent(Success), [Success, Warning, Error]);
        assert_eq!(sent(Warning), [Warning, Error]);
        assert_eq!(sent(Error), [Error]);
    }
}
