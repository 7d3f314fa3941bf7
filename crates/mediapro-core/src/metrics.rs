//! The one list of Prometheus metric names, their labels and help texts, and the
//! helpers that record them: every binary records through [`Metrics`], so a name
//! is spelt once (here) and the Grafana dashboard (`docker/grafana-dashboard.json`)
//! is checked against [`NAMES`] by a test.
//!
//! Only the `metrics` facade is used here (no exporter, no HTTP). A [`Metrics`]
//! holds its own recorder rather than the process-wide one, so an API and a
//! worker in one process (the end-to-end tests) keep separate registries; the
//! registry that renders them is `crates/queue/src/metrics.rs`. [`Metrics::off`]
//! records nothing (`server.metrics = false`, or a worker without
//! `worker.metrics_bind`).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use metrics::{Recorder, Unit};

/// Metric names. Counters end in `_total`; histograms in a unit.
pub mod names {
    /// API requests by `method`, `route` (the matched pattern, `unmatched` for a
    /// 404 without a route) and `status`.
    pub const HTTP_REQUESTS: &str = "mediapro_http_requests_total";
    /// API request latency by `method` and `route`.
    pub const HTTP_DURATION: &str = "mediapro_http_request_duration_seconds";
    /// Requests refused by admission control, by `limit` (`submit`, `analyze`,
    /// `pending`, `analyze_busy`).
    pub const RATE_LIMITED: &str = "mediapro_rate_limited_total";
    /// Open `GET /api/events` streams.
    pub const EVENT_CLIENTS: &str = "mediapro_event_stream_clients";
    /// Jobs in Redis not yet taken by a worker, by `queue` and `state`
    /// (`waiting`: due; `delayed`: a retry whose delay is not over).
    pub const QUEUE_JOBS: &str = "mediapro_queue_jobs";
    /// Tasks in the store by `status`.
    pub const TASKS: &str = "mediapro_tasks";
    /// Attempts a worker began (the task was claimed), by `queue` and `kind`.
    pub const JOBS_STARTED: &str = "mediapro_jobs_started_total";
    /// Attempts that ended, by `queue`, `kind` and `outcome` ([`outcome`]).
    pub const JOBS_FINISHED: &str = "mediapro_jobs_finished_total";
    /// How long an attempt ran, claim to end, by `queue`, `kind` and `outcome`.
    pub const JOB_DURATION: &str = "mediapro_job_duration_seconds";
    /// From the moment a job was due (pushed, or its retry delay over) to its
    /// claim, by `queue`.
    pub const JOB_PICKUP_DELAY: &str = "mediapro_job_pickup_delay_seconds";
    /// A worker's job slots by `queue` and `state` (`busy`, `free`).
    pub const WORKER_SLOTS: &str = "mediapro_worker_slots";
    /// yt-dlp/ffmpeg runs stopped before they finished, by `reason`
    /// (`StopReason::label`).
    pub const SUBPROCESS_KILLS: &str = "mediapro_subprocess_kills_total";
    /// Connections the egress guard refused, by `reason` (`BlockReason::label`).
    pub const EGRESS_REFUSALS: &str = "mediapro_egress_refusals_total";
    /// Jobs of a site profile's site across every worker, by `site` and `state`
    /// (`running`: holding a slot of the site gate; `waiting`: told to wait).
    pub const SITE_JOBS: &str = "mediapro_site_jobs";
    /// Seconds left of a site's back-off after throttling, by `site`.
    pub const SITE_BACKOFF: &str = "mediapro_site_backoff_seconds";
    /// Attempts the site throttled (HTTP 429, a "rate limit" 403), by `site`.
    pub const SITE_THROTTLED: &str = "mediapro_site_throttled_total";
}

/// Every metric name, for checks (the dashboard test).
pub const NAMES: &[&str] = &[
    names::HTTP_REQUESTS,
    names::HTTP_DURATION,
    names::RATE_LIMITED,
    names::EVENT_CLIENTS,
    names::QUEUE_JOBS,
    names::TASKS,
    names::JOBS_STARTED,
    names::JOBS_FINISHED,
    names::JOB_DURATION,
    names::JOB_PICKUP_DELAY,
    names::WORKER_SLOTS,
    names::SUBPROCESS_KILLS,
    names::EGRESS_REFUSALS,
    names::SITE_JOBS,
    names::SITE_BACKOFF,
    names::SITE_THROTTLED,
];

/// Values of the `outcome` label: how an attempt ended (`outcome::settle` in the
/// worker decides).
pub mod outcome {
    pub const COMPLETED: &str = "completed";
    /// Completed, and the processing task it asked for was queued.
    pub const CHAINED: &str = "chained";
    pub const FAILED: &str = "failed";
    /// A transient failure sent back to the queue with a delay.
    pub const RETRIED: &str = "retried";
    pub const CANCELLED: &str = "cancelled";
    /// Another attempt owns the task, the worker is shutting down, or the task
    /// changed under the attempt: nothing was written.
    pub const LOST: &str = "lost";
}

