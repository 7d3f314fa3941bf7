//! Netscape cookies files (the `cookies.txt` format curl, browsers' export add-ons
//! and yt-dlp's `--cookies` use), checked as yt-dlp's loader checks them
//! (`YoutubeDLCookieJar.load` over Python's `MozillaCookieJar`): the first line is
//! the `# Netscape HTTP Cookie File` (or `# HTTP Cookie File`) header; every other
//! line is blank, a comment, or 7 tab-separated fields (`#HttpOnly_` before the
//! domain marks an HTTP-only cookie): domain, include-subdomains flag, path,
//! secure flag, expiry (Unix seconds; empty or 0 = session), name, value.
//!
//! Only a [`CookieSummary`] ever leaves the service; the values stay in the store
//! and in each job's private copy.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::{Code, HasCode};

/// Largest cookies file accepted.
pub const MAX_COOKIES_BYTES: usize = 1024 * 1024;
const HTTPONLY_PREFIX: &str = "#HttpOnly_";

/// What a GET shows of an uploaded cookies file: never a name's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CookieSummary {
    /// Bytes of the uploaded file.
    pub size_bytes: u64,
    /// Cookies in it.
    pub cookie_count: u64,
    /// The cookies' domains (without a leading dot), sorted.
    pub domains: Vec<String>,
    /// The earliest expiry of a cookie that has one (RFC 3339); `null` when every
    /// cookie is a session cookie.
    #[schema(format = DateTime)]
    pub earliest_expiry: Option<String>,
    /// When the file was uploaded (RFC 3339).
    #[schema(format = DateTime)]
    pub uploaded_at: String,
}

/// Why an uploaded cookies file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    #[error("cookies: the file is empty")]
    Empty,
    #[error("cookies: the file is larger than {MAX_COOKIES_BYTES} bytes")]
    TooLarge,
    #[error("cookies: the file is not UTF-8 text")]
    NotText,
    #[error(
        "cookies: the first line must be '# Netscape HTTP Cookie File' (a Netscape cookies file, not JSON or a Cookie header)"
    )]
    NoHeader,
    #[error("cookies: line {line}: {why}")]
    Line { line: usize, why: String },
    #[error("cookies: the file has no cookie")]
    NoCookie,
}

impl HasCode for CookieError {
    fn code(&self) -> Code {
        match self {
            CookieError::TooLarge => Code::PayloadTooLarge,
            _ => Code::InvalidCookies,
        }
    }
}

