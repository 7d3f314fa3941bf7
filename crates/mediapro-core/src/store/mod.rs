//! The durable task store (SQLite by default, PostgreSQL for several hosts) behind
//! sqlx's `Any` driver, so both backends run the same queries.
//!
//! Every status change is a compare-and-set: it names the status (and, for a
//! running task, the attempt) it expects, so a final task never changes again and a
//! stale attempt (a worker presumed dead that wakes up) cannot overwrite a newer one.

mod archive;
mod batch;
mod collection;
mod lifecycle;
mod list;
mod maintenance;
mod outbox;
mod row;
mod site_profile;
mod stats;
mod subscription;
mod transition;

use std::{sync::Arc, time::Duration};

use sqlx::{
    AnyPool, Executor,
    any::{AnyPoolOptions, install_default_drivers},
};

use crate::{
    error::{Code, HasCode},
    webhooks::WebhookRoutes,
};

pub use archive::{ArchiveEntry, parse_archive_line};
pub use lifecycle::{Cancel, Claim, Lease, Retry, SKIPPED};
pub use list::{Cursor, DEFAULT_LIMIT, MAX_LIMIT, TaskFilter, TaskPage};
pub use maintenance::StaleTask;
pub use outbox::{AfterAttempt, AttemptResult, Delivery, DeliveryAttempt, DueDelivery};
pub use row::micros;
pub use site_profile::Saved;

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

impl HasCode for StoreError {
    fn code(&self) -> Code {
        match self {
            StoreError::Unavailable(_) => Code::StoreUnavailable,
            _ => Code::InternalError,
        }
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[derive(Debug, Clone)]
pub struct TaskStore {
    /// Reads.
    pool: AnyPool,
    /// Writes (a single connection on SQLite, the same pool on PostgreSQL).
    writer: AnyPool,
    inserter: batch::Inserter,
    /// Which endpoints get which task events (outbox rows are written with the
    /// status change that raises them).
    webhooks: Arc<WebhookRoutes>,
}

const COLUMNS: &str = "task_id, kind, status, progress, progress_detail, created_at, started_at, completed_at, \
    request, downloaded_files, output_file, error, attempts, worker, parent_task_id, next_task_id, job_id, callback_url, site_profile";

impl TaskStore {
    /// Connects (creating an SQLite file and its folder if needed). Does not migrate.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        let url = if is_sqlite { prepare_sqlite_url(url)? } else { url.to_owned() };
        let pool = open_pool(&url, max_connections, is_sqlite).await?;
        // SQLite takes one writer at a time; writers that collide back off in
        // sleeps of up to 100 ms (busy_timeout). Queueing this process's writes on
        // one connection instead keeps write latency flat under load.
        let writer = if is_sqlite { open_pool(&url, 1, true).await? } else { pool.clone() };
        let inserter = batch::Inserter::spawn(writer.clone());
        Ok(Self { pool, writer, inserter, webhooks: Arc::default() })
    }

    /// The configured webhook endpoints (`webhooks.endpoints`): final status changes
    /// queue a message for each endpoint subscribed to the event, besides the
    /// task's own `callback_url`. Without it only callbacks are queued.
    pub fn with_webhooks(mut self, routes: WebhookRoutes) -> Self {
        self.webhooks = Arc::new(routes);
        self
    }

    /// Applies `migrations/`. Called by the API at start-up, and nowhere else.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

async fn open_pool(url: &str, max_connections: u32, is_sqlite: bool) -> Result<AnyPool, StoreError> {
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
        .connect(url)
        .await?;
    Ok(pool)
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
