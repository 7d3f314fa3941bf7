//! The task: one unit of accepted work (a download or a processing job) as the
//! store keeps it and as clients see it.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use strum::{Display, EnumIter, IntoEnumIterator, IntoStaticStr};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::requests::{DownloadSpec, PlaylistSpec, ProcessSpec};

/// What a task does. Each kind runs on the queue of the same name (see
/// `crates/queue`), and has one status while a worker runs it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    EnumIter,
    IntoStaticStr,
    Display,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum TaskKind {
    Download,
    Process,
    /// A playlist, channel or feed: expands into child downloads and follows them.
    Playlist,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The status a task of this kind has while a worker runs it.
    pub fn running_status(self) -> TaskStatus {
        match self {
            TaskKind::Download => TaskStatus::Downloading,
            TaskKind::Process => TaskStatus::Processing,
            TaskKind::Playlist => TaskStatus::Expanding,
        }
    }
}

/// Where a task is in its lifecycle (`docs/ARCHITECTURE.md` draws the state
/// machine). The store changes it only through compare-and-sets built from the
/// sets below, so a new status is added here and nowhere else in SQL.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    EnumIter,
    IntoStaticStr,
    Display,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Downloading,
    Processing,
    /// A collection: listing its entries, then following its child downloads.
    Expanding,
    Completed,
    Failed,
    Cancelled,
}

impl TaskStatus {
    /// A worker runs the task (one per kind: [`TaskKind::running_status`]).
    pub const RUNNING: &'static [TaskStatus] =
        &[TaskStatus::Downloading, TaskStatus::Processing, TaskStatus::Expanding];
    /// Not finished: waiting for a worker or running.
    pub const ACTIVE: &'static [TaskStatus] =
        &[TaskStatus::Pending, TaskStatus::Downloading, TaskStatus::Processing, TaskStatus::Expanding];
    /// Finished: the status never changes again (except by an explicit retry).
    pub const FINAL: &'static [TaskStatus] =
        &[TaskStatus::Completed, TaskStatus::Failed, TaskStatus::Cancelled];
    /// Finished in a way a client may retry.
    pub const RETRYABLE: &'static [TaskStatus] = &[TaskStatus::Failed, TaskStatus::Cancelled];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// A final task never changes status again.
    pub fn is_final(self) -> bool {
        Self::FINAL.contains(&self)
    }

    pub fn is_running(self) -> bool {
        Self::RUNNING.contains(&self)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown {what} '{value}'; valid values: {valid}")]
pub struct UnknownVariant {
    what: &'static str,
    value: String,
    valid: String,
}

/// Parses a variant by its snake_case name; the error lists every valid name.
fn parse_variant<T>(what: &'static str, value: &str) -> Result<T, UnknownVariant>
where
    T: IntoEnumIterator + Copy + Into<&'static str>,
{
    T::iter().find(|v| (*v).into() == value).ok_or_else(|| UnknownVariant {
        what,
        value: value.to_owned(),
        valid: T::iter().map(Into::into).collect::<Vec<&str>>().join(", "),
    })
}

impl FromStr for TaskStatus {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_variant("status", s)
    }
}

impl FromStr for TaskKind {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_variant("kind", s)
    }
}

/// What a running attempt is doing, for clients ("stuck at 100 %" is really
/// merging or verifying).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, IntoStaticStr, Display, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Phase {
    Queued,
    /// Pending: its site profile's slots are taken, its start spacing not over,
    /// or the site backed off after throttling (`crates/queue/src/site_gate.rs`);
    /// the job is queued again for when the site may be asked.
    WaitingForSite,
    Downloading,
    Merging,
    PostProcessing,
    Verifying,
    Encoding,
    /// A collection: listing its entries.
    Expanding,
    /// A collection: its child downloads run.
    Following,
}

/// Live progress beyond the percentage, from machine-readable tool output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgressDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_bps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downloaded_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    /// A collection: its child tasks by status (as of the last lease renewal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children: Option<std::collections::BTreeMap<TaskStatus, u64>>,
}

