//! Turning yt-dlp's stderr into a one-line reason and a retry decision. The raw
//! stderr never reaches clients: it can carry server paths and request headers.

/// Why a yt-dlp run failed, for the task's `error` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub class: FailureClass,
}

/// What a failure says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Retrying cannot help (bad URL, missing video, 4xx, limits).
    Permanent,
    /// Worth another attempt (network trouble, 5xx).
    Transient,
    /// The site refused because it is asked too often (HTTP 429, a 403 that
    /// says "rate limit"): worth another attempt, after the site's back-off
    /// (`crates/queue/src/site_gate.rs`).
    Throttled,
}

impl Failure {
    /// True when retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        self.class == FailureClass::Permanent
    }
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

/// Markers of a site throttling the client. Checked before [`PERMANENT`]: a 403
/// whose reason says "rate limit" is throttling, a bare 403 is not.
const THROTTLED: &[&str] = &["HTTP Error 429", "Too Many Requests", "rate limit", "rate-limit", "ratelimit"];

/// Classifies a failed run from the tail of its stderr.
pub fn classify_failure(stderr_tail: &str) -> Failure {
    let error_line = stderr_tail
        .lines()
        .rev()
        .find(|l| l.starts_with("ERROR:"))
        .or_else(|| stderr_tail.lines().rev().find(|l| !l.trim().is_empty()));
    let Some(line) = error_line else {
        return Failure {
            reason: "yt-dlp failed without an error message".into(),
            class: FailureClass::Transient,
        };
    };
    let lower = line.to_ascii_lowercase();
    let class = if THROTTLED.iter().any(|m| lower.contains(&m.to_ascii_lowercase())) {
        FailureClass::Throttled
    } else if PERMANENT.iter().any(|m| line.contains(m)) {
        FailureClass::Permanent
    } else {
        FailureClass::Transient
    };
    Failure { reason: concise(line), class }
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
        assert_eq!(f.class, FailureClass::Permanent);
        assert_eq!(f.reason, "Unable to download webpage: HTTP Error 404: File not found");
    }

    #[test]
    fn captured_connection_refused_is_transient() {
        let f = classify_failure(include_str!(
            "../../tests/fixtures/ytdlp-2026.10.26-connection-refused.stderr.txt"
        ));
        assert_eq!(f.class, FailureClass::Transient);
        assert!(f.reason.starts_with("Unable to download webpage: HTTPConnection"), "{}", f.reason);
        assert!(!f.reason.contains('\n'));
    }

    #[test]
    fn unsupported_url_is_permanent() {
        let f = classify_failure("WARNING: x\nERROR: Unsupported URL: https://example.com/\n");
        assert!(f.is_permanent());
        assert_eq!(f.reason, "Unsupported URL: https://example.com/");
        assert_eq!(classify_failure("").class, FailureClass::Transient);
    }

    /// Captured from yt-dlp against a local server answering 429 to the page,
    /// 429 to the media file (after a 200 page), and 403 "Rate Limit Exceeded".
    #[test]
    fn captured_429_and_rate_limit_403_are_throttling() {
        let page = classify_failure(include_str!(
            "../../tests/fixtures/ytdlp-2026.10.26-http-429-webpage.stderr.txt"
        ));
        assert_eq!(page.class, FailureClass::Throttled);
        assert_eq!(page.reason, "Unable to download webpage: HTTP Error 429: Too Many Requests");
        let data = classify_failure(include_str!(
            "../../tests/fixtures/ytdlp-2026.10.26-http-429-video-data.stderr.txt"
        ));
        assert_eq!(data.class, FailureClass::Throttled);
        assert_eq!(data.reason, "unable to download video data: HTTP Error 429: Too Many Requests");
        let forbidden = classify_failure(include_str!(
            "../../tests/fixtures/ytdlp-2026.10.26-http-403-rate-limit.stderr.txt"
        ));
        assert_eq!(forbidden.class, FailureClass::Throttled);
        assert!(!forbidden.is_permanent());
        // A plain 403 stays permanent: only the rate-limit wording makes it throttling.
        let plain = "ERROR: [generic] x: Unable to download webpage: HTTP Error 403: Forbidden (caused by <HTTPError 403: Forbidden>)";
        assert_eq!(classify_failure(plain).class, FailureClass::Permanent);
        let youtube =
            "ERROR: [youtube] abc: The current session has been rate-limited by YouTube for up to an hour";
        assert_eq!(classify_failure(youtube).class, FailureClass::Throttled);
    }
}
