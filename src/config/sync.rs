//! Options of the upstream syncer (`--sync-*`) and payload hosting (`--host-packages`,
//! `--public-url`, `--packages-auth`). See docs/sync.md.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// The public Flatcar update server, used when `--sync-upstream` is given without a URL.
pub const DEFAULT_UPSTREAM: &str = "https://public.update.flatcar-linux.net/v1/update/";

/// The syncer's options, boxed so `serve`'s argument struct stays small.
#[derive(Debug, Clone, Default, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub options: Box<SyncOptions>,
}

impl std::ops::Deref for SyncArgs {
    type Target = SyncOptions;

    fn deref(&self) -> &SyncOptions {
        &self.options
    }
}

#[derive(Debug, Clone, Default, Args)]
pub struct SyncOptions {
    /// Follow another Omaha server's channels (off unless given). Without a value: the public
    /// Flatcar update server.
    #[arg(
        long,
        env = "ROLLBRIDGE_SYNC_UPSTREAM",
        num_args = 0..=1,
        default_missing_value = DEFAULT_UPSTREAM,
        value_name = "URL"
    )]
    pub sync_upstream: Option<String>,
    /// How often each channel asks upstream (`1h`, `15 minutes`, `30s`); the first check runs at
    /// start. Failed checks are retried sooner, with backoff.
    #[arg(long, env = "ROLLBRIDGE_SYNC_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub sync_interval: Duration,
    /// Also sync local channel LOCAL from upstream track UPSTREAM (`lts=lts-2024`); repeatable.
    /// Channels named stable, beta, alpha, edge or lts-* follow the upstream track of their name.
    #[arg(
        long = "sync-channel",
        env = "ROLLBRIDGE_SYNC_CHANNELS",
        value_delimiter = ',',
        value_parser = parse_mapping,
        value_name = "LOCAL=UPSTREAM"
    )]
    pub sync_channels: Vec<(String, String)>,
    /// The application whose channels are synced (id); default the CoreOS/Flatcar application.
    #[arg(long, env = "ROLLBRIDGE_SYNC_APP")]
    pub sync_app: Option<String>,
    /// The appid sent upstream; default the CoreOS/Flatcar appid
    /// `{e96281a6-d1af-4bde-9a0a-97b76e56dc57}`.
    #[arg(long, env = "ROLLBRIDGE_SYNC_UPSTREAM_APPID")]
    pub sync_upstream_appid: Option<String>,
    /// Timeout of one upstream update check.
    #[arg(long, env = "ROLLBRIDGE_SYNC_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub sync_timeout: Duration,
    /// Download payloads into DIR and serve them at `/packages/` (needs --public-url).
    #[arg(
        long,
        env = "ROLLBRIDGE_HOST_PACKAGES",
        value_name = "DIR",
        requires = "public_url"
    )]
    pub host_packages: Option<PathBuf>,
    /// The URL clients reach this server at (`https://updates.example.com`); hosted packages are
    /// published as `<public-url>/packages/`.
    #[arg(long, env = "ROLLBRIDGE_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Require HTTP Basic auth `USER:PASSWORD` on `/packages/` (update_engine sends
    /// DOWNLOAD_USER/DOWNLOAD_PASSWORD from update.conf).
    #[arg(
        long,
        env = "ROLLBRIDGE_PACKAGES_AUTH",
        hide_env_values = true,
        value_name = "USER:PASSWORD"
    )]
    pub packages_auth: Option<String>,
    /// Largest payload downloaded for hosting, in bytes (default 4 GiB).
    #[arg(long, env = "ROLLBRIDGE_HOST_MAX_BYTES", default_value_t = 4 * 1024 * 1024 * 1024)]
    pub host_max_bytes: u64,
    /// Timeout of one payload download.
    #[arg(long, env = "ROLLBRIDGE_HOST_DOWNLOAD_TIMEOUT", default_value = "1h", value_parser = parse_duration)]
    pub host_download_timeout: Duration,
}

/// `1h`, `30s`, `250ms`, `15 minutes` (the interval syntax of group policies).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let ms = crate::domain::interval::parse_interval("duration", raw).map_err(|e| e.to_string())?;
    u64::try_from(ms)
        .map(Duration::from_millis)
        .map_err(|_| format!("{raw:?} is not a positive duration"))
}

/// `local=upstream`, both non-empty.
pub fn parse_mapping(raw: &str) -> Result<(String, String), String> {
    let (local, upstream) = raw
        .split_once('=')
        .ok_or_else(|| format!("{raw:?} is not LOCAL=UPSTREAM"))?;
    let (local, upstream) = (local.trim(), upstream.trim());
    if local.is_empty() || upstream.is_empty() || local.len() > 100 || upstream.len() > 255 {
        return Err(format!("{raw:?} is not LOCAL=UPSTREAM"));
    }
    Ok((local.to_string(), upstream.to_string()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::config::{Cli, Command};

    fn parse(args: &[&str]) -> super::SyncArgs {
        let mut all = vec!["rollbridge", "serve"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Serve(serve) => serve.sync,
            _ => panic!("not serve"),
        }
    }

    #[test]
    fn sync_is_off_by_default_and_defaults_to_flatcar_when_given_bare() {
        let off = parse(&[]);
        assert_eq!(off.sync_upstream, None);
        assert_eq!(off.sync_interval, std::time::Duration::from_secs(3600));
        let bare = parse(&["--sync-upstream", "--sync-interval", "90s"]);
        assert_eq!(bare.sync_upstream.as_deref(), Some(super::DEFAULT_UPSTREAM));
        assert_eq!(bare.sync_interval, std::time::Duration::from_secs(90));
        let given = parse(&["--sync-upstream=http://up/v1/update/"]);
        assert_eq!(given.sync_upstream.as_deref(), Some("http://up/v1/update/"));
    }

    #[test]
    fn channel_mappings_repeat_and_reject_garbage() {
        let args = parse(&["--sync-channel", "lts=lts-2024", "--sync-channel", "x = y"]);
        assert_eq!(
            args.sync_channels,
            vec![
                ("lts".to_string(), "lts-2024".to_string()),
                ("x".to_string(), "y".to_string())
            ]
        );
        assert!(super::parse_mapping("nothing").is_err());
        assert!(super::parse_mapping("=up").is_err());
    }

    #[test]
    fn hosting_needs_a_public_url() {
        let all = ["rollbridge", "serve", "--host-packages", "/tmp/x"];
        assert!(Cli::try_parse_from(all).is_err());
    }
}
