//! Subscriptions: a collection (playlist, channel, feed) re-checked on a schedule.
//!
//! A check is a collection download (`TaskRequest::Playlist` with
//! `subscription_id` and `skip_archived`) submitted through the dispatcher by the
//! one scheduler that holds the lease (`crates/worker/src/subscriptions.rs`); its
//! expansion's counts are the check's `found`, `queued` and `skipped`, its failure
//! the check's error. The rows are kept by `store/subscription.rs`
//! (`migrations/20261204000001_subscriptions.sql`).
//!
//! Schedule: a check that starts at `now` sets the next one to `now + every`
//! ([`next_check_after`]), never `last + every` repeatedly, so a schedule missed
//! while every worker was down runs once when one comes back.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    Code,
    requests::{DownloadBody, PipelineBody, PlaylistBody, PlaylistSpec},
    store::micros,
    task::{TaskRequest, now},
    validate::{EgressPolicy, ValidationError},
};

/// The longest period between checks: 30 days.
pub const MAX_EVERY_MINUTES: i64 = 43_200;

/// An entry whose download failed is queued again by the next check, up to this
/// many checks in all; then it is left alone (a broken entry does not make a
/// failed download every period).
pub const MAX_ENTRY_CHECKS: i64 = 3;

/// When the next check is due after one that starts at `now` (unix microseconds).
pub fn next_check_after(now: i64, every_minutes: i64) -> i64 {
    now.saturating_add(every_minutes.saturating_mul(60_000_000))
}

/// Whether a subscription is checked on schedule.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    /// By a client, or after `subscriptions.max_failures` failed checks in a row
    /// (`paused_reason` says which).
    Paused,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Where a check is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum CheckStatus {
    /// Its `playlist` task is listing the collection.
    Running,
    /// The listing was recorded: `found`, `queued`, `skipped`.
    Completed,
    /// The listing failed (`error`).
    Failed,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A subscription as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub subscription_id: Uuid,
    pub url: String,
    pub every_minutes: i64,
    /// The collection download each check submits (`TaskRequest::Playlist`).
    pub request: TaskRequest,
    pub status: SubscriptionStatus,
    pub paused_reason: Option<String>,
    pub consecutive_failures: i64,
    /// Unix microseconds.
    pub next_check_at: i64,
    pub last_check_at: Option<i64>,
    /// The `playlist` task of the check in flight.
    pub current_task_id: Option<Uuid>,
    pub created_at: i64,
}

impl Subscription {
    /// A new active subscription, first checked at once.
    pub fn new(subscription_id: Uuid, every_minutes: i64, spec: PlaylistSpec) -> Self {
        let t = micros(now());
        Self {
            subscription_id,
            url: spec.url.to_string(),
            every_minutes,
            request: TaskRequest::Playlist(Box::new(spec)),
            status: SubscriptionStatus::Active,
            paused_reason: None,
            consecutive_failures: 0,
            next_check_at: t,
            last_check_at: None,
            current_task_id: None,
            created_at: t,
        }
    }

    pub fn spec(&self) -> Option<&PlaylistSpec> {
        match &self.request {
            TaskRequest::Playlist(spec) => Some(spec),
            _ => None,
        }
    }
}

/// One check as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub check_id: Uuid,
    pub subscription_id: Uuid,
    /// Its `playlist` task (whose children are the downloads it queued).
    pub task_id: Uuid,
    pub status: CheckStatus,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub found: Option<u64>,
    pub queued: Option<u64>,
    pub skipped: Option<u64>,
    pub error: Option<String>,
}

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The listing was recorded: entries selected, children created, entries
    /// left out (in the archive, or already queued by an earlier check).
    Listed {
        found: u64,
        queued: u64,
        skipped: u64,
    },
    Failed(String),
}

/// `POST /api/subscriptions`: a collection URL, how often to check it, and what
/// each new entry's download gets (as a collection download's entries).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionBody {
    /// A playlist, channel or feed URL: http(s), at most 2048 bytes, a public host.
    #[serde(default)]
    #[schema(value_type = String, required = true, example = "https://example.com/feed.xml")]
    pub url: Option<String>,
    /// Minutes between checks (1 to 43200).
    #[serde(default)]
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 43200, example = 60)]
    pub every_minutes: Option<i64>,
    /// 1-based entries to consider each time, e.g. `"1-10"` (the ten newest of a
    /// newest-first channel); omitted = every entry up to `limits.max_playlist_items`.
    #[serde(default)]
    pub items: Option<String>,
    /// Queue each check's new entries last entry first.
    #[serde(default)]
    pub reverse: bool,
    /// As in `POST /api/download`.
    #[serde(default)]
    #[schema(max_length = 128, example = "bv*[height<=720]+ba/b")]
    pub format_id: Option<String>,
    #[serde(default)]
    pub include_subtitles: bool,
    #[serde(default)]
    #[schema(max_items = 8)]
    pub subtitle_langs: Option<Vec<String>>,
    /// Processing of each downloaded entry.
    #[serde(default)]
    pub process: Option<PipelineBody>,
}

