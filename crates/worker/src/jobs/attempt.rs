//! One attempt at a task: take it from the store, and supervise the subprocess
//! that does the work.
//!
//! Supervision is a loop beside the subprocess that, every second, renews the
//! attempt's lease on the task (writing its progress) and learns from the store
//! whether a client cancelled the task or another attempt took it over; it also
//! stops a child that has printed nothing for `limits.stall_timeout_seconds`. The
//! loop resolves with the [`StopReason`], which the runner hands back with the
//! killed child's result: one kill reason, no side channel. The store is shared
//! by every host, so a cancel reaches the job wherever it runs.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use apalis::prelude::{AbortError, BoxDynError};
use mediapro_core::task::TaskKind;
use mediapro_core::{
    jobs::JobPayload,
    process::StopReason,
    store::{Claim, Lease},
    task::{Phase, ProgressDetail, TaskRequest},
};
use uuid::Uuid;

use super::{
    outcome::{Outcome, settle, store_error},
    timing,
};
use crate::{context::JobContext, metrics::DueAt};

const TICK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("task {0} is held by another live attempt; will look again")]
struct HeldElsewhere(Uuid);

/// A claimed attempt: the task, its attempt number, and what to do.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub task_id: Uuid,
    pub number: i64,
    pub request: TaskRequest,
    /// The queue the job came from (metrics label).
    pub queue: TaskKind,
    /// When the claim succeeded (the attempt's duration is measured from it).
    pub began: Instant,
}

/// Claims the task a job carries. `Ok(None)`: nothing to run (final, unknown,
/// or given up on).
pub async fn begin(
    ctx: &JobContext,
    payload: &JobPayload,
    worker: &str,
    queue: TaskKind,
    due: DueAt,
) -> Result<Option<Attempt>, BoxDynError> {
    let task_id = match payload {
        JobPayload::Task { task_id } => *task_id,
        JobPayload::Undecodable(value) => {
            tracing::error!(payload = %value, "undecodable job payload");
            if let Some(id) = payload.claimed_task_id() {
                ctx.store()
                    .fail_unfinished(id, "the queued job could not be read")
                    .await
                    .map_err(store_error)?;
            }
            return Err(AbortError::new("undecodable job payload").into());
        }
    };
    let lease = Duration::from_secs(ctx.settings.worker.lease_seconds);
    let attempt = match ctx.store().claim(task_id, worker, lease).await.map_err(store_error)? {
        Claim::Claimed { attempt, request } => {
            ctx.metrics.job_started(queue.as_str(), request.kind().as_str(), due.delay());
            Attempt { task_id, number: attempt, request, queue, began: Instant::now() }
        }
        Claim::Gone => {
            tracing::info!(%task_id, "task is final or unknown; job skipped");
            return Ok(None);
        }
        // A worker presumed dead may still hold a fresh lease (the queue re-delivers
        // on its own clock): come back later rather than drop the job.
        Claim::Held => return Err(HeldElsewhere(task_id).into()),
    };
    timing::mark("claim");
    ctx.dispatcher.publish_current(task_id).await;
    timing::mark("event");
    // Poison guard: a job whose runs keep dying with their worker (OOM, crash)
    // is re-delivered by the queue again and again; the store counts the starts.
    let max = i64::from(ctx.settings.limits.max_attempts);
    if attempt.number > max {
        let reason = format!("gave up after {max} attempts (the last ones did not finish: worker lost)");
        settle(ctx, &attempt, Outcome::Failed(reason)).await?;
        return Ok(None);
    }
    Ok(Some(attempt))
}

/// Shared between the subprocess's output callback (which records activity and
/// progress) and the supervision loop.
#[derive(Clone)]
pub struct Supervisor {
    started: Instant,
    last_activity_ms: Arc<AtomicU64>,
    progress_bits: Arc<AtomicU64>,
    /// Phase, speed, ETA and bytes: data for clients, written with each renewal.
    detail: Arc<Mutex<ProgressDetail>>,
}

impl Supervisor {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            last_activity_ms: Arc::new(AtomicU64::new(0)),
            progress_bits: Arc::new(AtomicU64::new(0f64.to_bits())),
            detail: Arc::new(Mutex::new(ProgressDetail::default())),
        }
    }

    /// Updates the progress detail (phase, speed, …) clients see.
    pub fn detail(&self, update: impl FnOnce(&mut ProgressDetail)) {
        update(&mut self.detail.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    pub fn phase(&self, phase: Phase) {
        self.detail(|d| d.phase = Some(phase));
    }

    fn detail_now(&self) -> ProgressDetail {
        self.detail.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The child printed something.
    pub fn touch(&self) {
        self.last_activity_ms.store(self.elapsed_ms(), Ordering::Relaxed);
    }

    /// Progress in percent; never goes backwards.
    pub fn report(&self, percent: f64) {
        let current = f64::from_bits(self.progress_bits.load(Ordering::Relaxed));
        if percent > current {
            self.progress_bits.store(percent.to_bits(), Ordering::Relaxed);
        }
    }

    /// Resolves with the reason when the child must stop.
    pub async fn watch(&self, ctx: &JobContext, attempt: &Attempt) -> StopReason {
        let stall = Duration::from_secs(ctx.settings.limits.stall_timeout_seconds);
        loop {
            tokio::time::sleep(TICK).await;
            let progress = f64::from_bits(self.progress_bits.load(Ordering::Relaxed));
            match ctx.store().heartbeat(attempt.task_id, attempt.number, progress, &self.detail_now()).await {
                Ok(Lease::Held) => {
                    // Live progress for event-stream clients, once a second.
                    ctx.dispatcher.publish_current(attempt.task_id).await;
                    let idle =
                        self.elapsed_ms().saturating_sub(self.last_activity_ms.load(Ordering::Relaxed));
                    if u128::from(idle) > stall.as_millis() {
                        return StopReason::Stalled(stall);
                    }
                }
                Ok(Lease::Cancelled) => return StopReason::Cancelled,
                Ok(Lease::Lost) => return StopReason::LeaseLost,
                // A store blip is no reason to kill a job; the lease is generous.
                Err(e) => tracing::warn!(task_id = %attempt.task_id, error = %e, "lease renewal failed"),
            }
        }
    }
}
