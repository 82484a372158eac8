//! Options of the Docker agent: `rollbridge agent` (remote) and the agent embedded in `serve`.

use clap::Args;

/// `rollbridge agent`.
#[derive(Debug, Clone, Default, Args)]
pub struct AgentArgs {}

/// The agent embedded in `rollbridge serve` for the local Docker socket.
#[derive(Debug, Clone, Default, Args)]
pub struct LocalAgentArgs {}
