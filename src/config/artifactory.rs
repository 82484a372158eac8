//! Options of the Artifactory deploy-request poller. The long names of coreos-artifactory-monitor
//! (`--art_endpoint`, `--deploy_url`, ...) are kept as aliases so existing unit files and scripts
//! keep working; every option also has a `ROLLBRIDGE_*` environment variable.

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct ArtifactoryArgs {
    /// Artifactory REST API base URL, ending in `/api` (e.g.
    /// `https://acme.jfrog.io/artifactory/api`). The poller runs only when this is set.
    #[arg(long = "art-endpoint", visible_alias = "art_endpoint", env = "ROLLBRIDGE_ART_ENDPOINT",
          requires_all = ["art_deploy_repo", "art_payload_repo", "domain", "environment"])]
    pub art_endpoint: Option<String>,
    /// Artifactory user (HTTP basic auth, with `--art-password`).
    #[arg(
        long = "art-userid",
        visible_alias = "art_userid",
        env = "ROLLBRIDGE_ART_USERID"
    )]
    pub art_userid: Option<String>,
    /// Artifactory password or access token for `--art-userid`.
    #[arg(
        long = "art-password",
        visible_alias = "art_password",
        env = "ROLLBRIDGE_ART_PASSWORD",
        hide_env_values = true
    )]
    pub art_password: Option<String>,
    /// Artifactory API key, sent as `X-JFrog-Art-Api` (deprecated by JFrog, still common).
    #[arg(
        long = "art-api-key",
        visible_alias = "art_api_key",
        env = "ROLLBRIDGE_ART_API_KEY",
        hide_env_values = true
    )]
    pub art_api_key: Option<String>,
    /// Artifactory access token, sent as `Authorization: Bearer`.
    #[arg(
        long = "art-token",
        visible_alias = "art_token",
        env = "ROLLBRIDGE_ART_TOKEN",
        hide_env_values = true
    )]
    pub art_token: Option<String>,
    /// Seconds between polls.
    #[arg(long = "art-polling", visible_alias = "art_polling", env = "ROLLBRIDGE_ART_POLLING", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub art_polling: u64,
    /// Repository holding `<app>/<version>.deploy` deploy requests.
    #[arg(
        long = "art-deploy-repo",
        visible_alias = "art_deploy_repo",
        env = "ROLLBRIDGE_ART_DEPLOY_REPO"
    )]
    pub art_deploy_repo: Option<String>,
    /// Repository holding `<app>/<domain>-<env>-<app>-<version>.tar.gz` payloads.
    #[arg(
        long = "art-payload-repo",
        visible_alias = "art_payload_repo",
        env = "ROLLBRIDGE_ART_PAYLOAD_REPO"
    )]
    pub art_payload_repo: Option<String>,
    /// Domain of this cluster (part of the payload name, e.g. `example.com`).
    #[arg(long, env = "ROLLBRIDGE_DOMAIN")]
    pub domain: Option<String>,
    /// Environment of this cluster (payload name part; zero-config channel name).
    #[arg(long, env = "ROLLBRIDGE_ENVIRONMENT")]
    pub environment: Option<String>,
    /// Seconds a single Artifactory request may take (connect + response) before it counts as
    /// a timeout.
    #[arg(long = "art-timeout", env = "ROLLBRIDGE_ART_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub art_timeout: u64,
    /// Upper bound, in seconds, of the exponential backoff after Artifactory failed (5xx, 429,
    /// timeouts).
    #[arg(long = "art-backoff-max", env = "ROLLBRIDGE_ART_BACKOFF_MAX", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub art_backoff_max: u64,
    /// coreos-deploy base URL: each new release is also submitted there (`POST /v1.0/deploy`).
    #[arg(
        long = "deploy-url",
        visible_alias = "deploy_url",
        env = "ROLLBRIDGE_DEPLOY_URL",
        requires = "deploy_token"
    )]
    pub deploy_url: Option<String>,
    /// Bearer token for `--deploy-url`.
    #[arg(
        long = "deploy-token",
        visible_alias = "deploy_token",
        env = "ROLLBRIDGE_DEPLOY_TOKEN",
        hide_env_values = true
    )]
    pub deploy_token: Option<String>,
    /// Seconds between coreos-deploy status polls (at most 7 polls, as the original client did).
    #[arg(long = "deploy-status-interval", env = "ROLLBRIDGE_DEPLOY_STATUS_INTERVAL", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub deploy_status_interval: u64,
}
