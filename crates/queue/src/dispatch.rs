//! The dispatcher: the one place that puts tasks on queues. Every way a task
//! gets a job — a submission, a client's retry, a download's chained processing
//! task, a transient failure's next attempt, a task whose job Redis lost — goes
//! through it, so "the task row first, then the job, then undo if the push
//! failed" is written once:
//!
//! - the row is written first, so a worker that picks the job up always finds it;
//! - the job id is recorded on the row before the push, so the reconciler can
//!   tell a live job from a lost one;
//! - if the push fails, the row is compensated (a fresh submission is deleted —
//!   the client gets a 503 and nothing is left behind; a retry is failed with the
//!   reason; a chained task is failed after a few attempts), or, where the task
//!   was already accepted, left pending for the reconciler to push again.

use std::{sync::Arc, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use mediapro_core::{
    Code, HasCode,
    retry::{Decision, RetryPolicy},
    store::{Cancel, Retry, StaleTask, StoreError, TaskStore},
    task::{Phase, Task, TaskKind, TaskRequest, TaskStatus, new_job_id},
    view::TaskView,
};
use uuid::Uuid;

use crate::{QueueClient, QueueError};

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl HasCode for DispatchError {
    fn code(&self) -> Code {
        match self {
            DispatchError::Store(e) => e.code(),
            DispatchError::Queue(e) => e.code(),
        }
    }
}

/// What became of a transient failure.
#[derive(Debug, Clone, PartialEq)]
pub enum Requeued {
    /// The next attempt is queued to start after this delay.
    After(Duration),
    /// No attempts left: the task failed with the reason.
    GaveUp,
    /// The task changed under this attempt (cancelled, taken over): nothing done.
    Stale,
}

#[derive(Clone)]
pub struct Dispatcher {
    store: TaskStore,
    queue: Arc<QueueClient>,
    retry: RetryPolicy,
}

impl Dispatcher {
    pub fn new(store: TaskStore, queue: Arc<QueueClient>, retry: RetryPolicy) -> Self {
        Self { store, queue, retry }
    }

    pub fn store(&self) -> &TaskStore {
        &self.store
    }

    pub fn queue(&self) -> &QueueClient {
        &self.queue
    }

    /// Tells event-stream clients (on every API host) that the task changed:
    /// its current state, as clients see it. Best effort.
    pub async fn publish(&self, task: &Task) {
        match serde_json::to_string(&TaskView::from(task)) {
            Ok(json) => self.queue.publish_event(&json).await,
            Err(e) => tracing::warn!(error = %e, "task event does not serialise"),
        }
    }

    /// [`publish`](Self::publish) of the task as the store has it now.
    pub async fn publish_current(&self, task_id: Uuid) {
        if let Ok(Some(task)) = self.store.get(task_id).await {
            self.publish(&task).await;
        }
    }

    /// A new task from a client: stored, then queued; if Redis refuses the job
    /// the row is removed again and the caller answers 503.
    pub async fn submit(&self, task: &Task) -> Result<(), DispatchError> {
        self.store.insert(task).await?;
        if let Err(err) = self.push(task, Duration::ZERO).await {
            if let Err(cleanup) = self.store.delete_pending(task.task_id).await {
                tracing::error!(error = %cleanup, task_id = %task.task_id, "could not remove unqueued task");
            }
            return Err(err.into());
        }
        self.publish(task).await;
        Ok(())
    }

    /// A client's cancel; a running attempt notices at its next lease renewal.
    /// Cancelling a collection cancels every pending and running child with it
    /// (after the parent, so an expansion racing it either created its children
    /// before — they are cancelled here — or finds the parent cancelled and
    /// creates none).
    pub async fn cancel(&self, task_id: Uuid) -> Result<Cancel, DispatchError> {
        let answer = self.store.cancel(task_id).await?;
        if let Cancel::Cancelled(task) = &answer {
            self.publish(task).await;
            if task.kind() == TaskKind::Playlist {
                for child in self.store.children(task_id, TaskStatus::ACTIVE).await? {
                    if let Cancel::Cancelled(child) = self.store.cancel(child.task_id).await? {
                        self.publish(&child).await;
                    }
                }
            }
        }
        Ok(answer)
    }

    /// A client's retry of a failed or cancelled task: back to pending with a new
    /// job; if Redis refuses it the task is failed again with the reason.
    pub async fn retry(&self, task_id: Uuid) -> Result<Retry, DispatchError> {
        // A collection: its failed and cancelled children run again (its
        // completed ones are kept), queued before the parent, so the parent's
        // job never sees them still final.
        if let Some(task) = self.store.get(task_id).await?
            && task.kind() == TaskKind::Playlist
            && TaskStatus::RETRYABLE.contains(&task.status)
        {
            for child in self.store.children(task_id, TaskStatus::RETRYABLE).await? {
                if let Err(e) = self.retry_one(child.task_id).await {
                    tracing::warn!(%task_id, child = %child.task_id, error = %e, "child retry failed");
                }
            }
        }
        self.retry_one(task_id).await
    }

    async fn retry_one(&self, task_id: Uuid) -> Result<Retry, DispatchError> {
        let answer = self.store.retry(task_id).await?;
        if let Retry::Requeued(task) = &answer
            && let Err(err) = self.push(task, Duration::ZERO).await
        {
            self.store
                .fail_pending(task.task_id, &task.job_id, "the retry could not be queued (Redis unavailable)")
                .await?;
            return Err(err.into());
        }
        if let Retry::Requeued(task) = &answer {
            self.publish(task).await;
        }
        Ok(answer)
    }

    /// Attempt `attempt` of a collection listed its entries: the children are
    /// recorded with the parent's new `request` in one compare-and-set (nothing if
    /// the parent was cancelled or taken over meanwhile: `false`), then queued. A
    /// child whose push fails stays pending, and the reconciler queues it.
    pub async fn expand(
        &self,
        parent: Uuid,
        attempt: i64,
        request: &TaskRequest,
        children: &[Task],
    ) -> Result<bool, DispatchError> {
        if !self.store.expand(parent, attempt, request, children).await? {
            return Ok(false);
        }
        for child in children {
            if let Err(err) = self.push(child, Duration::ZERO).await {
                tracing::warn!(%parent, child = %child.task_id, error = %err, "child not queued; the reconciler will");
            }
        }
        self.publish_current(parent).await;
        Ok(true)
    }

    /// A download attempt completed and asked for processing: the download is
    /// completed and `next` recorded in one transaction, then `next` is queued
    /// (a few tries, then it fails with the reason rather than stay pending).
    /// `false`: the download changed under this attempt; nothing was written.
    pub async fn chain(
        &self,
        task_id: Uuid,
        attempt: i64,
        files: &[String],
        next: &Task,
    ) -> Result<bool, DispatchError> {
        if !self.store.complete_and_chain(task_id, attempt, files, next).await? {
            return Ok(false);
        }
        let push = || self.push(next, Duration::ZERO);
        let backoff = ExponentialBuilder::default().with_min_delay(Duration::from_secs(1)).with_max_times(3);
        if let Err(err) = push.retry(backoff).await {
            let reason = format!("could not be queued: {err}");
            self.store.fail_unfinished(next.task_id, &reason).await?;
        }
        self.publish_current(task_id).await;
        self.publish_current(next.task_id).await;
        Ok(true)
    }

    /// Attempt `attempt` failed for a transient reason: per the retry policy,
    /// the task goes back to pending with a new job scheduled after the backoff,
    /// or fails for good. If the push fails the task stays pending with its new
    /// job id, and the reconciler queues it again.
    pub async fn retry_later(
        &self,
        task_id: Uuid,
        attempt: i64,
        reason: &str,
    ) -> Result<Requeued, DispatchError> {
        let delay = match self.retry.decide(attempt) {
            Decision::GiveUp => {
                let reason = format!("{reason} (gave up after {attempt} attempts)");
                return Ok(if self.store.fail(task_id, attempt, &reason).await? {
                    Requeued::GaveUp
                } else {
                    Requeued::Stale
                });
            }
            Decision::RetryAfter(delay) => delay,
        };
        let job_id = new_job_id();
        if !self.store.requeue(task_id, attempt, reason, &job_id).await? {
            return Ok(Requeued::Stale);
        }
        let Some(task) = self.store.get(task_id).await? else { return Ok(Requeued::Stale) };
        if let Err(err) = self.push(&task, delay).await {
            tracing::warn!(%task_id, error = %err, "retry could not be queued; the reconciler will");
        }
        self.publish(&task).await;
        Ok(Requeued::After(delay))
    }

    /// A pending task whose site (profile `site`) may not be asked yet (`site_gate.rs`): it
    /// stays pending (`waiting_for_site`) with a new job queued after `delay`,
    /// so the worker slot that fetched it is free meanwhile. `false`: the task
    /// changed (cancelled, or another delivery re-queued it first); nothing done.
    /// If the push fails the task keeps its new job id and the reconciler
    /// queues it again.
    pub async fn wait_for_site(
        &self,
        task: &Task,
        site: &str,
        delay: Duration,
    ) -> Result<bool, DispatchError> {
        let job_id = new_job_id();
        if !self.store.wait_for_site(task.task_id, &task.job_id, &job_id, site).await? {
            return Ok(false);
        }
        if let Err(err) = self.queue.push_after(task.kind(), task.task_id, &job_id, delay).await {
            tracing::warn!(task_id = %task.task_id, error = %err, "waiting task not queued; the reconciler will");
        }
        // Clients hear of the wait once, not at every look at the site.
        if task.detail.phase != Some(Phase::WaitingForSite) {
            self.publish_current(task.task_id).await;
        }
        Ok(true)
    }

    /// A task the reconciler found without a live job: it gets a new job id
    /// (compare-and-set, so of several reconcilers exactly one pushes).
    pub async fn requeue_lost(&self, stale: &StaleTask) -> Result<bool, DispatchError> {
        let job_id = new_job_id();
        if !self.store.reassign_job(stale, &job_id).await? {
            return Ok(false);
        }
        self.queue.push(stale.kind, stale.task_id, &job_id).await?;
        Ok(true)
    }

    async fn push(&self, task: &Task, delay: Duration) -> Result<(), QueueError> {
        self.queue.push_after(task.kind(), task.task_id, &task.job_id, delay).await
    }
}
