//! Options of the web dashboard (`/ui/`): session lifetime, the cookie's `Secure` flag and how
//! often pages refresh their live parts.

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct DashboardArgs {
    /// How long a dashboard login lasts, in minutes (the session cookie expires with it).
    #[arg(
        long = "dashboard-session-minutes",
        env = "ROLLBRIDGE_DASHBOARD_SESSION_MINUTES",
        default_value_t = 720,
        value_parser = clap::value_parser!(u32).range(1..=525_600)
    )]
    pub session_minutes: u32,
    /// Mark the session cookie `Secure` (send it over HTTPS only). Turn on behind TLS.
    #[arg(
        long = "dashboard-secure-cookie",
        env = "ROLLBRIDGE_DASHBOARD_SECURE_COOKIE"
    )]
    pub secure_cookie: bool,
    /// Seconds between refreshes of a page's live parts (0 turns polling off).
    #[arg(
        long = "dashboard-refresh-seconds",
        env = "ROLLBRIDGE_DASHBOARD_REFRESH_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(0..=3600)
    )]
    pub refresh_seconds: u32,
}

impl Default for DashboardArgs {
    fn default() -> Self {
        Self {
            session_minutes: 720,
            secure_cookie: false,
            refresh_seconds: 10,
        }
    }
}

impl DashboardArgs {
    pub fn session_ms(&self) -> i64 {
        i64::from(self.session_minutes) * 60_000
    }
}
