use actix_web::{HttpRequest, HttpResponse, web};
use mediapro_core::{
    requests::{CallbackUrl, DownloadBody},
    task::{Task, TaskRequest},
};

use mediapro_core::view::Accepted;

use crate::{error::ApiError, state::AppState};

/// Download a URL (a background task)
///
/// Validated (URL, format selector, subtitle languages, optional follow-up
/// processing), recorded and queued; a worker downloads it. With `playlist`, the
/// URL is a playlist, channel or feed: one `playlist` task lists the selected
/// entries and creates a child download per entry (listed by
/// `GET /api/tasks?parent_task_id=`); cancelling it cancels them, retrying it
/// retries its failed and cancelled ones, and `GET /api/download-result/{id}`
/// serves the completed ones as one ZIP.
#[utoipa::path(
    operation_id = "create_download",
    post,
    path = "/api/download",
    tag = "media",
    params(("Idempotency-Key" = Option<String>, Header, description = "A client-chosen key, 1-255 printable ASCII characters, remembered 24 h per API key: the same key with the same body gets the first answer again (header Idempotent-Replayed: true, never a second task); with another body or route, 422 idempotency_key_reused")),
    request_body(content = mediapro_core::requests::DownloadBody, content_type = "application/json"),
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
    let mut body = mediapro_core::body::parse::<DownloadBody>(body.into_inner())?;
    let callback_url = body.callback_url.take();
    let request =
        body.validate_request(state.egress_policy(), state.settings.limits.max_playlist_items).await?;
    let callback_url =
        CallbackUrl::validate(callback_url.as_deref(), state.egress_policy(), state.can_sign_webhooks())
            .await?;
    let message = match request {
        TaskRequest::Playlist(_) => "Playlist download task created",
        _ => "Download task created",
    };
    // The site profile of the URL's host, shown on the task from the start (the
    // job looks it up again when it runs).
    let host = match &request {
        TaskRequest::Download(spec) => Some(spec.url.host()),
        TaskRequest::Playlist(spec) => Some(spec.url.host()),
        TaskRequest::Process(_) => None,
    };
    let site_profile = match host {
        Some(host) => state.store.site_profile_for_host(&host).await?.map(|p| p.name),
        None => None,
    };
    let mut task = Task::new_pending(request);
    task.callback_url = callback_url;
    task.site_profile = site_profile;
    tracing::Span::current().record("task_id", tracing::field::display(task.task_id));
    state.dispatcher.submit(&task).await?;
    Ok(HttpResponse::Accepted().json(Accepted { task_id: task.task_id, status: task.status, message }))
}
