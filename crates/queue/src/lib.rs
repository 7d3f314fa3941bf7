//! The two Redis queues (`download`, `process`) as apalis-redis storages, set up
//! the same way in the API (which pushes) and the worker (which consumes).
//! See `../shared/APALIS.md`: explicit queue names, `batch_size(1)` so one worker
//! never hoards jobs, a short heartbeat so a dead worker's jobs come back quickly,
//! and our own connection manager with bounded timeouts.

use std::time::Duration;

use apalis_core::{
    backend::TaskSink,
    task::{builder::TaskBuilder, task_id::TaskId},
};
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use mediapro_core::{
    error::{ErrorClass, HasErrorClass},
    jobs::{DownloadJob, ProcessJob},
    settings::RedisSettings,
};
use tokio::sync::OnceCell;
use uuid::Uuid;

pub use apalis_redis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueName {
    Download,
    Process,
}

impl QueueName {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Download => "download",
            QueueName::Process => "process",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the job queue (Redis) is unavailable: {0}")]
    Unavailable(String),
}

impl HasErrorClass for QueueError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Unavailable
    }
    fn code(&self) -> &'static str {
        "queue_unavailable"
    }
}

/// The apalis-redis configuration of one queue; `namespace:queue` prefixes every key.
pub fn queue_config(settings: &RedisSettings, queue: QueueName) -> Config {
    Config::default()
        .queue(format!("{}:{}", settings.namespace, queue.as_str()))
        .batch_size(1)
        .heartbeat_interval(Duration::from_secs(settings.heartbeat_seconds))
        .missed_heartbeats(settings.missed_heartbeats)
}

/// One multiplexed, self-reconnecting connection with bounded timeouts, so an
/// outage turns into prompt errors instead of hangs.
pub async fn connect(settings: &RedisSettings) -> Result<ConnectionManager, QueueError> {
    let timeout = Duration::from_millis(settings.command_timeout_ms);
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(timeout.max(Duration::from_secs(5))))
        .set_connection_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    let client = apalis_redis::Client::open(settings.url.as_str())
        .map_err(|e| QueueError::Unavailable(e.to_string()))?;
    tokio::time::timeout(timeout * 2, client.get_connection_manager_with_config(cfg))
        .await
        .map_err(|_| QueueError::Unavailable("connection timed out".into()))?
        .map_err(|e| QueueError::Unavailable(e.to_string()))
}

/// Both storages over one connection.
#[derive(Clone)]
pub struct Queues {
    pub conn: ConnectionManager,
    pub download: RedisStorage<DownloadJob>,
    pub process: RedisStorage<ProcessJob>,
}

impl Queues {
    pub fn new(conn: ConnectionManager, settings: &RedisSettings) -> Self {
        Self {
            download: RedisStorage::new(conn.clone())
                .with_config(queue_config(settings, QueueName::Download)),
            process: RedisStorage::new(conn.clone()).with_config(queue_config(settings, QueueName::Process)),
            conn,
        }
    }
}

/// The apalis id of a task's job: our task UUID, as the ULID apalis-redis expects.
pub fn job_id(task_id: Uuid) -> TaskId {
    TaskId::from(ulid::Ulid::from(task_id.as_u128()))
}

/// The API's handle on the queues. Connects lazily (so the API starts and serves
/// task reads while Redis is down) and bounds every push by the command timeout.
pub struct QueueClient {
    settings: RedisSettings,
    queues: OnceCell<Queues>,
}

impl QueueClient {
    pub fn new(settings: RedisSettings) -> Self {
        Self { settings, queues: OnceCell::new() }
    }

    /// A client over queues that are already connected (the worker's).
    pub fn with_queues(settings: RedisSettings, queues: Queues) -> Self {
        Self { settings, queues: OnceCell::new_with(Some(queues)) }
    }

    async fn queues(&self) -> Result<&Queues, QueueError> {
        self.queues
            .get_or_try_init(|| async {
                let conn = connect(&self.settings).await?;
                Ok(Queues::new(conn, &self.settings))
            })
            .await
    }

    fn deadline(&self) -> Duration {
        Duration::from_millis(self.settings.command_timeout_ms)
    }

    pub async fn push_download(&self, task_id: Uuid) -> Result<(), QueueError> {
        let mut storage = self.queues().await?.download.clone();
        let task = TaskBuilder::new(DownloadJob { task_id }).task_id(job_id(task_id)).build();
        bounded(self.deadline(), storage.push_task(task)).await
    }

    pub async fn push_process(&self, task_id: Uuid) -> Result<(), QueueError> {
        let mut storage = self.queues().await?.process.clone();
        let task = TaskBuilder::new(ProcessJob { task_id }).task_id(job_id(task_id)).build();
        bounded(self.deadline(), storage.push_task(task)).await
    }

    /// `PING`, for readiness checks.
    pub async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.queues().await?.conn.clone();
        bounded(self.deadline(), redis::cmd("PING").query_async::<String>(&mut conn)).await.map(|_| ())
    }
}

async fn bounded<T, E: std::fmt::Display>(
    deadline: Duration,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, QueueError> {
    match tokio::time::timeout(deadline, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(QueueError::Unavailable(e.to_string())),
        Err(_) => Err(QueueError::Unavailable("Redis did not answer in time".into())),
    }
}
