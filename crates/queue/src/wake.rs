//! Waking idle workers when a job is pushed.
//!
//! An idle worker that asks Redis for a job every `redis.poll_interval_ms` (50 ms)
//! spends about 1 % of a core doing nothing. Instead, every push also `PUBLISH`es on
//! `{namespace}:wake:{kind}` the job's delay in milliseconds (`0`: ready now;
//! [`QueueClient::push_after`]), and each worker process keeps one pub/sub connection
//! ([`Wakeups::listen`]) that turns these messages into wake-ups of the apalis worker
//! of that kind (its poll strategy, `crates/worker/src/poll.rs`): at once for a job
//! that is ready, when it is due for a delayed one (a retry after its backoff).
//! Every subscribed worker process gets every message (pub/sub fans out); they all
//! fetch, and one gets the job (`batch_size(1)`).
//!
//! Pub/sub is fire-and-forget: a message sent while a worker's subscription is down
//! is lost for that worker. That costs latency, never a job, because the job itself
//! was written to its queue before the message was sent:
//!
//! - an idle worker still fetches every `redis.idle_poll_interval_ms` (2 s), and
//!   every time a wake-up or a job came in the last second, at the fast interval;
//! - while the subscription is down ([`WakeSignal::is_live`] is false) it fetches
//!   at the fast interval, as it always did before wake-ups; when the subscription is
//!   back every worker fetches once (whatever was pushed meanwhile).
//!
//! Why a channel of our own rather than apalis-redis's `tasks:…:available` event:
//! apalis-redis 1.0's push script files every job under its scheduled set first
//! (even one without a delay), so that event is never published; and it would say
//! nothing of when a delayed job is due.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt as _;
use mediapro_core::{settings::RedisSettings, task::TaskKind};
use strum::IntoEnumIterator;
use tokio::{
    sync::{Notify, futures::OwnedNotified},
    time::Instant,
};
use tokio_util::task::AbortOnDropHandle;

use crate::{QueueClient, QueueError, bounded};

/// The channel on which pushes to `kind`'s queue are announced.
pub fn channel(namespace: &str, kind: TaskKind) -> String {
    format!("{namespace}:wake:{}", kind.as_str())
}

/// Delayed jobs remembered per process at most (their wake-up timers); beyond
/// it a delayed job waits for the idle poll.
const MAX_SCHEDULED: usize = 10_000;

/// How often the subscription is checked with a `PING`: a connection that died
/// without closing (a network cut) is found within this, and the worker goes back
/// to fast polling until it is replaced.
const HEALTH_CHECK: Duration = Duration::from_secs(30);

impl QueueClient {
    /// Tells the workers of `kind` that a job was pushed, due after `delay`. Best
    /// effort: a lost wake-up only delays the job until the next idle poll.
    pub(crate) async fn announce(&self, kind: TaskKind, delay: Duration) {
        let result = async {
            let mut conn = self.queues().await?.conn.clone();
            let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(channel(&self.settings.namespace, kind)).arg(ms);
            bounded(self.deadline(), publish.query_async::<i64>(&mut conn)).await
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(queue = kind.as_str(), error = %e, "wake-up not published");
        }
    }
}

/// What the listener and the poll strategies share: one [`Notify`] per kind and
/// whether the subscription is up.
struct Shared {
    live: AtomicBool,
    kinds: Vec<(TaskKind, Arc<Notify>)>,
}

impl Shared {
    fn new() -> Self {
        Self {
            live: AtomicBool::new(false),
            kinds: TaskKind::iter().map(|k| (k, Arc::new(Notify::new()))).collect(),
        }
    }

    fn notify(&self, kind: TaskKind) -> &Arc<Notify> {
        let (_, notify) =
            self.kinds.iter().find(|(k, _)| *k == kind).expect("Shared::new covers every TaskKind");
        notify
    }

    fn wake(&self, kind: TaskKind) {
        self.notify(kind).notify_waiters();
    }

    /// A change wakes every kind: up, to fetch what was pushed while it was down;
    /// down, to re-arm the poll timers at the fast interval.
    fn set_live(&self, live: bool) {
        if self.live.swap(live, Ordering::AcqRel) != live {
            for (_, notify) in &self.kinds {
                notify.notify_waiters();
            }
        }
    }
}

/// One worker process's wake-ups: the listener task (ended when the last clone
/// is dropped) and a [`WakeSignal`] per apalis worker.
#[derive(Clone)]
pub struct Wakeups {
    shared: Arc<Shared>,
    _listener: Option<Arc<AbortOnDropHandle<()>>>,
}

