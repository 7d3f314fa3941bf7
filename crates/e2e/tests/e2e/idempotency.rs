//! `Idempotency-Key` on submissions: concurrent duplicates make one task, a
//! replay returns the first answer, a different body is refused, transient
//! answers are not remembered. All traffic stays on 127.0.0.1.

use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{AppOptions, Fixtures, TestApp, media};

async fn post(app: &TestApp, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = app.client.post(format!("{}{path}", app.address)).json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.expect("request sent")
}

#[tokio::test]
async fn fifty_concurrent_identical_submissions_with_one_key_create_one_task() {
    // No worker: the task stays pending and its one job stays queued.
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..AppOptions::default() }).await;
    let fx = Fixtures::serve().await;
    let body = json!({ "url": fx.url("small.mp4"), "format_id": "best" });

    let answers = join_all((0..50).map(|_| post(&app, "/api/download", Some("order-42"), &body))).await;
    let mut ids = Vec::new();
    let mut replayed = 0;
    for res in answers {
        assert_eq!(res.status(), 202, "every duplicate gets the first answer");
        replayed += usize::from(res.headers().get("idempotent-replayed").is_some());
        let v: Value = res.json().await.expect("json");
        ids.push(v["task_id"].as_str().expect("task_id").to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one task id for all 50: {ids:?}");
    assert_eq!(replayed, 49, "all but the first are replays");
    assert_eq!(app.task_count().await, 1);
    assert_eq!(app.queued_download_jobs().await, 1);

    // Later, the same key and body: the same answer again.
    let res = post(&app, "/api/download", Some("order-42"), &body).await;
    assert_eq!(res.status(), 202);
    let v: Value = res.json().await.expect("json");
    assert_eq!(v["task_id"], ids[0].as_str());

    // The same key with another body, or on another route: 422, nothing created.
    let other = json!({ "url": fx.url("big.mp4") });
    let res = post(&app, "/api/download", Some("order-42"), &other).await;
    assert_eq!(res.status(), 422);
    let v: Value = res.json().await.expect("json");
    assert_eq!(v["code"], "idempotency_key_reused", "{v}");
    let res =
        post(&app, "/api/process", Some("order-42"), &json!({"input_file": "x.mp4", "operations": {}})).await;
    assert_eq!(res.status(), 422);
    assert_eq!(app.task_count().await, 1);

    // Another key is another submission; without a key every request is new.
    assert_eq!(post(&app, "/api/download", Some("order-43"), &body).await.status(), 202);
    assert_eq!(post(&app, "/api/download", None, &body).await.status(), 202);
    assert_eq!(post(&app, "/api/download", None, &body).await.status(), 202);
    assert_eq!(app.task_count().await, 4);

    // A malformed key is refused before anything happens.
    let res = post(&app, "/api/download", Some(&"k".repeat(300)), &body).await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.expect("json");
    assert_eq!(v["code"], "invalid_idempotency_key");
    assert_eq!(app.task_count().await, 4);
}

#[tokio::test]
async fn a_refusal_is_replayed_but_a_transient_failure_is_not_remembered() {
    let app = TestApp::spawn_with(AppOptions {
        start_worker: false,
        tweak: |s| s.limits.submissions_per_minute = 2,
        ..AppOptions::default()
    })
    .await;
    let fx = Fixtures::serve().await;

    // A 400 is the answer to that request: replayed as it was.
    let bad = json!({ "url": "file:///etc/passwd" });
    let first = post(&app, "/api/download", Some("bad-1"), &bad).await;
    assert_eq!(first.status(), 400);
    let again = post(&app, "/api/download", Some("bad-1"), &bad).await;
    assert_eq!(again.status(), 400);
    assert_eq!(again.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));

    // Two submissions a minute: the 400 above counted, the next goes; a third key is rate limited (429), which
    // is not remembered: the same key later is judged afresh (still limited here,
    // but not a replay).
    let body = json!({ "url": fx.url("small.mp4") });
    assert_eq!(post(&app, "/api/download", Some("a"), &body).await.status(), 202);
    let limited = post(&app, "/api/download", Some("b"), &body).await;
    assert_eq!(limited.status(), 429);
    let limited = post(&app, "/api/download", Some("b"), &body).await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().get("idempotent-replayed").is_none(), "a 429 is never replayed");
    assert_eq!(app.task_count().await, 1);
}

#[tokio::test]
async fn an_upload_with_a_key_is_stored_once() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..AppOptions::default() }).await;
    let clip = std::fs::read(media().dir.join("small.mp4")).expect("clip");
    let upload = |bytes: Vec<u8>| {
        app.client
            .post(format!("{}/api/uploads?filename=clip.mp4", app.address))
            .header("Idempotency-Key", "upload-1")
            .header("Content-Type", "application/octet-stream")
            .body(bytes)
            .send()
    };
    let first = upload(clip.clone()).await.expect("sent");
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    let again = upload(clip.clone()).await.expect("sent");
    assert_eq!(again.status(), 201);
    let again: Value = again.json().await.expect("json");
    assert_eq!(first["input_file"], again["input_file"], "the same stored file");
    let uploads = std::fs::read_dir(app.storage_root().join("uploads")).expect("uploads dir").count();
    assert_eq!(uploads, 1, "one upload folder");

    let mut other = clip;
    other.truncate(other.len() - 1);
    let res = upload(other).await.expect("sent");
    assert_eq!(res.status(), 422);
}
