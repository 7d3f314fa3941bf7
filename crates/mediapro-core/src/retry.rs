//! The retry policy: which failed attempts run again, how many times, and after
//! what delay. The project owns it (it is not left to the queue library's
//! defaults):
//!
//! - **Transient failures** of a task — network errors, HTTP 5xx and throttling
//!   from the site (`crates/mediapro-core/src/ytdlp/failure.rs` classifies them),
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

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::settings::LimitSettings;

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
    let r = f64::from(ulid::Ulid::generate().random() as u16) / f64::from(u16::MAX); // 0..=1
    d.mul_f64(0.75 + r * 0.5).min(cap)
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
    fn one_attempt_means_no_retry() {
        let p = RetryPolicy { max_attempts: 1, ..policy() };
        assert_eq!(p.decide(1), Decision::GiveUp);
    }
}
