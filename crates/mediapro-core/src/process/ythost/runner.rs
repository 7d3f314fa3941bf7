//! How one process (the API, a worker) runs yt-dlp: through its warm host
//! (`tools.ytdlp_host`, default on) while one is ready, else by spawning
//! `tools.ytdlp`. Each binary makes one [`YtdlpRunner`] at start-up and every
//! yt-dlp run goes through [`YtdlpRunner::run`]; it also knows the yt-dlp
//! version (the host's, or the CLI's `--version`) for the start-up log line and
//! `/readyz` (`crates/api/src/routes/health.rs`).

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

use super::{HostClient, HostSettings, HostState, HostSupervisor};
use crate::{
    process::{self, ChildCommand, ProcessOutput, RunError, StopReason},
    settings::ToolSettings,
};

/// How long [`YtdlpRunner::announce`] waits for the host before it reports the
/// CLI's version instead.
const ANNOUNCE_WAIT: Duration = Duration::from_secs(60);
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

/// The warm host as `/readyz` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostStatus {
    /// `tools.ytdlp_host = false`: every run spawns yt-dlp.
    Off,
    Starting,
    Ready,
    /// Not running (it could not start, or died); runs spawn yt-dlp meanwhile.
    Unavailable,
}

/// What a runner says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YtdlpStatus {
    pub host: HostStatus,
    /// The host's yt-dlp while it is ready, else the CLI's once it was asked
    /// (`None` until then).
    pub version: Option<String>,
}

/// Runs yt-dlp for this process; see the module documentation.
#[derive(Debug)]
pub struct YtdlpRunner {
    program: PathBuf,
    host: Option<HostSupervisor>,
    cli_version: OnceLock<String>,
}

impl YtdlpRunner {
    /// Starts the warm host when `tools.ytdlp_host` is on (in the background:
    /// runs spawn yt-dlp until it is ready). Needs a Tokio runtime; the host
    /// lives as long as the runner (and that runtime).
    pub fn start(tools: &ToolSettings) -> Self {
        let host = tools.ytdlp_host.then(|| HostSettings::from_tools(tools)).and_then(|settings| {
            let python = settings.python.display().to_string();
            HostSupervisor::start(settings)
                .inspect_err(|e| {
                    tracing::warn!(error = %e, %python, "cannot start the yt-dlp host; yt-dlp is spawned per run")
                })
                .ok()
        });
        Self { program: tools.ytdlp.clone(), host, cli_version: OnceLock::new() }
    }

    /// A runner that always spawns `program` (no host).
    pub fn spawning(program: impl Into<PathBuf>) -> Self {
        Self { program: program.into(), host: None, cli_version: OnceLock::new() }
    }

    /// The yt-dlp program a spawned run starts (`tools.ytdlp`).
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Runs yt-dlp with `spec` (whose `program` is [`Self::program`]) through
    /// [`process::run_ytdlp`]: in the host while one is ready, else spawned.
    pub async fn run(
        &self,
        spec: &ChildCommand,
        on_stdout_line: impl FnMut(&str),
        stop: impl Future<Output = StopReason>,
    ) -> Result<ProcessOutput, RunError> {
        process::run_ytdlp(self.host_client(), spec, on_stdout_line, stop).await
    }

    /// The host's client while a host is ready.
    pub fn host_client(&self) -> Option<&HostClient> {
        self.host.as_ref().and_then(HostSupervisor::client)
    }

    /// The supervisor's view of the host (`None`: the host is off).
    pub fn host_state(&self) -> Option<HostState> {
        self.host.as_ref().map(HostSupervisor::state)
    }

    /// Waits until the host is ready (or `within` passed); `None` when it is off.
    pub async fn wait_ready(&self, within: Duration) -> Option<HostState> {
        match &self.host {
            Some(host) => Some(host.wait_ready(within).await),
            None => None,
        }
    }

    pub fn status(&self) -> YtdlpStatus {
        let Some(state) = self.host_state() else {
            return YtdlpStatus { host: HostStatus::Off, version: self.cli_version.get().cloned() };
        };
        match state {
            HostState::Ready { yt_dlp, .. } => YtdlpStatus { host: HostStatus::Ready, version: Some(yt_dlp) },
            HostState::Starting => {
                YtdlpStatus { host: HostStatus::Starting, version: self.cli_version.get().cloned() }
            }
            HostState::Unavailable(_) => {
                YtdlpStatus { host: HostStatus::Unavailable, version: self.cli_version.get().cloned() }
            }
        }
    }

    /// The CLI's `yt-dlp --version` (asked once per process, then remembered).
    pub async fn cli_version(&self) -> Result<String, String> {
        if let Some(version) = self.cli_version.get() {
            return Ok(version.clone());
        }
        let spec = ChildCommand::new(&self.program, vec!["--version".into()], VERSION_TIMEOUT);
        let mut first = None;
        let out = process::run(
            &spec,
            |l| {
                first.get_or_insert_with(|| l.trim().to_owned());
            },
            std::future::pending(),
        )
        .await
        .map_err(|e| e.to_string())?;
        match first {
            Some(version) if out.status.success() && !version.is_empty() => {
                Ok(self.cli_version.get_or_init(|| version).clone())
            }
            _ => Err(format!("{} --version failed: {}", self.program.display(), out.stderr_tail.trim())),
        }
    }

