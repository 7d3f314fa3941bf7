//! `POST /api/analyze`'s work: one bounded yt-dlp run and the parse of its JSON.

use std::time::Duration;

use crate::{
    error::{Code, HasCode},
    process::{self, ChildCommand, RunError, ythost::YtdlpRunner},
    validate::SourceUrl,
    ytdlp::{ListArgs, MediaInfo, ParseError, SiteArgs, classify_failure, parse_info_json, parse_listing},
};

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("analysis took longer than {} s", .0.as_secs())]
    TimedOut(Duration),
    /// yt-dlp could not get media from the URL and retrying will not help.
    #[error("{0}")]
    Unusable(String),
    /// A network or site problem that may pass.
    #[error("{0}")]
    Upstream(String),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("yt-dlp could not be run: {0}")]
    Tool(RunError),
    /// The egress guard refused a connection the analysis needed.
    #[error("{0}")]
    Blocked(String),
}

impl HasCode for AnalyzeError {
    fn code(&self) -> Code {
        match self {
            AnalyzeError::TimedOut(_) => Code::AnalyzeTimeout,
            AnalyzeError::Unusable(_) => Code::UnsupportedUrl,
            AnalyzeError::Upstream(_) => Code::UpstreamError,
            AnalyzeError::Parse(ParseError::Playlist) => Code::PlaylistNotSupported,
            AnalyzeError::Parse(_) => Code::UpstreamError,
            AnalyzeError::Tool(_) => Code::ToolError,
            AnalyzeError::Blocked(_) => Code::EgressBlocked,
        }
    }
}

/// Info JSON of even long pages stays far below this.
const MAX_INFO_JSON: usize = 16 * 1024 * 1024;

/// What analyze found: one video (today's answer, plus `"kind": "video"`), or one
/// page of a collection's flat listing.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Analysis {
    Video(MediaInfo),
    Playlist(CollectionPage),
}

/// One page of a playlist, channel or feed: the entries as the collection lists
/// them (nothing extracted per entry, no media fetched).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CollectionPage {
    pub id: Option<String>,
    pub title: Option<String>,
    pub extractor: Option<String>,
    pub webpage_url: Option<String>,
    /// Entries the collection has as far as this server goes: the site's count,
    /// at most `limits.max_playlist_items` (`null` when the site does not say).
    pub entry_count: Option<u64>,
    /// The site lists more entries than `limits.max_playlist_items`.
    pub truncated: bool,
    pub entries: Vec<crate::ytdlp::CollectionEntry>,
    /// Pass it back as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Which page of a collection to list: entries `offset + 1 ..= offset + size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: u32,
    pub size: u32,
    /// `limits.max_playlist_items`: no page reaches past it.
    pub max_items: u32,
}

impl Page {
    /// Entries per page when the request names no `page_size`.
    pub const DEFAULT_SIZE: u32 = 100;

    /// The cursor is the decimal offset of the page's first entry (opaque to clients).
    pub fn parse(
        cursor: Option<&str>,
        size: Option<u32>,
        max_items: u32,
    ) -> Result<Page, crate::validate::ValidationError> {
        use crate::validate::ValidationError;
        let offset = match cursor {
            None => 0,
            Some(c) => c.parse::<u32>().ok().filter(|&o| o < max_items).ok_or_else(|| {
                ValidationError::new("cursor", Code::InvalidCursor, "is not a cursor this API returned")
            })?,
        };
        let size = size.unwrap_or(Self::DEFAULT_SIZE.min(max_items));
        if size == 0 || size > max_items {
            return Err(ValidationError::new(
                "page_size",
                Code::InvalidRequest,
                format!("must be from 1 to {max_items} (limits.max_playlist_items)"),
            ));
        }
        Ok(Page { offset, size, max_items })
    }

    /// The positions this page lists, never past `max_items`.
    pub fn items(&self) -> crate::ytdlp::PlaylistItems {
        let size = self.size.min(self.max_items - self.offset.min(self.max_items));
        crate::ytdlp::PlaylistItems::span(self.offset + 1, size.max(1))
    }

    /// The page's answer from the collection yt-dlp listed.
    pub fn answer(&self, c: crate::ytdlp::Collection) -> CollectionPage {
        let max = u64::from(self.max_items);
        let end = u64::from(self.items().last());
        let more = match c.entry_count {
            Some(n) => end < n.min(max),
            // Unknown size: a full page may have a successor.
            None => end < max && c.entries.len() as u64 >= u64::from(self.size),
        };
        CollectionPage {
            id: c.id,
            title: c.title,
            extractor: c.extractor,
            webpage_url: c.webpage_url,
            entry_count: c.entry_count.map(|n| n.min(max)),
            truncated: c.entry_count.is_some_and(|n| n > max),
            entries: c.entries,
            next_cursor: more.then(|| end.to_string()),
        }
    }
}

