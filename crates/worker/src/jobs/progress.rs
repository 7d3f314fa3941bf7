//! Throttled progress writes: the subprocess's output callback is synchronous and
//! fast; the store is written at most every [`INTERVAL`] from a side future.

use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::context::JobContext;

const INTERVAL: Duration = Duration::from_millis(500);

pub struct ProgressSink {
    tx: watch::Sender<f64>,
}

impl ProgressSink {
    pub fn report(&self, percent: f64) {
        self.tx.send_if_modified(|p| {
            if percent > *p {
                *p = percent;
                true
            } else {
                false
            }
        });
    }
}

/// Returns the sink and the future that writes progress until the sink is dropped.
pub fn channel(
    ctx: &JobContext,
    task_id: Uuid,
    attempt: i64,
) -> (ProgressSink, impl Future<Output = ()> + use<>) {
    let (tx, mut rx) = watch::channel(0.0);
    let store = ctx.store.clone();
    let writer = async move {
        while rx.changed().await.is_ok() {
            let value = *rx.borrow_and_update();
            if let Err(e) = store.set_progress(task_id, attempt, value).await {
                tracing::warn!(%task_id, error = %e, "progress write failed");
            }
            tokio::time::sleep(INTERVAL).await;
        }
    };
    (ProgressSink { tx }, writer)
}
