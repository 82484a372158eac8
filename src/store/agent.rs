//! What the Docker agents write: per-container outcomes in the activity stream.

use super::packages::insert_activity;
use super::{Store, StoreError};
use crate::domain::NewActivity;

impl Store {
    /// Records one agent report (a container updated or rolled back) in the activity stream.
    pub async fn add_agent_activity(
        &self,
        activity: &NewActivity,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut db = self.db().clone();
        insert_activity(&mut db, activity, now).await
    }
}
