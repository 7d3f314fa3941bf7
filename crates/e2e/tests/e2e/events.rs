//! `GET /api/events`: task changes as server-sent events, resumable with
//! `Last-Event-ID`, and shared across API instances through Redis.

use std::{
    net::TcpListener,
    time::{Duration, Instant},
};

use mediapro_api::Application;
use serde_json::{Value, json};

use crate::helpers::{AppOptions, Fixtures, TestApp};

/// One parsed server-sent event.
#[derive(Debug, Clone)]
pub struct Sse {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// A minimal SSE reader over a streaming reqwest response.
pub struct Stream {
    res: reqwest::Response,
    buf: String,
}

impl Stream {
    pub async fn open(base: &str, query: &str, last_id: Option<&str>) -> Self {
        let client = reqwest::Client::new();
        let mut req = client.get(format!("{base}/api/events{query}"));
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req.send().await.expect("event stream");
        assert_eq!(res.status(), 200);
        let ctype = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(ctype.starts_with("text/event-stream"), "{ctype}");
        Stream { res, buf: String::new() }
    }

    /// The next event (keep-alive comments skipped), within `limit`.
    pub async fn next(&mut self, limit: Duration) -> Option<Sse> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, "message".to_owned(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a comment (keep-alive)
                }
                return Some(Sse {
                    id,
                    event,
                    data: serde_json::from_str(&data).expect("event data is JSON"),
                });
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.res.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// Task events until `n` have arrived.
    async fn tasks(&mut self, n: usize, limit: Duration) -> Vec<Sse> {
        let mut out = Vec::new();
        while out.len() < n {
            let Some(e) = self.next(limit).await else { break };
            out.push(e);
        }
        out
    }
}

fn submit_body(fx: &Fixtures) -> Value {
    json!({ "url": fx.url("small.mp4") })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_replays_exactly_the_missed_events() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..AppOptions::default() }).await;
    let fx = Fixtures::serve().await;
    let limit = Duration::from_secs(10);

    let mut first = Stream::open(&app.address, "", None).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.submit_download(submit_body(&fx)).await);
    }
    let seen = first.tasks(3, limit).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (e, id) in seen.iter().zip(&ids) {
        assert_eq!((e.event.as_str(), e.data["task_id"].as_str()), ("task", Some(id.as_str())));
        assert_eq!(e.data["status"], "pending");
        assert_eq!(e.data["phase"], "queued");
    }
    let resume_from = seen[2].id.clone().expect("events carry ids");
    drop(first);

    // Missed while disconnected: two submissions and a cancel.
    let later = [app.submit_download(submit_body(&fx)).await, app.submit_download(submit_body(&fx)).await];
    let res =
        app.client.delete(format!("{}/api/tasks/{}", app.address, ids[0])).send().await.expect("cancel");
    assert_eq!(res.status(), 200);

    let mut resumed = Stream::open(&app.address, "", Some(&resume_from)).await;
    let replay = resumed.tasks(3, limit).await;
    let got: Vec<(String, String)> = replay
        .iter()
        .map(|e| (e.data["task_id"].as_str().unwrap_or_default().to_owned(), e.data["status"].to_string()))
        .collect();
    assert_eq!(
        got,
        vec![
            (later[0].clone(), "\"pending\"".to_owned()),
            (later[1].clone(), "\"pending\"".to_owned()),
            (ids[0].clone(), "\"cancelled\"".to_owned()),
        ],
        "exactly the missed events, in order"
    );
    assert!(resumed.next(Duration::from_millis(500)).await.is_none(), "nothing more was replayed");

    // Filters apply to the replay too; an id from before the stream's start
    // (trimmed away) gets a snapshot so the client re-lists.
    let mut filtered =
        Stream::open(&app.address, &format!("?task_id={}", later[1]), Some(&resume_from)).await;
    let only = filtered.tasks(1, limit).await;
    assert_eq!(only[0].data["task_id"], later[1].as_str());
    assert!(filtered.next(Duration::from_millis(500)).await.is_none());
    let mut stale = Stream::open(&app.address, "", Some("1-0")).await;
    assert_eq!(stale.next(limit).await.expect("snapshot").event, "snapshot");

    let res = app.get("/api/events?status=done").await;
    assert_eq!(res.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_a_second_api_sees_a_task_started_through_the_first() {
    let app = TestApp::spawn().await;
    let fx = Fixtures::serve().await;
    // A second API instance on the same Redis namespace and store.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let second = Application::build_with_listener(app.settings.clone(), listener).await.expect("second api");
    let second_address = format!("http://127.0.0.1:{}", second.port());
    tokio::spawn(second.run_until_stopped());

    let mut stream = Stream::open(&second_address, "", None).await;
    let id = app.submit_download(submit_body(&fx)).await;
    let mut statuses = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Some(e) = stream.next(Duration::from_secs(30)).await else { break };
        if e.data["task_id"] == id.as_str() {
            statuses.push(e.data["status"].as_str().unwrap_or_default().to_owned());
            if e.data["status"] == "completed" {
                assert_eq!(e.data["progress"], 100.0);
                assert!(e.data["downloaded_files"][0].as_str().is_some(), "{}", e.data);
                break;
            }
        }
    }
    assert_eq!(statuses.first().map(String::as_str), Some("pending"), "{statuses:?}");
    assert!(statuses.iter().any(|s| s == "downloading"), "{statuses:?}");
    assert_eq!(statuses.last().map(String::as_str), Some("completed"), "{statuses:?}");
}
