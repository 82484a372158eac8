//! The Docker agent: an Omaha client that pulls images and recreates matching containers.

use crate::startup::Background;

/// `rollbridge agent`.
pub async fn run(_args: crate::config::AgentArgs) -> anyhow::Result<()> {
    anyhow::bail!("the Docker agent is not built yet")
}

/// Starts the agent embedded in `serve` when enabled.
pub fn start_local(
    _ctx: &Background,
    _args: &crate::config::LocalAgentArgs,
) -> Vec<tokio::task::JoinHandle<()>> {
    Vec::new()
}
