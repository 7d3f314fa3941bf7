//! `GET /api/tasks`: filtered, newest first, keyset pagination (stable while tasks
//! are being added: a page never repeats or skips a task).

use crate::Code;
use time::OffsetDateTime;

use super::{COLUMNS, StoreError, TaskStore, micros, row};
use crate::{
    task::{Task, TaskKind, TaskStatus},
    validate::ValidationError,
};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// Position after the last task of a page: `<created_at µs>_<task_id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    created_at: i64,
    task_id: String,
}

impl Cursor {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let bad = || ValidationError::new("cursor", Code::InvalidCursor, "is not a cursor this API returned");
        let (t, id) = raw.split_once('_').ok_or_else(bad)?;
        let created_at = t.parse().map_err(|_| bad())?;
        let task_id = id.parse::<uuid::Uuid>().map_err(|_| bad())?.to_string();
        Ok(Cursor { created_at, task_id })
    }

    fn after(task: &Task) -> Self {
        Cursor { created_at: micros(task.created_at), task_id: task.task_id.to_string() }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.created_at, self.task_id)
    }
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Empty = any status.
    pub statuses: Vec<TaskStatus>,
    pub kind: Option<TaskKind>,
    pub created_after: Option<OffsetDateTime>,
    pub created_before: Option<OffsetDateTime>,
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

#[derive(Debug)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    pub next_cursor: Option<Cursor>,
}

enum Bind {
    Int(i64),
    Text(String),
}

impl TaskStore {
    pub async fn list(&self, filter: &TaskFilter) -> Result<TaskPage, StoreError> {
        let limit = filter.limit.clamp(1, MAX_LIMIT);
        let mut clauses: Vec<String> = Vec::new();
        let mut binds: Vec<Bind> = Vec::new();
        let next = |b: Bind, binds: &mut Vec<Bind>| {
            binds.push(b);
            format!("${}", binds.len())
        };
        if !filter.statuses.is_empty() {
            let marks: Vec<String> =
                filter.statuses.iter().map(|s| next(Bind::Text(s.as_str().into()), &mut binds)).collect();
            clauses.push(format!("status IN ({})", marks.join(", ")));
        }
        if let Some(kind) = filter.kind {
            clauses.push(format!("kind = {}", next(Bind::Text(kind.as_str().into()), &mut binds)));
        }
        if let Some(after) = filter.created_after {
            clauses.push(format!("created_at > {}", next(Bind::Int(micros(after)), &mut binds)));
        }
        if let Some(before) = filter.created_before {
            clauses.push(format!("created_at < {}", next(Bind::Int(micros(before)), &mut binds)));
        }
        if let Some(c) = &filter.cursor {
            let t1 = next(Bind::Int(c.created_at), &mut binds);
            let t2 = next(Bind::Int(c.created_at), &mut binds);
            let id = next(Bind::Text(c.task_id.clone()), &mut binds);
            clauses.push(format!("(created_at < {t1} OR (created_at = {t2} AND task_id < {id}))"));
        }
        let filter_sql =
            if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
        // One extra row tells whether another page exists.
        let sql = format!(
            "SELECT {COLUMNS} FROM tasks {filter_sql} ORDER BY created_at DESC, task_id DESC LIMIT {}",
            limit + 1
        );
        let mut query = sqlx::query_as::<_, row::TaskRow>(&sql);
        for b in binds {
            query = match b {
                Bind::Int(v) => query.bind(v),
                Bind::Text(v) => query.bind(v),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut tasks = rows.into_iter().map(row::TaskRow::into_task).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if tasks.len() > limit as usize {
            tasks.truncate(limit as usize);
            tasks.last().map(Cursor::after)
        } else {
            None
        };
        Ok(TaskPage { tasks, next_cursor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor::parse("1795872707000000_9b2f1c1e-8e7a-4c1e-9d55-3c1f0a9e7b10").expect("valid");
        assert_eq!(Cursor::parse(&c.to_string()), Ok(c));
        for bad in ["", "x_y", "12", "12_not-a-uuid", "1_2_3"] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }
}
