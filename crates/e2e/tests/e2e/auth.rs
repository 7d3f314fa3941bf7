//! API keys against the real server: no spelling of a path reaches a handler without
//! a key (the check runs after routing, `crates/api/src/auth.rs`), read keys only
//! read, open routes stay open, and a keyless API answers only loopback hosts.

use std::time::Duration;

use mediapro_core::settings::{ApiKeyEntry, Settings};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{AppOptions, TestApp};

const FULL: &str = "full-key-e2e-0123456789abcdef";
const READ: &str = "read-key-e2e-0123456789abcdef";
const WRONG: &str = "wrong-key-e2e-0123456789abcdef";
/// Keys configured only as `sha256:` of these (digests made with `sha256sum`).
const HASHED_FULL: &str = "hashed-full-key-e2e-0123456789";
const HASHED_READ: &str = "hashed-read-key-e2e-0123456789";
const HASHED_FULL_SHA: &str = "f57e588cb00a7b9a09bc71a530b955f545529f4a2675e72ee52a993e24a83cf8";
const HASHED_READ_SHA: &str = "18962d39af3ad5ee27b6186f9c949c044f28941c344432f6ad2e8eecc85bb038";

fn with_keys(s: &mut Settings) {
    s.security.api_keys = vec![ApiKeyEntry::new(FULL)];
    s.security.read_api_keys = vec![ApiKeyEntry::new(READ)];
}

fn with_hashed_keys(s: &mut Settings) {
    s.security.api_keys = vec![ApiKeyEntry::new(format!("sha256:{HASHED_FULL_SHA}"))];
    s.security.read_api_keys = vec![ApiKeyEntry::new(format!("sha256:{}", HASHED_READ_SHA.to_uppercase()))];
}

async fn spawn(tweak: fn(&mut Settings)) -> TestApp {
    TestApp::spawn_with(AppOptions { tweak, start_worker: false, ..AppOptions::default() }).await
}

/// An answer read off the socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    /// The `code` of a JSON error body (the body may be chunked: search, do not parse).
    fn code(&self) -> Option<&str> {
        let start = self.body.find("\"code\":\"")? + 8;
        let len = self.body[start..].find('"')?;
        Some(&self.body[start..start + len])
    }
}

/// Sends `method target HTTP/1.1` exactly as written (reqwest would normalise many
/// of these targets), with `Host: 127.0.0.1:<port>` unless `headers` has a Host.
async fn raw(app: &TestApp, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Raw {
    let addr = app.address.trim_start_matches("http://");
    let mut req = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method != "GET" && method != "HEAD" {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(req.as_bytes()).await.expect("send");
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.expect("read");
        out
    };
    let out = tokio::time::timeout(Duration::from_secs(10), exchange).await.expect("answer within 10 s");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    Raw { status, head: head.to_owned(), body: body.to_owned() }
}

fn assert_unauthorized(r: &Raw, what: &str) {
    assert_eq!(r.status, 401, "{what}: {r:?}");
    assert_eq!(r.code(), Some("unauthorized"), "{what}: {r:?}");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}: {r:?}");
}

