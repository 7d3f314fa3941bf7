//! The job payload carried on both Redis queues. It holds only the task id: the
//! task store has the validated request, so a payload can never smuggle arguments
//! past validation.
//!
//! Decoding never fails on JSON: anything that is not a well-formed payload becomes
//! [`JobPayload::Undecodable`], which the worker fails on its own. (apalis-redis
//! kills a worker whose payload does not decode, and the payload then poisons
//! every worker that picks it up again.)

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JobPayload {
    Task { task_id: Uuid },
    Undecodable(serde_json::Value),
}

impl JobPayload {
    pub fn for_task(task_id: Uuid) -> Self {
        JobPayload::Task { task_id }
    }

    /// The task a malformed payload seems to be about, if it names one.
    pub fn claimed_task_id(&self) -> Option<Uuid> {
        match self {
            JobPayload::Task { task_id } => Some(*task_id),
            JobPayload::Undecodable(v) => v.get("task_id")?.as_str()?.parse().ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_junk_is_captured() {
        let id = Uuid::new_v4();
        let json = serde_json::to_string(&JobPayload::for_task(id)).expect("serialises");
        assert_eq!(json, format!(r#"{{"task_id":"{id}"}}"#));
        assert_eq!(serde_json::from_str::<JobPayload>(&json).expect("decodes"), JobPayload::for_task(id));
        for junk in [r#"{"task_id":"nope"}"#, "42", r#"["a"]"#, r#"{"url":"x"}"#] {
            let p: JobPayload = serde_json::from_str(junk).expect("never fails on JSON");
            assert!(matches!(p, JobPayload::Undecodable(_)), "{junk}");
        }
    }
}