/// One analyze run that answers for a video or a collection: a flat listing of
/// the page's entries (`--flat-playlist`), read as a collection if yt-dlp says it
/// is one, else as today's single-video answer.
pub async fn analyze_page(
    ytdlp: &YtdlpRunner,
    url: &SourceUrl,
    page: Page,
    timeout: Duration,
    proxy: Option<&str>,
    site: Option<&SiteArgs<'_>>,
) -> Result<Analysis, AnalyzeError> {
    let socket_timeout = u32::try_from(timeout.as_secs().clamp(1, 20)).unwrap_or(20);
    let items = page.items().to_ytdlp();
    let args = ListArgs { url, items: &items, socket_timeout_secs: socket_timeout, proxy, site }.to_args();
    let stdout = run_listing(ytdlp, args, timeout).await?;
    match parse_listing(&stdout, u64::from(page.offset) + 1)? {
        Some(collection) => Ok(Analysis::Playlist(page.answer(collection))),
        None => Ok(Analysis::Video(parse_info_json(&stdout)?)),
    }
}

/// Runs a bounded yt-dlp that prints one JSON document, through `ytdlp` (the warm
/// host, or a spawned yt-dlp); its stdout. Nothing it runs changes anything, so a
/// host that dies under it is answered by running it once more, spawned.
pub async fn run_listing(
    ytdlp: &YtdlpRunner,
    args: Vec<String>,
    timeout: Duration,
) -> Result<String, AnalyzeError> {
    let mut spec = ChildCommand::new(ytdlp.program(), args, timeout);
    spec.max_stdout_bytes = MAX_INFO_JSON;
    let mut stdout = String::new();
    let mut run = ytdlp.run(&spec, |line| stdout.push_str(line), std::future::pending()).await;
    if let Err(RunError::Host(e)) = &run {
        tracing::warn!(error = %e, "the yt-dlp host failed during a listing; running it again spawned");
        stdout.clear();
        run = process::run(&spec, |line| stdout.push_str(line), std::future::pending()).await;
    }
    let out = run.map_err(|e| match e {
        RunError::Stopped(process::StopReason::TimedOut(d)) => AnalyzeError::TimedOut(d),
        other => AnalyzeError::Tool(other),
    })?;
    if !out.status.success() {
        let failure = classify_failure(&out.stderr_tail);
        return Err(if failure.is_permanent() {
            AnalyzeError::Unusable(failure.reason)
        } else {
            AnalyzeError::Upstream(failure.reason)
        });
    }
    Ok(stdout)
}

#[cfg(test)]
mod page_tests {
    use super::*;
    use crate::ytdlp::{Collection, CollectionEntry};

    fn listing(count: Option<u64>, n: u64, first: u64) -> Collection {
        Collection {
            id: None,
            title: None,
            extractor: None,
            webpage_url: None,
            entry_count: count,
            entries: (first..first + n)
                .map(|index| CollectionEntry {
                    index,
                    extractor: None,
                    id: None,
                    title: None,
                    duration: None,
                    url: None,
                })
                .collect(),
        }
    }

    #[test]
    fn pages_are_bounded_by_max_playlist_items_and_chain_by_cursor() {
        let first = Page::parse(None, Some(5), 1000).expect("page");
        assert_eq!(first.items().to_ytdlp(), "1:5");
        let a = first.answer(listing(Some(12), 5, 1));
        assert_eq!(a.next_cursor.as_deref(), Some("5"));
        let third = Page::parse(Some("10"), Some(5), 1000).expect("page");
        assert_eq!(third.items().to_ytdlp(), "11:15");
        assert_eq!(third.answer(listing(Some(12), 2, 11)).next_cursor, None);
        // A 12-entry collection under a limit of 8: two pages of 5 end at 8.
        let capped = Page::parse(Some("5"), Some(5), 8).expect("page");
        assert_eq!(capped.items().to_ytdlp(), "6:8");
        let a = capped.answer(listing(Some(12), 3, 6));
        assert_eq!((a.entry_count, a.truncated, a.next_cursor), (Some(8), true, None));
        // Unknown size: a full page has a successor, a short one not.
        assert_eq!(first.answer(listing(None, 5, 1)).next_cursor.as_deref(), Some("5"));
        assert_eq!(first.answer(listing(None, 4, 1)).next_cursor, None);
        assert_eq!(Page::parse(None, None, 1000).expect("default").size, Page::DEFAULT_SIZE);
        for (cursor, size) in [(Some("x"), None), (Some("1000"), None), (None, Some(0)), (None, Some(1001))] {
            assert!(Page::parse(cursor, size, 1000).is_err(), "{cursor:?} {size:?}");
        }
    }
}
