//! The one way MediaPro runs yt-dlp, ffmpeg and ffprobe: an argument vector (never
//! a shell), stdin closed, a cleared environment, the child leading its own process
//! group (yt-dlp spawns ffmpeg), stdout and stderr drained concurrently (reading
//! stderr after `wait` can deadlock on a full pipe), a bounded stderr tail kept for
//! the error message, and a timeout or cancellation that kills the whole group.

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
}

impl ChildCommand {
    pub fn new(program: impl Into<PathBuf>, args: Vec<String>, timeout: Duration) -> Self {
        Self { program: program.into(), args, timeout, working_dir: None, max_stdout_bytes: 64 * 1024 * 1024 }
    }
}

#[derive(Debug)]
pub struct ProcessOutput {
    pub status: ExitStatus,
    /// The last lines of stderr (at most [`STDERR_TAIL_LINES`]).
    pub stderr_tail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("timed out after {} s", .0.as_secs())]
    TimedOut(Duration),
    #[error("cancelled")]
    Cancelled,
    #[error("output larger than {0} bytes")]
    OutputTooLarge(usize),
    #[error("reading the child's output failed: {0}")]
    Io(#[from] std::io::Error),
}

pub const STDERR_TAIL_LINES: usize = 20;
/// Longer stderr lines are cut: only the tail is kept, for a one-line reason.
const MAX_STDERR_LINE: usize = 64 * 1024;

/// Kills the process group when dropped unless disarmed, so a dropped job future
/// (worker shutdown, panic) leaves no yt-dlp or ffmpeg behind.
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
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
/// `cancel` resolving kills the group and returns [`RunError::Cancelled`].
pub async fn run(
    spec: &ChildCommand,
    mut on_stdout_line: impl FnMut(&str),
    cancel: impl Future<Output = ()>,
) -> Result<ProcessOutput, RunError> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(minimal_env(spec))
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
    let mut guard = GroupGuard { pgid: child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw) };
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");

    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    let work = async {
        let out = read_lines(stdout, spec.max_stdout_bytes, spec.max_stdout_bytes, |l| on_stdout_line(l));
        let err = read_lines(stderr, usize::MAX, MAX_STDERR_LINE, |l| {
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(l.chars().take(2000).collect::<String>());
        });
        let (out, err) = tokio::join!(out, err);
        out?;
        err?;
        Ok::<_, RunError>(child.wait().await?)
    };
    let result = tokio::select! {
        r = work => r,
        () = tokio::time::sleep(spec.timeout) => Err(RunError::TimedOut(spec.timeout)),
        () = cancel => Err(RunError::Cancelled),
    };
    match result {
        Ok(status) => {
            // The leader exited; anything it left in its group goes too.
            guard.kill();
            Ok(ProcessOutput { status, stderr_tail: tail.into_iter().collect::<Vec<_>>().join("\n") })
        }
        Err(e) => {
            guard.kill();
            Err(e)
        }
    }
}

fn minimal_env(spec: &ChildCommand) -> Vec<(String, String)> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    let home = spec.working_dir.clone().unwrap_or_else(std::env::temp_dir).display().to_string();
    vec![
        ("PATH".into(), path),
        ("HOME".into(), home),
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
        assert!(matches!(err, RunError::TimedOut(_)));
        let pid: i32 = std::fs::read_to_string(&marker).expect("pid written").trim().parse().expect("pid");
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The grandchild `sleep` is gone (or a zombie about to be reaped by init).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z "), "sleep survived: {stat}");
    }

    #[tokio::test]
    async fn cancellation_is_reported() {
        let spec = sh("sleep 30", Duration::from_secs(60));
        let err =
            run(&spec, |_| {}, tokio::time::sleep(Duration::from_millis(100))).await.expect_err("cancelled");
        assert!(matches!(err, RunError::Cancelled));
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
