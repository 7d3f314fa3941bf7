use actix_files::NamedFile;
use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{self, ContentDisposition, DispositionParam, DispositionType, ExtendedValue},
    web,
};
use mediapro_core::{
    Code,
    task::{Task, TaskKind, TaskStatus},
    zip::{ZipEntry, ZipError, ZipPlan, dos_datetime, safe_name},
};
use serde::Deserialize;
use uuid::Uuid;

use crate::{error::ApiError, state::AppState};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResultQuery {
    /// Index into `downloaded_files` (0 = the media file; subtitles follow).
    file: Option<usize>,
}

/// A completed task's result file
///
/// The file as an attachment (its own media type); `Range` and `If-Range` work
/// (resumable downloads, seeking players), with `Last-Modified` as the validator.
/// A collection (`kind: playlist`) answers with one ZIP of its completed
/// children's media (stored, built while it streams, `Content-Length` known,
/// entries named `<index>-<file name>`).
#[utoipa::path(
    get,
    path = "/api/download-result/{task_id}",
    tag = "tasks",
    params(super::tasks::TaskId, ResultQuery),
    responses(
        (status = 200, description = "The file (a collection: one ZIP of its completed children, `application/zip`)", content_type = "*/*", body = crate::openapi::Binary,
         headers(("Content-Disposition" = String, description = "attachment; filename=…"))),
        (status = 206, description = "The requested range of the file", content_type = "*/*", body = crate::openapi::Binary),
    )
)]
pub async fn download_result(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<ResultQuery>,
) -> Result<HttpResponse, ApiError> {
    let task = state.store.get(path.into_inner()).await?.ok_or_else(|| ApiError::not_found("task"))?;
    if task.status != TaskStatus::Completed {
        return Err(ApiError::new(Code::TaskNotCompleted, format!("task is {}, not completed", task.status)));
    }
    if task.kind() == TaskKind::Playlist {
        return collection_zip(&state, &task).await;
    }
    let rel = match query.file {
        Some(i) => task.downloaded_files.get(i).map(String::as_str),
        None => task.result_file(),
    }
    .ok_or_else(|| ApiError::not_found("result file"))?;
    let missing = || {
        ApiError::new(
            Code::ResultMissing,
            "the result file is not in this server's storage (expired, deleted, or storage not shared with the worker)",
        )
    };
    let path = state.layout.resolve(rel).ok_or_else(missing)?;
    // Serve only regular files really inside the root (no symlink escapes).
    let real = tokio::fs::canonicalize(&path).await.map_err(|_| missing())?;
    let root = tokio::fs::canonicalize(state.layout.root()).await.map_err(|_| missing())?;
    if !real.starts_with(&root) {
        return Err(missing());
    }
    // A regular file, checked before opening: opening a FIFO (or a device) would
    // block. Both calls run on the blocking pool, off the HTTP worker threads.
    if !tokio::fs::metadata(&real).await.map_err(|_| missing())?.is_file() {
        return Err(missing());
    }
    let file = NamedFile::open_async(&real).await.map_err(|_| missing())?;
    let name = real.file_name().and_then(|n| n.to_str()).unwrap_or("result");
    // Last-Modified is the one validator (no ETag), so `If-Range` can be checked
    // here: actix-files ignores it and would answer a stale range with 206.
    let file = file.set_content_disposition(attachment(name)).use_etag(false).use_last_modified(true);
    let mut res = if range_is_stale(&req, file.modified()) {
        whole_file(&real, &file).await.map_err(|_| missing())?
    } else {
        file.into_response(&req)
    };
    res.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    Ok(res)
}

