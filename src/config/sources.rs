//! Options of the release sources: webhook secrets and notification endpoints.

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct SourcesArgs {}
