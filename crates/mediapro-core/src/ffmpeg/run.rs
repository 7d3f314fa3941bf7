//! Running ffprobe (used by the API before queueing and by the worker).

use std::{path::Path, time::Duration};

use super::probe::{MediaProbe, ProbeArgs, ProbeError, parse_probe_json};
use crate::{
    error::{Code, HasCode},
    process::{self, ChildCommand, RunError},
};

#[derive(Debug, thiserror::Error)]
pub enum ProbeRunError {
    #[error("input_file: {0}")]
    NotMedia(#[from] ProbeError),
    #[error("input_file: not a media file ffprobe accepts ({0})")]
    Rejected(String),
    #[error("probing timed out")]
    TimedOut,
    #[error("ffprobe could not be run: {0}")]
    Tool(RunError),
}

impl HasCode for ProbeRunError {
    fn code(&self) -> Code {
        match self {
            ProbeRunError::NotMedia(_) | ProbeRunError::Rejected(_) | ProbeRunError::TimedOut => {
                Code::NotMedia
            }
            ProbeRunError::Tool(_) => Code::ToolError,
        }
    }
}

pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

pub async fn probe(ffprobe: &Path, path: &Path) -> Result<MediaProbe, ProbeRunError> {
    let mut spec = ChildCommand::new(ffprobe, ProbeArgs { path }.to_args(), PROBE_TIMEOUT);
    spec.max_stdout_bytes = 4 * 1024 * 1024;
    let mut stdout = String::new();
    let out = process::run(
        &spec,
        |l| {
            stdout.push_str(l);
            stdout.push('\n');
        },
        std::future::pending(),
    )
    .await
    .map_err(|e| match e {
        RunError::Stopped(process::StopReason::TimedOut(_)) => ProbeRunError::TimedOut,
        other => ProbeRunError::Tool(other),
    })?;
    if !out.status.success() {
        return Err(ProbeRunError::Rejected(ffmpeg_reason(&out.stderr_tail)));
    }
    Ok(parse_probe_json(&stdout)?)
}

/// The last line ffmpeg/ffprobe printed at `-loglevel error`, without the
/// `[demuxer @ 0x…]` prefix and without server paths.
pub fn ffmpeg_reason(stderr_tail: &str) -> String {
    let mut lines = stderr_tail.lines().rev().filter(|l| !l.trim().is_empty()).map(clean_line);
    let Some(last) = lines.next() else {
        return "failed without a message".into();
    };
    // "<path>: Invalid argument" says little; the line before it says why.
    let reason = match (last.generic, lines.next()) {
        (true, Some(before)) => format!("{} ({})", before.text, last.text),
        _ => last.text,
    };
    reason.chars().filter(|c| !c.is_control()).take(300).collect()
}

struct Line {
    text: String,
    /// The line was "<file>: <errno text>".
    generic: bool,
}

fn clean_line(line: &str) -> Line {
    let line = match line.find("] ") {
        Some(i) if line.starts_with('[') => &line[i + 2..],
        _ => line,
    };
    match line.split_once(": ") {
        Some((head, rest)) if head.starts_with("file:") || head.starts_with('/') => {
            Line { text: rest.to_owned(), generic: true }
        }
        _ => Line { text: line.to_owned(), generic: false },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_line_without_paths() {
        let tail = "[hls @ 0x55e4d3d16280] Format not on whitelist 'mov,mp4'\nfile:/tmp/exp/hls/x.mp4: Invalid argument";
        assert_eq!(ffmpeg_reason(tail), "Format not on whitelist 'mov,mp4' (Invalid argument)");
        assert_eq!(ffmpeg_reason("/srv/x.mp4: No such file"), "No such file");
        assert_eq!(
            ffmpeg_reason("[hls @ 0x1] Format not on whitelist 'mov'"),
            "Format not on whitelist 'mov'"
        );
        assert_eq!(ffmpeg_reason(""), "failed without a message");
    }
}
