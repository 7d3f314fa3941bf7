//! The one way MediaPro runs yt-dlp, ffmpeg and ffprobe: an argument vector (never
//! a shell), stdin closed, a cleared environment, the child leading its own process
//! group (yt-dlp spawns ffmpeg), stdout and stderr drained concurrently (reading
//! stderr after `wait` can deadlock on a full pipe), a bounded stderr tail kept for
//! the error message, and a timeout or cancellation that kills the whole group.
//!
//! yt-dlp may instead run as a child of the warm host ([`ythost`], [`run_ytdlp`]):
//! the same argv, environment, folder and limits, the same reading of its pipes
//! and the same group kill; only the start differs (a fork of a warmed process
//! instead of a fresh interpreter).

pub mod ythost;

use std::{
    collections::VecDeque,
    future::Future,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tempfile::TempDir;
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    process::Command,
};

/// What to run.
#[derive(Debug, Clone)]
pub struct ChildCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub timeout: Duration,
    pub working_dir: Option<PathBuf>,
    /// Refuse (and kill the child) past this many bytes of stdout.
    pub max_stdout_bytes: usize,
    /// Between SIGTERM and SIGKILL when the child is stopped.
    pub kill_grace: Duration,
    /// Extra environment variables (the cleared environment has only PATH,
    /// a private HOME, the locale and Python's unbuffered/no-user-site flags).
    pub env: Vec<(String, String)>,
    /// Address-space ceiling for the child (`prlimit --as`), if any.
    pub memory_limit_bytes: Option<u64>,
}

impl ChildCommand {
    pub fn new(program: impl Into<PathBuf>, args: Vec<String>, timeout: Duration) -> Self {
        Self {
            program: program.into(),
            args,
            timeout,
            working_dir: None,
            max_stdout_bytes: 64 * 1024 * 1024,
            kill_grace: Duration::from_secs(1),
            env: Vec::new(),
            memory_limit_bytes: None,
        }
    }
}

#[derive(Debug)]
pub struct ProcessOutput {
    pub status: ExitStatus,
    /// The last lines of stderr (at most [`STDERR_TAIL_LINES`]).
    pub stderr_tail: String,
}

/// Why a child was stopped before it finished: the one kill reason, decided by
/// whoever supervises it (the runner itself for the timeout).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StopReason {
    #[error("timed out after {} s", .0.as_secs())]
    TimedOut(Duration),
    #[error("cancelled")]
    Cancelled,
    #[error("stalled: no output for {} s", .0.as_secs())]
    Stalled(Duration),
    /// Another attempt owns the task now (this worker was presumed dead).
    #[error("lease lost")]
    LeaseLost,
    /// The worker is shutting down.
    #[error("worker shutting down")]
    Shutdown,
    /// The child's output passed the size limit.
    #[error("file larger than the limit of {0} bytes")]
    TooLarge(u64),
    /// The egress guard refused a connection the child needed.
    #[error("{0}")]
    Blocked(String),
}

impl StopReason {
    /// The reason as a metric label (`mediapro_subprocess_kills_total`).
    pub fn label(&self) -> &'static str {
        match self {
            StopReason::TimedOut(_) => "timed_out",
            StopReason::Cancelled => "cancelled",
            StopReason::Stalled(_) => "stalled",
            StopReason::LeaseLost => "lease_lost",
            StopReason::Shutdown => "shutdown",
            StopReason::TooLarge(_) => "too_large",
            StopReason::Blocked(_) => "blocked",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{0}")]
    Stopped(StopReason),
    #[error("output larger than {0} bytes")]
    OutputTooLarge(usize),
    #[error("reading the child's output failed: {0}")]
    Io(#[from] std::io::Error),
    /// The warm host failed after it started the child (it died, or said
    /// something else than how the child ended); the child's group is killed.
    #[error("{0}")]
    Host(ythost::HostError),
}

pub const STDERR_TAIL_LINES: usize = 20;
/// Longer stderr lines are cut: only the tail is kept, for a one-line reason.
const MAX_STDERR_LINE: usize = 64 * 1024;

/// Kills the process group when dropped, so a dropped job future (worker
/// shutdown, panic) leaves no yt-dlp or ffmpeg behind.
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, signal);
        }
    }

    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the child to completion, calling `on_stdout_line` for each stdout line.
