//! What job handlers share.

use std::{sync::Arc, time::Duration};

use mediapro_core::{
    metrics::Metrics, process::ythost::YtdlpRunner, retry::RetryPolicy, settings::Settings,
    storage::StorageLayout, store::TaskStore,
};
use mediapro_egress::EgressGuard;
use mediapro_queue::{Dispatcher, GateSettings, QueueClient, SiteGate};

#[derive(Clone)]
pub struct JobContext {
    pub layout: StorageLayout,
    pub settings: Arc<Settings>,
    /// The task store and the queues: chained tasks, retries, lost jobs.
    pub dispatcher: Dispatcher,
    /// Every connection a job makes for its user goes through it.
    pub egress: EgressGuard,
    /// Jobs, kills and egress refusals are counted here (off without
    /// `worker.metrics_bind`).
    pub metrics: Metrics,
    /// Every yt-dlp run of a job goes through it: this worker's warm host
    /// while it is ready, else spawned (`tools.ytdlp_host`).
    pub ytdlp: Arc<YtdlpRunner>,
    /// Per-site slots, spacing and back-off across every worker (site profiles).
    pub gate: SiteGate,
}

impl JobContext {
    pub fn new(
        settings: Arc<Settings>,
        layout: StorageLayout,
        store: TaskStore,
        queue: Arc<QueueClient>,
        metrics: Metrics,
        ytdlp: Arc<YtdlpRunner>,
    ) -> Self {
        let retry = RetryPolicy::from_limits(&settings.limits);
        let egress = EgressGuard::new(settings.egress_policy()).with_metrics(metrics.clone());
        let gate = SiteGate::new(
            queue.clone(),
            GateSettings {
                lease: Duration::from_secs(settings.worker.lease_seconds),
                backoff_first: Duration::from_secs(settings.limits.site_backoff_first_seconds),
                backoff_max: Duration::from_secs(settings.limits.site_backoff_max_seconds),
            },
        );
        let dispatcher = Dispatcher::new(store, queue, retry);
        Self { layout, settings, dispatcher, egress, metrics, ytdlp, gate }
    }

    pub fn store(&self) -> &TaskStore {
        self.dispatcher.store()
    }
}
