//! Test harness: `TestApp::spawn` starts an isolated API + worker; `Fixtures`
//! serves generated media over HTTP on 127.0.0.1 and counts requests. The settings
//! of an isolated instance are the built-in defaults + `tests/isolated.toml` (the
//! same file `tests/launcher.py` gives the benchmarks and shell tests) + the
//! per-instance keys (port, Redis namespace, database, storage root) + the test's
//! `tweak`.

use std::{
    collections::HashMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use mediapro_api::Application;
use mediapro_core::{
    process::ythost::{HostState, YtdlpRunner},
    settings::Settings,
    store::TaskStore,
    task::TaskKind,
};
use mediapro_worker::WorkerOptions;
use redis::TypedCommands as _;
use serde_json::{Value, json};
use strum::IntoEnumIterator as _;
use tempfile::TempDir;

/// `MEDIAPRO_TEST_STORE=postgres` runs the suite on PostgreSQL (a throwaway
/// database per test on the server at `MEDIAPRO_TEST_PG_URL`); SQLite otherwise.
async fn database_url(dir: &Path) -> String {
    if std::env::var("MEDIAPRO_TEST_STORE").as_deref() != Ok("postgres") {
        return format!("sqlite://{}", dir.join("tasks.db").display());
    }
    let server = std::env::var("MEDIAPRO_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("mediapro_e2e_{}", uuid::Uuid::new_v4().simple());
    let mut conn =
        <sqlx::PgConnection as sqlx::Connection>::connect(&server).await.expect("PostgreSQL answers");
    sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

/// `tests/isolated.toml`: the settings of an isolated test or bench instance beyond
/// the built-in defaults.
pub fn isolated_toml() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/isolated.toml");
        path.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// Built-in defaults + `tests/isolated.toml`, read explicitly (tests run in parallel
/// threads: the process environment is neither read nor changed).
pub fn isolated_settings() -> Settings {
    static BASE: OnceLock<Settings> = OnceLock::new();
    BASE.get_or_init(|| {
        Settings::load_from(Some(isolated_toml().to_path_buf()), Some(HashMap::new()))
            .expect("tests/isolated.toml loads")
    })
    .clone()
}

/// `MEDIAPRO_TEST_YTDLP_HOST=off` runs the suite with `tools.ytdlp_host = false`
/// (every yt-dlp run spawned); on (the default) the API and worker of each test
/// start their warm hosts and `TestApp::spawn` waits until both are ready.
pub fn ytdlp_host_mode() -> bool {
    match std::env::var("MEDIAPRO_TEST_YTDLP_HOST").as_deref() {
        Err(_) | Ok("" | "on") => true,
        Ok("off") => false,
        Ok(other) => panic!("MEDIAPRO_TEST_YTDLP_HOST={other}: expected on or off"),
    }
}

/// How long a test waits for its warm hosts (Python importing yt-dlp, no
/// warm-up in tests/isolated.toml; slow on a loaded 2-core machine).
const HOST_READY_WITHIN: Duration = Duration::from_secs(60);

pub fn redis_url() -> String {
    std::env::var("MEDIAPRO_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/15".into())
}

#[derive(Debug, Clone)]
pub struct AppOptions {
    pub allow_private_networks: bool,
    pub start_worker: bool,
    pub redis_url: String,
    /// Last word on the settings (timeouts, intervals…).
    pub tweak: fn(&mut Settings),
    /// The in-process worker serves its metrics on a free 127.0.0.1 port
    /// (`TestApp::worker_metrics`).
    pub worker_metrics: bool,
    /// With `tools.ytdlp_host` on, `spawn` waits until the warm hosts are
    /// ready (off: for a test whose host cannot start).
    pub wait_for_ytdlp_host: bool,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            allow_private_networks: isolated_settings().security.allow_private_networks,
            start_worker: true,
            redis_url: redis_url(),
            tweak: |_| {},
            worker_metrics: false,
            wait_for_ytdlp_host: true,
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub store: TaskStore,
    /// `http://127.0.0.1:PORT/metrics` of the in-process worker, when asked for.
    pub worker_metrics: Option<String>,
    /// How the API runs yt-dlp (its warm host's state and pid).
    pub api_ytdlp: Arc<YtdlpRunner>,
    /// How the in-process worker runs yt-dlp, when one was started.
    pub worker_ytdlp: Option<Arc<YtdlpRunner>>,
    _dir: TempDir,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(AppOptions::default()).await
    }

    pub async fn spawn_with(opts: AppOptions) -> Self {
        if std::env::var_os("TEST_LOG").is_some() {
            mediapro_core::telemetry::init();
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = isolated_settings();
        // The per-instance keys, which tests/isolated.toml leaves out.
        settings.server.bind = "127.0.0.1:0".into();
        settings.database.url = database_url(dir.path()).await;
        settings.storage.root = dir.path().join("media");
        settings.redis.url = opts.redis_url.clone();
        settings.redis.namespace = format!("test-{}", uuid::Uuid::new_v4().simple());
        settings.security.allow_private_networks = opts.allow_private_networks;
        settings.tools.ytdlp_host = ytdlp_host_mode();
        (opts.tweak)(&mut settings);

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let app = Application::build_with_listener(settings.clone(), listener).await.expect("app builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let api_ytdlp = app.ytdlp();
        tokio::spawn(app.run_until_stopped());
        let mut worker_metrics = None;
        let mut worker_ytdlp = None;
        if opts.start_worker {
            // Started here (not by `run`) so the test can wait for its host.
            let ytdlp = Arc::new(YtdlpRunner::start(&settings.tools));
            worker_ytdlp = Some(ytdlp.clone());
            let mut worker_settings = settings.clone();
            if opts.worker_metrics {
                // A free port, taken again by the worker an instant later.
                let port =
                    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
                worker_settings.worker.metrics_bind = format!("127.0.0.1:{port}");
                worker_metrics = Some(format!("http://127.0.0.1:{port}/metrics"));
            }
            tokio::spawn(async move {
                let options = WorkerOptions {
                    queues: TaskKind::iter().collect(),
                    concurrency: Some(2),
                    ytdlp: Some(ytdlp),
                };
                if let Err(e) = mediapro_worker::run(worker_settings, options, std::future::pending()).await {
                    eprintln!("worker stopped: {e}");
                }
            });
        }
        if settings.tools.ytdlp_host && opts.wait_for_ytdlp_host {
            // The suite runs its yt-dlp through the warm hosts, not through the
            // fallback while they start.
            for runner in std::iter::once(&api_ytdlp).chain(worker_ytdlp.as_ref()) {
                let state = runner.wait_ready(HOST_READY_WITHIN).await;
                assert!(
                    matches!(state, Some(HostState::Ready { .. })),
                    "the yt-dlp host is not ready: {state:?}"
                );
            }
        }
        let store = TaskStore::connect(&settings.database.url, 2).await.expect("store");
        TestApp {
            address,
            client: reqwest::Client::new(),
            settings,
            store,
            worker_metrics,
            api_ytdlp,
            worker_ytdlp,
            _dir: dir,
        }
    }

    /// The pid of the API's warm host, while it is ready.
    pub fn api_host_pid(&self) -> Option<i32> {
        host_pid(&self.api_ytdlp)
    }

    /// The pid of the in-process worker's warm host, while it is ready.
    pub fn worker_host_pid(&self) -> Option<i32> {
        host_pid(self.worker_ytdlp.as_ref()?)
    }

    /// Starts another API instance on the same settings (same store, storage and
    /// Redis namespace), as a second host behind a load balancer; its base URL.
    pub async fn spawn_second_api(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let app =
            Application::build_with_listener(self.settings.clone(), listener).await.expect("app builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        address
    }

    /// These settings for a worker process: `MEDIAPRO_CONFIG` naming
    /// `tests/isolated.toml` plus a `MEDIAPRO__…` variable for every key whose value
    /// differs from that file's (the per-instance keys and the test's tweaks).
    pub fn worker_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("MEDIAPRO_CONFIG".to_owned(), isolated_toml().display().to_string())];
        env.extend(settings_env_diff(&isolated_settings(), &self.settings));
        env
    }

    /// Starts a `mediapro-worker` process on these settings.
    pub fn spawn_worker_process(&self, queues: &str) -> std::process::Child {
        self.spawn_worker_process_with(queues, 1)
    }

    /// Starts a `mediapro-worker` process running `concurrency` jobs per queue.
    pub fn spawn_worker_process_with(&self, queues: &str, concurrency: usize) -> std::process::Child {
        Command::new(worker_bin())
            .args(["--queues", queues, "--concurrency", &concurrency.to_string()])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .envs(self.worker_env())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("worker binary starts")
    }

    pub fn storage_root(&self) -> &Path {
        &self.settings.storage.root
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client.post(format!("{}{path}", self.address)).json(body).send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.address)).send().await.expect("request sent")
    }

    pub async fn analyze(&self, url: &str) -> reqwest::Response {
        self.post_json("/api/analyze", &json!({ "url": url })).await
    }

    pub async fn download(&self, body: Value) -> reqwest::Response {
        self.post_json("/api/download", &body).await
    }

    /// Submits a download that must be accepted; returns its task id.
    pub async fn submit_download(&self, body: Value) -> String {
        let res = self.download(body).await;
        assert_eq!(res.status(), 202, "download refused: {}", res.text().await.unwrap_or_default());
        let v: Value = res.json().await.expect("json");
        assert_eq!(v["status"], "pending");
        v["task_id"].as_str().expect("task_id").to_owned()
    }

    pub async fn task(&self, id: &str) -> Value {
        let res = self.get(&format!("/api/tasks/{id}")).await;
        assert_eq!(res.status(), 200);
        res.json().await.expect("task json")
    }

    /// Polls until the task is final; panics with the last state after `limit`.
    pub async fn wait_final(&self, id: &str, limit: Duration) -> Value {
        let start = Instant::now();
        loop {
            let t = self.task(id).await;
            if matches!(t["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
                return t;
            }
            assert!(start.elapsed() < limit, "task {id} not final after {limit:?}: {t}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Downloads a fixture file and returns its storage-relative path.
    pub async fn download_fixture(&self, fx: &Fixtures, name: &str) -> String {
        let id = self.submit_download(json!({ "url": fx.url(name) })).await;
        let task = self.wait_final(&id, Duration::from_secs(90)).await;
        assert_eq!(task["status"], "completed", "{task}");
        task["downloaded_files"][0].as_str().expect("file").to_owned()
    }

    pub async fn process(&self, input_file: &str, operations: Value) -> reqwest::Response {
        self.post_json("/api/process", &json!({ "input_file": input_file, "operations": operations })).await
    }

    /// Submits processing that must be accepted; returns the task id.
    pub async fn submit_process(&self, input_file: &str, operations: Value) -> String {
        let res = self.process(input_file, operations).await;
        assert_eq!(res.status(), 202, "process refused: {}", res.text().await.unwrap_or_default());
        let v: Value = res.json().await.expect("json");
        v["task_id"].as_str().expect("task_id").to_owned()
    }

    pub async fn task_count(&self) -> i64 {
        self.store.count().await.expect("count")
    }

    /// Jobs waiting in the download queue's Redis keys (scheduled + active).
    pub async fn queued_download_jobs(&self) -> i64 {
        let client = redis::Client::open(self.settings.redis.url.as_str()).expect("redis url");
        let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
        let ns = format!("{}:download", self.settings.redis.namespace);
        let scheduled: i64 =
            redis::cmd("ZCARD").arg(format!("{ns}:scheduled")).query_async(&mut conn).await.expect("zcard");
        let active: i64 =
            redis::cmd("LLEN").arg(format!("{ns}:active")).query_async(&mut conn).await.expect("llen");
        scheduled + active
    }
}

fn host_pid(runner: &YtdlpRunner) -> Option<i32> {
    match runner.host_state()? {
        HostState::Ready { pid, .. } => i32::try_from(pid).ok(),
        _ => None,
    }
}

/// `MEDIAPRO__SECTION__KEY` variables that turn `base` into `settings`: one per key
/// whose value differs, lists comma separated (as `Settings::load` reads them).
pub fn settings_env_diff(base: &Settings, settings: &Settings) -> Vec<(String, String)> {
    fn env_value(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            // A list of tables (webhooks.endpoints) is read as one JSON value.
            Value::Array(items) if items.iter().any(Value::is_object) => v.to_string(),
            Value::Array(items) => items.iter().map(env_value).collect::<Vec<_>>().join(","),
            other => other.to_string(),
        }
    }
    let base = serde_json::to_value(base).expect("settings serialise");
    let mine = serde_json::to_value(settings).expect("settings serialise");
    let mut env = Vec::new();
    for (section, fields) in mine.as_object().expect("settings are a table") {
        for (key, value) in fields.as_object().expect("a section is a table") {
            if base[section][key] != *value {
                let name = format!("MEDIAPRO__{}__{}", section.to_uppercase(), key.to_uppercase());
                env.push((name, env_value(value)));
            }
        }
    }
    env
}

/// The `mediapro-worker` binary next to this test binary (built by
/// `cargo build --workspace`, which `scripts/test.sh` runs first).
pub fn worker_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("mediapro-worker");
    assert!(bin.exists(), "{} is missing: run `cargo build --workspace` first", bin.display());
    bin
}

/// Pids of running processes whose command line contains `needle`.
pub fn pids_with(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) && !stat.contains(") Z ") {
            pids.push(pid);
        }
    }
    pids
}

/// Live processes whose working folder is inside `root`: a test's jobs (yt-dlp and
/// ffmpeg run in their task's folder under the storage root), whether spawned or
/// forked by a warm yt-dlp host (whose children's command line is the host's, so
/// [`pids_with`] cannot tell them apart).
pub fn pids_working_in(root: &Path) -> Vec<i32> {
    let Ok(root) = root.canonicalize() else { return Vec::new() };
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let in_root = std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&root));
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if in_root && !stat.is_empty() && !stat.contains(") Z ") {
            pids.push(pid);
        }
    }
    pids
}

