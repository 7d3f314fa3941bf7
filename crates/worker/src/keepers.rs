//! Background keepers every worker runs beside its jobs (several workers doing so
//! is harmless: each change is a compare-and-set).
//!
//! - The reconciler re-queues accepted tasks whose job Redis no longer has (Redis
//!   restarted without its data, or a push was lost), so nothing accepted is ever
//!   left pending forever.
//! - Retention removes the files and records of tasks finished more than
//!   `limits.retention_days` ago, and uploads older than that.
//! - The site checker analyzes each site profile's `check_url` once it is due
//!   (`worker.site_check_interval_seconds`) and records the result on the profile.
//! - The webhook deliverer (`crates/worker/src/webhooks.rs`) sends the outbox's
//!   due messages.
//! - The subscription scheduler (`crates/worker/src/subscriptions.rs`) starts due
//!   checks and records finished ones; one process acts at a time (a Redis lease).

use std::time::Duration;

use mediapro_core::{
    site_profile::{self, SiteProfile},
    store::StoreError,
};
use mediapro_queue::{DispatchError, QueueError};
use time::OffsetDateTime;

use crate::context::JobContext;

pub async fn run(ctx: JobContext) {
    tokio::join!(
        reconcile_loop(&ctx),
        retention_loop(&ctx),
        site_check_loop(&ctx),
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

async fn site_check_loop(ctx: &JobContext) {
    let every = ctx.settings.worker.site_check_interval_seconds;
    if every == 0 {
        return;
    }
    // Due profiles are looked for often; each is checked once per interval (by
    // whichever worker comes first: a second check at the same time is harmless).
    let tick = Duration::from_secs(every.clamp(1, 30));
    loop {
        tokio::time::sleep(tick).await;
        match check_due_sites(ctx, Duration::from_secs(every)).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(checked = n, "site profiles checked"),
            Err(e) => tracing::warn!(error = %e, "site check pass failed"),
        }
    }
}

/// Checks every site profile whose check is due; how many were checked.
pub async fn check_due_sites(ctx: &JobContext, every: Duration) -> Result<usize, KeeperError> {
    let now = OffsetDateTime::now_utc();
    let mut checked = 0;
    for profile in ctx.store().site_profiles().await? {
        if !site_profile::check_due(&profile, every, now) {
            continue;
        }
        if check_site(ctx, &profile).await?.is_some() {
            checked += 1;
        }
    }
    Ok(checked)
}

/// One check of `profile`'s `check_url` (through an egress proxy of its own),
/// recorded on the profile: `Some(the error, or None when healthy)`; `None` when
/// it could not run here (no egress proxy: this worker's problem, not the site's,
/// so nothing is recorded and the next pass tries again).
pub async fn check_site(
    ctx: &JobContext,
    profile: &SiteProfile,
) -> Result<Option<Option<String>>, KeeperError> {
    let proxy = match ctx.egress.start_proxy_via(profile.upstream_proxy.as_ref()).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the egress proxy for a site check");
            return Ok(None);
        }
    };
    let scratch = ctx.layout.root().join("tmp").join(uuid::Uuid::new_v4().to_string());
    let error = site_profile::check_and_record(
        ctx.store(),
        &ctx.ytdlp,
        profile,
        &scratch,
        &proxy.url(),
        || proxy.first_refusal_reason(),
        ctx.settings.analyze_timeout(),
    )
    .await?;
    match &error {
        Some(e) => tracing::warn!(profile = %profile.name, error = %e, "site check failed"),
        None => tracing::debug!(profile = %profile.name, "site check passed"),
    }
    Ok(Some(error))
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
