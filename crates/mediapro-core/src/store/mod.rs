//! The durable task store (SQLite by default, PostgreSQL for several hosts) behind
//! sqlx's `Any` driver, so both backends run the same queries.
//!
//! Every status change is a compare-and-set: it names the status (and, for a
//! running task, the attempt) it expects, so a final task never changes again and a
//! stale attempt (a worker presumed dead that wakes up) cannot overwrite a newer one.

mod row;

use std::time::Duration;

use sqlx::{
    AnyPool, Executor,
    any::{AnyPoolOptions, install_default_drivers},
};
use uuid::Uuid;

use crate::{
    error::{ErrorClass, HasErrorClass},
    task::{Task, TaskStatus, now},
};

pub use row::micros;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("task store unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("task store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt task row {task_id}: {why}")]
    Corrupt { task_id: String, why: String },
    #[error("cannot create the database folder: {0}")]
    Io(#[from] std::io::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Unavailable(e)
    }
}

impl HasErrorClass for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::Unavailable(_) => ErrorClass::Unavailable,
            _ => ErrorClass::Internal,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "store_unavailable",
            _ => "internal_error",
        }
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[derive(Debug, Clone)]
pub struct TaskStore {
    pool: AnyPool,
}

const COLUMNS: &str = "task_id, kind, status, progress, created_at, started_at, completed_at, \
    request, downloaded_files, output_file, error, attempts, worker, parent_task_id, next_task_id";

impl TaskStore {
    /// Connects (creating an SQLite file and its folder if needed). Does not migrate.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        let url = if is_sqlite { prepare_sqlite_url(url)? } else { url.to_owned() };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if is_sqlite {
                        // WAL lets the API and worker processes read and write the same
                        // file; busy_timeout makes writers wait instead of failing.
                        conn.execute(
                            "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=10000; PRAGMA synchronous=NORMAL;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Self { pool })
    }

