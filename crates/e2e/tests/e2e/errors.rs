//! Every error is `{"error", "code"}` JSON with a fitting status.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{AppOptions, TestApp};

async fn error_of(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status);
    let body: Value = res.json().await.expect("error body is JSON");
    assert!(body["error"].is_string() && body["code"].is_string(), "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_json_errors() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..AppOptions::default() }).await;
    let url = format!("{}/api/download", app.address);
    let post = |body: &'static str, ctype: &'static str| {
        app.client.post(&url).header("content-type", ctype).body(body).send()
    };
    let e = error_of(post("{not json", "application/json").await.expect("sent"), 400).await;
    assert_eq!(e["code"], "invalid_json");
    let e = error_of(post(r#"{"url":"x"}"#, "text/plain").await.expect("sent"), 415).await;
    assert_eq!(e["code"], "unsupported_media_type");
    let e = error_of(
        post(r#"{"url":"http://example.com/","exec":"id"}"#, "application/json").await.expect("sent"),
        400,
    )
    .await;
    assert!(e["error"].as_str().expect("msg").contains("exec"), "{e}");
    let e = error_of(post(r#"{"url": 5}"#, "application/json").await.expect("sent"), 400).await;
    assert_eq!(e["code"], "invalid_request");

    let big = json!({ "url": format!("http://example.com/{}", "a".repeat(70 * 1024)) });
    let e = error_of(app.download(big).await, 413).await;
    assert_eq!(e["code"], "payload_too_large");

    error_of(app.get("/nope").await, 404).await;
    error_of(app.get("/api/tasks/not-a-uuid").await, 404).await;
    error_of(app.get(&format!("/api/tasks/{}", uuid::Uuid::new_v4())).await, 404).await;
    error_of(app.get(&format!("/api/download-result/{}", uuid::Uuid::new_v4())).await, 404).await;
    let res = app.get("/api/download").await;
    assert_eq!(
        res.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST"),
        "405 names the methods"
    );
    let e = error_of(res, 405).await;
    assert_eq!(e["code"], "method_not_allowed");
    let res = app.client.patch(format!("{}/api/tasks/{}", app.address, uuid::Uuid::new_v4())).send().await;
    let res = res.expect("sent");
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers().get("allow").and_then(|v| v.to_str().ok()), Some("GET, DELETE"));
    assert_eq!(app.task_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..AppOptions::default() }).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    let ytdlp = body["ytdlp"].clone();
    assert_eq!(body, json!({"status": "ready", "redis": "ok", "database": "ok", "ytdlp": ytdlp.clone()}));
    // The harness waited for the warm host (unless the suite runs with it off,
    // MEDIAPRO_TEST_YTDLP_HOST=off): its yt-dlp version is known.
    if app.settings.tools.ytdlp_host {
        assert_eq!(ytdlp["host"], "ready", "{body}");
        let version = ytdlp["version"].as_str().expect("the host's version");
        assert!(version.starts_with("20"), "{body}");
    } else {
        assert_eq!(ytdlp["host"], "off", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_does_not_wait_for_the_ytdlp_host() {
    // A Python without yt-dlp: the host never becomes ready, the API is ready
    // all the same and analyze spawns yt-dlp.
    let app = TestApp::spawn_with(AppOptions {
        start_worker: false,
        tweak: |s| {
            s.tools.ytdlp_host = true;
            s.tools.ytdlp_host_python = "/bin/false".into();
        },
        wait_for_ytdlp_host: false,
        ..AppOptions::default()
    })
    .await;
    let fx = crate::helpers::Fixtures::serve().await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["status"], "ready", "{body}");
    assert!(matches!(body["ytdlp"]["host"].as_str(), Some("starting" | "unavailable")), "{body}");
    let res = app.analyze(&fx.url("small.mp4")).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    let body: Value = app.get("/readyz").await.json().await.expect("json");
    assert_eq!(body["ytdlp"]["host"], "unavailable", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_submissions_get_a_prompt_503_and_leave_no_task() {
    // Nothing listens on port 1.
    let app = TestApp::spawn_with(AppOptions {
        start_worker: false,
        redis_url: "redis://127.0.0.1:1/0".into(),
        ..AppOptions::default()
    })
    .await;
    let started = Instant::now();
    let res = app.download(json!({ "url": "http://127.0.0.1:9/v.mp4" })).await;
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(res.headers().contains_key("retry-after"));
    let e = error_of(res, 503).await;
    assert_eq!(e["code"], "queue_unavailable");
    assert_eq!(app.task_count().await, 0);
    assert_eq!(app.get("/readyz").await.status(), 503);
}
