//! Idle workers sleep until a push wakes them (`crates/queue/src/wake.rs`,
//! `crates/worker/src/poll.rs`): with an idle poll far longer than the test, a
//! submitted job still starts at once, a delayed retry starts when it is due, and
//! a job whose wake-up never came is found by the idle poll.

use std::{
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use apalis_core::{
    backend::TaskSink,
    task::{builder::TaskBuilder, task_id::TaskId},
};
use mediapro_core::{
    jobs::JobPayload,
    settings::Settings,
    task::{Task, TaskKind, TaskRequest},
};
use serde_json::{Value, json};

use crate::{
    faults::{LocalRedis, free_port},
    helpers::{AppOptions, Fixtures, TestApp, media},
};

const LIMIT: Duration = Duration::from_secs(90);

/// An idle poll no test here waits for. An apalis worker also fetches at each
/// of its heartbeats: every 20 s here, not tests/isolated.toml's 1 s, so a quick
/// start can only come from a wake-up (checked: without the wake-ups the first
/// two tests fail).
fn long_idle_poll(s: &mut Settings) {
    s.redis.idle_poll_interval_ms = 30_000;
    s.redis.heartbeat_seconds = 20;
    s.redis.missed_heartbeats = 3;
    s.limits.retry_first_delay_seconds = 1;
}

/// Waits until the in-process worker's wake-up subscription is up (a push sent
/// before it would only be found by the idle poll), then past the fast phase
/// that follows a worker's start.
async fn wait_until_idle(app: &TestApp) {
    let client = redis::Client::open(app.settings.redis.url.as_str()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let channel = mediapro_queue::wake::channel(&app.settings.redis.namespace, TaskKind::Download);
    let start = Instant::now();
    loop {
        let (_, subscribers): (String, i64) =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).query_async(&mut conn).await.expect("numsub");
        if subscribers > 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the worker never subscribed to {channel}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

/// Time from `since` until the task leaves `pending`.
async fn time_to_start(app: &TestApp, id: &str, since: Instant, limit: Duration) -> Duration {
    loop {
        let task = app.task(id).await;
        if task["status"] != "pending" {
            return since.elapsed();
        }
        assert!(since.elapsed() < limit, "task {id} still pending after {limit:?}: {task}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_is_woken_by_a_push_not_by_its_idle_poll() {
    let app = TestApp::spawn_with(AppOptions { tweak: long_idle_poll, ..AppOptions::default() }).await;
    let fx = Fixtures::serve().await;
    for round in 0..3 {
        wait_until_idle(&app).await;
        let submitted = Instant::now();
        let id = app.submit_download(json!({ "url": fx.url("small.mp4") })).await;
        let started = time_to_start(&app, &id, submitted, Duration::from_secs(20)).await;
        assert!(started < Duration::from_secs(1), "round {round}: picked up after {started:?}");
        let task = app.wait_final(&id, LIMIT).await;
        assert_eq!(task["status"], "completed", "{task}");
    }
}

/// Serves the test media, answering 503 while `broken` is set.
fn flaky_server(broken: Arc<AtomicBool>) -> String {
    let dir = media().dir.clone();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://127.0.0.1:{}", listener.local_addr().expect("addr").port());
    let server = actix_web::HttpServer::new(move || {
        let broken = broken.clone();
        actix_web::App::new()
            .wrap_fn(move |req, srv| {
                let fail = broken.load(Ordering::SeqCst);
                let call = actix_web::dev::Service::call(srv, req);
                async move {
                    let res = call.await?;
                    if !fail {
                        return Ok(res);
                    }
                    Ok(res.into_response(actix_web::HttpResponse::ServiceUnavailable().finish()))
                }
            })
            .service(actix_files::Files::new("/", dir.clone()))
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_retry_starts_when_due_not_at_the_idle_poll() {
    let app = TestApp::spawn_with(AppOptions { tweak: long_idle_poll, ..AppOptions::default() }).await;
    let broken = Arc::new(AtomicBool::new(true));
    let base = flaky_server(broken.clone());
    wait_until_idle(&app).await;
    let id = app.submit_download(json!({ "url": format!("{base}/small.mp4") })).await;
    // The first attempt gets a 503 (transient): the task goes back to pending with
    // the reason, and its next attempt is pushed with the retry delay (1 s ± 25 %).
    let start = Instant::now();
    let requeued = loop {
        let task = app.task(&id).await;
        if task["status"] == "pending" && task["attempts"] == json!(1) {
            break task;
        }
        assert!(start.elapsed() < LIMIT, "the first attempt did not fail transiently: {task}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(requeued["error"].as_str().is_some_and(|e| e.contains("503")), "{requeued}");
    broken.store(false, Ordering::SeqCst);
    let waited = time_to_start(&app, &id, Instant::now(), Duration::from_secs(20)).await;
    assert!(waited < Duration::from_millis(2500), "the retry started {waited:?} after it was queued");
    let task: Value = app.wait_final(&id, LIMIT).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["attempts"], json!(2), "{task}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_wake_up_never_came_is_found_by_the_idle_poll() {
    let app = TestApp::spawn_with(AppOptions {
        tweak: |s| {
            long_idle_poll(s);
            s.redis.idle_poll_interval_ms = 1500;
        },
        ..AppOptions::default()
    })
    .await;
    let fx = Fixtures::serve().await;
    wait_until_idle(&app).await;
    // A task row and its job, pushed straight to the queue: no wake-up is sent.
    let request: TaskRequest =
        serde_json::from_value(json!({ "kind": "download", "url": fx.url("small.mp4") })).expect("request");
    let task = Task::new_pending(request);
    app.store.insert(&task).await.expect("insert");
    let conn = mediapro_queue::connect(&app.settings.redis).await.expect("redis");
    let mut storage = mediapro_queue::Queues::new(conn, &app.settings.redis).storage(TaskKind::Download);
    let job_id: TaskId = task.job_id.parse().expect("a ULID");
    let job = TaskBuilder::new(JobPayload::for_task(task.task_id)).task_id(job_id).build();
    let pushed = Instant::now();
    storage.push_task(job).await.expect("push");
    let id = task.task_id.to_string();
    let waited = time_to_start(&app, &id, pushed, Duration::from_secs(20)).await;
    assert!(waited < Duration::from_secs(4), "found after {waited:?} (idle poll 1.5 s)");
    let task = app.wait_final(&id, LIMIT).await;
    assert_eq!(task["status"], "completed", "{task}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_the_wake_ups_come_back() {
    let port = free_port();
    let mut redis = LocalRedis::start(port);
    let app = TestApp::spawn_with(AppOptions {
        redis_url: redis.url(),
        tweak: long_idle_poll,
        ..AppOptions::default()
    })
    .await;
    let fx = Fixtures::serve().await;
    wait_until_idle(&app).await;
    redis.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _redis = LocalRedis::start(port);
    // The subscription comes back (backoff up to 5 s), and the apalis workers,
    // which stopped on the outage, are restarted (backoff up to 4 s): past both,
    // and past the fast phase that follows, only a wake-up starts a job at once.
    wait_until_idle(&app).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let body = json!({ "url": fx.url("small.mp4") });
    let (id, submitted) = loop {
        let submitted = Instant::now();
        let res = app.download(body.clone()).await;
        if res.status() == 202 {
            let v: Value = res.json().await.expect("json");
            break (v["task_id"].as_str().expect("task_id").to_owned(), submitted);
        }
        assert_eq!(res.status(), 503);
        assert!(submitted.elapsed() < Duration::from_secs(20), "the API never reconnected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let started = time_to_start(&app, &id, submitted, Duration::from_secs(40)).await;
    assert!(started < Duration::from_secs(1), "picked up after {started:?}");
    let task = app.wait_final(&id, LIMIT).await;
    assert_eq!(task["status"], "completed", "{task}");
}
