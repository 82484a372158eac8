//! What the Docker agents write: per-container outcomes in the activity stream, and the reads
//! the dashboard's agents page makes of them.

use super::packages::insert_activity;
use super::{Store, StoreError};
use crate::domain::{Activity, ActivityClass, NewActivity};
use crate::sql_params;

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

    /// The newest per-container agent reports (`ContainerUpdated` / `ContainerRolledBack` with an
    /// instance) of a team's applications, newest first: what the dashboard knows of the hosts
    /// running the agent and their containers.
    pub async fn agent_reports(
        &self,
        team_id: &str,
        limit: i64,
    ) -> Result<Vec<Activity>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!(
                    "{} WHERE app.team_id = ? AND a.class IN (?, ?) AND a.instance_id IS NOT NULL \
                     ORDER BY a.created_ts DESC, a.id DESC LIMIT {}",
                    super::instances::ACTIVITY_SELECT,
                    limit.clamp(1, 5000)
                ),
                sql_params![
                    team_id,
                    ActivityClass::ContainerUpdated.code(),
                    ActivityClass::ContainerRolledBack.code()
                ],
            )
            .await?;
        rows.iter()
            .map(super::instances::activity_from_row)
            .collect()
    }
}
