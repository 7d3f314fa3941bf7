//! `mediapro-worker`: runs jobs from the `download` and `process` queues.
//!
//! Each queue gets its own apalis worker (own concurrency, own unique name per
//! process start) in one Monitor. The task store, not apalis, records what
//! happened: handlers claim the task with a compare-and-set, run the tool through
//! `mediapro_core::process`, and end the attempt themselves. A handler returns
//! `Err` only for infrastructure trouble (the store unreachable), which hands the
//! job back to apalis; task retries follow the project's own policy
//! (`crates/mediapro-core/src/retry.rs`).

mod context;
mod identity;
mod jobs;
pub mod keepers;
mod metrics;
mod poll;
pub mod subscriptions;
pub mod webhooks;

use std::{sync::Arc, time::Duration};

use apalis::prelude::*;
use backon::{ExponentialBuilder, Retryable};
use mediapro_core::task::TaskKind;
use mediapro_core::{
    process::ythost::YtdlpRunner, settings::Settings, storage::StorageLayout, store::TaskStore,
    webhooks::WebhookRoutes,
};
use mediapro_queue::Queues;

pub use context::JobContext;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("task store: {0}")]
    Store(#[from] mediapro_core::store::StoreError),
    #[error(transparent)]
    Queue(#[from] mediapro_queue::QueueError),
    #[error("storage root {0}: {1}")]
    Storage(String, std::io::Error),
    #[error("worker monitor: {0}")]
    Monitor(String),
    #[error("worker.metrics_bind {0}: {1}")]
    MetricsBind(String, std::io::Error),
}

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub queues: Vec<TaskKind>,
    /// Overrides `worker.download_concurrency` and `worker.process_concurrency`.
    pub concurrency: Option<usize>,
    /// How jobs run yt-dlp; `None`: started from `tools.*` (the binary). Tests
    /// pass one they started, to wait for its warm host or to find its pid.
    pub ytdlp: Option<Arc<YtdlpRunner>>,
}

/// Runs the workers until `shutdown` resolves, then drains: no new jobs are
/// fetched, running ones get `worker.drain_timeout_seconds` to finish; past that
/// they are killed (their process groups with them) and come back to the queue.
pub async fn run(
    settings: Settings,
    options: WorkerOptions,
    shutdown: impl Future<Output = std::io::Result<()>> + Send,
) -> Result<(), WorkerError> {
    // The warm yt-dlp host starts first, in the background (downloads spawn
    // yt-dlp until it is ready); the yt-dlp version is logged once known.
    let ytdlp = options.ytdlp.clone().unwrap_or_else(|| Arc::new(YtdlpRunner::start(&settings.tools)));
    std::fs::create_dir_all(&settings.storage.root)
        .map_err(|e| WorkerError::Storage(settings.storage.root.display().to_string(), e))?;
    let layout = StorageLayout::new(&settings.storage.root)
        .map_err(|e| WorkerError::Storage(settings.storage.root.display().to_string(), e))?;
    let store = TaskStore::connect(&settings.database.url, settings.database.max_connections)
        .await?
        .with_webhooks(WebhookRoutes::from_settings(&settings.webhooks));
    let conn = connect_with_retry(&settings).await?;
    let queues = Queues::new(conn, &settings.redis);
    // Idle workers sleep until a push wakes them (one subscription per process);
    // an idle poll as fast as the busy one needs no wake-ups (the old behaviour).
    let fast_poll = Duration::from_millis(settings.redis.poll_interval_ms);
    let idle_poll = Duration::from_millis(settings.redis.idle_poll_interval_ms);
    let wakeups = if idle_poll > fast_poll {
        mediapro_queue::wake::Wakeups::listen(&settings.redis, &options.queues)
    } else {
        mediapro_queue::wake::Wakeups::detached()
    };
    let drain = Duration::from_secs(settings.worker.drain_timeout_seconds);
    let settings = Arc::new(settings);
    let queue = Arc::new(mediapro_queue::QueueClient::with_queues(settings.redis.clone(), queues.clone()));
    // Metrics only when they can be scraped (`worker.metrics_bind`).
    let metrics = if settings.worker.metrics_bind.is_empty() {
        mediapro_core::metrics::Metrics::off()
    } else {
        let registry = mediapro_queue::metrics::Registry::new();
        let addr = metrics::serve(&settings.worker.metrics_bind, registry.clone())
            .await
            .map_err(|e| WorkerError::MetricsBind(settings.worker.metrics_bind.clone(), e))?;
        tracing::info!(%addr, "worker metrics at http://{addr}/metrics");
        registry.metrics()
    };
    let announce = tokio::spawn({
        let ytdlp = ytdlp.clone();
        async move { ytdlp.announce().await }
    });
    let ctx = JobContext::new(settings.clone(), layout, store, queue, metrics.clone(), ytdlp);

    let mut monitor = Monitor::new()
        .should_restart(|worker, err| {
            // A Redis blip ends the worker future; restart it (the new worker
            // backs off before its first fetch, see `restart_backoff`).
            tracing::warn!(worker = worker.name(), error = %err, "worker stopped; restarting");
            true
        })
        .shutdown_timeout(drain);

    for &queue in &options.queues {
        let storage = queues.storage(queue);
        let concurrency = options.concurrency.unwrap_or(settings.worker.concurrency(queue));
        let slots = metrics::QueueSlots::new(queue, concurrency, metrics.clone());
        // A safety net only: the job's own supervision enforces the task timeout.
        let timeout = settings.task_timeout() + Duration::from_secs(60);
        let ctx = ctx.clone();
        let wakeups = wakeups.clone();
        monitor = monitor.register(move |restarts| {
            let strategy = poll::WakeOrPoll::new(wakeups.signal(queue), fast_poll, idle_poll)
                .delay_first(restart_backoff(restarts));
            WorkerBuilder::new(identity::worker_name(queue))
                .backend(storage.clone().poll_with_strategy(strategy))
                .data(ctx.clone())
                .data(slots.clone())
                .concurrency(concurrency)
                .timeout(timeout)
                .catch_panic()
                .enable_tracing()
                .build(jobs::run)
        });
    }
    tracing::info!(queues = ?options.queues.iter().map(|q| q.as_str()).collect::<Vec<_>>(), "worker started");
    let keepers = tokio::spawn(keepers::run(ctx));
    let result = monitor.run_with_signal(shutdown).await.map_err(|e| WorkerError::Monitor(e.to_string()));
    keepers.abort();
    announce.abort();
    result
}

/// How long a restarted worker waits before its first fetch: 250 ms doubling to
/// 4 s, so a Redis outage does not restart workers in a hot loop.
fn restart_backoff(restarts: usize) -> Duration {
    if restarts == 0 {
        return Duration::ZERO;
    }
    let n = u32::try_from(restarts.min(5)).unwrap_or(5) - 1;
    Duration::from_millis(250 * 2u64.pow(n))
}

/// At start-up Redis may still be coming up (supervisor starts everything at
/// once): wait for it with backoff (about a minute) rather than exiting.
async fn connect_with_retry(settings: &Settings) -> Result<apalis_redis::ConnectionManager, WorkerError> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(19);
    let connect = || mediapro_queue::connect(&settings.redis);
    Ok(connect
        .retry(backoff)
        .notify(|e, _| tracing::warn!(error = %e, "Redis not reachable yet; retrying"))
        .await?)
}
