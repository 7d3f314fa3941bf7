//! The job handler of every queue: ask the site gate (a download whose site has
//! a profile), claim the task, run the work its request asks for, end the
//! attempt in one place. The request (from the store, in the same round trip as
//! the claim) decides what runs, not the queue the job came on.

mod attempt;
mod download;
mod fsutil;
mod outcome;
mod playlist;
mod process;
mod site;
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
        let hold = match site::enter(&ctx, &job).await? {
            site::Entry::Go(hold) => hold,
            site::Entry::Deferred => return Ok(()),
        };
        let attempt = match attempt::begin(&ctx, &job, worker.name(), slots.queue, due).await {
            Ok(Some(attempt)) => attempt,
            nothing_to_run => {
                site::leave(&ctx, hold, None).await;
                return nothing_to_run.map(|_| ());
            }
        };
        let outcome = match &attempt.request {
            TaskRequest::Download(spec) => download::run(&ctx, &attempt, spec, hold.as_ref()).await,
            TaskRequest::Process(spec) => process::run(&ctx, &attempt, spec).await,
            TaskRequest::Playlist(spec) => playlist::run(&ctx, &attempt, spec).await,
        };
        // The site is done with before the attempt is settled: a throttled
        // attempt's back-off is in force before its retry is queued.
        site::leave(&ctx, hold, Some(&outcome)).await;
        outcome::settle(&ctx, &attempt, outcome).await
    })
    .await
}
