//! Request bodies as clients send them (the sketch's field names), and the
//! validated specs they become. Unknown fields are refused.

use crate::Code;
use serde::{Deserialize, Serialize};

use std::path::Path;

use crate::{
    ffmpeg::{self, MediaProbe, Operations, OperationsBody, ProbeRunError, ProcessPlan},
    storage::StorageLayout,
    validate::{EgressPolicy, FormatSelector, MediaPath, SourceUrl, SubtitleLangs, ValidationError},
    ytdlp::PlaylistItems,
};

/// `POST /api/analyze`
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeBody {
    /// The page or media URL: http(s), at most 2048 bytes, a public host.
    #[serde(default)]
    #[schema(value_type = String, required = true, example = "https://example.com/watch/123")]
    pub url: Option<String>,
    /// A playlist's next page: the `next_cursor` of the previous answer.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Entries per playlist page (default 100, at most `limits.max_playlist_items`).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub page_size: Option<u32>,
}

impl AnalyzeBody {
    /// Which page of a collection to list (a single video ignores it).
    pub fn page(&self, max_items: u32) -> Result<crate::analyze::Page, ValidationError> {
        crate::analyze::Page::parse(self.cursor.as_deref(), self.page_size, max_items)
    }

    pub async fn validate(self, policy: &EgressPolicy) -> Result<SourceUrl, ValidationError> {
        let url = SourceUrl::parse(self.url.as_deref().unwrap_or_default())?;
        policy.check_url(&url).await?;
        Ok(url)
    }
}

/// `POST /api/download`
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DownloadBody {
    /// The page or media URL: http(s), at most 2048 bytes, a public host.
    #[serde(default)]
    #[schema(value_type = String, required = true, example = "https://example.com/watch/123")]
    pub url: Option<String>,
    /// A yt-dlp format selector of bounded syntax (ids, `+`, `/`, `b`/`bv`/`ba`,
    /// simple filters); omitted = yt-dlp's default.
    #[serde(default)]
    #[schema(max_length = 128, example = "bv*[height<=720]+ba/b")]
    pub format_id: Option<String>,
    #[serde(default)]
    pub include_subtitles: bool,
    /// Language tags like `en` or `zh-CN`; default `["zh-CN", "en"]`.
    #[serde(default)]
    #[schema(max_items = 8)]
    pub subtitle_langs: Option<Vec<String>>,
    /// Process the downloaded file next (a pipeline).
    #[serde(default)]
    pub process: Option<PipelineBody>,
    /// Where the final event is delivered as a signed webhook ([`CallbackUrl`]).
    #[serde(default)]
    pub callback_url: Option<String>,
    /// Skip an item the download archive has (`GET /api/archive`): the task ends
    /// `cancelled` with the reason "skipped: …"; a collection creates no child for
    /// an entry whose listing names an archived item.
    #[serde(default)]
    pub skip_archived: bool,
    /// Download a playlist, channel or feed: one task for the collection, one
    /// child download per selected entry (same format, subtitles, processing).
    #[serde(default)]
    pub playlist: Option<PlaylistBody>,
}

/// `playlist` of `POST /api/download`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaylistBody {
    /// 1-based entries as analyze numbers them, e.g. `"1-10,15"`; omitted = every
    /// entry, up to `limits.max_playlist_items`.
    #[serde(default)]
    #[schema(example = "2-4,7")]
    pub items: Option<String>,
    /// Create (and so queue) the children last entry first.
    #[serde(default)]
    pub reverse: bool,
    /// Processing for each entry's download (as the top-level `process`).
    #[serde(default)]
    pub process: Option<PipelineBody>,
}

/// A validated collection download: the listing to expand, and the download each
/// selected entry gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaylistSpec {
    pub url: SourceUrl,
    /// `None` = every entry up to `limits.max_playlist_items`.
    #[serde(default)]
    pub items: Option<PlaylistItems>,
    #[serde(default)]
    pub reverse: bool,
    /// Format, subtitles and processing of every child (its `url` is the collection's).
    pub entry: DownloadSpec,
    /// What the expansion found, written with the children it created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expansion: Option<Expansion>,
    /// A subscription's check (`crates/mediapro-core/src/subscription.rs`): entries
    /// an earlier check of it queued get no child, and the expansion records the
    /// entries it queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<uuid::Uuid>,
}

