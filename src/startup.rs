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
use crate::store::Store;

pub struct App {
    pub addr: SocketAddr,
    pub state: AppState,
    listener: tokio::net::TcpListener,
}

impl App {
    /// Opens the database, seeds it and binds the listener (port 0 picks a free port).
    pub async fn build(args: &ServeArgs, clock: Clock) -> anyhow::Result<Self> {
        let store = Store::open(&args.database.database_url)
            .await
            .context("opening the database")?;
        seed(&store, args.admin_password.as_deref(), clock.now_ms()).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let state = AppState::new(
            store,
            clock,
            OmahaOptions {
                deny_as_noupdate: args.omaha_deny_as_noupdate,
            },
            args.max_body_bytes,
        );
        Ok(Self {
            addr,
            state,
            listener,
        })
    }

    /// Serves until `shutdown` resolves, then waits for open connections to finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        tracing::info!(addr = %self.addr, "rollbridge listening");
        warp::serve(http::routes(self.state))
            .incoming(self.listener)
            .graceful(shutdown)
            .run()
            .await;
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
