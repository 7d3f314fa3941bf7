//! The one way the store changes a task's status: a compare-and-set built from
//! the status sets on [`TaskStatus`] (`RUNNING`, `ACTIVE`, `FINAL`, …). No status
//! is ever written into SQL as a literal: statuses travel as bound parameters, so
//! a new status or kind is added in `crates/mediapro-core/src/task.rs` only.
//!
//! [`Sql`] is a small statement builder with numbered placeholders (`$1`, `$2`, …),
//! which both SQLite and PostgreSQL accept through sqlx's `Any` driver (sqlx's own
//! `QueryBuilder` writes `?` for `Any`, which PostgreSQL refuses).

use sqlx::{
    Any, Arguments,
    any::{AnyArguments, AnyRow},
};

use super::StoreError;
use crate::task::TaskStatus;

/// A bound value.
#[derive(Debug, Clone)]
pub(super) enum Arg {
    Int(i64),
    Real(f64),
    Text(String),
    Null,
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Arg::Real(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_owned())
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        v.map_or(Arg::Null, Arg::from)
    }
}
impl From<TaskStatus> for Arg {
    fn from(v: TaskStatus) -> Self {
        Arg::Text(v.as_str().to_owned())
    }
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Arg(Arg),
}

/// SQL text and its arguments, rendered with numbered placeholders.
#[derive(Debug, Clone, Default)]
pub(super) struct Sql {
    parts: Vec<Part>,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Self {
        Self::default().text(text)
    }

    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.parts.push(Part::Text(text.into()));
        self
    }

    /// A placeholder bound to `arg`.
    pub fn arg(mut self, arg: impl Into<Arg>) -> Self {
        self.parts.push(Part::Arg(arg.into()));
        self
    }

    /// `($n, $n+1, …)`: a status set for `status IN …`.
    pub fn statuses(mut self, set: &[TaskStatus]) -> Self {
        self = self.text("(");
        for (i, s) in set.iter().enumerate() {
            if i > 0 {
                self = self.text(", ");
            }
            self = self.arg(*s);
        }
        self.text(")")
    }

    pub fn append(mut self, other: Sql) -> Self {
        self.parts.extend(other.parts);
        self
    }

    fn render(&self) -> (String, Vec<Arg>) {
        let mut text = String::new();
        let mut args = Vec::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => text.push_str(t),
                // An untyped NULL parameter is TEXT to PostgreSQL, which then
                // refuses it for a BIGINT column: write the keyword instead.
                Part::Arg(Arg::Null) => text.push_str("NULL"),
                Part::Arg(a) => {
                    args.push(a.clone());
                    text.push_str(&format!("${}", args.len()));
                }
            }
        }
        (text, args)
    }

    /// Runs the statement; the number of rows it changed.
    pub async fn execute<'c, E>(&self, executor: E) -> Result<u64, StoreError>
    where
        E: sqlx::Executor<'c, Database = Any>,
    {
        let (text, args) = self.render();
        Ok(sqlx::query_with(&text, arguments(args)?).execute(executor).await?.rows_affected())
    }

    /// Runs a query that returns rows of `T`.
    pub async fn fetch_all<'c, T, E>(&self, executor: E) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> sqlx::FromRow<'r, AnyRow> + Send + Unpin,
        E: sqlx::Executor<'c, Database = Any>,
    {
        let (text, args) = self.render();
        Ok(sqlx::query_as_with(&text, arguments(args)?).fetch_all(executor).await?)
    }
}

fn arguments(args: Vec<Arg>) -> Result<AnyArguments<'static>, StoreError> {
    let mut out = AnyArguments::default();
    for arg in args {
        let added = match arg {
            Arg::Int(v) => out.add(v),
            Arg::Real(v) => out.add(v),
            Arg::Text(v) => out.add(v),
            // Rendered as the NULL keyword, never bound (see `render`).
            Arg::Null => Ok(()),
        };
        added.map_err(|e| StoreError::Unavailable(sqlx::Error::Encode(e)))?;
    }
    Ok(out)
}

