//! The job handler of every queue: claim the task, run the work its request
//! asks for, end the attempt in one place. The request (from the store, in the
//! same round trip as the claim) decides what runs, not the queue the job came on.

mod attempt;
mod download;
mod fsutil;
mod outcome;
mod playlist;
mod process;
mod timing;

use apalis::prelude::{BoxDynError, Data, WorkerContext};
use mediapro_core::{jobs::JobPayload, task::TaskRequest};

use crate::{
    context::JobContext,
    metrics::{DueAt, QueueSlots},
};

#[tracing::instrument(skip_all, fields(task_id = ?job.claimed_task_id()))]
pub async fn run(
    job: JobPayload,
    ctx: Data<JobContext>,
    slots: Data<QueueSlots>,
    due: DueAt,
    worker: WorkerContext,
) -> Result<(), BoxDynError> {
    timing::timed(job.claimed_task_id(), async {
        let _slot = slots.enter();
        let Some(attempt) = attempt::begin(&ctx, &job, worker.name(), slots.queue, due).await? else {
            return Ok(());
        };
        let outcome = match &attempt.request {
            TaskRequest::Download(spec) => download::run(&ctx, &attempt, spec).await,
            TaskRequest::Process(spec) => process::run(&ctx, &attempt, spec).await,
            TaskRequest::Playlist(spec) => playlist::run(&ctx, &attempt, spec).await,
        };
        outcome::settle(&ctx, &attempt, outcome).await
    })
    .await
}
