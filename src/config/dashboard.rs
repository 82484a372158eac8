//! Options of the web dashboard.

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct DashboardArgs {}
