//! `POST /api/uploads`: a file to process, streamed to disk in constant memory.

use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt;
use mediapro_core::Code;
use mediapro_core::ffmpeg::{self, MediaProbe};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::{error::ApiError, state::AppState};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The original file name (also accepted as an `X-Filename` header); only its
    /// extension and safe characters are kept.
    filename: Option<String>,
}

/// Where the upload was stored (`input_file` for `POST /api/process`) and what it holds.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    #[schema(example = "uploads/5f0c…/clip.mp4")]
    input_file: String,
    /// `container`, `duration`, `size_bytes` (the bytes received), `streams`.
    #[serde(flatten)]
    probe: MediaProbe,
}

/// Upload a file to process
///
/// The raw request body is the file (`curl --data-binary @clip.mp4`; not a
/// multipart form). It is written to `uploads/<id>/` chunk by chunk, refused past
/// `limits.max_file_size_bytes`, probed, and kept only if it is media.
#[utoipa::path(
    post,
    path = "/api/uploads",
    tag = "media",
    params(
        UploadQuery,
        ("X-Filename" = Option<String>, Header, description = "The original file name, if not in the query"),
        ("Idempotency-Key" = Option<String>, Header, description = "A client-chosen key, 1-255 printable ASCII characters, remembered 24 h per API key: the same key with the same body gets the first answer again (header Idempotent-Replayed: true, never a second task); with another body or route, 422 idempotency_key_reused"),
    ),
    request_body(content = crate::openapi::Binary, content_type = "application/octet-stream", description = "The file's bytes"),
    responses((status = 201, description = "Stored and probed", body = Uploaded))
)]
pub async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<UploadQuery>,
    mut body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_submission(&req, &state.store).await?;
    state.ensure_free_space()?;
    let limit = state.settings.limits.max_file_size_bytes;
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large(limit));
    }
    let name = query
        .into_inner()
        .filename
        .or_else(|| req.headers().get("x-filename").and_then(|v| v.to_str().ok()).map(str::to_owned));
    let id = Uuid::new_v4();
    let dir = state.layout.root().join("uploads").join(id.to_string());
    tokio::fs::create_dir_all(&dir).await.map_err(internal)?;
    let incoming = dir.join(".incoming");
    let result = async {
        let mut file = tokio::fs::File::create(&incoming).await.map_err(internal)?;
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            // A stalled or trickling body fails here (`crates/api/src/body_deadline.rs`,
            // installed on every request with a body) and the folder is removed below.
            let chunk = chunk.map_err(|e| crate::error::payload_error(&e, Code::UploadInterrupted))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(too_large(limit));
            }
            file.write_all(&chunk).await.map_err(internal)?;
        }
        file.flush().await.map_err(internal)?;
        drop(file);
        if size == 0 {
            return Err(ApiError::new(Code::EmptyUpload, "the request body is empty"));
        }
        let probe = ffmpeg::probe(&state.settings.tools.ffprobe, &incoming).await?;
        let final_name = file_name(name.as_deref(), &probe);
        tokio::fs::rename(&incoming, dir.join(&final_name)).await.map_err(internal)?;
        let probe = MediaProbe { size_bytes: Some(size), ..probe };
        Ok(Uploaded { input_file: format!("uploads/{id}/{final_name}"), probe })
    }
    .await;
    match result {
        Ok(uploaded) => Ok(HttpResponse::Created().json(uploaded)),
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            Err(e)
        }
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(Code::PayloadTooLarge, format!("uploads are limited to {limit} bytes"))
}

fn internal(e: std::io::Error) -> ApiError {
    tracing::error!(error = %e, "upload failed");
    ApiError::internal("upload i/o")
}

/// A safe name: ASCII letters, digits, `-`, `_`, `.`; never hidden; the extension
/// from the client if plain, else from the probed container.
fn file_name(given: Option<&str>, probe: &MediaProbe) -> String {
    let base = given.and_then(|g| g.rsplit(['/', '\\']).next()).unwrap_or("upload");
    let (stem, ext) = match base.rsplit_once('.') {
        Some((s, e))
            if !s.is_empty()
                && (1..=5).contains(&e.len())
                && e.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            (s, e.to_ascii_lowercase())
        }
        _ => (base, default_ext(&probe.container).to_owned()),
    };
    let mut stem: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .take(100)
        .collect();
    stem = stem.trim_start_matches('.').to_owned();
    if stem.is_empty() {
        stem = "upload".into();
    }
    format!("{stem}.{ext}")
}

fn default_ext(container: &str) -> &'static str {
    match container {
        c if c.starts_with("mov") => "mp4",
        c if c.starts_with("matroska") => "mkv",
        "mp3" => "mp3",
        "ogg" => "ogg",
        "wav" => "wav",
        "flac" => "flac",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(container: &str) -> MediaProbe {
        MediaProbe { container: container.into(), duration: None, size_bytes: None, streams: vec![] }
    }

    #[test]
    fn upload_names_are_sanitised() {
        let p = probe("mov,mp4,m4a,3gp,3g2,mj2");
        assert_eq!(file_name(Some("My Clip (1).MP4"), &p), "My_Clip__1_.mp4");
        assert_eq!(file_name(Some("../../etc/passwd"), &p), "passwd.mp4");
        assert_eq!(file_name(Some(".hidden.mkv"), &p), "hidden.mkv");
        assert_eq!(file_name(None, &p), "upload.mp4");
        assert_eq!(file_name(Some("x.<script>"), &probe("matroska,webm")), "x._script_.mkv");
    }
}
