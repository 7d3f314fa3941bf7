//! Rate limits shared by every API instance: the state lives in Redis, so three
//! API hosts behind a load balancer enforce one limit, not three.
//!
//! Algorithm: GCRA (the generic cell rate algorithm, the "leaky bucket as a
//! meter" of ATM networks, as in redis-cell and Brandur Leach's throttled). One
//! key per (bucket, client) holds the theoretical arrival time (TAT) in
//! milliseconds. With `limit` requests per `period`, each request advances the
//! TAT by `interval = period / limit`; a request is allowed while the new TAT is
//! no more than `period` ahead of now. So a client may burst `limit` requests,
//! then gets one more every `interval` — never more than `limit` in any `period`.
//! The check and the update are one Lua script (atomic across instances), the
//! clock is Redis's own `TIME` (API hosts' clocks may differ), and every key
//! expires when its TAT is reached (an idle client leaves nothing behind).
//!
//! A limiter must not turn a Redis blip into an outage: when Redis does not
//! answer, the request is allowed and a warning is logged.

use std::{sync::Arc, time::Duration};

use crate::{QueueClient, QueueError, bounded};

/// KEYS[1] = the bucket key; ARGV[1] = limit, ARGV[2] = period in ms,
/// ARGV[3] = "now" in ms (tests only; empty = Redis `TIME`).
/// Returns `{allowed (1/0), retry_after_ms}`.
const GCRA: &str = r"
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local now
if ARGV[3] ~= nil and ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local interval = period / limit
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if now < allow_at then
  return {0, math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%d', math.ceil(new_tat)), 'PX', math.max(1, math.ceil(new_tat - now)))
return {1, 0}
";

/// What the limiter says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    /// Refused; the client may try again after this long.
    Limited {
        retry_after: Duration,
    },
}

/// Per-client limits over the queue client's Redis connection.
pub struct RateLimiter {
    queue: Arc<QueueClient>,
}

impl RateLimiter {
    pub fn new(queue: Arc<QueueClient>) -> Self {
        Self { queue }
    }

    /// One request of `client` in `bucket` (e.g. `submit`), at most
    /// `per_minute` a minute (0 = unlimited). Fails open.
    pub async fn check(&self, bucket: &str, client: &str, per_minute: u32) -> RateDecision {
        self.check_at(bucket, client, per_minute, Duration::from_secs(60), None).await
    }

    async fn check_at(
        &self,
        bucket: &str,
        client: &str,
        limit: u32,
        period: Duration,
        now_ms: Option<u64>,
    ) -> RateDecision {
        if limit == 0 {
            return RateDecision::Allowed;
        }
        match self.run(bucket, client, limit, period, now_ms).await {
            Ok((1, _)) => RateDecision::Allowed,
            Ok((_, retry_ms)) => {
                RateDecision::Limited { retry_after: Duration::from_millis(retry_ms.max(1) as u64) }
            }
            Err(e) => {
                tracing::warn!(error = %e, bucket, "rate limiter unavailable; request allowed");
                RateDecision::Allowed
            }
        }
    }

    async fn run(
        &self,
        bucket: &str,
        client: &str,
        limit: u32,
        period: Duration,
        now_ms: Option<u64>,
    ) -> Result<(i64, i64), QueueError> {
        let mut conn = self.queue.connection().await?;
        let key = format!("{}:rate:{bucket}:{client}", self.queue.settings.namespace);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(GCRA)
            .arg(1)
            .arg(key)
            .arg(limit)
            .arg(period.as_millis() as u64)
            .arg(now_ms.map(|n| n.to_string()).unwrap_or_default());
        let (allowed, retry_ms): (i64, i64) =
            bounded(self.queue.deadline(), cmd.query_async(&mut conn)).await?;
        Ok((allowed, retry_ms))
    }
}

#[cfg(test)]
mod tests {
    use mediapro_core::settings::RedisSettings;

    use super::*;

    fn limiter(url: &str) -> RateLimiter {
        let settings = RedisSettings {
            url: url.into(),
            namespace: format!("test-rate-{}", uuid::Uuid::new_v4().simple()),
            command_timeout_ms: 500,
            ..RedisSettings::default()
        };
        RateLimiter::new(Arc::new(QueueClient::new(settings)))
    }

    fn redis_url() -> String {
        std::env::var("MEDIAPRO_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/15".into())
    }

    const MIN: Duration = Duration::from_secs(60);

    /// The script's arithmetic, on a clock the test controls: 5 a minute is a
    /// burst of 5, then one every 12 s.
    #[tokio::test]
    async fn gcra_allows_a_burst_then_one_per_interval() {
        let l = limiter(&redis_url());
        let t0 = 1_800_000_000_000u64;
        for i in 0..5 {
            assert_eq!(l.check_at("submit", "c1", 5, MIN, Some(t0)).await, RateDecision::Allowed, "#{i}");
        }
        let RateDecision::Limited { retry_after } = l.check_at("submit", "c1", 5, MIN, Some(t0)).await else {
            panic!("the 6th request in a minute must be limited");
        };
        assert_eq!(retry_after, Duration::from_secs(12));
        // Another client and another bucket have their own budgets.
        assert_eq!(l.check_at("submit", "c2", 5, MIN, Some(t0)).await, RateDecision::Allowed);
        assert_eq!(l.check_at("analyze", "c1", 5, MIN, Some(t0)).await, RateDecision::Allowed);
        // Half an interval later: still limited, for the other half.
        let half = t0 + 6_000;
        assert_eq!(
            l.check_at("submit", "c1", 5, MIN, Some(half)).await,
            RateDecision::Limited { retry_after: Duration::from_secs(6) }
        );
        // One interval later: exactly one more.
        let later = t0 + 12_000;
        assert_eq!(l.check_at("submit", "c1", 5, MIN, Some(later)).await, RateDecision::Allowed);
        assert!(matches!(
            l.check_at("submit", "c1", 5, MIN, Some(later)).await,
            RateDecision::Limited { .. }
        ));
        // A full period of silence restores the whole burst.
        let idle = later + 60_000;
        for _ in 0..5 {
            assert_eq!(l.check_at("submit", "c1", 5, MIN, Some(idle)).await, RateDecision::Allowed);
        }
    }

    #[tokio::test]
    async fn keys_expire_and_zero_means_unlimited() {
        let l = limiter(&redis_url());
        for _ in 0..50 {
            assert_eq!(l.check("submit", "c1", 0).await, RateDecision::Allowed);
        }
        assert_eq!(l.check("submit", "c1", 600).await, RateDecision::Allowed);
        let mut conn = l.queue.connection().await.expect("redis");
        let key = format!("{}:rate:submit:c1", l.queue.settings.namespace);
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.expect("pttl");
        assert!((1..=100).contains(&ttl), "the key expires with its TAT (one 100 ms interval): {ttl}");
    }

    /// Nothing listens on port 1 of loopback: the limiter allows (fails open).
    #[tokio::test]
    async fn an_unreachable_redis_fails_open() {
        let l = limiter("redis://127.0.0.1:1/15");
        assert_eq!(l.check("submit", "c1", 1).await, RateDecision::Allowed);
        assert_eq!(l.check("submit", "c1", 1).await, RateDecision::Allowed);
    }
}