/// Checks a cookies file and summarises it (`uploaded_at` = `now`, Unix seconds).
pub fn parse_cookies(bytes: &[u8], now: time::OffsetDateTime) -> Result<CookieSummary, CookieError> {
    if bytes.is_empty() {
        return Err(CookieError::Empty);
    }
    if bytes.len() > MAX_COOKIES_BYTES {
        return Err(CookieError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| CookieError::NotText)?;
    let mut lines = text.split('\n').enumerate();
    let header = lines.next().map(|(_, l)| l.trim_end_matches('\r')).unwrap_or_default();
    if !(header.starts_with("# Netscape HTTP Cookie File") || header.starts_with("# HTTP Cookie File")) {
        return Err(CookieError::NoHeader);
    }
    let mut count = 0u64;
    let mut domains = BTreeSet::new();
    let mut earliest: Option<u64> = None;
    for (i, raw) in lines {
        let line = raw.trim_end_matches('\r');
        let line = line.strip_prefix(HTTPONLY_PREFIX).unwrap_or(line);
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| CookieError::Line { line: i + 1, why };
        let fields: Vec<&str> = line.split('\t').collect();
        let [domain, subdomains, path, secure, expires, name, _value] = fields[..] else {
            return Err(bad(format!("expected 7 tab-separated fields, found {}", fields.len())));
        };
        let domain = domain.trim_start_matches('.').to_ascii_lowercase();
        if domain.is_empty() || domain.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the domain is empty or has spaces".into()));
        }
        for (what, flag) in [("include-subdomains", subdomains), ("secure", secure)] {
            if !matches!(flag, "TRUE" | "FALSE") {
                return Err(bad(format!("the {what} flag must be TRUE or FALSE")));
            }
        }
        if !path.starts_with('/') {
            return Err(bad("the path must start with '/'".into()));
        }
        if name.chars().any(char::is_control) {
            return Err(bad("the name has control characters".into()));
        }
        let expiry = if expires.is_empty() {
            0
        } else {
            // yt-dlp accepts `[0-9]+(\.[0-9]+)?`.
            let (whole, frac) = expires.split_once('.').unwrap_or((expires, "0"));
            let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
            if !digits(whole) || !digits(frac) {
                return Err(bad("the expiry must be Unix seconds".into()));
            }
            whole.parse::<u64>().map_err(|_| bad("the expiry is out of range".into()))?
        };
        if expiry > 0 {
            earliest = Some(earliest.map_or(expiry, |e| e.min(expiry)));
        }
        domains.insert(domain);
        count += 1;
    }
    if count == 0 {
        return Err(CookieError::NoCookie);
    }
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
    };
    Ok(CookieSummary {
        size_bytes: bytes.len() as u64,
        cookie_count: count,
        domains: domains.into_iter().collect(),
        earliest_expiry: earliest
            .and_then(|s| i64::try_from(s).ok())
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .map(rfc3339),
        uploaded_at: rfc3339(now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by curl 7.88 (`curl -c`) from a server setting three cookies, one of
    /// them HTTP-only and one a session cookie (`tests/fixtures/cookies/curl.txt`).
    const CURL: &str = include_str!("../../tests/fixtures/cookies/curl.txt");
    /// Written by yt-dlp (`--cookies`) after a run against the same server.
    const YTDLP: &str = include_str!("../../tests/fixtures/cookies/ytdlp.txt");

    fn now() -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(1_764_633_600).expect("time")
    }

    #[test]
    fn a_curl_cookie_jar_is_summarised_without_values() {
        let s = parse_cookies(CURL.as_bytes(), now()).expect("curl's jar");
        assert_eq!(s.cookie_count, 3);
        assert_eq!(s.domains, ["127.0.0.1"]);
        assert_eq!(s.size_bytes, CURL.len() as u64);
        assert_eq!(s.earliest_expiry.as_deref(), Some("2030-01-01T00:00:00Z"));
        let json = serde_json::to_string(&s).expect("json");
        assert!(!json.contains("s3cr3t-session-value"), "{json}");
    }

    #[test]
    fn a_jar_yt_dlp_wrote_back_loads_again() {
        let s = parse_cookies(YTDLP.as_bytes(), now()).expect("yt-dlp's jar");
        assert!(s.cookie_count >= 1);
        assert_eq!(s.domains, ["127.0.0.1"]);
    }

    #[test]
    fn what_is_not_a_netscape_file_is_refused() {
        let header = "# Netscape HTTP Cookie File\n";
        let cases: &[(&[u8], CookieError)] = &[
            (b"", CookieError::Empty),
            (b"session=abc", CookieError::NoHeader),
            (br#"[{"name": "a", "value": "b"}]"#, CookieError::NoHeader),
            (header.as_bytes(), CookieError::NoCookie),
            (b"# Netscape HTTP Cookie File\n\xff\xfe", CookieError::NotText),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse_cookies(bytes, now()).as_ref().err(), Some(want), "{bytes:?}");
        }
        for (line, why) in [
            ("example.com\tTRUE\t/\tFALSE\t0\ta", "7 tab-separated"),
            ("example.com\tyes\t/\tFALSE\t0\ta\tb", "TRUE or FALSE"),
            ("example.com\tTRUE\t/\tFALSE\tsoon\ta\tb", "Unix seconds"),
            ("example.com\tTRUE\tx\tFALSE\t0\ta\tb", "path"),
        ] {
            let err = parse_cookies(format!("{header}{line}\n").as_bytes(), now()).expect_err(line);
            assert!(
                matches!(&err, CookieError::Line { line: 2, why: w } if w.contains(why)),
                "{line}: {err}"
            );
            assert_eq!(err.code(), Code::InvalidCookies);
        }
        let big = vec![b'#'; MAX_COOKIES_BYTES + 1];
        assert_eq!(parse_cookies(&big, now()).err().map(|e| e.code()), Some(Code::PayloadTooLarge));
        // Session cookies only: no expiry; CRLF line ends and a `.domain` are fine.
        let s = parse_cookies(b"# HTTP Cookie File\r\n.Example.com\tTRUE\t/\tTRUE\t0\tsid\tv\r\n", now())
            .expect("session");
        assert_eq!((s.cookie_count, s.earliest_expiry, s.domains), (1, None, vec!["example.com".to_owned()]));
    }
}
