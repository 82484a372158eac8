//! Prometheus metrics for HTTP traffic, labelled by route pattern (never by raw path, so label
//! cardinality stays bounded whatever clients request).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
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
        let _ = registry.register(Box::new(requests.clone()));
        let _ = registry.register(Box::new(latency.clone()));
        Self {
            registry,
            requests,
            latency,
        }
    }

    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.latency.with_label_values(&[route]).observe(seconds);
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
        ["api", "activity"] => "/api/activity",
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
    }
}
