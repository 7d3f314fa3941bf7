//! The web UI (crates/api/ui/) in a real headless Chromium, driven over WebDriver
//! (fantoccini → chromedriver, which each test starts on a free loopback port).
//!
//! Chromium and chromedriver are required: without them these tests fail and say
//! how to install them (scripts/install-deps.sh). The accessibility test needs
//! axe-core under tests/browser/node_modules (also installed by that script).
//! Screenshots go to `MEDIAPRO_SCREENSHOT_DIR` (default `target/screenshots/`).
//!
//! Every wait polls a condition every 50 ms up to a limit; no fixed sleep decides
//! an assertion.

use std::{
    cell::RefCell,
    future::Future,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::{AppOptions, Fixtures, TestApp, media};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const POLL: Duration = Duration::from_millis(50);
/// Long enough for a download or a short encode on a busy 2-core machine.
const TASK_LIMIT: Duration = Duration::from_secs(90);
const UI_LIMIT: Duration = Duration::from_secs(15);

const FULL_KEY: &str = "full-key-0123456789abcdef";
const READ_KEY: &str = "read-key-0123456789abcdef";

// ---------------------------------------------------------------- harness

/// Polls `check` every 50 ms until it answers `Some`, or panics after `limit`
/// with `what` and the last thing `check` reported.
async fn until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => {
                assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}; last: {last}")
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind port 0").local_addr().expect("addr").port()
}

fn tool(env: &str, default: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: the browser tests need Debian's `{package}` (run scripts/install-deps.sh), \
         or set {env} to the binary",
        path.display()
    );
    path
}

/// chromedriver, killed when the test ends.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Chromium (through its own chromedriver) per test.
struct Browser {
    client: Client,
    driver: Driver,
    session: String,
    http: reqwest::Client,
}

impl Browser {
    async fn start() -> Self {
        let chromium = tool("MEDIAPRO_CHROMIUM", CHROMIUM, "chromium");
        let chromedriver = tool("MEDIAPRO_CHROMEDRIVER", CHROMEDRIVER, "chromium-driver");
        let port = free_port();
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", chromedriver.display()));
        let driver = Driver { child, url: format!("http://127.0.0.1:{port}") };
        let http = reqwest::Client::new();
        let status = format!("{}/status", driver.url);
        until("chromedriver to answer /status", UI_LIMIT, || async {
            let res = http.get(&status).send().await.map_err(|e| e.to_string())?;
            let v: Value = res.json().await.map_err(|e| e.to_string())?;
            if v["value"]["ready"] == true { Ok(()) } else { Err(v.to_string()) }
        })
        .await;

        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800",
                    "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                    // Loopback only: nothing in the background, every other address
                    // through a proxy that does not exist (loopback bypasses proxies),
                    // and no name resolution.
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-default-apps", "--disable-domain-reliability", "--no-pings",
                    "--disable-client-side-phishing-detection", "--disable-breakpad",
                    "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication",
                    "--proxy-server=http://127.0.0.1:9",
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                    "--autoplay-policy=no-user-gesture-required",
                ],
            },
        });
        let Value::Object(caps) = caps else { unreachable!("an object") };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start {}: {e}", chromium.display()));
        let session = client.session_id().await.expect("session id").expect("a session");
        Browser { client, driver, session, http }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
        until("the page to load", UI_LIMIT, || async {
            let state = self.js("return document.readyState").await;
            if state == "complete" { Ok(()) } else { Err(state.to_string()) }
        })
        .await;
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    async fn js_with(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    async fn click(&self, css: &str) {
        let el = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("find {css}: {e}"));
        el.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("find {css}: {e}"));
        el.clear().await.unwrap_or_else(|e| panic!("clear {css}: {e}"));
        el.send_keys(text).await.unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Waits until `condition` (a JS expression) is truthy.
    async fn wait_js(&self, what: &str, limit: Duration, condition: &str) {
        let script = format!("return !!({condition})");
        until(what, limit, || async {
            if self.js(&script).await == true { Ok(()) } else { Err(format!("`{condition}` is false")) }
        })
        .await;
    }

    /// `data-status` of the queue row of `id`, null when the row is absent.
    async fn row_status(&self, id: &str) -> Value {
        self.js_with(
            "const r = document.querySelector(`#tasks [data-task-id=\"${arguments[0]}\"]`); \
             return r ? r.dataset.status : null;",
            vec![json!(id)],
        )
        .await
    }

    /// A Chrome DevTools command through chromedriver's `goog/cdp/execute`.
    async fn cdp(&self, cmd: &str, params: Value) {
        let url = format!("{}/session/{}/goog/cdp/execute", self.driver.url, self.session);
        let res = self
            .http
            .post(&url)
            .json(&json!({ "cmd": cmd, "params": params }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
        let status = res.status();
        assert!(status.is_success(), "{cmd}: {status} {}", res.text().await.unwrap_or_default());
    }

    /// Viewport of exactly `width`×`height` CSS pixels at scale 1.
    async fn viewport(&self, width: u32, height: u32) {
        let params =
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600 });
        self.cdp("Emulation.setDeviceMetricsOverride", params).await;
    }

    async fn color_scheme(&self, scheme: &str) {
        let params = json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] });
        self.cdp("Emulation.setEmulatedMedia", params).await;
    }

    async fn close(self) {
        let Browser { client, driver, .. } = self;
        let _ = client.close().await;
        drop(driver);
    }
}

