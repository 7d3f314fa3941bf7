//! Queries of the background keepers: the reconciler (tasks whose job Redis lost)
//! and retention (finished tasks past their age).

use uuid::Uuid;

use super::{StoreError, TaskStore, micros};
use crate::task::{TaskKind, now};

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
        let rows: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(&format!(
            "SELECT task_id, kind, job_id, updated_at FROM tasks \
             WHERE (status = 'pending' AND updated_at < $1) \
                OR (status IN ('downloading', 'processing') AND heartbeat_at < $2) \
             ORDER BY updated_at LIMIT {limit}"
        ))
        .bind(micros(pending_before))
        .bind(micros(lease_before))
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
        let done = sqlx::query(
            "UPDATE tasks SET job_id = $3, updated_at = $4 WHERE task_id = $1 AND updated_at = $2",
        )
        .bind(task.task_id.to_string())
        .bind(task.updated_at)
        .bind(new_job_id)
        .bind(micros(now()))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Finished tasks completed before `before`.
    pub async fn finished_before(
        &self,
        before: time::OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Uuid>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(&format!(
            "SELECT task_id FROM tasks WHERE status IN ('completed', 'failed', 'cancelled') \
             AND completed_at < $1 ORDER BY completed_at LIMIT {limit}"
        ))
        .bind(micros(before))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().filter_map(|(id,)| id.parse().ok()).collect())
    }

    /// Removes a finished task's row (after its files).
    pub async fn delete_finished(&self, task_id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM tasks WHERE task_id = $1 AND status IN ('completed', 'failed', 'cancelled')",
        )
        .bind(task_id.to_string())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