/// 401, or the app's own 404 for a path that matches no route: never a handler's
/// answer (2xx, a validation 400, a handler's 404 "task not found", a 405…).
fn assert_no_handler(r: &Raw, what: &str) {
    match r.status {
        401 => assert_unauthorized(r, what),
        404 => {
            assert_eq!(r.code(), Some("not_found"), "{what}: {r:?}");
            assert!(r.body.contains("no route for"), "{what} reached a handler: {r:?}");
        }
        _ => panic!("{what}: expected 401 or the no-route 404, got {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spelling_of_a_path_reaches_a_handler_without_a_key() {
    let app = spawn(with_keys).await;
    let id = uuid::Uuid::new_v4();
    let port = app.address.rsplit(':').next().expect("port").to_owned();
    let download = json!({ "url": "http://127.0.0.1:9/v.mp4" }).to_string();
    let targets: Vec<(&str, String, &str)> = vec![
        ("GET", "/api/tasks".into(), ""),
        ("GET", "/%61pi/tasks".into(), ""),
        ("GET", "/%61%70%69/%74%61%73%6b%73".into(), ""),
        ("GET", "/api/%74asks".into(), ""),
        ("GET", "/ap%69/download".into(), ""),
        ("GET", "//api/tasks".into(), ""),
        ("GET", "/api/./tasks".into(), ""),
        ("GET", "/api//tasks".into(), ""),
        ("GET", "/API/tasks".into(), ""),
        ("GET", "/Api/Tasks".into(), ""),
        ("GET", "/api/tasks/".into(), ""),
        ("GET", "/%2Fapi/tasks".into(), ""),
        ("GET", "/%2fapi/tasks".into(), ""),
        ("GET", "/api%2Ftasks".into(), ""),
        ("GET", "/api/tasks;x".into(), ""),
        ("GET", "/api/tasks%00".into(), ""),
        ("GET", "/api/tasks%20".into(), ""),
        ("GET", "/api/tasks?x=/healthz".into(), ""),
        ("GET", "/api/tasks?limit=nope".into(), ""),
        ("GET", "/api/tasks?status=bogus&kind=x".into(), ""),
        ("GET", "/healthz/../api/tasks".into(), ""),
        ("GET", "/ui/../api/tasks".into(), ""),
        ("GET", "/./api/tasks".into(), ""),
        ("GET", "/api/tasks/../tasks".into(), ""),
        ("GET", "/api/tasks/%2E%2E/tasks".into(), ""),
        ("GET", "/api/whoami".into(), ""),
        ("GET", "/%61pi/whoami".into(), ""),
        ("GET", format!("/api/tasks/{id}"), ""),
        ("GET", format!("/%61pi/tasks/{id}"), ""),
        ("GET", "/api/tasks/not-a-uuid".into(), ""),
        ("GET", format!("/api/download-result/{id}"), ""),
        ("GET", format!("/api/download-result%2F{id}"), ""),
        ("GET", "/api/download-result/not-a-uuid".into(), ""),
        ("GET", "/api/download".into(), ""),
        ("HEAD", "/api/tasks".into(), ""),
        ("GET", format!("http://127.0.0.1:{port}/api/tasks"), ""),
        ("GET", format!("http://127.0.0.1:{port}/%61pi/tasks"), ""),
        ("POST", "/api/download".into(), &download),
        ("POST", "/ap%69/download".into(), &download),
        ("POST", "/api/download".into(), "{not json"),
        ("POST", "/api/download".into(), r#"{"url": 5}"#),
        ("POST", "/api/analyze".into(), &download),
        ("POST", "/api/process".into(), r#"{"input_file": "x", "operations": {}}"#),
        ("POST", "/api/uploads?filename=a.mp4".into(), "not media at all"),
        ("POST", "/%61pi/uploads".into(), "not media at all"),
        ("POST", "/api/uploads".into(), ""),
        ("POST", format!("/api/tasks/{id}/retry"), ""),
        ("GET", format!("/api/tasks/{id}/deliveries"), ""),
        ("POST", "/api/tasks".into(), ""),
        ("PUT", "/api/tasks".into(), ""),
        ("PATCH", format!("/api/tasks/{id}"), ""),
        ("OPTIONS", "/api/tasks".into(), ""),
        ("DELETE", format!("/api/tasks/{id}"), ""),
        ("DELETE", format!("/%61pi/tasks/{id}"), ""),
        ("DELETE", "/api/tasks/not-a-uuid".into(), ""),
        ("GET", "/api/site-profiles".into(), ""),
        ("GET", "/api/site-profiles/ex".into(), ""),
        ("PUT", "/api/site-profiles/ex".into(), r#"{"domains": ["example.com"]}"#),
        ("PUT", "/api/site-profiles/ex/cookies".into(), "# Netscape HTTP Cookie File\n"),
        ("POST", "/api/site-profiles/ex/check".into(), ""),
        ("DELETE", "/api/site-profiles/ex".into(), ""),
    ];
    // These match a route once decoded: they must be refused by the key check itself.
    let must_401 = [
        "/api/tasks",
        "/%61pi/tasks",
        "/%61%70%69/%74%61%73%6b%73",
        "/api/%74asks",
        "/ap%69/download",
        "/api/tasks?x=/healthz",
        "/api/tasks?limit=nope",
        "/api/whoami",
        "/%61pi/whoami",
        "/api/tasks/not-a-uuid",
        "/api/download-result/not-a-uuid",
        "/api/download",
        "/api/uploads",
        "/api/site-profiles",
        "/api/site-profiles/ex",
        "/api/site-profiles/ex/cookies",
        "/api/site-profiles/ex/check",
    ];
    for (method, target, body) in &targets {
        let what = format!("{method} {target}");
        for headers in
            [vec![], vec![("Authorization", format!("Bearer {WRONG}"))], vec![("X-API-Key", "".into())]]
        {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = raw(&app, method, target, &headers, body).await;
            if method == &"HEAD" {
                assert_eq!(r.status, 401, "{what}: {r:?}");
                continue;
            }
            assert_no_handler(&r, &what);
            if must_401.contains(&target.as_str()) || target.starts_with("http://") {
                assert_unauthorized(&r, &what);
            }
        }
    }
    assert_eq!(app.task_count().await, 0, "a submission got through");
    let uploads = app.storage_root().join("uploads");
    let uploaded = std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0);
    assert_eq!(uploaded, 0, "an upload reached the disk");

    // The same decoded spellings do route: with a full key they reach the handler.
    for target in ["/%61pi/tasks", "/api/%74asks", "/%61%70%69/%74%61%73%6b%73"] {
        let r = raw(&app, "GET", target, &[("Authorization", &format!("Bearer {FULL}"))], "").await;
        assert_eq!(r.status, 200, "{target}: {r:?}");
    }
    let r = raw(&app, "GET", "/api/tasks/not-a-uuid", &[("X-API-Key", FULL)], "").await;
    assert_eq!((r.status, r.code()), (404, Some("not_found")), "the handler's 404 behind the key: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_keys_read_and_full_keys_write() {
    let app = spawn(with_keys).await;
    let base = &app.address;
    let c = &app.client;
    let read = |r: reqwest::RequestBuilder| r.bearer_auth(READ);
    let full = |r: reqwest::RequestBuilder| r.header("X-API-Key", FULL);

    let res = read(c.get(format!("{base}/api/tasks"))).send().await.expect("sent");
    assert_eq!(res.status(), 200);
    let res = c.get(format!("{base}/api/tasks")).header("X-API-Key", READ).send().await.expect("sent");
    assert_eq!(res.status(), 200);
    let res = c.get(format!("{base}/api/tasks")).header("Authorization", format!("bearer {READ}")).send();
    assert_eq!(res.await.expect("sent").status(), 200, "the scheme is case-insensitive");
    let who: Value =
        read(c.get(format!("{base}/api/whoami"))).send().await.expect("sent").json().await.expect("json");
    assert_eq!(who, json!({"access": "read"}));
    let who: Value =
        full(c.get(format!("{base}/api/whoami"))).send().await.expect("sent").json().await.expect("json");
    assert_eq!(who, json!({"access": "full"}));

    // A full key submits; a read key may see the task but neither submit nor cancel it.
    let body = json!({ "url": "http://127.0.0.1:9/v.mp4" });
    let res = read(c.post(format!("{base}/api/download")).json(&body)).send().await.expect("sent");
    assert_eq!(res.status(), 403);
    let e: Value = res.json().await.expect("json");
    assert_eq!(e["code"], "forbidden", "{e}");
    assert_eq!(app.task_count().await, 0);
    let res = full(c.post(format!("{base}/api/download")).json(&body)).send().await.expect("sent");
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap_or_default());
    let task: Value = res.json().await.expect("json");
    let id = task["task_id"].as_str().expect("task_id");
    let res = read(c.get(format!("{base}/api/tasks/{id}"))).send().await.expect("sent");
    assert_eq!(res.status(), 200);
    for req in [
        c.delete(format!("{base}/api/tasks/{id}")),
        c.post(format!("{base}/api/tasks/{id}/retry")),
        c.post(format!("{base}/api/uploads?filename=a.mp4")).body("not media"),
        c.post(format!("{base}/api/process")).json(&json!({"input_file": "x", "operations": {}})),
        c.post(format!("{base}/api/analyze")).json(&body),
        c.put(format!("{base}/api/tasks")),
        c.post(format!("{base}/api/archive/import")).json(&json!({"archive": "youtube x\n"})),
        c.delete(format!("{base}/api/archive/youtube/x")),
        c.put(format!("{base}/api/site-profiles/ex")).json(&json!({"domains": ["example.com"]})),
        c.delete(format!("{base}/api/site-profiles/ex")),
        c.put(format!("{base}/api/site-profiles/ex/cookies")).body("# Netscape HTTP Cookie File\n"),
        c.post(format!("{base}/api/site-profiles/ex/check")),
    ] {
        let res = read(req).send().await.expect("sent");
        let url = res.url().clone();
        assert_eq!(res.status(), 403, "{url}");
        let e: Value = res.json().await.expect("json");
        assert_eq!(e["code"], "forbidden", "{url}: {e}");
    }
    let res = read(c.get(format!("{base}/api/download-result/{id}"))).send().await.expect("sent");
    assert_eq!(res.status(), 400, "the read key reaches the result handler (task not completed)");
    for path in ["/api/archive", "/api/archive/export", "/api/site-profiles"] {
        let res = read(c.get(format!("{base}{path}"))).send().await.expect("sent");
        assert_eq!(res.status(), 200, "a read key reads {path}");
    }
    // Site profiles: a full key writes them, a read key reads them.
    let res = full(c.put(format!("{base}/api/site-profiles/ex")).json(&json!({"domains": ["example.com"]})))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 201);
    let res = read(c.get(format!("{base}/api/site-profiles/ex"))).send().await.expect("sent");
    assert_eq!(res.status(), 200);
    let res = full(c.delete(format!("{base}/api/tasks/{id}"))).send().await.expect("sent");
    assert!(res.status().is_success(), "{}", res.status());
    let res = read(c.get(format!("{base}/api/tasks/{id}"))).send().await.expect("sent");
    let task: Value = res.json().await.expect("json");
    assert_eq!(task["status"], "cancelled", "{task}");

    // Handlers' own errors come back behind a full key.
    let res = full(c.post(format!("{base}/api/download")).header("content-type", "application/json"))
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 400);
    let res = full(c.put(format!("{base}/api/tasks"))).send().await.expect("sent");
    assert_eq!(res.status(), 405);

    // A wrong key is refused, a key is not accepted in the query string.
    for req in [
        c.get(format!("{base}/api/tasks")).bearer_auth(WRONG),
        c.get(format!("{base}/api/tasks")).header("X-API-Key", WRONG),
        c.get(format!("{base}/api/tasks")).bearer_auth(&FULL[..FULL.len() - 1]),
        c.get(format!("{base}/api/tasks")).basic_auth(FULL, None::<&str>),
        c.get(format!("{base}/api/tasks?api_key={FULL}")),
    ] {
        let res = req.send().await.expect("sent");
        assert_eq!(res.status(), 401);
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_routes_need_no_key_and_preflights_still_work() {
    let app = spawn(with_keys).await;
    for path in [
        "/healthz",
        "/readyz",
        "/",
        "/ui/app.js",
        "/ui/app.css",
        "/api/openapi.json",
        "/api/docs",
        "/api/docs/docs.js",
    ] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
        let res = app.client.get(format!("{}{path}", app.address)).bearer_auth(WRONG).send().await;
        assert_eq!(res.expect("sent").status(), 200, "{path} with a wrong key");
    }
    let id = uuid::Uuid::new_v4();
    let origin = "http://localhost:8080";
    for (method, path) in [
        ("POST", "/api/analyze".to_owned()),
        ("POST", "/api/download".into()),
        ("POST", "/api/process".into()),
        ("POST", "/api/uploads".into()),
        ("GET", "/api/tasks".into()),
        ("GET", format!("/api/tasks/{id}")),
        ("DELETE", format!("/api/tasks/{id}")),
        ("POST", format!("/api/tasks/{id}/retry")),
        ("GET", format!("/api/download-result/{id}")),
        ("GET", "/api/whoami".into()),
    ] {
        let res = app
            .client
            .request(reqwest::Method::OPTIONS, format!("{}{path}", app.address))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", method)
            .header("Access-Control-Request-Headers", "authorization, content-type")
            .send()
            .await
            .expect("preflight");
        assert!(res.status().is_success(), "preflight {method} {path}: {}", res.status());
        assert_eq!(res.headers()["access-control-allow-origin"], "*");
    }
    // A refusal still carries CORS headers, so the web UI can read the 401.
    let res = app.client.get(format!("{}/api/tasks", app.address)).header("Origin", origin).send().await;
    let res = res.expect("sent");
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha256_entries_are_keys() {
    let app = spawn(with_hashed_keys).await;
    for (key, access) in [(HASHED_FULL, "full"), (HASHED_READ, "read")] {
        let res = app.client.get(format!("{}/api/whoami", app.address)).bearer_auth(key).send().await;
        let who: Value = res.expect("sent").json().await.expect("json");
        assert_eq!(who, json!({ "access": access }));
    }
    // The digest itself is not a key.
    for key in [HASHED_FULL_SHA.to_owned(), format!("sha256:{HASHED_FULL_SHA}")] {
        let res = app.client.get(format!("{}/api/tasks", app.address)).bearer_auth(key).send().await;
        assert_eq!(res.expect("sent").status(), 401);
    }
    let res = app.client.post(format!("{}/api/tasks/{}/retry", app.address, uuid::Uuid::new_v4()));
    assert_eq!(res.bearer_auth(HASHED_READ).send().await.expect("sent").status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keys_only_loopback_hosts_are_served() {
    let app = spawn(|_| {}).await;
    for host in
        ["evil.example", "evil.example:5000", "localhost.evil.example", "127.0.0.1.nip.io", "10.0.0.1"]
    {
        for target in ["/api/tasks", "/api/whoami", "/%61pi/tasks"] {
            let r = raw(&app, "GET", target, &[("Host", host)], "").await;
            assert_eq!((r.status, r.code()), (403, Some("forbidden")), "{host} {target}: {r:?}");
            assert!(r.body.contains("security.api_keys"), "{r:?}");
        }
        let r =
            raw(&app, "POST", "/api/download", &[("Host", host)], r#"{"url":"http://127.0.0.1:9/"}"#).await;
        assert_eq!(r.status, 403, "{host}: {r:?}");
        // Health checks and the UI's files are open.
        assert_eq!(raw(&app, "GET", "/healthz", &[("Host", host)], "").await.status, 200);
    }
    // An absolute-form target names the host too.
    let r = raw(&app, "GET", "http://evil.example/api/tasks", &[("Host", "localhost")], "").await;
    assert_eq!(r.status, 403, "{r:?}");
    for host in ["localhost:5000", "localhost", "127.0.0.1", "127.0.0.2:80", "[::1]:5000"] {
        let r = raw(&app, "GET", "/api/tasks", &[("Host", host)], "").await;
        assert_eq!(r.status, 200, "{host}: {r:?}");
        let r = raw(&app, "GET", "/api/whoami", &[("Host", host)], "").await;
        assert!(r.body.contains(r#""access":"anonymous""#), "{host}: {r:?}");
    }
    assert_eq!(app.task_count().await, 0);

    let open = spawn(|s| s.security.allow_anonymous = true).await;
    let r = raw(&open, "GET", "/api/tasks", &[("Host", "evil.example")], "").await;
    assert_eq!(r.status, 200, "allow_anonymous serves any host: {r:?}");
}