    /// Applies `migrations/`. Called by the API at start-up, and nowhere else.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn insert(&self, task: &Task) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_row(&mut conn, task).await
    }

    /// Completes a download and, in the same transaction, records the processing
    /// task chained after it (pending, to be queued by the caller), so a chain is
    /// never half-written.
    pub async fn complete_and_chain(
        &self,
        task_id: Uuid,
        attempt: i64,
        downloaded_files: &[String],
        next: &Task,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let files = serde_json::to_string(downloaded_files)
            .map_err(|e| StoreError::Corrupt { task_id: task_id.to_string(), why: e.to_string() })?;
        let t = micros(now());
        let done = sqlx::query(
            "UPDATE tasks SET status = 'completed', progress = 100, completed_at = $3, updated_at = $3, \
             downloaded_files = $4, error = NULL, next_task_id = $5 \
             WHERE task_id = $1 AND attempts = $2 AND status = 'downloading'",
        )
        .bind(task_id.to_string())
        .bind(attempt)
        .bind(t)
        .bind(files)
        .bind(next.task_id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_row(&mut tx, next).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn get(&self, task_id: Uuid) -> Result<Option<Task>, StoreError> {
        let row =
            sqlx::query_as::<_, row::TaskRow>(&format!("SELECT {COLUMNS} FROM tasks WHERE task_id = $1"))
                .bind(task_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        row.map(row::TaskRow::into_task).transpose()
    }

    /// Removes a task that was never queued (the queue refused it).
    pub async fn delete_pending(&self, task_id: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM tasks WHERE task_id = $1 AND status = 'pending'")
            .bind(task_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A worker takes the task: `pending` (or already running, when a presumed-dead
    /// worker's job is re-run) → the kind's running status, with a new attempt number.
    /// `None` when the task is final (e.g. cancelled while queued) or unknown.
    pub async fn claim(
        &self,
        task_id: Uuid,
        running: TaskStatus,
        worker: &str,
    ) -> Result<Option<i64>, StoreError> {
        let t = micros(now());
        let attempt: Option<(i64,)> = sqlx::query_as(
            "UPDATE tasks SET status = $2, attempts = attempts + 1, started_at = $3, updated_at = $3, \
             worker = $4, progress = 0, error = NULL, downloaded_files = '[]', output_file = NULL \
             WHERE task_id = $1 AND status IN ('pending', $2) RETURNING attempts",
        )
        .bind(task_id.to_string())
        .bind(running.as_str())
        .bind(t)
        .bind(worker)
        .fetch_optional(&self.pool)
        .await?;
        Ok(attempt.map(|(a,)| a))
    }

    /// Progress of the running attempt; ignored if that attempt is no longer current.
    pub async fn set_progress(&self, task_id: Uuid, attempt: i64, progress: f64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET progress = $3, updated_at = $4 \
             WHERE task_id = $1 AND attempts = $2 AND status IN ('downloading', 'processing')",
        )
        .bind(task_id.to_string())
        .bind(attempt)
        .bind(progress)
        .bind(micros(now()))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The running attempt succeeded with these storage-relative files.
    pub async fn complete(
        &self,
        task_id: Uuid,
        attempt: i64,
        downloaded_files: &[String],
        output_file: Option<&str>,
    ) -> Result<bool, StoreError> {
        let t = micros(now());
        let files = serde_json::to_string(downloaded_files)
            .map_err(|e| StoreError::Corrupt { task_id: task_id.to_string(), why: e.to_string() })?;
        let done = sqlx::query(
            "UPDATE tasks SET status = 'completed', progress = 100, completed_at = $3, updated_at = $3, \
             downloaded_files = $4, output_file = $5, error = NULL \
             WHERE task_id = $1 AND attempts = $2 AND status IN ('downloading', 'processing')",
        )
        .bind(task_id.to_string())
        .bind(attempt)
        .bind(t)
        .bind(files)
        .bind(output_file)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The running attempt failed for good.
    pub async fn fail(&self, task_id: Uuid, attempt: i64, reason: &str) -> Result<bool, StoreError> {
        let t = micros(now());
        let done = sqlx::query(
            "UPDATE tasks SET status = 'failed', completed_at = $3, updated_at = $3, error = $4 \
             WHERE task_id = $1 AND attempts = $2 AND status IN ('downloading', 'processing')",
        )
        .bind(task_id.to_string())
        .bind(attempt)
        .bind(t)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The running attempt failed transiently and the job will run again: back to
    /// `pending`, keeping the reason visible meanwhile.
    pub async fn requeue(&self, task_id: Uuid, attempt: i64, reason: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET status = 'pending', progress = 0, updated_at = $3, error = $4 \
             WHERE task_id = $1 AND attempts = $2 AND status IN ('downloading', 'processing')",
        )
        .bind(task_id.to_string())
        .bind(attempt)
        .bind(micros(now()))
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Fails a task whatever attempt is running (used when a job cannot even be
    /// decoded or claimed properly). Final tasks are left alone.
    pub async fn fail_unfinished(&self, task_id: Uuid, reason: &str) -> Result<bool, StoreError> {
        let t = micros(now());
        let done = sqlx::query(
            "UPDATE tasks SET status = 'failed', completed_at = $2, updated_at = $2, error = $3 \
             WHERE task_id = $1 AND status IN ('pending', 'downloading', 'processing')",
        )
        .bind(task_id.to_string())
        .bind(t)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Number of tasks (for tests and metrics).
    pub async fn count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tasks").fetch_one(&self.pool).await?;
        Ok(n)
    }
}

async fn insert_row(conn: &mut sqlx::AnyConnection, task: &Task) -> Result<(), StoreError> {
    let r = row::TaskRow::from_task(task)?;
    sqlx::query(
        "INSERT INTO tasks (task_id, kind, status, progress, created_at, started_at, completed_at, \
         updated_at, request, downloaded_files, output_file, error, attempts, worker, parent_task_id, \
         next_task_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(r.task_id)
    .bind(r.kind)
    .bind(r.status)
    .bind(r.progress)
    .bind(r.created_at)
    .bind(r.started_at)
    .bind(r.completed_at)
    .bind(r.created_at)
    .bind(r.request)
    .bind(r.downloaded_files)
    .bind(r.output_file)
    .bind(r.error)
    .bind(r.attempts)
    .bind(r.worker)
    .bind(r.parent_task_id)
    .bind(r.next_task_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// `sqlite://data/x.db` → make sure `data/` exists and the file is created on first use.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let path_part = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    let parent = std::path::Path::new(path_part).parent();
    if let Some(parent) = parent.filter(|p| !p.as_os_str().is_empty() && path_part != ":memory:") {
        std::fs::create_dir_all(parent)?;
    }
    Ok(if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}
