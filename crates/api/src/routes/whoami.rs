//! `GET /api/whoami`: what the presented key may do, so the web UI can hide the
//! controls a read key cannot use.

use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use serde::Serialize;

use crate::{auth::Principal, error::ApiError};

/// What the presented key may do.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    #[schema(value_type = KeyAccess)]
    access: &'static str,
}

/// `full`: everything; `read`: only `GET`; `anonymous`: no keys are configured.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // documents the values of `Principal::describe`
pub enum KeyAccess {
    Full,
    Read,
    Anonymous,
}

/// What the presented key may do
#[utoipa::path(
    get,
    path = "/api/whoami",
    tag = "service",
    responses((status = 200, description = "The key's access", body = WhoAmI))
)]
pub async fn whoami(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let access = req
        .extensions()
        .get::<Principal>()
        .map(Principal::describe)
        .ok_or_else(|| ApiError::internal("whoami: no principal"))?;
    Ok(HttpResponse::Ok().json(WhoAmI { access }))
}