/// When `stop` resolves (or the timeout passes) the group gets SIGTERM, then
/// SIGKILL after [`ChildCommand::kill_grace`], and the reason comes back as
/// [`RunError::Stopped`].
pub async fn run(
    spec: &ChildCommand,
    on_stdout_line: impl FnMut(&str),
    stop: impl Future<Output = StopReason>,
) -> Result<ProcessOutput, RunError> {
    let home = private_home(spec)?;
    // The one place a process is spawned (clippy.toml forbids it elsewhere).
    #[allow(clippy::disallowed_methods)]
    let mut cmd = match spec.memory_limit_bytes {
        Some(bytes) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--as={bytes}")).arg("--").arg(&spec.program);
            c
        }
        None => Command::new(&spec.program),
    };
    cmd.args(&spec.args)
        .env_clear()
        .envs(child_env(home.path(), spec))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .map_err(|source| RunError::Spawn { program: spec.program.display().to_string(), source })?;
    let guard = GroupGuard { pgid: child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw) };
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let wait = async { child.wait().await.map_err(RunError::Io) };
    supervise(spec, guard, stdout, stderr, wait, on_stdout_line, stop).await
}

/// Runs yt-dlp as a child of the warm host when `host` is given and answers,
/// else spawns `spec.program` with [`run`]. The host's child gets what a
/// spawned one gets (argv, cleared environment with a private HOME, working
/// folder, address-space limit as `rlimit_as`) and is read and stopped the same
/// way; `spec.program` is not used then (the host runs its own yt-dlp). A host
/// that fails once the child runs is [`RunError::Host`] (the group is killed).
pub async fn run_ytdlp(
    host: Option<&ythost::HostClient>,
    spec: &ChildCommand,
    on_stdout_line: impl FnMut(&str),
    stop: impl Future<Output = StopReason>,
) -> Result<ProcessOutput, RunError> {
    let Some(host) = host else {
        return run(spec, on_stdout_line, stop).await;
    };
    let home = private_home(spec)?;
    let env = child_env(home.path(), spec);
    let started = host
        .start(ythost::RunSpec {
            argv: &spec.args,
            env: &env,
            cwd: spec.working_dir.as_deref(),
            rlimit_as: spec.memory_limit_bytes,
        })
        .await;
    let child = match started {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!(error = %e, "yt-dlp host not available, spawning yt-dlp");
            drop(home);
            return run(spec, on_stdout_line, stop).await;
        }
    };
    let guard = GroupGuard { pgid: Some(Pid::from_raw(child.pid)) };
    let ythost::HostedChild { stdout, stderr, mut exit, .. } = child;
    let wait = async { exit.wait().await.map_err(RunError::Host) };
    let result = supervise(spec, guard, stdout, stderr, wait, on_stdout_line, stop).await;
    drop(home);
    result
}

/// Starts a long-lived helper (the warm yt-dlp host, supervised by
/// [`ythost::HostSupervisor`]) the way a tool is started: an argument vector,
/// the cleared minimal environment with `home` as HOME, its own process group,
/// stdin, stdout and stderr piped (its stdin closing tells it its supervisor is
/// gone; its stderr is logged by the supervisor), killed when dropped.
pub(crate) fn spawn_helper(
    program: &std::path::Path,
    args: &[String],
    home: &std::path::Path,
) -> std::io::Result<tokio::process::Child> {
    // The other place a process is spawned; clippy.toml forbids it elsewhere.
    #[allow(clippy::disallowed_methods)]
    Command::new(program)
        .args(args)
        .env_clear()
        .envs(minimal_env(home))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
}

