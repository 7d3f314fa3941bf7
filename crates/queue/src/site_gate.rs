//! The site gate: per-site limits that hold across every worker and host,
//! because their state lives in Redis (as the API's rate limits do,
//! `crates/queue/src/rate.rs`). A site is a site profile (its name); the
//! worker asks the gate before it claims a task whose URL's host has a profile
//! with limits (`crates/worker/src/jobs/site.rs`).
//!
//! - **Slots with leases** (`max_concurrent`): a sorted set of holders (a token
//!   per grant) scored by when their lease runs out. A holder renews its lease with the
//!   attempt's once-a-second supervision; a holder that stops renewing (its
//!   worker was SIGKILLed) is dropped once its lease is over, so its slot comes
//!   back after at most one lease (`worker.lease_seconds`).
//! - **Spacing** (`min_interval_seconds`): the time of the last start; a start
//!   is granted only that long after the previous one. A job's start is its
//!   first contact with the site (its egress proxy's first connection,
//!   reported with [`SiteGate::started`]); until a granted job reports it, no
//!   other job of the site starts (for at most a lease), and a job that ends
//!   without one counts its end as its start. So the site sees the starts
//!   spaced however long each job took from its grant to its first request.
//! - **Back-off**: a throttled attempt (HTTP 429, a "rate limit" 403:
//!   `crates/mediapro-core/src/ytdlp/failure.rs`) holds the whole site back for
//!   `limits.site_backoff_first_seconds`, doubling with each throttled attempt
//!   after a back-off ended (attempts throttled during one back-off count once),
//!   capped at `limits.site_backoff_max_seconds`; a successful attempt resets it.
//! - **Waiting**: a refused task is recorded until its retry is due (plus a
//!   grace), for the `waiting` gauge.
//!
//! Every operation is one Lua script (atomic across hosts) on Redis's own clock
//! (`TIME`: hosts' clocks may differ), and every key expires (a site nobody uses
//! leaves nothing but its name in the list of sites). A refusal is not a queue:
//! waiting tasks ask again when told, and whoever asks first after a slot frees
//! up gets it.
//!
//! Redis trouble: asking fails (the job goes back to the queue, as any
//! infrastructure error does: `crates/mediapro-core/src/retry.rs`), a failed
//! renewal or release is logged and the lease ends it.

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use redis::Script;

use crate::{QueueClient, QueueError, bounded};

/// The clock of every script: `ARGV[1]` in ms when given (tests), else Redis `TIME`.
const CLOCK: &str = r"
local now
if ARGV[1] ~= nil and ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
";

/// KEYS: holders, waiting, last start, back-off, sites, starting (the holder
/// whose first contact is awaited). ARGV: now, holder
/// (a token of this request), waiter (the task), max (0 = no limit), interval
/// ms, lease ms, poll ms, grace ms, site. Returns `{granted (1/0), wait_ms}`.
const ACQUIRE: &str = r"
local holder = ARGV[2]
local waiter = ARGV[3]
local max = tonumber(ARGV[4])
local interval = tonumber(ARGV[5])
local lease = tonumber(ARGV[6])
local poll = tonumber(ARGV[7])
local grace = tonumber(ARGV[8])
redis.call('SADD', KEYS[5], ARGV[9])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local wait = 0
local backoff_until = tonumber(redis.call('HGET', KEYS[4], 'until') or '0')
if backoff_until > now then wait = backoff_until - now end
if interval > 0 then
  local until_next = tonumber(redis.call('GET', KEYS[3]) or '0') + interval - now
  -- A start in progress (granted, first contact not yet reported): ask again soon.
  if redis.call('EXISTS', KEYS[6]) == 1 then until_next = math.min(until_next, poll) end
  if until_next > wait then wait = until_next end
end
if wait == 0 and max > 0 and redis.call('ZCARD', KEYS[1]) >= max then wait = poll end
if wait > 0 then
  redis.call('ZADD', KEYS[2], now + wait + grace, waiter)
  if redis.call('PTTL', KEYS[2]) < wait + grace then redis.call('PEXPIRE', KEYS[2], wait + grace) end
  return {0, wait}
