//! Subscriptions (`crates/mediapro-core/src/subscription.rs`): a collection URL
//! re-checked every `every_minutes` by the worker's scheduler
//! (`crates/worker/src/subscriptions.rs`); each check is a `playlist` task that
//! queues the entries not in the download archive and not queued before.

use actix_web::{HttpResponse, web};
use mediapro_core::{
    Code,
    store::micros,
    subscription::{CheckView, SubscriptionBody, SubscriptionStatus, SubscriptionView},
    task::now,
    validate::ValidationError,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{error::ApiError, state::AppState};

const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;
/// Checks shown with a subscription.
const RECENT_CHECKS: u32 = 10;

/// The `{subscription_id}` of a subscription path (a UUID; anything else: 404).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path segment that `web::Path<Uuid>` reads
pub struct SubscriptionId {
    subscription_id: Uuid,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size (default 20, at most 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl PageQuery {
    fn limit(&self) -> Result<u32, ValidationError> {
        match &self.limit {
            Some(l) => l.parse::<u32>().ok().filter(|l| (1..=MAX_LIMIT).contains(l)).ok_or_else(|| {
                ValidationError::new(
                    "limit",
                    Code::InvalidFilter,
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                )
            }),
            None => Ok(DEFAULT_LIMIT),
        }
    }

    /// `<unix micros>:<uuid>` of the previous page's last item.
    fn cursor(&self) -> Result<Option<(i64, Uuid)>, ValidationError> {
        let Some(raw) = self.cursor.as_deref() else { return Ok(None) };
        let bad = || ValidationError::new("cursor", Code::InvalidCursor, "is not a cursor this API returned");
        let (t, id) = raw.split_once(':').ok_or_else(bad)?;
        Ok(Some((t.parse().map_err(|_| bad())?, id.parse().map_err(|_| bad())?)))
    }
}

/// A page of subscriptions, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SubscriptionPage {
    subscriptions: Vec<SubscriptionView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// A page of a subscription's checks, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CheckPage {
    checks: Vec<CheckView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

async fn found(state: &AppState, id: Uuid) -> Result<mediapro_core::subscription::Subscription, ApiError> {
    state.store.subscription(id).await?.ok_or_else(|| ApiError::not_found("subscription"))
}

/// The subscription with its latest checks.
async fn detailed(state: &AppState, id: Uuid) -> Result<SubscriptionView, ApiError> {
    let subscription = found(state, id).await?;
    let checks = state.store.checks_page(id, None, RECENT_CHECKS).await?;
    let mut view = SubscriptionView::from(&subscription);
    view.recent_checks = Some(checks.iter().map(CheckView::from).collect());
    Ok(view)
}

/// Subscribe to a collection
///
/// The URL (a playlist, channel or feed) is validated as a collection download's
/// (`items`, format, subtitles, processing of each entry) and checked at once,
/// then every `every_minutes` after each check starts. A check downloads the
/// entries that are not in the download archive and that no earlier check queued
/// (unless that download failed). `subscriptions.max_failures` failed checks in a
/// row pause it with the reason.
#[utoipa::path(
    operation_id = "create_subscription",
    post,
    path = "/api/subscriptions",
    tag = "subscriptions",
    request_body(content = SubscriptionBody, content_type = "application/json"),
    responses((status = 201, description = "The subscription (its first check is due at once)", body = SubscriptionView))
)]
pub async fn create(
    state: web::Data<AppState>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let body = mediapro_core::body::parse::<SubscriptionBody>(body.into_inner())?;
    let subscription = body.validate(state.egress_policy(), state.settings.limits.max_playlist_items).await?;
    state.store.insert_subscription(&subscription).await?;
    let mut view = SubscriptionView::from(&subscription);
    view.recent_checks = Some(Vec::new());
    Ok(HttpResponse::Created()
        .insert_header(("location", format!("/api/subscriptions/{}", subscription.subscription_id)))
        .json(view))
}

/// List subscriptions, oldest first
#[utoipa::path(
    operation_id = "list_subscriptions",
    get,
    path = "/api/subscriptions",
    tag = "subscriptions",
    params(PageQuery),
    responses((status = 200, description = "A page of subscriptions", body = SubscriptionPage))
)]
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (limit, after) = (query.limit()?, query.cursor()?);
    let mut page = state.store.subscriptions_page(after, limit + 1).await?;
    let next_cursor = if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last().map(|s| format!("{}:{}", s.created_at, s.subscription_id))
    } else {
        None
    };
    let subscriptions = page.iter().map(SubscriptionView::from).collect();
    Ok(HttpResponse::Ok().json(SubscriptionPage { subscriptions, next_cursor }))
}