/// Histogram bucket bounds (seconds) per histogram name.
pub fn buckets(name: &str) -> Option<&'static [f64]> {
    const HTTP: &[f64] =
        &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
    const JOB: &[f64] = &[0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
    const PICKUP: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
    match name {
        names::HTTP_DURATION => Some(HTTP),
        names::JOB_DURATION => Some(JOB),
        names::JOB_PICKUP_DELAY => Some(PICKUP),
        _ => None,
    }
}

/// Where an API or a worker records its metrics: a recorder of its own, or
/// nothing. Cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    recorder: Option<Arc<dyn Recorder + Send + Sync>>,
    /// Request metric handles by (method, route pattern, status): registered once,
    /// then each request only increments (no label strings, no registry lookup).
    http: Arc<RwLock<HashMap<HttpKey, (metrics::Counter, metrics::Histogram)>>>,
}

type HttpKey = (&'static str, &'static str, u16);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("on", &self.recorder.is_some()).finish()
    }
}

impl Metrics {
    /// Records into `recorder` (and describes every metric there).
    pub fn new(recorder: Arc<dyn Recorder + Send + Sync>) -> Self {
        let metrics = Self { recorder: Some(recorder), http: Arc::default() };
        metrics.with(describe);
        metrics
    }

    /// Records nothing.
    pub fn off() -> Self {
        Self { recorder: None, http: Arc::default() }
    }

    pub fn is_on(&self) -> bool {
        self.recorder.is_some()
    }

    fn with(&self, f: impl FnOnce()) {
        if let Some(recorder) = &self.recorder {
            metrics::with_local_recorder(recorder.as_ref(), f);
        }
    }

    /// One API request (`crates/api/src/auth.rs`, `access_log`): `route` is a
    /// registered pattern or `unmatched`, so the label values stay a small set.
    pub fn http_request(&self, method: &'static str, route: &'static str, status: u16, elapsed: Duration) {
        if self.recorder.is_none() {
            return;
        }
        let key = (method, route, status);
        let record = |(counter, histogram): &(metrics::Counter, metrics::Histogram)| {
            counter.increment(1);
            histogram.record(elapsed.as_secs_f64());
        };
        if let Ok(handles) = self.http.read()
            && let Some(found) = handles.get(&key)
        {
            record(found);
            return;
        }
        let mut made = None;
        self.with(|| {
            made = Some((
                metrics::counter!(names::HTTP_REQUESTS, "method" => method, "route" => route,
                    "status" => status.to_string()),
                metrics::histogram!(names::HTTP_DURATION, "method" => method, "route" => route),
            ));
        });
        if let Some(handles) = made {
            record(&handles);
            if let Ok(mut cache) = self.http.write() {
                cache.insert(key, handles);
            }
        }
    }

    pub fn rate_limited(&self, limit: &'static str) {
        self.with(|| metrics::counter!(names::RATE_LIMITED, "limit" => limit).increment(1));
    }

    /// An event-stream client came (`+1`) or went (`-1`).
    pub fn event_clients(&self, delta: f64) {
        self.with(|| metrics::gauge!(names::EVENT_CLIENTS).increment(delta));
    }

    pub fn queue_jobs(&self, queue: &'static str, waiting: u64, delayed: u64) {
        self.with(|| {
            metrics::gauge!(names::QUEUE_JOBS, "queue" => queue, "state" => "waiting").set(waiting as f64);
            metrics::gauge!(names::QUEUE_JOBS, "queue" => queue, "state" => "delayed").set(delayed as f64);
        });
    }

    pub fn tasks(&self, status: &'static str, count: i64) {
        self.with(|| metrics::gauge!(names::TASKS, "status" => status).set(count as f64));
    }

    /// An attempt began: the claim succeeded `pickup_delay` after the job was due.
    pub fn job_started(&self, queue: &'static str, kind: &'static str, pickup_delay: Option<Duration>) {
        self.with(|| {
            metrics::counter!(names::JOBS_STARTED, "queue" => queue, "kind" => kind).increment(1);
            if let Some(delay) = pickup_delay {
                metrics::histogram!(names::JOB_PICKUP_DELAY, "queue" => queue).record(delay.as_secs_f64());
            }
        });
    }

    /// An attempt ended with `outcome` (one of [`outcome`]) after `elapsed`.
    pub fn job_finished(
        &self,
        queue: &'static str,
        kind: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        self.with(|| {
            metrics::counter!(names::JOBS_FINISHED, "queue" => queue, "kind" => kind, "outcome" => outcome)
                .increment(1);
            metrics::histogram!(names::JOB_DURATION, "queue" => queue, "kind" => kind, "outcome" => outcome)
                .record(elapsed.as_secs_f64());
        });
    }

    /// A worker's slots on `queue`: `busy` of `total` in use.
    pub fn worker_slots(&self, queue: &'static str, busy: usize, total: usize) {
        self.with(|| {
            metrics::gauge!(names::WORKER_SLOTS, "queue" => queue, "state" => "busy").set(busy as f64);
            metrics::gauge!(names::WORKER_SLOTS, "queue" => queue, "state" => "free")
                .set(total.saturating_sub(busy) as f64);
        });
    }

