//! `GET /api/whoami`: what the presented key may do, so the web UI can hide the
//! controls a read key cannot use.

use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use serde_json::json;

use crate::{auth::Principal, error::ApiError};

/// `{"access": "full" | "read" | "anonymous"}`.
pub async fn whoami(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let access = req
        .extensions()
        .get::<Principal>()
        .map(Principal::describe)
        .ok_or_else(|| ApiError::internal("whoami: no principal"))?;
    Ok(HttpResponse::Ok().json(json!({ "access": access })))
}
