//! Routes, one module per endpoint group. Every resource answers unknown methods
//! with a JSON 405 and the app answers unknown paths with a JSON 404.
//!
//! Every resource is made by [`resource`], which takes the access it needs and wraps
//! it in the key check (`crates/api/src/auth.rs`): there is no way to register a route
//! without saying who may call it.

mod analyze;
mod download;
mod events;
mod health;
mod metrics;
mod process;
mod result;
mod tasks;
mod uploads;
mod whoami;

use actix_web::{
    Error, HttpRequest, HttpResponse, Resource, ResponseError,
    body::BoxBody,
    dev::{ServiceFactory, ServiceRequest, ServiceResponse},
    middleware, web,
};
use mediapro_core::Code;

pub use crate::auth::Access;
use crate::{auth, error::ApiError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    use Access::{Open, Read, Write};
    cfg.service(resource("/api/analyze", Write).route(web::post().to(analyze::analyze)))
        .service(resource("/api/download", Write).route(web::post().to(download::create)))
        .service(resource("/api/process", Write).route(web::post().to(process::create)))
        .service(resource("/api/uploads", Write).route(web::post().to(uploads::upload)))
        .service(resource("/api/tasks", Read).route(web::get().to(tasks::list)))
        .service(resource("/api/events", Read).route(web::get().to(events::events)))
        // Read: GET needs a read key; DELETE, not a GET, needs a full key.
        .service(
            resource("/api/tasks/{task_id}", Read)
                .route(web::get().to(tasks::get))
                .route(web::delete().to(tasks::cancel)),
        )
        .service(resource("/api/tasks/{task_id}/retry", Write).route(web::post().to(tasks::retry)))
        .service(
            resource("/api/download-result/{task_id}", Read).route(web::get().to(result::download_result)),
        )
        .service(resource("/api/whoami", Read).route(web::get().to(whoami::whoami)))
        .service(resource("/metrics", Read).route(web::get().to(metrics::metrics)))
        .service(resource("/healthz", Open).route(web::get().to(health::healthz)))
        .service(resource("/readyz", Open).route(web::get().to(health::readyz)))
        .configure(crate::ui::configure);
}

/// A resource that needs `access` (checked after routing, before any handler or
/// extractor runs) and answers unknown methods with a JSON 405.
pub(crate) fn resource(
    path: &str,
    access: Access,
) -> Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = Error,
        InitError = (),
    > + use<>,
> {
    web::resource(path)
        .default_service(web::to(method_not_allowed))
        .wrap(middleware::from_fn(move |req, next| auth::authorize(access, req, next)))
}

pub(crate) async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::new(Code::MethodNotAllowed, format!("{} is not allowed on {}", req.method(), req.path()))
        .error_response()
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::new(Code::NotFound, format!("no route for {} {}", req.method(), req.path())).error_response()
}
