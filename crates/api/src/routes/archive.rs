//! The download archive (`crates/mediapro-core/src/store/archive.rs`): what was
//! downloaded, by (extractor, media id), kept beyond retention; exported and
//! imported in yt-dlp's `--download-archive` format (`<extractor> <id>` lines).

use actix_web::{HttpResponse, web};
use mediapro_core::{
    Code,
    store::{ArchiveEntry, parse_archive_line},
    validate::ValidationError,
};
use serde::{Deserialize, Serialize};

use crate::{error::ApiError, state::AppState};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ArchiveQuery {
    /// Page size (default 100, at most 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of the archive, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ArchivePage {
    entries: Vec<ArchiveEntry>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// `<archived_at>:<extractor>:<media_id>` of the page's last entry.
fn parse_cursor(raw: &str) -> Result<(i64, String, String), ValidationError> {
    let bad = || ValidationError::new("cursor", Code::InvalidCursor, "is not a cursor this API returned");
    let mut parts = raw.splitn(3, ':');
    let t = parts.next().and_then(|t| t.parse().ok()).ok_or_else(bad)?;
    let extractor = parts.next().filter(|e| !e.is_empty()).ok_or_else(bad)?;
    let id = parts.next().filter(|i| !i.is_empty()).ok_or_else(bad)?;
    Ok((t, extractor.to_owned(), id.to_owned()))
}

/// The download archive, oldest first
///
/// Every media item a completed download fetched (and every imported line),
/// by yt-dlp's extractor key (lower case) and media id; kept beyond retention.
#[utoipa::path(
    operation_id = "list_archive",
    get,
    path = "/api/archive",
    tag = "archive",
    params(ArchiveQuery),
    responses((status = 200, description = "A page of the archive", body = ArchivePage))
)]
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<ArchiveQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = match q.limit {
        Some(l) => l.parse::<u32>().ok().filter(|l| (1..=MAX_LIMIT).contains(l)).ok_or_else(|| {
            ValidationError::new(
                "limit",
                Code::InvalidFilter,
                format!("must be a whole number from 1 to {MAX_LIMIT}"),
            )
        })?,
        None => DEFAULT_LIMIT,
    };
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let mut entries = state.store.archive_page(after, limit + 1).await?;
    let next_cursor = if entries.len() > limit as usize {
        entries.truncate(limit as usize);
        entries.last().map(|e| format!("{}:{}:{}", e.archived_at, e.extractor, e.media_id))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(ArchivePage { entries, next_cursor }))
}

/// The archive as a yt-dlp `--download-archive` file
///
/// One `<extractor> <id>` line per item, oldest first (`text/plain`).
#[utoipa::path(
    get,
    path = "/api/archive/export",
    tag = "archive",
    responses((status = 200, description = "yt-dlp archive lines", content_type = "text/plain", body = String))
)]
pub async fn export(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut out = String::new();
    let mut after = None;
    loop {
        let page = state.store.archive_page(after.clone(), MAX_LIMIT).await?;
        for e in &page {
            out.push_str(&format!("{} {}\n", e.extractor, e.media_id));
        }
        match page.last() {
            Some(e) if page.len() == MAX_LIMIT as usize => {
                after = Some((e.archived_at, e.extractor.clone(), e.media_id.clone()));
            }
            _ => break,
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(("content-disposition", "attachment; filename=\"archive.txt\""))
        .body(out))
}

/// `POST /api/archive/import`
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// The content of a yt-dlp `--download-archive` file: `<extractor> <id>` lines.
    #[serde(default)]
    #[schema(value_type = String, required = true, example = "youtube dQw4w9WgXcQ\ngeneric clip02\n")]
    archive: Option<String>,
}

impl mediapro_core::body::JsonBody for ImportBody {
    const OBJECT_FIELDS: &'static [&'static str] = &[];
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Imported {
    /// Lines added to the archive.
    imported: u64,
    /// Lines already in it.
    already_archived: u64,
    /// 1-based numbers of the lines that are not `<extractor> <id>` (blank lines are skipped).
    invalid_lines: Vec<u64>,
}

/// Import a yt-dlp archive file
///
/// Adds each `<extractor> <id>` line (the extractor key is stored in lower case).
#[utoipa::path(
    post,
    path = "/api/archive/import",
    tag = "archive",
    request_body(content = ImportBody, content_type = "application/json"),
    responses((status = 200, description = "What was imported", body = Imported))
)]
pub async fn import(
    state: web::Data<AppState>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let body = mediapro_core::body::parse::<ImportBody>(body.into_inner())?;
    let text =
        body.archive.ok_or_else(|| ValidationError::new("archive", Code::InvalidRequest, "is required"))?;
    let (mut imported, mut already, mut invalid) = (0, 0, Vec::new());
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_archive_line(line) {
            Some((extractor, id)) => {
                if state.store.archive(&extractor, &id, None, None).await? {
                    imported += 1;
                } else {
                    already += 1;
                }
            }
            None => invalid.push(n as u64 + 1),
        }
    }
    Ok(HttpResponse::Ok().json(Imported { imported, already_archived: already, invalid_lines: invalid }))
}

/// Forget an archived item
#[utoipa::path(
    operation_id = "delete_archive_entry",
    delete,
    path = "/api/archive/{extractor}/{media_id}",
    tag = "archive",
    params(
        ("extractor" = String, Path, description = "yt-dlp's extractor key (any case)"),
        ("media_id" = String, Path, description = "The media id"),
    ),
    responses((status = 204, description = "Forgotten"))
)]
pub async fn delete(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (extractor, id) = path.into_inner();
    if state.store.unarchive(&extractor, &id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found("archived item"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_keep_ids_with_colons() {
        assert_eq!(parse_cursor("12:youtube:a:b").ok(), Some((12, "youtube".into(), "a:b".into())));
        for bad in ["", "x:y:z", "12:youtube", "12::a"] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
    }
}
