//! The sketch's browser client (`MediaProAPI` in the seed file) works unchanged:
//! these are its exact requests, including the cross-origin calls its page makes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Fixtures, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sketch_client_requests_work() {
    let app = TestApp::spawn().await;
    let fx = Fixtures::serve().await;
    let base = format!("{}/api", app.address);
    let origin = "http://localhost:8080";

    // Browsers preflight JSON POSTs from another origin.
    let res = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{base}/download"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .expect("preflight");
    assert!(res.status().is_success());
    assert_eq!(res.headers()["access-control-allow-origin"], "*");

    // analyzeUrl(url)
    let res = app
        .client
        .post(format!("{base}/analyze"))
        .header("Origin", origin)
        .header("Content-Type", "application/json")
        .body(json!({ "url": fx.url("page.html") }).to_string())
        .send()
        .await
        .expect("analyze");
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    let analysis: Value = res.json().await.expect("json");
    assert!(analysis.get("error").is_none(), "{analysis}");
    let format_id = analysis["formats"][0]["format_id"].as_str().expect("format").to_owned();
    assert!(analysis["title"].is_string());

    // downloadVideo(url, formatId, {}) — the client always sends these four fields.
    let res = app
        .client
        .post(format!("{base}/download"))
        .header("Origin", origin)
        .header("Content-Type", "application/json")
        .body(
            json!({
                "url": fx.url("page.html"),
                "format_id": format_id,
                "include_subtitles": false,
                "subtitle_langs": ["zh-CN", "en"]
            })
            .to_string(),
        )
        .send()
        .await
        .expect("download");
    let created: Value = res.json().await.expect("json");
    assert!(created.get("error").is_none(), "{created}");
    assert_eq!(created["status"], "pending");
    let task_id = created["task_id"].as_str().expect("task_id").to_owned();

    // pollTaskStatus → getTaskStatus(taskId) until not pending/downloading/processing.
    let mut status = Value::Null;
    for _ in 0..900 {
        status = app
            .client
            .get(format!("{base}/tasks/{task_id}"))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
        if !matches!(status["status"].as_str(), Some("pending" | "downloading" | "processing")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["status"], "completed", "{status}");
    assert!(status["progress"].is_number());
    let files = status["downloaded_files"].as_array().expect("showDownloadLinks(status.downloaded_files)");
    assert_eq!(files.len(), 1);
}
