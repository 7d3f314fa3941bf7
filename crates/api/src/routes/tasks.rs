//! The task API: get, list (filters + cursor pagination), cancel, retry.

use actix_web::{HttpRequest, HttpResponse, web};
use mediapro_core::{
    Code,
    store::{Cancel, Cursor, DEFAULT_LIMIT, MAX_LIMIT, Retry, TaskFilter},
    task::{TaskKind, TaskStatus},
    validate::ValidationError,
};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

use mediapro_core::view::TaskView;

use crate::{error::ApiError, state::AppState};

/// A task
#[utoipa::path(
    operation_id = "get_task",
    get,
    path = "/api/tasks/{task_id}",
    tag = "tasks",
    params(TaskId),
    responses((status = 200, description = "The task", body = TaskView))
)]
pub async fn get(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let task = state.store.get(path.into_inner()).await?.ok_or_else(|| ApiError::not_found("task"))?;
    Ok(HttpResponse::Ok().json(TaskView::from(&task)))
}

/// The `{task_id}` of a task path (a UUID; anything else names no task: 404).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path segment that `web::Path<Uuid>` reads
pub struct TaskId {
    task_id: Uuid,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Comma-separated statuses (`pending`, `downloading`, `processing`,
    /// `expanding`, `completed`, `failed`, `cancelled`).
    #[param(example = "failed,cancelled")]
    status: Option<String>,
    /// `download`, `process` or `playlist`.
    #[param(value_type = Option<TaskKind>)]
    kind: Option<String>,
    /// Only the children of this collection (a `playlist` task): its child downloads.
    #[param(value_type = Option<Uuid>)]
    parent_task_id: Option<String>,
    /// Only tasks created at or after this RFC 3339 time.
    #[param(format = DateTime)]
    created_after: Option<String>,
    /// Only tasks created before this RFC 3339 time.
    #[param(format = DateTime)]
    created_before: Option<String>,
    /// Page size (default 20, at most 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of tasks, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskPage {
    tasks: Vec<TaskView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

impl ListQuery {
    fn into_filter(self) -> Result<TaskFilter, ValidationError> {
        let invalid = |field: &'static str, e: &dyn std::fmt::Display| {
            ValidationError::new(field, Code::InvalidFilter, e.to_string())
        };
        let statuses = match self.status.as_deref().filter(|s| !s.is_empty()) {
            Some(list) => list
                .split(',')
                .map(|s| s.trim().parse::<TaskStatus>().map_err(|e| invalid("status", &e)))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let kind = self
            .kind
            .as_deref()
            .map(|k| k.parse::<TaskKind>().map_err(|e| invalid("kind", &e)))
            .transpose()?;
        let time = |field: &'static str, v: Option<String>| {
            v.map(|t| {
                OffsetDateTime::parse(&t, &Rfc3339).map_err(|_| {
                    invalid(field, &format!("'{t}' is not an RFC 3339 time like 2026-11-28T13:00:00Z"))
                })
            })
            .transpose()
        };
        let limit = match self.limit {
            Some(l) => {
                l.parse::<u32>().ok().filter(|l| (1..=MAX_LIMIT).contains(l)).ok_or_else(|| {
                    invalid("limit", &format!("must be a whole number from 1 to {MAX_LIMIT}"))
                })?
            }
            None => DEFAULT_LIMIT,
        };
        let parent_task_id = self
            .parent_task_id
            .as_deref()
            .map(|p| {
                p.parse::<Uuid>().map_err(|_| invalid("parent_task_id", &format!("'{p}' is not a task id")))
            })
            .transpose()?;
        Ok(TaskFilter {
            statuses,
            kind,
            parent_task_id,
            created_after: time("created_after", self.created_after)?,
            created_before: time("created_before", self.created_before)?,
            limit,
            cursor: self.cursor.as_deref().map(Cursor::parse).transpose()?,
        })
    }
}

/// List tasks, newest first
///
/// Filters combine; pages follow `next_cursor`.
#[utoipa::path(
    operation_id = "list_tasks",
    get,
    path = "/api/tasks",
    tag = "tasks",
    params(ListQuery),
    responses((status = 200, description = "A page of tasks", body = TaskPage))
)]
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.into_inner().into_filter()?;
    let page = state.store.list(&filter).await?;
    let tasks: Vec<TaskView> = page.tasks.iter().map(TaskView::from).collect();
    Ok(HttpResponse::Ok().json(TaskPage { tasks, next_cursor: page.next_cursor.map(|c| c.to_string()) }))
}

/// Cancel a task
///
/// A pending task never starts; a running job is killed by its worker within about
/// a second. 409 when the task already finished.
#[utoipa::path(
    delete,
    path = "/api/tasks/{task_id}",
    tag = "tasks",
    params(TaskId),
    responses((status = 200, description = "The task, now cancelled", body = TaskView))
)]
pub async fn cancel(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    match state.dispatcher.cancel(path.into_inner()).await? {
        Cancel::Cancelled(task) => Ok(HttpResponse::Ok().json(TaskView::from(&task))),
        Cancel::AlreadyFinal(task) => Err(ApiError::new(
            Code::TaskFinished,
            format!("task is already {}; only pending or running tasks can be cancelled", task.status),
        )),
        Cancel::NotFound => Err(ApiError::not_found("task")),
    }
}

/// Retry a failed or cancelled task
#[utoipa::path(
    post,
    path = "/api/tasks/{task_id}/retry",
    tag = "tasks",
    params(TaskId),
    responses((status = 202, description = "The task, pending again", body = TaskView))
)]
pub async fn retry(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_submission(&req, &state.store).await?;
    let task = match state.dispatcher.retry(path.into_inner()).await? {
        Retry::Requeued(task) => task,
        Retry::NotRetryable(task) => {
            return Err(ApiError::new(
                Code::NotRetryable,
                format!("task is {}; only failed or cancelled tasks can be retried", task.status),
            ));
        }
        Retry::NotFound => return Err(ApiError::not_found("task")),
    };
    Ok(HttpResponse::Accepted().json(TaskView::from(&task)))
}
