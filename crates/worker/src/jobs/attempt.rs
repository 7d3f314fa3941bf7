//! One attempt at a task: take it from the store, supervise the subprocess that
//! does the work, and say how it ended.
//!
//! Supervision is a loop beside the subprocess that, every second, renews the
//! attempt's lease on the task (writing its progress) and learns from the store
//! whether a client cancelled the task or another attempt took it over; it also
//! kills a child that has printed nothing for `limits.stall_timeout_seconds`. The
//! store is shared by every host, so a cancel reaches the job wherever it runs.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use apalis::prelude::{AbortError, BoxDynError};
use mediapro_core::{
    jobs::JobPayload,
    store::{Claim, Lease},
    task::{TaskRequest, TaskStatus},
};
use uuid::Uuid;

use super::outcome::{Outcome, settle, store_error};
use crate::context::JobContext;

const TICK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("task {0} is held by another live attempt; will look again")]
struct HeldElsewhere(Uuid);

#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub task_id: Uuid,
    pub number: i64,
}

/// Claims the task a job carries. `Ok(None)`: nothing to run (final, held by a
/// live attempt, unknown, or given up on).
pub async fn begin(
    ctx: &JobContext,
    payload: &JobPayload,
    running: TaskStatus,
    worker: &str,
) -> Result<Option<(Attempt, TaskRequest)>, BoxDynError> {
    let task_id = match payload {
        JobPayload::Task { task_id } => *task_id,
        JobPayload::Undecodable(value) => {
            tracing::error!(payload = %value, "undecodable job payload");
            if let Some(id) = payload.claimed_task_id() {
                ctx.store
                    .fail_unfinished(id, "the queued job could not be read")
                    .await
                    .map_err(store_error)?;
            }
            return Err(AbortError::new("undecodable job payload").into());
        }
    };
    let lease = Duration::from_secs(ctx.settings.worker.lease_seconds);
    let number = match ctx.store.claim(task_id, running, worker, lease).await.map_err(store_error)? {
        Claim::Claimed(n) => n,
        Claim::Gone => {
            tracing::info!(%task_id, "task is final or unknown; job skipped");
            return Ok(None);
        }
        // A worker presumed dead may still hold a fresh lease (the queue re-delivers
        // on its own clock): come back later rather than drop the job.
        Claim::Held => return Err(HeldElsewhere(task_id).into()),
    };
    let attempt = Attempt { task_id, number };
    // Poison guard: a job whose runs keep dying with their worker (OOM, crash)
    // is re-delivered by the queue again and again; the store counts the starts.
    let max = i64::from(ctx.settings.limits.max_attempts);
    if number > max {
        let reason = format!("gave up after {max} attempts (the last ones did not finish: worker lost)");
        settle(ctx, attempt, Outcome::Failed(reason)).await?;
        return Ok(None);
    }
    let task = ctx.store.get(task_id).await.map_err(store_error)?;
    Ok(task.map(|t| (attempt, t.request)))
}

/// Why supervision stopped a child early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Cancelled,
    Stalled(u64),
    Lost,
}

/// Shared between the subprocess's output callback (which records activity and
/// progress) and the supervision loop.
#[derive(Clone)]
pub struct Supervisor {
    started: Instant,
    last_activity_ms: Arc<AtomicU64>,
    progress_bits: Arc<AtomicU64>,
    stop: Arc<Mutex<Option<Stop>>>,
}

impl Supervisor {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            last_activity_ms: Arc::new(AtomicU64::new(0)),
            progress_bits: Arc::new(AtomicU64::new(0f64.to_bits())),
            stop: Arc::new(Mutex::new(None)),
        }
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

    pub fn reason(&self) -> Option<Stop> {
        *self.stop.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Resolves when the child must stop; [`reason`](Self::reason) says why.
    pub async fn watch(&self, ctx: &JobContext, attempt: Attempt) {
        let stall_ms = ctx.settings.limits.stall_timeout_seconds.saturating_mul(1000);
        loop {
            tokio::time::sleep(TICK).await;
            let progress = f64::from_bits(self.progress_bits.load(Ordering::Relaxed));
            let stop = match ctx.store.heartbeat(attempt.task_id, attempt.number, progress).await {
                Ok(Lease::Held) => {
                    let idle =
                        self.elapsed_ms().saturating_sub(self.last_activity_ms.load(Ordering::Relaxed));
                    (idle > stall_ms).then_some(Stop::Stalled(ctx.settings.limits.stall_timeout_seconds))
                }
                Ok(Lease::Cancelled) => Some(Stop::Cancelled),
                Ok(Lease::Lost) => Some(Stop::Lost),
                Err(e) => {
                    // A store blip is no reason to kill a job; the lease is generous.
                    tracing::warn!(task_id = %attempt.task_id, error = %e, "lease renewal failed");
                    None
                }
            };
            if let Some(stop) = stop {
                *self.stop.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(stop);
                return;
            }
        }
    }

    /// The outcome of a child stopped by supervision.
    pub fn stopped_outcome(&self) -> Outcome {
        match self.reason() {
            Some(Stop::Cancelled) => Outcome::Cancelled,
            Some(Stop::Stalled(secs)) => Outcome::Failed(format!("stalled: no output for {secs} s")),
            Some(Stop::Lost) | None => Outcome::Lost,
        }
    }
}
