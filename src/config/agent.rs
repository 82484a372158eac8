//! Options of the Docker agent: `rollbridge agent` (remote, talks to a server over HTTP) and the
//! agent embedded in `serve` for the local Docker socket. Both end up as one
//! [`AgentSettings`], so the agent itself never sees clap or the environment.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Default Docker endpoint (the local socket).
pub const DEFAULT_DOCKER: &str = "unix:///var/run/docker.sock";

/// `rollbridge agent`.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// Base URL of the rollbridge server (Omaha endpoint and REST API).
    #[arg(long, env = "ROLLBRIDGE_AGENT_SERVER")]
    pub server: String,
    /// API token (`rollbridge token create`). The agent refuses to run without one.
    #[arg(long, env = "ROLLBRIDGE_AGENT_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Docker endpoint: `unix:///path/docker.sock` or `tcp://host:2375`.
    #[arg(long, env = "ROLLBRIDGE_AGENT_DOCKER", default_value = DEFAULT_DOCKER)]
    pub docker: String,
    /// Time between update checks (jittered by ±10 %), e.g. `60s`, `5m`.
    #[arg(long, env = "ROLLBRIDGE_AGENT_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Also bind containers whose image repository is under this namespace (e.g. `notarock`).
    /// Repeatable; comma-separated in the environment.
    #[arg(long, env = "ROLLBRIDGE_AGENT_OWNER", value_delimiter = ',')]
    pub owner: Vec<String>,
    /// Omaha track (group) for containers without a `rollbridge.group` label
    /// (default: the application's first group).
    #[arg(long, env = "ROLLBRIDGE_AGENT_GROUP")]
    pub group: Option<String>,
    /// Directory holding the persisted machine id and the versions the agent installed.
    #[arg(
        long,
        env = "ROLLBRIDGE_AGENT_STATE_DIR",
        default_value = "/var/lib/rollbridge-agent"
    )]
    pub state_dir: PathBuf,
    /// Remove the previous image of a repository after a successful update.
    #[arg(long, env = "ROLLBRIDGE_AGENT_CLEANUP")]
    pub cleanup: bool,
    /// With --cleanup: how many previous images per repository to keep.
    #[arg(long, env = "ROLLBRIDGE_AGENT_KEEP", default_value_t = 1)]
    pub keep: usize,
    /// How long a container without a healthcheck must keep running to count as healthy.
    #[arg(long, env = "ROLLBRIDGE_AGENT_HEALTH_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub health_grace: Duration,
    /// How long to wait for a healthcheck to report `healthy` before rolling back.
    #[arg(long, env = "ROLLBRIDGE_AGENT_HEALTH_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub health_timeout: Duration,
    /// Docker client config with registry credentials (`auths`); default `~/.docker/config.json`.
    #[arg(long, env = "ROLLBRIDGE_AGENT_DOCKER_CONFIG")]
    pub docker_config: Option<PathBuf>,
    /// Accept a package whose image comes from another repository than the container runs.
    /// Off by default: whoever can publish a release (a webhook secret) could otherwise make
    /// this host run any image under an existing container's name and settings.
    #[arg(long, env = "ROLLBRIDGE_AGENT_ALLOW_REPOSITORY_CHANGE")]
    pub allow_repository_change: bool,
    /// Run one reconcile pass and exit (for cron-style use and scripts).
    #[arg(long)]
    pub once: bool,
}

/// The agent embedded in `rollbridge serve` for the local Docker socket.
#[derive(Debug, Clone, Default, Args)]
pub struct LocalAgentArgs {
    /// Run the embedded agent (default: on when the Docker socket answers).
    #[arg(
        long,
        env = "ROLLBRIDGE_LOCAL_AGENT",
        overrides_with = "no_local_agent"
    )]
    pub local_agent: bool,
    /// Never run the embedded agent.
    #[arg(long, overrides_with = "local_agent")]
    pub no_local_agent: bool,
    /// Docker endpoint of the embedded agent.
    #[arg(long, env = "ROLLBRIDGE_AGENT_DOCKER", default_value = DEFAULT_DOCKER)]
    pub agent_docker: String,
    /// Time between the embedded agent's checks (it also checks at once after a promotion).
    #[arg(long, env = "ROLLBRIDGE_AGENT_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub agent_interval: Duration,
    /// See `rollbridge agent --owner`.
    #[arg(long, env = "ROLLBRIDGE_AGENT_OWNER", value_delimiter = ',')]
    pub agent_owner: Vec<String>,
    /// See `rollbridge agent --group`.
    #[arg(long, env = "ROLLBRIDGE_AGENT_GROUP")]
    pub agent_group: Option<String>,
    /// Directory for the machine id (default: derived from the Docker daemon's id, which is
    /// already stable per host).
    #[arg(long, env = "ROLLBRIDGE_AGENT_STATE_DIR")]
    pub agent_state_dir: Option<PathBuf>,
    /// See `rollbridge agent --cleanup`.
    #[arg(long, env = "ROLLBRIDGE_AGENT_CLEANUP")]
    pub agent_cleanup: bool,
    /// See `rollbridge agent --keep`.
    #[arg(long, env = "ROLLBRIDGE_AGENT_KEEP", default_value_t = 1)]
    pub agent_keep: usize,
    /// See `rollbridge agent --health-grace`.
    #[arg(long, env = "ROLLBRIDGE_AGENT_HEALTH_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub agent_health_grace: Duration,
    /// See `rollbridge agent --health-timeout`.
    #[arg(long, env = "ROLLBRIDGE_AGENT_HEALTH_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub agent_health_timeout: Duration,
    /// See `rollbridge agent --docker-config`.
    #[arg(long, env = "ROLLBRIDGE_AGENT_DOCKER_CONFIG")]
    pub agent_docker_config: Option<PathBuf>,
    /// See `rollbridge agent --allow-repository-change`.
    #[arg(long, env = "ROLLBRIDGE_AGENT_ALLOW_REPOSITORY_CHANGE")]
    pub agent_allow_repository_change: bool,
}

