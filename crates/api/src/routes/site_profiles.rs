//! Site profiles (`crates/mediapro-core/src/site_profile.rs`, stored by
//! `crates/mediapro-core/src/store/site_profile.rs`): per-site cookies, headers,
//! pacing and limits that every download and analyze of a matching URL uses. No
//! answer ever carries a cookie value: a profile shows only its cookies' summary.

use actix_web::{HttpResponse, web};
use futures::StreamExt as _;
use mediapro_core::{
    Code,
    site_profile::{self, SiteProfile, SiteProfileBody, cookies::MAX_COOKIES_BYTES},
    store::Saved,
};
use serde::Serialize;

use crate::{error::ApiError, state::AppState};

fn not_found(name: &str) -> ApiError {
    ApiError::new(Code::SiteProfileNotFound, format!("no site profile named '{name}'"))
}

/// Every site profile, by name.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SiteProfileList {
    profiles: Vec<SiteProfile>,
}

/// Every site profile
///
/// By name; cookies only as a summary (size, count, domains, earliest expiry).
#[utoipa::path(
    operation_id = "list_site_profiles",
    get,
    path = "/api/site-profiles",
    tag = "site profiles",
    responses((status = 200, description = "The profiles", body = SiteProfileList))
)]
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let profiles = state.store.site_profiles().await?;
    Ok(HttpResponse::Ok().json(SiteProfileList { profiles }))
}

/// A profile with what the site gate (`crates/queue/src/site_gate.rs`) knows of
/// its site now, across every worker; the gate's fields are `null` while Redis
/// does not answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SiteProfileView {
    #[serde(flatten)]
    profile: SiteProfile,
    /// Seconds left of the site's back-off after a throttled job (429, a
    /// "rate limit" 403); 0 when none. No job of the site starts meanwhile.
    backoff_seconds: Option<f64>,
    /// Jobs of the site holding one of its `max_concurrent` slots.
    running_jobs: Option<u64>,
    /// Jobs of the site waiting for it (`phase: waiting_for_site`).
    waiting_jobs: Option<u64>,
}

/// One site profile
///
/// With its site's current back-off and jobs (the site gate).
#[utoipa::path(
    operation_id = "get_site_profile",
    get,
    path = "/api/site-profiles/{name}",
    tag = "site profiles",
    params(("name" = String, Path, description = "The profile's name")),
    responses((status = 200, description = "The profile (cookies only as a summary)", body = SiteProfileView))
)]
pub async fn get(state: web::Data<AppState>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let profile = state.store.site_profile(&name).await?.ok_or_else(|| not_found(&name))?;
    let gate = match mediapro_queue::site_gate::site_state(&state.queue, &name).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, site = %name, "site gate state not readable");
            None
        }
    };
    Ok(HttpResponse::Ok().json(SiteProfileView {
        profile,
        backoff_seconds: gate.map(|s| s.backoff.as_secs_f64()),
        running_jobs: gate.map(|s| s.running),
        waiting_jobs: gate.map(|s| s.waiting),
    }))
}

/// Create or replace a site profile
///
/// The body sets every field (an omitted one is unset); uploaded cookies are
/// kept, and so is the health unless `check_url` changed.
#[utoipa::path(
    operation_id = "put_site_profile",
    put,
    path = "/api/site-profiles/{name}",
    tag = "site profiles",
    params(("name" = String, Path, description = "1–64 of a-z, 0-9, '.', '_', '-'")),
    request_body(content = SiteProfileBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = SiteProfile),
        (status = 200, description = "Replaced", body = SiteProfile),
    )
)]
pub async fn put(
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    site_profile::validate_name(&name)?;
    let body = mediapro_core::body::parse::<SiteProfileBody>(body.into_inner())?;
    let config = body.validate(state.egress_policy()).await?;
    let saved = state.store.put_site_profile(&name, &config).await?;
    let profile = state.store.site_profile(&name).await?.ok_or_else(|| not_found(&name))?;
    Ok(match saved {
        Saved::Created => HttpResponse::Created().json(profile),
        Saved::Replaced => HttpResponse::Ok().json(profile),
    })
}

/// Delete a site profile (and its cookies)
#[utoipa::path(
    operation_id = "delete_site_profile",
    delete,
    path = "/api/site-profiles/{name}",
    tag = "site profiles",
    params(("name" = String, Path, description = "The profile's name")),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete(state: web::Data<AppState>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    if state.store.delete_site_profile(&name).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(not_found(&name))
    }
}

/// Upload the profile's cookies
///
/// The raw body is a Netscape cookies file (`# Netscape HTTP Cookie File`, then
/// 7 tab-separated fields per cookie; at most 1 MiB). It replaces the previous
/// one; every job of the site gets a private copy. The answer, like every GET,
/// shows only a summary.
#[utoipa::path(
    put,
    path = "/api/site-profiles/{name}/cookies",
    tag = "site profiles",
    params(("name" = String, Path, description = "The profile's name")),
    request_body(content = String, content_type = "text/plain", description = "A Netscape cookies file"),
    responses((status = 200, description = "The profile with its cookies' summary", body = SiteProfile))
)]
pub async fn put_cookies(
    state: web::Data<AppState>,
    name: web::Path<String>,
    mut body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| crate::error::payload_error(&e, Code::InvalidBody))?;
        if bytes.len() + chunk.len() > MAX_COOKIES_BYTES {
            return Err(ApiError::new(
                Code::PayloadTooLarge,
                format!("a cookies file is at most {MAX_COOKIES_BYTES} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let summary = site_profile::parse_cookies(&bytes, mediapro_core::task::now())?;
    // Checked as UTF-8 by the parse.
    let text = String::from_utf8(bytes).map_err(|_| ApiError::new(Code::InvalidCookies, "not UTF-8"))?;
    if !state.store.set_site_cookies(&name, &text, &summary).await? {
        return Err(not_found(&name));
    }
    let profile = state.store.site_profile(&name).await?.ok_or_else(|| not_found(&name))?;
    Ok(HttpResponse::Ok().json(profile))
}

/// Check the profile's `check_url` now
///
/// Analyzes `check_url` with the profile applied (cookies, headers, upstream
/// proxy) and records the result on the profile (`healthy`, `checked_at`,
/// `check_error`); the answer is the profile. Uses an analyze slot. Workers also
/// check every `worker.site_check_interval_seconds`.
#[utoipa::path(
    operation_id = "check_site_profile",
    post,
    path = "/api/site-profiles/{name}/check",
    tag = "site profiles",
    params(("name" = String, Path, description = "The profile's name")),
    responses((status = 200, description = "The profile with the check's result", body = SiteProfile))
)]
pub async fn check(state: web::Data<AppState>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let profile = state.store.site_profile(&name).await?.ok_or_else(|| not_found(&name))?;
    if profile.check_url.is_none() {
        return Err(ApiError::new(Code::NoCheckUrl, format!("site profile '{name}' has no check_url")));
    }
    let _slot = state.limits.analyze_slot().await?;
    let proxy = state
        .egress
        .start_proxy_via(profile.upstream_proxy.as_ref())
        .await
        .map_err(|_| ApiError::internal("egress proxy"))?;
    let scratch = state.layout.root().join("tmp").join(uuid::Uuid::new_v4().to_string());
    site_profile::check_and_record(
        &state.store,
        &state.ytdlp,
        &profile,
        &scratch,
        &proxy.url(),
        || proxy.first_refusal_reason(),
        state.settings.analyze_timeout(),
    )
    .await?;
    let profile = state.store.site_profile(&name).await?.ok_or_else(|| not_found(&name))?;
    Ok(HttpResponse::Ok().json(profile))
}
