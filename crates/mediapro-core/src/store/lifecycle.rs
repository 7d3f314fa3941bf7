//! Status changes of one task, each a compare-and-set.

use sqlx::AnyConnection;
use uuid::Uuid;

use super::{COLUMNS, StoreError, TaskStore, micros, row};
use crate::task::{Task, TaskStatus, new_job_id, now};

/// What a running attempt learns when it renews its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Still ours: keep going.
    Held,
    /// A client cancelled the task: stop now.
    Cancelled,
    /// Another attempt owns the task, or it is final: stop, write nothing.
    Lost,
}

/// Answer to a worker that wants to run a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Run it: this is attempt number `n`.
    Claimed(i64),
    /// A live attempt holds the task (its lease is fresh): try again later.
    Held,
    /// Final (e.g. cancelled while queued) or unknown: nothing to run.
    Gone,
}

/// Answer to a cancel request.
#[derive(Debug)]
pub enum Cancel {
    Cancelled(Task),
    AlreadyFinal(Task),
    NotFound,
}

/// Answer to a retry request.
#[derive(Debug)]
pub enum Retry {
    Requeued(Task),
    NotRetryable(Task),
    NotFound,
}

impl TaskStore {
    /// Records a new task (group-committed with concurrent inserts).
    pub async fn insert(&self, task: &Task) -> Result<(), StoreError> {
        self.inserter.insert(task.clone()).await
    }

