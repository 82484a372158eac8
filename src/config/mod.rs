//! Command line and environment configuration (clap). Every option can also be set with a
//! `ROLLBRIDGE_*` environment variable; this is the only module that reads the environment.
//! Each subsystem's options live in their own submodule and are flattened into `serve`.

pub mod agent;
pub mod artifactory;
pub mod dashboard;
pub mod sources;
pub mod sync;

pub use agent::{AgentArgs, LocalAgentArgs};
pub use artifactory::ArtifactoryArgs;
pub use dashboard::DashboardArgs;
pub use sources::SourcesArgs;
pub use sync::SyncArgs;

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  rollbridge serve                                   # SQLite in ./rollbridge.db, port 8000
  rollbridge serve --database-url mysql://rollbridge:secret@db:3306/rollbridge
  rollbridge migrate --database-url sqlite:///var/lib/rollbridge/rollbridge.db
  rollbridge user passwd admin                       # reads the new password from stdin
  rollbridge token create --name ci                  # prints the token on the last line
  rollbridge token list
  rollbridge token revoke 6f1c...
";

#[derive(Debug, Parser)]
#[command(name = "rollbridge", version, about = "Webhook-driven deployment bridge and Omaha update server", after_help = EXAMPLES)]
pub struct Cli {
    /// Log output format.
    #[arg(long, env = "ROLLBRIDGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (REST API, Omaha endpoint, webhooks).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and print the schema status.
    Migrate(DatabaseArgs),
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens (used as `Authorization: Bearer <token>`).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage release-source bindings (source selector -> application + channel).
    Binding {
        #[command(subcommand)]
        command: BindingCommand,
    },
    /// Run the Docker agent: an Omaha client that updates this host's containers.
    Agent(AgentArgs),
    /// Exit 0 when the server's health endpoint answers 200 (for container health checks).
    Healthcheck {
        #[arg(
            long,
            env = "ROLLBRIDGE_HEALTHCHECK_URL",
            default_value = "http://127.0.0.1:8000/v1.0/health"
        )]
        url: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// `sqlite://PATH` (relative), `sqlite:///ABSOLUTE/PATH`, `sqlite::memory:` or
    /// `mysql://user:pass@host:3306/db`.
    #[arg(
        long,
        env = "ROLLBRIDGE_DATABASE_URL",
        default_value = "sqlite://rollbridge.db",
        hide_env_values = true
    )]
    pub database_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "ROLLBRIDGE_LISTEN", default_value = "0.0.0.0:8000")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Password for the `admin` user created on first start (default `admin`, with a warning).
    #[arg(long, env = "ROLLBRIDGE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Answer rollout-policy denials with `noupdate` instead of `error-*` statuses.
    #[arg(long, env = "ROLLBRIDGE_OMAHA_DENY_AS_NOUPDATE")]
    pub omaha_deny_as_noupdate: bool,
    /// Maximum size of REST request bodies, in bytes.
    #[arg(long, env = "ROLLBRIDGE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Peers whose `X-Forwarded-For` header names the client (failed-login limits, instance
    /// IPs), comma-separated: addresses, CIDR ranges, `loopback`, `private` (RFC 1918 and IPv6
    /// unique-local), or `none`. Any other peer is the client itself, whatever it sends.
    #[arg(
        long,
        env = "ROLLBRIDGE_TRUSTED_PROXIES",
        default_value = "loopback,private",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,

    /// Seconds a client gets to send a request's head, and then its body (counted from when the
    /// server starts reading it); an idle keep-alive connection is closed after as long. A body
    /// that is late is answered 408 and its connection closed.
    #[arg(long, env = "ROLLBRIDGE_READ_TIMEOUT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub read_timeout_seconds: u64,
    /// Seconds open requests get to finish at shutdown (SIGTERM, Ctrl-C); connections still
    /// open then are dropped.
    #[arg(long, env = "ROLLBRIDGE_SHUTDOWN_GRACE_SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_seconds: u64,

    /// Seconds between re-checks of groups marked "rollout in progress" (a rollout whose last
    /// instances went silent finishes when they leave the one-day active window).
    #[arg(long, env = "ROLLBRIDGE_ROLLOUT_SWEEP_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub rollout_sweep_seconds: u64,
    #[command(flatten)]
    pub sources: SourcesArgs,
    #[command(flatten)]
    pub artifactory: ArtifactoryArgs,
    #[command(flatten)]
    pub local_agent: LocalAgentArgs,
    #[command(flatten)]
    pub dashboard: DashboardArgs,
    #[command(flatten)]
    pub sync: SyncArgs,
}

#[derive(Debug, Subcommand)]
pub enum BindingCommand {
    /// List every binding (secrets are never shown).
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Bind a source selector to an application (by id or name), optionally promoting to a channel.
    Create {
        /// Application id or name.
        #[arg(long)]
        app: String,
        /// dockerhub, registry, artifactory or generic.
        #[arg(long)]
        kind: String,
        /// Docker Hub repo_name, registry repository (with host), Artifactory folder or webhook name.
        #[arg(long = "match")]
        match_value: String,
        /// Channel id or name to promote new releases to (omit to register only).
        #[arg(long)]
        channel: Option<String>,
        /// Glob (`v*`) or semver range (`>=1.0.0 <2.0.0`).
        #[arg(long, default_value = "")]
        tag_filter: String,
        #[arg(long)]
        allow_prerelease: bool,
        /// The binding's own webhook secret (read from the environment to keep it off shell history).
        #[arg(long, env = "ROLLBRIDGE_BINDING_SECRET", hide_env_values = true)]
        secret: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Delete a binding by id.
    Delete {
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Set a user's password (created if missing). Reads it from stdin unless --password is given.
    Passwd {
        name: String,
        #[arg(long, env = "ROLLBRIDGE_NEW_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once, alone on the last line.
    Create {
        #[arg(long)]
        name: String,
        /// The user the token acts as.
        #[arg(long, default_value = "admin")]
        user: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke a token by id.
    Revoke {
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_defaults_match_the_readme() {
        let cli = Cli::try_parse_from(["rollbridge", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.listen.to_string(), "0.0.0.0:8000");
        assert_eq!(args.database.database_url, "sqlite://rollbridge.db");
        assert!(!args.omaha_deny_as_noupdate);
        assert_eq!(args.read_timeout_seconds, 30);
        assert_eq!(args.shutdown_grace_seconds, 20);
    }

    #[test]
    fn token_create_parses() {
        let cli = Cli::try_parse_from(["rollbridge", "token", "create", "--name", "ci"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Token {
                command: TokenCommand::Create { .. }
            }
        ));
    }
}
