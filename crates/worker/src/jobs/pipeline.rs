//! Download → process pipelines: when a download that asked for processing
//! completes, the processing task is recorded in the same transaction (both tasks
//! point at each other) and then queued.

use std::time::Duration;

use apalis::prelude::BoxDynError;
use mediapro_core::{
    ffmpeg::Operations,
    requests::ProcessSpec,
    task::{Task, TaskRequest},
};
use mediapro_queue::QueueName;

use super::{attempt::Attempt, outcome::store_error};
use crate::context::JobContext;

pub async fn chain(
    ctx: &JobContext,
    attempt: Attempt,
    files: Vec<String>,
    operations: &Operations,
) -> Result<(), BoxDynError> {
    let Some(media) = files.first().cloned() else {
        return Ok(());
    };
    let mut next = Task::new_pending(TaskRequest::Process(ProcessSpec {
        input_file: media,
        operations: operations.clone(),
        probed: None,
    }));
    let task_id = attempt.task_id;
    next.parent_task_id = Some(task_id);
    if !ctx.store.complete_and_chain(task_id, attempt.number, &files, &next).await.map_err(store_error)? {
        tracing::info!(%task_id, "task changed under this attempt; result dropped");
        return Ok(());
    }
    // The chained task is durable now; if Redis refuses it, keep trying a little
    // and otherwise fail it with a reason rather than leave it pending forever.
    let mut last_error = None;
    for delay in [0, 1, 2, 4] {
        tokio::time::sleep(Duration::from_secs(delay)).await;
        match ctx.queue.push(QueueName::Process, next.task_id, &next.job_id).await {
            Ok(()) => return Ok(()),
            Err(e) => last_error = Some(e),
        }
    }
    let reason = format!("could not be queued: {}", last_error.map(|e| e.to_string()).unwrap_or_default());
    ctx.store.fail_unfinished(next.task_id, &reason).await.map_err(store_error)?;
    Ok(())
}
