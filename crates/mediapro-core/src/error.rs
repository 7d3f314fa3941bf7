//! The error contract: every machine-readable code a client can receive, with its
//! HTTP status and class, in one table. Every typed error of the project names
//! one [`Code`]; the API turns it into `{"error", "code"}` with that status in
//! one place (`crates/api/src/error.rs`). Add a code here, never a string
//! literal elsewhere. `docs/error-codes.md` is generated from this table and a
//! test keeps the two equal.

use strum::{EnumIter, IntoEnumIterator};

/// What kind of failure an error is, from the caller's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ErrorClass {
    /// The request was wrong; retrying it unchanged cannot help.
    BadRequest,
    /// No key, a wrong key, or a key without the right.
    Auth,
    /// The thing asked for does not exist.
    NotFound,
    /// The request conflicts with the current state.
    Conflict,
    /// Too much, too often, or no room: try again later.
    Limit,
    /// A dependency (Redis, the database) is unreachable right now.
    Unavailable,
    /// The upstream (the media site) answered with something we cannot use.
    Upstream,
    /// A bug or an unexpected environment problem.
    Internal,
}

/// Defines [`Code`] with its status, class and one-line meaning per variant.
macro_rules! error_codes {
    ($($variant:ident = $status:literal, $class:ident, $name:literal, $meaning:literal;)*) => {
        /// Every machine code of the API's error bodies.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter)]
        pub enum Code {
            $(#[doc = $meaning] $variant,)*
        }

        impl Code {
            /// The HTTP status this code is answered with.
            pub fn status(self) -> u16 {
                match self { $(Code::$variant => $status,)* }
            }
            pub fn class(self) -> ErrorClass {
                match self { $(Code::$variant => ErrorClass::$class,)* }
            }
            /// The `code` field of the error body (`snake_case`, stable).
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }
            /// When a client gets it.
            pub fn meaning(self) -> &'static str {
                match self { $(Code::$variant => $meaning,)* }
            }
        }
    };
}

