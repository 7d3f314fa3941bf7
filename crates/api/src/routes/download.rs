use actix_web::{HttpResponse, web};
use mediapro_core::{
    requests::DownloadBody,
    task::{Task, TaskRequest},
};

use mediapro_queue::QueueName;

use crate::{error::ApiError, state::AppState, view::Accepted};

/// `POST /api/download` → 202 `{task_id, status: "pending", message}`.
#[tracing::instrument(skip_all, fields(task_id))]
pub async fn create(
    state: web::Data<AppState>,
    body: web::Json<DownloadBody>,
) -> Result<HttpResponse, ApiError> {
    state.ensure_free_space()?;
    let spec = body.into_inner().validate(state.address_policy()).await?;
    let task = Task::new_pending(TaskRequest::Download(spec));
    tracing::Span::current().record("task_id", tracing::field::display(task.task_id));
    enqueue(&state, &task).await?;
    Ok(HttpResponse::Accepted().json(Accepted {
        task_id: task.task_id,
        status: task.status,
        message: "Download task created",
    }))
}

/// Stores a new task and queues its job. The row is written first, so a worker
/// always finds it; if Redis refuses the job, the row is removed again and the
/// client gets a 503: an accepted task is always queued, a refused one leaves
/// nothing behind.
pub async fn enqueue(state: &AppState, task: &Task) -> Result<(), ApiError> {
    state.store.insert(task).await?;
    if let Err(err) = state.queue.push(QueueName::for_kind(task.kind()), task.task_id, &task.job_id).await {
        if let Err(cleanup) = state.store.delete_pending(task.task_id).await {
            tracing::error!(error = %cleanup, task_id = %task.task_id, "could not remove unqueued task");
        }
        return Err(err.into());
    }
    Ok(())
}
