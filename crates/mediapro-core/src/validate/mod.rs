//! Parse, don't validate: request fields become typed values here, before anything
//! is stored, queued or turned into an argument vector. Each error names its field.

mod format;
mod ip_policy;
mod media_path;
mod subtitles;
mod url;

pub use format::FormatSelector;
pub use ip_policy::{BlockReason, Blocked, EgressPolicy, InvalidNetwork, is_public_ip, parse_networks};
pub use media_path::MediaPath;
pub use subtitles::{SubtitleLang, SubtitleLangs};
pub use url::SourceUrl;

use crate::error::{Code, HasCode};

/// A request field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub code: Code,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, code: Code, message: impl Into<String>) -> Self {
        Self { field, code, message: message.into() }
    }
}

impl HasCode for ValidationError {
    fn code(&self) -> Code {
        self.code
    }
}
