//! The download archive: which media items (extractor, id) were downloaded, kept
//! beyond retention (`migrations/20261203000002_download_archive.sql`). Its lines
//! are yt-dlp's `--download-archive` lines: `<extractor> <id>`, the extractor
//! key in lower case.

use super::{StoreError, TaskStore, micros, transition::Sql};
use crate::task::now;

/// One archived media item.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ArchiveEntry {
    /// yt-dlp's extractor key, lower case (`youtube`, `generic`).
    pub extractor: String,
    pub media_id: String,
    /// The task that downloaded it (`null` when imported).
    pub task_id: Option<String>,
    pub url: Option<String>,
    /// Unix microseconds.
    pub archived_at: i64,
}

/// `(extractor, media_id, task_id, url, archived_at)` as selected.
type ArchiveRow = (String, String, Option<String>, Option<String>, i64);

/// `(extractor, id)` of a yt-dlp archive line, or `None` for a blank or
/// malformed one. Ids may not contain whitespace or control characters.
pub fn parse_archive_line(line: &str) -> Option<(String, String)> {
    let mut parts = line.split_whitespace();
    let (extractor, id) = (parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let ok = |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
    let extractor = extractor.to_lowercase();
    (ok(&extractor) && ok(id) && extractor.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| (extractor, id.to_owned()))
}

impl TaskStore {
    /// Records a downloaded item; a second download of it keeps the first record.
    pub async fn archive(
        &self,
        extractor: &str,
        media_id: &str,
        task_id: Option<&str>,
        url: Option<&str>,
    ) -> Result<bool, StoreError> {
        let n = Sql::new(
            "INSERT INTO download_archive (extractor, media_id, task_id, url, archived_at) VALUES (",
        )
        .arg(extractor.to_lowercase())
        .text(", ")
        .arg(media_id)
        .text(", ")
        .arg(task_id)
        .text(", ")
        .arg(url)
        .text(", ")
        .arg(micros(now()))
        .text(") ON CONFLICT (extractor, media_id) DO NOTHING")
        .execute(&self.writer)
        .await?;
        Ok(n == 1)
    }

    /// Whether `(extractor, id)` was downloaded before.
    pub async fn is_archived(&self, extractor: &str, media_id: &str) -> Result<bool, StoreError> {
        let rows: Vec<(i64,)> = Sql::new("SELECT COUNT(*) FROM download_archive WHERE extractor = ")
            .arg(extractor.to_lowercase())
            .text(" AND media_id = ")
            .arg(media_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.first().is_some_and(|(n,)| *n > 0))
    }

    /// The item a completed download of `url` archived, if any. A collection entry
    /// whose flat listing names no id (a feed's enclosure: yt-dlp's generic
    /// extractor names it only by fetching it) is found in the archive this way.
    pub async fn archived_by_url(&self, url: &str) -> Result<Option<(String, String)>, StoreError> {
        let rows: Vec<(String, String)> =
            Sql::new("SELECT extractor, media_id FROM download_archive WHERE url = ")
                .arg(url)
                .text(" ORDER BY archived_at LIMIT 1")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().next())
    }

    /// A page of the archive, oldest first, after `(archived_at, extractor, media_id)`.
    pub async fn archive_page(
        &self,
        after: Option<(i64, String, String)>,
        limit: u32,
    ) -> Result<Vec<ArchiveEntry>, StoreError> {
        let mut sql = Sql::new("SELECT extractor, media_id, task_id, url, archived_at FROM download_archive");
        if let Some((t, e, m)) = after {
            sql = sql
                .text(" WHERE archived_at > ")
                .arg(t)
                .text(" OR (archived_at = ")
                .arg(t)
                .text(" AND (extractor > ")
                .arg(e.clone())
                .text(" OR (extractor = ")
                .arg(e)
                .text(" AND media_id > ")
                .arg(m)
                .text(")))");
        }
        let rows: Vec<ArchiveRow> = sql
            .text(format!(" ORDER BY archived_at, extractor, media_id LIMIT {}", limit.clamp(1, 10_000)))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(extractor, media_id, task_id, url, archived_at)| ArchiveEntry {
                extractor,
                media_id,
                task_id,
                url,
                archived_at,
            })
            .collect())
    }

    /// Forgets one item (`true` if it was archived).
    pub async fn unarchive(&self, extractor: &str, media_id: &str) -> Result<bool, StoreError> {
        let n = Sql::new("DELETE FROM download_archive WHERE extractor = ")
            .arg(extractor.to_lowercase())
            .text(" AND media_id = ")
            .arg(media_id)
            .execute(&self.writer)
            .await?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_lines_are_ytdlps() {
        assert_eq!(parse_archive_line("youtube dQw4w9WgXcQ"), Some(("youtube".into(), "dQw4w9WgXcQ".into())));
        assert_eq!(parse_archive_line("  Generic clip02 \r"), Some(("generic".into(), "clip02".into())));
        for bad in ["", "youtube", "a b c", "you-tube x", "x \u{7}"] {
            assert_eq!(parse_archive_line(bad), None, "{bad:?}");
        }
    }
}