/// The media of a collection's completed children (a chained processing task's
/// output when it completed, else the downloaded file) as one ZIP streamed from
/// the files: no temporary file, the length announced up front.
async fn collection_zip(state: &AppState, parent: &Task) -> Result<HttpResponse, ApiError> {
    let root =
        tokio::fs::canonicalize(state.layout.root()).await.map_err(|_| ApiError::internal("storage root"))?;
    let mut entries = Vec::new();
    let mut taken = std::collections::HashSet::new();
    let mut children = state.store.children(parent.task_id, &[TaskStatus::Completed]).await?;
    children.sort_by_key(|c| match &c.request {
        mediapro_core::task::TaskRequest::Download(spec) => spec.playlist_index.unwrap_or(u64::MAX),
        _ => u64::MAX,
    });
    for child in children {
        let index = match &child.request {
            mediapro_core::task::TaskRequest::Download(spec) => spec.playlist_index,
            _ => None,
        };
        let processed = match child.next_task_id {
            Some(next) => state
                .store
                .get(next)
                .await?
                .filter(|t| t.status == TaskStatus::Completed)
                .and_then(|t| t.output_file),
            None => None,
        };
        let Some(rel) = processed.or_else(|| child.result_file().map(str::to_owned)) else { continue };
        // Only regular files really inside the root; a missing one (retention) is left out.
        let Some(path) = state.layout.resolve(&rel) else { continue };
        let Ok(real) = tokio::fs::canonicalize(&path).await else { continue };
        let Ok(meta) = tokio::fs::metadata(&real).await else { continue };
        if !real.starts_with(&root) || !meta.is_file() {
            continue;
        }
        let modified = meta.modified().map(time::OffsetDateTime::from).unwrap_or(parent.created_at);
        let (dos_time, dos_date) = dos_datetime(modified);
        let prefix = index.map(|i| format!("{i:03}-")).unwrap_or_default();
        let file_name = real.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let name = safe_name(&prefix, file_name, &mut taken);
        entries.push(ZipEntry { name, path: real, size: meta.len(), dos_time, dos_date });
    }
    if entries.is_empty() {
        return Err(ApiError::new(
            Code::ResultMissing,
            "no completed child's file is in this server's storage (expired, deleted, or not shared)",
        ));
    }
    let plan = ZipPlan::new(entries).map_err(|e| match e {
        ZipError::TooLarge => ApiError::new(Code::ResultTooLarge, e.to_string()),
        other => ApiError::internal(&other.to_string()),
    })?;
    let length = plan.length();
    let (mut writer, reader) = tokio::io::duplex(256 * 1024);
    let task_id = parent.task_id;
    tokio::spawn(async move {
        // An error ends the body early: the client sees fewer bytes than announced.
        if let Err(e) = plan.write(&mut writer).await {
            tracing::warn!(%task_id, error = %e, "collection ZIP stopped");
        }
    });
    let chunks = tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024);
    let name = format!("collection-{}.zip", parent.task_id);
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header(attachment(&name))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(actix_web::body::SizedStream::new(length, Box::pin(chunks))))
}

/// A Range request whose `If-Range` validator no longer matches the file must get
/// the whole (new) file, not a piece of it (RFC 9110 §13.1.5).
fn range_is_stale(req: &HttpRequest, modified: Option<std::time::SystemTime>) -> bool {
    let Some(if_range) = req.headers().get(header::IF_RANGE) else { return false };
    if !req.headers().contains_key(header::RANGE) {
        return false;
    }
    let current = modified.map(|m| header::HttpDate::from(m).to_string());
    let given =
        if_range.to_str().ok().and_then(|v| v.parse::<header::HttpDate>().ok()).map(|d| d.to_string());
    // An entity tag never matches (we send none); a date must equal Last-Modified.
    given.is_none() || given != current
}

async fn whole_file(path: &std::path::Path, named: &NamedFile) -> std::io::Result<HttpResponse> {
    use actix_web::body::SizedStream;

    let file = tokio::fs::File::open(path).await?;
    let len = file.metadata().await?.len();
    let chunks = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
    let mut res = HttpResponse::Ok();
    res.content_type(named.content_type().to_string())
        .insert_header(named.content_disposition().clone())
        .insert_header((header::ACCEPT_RANGES, "bytes"));
    if let Some(m) = named.modified() {
        res.insert_header(header::LastModified(m.into()));
    }
    Ok(res.body(SizedStream::new(len, Box::pin(chunks))))
}

/// RFC 6266: an ASCII fallback plus the UTF-8 name, both stripped of anything
/// that could break out of the header or spoof an extension.
fn attachment(name: &str) -> ContentDisposition {
    let cleaned: String = name
        .chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(*c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .take(200)
        .collect();
    let ascii: String = cleaned
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._- ()[]".contains(c) { c } else { '_' })
        .collect();
    ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![
            DispositionParam::Filename(ascii),
            DispositionParam::FilenameExt(ExtendedValue {
                charset: header::Charset::Ext("UTF-8".into()),
                language_tag: None,
                value: cleaned.into_bytes(),
            }),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_cannot_break_the_header() {
        let cd = attachment("evil\"\r\nX: y\u{202e}4pm.exe");
        let rendered = cd.to_string();
        assert!(!rendered.contains('\r') && !rendered.contains('\n'));
        assert!(rendered.starts_with("attachment; filename=\"evil_X_ y4pm.exe\""), "{rendered}");
    }
}
