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

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        dashboard: super::DashboardArgs,
    }

    #[test]
    fn defaults_match_default_and_ranges_are_enforced() {
        let parsed = Probe::try_parse_from(["probe"]).unwrap().dashboard;
        let default = super::DashboardArgs::default();
        assert_eq!(parsed.session_minutes, default.session_minutes);
        assert_eq!(parsed.refresh_seconds, default.refresh_seconds);
        assert!(!parsed.secure_cookie);
        assert_eq!(default.session_ms(), 12 * 3_600_000);
        let set = Probe::try_parse_from([
            "probe",
            "--dashboard-session-minutes",
            "30",
            "--dashboard-secure-cookie",
            "--dashboard-refresh-seconds",
            "0",
        ])
        .unwrap()
        .dashboard;
        assert_eq!(set.session_ms(), 1_800_000);
        assert!(set.secure_cookie);
        assert_eq!(set.refresh_seconds, 0);
        assert!(Probe::try_parse_from(["probe", "--dashboard-session-minutes", "0"]).is_err());
    }
}
