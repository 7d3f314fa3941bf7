//! The webhook outbox: messages waiting to be delivered, and every attempt.
//!
//! Rows are written by [`enqueue`] inside the transaction that moves a task to a
//! final status (`lifecycle.rs`), so an event is never lost between the task's
//! change and its delivery: a worker killed in between leaves the row, and any
//! worker's deliverer sends it later. Deliverers on several hosts share the table:
//! [`TaskStore::lease_delivery`] is a compare-and-set on the attempt count and
//! `next_attempt_at` read, so exactly one of them makes each attempt, and the row's
//! `next_attempt_at` is the lease while the attempt runs.

use sqlx::AnyConnection;
use uuid::Uuid;

use super::{StoreError, TaskStore, micros, transition::Sql};
use crate::{
    task::{Task, now},
    view::TaskView,
    webhooks::{DeliveryStatus, Target, WebhookEvent, WebhookRoutes, new_message_id},
};

/// A message due for an attempt, as read before it is leased.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueDelivery {
    pub webhook_id: String,
    pub task_id: String,
    pub event: String,
    pub url: String,
    pub target: String,
    /// The task JSON at the time of the event: the body of every attempt.
    pub payload: String,
    /// Attempts made so far (the next one is `attempts + 1`).
    pub attempts: i64,
    pub created_at: i64,
    pub next_attempt_at: i64,
}

impl DueDelivery {
    pub fn target(&self) -> Target {
        Target::parse(&self.target).unwrap_or(Target::Callback)
    }
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    /// When it started (unix microseconds).
    pub at: i64,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    /// Why there is no answer (refused by the egress guard, timeout, connection refused).
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// What becomes of a message after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    Delivered,
    /// Try again at this time (unix microseconds).
    RetryAt(i64),
    GaveUp,
}