end
-- Every holder's lease is `lease` long, so the newest one ends last.
redis.call('ZADD', KEYS[1], now + lease, holder)
redis.call('PEXPIRE', KEYS[1], lease)
redis.call('ZREM', KEYS[2], waiter)
if interval > 0 then
  -- Until its first contact is reported (STARTED), the start lies ahead: nobody
  -- else starts meanwhile, for at most the lease.
  redis.call('SET', KEYS[3], string.format('%d', now + lease), 'PX', lease + interval)
  redis.call('SET', KEYS[6], holder, 'PX', lease)
end
return {1, 0}
";

/// KEYS: last start, starting. ARGV: now, interval ms, holder. The job made
/// its first contact with the site: the spacing counts from now.
const STARTED: &str = r"
local interval = tonumber(ARGV[2])
if interval <= 0 then return 0 end
if redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
  redis.call('SET', KEYS[1], string.format('%d', now), 'PX', interval)
  return 1
end
-- Reported after its lease: only ever later than what is recorded.
if now > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], string.format('%d', now), 'PX', interval)
end
return 1
";

/// KEYS: holders. ARGV: now, holder, lease ms. Returns 1 if it was still held.
const RENEW: &str = r"
local held = redis.call('ZSCORE', KEYS[1], ARGV[2]) and 1 or 0
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return held
";

/// KEYS: holders, back-off, last start, starting. ARGV: now, holder, verdict
/// (`ok`, `throttled`, `other`), first back-off ms, max back-off ms, interval
/// ms. Returns the back-off in force (ms, 0 = none).
const RELEASE: &str = r"
redis.call('ZREM', KEYS[1], ARGV[2])
-- Its first contact was never reported: its end counts as its start.
local interval = tonumber(ARGV[6])
if interval > 0 and redis.call('GET', KEYS[4]) == ARGV[2] then
  redis.call('DEL', KEYS[4])
  redis.call('SET', KEYS[3], string.format('%d', now), 'PX', interval)
end
if ARGV[3] == 'ok' then
  redis.call('DEL', KEYS[2])
  return 0
end
local backoff_until = tonumber(redis.call('HGET', KEYS[2], 'until') or '0')
if ARGV[3] ~= 'throttled' then
  return math.max(0, backoff_until - now)
end
-- Throttled during a back-off in force: the same episode, counted once.
if backoff_until > now then return backoff_until - now end
local first = tonumber(ARGV[4])
local max = tonumber(ARGV[5])
local level = redis.call('HINCRBY', KEYS[2], 'level', 1)
local delay = math.min(max, first * 2 ^ math.min(level - 1, 40))
redis.call('HSET', KEYS[2], 'until', string.format('%d', now + delay))
-- The level outlives the back-off by the longest back-off, so the next
-- throttled attempt soon after grows it.
redis.call('PEXPIRE', KEYS[2], string.format('%d', delay + max))
return delay
";

/// KEYS: holders, waiting, back-off. ARGV: now. Returns `{running, waiting,
/// back-off ms left, level}`.
const INSPECT: &str = r"
local after = string.format('(%d', now)
local running = redis.call('ZCOUNT', KEYS[1], after, '+inf')
local waiting = redis.call('ZCOUNT', KEYS[2], after, '+inf')
local backoff_until = tonumber(redis.call('HGET', KEYS[3], 'until') or '0')
local level = tonumber(redis.call('HGET', KEYS[3], 'level') or '0')
return {running, waiting, math.max(0, backoff_until - now), level}
";

/// A site's limits, from its profile.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SiteLimits {
    /// Jobs of the site running at once, across every worker (`None`: no limit).
    pub max_concurrent: Option<u32>,
    /// Least time between two job starts of the site (`None`: none).
    pub min_interval: Option<Duration>,
}

/// How the gate behaves, from the settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateSettings {
    /// How long a slot stays held without a renewal (`worker.lease_seconds`).
    pub lease: Duration,
    /// Back-off after the first throttled attempt; doubles per throttled
    /// attempt up to `backoff_max`.
    pub backoff_first: Duration,
    pub backoff_max: Duration,
}