/// The result of a collection's expansion, kept with the parent task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Expansion {
    /// Entries the site says the collection has (`null` if it does not say).
    pub entry_count: Option<u64>,
    /// Child tasks created.
    pub children: u64,
    /// The listing was cut at `limits.max_playlist_items`.
    pub truncated: bool,
    /// Entries left out because the download archive has them (`skip_archived`).
    #[serde(default)]
    pub skipped_archived: u64,
    /// A subscription's check: entries left out because an earlier check queued
    /// them (their download did not fail).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_known: u64,
    /// The above in words, for a person reading the task (the cut, the entries
    /// skipped); absent when there is nothing to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Expansion {
    /// An expansion's result and its note. `cut_at`: the `limits.max_playlist_items`
    /// the listing was cut at, if it was.
    pub fn new(entry_count: Option<u64>, children: u64, cut_at: Option<u32>, skipped_archived: u64) -> Self {
        let mut said = Vec::new();
        if let Some(max) = cut_at {
            let of = entry_count.map(|n| format!(" of {n}")).unwrap_or_default();
            said.push(format!("cut at {max}{of} entries (limits.max_playlist_items)"));
        }
        if skipped_archived > 0 {
            let s = if skipped_archived == 1 { "y" } else { "ies" };
            said.push(format!("{skipped_archived} entr{s} skipped: already in the download archive"));
        }
        Expansion {
            entry_count,
            children,
            truncated: cut_at.is_some(),
            skipped_archived,
            skipped_known: 0,
            note: (!said.is_empty()).then(|| said.join("; ")),
        }
    }

    /// A subscription's check: `n` entries left out because an earlier check
    /// queued them (said in the note too).
    pub fn with_known(mut self, n: u64) -> Self {
        if n > 0 {
            let s = if n == 1 { "y" } else { "ies" };
            let said = format!("{n} entr{s} skipped: queued by an earlier check of the subscription");
            self.note = Some(match self.note.take() {
                Some(note) => format!("{note}; {said}"),
                None => said,
            });
        }
        self.skipped_known = n;
        self
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Processing to run on the downloaded file once it is complete.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineBody {
    pub operations: OperationsBody,
}

/// A validated download: what the worker is asked to fetch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownloadSpec {
    pub url: SourceUrl,
    /// `None` = yt-dlp's own default selection.
    #[serde(default)]
    pub format_id: Option<FormatSelector>,
    #[serde(default)]
    pub include_subtitles: bool,
    #[serde(default)]
    pub subtitle_langs: SubtitleLangs,
    /// Operations to run on the downloaded media file once it is complete.
    #[serde(default)]
    pub process: Option<Operations>,
    /// Skip the item when the download archive has it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_archived: bool,
    /// The entry's 1-based position when this download is a collection's child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playlist_index: Option<u64>,
}

/// The sketch's default when a client asks for subtitles without naming languages.
const DEFAULT_SUBTITLE_LANGS: [&str; 2] = ["zh-CN", "en"];

impl DownloadBody {
    pub async fn validate(self, policy: &EgressPolicy) -> Result<DownloadSpec, ValidationError> {
        let url = SourceUrl::parse(self.url.as_deref().unwrap_or_default())?;
        let format_id =
            self.format_id.as_deref().filter(|f| !f.is_empty()).map(FormatSelector::parse).transpose()?;
        let langs = match self.subtitle_langs {
            Some(langs) => langs,
            None => DEFAULT_SUBTITLE_LANGS.iter().map(|s| (*s).to_owned()).collect(),
        };
        let subtitle_langs = SubtitleLangs::parse(&langs)?;
        if self.include_subtitles && subtitle_langs.is_empty() {
            return Err(ValidationError::new(
                "subtitle_langs",
                Code::InvalidSubtitleLang,
                "name at least one language when include_subtitles is true",
            ));
        }
        // Checked against the real file once it is downloaded.
        let process = self.process.map(|p| Operations::parse(&p.operations)).transpose()?;
        // Last: the only check that may touch the network (DNS).
        policy.check_url(&url).await?;
        Ok(DownloadSpec {
            url,
            format_id,
            include_subtitles: self.include_subtitles,
            subtitle_langs,
            process,
            skip_archived: self.skip_archived,
            playlist_index: None,
        })
    }

    /// The task a download body asks for: one download, or a collection's
    /// (with `playlist`), whose selection may name at most `max_items` entries.
    pub async fn validate_request(
        mut self,
        policy: &EgressPolicy,
        max_items: u32,
    ) -> Result<crate::task::TaskRequest, ValidationError> {
        let Some(playlist) = self.playlist.take() else {
            return Ok(crate::task::TaskRequest::Download(self.validate(policy).await?));
        };
        let items = playlist
            .items
            .as_deref()
            .map(|raw| PlaylistItems::parse(raw, max_items))
            .transpose()
            .map_err(|why| ValidationError::new("playlist.items", Code::InvalidPlaylistItems, why))?;
        if playlist.process.is_some() {
            if self.process.is_some() {
                return Err(ValidationError::new(
                    "playlist.process",
                    Code::InvalidOperation,
                    "give `process` or `playlist.process`, not both",
                ));
            }
            self.process = playlist.process;
        }
        let entry = self.validate(policy).await?;
        Ok(crate::task::TaskRequest::Playlist(Box::new(PlaylistSpec {
            url: entry.url.clone(),
            items,
            reverse: playlist.reverse,
            entry,
            expansion: None,
            subscription_id: None,
        })))
    }
}

