//! The client of the warm yt-dlp host (`crates/mediapro-core/ythost/ythost.py`):
//! a Python process that has imported and warmed yt-dlp once and forks a child
//! per run, which skips most of a short run's cost (the interpreter start and
//! yt-dlp's own warm-up). This module speaks the host's protocol (documented at
//! the top of `ythost.py`): one connection per run, a JSON request line with the
//! write ends of two pipes passed as `SCM_RIGHTS`, then `started` (the child's
//! pid, which leads its own process group) and `exit` lines. The runner in
//! `process.rs` reads the pipes and supervises the group exactly as it does a
//! spawned CLI; this module only starts the run and reports its end.

use std::{
    collections::BTreeMap,
    io::{self, IoSlice},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::process::ExitStatusExt,
    },
    path::{Path, PathBuf},
    process::ExitStatus,
    time::Duration,
};

mod runner;
mod supervisor;

pub use runner::{HostStatus, YtdlpRunner, YtdlpStatus, python_of};
pub use supervisor::{HostSettings, HostState, HostSupervisor};

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Interest},
    net::{UnixStream, unix::pipe},
};

/// Bound on connecting, sending a request and reading its `started` answer (or
/// an `info` answer). Past it the host counts as unavailable.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// The host's answers are a few dozen bytes; a longer line is a protocol error.
const MAX_EVENT_LINE: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// No host listens at the socket (not started yet, restarting, draining).
    #[error("no yt-dlp host at {path}: {source}")]
    Unavailable { path: String, source: io::Error },
    #[error("the yt-dlp host did not answer within {} s", START_TIMEOUT.as_secs())]
    TimedOut,
    /// The host answered `error` (a request it does not take, or draining).
    #[error("the yt-dlp host refused the run: {0}")]
    Refused(String),
    /// The connection closed before the host said how the run ended.
    #[error("the yt-dlp host went away")]
    Gone,
    #[error("the yt-dlp host's answer is not understood: {0}")]
    Protocol(String),
    #[error("talking to the yt-dlp host failed: {0}")]
    Io(#[from] io::Error),
}

/// What a host says about itself (`{"op": "info"}`, and its `ready` line).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HostInfo {
    pub protocol: u32,
    /// yt-dlp's version in the host (what every child runs).
    pub yt_dlp: String,
    pub python: String,
    pub pid: u32,
    /// Children started so far.
    pub jobs: u64,
    pub rss_kib: u64,
}

#[derive(Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum Event {
    Started { pid: i32 },
    Exit { code: Option<i32>, signal: Option<i32> },
    Error { message: String },
    Info(HostInfo),
}

#[derive(Serialize)]
struct RunRequest<'a> {
    op: &'static str,
    argv: &'a [String],
    env: BTreeMap<&'a str, &'a str>,
    cwd: Option<&'a Path>,
    rlimit_as: Option<u64>,
}

/// What the host's child needs besides its argv: the same as a spawned
/// child's environment, folder and address-space limit.
#[derive(Debug, Clone, Copy)]
pub struct RunSpec<'a> {
    pub argv: &'a [String],
    /// The complete environment of the child (nothing of the host's is kept).
    pub env: &'a [(String, String)],
    pub cwd: Option<&'a Path>,
    pub rlimit_as: Option<u64>,
}

/// Where a host listens. Cheap to clone; every run opens its own connection.
#[derive(Debug, Clone)]
pub struct HostClient {
    socket: PathBuf,
}

/// A run the host started: the read ends of its output pipes, and the
/// connection on which its end is reported.
#[derive(Debug)]
pub struct HostedChild {
    /// The child's pid, which is also its process group id.
    pub pid: i32,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
    pub exit: HostedExit,
}

/// The connection on which the host reports how its child ended.
#[derive(Debug)]
pub struct HostedExit {
    events: BufReader<UnixStream>,
}

