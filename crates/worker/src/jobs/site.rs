//! The site gate's part of a job (`crates/queue/src/site_gate.rs`). Before a
//! download is claimed, the gate of its URL's site profile is asked for a slot:
//!
//! - granted: the job runs, holding the slot; a task of its own renews the
//!   slot's lease every second (from the gate's grant to the attempt's end, the
//!   checks before yt-dlp and the verification after it included), so a worker
//!   that is killed gives the slot back one lease later (`worker.lease_seconds`).
//!   The job's first connection through its egress proxy is its start as the
//!   site sees it: `min_interval_seconds` counts from there (`SiteGate::started`);
//! - told to wait: the task stays `pending` with phase `waiting_for_site`, and
//!   its job goes back to the queue with the gate's delay
//!   (`Dispatcher::wait_for_site`). The job ends, so the worker slot is free for
//!   other sites' jobs meanwhile, and nothing ever waits while holding a worker
//!   slot: per-site limits cannot deadlock a worker. (A running task being taken
//!   over from a dead worker is not pending: its job is handed back to the queue
//!   instead, as a task held by another attempt is.)
//!
//! When the attempt ends the slot is released with how it went: throttled (the
//! site is backed off), completed (the back-off is reset), or anything else.
//! Collections are not gated (their job waits for their children, which are
//! downloads and are gated), nor is processing (no site).

use std::time::Duration;

use apalis::prelude::BoxDynError;
use mediapro_core::{
    jobs::JobPayload,
    task::{TaskRequest, TaskStatus},
};
use mediapro_queue::{Admission, SiteGate, SiteLimits, SiteSlot, Verdict};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::outcome::{Outcome, store_error};
use crate::context::JobContext;

/// How often a held slot's lease is renewed (the attempt's own lease is
/// renewed as often: `attempt.rs`).
const RENEW_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("task {0} is being taken over but its site has no free slot; will look again")]
struct SiteBusy(Uuid);

/// Whether the job goes on to its claim.
pub enum Entry {
    /// Claim and run (holding the site's slot when its site has a profile).
    Go(Option<SiteHold>),
    /// The task waits for its site; its new job is queued. Nothing to run.
    Deferred,
}

/// A held slot, renewed until it is released (or dropped: the renewal stops
/// and the lease runs out).
pub struct SiteHold {
    gate: SiteGate,
    slot: SiteSlot,
    renewer: JoinHandle<()>,
}

impl Drop for SiteHold {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

impl SiteHold {
    fn start(ctx: &JobContext, slot: SiteSlot) -> Self {
        let gate = ctx.gate.clone();
        let renewed = slot.clone();
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                match gate.renew(&renewed).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(site = %renewed.site, "site slot lease had run out; held again")
                    }
                    Err(e) => tracing::warn!(site = %renewed.site, error = %e, "site slot renewal failed"),
                }
            }
        });
        Self { gate: ctx.gate.clone(), slot, renewer }
    }

    pub fn site(&self) -> &str {
        &self.slot.site
    }

    /// When `first_contact` resolves `true` (the job's egress proxy made its
    /// first connection), the site's start spacing counts from then.
    pub fn started_on(&self, first_contact: impl Future<Output = bool> + Send + 'static) {
        let (gate, slot) = (self.gate.clone(), self.slot.clone());
        tokio::spawn(async move {
            if first_contact.await
                && let Err(e) = gate.started(&slot).await
            {
                tracing::warn!(site = %slot.site, error = %e, "site start not recorded; the grant counts");
            }
        });
    }
}

/// Asks the gate of the task's site, if its URL's host has a profile.
pub async fn enter(ctx: &JobContext, payload: &JobPayload) -> Result<Entry, BoxDynError> {
    let JobPayload::Task { task_id } = payload else { return Ok(Entry::Go(None)) };
    let task_id = *task_id;
    // Unknown or final: the claim says so and skips the job.
    let Some(task) = ctx.store().get(task_id).await.map_err(store_error)? else { return Ok(Entry::Go(None)) };
    let TaskRequest::Download(spec) = &task.request else { return Ok(Entry::Go(None)) };
    if task.status.is_final() {
        return Ok(Entry::Go(None));
    }
    let host = spec.url.host();
    let Some(profile) = ctx.store().site_profile_for_host(&host).await.map_err(store_error)? else {
        return Ok(Entry::Go(None));
    };
    let limits = SiteLimits {
        max_concurrent: profile.max_concurrent,
        min_interval: profile.min_interval_seconds.map(Duration::from_secs_f64),
    };
    match ctx.gate.acquire(&profile.name, limits, &task_id.to_string()).await? {
        // The download records `site_profile` on the task (`download.rs`).
        Admission::Granted(slot) => Ok(Entry::Go(Some(SiteHold::start(ctx, slot)))),
        Admission::Wait(delay) if task.status == TaskStatus::Pending => {
            if ctx.dispatcher.wait_for_site(&task, &profile.name, delay).await? {
                tracing::debug!(%task_id, site = %profile.name, ?delay, "waiting for the site");
            }
            Ok(Entry::Deferred)
        }
        Admission::Wait(_) => Err(SiteBusy(task_id).into()),
    }
}

/// Gives the slot back, saying how the attempt went.
pub async fn leave(ctx: &JobContext, hold: Option<SiteHold>, outcome: Option<&Outcome>) {
    let Some(hold) = hold else { return };
    hold.renewer.abort();
    let verdict = match outcome {
        Some(Outcome::Completed { .. }) => Verdict::Succeeded,
        Some(Outcome::Throttled(_)) => Verdict::Throttled,
        _ => Verdict::Other,
    };
    if verdict == Verdict::Throttled {
        ctx.metrics.site_throttled(hold.site());
    }
    match ctx.gate.release(&hold.slot, verdict).await {
        Ok(backoff) if verdict == Verdict::Throttled => {
            tracing::warn!(site = hold.site(), ?backoff, "the site throttled a job; backed off");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(site = hold.site(), error = %e, "site slot not released; its lease ends it"),
    }
}