impl crate::body::JsonBody for SubscriptionBody {
    const OBJECT_FIELDS: &'static [&'static str] =
        &["process", "process.operations", "process.operations.trim", "process.operations.resize"];
}

impl SubscriptionBody {
    /// The subscription it asks for: the same checks as a collection download
    /// (URL and egress policy last), with `skip_archived` on.
    pub async fn validate(
        self,
        policy: &EgressPolicy,
        max_items: u32,
    ) -> Result<Subscription, ValidationError> {
        let every = self
            .every_minutes
            .ok_or_else(|| ValidationError::new("every_minutes", Code::InvalidSchedule, "is required"))?;
        if !(1..=MAX_EVERY_MINUTES).contains(&every) {
            return Err(ValidationError::new(
                "every_minutes",
                Code::InvalidSchedule,
                format!("must be a whole number of minutes from 1 to {MAX_EVERY_MINUTES}"),
            ));
        }
        let download = DownloadBody {
            url: self.url,
            format_id: self.format_id,
            include_subtitles: self.include_subtitles,
            subtitle_langs: self.subtitle_langs,
            process: None,
            callback_url: None,
            skip_archived: true,
            playlist: Some(PlaylistBody { items: self.items, reverse: self.reverse, process: self.process }),
        };
        let request = download.validate_request(policy, max_items).await.map_err(|mut e| {
            // Named as this body names them.
            e.field = match e.field {
                "playlist.items" => "items",
                "playlist.process" => "process",
                other => other,
            };
            e
        })?;
        let TaskRequest::Playlist(mut spec) = request else {
            unreachable!("a body with `playlist` validates to a collection download")
        };
        let id = Uuid::new_v4();
        spec.subscription_id = Some(id);
        Ok(Subscription::new(id, every, *spec))
    }
}

fn rfc3339(micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// A subscription as clients see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    pub subscription_id: Uuid,
    pub url: String,
    pub every_minutes: i64,
    /// The entries each check considers (`"all"`: every entry).
    pub items: String,
    pub reverse: bool,
    pub format_id: Option<String>,
    pub include_subtitles: bool,
    pub subtitle_langs: Vec<String>,
    /// Processing of each downloaded entry.
    #[schema(value_type = Option<Object>)]
    pub operations: Option<serde_json::Value>,
    pub status: SubscriptionStatus,
    /// Why it is paused.
    pub paused_reason: Option<String>,
    /// Failed checks in a row (reset by a check that lists the collection).
    pub consecutive_failures: i64,
    /// When the scheduler starts the next check (RFC 3339), while active.
    #[schema(format = DateTime)]
    pub next_check_at: Option<String>,
    #[schema(format = DateTime)]
    pub last_check_at: Option<String>,
    /// The `playlist` task of the check that is listing now.
    pub current_task_id: Option<Uuid>,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The latest checks, newest first (`GET /api/subscriptions/{id}` only; all of
    /// them: `GET /api/subscriptions/{id}/checks`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recent_checks: Option<Vec<CheckView>>,
}

impl From<&Subscription> for SubscriptionView {
    fn from(s: &Subscription) -> Self {
        let spec = s.spec();
        let entry = spec.map(|p| &p.entry);
        SubscriptionView {
            subscription_id: s.subscription_id,
            url: s.url.clone(),
            every_minutes: s.every_minutes,
            items: spec.and_then(|p| p.items.as_ref()).map_or_else(|| "all".to_owned(), ToString::to_string),
            reverse: spec.is_some_and(|p| p.reverse),
            format_id: entry.and_then(|e| e.format_id.as_ref()).map(ToString::to_string),
            include_subtitles: entry.is_some_and(|e| e.include_subtitles),
            subtitle_langs: entry
                .map(|e| e.subtitle_langs.iter().map(|l| l.as_str().to_owned()).collect())
                .unwrap_or_default(),
            operations: entry.and_then(|e| e.process.as_ref()).and_then(|o| serde_json::to_value(o).ok()),
            status: s.status,
            paused_reason: s.paused_reason.clone(),
            consecutive_failures: s.consecutive_failures,
            next_check_at: (s.status == SubscriptionStatus::Active).then(|| rfc3339(s.next_check_at)),
            last_check_at: s.last_check_at.map(rfc3339),
            current_task_id: s.current_task_id,
            created_at: rfc3339(s.created_at),
            recent_checks: None,
        }
    }
}

/// A check as clients see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckView {
    pub check_id: Uuid,
    /// Its `playlist` task: `GET /api/tasks?parent_task_id=` lists the downloads it queued.
    pub task_id: Uuid,
    pub status: CheckStatus,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// Entries the listing selected.
    pub found: Option<u64>,
    /// Downloads created (new entries).
    pub queued: Option<u64>,
    /// Entries left out: in the download archive, or queued by an earlier check.
    pub skipped: Option<u64>,
    pub error: Option<String>,
}