/// Puts the API key in the page's storage (as the key prompt would) and reloads.
async fn use_key(b: &Browser, base: &str, key: &str) {
    b.goto(&format!("{base}/")).await;
    b.wait_js("the key prompt", UI_LIMIT, "!document.querySelector('#key-view').hidden").await;
    b.type_into("#key-input", key).await;
    b.click("#key-submit").await;
    b.wait_js("the key to be accepted", UI_LIMIT, "document.querySelector('#key-view').hidden").await;
}

/// Fails with a clear message when the API has no live event stream.
async fn require_events(app: &TestApp, key: Option<&str>) {
    let mut req = app.client.get(format!("{}/api/events", app.address)).header("accept", "text/event-stream");
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let res = tokio::time::timeout(Duration::from_secs(5), req.send()).await;
    let status = match res {
        Ok(Ok(res)) => res.status().as_u16(),
        Ok(Err(e)) => panic!("GET /api/events: {e}"),
        Err(_) => return, // headers not yet sent: a stream that waits for events
    };
    assert_eq!(status, 200, "GET /api/events answers {status}: the queue cannot update live without it");
}

async fn upload(app: &TestApp, name: &str, key: Option<&str>) -> String {
    let bytes = std::fs::read(media().dir.join(name)).expect("clip");
    let mut req = app
        .client
        .post(format!("{}/api/uploads?filename={name}", app.address))
        .header("content-type", "application/octet-stream")
        .body(bytes);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let res = req.send().await.expect("upload sent");
    let status = res.status();
    let body: Value = res.json().await.expect("upload json");
    assert!(status.is_success(), "upload refused: {status} {body}");
    body["input_file"].as_str().expect("input_file").to_owned()
}

async fn post_keyed(app: &TestApp, path: &str, key: &str, body: &Value) -> Value {
    let res = app
        .client
        .post(format!("{}{path}", app.address))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("request sent");
    let status = res.status();
    let body: Value = res.json().await.expect("json");
    assert_eq!(status, 202, "{path} refused: {body}");
    body
}

