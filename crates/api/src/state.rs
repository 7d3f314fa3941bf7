//! What every handler can reach.

use std::sync::Arc;

use mediapro_core::{
    metrics::Metrics, process::ythost::YtdlpRunner, settings::Settings, storage::StorageLayout,
    store::TaskStore, validate::EgressPolicy,
};
use mediapro_egress::EgressGuard;
use mediapro_queue::{Dispatcher, QueueClient};

use crate::limits::Limits;

pub struct AppState {
    pub settings: Settings,
    /// Reads; every change that queues a job goes through `dispatcher`.
    pub store: TaskStore,
    pub queue: Arc<QueueClient>,
    pub dispatcher: Dispatcher,
    /// Every connection analyze makes goes through it (a proxy per call).
    pub egress: EgressGuard,
    /// Task events from every host (`crates/queue/src/events.rs`), for `/api/events`.
    pub events: tokio::sync::broadcast::Sender<Arc<mediapro_queue::events::TaskEvent>>,
    pub layout: StorageLayout,
    /// Rate limits, the pending-task cap, and the analyze slots (each run is a
    /// yt-dlp process) with their bounded wait queue.
    pub limits: Limits,
    /// Where requests, refusals and event streams are counted (off with
    /// `server.metrics = false`).
    pub metrics: Metrics,
    /// Renders `GET /metrics`; `None` when `server.metrics = false`.
    pub registry: Option<mediapro_queue::metrics::Registry>,
    /// How analyze runs yt-dlp: this process's warm host while it is ready, else
    /// spawned (`tools.ytdlp_host`); its state and version are on `/readyz`.
    pub ytdlp: Arc<YtdlpRunner>,
}

impl AppState {
    /// Refuses new work while the storage root is nearly full (507, retry later).
    pub fn ensure_free_space(&self) -> Result<(), crate::error::ApiError> {
        let needed = self.settings.limits.min_free_disk_bytes;
        match mediapro_core::storage::free_bytes(self.layout.root()) {
            Ok(free) if free < needed => Err(crate::error::ApiError::new(
                mediapro_core::Code::InsufficientStorage,
                format!("the storage root has {free} bytes free, less than the {needed} required; try later"),
            )
            .with_retry_after(60)),
            Ok(_) => Ok(()),
            // Cannot tell: do not block work on a statvfs quirk.
            Err(e) => {
                tracing::warn!(error = %e, "cannot read free disk space");
                Ok(())
            }
        }
    }

    /// A submission may carry `callback_url` only if its deliveries can be signed.
    pub fn can_sign_webhooks(&self) -> bool {
        self.settings.webhooks.signing_secret.is_some()
    }

    pub fn egress_policy(&self) -> &EgressPolicy {
        self.egress.policy()
    }
}
