//! What job handlers share.

use std::sync::Arc;

use mediapro_core::{settings::Settings, storage::StorageLayout, store::TaskStore};

#[derive(Clone)]
pub struct JobContext {
    pub store: TaskStore,
    pub layout: StorageLayout,
    pub settings: Arc<Settings>,
}

impl JobContext {
    pub fn new(store: TaskStore, layout: StorageLayout, settings: Arc<Settings>) -> Self {
        Self {
            store,
            layout,
            settings,
        }
    }
}
