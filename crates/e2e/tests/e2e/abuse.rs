//! Abuse limits: rate limits shared by two API instances through Redis, the cap
//! on pending tasks, slow request headers and bodies (slowloris), and the bounded
//! analyze wait queue. All traffic stays on 127.0.0.1.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{AppOptions, Fixtures, TestApp, media};

async fn submit(client: &reqwest::Client, base: &str, key: &str, url: &str) -> reqwest::Response {
    client
        .post(format!("{base}/api/download"))
        .bearer_auth(key)
        .json(&json!({ "url": url }))
        .send()
        .await
        .expect("request sent")
}

fn retry_after(res: &reqwest::Response) -> u64 {
    res.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a numeric Retry-After")
}

#[tokio::test]
async fn two_api_instances_share_one_submission_limit_per_key() {
    let app = TestApp::spawn_with(AppOptions {
        start_worker: false,
        tweak: |s| {
            s.limits.submissions_per_minute = 5;
            s.security.api_keys = vec![
                mediapro_core::settings::ApiKeyEntry::new("key-a-0123456789abcdef"),
                mediapro_core::settings::ApiKeyEntry::new("key-b-0123456789abcdef"),
            ];
        },
        ..AppOptions::default()
    })
    .await;
    let second = app.spawn_second_api().await;
    let fx = Fixtures::serve().await;
    let url = fx.url("small.mp4");

    let mut accepted = 0;
    let mut refused = Vec::new();
    for base in [&app.address, &app.address, &app.address, &second, &second, &second] {
        let res = submit(&app.client, base, "key-a-0123456789abcdef", &url).await;
        match res.status().as_u16() {
            202 => accepted += 1,
            429 => refused.push(res),
            other => panic!("unexpected {other}: {}", res.text().await.unwrap_or_default()),
        }
    }
    assert_eq!(accepted, 5, "five accepted across both instances");
    assert_eq!(refused.len(), 1);
    let res = refused.pop().expect("one refusal");
    let wait = retry_after(&res);
    assert!(wait > 0 && wait <= 60, "Retry-After {wait}");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "rate_limited", "{body}");
    assert_eq!(app.task_count().await, 5);

    // Another key has its own budget, on either instance.
    assert_eq!(submit(&app.client, &second, "key-b-0123456789abcdef", &url).await.status(), 202);
    // The limit holds whichever instance is asked.
    assert_eq!(submit(&app.client, &app.address, "key-a-0123456789abcdef", &url).await.status(), 429);
    // The key itself is never written to Redis: only a digest names the bucket.
    let client = redis::Client::open(app.settings.redis.url.as_str()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:rate:*", app.settings.redis.namespace))
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.iter().all(|k| !k.contains("key-a-0123456789abcdef") && !k.contains("key-b-0123456789abcdef")),
        "{keys:?}"
    );
}

#[tokio::test]
async fn submissions_stop_at_the_pending_task_cap() {
    let app = TestApp::spawn_with(AppOptions {
        start_worker: false,
        tweak: |s| s.limits.max_pending_tasks = 3,
        ..AppOptions::default()
    })
    .await;
    let fx = Fixtures::serve().await;
    for _ in 0..3 {
        app.submit_download(json!({ "url": fx.url("small.mp4") })).await;
    }
    let res = app.download(json!({ "url": fx.url("small.mp4") })).await;
    assert_eq!(res.status(), 429);
    assert_eq!(retry_after(&res), 30);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "rate_limited");
    assert!(body["error"].as_str().expect("message").contains("too many pending tasks (3)"), "{body}");
    // Still refused once the per-process count is re-read from the store.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.download(json!({ "url": fx.url("small.mp4") })).await.status(), 429);
    assert_eq!(app.task_count().await, 3);
}

const WINDOW: u64 = 3;
/// The window plus a margin for a loaded machine.
const BOUND: Duration = Duration::from_secs(WINDOW + 4);

fn slow_settings(s: &mut mediapro_core::settings::Settings) {
    s.limits.body_read_timeout_seconds = WINDOW;
}

/// Sends `head` and `first` on a raw connection, then (if `trickle`) one more
/// byte every 2 s, until the server answers or closes; what it answered and when.
async fn slow_request(address: &str, head: String, first: &[u8], trickle: bool) -> (String, Duration) {
    let host = address.trim_start_matches("http://");
    let stream = TcpStream::connect(host).await.expect("connect to the API on loopback");
    let (mut rd, mut wr) = stream.into_split();
    let start = Instant::now();
    wr.write_all(head.as_bytes()).await.expect("head");
    wr.write_all(first).await.expect("first bytes");
    let writer = tokio::spawn(async move {
        // Bounded: at most 10 bytes (20 s); stops when the server hangs up.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if !trickle || wr.write_all(b"x").await.is_err() {
                break;
            }
        }
        // Keeps the write half open (a stall) until aborted.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(wr);
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    assert!(read.is_ok(), "the connection was neither answered nor closed within {BOUND:?}");
    (String::from_utf8_lossy(&answer).into_owned(), start.elapsed())
}

