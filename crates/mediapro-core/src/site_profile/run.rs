//! A profile applied to one yt-dlp run: the private copy of its cookies (yt-dlp
//! reads the file and writes it back, so each run gets its own, readable only by
//! the service, removed when the run is over whatever its outcome) and the
//! `check_url` health check.

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use super::SiteProfile;
use crate::{
    analyze::{self, Page},
    process::ythost::YtdlpRunner,
    store::{StoreError, TaskStore},
    ytdlp::SiteArgs,
};

/// The file name of the private copy in a task's folder.
pub const COOKIES_FILE: &str = ".site-cookies.txt";

/// A private copy of a profile's cookies (mode 0600), removed when dropped.
#[derive(Debug)]
pub struct PrivateCookies {
    path: PathBuf,
}

impl PrivateCookies {
    /// Writes `text` to `dir/.site-cookies.txt` (the folder is created if needed).
    pub async fn write(dir: &Path, text: &str) -> io::Result<Self> {
        use tokio::io::AsyncWriteExt as _;
        tokio::fs::create_dir_all(dir).await?;
        let path = dir.join(COOKIES_FILE);
        let _ = tokio::fs::remove_file(&path).await;
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options.open(&path).await?;
        let copy = Self { path };
        file.write_all(text.as_bytes()).await?;
        file.flush().await?;
        Ok(copy)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateCookies {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Analyzes the profile's `check_url` with the profile applied (its cookies as a
/// private copy under `scratch`, which is removed afterwards) through `proxy`
/// (the egress guard's, chained to the profile's upstream proxy). `Err` says why
/// the site did not answer with media; a profile without `check_url` is `Ok`.
pub async fn check(
    ytdlp: &YtdlpRunner,
    profile: &SiteProfile,
    cookies: Option<&str>,
    scratch: &Path,
    proxy: &str,
    timeout: Duration,
) -> Result<(), String> {
    let Some(url) = &profile.check_url else { return Ok(()) };
    let result = async {
        let copy = match cookies {
            Some(text) => Some(
                PrivateCookies::write(scratch, text)
                    .await
                    .map_err(|e| format!("cannot write the cookies copy: {e}"))?,
            ),
            None => None,
        };
        let site = SiteArgs::new(profile, copy.as_ref().map(PrivateCookies::path));
        let page = Page { offset: 0, size: 1, max_items: 1 };
        analyze::analyze_page(ytdlp, url, page, timeout, Some(proxy), Some(&site))
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
    .await;
    let _ = tokio::fs::remove_dir_all(scratch).await;
    result
}

/// [`check`] with the profile's stored cookies, and its result recorded on the
/// profile (`healthy`, `checked_at`, `check_error`). `refusal` is asked after the
/// run: the egress guard's first refusal, which then is the reason. The error
/// (`None` = healthy).
pub async fn check_and_record(
    store: &TaskStore,
    ytdlp: &YtdlpRunner,
    profile: &SiteProfile,
    scratch: &Path,
    proxy: &str,
    refusal: impl FnOnce() -> Option<String>,
    timeout: Duration,
) -> Result<Option<String>, StoreError> {
    let cookies = store.site_cookies(&profile.name).await?;
    let result = check(ytdlp, profile, cookies.as_deref(), scratch, proxy, timeout).await;
    let error = match (refusal(), result) {
        (Some(reason), _) => Some(reason),
        (None, Err(e)) => Some(e),
        (None, Ok(())) => None,
    };
    store.record_site_check(&profile.name, error.as_deref()).await?;
    Ok(error)
}

/// Whether a profile with `check_url` is due for its scheduled check: never
/// checked, or last checked `every` ago or longer.
pub fn check_due(profile: &SiteProfile, every: Duration, now: time::OffsetDateTime) -> bool {
    if profile.check_url.is_none() {
        return false;
    }
    let last = profile
        .checked_at
        .as_deref()
        .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok());
    last.is_none_or(|t| now - t >= every)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(check_url: Option<&str>, checked_at: Option<&str>) -> SiteProfile {
        serde_json::from_value(serde_json::json!({
            "name": "p", "domains": ["example.com"], "max_concurrent": null, "min_interval_seconds": null,
            "sleep_requests_seconds": null, "sleep_interval_seconds": null, "user_agent": null, "headers": {},
            "format_id": null, "upstream_proxy": null, "check_url": check_url, "cookies": null,
            "healthy": null, "checked_at": checked_at, "check_error": null,
            "created_at": "2026-12-02T10:00:00Z", "updated_at": "2026-12-02T10:00:00Z"
        }))
        .expect("profile")
    }

    #[test]
    fn a_check_is_due_when_never_run_or_an_interval_ago() {
        let now = time::OffsetDateTime::parse(
            "2026-12-02T10:15:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .expect("now");
        let every = Duration::from_secs(900);
        let url = Some("https://example.com/check");
        assert!(check_due(&profile(url, None), every, now), "never checked");
        assert!(check_due(&profile(url, Some("2026-12-02T10:00:00Z")), every, now), "15 min ago");
        assert!(!check_due(&profile(url, Some("2026-12-02T10:05:00Z")), every, now), "10 min ago");
        assert!(!check_due(&profile(None, None), every, now), "nothing to check");
    }

    #[tokio::test]
    async fn the_private_copy_is_0600_and_gone_once_dropped() {
        let dir = std::env::temp_dir().join(format!("mediapro-cookies-{}", uuid::Uuid::new_v4().simple()));
        let copy = PrivateCookies::write(&dir, "# Netscape HTTP Cookie File\n").await.expect("write");
        let path = copy.path().to_path_buf();
        assert_eq!(path, dir.join(COOKIES_FILE));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        drop(copy);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
