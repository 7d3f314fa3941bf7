//! What every handler can reach.

use std::sync::Arc;

use mediapro_core::{settings::Settings, storage::StorageLayout, store::TaskStore, validate::AddressPolicy};
use mediapro_queue::QueueClient;
use tokio::sync::Semaphore;

pub struct AppState {
    pub settings: Settings,
    pub store: TaskStore,
    pub queue: QueueClient,
    pub layout: StorageLayout,
    /// Bounds concurrent analyze runs: each is a yt-dlp (Python) process.
    pub analyze_slots: Arc<Semaphore>,
}

impl AppState {
    pub fn address_policy(&self) -> AddressPolicy {
        AddressPolicy { allow_private_networks: self.settings.security.allow_private_networks }
    }
}
