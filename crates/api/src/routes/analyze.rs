use actix_web::{HttpRequest, HttpResponse, web};
use mediapro_core::{analyze, requests::AnalyzeBody};

use crate::{error::ApiError, state::AppState};

/// Sites change (formats come and go): keep answers for a few minutes only.
const ANALYZE_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// What a URL offers
///
/// One bounded yt-dlp run (through the egress guard): title, duration, every format,
/// subtitle languages. Answers are cached for a few minutes.
#[utoipa::path(
    post,
    path = "/api/analyze",
    tag = "media",
    request_body(content = mediapro_core::requests::AnalyzeBody, content_type = "application/json"),
    responses((status = 200, description = "What can be downloaded", body = mediapro_core::ytdlp::MediaInfo))
)]
#[tracing::instrument(skip_all)]
pub async fn analyze(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_analyze(&req).await?;
    let url =
        mediapro_core::body::parse::<AnalyzeBody>(body.into_inner())?.validate(state.egress_policy()).await?;
    if let Some(cached) = state.queue.cached_analysis(url.as_str()).await {
        return Ok(HttpResponse::Ok().content_type("application/json").body(cached));
    }
    let _slot = state.limits.analyze_slot().await?;
    // Every connection yt-dlp makes (redirects too) goes through a proxy of its own.
    let proxy = state.egress.start_proxy().await.map_err(|_| ApiError::internal("egress proxy"))?;
    let result =
        analyze::analyze(&state.ytdlp, &url, state.settings.analyze_timeout(), Some(&proxy.url())).await;
    if let Some(reason) = proxy.first_refusal_reason() {
        return Err(analyze::AnalyzeError::Blocked(reason).into());
    }
    let info = result?;
    let json = serde_json::to_string(&info).map_err(|_| ApiError::internal("analysis does not serialise"))?;
    state.queue.cache_analysis(url.as_str(), &json, ANALYZE_CACHE_TTL).await;
    Ok(HttpResponse::Ok().content_type("application/json").body(json))
}
