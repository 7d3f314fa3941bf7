//! Turning yt-dlp's stderr into a one-line reason and a retry decision. The raw
//! stderr never reaches clients: it can carry server paths and request headers.

/// Why a yt-dlp run failed, for the task's `error` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    /// True when retrying cannot help (bad URL, missing video, 4xx, limits).
    pub permanent: bool,
}

const MAX_REASON: usize = 300;

/// Markers of failures that a retry cannot fix.
const PERMANENT: &[&str] = &[
    "HTTP Error 400",
    "HTTP Error 401",
    "HTTP Error 403",
    "HTTP Error 404",
    "HTTP Error 405",
    "HTTP Error 410",
    "HTTP Error 451",
    "Unsupported URL",
    "is not a valid URL",
    "Unable to extract",
    "Video unavailable",
    "Private video",
    "This video is",
    "Requested format is not available",
    "No video formats found",
    "does not pass filter",
    "File is larger than max-filesize",
    "UnsafeExtensionError",
    "is not a supported",
    "Sign in to confirm",
    "members-only",
    "DRM protected",
    "[Errno 28]",
];

/// Classifies a failed run from the tail of its stderr.
pub fn classify_failure(stderr_tail: &str) -> Failure {
    let error_line = stderr_tail
        .lines()
        .rev()
        .find(|l| l.starts_with("ERROR:"))
        .or_else(|| stderr_tail.lines().rev().find(|l| !l.trim().is_empty()));
    let Some(line) = error_line else {
        return Failure { reason: "yt-dlp failed without an error message".into(), permanent: false };
    };
    let permanent = PERMANENT.iter().any(|m| line.contains(m));
    Failure { reason: concise(line), permanent }
}

/// `ERROR: [generic] x: Unable to download webpage: HTTP Error 404: Not Found (caused by …)`
/// → `Unable to download webpage: HTTP Error 404: Not Found`.
fn concise(line: &str) -> String {
    let mut s = line.trim().trim_start_matches("ERROR:").trim();
    if let Some(rest) = s.strip_prefix('[')
        && let Some(end) = rest.find("] ")
    {
        s = &rest[end + 2..];
        // Drop the "<video id>: " yt-dlp puts before the message.
        if let Some((id, msg)) = s.split_once(": ")
            && !id.contains(' ')
        {
            s = msg;
        }
    }
    if let Some(i) = s.find(" (caused by") {
        s = &s[..i];
    }
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(MAX_REASON).collect();
    if out.is_empty() {
        out = "yt-dlp failed".into();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_404_is_permanent_and_concise() {
        let f = classify_failure(include_str!("../../tests/fixtures/ytdlp-2026.10.26-http-404.stderr.txt"));
        assert!(f.permanent);
        assert_eq!(f.reason, "Unable to download webpage: HTTP Error 404: File not found");
    }

    #[test]
    fn captured_connection_refused_is_transient() {
        let f = classify_failure(include_str!(
            "../../tests/fixtures/ytdlp-2026.10.26-connection-refused.stderr.txt"
        ));
        assert!(!f.permanent);
        assert!(f.reason.starts_with("Unable to download webpage: HTTPConnection"), "{}", f.reason);
        assert!(!f.reason.contains('\n'));
    }

    #[test]
    fn unsupported_url_is_permanent() {
        let f = classify_failure("WARNING: x\nERROR: Unsupported URL: https://example.com/\n");
        assert!(f.permanent);
        assert_eq!(f.reason, "Unsupported URL: https://example.com/");
        assert!(!classify_failure("").permanent);
    }
}
