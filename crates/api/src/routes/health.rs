//! Liveness and readiness, open to all (load balancers, supervisors).

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
}

/// `ok` or `unavailable`.
#[derive(Serialize, utoipa::ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Dependency {
    Ok,
    Unavailable,
}

/// `ready` when Redis and the task store answer, else `not_ready`.
#[derive(Serialize, utoipa::ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    Ready,
    NotReady,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Ready {
    status: Readiness,
    redis: Dependency,
    database: Dependency,
}

/// The process is up
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    responses((status = 200, description = "Alive", body = Health))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Redis and the task store answer
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready: names what does not answer", body = Ready),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (redis, db) = tokio::join!(state.queue.ping(), state.store.ping());
    let word = |ok: bool| if ok { Dependency::Ok } else { Dependency::Unavailable };
    let ready = redis.is_ok() && db.is_ok();
    let body = Ready {
        status: if ready { Readiness::Ready } else { Readiness::NotReady },
        redis: word(redis.is_ok()),
        database: word(db.is_ok()),
    };
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}
