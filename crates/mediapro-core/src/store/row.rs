//! The `tasks` row and its conversion to and from [`Task`]; only plain types cross
//! the `Any` driver (TEXT, BIGINT, DOUBLE), so both backends decode alike.

use time::OffsetDateTime;

use super::StoreError;
use crate::task::{Task, TaskRequest};

#[derive(Debug, sqlx::FromRow)]
pub(super) struct TaskRow {
    pub task_id: String,
    pub kind: String,
    pub status: String,
    pub progress: f64,
    pub progress_detail: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub request: String,
    pub downloaded_files: String,
    pub output_file: Option<String>,
    pub error: Option<String>,
    pub attempts: i64,
    pub worker: Option<String>,
    pub parent_task_id: Option<String>,
    pub next_task_id: Option<String>,
    pub job_id: Option<String>,
    pub callback_url: Option<String>,
    pub site_profile: Option<String>,
}

pub fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

fn from_micros(m: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1000).ok()
}

impl TaskRow {
    pub fn from_task(t: &Task) -> Result<Self, StoreError> {
        let corrupt =
            |e: serde_json::Error| StoreError::Corrupt { task_id: t.task_id.to_string(), why: e.to_string() };
        Ok(TaskRow {
            task_id: t.task_id.to_string(),
            kind: t.kind().as_str().to_owned(),
            status: t.status.as_str().to_owned(),
            progress: t.progress,
            progress_detail: None,
            created_at: micros(t.created_at),
            started_at: t.started_at.map(micros),
            completed_at: t.completed_at.map(micros),
            request: serde_json::to_string(&t.request).map_err(corrupt)?,
            downloaded_files: serde_json::to_string(&t.downloaded_files).map_err(corrupt)?,
            output_file: t.output_file.clone(),
            error: t.error.clone(),
            attempts: t.attempts,
            worker: t.worker.clone(),
            parent_task_id: t.parent_task_id.map(|u| u.to_string()),
            next_task_id: t.next_task_id.map(|u| u.to_string()),
            job_id: Some(t.job_id.clone()),
            callback_url: t.callback_url.clone(),
            site_profile: t.site_profile.clone(),
        })
    }

    pub fn into_task(self) -> Result<Task, StoreError> {
        let corrupt = |why: String| StoreError::Corrupt { task_id: self.task_id.clone(), why };
        let request: TaskRequest = serde_json::from_str(&self.request).map_err(|e| corrupt(e.to_string()))?;
        Ok(Task {
            task_id: self.task_id.parse().map_err(|e: uuid::Error| corrupt(e.to_string()))?,
            status: self.status.parse().map_err(|e: crate::task::UnknownVariant| corrupt(e.to_string()))?,
            progress: self.progress,
            // Best effort: a detail that does not parse is no reason to lose the task.
            detail: self
                .progress_detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default(),
            created_at: from_micros(self.created_at).ok_or_else(|| corrupt("created_at".into()))?,
            started_at: self.started_at.and_then(from_micros),
            completed_at: self.completed_at.and_then(from_micros),
            request,
            downloaded_files: serde_json::from_str(&self.downloaded_files)
                .map_err(|e| corrupt(e.to_string()))?,
            output_file: self.output_file.clone(),
            error: self.error.clone(),
            attempts: self.attempts,
            worker: self.worker.clone(),
            parent_task_id: self.parent_task_id.as_deref().and_then(|u| u.parse().ok()),
            next_task_id: self.next_task_id.as_deref().and_then(|u| u.parse().ok()),
            job_id: self.job_id.clone().unwrap_or_default(),
            callback_url: self.callback_url.clone(),
            site_profile: self.site_profile.clone(),
        })
    }
}
