//! The retry policy: which failed attempts run again, how many times, and after
//! what delay. The project owns it (it is not left to the queue library's
//! defaults):
//!
//! - **Transient failures** of a task — network errors, HTTP 5xx and throttling
//!   from the site (`crates/mediapro-core/src/ytdlp/failure.rs` classifies them;
//!   a throttled attempt also backs its site profile's site off:
//!   `crates/queue/src/site_gate.rs`),
//!   a tool that could not start, a folder that could not be prepared — run again
//!   as a new job scheduled after [`RetryPolicy::delay`]: `retry_first_delay_seconds`
//!   doubling per attempt, with ±25 % jitter, capped at `retry_max_delay_seconds`,
//!   until `limits.max_attempts` attempts have run; the last failure then ends the
//!   task `failed` with "(gave up after N attempts)".
//! - **Permanent failures** (404, unsupported URL, bad input, timeout, stall,
//!   not a media file) end the task `failed` at once.
//! - **A lost worker** (killed, OOM): its job comes back through the queue's
//!   orphan recovery and counts as an attempt (the poison guard fails the task
//!   after `limits.max_attempts` starts).
//! - **Infrastructure errors inside a job** (the task store unreachable while
//!   claiming or settling, a task held by another live attempt) are not task
//!   failures: the job is handed back to the queue, which re-delivers it after
//!   `attempt` seconds (apalis-redis's schedule); the task's own attempts are not
//!   counted until a claim succeeds.
//! - **Webhook deliveries** ([`WebhookRetryPolicy`]): a message without a 2xx
//!   answer is tried again after a random delay in `[0, base × 2^(attempt−1)]`
//!   (full jitter, so receivers that come back are not hit by every sender at
//!   once), the ceiling capped at `webhooks.retry_max_delay_seconds`, until
//!   `webhooks.give_up_after_seconds` (a day) have passed since the event; then the
//!   message is `failed`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::settings::{LimitSettings, WebhookSettings};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

/// What to do after attempt `n` failed transiently.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    RetryAfter(Duration),
    GiveUp,
}

impl RetryPolicy {
    pub fn from_limits(limits: &LimitSettings) -> Self {
        Self {
            max_attempts: limits.max_attempts,
            first_delay: Duration::from_secs(limits.retry_first_delay_seconds),
            max_delay: Duration::from_secs(limits.retry_max_delay_seconds),
        }
    }

    /// After attempt `attempt` (1-based) failed for a transient reason.
    pub fn decide(&self, attempt: i64) -> Decision {
        if attempt >= i64::from(self.max_attempts) {
            return Decision::GiveUp;
        }
        Decision::RetryAfter(self.delay(attempt))
    }

    /// The delay before attempt `attempt + 1`.
    pub fn delay(&self, attempt: i64) -> Duration {
        let n = usize::try_from(attempt.max(1) - 1).unwrap_or(0);
        ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .without_max_times()
            .build()
            .nth(n)
            .map(|d| jitter(d, self.max_delay))
            .unwrap_or(self.max_delay)
    }
}

/// ±25 % so that tasks failing together do not retry together.
fn jitter(d: Duration, cap: Duration) -> Duration {
    d.mul_f64(0.75 + unit_random() * 0.5).min(cap)
}

/// A random number in `0..=1`.
fn unit_random() -> f64 {
    f64::from(ulid::Ulid::generate().random() as u16) / f64::from(u16::MAX)
}

/// When a webhook message is tried again (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WebhookRetryPolicy {
    pub base: Duration,
    pub max_delay: Duration,
    pub give_up_after: Duration,
}

impl WebhookRetryPolicy {
    pub fn from_settings(webhooks: &WebhookSettings) -> Self {
        Self {
            base: Duration::from_secs_f64(webhooks.retry_base_seconds),
            max_delay: Duration::from_secs(webhooks.retry_max_delay_seconds),
            give_up_after: Duration::from_secs(webhooks.give_up_after_seconds),
        }
    }

