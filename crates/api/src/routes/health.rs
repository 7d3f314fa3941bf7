use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::state::AppState;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: Redis and the task store answer; 503 naming what does not.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (redis, db) = tokio::join!(state.queue.ping(), state.store.ping());
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let body = json!({
        "status": if redis.is_ok() && db.is_ok() { "ready" } else { "not_ready" },
        "redis": word(redis.is_ok()),
        "database": word(db.is_ok()),
    });
    if redis.is_ok() && db.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
