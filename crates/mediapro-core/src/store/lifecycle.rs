//! Status changes of one task, each a compare-and-set built by
//! [`Transition`](super::transition::Transition) from the status sets on
//! [`TaskStatus`]. A change to a final status also queues its webhook messages
//! (`outbox.rs`) in the same transaction ([`TaskStore::finish`]).

use uuid::Uuid;

use super::{
    COLUMNS, StoreError, TaskStore, micros, outbox, row,
    transition::{Sql, Transition},
};
use crate::{
    task::{ProgressDetail, Task, TaskKind, TaskRequest, TaskStatus, new_job_id, now},
    webhooks::WebhookEvent,
};
use sqlx::AnyConnection;
use strum::IntoEnumIterator;

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
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Run it: this is attempt number `attempt`, and this is what to do.
    Claimed { attempt: i64, request: TaskRequest },
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

/// How the `error` of a task skipped as archived begins ([`TaskStore::skip`]): a
/// skipped task is `cancelled`, and this tells it from one a client cancelled.
pub const SKIPPED: &str = "skipped: ";

impl TaskStore {
    /// Records a new task (group-committed with concurrent inserts).
    pub async fn insert(&self, task: &Task) -> Result<(), StoreError> {
        self.inserter.insert(task.clone()).await
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
        Sql::new("DELETE FROM tasks WHERE task_id = ")
            .arg(task_id.to_string())
            .text(" AND status IN ")
            .statuses(&[TaskStatus::Pending])
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// A worker takes the task: `pending` → its kind's running status, with a new
    /// attempt number and a fresh lease, returning what to run in the same round
    /// trip. A task already running is taken over only when its lease is older
    /// than `lease_timeout` (its worker died), so a job delivered twice never
    /// runs twice at once.
    pub async fn claim(
        &self,
        task_id: Uuid,
        worker: &str,
        lease_timeout: std::time::Duration,
    ) -> Result<Claim, StoreError> {
        let t = micros(now());
        let stale = t - i64::try_from(lease_timeout.as_micros()).unwrap_or(i64::MAX);
        // status = CASE kind WHEN 'download' THEN 'downloading' … END, from the enums.
        let mut running = Sql::new("status = CASE kind");
        for kind in TaskKind::iter() {
            running = running.text(" WHEN ").arg(kind.as_str()).text(" THEN ").arg(kind.running_status());
        }
        let claimable = Sql::new("status IN ")
            .statuses(&[TaskStatus::Pending])
            .text(" OR (status IN ")
            .statuses(TaskStatus::RUNNING)
            .text(" AND (heartbeat_at IS NULL OR heartbeat_at < ")
            .arg(stale)
            .text("))");
        let claimed: Option<(i64, String)> = Transition::keep()
            .set_sql(running.text(" END"))
            .set_sql(Sql::new("attempts = attempts + 1"))
            .set("started_at", t)
            .set("updated_at", t)
            .set("heartbeat_at", t)
            .set("worker", worker)
            .set("progress", 0.0)
            .set("progress_detail", None::<&str>)
            .set("error", None::<&str>)
            .set("downloaded_files", "[]")
            .set("output_file", None::<&str>)
            .set("completed_at", None::<&str>)
            .guard(claimable)
            .returning("attempts, request")
            .apply_returning(&task_id.to_string(), &self.writer)
            .await?;
        if let Some((attempt, request)) = claimed {
            let request = serde_json::from_str(&request)
                .map_err(|e| StoreError::Corrupt { task_id: task_id.to_string(), why: e.to_string() })?;
            return Ok(Claim::Claimed { attempt, request });
        }
        Ok(match self.get(task_id).await? {
            Some(task) if task.status.is_running() => Claim::Held,
            _ => Claim::Gone,
        })
    }

    /// Renews the running attempt's lease (recording its progress), and tells it
    /// whether to go on.
    pub async fn heartbeat(
        &self,
        task_id: Uuid,
        attempt: i64,
        progress: f64,
        detail: &ProgressDetail,
    ) -> Result<Lease, StoreError> {
        let t = micros(now());
        let detail = serde_json::to_string(detail).unwrap_or_default();
        let renewal = Transition::keep()
            .set("heartbeat_at", t)
            .set_sql(
                Sql::new("updated_at = CASE WHEN progress = ")
                    .arg(progress)
                    .text(" THEN updated_at ELSE ")
                    .arg(t)
                    .text(" END"),
            )
            .set("progress", progress)
            .set("progress_detail", detail)
            .from(TaskStatus::RUNNING)
            .attempt(attempt);
        let renewed = if self.webhooks.wants(WebhookEvent::TaskProgress) {
            self.renew_reporting_progress(task_id, renewal, progress).await?
        } else {
            renewal.apply(&task_id.to_string(), &self.writer).await?
        };
        if renewed {
            return Ok(Lease::Held);
        }
        Ok(match self.get(task_id).await? {
            Some(task) if task.status == TaskStatus::Cancelled => Lease::Cancelled,
            _ => Lease::Lost,
        })
    }

    /// A lease renewal when endpoints listen for `task.progress`: a renewal that
    /// moves the progress into another 10 % step queues a `task.progress` message
    /// in the same transaction (at most about ten per attempt). The step test is a
    /// guard on bound values, so no SQL function differs between the backends.
    async fn renew_reporting_progress(
        &self,
        task_id: Uuid,
        renewal: Transition,
        progress: f64,
    ) -> Result<bool, StoreError> {
        let low = (progress / 10.0).floor() * 10.0;
        let same_step = Sql::new("progress >= ").arg(low).text(" AND progress < ").arg(low + 10.0);
        if renewal.clone().guard(same_step).apply(&task_id.to_string(), &self.writer).await? {
            return Ok(true);
        }
        Ok(self.finish(task_id, renewal, None, Some(WebhookEvent::TaskProgress)).await?.is_some())
    }

    /// `DELETE /api/tasks/{id}`: any unfinished task → `cancelled`. A running
    /// attempt notices at its next lease renewal and kills its subprocess.
    pub async fn cancel(&self, task_id: Uuid) -> Result<Cancel, StoreError> {
        let t = micros(now());
        let cancelled = Transition::to(TaskStatus::Cancelled, t)
            .set("completed_at", t)
            .set("error", None::<&str>)
            .from(TaskStatus::ACTIVE);
        if let Some(task) = self.finish(task_id, cancelled, None, None).await? {
            return Ok(Cancel::Cancelled(task));
        }
        Ok(match self.get(task_id).await? {
            None => Cancel::NotFound,
            Some(task) => Cancel::AlreadyFinal(task),
        })
    }

    /// `POST /api/tasks/{id}/retry`: `failed`/`cancelled` → `pending` with a new job
    /// id (the caller queues it); the next claim counts the attempt.
    pub async fn retry(&self, task_id: Uuid) -> Result<Retry, StoreError> {
        let done = Transition::to(TaskStatus::Pending, micros(now()))
            .set("progress", 0.0)
            .set("completed_at", None::<&str>)
            .set("error", None::<&str>)
            .set("job_id", new_job_id())
            .from(TaskStatus::RETRYABLE)
            .apply(&task_id.to_string(), &self.writer)
            .await?;
        Ok(match (done, self.get(task_id).await?) {
            (_, None) => Retry::NotFound,
            (true, Some(task)) => Retry::Requeued(task),
            (false, Some(task)) => Retry::NotRetryable(task),
        })
    }

    /// Fails a pending task whose job `job_id` could not be queued.
    pub async fn fail_pending(&self, task_id: Uuid, job_id: &str, reason: &str) -> Result<bool, StoreError> {
        let t = micros(now());
        let failed = Transition::to(TaskStatus::Failed, t)
            .set("completed_at", t)
            .set("error", reason)
            .from(&[TaskStatus::Pending])
            .guard(Sql::new("job_id = ").arg(job_id));
        Ok(self.finish(task_id, failed, None, None).await?.is_some())
    }

    /// The running attempt succeeded with these storage-relative files.
    pub async fn complete(
        &self,
        task_id: Uuid,
        attempt: i64,
        downloaded_files: &[String],
        output_file: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = completed(task_id, attempt, downloaded_files, output_file)?;
        Ok(self.finish(task_id, done, None, None).await?.is_some())
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
        let done = completed(task_id, attempt, downloaded_files, None)?
            .set("next_task_id", next.task_id.to_string());
        Ok(self.finish(task_id, done, Some(next), None).await?.is_some())
    }

    /// The running attempt found its item in the download archive (`skip_archived`):
    /// → `cancelled` with the reason, which starts with [`SKIPPED`] (added if the
    /// caller's does not), so a retry downloads it after all.
    pub async fn skip(&self, task_id: Uuid, attempt: i64, reason: &str) -> Result<bool, StoreError> {
        let t = micros(now());
        let reason =
            if reason.starts_with(SKIPPED) { reason.to_owned() } else { format!("{SKIPPED}{reason}") };
        let skipped = Transition::to(TaskStatus::Cancelled, t)
            .set("completed_at", t)
            .set("error", reason)
            .from(TaskStatus::RUNNING)
            .attempt(attempt);
        Ok(self.finish(task_id, skipped, None, None).await?.is_some())
    }

    /// The running attempt failed for good.
    pub async fn fail(&self, task_id: Uuid, attempt: i64, reason: &str) -> Result<bool, StoreError> {
        let t = micros(now());
        let failed = Transition::to(TaskStatus::Failed, t)
            .set("completed_at", t)
            .set("error", reason)
            .from(TaskStatus::RUNNING)
            .attempt(attempt);
        Ok(self.finish(task_id, failed, None, None).await?.is_some())
    }

    /// The running attempt failed transiently and will run again as job
    /// `job_id` (queued by the caller): back to `pending`, keeping the reason
    /// visible meanwhile.
    pub async fn requeue(
        &self,
        task_id: Uuid,
        attempt: i64,
        reason: &str,
        job_id: &str,
    ) -> Result<bool, StoreError> {
        Transition::to(TaskStatus::Pending, micros(now()))
            .set("progress", 0.0)
            .set("error", reason)
            .set("job_id", job_id)
            .from(TaskStatus::RUNNING)
            .attempt(attempt)
            .apply(&task_id.to_string(), &self.writer)
            .await
    }

    /// Fails a task whatever attempt is running (used when a job cannot even be
    /// decoded or queued). Final tasks are left alone.
    pub async fn fail_unfinished(&self, task_id: Uuid, reason: &str) -> Result<bool, StoreError> {
        let t = micros(now());
        let failed = Transition::to(TaskStatus::Failed, t)
            .set("completed_at", t)
            .set("error", reason)
            .from(TaskStatus::ACTIVE);
        Ok(self.finish(task_id, failed, None, None).await?.is_some())
    }

    /// Applies a change to a final status (or a lease renewal that reports
    /// progress) and, in the same transaction, inserts
    /// `chained` (a pending task to run next; it inherits the callback) and queues
    /// the webhook messages of `event` (else of the new status) (`outbox.rs`): the
    /// event is durable as soon as the status is. `None`: the guard did not hold,
    /// nothing was written.
    async fn finish(
        &self,
        task_id: Uuid,
        change: Transition,
        chained: Option<&Task>,
        event: Option<WebhookEvent>,
    ) -> Result<Option<Task>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let row: Option<row::TaskRow> =
            change.returning(COLUMNS).apply_returning(&task_id.to_string(), &mut *tx).await?;
        // Dropping `tx` rolls back (nothing was changed anyway).
        let Some(row) = row else { return Ok(None) };
        let task = row.into_task()?;
        if let Some(next) = chained {
            let mut next = next.clone();
            next.callback_url.clone_from(&task.callback_url);
            insert_row(&mut tx, &next).await?;
        }
        if let Some(event) = event.or_else(|| WebhookEvent::for_status(task.status)) {
            outbox::enqueue(&mut tx, &self.webhooks, &task, event).await?;
        }
        tx.commit().await?;
        Ok(Some(task))
    }

