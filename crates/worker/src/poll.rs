//! When an apalis worker asks Redis for a job: on a wake-up, else on a timer
//! that is fast while jobs keep coming and slow when idle.
//!
//! apalis-core 1.0 fetches every time the worker's task is polled (`PollWith`
//! drives the strategy, then the backend fetches whatever the strategy said); a
//! strategy's only job is to arrange that wake-up. This one registers the
//! worker's waker with two sources:
//!
//! - the kind's [`WakeSignal`] (`crates/queue/src/wake.rs`): a push to this queue
//!   (at once), a delayed job falling due, the wake-up subscription going up or
//!   down;
//! - a timer: `redis.poll_interval_ms` (fast) within [`linger`] of the last
//!   wake-up or job, and always while the subscription is down (wake-ups would be
//!   lost); else `redis.idle_poll_interval_ms` (slow), the safety net for a
//!   wake-up that was lost. The fast phase after a wake-up also covers a wake-up
//!   that arrived while a fetch was already under way (that fetch may have missed
//!   the job; the next fast tick finds it).
//!
//! The timer is re-armed and polled in the same call: apalis-core's own
//! `IntervalStrategy` replaces its timer when it fires without polling the new
//! one, so no wake-up is registered and an idle worker only fetched again at its
//! next heartbeat.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use apalis_core::backend::ext::poll_strategy::{PollSnapshot, PollStrategy};
use mediapro_queue::wake::WakeSignal;
use tokio::time::{Instant, Sleep, sleep_until};

/// How long a worker keeps polling fast after its last wake-up or job: one
/// second, and at least two fast ticks.
pub fn linger(fast: Duration) -> Duration {
    Duration::from_secs(1).max(fast * 2)
}

pub struct WakeOrPoll {
    signal: WakeSignal,
    fast: Duration,
    idle: Duration,
    linger: Duration,
    busy_until: Instant,
    timer: Pin<Box<Sleep>>,
}

impl WakeOrPoll {
    /// `fast` and `idle`: `redis.poll_interval_ms` and `redis.idle_poll_interval_ms`.
    pub fn new(signal: WakeSignal, fast: Duration, idle: Duration) -> Self {
        let now = Instant::now();
        Self {
            signal,
            fast,
            idle: idle.max(fast),
            linger: linger(fast),
            // The worker fetches once when it starts; a fast phase after it.
            busy_until: now + linger(fast),
            timer: Box::pin(sleep_until(now + fast)),
        }
    }

    /// Makes the first timed poll wait `delay` longer (a restarted worker backs off).
    pub fn delay_first(mut self, delay: Duration) -> Self {
        self.timer.as_mut().reset(Instant::now() + self.fast + delay);
        self
    }

    /// The timer's period from `now`.
    fn period(&self, now: Instant) -> Duration {
        if !self.signal.is_live() || now < self.busy_until { self.fast } else { self.idle }
    }
}

impl PollStrategy for WakeOrPoll {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let mut fire = false;
        if self.signal.poll_wake(cx).is_ready() {
            let now = Instant::now();
            fire = true;
            self.busy_until = now + self.linger;
            let next = now + self.period(now);
            self.timer.as_mut().reset(next);
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            fire = true;
            let now = Instant::now();
            let next = now + self.period(now);
            self.timer.as_mut().reset(next);
        }
        // Both sources end pending, i.e. with the worker's waker registered.
        if fire { Poll::Ready(Some(())) } else { Poll::Pending }
    }

    fn on_poll(&mut self, snapshot: &PollSnapshot) {
        if snapshot.consecutive_ready > 0 {
            // A job came: more may follow; poll fast for a while.
            let now = Instant::now();
            self.busy_until = now + self.linger;
            if self.timer.deadline() > now + self.fast {
                self.timer.as_mut().reset(now + self.fast);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use mediapro_core::task::TaskKind;
    use mediapro_queue::wake::Wakeups;

    use super::*;

    const FAST: Duration = Duration::from_millis(50);
    const IDLE: Duration = Duration::from_secs(2);

    fn drive(strategy: &mut WakeOrPoll) -> bool {
        let snapshot = PollSnapshot::default();
        strategy.poll_drive(&mut Context::from_waker(Waker::noop()), &snapshot).is_ready()
    }

    /// Polls every millisecond for `span`; returns the offsets at which it fired.
    async fn fires_within(strategy: &mut WakeOrPoll, span: Duration) -> Vec<Duration> {
        let start = Instant::now();
        let mut fired = Vec::new();
        while start.elapsed() < span {
            tokio::time::advance(Duration::from_millis(1)).await;
            if drive(strategy) {
                fired.push(start.elapsed());
            }
        }
        fired
    }

    fn idle_worker(wakeups: &Wakeups) -> WakeOrPoll {
        wakeups.set_live(true);
        WakeOrPoll::new(wakeups.signal(TaskKind::Download), FAST, IDLE)
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_worker_polls_slowly_once_its_start_up_phase_is_over() {
        let wakeups = Wakeups::detached();
        let mut strategy = idle_worker(&wakeups);
        // The fast phase after start-up (1 s), then the idle period.
        let first = fires_within(&mut strategy, Duration::from_millis(1100)).await;
        assert!((18..=22).contains(&first.len()), "{first:?}");
        let idle = fires_within(&mut strategy, Duration::from_secs(10)).await;
        assert!((4..=6).contains(&idle.len()), "{idle:?}");
        assert!(idle.windows(2).all(|w| w[1] - w[0] == IDLE), "{idle:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_fires_at_once_and_polls_fast_for_a_second() {
        let wakeups = Wakeups::detached();
        let mut strategy = idle_worker(&wakeups);
        fires_within(&mut strategy, Duration::from_secs(5)).await;
        assert!(!drive(&mut strategy));
        wakeups.wake(TaskKind::Download);
        assert!(drive(&mut strategy), "a wake-up fires without waiting for the timer");
        let after = fires_within(&mut strategy, Duration::from_millis(1500)).await;
        // 50 ms ticks for the second after it, then the idle period again.
        let fast = after.iter().filter(|t| **t <= Duration::from_millis(1050)).count();
        assert!((19..=21).contains(&fast), "{after:?}");
        assert_eq!(after.len(), fast, "{after:?}");
        // Another kind's wake-up does not concern this worker.
        wakeups.wake(TaskKind::Process);
        assert!(!drive(&mut strategy));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_subscription_it_polls_fast_as_before() {
        let wakeups = Wakeups::detached();
        let mut strategy = idle_worker(&wakeups);
        fires_within(&mut strategy, Duration::from_secs(5)).await;
        wakeups.set_live(false);
        assert!(drive(&mut strategy), "losing the subscription re-arms the timer at once");
        let fired = fires_within(&mut strategy, Duration::from_secs(3)).await;
        assert!((59..=61).contains(&fired.len()), "{}", fired.len());
        // Back up: one catch-up fetch, a fast second, then idle.
        wakeups.set_live(true);
        assert!(drive(&mut strategy));
        let fired = fires_within(&mut strategy, Duration::from_secs(5)).await;
        assert!(fired.len() <= 23, "{fired:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_keeps_it_polling_fast() {
        let wakeups = Wakeups::detached();
        let mut strategy = idle_worker(&wakeups);
        fires_within(&mut strategy, Duration::from_secs(5)).await;
        // A fetch (by any wake-up of the worker) brought a job.
        strategy.on_poll(&PollSnapshot { consecutive_ready: 1, ..PollSnapshot::default() });
        let fired = fires_within(&mut strategy, Duration::from_millis(500)).await;
        assert!((9..=10).contains(&fired.len()), "{fired:?}");
    }
}