    /// After attempt `attempt` (1-based) failed, `age` after the event: the next
    /// attempt's delay, or give up when it would start past `give_up_after`.
    pub fn decide(&self, attempt: i64, age: Duration) -> Decision {
        let delay = self.delay(attempt);
        if age + delay > self.give_up_after { Decision::GiveUp } else { Decision::RetryAfter(delay) }
    }

    /// The most attempt `attempt + 1` waits: `base × 2^(attempt−1)`, capped.
    pub fn ceiling(&self, attempt: i64) -> Duration {
        let doublings = u32::try_from(attempt.clamp(1, 64) - 1).unwrap_or(0);
        let factor = 2f64.powi(i32::try_from(doublings).unwrap_or(63));
        Duration::from_secs_f64((self.base.as_secs_f64() * factor).min(self.max_delay.as_secs_f64()))
    }

    /// Full jitter: uniform in `[0, ceiling]`.
    pub fn delay(&self, attempt: i64) -> Duration {
        self.ceiling(attempt).mul_f64(unit_random())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(10),
        }
    }

    #[test]
    fn delays_double_with_jitter_up_to_the_cap_and_the_last_attempt_gives_up() {
        let p = policy();
        for (attempt, nominal) in [(1, 2.0), (2, 4.0), (3, 8.0)] {
            for _ in 0..50 {
                let Decision::RetryAfter(d) = p.decide(attempt) else { panic!("attempt {attempt} retries") };
                let secs = d.as_secs_f64();
                assert!(secs >= nominal * 0.75 - 1e-9 && secs <= nominal * 1.25 + 1e-9, "{attempt}: {secs}");
            }
        }
        for _ in 0..50 {
            let Decision::RetryAfter(d) = p.decide(4) else { panic!("attempt 4 retries") };
            assert!(d <= Duration::from_secs(10), "capped: {d:?}");
        }
        assert_eq!(p.decide(5), Decision::GiveUp);
        assert_eq!(p.decide(9), Decision::GiveUp);
    }

    #[test]
    fn webhook_delays_are_full_jitter_under_a_doubling_capped_ceiling_for_a_day() {
        let p = WebhookRetryPolicy {
            base: Duration::from_secs(5),
            max_delay: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(86_400),
        };
        assert_eq!(p.ceiling(1), Duration::from_secs(5));
        assert_eq!(p.ceiling(2), Duration::from_secs(10));
        assert_eq!(p.ceiling(4), Duration::from_secs(40));
        assert_eq!(p.ceiling(20), Duration::from_secs(3600));
        assert_eq!(p.ceiling(1000), Duration::from_secs(3600));
        let delays: Vec<Duration> = (0..200).map(|_| p.delay(3)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(20)), "{delays:?}");
        // Full jitter spreads over the whole range, not around the ceiling.
        assert!(delays.iter().any(|d| *d < Duration::from_secs(5)), "{delays:?}");
        assert!(delays.iter().any(|d| *d > Duration::from_secs(15)), "{delays:?}");
        assert!(matches!(p.decide(3, Duration::from_secs(60)), Decision::RetryAfter(_)));
        // A day after the event, nothing is scheduled any more.
        assert_eq!(p.decide(30, Duration::from_secs(86_400)), Decision::GiveUp);
        // A day of hourly retries at most: dozens of attempts, not unbounded.
        let mut age = Duration::ZERO;
        let mut attempt = 1;
        while let Decision::RetryAfter(_) = p.decide(attempt, age) {
            age += p.ceiling(attempt);
            attempt += 1;
        }
        assert!((20..40).contains(&attempt), "{attempt} attempts at the longest delays");
    }

    #[test]
    fn one_attempt_means_no_retry() {
        let p = RetryPolicy { max_attempts: 1, ..policy() };
        assert_eq!(p.decide(1), Decision::GiveUp);
    }
}
