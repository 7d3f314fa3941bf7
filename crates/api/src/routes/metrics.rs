//! `GET /metrics`: this API's metrics in the Prometheus text format (requests,
//! latency, rate-limit refusals, event-stream clients), plus the queue depth and
//! tasks by status, read when scraped (`crates/queue/src/metrics.rs`). A read
//! route: with keys configured it needs a read or full key, like any `GET`.
//! `server.metrics = false` turns recording off and answers 404 here.

use actix_web::{HttpResponse, web};
use mediapro_core::Code;

use crate::{error::ApiError, state::AppState};

/// The content type of the Prometheus text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    responses((
        status = 200,
        description = "Prometheus text exposition format: request counts and latency by route, rate-limit refusals, event-stream clients, queue depth per queue and tasks by status",
        body = String,
        content_type = "text/plain"
    ))
)]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(registry) = &state.registry else {
        return Err(ApiError::new(Code::NotFound, "metrics are off (server.metrics = false)"));
    };
    let body = registry.render_with_gauges(&state.queue, &state.store).await;
    Ok(HttpResponse::Ok().content_type(TEXT_FORMAT).body(body))
}
