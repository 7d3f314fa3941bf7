//! yt-dlp: argument vectors for analyze and download, and pure parsers of what it
//! prints. The README's "Security" section says why each hardening flag is there.

mod command;
mod failure;
pub mod files;
mod info;
pub(crate) mod lenient;
mod playlist;
mod progress;

pub use command::{AnalyzeArgs, DownloadArgs, SiteArgs};
pub use failure::{Failure, FailureClass, classify_failure};
pub use info::{Carries, FormatInfo, MediaInfo, ParseError, parse_info_json};
pub use playlist::{ArchiveKeyArgs, Collection, CollectionEntry, ListArgs, PlaylistItems, parse_listing};
pub use progress::{DownloadOutput, OutputLine, ProgressTracker, parse_output_line};
