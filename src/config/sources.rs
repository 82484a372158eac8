//! Options of the release sources: webhook secrets, registry access, Docker Hub callbacks and
//! notification endpoints.

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct SourcesArgs {
    /// Server-wide webhook secret: the `<secret>` of `/v1.0/hooks/dockerhub/<secret>` and the HMAC
    /// key of generic webhooks that have bindings without a secret of their own (such a delivery
    /// only reaches the bound applications). At least 16 characters.
    #[arg(long, env = "ROLLBRIDGE_WEBHOOK_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub webhook_secret: Option<String>,

    /// HMAC key of generic webhooks that may name any application (`"app"` in the body) without
    /// a binding: CI systems that publish for many applications. Kept apart from
    /// --webhook-secret, which sits in Docker Hub's webhook URL. At least 16 characters.
    #[arg(long, env = "ROLLBRIDGE_GENERIC_WEBHOOK_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub generic_webhook_secret: Option<String>,

    /// Bearer token the registry sends with its notifications (its `headers: Authorization`).
    /// Without it `/v1.0/hooks/registry` accepts API tokens only.
    #[arg(long, env = "ROLLBRIDGE_REGISTRY_TOKEN", hide_env_values = true)]
    pub registry_token: Option<String>,

    /// Registry API used to resolve Docker Hub tags to digests (`HEAD /v2/<repo>/manifests/<tag>`).
    /// `off` disables the lookup (every push of a mutable tag then counts as new).
    #[arg(
        long,
        env = "ROLLBRIDGE_DOCKERHUB_REGISTRY",
        default_value = "https://registry-1.docker.io"
    )]
    pub dockerhub_registry: String,

    /// Hosts `callback_url` may point at (Docker Hub's by default): the URL comes from an
    /// unsigned body, so posting anywhere else would be a request-forgery vector. Repeatable.
    #[arg(
        long = "callback-allow-host",
        env = "ROLLBRIDGE_CALLBACK_ALLOW_HOSTS",
        value_delimiter = ',',
        default_values_t = ["registry.hub.docker.com".to_string(), "hub.docker.com".to_string()]
    )]
    pub callback_allow_hosts: Vec<String>,

    /// Send every activity entry to this URL as JSON, signed with `X-Rollbridge-Signature-256`
    /// (HMAC-SHA256 with --notify-secret). Repeatable.
    #[arg(
        long = "notify-webhook",
        env = "ROLLBRIDGE_NOTIFY_WEBHOOKS",
        value_delimiter = ','
    )]
    pub notify_webhooks: Vec<String>,

    /// HMAC key for --notify-webhook bodies.
    #[arg(long, env = "ROLLBRIDGE_NOTIFY_SECRET", hide_env_values = true)]
    pub notify_secret: Option<String>,

    /// Slack-compatible incoming webhook URL (`{"text": ...}`). Repeatable.
    #[arg(
        long = "notify-slack",
        env = "ROLLBRIDGE_NOTIFY_SLACK",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub notify_slack: Vec<String>,

    /// Lowest severity sent to notification endpoints, in this order: info (everything),
    /// success (outcomes, warnings and errors), warning, error.
    #[arg(long, env = "ROLLBRIDGE_NOTIFY_MIN_SEVERITY", default_value = "info")]
    pub notify_min_severity: String,
}

/// A webhook secret: at least 16 characters (it is the only credential of a webhook, and the
/// Docker Hub one travels in a URL).
pub fn parse_secret(raw: &str) -> Result<String, String> {
    if raw.chars().count() < 16 {
        return Err("must be at least 16 characters".into());
    }
    Ok(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_secrets_are_at_least_16_characters() {
        assert!(parse_secret("short").is_err());
        assert!(parse_secret("fifteen-chars-x").is_err());
        assert_eq!(
            parse_secret("sixteen-chars-xx").as_deref(),
            Ok("sixteen-chars-xx")
        );
    }
}
