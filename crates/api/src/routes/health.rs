//! Liveness and readiness, open to all (load balancers, supervisors).

use actix_web::{HttpResponse, web};
use mediapro_core::process::ythost::{HostStatus, YtdlpStatus};
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
    ytdlp: Ytdlp,
}

/// This API's warm yt-dlp host (an optimisation: readiness never depends on it).
#[derive(Serialize, utoipa::ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum YtdlpHost {
    /// `tools.ytdlp_host = false`: yt-dlp is spawned per run.
    Off,
    Starting,
    Ready,
    /// Not running (could not start, or restarting): yt-dlp is spawned per run meanwhile.
    Unavailable,
}

/// How this API runs yt-dlp, and which version.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Ytdlp {
    host: YtdlpHost,
    /// The host's yt-dlp version while it is ready, else the spawned CLI's
    /// (`null` until known).
    #[schema(example = "2026.10.26")]
    version: Option<String>,
}

impl From<YtdlpStatus> for Ytdlp {
    fn from(status: YtdlpStatus) -> Self {
        let host = match status.host {
            HostStatus::Off => YtdlpHost::Off,
            HostStatus::Starting => YtdlpHost::Starting,
            HostStatus::Ready => YtdlpHost::Ready,
            HostStatus::Unavailable => YtdlpHost::Unavailable,
        };
        Self { host, version: status.version }
    }
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
///
/// Also says how yt-dlp runs (`ytdlp`: the warm host's state and the yt-dlp
/// version), which never makes the API unready.
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
        ytdlp: state.ytdlp.status().into(),
    };
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}
