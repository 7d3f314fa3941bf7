//! Background keepers every worker runs beside its jobs (several workers doing so
//! is harmless: each change is a compare-and-set).
//!
//! - The reconciler re-queues accepted tasks whose job Redis no longer has (Redis
//!   restarted without its data, or a push was lost), so nothing accepted is ever
//!   left pending forever.
//! - Retention removes the files and records of tasks finished more than
//!   `limits.retention_days` ago, and uploads older than that.
//! - The webhook deliverer (`crates/worker/src/webhooks.rs`) sends the outbox's
//!   due messages.
//! - The subscription scheduler (`crates/worker/src/subscriptions.rs`) starts due
//!   checks and records finished ones; one process acts at a time (a Redis lease).

use std::time::Duration;

use mediapro_core::store::StoreError;
use mediapro_queue::{DispatchError, QueueError};
use time::OffsetDateTime;

use crate::context::JobContext;

pub async fn run(ctx: JobContext) {
    tokio::join!(
        reconcile_loop(&ctx),
        retention_loop(&ctx),
        crate::webhooks::deliver_loop(&ctx),
        crate::subscriptions::schedule_loop(&ctx)
    );
}

#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
}

async fn reconcile_loop(ctx: &JobContext) {
    let every = Duration::from_secs(ctx.settings.worker.reconcile_interval_seconds);
    loop {
        tokio::time::sleep(every).await;
        match reconcile(ctx, every).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(requeued = n, "re-queued tasks whose job was lost"),
            Err(e) => tracing::warn!(error = %e, "reconciler pass failed"),
        }
    }
}

/// One pass; returns how many tasks were re-queued.
pub async fn reconcile(ctx: &JobContext, pending_grace: Duration) -> Result<usize, KeeperError> {
    let now = OffsetDateTime::now_utc();
    let lease = Duration::from_secs(ctx.settings.worker.lease_seconds);
    let stale = ctx.store().stale_tasks(now - pending_grace, now - lease, 500).await?;
    let mut requeued = 0;
    for task in stale {
        let queue = task.kind;
        if ctx.dispatcher.queue().job_is_live(queue, &task.job_id).await? {
            continue;
        }
        if ctx.dispatcher.requeue_lost(&task).await? {
            tracing::info!(task_id = %task.task_id, "job was missing from the queue; re-queued");
            requeued += 1;
        }
    }
    Ok(requeued)
}

async fn retention_loop(ctx: &JobContext) {
    let every = Duration::from_secs(ctx.settings.worker.retention_interval_seconds);
    loop {
        tokio::time::sleep(every).await;
        match apply_retention(ctx).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "retention removed old tasks"),
            Err(e) => tracing::warn!(error = %e, "retention pass failed"),
        }
    }
}

/// Removes finished tasks older than the retention age (files first, then the
/// row: a crash in between leaves a row whose files are gone, which
/// `download-result` reports as 404, never a half-deleted file served).
pub async fn apply_retention(ctx: &JobContext) -> Result<usize, KeeperError> {
    let age = Duration::from_secs(ctx.settings.limits.retention_days * 86_400);
    let cutoff = OffsetDateTime::now_utc() - age;
    let ids = ctx.store().finished_before(cutoff, 1000).await?;
    let mut removed = 0;
    for id in ids {
        for dir in [ctx.layout.download_dir(id), ctx.layout.processed_dir(id)] {
            let _ = tokio::fs::remove_dir_all(dir).await;
        }
        if ctx.store().delete_finished(id).await? {
            removed += 1;
        }
    }
    removed += remove_old_uploads(ctx, std::time::SystemTime::now() - age).await;
    Ok(removed)
}

async fn remove_old_uploads(ctx: &JobContext, cutoff: std::time::SystemTime) -> usize {
    let Ok(mut entries) = tokio::fs::read_dir(ctx.layout.root().join("uploads")).await else {
        return 0;
    };
    let mut removed = 0;
    while let Ok(Some(entry)) = entries.next_entry().await {
        let old = entry.metadata().await.ok().and_then(|m| m.modified().ok()).is_some_and(|t| t < cutoff);
        if old && tokio::fs::remove_dir_all(entry.path()).await.is_ok() {
            removed += 1;
        }
    }
    removed
}
