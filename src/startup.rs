//! Builds a running server from configuration: opens the store (migrating it), seeds first-start
//! data, binds the listener and serves until the shutdown signal, letting in-flight requests
//! finish.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;

use crate::clock::Clock;
use crate::config::ServeArgs;
use crate::http::{self, AppState};
use crate::omaha::OmahaOptions;
use crate::store::db::{DatabaseUrl, ServerLock};
use crate::store::Store;

/// How long a starting server waits for a previous one on the same SQLite file to exit.
const SERVER_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct App {
    pub addr: SocketAddr,
    pub state: AppState,
    args: ServeArgs,
    listener: tokio::net::TcpListener,
    /// SQLite: this process is the database's only server until it exits.
    _server_lock: Option<ServerLock>,
}

/// What a background task (poller, syncer, embedded agent, notifier) gets: the shared state and
/// a shutdown signal it should honour between units of work.
#[derive(Clone)]
pub struct Background {
    pub state: AppState,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Background {
    /// Sleeps for `duration` or until shutdown; returns false when shutting down.
    pub async fn sleep(&mut self, duration: std::time::Duration) -> bool {
        if *self.shutdown.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(duration) => !*self.shutdown.borrow(),
            _ = self.shutdown.changed() => false,
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// How long background tasks get to finish their current unit of work at shutdown.
const BACKGROUND_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

impl App {
    /// Opens the database, seeds it and binds the listener (port 0 picks a free port).
    pub async fn build(args: &ServeArgs, clock: Clock) -> anyhow::Result<Self> {
        let url = DatabaseUrl::parse(&args.database.database_url).context("database URL")?;
        let server_lock =
            tokio::task::spawn_blocking(move || ServerLock::acquire(&url, SERVER_LOCK_WAIT))
                .await
                .context("waiting for the database lock")??;
        let store = Store::open(&args.database.database_url)
            .await
            .context("opening the database")?;
        seed(&store, args.admin_password.as_deref(), clock.now_ms()).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let mut state = AppState::new(
            store,
            clock,
            OmahaOptions {
                deny_as_noupdate: args.omaha_deny_as_noupdate,
                ..OmahaOptions::default()
            },
            args.max_body_bytes,
        );
        state.sources = std::sync::Arc::new(args.sources.clone());
        state.trusted_proxies = std::sync::Arc::new(
            crate::http::proxies::TrustedProxies::parse(&args.trusted_proxies)
                .map_err(anyhow::Error::msg)
                .context("--trusted-proxies")?,
        );
        state.hosting = std::sync::Arc::new(
            crate::sync::hosting::Hosting::from_args(&args.sync).context("payload hosting")?,
        );
        Ok(Self {
            addr,
            state: AppState {
                dashboard: std::sync::Arc::new(args.dashboard.clone()),
                ..state
            },
            args: args.clone(),
            listener,
            _server_lock: server_lock,
        })
    }

    /// Starts the background tasks, serves until `shutdown` resolves, then waits for open
    /// connections and (for a bounded time) the background tasks to finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let ctx = Background {
            state: self.state.clone(),
            shutdown: stop_rx,
        };
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(crate::store::last_seen::flush_periodically(
            self.state.store.clone(),
            ctx.shutdown.clone(),
        )));
        tasks.push(tokio::spawn(crate::rollout::sweep::run_periodically(
            self.state.store.clone(),
            self.state.clock.clone(),
            std::time::Duration::from_secs(self.args.rollout_sweep_seconds),
            ctx.shutdown.clone(),
        )));
        tasks.extend(crate::sources::start(&ctx, &self.args).await);
        tasks.extend(crate::agent::start_local(&ctx, &self.args.local_agent));
        tasks.extend(crate::sync::start(&ctx, &self.args.sync));
        tracing::info!(addr = %self.addr, "rollbridge listening");
        let options = http::server::ServerOptions {
            read_timeout: std::time::Duration::from_secs(self.args.read_timeout_seconds),
            shutdown_grace: std::time::Duration::from_secs(self.args.shutdown_grace_seconds),
        };
        http::server::serve(self.listener, self.state, options, shutdown).await;
        let _ = stop_tx.send(true);
        finish_within(tasks, BACKGROUND_GRACE).await;
    }
}

/// Waits for `tasks` to finish, all of them together within `grace` (one deadline, not one
/// per task: a dozen slow tasks must not hold the process for a dozen graces), and aborts the
/// ones still running then.
async fn finish_within(tasks: Vec<tokio::task::JoinHandle<()>>, grace: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    for mut task in tasks {
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Creates the default team, `admin` and the CoreOS application on first start, and warns while
/// `admin` still has the default password.
pub async fn seed(store: &Store, admin_password: Option<&str>, now: i64) -> anyhow::Result<()> {
    let password = admin_password.unwrap_or("admin").to_string();
    let is_default = admin_password.is_none();
    let hash = tokio::task::spawn_blocking(move || crate::auth::hash_password(&password))
        .await
        .context("hashing the admin password")?
        .map_err(anyhow::Error::msg)?;
    let created = store
        .seed(&hash, is_default, now)
        .await
        .context("seeding first-start data")?;
    if created {
        tracing::info!("created user admin");
    }
    if let Some(admin) = store
        .user_by_name("admin")
        .await
        .context("reading the admin user")?
    {
        if admin.password_is_default {
            tracing::warn!("user admin still has the default password 'admin'; change it with `rollbridge user passwd admin` or PUT /api/password");
        }
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paused time: the clock only moves when every task waits, so the elapsed time below is
    /// the tasks' virtual time, not this machine's speed.
    #[tokio::test(start_paused = true)]
    async fn background_tasks_share_one_grace_period() {
        let grace = std::time::Duration::from_secs(10);
        let stuck = || {
            tokio::spawn(async {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            })
        };
        let quick = tokio::spawn(async {});
        let started = tokio::time::Instant::now();
        finish_within(vec![stuck(), quick, stuck(), stuck()], grace).await;
        assert_eq!(started.elapsed(), grace, "three stuck tasks, one grace");
    }
}