/// A private, empty HOME (0700) per run: nothing a previous run or another
/// user left there (a `.pth` file, a config) can run as the service. Removed
/// when dropped, after the run.
fn private_home(spec: &ChildCommand) -> Result<TempDir, RunError> {
    tempfile::Builder::new()
        .prefix("mediapro-home-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .map_err(|source| RunError::Spawn { program: spec.program.display().to_string(), source })
}

/// The child's whole environment: the minimal one and the spec's additions.
fn child_env(home: &std::path::Path, spec: &ChildCommand) -> Vec<(String, String)> {
    let mut env = minimal_env(home);
    env.extend(spec.env.iter().cloned());
    env
}

/// Reads a started child's output while it runs and stops its group when asked,
/// however it was started: `wait` resolves with its status once it ended.
async fn supervise(
    spec: &ChildCommand,
    mut guard: GroupGuard,
    stdout: impl AsyncRead + Unpin,
    stderr: impl AsyncRead + Unpin,
    wait: impl Future<Output = Result<ExitStatus, RunError>>,
    mut on_stdout_line: impl FnMut(&str),
    stop: impl Future<Output = StopReason>,
) -> Result<ProcessOutput, RunError> {
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    // The work future borrows the tail: it lives in this block only.
    let result = {
        let mut work = std::pin::pin!(async {
            let out = read_lines(stdout, spec.max_stdout_bytes, spec.max_stdout_bytes, |l| on_stdout_line(l));
            let err = read_lines(stderr, usize::MAX, MAX_STDERR_LINE, |l| {
                if tail.len() == STDERR_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(l.chars().take(2000).collect::<String>());
            });
            // The status may come before the pipes close (a grandchild can hold
            // them); an error of any of the three ends the work at once.
            let ((), (), status) = tokio::try_join!(out, err, wait)?;
            Ok::<_, RunError>(status)
        });
        let result = tokio::select! {
            r = &mut work => r,
            () = tokio::time::sleep(spec.timeout) => Err(RunError::Stopped(StopReason::TimedOut(spec.timeout))),
            reason = stop => Err(RunError::Stopped(reason)),
        };
        if matches!(result, Err(RunError::Stopped(_))) {
            // Ask politely first (ffmpeg finalises, yt-dlp removes its part files),
            // then make sure.
            guard.signal(Signal::SIGTERM);
            let _ = tokio::time::timeout(spec.kill_grace, &mut work).await;
        }
        result
    };
    // Whatever ended the run, the leader is gone or going; anything it left in
    // its group goes too.
    guard.kill();
    let status = result?;
    Ok(ProcessOutput { status, stderr_tail: tail.into_iter().collect::<Vec<_>>().join("\n") })
}

fn minimal_env(home: &std::path::Path) -> Vec<(String, String)> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    vec![
        ("PATH".into(), path),
        ("HOME".into(), home.display().to_string()),
        ("PYTHONNOUSERSITE".into(), "1".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("LC_ALL".into(), "C.UTF-8".into()),
        ("PYTHONUNBUFFERED".into(), "1".into()),
    ]
}

/// Splits a stream into lines without ever holding more than one line (cut at
/// `max_line` bytes), and fails once `max_total` bytes have been read.
async fn read_lines(
    mut reader: impl AsyncRead + Unpin,
    max_total: usize,
    max_line: usize,
    mut on_line: impl FnMut(&str),
) -> Result<(), RunError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut total = 0usize;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total = total.saturating_add(n);
        if total > max_total {
            return Err(RunError::OutputTooLarge(max_total));
        }
        for chunk in buf[..n].split_inclusive(|b| *b == b'\n') {
            let complete = chunk.ends_with(b"\n");
            let body = if complete { &chunk[..chunk.len() - 1] } else { chunk };
            let room = max_line.saturating_sub(line.len());
            line.extend_from_slice(&body[..body.len().min(room)]);
            if complete {
                emit(&mut line, &mut on_line);
            }
        }
    }
    if !line.is_empty() {
        emit(&mut line, &mut on_line);
    }
    Ok(())
}

