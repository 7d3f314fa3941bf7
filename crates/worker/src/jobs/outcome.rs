//! How a job attempt ended, and what that means for the task and for apalis.

use apalis::prelude::BoxDynError;
use mediapro_core::store::StoreError;

use super::attempt::Attempt;
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
    /// Worth another attempt (network trouble), if any are left.
    Transient(String),
    /// A client cancelled the task (the store already says so).
    Cancelled,
    /// Another attempt owns the task now; this one writes nothing.
    Lost,
}

impl Outcome {
    /// Whether this attempt's partial files should be removed. Not when another
    /// attempt owns the task: it works in the same folder.
    pub fn discards_files(&self) -> bool {
        !matches!(self, Outcome::Completed { .. } | Outcome::Lost)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("transient failure, will retry: {0}")]
struct RetryLater(String);

/// Records the outcome in the store (compare-and-set on this attempt) and tells
/// apalis whether to run the job again: `Err` only for a transient failure with
/// attempts left, so a permanent failure is never retried.
pub async fn settle(ctx: &JobContext, attempt: Attempt, outcome: Outcome) -> Result<(), BoxDynError> {
    let (store, task_id, n) = (&ctx.store, attempt.task_id, attempt.number);
    let max = i64::from(ctx.settings.limits.max_attempts);
    let applied = match outcome {
        Outcome::Completed { files, output } => store.complete(task_id, n, &files, output.as_deref()).await?,
        Outcome::Failed(reason) => store.fail(task_id, n, &reason).await?,
        Outcome::Transient(reason) if n >= max => {
            store.fail(task_id, n, &format!("{reason} (gave up after {n} attempts)")).await?
        }
        Outcome::Transient(reason) => {
            if store.requeue(task_id, n, &reason).await? {
                tracing::warn!(%task_id, attempt = n, %reason, "transient failure; will retry");
                return Err(RetryLater(reason).into());
            }
            false
        }
        Outcome::Cancelled | Outcome::Lost => true,
    };
    if !applied {
        // Cancelled meanwhile, or a newer attempt owns the task: leave it be.
        tracing::info!(%task_id, attempt = n, "task changed under this attempt; result dropped");
    }
    Ok(())
}

/// Store errors are transient by nature: let apalis run the job again.
pub fn store_error(e: StoreError) -> BoxDynError {
    e.into()
}
