//! Job payloads carried on the Redis queues. They hold only the task id: the task
//! store has the validated request, so a payload can never smuggle arguments past
//! validation, and old payloads stay decodable as the request types evolve.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A job on the `download` queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadJob {
    pub task_id: Uuid,
}

/// A job on the `process` queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessJob {
    pub task_id: Uuid,
}