impl From<&Check> for CheckView {
    fn from(c: &Check) -> Self {
        CheckView {
            check_id: c.check_id,
            task_id: c.task_id,
            status: c.status,
            started_at: rfc3339(c.started_at),
            finished_at: c.finished_at.map(rfc3339),
            found: c.found,
            queued: c.queued,
            skipped: c.skipped,
            error: c.error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: EgressPolicy = EgressPolicy { allow_private_networks: true, allowed_networks: Vec::new() };

    fn body(json: &str) -> SubscriptionBody {
        serde_json::from_str(json).expect("well-formed body")
    }

    #[test]
    fn the_next_check_is_one_period_after_the_check_starts() {
        assert_eq!(next_check_after(1_000, 1), 60_001_000);
        assert_eq!(next_check_after(0, MAX_EVERY_MINUTES), 43_200 * 60_000_000);
        assert_eq!(next_check_after(i64::MAX - 1, 5), i64::MAX);
    }

    #[tokio::test]
    async fn a_body_becomes_a_collection_download_that_skips_archived_entries() {
        let sub = body(
            r#"{"url":"http://127.0.0.1:9/feed.xml","every_minutes":15,"items":"1-5","format_id":"b",
                "process":{"operations":{"format":"mp3"}}}"#,
        )
        .validate(&OPEN, 100)
        .await
        .expect("valid");
        assert_eq!(sub.every_minutes, 15);
        assert_eq!(sub.status, SubscriptionStatus::Active);
        assert!(sub.next_check_at <= micros(now()), "first check at once");
        let spec = sub.spec().expect("a collection download");
        assert_eq!(spec.subscription_id, Some(sub.subscription_id));
        assert!(spec.entry.skip_archived);
        assert_eq!(spec.items.as_ref().map(ToString::to_string).as_deref(), Some("1-5"));
        assert!(spec.entry.process.is_some());
        let view = SubscriptionView::from(&sub);
        assert_eq!(view.items, "1-5");
        assert_eq!(view.format_id.as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn bad_schedules_and_selections_name_this_bodys_fields() {
        for (json, field, code) in [
            (r#"{"url":"http://127.0.0.1:9/f"}"#, "every_minutes", Code::InvalidSchedule),
            (r#"{"url":"http://127.0.0.1:9/f","every_minutes":0}"#, "every_minutes", Code::InvalidSchedule),
            (
                r#"{"url":"http://127.0.0.1:9/f","every_minutes":43201}"#,
                "every_minutes",
                Code::InvalidSchedule,
            ),
            (
                r#"{"url":"http://127.0.0.1:9/f","every_minutes":5,"items":"4-2"}"#,
                "items",
                Code::InvalidPlaylistItems,
            ),
            (r#"{"url":"ftp://x/f","every_minutes":5}"#, "url", Code::UnsupportedScheme),
        ] {
            let err = body(json).validate(&OPEN, 100).await.expect_err(json);
            assert_eq!((err.field, err.code), (field, code), "{json}");
        }
        // The egress policy of downloads: a loopback feed is refused by default.
        let strict = EgressPolicy { allow_private_networks: false, allowed_networks: Vec::new() };
        let err = body(r#"{"url":"http://127.0.0.1:9/feed.xml","every_minutes":5}"#)
            .validate(&strict, 100)
            .await
            .expect_err("private");
        assert_eq!((err.field, err.code), ("url", Code::PrivateAddress));
    }
}