/// A subscription, with its latest checks
#[utoipa::path(
    operation_id = "get_subscription",
    get,
    path = "/api/subscriptions/{subscription_id}",
    tag = "subscriptions",
    params(SubscriptionId),
    responses((status = 200, description = "The subscription and its 10 latest checks", body = SubscriptionView))
)]
pub async fn get(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(detailed(&state, path.into_inner()).await?))
}

/// Delete a subscription
///
/// Its checks' records go with it; the downloads they queued are tasks of their
/// own and stay.
#[utoipa::path(
    operation_id = "delete_subscription",
    delete,
    path = "/api/subscriptions/{subscription_id}",
    tag = "subscriptions",
    params(SubscriptionId),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    if state.store.delete_subscription(path.into_inner()).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found("subscription"))
    }
}

/// A subscription's checks, newest first
#[utoipa::path(
    get,
    path = "/api/subscriptions/{subscription_id}/checks",
    tag = "subscriptions",
    params(SubscriptionId, PageQuery),
    responses((status = 200, description = "A page of checks", body = CheckPage))
)]
pub async fn checks(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let (limit, before) = (query.limit()?, query.cursor()?);
    found(&state, id).await?;
    let mut page = state.store.checks_page(id, before, limit + 1).await?;
    let next_cursor = if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last().map(|c| format!("{}:{}", c.started_at, c.check_id))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(CheckPage { checks: page.iter().map(CheckView::from).collect(), next_cursor }))
}

/// Pause a subscription
///
/// No check starts until it is resumed; a check already listing is still recorded.
#[utoipa::path(
    post,
    path = "/api/subscriptions/{subscription_id}/pause",
    tag = "subscriptions",
    params(SubscriptionId),
    responses((status = 200, description = "The paused subscription", body = SubscriptionView))
)]
pub async fn pause(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    if !state.store.pause_subscription(id, "paused by a client").await? {
        return Err(ApiError::not_found("subscription"));
    }
    Ok(HttpResponse::Ok().json(detailed(&state, id).await?))
}

/// Resume a subscription
///
/// Active again with its failure count and reason cleared; a paused one is
/// checked at once.
#[utoipa::path(
    post,
    path = "/api/subscriptions/{subscription_id}/resume",
    tag = "subscriptions",
    params(SubscriptionId),
    responses((status = 200, description = "The active subscription", body = SubscriptionView))
)]
pub async fn resume(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    if !state.store.resume_subscription(id).await? {
        return Err(ApiError::not_found("subscription"));
    }
    Ok(HttpResponse::Ok().json(detailed(&state, id).await?))
}

/// Check a subscription now
///
/// Its next check is due now: the scheduler starts it within
/// `subscriptions.scheduler_interval_seconds` (after the check in flight, if
/// one is listing), and the next after it `every_minutes` later. 409 when paused.
#[utoipa::path(
    operation_id = "check_subscription",
    post,
    path = "/api/subscriptions/{subscription_id}/check",
    tag = "subscriptions",
    params(SubscriptionId),
    responses((status = 202, description = "A check is due now", body = SubscriptionView))
)]
pub async fn check(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    if !state.store.reschedule_subscription(id, micros(now())).await? {
        let subscription = found(&state, id).await?;
        if subscription.status == SubscriptionStatus::Paused {
            return Err(ApiError::new(
                Code::SubscriptionPaused,
                format!(
                    "subscription {id} is paused ({}): resume it first",
                    subscription.paused_reason.as_deref().unwrap_or("no reason given")
                ),
            ));
        }
        return Err(ApiError::not_found("subscription"));
    }
    Ok(HttpResponse::Accepted().json(detailed(&state, id).await?))
}
