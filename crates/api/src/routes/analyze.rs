use actix_web::{HttpResponse, web};
use mediapro_core::{analyze, requests::AnalyzeBody};

use crate::{error::ApiError, state::AppState};

/// `POST /api/analyze {url}` → formats, subtitles, title, duration.
#[tracing::instrument(skip_all)]
pub async fn analyze(
    state: web::Data<AppState>,
    body: web::Json<AnalyzeBody>,
) -> Result<HttpResponse, ApiError> {
    let url = body.into_inner().validate(state.address_policy()).await?;
    let _slot = state.analyze_slots.acquire().await.map_err(|_| ApiError::not_found("analyze"))?;
    let info = analyze::analyze(&state.settings.tools.ytdlp, &url, state.settings.analyze_timeout()).await?;
    Ok(HttpResponse::Ok().json(info))
}
