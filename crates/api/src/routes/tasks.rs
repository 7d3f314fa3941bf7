use actix_web::{HttpResponse, web};
use uuid::Uuid;

use crate::{error::ApiError, state::AppState, view::TaskView};

/// `GET /api/tasks/{task_id}`
pub async fn get(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let task = state.store.get(path.into_inner()).await?.ok_or_else(|| ApiError::not_found("task"))?;
    Ok(HttpResponse::Ok().json(TaskView::from(&task)))
}
