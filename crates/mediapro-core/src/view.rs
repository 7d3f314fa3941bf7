//! The task as clients see it — in `GET /api/tasks/{id}`, in lists, in the event
//! stream and in webhook bodies: the sketch's field names, times in RFC 3339,
//! request fields flattened back out, and the live progress detail.

use crate::task::{Phase, Task, TaskKind, TaskRequest, TaskStatus};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskView {
    pub task_id: Uuid,
    pub kind: TaskKind,
    pub status: TaskStatus,
    pub progress: f64,
    /// What the running attempt is doing (`queued` while pending; null once final).
    pub phase: Option<Phase>,
    pub speed_bps: Option<f64>,
    pub eta_seconds: Option<u64>,
    pub downloaded_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
    pub url: Option<String>,
    pub format_id: Option<String>,
    pub include_subtitles: Option<bool>,
    pub subtitle_langs: Option<Vec<String>>,
    pub downloaded_files: Vec<String>,
    pub input_file: Option<String>,
    /// The validated operations (a process task, or a download's `process`).
    #[schema(value_type = Option<crate::ffmpeg::Operations>)]
    pub operations: Option<serde_json::Value>,
    pub output_file: Option<String>,
    pub error: Option<String>,
    pub attempts: i64,
    pub worker: Option<String>,
    pub parent_task_id: Option<Uuid>,
    pub next_task_id: Option<Uuid>,
    /// The site profile (`GET /api/site-profiles/{name}`) its URL matched; `null` when none.
    pub site_profile: Option<String>,
    /// A collection's child: the entry's 1-based position in the collection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playlist_index: Option<u64>,
    /// A collection download: the entries asked for (`"all"` when none were named).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playlist_items: Option<String>,
    /// A collection download: what its expansion found (once it ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expansion: Option<crate::requests::Expansion>,
    /// A collection download: its children by status; their ids are listed by
    /// `GET /api/tasks?parent_task_id=<task_id>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub children: Option<std::collections::BTreeMap<TaskStatus, u64>>,
    /// A subscription's check (`GET /api/subscriptions/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<Uuid>,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl From<&Task> for TaskView {
    fn from(t: &Task) -> Self {
        let mut view = TaskView {
            task_id: t.task_id,
            kind: t.kind(),
            status: t.status,
            progress: (t.progress * 10.0).round() / 10.0,
            phase: match t.status {
                // Queued, or held back by its site (`waiting_for_site`).
                TaskStatus::Pending => {
                    Some(t.detail.phase.filter(|p| *p == Phase::WaitingForSite).unwrap_or(Phase::Queued))
                }
                // Before the first progress line, the kind's own work.
                s if s.is_running() => t.detail.phase.or(Some(match t.kind() {
                    TaskKind::Download => Phase::Downloading,
                    TaskKind::Process => Phase::Encoding,
                    TaskKind::Playlist => Phase::Expanding,
                })),
                _ => None,
            },
            speed_bps: t.status.is_running().then_some(t.detail.speed_bps).flatten(),
            eta_seconds: t.status.is_running().then_some(t.detail.eta_seconds).flatten(),
            downloaded_bytes: t.detail.downloaded_bytes,
            total_bytes: t.detail.total_bytes,
            created_at: rfc3339(t.created_at),
            started_at: t.started_at.map(rfc3339),
            completed_at: t.completed_at.map(rfc3339),
            url: None,
            format_id: None,
            include_subtitles: None,
            subtitle_langs: None,
            downloaded_files: t.downloaded_files.clone(),
            input_file: None,
            operations: None,
            output_file: t.output_file.clone(),
            error: t.error.clone(),
            attempts: t.attempts,
            worker: t.worker.clone(),
            parent_task_id: t.parent_task_id,
            next_task_id: t.next_task_id,
            site_profile: t.site_profile.clone(),
            playlist_index: None,
            playlist_items: None,
            expansion: None,
            children: t.detail.children.clone(),
            subscription_id: None,
        };
        match &t.request {
            TaskRequest::Download(spec) => {
                view.url = Some(spec.url.to_string());
                view.format_id = spec.format_id.as_ref().map(ToString::to_string);
                view.include_subtitles = Some(spec.include_subtitles);
                view.subtitle_langs =
                    Some(spec.subtitle_langs.iter().map(|l| l.as_str().to_owned()).collect());
                view.operations = spec.process.as_ref().and_then(|o| serde_json::to_value(o).ok());
                view.playlist_index = spec.playlist_index;
            }
            TaskRequest::Process(spec) => {
                view.input_file = Some(spec.input_file.clone());
                view.operations = serde_json::to_value(&spec.operations).ok();
            }
            TaskRequest::Playlist(spec) => {
                let entry = &spec.entry;
                view.url = Some(spec.url.to_string());
                view.format_id = entry.format_id.as_ref().map(ToString::to_string);
                view.include_subtitles = Some(entry.include_subtitles);
                view.subtitle_langs =
                    Some(entry.subtitle_langs.iter().map(|l| l.as_str().to_owned()).collect());
                view.operations = entry.process.as_ref().and_then(|o| serde_json::to_value(o).ok());
                view.playlist_items =
                    Some(spec.items.as_ref().map_or_else(|| "all".to_owned(), ToString::to_string));
                view.expansion.clone_from(&spec.expansion);
                view.subscription_id = spec.subscription_id;
            }
        }
        view
    }
}

/// The 202 answer to a submission (the sketch's shape).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub task_id: Uuid,
    pub status: TaskStatus,
    #[schema(value_type = String, example = "Download task created")]
    pub message: &'static str,
}

/// One webhook message of a task as `GET /api/tasks/{id}/deliveries` shows it (the
/// URL's query masked, times in RFC 3339).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub webhook_id: String,
    pub event: String,
    pub url: String,
    pub status: crate::webhooks::DeliveryStatus,
    pub created_at: String,
    pub next_attempt_at: Option<String>,
    pub attempts: Vec<DeliveryAttemptView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryAttemptView {
    pub attempt: i64,
    pub at: String,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

fn rfc3339_micros(m: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1000).map(rfc3339).unwrap_or_default()
}

impl From<&crate::store::Delivery> for DeliveryView {
    fn from(d: &crate::store::Delivery) -> Self {
        DeliveryView {
            webhook_id: d.webhook_id.clone(),
            event: d.event.clone(),
            url: crate::webhooks::masked_url(&d.url),
            status: d.status,
            created_at: rfc3339_micros(d.created_at),
            next_attempt_at: d.next_attempt_at.map(rfc3339_micros),
            attempts: d
                .attempts
                .iter()
                .map(|a| DeliveryAttemptView {
                    attempt: a.attempt,
                    at: rfc3339_micros(a.at),
                    status_code: a.status_code,
                    error: a.error.clone(),
                    duration_ms: a.duration_ms,
                })
                .collect(),
        }
    }
}
