//! Fault injection: killed workers, a Redis that goes away, poison payloads,
//! graceful shutdown. Each test asserts the final state of every task.

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use apalis_core::backend::TaskSink;
use mediapro_core::settings::Settings;
use serde_json::{Value, json};

use crate::{
    helpers::{AppOptions, Fixtures, TestApp, pids_with},
    lifecycle::scopeguard,
};

const LIMIT: Duration = Duration::from_secs(180);

fn rfc3339(t: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(t.as_str().expect("time"), &time::format_description::well_known::Rfc3339)
        .expect("rfc3339")
}

fn kill(pid: i32, signal: &str) {
    let _ = Command::new("kill").args([signal, &pid.to_string()]).status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_loses_nothing_another_worker_finishes_it() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..AppOptions::default() }).await;
    let fx = Fixtures::serve().await;
    let mut downloader = scopeguard(app.spawn_worker_process("download"));
    let input = app.download_fixture(&fx, "long.mp4").await;
    downloader.kill();

    let mut a = scopeguard(app.spawn_worker_process("process"));
    let mut b = scopeguard(app.spawn_worker_process("process"));
    let id =
        app.submit_process(&input, json!({"resize": {"width": 1280, "height": 720}, "quality": 28})).await;
    let first = loop {
        let t = app.task(&id).await;
        if t["status"] == "processing" && t["progress"].as_f64().unwrap_or(0.0) > 0.0 {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The worker name carries its pid: kill -9 exactly the worker running the job.
    let name = first["worker"].as_str().expect("worker");
    let pid: i32 = name.split('-').nth(1).and_then(|p| p.parse().ok()).expect("pid in worker name");
    let victim = if a.0.id() as i32 == pid { &mut a } else { &mut b };
    assert_eq!(victim.0.id() as i32, pid, "{name}");
    kill(pid, "-9");
    let _ = victim.0.wait();
    let killed_at = time::OffsetDateTime::now_utc();
    // Its ffmpeg (own process group) would run on; a supervisor or container
    // stop kills the whole cgroup, here we do it by hand.
    for orphan in pids_with(&format!("processed/{id}")) {
        kill(orphan, "-9");
    }

    let task = app.wait_final(&id, LIMIT).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert!(task["attempts"].as_i64().expect("attempts") >= 2, "{task}");
    assert_ne!(task["worker"], first["worker"]);
    let rerun_after = (rfc3339(&task["started_at"]) - killed_at).as_seconds_f64();
    println!("orphaned job re-ran {rerun_after:.1} s after the kill (heartbeat 1 s x 3 missed)");
    assert!(rerun_after < 15.0, "re-run took {rerun_after:.1} s");
    let out = app.storage_root().join(task["output_file"].as_str().expect("output"));
    assert_eq!(crate::helpers::probe(&out).1, Some((1280, 720)));
}

/// A throwaway Redis on its own port, without persistence (a restart loses
/// everything, the worst case).
pub(crate) struct LocalRedis {
    port: u16,
    child: Option<Child>,
}

impl LocalRedis {
    pub(crate) fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        let r = LocalRedis { port, child: Some(child) };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "redis did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_mid_batch_gives_503s_and_every_accepted_task_completes() {
    let port = free_port();
    let mut redis = LocalRedis::start(port);
    let app = TestApp::spawn_with(AppOptions {
        redis_url: redis.url(),
        tweak: |s: &mut Settings| s.worker.reconcile_interval_seconds = 2,
        ..AppOptions::default()
    })
    .await;
    let fx = Fixtures::serve().await;
    let body = json!({ "url": fx.url("small.mp4") });

    let mut accepted = Vec::new();
    for _ in 0..3 {
        accepted.push(app.submit_download(body.clone()).await);
    }
    redis.stop();
    // Accepted just before the outage, probably never run: its job dies with Redis.
    let mut refused = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let res = app.download(body.clone()).await;
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        match res.status().as_u16() {
            202 => accepted
                .push(res.json::<Value>().await.expect("json")["task_id"].as_str().expect("id").to_owned()),
            503 => {
                let e: Value = res.json().await.expect("json");
                assert_eq!(e["code"], "queue_unavailable");
                refused += 1;
            }
            other => panic!("unexpected status {other} during the outage"),
        }
    }
    assert_eq!(refused, 5, "submissions while Redis is down must be refused");
    // Reads keep working: the store is separate.
    assert_eq!(app.get(&format!("/api/tasks/{}", accepted[0])).await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 503);

    tokio::time::sleep(Duration::from_secs(2)).await;
    let _redis = LocalRedis::start(port); // empty: every queued job is gone
    // Submissions work again once the connection is back.
    let started = Instant::now();
    loop {
        let res = app.download(body.clone()).await;
        if res.status() == 202 {
            accepted
                .push(res.json::<Value>().await.expect("json")["task_id"].as_str().expect("id").to_owned());
            break;
        }
        assert_eq!(res.status(), 503);
        assert!(started.elapsed() < Duration::from_secs(20), "API never reconnected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every accepted task completes: lost jobs are re-queued by the reconciler and
    // the in-process worker resumes without a restart of the process.
    for id in &accepted {
        let t = app.wait_final(id, LIMIT).await;
        assert_eq!(t["status"], "completed", "{t}");
    }
    let pending: Value = app.get("/api/tasks?status=pending,downloading").await.json().await.expect("json");
    assert_eq!(pending["tasks"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_payload_fails_alone_and_the_worker_keeps_serving() {
    let app = TestApp::spawn().await;
    let fx = Fixtures::serve().await;
    let conn = mediapro_queue::connect(&app.settings.redis).await.expect("redis");
    let config = mediapro_queue::queue_config(&app.settings.redis, mediapro_core::task::TaskKind::Download);
    let mut raw = apalis_redis::RedisStorage::<Value>::new(conn.clone()).with_config(config.clone());
    for junk in [json!("garbage"), json!({"task_id": 42}), json!([1, 2, 3])] {
        raw.push(junk).await.expect("push");
    }
    let id = app.submit_download(json!({ "url": fx.url("small.mp4") })).await;
    let task = app.wait_final(&id, LIMIT).await;
    assert_eq!(task["status"], "completed", "{task}");
    // The three poison jobs were buried, not retried.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut c = conn.clone();
    let dead: i64 = redis::cmd("SCARD").arg(config.dead_jobs_set()).query_async(&mut c).await.expect("scard");
    assert_eq!(dead, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_job_finish_then_exits_zero() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..AppOptions::default() }).await;
    let fx = Fixtures::serve().await;
    let mut downloader = scopeguard(app.spawn_worker_process("download"));
    let input = app.download_fixture(&fx, "clip10.mp4").await;
    downloader.kill();

    let mut worker = scopeguard(app.spawn_worker_process("process"));
    let id = app.submit_process(&input, json!({"resize": {"width": 1280, "height": 720}})).await;
    loop {
        if app.task(&id).await["status"] == "processing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill(worker.0.id() as i32, "-TERM");
    let status = tokio::task::spawn_blocking(move || {
        let s = worker.0.wait();
        (s, worker)
    })
    .await
    .expect("join")
    .0
    .expect("wait");
    assert!(status.success(), "worker exit: {status:?}");
    let task = app.task(&id).await;
    assert_eq!(task["status"], "completed", "the running job was not drained: {task}");
    assert!(Path::new(&app.storage_root().join(task["output_file"].as_str().expect("out"))).exists());
}