/// The gate's answer to a job that wants to start.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Go: the slot is held until released (or its lease runs out).
    Granted(SiteSlot),
    /// Ask again after this long (a slot, the spacing or a back-off).
    Wait(Duration),
}

/// A held slot of a site. Each grant has a token of its own, so a job
/// delivered twice, or a task taken over from a killed worker, never shares
/// (or releases) another attempt's slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteSlot {
    pub site: String,
    holder: String,
    min_interval: Duration,
}

/// How the attempt holding a slot ended, for the back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The site served the job: any back-off is reset.
    Succeeded,
    /// The site throttled the job: it is backed off.
    Throttled,
    /// Anything else (a 404, a cancel, a crash): the back-off is left as it is.
    Other,
}

/// What the gate knows about a site now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SiteState {
    /// Slots held (leases not over).
    pub running: u64,
    /// Tasks told to wait whose retry is not yet over.
    pub waiting: u64,
    /// Time left of the back-off in force (zero: none).
    pub backoff: Duration,
    /// Throttled episodes since the last success (the back-off doubles with each).
    pub backoff_level: u32,
}

/// How long a task refused for a full site waits before it asks again (plus
/// up to half of it at random, so waiting tasks do not ask together).
const FULL_POLL: Duration = Duration::from_millis(1000);
/// A waiting task counts as waiting this long past its retry time (until its
/// job is fetched and asks again).
const WAITING_GRACE: Duration = Duration::from_secs(5);

/// The gate's scripts, loaded once per process (`EVALSHA`, `EVAL` when Redis
/// does not have them yet).
struct Scripts {
    acquire: Script,
    started: Script,
    renew: Script,
    release: Script,
    inspect: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let script = |body: &str| Script::new(&format!("{CLOCK}{body}"));
    Scripts {
        acquire: script(ACQUIRE),
        started: script(STARTED),
        renew: script(RENEW),
        release: script(RELEASE),
        inspect: script(INSPECT),
    }
});

fn key(queue: &QueueClient, site: &str, part: &str) -> String {
    format!("{}:site:{site}:{part}", queue.settings.namespace)
}

fn sites_key(queue: &QueueClient) -> String {
    format!("{}:sites", queue.settings.namespace)
}

/// Running and waiting jobs and the back-off of `site` (a profile's GET).
pub async fn site_state(queue: &QueueClient, site: &str) -> Result<SiteState, QueueError> {
    site_state_at(queue, site, None).await
}

async fn site_state_at(
    queue: &QueueClient,
    site: &str,
    now_ms: Option<u64>,
) -> Result<SiteState, QueueError> {
    let mut invocation = SCRIPTS.inspect.prepare_invoke();
    invocation
        .key(key(queue, site, "holders"))
        .key(key(queue, site, "waiting"))
        .key(key(queue, site, "backoff"))
        .arg(clock(now_ms));
    let mut conn = queue.connection().await?;
    let (running, waiting, backoff_ms, level): (u64, u64, u64, u32) =
        bounded(queue.deadline(), invocation.invoke_async(&mut conn)).await?;
    Ok(SiteState { running, waiting, backoff: Duration::from_millis(backoff_ms), backoff_level: level })
}

/// Every site the gate has seen, with its state (the `/metrics` gauges).
pub async fn site_states(queue: &QueueClient) -> Result<Vec<(String, SiteState)>, QueueError> {
    let mut conn = queue.connection().await?;
    let mut names: Vec<String> =
        bounded(queue.deadline(), redis::cmd("SMEMBERS").arg(sites_key(queue)).query_async(&mut conn))
            .await?;
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let state = site_state(queue, &name).await?;
        out.push((name, state));
    }
    Ok(out)
}

/// The gate of one worker process, over the queue client's connection.
#[derive(Clone)]
pub struct SiteGate {
    queue: Arc<QueueClient>,
    settings: GateSettings,
}

impl SiteGate {
    pub fn new(queue: Arc<QueueClient>, settings: GateSettings) -> Self {
        Self { queue, settings }
    }

    pub fn settings(&self) -> &GateSettings {
        &self.settings
    }