async fn wait_final_keyed(app: &TestApp, id: &str, key: &str) -> Value {
    let url = format!("{}/api/tasks/{id}", app.address);
    until(&format!("task {id} to finish"), TASK_LIMIT, || async {
        let t: Value = app
            .client
            .get(&url)
            .bearer_auth(key)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if matches!(t["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
            Ok(t)
        } else {
            Err(t.to_string())
        }
    })
    .await
}

/// Sets the two key lists of the brief (`security.api_keys`, `security.read_api_keys`)
/// through the settings' serde form, so that settings without read-only keys fail
/// here, at run time, with the reason.
fn with_keys(s: &mut mediapro_core::settings::Settings) {
    let mut v = serde_json::to_value(&*s).expect("settings serialize");
    v["security"]["api_keys"] = json!([FULL_KEY]);
    v["security"]["read_api_keys"] = json!([READ_KEY]);
    *s = serde_json::from_value(v).unwrap_or_else(|e| {
        panic!("these settings cannot take security.read_api_keys (read-only API keys): {e}")
    });
}

fn keyed_options() -> AppOptions {
    AppOptions { tweak: with_keys, ..AppOptions::default() }
}

/// Only the full key: the views behind the key prompt, without read-only keys.
fn full_key_options() -> AppOptions {
    AppOptions {
        tweak: |s| s.security.api_keys = vec![mediapro_core::settings::ApiKeyEntry::new(FULL_KEY)],
        ..AppOptions::default()
    }
}

// ---------------------------------------------------------------- flows

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_add_flow_downloads_the_picked_format() {
    let app = TestApp::spawn().await;
    let fx = Fixtures::serve().await;
    let b = Browser::start().await;
    b.goto(&format!("{}/", app.address)).await;

    b.type_into("#url", &fx.url("page.html")).await;
    b.click("#analyze").await;
    b.wait_js(
        "the formats table",
        TASK_LIMIT,
        "document.querySelectorAll('#formats input[name=format]:not([value=\"\"])').length >= 2",
    )
    .await;
    // The format with the lowest height in its Resolution cell ("320×180" or "180p").
    let picked = b
        .js("const rows = [...document.querySelectorAll('#formats tbody tr')]\
               .map((tr) => ({ radio: tr.querySelector('input[name=format]'), res: tr.cells[2]?.textContent || '' }))\
               .filter((r) => r.radio && r.radio.value)\
               .map((r) => { const m = /(\\d+)\\s*[×x]\\s*(\\d+)/.exec(r.res) || /(\\d+)p/.exec(r.res);\
                             return { id: r.radio.value, res: r.res, h: m ? Number(m[m.length - 1]) : NaN }; });\
             return rows;")
        .await;
    let rows = picked.as_array().expect("rows");
    assert_eq!(rows.len(), 2, "both sources listed: {picked}");
    let smallest = rows
        .iter()
        .filter(|r| r["h"].as_f64().is_some())
        .min_by_key(|r| r["h"].as_f64().map_or(u64::MAX, |h| h as u64))
        .unwrap_or_else(|| panic!("no row shows a height: {picked}"));
    assert!(smallest["res"].as_str().unwrap_or_default().contains("180"), "{picked}");
    let format_id = smallest["id"].as_str().expect("id").to_owned();
    b.click(&format!("#formats input[name=format][value=\"{format_id}\"]")).await;
    b.click("#download").await;

    let id = until("the new task's row", UI_LIMIT, || async {
        let id = b.js("return document.querySelector('#tasks [data-task-id]')?.dataset.taskId || null").await;
        id.as_str().map(str::to_owned).ok_or_else(|| "no row".to_owned())
    })
    .await;

    // Every 50 ms: the row's status, progress and phase, until it is final.
    let mut seen: Vec<(String, String, String)> = Vec::new();
    let start = Instant::now();
    let last = loop {
        let v = b
            .js_with(
                "const r = document.querySelector(`#tasks [data-task-id=\"${arguments[0]}\"]`);\
                 if (!r) return null;\
                 return [r.dataset.status || '', String(r.querySelector('.progress')?.value ?? ''),\
                         r.querySelector('.phase')?.textContent || ''];",
                vec![json!(id)],
            )
            .await;
        let state = (
            v[0].as_str().unwrap_or_default().to_owned(),
            v[1].as_str().unwrap_or_default().to_owned(),
            v[2].as_str().unwrap_or_default().to_owned(),
        );
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if matches!(state.0.as_str(), "completed" | "failed" | "cancelled") {
            break state;
        }
        if start.elapsed() > TASK_LIMIT {
            let api = app.task(&id).await;
            panic!(
                "row {id} not final after {TASK_LIMIT:?}; seen {seen:?}; the API says {} \
                 (after the submit, the row changes only through the live stream GET /api/events)",
                api["status"]
            );
        }
        tokio::time::sleep(POLL).await;
    };
    println!("add flow: row states seen {seen:?}");
    assert_eq!(last.0, "completed", "{seen:?}: {}", app.task(&id).await);
    assert!(seen.len() >= 2, "one state only: {seen:?}");
    // The bar moved through at least two values and the row through two phases.
    let values: std::collections::HashSet<&str> = seen.iter().map(|s| s.1.as_str()).collect();
    let phases: std::collections::HashSet<&str> = seen.iter().map(|s| s.2.as_str()).collect();
    assert!(values.len() >= 2, "the progress bar showed one value: {seen:?}");
    assert!(phases.len() >= 2, "the row showed one phase: {seen:?}");

    let href = b
        .js_with(
            "return document.querySelector(`#tasks [data-task-id=\"${arguments[0]}\"] a.result`)?.href || null",
            vec![json!(id)],
        )
        .await;
    let href = href.as_str().unwrap_or_else(|| panic!("no a.result in the completed row"));
    let bytes = app.client.get(href).send().await.expect("result").bytes().await.expect("body");
    assert!(bytes == std::fs::read(media().dir.join("small.mp4")).expect("clip"), "result is not small.mp4");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_collection_download_of_chosen_items_shows_its_entries() {
    let app = TestApp::spawn().await;
    let fx = crate::collections::FeedServer::serve().await;
    let b = Browser::start().await;
    b.goto(&format!("{}/", app.address)).await;

    // Analyze of a feed lists its entries and asks which items, instead of formats.
    b.type_into("#url", &fx.url("feed.xml")).await;
    b.click("#analyze").await;
    b.wait_js(
        "the playlist's entries",
        TASK_LIMIT,
        "!document.querySelector('#playlist-options').hidden && \
         document.querySelectorAll('#playlist-entries li').length === 12",
    )
    .await;
    let shown = b
        .js("return [document.querySelector('#media-meta').textContent, \
                     document.querySelector('#formats-wrap').hidden, \
                     document.querySelector('#playlist-entries li:nth-child(7)').textContent]")
        .await;
    assert_eq!(shown, json!(["Playlist of 12 entries", true, "Entry 7 0:01"]), "{shown}");
    b.type_into("#playlist-items", "2-4").await;
    b.viewport(1280, 800).await;
    screenshot(&b, "collection-form.png").await;
    let serious = axe_serious(&b, &axe_source(), "playlist form").await;
    assert!(serious.is_empty(), "serious or critical accessibility violations:\n{}", serious.join("\n"));
    b.click("#download").await;

    // The collection's row: its entries' counts as they complete.
    let id = until("the collection's row", UI_LIMIT, || async {
        let id = b
            .js("return [...document.querySelectorAll('#tasks li.task')]\
                   .find((li) => li.querySelector('.kind').textContent === 'playlist')?.dataset.taskId || null")
            .await;
        id.as_str().map(str::to_owned).ok_or_else(|| "no playlist row".to_owned())
    })
    .await;
    let mut seen: Vec<(String, String)> = Vec::new();
    let start = Instant::now();
    let last = loop {
        let v = b
            .js_with(
                "const r = document.querySelector(`#tasks [data-task-id=\"${arguments[0]}\"]`);\
                 return r ? [r.dataset.status, r.querySelector('.children').textContent] : null;",
                vec![json!(id)],
            )
            .await;
        let state =
            (v[0].as_str().unwrap_or_default().to_owned(), v[1].as_str().unwrap_or_default().to_owned());
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if matches!(state.0.as_str(), "completed" | "failed" | "cancelled") {
            break state;
        }
        assert!(start.elapsed() < TASK_LIMIT, "row {id} not final; seen {seen:?}: {}", app.task(&id).await);
        tokio::time::sleep(POLL).await;
    };
    println!("collection row states seen: {seen:?}");
    assert_eq!(last, ("completed".to_owned(), "Entries: 3 of 3 done · 3 completed".to_owned()), "{seen:?}");
    let parent = app.task(&id).await;
    assert_eq!(
        (parent["playlist_items"].as_str(), parent["children"].clone()),
        (Some("2-4"), json!({ "completed": 3 }))
    );
    b.js_with(
        "document.querySelector(`#tasks [data-task-id=\"${arguments[0]}\"]`).scrollIntoView({ block: 'center' })",
        vec![json!(id)],
    )
    .await;
    screenshot(&b, "collection-queue.png").await;

    // The task page says the same.
    b.goto(&format!("{}/#/task/{id}", app.address)).await;
    b.wait_js(
        "the collection's task page",
        UI_LIMIT,
        "document.querySelector('#task-fields dd[data-field=children]')?.textContent === \
         'Entries: 3 of 3 done · 3 completed'",
    )
    .await;
    let items =
        b.js("return document.querySelector('#task-fields dd[data-field=playlist_items]').textContent").await;
    assert_eq!(items, "2-4");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_upload_and_trim_plays_two_seconds() {
    let app = TestApp::spawn().await;
    let b = Browser::start().await;
    b.goto(&format!("{}/", app.address)).await;

    let clip = media().dir.join("small.mp4");
    let file = b.client.find(Locator::Css("#file")).await.expect("#file");
    file.send_keys(clip.to_str().expect("utf-8 path")).await.expect("choose the file");
    b.wait_js("the upload to finish", TASK_LIMIT, "!document.querySelector('#process').disabled").await;
    b.type_into("#trim-start", "1").await;
    b.type_into("#trim-duration", "2").await;
    b.click("#process").await;

    let id = until("the processing task to be queued", UI_LIMIT, || async {
        let v = b
            .js("const e = document.querySelector('#process-error')?.textContent;\
                 const a = document.querySelector('#process-done a');\
                 return a ? a.getAttribute('href') : (e ? 'error: ' + e : null);")
            .await;
        match v.as_str() {
            Some(h) if h.starts_with("error: ") => panic!("process refused: {h}"),
            Some(h) => Ok(h.trim_start_matches("#/task/").to_owned()),
            None => Err("not yet".into()),
        }
    })
    .await;
    let task = app.wait_final(&id, TASK_LIMIT).await;
    assert_eq!(task["status"], "completed", "{task}");

    b.goto(&format!("{}/#/task/{id}", app.address)).await;
    let duration = until("the player's metadata", UI_LIMIT, || async {
        let v = b
            .js("const p = document.querySelector('#player');\
                 return p && p.readyState >= 1 ? p.duration : null;")
            .await;
        v.as_f64().ok_or_else(|| "no #player with metadata".to_owned())
    })
    .await;
    assert!((duration - 2.0).abs() <= 0.2, "the trimmed result lasts {duration} s");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_cancel_stops_a_running_task() {
    let app = TestApp::spawn().await;
    let input = upload(&app, "long.mp4", None).await;
    let id = app.submit_process(&input, json!({ "resize": { "width": 320 } })).await;
    until("the encode to run", TASK_LIMIT, || async {
        let t = app.task(&id).await;
        if t["status"] == "processing" { Ok(()) } else { Err(t.to_string()) }
    })
    .await;

    let b = Browser::start().await;
    b.goto(&format!("{}/", app.address)).await;
    let cancel = format!("#tasks [data-task-id=\"{id}\"] .cancel");
    b.wait_js("the running row's cancel button", UI_LIMIT, &format!("document.querySelector('{cancel}')"))
        .await;
    b.click(&cancel).await;
    let clicked = Instant::now();
    until("the row to say cancelled", Duration::from_secs(2), || async {
        let s = b.row_status(&id).await;
        if s == "cancelled" { Ok(()) } else { Err(s.to_string()) }
    })
    .await;
    println!("cancelled {:?} after the click", clicked.elapsed());
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_list_shows_new_tasks_live() {
    let app = TestApp::spawn().await;
    let fx = Fixtures::serve().await;
    let b = Browser::start().await;
    b.goto(&format!("{}/", app.address)).await;
    // The first list has loaded (an empty queue says so).
    b.wait_js("the empty queue", UI_LIMIT, "!document.querySelector('#tasks-empty').hidden").await;
    require_events(&app, None).await;
    b.wait_js("the live stream", UI_LIMIT, "document.querySelector('#conn').dataset.state === 'live'").await;

    let id = app.submit_download(json!({ "url": fx.url("small.mp4") })).await;
    let submitted = Instant::now();
    until("the new row without a reload", Duration::from_secs(1), || async {
        let s = b.row_status(&id).await;
        if s.is_null() { Err("no row".into()) } else { Ok(()) }
    })
    .await;
    println!("row appeared {:?} after the submit", submitted.elapsed());
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_keys_prompt_and_read_only_view() {
    let app = TestApp::spawn_with(keyed_options()).await;
    let fx = Fixtures::serve().await;
    let b = Browser::start().await;
    let base = app.address.clone();
    b.goto(&format!("{base}/")).await;
    b.wait_js("the key prompt", UI_LIMIT, "!document.querySelector('#key-view').hidden").await;

    b.type_into("#key-input", "wrong-key-0123456789abcdef").await;
    b.click("#key-submit").await;
    b.wait_js(
        "the wrong key's error",
        UI_LIMIT,
        "document.querySelector('#key-error').textContent.trim() !== ''",
    )
    .await;

    b.type_into("#key-input", READ_KEY).await;
    b.click("#key-submit").await;
    b.wait_js("the read-only key to be accepted", UI_LIMIT, "document.querySelector('#key-view').hidden")
        .await;
    let hidden = b
        .js("const visible = (id) => { const e = document.getElementById(id);\
                 return !!e && e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden'; };\
             return ['download', 'process', 'analyze'].filter(visible);")
        .await;
    assert_eq!(hidden, json!([]), "submit controls shown to a read-only key");

    require_events(&app, Some(READ_KEY)).await;
    let body = post_keyed(&app, "/api/download", FULL_KEY, &json!({ "url": fx.url("small.mp4") })).await;
    let id = body["task_id"].as_str().expect("task_id").to_owned();
    until("the full key's task in the read-only list", UI_LIMIT, || async {
        let s = b.row_status(&id).await;
        if s.is_null() { Err("no row".into()) } else { Ok(()) }
    })
    .await;
    b.close().await;
}

// ---------------------------------------------------------------- views: accessibility, screenshots

/// The views of the page, each opened in `b`: the key prompt, the queue with the
/// Add form, the upload form (after an upload), a completed task's page. `visit`
/// is called on each with its name.
async fn each_view<F, Fut>(b: &Browser, mut visit: F)
where
    F: FnMut(&'static str) -> Fut,
    Fut: Future<Output = ()>,
{
    let app = TestApp::spawn_with(full_key_options()).await;
    let input = upload(&app, "small.mp4", Some(FULL_KEY)).await;
    let body = json!({ "input_file": input, "operations": { "trim": { "start": 0, "duration": 1 } } });
    let answer = post_keyed(&app, "/api/process", FULL_KEY, &body).await;
    let id = answer["task_id"].as_str().expect("task_id").to_owned();
    let task = wait_final_keyed(&app, &id, FULL_KEY).await;
    assert_eq!(task["status"], "completed", "{task}");
    let base = app.address.clone();

    b.goto(&format!("{base}/")).await;
    b.wait_js("the key prompt", UI_LIMIT, "!document.querySelector('#key-view').hidden").await;
    visit("key-prompt").await;

    use_key(b, &base, FULL_KEY).await;
    b.wait_js("the queue's rows", UI_LIMIT, "document.querySelector('#tasks [data-task-id]')").await;
    b.js("window.scrollTo(0, 0); return null").await;
    visit("queue").await;

    let file = b.client.find(Locator::Css("#file")).await.expect("#file");
    let clip = media().dir.join("small.mp4");
    file.send_keys(clip.to_str().expect("utf-8 path")).await.expect("choose the file");
    b.wait_js("the upload to finish", TASK_LIMIT, "!document.querySelector('#process').disabled").await;
    b.js("document.querySelector('#upload').scrollIntoView(); return null").await;
    visit("upload").await;

    b.goto(&format!("{base}/#/task/{id}")).await;
    b.wait_js(
        "the task page's player",
        UI_LIMIT,
        "(() => { const p = document.querySelector('#player'); return p && p.readyState >= 1; })()",
    )
    .await;
    visit("task").await;
}

fn axe_source() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
    let path = dir.join("node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; install axe-core with scripts/install-deps.sh (npm install --prefix tests/browser)",
            path.display()
        )
    })
}

/// Runs axe-core on the page as it is and returns its serious and critical
/// violations, described (all of them are printed).
async fn axe_serious(b: &Browser, axe: &str, view: &str) -> Vec<String> {
    // Injected on each visit: a navigation starts a new document.
    if b.js("return typeof window.axe").await != "object" {
        b.js(&format!("{axe}\n;return null")).await;
    }
    let script = "const done = arguments[arguments.length - 1];\
        axe.run(document, { resultTypes: ['violations'] })\
          .then((r) => done(JSON.stringify(r.violations)))\
          .catch((e) => done(JSON.stringify({ error: String(e) })));";
    let out = b.client.execute_async(script, vec![]).await.expect("axe.run");
    let violations: Value = serde_json::from_str(out.as_str().expect("json text")).expect("axe json");
    let Some(list) = violations.as_array() else { panic!("axe failed on {view}: {violations}") };
    let all: Vec<String> =
        list.iter().map(|v| format!("{} ({})", v["id"], v["impact"].as_str().unwrap_or("?"))).collect();
    println!("axe on {view}: {} violation(s) {all:?}", list.len());
    list.iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .map(|v| {
            let nodes: Vec<String> = v["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| format!("    {} — {}", n["target"], n["failureSummary"].as_str().unwrap_or("")))
                .collect();
            format!(
                "[{view}] {} ({}): {}\n{}",
                v["id"].as_str().unwrap_or("?"),
                v["impact"].as_str().unwrap_or("?"),
                v["help"].as_str().unwrap_or(""),
                nodes.join("\n")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_views_have_no_serious_accessibility_violations() {
    let axe = axe_source();
    let b = Browser::start().await;
    let failures = RefCell::new(Vec::new());
    let checked = RefCell::new(Vec::new());
    each_view(&b, |view| {
        let (b, axe, failures) = (&b, &axe, &failures);
        checked.borrow_mut().push(view);
        async move {
            let serious = axe_serious(b, axe, view).await;
            failures.borrow_mut().extend(serious);
        }
    })
    .await;
    b.close().await;
    assert_eq!(checked.into_inner(), ["key-prompt", "queue", "upload", "task"]);
    let failures = failures.into_inner();
    assert!(failures.is_empty(), "serious or critical accessibility violations:\n{}", failures.join("\n"));
}

fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("MEDIAPRO_SCREENSHOT_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// A screenshot of the page as it is, into `screenshot_dir()`.
async fn screenshot(b: &Browser, name: &str) {
    let png = b.client.screenshot().await.expect("screenshot");
    assert!(png_size(&png).is_some(), "{name} is not a PNG");
    let path = screenshot_dir().join(name);
    std::fs::write(&path, &png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("screenshot: {}", path.display());
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.get(..8)? != b"\x89PNG\r\n\x1a\n" {
        return None;
    }
    let w = u32::from_be_bytes(png.get(16..20)?.try_into().ok()?);
    let h = u32::from_be_bytes(png.get(20..24)?.try_into().ok()?);
    Some((w, h))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_screenshots_of_each_view() {
    let dir = screenshot_dir();
    let b = Browser::start().await;
    let written = RefCell::new(Vec::new());
    each_view(&b, |view| {
        let (b, dir, written) = (&b, &dir, &written);
        async move {
            for (width, height) in [(1280u32, 800u32), (390, 844)] {
                for scheme in ["light", "dark"] {
                    b.viewport(width, height).await;
                    b.color_scheme(scheme).await;
                    b.wait_js(
                        "the emulated viewport and colour scheme",
                        UI_LIMIT,
                        &format!(
                            "window.innerWidth === {width} && \
                             matchMedia('(prefers-color-scheme: {scheme})').matches"
                        ),
                    )
                    .await;
                    let png = b.client.screenshot().await.expect("screenshot");
                    assert_eq!(png_size(&png), Some((width, height)), "{view} {width}x{height} {scheme}");
                    let path = dir.join(format!("{view}-{width}x{height}-{scheme}.png"));
                    std::fs::write(&path, &png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    written.borrow_mut().push(path);
                }
            }
        }
    })
    .await;
    b.close().await;
    let written = written.into_inner();
    for path in &written {
        println!("screenshot: {}", path.display());
    }
    assert_eq!(written.len(), 16);
}
