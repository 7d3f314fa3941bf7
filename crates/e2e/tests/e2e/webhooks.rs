//! Signed webhooks end to end: a receiver on 127.0.0.1 written here checks the
//! Standard Webhooks signature with its own HMAC; a receiver that fails gets the
//! same message again until it answers 2xx; a worker killed before delivering
//! leaves the message in the store's outbox for the next worker; callbacks and
//! endpoints on a refused address are refused at submission and at connect time.

use std::{
    collections::{HashMap, VecDeque},
    net::TcpListener,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, http::StatusCode, web};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use mediapro_core::{
    settings::{Settings, WebhookEndpoint},
    task::TaskKind,
    webhooks::{WebhookEvent, WebhookSecret},
};
use mediapro_worker::WorkerOptions;
use serde_json::{Value, json};
use sha2::Sha256;
use strum::IntoEnumIterator as _;

use crate::helpers::{AppOptions, Fixtures, TestApp, worker_bin};

const LIMIT: Duration = Duration::from_secs(90);
/// 32 bytes: the secret's key material.
const KEY: &[u8] = b"mediapro-e2e-webhook-secret-0001";

fn secret_text() -> String {
    format!("whsec_{}", STANDARD.encode(KEY))
}

/// Webhooks signed with [`KEY`], polled every 100 ms, retried after at most 0.2 s,
/// 0.4 s, … (capped at 1 s).
fn webhooks_on(s: &mut Settings) {
    s.webhooks.signing_secret = Some(WebhookSecret::parse(&secret_text()).expect("secret"));
    s.webhooks.poll_interval_ms = 100;
    s.webhooks.retry_base_seconds = 0.2;
    s.webhooks.retry_max_delay_seconds = 1;
    s.webhooks.timeout_seconds = 2;
}

/// The Standard Webhooks signature, computed here (not with the service's code).
fn expected_signature(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[derive(Debug, Clone)]
struct Received {
    at: time::OffsetDateTime,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    /// The signature checks out with `key`.
    fn verifies_with(&self, key: &[u8]) -> bool {
        let id = self.header("webhook-id");
        let ts = self.header("webhook-timestamp");
        self.header("webhook-signature") == expected_signature(key, id, ts, &self.body)
    }
}

/// A webhook receiver: answers the scripted statuses first, then `default`.
struct Receiver {
    base: String,
    received: Arc<Mutex<Vec<Received>>>,
    default: Arc<Mutex<u16>>,
}

impl Receiver {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    fn count(&self) -> usize {
        self.received.lock().expect("lock").len()
    }

    fn answer(&self, status: u16) {
        *self.default.lock().expect("lock") = status;
    }
}

fn receive(ip: &str, script: &[u16], default: u16) -> Receiver {
    let listener = TcpListener::bind(format!("{ip}:0")).expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let received = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<u16>>()));
    let default = Arc::new(Mutex::new(default));
    let (log, plan, fallback) = (received.clone(), script.clone(), default.clone());
    let server = HttpServer::new(move || {
        let (log, plan, fallback) = (log.clone(), plan.clone(), fallback.clone());
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                .collect();
            let path = req.uri().to_string();
            let at = time::OffsetDateTime::now_utc();
            log.lock().expect("lock").push(Received { at, path, headers, body: body.to_vec() });
            let next = plan.lock().expect("lock").pop_front();
            let status = next.unwrap_or_else(|| *fallback.lock().expect("lock"));
            async move { HttpResponse::build(StatusCode::from_u16(status).expect("status")).finish() }
        }))
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    Receiver { base, received, default }
}

async fn deliveries(app: &TestApp, id: &str) -> Vec<Value> {
    let res = app.get(&format!("/api/tasks/{id}/deliveries")).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    body["deliveries"].as_array().cloned().expect("a deliveries list")
}

