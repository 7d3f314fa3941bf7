//! Cheap counts: for admission control (the API refuses submissions while too many
//! tasks are pending, `limits.max_pending_tasks`) and for the `mediapro_tasks`
//! gauge (`crates/queue/src/metrics.rs`). Both are answered from the
//! `(status, created_at)` index.

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

    /// How many tasks have each status (statuses without tasks are absent).
    /// A status the code does not know (a newer version's) is skipped.
    pub async fn count_by_status(&self) -> Result<Vec<(TaskStatus, i64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            Sql::new("SELECT status, COUNT(*) FROM tasks GROUP BY status").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().filter_map(|(s, n)| Some((s.parse().ok()?, n))).collect())
    }
}
