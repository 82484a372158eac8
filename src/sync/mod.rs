//! Upstream syncer: follows another Omaha server's channels; payload hosting.

use crate::startup::Background;

/// Starts the syncer when `--sync-upstream` is set.
pub fn start(
    _ctx: &Background,
    _args: &crate::config::SyncArgs,
) -> Vec<tokio::task::JoinHandle<()>> {
    Vec::new()
}