/// Polls the task's deliveries until `done` holds; panics with them after `limit`.
async fn wait_deliveries(
    app: &TestApp,
    id: &str,
    limit: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let list = deliveries(app, id).await;
        if done(&list) {
            return list;
        }
        assert!(start.elapsed() < limit, "deliveries of {id} after {limit:?}: {list:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn statuses(delivery: &Value) -> Vec<Value> {
    delivery["attempts"].as_array().expect("attempts").iter().map(|a| a["status_code"].clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_signed_per_standard_webhooks_and_carries_the_task_json() {
    let app = TestApp::spawn_with(AppOptions { tweak: webhooks_on, ..Default::default() }).await;
    let fx = Fixtures::serve().await;
    let hook = receive("127.0.0.1", &[], 200);
    let id = app
        .submit_download(json!({ "url": fx.url("small.mp4"), "callback_url": hook.url("/done?token=abc") }))
        .await;
    let task = app.wait_final(&id, LIMIT).await;
    assert_eq!(task["status"], "completed", "{task}");
    let list = wait_deliveries(&app, &id, Duration::from_secs(20), |l| {
        l.first().is_some_and(|d| d["status"] == "delivered")
    })
    .await;

    let got = hook.received();
    assert_eq!(got.len(), 1, "{got:#?}");
    let message = &got[0];
    assert_eq!(message.path, "/done?token=abc");
    let webhook_id = message.header("webhook-id");
    assert!(webhook_id.starts_with("msg_"), "{webhook_id}");
    let timestamp: i64 = message.header("webhook-timestamp").parse().expect("unix seconds");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now - timestamp).abs() < 60, "timestamp {timestamp}, now {now}");
    assert!(message.verifies_with(KEY), "signature {} does not verify", message.header("webhook-signature"));
    assert!(!message.verifies_with(b"another-secret-of-thirty-two-by!"), "a wrong key must not verify");
    assert_eq!(message.header("webhook-event"), "task.completed");
    assert_eq!(message.header("content-type"), "application/json");
    // The body is the task as GET /api/tasks/{id} shows it.
    let body: Value = serde_json::from_slice(&message.body).expect("JSON body");
    assert_eq!(body, task);
    let completed = time::OffsetDateTime::parse(
        task["completed_at"].as_str().expect("completed_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    // A figure, not a bound: the deliverer polls every 100 ms here (1 s by default).
    let latency_ms = (message.at - completed).as_seconds_f64() * 1000.0;
    eprintln!("webhook received {latency_ms:.0} ms after the task completed");

    assert_eq!(list.len(), 1, "{list:#?}");
    let d = &list[0];
    assert_eq!(d["webhook_id"], webhook_id);
    assert_eq!(d["event"], "task.completed");
    assert_eq!(d["url"], hook.url("/done?…"), "the query is masked");
    assert_eq!(d["next_attempt_at"], Value::Null);
    assert_eq!(statuses(d), vec![json!(200)]);
    assert_eq!(d["attempts"][0]["attempt"], 1);
    assert_eq!(d["attempts"][0]["error"], Value::Null);
    assert!(d["attempts"][0]["duration_ms"].as_i64().is_some_and(|ms| ms >= 0));

    let res = app.get(&format!("/api/tasks/{}/deliveries", uuid::Uuid::new_v4())).await;
    assert_eq!(res.status(), 404);
    let err: Value = res.json().await.expect("json");
    assert_eq!(err["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_three_times_gets_the_same_message_four_times() {
    let app = TestApp::spawn_with(AppOptions { tweak: webhooks_on, ..Default::default() }).await;
    let fx = Fixtures::serve().await;
    let hook = receive("127.0.0.1", &[500, 500, 500], 200);
    let id =
        app.submit_download(json!({ "url": fx.url("small.mp4"), "callback_url": hook.url("/hook") })).await;
    assert_eq!(app.wait_final(&id, LIMIT).await["status"], "completed");
    let list = wait_deliveries(&app, &id, Duration::from_secs(30), |l| {
        l.first().is_some_and(|d| d["status"] == "delivered")
    })
    .await;
    assert_eq!(statuses(&list[0]), vec![json!(500), json!(500), json!(500), json!(200)], "{list:#?}");
    let numbers: Vec<i64> = list[0]["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .filter_map(|a| a["attempt"].as_i64())
        .collect();
    assert_eq!(numbers, vec![1, 2, 3, 4]);

    let got = hook.received();
    assert_eq!(got.len(), 4, "{got:#?}");
    let webhook_id = list[0]["webhook_id"].as_str().expect("id");
    for message in &got {
        assert_eq!(message.header("webhook-id"), webhook_id, "one message id across retries");
        assert!(message.verifies_with(KEY));
        assert_eq!(message.body, got[0].body, "the same body on every attempt");
    }
    // Delivered: no further attempt.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(hook.count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_before_delivering_leaves_the_message_for_the_next_worker() {
    let app =
        TestApp::spawn_with(AppOptions { tweak: webhooks_on, start_worker: false, ..Default::default() })
            .await;
    let fx = Fixtures::serve().await;
    let hook = receive("127.0.0.1", &[], 503);
    // A worker process that does the job, then cannot deliver (503) and is killed.
    let mut worker = std::process::Command::new(worker_bin())
        .args(["--queues", "download", "--concurrency", "1"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(app.worker_env())
        // Settings dumps redact secrets: give the process the real one.
        .env("MEDIAPRO__WEBHOOKS__SIGNING_SECRET", secret_text())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("worker binary starts");
    let id =
        app.submit_download(json!({ "url": fx.url("small.mp4"), "callback_url": hook.url("/hook") })).await;
    let task = app.wait_final(&id, LIMIT).await;
    assert_eq!(task["status"], "completed", "{task}");
    wait_deliveries(&app, &id, Duration::from_secs(20), |l| {
        l.first().is_some_and(|d| !d["attempts"].as_array().expect("attempts").is_empty())
    })
    .await;
    worker.kill().expect("SIGKILL the worker");
    worker.wait().expect("reaped");

    // Nobody delivers while no worker runs, even though the receiver is back.
    hook.answer(200);
    let seen = hook.count();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hook.count(), seen, "no worker, no delivery");
    let pending = deliveries(&app, &id).await;
    assert_eq!(pending[0]["status"], "pending", "{pending:#?}");
    assert!(statuses(&pending[0]).iter().all(|s| *s == json!(503)), "{pending:#?}");

    // A new worker (another process's deliverer) finds the message in the outbox.
    let settings = app.settings.clone();
    tokio::spawn(async move {
        let options = WorkerOptions { queues: TaskKind::iter().collect(), concurrency: Some(1), ytdlp: None };
        if let Err(e) = mediapro_worker::run(settings, options, std::future::pending()).await {
            eprintln!("worker stopped: {e}");
        }
    });
    // Within the killed attempt's lease (timeout 2 s + 5 s) plus the backoff.
    let list = wait_deliveries(&app, &id, Duration::from_secs(30), |l| {
        l.first().is_some_and(|d| d["status"] == "delivered")
    })
    .await;
    let codes = statuses(&list[0]);
    assert_eq!(codes.last(), Some(&json!(200)), "{list:#?}");
    let webhook_id = list[0]["webhook_id"].as_str().expect("id");
    let got = hook.received();
    assert!(got.len() >= 2, "{got:#?}");
    assert!(got.iter().all(|m| m.header("webhook-id") == webhook_id && m.verifies_with(KEY)));
}

/// The "internal network" receiver of the next test (a `tweak` is a plain `fn`).
static INTERNAL_ENDPOINT: OnceLock<String> = OnceLock::new();

fn only_loopback_one_with_an_internal_endpoint(s: &mut Settings) {
    webhooks_on(s);
    s.security.allow_private_networks = false;
    s.security.allowed_networks = vec!["127.0.0.1/32".into()];
    // Retried for 2 s only, then failed.
    s.webhooks.give_up_after_seconds = 2;
    s.webhooks.endpoints = vec![WebhookEndpoint {
        url: INTERNAL_ENDPOINT.get().expect("set before the app starts").clone(),
        events: vec![WebhookEvent::TaskCompleted],
        secret: None,
    }];
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_address_is_refused_at_submission_and_at_connect_time() {
    let internal = receive("127.0.0.2", &[], 200);
    INTERNAL_ENDPOINT.set(internal.url("/internal")).expect("one test sets it");
    let app = TestApp::spawn_with(AppOptions {
        tweak: only_loopback_one_with_an_internal_endpoint,
        ..Default::default()
    })
    .await;
    let fx = Fixtures::serve().await;
    let hook = receive("127.0.0.1", &[], 200);

    // Submission: a callback on 127.0.0.2 is refused before anything is queued.
    let before = app.task_count().await;
    let res = app.download(json!({ "url": fx.url("small.mp4"), "callback_url": internal.url("/cb") })).await;
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.expect("json");
    assert_eq!(err["code"], "private_address", "{err}");
    assert!(err["error"].as_str().unwrap_or_default().starts_with("callback_url:"), "{err}");
    let res = app
        .post_json("/api/process", &json!({ "input_file": "x.mp4", "callback_url": "ftp://127.0.0.1/" }))
        .await;
    let err: Value = res.json().await.expect("json");
    assert_eq!(err["code"], "unsupported_scheme", "{err}");
    assert_eq!(app.task_count().await, before, "nothing stored");

    // Connect time: the configured endpoint on 127.0.0.2 is refused by the egress
    // guard on every attempt until it gives up; the allowed callback is delivered.
    let id =
        app.submit_download(json!({ "url": fx.url("small.mp4"), "callback_url": hook.url("/cb") })).await;
    assert_eq!(app.wait_final(&id, LIMIT).await["status"], "completed");
    let list = wait_deliveries(&app, &id, Duration::from_secs(20), |l| {
        l.len() == 2
            && l.iter().any(|d| d["status"] == "delivered")
            && l.iter().any(|d| d["status"] == "failed")
    })
    .await;
    let refused =
        list.iter().find(|d| d["url"] == internal.url("/internal")).expect("the endpoint's message");
    assert_eq!(refused["status"], "failed", "{refused:#}");
    assert_eq!(refused["next_attempt_at"], Value::Null);
    let tries = refused["attempts"].as_array().map_or(0, Vec::len);
    assert!(tries >= 2, "retried before giving up: {refused:#}");
    for attempt in refused["attempts"].as_array().expect("attempts") {
        assert_eq!(attempt["status_code"], Value::Null, "{attempt}");
        let error = attempt["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("blocked: 127.0.0.2"), "{error}");
    }
    assert_eq!(internal.count(), 0, "the internal receiver saw nothing");
    assert_eq!(hook.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_without_a_signing_secret_is_refused() {
    let app = TestApp::spawn().await;
    let res = app
        .download(json!({ "url": "http://127.0.0.1:9/v.mp4", "callback_url": "http://127.0.0.1:9/cb" }))
        .await;
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.expect("json");
    assert_eq!(err["code"], "webhooks_not_configured", "{err}");
    assert_eq!(app.task_count().await, 0);
}

/// An `https://` callback goes through the egress proxy as a `CONNECT` tunnel and
/// speaks TLS in it: a receiver that only speaks plain HTTP gets no request it can
/// read, and the attempt is recorded with the TLS error (no certificate a test could
/// make is trusted, so a successful TLS delivery is not tested here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_callback_is_tunnelled_and_spoken_in_tls() {
    let app = TestApp::spawn_with(AppOptions { tweak: webhooks_on, ..Default::default() }).await;
    let fx = Fixtures::serve().await;
    let plain = receive("127.0.0.1", &[], 200);
    let callback = plain.url("/tls").replacen("http://", "https://", 1);
    let id = app.submit_download(json!({ "url": fx.url("small.mp4"), "callback_url": callback })).await;
    assert_eq!(app.wait_final(&id, LIMIT).await["status"], "completed");
    let list = wait_deliveries(&app, &id, Duration::from_secs(20), |l| {
        l.first().is_some_and(|d| d["attempts"].as_array().is_some_and(|a| !a.is_empty()))
    })
    .await;
    let attempt = &list[0]["attempts"][0];
    assert_eq!(attempt["status_code"], Value::Null, "{attempt}");
    let error = attempt["error"].as_str().unwrap_or_default();
    assert!(!error.is_empty() && !error.starts_with("blocked"), "{error}");
    eprintln!("https attempt to a plain-HTTP receiver recorded: {error}");
    assert_eq!(list[0]["status"], "pending", "retried");
    assert_eq!(plain.count(), 0, "no plain HTTP request was sent");
}
