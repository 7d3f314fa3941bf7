//! The site gate (`crates/queue/src/site_gate.rs`, `crates/worker/src/jobs/site.rs`)
//! against real worker processes, Redis and yt-dlp: a site profile's
//! `max_concurrent` and `min_interval_seconds` hold across two worker processes,
//! a killed worker's slot comes back after its lease, and a site answering 429
//! is backed off until it serves. Only 127.0.0.1 is reachable
//! (`allowed_networks = 127.0.0.1/32`); "another site" is `localhost` on another
//! port (the profile names `127.0.0.1`, which matches only itself).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::TcpListener,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{HttpRequest, HttpResponse, web};
use mediapro_core::{
    retry::RetryPolicy,
    settings::Settings,
    task::{Task, TaskRequest},
};
use mediapro_queue::{Dispatcher, QueueClient};
use serde_json::{Value, json};

use crate::{
    events::Stream,
    helpers::{AppOptions, TestApp, media},
    lifecycle::{ChildGuard, scopeguard},
    metrics::{parse, value},
};

const LIMIT: Duration = Duration::from_secs(180);

/// One request the site saw.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    start: Instant,
    end: Instant,
    status: u16,
}

#[derive(Default)]
struct SiteLog {
    hits: Mutex<Vec<Hit>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Requests seen per path (for `/throttle/…` and `/hang/…`).
    seen: Mutex<BTreeMap<String, usize>>,
    /// Every request's path and arrival, as it arrives.
    arrivals: Mutex<Vec<(String, Instant)>>,
}

/// A media site on 127.0.0.1 that records every request (start, end, status)
/// and how many were in flight at once. Paths:
/// - `/slow/<tag>.mp4`: the clip after `delay` (so each download takes a while);
/// - `/hang/<tag>.mp4`: the first request waits 30 s, later ones as `/slow/`;
/// - `/throttle/<tag>.mp4`: 429 Too Many Requests to the first `throttled`
///   requests, then the clip at once.
struct Site {
    port: u16,
    log: Arc<SiteLog>,
}

impl Site {
    fn serve(delay: Duration, throttled: usize) -> Self {
        let clip = web::Bytes::from(std::fs::read(media().dir.join("small.mp4")).expect("small.mp4"));
        let log = Arc::new(SiteLog::default());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = log.clone();
        let server = actix_web::HttpServer::new(move || {
            let (clip, log) = (clip.clone(), state.clone());
            actix_web::App::new().default_service(web::to(move |req: HttpRequest| {
                let (clip, log) = (clip.clone(), log.clone());
                async move { answer(&req, &log, clip, delay, throttled).await }
            }))
        })
        .workers(4)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        Site { port, log }
    }

    fn hits(&self) -> Vec<Hit> {
        self.log.hits.lock().expect("hits").clone()
    }

    fn max_in_flight(&self) -> usize {
        self.log.max_in_flight.load(Ordering::SeqCst)
    }

    /// When each path was first asked for: a job's start, as the site sees it.
    fn first_hits(&self) -> BTreeMap<String, Instant> {
        let mut first = BTreeMap::new();
        for h in self.hits() {
            first.entry(h.path).and_modify(|t: &mut Instant| *t = (*t).min(h.start)).or_insert(h.start);
        }
        first
    }
}