/// `POST /api/process`
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessBody {
    /// A path relative to the storage root (a download's `downloaded_files[0]`, an
    /// upload's `input_file`), or an absolute path inside it.
    #[serde(default)]
    #[schema(value_type = String, required = true, example = "uploads/5f0c…/clip.mp4")]
    pub input_file: Option<String>,
    #[serde(default)]
    #[schema(value_type = OperationsBody, required = true)]
    pub operations: Option<OperationsBody>,
    /// Where the final event is delivered as a signed webhook ([`CallbackUrl`]).
    #[serde(default)]
    pub callback_url: Option<String>,
}

/// A submission's `callback_url`: an http(s) URL the egress policy allows (checked
/// like a download URL, and again at connect time by the deliverer), accepted only
/// when the server can sign its deliveries.
pub struct CallbackUrl;

impl CallbackUrl {
    const FIELD: &'static str = "callback_url";

    pub async fn validate(
        raw: Option<&str>,
        policy: &EgressPolicy,
        can_sign: bool,
    ) -> Result<Option<String>, ValidationError> {
        let Some(raw) = raw else { return Ok(None) };
        let rename = |mut e: ValidationError| {
            e.field = Self::FIELD;
            e
        };
        let url = SourceUrl::parse(raw).map_err(rename)?;
        if !can_sign {
            return Err(ValidationError::new(
                Self::FIELD,
                Code::WebhooksNotConfigured,
                "this server has no webhooks.signing_secret, so it cannot sign deliveries",
            ));
        }
        policy.check_url(&url).await.map_err(rename)?;
        Ok(Some(url.to_string()))
    }
}

/// A validated processing request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// Relative to the storage root.
    pub input_file: String,
    pub operations: Operations,
    /// What the API's probe found, so the worker need not probe again while the
    /// file is unchanged (`None` for a pipeline, whose input did not exist yet).
    #[serde(default)]
    pub probed: Option<ProbedInput>,
}

/// A probe result and the file state it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbedInput {
    pub size_bytes: u64,
    pub modified_unix_nanos: i64,
    pub probe: MediaProbe,
}

impl ProbedInput {
    /// The file's current size and modification time.
    pub async fn fingerprint(path: &Path) -> std::io::Result<(u64, i64)> {
        let meta = tokio::fs::metadata(path).await?;
        let modified = meta
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or_default();
        Ok((meta.len(), modified))
    }

    /// The stored probe, if the file is still the one probed.
    pub async fn still_valid_for(&self, path: &Path) -> Option<&MediaProbe> {
        let (size, modified) = Self::fingerprint(path).await.ok()?;
        (size == self.size_bytes && modified == self.modified_unix_nanos).then_some(&self.probe)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessRequestError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Probe(#[from] ProbeRunError),
}

impl crate::HasCode for ProcessRequestError {
    fn code(&self) -> crate::Code {
        match self {
            ProcessRequestError::Invalid(e) => e.code(),
            ProcessRequestError::Probe(e) => e.code(),
        }
    }
}

impl ProcessBody {
    /// Syntax and ranges first (cheap), then the file: inside the root, regular,
    /// probing as media under the whitelists, and the operations possible on it.
    pub async fn validate(
        self,
        layout: &StorageLayout,
        ffprobe: &Path,
    ) -> Result<(ProcessSpec, MediaProbe), ProcessRequestError> {
        let operations = self
            .operations
            .as_ref()
            .ok_or_else(|| ValidationError::new("operations", Code::InvalidOperation, "is required"))
            .and_then(Operations::parse)?;
        let path = MediaPath::resolve(layout, self.input_file.as_deref().unwrap_or_default()).await?;
        let before = ProbedInput::fingerprint(&path.absolute).await.ok();
        let probe = ffmpeg::probe(ffprobe, &path.absolute).await?;
        ProcessPlan::new(&operations, &probe)?;
        let probed = before.map(|(size_bytes, modified_unix_nanos)| ProbedInput {
            size_bytes,
            modified_unix_nanos,
            probe: probe.clone(),
        });
        Ok((ProcessSpec { input_file: path.relative, operations, probed }, probe))
    }
}

impl crate::body::JsonBody for AnalyzeBody {
    const OBJECT_FIELDS: &'static [&'static str] = &[];
}

impl crate::body::JsonBody for DownloadBody {
    const OBJECT_FIELDS: &'static [&'static str] = &[
        "process",
        "process.operations",
        "process.operations.trim",
        "process.operations.resize",
        "playlist",
        "playlist.process",
        "playlist.process.operations",
        "playlist.process.operations.trim",
        "playlist.process.operations.resize",
    ];
}