    pub fn subprocess_killed(&self, reason: &'static str) {
        self.with(|| metrics::counter!(names::SUBPROCESS_KILLS, "reason" => reason).increment(1));
    }

    pub fn egress_refused(&self, reason: &'static str) {
        self.with(|| metrics::counter!(names::EGRESS_REFUSALS, "reason" => reason).increment(1));
    }

    /// A site's jobs across every worker and its back-off left (read from the
    /// site gate when scraped).
    pub fn site(&self, site: &str, running: u64, waiting: u64, backoff: Duration) {
        self.with(|| {
            let site = site.to_owned();
            metrics::gauge!(names::SITE_JOBS, "site" => site.clone(), "state" => "running")
                .set(running as f64);
            metrics::gauge!(names::SITE_JOBS, "site" => site.clone(), "state" => "waiting")
                .set(waiting as f64);
            metrics::gauge!(names::SITE_BACKOFF, "site" => site).set(backoff.as_secs_f64());
        });
    }

    /// The site throttled an attempt.
    pub fn site_throttled(&self, site: &str) {
        self.with(|| metrics::counter!(names::SITE_THROTTLED, "site" => site.to_owned()).increment(1));
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(names::HTTP_REQUESTS, "API requests by method, matched route and status");
    describe_histogram!(names::HTTP_DURATION, Unit::Seconds, "API request latency by method and route");
    describe_counter!(names::RATE_LIMITED, "Requests refused by admission control, by limit");
    describe_gauge!(names::EVENT_CLIENTS, "Open GET /api/events streams");
    describe_gauge!(names::QUEUE_JOBS, "Jobs not yet taken, by queue and state (waiting, delayed)");
    describe_gauge!(names::TASKS, "Tasks in the store by status");
    describe_counter!(names::JOBS_STARTED, "Attempts begun (task claimed) by queue and kind");
    describe_counter!(names::JOBS_FINISHED, "Attempts ended by queue, kind and outcome");
    describe_histogram!(names::JOB_DURATION, Unit::Seconds, "Attempt run time, claim to end");
    describe_histogram!(names::JOB_PICKUP_DELAY, Unit::Seconds, "From a job being due to its claim");
    describe_gauge!(names::WORKER_SLOTS, "Job slots of this worker by queue and state (busy, free)");
    describe_counter!(names::SUBPROCESS_KILLS, "yt-dlp/ffmpeg runs stopped early, by reason");
    describe_counter!(names::EGRESS_REFUSALS, "Connections refused by the egress guard, by reason");
    describe_gauge!(names::SITE_JOBS, "Jobs of a site profile's site across all workers, by site and state");
    describe_gauge!(names::SITE_BACKOFF, "Seconds left of a site's back-off after throttling, by site");
    describe_counter!(names::SITE_THROTTLED, "Attempts the site throttled (429, rate-limit 403), by site");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prometheus_names_and_histograms_have_buckets() {
        let mut seen = std::collections::HashSet::new();
        for name in NAMES {
            assert!(seen.insert(*name), "{name} listed twice");
            assert!(name.starts_with("mediapro_"), "{name}");
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{name}");
        }
        for name in [names::HTTP_DURATION, names::JOB_DURATION, names::JOB_PICKUP_DELAY] {
            let b = buckets(name).expect("histogram buckets");
            assert!(b.windows(2).all(|w| w[0] < w[1]), "{name}: buckets not increasing");
        }
    }

    /// Every metric the Grafana dashboard queries exists, and every metric is on
    /// the dashboard (histograms through their `_bucket`, `_sum` or `_count`).
    #[test]
    fn the_grafana_dashboard_uses_exactly_these_names() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docker/grafana-dashboard.json");
        let text = std::fs::read_to_string(path).expect("docker/grafana-dashboard.json");
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
        let mut used = std::collections::BTreeSet::new();
        let panels = dashboard["panels"].as_array().expect("panels");
        for target in panels.iter().flat_map(|p| p["targets"].as_array().into_iter().flatten()) {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(i) = rest.find("mediapro_") {
                let tail = &rest[i..];
                let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
                used.insert(tail[..end].to_owned());
                rest = &tail[end..];
            }
        }
        assert!(!used.is_empty(), "no metric in the dashboard");
        let base = |name: &str| -> String {
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(b) = name.strip_suffix(suffix)
                    && buckets(b).is_some()
                {
                    return b.to_owned();
                }
            }
            name.to_owned()
        };
        let used: std::collections::BTreeSet<String> = used.iter().map(|n| base(n)).collect();
        for name in &used {
            assert!(NAMES.contains(&name.as_str()), "the dashboard queries {name}, which no code records");
        }
        for name in NAMES {
            assert!(used.contains(*name), "{name} is not on the dashboard");
        }
    }

    #[test]
    fn off_records_nothing_and_does_not_panic() {
        let m = Metrics::off();
        assert!(!m.is_on());
        m.http_request("GET", "/x", 200, Duration::from_millis(1));
        m.job_finished("download", "download", outcome::COMPLETED, Duration::from_secs(1));
    }
}
