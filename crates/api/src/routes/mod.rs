//! Routes, one module per endpoint group. Every resource answers unknown methods
//! with a JSON 405 and the app answers unknown paths with a JSON 404.

mod analyze;
mod download;
mod events;
mod health;
mod process;
mod result;
mod tasks;
mod uploads;

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use mediapro_core::Code;

use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/analyze").route(web::post().to(analyze::analyze)))
        .service(resource("/api/download").route(web::post().to(download::create)))
        .service(resource("/api/process").route(web::post().to(process::create)))
        .service(resource("/api/uploads").route(web::post().to(uploads::upload)))
        .service(resource("/api/tasks").route(web::get().to(tasks::list)))
        .service(resource("/api/events").route(web::get().to(events::events)))
        .service(
            resource("/api/tasks/{task_id}")
                .route(web::get().to(tasks::get))
                .route(web::delete().to(tasks::cancel)),
        )
        .service(resource("/api/tasks/{task_id}/retry").route(web::post().to(tasks::retry)))
        .service(resource("/api/download-result/{task_id}").route(web::get().to(result::download_result)))
        .service(resource("/healthz").route(web::get().to(health::healthz)))
        .service(resource("/readyz").route(web::get().to(health::readyz)))
        .configure(crate::ui::configure);
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

pub(crate) async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::new(Code::MethodNotAllowed, format!("{} is not allowed on {}", req.method(), req.path()))
        .error_response()
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::new(Code::NotFound, format!("no route for {} {}", req.method(), req.path())).error_response()
}
