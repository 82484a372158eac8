//! Re-checks groups marked "rollout in progress". The mark is cleared when an instance's
//! completion leaves no active instance behind the channel's version (`events`), but nothing
//! completes when the last instances behind go silent (they leave the one-day active window)
//! or when the channel moves back under a rollout; without this sweep such a group would show
//! "Rolling out" forever. Every replica may sweep: each group is re-checked in a transaction
//! holding its lock, so only one of them writes the `RolloutFinished` entry.

use std::time::Duration;

use super::events::finish_rollout_if_done;
use crate::store::rollout as rows;
use crate::store::{Store, StoreError};

/// Re-checks every group marked in progress; returns how many rollouts it finished.
pub async fn sweep(store: &Store, now: i64) -> Result<usize, StoreError> {
    let mut finished = 0;
    for group_id in store.groups_rolling_out().await? {
        match sweep_group(store, &group_id, now).await {
            Ok(true) => finished += 1,
            Ok(false) => {}
            // Busy or changed under us (a check is writing the group): the next sweep decides.
            Err(StoreError::Retryable(_) | StoreError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(finished)
}

async fn sweep_group(store: &Store, group_id: &str, now: i64) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let finished = match rows::lock_group(&mut tx, group_id).await? {
        Some(mut group) => finish_rollout_if_done(&mut tx, &mut group, now).await?,
        None => false,
    };
    if finished {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(finished)
}

/// Sweeps every `interval` until shutdown.
pub async fn run_periodically(
    store: Store,
    clock: crate::clock::Clock,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        match sweep(&store, clock.now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(groups = n, "rollouts finished by the sweep"),
            Err(e) => tracing::warn!(error = %e, "rollout sweep failed"),
        }
    }
}