fn post_head(path: &str, content_type: &str, length: u64) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    )
}

fn assert_dropped(answer: &str, elapsed: Duration) {
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "expected a 408 or a closed connection, got: {answer}"
    );
    if !answer.is_empty() {
        assert!(answer.contains("request_timeout"), "{answer}");
    }
    assert!(elapsed >= Duration::from_millis(WINDOW * 1000 - 500), "dropped too early: {elapsed:?}");
}

fn uploads_left(app: &TestApp) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(app.storage_root().join("uploads")) {
        Ok(dir) => dir.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn slow_headers_and_bodies_are_dropped_and_partial_uploads_removed() {
    let app = TestApp::spawn_with(AppOptions {
        start_worker: false,
        tweak: slow_settings,
        ..AppOptions::default()
    })
    .await;

    // Headers that never end.
    let (answer, elapsed) = slow_request(
        &app.address,
        "POST /api/download HTTP/1.1\r\nHost: 127.0.0.1\r\n".into(),
        b"Content-Type: application/json\r\n",
        false,
    )
    .await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(elapsed < BOUND);

    // A JSON body that stalls half-way, and one that trickles.
    for trickle in [false, true] {
        let (answer, elapsed) = slow_request(
            &app.address,
            post_head("/api/download", "application/json", 1000),
            br#"{"url": "http://127.0.0.1"#,
            trickle,
        )
        .await;
        assert_dropped(&answer, elapsed);
    }

    // Uploads that stall and trickle: answered, and nothing left on disk.
    for trickle in [false, true] {
        let (answer, elapsed) = slow_request(
            &app.address,
            post_head("/api/uploads?filename=slow.mp4", "application/octet-stream", 10_000_000),
            &[0u8; 1000],
            trickle,
        )
        .await;
        assert_dropped(&answer, elapsed);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !uploads_left(&app).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(uploads_left(&app), Vec::<std::path::PathBuf>::new(), "trickle={trickle}");
    }

    // A normal upload still works.
    let bytes = std::fs::read(media().dir.join("small.mp4")).expect("clip");
    let res = app
        .client
        .post(format!("{}/api/uploads?filename=ok.mp4", app.address))
        .body(bytes)
        .send()
        .await
        .expect("upload");
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap_or_default());
    assert_eq!(uploads_left(&app).len(), 1);
}

/// A site that accepts connections and never answers: yt-dlp waits on it.
async fn silent_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        // Bounded by the test: the runtime (and this task) ends with it.
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://127.0.0.1:{port}/video")
}

#[tokio::test]
async fn analyze_requests_beyond_the_wait_queue_are_refused_promptly() {
    let app = TestApp::spawn_with(AppOptions {
        start_worker: false,
        tweak: |s| {
            s.limits.analyze_queue = 1;
            s.limits.analyze_timeout_seconds = 10;
        },
        ..AppOptions::default()
    })
    .await;
    let url = silent_server().await;
    // Four analyze runs hold the four slots (from validation until the analyze
    // timeout: the site never answers); a fifth waits in the queue.
    let mut holders = Vec::new();
    for _ in 0..5 {
        let client = app.client.clone();
        let endpoint = format!("{}/api/analyze", app.address);
        let url = url.clone();
        holders.push(tokio::spawn(async move {
            client.post(endpoint).json(&json!({ "url": url })).send().await.map(|r| r.status().as_u16())
        }));
    }
    // Validation is quick (a loopback literal); then the slots are taken.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    for _ in 0..3 {
        let asked = Instant::now();
        let res = app.analyze(&url).await;
        assert_eq!(res.status(), 503);
        assert!(retry_after(&res) == 5);
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["code"], "analyze_busy", "{body}");
        assert!(asked.elapsed() < Duration::from_secs(2), "refused promptly: {:?}", asked.elapsed());
    }
    // Nothing answers before the analyze timeout: the holders end as timeouts,
    // the waiter as a timeout or busy (its wait is bounded by the same timeout).
    for h in holders {
        let status = tokio::time::timeout(Duration::from_secs(40), h)
            .await
            .expect("analyze ends within its timeout")
            .expect("task")
            .expect("answered");
        assert!(matches!(status, 503 | 504), "{status}");
    }
}