    /// Completes a download and, in the same transaction, records the processing
    /// task chained after it (pending, to be queued by the caller), so a chain is
    /// never half-written.
    pub async fn complete_and_chain(
        &self,
        task_id: Uuid,
        attempt: i64,
        downloaded_files: &[String],
        next: &Task,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let files = serde_json::to_string(downloaded_files)
            .map_err(|e| StoreError::Corrupt { task_id: task_id.to_string(), why: e.to_string() })?;
        let t = micros(now());
        let done = sqlx::query(
            "UPDATE tasks SET status = 'completed', progress = 100, completed_at = $3, updated_at = $3, \
             downloaded_files = $4, error = NULL, next_task_id = $5 \
             WHERE task_id = $1 AND attempts = $2 AND status = 'downloading'",
        )
        .bind(task_id.to_string())
        .bind(attempt)
        .bind(t)
        .bind(files)
        .bind(next.task_id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_row(&mut tx, next).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn get(&self, task_id: Uuid) -> Result<Option<Task>, StoreError> {
        let row =
            sqlx::query_as::<_, row::TaskRow>(&format!("SELECT {COLUMNS} FROM tasks WHERE task_id = $1"))
                .bind(task_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        row.map(row::TaskRow::into_task).transpose()
    }

    /// Removes a task that was never queued (the queue refused it).
    pub async fn delete_pending(&self, task_id: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM tasks WHERE task_id = $1 AND status = 'pending'")
            .bind(task_id.to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// A worker takes the task: `pending` → the kind's running status, with a new
    /// attempt number and a fresh lease. A task already running is taken over only
    /// when its lease is older than `lease_timeout` (its worker died), so a job
    /// delivered twice never runs twice at once.
    pub async fn claim(
        &self,
        task_id: Uuid,
        running: TaskStatus,
        worker: &str,
        lease_timeout: std::time::Duration,
    ) -> Result<Claim, StoreError> {
        let t = micros(now());
        let stale = t - i64::try_from(lease_timeout.as_micros()).unwrap_or(i64::MAX);
        let attempt: Option<(i64,)> = sqlx::query_as(
            "UPDATE tasks SET status = $2, attempts = attempts + 1, started_at = $3, updated_at = $3, \
             heartbeat_at = $3, worker = $4, progress = 0, error = NULL, downloaded_files = '[]', \
             output_file = NULL, completed_at = NULL \
             WHERE task_id = $1 AND (status = 'pending' \
                OR (status = $2 AND (heartbeat_at IS NULL OR heartbeat_at < $5))) \
             RETURNING attempts",
        )
        .bind(task_id.to_string())
        .bind(running.as_str())
        .bind(t)
        .bind(worker)
        .bind(stale)
        .fetch_optional(&self.writer)
        .await?;
        if let Some((n,)) = attempt {
            return Ok(Claim::Claimed(n));
        }
        Ok(match self.get(task_id).await? {
            Some(task) if !task.status.is_final() && task.status != TaskStatus::Pending => Claim::Held,
            _ => Claim::Gone,
        })
    }

    /// Renews the running attempt's lease (recording its progress), and tells it
    /// whether to go on.
    pub async fn heartbeat(&self, task_id: Uuid, attempt: i64, progress: f64) -> Result<Lease, StoreError> {
        let t = micros(now());
        let renewed = sqlx::query(
            "UPDATE tasks SET heartbeat_at = $3, progress = $4, \
             updated_at = CASE WHEN progress = $4 THEN updated_at ELSE $3 END \
             WHERE task_id = $1 AND attempts = $2 AND status IN ('downloading', 'processing')",
        )
        .bind(task_id.to_string())
        .bind(attempt)
        .bind(t)
        .bind(progress)
        .execute(&self.writer)
        .await?;
        if renewed.rows_affected() == 1 {
            return Ok(Lease::Held);
        }
        let status: Option<(String,)> = sqlx::query_as("SELECT status FROM tasks WHERE task_id = $1")
            .bind(task_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(match status {
            Some((s,)) if s == TaskStatus::Cancelled.as_str() => Lease::Cancelled,
            _ => Lease::Lost,
        })
    }

    /// `DELETE /api/tasks/{id}`: any unfinished task → `cancelled`. A running
    /// attempt notices at its next lease renewal and kills its subprocess.
    pub async fn cancel(&self, task_id: Uuid) -> Result<Cancel, StoreError> {
        let t = micros(now());
        let done = sqlx::query(
            "UPDATE tasks SET status = 'cancelled', completed_at = $2, updated_at = $2, error = NULL \
             WHERE task_id = $1 AND status IN ('pending', 'downloading', 'processing')",
        )
        .bind(task_id.to_string())
        .bind(t)
        .execute(&self.writer)
        .await?;
        Ok(match (done.rows_affected(), self.get(task_id).await?) {
            (_, None) => Cancel::NotFound,
            (1, Some(task)) => Cancel::Cancelled(task),
            (_, Some(task)) => Cancel::AlreadyFinal(task),
        })
    }

    /// `POST /api/tasks/{id}/retry`: `failed`/`cancelled` → `pending` with a new job
    /// id (the caller queues it); the next claim counts the attempt.
    pub async fn retry(&self, task_id: Uuid) -> Result<Retry, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET status = 'pending', progress = 0, completed_at = NULL, error = NULL, \
             updated_at = $2, job_id = $3 WHERE task_id = $1 AND status IN ('failed', 'cancelled')",
        )
        .bind(task_id.to_string())
        .bind(micros(now()))
        .bind(new_job_id())
        .execute(&self.writer)
        .await?;
        Ok(match (done.rows_affected(), self.get(task_id).await?) {
            (_, None) => Retry::NotFound,
            (1, Some(task)) => Retry::Requeued(task),
            (_, Some(task)) => Retry::NotRetryable(task),
        })
    }

    /// Undoes [`retry`](Self::retry) when the job could not be queued.
    pub async fn fail_pending(&self, task_id: Uuid, job_id: &str, reason: &str) -> Result<bool, StoreError> {
        let t = micros(now());
        let done = sqlx::query(
            "UPDATE tasks SET status = 'failed', completed_at = $3, updated_at = $3, error = $4 \
             WHERE task_id = $1 AND status = 'pending' AND job_id = $2",
        )
        .bind(task_id.to_string())
        .bind(job_id)
        .bind(t)
        .bind(reason)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The running attempt succeeded with these storage-relative files.
    pub async fn complete(
        &self,
        task_id: Uuid,
        attempt: i64,
        downloaded_files: &[String],
        output_file: Option<&str>,
    ) -> Result<bool, StoreError> {
        let t = micros(now());
        let files = serde_json::to_string(downloaded_files)
            .map_err(|e| StoreError::Corrupt { task_id: task_id.to_string(), why: e.to_string() })?;
        let done = sqlx::query(
            "UPDATE tasks SET status = 'completed', progress = 100, completed_at = $3, updated_at = $3, \
             downloaded_files = $4, output_file = $5, error = NULL \
             WHERE task_id = $1 AND attempts = $2 AND status IN ('downloading', 'processing')",
        )
        .bind(task_id.to_string())
        .bind(attempt)
        .bind(t)
        .bind(files)
        .bind(output_file)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The running attempt failed for good.
    pub async fn fail(&self, task_id: Uuid, attempt: i64, reason: &str) -> Result<bool, StoreError> {
        let t = micros(now());
        let done = sqlx::query(
            "UPDATE tasks SET status = 'failed', completed_at = $3, updated_at = $3, error = $4 \
             WHERE task_id = $1 AND attempts = $2 AND status IN ('downloading', 'processing')",
        )
        .bind(task_id.to_string())
        .bind(attempt)
        .bind(t)
        .bind(reason)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The running attempt failed transiently and the job will run again: back to
    /// `pending`, keeping the reason visible meanwhile.
    pub async fn requeue(&self, task_id: Uuid, attempt: i64, reason: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET status = 'pending', progress = 0, updated_at = $3, error = $4 \
             WHERE task_id = $1 AND attempts = $2 AND status IN ('downloading', 'processing')",
        )
        .bind(task_id.to_string())
        .bind(attempt)
        .bind(micros(now()))
        .bind(reason)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Fails a task whatever attempt is running (used when a job cannot even be
    /// decoded or claimed properly). Final tasks are left alone.
    pub async fn fail_unfinished(&self, task_id: Uuid, reason: &str) -> Result<bool, StoreError> {
        let t = micros(now());
        let done = sqlx::query(
            "UPDATE tasks SET status = 'failed', completed_at = $2, updated_at = $2, error = $3 \
             WHERE task_id = $1 AND status IN ('pending', 'downloading', 'processing')",
        )
        .bind(task_id.to_string())
        .bind(t)
        .bind(reason)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Number of tasks (for tests and metrics).
    pub async fn count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tasks").fetch_one(&self.pool).await?;
        Ok(n)
    }
}

pub(super) async fn insert_row(conn: &mut AnyConnection, task: &Task) -> Result<(), StoreError> {
    let r = row::TaskRow::from_task(task)?;
    sqlx::query(
        "INSERT INTO tasks (task_id, kind, status, progress, created_at, started_at, completed_at, \
         updated_at, request, downloaded_files, output_file, error, attempts, worker, parent_task_id, \
         next_task_id, job_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(r.task_id)
    .bind(r.kind)
    .bind(r.status)
    .bind(r.progress)
    .bind(r.created_at)
    .bind(r.started_at)
    .bind(r.completed_at)
    .bind(r.created_at)
    .bind(r.request)
    .bind(r.downloaded_files)
    .bind(r.output_file)
    .bind(r.error)
    .bind(r.attempts)
    .bind(r.worker)
    .bind(r.parent_task_id)
    .bind(r.next_task_id)
    .bind(r.job_id)
    .execute(conn)
    .await?;
    Ok(())
}
