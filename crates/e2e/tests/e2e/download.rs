//! Analyze and download, end to end.

use std::{path::Path, time::Duration};

use serde_json::{Value, json};

use crate::helpers::{Fixtures, TestApp, media, probe};

const LIMIT: Duration = Duration::from_secs(90);

fn files(task: &Value) -> Vec<String> {
    task["downloaded_files"]
        .as_array()
        .expect("downloaded_files")
        .iter()
        .map(|f| f.as_str().expect("path").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_then_download_a_served_clip_and_fetch_the_result_with_ranges() {
    let app = TestApp::spawn().await;
    let fx = Fixtures::serve().await;

    let res = app.analyze(&fx.url("clip.html")).await;
    assert_eq!(res.status(), 200);
    let info: Value = res.json().await.expect("json");
    assert_eq!(info["title"], "Test Clip");
    assert_eq!(info["duration"].as_f64(), Some(4.0));
    assert!(!info["formats"].as_array().expect("formats").is_empty());
    assert!(info.get("http_headers").is_none() && !info.to_string().contains("User-Agent"));
    // A second analyze of the same URL is answered from the cache: no fetch.
    let hits = fx.hits();
    let again: Value = app.analyze(&fx.url("clip.html")).await.json().await.expect("json");
    assert_eq!(again, info);
    assert_eq!(fx.hits(), hits);

    let id = app.submit_download(json!({ "url": fx.url("small.mp4") })).await;
    let task = app.wait_final(&id, LIMIT).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["progress"].as_f64(), Some(100.0));
    assert_eq!(task["attempts"], 1);
    assert!(task["started_at"].is_string() && task["completed_at"].is_string());

    let files = files(&task);
    assert_eq!(files.len(), 1);
    assert!(files[0].starts_with(&format!("downloads/{id}/")), "{files:?}");
    let stored = app.storage_root().join(&files[0]);
    let served = std::fs::read(media().dir.join("small.mp4")).expect("clip");
    assert_eq!(std::fs::read(&stored).expect("downloaded file"), served);
    let (duration, size) = probe(&stored);
    assert!((duration - 4.0).abs() < 0.2, "duration {duration}");
    assert_eq!(size, Some((320, 180)));

    let res = app.get(&format!("/api/download-result/{id}")).await;
    assert_eq!(res.status(), 200);
    let disposition = res.headers()["content-disposition"].to_str().expect("ascii").to_owned();
    assert!(disposition.starts_with("attachment;") && disposition.contains("small.mp4"), "{disposition}");
    assert_eq!(res.headers()["content-length"].to_str().ok(), Some(served.len().to_string().as_str()));
    assert_eq!(res.bytes().await.expect("body").as_ref(), served.as_slice());

    let res = app
        .client
        .get(format!("{}/api/download-result/{id}", app.address))
        .header("Range", "bytes=100-199")
        .send()
        .await
        .expect("range request");
    assert_eq!(res.status(), 206);
    assert_eq!(
        res.headers()["content-range"].to_str().ok(),
        Some(format!("bytes 100-199/{}", served.len()).as_str())
    );
    assert_eq!(res.bytes().await.expect("body").as_ref(), &served[100..200]);

    // If-Range: the current Last-Modified keeps the range; a stale validator
    // (an old date, or an entity tag we never sent) gets the whole file.
    let head = app.get(&format!("/api/download-result/{id}")).await;
    let modified = head.headers()["last-modified"].to_str().expect("date").to_owned();
    for (validator, status) in
        [(modified.as_str(), 206), ("Sat, 01 Jan 2000 00:00:00 GMT", 200), ("\"stale-etag\"", 200)]
    {
        let res = app
            .client
            .get(format!("{}/api/download-result/{id}", app.address))
            .header("Range", "bytes=100-199")
            .header("If-Range", validator)
            .send()
            .await
            .expect("conditional range request");
        assert_eq!(res.status(), status, "If-Range {validator}");
        let body = res.bytes().await.expect("body");
        let expected: &[u8] = if status == 206 { &served[100..200] } else { &served };
        assert_eq!(body.as_ref(), expected, "If-Range {validator}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_with_two_sources_lists_both_and_downloads_the_smaller_with_subtitles() {
    let app = TestApp::spawn().await;
    let fx = Fixtures::serve().await;

    let info: Value = app.analyze(&fx.url("page.html")).await.json().await.expect("json");
    let formats = info["formats"].as_array().expect("formats");
    let heights: Vec<(String, u64)> = formats
        .iter()
        .map(|f| (f["format_id"].as_str().expect("id").to_owned(), f["height"].as_u64().expect("height")))
        .collect();
    assert_eq!(heights.len(), 2, "{info}");
    assert_eq!(info["subtitles"], json!(["en"]));
    let smaller = heights.iter().min_by_key(|(_, h)| *h).expect("a format").0.clone();

    let id = app
        .submit_download(json!({
            "url": fx.url("page.html"), "format_id": smaller,
            "include_subtitles": true, "subtitle_langs": ["en"]
        }))
        .await;
    let task = app.wait_final(&id, LIMIT).await;
    assert_eq!(task["status"], "completed", "{task}");
    let files = files(&task);
    assert_eq!(files.len(), 2, "{files:?}");
    let video = app.storage_root().join(&files[0]);
    assert_eq!(
        std::fs::read(&video).expect("video"),
        std::fs::read(media().dir.join("small.mp4")).expect("clip")
    );
    assert_eq!(probe(&video).1, Some((320, 180)));
    assert!(files[1].ends_with(".en.vtt"), "{files:?}");
    let subs = std::fs::read_to_string(app.storage_root().join(&files[1])).expect("subtitle file");
    assert!(subs.contains("Hello from the test"));

    // The subtitle file is served too, by index.
    let res = app.get(&format!("/api/download-result/{id}?file=1")).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.expect("text").contains("Hello from the test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_downloads_of_one_url_get_separate_folders() {
    let app = TestApp::spawn().await;
    let fx = Fixtures::serve().await;
    let body = json!({ "url": fx.url("big.mp4") });
    let (a, b) = tokio::join!(app.submit_download(body.clone()), app.submit_download(body));
    let (ta, tb) = tokio::join!(app.wait_final(&a, LIMIT), app.wait_final(&b, LIMIT));
    for (id, task) in [(&a, &ta), (&b, &tb)] {
        assert_eq!(task["status"], "completed", "{task}");
        let files = files(task);
        assert!(!files.is_empty());
        for f in &files {
            assert!(f.starts_with(&format!("downloads/{id}/")), "{id} lists {f}");
            assert!(app.storage_root().join(f).is_file());
        }
    }
    let (fa, fb) = (files(&ta), files(&tb));
    assert!(fa.iter().all(|f| !fb.contains(f)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_that_404s_fails_at_once_with_a_one_line_reason() {
    let app = TestApp::spawn().await;
    let fx = Fixtures::serve().await;
    let started = std::time::Instant::now();
    let id = app.submit_download(json!({ "url": fx.url("missing.mp4") })).await;
    let task = app.wait_final(&id, Duration::from_secs(30)).await;
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    assert_eq!(task["status"], "failed");
    let error = task["error"].as_str().expect("reason");
    assert!(error.contains("404"), "{error}");
    assert!(!error.contains('\n') && error.len() < 300, "{error}");
    assert_eq!(task["attempts"], 1);
    // Not retried behind our back: still one attempt, and nothing left queued.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let task = app.task(&id).await;
    assert_eq!((task["status"].as_str(), task["attempts"].as_i64()), (Some("failed"), Some(1)));
    assert_eq!(app.queued_download_jobs().await, 0);
    assert!(!Path::new(&app.storage_root().join(format!("downloads/{id}"))).exists());
    let res = app.get(&format!("/api/download-result/{id}")).await;
    assert_eq!(res.status(), 400);
}
