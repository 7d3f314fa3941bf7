//! Listing, cancelling, retrying; timeouts; retention and the disk guard.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use mediapro_core::storage::StorageLayout;
use mediapro_queue::{QueueClient, Queues};
use mediapro_worker::{JobContext, keepers};
use serde_json::{Value, json};

use crate::helpers::{AppOptions, Fixtures, TestApp, media, pids_with};

const LIMIT: Duration = Duration::from_secs(120);

/// Upscaling a minute of video takes long enough to catch it running.
fn slow_ops() -> Value {
    json!({"resize": {"width": 1920, "height": 1080}, "quality": 10})
}

async fn wait_status(app: &TestApp, id: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let t = app.task(id).await;
        if t["status"] == status {
            return t;
        }
        assert!(started.elapsed() < LIMIT, "never {status}: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_over_120_tasks_returns_each_exactly_once() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..AppOptions::default() }).await;
    let mut created = HashSet::new();
    for i in 0..120 {
        created.insert(app.submit_download(json!({ "url": format!("http://127.0.0.1:9/v{i}.mp4") })).await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let res = app.get(&format!("/api/tasks?limit=7&status=pending,downloading&kind=download{q}")).await;
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.expect("json");
        for t in page["tasks"].as_array().expect("tasks") {
            seen.push((
                t["task_id"].as_str().expect("id").to_owned(),
                t["created_at"].as_str().expect("t").to_owned(),
            ));
        }
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 18);
    assert_eq!(seen.len(), 120);
    let ids: HashSet<String> = seen.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, created, "every task exactly once");
    assert!(seen.windows(2).all(|w| w[0].1 >= w[1].1), "newest first");

    let empty: Value = app.get("/api/tasks?kind=process").await.json().await.expect("json");
    assert_eq!(empty, json!({"tasks": [], "next_cursor": null}));
    for bad in [
        "status=done",
        "kind=upload",
        "limit=0",
        "limit=101",
        "created_after=yesterday",
        "cursor=x",
        "sort=asc",
    ] {
        let res = app.get(&format!("/api/tasks?{bad}")).await;
        assert_eq!(res.status(), 400, "{bad}");
        let body: Value = res.json().await.expect("json");
        if bad == "status=done" {
            let msg = body["error"].as_str().expect("msg");
            assert!(
                msg.contains("pending, downloading, processing, expanding, completed, failed, cancelled"),
                "{msg}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_60_s_ffmpeg_job_kills_it_within_2_s() {
    let app = TestApp::spawn().await;
    let fx = Fixtures::serve().await;
    let input = app.download_fixture(&fx, "long.mp4").await;
    let id = app.submit_process(&input, slow_ops()).await;
    wait_status(&app, &id, "processing").await;
    // Let ffmpeg get going.
    let started = Instant::now();
    while pids_with(&format!("processed/{id}")).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "ffmpeg never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let res = app.client.delete(format!("{}/api/tasks/{id}", app.address)).send().await.expect("cancel");
    assert_eq!(res.status(), 200);
    let cancelled_at = Instant::now();
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["status"], "cancelled");
    while !pids_with(&format!("processed/{id}")).is_empty() {
        assert!(cancelled_at.elapsed() < Duration::from_secs(2), "ffmpeg still running after 2 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cancelled_at.elapsed() < Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let task = app.task(&id).await;
    assert_eq!(task["status"], "cancelled");
    assert!(!app.storage_root().join(format!("processed/{id}")).exists(), "partial output left");

    let again = app.client.delete(format!("{}/api/tasks/{id}", app.address)).send().await.expect("cancel");
    assert_eq!(again.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_can_be_retried_and_runs_again() {
    let app = TestApp::spawn().await;
    let fx = Fixtures::serve().await;
    let id = app.submit_download(json!({ "url": fx.url("missing.mp4") })).await;
    let first = app.wait_final(&id, LIMIT).await;
    assert_eq!((first["status"].as_str(), first["attempts"].as_i64()), (Some("failed"), Some(1)));
    let hits = fx.hits();

    let res = app.post_json(&format!("/api/tasks/{id}/retry"), &json!({})).await;
    assert_eq!(res.status(), 202);
    let accepted: Value = res.json().await.expect("json");
    assert_eq!(accepted["status"], "pending");
    assert!(accepted["error"].is_null());
    let again = app.wait_final(&id, LIMIT).await;
    assert_eq!((again["status"].as_str(), again["attempts"].as_i64()), (Some("failed"), Some(2)), "{again}");
    assert!(fx.hits() > hits, "the retry did not run");

    // Only failed or cancelled tasks can be retried.
    let ok = app.submit_download(json!({ "url": fx.url("small.mp4") })).await;
    app.wait_final(&ok, LIMIT).await;
    assert_eq!(app.post_json(&format!("/api/tasks/{ok}/retry"), &json!({})).await.status(), 409);
    let unknown = uuid::Uuid::new_v4();
    assert_eq!(app.post_json(&format!("/api/tasks/{unknown}/retry"), &json!({})).await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_pending_task_never_starts() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..AppOptions::default() }).await;
    let fx = Fixtures::serve().await;
    let id = app.submit_download(json!({ "url": fx.url("small.mp4") })).await;
    let res = app.client.delete(format!("{}/api/tasks/{id}", app.address)).send().await.expect("cancel");
    assert_eq!(res.status(), 200);
    // Now a worker comes up and takes the queued job: it must skip it.
    let worker = app.spawn_worker_process("download");
    let mut worker = scopeguard(worker);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let task = app.task(&id).await;
    assert_eq!((task["status"].as_str(), task["attempts"].as_i64()), (Some("cancelled"), Some(0)));
    assert_eq!(fx.hits(), 0, "the cancelled download was fetched");
    worker.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_timeout_fails_a_slow_job_with_the_reason() {
    let app = TestApp::spawn_with(AppOptions {
        tweak: |s| s.limits.task_timeout_seconds = 2,
        ..AppOptions::default()
    })
    .await;
    // Placed directly: a 2 s limit would also cut a download under load.
    let input = "uploads/fixture/long.mp4";
    std::fs::create_dir_all(app.storage_root().join("uploads/fixture")).expect("dir");
    std::fs::copy(media().dir.join("long.mp4"), app.storage_root().join(input)).expect("copy");
    let id = app.submit_process(input, slow_ops()).await;
    let task = app.wait_final(&id, LIMIT).await;
    assert_eq!(task["status"], "failed");
    assert_eq!(task["error"], "timed out after 2 s");
    assert!(pids_with(&format!("processed/{id}")).is_empty());
    assert!(!app.storage_root().join(format!("processed/{id}")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_tasks_and_their_files() {
    let app =
        TestApp::spawn_with(AppOptions { tweak: |s| s.limits.retention_days = 0, ..AppOptions::default() })
            .await;
    let fx = Fixtures::serve().await;
    let id = app.submit_download(json!({ "url": fx.url("small.mp4") })).await;
    let task = app.wait_final(&id, LIMIT).await;
    let file = app.storage_root().join(task["downloaded_files"][0].as_str().expect("file"));
    assert!(file.exists());

    let conn = mediapro_queue::connect(&app.settings.redis).await.expect("redis");
    let ctx = JobContext::new(
        Arc::new(app.settings.clone()),
        StorageLayout::new(app.storage_root()).expect("layout"),
        app.store.clone(),
        Arc::new(QueueClient::with_queues(
            app.settings.redis.clone(),
            Queues::new(conn, &app.settings.redis),
        )),
        mediapro_core::metrics::Metrics::off(),
        Arc::new(mediapro_core::process::ythost::YtdlpRunner::spawning(&app.settings.tools.ytdlp)),
    );
    let removed = keepers::apply_retention(&ctx).await.expect("retention");
    assert!(removed >= 1);
    assert!(!file.exists());
    assert_eq!(app.get(&format!("/api/tasks/{id}")).await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_new_work_with_507() {
    let app = TestApp::spawn_with(AppOptions {
        start_worker: false,
        tweak: |s| s.limits.min_free_disk_bytes = u64::MAX,
        ..AppOptions::default()
    })
    .await;
    let res = app.download(json!({ "url": "http://127.0.0.1:9/v.mp4" })).await;
    assert_eq!(res.status(), 507);
    assert_eq!(res.headers()["retry-after"], "60");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "insufficient_storage");
    let res = app.client.post(format!("{}/api/uploads", app.address)).body("x").send().await.expect("upload");
    assert_eq!(res.status(), 507);
    assert_eq!(app.task_count().await, 0);
}

/// Kills the child process when dropped (a failing assertion must not leak it).
pub fn scopeguard(child: std::process::Child) -> ChildGuard {
    ChildGuard(child)
}

pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
