//! What job handlers share.

use std::sync::Arc;

use mediapro_core::{retry::RetryPolicy, settings::Settings, storage::StorageLayout, store::TaskStore};
use mediapro_queue::{Dispatcher, QueueClient};

#[derive(Clone)]
pub struct JobContext {
    pub layout: StorageLayout,
    pub settings: Arc<Settings>,
    /// The task store and the queues: chained tasks, retries, lost jobs.
    pub dispatcher: Dispatcher,
}

impl JobContext {
    pub fn new(
        settings: Arc<Settings>,
        layout: StorageLayout,
        store: TaskStore,
        queue: Arc<QueueClient>,
    ) -> Self {
        let retry = RetryPolicy::from_limits(&settings.limits);
        Self { layout, settings, dispatcher: Dispatcher::new(store, queue, retry) }
    }

    pub fn store(&self) -> &TaskStore {
        self.dispatcher.store()
    }
}
