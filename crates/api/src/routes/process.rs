use actix_web::{HttpRequest, HttpResponse, web};
use mediapro_core::{
    requests::{CallbackUrl, ProcessBody},
    task::{Task, TaskRequest},
};

use mediapro_core::view::Accepted;

use crate::{error::ApiError, state::AppState};

/// Process a file of the storage root (a background task)
///
/// The input is probed (under the same whitelists as processing) and the operations
/// checked against it before anything is stored or queued.
#[utoipa::path(
    operation_id = "create_process",
    post,
    path = "/api/process",
    tag = "media",
    params(("Idempotency-Key" = Option<String>, Header, description = "A client-chosen key, 1-255 printable ASCII characters, remembered 24 h per API key: the same key with the same body gets the first answer again (header Idempotent-Replayed: true, never a second task); with another body or route, 422 idempotency_key_reused")),
    request_body(content = mediapro_core::requests::ProcessBody, content_type = "application/json"),
    responses((status = 202, description = "The task was created and queued", body = Accepted))
)]
#[tracing::instrument(skip_all, fields(task_id))]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_submission(&req, &state.store).await?;
    state.ensure_free_space()?;
    let mut body = mediapro_core::body::parse::<ProcessBody>(body.into_inner())?;
    // Before the probe: the cheaper check first.
    let callback_url = CallbackUrl::validate(
        body.callback_url.take().as_deref(),
        state.egress_policy(),
        state.can_sign_webhooks(),
    )
    .await?;
    let (spec, _probe) = body.validate(&state.layout, &state.settings.tools.ffprobe).await?;
    let mut task = Task::new_pending(TaskRequest::Process(spec));
    task.callback_url = callback_url;
    tracing::Span::current().record("task_id", tracing::field::display(task.task_id));
    state.dispatcher.submit(&task).await?;
    Ok(HttpResponse::Accepted().json(Accepted {
        task_id: task.task_id,
        status: task.status,
        message: "Processing task created",
    }))
}
