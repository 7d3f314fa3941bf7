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

    fn subscribed(wakeups: &Wakeups) -> WakeOrPoll {
        wakeups.set_live(true);
        WakeOrPoll::new(wakeups.signal(TaskKind::Download), FAST, IDLE)
    }

    /// The timer is armed for `period` from a moment between `before` and now.
    fn armed_for(strategy: &WakeOrPoll, before: Instant, period: Duration) -> bool {
        let deadline = strategy.timer.deadline();
        deadline >= before + period && deadline <= Instant::now() + period
    }

    #[tokio::test]
    async fn fast_after_start_and_after_a_job_or_wake_up_else_idle() {
        let wakeups = Wakeups::detached();
        let mut strategy = subscribed(&wakeups);
        let now = Instant::now();
        assert_eq!(strategy.period(now), FAST, "the start-up phase");
        assert_eq!(strategy.period(now + linger(FAST)), IDLE);
        assert_eq!(linger(FAST), Duration::from_secs(1));
        assert_eq!(linger(Duration::from_secs(2)), Duration::from_secs(4));

        // Idle: the timer is armed for the idle period.
        strategy.busy_until = now;
        strategy.timer.as_mut().reset(now + IDLE);
        assert!(!drive(&mut strategy));
        let before = Instant::now();
        strategy.on_poll(&PollSnapshot { consecutive_ready: 1, ..PollSnapshot::default() });
        assert!(armed_for(&strategy, before, FAST), "a job re-arms the timer at the fast interval");
        assert!(strategy.busy_until >= before + linger(FAST));
        // A fetch that found nothing changes nothing.
        strategy.busy_until = before;
        strategy.on_poll(&PollSnapshot::default());
        assert_eq!(strategy.busy_until, before);
    }

    #[tokio::test]
    async fn a_wake_up_fires_at_once_and_starts_a_fast_phase() {
        let wakeups = Wakeups::detached();
        let mut strategy = subscribed(&wakeups);
        strategy.busy_until = Instant::now();
        strategy.timer.as_mut().reset(Instant::now() + IDLE);
        assert!(!drive(&mut strategy));
        // Another kind's wake-up does not concern this worker.
        wakeups.wake(TaskKind::Process);
        assert!(!drive(&mut strategy));
        let before = Instant::now();
        wakeups.wake(TaskKind::Download);
        assert!(drive(&mut strategy), "a wake-up fires without waiting for the timer");
        assert!(armed_for(&strategy, before, FAST));
        assert!(strategy.busy_until >= before + linger(FAST));
        assert!(!drive(&mut strategy), "one wake-up, one fetch");
    }

    #[tokio::test]
    async fn without_a_subscription_it_polls_fast_as_before() {
        let wakeups = Wakeups::detached();
        let mut strategy = subscribed(&wakeups);
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(strategy.period(later), IDLE);
        wakeups.set_live(false);
        assert_eq!(strategy.period(later), FAST);
        assert!(drive(&mut strategy), "losing the subscription wakes the worker, which re-arms fast");
        // Back up: one catch-up fetch.
        wakeups.set_live(true);
        assert!(drive(&mut strategy));
    }

    /// The timer wakes the worker's task again and again (it is re-armed and
    /// polled in the same call), with nothing else going on.
    #[tokio::test]
    async fn the_timer_keeps_waking_an_idle_worker() {
        let wakeups = Wakeups::detached();
        wakeups.set_live(true);
        let mut strategy = WakeOrPoll::new(
            wakeups.signal(TaskKind::Download),
            Duration::from_millis(5),
            Duration::from_millis(20),
        );
        strategy.busy_until = Instant::now();
        let snapshot = PollSnapshot::default();
        for _ in 0..5 {
            let fired = std::future::poll_fn(|cx| strategy.poll_drive(cx, &snapshot).map(|_| ()));
            tokio::time::timeout(Duration::from_secs(5), fired).await.expect("the timer fired");
        }
    }
}
