//! The subscription scheduler, a keeper of every worker process of which exactly
//! one acts at a time: each pass (every `subscriptions.scheduler_interval_seconds`)
//! first takes or renews the Redis lease `{namespace}:lease:subscriptions`
//! (`mediapro_queue::RoleLease`, lasting three passes), and only its holder
//! 1. settles the checks in flight: a check's `playlist` task that recorded its
//!    expansion gives found/queued/skipped; one that failed or was cancelled
//!    before listing gives the error (the failure that makes
//!    `subscriptions.max_failures` in a row pauses the subscription);
//! 2. starts the due checks of subscriptions with none in flight: a compare-and-set
//!    in the store (`TaskStore::start_check`, which sets `next_check_at = now +
//!    every`), then the check's `playlist` task through the dispatcher.
//!
//! So three worker hosts start each check once, a schedule missed while every
//! worker was down runs once, and a new entry gets one child: one check of a
//! subscription lists at a time, and the expansion skips the entries earlier
//! checks queued (`TaskStore::known_entries`).

use std::time::Duration;

use mediapro_core::{
    store::micros,
    subscription::{CheckOutcome, Subscription},
    task::{Task, TaskRequest, TaskStatus, now},
};
use mediapro_queue::RoleLease;

use crate::{context::JobContext, keepers::KeeperError};

/// A check whose task is missing this long after it started was lost (the
/// scheduler died between starting it and queueing its task).
const LOST_AFTER: Duration = Duration::from_secs(60);

pub async fn schedule_loop(ctx: &JobContext) {
    let every = Duration::from_secs(ctx.settings.subscriptions.scheduler_interval_seconds);
    let holder = crate::identity::holder_name("subscriptions");
    let lease = RoleLease::new(ctx.dispatcher.queue(), "subscriptions", holder, every * 3);
    let mut held = false;
    loop {
        tokio::time::sleep(every).await;
        match pass(ctx, &lease).await {
            Ok(Some((settled, started))) => {
                if !held {
                    tracing::info!(holder = lease.holder(), "this worker schedules subscription checks");
                }
                held = true;
                if settled + started > 0 {
                    tracing::info!(settled, started, "subscription checks");
                }
            }
            Ok(None) => held = false,
            Err(e) => {
                held = false;
                tracing::warn!(error = %e, "subscription scheduler pass failed");
            }
        }
    }
}

/// One pass: `None` when another process holds the lease, else how many checks
/// were settled and started.
pub async fn pass(ctx: &JobContext, lease: &RoleLease) -> Result<Option<(usize, usize)>, KeeperError> {
    if !lease.hold(ctx.dispatcher.queue()).await? {
        return Ok(None);
    }
    let settled = settle(ctx).await?;
    let started = start_due(ctx).await?;
    Ok(Some((settled, started)))
}

/// How the check whose task is `task` ended, or `None` while it still lists.
fn outcome_of(task: &Task) -> Option<CheckOutcome> {
    if let TaskRequest::Playlist(spec) = &task.request
        && let Some(e) = &spec.expansion
    {
        let skipped = e.skipped_archived + e.skipped_known;
        return Some(CheckOutcome::Listed { found: e.children + skipped, queued: e.children, skipped });
    }
    match task.status {
        TaskStatus::Failed | TaskStatus::Cancelled | TaskStatus::Completed => Some(CheckOutcome::Failed(
            task.error.clone().unwrap_or_else(|| format!("the check ended {}", task.status.as_str())),
        )),
        _ => None,
    }
}

async fn settle(ctx: &JobContext) -> Result<usize, KeeperError> {
    let store = ctx.store();
    let max_failures = ctx.settings.subscriptions.max_failures;
    let mut settled = 0;
    for s in store.checking_subscriptions(500).await? {
        let Some(task_id) = s.current_task_id else { continue };
        let outcome = match store.get(task_id).await? {
            Some(task) => outcome_of(&task),
            None => {
                let lost = LOST_AFTER.as_micros() as i64;
                s.last_check_at
                    .is_none_or(|t| t < micros(now()) - lost)
                    .then(|| CheckOutcome::Failed("the check's task was lost before it ran".into()))
            }
        };
        let Some(outcome) = outcome else { continue };
        if store.finish_check(&s, &outcome, max_failures).await? {
            tracing::info!(subscription_id = %s.subscription_id, %task_id, ?outcome, "subscription check recorded");
            settled += 1;
        }
    }
    Ok(settled)
}

async fn start_due(ctx: &JobContext) -> Result<usize, KeeperError> {
    let store = ctx.store();
    let t = micros(now());
    let mut started = 0;
    for s in store.due_subscriptions(t, 100).await? {
        let task = Task::new_pending(s.request.clone());
        if store.start_check(&s, task.task_id, t).await?.is_none() {
            continue;
        }
        if let Err(e) = ctx.dispatcher.submit(&task).await {
            // Nothing was queued (the row is gone again): the check fails with the reason.
            let in_flight = Subscription { current_task_id: Some(task.task_id), ..s.clone() };
            let failed = CheckOutcome::Failed(format!("the check could not be queued: {e}"));
            store.finish_check(&in_flight, &failed, ctx.settings.subscriptions.max_failures).await?;
            continue;
        }
        tracing::info!(subscription_id = %s.subscription_id, task_id = %task.task_id, "subscription check started");
        started += 1;
    }
    Ok(started)
}
