use actix_web::{HttpRequest, HttpResponse, web};
use mediapro_core::{analyze, requests::AnalyzeBody, site_profile::PrivateCookies, ytdlp::SiteArgs};

use crate::{error::ApiError, state::AppState};

/// Sites change (formats come and go): keep answers for a few minutes only.
const ANALYZE_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// What a URL offers
///
/// One bounded yt-dlp run (through the egress guard): title, duration, every format,
/// subtitle languages. A playlist, channel or feed answers with a page of its flat
/// listing (no entry is extracted, no media fetched), at most
/// `limits.max_playlist_items` entries in all. Answers are cached for a few minutes.
#[utoipa::path(
    post,
    path = "/api/analyze",
    tag = "media",
    request_body(content = mediapro_core::requests::AnalyzeBody, content_type = "application/json"),
    responses((status = 200, description = "What can be downloaded: a video (`kind: video`), or one page of a playlist, channel or feed (`kind: playlist`, paged by `cursor`/`page_size`)", body = mediapro_core::analyze::Analysis))
)]
#[tracing::instrument(skip_all)]
pub async fn analyze(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_analyze(&req).await?;
    let body = mediapro_core::body::parse::<AnalyzeBody>(body.into_inner())?;
    let page = body.page(state.settings.limits.max_playlist_items)?;
    let paged = body.cursor.is_some() || body.page_size.is_some();
    let url = body.validate(state.egress_policy()).await?;
    // The site profile of the URL's host applies (its cookies, headers, proxy).
    let profile = state.store.site_profile_for_host(&url.host()).await?;
    // A page other than the default one is cached under its own key; so is an
    // answer under a profile (per version of it: new cookies, new answer).
    let mut cache_key =
        if paged { format!("{url} page={}:{}", page.offset, page.size) } else { url.as_str().to_owned() };
    if let Some(p) = &profile {
        cache_key.push_str(&format!(" profile={}@{}", p.name, p.updated_at));
    }
    if let Some(cached) = state.queue.cached_analysis(&cache_key).await {
        return Ok(HttpResponse::Ok().content_type("application/json").body(cached));
    }
    let _slot = state.limits.analyze_slot().await?;
    // Every connection yt-dlp makes (redirects too) goes through a proxy of its own
    // (chained to the profile's upstream proxy, if any).
    let upstream = profile.as_ref().and_then(|p| p.upstream_proxy.as_ref());
    let proxy =
        state.egress.start_proxy_via(upstream).await.map_err(|_| ApiError::internal("egress proxy"))?;
    // The profile's cookies as a private copy for this run, removed with `scratch`.
    let scratch = state.layout.root().join("tmp").join(uuid::Uuid::new_v4().to_string());
    let cookies = match &profile {
        Some(p) => match state.store.site_cookies(&p.name).await? {
            Some(text) => Some(
                PrivateCookies::write(&scratch, &text)
                    .await
                    .map_err(|_| ApiError::internal("cookies copy"))?,
            ),
            None => None,
        },
        None => None,
    };
    let site = profile.as_ref().map(|p| SiteArgs::new(p, cookies.as_ref().map(PrivateCookies::path)));
    let result = analyze::analyze_page(
        &state.ytdlp,
        &url,
        page,
        state.settings.analyze_timeout(),
        Some(&proxy.url()),
        site.as_ref(),
    )
    .await;
    drop(cookies);
    if profile.is_some() {
        let _ = tokio::fs::remove_dir_all(&scratch).await;
    }
    if let Some(reason) = proxy.first_refusal_reason() {
        return Err(analyze::AnalyzeError::Blocked(reason).into());
    }
    let info = result?;
    let json = serde_json::to_string(&info).map_err(|_| ApiError::internal("analysis does not serialise"))?;
    state.queue.cache_analysis(&cache_key, &json, ANALYZE_CACHE_TTL).await;
    Ok(HttpResponse::Ok().content_type("application/json").body(json))
}
