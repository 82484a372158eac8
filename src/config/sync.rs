//! Options of the upstream syncer and payload hosting.

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct SyncArgs {}