/// A message and its attempts, for `GET /api/tasks/{id}/deliveries`.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub webhook_id: String,
    pub event: String,
    pub url: String,
    pub status: DeliveryStatus,
    pub created_at: i64,
    /// `None` once delivered or failed.
    pub next_attempt_at: Option<i64>,
    pub attempts: Vec<DeliveryAttempt>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeliveryAttempt {
    pub webhook_id: String,
    pub attempt: i64,
    pub at: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct DeliveryRow {
    webhook_id: String,
    event: String,
    url: String,
    status: String,
    created_at: i64,
    next_attempt_at: Option<i64>,
}

/// Queues `event` of `task` (as it is now) for the task's callback and for every
/// endpoint subscribed to it, on the caller's transaction. Returns how many
/// messages were queued.
pub(super) async fn enqueue(
    conn: &mut AnyConnection,
    routes: &WebhookRoutes,
    task: &Task,
    event: WebhookEvent,
) -> Result<usize, StoreError> {
    let mut targets: Vec<(Target, &str)> = Vec::new();
    if event.goes_to_callbacks()
        && let Some(url) = task.callback_url.as_deref()
    {
        targets.push((Target::Callback, url));
    }
    targets.extend(routes.endpoints_for(event).map(|url| (Target::Endpoint, url)));
    if targets.is_empty() {
        return Ok(0);
    }
    let payload = serde_json::to_string(&TaskView::from(task))
        .map_err(|e| StoreError::Corrupt { task_id: task.task_id.to_string(), why: e.to_string() })?;
    let t = micros(now());
    for (target, url) in &targets {
        Sql::new(
            "INSERT INTO webhook_deliveries (webhook_id, task_id, event, url, target, payload, status, \
             attempts, created_at, next_attempt_at) VALUES (",
        )
        .arg(new_message_id())
        .text(", ")
        .arg(task.task_id.to_string())
        .text(", ")
        .arg(event.as_str())
        .text(", ")
        .arg(*url)
        .text(", ")
        .arg(target.as_str())
        .text(", ")
        .arg(payload.as_str())
        .text(", ")
        .arg(DeliveryStatus::Pending.as_str())
        .text(", 0, ")
        .arg(t)
        .text(", ")
        .arg(t)
        .text(")")
        .execute(&mut *conn)
        .await?;
    }
    Ok(targets.len())
}

/// Removes a task's messages and their attempts (retention), on the caller's
/// transaction.
pub(super) async fn delete_for_task(conn: &mut AnyConnection, task_id: &str) -> Result<(), StoreError> {
    Sql::new(
        "DELETE FROM webhook_attempts WHERE webhook_id IN \
         (SELECT webhook_id FROM webhook_deliveries WHERE task_id = ",
    )
    .arg(task_id)
    .text(")")
    .execute(&mut *conn)
    .await?;
    Sql::new("DELETE FROM webhook_deliveries WHERE task_id = ").arg(task_id).execute(&mut *conn).await?;
    Ok(())
}

impl TaskStore {
    /// Pending messages whose next attempt is due (or whose last attempt's lease
    /// ran out), oldest first.
    pub async fn due_deliveries(&self, limit: i64) -> Result<Vec<DueDelivery>, StoreError> {
        Sql::new(
            "SELECT webhook_id, task_id, event, url, target, payload, attempts, created_at, \
             next_attempt_at FROM webhook_deliveries WHERE status = ",
        )
        .arg(DeliveryStatus::Pending.as_str())
        .text(" AND next_attempt_at <= ")
        .arg(micros(now()))
        .text(" ORDER BY next_attempt_at LIMIT ")
        .arg(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Takes `due` for attempt `due.attempts + 1` until `lease_until` (unix
    /// microseconds): a compare-and-set on what was read, so of several deliverers
    /// exactly one makes the attempt. `false`: someone else took it.
    pub async fn lease_delivery(&self, due: &DueDelivery, lease_until: i64) -> Result<bool, StoreError> {
        let changed = Sql::new("UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ")
            .arg(lease_until)
            .text(" WHERE webhook_id = ")
            .arg(due.webhook_id.as_str())
            .text(" AND status = ")
            .arg(DeliveryStatus::Pending.as_str())
            .text(" AND attempts = ")
            .arg(due.attempts)
            .text(" AND next_attempt_at = ")
            .arg(due.next_attempt_at)
            .execute(&self.writer)
            .await?;
        Ok(changed == 1)
    }

    /// Records attempt `attempt` and what becomes of the message, in one
    /// transaction. The message changes only while this attempt still holds it
    /// (`false` otherwise: its lease ran out and another attempt took over); the
    /// attempt itself is recorded either way, since it happened.
    pub async fn record_delivery_attempt(
        &self,
        webhook_id: &str,
        attempt: i64,
        result: &AttemptResult,
        after: AfterAttempt,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let status_code = match result.status_code {
            Some(code) => Sql::new("").arg(i64::from(code)),
            None => Sql::new("NULL"),
        };
        Sql::new("INSERT INTO webhook_attempts (webhook_id, attempt, at, status_code, error, duration_ms) VALUES (")
            .arg(webhook_id)
            .text(", ")
            .arg(attempt)
            .text(", ")
            .arg(result.at)
            .text(", ")
            .append(status_code)
            .text(", ")
            .arg(result.error.as_deref())
            .text(", ")
            .arg(result.duration_ms)
            .text(")")
            .execute(&mut *tx)
            .await?;
        let t = micros(now());
        let set = match after {
            AfterAttempt::Delivered => Sql::new("status = ")
                .arg(DeliveryStatus::Delivered.as_str())
                .text(", next_attempt_at = NULL, finished_at = ")
                .arg(t),
            AfterAttempt::GaveUp => Sql::new("status = ")
                .arg(DeliveryStatus::Failed.as_str())
                .text(", next_attempt_at = NULL, finished_at = ")
                .arg(t),
            AfterAttempt::RetryAt(at) => Sql::new("next_attempt_at = ").arg(at),
        };
        let changed = Sql::new("UPDATE webhook_deliveries SET ")
            .append(set)
            .text(" WHERE webhook_id = ")
            .arg(webhook_id)
            .text(" AND status = ")
            .arg(DeliveryStatus::Pending.as_str())
            .text(" AND attempts = ")
            .arg(attempt)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// The messages of a task with their attempts, oldest first.
    pub async fn deliveries(&self, task_id: Uuid) -> Result<Vec<Delivery>, StoreError> {
        let id = task_id.to_string();
        let rows: Vec<DeliveryRow> = Sql::new(
            "SELECT webhook_id, event, url, status, created_at, next_attempt_at FROM webhook_deliveries \
             WHERE task_id = ",
        )
        .arg(id.as_str())
        .text(" ORDER BY created_at, webhook_id")
        .fetch_all(&self.pool)
        .await?;
        let attempts: Vec<DeliveryAttempt> = Sql::new(
            "SELECT a.webhook_id, a.attempt, a.at, a.status_code, a.error, a.duration_ms \
             FROM webhook_attempts a JOIN webhook_deliveries d ON d.webhook_id = a.webhook_id \
             WHERE d.task_id = ",
        )
        .arg(id.as_str())
        .text(" ORDER BY a.webhook_id, a.attempt")
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let status = DeliveryStatus::parse(&row.status).ok_or_else(|| StoreError::Corrupt {
                    task_id: id.clone(),
                    why: format!("delivery {} has status '{}'", row.webhook_id, row.status),
                })?;
                let mine = attempts.iter().filter(|a| a.webhook_id == row.webhook_id).cloned().collect();
                Ok(Delivery {
                    webhook_id: row.webhook_id,
                    event: row.event,
                    url: row.url,
                    status,
                    created_at: row.created_at,
                    next_attempt_at: row.next_attempt_at,
                    attempts: mine,
                })
            })
            .collect()
    }
}