/// What the embedded agent should do at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalAgentMode {
    /// `--local-agent`: start, and log an error when the socket does not answer.
    On,
    /// `--no-local-agent`.
    Off,
    /// Neither flag: start when the socket answers, quietly skip otherwise.
    Auto,
}

impl LocalAgentArgs {
    pub fn mode(&self) -> LocalAgentMode {
        if self.no_local_agent {
            LocalAgentMode::Off
        } else if self.local_agent {
            LocalAgentMode::On
        } else {
            LocalAgentMode::Auto
        }
    }
}

/// The agent's settings, whichever way it runs.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub docker: String,
    pub interval: Duration,
    pub owners: Vec<String>,
    pub group: Option<String>,
    /// None: the machine id is derived from the Docker daemon's id.
    pub state_dir: Option<PathBuf>,
    pub cleanup: bool,
    pub keep: usize,
    pub health_grace: Duration,
    pub health_timeout: Duration,
    /// Where registry credentials are read from (may not exist).
    pub docker_config: Option<PathBuf>,
    /// Whether a package may move a container to another image repository.
    pub allow_repository_change: bool,
}

/// `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`), read here because this is the
/// only module that looks at the environment.
fn default_docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

impl AgentArgs {
    pub fn settings(&self) -> AgentSettings {
        AgentSettings {
            docker: self.docker.clone(),
            interval: self.interval,
            owners: self.owner.clone(),
            group: self.group.clone(),
            state_dir: Some(self.state_dir.clone()),
            cleanup: self.cleanup,
            keep: self.keep,
            health_grace: self.health_grace,
            health_timeout: self.health_timeout,
            docker_config: self.docker_config.clone().or_else(default_docker_config),
            allow_repository_change: self.allow_repository_change,
        }
    }
}

impl LocalAgentArgs {
    pub fn settings(&self) -> AgentSettings {
        AgentSettings {
            docker: self.agent_docker.clone(),
            interval: self.agent_interval,
            owners: self.agent_owner.clone(),
            group: self.agent_group.clone(),
            state_dir: self.agent_state_dir.clone(),
            cleanup: self.agent_cleanup,
            keep: self.agent_keep,
            health_grace: self.agent_health_grace,
            health_timeout: self.agent_health_timeout,
            docker_config: self
                .agent_docker_config
                .clone()
                .or_else(default_docker_config),
            allow_repository_change: self.agent_allow_repository_change,
        }
    }
}

/// `500ms`, `10s`, `5m`, `1h` or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration like 500ms, 10s, 5m or 1h"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            ))
        }
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, Command};
    use clap::Parser as _;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn agent_requires_server_and_token() {
        assert!(Cli::try_parse_from(["rollbridge", "agent", "--server", "http://x"]).is_err());
        let cli = Cli::try_parse_from([
            "rollbridge",
            "agent",
            "--server",
            "http://x:8000",
            "--token",
            "t",
            "--owner",
            "acme",
            "--health-grace",
            "2s",
        ])
        .unwrap();
        let Command::Agent(args) = cli.command else {
            panic!("not agent")
        };
        let s = args.settings();
        assert_eq!(s.interval, Duration::from_secs(60));
        assert_eq!(s.health_grace, Duration::from_secs(2));
        assert_eq!(s.owners, ["acme"]);
        assert_eq!(s.docker, DEFAULT_DOCKER);
        assert!(!s.cleanup);
    }

    #[test]
    fn local_agent_flags() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["rollbridge", "serve"];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Serve(args) => args.local_agent.mode(),
                _ => panic!("not serve"),
            }
        };
        assert_eq!(parse(&[]), LocalAgentMode::Auto);
        assert_eq!(parse(&["--local-agent"]), LocalAgentMode::On);
        assert_eq!(parse(&["--no-local-agent"]), LocalAgentMode::Off);
        assert_eq!(
            parse(&["--local-agent", "--no-local-agent"]),
            LocalAgentMode::Off
        );
    }
}