impl Drop for TestApp {
    /// Removes this test's queue keys (its namespace) from the shared Redis.
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.settings.redis.url.as_str()) else { return };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1)) else { return };
        let pattern = format!("{}:*", self.settings.redis.namespace);
        let keys: Vec<String> = match conn.scan_match::<_, String>(&pattern) {
            Ok(iter) => iter.filter_map(Result::ok).collect(),
            Err(_) => return,
        };
        for chunk in keys.chunks(500) {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query(&mut conn);
        }
    }
}

/// Media made once per test binary with ffmpeg: 4 s clips at two sizes, a WebVTT
/// file, a page offering both clips plus the subtitle track, and a page with
/// JSON-LD metadata (title, duration) pointing at the small clip.
pub struct Media {
    pub dir: PathBuf,
}

static MEDIA: OnceLock<Media> = OnceLock::new();

/// Shared by every test process and kept between runs (under cargo's target
/// tmpdir): each file is made once, written under a temporary name and renamed,
/// so concurrent test processes never see half a file.
pub fn media() -> &'static Media {
    MEDIA.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-media-v1");
        std::fs::create_dir_all(&dir).expect("media dir");
        for (name, size, secs) in [
            ("small.mp4", "320x180", 4),
            ("big.mp4", "640x360", 4),
            ("clip10.mp4", "640x360", 10),
            ("long.mp4", "640x360", 60),
        ] {
            let path = dir.join(name);
            if !path.exists() {
                let tmp = dir.join(format!(".{name}.{}.mp4", std::process::id()));
                make_clip(&tmp, size, secs);
                std::fs::rename(&tmp, &path).expect("publish clip");
            }
        }
        publish(&dir.join("en.vtt"), "WEBVTT\n\n00:00.000 --> 00:02.000\nHello from the test\n");
        publish(
            &dir.join("page.html"),
            r#"<!DOCTYPE html><html><head><title>Two Sources</title></head><body>
<video controls>
<source src="big.mp4" type="video/mp4" res="360" label="360p">
<source src="small.mp4" type="video/mp4" res="180" label="180p">
<track kind="subtitles" src="en.vtt" srclang="en" label="English">
</video></body></html>"#,
        );
        Media { dir }
    })
}

