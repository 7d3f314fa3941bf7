//! What job handlers share.

use std::sync::Arc;

use mediapro_core::{settings::Settings, storage::StorageLayout, store::TaskStore};
use mediapro_queue::QueueClient;

#[derive(Clone)]
pub struct JobContext {
    pub store: TaskStore,
    pub layout: StorageLayout,
    pub settings: Arc<Settings>,
    /// To queue the processing task a pipeline download chains.
    pub queue: Arc<QueueClient>,
}
