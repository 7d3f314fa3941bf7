//! Queries of the background keepers: the reconciler (tasks whose job Redis lost)
//! and retention (finished tasks past their age).

use uuid::Uuid;

use super::{
    StoreError, TaskStore, micros,
    transition::{Sql, Transition},
};
use crate::task::{TaskKind, TaskStatus, now};

/// A task the reconciler should look at: pending for a while, or running with a
/// lease nobody renews.
#[derive(Debug, Clone)]
pub struct StaleTask {
    pub task_id: Uuid,
    pub kind: TaskKind,
    pub job_id: String,
    pub updated_at: i64,
}

impl TaskStore {
    pub async fn stale_tasks(
        &self,
        pending_before: time::OffsetDateTime,
        lease_before: time::OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<StaleTask>, StoreError> {
        let rows: Vec<(String, String, Option<String>, i64)> =
            Sql::new("SELECT task_id, kind, job_id, updated_at FROM tasks WHERE (status IN ")
                .statuses(&[TaskStatus::Pending])
                .text(" AND updated_at < ")
                .arg(micros(pending_before))
                .text(") OR (status IN ")
                .statuses(TaskStatus::RUNNING)
                .text(" AND heartbeat_at < ")
                .arg(micros(lease_before))
                .text(format!(") ORDER BY updated_at LIMIT {limit}"))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, kind, job, updated_at)| {
                Some(StaleTask {
                    task_id: id.parse().ok()?,
                    kind: kind.parse().ok()?,
                    job_id: job.unwrap_or_default(),
                    updated_at,
                })
            })
            .collect())
    }

    /// Gives a stale task a new job id, unless someone else touched it since it
    /// was read (another reconciler, or the task moved on): exactly one caller wins
    /// and pushes the new job.
    pub async fn reassign_job(&self, task: &StaleTask, new_job_id: &str) -> Result<bool, StoreError> {
        Transition::keep()
            .set("job_id", new_job_id)
            .set("updated_at", micros(now()))
            .guard(Sql::new("updated_at = ").arg(task.updated_at))
            .apply(&task.task_id.to_string(), &self.writer)
            .await
    }

    /// Finished tasks completed before `before`.
    pub async fn finished_before(
        &self,
        before: time::OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Uuid>, StoreError> {
        let rows: Vec<(String,)> = Sql::new("SELECT task_id FROM tasks WHERE status IN ")
            .statuses(TaskStatus::FINAL)
            .text(" AND completed_at < ")
            .arg(micros(before))
            .text(format!(" ORDER BY completed_at LIMIT {limit}"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().filter_map(|(id,)| id.parse().ok()).collect())
    }

    /// Removes a finished task's row (after its files), with its webhook messages.
    pub async fn delete_finished(&self, task_id: Uuid) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let deleted = Sql::new("DELETE FROM tasks WHERE task_id = ")
            .arg(task_id.to_string())
            .text(" AND status IN ")
            .statuses(TaskStatus::FINAL)
            .execute(&mut *tx)
            .await?;
        if deleted != 1 {
            return Ok(false);
        }
        super::outbox::delete_for_task(&mut tx, &task_id.to_string()).await?;
        tx.commit().await?;
        Ok(true)
    }
}
