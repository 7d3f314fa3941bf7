//! Keeps one warm yt-dlp host running: writes the host program (embedded in the
//! binary, so a deployment has nothing more to install than yt-dlp itself) into a
//! private folder, starts it with Python, learns its yt-dlp version from its
//! `ready` line, starts a replacement as soon as it drains (after its job or
//! memory limit), restarts it at once when it dies after serving a while, and
//! with a growing delay when it cannot start (no Python module, a version
//! mismatch), logging one warning until it is back (its own stderr is logged at
//! debug level; its last line is the warning's reason). While no host is ready,
//! [`HostSupervisor::client`] is `None` and runs spawn the CLI.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use serde::Deserialize;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    sync::watch,
    task::JoinHandle,
};

use nix::unistd::Pid;

use super::HostClient;
use crate::process::{GroupGuard, spawn_helper};

/// The host program, embedded.
const HOST_SCRIPT: &str = include_str!("../../../ythost/ythost.py");
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(30);
/// A host that lived this long restarts after [`FIRST_DELAY`] again.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// A host ready for this long that dies is restarted at once.
const RESTART_AT_ONCE_AFTER: Duration = Duration::from_secs(5);

/// How to run the host.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// A Python that can `import yt_dlp` (the interpreter of the installed yt-dlp).
    pub python: PathBuf,
    /// The host drains and is replaced after this many runs (0: never).
    pub max_jobs: u32,
    /// … or when its own RSS passes this (0: never).
    pub max_rss_mib: u32,
    /// Skip the throwaway analyze and download at start (tests).
    pub warm_up: bool,
}

/// What the supervisor knows of its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostState {
    Starting,
    Ready {
        yt_dlp: String,
        pid: u32,
    },
    /// Not running; the text says why (the next start is under way).
    Unavailable(String),
}

/// Owns the host process; dropping it stops the host.
#[derive(Debug)]
pub struct HostSupervisor {
    client: HostClient,
    state: watch::Receiver<HostState>,
    /// Owns the host process and its folder (script, HOME, socket): both go
    /// when the task ends, by `Drop` or with its runtime.
    task: JoinHandle<()>,
}

#[derive(Deserialize)]
struct Announcement {
    event: String,
    yt_dlp: Option<String>,
    pid: Option<u32>,
    reason: Option<String>,
}

impl HostSupervisor {
    /// Starts the supervision (the host itself comes up in the background;
    /// see [`HostSupervisor::wait_ready`]).
    pub fn start(settings: HostSettings) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("mediapro-ythost-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()?;
        let script = dir.path().join("ythost.py");
        std::fs::write(&script, HOST_SCRIPT)?;
        let home = dir.path().join("home");
        std::fs::create_dir(&home)?;
        let socket = dir.path().join("host.sock");
        let mut args = vec![
            "-s".to_owned(),
            script.display().to_string(),
            "--socket".into(),
            socket.display().to_string(),
            "--watch-stdin".into(),
            "--max-jobs".into(),
            settings.max_jobs.to_string(),
            "--max-rss-mib".into(),
            settings.max_rss_mib.to_string(),
        ];
        if !settings.warm_up {
            args.push("--no-warmup".into());
        }
        let (tx, rx) = watch::channel(HostState::Starting);
        let task = tokio::spawn(async move {
            let _dir = dir;
            supervise(settings.python, args, home, tx).await;
        });
        Ok(Self { client: HostClient::new(socket), state: rx, task })
    }

    /// The client of the host while one is ready.
    pub fn client(&self) -> Option<&HostClient> {
        matches!(*self.state.borrow(), HostState::Ready { .. }).then_some(&self.client)
    }

    pub fn state(&self) -> HostState {
        self.state.borrow().clone()
    }

    /// Waits until a host is ready (or `within` passed) and returns the state.
    pub async fn wait_ready(&self, within: Duration) -> HostState {
        let mut rx = self.state.clone();
        let _ = tokio::time::timeout(within, rx.wait_for(|s| matches!(s, HostState::Ready { .. }))).await;
        self.state()
    }
}

impl Drop for HostSupervisor {
    fn drop(&mut self) {
        // The task owns the host process (killed on drop).
        self.task.abort();
    }
}

