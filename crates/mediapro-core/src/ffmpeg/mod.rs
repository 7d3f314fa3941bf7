//! ffprobe and ffmpeg: typed argument vectors (never a shell string; every variable
//! token from a validated value), pure parsers of their machine-readable output, and
//! the checks that decide whether an output is what was asked for.
//!
//! Every input is opened with `-protocol_whitelist file` and a `-format_whitelist`
//! of real media demuxers, so a "video" that is really an HLS or concat playlist
//! cannot make ffmpeg read another task's files or reach the network (see the README's "Security" section).

mod command;
mod operations;
mod probe;
mod progress;
mod run;
mod verify;

pub use command::{ProcessArgs, ProcessPlan};
pub use operations::{Container, Operations, OperationsBody, Resize, Trim, TrimBody, parse_timestamp};
pub use probe::{MediaProbe, ProbeArgs, ProbeError, StreamInfo, StreamKind, parse_probe_json};
pub use progress::parse_progress_line;
pub use run::{PROBE_TIMEOUT, ProbeRunError, ffmpeg_reason, probe};
pub use verify::{VerifyError, verify_output};

/// Demuxers an input may be opened with; a playlist saved as `x.mp4` is refused. No playlist, concat,
/// image-sequence or device demuxers.
pub const INPUT_FORMAT_WHITELIST: &str =
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,mp3,ogg,wav,flac,aac,avi,mpegts,flv";

/// Decoder pixel cap: 8K (7680×4608).
pub const MAX_PIXELS: u64 = 35_389_440;
