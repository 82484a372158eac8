//! Prometheus metrics for HTTP traffic, labelled by route pattern (never by raw path, so label
//! cardinality stays bounded whatever clients request).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    releases: IntCounterVec,
    notifications: IntCounterVec,
    sync_checks: IntCounterVec,
    payload_downloads: IntCounterVec,
    agent: AgentMetrics,
}

/// Counters of the Docker agent (the embedded agent's are exported on `/metrics`; the remote
/// agent logs its own after each pass).
#[derive(Clone)]
pub struct AgentMetrics {
    /// Image pulls by result (`ok`, `error`).
    pub pulls: IntCounterVec,
    /// Container recreates by result (`ok`, `error`).
    pub recreates: IntCounterVec,
    /// Containers put back after a failed update.
    pub rollbacks: IntCounter,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    pub fn new() -> Self {
        // Static, valid definitions: construction cannot fail at run time.
        Self {
            pulls: IntCounterVec::new(
                Opts::new("agent_pulls_total", "Docker agent image pulls by result"),
                &["result"],
            )
            .expect("static counter definition"),
            recreates: IntCounterVec::new(
                Opts::new(
                    "agent_recreates_total",
                    "Docker agent container recreates by result",
                ),
                &["result"],
            )
            .expect("static counter definition"),
            rollbacks: IntCounter::new(
                "agent_rollbacks_total",
                "Containers the Docker agent restored after a failed update",
            )
            .expect("static counter definition"),
        }
    }

    fn register(&self, registry: &Registry) {
        let _ = registry.register(Box::new(self.pulls.clone()));
        let _ = registry.register(Box::new(self.recreates.clone()));
        let _ = registry.register(Box::new(self.rollbacks.clone()));
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        // The metric definitions are static and valid; construction cannot fail at run time.
        let registry =
            Registry::new_custom(Some("rollbridge".into()), None).expect("static registry prefix");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("static counter definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )
        .expect("static histogram definition");
        let releases = IntCounterVec::new(
            Opts::new(
                "releases_total",
                "Releases received from sources, by source and outcome",
            ),
            &["source", "outcome"],
        )
        .expect("static counter definition");
        let sync_checks = IntCounterVec::new(
            Opts::new(
                "sync_checks_total",
                "Upstream syncer checks by channel and outcome (ok or an error kind)",
            ),
            &["channel", "outcome"],
        )
        .expect("static counter definition");
        let payload_downloads = IntCounterVec::new(
            Opts::new(
                "payload_downloads_total",
                "Hosted payload downloads by outcome (downloaded, reused or an error kind)",
            ),
            &["outcome"],
        )
        .expect("static counter definition");
        let _ = registry.register(Box::new(requests.clone()));
        let _ = registry.register(Box::new(latency.clone()));
        let notifications = IntCounterVec::new(
            Opts::new(
                "notifications_total",
                "Activity notifications by endpoint kind and outcome",
            ),
            &["endpoint", "outcome"],
        )
        .expect("static counter definition");
        let _ = registry.register(Box::new(releases.clone()));
        let _ = registry.register(Box::new(notifications.clone()));
        let _ = registry.register(Box::new(sync_checks.clone()));
        let _ = registry.register(Box::new(payload_downloads.clone()));
        let agent = AgentMetrics::new();
        agent.register(&registry);
        Self {
            registry,
            requests,
            latency,
            releases,
            notifications,
            sync_checks,
            payload_downloads,
            agent,
        }
    }

    /// The Docker agent's counters (registered in this registry).
    pub fn agent(&self) -> &AgentMetrics {
        &self.agent
    }

    /// The registry, for subsystems that keep their own metrics (poller, agent, syncer).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts a release by source and outcome (both from small fixed sets).
    pub fn observe_release(&self, source: &str, outcome: &str) {
        self.releases.with_label_values(&[source, outcome]).inc();
    }

    /// Counts a notification by endpoint kind (webhook, slack) and outcome.
    pub fn observe_notification(&self, endpoint: &str, outcome: &str) {
        self.notifications
            .with_label_values(&[endpoint, outcome])
            .inc();
    }

    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.latency.with_label_values(&[route]).observe(seconds);
    }

