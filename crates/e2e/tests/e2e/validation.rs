//! Hostile or malformed submissions are refused before anything is stored,
//! queued or fetched.

use serde_json::{Value, json};

use crate::helpers::{AppOptions, Fixtures, TestApp};

async fn assert_refused(app: &TestApp, res: reqwest::Response, field_hint: &str) {
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json error");
    assert!(body["code"].is_string(), "{body}");
    let msg = body["error"].as_str().expect("message");
    assert!(msg.starts_with(field_hint), "{msg}");
    assert_eq!(app.task_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option_like_and_file_urls_and_format_all_are_refused_and_nothing_is_queued() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..AppOptions::default() }).await;
    for url in ["--version", "--exec=touch /tmp/pwned", "file:///etc/passwd", "ytsearch:cats"] {
        assert_refused(&app, app.download(json!({ "url": url })).await, "url:").await;
        assert_refused(&app, app.analyze(url).await, "url:").await;
    }
    for format in ["all", "mergeall", "--exec=id", "b[height<=720]; rm"] {
        let res = app.download(json!({ "url": "http://127.0.0.1:9/v.mp4", "format_id": format })).await;
        assert_refused(&app, res, "format_id:").await;
    }
    let res = app.download(json!({ "url": "http://127.0.0.1:9/v.mp4", "subtitle_langs": ["all"] })).await;
    assert_refused(&app, res, "subtitle_langs:").await;
    assert_eq!(app.queued_download_jobs().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_before_any_request_reaches_them() {
    let app =
        TestApp::spawn_with(AppOptions { allow_private_networks: false, ..AppOptions::default() }).await;
    let fx = Fixtures::serve().await;
    let port = fx.port;
    for url in [
        format!("http://127.0.0.1:{port}/small.mp4"),
        format!("http://localhost:{port}/small.mp4"),
        format!("http://[::1]:{port}/small.mp4"),
        format!("http://127.1:{port}/small.mp4"),
        format!("http://2130706433:{port}/small.mp4"),
        format!("http://[::ffff:127.0.0.1]:{port}/small.mp4"),
    ] {
        let res = app.download(json!({ "url": url })).await;
        assert_eq!(res.status(), 400, "{url}");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["code"], "private_address", "{url}: {body}");
        let res = app.analyze(&url).await;
        assert_eq!(res.status(), 400, "{url}");
    }
    assert_eq!(fx.hits(), 0, "a refused URL reached the server");
    assert_eq!(app.task_count().await, 0);
    assert_eq!(app.queued_download_jobs().await, 0);
}
