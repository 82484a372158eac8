//! Options of the Artifactory deploy-request poller (artifactory-monitor's names kept as aliases).

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct ArtifactoryArgs {}