    /// Counts one upstream check of a synced channel (channel names are operator-configured,
    /// so the label set stays bounded).
    pub fn observe_sync(&self, channel: &str, outcome: &str) {
        self.sync_checks
            .with_label_values(&[channel, outcome])
            .inc();
    }

    /// Counts one payload hosting attempt.
    pub fn observe_payload(&self, outcome: &str) {
        self.payload_downloads.with_label_values(&[outcome]).inc();
    }

    /// Requests served so far, all routes (for `/v1.0/metrics`).
    pub fn requests_total(&self) -> u64 {
        self.registry
            .gather()
            .iter()
            .filter(|family| family.name().ends_with("http_requests_total"))
            .flat_map(|family| family.get_metric().iter())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Maps a request path to its route pattern (`/api/apps/:id/groups/:id`), or `other`.
pub fn route_label(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1", "update"] | ["omaha"] => "/v1/update",
        ["v1.0", "health"] => "/v1.0/health",
        ["v1.0", "info"] => "/v1.0/info",
        ["v1.0", "metrics"] => "/v1.0/metrics",
        ["v1.0", "force"] => "/v1.0/force",
        ["metrics"] => "/metrics",
        ["api", "apps"] => "/api/apps",
        ["api", "apps", _] => "/api/apps/:app",
        ["api", "apps", _, "groups"] => "/api/apps/:app/groups",
        ["api", "apps", _, "groups", _] => "/api/apps/:app/groups/:group",
        ["api", "apps", _, "groups", _, "instances"] => "/api/apps/:app/groups/:group/instances",
        ["api", "apps", _, "groups", _, "instances", _] => {
            "/api/apps/:app/groups/:group/instances/:instance"
        }
        ["api", "apps", _, "groups", _, "instances", _, "status_history"] => {
            "/api/apps/:app/groups/:group/instances/:instance/status_history"
        }
        ["api", "apps", _, "channels"] => "/api/apps/:app/channels",
        ["api", "apps", _, "channels", _] => "/api/apps/:app/channels/:channel",
        ["api", "apps", _, "packages"] => "/api/apps/:app/packages",
        ["api", "apps", _, "packages", _] => "/api/apps/:app/packages/:package",
        ["api", "apps", _, "bindings"] => "/api/apps/:app/bindings",
        ["api", "apps", _, "bindings", _] => "/api/apps/:app/bindings/:binding",
        // The Docker Hub secret is part of the path: never let it reach a label or a log.
        ["v1.0", "hooks", "dockerhub", _] => "/v1.0/hooks/dockerhub/:secret",
        ["v1.0", "hooks", "registry"] => "/v1.0/hooks/registry",
        ["v1.0", "hooks", "generic", _] => "/v1.0/hooks/generic/:name",
        ["v1.0", "packages", _, "files"] => "/v1.0/packages/:package/files",
        ["v1.0", "packages", _, "files", _] => "/v1.0/packages/:package/files/:name",
        ["packages", _] => "/packages/:file",
        ["api", "apps", _, "channels", _, "floors"] => "/api/apps/:app/channels/:channel/floors",
        ["api", "apps", _, "channels", _, "floors", _] => {
            "/api/apps/:app/channels/:channel/floors/:package"
        }
        ["ui", ..] => "/ui",
        [""] => "/",
        ["api", "activity"] => "/api/activity",
        ["api", "agent", "activity"] => "/api/agent/activity",
        ["api", "password"] => "/api/password",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn routes_are_labelled_by_pattern() {
        assert_eq!(super::route_label("/v1/update/"), "/v1/update");
        assert_eq!(
            super::route_label("/api/apps/abc/groups/def"),
            "/api/apps/:app/groups/:group"
        );
        assert_eq!(super::route_label("/random/../x"), "other");
        assert_eq!(super::route_label("/ui/apps/abc"), "/ui");
        assert_eq!(
            super::route_label("/v1.0/hooks/dockerhub/s3cr3t-value"),
            "/v1.0/hooks/dockerhub/:secret"
        );
    }
}