    fn key(&self, site: &str, part: &str) -> String {
        key(&self.queue, site, part)
    }

    /// Task `task` wants to start a job on `site`: granted (a slot is held),
    /// or told how long to wait (and counted as waiting meanwhile).
    pub async fn acquire(&self, site: &str, limits: SiteLimits, task: &str) -> Result<Admission, QueueError> {
        self.acquire_at(site, limits, task, None).await
    }

    async fn acquire_at(
        &self,
        site: &str,
        limits: SiteLimits,
        task: &str,
        now_ms: Option<u64>,
    ) -> Result<Admission, QueueError> {
        let poll = FULL_POLL + FULL_POLL.mul_f64(unit_random() / 2.0);
        let holder = format!("{task}:{}", ulid::Ulid::generate());
        let mut invocation = SCRIPTS.acquire.prepare_invoke();
        invocation
            .key(self.key(site, "holders"))
            .key(self.key(site, "waiting"))
            .key(self.key(site, "last_start"))
            .key(self.key(site, "backoff"))
            .key(sites_key(&self.queue))
            .key(self.key(site, "starting"))
            .arg(clock(now_ms))
            .arg(&holder)
            .arg(task)
            .arg(limits.max_concurrent.unwrap_or(0))
            .arg(millis(limits.min_interval.unwrap_or_default()))
            .arg(millis(self.settings.lease).max(1))
            .arg(millis(poll))
            .arg(millis(WAITING_GRACE))
            .arg(site);
        let mut conn = self.queue.connection().await?;
        let (granted, wait_ms): (i64, i64) =
            bounded(self.queue.deadline(), invocation.invoke_async(&mut conn)).await?;
        Ok(if granted == 1 {
            let min_interval = limits.min_interval.unwrap_or_default();
            Admission::Granted(SiteSlot { site: site.to_owned(), holder, min_interval })
        } else {
            Admission::Wait(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0).max(1)))
        })
    }

    /// The slot's job made its first contact with the site (its first
    /// connection through the egress proxy): `min_interval` counts from now
    /// (until this report no other job of the site starts).
    pub async fn started(&self, slot: &SiteSlot) -> Result<(), QueueError> {
        self.started_at(slot, None).await
    }

    async fn started_at(&self, slot: &SiteSlot, now_ms: Option<u64>) -> Result<(), QueueError> {
        if slot.min_interval.is_zero() {
            return Ok(());
        }
        let mut invocation = SCRIPTS.started.prepare_invoke();
        invocation
            .key(self.key(&slot.site, "last_start"))
            .key(self.key(&slot.site, "starting"))
            .arg(clock(now_ms))
            .arg(millis(slot.min_interval))
            .arg(&slot.holder);
        let mut conn = self.queue.connection().await?;
        let _: i64 = bounded(self.queue.deadline(), invocation.invoke_async(&mut conn)).await?;
        Ok(())
    }

    /// Renews the slot's lease (the holder is still running). `false`: the
    /// lease had run out (the slot was taken back; it is held again now).
    pub async fn renew(&self, slot: &SiteSlot) -> Result<bool, QueueError> {
        self.renew_at(slot, None).await
    }

    async fn renew_at(&self, slot: &SiteSlot, now_ms: Option<u64>) -> Result<bool, QueueError> {
        let mut invocation = SCRIPTS.renew.prepare_invoke();
        invocation
            .key(self.key(&slot.site, "holders"))
            .arg(clock(now_ms))
            .arg(&slot.holder)
            .arg(millis(self.settings.lease).max(1));
        let mut conn = self.queue.connection().await?;
        let held: i64 = bounded(self.queue.deadline(), invocation.invoke_async(&mut conn)).await?;
        Ok(held == 1)
    }

    /// Gives the slot back; a throttled attempt backs the site off, a
    /// successful one resets the back-off. Returns the back-off in force.
    pub async fn release(&self, slot: &SiteSlot, verdict: Verdict) -> Result<Duration, QueueError> {
        self.release_at(slot, verdict, None).await
    }

    async fn release_at(
        &self,
        slot: &SiteSlot,
        verdict: Verdict,
        now_ms: Option<u64>,
    ) -> Result<Duration, QueueError> {
        let verdict = match verdict {
            Verdict::Succeeded => "ok",
            Verdict::Throttled => "throttled",
            Verdict::Other => "other",
        };
        let mut invocation = SCRIPTS.release.prepare_invoke();
        invocation
            .key(self.key(&slot.site, "holders"))
            .key(self.key(&slot.site, "backoff"))
            .key(self.key(&slot.site, "last_start"))
            .key(self.key(&slot.site, "starting"))
            .arg(clock(now_ms))
            .arg(&slot.holder)
            .arg(verdict)
            .arg(millis(self.settings.backoff_first).max(1))
            .arg(millis(self.settings.backoff_max).max(1))
            .arg(millis(slot.min_interval));
        let mut conn = self.queue.connection().await?;
        let backoff: i64 = bounded(self.queue.deadline(), invocation.invoke_async(&mut conn)).await?;
        Ok(Duration::from_millis(u64::try_from(backoff).unwrap_or(0)))
    }
}