/// One compare-and-set on one task: `UPDATE tasks SET … WHERE task_id = … AND
/// <guard>`. It changes the row only if the guard still holds, and says whether
/// it did: of two racing callers exactly one wins.
#[derive(Debug, Clone)]
pub(super) struct Transition {
    set: Vec<Sql>,
    guard: Vec<Sql>,
    returning: Option<&'static str>,
}

impl Transition {
    /// Moves the task to `status` (and stamps `updated_at`).
    pub fn to(status: TaskStatus, now: i64) -> Self {
        Self::keep().set("status", status).set("updated_at", now)
    }

    /// Changes columns but not the status.
    pub fn keep() -> Self {
        Self { set: Vec::new(), guard: Vec::new(), returning: None }
    }

    pub fn set(self, column: &str, value: impl Into<Arg>) -> Self {
        self.set_sql(Sql::new(format!("{column} = ")).arg(value))
    }

    /// An assignment that is an expression (`attempts = attempts + 1`).
    pub fn set_sql(mut self, assignment: Sql) -> Self {
        self.set.push(assignment);
        self
    }

    /// Only from one of these statuses.
    pub fn from(self, statuses: &[TaskStatus]) -> Self {
        self.guard(Sql::new("status IN ").statuses(statuses))
    }

    /// Only while attempt `n` owns the task (a stale attempt writes nothing).
    pub fn attempt(self, n: i64) -> Self {
        self.guard(Sql::new("attempts = ").arg(n))
    }

    /// Any further condition.
    pub fn guard(mut self, condition: Sql) -> Self {
        self.guard.push(condition);
        self
    }

    pub fn returning(mut self, columns: &'static str) -> Self {
        self.returning = Some(columns);
        self
    }

    fn statement(&self, task_id: &str) -> Sql {
        let mut sql = Sql::new("UPDATE tasks SET ");
        for (i, assignment) in self.set.iter().enumerate() {
            if i > 0 {
                sql = sql.text(", ");
            }
            sql = sql.append(assignment.clone());
        }
        sql = sql.text(" WHERE task_id = ").arg(task_id);
        for condition in &self.guard {
            sql = sql.text(" AND (").append(condition.clone()).text(")");
        }
        if let Some(columns) = self.returning {
            sql = sql.text(format!(" RETURNING {columns}"));
        }
        sql
    }

    /// Applies the change; `true` if the guard held and the row changed.
    pub async fn apply<'c, E>(&self, task_id: &str, executor: E) -> Result<bool, StoreError>
    where
        E: sqlx::Executor<'c, Database = Any>,
    {
        Ok(self.statement(task_id).execute(executor).await? == 1)
    }

    /// Applies the change and returns the `returning` columns of the changed row.
    pub async fn apply_returning<'c, T, E>(&self, task_id: &str, executor: E) -> Result<Option<T>, StoreError>
    where
        T: for<'r> sqlx::FromRow<'r, AnyRow> + Send + Unpin,
        E: sqlx::Executor<'c, Database = Any>,
    {
        Ok(self.statement(task_id).fetch_all(executor).await?.into_iter().next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transition_renders_numbered_placeholders_and_binds_statuses() {
        let t = Transition::to(TaskStatus::Completed, 7)
            .set("error", None::<&str>)
            .from(TaskStatus::RUNNING)
            .attempt(2)
            .returning("attempts");
        let (text, args) = t.statement("id-1").render();
        assert_eq!(
            text,
            "UPDATE tasks SET status = $1, updated_at = $2, error = NULL WHERE task_id = $3 \
             AND (status IN ($4, $5, $6)) AND (attempts = $7) RETURNING attempts"
        );
        assert_eq!(args.len(), 7);
        assert!(matches!(&args[3], Arg::Text(s) if s == "downloading"));
        assert!(!text.contains('\''), "no literal in SQL");
    }
}
