//! The warm yt-dlp host through its Rust client and the runner
//! (`process::run_ytdlp`): the real Python host (`crates/mediapro-core/ythost/`),
//! real yt-dlp and ffmpeg, a clip served on 127.0.0.1. Compared with the spawned
//! CLI; cancel, a dead host and a missing host are exercised.
// Fixtures (the host, ffmpeg making the clip) are started here, not through the
// runner under test.
#![allow(clippy::disallowed_methods)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use mediapro_core::{
    process::{
        self, ChildCommand, RunError, StopReason,
        ythost::{HostClient, HostError, HostSettings, HostState, HostSupervisor},
    },
    requests::DownloadSpec,
    validate::{SourceUrl, SubtitleLangs},
    ytdlp::{AnalyzeArgs, DownloadArgs, DownloadOutput, parse_info_json, parse_output_line},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

const HOST_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ythost/ythost.py");

/// A host started as a supervisor would start it; killed when dropped.
struct Host {
    child: Child,
    client: HostClient,
    version: String,
    _dir: tempfile::TempDir,
}

impl Host {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("host.sock");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).expect("home");
        let mut child = Command::new("python3")
            .arg("-s")
            .arg(HOST_SCRIPT)
            .arg("--socket")
            .arg(&socket)
            .arg("--watch-stdin")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the host");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut ready).expect("ready line");
        let ready: serde_json::Value = serde_json::from_str(&ready).expect("ready is JSON");
        assert_eq!(ready["event"], "ready", "{ready}");
        let version = ready["yt_dlp"].as_str().expect("version").to_owned();
        Host { child, client: HostClient::new(socket), version, _dir: dir }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `/clip.mp4` (the clip's bytes) and `/stall.mp4` (headers and a first
/// chunk, then nothing) on 127.0.0.1.
async fn serve(clip: Arc<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            let clip = clip.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let stall = path.starts_with("/stall");
                let length = if stall { 50 << 20 } else { clip.len() };
                let header = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
                );
                let _ = conn.write_all(header.as_bytes()).await;
                if head.starts_with("HEAD ") {
                    return;
                }
                if stall {
                    let _ = conn.write_all(&[0u8; 65536]).await;
                    tokio::time::sleep(Duration::from_secs(60)).await;
                } else {
                    let _ = conn.write_all(&clip).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

fn make_clip(path: &Path) -> Vec<u8> {
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x180:rate=25")
        .args(["-f", "lavfi", "-i", "sine", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    std::fs::read(path).expect("clip")
}

struct Fixture {
    host: Host,
    base: String,
    clip: Arc<Vec<u8>>,
    dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let clip = Arc::new(make_clip(&dir.path().join("clip.mp4")));
    let base = serve(clip.clone()).await;
    Fixture { host: Host::start(), base, clip, dir }
}

fn url(base: &str, path: &str) -> SourceUrl {
    SourceUrl::parse(&format!("{base}{path}")).expect("url")
}

fn analyze_command(url: &SourceUrl) -> ChildCommand {
    ChildCommand::new(
        "yt-dlp",
        AnalyzeArgs { url, socket_timeout_secs: 10, proxy: None }.to_args(),
        Duration::from_secs(60),
    )
}

fn download_command(spec: &DownloadSpec, dir: &Path) -> ChildCommand {
    let args = DownloadArgs {
        spec,
        output_dir: dir,
        max_filesize_bytes: 1 << 30,
        socket_timeout_secs: 10,
        proxy: None,
        site: None,
    };
    let mut command = ChildCommand::new("yt-dlp", args.to_args(), Duration::from_secs(60));
    command.working_dir = Some(dir.to_path_buf());
    command
}

fn spec(url: SourceUrl) -> DownloadSpec {
    DownloadSpec {
        url,
        format_id: None,
        include_subtitles: false,
        subtitle_langs: SubtitleLangs::default(),
        process: None,
        skip_archived: false,
        playlist_index: None,
    }
}

/// Live (not zombie) children of `parent`.
fn children_of(parent: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(parent) && fields[0] != "Z" {
            found.push(pid);
        }
    }
    found
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

async fn wait_for(mut predicate: impl FnMut() -> bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if predicate() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    predicate()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_through_the_host_equals_the_spawned_cli() {
    let f = fixture().await;
    let info = f.host.client.info().await.expect("info");
    assert_eq!(info.yt_dlp, f.host.version);
    assert_eq!(info.pid, f.host.child.id());

    let command = analyze_command(&url(&f.base, "/clip.mp4"));
    let (mut warm, mut cold) = (String::new(), String::new());
    let warm_out =
        process::run_ytdlp(Some(&f.host.client), &command, |l| warm.push_str(l), std::future::pending())
            .await
            .expect("hosted run");
    let cold_out =
        process::run(&command, |l| cold.push_str(l), std::future::pending()).await.expect("spawned run");
    assert!(warm_out.status.success(), "{}", warm_out.stderr_tail);
    assert!(cold_out.status.success(), "{}", cold_out.stderr_tail);
    let warm = parse_info_json(&warm).expect("hosted info JSON");
    assert_eq!(warm, parse_info_json(&cold).expect("spawned info JSON"));
    assert_eq!(warm.extractor.as_deref(), Some("Generic"));
    assert_eq!(f.host.client.info().await.expect("info").jobs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_reports_its_exit_code_and_stderr_like_the_cli() {
    let f = fixture().await;
    // The fixture server answers every path; a closed port fails the same way each time.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let command = analyze_command(&url(&closed, "/x.mp4"));
    let warm = process::run_ytdlp(Some(&f.host.client), &command, |_| {}, std::future::pending())
        .await
        .expect("ran");
    let cold = process::run(&command, |_| {}, std::future::pending()).await.expect("ran");
    assert_eq!(warm.status.code(), Some(1));
    assert_eq!(warm.status.code(), cold.status.code());
    assert!(warm.stderr_tail.starts_with("ERROR: "), "{}", warm.stderr_tail);
    assert_eq!(
        mediapro_core::ytdlp::classify_failure(&warm.stderr_tail),
        mediapro_core::ytdlp::classify_failure(&cold.stderr_tail)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_through_the_host_streams_progress_and_prints_the_file() {
    let f = fixture().await;
    let out_dir: PathBuf = f.dir.path().join("out");
    std::fs::create_dir(&out_dir).expect("out dir");
    let spec = spec(url(&f.base, "/clip.mp4"));
    let mut output = DownloadOutput::default();
    let mut progress = 0;
    let run = process::run_ytdlp(
        Some(&f.host.client),
        &download_command(&spec, &out_dir),
        |line| {
            if let Some(parsed) = parse_output_line(line) {
                progress += usize::from(line.starts_with("MPPROG "));
                output.record(&parsed);
            }
        },
        std::future::pending(),
    )
    .await
    .expect("hosted download");
    assert!(run.status.success(), "{}", run.stderr_tail);
    assert!(progress > 0, "progress lines were read");
    let file = PathBuf::from(output.media_file.expect("MPFILE printed"));
    assert_eq!(file, out_dir.join("clip.mp4"));
    assert_eq!(std::fs::read(&file).expect("file"), *f.clip);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_the_hosted_child_within_two_seconds() {
    let f = fixture().await;
    let out_dir = f.dir.path().join("out");
    std::fs::create_dir(&out_dir).expect("out dir");
    let spec = spec(url(&f.base, "/stall.mp4"));
    let host_pid = f.host.pid();
    let mut child_seen = Vec::new();
    let stop = async {
        // Cancel once the child is well into its download.
        tokio::time::sleep(Duration::from_millis(800)).await;
        child_seen = children_of(host_pid);
        StopReason::Cancelled
    };
    let mut command = download_command(&spec, &out_dir);
    // Longer than the bound below: the group must go on the SIGTERM, not on the
    // SIGKILL after the grace (nor on the host's kill when the caller hangs up).
    command.kill_grace = Duration::from_secs(5);
    let started = Instant::now();
    let err = process::run_ytdlp(Some(&f.host.client), &command, |_| {}, stop).await.expect_err("cancelled");
    let took = started.elapsed();
    assert!(matches!(err, RunError::Stopped(StopReason::Cancelled)), "{err}");
    assert!(took < Duration::from_millis(800) + Duration::from_secs(2), "{took:?}");
    assert_eq!(child_seen.len(), 1, "one child ran in the host");
    assert!(wait_for(|| children_of(host_pid).is_empty(), Duration::from_secs(2)).await, "no child left");
    assert!(!alive(child_seen[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_mid_run_is_a_host_error_and_its_child_is_killed() {
    let mut f = fixture().await;
    let out_dir = f.dir.path().join("out");
    std::fs::create_dir(&out_dir).expect("out dir");
    let spec = spec(url(&f.base, "/stall.mp4"));
    let host_pid = f.host.pid();
    let client = f.host.client.clone();
    let command = download_command(&spec, &out_dir);
    let run = process::run_ytdlp(Some(&client), &command, |_| {}, async {
        std::future::pending::<()>().await;
        StopReason::Cancelled
    });
    let kill = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let children = children_of(host_pid);
        f.host.child.kill().expect("SIGKILL the host");
        let _ = f.host.child.wait();
        (children, Instant::now())
    };
    let (result, (children, killed_at)) = tokio::join!(run, kill);
    assert!(matches!(result, Err(RunError::Host(HostError::Gone))), "{result:?}");
    assert!(killed_at.elapsed() < Duration::from_secs(2));
    assert_eq!(children.len(), 1);
    assert!(wait_for(|| !alive(children[0]), Duration::from_secs(2)).await, "the orphaned child was killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_host_the_cli_is_spawned() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = HostClient::new(dir.path().join("no-host.sock"));
    assert!(matches!(client.info().await, Err(HostError::Unavailable { .. })));
    let mut lines = Vec::new();
    let out = process::run_ytdlp(
        Some(&client),
        &ChildCommand::new("yt-dlp", vec!["--version".into()], Duration::from_secs(30)),
        |l| lines.push(l.to_owned()),
        std::future::pending(),
    )
    .await
    .expect("spawned instead");
    assert!(out.status.success());
    assert_eq!(lines.len(), 1, "{lines:?}");
}

fn ready_pid(state: &HostState) -> Option<u32> {
    match state {
        HostState::Ready { pid, .. } => Some(*pid),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervisor_replaces_a_drained_host_and_restarts_a_killed_one() {
    let supervisor = HostSupervisor::start(HostSettings {
        python: "python3".into(),
        max_jobs: 1,
        max_rss_mib: 0,
        warm_up: false,
    })
    .expect("supervision starts");
    let state = supervisor.wait_ready(Duration::from_secs(30)).await;
    let HostState::Ready { pid: first, yt_dlp } = state else { panic!("no host: {state:?}") };
    let client = supervisor.client().expect("a ready host has a client").clone();
    assert_eq!(client.info().await.expect("info").yt_dlp, yt_dlp);

    // One run, and the host (max_jobs 1) drains: a new one takes over.
    let version = ChildCommand::new("yt-dlp", vec!["--version".into()], Duration::from_secs(30));
    let mut lines = Vec::new();
    let out =
        process::run_ytdlp(Some(&client), &version, |l| lines.push(l.to_owned()), std::future::pending())
            .await
            .expect("runs");
    assert!(out.status.success());
    assert_eq!(lines, std::slice::from_ref(&yt_dlp));
    assert!(
        wait_for(|| ready_pid(&supervisor.state()).is_some_and(|p| p != first), Duration::from_secs(15))
            .await,
        "a replacement after draining: {:?}",
        supervisor.state()
    );
    let second = ready_pid(&supervisor.state()).expect("ready");
    assert!(
        wait_for(|| !alive(i32::try_from(first).expect("pid")), Duration::from_secs(5)).await,
        "the drained host exited"
    );

    // SIGKILL: the supervisor notices and starts another.
    let killed_at = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(second).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the host");
    assert!(
        wait_for(|| ready_pid(&supervisor.state()).is_some_and(|p| p != second), Duration::from_secs(15))
            .await,
        "restarted: {:?}",
        supervisor.state()
    );
    println!("host SIGKILLed → a new host ready after {:?} (no warm-up)", killed_at.elapsed());
    assert!(supervisor.client().expect("ready").info().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosted_child_gets_the_runners_environment_home_folder_limit_and_proxy() {
    let f = fixture().await;
    let out_dir = f.dir.path().join("out");
    std::fs::create_dir(&out_dir).expect("out dir");
    // Nothing listens at the URL's port: the clip can only come through the
    // proxy (the fixture server answers an absolute-URL request as a proxy would).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let spec = spec(url(&closed, "/clip.mp4"));
    let args = DownloadArgs {
        spec: &spec,
        output_dir: &out_dir,
        max_filesize_bytes: 1 << 30,
        socket_timeout_secs: 10,
        proxy: Some(&f.base),
        site: None,
    };
    let mut argv = args.to_args();
    // What the child's own children get, printed through yt-dlp's --exec (a
    // shell): a later --exec adds to the builders' --no-exec. Tests only.
    let dash = argv.iter().position(|a| a == "--").expect("--");
    argv.insert(dash, "--exec".to_owned());
    argv.insert(
        dash + 1,
        "after_move:echo ENV $(env | cut -d= -f1 | sort | tr '\\n' ' '); echo HOME $HOME $(ls -ld \"$HOME\" | cut -c1-10); \
         echo PWD $(pwd -P); echo LIMIT $(ulimit -v); echo EXTRA $MP_EXTRA; true"
            .to_owned(),
    );
    let mut command = ChildCommand::new("yt-dlp", argv, Duration::from_secs(60));
    command.working_dir = Some(out_dir.clone());
    command.env = vec![("MP_EXTRA".into(), "from-the-runner".into())];
    command.memory_limit_bytes = Some(4 << 30);
    let mut lines = Vec::new();
    let mut output = DownloadOutput::default();
    let out = process::run_ytdlp(
        Some(&f.host.client),
        &command,
        |l| {
            if let Some(parsed) = parse_output_line(l) {
                output.record(&parsed);
            }
            lines.push(l.to_owned());
        },
        std::future::pending(),
    )
    .await
    .expect("hosted run");
    assert!(out.status.success(), "{}", out.stderr_tail);
    assert_eq!(f.host.client.info().await.expect("info").jobs, 1, "it ran in the host, not spawned");
    let said = |key: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} line in {lines:?}"))
            .to_owned()
    };
    // The runner's environment and nothing of the host's (the shell adds its own few).
    let env_line = said("ENV");
    let env: Vec<&str> =
        env_line.split_whitespace().filter(|k| !["PWD", "OLDPWD", "SHLVL", "_"].contains(k)).collect();
    assert_eq!(
        env,
        ["HOME", "LANG", "LC_ALL", "MP_EXTRA", "PATH", "PYTHONNOUSERSITE", "PYTHONUNBUFFERED"],
        "{lines:?}"
    );
    assert_eq!(said("EXTRA"), "from-the-runner");
    // A private HOME of the run's own (0700, removed after it).
    let home = said("HOME");
    let (home, mode) = home.split_once(' ').expect("home and mode");
    assert_eq!(mode, "drwx------", "{lines:?}");
    assert!(home.contains("mediapro-home-"), "{home}");
    assert!(!Path::new(home).exists(), "the run's HOME is removed after it");
    assert_eq!(PathBuf::from(said("PWD")), out_dir.canonicalize().expect("out dir"));
    assert_eq!(said("LIMIT"), (4u64 << 20).to_string(), "ulimit -v is in KiB");
    // The file came through the proxy.
    let file = PathBuf::from(output.media_file.expect("MPFILE printed"));
    assert_eq!(std::fs::read(&file).expect("file"), *f.clip);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_cannot_start_is_unavailable_with_the_last_line_it_wrote() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    // A "Python" without yt-dlp: a traceback on stderr, exit 1.
    let python = dir.path().join("python3");
    std::fs::write(
        &python,
        "#!/bin/sh\necho 'Traceback (most recent call last):' >&2\n\
         echo \"ModuleNotFoundError: No module named 'yt_dlp'\" >&2\nexit 1\n",
    )
    .expect("write");
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let supervisor =
        HostSupervisor::start(HostSettings { python, max_jobs: 0, max_rss_mib: 0, warm_up: false })
            .expect("supervision starts");
    let mut why = String::new();
    let failed = wait_for(
        || match supervisor.state() {
            HostState::Unavailable(reason) => {
                why = reason;
                true
            }
            _ => false,
        },
        Duration::from_secs(10),
    )
    .await;
    assert!(failed, "{:?}", supervisor.state());
    assert!(why.contains("exit status: 1") && why.ends_with("No module named 'yt_dlp'"), "{why}");
    assert!(supervisor.client().is_none());
    // Runs spawn yt-dlp meanwhile.
    let mut lines = Vec::new();
    let version = ChildCommand::new("yt-dlp", vec!["--version".into()], Duration::from_secs(30));
    let out = process::run_ytdlp(
        supervisor.client(),
        &version,
        |l| lines.push(l.to_owned()),
        std::future::pending(),
    )
    .await
    .expect("spawned");
    assert!(out.status.success() && lines.len() == 1, "{lines:?}");
}
