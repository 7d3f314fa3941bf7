//! Optional API-key authentication: when `security.api_keys` is non-empty, every
//! `/api/` request needs `Authorization: Bearer <key>` (or `X-API-Key: <key>`).

use actix_web::{
    Error, HttpResponse, ResponseError,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header,
    middleware::Next,
    web,
};

use mediapro_core::Code;

use crate::{error::ApiError, state::AppState};

pub async fn require_api_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let keys = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.settings.security.api_keys.clone())
        .unwrap_or_default();
    if keys.is_empty() || !req.path().starts_with("/api/") || req.method() == actix_web::http::Method::OPTIONS
    {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim);
    let ok = presented.is_some_and(|p| keys.iter().any(|k| constant_time_eq(k.as_bytes(), p.as_bytes())));
    if ok {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let err = ApiError::new(Code::Unauthorized, "a valid API key is required");
    let res: HttpResponse = err.error_response();
    Ok(req.into_response(res).map_into_boxed_body())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
