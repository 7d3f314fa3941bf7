//! `GET /api/tasks/{task_id}/deliveries`: the task's webhook messages and every
//! attempt to deliver them (from the store's outbox), so a client or operator can
//! see why a receiver did not hear of a task.

use actix_web::{HttpResponse, web};
use mediapro_core::view::DeliveryView;
use serde::Serialize;
use uuid::Uuid;

use crate::{error::ApiError, routes::tasks::TaskId, state::AppState};

/// The task's webhook messages, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Deliveries {
    deliveries: Vec<DeliveryView>,
}

/// 200 `{"deliveries": [...]}` (oldest first); 404 for an unknown task.
#[utoipa::path(
    operation_id = "list_deliveries",
    get,
    path = "/api/tasks/{task_id}/deliveries",
    tag = "tasks",
    params(TaskId),
    responses((status = 200, description = "The task's webhook messages and every delivery attempt", body = Deliveries))
)]
pub async fn list(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let task_id = path.into_inner();
    if state.store.get(task_id).await?.is_none() {
        return Err(ApiError::not_found("task"));
    }
    let deliveries = state.store.deliveries(task_id).await?;
    let views: Vec<DeliveryView> = deliveries.iter().map(DeliveryView::from).collect();
    Ok(HttpResponse::Ok().json(Deliveries { deliveries: views }))
}
