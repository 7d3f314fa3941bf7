//! One Redis queue per task kind (`download`, `process`: a queue is named after its
//! [`TaskKind`], and a new kind gets its queue with no change here) as apalis-redis
//! storages, set up
//! the same way in the API (which pushes) and the worker (which consumes), and the
//! [`Dispatcher`], the one owner of "write the task row, push its job, undo on
//! failure".
//!
//! Queue set-up: explicit queue names, `batch_size(1)` so one worker never hoards
//! jobs, a short heartbeat so a dead worker's jobs come back quickly (apalis-redis
//! re-enqueues the jobs of a worker silent for `heartbeat × missed_heartbeats`),
//! and our own connection manager with bounded timeouts.

mod dispatch;
pub mod events;
pub mod idempotency;
mod lease;
pub mod metrics;
mod rate;
pub mod site_gate;
pub mod wake;

pub use dispatch::{DispatchError, Dispatcher, Requeued};
pub use lease::RoleLease;
pub use rate::{RateDecision, RateLimiter};
pub use site_gate::{Admission, GateSettings, SiteGate, SiteLimits, SiteSlot, SiteState, Verdict};

use std::time::Duration;

use apalis_core::{
    backend::TaskSink,
    task::{builder::TaskBuilder, task_id::TaskId},
};
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use mediapro_core::{
    error::{Code, HasCode},
    jobs::JobPayload,
    settings::RedisSettings,
    task::TaskKind,
};
use strum::IntoEnumIterator;
use tokio::sync::OnceCell;
use uuid::Uuid;

pub use apalis_redis;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the job queue (Redis) is unavailable: {0}")]
    Unavailable(String),
}

impl HasCode for QueueError {
    fn code(&self) -> Code {
        Code::QueueUnavailable
    }
}

/// The apalis-redis configuration of the queue of `kind`: one queue per task kind,
/// named after it; `namespace:kind` prefixes every key.
pub fn queue_config(settings: &RedisSettings, queue: TaskKind) -> Config {
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
    tokio::time::timeout(timeout, client.get_connection_manager_with_config(cfg))
        .await
        .map_err(|_| QueueError::Unavailable("connection timed out".into()))?
        .map_err(|e| QueueError::Unavailable(e.to_string()))
}

/// One storage per task kind, over one connection.
#[derive(Clone)]
pub struct Queues {
    pub conn: ConnectionManager,
    storages: Vec<(TaskKind, RedisStorage<JobPayload>)>,
}

impl Queues {
    pub fn new(conn: ConnectionManager, settings: &RedisSettings) -> Self {
        let storages = TaskKind::iter()
            .map(|kind| (kind, RedisStorage::new(conn.clone()).with_config(queue_config(settings, kind))))
            .collect();
        Self { storages, conn }
    }

    /// The storage of `kind`'s queue (`new` made one for every kind).
    pub fn storage(&self, kind: TaskKind) -> RedisStorage<JobPayload> {
        let (_, storage) =
            self.storages.iter().find(|(k, _)| *k == kind).expect("Queues::new covers every TaskKind");
        storage.clone()
    }
}

/// An apalis task id from the ULID text our store keeps (see `task::new_job_id`).
fn apalis_id(job_id: &str) -> Result<TaskId, QueueError> {
    job_id
        .parse::<ulid::Ulid>()
        .map(TaskId::from)
        .map_err(|e| QueueError::Unavailable(format!("bad job id {job_id}: {e}")))
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

    /// The shared Redis connection (connecting on first use).
    pub async fn connection(&self) -> Result<ConnectionManager, QueueError> {
        Ok(self.queues().await?.conn.clone())
    }

    fn deadline(&self) -> Duration {
        Duration::from_millis(self.settings.command_timeout_ms)
    }

    /// Queues the job `job_id` carrying `task_id` on `queue`.
    pub async fn push(&self, queue: TaskKind, task_id: Uuid, job_id: &str) -> Result<(), QueueError> {
        self.push_after(queue, task_id, job_id, Duration::ZERO).await
    }

    /// Queues the job to run no earlier than `delay` from now, and wakes the idle
    /// workers of `queue` (at once, or when the job is due).
    pub async fn push_after(
        &self,
        queue: TaskKind,
        task_id: Uuid,
        job_id: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let queues = self.queues().await?;
        let mut storage = queues.storage(queue);
        let mut builder = TaskBuilder::new(JobPayload::for_task(task_id)).task_id(apalis_id(job_id)?);
        if !delay.is_zero() {
            builder = builder.run_after(delay);
        }
        bounded(self.deadline(), storage.push_task(builder.build())).await?;
        // Idle workers sleep until told (`wake.rs`); the job is queued first, so
        // a worker woken by this finds it.
        self.announce(queue, delay).await;
        Ok(())
    }

    /// Whether `job_id` is still waiting or running in `queue` (false when Redis
    /// lost it, or apalis already finished or buried it).
    pub async fn job_is_live(&self, queue: TaskKind, job_id: &str) -> Result<bool, QueueError> {
        let queues = self.queues().await?;
        let mut conn = queues.conn.clone();
        let config = queue_config(&self.settings, queue);
        let data: bool = bounded(
            self.deadline(),
            redis::cmd("HEXISTS").arg(config.job_data_hash()).arg(job_id).query_async(&mut conn),
        )
        .await?;
        if !data {
            return Ok(false);
        }
        let status: Option<String> = bounded(
            self.deadline(),
            redis::cmd("HGET")
                .arg(format!("{}:{job_id}", config.job_meta_hash()))
                .arg("status")
                .query_async(&mut conn),
        )
        .await?;
        Ok(!matches!(status.as_deref(), Some("Done" | "Killed")))
    }

    /// A cached analyze result for `url`, if any. Best effort: a Redis problem is
    /// a cache miss, never an error.
    pub async fn cached_analysis(&self, url: &str) -> Option<String> {
        let mut conn = self.queues().await.ok()?.conn.clone();
        let key = format!("{}:analyze:{url}", self.settings.namespace);
        bounded(self.deadline(), redis::cmd("GET").arg(key).query_async::<Option<String>>(&mut conn))
            .await
            .ok()?
    }

    /// Caches a successful analyze result (failures are never cached, so a
    /// transient error does not stick).
    pub async fn cache_analysis(&self, url: &str, json: &str, ttl: Duration) {
        let Ok(queues) = self.queues().await else { return };
        let mut conn = queues.conn.clone();
        let key = format!("{}:analyze:{url}", self.settings.namespace);
        let mut set = redis::cmd("SET");
        set.arg(key).arg(json).arg("EX").arg(ttl.as_secs().max(1));
        if let Err(e) = bounded(self.deadline(), set.query_async::<()>(&mut conn)).await {
            tracing::debug!(error = %e, "analyze cache write failed");
        }
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