error_codes! {
    // Request validation (400): the message starts with the field's path.
    InvalidUrl = 400, BadRequest, "invalid_url", "`url` is missing, too long, not a URL, an option or has credentials";
    UnsupportedScheme = 400, BadRequest, "unsupported_scheme", "`url` is not http(s)";
    PrivateAddress = 400, BadRequest, "private_address", "`url` (or `callback_url`) points at a non-public address the policy refuses";
    UnresolvableHost = 400, BadRequest, "unresolvable_host", "the URL's host does not resolve";
    InvalidFormatId = 400, BadRequest, "invalid_format_id", "`format_id` is not a selector of the bounded syntax";
    InvalidSubtitleLang = 400, BadRequest, "invalid_subtitle_lang", "a `subtitle_langs` entry is not a language tag";
    TooManySubtitleLangs = 400, BadRequest, "too_many_subtitle_langs", "more than 8 `subtitle_langs`";
    InvalidOperation = 400, BadRequest, "invalid_operation", "an `operations.*` value is out of range or does not fit the input";
    InvalidOutputFormat = 400, BadRequest, "invalid_output_format", "`operations.format` is not a supported container";
    InvalidInputFile = 400, BadRequest, "invalid_input_file", "`input_file` is not a file inside the storage root";
    UnsuitableInput = 400, BadRequest, "unsuitable_input", "`input_file` lacks what the operations need (e.g. no video stream)";
    NotMedia = 400, BadRequest, "not_media", "the file does not probe as media under the whitelists";
    InvalidFilter = 400, BadRequest, "invalid_filter", "a list filter (`status`, `kind`, `limit`, times) is invalid";
    InvalidPlaylistItems = 400, BadRequest, "invalid_playlist_items", "`playlist.items` is not a selection like `1-10,15`, or names more entries than `limits.max_playlist_items`";
    InvalidSchedule = 400, BadRequest, "invalid_schedule", "`every_minutes` of a subscription is missing or not a whole number from 1 to 43200";
    InvalidCursor = 400, BadRequest, "invalid_cursor", "`cursor` is not one this API returned";
    InvalidRequest = 400, BadRequest, "invalid_request", "a JSON field has the wrong type, is unknown, or is missing";
    InvalidJson = 400, BadRequest, "invalid_json", "the body is not valid JSON";
    InvalidBody = 400, BadRequest, "invalid_body", "the body could not be read";
    InvalidQuery = 400, BadRequest, "invalid_query", "the query string could not be read";
    InvalidIdempotencyKey = 400, BadRequest, "invalid_idempotency_key", "`Idempotency-Key` is empty, longer than 255 characters or not printable ASCII";
    EmptyUpload = 400, BadRequest, "empty_upload", "an upload with an empty body";
    UploadInterrupted = 400, BadRequest, "upload_interrupted", "the upload body ended early";
    TaskNotCompleted = 400, BadRequest, "task_not_completed", "`download-result` of a task that is not completed";
    UnsupportedUrl = 400, BadRequest, "unsupported_url", "analyze: yt-dlp finds no media at the URL";
    PlaylistNotSupported = 400, BadRequest, "playlist_not_supported", "analyze: the URL is a playlist";
    WebhooksNotConfigured = 400, BadRequest, "webhooks_not_configured", "`callback_url` given, but the server has no `webhooks.signing_secret` to sign deliveries with";
    InvalidSiteProfile = 400, BadRequest, "invalid_site_profile", "a site profile's name or field is invalid (`domains`, `headers`, `upstream_proxy`, …)";
    InvalidCookies = 400, BadRequest, "invalid_cookies", "the uploaded cookies file is not a Netscape cookies file with at least one cookie";
    EgressBlocked = 400, BadRequest, "egress_blocked", "analyze: the page led to an address the egress policy refuses (a redirect, an embedded URL)";
    // Keys (401/403).
    Unauthorized = 401, Auth, "unauthorized", "no API key, or a key that is not configured";
    Forbidden = 403, Auth, "forbidden", "a read-only key on a route that changes something";
    // Not found (404).
    NotFound = 404, NotFound, "not_found", "no such task, or no such route";
    ResultMissing = 404, NotFound, "result_missing", "the task completed but its file is not in this server's storage";
    SiteProfileNotFound = 404, NotFound, "site_profile_not_found", "no site profile of that name";
    MethodNotAllowed = 405, BadRequest, "method_not_allowed", "the route exists but not with this method";
    // State conflicts (409).
    TaskFinished = 409, Conflict, "task_finished", "cancel of a task that already finished";
    NotRetryable = 409, Conflict, "not_retryable", "retry of a task that is not failed or cancelled";
    IdempotencyKeyInProgress = 409, Conflict, "idempotency_key_in_progress", "the first request with this `Idempotency-Key` is still being handled (see `Retry-After`)";
    NoCheckUrl = 409, Conflict, "no_check_url", "a check of a site profile that has no `check_url`";
    SubscriptionPaused = 409, Conflict, "subscription_paused", "\"check now\" of a paused subscription (resume it first)";
    ResultTooLarge = 409, Conflict, "result_too_large", "`download-result` of a collection whose ZIP would pass 4 GiB or 65 534 files (fetch the children one by one)";
    IdempotencyKeyReused = 422, Conflict, "idempotency_key_reused", "this `Idempotency-Key` was used in the last 24 h with a different body or route";
    // Limits.
    RequestTimeout = 408, Limit, "request_timeout", "the request headers or body did not arrive in time (stalled, or slower than `limits.min_body_bytes_per_second`)";
    PayloadTooLarge = 413, Limit, "payload_too_large", "the body is larger than the limit";
    UnsupportedMediaType = 415, BadRequest, "unsupported_media_type", "a JSON route called without `Content-Type: application/json`";
    RateLimited = 429, Limit, "rate_limited", "too many submissions or analyze calls, or too many pending tasks (see `Retry-After`)";
    InsufficientStorage = 507, Limit, "insufficient_storage", "the storage root is nearly full (see `Retry-After`)";
    // Dependencies (5xx).
    QueueUnavailable = 503, Unavailable, "queue_unavailable", "Redis is unreachable; nothing was queued (see `Retry-After`)";
    StoreUnavailable = 503, Unavailable, "store_unavailable", "the task store is unreachable (see `Retry-After`)";
    AnalyzeBusy = 503, Unavailable, "analyze_busy", "every analyze slot is busy and the wait queue is full (see `Retry-After`)";
    UpstreamError = 502, Upstream, "upstream_error", "analyze: the site answered with an error or with something unusable";
    AnalyzeTimeout = 504, Upstream, "analyze_timeout", "analyze: yt-dlp did not finish within the analyze timeout";
    ToolError = 500, Internal, "tool_error", "yt-dlp, ffmpeg or ffprobe could not be run";
    InternalError = 500, Internal, "internal_error", "a bug; the log has the cause";
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Implemented by every error type that can reach a client.
pub trait HasCode {
    fn code(&self) -> Code;
}

/// The table as Markdown: `docs/error-codes.md` holds exactly this.
pub fn error_code_table() -> String {
    let mut out = String::from(
        "# Error codes\n\nGenerated from `crates/mediapro-core/src/error.rs` (a test keeps this file equal \
         to it).\nEvery error body is `{\"error\": \"<message>\", \"code\": \"<code>\"}`.\n\n\
         | code | status | class | when |\n|---|---|---|---|\n",
    );
    for code in Code::iter() {
        let class: &str = code.class().into();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            code.as_str(),
            code.status(),
            class,
            code.meaning()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// The API's error contract on one screen: `docs/error-codes.md`. Run with
    /// `UPDATE_ERROR_CODES=1` to rewrite the file after changing the table.
    #[test]
    fn the_error_code_table_is_documented_and_codes_are_unique() {
        let names: HashSet<&str> = Code::iter().map(Code::as_str).collect();
        assert_eq!(names.len(), Code::iter().count(), "every code is distinct");
        for code in Code::iter() {
            assert!((400..600).contains(&code.status()), "{code}");
            let server = code.status() >= 500;
            let server_class =
                matches!(code.class(), ErrorClass::Unavailable | ErrorClass::Upstream | ErrorClass::Internal);
            assert!(
                server == server_class || code == Code::InsufficientStorage,
                "{code}: status and class agree"
            );
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/error-codes.md");
        let table = error_code_table();
        if std::env::var_os("UPDATE_ERROR_CODES").is_some() {
            std::fs::write(path, &table).expect("write docs/error-codes.md");
        }
        let documented = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(documented, table, "docs/error-codes.md is stale: run with UPDATE_ERROR_CODES=1");
    }
}
