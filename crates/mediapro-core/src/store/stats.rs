//! Cheap counts for admission control: the API refuses submissions while too many
//! tasks are pending (`limits.max_pending_tasks`). `status IN (…)` is answered
//! from the `(status, created_at)` index.

use super::{StoreError, TaskStore, transition::Sql};
use crate::task::TaskStatus;

impl TaskStore {
    /// How many tasks are in one of `statuses`.
    pub async fn count_with_status(&self, statuses: &[TaskStatus]) -> Result<i64, StoreError> {
        let rows: Vec<(i64,)> = Sql::new("SELECT COUNT(*) FROM tasks WHERE status IN ")
            .statuses(statuses)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.first().map_or(0, |(n,)| *n))
    }
}