impl Wakeups {
    /// Subscribes to the wake-up channels of `kinds` on a connection of its own
    /// (a subscribed connection can do nothing else), reconnecting with backoff.
    pub fn listen(settings: &RedisSettings, kinds: &[TaskKind]) -> Self {
        let shared = Arc::new(Shared::new());
        let task = tokio::spawn(listen_loop(settings.clone(), kinds.to_vec(), shared.clone()));
        Self { shared, _listener: Some(Arc::new(AbortOnDropHandle::new(task))) }
    }

    /// Wake-ups without a subscription: never live (so the strategies poll at
    /// the fast interval) unless driven by [`wake`](Self::wake) and
    /// [`set_live`](Self::set_live). For a worker whose idle poll is as fast as
    /// its busy one, and for tests.
    pub fn detached() -> Self {
        Self { shared: Arc::new(Shared::new()), _listener: None }
    }

    /// What the poll strategy of `kind`'s worker waits on.
    pub fn signal(&self, kind: TaskKind) -> WakeSignal {
        let notify = self.shared.notify(kind).clone();
        WakeSignal {
            notified: Box::pin(notify.clone().notified_owned()),
            notify,
            shared: self.shared.clone(),
        }
    }

    /// Wakes the strategies of `kind` (the listener does it on a message).
    pub fn wake(&self, kind: TaskKind) {
        self.shared.wake(kind);
    }

    /// Whether wake-ups arrive (the listener says it when it (un)subscribes).
    pub fn set_live(&self, live: bool) {
        self.shared.set_live(live);
    }
}

/// The wake-ups of one kind, as one poll strategy sees them.
pub struct WakeSignal {
    notify: Arc<Notify>,
    notified: Pin<Box<OwnedNotified>>,
    shared: Arc<Shared>,
}

impl WakeSignal {
    /// Ready once per burst of wake-ups since the last call; when pending, `cx`
    /// is woken by the next one.
    pub fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut woke = false;
        // A fresh `Notified` is registered as soon as it exists (not when first
        // polled), so a wake-up between two polls is not lost; polling it again
        // registers `cx`'s waker.
        while self.notified.as_mut().poll(cx).is_ready() {
            woke = true;
            self.notified = Box::pin(self.notify.clone().notified_owned());
        }
        if woke { Poll::Ready(()) } else { Poll::Pending }
    }

    /// Whether the subscription is up, i.e. a push would wake this worker.
    pub fn is_live(&self) -> bool {
        self.shared.live.load(Ordering::Acquire)
    }
}

/// Follows the wake-up channels for as long as the process runs.
async fn listen_loop(settings: RedisSettings, kinds: Vec<TaskKind>, shared: Arc<Shared>) {
    let channels: Vec<(String, TaskKind)> =
        kinds.iter().map(|&kind| (channel(&settings.namespace, kind), kind)).collect();
    let names: Vec<&str> = channels.iter().map(|(name, _)| name.as_str()).collect();
    let mut scheduled = Scheduled::default();
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times();
    loop {
        let connect = || subscribe(&settings, &names);
        let pubsub = match connect
            .retry(backoff)
            .notify(|e, after| tracing::debug!(error = %e, ?after, "wake-up subscription: retrying"))
            .await
        {
            Ok(pubsub) => pubsub,
            // `without_max_times`: only if backon changed its mind; try again later.
            Err(e) => {
                tracing::warn!(error = %e, "wake-up subscription failed");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        shared.set_live(true);
        tracing::debug!(channels = ?names, "wake-up subscription up");
        let (mut sink, mut stream) = pubsub.split();
        let mut check = tokio::time::interval_at(Instant::now() + HEALTH_CHECK, HEALTH_CHECK);
        let lost = loop {
            let next_due = scheduled.next();
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => on_message(&message, &channels, &shared, &mut scheduled),
                    None => break "connection closed",
                },
                () = sleep_until(next_due) => scheduled.fire(Instant::now(), &shared),
                _ = check.tick() => {
                    let ping = tokio::time::timeout(HEALTH_CHECK, sink.ping::<redis::Value>()).await;
                    if !matches!(ping, Ok(Ok(_))) {
                        break "no answer to PING";
                    }
                }
            }
        };
        shared.set_live(false);
        tracing::warn!(
            reason = lost,
            "wake-up subscription lost; polling at redis.poll_interval_ms until it is back"
        );
    }
}

