//! The Prometheus registry of one API or worker: a recorder of its own (so two
//! in one process stay apart), histogram buckets from the name list
//! (`mediapro_core::metrics`), the text rendering, and the gauges computed when
//! scraped: jobs in each Redis queue, waiting or delayed (`record_queue_depth`),
//! and tasks by status (one `GROUP BY status` on the store),
//! both cached for [`SCRAPE_CACHE`] so a burst of scrapes costs one look.
//!
//! It lives here, beside `QueueClient`, because the queue gauges read Redis keys
//! whose names only this crate knows (`queue_config`).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use mediapro_core::{
    metrics::{Metrics, NAMES, buckets},
    store::TaskStore,
    task::{TaskKind, TaskStatus},
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use strum::IntoEnumIterator as _;
use tokio::sync::Mutex;

use crate::{QueueClient, QueueError, bounded, queue_config};

/// How long scrape-time gauges are reused.
pub const SCRAPE_CACHE: Duration = Duration::from_secs(1);
/// Histogram upkeep (the exporter drains its buckets then).
const UPKEEP: Duration = Duration::from_secs(5);

/// One process part's metrics: where to record, and how to render them.
#[derive(Clone)]
pub struct Registry {
    metrics: Metrics,
    handle: PrometheusHandle,
    /// When the scrape-time gauges were last computed.
    gauges_at: Arc<Mutex<Option<Instant>>>,
}

impl Registry {
    /// A fresh registry (must be called inside a Tokio runtime: it spawns the
    /// upkeep task).
    pub fn new() -> Self {
        let mut builder = PrometheusBuilder::new();
        for name in NAMES {
            if let Some(b) = buckets(name) {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full((*name).to_owned()), b)
                    .expect("bucket lists are not empty (unit test in mediapro_core::metrics)");
            }
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP);
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
        Self { metrics: Metrics::new(Arc::new(recorder)), handle, gauges_at: Arc::default() }
    }

    /// Where to record.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// The Prometheus text format of everything recorded.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Updates the queue-depth and tasks-by-status gauges (at most once per
    /// [`SCRAPE_CACHE`]), then renders. A source that does not answer keeps its
    /// last values (and is logged); the scrape itself still succeeds.
    pub async fn render_with_gauges(&self, queue: &QueueClient, store: &TaskStore) -> String {
        {
            let mut at = self.gauges_at.lock().await;
            if at.is_none_or(|t| t.elapsed() >= SCRAPE_CACHE) {
                if let Err(e) = record_queue_depth(&self.metrics, queue).await {
                    tracing::warn!(error = %e, "metrics: cannot read queue depth");
                }
                match crate::site_gate::site_states(queue).await {
                    Ok(sites) => {
                        for (site, s) in sites {
                            self.metrics.site(&site, s.running, s.waiting, s.backoff);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "metrics: cannot read the site gate"),
                }
                match store.count_by_status().await {
                    Ok(counts) => {
                        for status in <TaskStatus as strum::IntoEnumIterator>::iter() {
                            let n = counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
                            self.metrics.tasks(status.as_str(), n);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "metrics: cannot count tasks"),
                }
                *at = Some(Instant::now());
            }
        }
        self.render()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

/// Each queue's jobs in Redis. apalis-redis pushes every job into the queue's
/// scheduled set (score: when it may run, in seconds) and a fetch moves the due
/// ones to the active list, so waiting = `LLEN` active + `ZCOUNT` of the due
/// scores, delayed = `ZCOUNT` of the later ones.
async fn record_queue_depth(metrics: &Metrics, client: &QueueClient) -> Result<(), QueueError> {
    let mut conn = client.connection().await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for queue in TaskKind::iter() {
        let config = queue_config(&client.settings, queue);
        let scheduled = config.scheduled_jobs_set();
        let mut pipe = redis::pipe();
        pipe.cmd("LLEN")
            .arg(config.active_jobs_list())
            .cmd("ZCOUNT")
            .arg(&scheduled)
            .arg("-inf")
            .arg(now)
            .cmd("ZCOUNT")
            .arg(&scheduled)
            .arg(format!("({now}"))
            .arg("+inf");
        let (active, due, delayed): (u64, u64, u64) =
            bounded(client.deadline(), pipe.query_async(&mut conn)).await?;
        metrics.queue_jobs(queue.as_str(), active + due, delayed);
    }
    Ok(())
}