fn clock(now_ms: Option<u64>) -> String {
    now_ms.map(|n| n.to_string()).unwrap_or_default()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A random number in `0..=1`.
fn unit_random() -> f64 {
    f64::from(ulid::Ulid::generate().random() as u16) / f64::from(u16::MAX)
}

#[cfg(test)]
mod tests {
    use mediapro_core::settings::RedisSettings;

    use super::*;

    fn gate() -> SiteGate {
        let url =
            std::env::var("MEDIAPRO_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/15".into());
        let settings = RedisSettings {
            url,
            namespace: format!("test-gate-{}", uuid::Uuid::new_v4().simple()),
            command_timeout_ms: 2000,
            ..RedisSettings::default()
        };
        SiteGate::new(
            Arc::new(QueueClient::new(settings)),
            GateSettings {
                lease: Duration::from_secs(10),
                backoff_first: Duration::from_secs(30),
                backoff_max: Duration::from_secs(100),
            },
        )
    }

    const T0: u64 = 1_800_000_000_000;
    const ONE: SiteLimits = SiteLimits { max_concurrent: Some(1), min_interval: None };

    fn waits(a: &Admission) -> Duration {
        match a {
            Admission::Wait(d) => *d,
            Admission::Granted(_) => panic!("expected a wait, got {a:?}"),
        }
    }

    fn slot(a: Admission) -> SiteSlot {
        match a {
            Admission::Granted(s) => s,
            Admission::Wait(d) => panic!("expected a slot, waits {d:?}"),
        }
    }

    #[tokio::test]
    async fn slots_are_counted_and_a_lease_that_is_not_renewed_gives_the_slot_back() {
        let g = gate();
        let two = SiteLimits { max_concurrent: Some(2), min_interval: None };
        let a = slot(g.acquire_at("site", two, "a", Some(T0)).await.expect("redis"));
        let _b = slot(g.acquire_at("site", two, "b", Some(T0)).await.expect("redis"));
        let wait = waits(&g.acquire_at("site", two, "c", Some(T0)).await.expect("redis"));
        assert!((FULL_POLL..=FULL_POLL.mul_f64(1.5)).contains(&wait), "{wait:?}");
        // Another site is not limited by this one.
        slot(g.acquire_at("other", ONE, "c", Some(T0)).await.expect("redis"));
        // The same task asking again (its job delivered twice) gets no second slot.
        waits(&g.acquire_at("site", two, "a", Some(T0 + 1)).await.expect("redis"));
        let state = site_state_at(&g.queue, "site", Some(T0 + 1)).await.expect("redis");
        assert_eq!((state.running, state.waiting), (2, 2), "a and b run; a (again) and c wait");
        // A releases; c gets in.
        assert_eq!(g.release_at(&a, Verdict::Other, Some(T0 + 2)).await.expect("redis"), Duration::ZERO);
        let c = slot(g.acquire_at("site", two, "c", Some(T0 + 3)).await.expect("redis"));
        let waiting = site_state_at(&g.queue, "site", Some(T0 + 3)).await.expect("redis").waiting;
        assert_eq!(waiting, 1, "c no longer waits once granted; a's second job still does");
        // c renews, b does not (its worker was killed): after b's lease, d gets b's slot.
        assert!(g.renew_at(&c, Some(T0 + 9_000)).await.expect("redis"));
        waits(&g.acquire_at("site", two, "d", Some(T0 + 9_500)).await.expect("redis"));
        slot(g.acquire_at("site", two, "d", Some(T0 + 10_001)).await.expect("redis"));
        waits(&g.acquire_at("site", two, "e", Some(T0 + 10_002)).await.expect("redis"));
        let state = site_state_at(&g.queue, "site", Some(T0 + 10_002)).await.expect("redis");
        assert_eq!(state.running, 2, "c (renewed) and d");
    }

    #[tokio::test]
    async fn starts_are_spaced_by_the_interval_from_each_first_contact() {
        let g = gate();
        let spaced = SiteLimits { max_concurrent: None, min_interval: Some(Duration::from_secs(2)) };
        let a = slot(g.acquire_at("site", spaced, "a", Some(T0)).await.expect("redis"));
        // A start in progress (its first contact not reported yet): others ask again soon.
        let wait = waits(&g.acquire_at("site", spaced, "b", Some(T0 + 100)).await.expect("redis"));
        assert!((FULL_POLL..=FULL_POLL.mul_f64(1.5)).contains(&wait), "{wait:?}");
        // a reached the site 300 ms after its grant: the spacing counts from there.
        g.started_at(&a, Some(T0 + 300)).await.expect("redis");
        assert_eq!(
            waits(&g.acquire_at("site", spaced, "b", Some(T0 + 500)).await.expect("redis")),
            Duration::from_millis(1800)
        );
        let b = slot(g.acquire_at("site", spaced, "b", Some(T0 + 2300)).await.expect("redis"));
        // b ended without reporting a contact: its end counts as its start.
        g.release_at(&b, Verdict::Other, Some(T0 + 2500)).await.expect("redis");
        assert_eq!(
            waits(&g.acquire_at("site", spaced, "c", Some(T0 + 3000)).await.expect("redis")),
            Duration::from_millis(1500)
        );
        let c = slot(g.acquire_at("site", spaced, "c", Some(T0 + 4500)).await.expect("redis"));
        g.started_at(&c, Some(T0 + 4700)).await.expect("redis");
        // A report of c again, earlier (a straggler), moves nothing back.
        g.started_at(&c, Some(T0 + 4600)).await.expect("redis");
        assert_eq!(
            waits(&g.acquire_at("site", spaced, "d", Some(T0 + 6000)).await.expect("redis")),
            Duration::from_millis(700)
        );
        slot(g.acquire_at("site", spaced, "d", Some(T0 + 6700)).await.expect("redis"));
        // With both limits, the longer wait wins.
        let both = SiteLimits { max_concurrent: Some(1), min_interval: Some(Duration::from_secs(2)) };
        let a = slot(g.acquire_at("both", both, "a", Some(T0)).await.expect("redis"));
        g.started_at(&a, Some(T0)).await.expect("redis");
        assert_eq!(
            waits(&g.acquire_at("both", both, "b", Some(T0 + 100)).await.expect("redis")),
            Duration::from_millis(1900)
        );
    }

    #[tokio::test]
    async fn throttling_backs_the_site_off_growing_per_episode_and_success_resets_it() {
        let g = gate();
        let a = slot(g.acquire_at("site", ONE, "a", Some(T0)).await.expect("redis"));
        assert_eq!(
            g.release_at(&a, Verdict::Throttled, Some(T0 + 1000)).await.expect("redis"),
            Duration::from_secs(30)
        );
        let state = site_state_at(&g.queue, "site", Some(T0 + 1000)).await.expect("redis");
        assert_eq!((state.backoff, state.backoff_level, state.running), (Duration::from_secs(30), 1, 0));
        // The site is held back, even with its slot free.
        assert_eq!(
            waits(&g.acquire_at("site", ONE, "b", Some(T0 + 11_000)).await.expect("redis")),
            Duration::from_secs(20)
        );
        // A second job throttled within the same back-off does not grow it.
        let other = SiteSlot { site: "site".into(), holder: "x".into(), min_interval: Duration::ZERO };
        assert_eq!(
            g.release_at(&other, Verdict::Throttled, Some(T0 + 11_000)).await.expect("redis"),
            Duration::from_secs(20)
        );
        // After it: throttled again → 60 s, then 100 s (the cap).
        let b = slot(g.acquire_at("site", ONE, "b", Some(T0 + 31_000)).await.expect("redis"));
        assert_eq!(
            g.release_at(&b, Verdict::Throttled, Some(T0 + 32_000)).await.expect("redis"),
            Duration::from_secs(60)
        );
        let c = slot(g.acquire_at("site", ONE, "c", Some(T0 + 92_000)).await.expect("redis"));
        assert_eq!(
            g.release_at(&c, Verdict::Throttled, Some(T0 + 93_000)).await.expect("redis"),
            Duration::from_secs(100)
        );
        assert_eq!(site_state_at(&g.queue, "site", Some(T0 + 93_000)).await.expect("redis").backoff_level, 3);
        // A success resets it: the next throttling starts again at 30 s.
        let d = slot(g.acquire_at("site", ONE, "d", Some(T0 + 193_000)).await.expect("redis"));
        assert_eq!(
            g.release_at(&d, Verdict::Succeeded, Some(T0 + 194_000)).await.expect("redis"),
            Duration::ZERO
        );
        assert_eq!(
            site_state_at(&g.queue, "site", Some(T0 + 194_000)).await.expect("redis"),
            SiteState::default()
        );
        let e = slot(g.acquire_at("site", ONE, "e", Some(T0 + 195_000)).await.expect("redis"));
        assert_eq!(
            g.release_at(&e, Verdict::Throttled, Some(T0 + 196_000)).await.expect("redis"),
            Duration::from_secs(30)
        );
    }

    /// On Redis's own clock: keys expire, and the sites list names what was used.
    #[tokio::test]
    async fn on_the_redis_clock_keys_expire_and_sites_are_listed() {
        let g = gate();
        let spaced = SiteLimits { max_concurrent: Some(3), min_interval: Some(Duration::from_millis(300)) };
        let a = slot(g.acquire("one", spaced, "a").await.expect("redis"));
        waits(&g.acquire("one", spaced, "b").await.expect("redis"));
        assert!(g.renew(&a).await.expect("redis"));
        let sites = site_states(&g.queue).await.expect("redis");
        assert_eq!(sites.len(), 1);
        assert_eq!(sites[0].0, "one");
        assert_eq!((sites[0].1.running, sites[0].1.waiting), (1, 1));
        let mut conn = g.queue.connection().await.expect("redis");
        let ttl = |key: String| {
            let mut conn = conn.clone();
            async move { redis::cmd("PTTL").arg(key).query_async::<i64>(&mut conn).await.expect("redis") }
        };
        assert!((1..=10_000).contains(&ttl(g.key("one", "holders")).await));
        // A start in progress: held for the lease (plus the interval) until reported.
        assert!((1..=10_300).contains(&ttl(g.key("one", "last_start")).await));
        g.started(&a).await.expect("redis");
        assert!((1..=300).contains(&ttl(g.key("one", "last_start")).await));
        assert!(ttl(g.key("one", "waiting")).await > 0);
        g.release(&a, Verdict::Throttled).await.expect("redis");
        assert!(ttl(g.key("one", "backoff")).await > 30_000);
        assert_eq!(ttl(g.key("one", "holders")).await, -2, "the last holder gone: no key");
        let _: () =
            redis::cmd("DEL").arg(g.key("one", "backoff")).query_async(&mut conn).await.expect("redis");
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_an_error_not_a_grant() {
        let settings = RedisSettings {
            url: "redis://127.0.0.1:1/15".into(),
            command_timeout_ms: 300,
            ..RedisSettings::default()
        };
        let g = SiteGate::new(Arc::new(QueueClient::new(settings)), gate().settings);
        assert!(g.acquire("site", ONE, "a").await.is_err());
    }
}