    /// Number of tasks (for tests and metrics).
    pub async fn count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tasks").fetch_one(&self.pool).await?;
        Ok(n)
    }
}

/// Running attempt `attempt` → `completed` with its files.
fn completed(
    task_id: Uuid,
    attempt: i64,
    downloaded_files: &[String],
    output_file: Option<&str>,
) -> Result<Transition, StoreError> {
    let t = micros(now());
    let files = serde_json::to_string(downloaded_files)
        .map_err(|e| StoreError::Corrupt { task_id: task_id.to_string(), why: e.to_string() })?;
    Ok(Transition::to(TaskStatus::Completed, t)
        .set("progress", 100.0)
        .set("completed_at", t)
        .set("downloaded_files", files)
        .set("output_file", output_file)
        .set("error", None::<&str>)
        .from(TaskStatus::RUNNING)
        .attempt(attempt))
}

pub(super) async fn insert_row(conn: &mut AnyConnection, task: &Task) -> Result<(), StoreError> {
    let r = row::TaskRow::from_task(task)?;
    sqlx::query(
        "INSERT INTO tasks (task_id, kind, status, progress, created_at, started_at, completed_at, \
         updated_at, request, downloaded_files, output_file, error, attempts, worker, parent_task_id, \
         next_task_id, job_id, callback_url) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
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
    .bind(r.callback_url)
    .execute(conn)
    .await?;
    Ok(())
}