impl HostClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self { socket: socket.into() }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn connect(&self) -> Result<UnixStream, HostError> {
        UnixStream::connect(&self.socket)
            .await
            .map_err(|source| HostError::Unavailable { path: self.socket.display().to_string(), source })
    }

    /// Asks the host for its version and counters.
    pub async fn info(&self) -> Result<HostInfo, HostError> {
        tokio::time::timeout(START_TIMEOUT, async {
            let mut stream = self.connect().await?;
            stream.write_all(b"{\"op\":\"info\"}\n").await?;
            let mut events = BufReader::new(stream);
            match read_event(&mut events).await? {
                Some(Event::Info(info)) => Ok(info),
                Some(Event::Error { message }) => Err(HostError::Refused(message)),
                Some(_) => Err(HostError::Protocol("expected an info answer".into())),
                None => Err(HostError::Gone),
            }
        })
        .await
        .map_err(|_| HostError::TimedOut)?
    }

    /// Starts one run. On `Ok` the child exists and leads its own process
    /// group; on `Err` nothing runs (the caller may spawn the CLI instead).
    pub async fn start(&self, spec: RunSpec<'_>) -> Result<HostedChild, HostError> {
        tokio::time::timeout(START_TIMEOUT, self.start_inner(spec)).await.map_err(|_| HostError::TimedOut)?
    }

    async fn start_inner(&self, spec: RunSpec<'_>) -> Result<HostedChild, HostError> {
        let request = RunRequest {
            op: "run",
            argv: spec.argv,
            env: spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            cwd: spec.cwd,
            rlimit_as: spec.rlimit_as,
        };
        let mut line = serde_json::to_vec(&request).map_err(|e| HostError::Protocol(e.to_string()))?;
        line.push(b'\n');
        let mut stream = self.connect().await?;
        // Close-on-exec pipes: no process this service spawns meanwhile inherits
        // a write end (which would hold the reader's EOF back).
        let (out_r, out_w) = io::pipe()?;
        let (err_r, err_w) = io::pipe()?;
        let sent = send_with_fds(&stream, &line, &[out_w.as_raw_fd(), err_w.as_raw_fd()]).await?;
        // The host's child holds the write ends now.
        drop((out_w, err_w));
        stream.write_all(&line[sent..]).await?;
        let stdout = pipe::Receiver::from_owned_fd(OwnedFd::from(out_r))?;
        let stderr = pipe::Receiver::from_owned_fd(OwnedFd::from(err_r))?;
        let mut events = BufReader::new(stream);
        match read_event(&mut events).await? {
            Some(Event::Started { pid }) if pid > 1 => {
                Ok(HostedChild { pid, stdout, stderr, exit: HostedExit { events } })
            }
            Some(Event::Error { message }) => Err(HostError::Refused(message)),
            Some(_) => Err(HostError::Protocol("expected a started answer".into())),
            None => Err(HostError::Gone),
        }
    }
}

impl HostedExit {
    /// Waits for the host to report the child's end, as a process status (exit
    /// code or signal). [`HostError::Gone`] if the host died first: the child
    /// may still run, and its group is the caller's to kill.
    pub async fn wait(&mut self) -> Result<ExitStatus, HostError> {
        loop {
            match read_event(&mut self.events).await? {
                Some(Event::Exit { code: Some(code), .. }) => {
                    return Ok(ExitStatus::from_raw((code & 0xff) << 8));
                }
                Some(Event::Exit { signal: Some(signal), .. }) => {
                    return Ok(ExitStatus::from_raw(signal & 0x7f));
                }
                Some(Event::Exit { .. }) => {
                    return Err(HostError::Protocol("exit without code or signal".into()));
                }
                Some(Event::Error { message }) => return Err(HostError::Refused(message)),
                Some(_) => continue,
                None => return Err(HostError::Gone),
            }
        }
    }
}

/// Sends `line` with `fds` attached to its first bytes; returns how many bytes
/// went (the rest is the caller's to write).
async fn send_with_fds(stream: &UnixStream, line: &[u8], fds: &[i32]) -> io::Result<usize> {
    loop {
        stream.writable().await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            sendmsg::<()>(
                stream.as_raw_fd(),
                &[IoSlice::new(line)],
                &[ControlMessage::ScmRights(fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(io::Error::from)
        });
        match sent {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the host took no bytes")),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// One event line; `None` at EOF.
async fn read_event(events: &mut BufReader<UnixStream>) -> Result<Option<Event>, HostError> {
    let mut line = String::new();
    let n = events.take(MAX_EVENT_LINE).read_line(&mut line).await?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with('\n') {
        return Err(if n as u64 >= MAX_EVENT_LINE {
            HostError::Protocol("answer line too long".into())
        } else {
            HostError::Gone
        });
    }
    serde_json::from_str(&line).map(Some).map_err(|e| HostError::Protocol(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    async fn exit_after(lines: &str) -> Result<ExitStatus, HostError> {
        let (host_end, client_end) = UnixStream::pair().expect("socket pair");
        let mut host_end = host_end;
        host_end.write_all(lines.as_bytes()).await.expect("write");
        drop(host_end);
        HostedExit { events: BufReader::new(client_end) }.wait().await
    }

    #[tokio::test]
    async fn exit_events_become_process_statuses() {
        let status =
            exit_after("{\"event\":\"exit\",\"pid\":7,\"code\":3,\"signal\":null}\n").await.expect("exit");
        assert_eq!((status.code(), status.signal()), (Some(3), None));
        let status =
            exit_after("{\"event\":\"exit\",\"pid\":7,\"code\":null,\"signal\":9}\n").await.expect("exit");
        assert_eq!((status.code(), status.signal()), (None, Some(9)));
        assert!(exit_after("{\"event\":\"exit\",\"pid\":7,\"code\":0}\n").await.expect("exit").success());
    }

    #[tokio::test]
    async fn a_host_that_goes_away_or_talks_nonsense_is_an_error() {
        assert!(matches!(exit_after("").await, Err(HostError::Gone)));
        assert!(matches!(exit_after("{\"event\":\"exit\",\"pid\":7,\"co").await, Err(HostError::Gone)));
        assert!(matches!(exit_after("not json\n").await, Err(HostError::Protocol(_))));
        assert!(matches!(
            exit_after("{\"event\":\"error\",\"message\":\"no\"}\n").await,
            Err(HostError::Refused(m)) if m == "no"
        ));
    }
}