/// Starts hosts for ever: one at a time, a replacement as soon as one drains.
async fn supervise(python: PathBuf, args: Vec<String>, home: PathBuf, state: watch::Sender<HostState>) {
    let mut delay = FIRST_DELAY;
    // Failures since a host was last ready: only the first is logged as a
    // warning (one line, not one per retry while e.g. Python lacks yt-dlp).
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let (reason, ready_at) = run_one(&python, &args, &home, &state).await;
        let was_ready = matches!(*state.borrow(), HostState::Ready { .. });
        if was_ready || started.elapsed() >= HEALTHY_AFTER {
            delay = FIRST_DELAY;
            failures = 0;
        }
        match &reason {
            Ended::Draining(why) => {
                tracing::info!(reason = %why, "yt-dlp host draining, starting its replacement");
                state.send_replace(HostState::Starting);
                continue;
            }
            Ended::Failed(why) => {
                // A host that served a while and died is replaced at once (runs
                // spawn yt-dlp meanwhile); one that dies soon after its start
                // waits a doubling delay.
                let pause = if ready_at.is_some_and(|t| t.elapsed() >= RESTART_AT_ONCE_AFTER) {
                    Duration::ZERO
                } else {
                    delay
                };
                let retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
                if failures == 0 {
                    tracing::warn!(reason = %why, retry_in_ms,
                        "yt-dlp host not running, yt-dlp is spawned per run until it is back");
                } else {
                    tracing::debug!(reason = %why, retry_in_ms, failures, "yt-dlp host still not running");
                }
                failures = failures.saturating_add(1);
                state.send_replace(HostState::Unavailable(why.clone()));
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                    delay = (delay * 2).min(MAX_DELAY);
                }
            }
        }
    }
}

enum Ended {
    /// The host stopped taking runs and finishes its children; it exits by itself.
    Draining(String),
    Failed(String),
}

/// How long the host's stderr may stay open after it exited (a helper it
/// forked could hold it) before its last line is taken as it is.
const STDERR_GRACE: Duration = Duration::from_secs(1);

async fn run_one(
    python: &std::path::Path,
    args: &[String],
    home: &std::path::Path,
    state: &watch::Sender<HostState>,
) -> (Ended, Option<Instant>) {
    let mut child = match spawn_helper(python, args, home) {
        Ok(child) => child,
        Err(e) => return (Ended::Failed(format!("cannot start {}: {e}", python.display())), None),
    };
    let mut ready_at = None;
    // The host leads its own group; anything it forked (its warm-up server)
    // goes with it when this run ends or is dropped. Its yt-dlp children lead
    // groups of their own and are their callers' to stop.
    let mut group = GroupGuard { pgid: child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw) };
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let stderr = tokio::spawn(forward_stderr(stderr));
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                let Ok(event) = serde_json::from_str::<Announcement>(&line) else { continue };
                match event.event.as_str() {
                    "ready" => {
                        let yt_dlp = event.yt_dlp.unwrap_or_default();
                        let pid = event.pid.unwrap_or_default();
                        tracing::info!(yt_dlp = %yt_dlp, pid, "yt-dlp host ready");
                        ready_at = Some(Instant::now());
                        state.send_replace(HostState::Ready { yt_dlp, pid });
                    }
                    "draining" => {
                        // Let it finish its children on its own; keep its stdin
                        // open meanwhile (closing it is not needed: it drains).
                        tokio::spawn(async move {
                            let _ = child.wait().await;
                            group.kill();
                            stderr.abort();
                        });
                        return (Ended::Draining(event.reason.unwrap_or_default()), ready_at);
                    }
                    _ => {}
                }
            }
            Ok(None) | Err(_) => {
                let status = child.wait().await.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                group.kill();
                let last =
                    tokio::time::timeout(STDERR_GRACE, stderr).await.ok().and_then(Result::ok).flatten();
                let why = match last {
                    Some(line) => format!("the yt-dlp host exited ({status}): {line}"),
                    None => format!("the yt-dlp host exited ({status})"),
                };
                return (Ended::Failed(why), ready_at);
            }
        }
    }
}

/// The host's own log lines (`ythost[pid]: …`, a traceback if it cannot
/// start) at debug level; returns the last one, which says why it ended.
async fn forward_stderr(stderr: tokio::process::ChildStderr) -> Option<String> {
    let mut lines = BufReader::new(stderr).lines();
    let mut last = None;
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        tracing::debug!(target: "mediapro_core::ythost", "{line}");
        last = Some(line.chars().take(500).collect::<String>());
    }
    last
}