async fn answer(
    req: &HttpRequest,
    log: &SiteLog,
    clip: web::Bytes,
    delay: Duration,
    throttled: usize,
) -> HttpResponse {
    let start = Instant::now();
    let path = req.path().to_owned();
    let now = log.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    log.max_in_flight.fetch_max(now, Ordering::SeqCst);
    log.arrivals.lock().expect("arrivals").push((path.clone(), start));
    let nth = {
        let mut seen = log.seen.lock().expect("seen");
        let n = seen.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    let response = if path.starts_with("/throttle/") && nth <= throttled {
        HttpResponse::TooManyRequests().insert_header(("Retry-After", "1")).finish()
    } else {
        let wait = if path.starts_with("/hang/") && nth == 1 { Duration::from_secs(30) } else { delay };
        if path.starts_with("/slow/") || path.starts_with("/hang/") {
            tokio::time::sleep(wait).await;
        }
        HttpResponse::Ok().content_type("video/mp4").body(clip)
    };
    log.in_flight.fetch_sub(1, Ordering::SeqCst);
    let status = response.status().as_u16();
    log.hits.lock().expect("hits").push(Hit { path, start, end: Instant::now(), status });
    response
}

fn only_loopback_one(s: &mut Settings) {
    s.security.allow_private_networks = false;
    s.security.allowed_networks = vec!["127.0.0.1/32".into()];
}

async fn put_profile(app: &TestApp, name: &str, body: Value) {
    let res = app
        .client
        .put(format!("{}/api/site-profiles/{name}", app.address))
        .json(&body)
        .send()
        .await
        .expect("PUT profile");
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap_or_default());
}

/// A download submitted straight to the dispatcher, as the API would after
/// validation. For `localhost`: the API refuses that name whatever it resolves
/// to while private networks are off, but the worker's egress guard resolves
/// it to 127.0.0.1, which `allowed_networks` allows, so it plays a second site
/// without any other address.
async fn submit_direct(app: &TestApp, url: &str) -> String {
    let request: TaskRequest =
        serde_json::from_value(json!({ "kind": "download", "url": url })).expect("a download request");
    let task = Task::new_pending(request);
    let queue = Arc::new(QueueClient::new(app.settings.redis.clone()));
    let retry = RetryPolicy::from_limits(&app.settings.limits);
    Dispatcher::new(app.store.clone(), queue, retry).submit(&task).await.expect("queued");
    task.task_id.to_string()
}

fn workers(app: &TestApp, n: usize, concurrency: usize) -> Vec<ChildGuard> {
    (0..n).map(|_| scopeguard(app.spawn_worker_process_with("download", concurrency))).collect()
}

