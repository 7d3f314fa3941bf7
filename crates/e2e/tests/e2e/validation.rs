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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_types_name_their_path_and_outputs_are_bounded_by_the_probe() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..AppOptions::default() }).await;
    let post = |path: &str, body: Value| app.client.post(format!("{}{path}", app.address)).json(&body).send();
    // A field of the wrong JSON type: 400 whose message starts with its path.
    let res = post("/api/download", json!({ "url": 123 })).await.expect("sent");
    assert_refused(&app, res, "url: expected a string").await;
    let res = post("/api/download", json!({ "url": "http://127.0.0.1:9/x", "include_subtitles": "yes" }))
        .await
        .expect("sent");
    assert_refused(&app, res, "include_subtitles: expected a boolean").await;

    // A thin input (1388x100) for the output-size check, uploaded like a client would.
    let dir = tempfile::tempdir().expect("temp");
    let clip = dir.path().join("thin.mp4");
    crate::helpers::make_clip(&clip, "1388x100", 2);
    let res = app
        .client
        .post(format!("{}/api/uploads?filename=thin.mp4", app.address))
        .body(std::fs::read(&clip).expect("clip"))
        .send()
        .await
        .expect("upload");
    assert_eq!(res.status(), 201);
    let up: Value = res.json().await.expect("json");
    assert!(up["size_bytes"].as_u64().is_some_and(|n| n > 0), "{up}");
    let input = up["input_file"].as_str().expect("input_file").to_owned();

    let cases = [
        (json!({"resize": {"height": 4320}}), "operations.resize: the output would be 59962x4320"),
        (json!({"trim": {"start": 0, "duration": "1e20"}}), "operations.trim.duration: "),
        (
            json!({"trim": {"start": 0, "duration": 30}}),
            "operations.trim.duration: 30 s is longer than the input",
        ),
        (json!({"trim": ["0", "1"]}), "operations.trim: expected an object, got an array"),
        (json!({"trim": {"start": true}}), "operations.trim.start: "),
        (json!({"quality": "high"}), "operations.quality: "),
    ];
    for (ops, hint) in cases {
        let res =
            post("/api/process", json!({ "input_file": input, "operations": ops })).await.expect("sent");
        assert_refused(&app, res, hint).await;
    }
}
