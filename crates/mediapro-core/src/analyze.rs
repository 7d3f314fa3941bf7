//! `POST /api/analyze`'s work: one bounded yt-dlp run and the parse of its JSON.

use std::time::Duration;

use crate::{
    error::{Code, HasCode},
    process::{self, ChildCommand, RunError, ythost::YtdlpRunner},
    validate::SourceUrl,
    ytdlp::{AnalyzeArgs, MediaInfo, ParseError, classify_failure, parse_info_json},
};

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("analysis took longer than {} s", .0.as_secs())]
    TimedOut(Duration),
    /// yt-dlp could not get media from the URL and retrying will not help.
    #[error("{0}")]
    Unusable(String),
    /// A network or site problem that may pass.
    #[error("{0}")]
    Upstream(String),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("yt-dlp could not be run: {0}")]
    Tool(RunError),
    /// The egress guard refused a connection the analysis needed.
    #[error("{0}")]
    Blocked(String),
}

impl HasCode for AnalyzeError {
    fn code(&self) -> Code {
        match self {
            AnalyzeError::TimedOut(_) => Code::AnalyzeTimeout,
            AnalyzeError::Unusable(_) => Code::UnsupportedUrl,
            AnalyzeError::Upstream(_) => Code::UpstreamError,
            AnalyzeError::Parse(ParseError::Playlist) => Code::PlaylistNotSupported,
            AnalyzeError::Parse(_) => Code::UpstreamError,
            AnalyzeError::Tool(_) => Code::ToolError,
            AnalyzeError::Blocked(_) => Code::EgressBlocked,
        }
    }
}

/// Info JSON of even long pages stays far below this.
const MAX_INFO_JSON: usize = 16 * 1024 * 1024;

/// One analyze run, through `ytdlp` (the warm host, or a spawned yt-dlp);
/// `proxy` is the egress guard's proxy its connections go through.
pub async fn analyze(
    ytdlp: &YtdlpRunner,
    url: &SourceUrl,
    timeout: Duration,
    proxy: Option<&str>,
) -> Result<MediaInfo, AnalyzeError> {
    let socket_timeout = u32::try_from(timeout.as_secs().clamp(1, 20)).unwrap_or(20);
    let args = AnalyzeArgs { url, socket_timeout_secs: socket_timeout, proxy }.to_args();
    let mut spec = ChildCommand::new(ytdlp.program(), args, timeout);
    spec.max_stdout_bytes = MAX_INFO_JSON;
    let mut stdout = String::new();
    let mut run = ytdlp.run(&spec, |line| stdout.push_str(line), std::future::pending()).await;
    if let Err(RunError::Host(e)) = &run {
        // The host died under this run (an analyze changes nothing): once more, spawned.
        tracing::warn!(error = %e, "the yt-dlp host failed during an analyze; running it again spawned");
        stdout.clear();
        run = process::run(&spec, |line| stdout.push_str(line), std::future::pending()).await;
    }
    let out = run.map_err(|e| match e {
        RunError::Stopped(process::StopReason::TimedOut(d)) => AnalyzeError::TimedOut(d),
        other => AnalyzeError::Tool(other),
    })?;
    if !out.status.success() {
        let failure = classify_failure(&out.stderr_tail);
        return Err(if failure.permanent {
            AnalyzeError::Unusable(failure.reason)
        } else {
            AnalyzeError::Upstream(failure.reason)
        });
    }
    Ok(parse_info_json(&stdout)?)
}
