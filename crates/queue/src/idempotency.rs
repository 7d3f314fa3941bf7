//! Idempotency records in Redis, shared by every API instance: the first request
//! with a key claims it (`SET NX`, so of concurrent duplicates exactly one wins),
//! then stores its answer; later requests with the key get that answer back.
//! The HTTP side (fingerprint of the body, replay, 422 on reuse) is
//! `crates/api/src/idempotency.rs`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{QueueClient, QueueError, bounded};

/// How long a key is remembered after its first use.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a claim without an answer lives: a request that died (an API
/// instance killed mid-request) frees its key after this, not after a day.
pub const CLAIM_TTL: Duration = Duration::from_secs(15 * 60);

/// The first answer given for a key, replayed to every later request with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnswer {
    /// SHA-256 (hex) of the method, route and body of the request that claimed the key.
    pub fingerprint: String,
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Record {
    /// Claimed by a request still being handled, with its fingerprint when known.
    Claimed,
    Answered(StoredAnswer),
}

/// What a request finds when it tries to claim a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// This request holds the key: handle it, then [`QueueClient::idempotency_answer`]
    /// or [`QueueClient::idempotency_release`].
    Won,
    /// Another request holds the key and has not answered yet.
    InProgress,
    /// The key's first answer.
    Answered(StoredAnswer),
}

impl QueueClient {
    fn idempotency_key(&self, scope: &str) -> String {
        format!("{}:idempotency:{scope}", self.settings.namespace)
    }

    /// Claims `scope` (a digest of the caller, the route and the key) or reads
    /// what holds it.
    pub async fn idempotency_claim(&self, scope: &str) -> Result<Claim, QueueError> {
        let mut conn = self.connection().await?;
        let key = self.idempotency_key(scope);
        let claimed =
            serde_json::to_string(&Record::Claimed).map_err(|e| QueueError::Unavailable(e.to_string()))?;
        loop {
            let set: Option<String> = bounded(
                self.deadline(),
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&claimed)
                    .arg("NX")
                    .arg("EX")
                    .arg(CLAIM_TTL.as_secs())
                    .query_async(&mut conn),
            )
            .await?;
            if set.is_some() {
                return Ok(Claim::Won);
            }
            let held: Option<String> =
                bounded(self.deadline(), redis::cmd("GET").arg(&key).query_async(&mut conn)).await?;
            match held.as_deref().map(serde_json::from_str::<Record>) {
                // Released (or expired) between the two commands: claim again.
                None => continue,
                Some(Ok(Record::Answered(answer))) => return Ok(Claim::Answered(answer)),
                Some(Ok(Record::Claimed)) => return Ok(Claim::InProgress),
                Some(Err(e)) => return Err(QueueError::Unavailable(format!("idempotency record: {e}"))),
            }
        }
    }

    /// Stores the answer of the request that won the claim, for [`IDEMPOTENCY_TTL`].
    pub async fn idempotency_answer(&self, scope: &str, answer: StoredAnswer) -> Result<(), QueueError> {
        let mut conn = self.connection().await?;
        let json = serde_json::to_string(&Record::Answered(answer))
            .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        bounded(
            self.deadline(),
            redis::cmd("SET")
                .arg(self.idempotency_key(scope))
                .arg(json)
                .arg("EX")
                .arg(IDEMPOTENCY_TTL.as_secs())
                .query_async::<()>(&mut conn),
        )
        .await
    }

    /// Frees a claim whose request produced no answer worth keeping (a 5xx, a
    /// rate limit, a body that was not read): the client may try again.
    pub async fn idempotency_release(&self, scope: &str) -> Result<(), QueueError> {
        let mut conn = self.connection().await?;
        bounded(
            self.deadline(),
            redis::cmd("DEL").arg(self.idempotency_key(scope)).query_async::<()>(&mut conn),
        )
        .await
    }
}
