//! Site profiles end to end: a fixture site on 127.0.0.1 that serves its pages and
//! media only to a request carrying its session cookie (403 otherwise), real yt-dlp
//! through the egress guard, the policy allowing 127.0.0.1/32 only.

use std::{
    net::TcpListener,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::future::{Either, ready};
use serde_json::{Value, json};

use crate::helpers::{AppOptions, TestApp, media, probe};

pub const SECRET: &str = "s3ss10n-e2e-7f3a9c";
const STALE: &str = "expired-session-0000";

/// The media fixtures, behind a cookie check: `Cookie: session=<SECRET>` or 403.
pub struct CookieSite {
    pub base: String,
    /// Requests served (with the cookie) and refused (without it).
    served: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

impl CookieSite {
    pub async fn start() -> Self {
        let dir = media().dir.clone();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let (served, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (s, r) = (served.clone(), refused.clone());
        let server = actix_web::HttpServer::new(move || {
            let (s, r) = (s.clone(), r.clone());
            actix_web::App::new()
                .wrap_fn(move |req, srv| {
                    let wanted = format!("session={SECRET}");
                    let has_cookie = req
                        .headers()
                        .get_all("cookie")
                        .filter_map(|v| v.to_str().ok())
                        .flat_map(|v| v.split(';'))
                        .any(|c| c.trim() == wanted);
                    if has_cookie {
                        s.fetch_add(1, Ordering::SeqCst);
                        Either::Left(actix_web::dev::Service::call(srv, req))
                    } else {
                        r.fetch_add(1, Ordering::SeqCst);
                        let forbidden = actix_web::HttpResponse::Forbidden().body("log in first");
                        Either::Right(ready(Ok(req.into_response(forbidden))))
                    }
                })
                .service(actix_files::Files::new("/", dir.clone()))
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        CookieSite { base, served, refused }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }
}

/// A Netscape cookies file for the fixture site with `value` as its session.
pub fn cookies_file(value: &str) -> String {
    format!(
        "# Netscape HTTP Cookie File\n\n127.0.0.1\tFALSE\t/\tFALSE\t4102444800\tsession\t{value}\n\
         127.0.0.1\tFALSE\t/\tFALSE\t0\ttheme\tdark\n"
    )
}

fn only_loopback_one(s: &mut mediapro_core::settings::Settings) {
    s.security.allow_private_networks = false;
    s.security.allowed_networks = vec!["127.0.0.1/32".into()];
    s.limits.max_attempts = 1;
    // Scheduled checks only where a test asks for them.
    s.worker.site_check_interval_seconds = 0;
}

async fn spawn(tweak: fn(&mut mediapro_core::settings::Settings)) -> TestApp {
    TestApp::spawn_with(AppOptions { allow_private_networks: false, tweak, ..AppOptions::default() }).await
}

async fn put_profile(app: &TestApp, name: &str, body: &Value) -> reqwest::Response {
    app.client
        .put(format!("{}/api/site-profiles/{name}", app.address))
        .json(body)
        .send()
        .await
        .expect("PUT profile")
}

async fn put_cookies(app: &TestApp, name: &str, file: &str) -> reqwest::Response {
    app.client
        .put(format!("{}/api/site-profiles/{name}/cookies", app.address))
        .header("content-type", "text/plain")
        .body(file.to_owned())
        .send()
        .await
        .expect("PUT cookies")
}

async fn check_now(app: &TestApp, name: &str) -> Value {
    let res = app
        .client
        .post(format!("{}/api/site-profiles/{name}/check", app.address))
        .send()
        .await
        .expect("POST check");
    assert_eq!(res.status(), 200);
    res.json().await.expect("profile json")
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_that_needs_a_cookie_downloads_only_with_its_profile_and_never_shows_the_value() {
    let app = spawn(only_loopback_one).await;
    let site = CookieSite::start().await;

    // No profile: the site refuses yt-dlp, the download fails, analyze too.
    let id = app.submit_download(json!({"url": site.url("small.mp4")})).await;
    let task = app.wait_final(&id, Duration::from_secs(90)).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert!(task["error"].as_str().unwrap_or_default().contains("403"), "{task}");
    assert_eq!(task["site_profile"], Value::Null);
    assert!(site.refused.load(Ordering::SeqCst) >= 1);
    assert_eq!(site.served.load(Ordering::SeqCst), 0);
    let res = app.analyze(&site.url("page.html")).await;
    assert!(!res.status().is_success(), "analyze without the cookie: {}", res.status());

    // The profile and its cookies.
    let res = put_profile(&app, "cookie-site", &json!({"domains": ["127.0.0.1"]})).await;
    assert_eq!(res.status(), 201);
    let res = put_cookies(&app, "cookie-site", &cookies_file(SECRET)).await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.expect("body");
    assert!(!body.contains(SECRET), "the upload's answer shows the value: {body}");
    let profile: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(profile["cookies"]["cookie_count"], 2, "{profile}");
    assert_eq!(profile["cookies"]["domains"], json!(["127.0.0.1"]));
    assert_eq!(profile["cookies"]["earliest_expiry"], "2100-01-01T00:00:00Z");
    assert_eq!(profile["cookies"]["size_bytes"], cookies_file(SECRET).len());
    for path in ["/api/site-profiles/cookie-site", "/api/site-profiles"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 200);
        let raw = res.text().await.expect("body");
        assert!(!raw.contains(SECRET), "GET {path} shows the cookie value: {raw}");
        assert!(raw.contains("\"cookie_count\":2"), "GET {path}: {raw}");
    }
    // Not a cookies file: refused, the stored one kept.
    let res = put_cookies(&app, "cookie-site", "session=abc").await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.expect("json")["code"], "invalid_cookies");
    let res = put_cookies(&app, "nobody", &cookies_file(SECRET)).await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.expect("json")["code"], "site_profile_not_found");

    // With the profile: analyze and the download get in.
    let res = app.analyze(&site.url("page.html")).await;
    assert_eq!(res.status(), 200, "analyze with the profile");
    let id = app.submit_download(json!({"url": site.url("small.mp4")})).await;
    assert_eq!(app.task(&id).await["site_profile"], "cookie-site", "shown from submission on");
    let task = app.wait_final(&id, Duration::from_secs(90)).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["site_profile"], "cookie-site");
    let file = task["downloaded_files"][0].as_str().expect("a file");
    let (duration, video) = probe(&app.storage_root().join(file));
    assert!((duration - 4.0).abs() < 0.5, "duration {duration}");
    assert_eq!(video, Some((320, 180)));
    // The job's private copy is gone, and no file of the task holds the value.
    let dir = app.storage_root().join("downloads").join(&id);
    assert!(!dir.join(".site-cookies.txt").exists(), "the cookies copy outlived the job");
    for f in files_under(&dir) {
        let bytes = std::fs::read(&f).expect("read");
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "{} holds the cookie value",
            f.display()
        );
    }
    let tmp = app.storage_root().join("tmp");
    assert!(files_under(&tmp).is_empty(), "analyze left its cookies copy: {:?}", files_under(&tmp));
    // A failed download removes its copy too.
    let id = app.submit_download(json!({"url": site.url("missing.mp4")})).await;
    let task = app.wait_final(&id, Duration::from_secs(90)).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert!(files_under(&app.storage_root().join("downloads").join(&id)).is_empty());

    // Deleted: the site is refused again.
    let res = app
        .client
        .delete(format!("{}/api/site-profiles/cookie-site", app.address))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(res.status(), 204);
    assert_eq!(app.get("/api/site-profiles/cookie-site").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_url_shows_stale_cookies_as_unhealthy_and_fresh_ones_as_healthy() {
    let app = spawn(only_loopback_one).await;
    let site = CookieSite::start().await;
    let body = json!({"domains": ["127.0.0.1"], "check_url": site.url("page.html")});
    assert_eq!(put_profile(&app, "site", &body).await.status(), 201);
    let fresh: Value = app.get("/api/site-profiles/site").await.json().await.expect("json");
    assert_eq!((fresh["healthy"].clone(), fresh["checked_at"].clone()), (Value::Null, Value::Null));

    // Stale cookies: one check marks the profile unhealthy, with the reason.
    assert_eq!(put_cookies(&app, "site", &cookies_file(STALE)).await.status(), 200);
    let p = check_now(&app, "site").await;
    assert_eq!(p["healthy"], false, "{p}");
    assert!(p["check_error"].as_str().unwrap_or_default().contains("403"), "{p}");
    assert!(p["checked_at"].is_string(), "{p}");

    // The right cookies: healthy again at the next check.
    assert_eq!(put_cookies(&app, "site", &cookies_file(SECRET)).await.status(), 200);
    let p = check_now(&app, "site").await;
    assert_eq!((p["healthy"].clone(), p["check_error"].clone()), (json!(true), Value::Null), "{p}");
    assert!(!p.to_string().contains(SECRET));

    // Without check_url there is nothing to check.
    assert_eq!(put_profile(&app, "plain", &json!({"domains": ["example.com"]})).await.status(), 201);
    let res =
        app.client.post(format!("{}/api/site-profiles/plain/check", app.address)).send().await.expect("POST");
    assert_eq!(res.status(), 409);
    assert_eq!(res.json::<Value>().await.expect("json")["code"], "no_check_url");
    let res = app
        .client
        .post(format!("{}/api/site-profiles/nobody/check", app.address))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 404);
}

fn scheduled_checks(s: &mut mediapro_core::settings::Settings) {
    only_loopback_one(s);
    s.worker.site_check_interval_seconds = 2;
}

/// Workers check on their own every `worker.site_check_interval_seconds`: a
/// profile goes healthy without anyone asking, and unhealthy once its cookies go stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_check_profiles_on_a_schedule() {
    let app = spawn(scheduled_checks).await;
    let site = CookieSite::start().await;
    let body = json!({"domains": ["127.0.0.1"], "check_url": site.url("page.html")});
    assert_eq!(put_profile(&app, "site", &body).await.status(), 201);
    assert_eq!(put_cookies(&app, "site", &cookies_file(SECRET)).await.status(), 200);

    let wait_for = |healthy: bool| {
        let app = &app;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let p: Value = app.get("/api/site-profiles/site").await.json().await.expect("json");
                if p["healthy"] == healthy {
                    return p;
                }
                assert!(tokio::time::Instant::now() < deadline, "never became healthy={healthy}: {p}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let p = wait_for(true).await;
    let first = p["checked_at"].as_str().expect("checked_at").to_owned();
    assert_eq!(site.refused.load(Ordering::SeqCst), 0, "the scheduled check sent the cookies");
    assert_eq!(put_cookies(&app, "site", &cookies_file(STALE)).await.status(), 200);
    let p = wait_for(false).await;
    assert_ne!(p["checked_at"], first, "a later check: {p}");
    assert!(p["check_error"].as_str().unwrap_or_default().contains("403"), "{p}");
}

/// `upstream_proxy` with real yt-dlp: the job's egress proxy checks the site, then
/// goes through the upstream proxy (here a second egress proxy on 127.0.0.1). An
/// upstream that refuses the site fails the download with its refusal recorded
/// there; one that allows it completes the download.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downloads_go_through_the_profiles_upstream_proxy_behind_the_guard() {
    use mediapro_core::validate::{EgressPolicy, parse_networks};
    use mediapro_egress::EgressGuard;
    let app = spawn(only_loopback_one).await;
    let site = CookieSite::start().await;
    let closed = EgressPolicy { allow_private_networks: false, allowed_networks: Vec::new() };
    let loopback_one = EgressPolicy {
        allow_private_networks: false,
        allowed_networks: parse_networks("127.0.0.1/32").expect("networks"),
    };
    let refusing = EgressGuard::new(closed).start_proxy().await.expect("refusing upstream");
    let passing = EgressGuard::new(loopback_one).start_proxy().await.expect("passing upstream");

    let profile = |proxy: &str| json!({"domains": ["127.0.0.1"], "upstream_proxy": proxy});
    assert_eq!(put_profile(&app, "via", &profile(&refusing.url())).await.status(), 201);
    assert_eq!(put_cookies(&app, "via", &cookies_file(SECRET)).await.status(), 200);
    let id = app.submit_download(json!({"url": site.url("small.mp4")})).await;
    let task = app.wait_final(&id, Duration::from_secs(90)).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert!(!refusing.refusals().is_empty(), "the download went through the upstream proxy");
    assert_eq!(site.served.load(Ordering::SeqCst) + site.refused.load(Ordering::SeqCst), 0);

    assert_eq!(put_profile(&app, "via", &profile(&passing.url())).await.status(), 200);
    let id = app.submit_download(json!({"url": site.url("small.mp4")})).await;
    let task = app.wait_final(&id, Duration::from_secs(90)).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert!(site.served.load(Ordering::SeqCst) >= 1);
    assert!(passing.refusals().is_empty());
}