    /// Logs the yt-dlp version once, when it is known: the host's as soon as
    /// one is ready, else (host off, or not ready within a minute) the CLI's.
    /// Meant to be spawned at start-up.
    pub async fn announce(&self) {
        if let Some(HostState::Ready { yt_dlp, pid }) = self.wait_ready(ANNOUNCE_WAIT).await {
            tracing::info!(yt_dlp = %yt_dlp, host_pid = pid, "yt-dlp {yt_dlp}, run in the warm host");
            return;
        }
        let how = if self.host.is_some() {
            "spawned per run until the warm host is ready"
        } else {
            "spawned per run (tools.ytdlp_host = false)"
        };
        match self.cli_version().await {
            Ok(version) => tracing::info!(yt_dlp = %version, "yt-dlp {version}, {how}"),
            Err(e) => tracing::warn!(error = %e, "yt-dlp does not run: {e}"),
        }
    }
}

impl HostSettings {
    /// The host as the settings describe it (`tools.ytdlp_host_*`).
    pub fn from_tools(tools: &ToolSettings) -> Self {
        let python = if tools.ytdlp_host_python.as_os_str().is_empty() {
            python_of(&tools.ytdlp)
        } else {
            tools.ytdlp_host_python.clone()
        };
        Self {
            python,
            max_jobs: tools.ytdlp_host_max_jobs,
            max_rss_mib: tools.ytdlp_host_max_rss_mib,
            // Without it each run pays yt-dlp's lazy loading (about 1.5 s: as
            // slow as a spawned yt-dlp); it is for tests of the host only.
            warm_up: true,
        }
    }
}

/// The interpreter of the installed yt-dlp: the program of its `#!` line when
/// that is a Python (`#!/usr/bin/python3`, `#!/usr/bin/env python3.11`), else
/// `python3` (e.g. a version manager's shell shim, whose `python3` is the same
/// version manager's choice).
pub fn python_of(ytdlp: &Path) -> PathBuf {
    let fallback = PathBuf::from("python3");
    let Some(script) = find_program(ytdlp) else { return fallback };
    let mut head = [0u8; 256];
    let n =
        std::fs::File::open(&script).and_then(|mut f| std::io::Read::read(&mut f, &mut head)).unwrap_or(0);
    shebang_python(&head[..n]).unwrap_or(fallback)
}

/// The Python named by a `#!` line, if it names one.
fn shebang_python(head: &[u8]) -> Option<PathBuf> {
    let line = head.strip_prefix(b"#!")?.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    let mut program = words.next()?;
    if Path::new(program).file_name().is_some_and(|n| n == "env") {
        // `env [-S] [VAR=value…] python3`
        program = words.find(|w| !w.starts_with('-') && !w.contains('='))?;
    }
    let name = Path::new(program).file_name()?.to_str()?;
    let is_python =
        name.strip_prefix("python").is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'));
    is_python.then(|| PathBuf::from(program))
}

/// `program` itself when it names a path, else the first executable file of
/// that name on PATH.
fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_comes_from_the_shebang_when_it_is_a_python() {
        let py = |line: &str| shebang_python(line.as_bytes());
        assert_eq!(py("#!/usr/bin/python3\nimport x"), Some("/usr/bin/python3".into()));
        assert_eq!(py("#!/opt/venv/bin/python3.11 -s\n"), Some("/opt/venv/bin/python3.11".into()));
        assert_eq!(py("#!/usr/bin/env python3\n"), Some("python3".into()));
        assert_eq!(py("#!/usr/bin/env -S PYTHONX=1 python\n"), Some("python".into()));
        assert_eq!(py("#!/usr/bin/env bash\nexec pyenv"), None, "a shell shim");
        assert_eq!(py("#!/bin/sh\n"), None);
        assert_eq!(py("#!/usr/bin/pythonic\n"), None);
        assert_eq!(py("\x7fELF"), None, "a binary");
    }

    #[test]
    fn python_of_reads_the_script_and_falls_back_to_python3() {
        let dir = tempfile::tempdir().expect("dir");
        let script = dir.path().join("yt-dlp");
        std::fs::write(&script, "#!/srv/venv/bin/python3.12\nimport yt_dlp\n").expect("write");
        assert_eq!(python_of(&script), PathBuf::from("/srv/venv/bin/python3.12"));
        std::fs::write(&script, "#!/usr/bin/env bash\n").expect("write");
        assert_eq!(python_of(&script), PathBuf::from("python3"));
        assert_eq!(python_of(&dir.path().join("missing")), PathBuf::from("python3"));
    }

    #[test]
    fn host_settings_follow_the_tool_settings() {
        let mut tools = ToolSettings { ytdlp_host_python: "/x/python3".into(), ..ToolSettings::default() };
        tools.ytdlp_host_max_jobs = 7;
        let host = HostSettings::from_tools(&tools);
        assert_eq!(host.python, PathBuf::from("/x/python3"));
        assert_eq!((host.max_jobs, host.max_rss_mib, host.warm_up), (7, 512, true));
    }

    #[tokio::test]
    async fn a_runner_without_host_is_off_and_spawns() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let fake = dir.path().join("yt-dlp");
        std::fs::write(&fake, "#!/bin/sh\n[ \"$1\" = --version ] && echo 2026.01.02\n").expect("write");
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let runner = YtdlpRunner::spawning(&fake);
        assert_eq!(runner.status(), YtdlpStatus { host: HostStatus::Off, version: None });
        assert!(runner.host_client().is_none() && runner.wait_ready(Duration::ZERO).await.is_none());
        assert_eq!(runner.cli_version().await, Ok("2026.01.02".to_owned()));
        assert_eq!(runner.status().version.as_deref(), Some("2026.01.02"), "remembered");
        let missing = YtdlpRunner::spawning(dir.path().join("missing"));
        assert!(missing.cli_version().await.is_err());
    }
}
