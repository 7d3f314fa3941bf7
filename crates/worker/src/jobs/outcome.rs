//! How a job attempt ended, and the one place where an attempt ends: the
//! outcome is recorded in the store (a compare-and-set on this attempt) or handed
//! to the dispatcher (a chained processing task, a retry after backoff).

use apalis::prelude::BoxDynError;
use mediapro_core::{
    metrics::{Metrics, outcome as metric},
    process::{RunError, StopReason},
    requests::ProcessSpec,
    store::StoreError,
    task::{Task, TaskRequest},
};
use mediapro_queue::Requeued;

use super::{attempt::Attempt, timing};
use crate::context::JobContext;

/// The end of one attempt, decided by the handler.
#[derive(Debug)]
pub enum Outcome {
    Completed {
        files: Vec<String>,
        output: Option<String>,
    },
    /// Retrying cannot help.
    Failed(String),
    /// Worth another attempt (network trouble), if the retry policy allows.
    Transient(String),
    /// The site throttled the attempt (HTTP 429, a "rate limit" 403): its site
    /// is backed off (`jobs/site.rs`) and the task retried as a transient failure.
    Throttled(String),
    /// A client cancelled the task (the store already says so).
    Cancelled,
    /// The download archive has the item and the request said `skip_archived`.
    Skipped(String),
    /// Another attempt owns the task now, or this worker is shutting down and
    /// the job will run again elsewhere; this one writes nothing.
    Lost,
}

impl Outcome {
    /// Whether this attempt's partial files should be removed. Not when another
    /// attempt owns the task: it works in the same folder.
    pub fn discards_files(&self) -> bool {
        !matches!(self, Outcome::Completed { .. } | Outcome::Lost)
    }

    /// The outcome of a child the runner reported as failed to run or stopped.
    /// A stopped child is counted by reason (`mediapro_subprocess_kills_total`).
    pub fn from_run_error(err: RunError, tool: &str, metrics: &Metrics) -> Self {
        match err {
            RunError::Stopped(reason) => {
                metrics.subprocess_killed(reason.label());
                Self::from_stop(reason)
            }
            // Could not start, or the warm yt-dlp host died under the run: a
            // new attempt starts afresh (spawned, or in the restarted host).
            e @ (RunError::Spawn { .. } | RunError::Host(_)) => Outcome::Transient(e.to_string()),
            e => Outcome::Failed(format!("{tool} output could not be read: {e}")),
        }
    }

    fn from_stop(reason: StopReason) -> Self {
        match reason {
            StopReason::Cancelled => Outcome::Cancelled,
            StopReason::LeaseLost | StopReason::Shutdown => Outcome::Lost,
            StopReason::TimedOut(_)
            | StopReason::Stalled(_)
            | StopReason::TooLarge(_)
            | StopReason::Blocked(_) => Outcome::Failed(reason.to_string()),
        }
    }
}

/// Ends the attempt, and counts how it ended (`mediapro_jobs_finished_total`,
/// `mediapro_job_duration_seconds`). `Err` only for infrastructure trouble (the
/// store), which hands the job back to the queue (see
/// `crates/mediapro-core/src/retry.rs`) and is not counted as an end.
pub async fn settle(ctx: &JobContext, attempt: &Attempt, outcome: Outcome) -> Result<(), BoxDynError> {
    let (store, task_id, n) = (ctx.store(), attempt.task_id, attempt.number);
    let (applied, label) = match outcome {
        Outcome::Completed { files, output } => match chained_processing(attempt, &files) {
            Some(next) => (ctx.dispatcher.chain(task_id, n, &files, &next).await?, metric::CHAINED),
            None => (store.complete(task_id, n, &files, output.as_deref()).await?, metric::COMPLETED),
        },
        Outcome::Failed(reason) => (store.fail(task_id, n, &reason).await?, metric::FAILED),
        Outcome::Transient(reason) | Outcome::Throttled(reason) => {
            match ctx.dispatcher.retry_later(task_id, n, &reason).await? {
                Requeued::After(delay) => {
                    tracing::warn!(%task_id, attempt = n, %reason, ?delay, "transient failure; will retry");
                    (true, metric::RETRIED)
                }
                Requeued::GaveUp => (true, metric::FAILED),
                Requeued::Stale => (false, metric::LOST),
            }
        }
        Outcome::Skipped(reason) => (store.skip(task_id, n, &reason).await?, metric::CANCELLED),
        Outcome::Cancelled => (true, metric::CANCELLED),
        Outcome::Lost => (true, metric::LOST),
    };
    timing::mark("settle");
    // Nothing written (the task changed under this attempt) counts as lost.
    let label = if applied { label } else { metric::LOST };
    ctx.metrics.job_finished(
        attempt.queue.as_str(),
        attempt.request.kind().as_str(),
        label,
        attempt.began.elapsed(),
    );
    if applied {
        ctx.dispatcher.publish_current(task_id).await;
    } else {
        // Cancelled meanwhile, or a newer attempt owns the task: leave it be.
        tracing::info!(%task_id, attempt = n, "task changed under this attempt; result dropped");
    }
    timing::mark("event");
    Ok(())
}

/// The processing task a completed download asked for, linked to it.
fn chained_processing(attempt: &Attempt, files: &[String]) -> Option<Task> {
    let TaskRequest::Download(spec) = &attempt.request else { return None };
    let operations = spec.process.as_ref()?;
    let media = files.first()?.clone();
    let mut next = Task::new_pending(TaskRequest::Process(ProcessSpec {
        input_file: media,
        operations: operations.clone(),
        probed: None,
    }));
    next.parent_task_id = Some(attempt.task_id);
    Some(next)
}

/// Store errors are transient by nature: let the queue run the job again.
pub fn store_error(e: StoreError) -> BoxDynError {
    e.into()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mediapro_queue::metrics::Registry;

    use super::*;

    #[tokio::test]
    async fn a_stopped_child_is_counted_by_reason_and_mapped_to_its_outcome() {
        let registry = Registry::new();
        let metrics = registry.metrics();
        let stopped = |reason| Outcome::from_run_error(RunError::Stopped(reason), "ffmpeg", &metrics);
        assert!(matches!(stopped(StopReason::Cancelled), Outcome::Cancelled));
        assert!(matches!(stopped(StopReason::TimedOut(Duration::from_secs(5))), Outcome::Failed(_)));
        assert!(matches!(stopped(StopReason::TimedOut(Duration::from_secs(5))), Outcome::Failed(_)));
        assert!(matches!(stopped(StopReason::LeaseLost), Outcome::Lost));
        let spawn = RunError::Spawn { program: "x".into(), source: std::io::Error::other("no") };
        assert!(matches!(Outcome::from_run_error(spawn, "x", &metrics), Outcome::Transient(_)));
        let host_gone = RunError::Host(mediapro_core::process::ythost::HostError::Gone);
        assert!(matches!(Outcome::from_run_error(host_gone, "yt-dlp", &metrics), Outcome::Transient(_)));

        let text = registry.render();
        let line = |reason: &str| {
            let prefix = format!("mediapro_subprocess_kills_total{{reason=\"{reason}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map(str::to_owned)
        };
        assert_eq!(line("cancelled").as_deref(), Some("1"), "{text}");
        assert_eq!(line("timed_out").as_deref(), Some("2"), "{text}");
        assert_eq!(line("lease_lost").as_deref(), Some("1"), "{text}");
        assert_eq!(line("stalled"), None, "{text}");
    }
}