/// Writes a small file atomically (other test processes may be reading it).
fn publish(path: &Path, text: &str) {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

pub fn make_clip(path: &Path, size: &str, seconds: u32) {
    make_clip_with_tone(path, size, seconds, 440);
}

/// A clip whose audio is a sine of `hz` (clips of distinct tones differ in bytes).
pub fn make_clip_with_tone(path: &Path, size: &str, seconds: u32, hz: u32) {
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency={hz}:sample_rate=44100"))
        .arg("-t")
        .arg(seconds.to_string())
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .args(["-f", "mp4"])
        .arg(path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg failed to make {}", path.display());
}

/// A static file server on 127.0.0.1 (Range requests, 404s) that counts requests.
pub struct Fixtures {
    pub base: String,
    pub port: u16,
    hits: Arc<AtomicUsize>,
}

impl Fixtures {
    pub async fn serve() -> Self {
        let dir = media().dir.clone();
        let hits = Arc::new(AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let base = format!("http://127.0.0.1:{port}");
        let counter = hits.clone();
        let json_ld_page = format!(
            r#"<!DOCTYPE html><html><head><title>Clip page</title>
<script type="application/ld+json">{{"@context":"https://schema.org","@type":"VideoObject","name":"Test Clip","duration":"PT4S","contentUrl":"{base}/small.mp4","uploadDate":"2026-11-28"}}</script>
</head><body></body></html>"#
        );
        let server = actix_web::HttpServer::new(move || {
            let counter = counter.clone();
            let page = json_ld_page.clone();
            actix_web::App::new()
                .wrap_fn(move |req, srv| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    actix_web::dev::Service::call(srv, req)
                })
                .route(
                    "/clip.html",
                    actix_web::web::get().to(move || {
                        let page = page.clone();
                        async move { actix_web::HttpResponse::Ok().content_type("text/html").body(page) }
                    }),
                )
                .service(actix_files::Files::new("/", dir.clone()))
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        Fixtures { base, port, hits }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// What ffprobe says of a file (for assertions).
#[derive(Debug)]
pub struct Probed {
    pub duration: f64,
    pub video: Option<(u64, u64)>,
    pub fps: Option<f64>,
    pub video_codec: Option<String>,
    pub video_profile: Option<String>,
    pub has_audio: bool,
}

pub fn probe_full(path: &Path) -> Probed {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_format", "-show_streams", "-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    let v: Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let duration = v["format"]["duration"].as_str().and_then(|d| d.parse().ok()).expect("duration");
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let video = streams.iter().find(|s| s["codec_type"] == "video");
    let fps = video.and_then(|s| s["avg_frame_rate"].as_str()).and_then(|r| {
        let (n, d) = r.split_once('/')?;
        let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
        (d > 0.0).then(|| n / d)
    });
    Probed {
        duration,
        video: video
            .map(|s| (s["width"].as_u64().unwrap_or_default(), s["height"].as_u64().unwrap_or_default())),
        fps,
        video_codec: video.and_then(|s| s["codec_name"].as_str()).map(str::to_owned),
        video_profile: video.and_then(|s| s["profile"].as_str()).map(str::to_owned),
        has_audio: streams.iter().any(|s| s["codec_type"] == "audio"),
    }
}

/// Duration in seconds and the first video stream's size.
pub fn probe(path: &Path) -> (f64, Option<(u64, u64)>) {
    let p = probe_full(path);
    (p.duration, p.video)
}

/// What `worker_env` gives a worker process loads back into the same settings.
#[test]
fn settings_env_diff_reproduces_the_settings() {
    let mut settings = isolated_settings();
    settings.server.bind = "127.0.0.1:0".into();
    settings.redis.namespace = "test-roundtrip".into();
    settings.storage.root = "/tmp/roundtrip/media".into();
    settings.security.allow_private_networks = false;
    // Hashed entries: a plain key is never serialised (settings dumps redact it).
    settings.security.api_keys = ["a", "b"]
        .map(|c| mediapro_core::settings::ApiKeyEntry::new(format!("sha256:{}", c.repeat(64))))
        .to_vec();
    settings.limits.task_timeout_seconds = 2;
    let env: HashMap<_, _> = settings_env_diff(&isolated_settings(), &settings).into_iter().collect();
    assert_eq!(env.len(), 6, "{env:?}");
    let loaded = Settings::load_from(Some(isolated_toml().to_path_buf()), Some(env)).expect("loads");
    let json = |s: &Settings| serde_json::to_value(s).expect("serialise");
    assert_eq!(json(&loaded), json(&settings));
}
