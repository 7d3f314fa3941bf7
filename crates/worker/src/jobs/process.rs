//! Process-queue jobs (ffmpeg). The API does not create process tasks yet, so a
//! job here can only be stray; it is failed with a clear reason, never dropped.

use apalis::prelude::{BoxDynError, Data};
use mediapro_core::{jobs::ProcessJob, task::TaskStatus};

use super::outcome::{Outcome, settle, store_error};
use crate::context::JobContext;

pub async fn run(job: ProcessJob, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let Some(attempt) = ctx
        .store
        .claim(job.task_id, TaskStatus::Processing, "worker")
        .await
        .map_err(store_error)?
    else {
        return Ok(());
    };
    settle(
        &ctx,
        job.task_id,
        attempt,
        Outcome::Failed("processing is not supported by this worker version".into()),
    )
    .await
}