/// Polls every task until all are final; returns them, and every distinct
/// (status, phase) each task showed on the way.
async fn follow(app: &TestApp, ids: &[String]) -> (Vec<Value>, BTreeMap<String, BTreeSet<(String, String)>>) {
    let start = Instant::now();
    let mut seen: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    loop {
        let mut tasks = Vec::new();
        for id in ids {
            let t = app.task(id).await;
            let state =
                (t["status"].as_str().unwrap_or("").to_owned(), t["phase"].as_str().unwrap_or("").to_owned());
            seen.entry(id.clone()).or_default().insert(state);
            tasks.push(t);
        }
        if tasks.iter().all(|t| matches!(t["status"].as_str(), Some("completed" | "failed" | "cancelled"))) {
            return (tasks, seen);
        }
        assert!(start.elapsed() < LIMIT, "not final after {LIMIT:?}: {tasks:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_one_holds_across_two_worker_processes_while_another_site_runs_freely() {
    let app = TestApp::spawn_with(AppOptions {
        start_worker: false,
        tweak: only_loopback_one,
        ..AppOptions::default()
    })
    .await;
    let site = Site::serve(Duration::from_millis(1500), 0);
    let other = Site::serve(Duration::from_millis(1500), 0);
    put_profile(&app, "slow-site", json!({ "domains": ["127.0.0.1"], "max_concurrent": 1 })).await;
    let mut events = Stream::open(&app.address, "", None).await;

    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            app.submit_download(json!({ "url": format!("http://127.0.0.1:{}/slow/s{i}.mp4", site.port) }))
                .await,
        );
    }
    let mut others = Vec::new();
    for i in 0..2 {
        others.push(submit_direct(&app, &format!("http://localhost:{}/slow/o{i}.mp4", other.port)).await);
    }
    // Two worker processes with two download slots each: four slots.
    let _workers = workers(&app, 2, 2);

    // While the site's jobs run one at a time, the gauges show it.
    let mut gauges_seen = false;
    let start = Instant::now();
    while !gauges_seen && start.elapsed() < Duration::from_secs(60) {
        let text = app.get("/metrics").await.text().await.expect("metrics");
        let s = parse(&text);
        let running = value(&s, "mediapro_site_jobs", &[("site", "slow-site"), ("state", "running")]);
        let waiting = value(&s, "mediapro_site_jobs", &[("site", "slow-site"), ("state", "waiting")]);
        gauges_seen = running == Some(1.0) && waiting.is_some_and(|w| w >= 1.0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all: Vec<String> = ids.iter().chain(&others).cloned().collect();
    let (tasks, seen) = follow(&app, &all).await;
    for t in &tasks {
        assert_eq!(t["status"], "completed", "{t}");
    }
    for (id, t) in ids.iter().zip(&tasks) {
        assert_eq!(t["site_profile"], "slow-site", "{id}: {t}");
    }
    for t in &tasks[4..] {
        assert_eq!(t["site_profile"], Value::Null, "{t}");
    }
    assert!(gauges_seen, "mediapro_site_jobs never showed 1 running and some waiting");

    // The site never served two requests at once, yet all four jobs went through it.
    let hits = site.hits();
    println!("site: max in flight {}, {} requests", site.max_in_flight(), hits.len());
    for h in &hits {
        println!(
            "  {} {:>6} ms .. {:>6} ms  {}",
            h.path,
            (h.start - start).as_millis(),
            (h.end - start).as_millis(),
            h.status
        );
    }
    assert_eq!(site.max_in_flight(), 1, "{hits:#?}");
    assert_eq!(site.first_hits().len(), 4);
    // Some of them waited for the site, visibly, and a waiting task was pending.
    // Clients heard of the wait: a `pending` event in phase `waiting_for_site`.
    let mut waiting_events = 0;
    while let Some(e) = events.next(Duration::from_secs(2)).await {
        if e.data["phase"] == "waiting_for_site" {
            assert_eq!(
                (e.data["status"].as_str(), e.data["site_profile"].as_str()),
                (Some("pending"), Some("slow-site"))
            );
            waiting_events += 1;
        }
    }
    println!("waiting_for_site events: {waiting_events}");
    assert!(waiting_events >= 1);
    let ran_on: BTreeSet<&str> = tasks[..4].iter().filter_map(|t| t["worker"].as_str()).collect();
    println!("the site's jobs ran on {ran_on:?}");
    let waited = seen.values().filter(|s| s.contains(&("pending".into(), "waiting_for_site".into()))).count();
    println!("tasks seen waiting_for_site: {waited} of 4");
    assert!(waited >= 1, "{seen:?}");
    for id in &others {
        assert!(!seen[id].iter().any(|(_, phase)| phase == "waiting_for_site"), "{seen:?}");
    }
    // The other site's two jobs ran at once, beside the gated site's, not after them.
    println!("other site: max in flight {}", other.max_in_flight());
    assert_eq!(other.max_in_flight(), 2, "{:#?}", other.hits());
    let other_done = other.hits().iter().map(|h| h.end).max().expect("other hits");
    let site_done = hits.iter().map(|h| h.end).max().expect("site hits");
    assert!(other_done < site_done, "the other site waited for the gated one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_holding_the_site_slot_blocks_it_no_longer_than_the_lease() {
    let app = TestApp::spawn_with(AppOptions {
        start_worker: false,
        tweak: only_loopback_one,
        ..AppOptions::default()
    })
    .await;
    let lease = Duration::from_secs(app.settings.worker.lease_seconds);
    let site = Site::serve(Duration::from_millis(200), 0);
    put_profile(&app, "one-at-a-time", json!({ "domains": ["127.0.0.1"], "max_concurrent": 1 })).await;

    let mut victim = scopeguard(app.spawn_worker_process_with("download", 1));
    let hung =
        app.submit_download(json!({ "url": format!("http://127.0.0.1:{}/hang/h.mp4", site.port) })).await;
    let start = Instant::now();
    while site.hits().is_empty() && site.log.in_flight.load(Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "the first job never reached the site");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A second job of the site, on a second worker, waits for the slot.
    let next =
        app.submit_download(json!({ "url": format!("http://127.0.0.1:{}/slow/n.mp4", site.port) })).await;
    let _other = scopeguard(app.spawn_worker_process_with("download", 1));
    let start = Instant::now();
    loop {
        let t = app.task(&next).await;
        if t["phase"] == "waiting_for_site" {
            assert_eq!(t["status"], "pending", "{t}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never waited for the site: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SIGKILL the worker holding the slot: no release, only its lease ends it.
    victim.kill();
    let killed = Instant::now();
    // The next request the site sees: the waiting task, or the killed one taken
    // over by the second worker (whichever asks the gate first once the lease
    // is over). The killed worker's own yt-dlp (it outlives a bare SIGKILL) is
    // still waiting for the first answer, 30 s long.
    let (path, start) = loop {
        let next_hit =
            site.log.arrivals.lock().expect("arrivals").iter().find(|(_, at)| *at > killed).cloned();
        if let Some(hit) = next_hit {
            break hit;
        }
        assert!(killed.elapsed() < Duration::from_secs(60), "no job reached the site again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let blocked = start - killed;
    println!("lease {lease:?}; the site's next job ({path}) started {blocked:?} after the SIGKILL");
    // The lease, plus a waiting task's next look (at most 1.5 s) and its start.
    assert!(blocked <= lease + Duration::from_secs(3), "blocked {blocked:?}");
    for id in [&next, &hung] {
        let t = app.wait_final(id, LIMIT).await;
        assert_eq!(t["status"], "completed", "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_interval_spaces_job_starts_across_two_worker_processes() {
    let app = TestApp::spawn_with(AppOptions {
        start_worker: false,
        tweak: only_loopback_one,
        ..AppOptions::default()
    })
    .await;
    let site = Site::serve(Duration::ZERO, 0);
    put_profile(&app, "spaced", json!({ "domains": ["127.0.0.1"], "min_interval_seconds": 2 })).await;
    let _workers = workers(&app, 2, 2);
    // No warm-up: the workers' first jobs may run a cold yt-dlp, slower from
    // grant to first request than a warm one. The spacing counts from each
    // job's first contact with the site, and nobody starts before that contact
    // is reported, so the site sees the starts spaced all the same.
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            app.submit_download(json!({ "url": format!("http://127.0.0.1:{}/slow/m{i}.mp4", site.port) }))
                .await,
        );
    }
    let (tasks, _) = follow(&app, &ids).await;
    for t in &tasks {
        assert_eq!(t["status"], "completed", "{t}");
    }
    let mut starts: Vec<Instant> = site.first_hits().into_values().collect();
    starts.sort();
    assert_eq!(starts.len(), 4);
    let gaps: Vec<f64> = starts.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    let workers: BTreeSet<&str> = tasks.iter().filter_map(|t| t["worker"].as_str()).collect();
    let mut claimed: Vec<f64> = tasks
        .iter()
        .map(|t| {
            let at = time::OffsetDateTime::parse(
                t["started_at"].as_str().expect("started_at"),
                &time::format_description::well_known::Rfc3339,
            )
            .expect("rfc3339");
            (at - time::OffsetDateTime::UNIX_EPOCH).as_seconds_f64()
        })
        .collect();
    claimed.sort_by(f64::total_cmp);
    let claim_gaps: Vec<f64> = claimed.windows(2).map(|w| w[1] - w[0]).collect();
    println!("job starts at the site, gaps (s): {gaps:.3?}; claims (started_at), gaps (s): {claim_gaps:.3?}");
    println!("workers: {workers:?}");
    assert!(gaps.iter().all(|g| *g >= 2.0), "{gaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_site_is_backed_off_and_the_task_completes_once_it_serves() {
    fn tweak(s: &mut Settings) {
        only_loopback_one(s);
        s.limits.max_attempts = 5;
        s.limits.retry_first_delay_seconds = 1;
        s.limits.site_backoff_first_seconds = 2;
        s.limits.site_backoff_max_seconds = 20;
    }
    let app = TestApp::spawn_with(AppOptions { tweak, worker_metrics: true, ..AppOptions::default() }).await;
    let site = Site::serve(Duration::ZERO, 2);
    put_profile(&app, "throttler", json!({ "domains": ["127.0.0.1"] })).await;
    let id =
        app.submit_download(json!({ "url": format!("http://127.0.0.1:{}/throttle/t.mp4", site.port) })).await;

    // The task's history, as its JSON showed it; and the profile's back-off.
    let mut history: Vec<(String, String, i64, String)> = Vec::new();
    let mut backoffs = Vec::new();
    let start = Instant::now();
    let task = loop {
        let t = app.task(&id).await;
        let entry = (
            t["status"].as_str().unwrap_or("").to_owned(),
            t["phase"].as_str().unwrap_or("").to_owned(),
            t["attempts"].as_i64().unwrap_or(-1),
            t["error"].as_str().unwrap_or("").to_owned(),
        );
        if history.last() != Some(&entry) {
            history.push(entry);
        }
        let profile: Value = app.get("/api/site-profiles/throttler").await.json().await.expect("profile");
        if let Some(b) = profile["backoff_seconds"].as_f64().filter(|b| *b > 0.0) {
            backoffs.push(b);
        }
        if matches!(t["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
            break t;
        }
        assert!(start.elapsed() < LIMIT, "{history:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("history:");
    for h in &history {
        println!("  {h:?}");
    }
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["attempts"], 3, "two throttled attempts, then the one the site served");
    assert_eq!(task["site_profile"], "throttler");
    let retried: Vec<_> = history
        .iter()
        .filter(|(status, _, _, error)| status == "pending" && error.contains("HTTP Error 429"))
        .collect();
    assert!(retried.iter().any(|h| h.2 == 1) && retried.iter().any(|h| h.2 == 2), "{history:#?}");
    assert!(
        history.iter().any(|(status, phase, _, _)| status == "pending" && phase == "waiting_for_site"),
        "{history:#?}"
    );
    assert!(!backoffs.is_empty(), "the profile never showed its back-off");

    // The site saw the attempts spaced by a growing back-off: 2 s, then 4 s.
    let hits = site.hits();
    let times: Vec<Instant> = hits.iter().map(|h| h.start).collect();
    let statuses: Vec<u16> = hits.iter().map(|h| h.status).collect();
    println!("site answers: {statuses:?}; back-offs the profile showed: {backoffs:.1?}");
    assert_eq!(&statuses[..2], &[429, 429]);
    assert!(statuses[2..].iter().all(|s| *s == 200));
    let first_gap = times[1] - hits[0].end;
    let second_gap = times[2] - hits[1].end;
    println!(
        "after the 1st 429 the site was asked again {first_gap:?} later, after the 2nd {second_gap:?} later"
    );
    assert!(first_gap >= Duration::from_secs(2), "{first_gap:?}");
    assert!(second_gap >= Duration::from_secs(4), "{second_gap:?}");
    // A success resets the back-off.
    let profile: Value = app.get("/api/site-profiles/throttler").await.json().await.expect("profile");
    assert_eq!(profile["backoff_seconds"], 0.0, "{profile}");

    let worker = app.worker_metrics.clone().expect("worker metrics");
    let text = app.client.get(&worker).send().await.expect("scrape").text().await.expect("text");
    let throttled = value(&parse(&text), "mediapro_site_throttled_total", &[("site", "throttler")]);
    assert_eq!(throttled, Some(2.0), "{text}");
}