impl crate::body::JsonBody for ProcessBody {
    const OBJECT_FIELDS: &'static [&'static str] = &["operations", "operations.trim", "operations.resize"];
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: EgressPolicy = EgressPolicy { allow_private_networks: true, allowed_networks: Vec::new() };

    fn body(json: &str) -> DownloadBody {
        serde_json::from_str(json).expect("well-formed body")
    }

    #[tokio::test]
    async fn the_sketch_client_body_validates() {
        let spec = body(
            r#"{"url":"http://127.0.0.1:9/v.mp4","format_id":"18","include_subtitles":false,"subtitle_langs":["zh-CN","en"]}"#,
        )
        .validate(&OPEN)
        .await
        .expect("valid");
        assert_eq!(spec.format_id.as_ref().map(FormatSelector::as_str), Some("18"));
        assert_eq!(spec.subtitle_langs.joined(), "zh-CN,en");
    }

    #[tokio::test]
    async fn missing_url_and_bad_format_name_their_field() {
        let err = body(r#"{}"#).validate(&OPEN).await.expect_err("no url");
        assert_eq!(err.field, "url");
        let err = body(r#"{"url":"https://example.com/v","format_id":"all"}"#)
            .validate(&OPEN)
            .await
            .expect_err("all");
        assert_eq!(err.field, "format_id");
    }

    #[tokio::test]
    async fn a_callback_url_is_checked_like_a_download_url_and_needs_a_secret() {
        let closed = EgressPolicy {
            allow_private_networks: false,
            allowed_networks: crate::validate::parse_networks("127.0.0.1/32").expect("cidr"),
        };
        assert_eq!(CallbackUrl::validate(None, &closed, false).await, Ok(None));
        let ok = CallbackUrl::validate(Some("http://127.0.0.1:9/hook"), &closed, true).await;
        assert_eq!(ok, Ok(Some("http://127.0.0.1:9/hook".to_owned())));
        let err =
            CallbackUrl::validate(Some("http://127.0.0.2:9/hook"), &closed, true).await.expect_err("private");
        assert_eq!((err.field, err.code), ("callback_url", Code::PrivateAddress));
        let err = CallbackUrl::validate(Some("file:///etc/passwd"), &closed, true).await.expect_err("scheme");
        assert_eq!((err.field, err.code), ("callback_url", Code::UnsupportedScheme));
        let err = CallbackUrl::validate(Some("http://127.0.0.1:9/hook"), &closed, false)
            .await
            .expect_err("no secret");
        assert_eq!((err.field, err.code), ("callback_url", Code::WebhooksNotConfigured));
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<DownloadBody>(r#"{"url":"x","exec":"id"}"#).is_err());
    }

    #[test]
    fn an_expansion_says_in_words_where_it_was_cut_and_what_it_skipped() {
        let cut = Expansion::new(Some(10_000), 500, Some(500), 0);
        assert!(cut.truncated);
        assert_eq!(cut.note.as_deref(), Some("cut at 500 of 10000 entries (limits.max_playlist_items)"));
        let both = Expansion::new(Some(20), 2, Some(14), 12);
        assert_eq!(
            both.note.as_deref(),
            Some(
                "cut at 14 of 20 entries (limits.max_playlist_items); 12 entries skipped: already in the download archive"
            )
        );
        assert_eq!(
            Expansion::new(None, 1, None, 1).note.as_deref(),
            Some("1 entry skipped: already in the download archive")
        );
        let plain = Expansion::new(Some(12), 4, None, 0);
        assert_eq!(plain.note, None);
        // Absent from the JSON when there is nothing to say; older records read back.
        let json = serde_json::to_value(&plain).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"entry_count": 12, "children": 4, "truncated": false, "skipped_archived": 0})
        );
        let old: Expansion = serde_json::from_value(json).expect("reads");
        assert_eq!(old, plain);
        // A subscription's check says what earlier checks queued, too.
        let known = Expansion::new(Some(12), 1, None, 2).with_known(9);
        assert_eq!(known.skipped_known, 9);
        assert_eq!(
            known.note.as_deref(),
            Some(
                "2 entries skipped: already in the download archive; 9 entries skipped: queued by an earlier check of the subscription"
            )
        );
    }
}