async fn subscribe(settings: &RedisSettings, channels: &[&str]) -> Result<redis::aio::PubSub, QueueError> {
    let deadline = Duration::from_millis(settings.command_timeout_ms);
    let client =
        redis::Client::open(settings.url.as_str()).map_err(|e| QueueError::Unavailable(e.to_string()))?;
    let mut pubsub = bounded(deadline, client.get_async_pubsub()).await?;
    bounded(deadline, pubsub.subscribe(channels)).await?;
    Ok(pubsub)
}

fn on_message(
    message: &redis::Msg,
    channels: &[(String, TaskKind)],
    shared: &Shared,
    scheduled: &mut Scheduled,
) {
    let Some(&(_, kind)) = channels.iter().find(|(name, _)| name == message.get_channel_name()) else {
        return;
    };
    // A payload we cannot read is taken as "ready now": a needless fetch at worst.
    let delay_ms = message.get_payload::<String>().ok().and_then(|p| p.parse::<u64>().ok()).unwrap_or(0);
    if delay_ms == 0 {
        shared.wake(kind);
    } else {
        scheduled.add(Instant::now() + Duration::from_millis(delay_ms), kind);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// When delayed jobs fall due, per kind; earliest first.
#[derive(Default)]
struct Scheduled {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Scheduled {
    fn index(kind: TaskKind) -> usize {
        TaskKind::iter().position(|k| k == kind).unwrap_or_default()
    }

    fn add(&mut self, at: Instant, kind: TaskKind) {
        if self.heap.len() >= MAX_SCHEDULED {
            tracing::debug!(
                queue = kind.as_str(),
                "too many delayed jobs to time; the idle poll will find it"
            );
            return;
        }
        self.heap.push(Reverse((at, Self::index(kind))));
    }

    fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Wakes the kinds of every entry due by `now`.
    fn fire(&mut self, now: Instant, shared: &Shared) {
        while let Some(Reverse((at, index))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if let Some(kind) = TaskKind::iter().nth(index) {
                shared.wake(kind);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    fn poll(signal: &mut WakeSignal) -> Poll<()> {
        signal.poll_wake(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_wake_up_between_two_polls_is_kept_and_a_burst_counts_once() {
        let wakeups = Wakeups::detached();
        let mut signal = wakeups.signal(TaskKind::Download);
        assert!(poll(&mut signal).is_pending());
        wakeups.wake(TaskKind::Download);
        wakeups.wake(TaskKind::Download);
        assert!(poll(&mut signal).is_ready());
        assert!(poll(&mut signal).is_pending());
        // Another kind's wake-up is not ours.
        wakeups.wake(TaskKind::Process);
        assert!(poll(&mut signal).is_pending());
    }

    #[test]
    fn a_change_of_subscription_wakes_every_kind_once() {
        let wakeups = Wakeups::detached();
        let mut download = wakeups.signal(TaskKind::Download);
        let mut process = wakeups.signal(TaskKind::Process);
        assert!(!download.is_live());
        wakeups.set_live(true);
        assert!(download.is_live());
        assert!(poll(&mut download).is_ready() && poll(&mut process).is_ready());
        wakeups.set_live(true);
        assert!(poll(&mut download).is_pending(), "no change, no wake-up");
        wakeups.set_live(false);
        assert!(!process.is_live() && poll(&mut process).is_ready());
    }

    #[test]
    fn delayed_jobs_wake_their_kind_when_due_in_order() {
        let wakeups = Wakeups::detached();
        let mut download = wakeups.signal(TaskKind::Download);
        let mut process = wakeups.signal(TaskKind::Process);
        let mut scheduled = Scheduled::default();
        let start = Instant::now();
        scheduled.add(start + Duration::from_secs(3), TaskKind::Process);
        scheduled.add(start + Duration::from_secs(1), TaskKind::Download);
        assert_eq!(scheduled.next(), Some(start + Duration::from_secs(1)));
        scheduled.fire(start + Duration::from_millis(999), &wakeups.shared);
        assert!(poll(&mut download).is_pending());
        scheduled.fire(start + Duration::from_secs(1), &wakeups.shared);
        assert!(poll(&mut download).is_ready() && poll(&mut process).is_pending());
        assert_eq!(scheduled.next(), Some(start + Duration::from_secs(3)));
        scheduled.fire(start + Duration::from_secs(5), &wakeups.shared);
        assert!(poll(&mut process).is_ready());
        assert_eq!(scheduled.next(), None);
    }

    #[test]
    fn channels_are_per_namespace_and_kind() {
        assert_eq!(channel("mp", TaskKind::Download), "mp:wake:download");
        assert_eq!(channel("mp", TaskKind::Process), "mp:wake:process");
    }
}
