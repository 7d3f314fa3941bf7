//! Subscriptions, their checks and the entries their checks queued
//! (`migrations/20261204000001_subscriptions.sql`; the domain is
//! `crates/mediapro-core/src/subscription.rs`).
//!
//! Starting a check is one compare-and-set on the subscription (active, due, no
//! check in flight → `current_task_id` set and `next_check_at = now + every`)
//! with the check's row in the same transaction, so of several schedulers (a
//! lease that changed hands mid-pass) exactly one starts it, and a schedule
//! missed for N periods yields one check. Finishing it is another
//! (`current_task_id` still that task).

use std::collections::HashSet;

use sqlx::AnyConnection;
use uuid::Uuid;

use super::{StoreError, TaskStore, micros, transition::Sql};
use crate::{
    subscription::{
        Check, CheckOutcome, CheckStatus, MAX_ENTRY_CHECKS, Subscription, SubscriptionStatus,
        next_check_after,
    },
    task::{Task, TaskRequest, TaskStatus, now},
};

const SUBSCRIPTION_COLUMNS: &str = "subscription_id, url, every_minutes, request, status, paused_reason, \
    consecutive_failures, next_check_at, last_check_at, current_task_id, created_at";

const CHECK_COLUMNS: &str =
    "check_id, subscription_id, task_id, status, started_at, finished_at, found, queued, skipped, error";

#[derive(Debug, sqlx::FromRow)]
struct SubscriptionRow {
    subscription_id: String,
    url: String,
    every_minutes: i64,
    request: String,
    status: String,
    paused_reason: Option<String>,
    consecutive_failures: i64,
    next_check_at: i64,
    last_check_at: Option<i64>,
    current_task_id: Option<String>,
    created_at: i64,
}