/// What was asked, validated; kept with the task so a retry re-runs the same work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskRequest {
    Download(DownloadSpec),
    Process(ProcessSpec),
    /// Boxed: a collection's spec holds a whole download spec.
    Playlist(Box<PlaylistSpec>),
}

impl TaskRequest {
    pub fn kind(&self) -> TaskKind {
        match self {
            TaskRequest::Download(_) => TaskKind::Download,
            TaskRequest::Process(_) => TaskKind::Process,
            TaskRequest::Playlist(_) => TaskKind::Playlist,
        }
    }
}

/// A task as stored. File paths are relative to the storage root.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub task_id: Uuid,
    pub status: TaskStatus,
    pub progress: f64,
    pub detail: ProgressDetail,
    pub created_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub completed_at: Option<OffsetDateTime>,
    pub request: TaskRequest,
    pub downloaded_files: Vec<String>,
    pub output_file: Option<String>,
    pub error: Option<String>,
    pub attempts: i64,
    pub worker: Option<String>,
    /// The download this processing task was chained after.
    pub parent_task_id: Option<Uuid>,
    /// The processing task chained after this download.
    pub next_task_id: Option<Uuid>,
    /// Id of the queue job that carries this task now (a new one per retry).
    pub job_id: String,
    /// Where the task's final event is delivered as a signed webhook
    /// (`crates/mediapro-core/src/webhooks.rs`); validated at submission.
    pub callback_url: Option<String>,
    /// The site profile its URL matched (`crates/mediapro-core/src/site_profile.rs`),
    /// by name; set at submission and again when a job runs.
    pub site_profile: Option<String>,
}

impl Task {
    /// A new task, as accepted by the API before it is queued.
    pub fn new_pending(request: TaskRequest) -> Self {
        Task {
            task_id: Uuid::new_v4(),
            status: TaskStatus::Pending,
            progress: 0.0,
            detail: ProgressDetail::default(),
            created_at: now(),
            started_at: None,
            completed_at: None,
            request,
            downloaded_files: Vec::new(),
            output_file: None,
            error: None,
            attempts: 0,
            worker: None,
            parent_task_id: None,
            next_task_id: None,
            job_id: new_job_id(),
            callback_url: None,
            site_profile: None,
        }
    }

    pub fn kind(&self) -> TaskKind {
        self.request.kind()
    }

    /// The file `download-result` serves: the processed output, else the first
    /// downloaded media file.
    pub fn result_file(&self) -> Option<&str> {
        self.output_file.as_deref().or_else(|| self.downloaded_files.first().map(String::as_str))
    }
}

/// A fresh queue job id (a ULID, as apalis-redis expects). Never reused: the queue
/// silently drops a push whose id it has seen before.
pub fn new_job_id() -> String {
    ulid::Ulid::generate().to_string()
}

/// Wall-clock now, truncated to microseconds (what the store keeps).
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_errors_list_valid_values() {
        for s in TaskStatus::iter() {
            assert_eq!(s.as_str().parse::<TaskStatus>().ok(), Some(s));
        }
        let err = "done".parse::<TaskStatus>().expect_err("unknown").to_string();
        assert!(err.contains("pending, downloading, processing, expanding, completed, failed, cancelled"));
        assert!(TaskStatus::Cancelled.is_final() && !TaskStatus::Downloading.is_final());
    }

    #[test]
    fn the_status_sets_partition_every_status() {
        for s in TaskStatus::iter() {
            let active = TaskStatus::ACTIVE.contains(&s);
            assert_ne!(active, s.is_final(), "{s} is either active or final");
            assert_eq!(s.is_running(), active && s != TaskStatus::Pending, "{s}");
        }
        for k in TaskKind::iter() {
            assert!(TaskStatus::RUNNING.contains(&k.running_status()), "{k}");
            assert_eq!(k.as_str().parse::<TaskKind>().ok(), Some(k));
        }
        for s in TaskStatus::RETRYABLE {
            assert!(s.is_final());
        }
    }

    #[test]
    fn job_ids_are_ulids() {
        let id = new_job_id();
        assert_eq!(id.len(), 26);
        assert!(id.parse::<ulid::Ulid>().is_ok());
        assert_ne!(id, new_job_id());
    }
}
