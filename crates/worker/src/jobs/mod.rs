//! Job handlers, one module per queue, plus what they share.

mod attempt;
mod download;
mod fsutil;
mod outcome;
mod pipeline;
mod process;

use apalis::prelude::{BoxDynError, Data, WorkerContext};
use mediapro_core::jobs::JobPayload;
use mediapro_queue::QueueName;

use crate::context::JobContext;

/// The handler of both queues: the queue a worker consumes decides the job kind.
pub async fn run(
    job: JobPayload,
    ctx: Data<JobContext>,
    queue: Data<QueueName>,
    worker: WorkerContext,
) -> Result<(), BoxDynError> {
    match *queue {
        QueueName::Download => download::run(job, &ctx, &worker).await,
        QueueName::Process => process::run(job, &ctx, &worker).await,
    }
}
