//! A lease in Redis that makes one process of many the holder of a role (the
//! subscription scheduler: `crates/worker/src/subscriptions.rs`), so three
//! worker hosts do the role's work once, not three times.
//!
//! `{namespace}:lease:{role}` holds the holder's id with a time to live: taken
//! with `SET NX PX` when free, renewed (`PEXPIRE`) by its holder only (a Lua
//! script compares the id first, atomically), left to expire when the holder
//! dies. A holder that cannot reach Redis stops acting at once (it may have lost
//! the lease); the work it guards is a compare-and-set in the store anyway, so
//! two holders in the instant of a hand-over cannot do it twice.

use std::time::Duration;

use crate::{QueueClient, QueueError, bounded};

/// KEYS[1] = the lease key; ARGV[1] = the holder's id, ARGV[2] = time to live in ms.
/// Returns 1 if the caller holds the lease now (taken or renewed), else 0.
const HOLD: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
";

/// KEYS[1] = the lease key; ARGV[1] = the holder's id. Deletes it if held by ARGV[1].
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// One process's claim on a role.
pub struct RoleLease {
    key: String,
    holder: String,
    ttl: Duration,
}

impl RoleLease {
    /// A claim on `role` by `holder` (unique per process), lasting `ttl` unless renewed.
    pub fn new(queue: &QueueClient, role: &str, holder: String, ttl: Duration) -> Self {
        let key = format!("{}:lease:{role}", queue.settings.namespace);
        Self { key, holder, ttl }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes the lease if it is free, renews it if this holder has it: whether
    /// this holder may act for the next `ttl`.
    pub async fn hold(&self, queue: &QueueClient) -> Result<bool, QueueError> {
        let mut conn = queue.connection().await?;
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(HOLD).arg(1).arg(&self.key).arg(&self.holder).arg(ttl_ms);
        let held: i64 = bounded(queue.deadline(), cmd.query_async(&mut conn)).await?;
        Ok(held == 1)
    }

    /// Gives the lease up if this holder has it (a clean shutdown: another
    /// process takes over at once instead of after `ttl`).
    pub async fn release(&self, queue: &QueueClient) -> Result<(), QueueError> {
        let mut conn = queue.connection().await?;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RELEASE).arg(1).arg(&self.key).arg(&self.holder);
        let _: i64 = bounded(queue.deadline(), cmd.query_async(&mut conn)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use mediapro_core::settings::RedisSettings;

    use super::*;

    fn client() -> QueueClient {
        let url =
            std::env::var("MEDIAPRO_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/15".into());
        let namespace = format!("test-lease-{}", uuid::Uuid::new_v4().simple());
        QueueClient::new(RedisSettings { url, namespace, ..RedisSettings::default() })
    }

    /// Against the real Redis of the test set-up (database 15, own namespace).
    #[tokio::test]
    async fn one_holder_at_a_time_renewed_by_it_taken_over_after_expiry_or_release() {
        let queue = client();
        let ttl = Duration::from_millis(400);
        let q = &queue;
        let a = RoleLease::new(q, "scheduler", "a".into(), ttl);
        let b = RoleLease::new(q, "scheduler", "b".into(), ttl);
        assert!(a.hold(q).await.expect("redis"), "a free lease is taken");
        assert!(!b.hold(q).await.expect("redis"), "a held lease is not");
        // Renewed by its holder past the first time to live.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert!(a.hold(q).await.expect("redis"));
            assert!(!b.hold(q).await.expect("redis"));
        }
        // Not renewed: it expires and the other takes it.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(b.hold(q).await.expect("redis"));
        assert!(!a.hold(q).await.expect("redis"));
        // A release by a non-holder does nothing; by the holder frees it at once.
        a.release(q).await.expect("redis");
        assert!(!a.hold(q).await.expect("redis"));
        b.release(q).await.expect("redis");
        assert!(a.hold(q).await.expect("redis"));
        a.release(q).await.expect("redis");
    }
}