fn emit(line: &mut Vec<u8>, on_line: &mut impl FnMut(&str)) {
    let text = String::from_utf8_lossy(line);
    on_line(text.trim_end_matches('\r'));
    line.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> ChildCommand {
        ChildCommand::new("/bin/sh", vec!["-c".into(), script.into()], timeout)
    }

    #[tokio::test]
    async fn lines_are_streamed_and_stderr_tail_is_kept() {
        let mut lines = Vec::new();
        let out = run(
            &sh(
                "echo one; echo two; i=0; while [ $i -lt 30 ]; do echo err$i >&2; i=$((i+1)); done; exit 3",
                Duration::from_secs(10),
            ),
            |l| lines.push(l.to_owned()),
            std::future::pending(),
        )
        .await
        .expect("runs");
        assert_eq!(lines, ["one", "two"]);
        assert_eq!(out.status.code(), Some(3));
        assert!(out.stderr_tail.starts_with("err10\n") && out.stderr_tail.ends_with("err29"));
    }

    #[tokio::test]
    async fn the_child_gets_a_private_empty_home_and_no_user_site() {
        let mut lines = Vec::new();
        run(
            &sh(
                "stat -c %a \"$HOME\"; ls -A \"$HOME\" | wc -l; echo \"$PYTHONNOUSERSITE\"; echo \"$HOME\"",
                Duration::from_secs(10),
            ),
            |l| lines.push(l.trim().to_owned()),
            std::future::pending(),
        )
        .await
        .expect("runs");
        assert_eq!(lines[..3], ["700", "0", "1"]);
        assert!(!std::path::Path::new(&lines[3]).exists(), "the HOME is removed after the run");
    }

    #[tokio::test]
    async fn a_memory_ceiling_is_applied_through_prlimit() {
        let mut spec = sh("ulimit -v", Duration::from_secs(10));
        spec.memory_limit_bytes = Some(512 * 1024 * 1024);
        let mut lines = Vec::new();
        run(&spec, |l| lines.push(l.to_owned()), std::future::pending()).await.expect("runs");
        assert_eq!(lines, ["524288"], "ulimit -v reports KiB");
    }

    #[tokio::test]
    async fn a_chatty_stderr_does_not_deadlock() {
        // 1 MiB on stderr before anything on stdout: fills any pipe buffer.
        let spec = sh("head -c 1048576 /dev/zero | tr '\\0' 'x' >&2; echo done", Duration::from_secs(20));
        let mut lines = Vec::new();
        run(&spec, |l| lines.push(l.to_owned()), std::future::pending()).await.expect("runs");
        assert_eq!(lines, ["done"]);
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile_dir();
        let marker = dir.join("child.pid");
        let spec =
            sh(&format!("sleep 30 & echo $! > {}; wait", marker.display()), Duration::from_millis(500));
        let err = run(&spec, |_| {}, std::future::pending()).await.expect_err("times out");
        assert!(matches!(err, RunError::Stopped(StopReason::TimedOut(_))));
        let pid: i32 = std::fs::read_to_string(&marker).expect("pid written").trim().parse().expect("pid");
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The grandchild `sleep` is gone (or a zombie about to be reaped by init).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z "), "sleep survived: {stat}");
    }

    #[tokio::test]
    async fn the_stop_reason_comes_back_and_sigterm_comes_first() {
        let dir = tempfile_dir();
        let marker = dir.join("term");
        // The child traps SIGTERM and leaves a mark: it was asked before it was killed.
        let spec = sh(
            &format!("trap 'echo term > {}; exit 0' TERM; while :; do sleep 0.05; done", marker.display()),
            Duration::from_secs(60),
        );
        let stop = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            StopReason::Cancelled
        };
        let started = std::time::Instant::now();
        let err = run(&spec, |_| {}, stop).await.expect_err("stopped");
        assert!(matches!(err, RunError::Stopped(StopReason::Cancelled)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(std::fs::read_to_string(&marker).unwrap_or_default().trim(), "term");
    }

    #[tokio::test]
    async fn a_child_ignoring_sigterm_is_killed_after_the_grace() {
        let mut spec = sh("trap '' TERM; sleep 30", Duration::from_secs(60));
        spec.kill_grace = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let stop = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            StopReason::Stalled(Duration::from_secs(5))
        };
        let err = run(&spec, |_| {}, stop).await.expect_err("stopped");
        assert_eq!(err.to_string(), "stalled: no output for 5 s");
        assert!(started.elapsed() < Duration::from_secs(3), "killed after the grace");
    }

    #[tokio::test]
    async fn stdout_is_capped() {
        let mut spec = sh("head -c 100000 /dev/zero", Duration::from_secs(10));
        spec.max_stdout_bytes = 1000;
        let err = run(&spec, |_| {}, std::future::pending()).await.expect_err("too large");
        assert!(matches!(err, RunError::OutputTooLarge(1000)));
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mediapro-proc-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
