//! Prometheus metrics against the real API and worker: after a download, a
//! processing job and a download the egress guard blocks, the API's `GET /metrics`
//! and the worker's `worker.metrics_bind` endpoint hold the right values (parsed
//! from the text format, not matched as substrings); `/metrics` needs a key when
//! keys are on, and is gone with `server.metrics = false`.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use mediapro_core::settings::{ApiKeyEntry, Settings};
use serde_json::json;

use crate::helpers::{AppOptions, TestApp};

const LIMIT: Duration = Duration::from_secs(90);

/// One sample of the text format: name, labels, value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text format (comments skipped; label values without
/// escaped quotes, which is all MediaPro emits).
pub fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("bad labels: {line}"));
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line}"));
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        samples.push(Sample { name, labels, value });
    }
    samples
}

/// The value of the one sample named `name` whose labels include `labels`
/// (`None` when there is none; panics when several match).
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} matches several samples: {found:?}");
    found.first().map(|s| s.value)
}

async fn scrape(client: &reqwest::Client, url: &str) -> String {
    let res = client.get(url).send().await.expect("scrape");
    assert_eq!(res.status(), 200, "{url}");
    let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    res.text().await.expect("body")
}

/// Scrapes `url` until `ready` holds (a job's end is counted just after its task
/// turns final), at most 10 s; returns the last text.
async fn scrape_until(client: &reqwest::Client, url: &str, ready: impl Fn(&[Sample]) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = scrape(client, url).await;
        if ready(&parse(&text)) || start.elapsed() > Duration::from_secs(10) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn only_loopback_one(s: &mut Settings) {
    s.security.allow_private_networks = false;
    s.security.allowed_networks = vec!["127.0.0.1/32".into()];
    s.limits.max_attempts = 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_worker_metrics_count_requests_jobs_queues_and_tasks() {
    // 127.0.0.2 plays an internal host; the page server on 127.0.0.1 redirects to it.
    let internal = crate::egress::serve("127.0.0.2", Vec::new());
    let pages = vec![("/redirect".into(), format!("REDIRECT {}/small.mp4", internal.base), "text/plain")];
    let outside = crate::egress::serve("127.0.0.1", pages);
    let app = TestApp::spawn_with(AppOptions {
        tweak: only_loopback_one,
        worker_metrics: true,
        ..AppOptions::default()
    })
    .await;
    let worker_url = app.worker_metrics.clone().expect("worker metrics");

    let download = app.submit_download(json!({ "url": format!("{}/small.mp4", outside.base) })).await;
    let task = app.wait_final(&download, LIMIT).await;
    assert_eq!(task["status"], "completed", "{task}");
    let input = task["downloaded_files"][0].as_str().expect("file").to_owned();
    let process = app.submit_process(&input, json!({"trim": {"start": 0, "duration": 1}})).await;
    let task = app.wait_final(&process, LIMIT).await;
    assert_eq!(task["status"], "completed", "{task}");
    let blocked = app.submit_download(json!({ "url": format!("{}/redirect", outside.base) })).await;
    let task = app.wait_final(&blocked, LIMIT).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(app.get("/no/such/route/123").await.status(), 404);

    // The worker: every attempt counted once, by queue, kind and outcome.
    let finished = |s: &[Sample], queue: &str, outcome: &str| {
        value(s, "mediapro_jobs_finished_total", &[("queue", queue), ("kind", queue), ("outcome", outcome)])
    };
    let worker_text = scrape_until(&app.client, &worker_url, |s| {
        finished(s, "download", "failed") == Some(1.0)
            && value(s, "mediapro_worker_slots", &[("queue", "download"), ("state", "busy")]) == Some(0.0)
    })
    .await;
    let w = parse(&worker_text);
    for queue in ["download", "process"] {
        let started = value(&w, "mediapro_jobs_started_total", &[("queue", queue), ("kind", queue)]);
        assert_eq!(started, Some(if queue == "download" { 2.0 } else { 1.0 }), "{queue}\n{worker_text}");
        assert_eq!(finished(&w, queue, "completed"), Some(1.0), "{queue}\n{worker_text}");
        let labels = [("queue", queue), ("kind", queue), ("outcome", "completed")];
        assert_eq!(value(&w, "mediapro_job_duration_seconds_count", &labels), Some(1.0), "{worker_text}");
        assert!(value(&w, "mediapro_job_duration_seconds_sum", &labels).is_some_and(|s| s > 0.0));
        let pickups = value(&w, "mediapro_job_pickup_delay_seconds_count", &[("queue", queue)]);
        assert_eq!(pickups, started, "{worker_text}");
        let busy = value(&w, "mediapro_worker_slots", &[("queue", queue), ("state", "busy")]);
        let free = value(&w, "mediapro_worker_slots", &[("queue", queue), ("state", "free")]);
        assert_eq!((busy, free), (Some(0.0), Some(2.0)), "{queue} (concurrency 2)\n{worker_text}");
    }
    assert_eq!(finished(&w, "download", "failed"), Some(1.0), "{worker_text}");
    let refusals = value(&w, "mediapro_egress_refusals_total", &[("reason", "loopback")]);
    assert!(refusals.is_some_and(|n| n >= 1.0), "{worker_text}");
    // Histograms come with buckets, and the +Inf bucket equals the count.
    let inf = value(&w, "mediapro_job_pickup_delay_seconds_bucket", &[("queue", "download"), ("le", "+Inf")]);
    assert_eq!(inf, Some(2.0), "{worker_text}");

    // The worker's endpoint serves /metrics and nothing else.
    let other = worker_url.replace("/metrics", "/other");
    assert_eq!(app.client.get(&other).send().await.expect("get").status(), 404);
    assert_eq!(app.client.post(&worker_url).send().await.expect("post").status(), 405);

    // The API: requests by route pattern (never the raw path), queue depth, tasks.
    let api_text = scrape(&app.client, &format!("{}/metrics", app.address)).await;
    let a = parse(&api_text);
    let requests = |method: &str, route: &str, status: &str| {
        value(&a, "mediapro_http_requests_total", &[("method", method), ("route", route), ("status", status)])
    };
    assert_eq!(requests("POST", "/api/download", "202"), Some(2.0), "{api_text}");
    assert_eq!(requests("POST", "/api/process", "202"), Some(1.0), "{api_text}");
    assert!(requests("GET", "/api/tasks/{task_id}", "200").is_some_and(|n| n >= 3.0), "{api_text}");
    assert_eq!(requests("GET", "unmatched", "404"), Some(1.0), "{api_text}");
    assert!(
        a.iter().all(|s| s.labels.get("route").is_none_or(|r| !r.contains(&download) && !r.contains("/no/"))),
        "a raw path became a label: {api_text}"
    );
    let latency = [("method", "POST"), ("route", "/api/download")];
    assert_eq!(value(&a, "mediapro_http_request_duration_seconds_count", &latency), Some(2.0), "{api_text}");
    for queue in ["download", "process"] {
        for state in ["waiting", "delayed"] {
            let depth = value(&a, "mediapro_queue_jobs", &[("queue", queue), ("state", state)]);
            assert_eq!(depth, Some(0.0), "{queue} {state}\n{api_text}");
        }
    }
    let tasks = |status: &str| value(&a, "mediapro_tasks", &[("status", status)]);
    assert_eq!(tasks("completed"), Some(2.0), "{api_text}");
    assert_eq!(tasks("failed"), Some(1.0), "{api_text}");
    assert_eq!(tasks("pending"), Some(0.0), "{api_text}");
    assert_eq!(tasks("downloading"), Some(0.0), "{api_text}");
    assert_eq!(internal.hits(), 0, "the internal host was reached");

    if std::env::var_os("PRINT_METRICS").is_some() {
        println!("--- API /metrics ---\n{api_text}\n--- worker /metrics ---\n{worker_text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_counts_jobs_no_worker_took_and_event_clients_are_a_gauge() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..AppOptions::default() }).await;
    for _ in 0..3 {
        app.submit_download(json!({ "url": "http://127.0.0.1:9/v.mp4" })).await;
    }
    let events = app.client.get(format!("{}/api/events", app.address)).send().await.expect("events");
    assert_eq!(events.status(), 200);
    let a = parse(&scrape(&app.client, &format!("{}/metrics", app.address)).await);
    assert_eq!(value(&a, "mediapro_queue_jobs", &[("queue", "download"), ("state", "waiting")]), Some(3.0));
    assert_eq!(value(&a, "mediapro_tasks", &[("status", "pending")]), Some(3.0));
    assert_eq!(value(&a, "mediapro_event_stream_clients", &[]), Some(1.0));
    drop(events);
    // The server notices the client is gone when a write fails (a keep-alive or
    // an event): new tasks send events until it does.
    let start = Instant::now();
    let mut clients = None;
    while start.elapsed() < Duration::from_secs(20) {
        app.submit_download(json!({ "url": "http://127.0.0.1:9/v.mp4" })).await;
        let text = scrape(&app.client, &format!("{}/metrics", app.address)).await;
        clients = value(&parse(&text), "mediapro_event_stream_clients", &[]);
        if clients == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(clients, Some(0.0), "the closed stream is still counted");
}

const FULL: &str = "full-key-metrics-0123456789abcdef";
const READ: &str = "read-key-metrics-0123456789abcdef";

fn with_keys(s: &mut Settings) {
    s.security.api_keys = vec![ApiKeyEntry::new(FULL)];
    s.security.read_api_keys = vec![ApiKeyEntry::new(READ)];
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_a_key_when_keys_are_on_and_are_gone_when_off() {
    let app =
        TestApp::spawn_with(AppOptions { tweak: with_keys, start_worker: false, ..AppOptions::default() })
            .await;
    let url = format!("{}/metrics", app.address);
    let res = app.client.get(&url).send().await.expect("scrape");
    assert_eq!(res.status(), 401);
    let res =
        app.client.get(&url).header("x-api-key", "wrong-key-metrics-0123456789abc").send().await.expect("s");
    assert_eq!(res.status(), 401);
    for key in [READ, FULL] {
        let res = app.client.get(&url).bearer_auth(key).send().await.expect("scrape");
        assert_eq!(res.status(), 200);
        let s = parse(&res.text().await.expect("body"));
        // The refused scrapes were counted too, under the route's pattern.
        let refused = value(&s, "mediapro_http_requests_total", &[("route", "/metrics"), ("status", "401")]);
        assert_eq!(refused, Some(2.0));
    }
    let res = app.client.post(&url).bearer_auth(FULL).send().await.expect("post");
    assert_eq!(res.status(), 405);

    let off = TestApp::spawn_with(AppOptions {
        tweak: |s| s.server.metrics = false,
        start_worker: false,
        ..AppOptions::default()
    })
    .await;
    let res = off.get("/metrics").await;
    assert_eq!(res.status(), 404);
}
