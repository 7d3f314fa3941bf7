//! The task: one unit of accepted work (a download or a processing job) as the
//! store keeps it and as clients see it.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::requests::{DownloadSpec, ProcessSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Download,
    Process,
}

impl TaskKind {
    pub const ALL: [TaskKind; 2] = [TaskKind::Download, TaskKind::Process];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Download => "download",
            TaskKind::Process => "process",
        }
    }

    /// The status a task of this kind has while a worker runs it.
    pub fn running_status(self) -> TaskStatus {
        match self {
            TaskKind::Download => TaskStatus::Downloading,
            TaskKind::Process => TaskStatus::Processing,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Downloading,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Pending,
        TaskStatus::Downloading,
        TaskStatus::Processing,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Downloading => "downloading",
            TaskStatus::Processing => "processing",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// A final task never changes status again.
    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown {what} '{value}'; valid values: {valid}")]
pub struct UnknownVariant {
    what: &'static str,
    value: String,
    valid: String,
}

fn parse_variant<T: Copy>(
    what: &'static str,
    value: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, UnknownVariant> {
    all.iter().copied().find(|v| name(*v) == value).ok_or_else(|| UnknownVariant {
        what,
        value: value.to_owned(),
        valid: all.iter().map(|v| name(*v)).collect::<Vec<_>>().join(", "),
    })
}

impl FromStr for TaskStatus {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_variant("status", s, &TaskStatus::ALL, TaskStatus::as_str)
    }
}

impl FromStr for TaskKind {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_variant("kind", s, &TaskKind::ALL, TaskKind::as_str)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was asked, validated; kept with the task so a retry re-runs the same work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskRequest {
    Download(DownloadSpec),
    Process(ProcessSpec),
}

impl TaskRequest {
    pub fn kind(&self) -> TaskKind {
        match self {
            TaskRequest::Download(_) => TaskKind::Download,
            TaskRequest::Process(_) => TaskKind::Process,
        }
    }
}

/// A task as stored. File paths are relative to the storage root.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub task_id: Uuid,
    pub status: TaskStatus,
    pub progress: f64,
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
}

impl Task {
    /// A new task, as accepted by the API before it is queued.
    pub fn new_pending(request: TaskRequest) -> Self {
        Task {
            task_id: Uuid::new_v4(),
            status: TaskStatus::Pending,
            progress: 0.0,
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
    let t = now();
    let ms = u128::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or_default();
    let random = Uuid::new_v4().as_u128() & ((1u128 << 80) - 1);
    crockford((ms << 80) | random)
}

/// ULID text form: 26 Crockford base-32 digits.
fn crockford(mut v: u128) -> String {
    const DIGITS: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut out = [b'0'; 26];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(v & 31) as usize];
        v >>= 5;
    }
    String::from_utf8_lossy(&out).into_owned()
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
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>().ok(), Some(s));
        }
        let err = "done".parse::<TaskStatus>().expect_err("unknown").to_string();
        assert!(err.contains("pending, downloading, processing, completed, failed, cancelled"));
        assert!(TaskStatus::Cancelled.is_final() && !TaskStatus::Downloading.is_final());
    }
}
