//! Release sources: every webhook, poller and manual trigger turns its input into one
//! [`Release`](crate::domain::Release); [`ingest::ingest`] validates it, creates the package
//! idempotently and applies the promotion rule of the matching binding.

pub mod artifactory;
pub mod callback;
pub mod digest;
pub mod dockerhub;
pub mod generic;
pub mod ingest;
pub mod notify;
pub mod registry;

use crate::startup::Background;

/// Starts the sources' background tasks (Artifactory poller, notification sender); returns
/// before the server answers its first request.
pub async fn start(
    ctx: &Background,
    args: &crate::config::ServeArgs,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    tasks.extend(notify::start(ctx, &args.sources).await);
    tasks.extend(artifactory::start(ctx, &args.artifactory));
    tasks
}
