//! How a job attempt ended, and what that means for the task and for apalis.

use apalis::prelude::BoxDynError;
use mediapro_core::store::StoreError;
use uuid::Uuid;

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
    /// Worth another attempt (network trouble, a lost worker), if any are left.
    Transient(String),
}

#[derive(Debug, thiserror::Error)]
#[error("transient failure, will retry: {0}")]
struct RetryLater(String);

/// Records the outcome in the store (compare-and-set on this attempt) and tells
/// apalis whether to run the job again: `Err` only for a transient failure with
/// attempts left, so a permanent failure is never retried.
pub async fn settle(
    ctx: &JobContext,
    task_id: Uuid,
    attempt: i64,
    outcome: Outcome,
) -> Result<(), BoxDynError> {
    let store = &ctx.store;
    let max = i64::from(ctx.settings.limits.max_attempts);
    let applied = match outcome {
        Outcome::Completed { files, output } => {
            store.complete(task_id, attempt, &files, output.as_deref()).await?
        }
        Outcome::Failed(reason) => store.fail(task_id, attempt, &reason).await?,
        Outcome::Transient(reason) if attempt >= max => {
            store.fail(task_id, attempt, &format!("{reason} (gave up after {attempt} attempts)")).await?
        }
        Outcome::Transient(reason) => {
            if store.requeue(task_id, attempt, &reason).await? {
                tracing::warn!(%task_id, attempt, %reason, "transient failure; will retry");
                return Err(RetryLater(reason).into());
            }
            false
        }
    };
    if !applied {
        // Cancelled meanwhile, or a newer attempt owns the task: leave it be.
        tracing::info!(%task_id, attempt, "task changed under this attempt; result dropped");
    }
    Ok(())
}

/// Store errors are transient by nature: let apalis run the job again.
pub fn store_error(e: StoreError) -> BoxDynError {
    e.into()
}
