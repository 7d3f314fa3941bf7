//! What job handlers share.

use std::sync::Arc;

use mediapro_core::{settings::Settings, storage::StorageLayout, store::TaskStore};
use mediapro_queue::Dispatcher;

#[derive(Clone)]
pub struct JobContext {
    pub layout: StorageLayout,
    pub settings: Arc<Settings>,
    /// The task store and the queues: chained tasks, retries, lost jobs.
    pub dispatcher: Dispatcher,
}

impl JobContext {
    pub fn store(&self) -> &TaskStore {
        self.dispatcher.store()
    }
}