impl SubscriptionRow {
    fn into_subscription(self) -> Result<Subscription, StoreError> {
        let corrupt = |why: String| StoreError::Corrupt { task_id: self.subscription_id.clone(), why };
        Ok(Subscription {
            subscription_id: self.subscription_id.parse().map_err(|e: uuid::Error| corrupt(e.to_string()))?,
            url: self.url.clone(),
            every_minutes: self.every_minutes,
            request: serde_json::from_str(&self.request).map_err(|e| corrupt(e.to_string()))?,
            status: self.status.parse().map_err(|e: strum::ParseError| corrupt(e.to_string()))?,
            paused_reason: self.paused_reason.clone(),
            consecutive_failures: self.consecutive_failures,
            next_check_at: self.next_check_at,
            last_check_at: self.last_check_at,
            current_task_id: self.current_task_id.as_deref().and_then(|t| t.parse().ok()),
            created_at: self.created_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
struct CheckRow {
    check_id: String,
    subscription_id: String,
    task_id: String,
    status: String,
    started_at: i64,
    finished_at: Option<i64>,
    found: Option<i64>,
    queued: Option<i64>,
    skipped: Option<i64>,
    error: Option<String>,
}

impl CheckRow {
    fn into_check(self) -> Result<Check, StoreError> {
        let corrupt = |why: String| StoreError::Corrupt { task_id: self.check_id.clone(), why };
        let id = |s: &str| s.parse::<Uuid>().map_err(|e| corrupt(e.to_string()));
        let count = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
        Ok(Check {
            check_id: id(&self.check_id)?,
            subscription_id: id(&self.subscription_id)?,
            task_id: id(&self.task_id)?,
            status: self.status.parse().map_err(|e: strum::ParseError| corrupt(e.to_string()))?,
            started_at: self.started_at,
            finished_at: self.finished_at,
            found: count(self.found),
            queued: count(self.queued),
            skipped: count(self.skipped),
            error: self.error.clone(),
        })
    }
}

fn rows_into(rows: Vec<SubscriptionRow>) -> Result<Vec<Subscription>, StoreError> {
    rows.into_iter().map(SubscriptionRow::into_subscription).collect()
}

/// Records the entries a subscription's check created children for (each
/// child's URL, its task), on the caller's transaction: a later check skips them
/// while their download has not failed.
pub(super) async fn remember_entries(
    conn: &mut AnyConnection,
    request: &TaskRequest,
    children: &[Task],
) -> Result<(), StoreError> {
    let TaskRequest::Playlist(spec) = request else { return Ok(()) };
    let Some(subscription) = spec.subscription_id else { return Ok(()) };
    // Deleted while its check listed: nothing to remember.
    let exists: Vec<(i64,)> = Sql::new("SELECT COUNT(*) FROM subscriptions WHERE subscription_id = ")
        .arg(subscription.to_string())
        .fetch_all(&mut *conn)
        .await?;
    if exists.first().is_none_or(|(n,)| *n == 0) {
        return Ok(());
    }
    let t = micros(now());
    for child in children {
        let TaskRequest::Download(entry) = &child.request else { continue };
        Sql::new("INSERT INTO subscription_entries (subscription_id, entry_url, task_id, seen_at) VALUES (")
            .arg(subscription.to_string())
            .text(", ")
            .arg(entry.url.as_str())
            .text(", ")
            .arg(child.task_id.to_string())
            .text(", ")
            .arg(t)
            .text(
                ") ON CONFLICT (subscription_id, entry_url) DO UPDATE SET task_id = excluded.task_id, \
                 seen_at = excluded.seen_at, queued_times = subscription_entries.queued_times + 1",
            )
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl TaskStore {
    pub async fn insert_subscription(&self, s: &Subscription) -> Result<(), StoreError> {
        let request = serde_json::to_string(&s.request).map_err(|e| StoreError::Corrupt {
            task_id: s.subscription_id.to_string(),
            why: e.to_string(),
        })?;
        Sql::new(format!("INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS}, updated_at) VALUES ("))
            .arg(s.subscription_id.to_string())
            .text(", ")
            .arg(s.url.as_str())
            .text(", ")
            .arg(s.every_minutes)
            .text(", ")
            .arg(request)
            .text(", ")
            .arg(s.status.as_str())
            .text(", ")
            .arg(s.paused_reason.as_deref())
            .text(", ")
            .arg(s.consecutive_failures)
            .text(", ")
            .arg(s.next_check_at)
            .text(", ")
            .append(s.last_check_at.map_or_else(|| Sql::new("NULL"), |t| Sql::new("").arg(t)))
            .text(", ")
            .arg(s.current_task_id.map(|t| t.to_string()).as_deref())
            .text(", ")
            .arg(s.created_at)
            .text(", ")
            .arg(s.created_at)
            .text(")")
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn subscription(&self, id: Uuid) -> Result<Option<Subscription>, StoreError> {
        let rows: Vec<SubscriptionRow> =
            Sql::new(format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE subscription_id = "))
                .arg(id.to_string())
                .fetch_all(&self.writer)
                .await?;
        Ok(rows_into(rows)?.into_iter().next())
    }

    /// A page of subscriptions, oldest first, after `(created_at, subscription_id)`.
    pub async fn subscriptions_page(
        &self,
        after: Option<(i64, Uuid)>,
        limit: u32,
    ) -> Result<Vec<Subscription>, StoreError> {
        let mut sql = Sql::new(format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions"));
        if let Some((t, id)) = after {
            sql = sql
                .text(" WHERE created_at > ")
                .arg(t)
                .text(" OR (created_at = ")
                .arg(t)
                .text(" AND subscription_id > ")
                .arg(id.to_string())
                .text(")");
        }
        let rows: Vec<SubscriptionRow> = sql
            .text(format!(" ORDER BY created_at, subscription_id LIMIT {}", limit.clamp(1, 10_000)))
            .fetch_all(&self.pool)
            .await?;
        rows_into(rows)
    }

    /// Removes a subscription with its checks and remembered entries (`false`: no
    /// such subscription). The tasks its checks created are left alone.
    pub async fn delete_subscription(&self, id: Uuid) -> Result<bool, StoreError> {
        let id = id.to_string();
        let mut tx = self.writer.begin().await?;
        for table in ["subscription_checks", "subscription_entries"] {
            Sql::new(format!("DELETE FROM {table} WHERE subscription_id = "))
                .arg(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let n = Sql::new("DELETE FROM subscriptions WHERE subscription_id = ")
            .arg(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Pauses it with `reason` (a paused one keeps its first reason); `false`: no
    /// such subscription. A check in flight still finishes and is recorded.
    pub async fn pause_subscription(&self, id: Uuid, reason: &str) -> Result<bool, StoreError> {
        let n = Sql::new("UPDATE subscriptions SET status = ")
            .arg(SubscriptionStatus::Paused.as_str())
            .text(", paused_reason = CASE WHEN status = ")
            .arg(SubscriptionStatus::Paused.as_str())
            .text(" THEN paused_reason ELSE ")
            .arg(reason)
            .text(" END, updated_at = ")
            .arg(micros(now()))
            .text(" WHERE subscription_id = ")
            .arg(id.to_string())
            .execute(&self.writer)
            .await?;
        Ok(n == 1)
    }

    /// Active again, its failure count and reason cleared, checked at once.
    pub async fn resume_subscription(&self, id: Uuid) -> Result<bool, StoreError> {
        let t = micros(now());
        let n = Sql::new("UPDATE subscriptions SET status = ")
            .arg(SubscriptionStatus::Active.as_str())
            .text(", paused_reason = NULL, consecutive_failures = 0, next_check_at = CASE WHEN status = ")
            .arg(SubscriptionStatus::Paused.as_str())
            .text(" THEN ")
            .arg(t)
            .text(" ELSE next_check_at END, updated_at = ")
            .arg(t)
            .text(" WHERE subscription_id = ")
            .arg(id.to_string())
            .execute(&self.writer)
            .await?;
        Ok(n == 1)
    }

    /// Moves an active subscription's next check to `at` (unix microseconds);
    /// `false` if there is no such active subscription. "Check now" is `at = now`.
    pub async fn reschedule_subscription(&self, id: Uuid, at: i64) -> Result<bool, StoreError> {
        let n = Sql::new("UPDATE subscriptions SET next_check_at = ")
            .arg(at)
            .text(", updated_at = ")
            .arg(micros(now()))
            .text(" WHERE subscription_id = ")
            .arg(id.to_string())
            .text(" AND status = ")
            .arg(SubscriptionStatus::Active.as_str())
            .execute(&self.writer)
            .await?;
        Ok(n == 1)
    }

    /// Active subscriptions due at `now` (unix microseconds) with no check in
    /// flight, most overdue first.
    pub async fn due_subscriptions(&self, now: i64, limit: u32) -> Result<Vec<Subscription>, StoreError> {
        let rows: Vec<SubscriptionRow> =
            Sql::new(format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE status = "))
                .arg(SubscriptionStatus::Active.as_str())
                .text(" AND next_check_at <= ")
                .arg(now)
                .text(" AND current_task_id IS NULL")
                .text(format!(" ORDER BY next_check_at LIMIT {}", limit.clamp(1, 10_000)))
                .fetch_all(&self.writer)
                .await?;
        rows_into(rows)
    }

    /// Starts a check of `s` at `now` whose `playlist` task will be `task_id`
    /// (inserted and queued by the caller, after this): in one transaction the
    /// subscription, if still active, due and idle, gets `current_task_id` and
    /// `next_check_at = now + every`, and the check is recorded `running`.
    /// `None`: someone else started it, or it was paused or rescheduled.
    pub async fn start_check(
        &self,
        s: &Subscription,
        task_id: Uuid,
        now: i64,
    ) -> Result<Option<Check>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let n = Sql::new("UPDATE subscriptions SET current_task_id = ")
            .arg(task_id.to_string())
            .text(", next_check_at = ")
            .arg(next_check_after(now, s.every_minutes))
            .text(", last_check_at = ")
            .arg(now)
            .text(", updated_at = ")
            .arg(now)
            .text(" WHERE subscription_id = ")
            .arg(s.subscription_id.to_string())
            .text(" AND status = ")
            .arg(SubscriptionStatus::Active.as_str())
            .text(" AND current_task_id IS NULL AND next_check_at <= ")
            .arg(now)
            .execute(&mut *tx)
            .await?;
        if n != 1 {
            return Ok(None);
        }
        let check = Check {
            check_id: Uuid::new_v4(),
            subscription_id: s.subscription_id,
            task_id,
            status: CheckStatus::Running,
            started_at: now,
            finished_at: None,
            found: None,
            queued: None,
            skipped: None,
            error: None,
        };
        Sql::new(format!("INSERT INTO subscription_checks ({CHECK_COLUMNS}) VALUES ("))
            .arg(check.check_id.to_string())
            .text(", ")
            .arg(check.subscription_id.to_string())
            .text(", ")
            .arg(task_id.to_string())
            .text(", ")
            .arg(check.status.as_str())
            .text(", ")
            .arg(now)
            .text(", NULL, NULL, NULL, NULL, NULL)")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(check))
    }

    /// Subscriptions with a check in flight (`current_task_id` set).
    pub async fn checking_subscriptions(&self, limit: u32) -> Result<Vec<Subscription>, StoreError> {
        let rows: Vec<SubscriptionRow> = Sql::new(format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE current_task_id IS NOT NULL \
             ORDER BY last_check_at LIMIT {}",
            limit.clamp(1, 10_000)
        ))
        .fetch_all(&self.writer)
        .await?;
        rows_into(rows)
    }

    /// Records how the check in flight of `s` (as read) ended: its row, and on
    /// the subscription `current_task_id` cleared and the failure count reset or
    /// raised; the failure that makes it `max_failures` in a row pauses it with the
    /// reason. `false`: the subscription changed meanwhile (nothing written).
    pub async fn finish_check(
        &self,
        s: &Subscription,
        outcome: &CheckOutcome,
        max_failures: u32,
    ) -> Result<bool, StoreError> {
        let Some(task_id) = s.current_task_id else { return Ok(false) };
        let t = micros(now());
        let mut tx = self.writer.begin().await?;
        let failures = match outcome {
            CheckOutcome::Listed { .. } => 0,
            CheckOutcome::Failed(_) => s.consecutive_failures + 1,
        };
        let mut update = Sql::new("UPDATE subscriptions SET current_task_id = NULL, consecutive_failures = ")
            .arg(failures)
            .text(", updated_at = ")
            .arg(t);
        if let CheckOutcome::Failed(error) = outcome
            && s.status == SubscriptionStatus::Active
            && failures >= i64::from(max_failures)
        {
            update = update
                .text(", status = ")
                .arg(SubscriptionStatus::Paused.as_str())
                .text(", paused_reason = ")
                .arg(format!("paused after {failures} failed checks in a row; the last: {error}"));
        }
        let n = update
            .text(" WHERE subscription_id = ")
            .arg(s.subscription_id.to_string())
            .text(" AND current_task_id = ")
            .arg(task_id.to_string())
            .text(" AND status = ")
            .arg(s.status.as_str())
            .text(" AND consecutive_failures = ")
            .arg(s.consecutive_failures)
            .execute(&mut *tx)
            .await?;
        if n != 1 {
            return Ok(false);
        }
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let set = match outcome {
            CheckOutcome::Listed { found, queued, skipped } => Sql::new("status = ")
                .arg(CheckStatus::Completed.as_str())
                .text(", found = ")
                .arg(count(*found))
                .text(", queued = ")
                .arg(count(*queued))
                .text(", skipped = ")
                .arg(count(*skipped)),
            CheckOutcome::Failed(error) => {
                Sql::new("status = ").arg(CheckStatus::Failed.as_str()).text(", error = ").arg(error.as_str())
            }
        };
        Sql::new("UPDATE subscription_checks SET ")
            .append(set)
            .text(", finished_at = ")
            .arg(t)
            .text(" WHERE subscription_id = ")
            .arg(s.subscription_id.to_string())
            .text(" AND task_id = ")
            .arg(task_id.to_string())
            .text(" AND status = ")
            .arg(CheckStatus::Running.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A subscription's checks, newest first, before `(started_at, check_id)`.
    pub async fn checks_page(
        &self,
        id: Uuid,
        before: Option<(i64, Uuid)>,
        limit: u32,
    ) -> Result<Vec<Check>, StoreError> {
        let mut sql =
            Sql::new(format!("SELECT {CHECK_COLUMNS} FROM subscription_checks WHERE subscription_id = "))
                .arg(id.to_string());
        if let Some((t, check)) = before {
            sql = sql
                .text(" AND (started_at < ")
                .arg(t)
                .text(" OR (started_at = ")
                .arg(t)
                .text(" AND check_id < ")
                .arg(check.to_string())
                .text("))");
        }
        let rows: Vec<CheckRow> = sql
            .text(format!(" ORDER BY started_at DESC, check_id DESC LIMIT {}", limit.clamp(1, 10_000)))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(CheckRow::into_check).collect()
    }

    /// The entry URLs a check of the subscription queued whose download has not
    /// failed (pending, running, completed, cancelled or skipped, or removed by
    /// retention), or failed after [`MAX_ENTRY_CHECKS`] checks queued it: a new
    /// check creates no child for them.
    pub async fn known_entries(&self, id: Uuid) -> Result<HashSet<String>, StoreError> {
        let rows: Vec<(String,)> = Sql::new(
            "SELECT e.entry_url FROM subscription_entries e LEFT JOIN tasks t ON t.task_id = e.task_id \
             WHERE e.subscription_id = ",
        )
        .arg(id.to_string())
        .text(" AND (t.status IS NULL OR e.queued_times >= ")
        .arg(MAX_ENTRY_CHECKS)
        .text(" OR t.status NOT IN ")
        .statuses(&[TaskStatus::Failed])
        .text(")")
        .fetch_all(&self.writer)
        .await?;
        Ok(rows.into_iter().map(|(u,)| u).collect())
    }
}
