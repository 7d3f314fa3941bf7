//! Collections (a `playlist` task and its child downloads, linked by
//! `parent_task_id`; index in `migrations/20261203000001_task_children.sql`): the
//! expansion that records the children with the parent's compare-and-set, and
//! the reads that follow them.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{
    COLUMNS, StoreError, TaskStore,
    lifecycle::insert_row,
    row,
    transition::{Sql, Transition},
};
use crate::task::{Task, TaskRequest, TaskStatus, now};

impl TaskStore {
    /// Attempt `attempt` of a collection listed its entries: in one transaction
    /// the parent's request gets the expansion's result (`request`) and the
    /// `children` (pending, queued by the caller) are inserted; nothing is written
    /// unless that attempt still runs the parent (cancelled or taken over: `false`).
    /// A subscription's check also remembers the entries it queued
    /// (`store/subscription.rs`).
    pub async fn expand(
        &self,
        parent: Uuid,
        attempt: i64,
        request: &TaskRequest,
        children: &[Task],
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(request)
            .map_err(|e| StoreError::Corrupt { task_id: parent.to_string(), why: e.to_string() })?;
        let mut tx = self.writer.begin().await?;
        let held = Transition::keep()
            .set("request", json)
            .set("updated_at", super::micros(now()))
            .from(TaskStatus::RUNNING)
            .attempt(attempt)
            .apply(&parent.to_string(), &mut *tx)
            .await?;
        if !held {
            return Ok(false);
        }
        for child in children {
            insert_row(&mut tx, child).await?;
        }
        // A subscription's check: its entries are remembered with their children.
        super::subscription::remember_entries(&mut tx, request, children).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A collection's children by status (statuses without children are absent).
    pub async fn child_counts(&self, parent: Uuid) -> Result<BTreeMap<TaskStatus, u64>, StoreError> {
        let rows: Vec<(String, i64)> = Sql::new("SELECT status, COUNT(*) FROM tasks WHERE parent_task_id = ")
            .arg(parent.to_string())
            .text(" GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().filter_map(|(s, n)| Some((s.parse().ok()?, u64::try_from(n).ok()?))).collect())
    }

    /// A collection's children that were skipped as archived (`cancelled` by
    /// [`TaskStore::skip`], not by a client).
    pub async fn skipped_children(&self, parent: Uuid) -> Result<u64, StoreError> {
        let rows: Vec<(i64,)> = Sql::new("SELECT COUNT(*) FROM tasks WHERE parent_task_id = ")
            .arg(parent.to_string())
            .text(" AND status IN ")
            .statuses(&[TaskStatus::Cancelled])
            .text(" AND error LIKE ")
            .arg(format!("{}%", super::SKIPPED))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.first().map_or(0, |(n,)| u64::try_from(*n).unwrap_or(0)))
    }

    /// A collection's children in one of `statuses` (all if empty), oldest first.
    pub async fn children(&self, parent: Uuid, statuses: &[TaskStatus]) -> Result<Vec<Task>, StoreError> {
        let mut sql =
            Sql::new(format!("SELECT {COLUMNS} FROM tasks WHERE parent_task_id = ")).arg(parent.to_string());
        if !statuses.is_empty() {
            sql = sql.text(" AND status IN ").statuses(statuses);
        }
        let rows: Vec<row::TaskRow> =
            sql.text(" ORDER BY created_at, task_id").fetch_all(&self.writer).await?;
        rows.into_iter().map(row::TaskRow::into_task).collect()
    }
}
