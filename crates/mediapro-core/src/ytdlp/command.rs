//! Typed yt-dlp invocations. Every variable token comes from a validated type; the
//! URL always follows `--`, so it can never be read as an option.

use std::path::{Path, PathBuf};

use crate::{
    requests::DownloadSpec,
    site_profile::SiteProfile,
    validate::{FormatSelector, SourceUrl},
};

/// Machine-readable progress: one line per update, fields separated by spaces.
/// `info.format_id` is `NA` for subtitle files, which lets progress ignore them.
pub(super) const PROGRESS_PREFIX: &str = "MPPROG ";
pub(super) const FILE_PREFIX: &str = "MPFILE ";
pub(super) const SUBS_PREFIX: &str = "MPSUBS ";
pub(super) const POSTPROCESS_PREFIX: &str = "MPPOST ";
/// `<extractor key> <media id>`: the download archive's key of what was downloaded.
pub(super) const ARCHIVE_PREFIX: &str = "MPARCH ";
const PROGRESS_TEMPLATE: &str = "download:MPPROG %(progress.status)s %(progress.downloaded_bytes)s %(progress.total_bytes)s %(progress.total_bytes_estimate)s %(info.format_id)s %(progress.speed)s %(progress.eta)s";
/// Post-processing (merging formats, fixing containers) as its own phase.
const POSTPROCESS_TEMPLATE: &str = "postprocess:MPPOST %(progress.status)s %(progress.postprocessor)s";

/// Flags on every invocation: no config files, plugins, cache, batch files or
/// `--exec` hooks can change what runs; unqualified input is never a search; and
/// every connection goes through the egress guard's proxy when one is given
/// (yt-dlp hands it on to the ffmpeg it starts as `http_proxy`).
pub(super) fn hardening(args: &mut Vec<String>, socket_timeout_secs: u32, proxy: Option<&str>) {
    if let Some(proxy) = proxy {
        args.push("--proxy".into());
        args.push(proxy.into());
    }
    args.extend(
        [
            "--ignore-config",
            "--no-plugin-dirs",
            "--no-exec",
            "--no-cache-dir",
            "--no-batch-file",
            "--default-search",
            "error",
            "--no-playlist",
            "--no-wait-for-video",
            "--socket-timeout",
        ]
        .map(String::from),
    );
    args.push(socket_timeout_secs.to_string());
}

/// What a site profile (`crates/mediapro-core/src/site_profile.rs`) adds to a run:
/// the job's private copy of the cookies, user agent, headers, yt-dlp's request
/// pacing, and (downloads only) the default format. The upstream proxy is not
/// here: yt-dlp always talks to the egress guard's proxy, which chains to it.
#[derive(Debug, Clone, Default)]
pub struct SiteArgs<'a> {
    /// The private copy in the task's (or check's) folder; yt-dlp writes it back.
    pub cookies_file: Option<&'a Path>,
    pub user_agent: Option<&'a str>,
    pub headers: Vec<(&'a str, &'a str)>,
    pub sleep_requests_seconds: Option<f64>,
    pub sleep_interval_seconds: Option<f64>,
    /// Used by a download that names no format.
    pub format_id: Option<&'a FormatSelector>,
}

impl<'a> SiteArgs<'a> {
    pub fn new(profile: &'a SiteProfile, cookies_file: Option<&'a Path>) -> Self {
        SiteArgs {
            cookies_file,
            user_agent: profile.user_agent.as_deref(),
            headers: profile.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            sleep_requests_seconds: profile.sleep_requests_seconds,
            sleep_interval_seconds: profile.sleep_interval_seconds,
            format_id: profile.format_id.as_ref(),
        }
    }

    /// The options, before the `--` that ends them.
    fn push(&self, args: &mut Vec<String>) {
        if let Some(path) = self.cookies_file {
            args.push("--cookies".into());
            args.push(path.display().to_string());
        }
        if let Some(ua) = self.user_agent {
            args.push("--user-agent".into());
            args.push(ua.into());
        }
        for (name, value) in &self.headers {
            args.push("--add-headers".into());
            args.push(format!("{name}:{value}"));
        }
        if let Some(s) = self.sleep_requests_seconds {
            args.push("--sleep-requests".into());
            args.push(s.to_string());
        }
        if let Some(s) = self.sleep_interval_seconds {
            args.push("--sleep-interval".into());
            args.push(s.to_string());
        }
    }
}

/// The site's options, if any, into `args`.
pub(super) fn site(args: &mut Vec<String>, site: Option<&SiteArgs<'_>>) {
    if let Some(site) = site {
        site.push(args);
    }
}

/// `yt-dlp -J` for `POST /api/analyze`.
#[derive(Debug, Clone)]
pub struct AnalyzeArgs<'a> {
    pub url: &'a SourceUrl,
    pub socket_timeout_secs: u32,
    /// `http://127.0.0.1:PORT` of the egress guard's proxy.
    pub proxy: Option<&'a str>,
}

impl AnalyzeArgs<'_> {
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::with_capacity(24);
        hardening(&mut args, self.socket_timeout_secs, self.proxy);
        args.extend(
            [
                "--dump-single-json",
                "--skip-download",
                "--flat-playlist",
                "--playlist-items",
                "1:50",
                "--no-warnings",
            ]
            .map(String::from),
        );
        args.push("--".into());
        args.push(self.url.as_str().into());
        args
    }
}

/// A download into one task's folder.
#[derive(Debug, Clone)]
pub struct DownloadArgs<'a> {
    pub spec: &'a DownloadSpec,
    /// Absolute path of `downloads/<task_id>/`; yt-dlp writes nowhere else.
    pub output_dir: &'a Path,
    pub max_filesize_bytes: u64,
    pub socket_timeout_secs: u32,
    /// `http://127.0.0.1:PORT` of the egress guard's proxy.
    pub proxy: Option<&'a str>,
    /// The site profile's options, when the URL's host has one.
    pub site: Option<&'a SiteArgs<'a>>,
}

impl DownloadArgs<'_> {
    pub fn temp_dir(&self) -> PathBuf {
        self.output_dir.join(".part")
    }

    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::with_capacity(48);
        hardening(&mut args, self.socket_timeout_secs, self.proxy);
        let home = format!("home:{}", self.output_dir.display());
        let temp = format!("temp:{}", self.temp_dir().display());
        args.extend(
            [
                "--retries",
                "3",
                "--fragment-retries",
                "3",
                "--playlist-items",
                "1",
                "--restrict-filenames",
                "--trim-filenames",
                "120",
                "--no-mtime",
                "--no-part",
                "-P",
                &home,
                "-P",
                &temp,
                // Relative template under -P home; field values cannot contain '/'.
                "-o",
                "%(title).100B.%(ext)s",
                "--max-filesize",
                &self.max_filesize_bytes.to_string(),
                "--no-simulate",
                "--print",
                "after_move:MPFILE %(filepath)s",
                "--print",
                "after_move:MPARCH %(extractor_key)s %(id)s",
                "--progress",
                "--newline",
                "--progress-template",
                PROGRESS_TEMPLATE,
                "--progress-template",
                POSTPROCESS_TEMPLATE,
            ]
            .map(String::from),
        );
        site(&mut args, self.site);
        let format = self.spec.format_id.as_ref().or(self.site.and_then(|s| s.format_id));
        if let Some(format) = format {
            args.push(format!("--format={format}"));
        }
        if self.spec.include_subtitles && !self.spec.subtitle_langs.is_empty() {
            args.push("--print".into());
            args.push("after_move:MPSUBS %(requested_subtitles)j".into());
            args.push("--write-subs".into());
            args.push(format!("--sub-langs={}", self.spec.subtitle_langs.joined()));
            args.push("--sub-format=srt/vtt/best".into());
        }
        args.push("--".into());
        args.push(self.spec.url.as_str().into());
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{FormatSelector, SubtitleLangs};

    fn spec(format: Option<&str>, subs: bool) -> DownloadSpec {
        DownloadSpec {
            url: SourceUrl::parse("https://example.com/watch?v=1").expect("url"),
            format_id: format.map(|f| FormatSelector::parse(f).expect("format")),
            include_subtitles: subs,
            subtitle_langs: SubtitleLangs::parse(&["en".into(), "zh-CN".into()]).expect("langs"),
            process: None,
            skip_archived: false,
            playlist_index: None,
        }
    }

    fn has_pair(args: &[String], a: &str, b: &str) -> bool {
        args.windows(2).any(|w| w[0] == a && w[1] == b)
    }

    #[test]
    fn analyze_is_hardened_and_ends_with_separator_and_url() {
        let url = SourceUrl::parse("https://example.com/v").expect("url");
        let args = AnalyzeArgs { url: &url, socket_timeout_secs: 15, proxy: Some("http://127.0.0.1:4000") }
            .to_args();
        assert!(has_pair(&args, "--proxy", "http://127.0.0.1:4000"));
        for flag in [
            "--ignore-config",
            "--no-plugin-dirs",
            "--no-exec",
            "--no-playlist",
            "--dump-single-json",
            "--skip-download",
        ] {
            assert!(args.iter().any(|a| a == flag), "{flag} missing");
        }
        assert!(has_pair(&args, "--default-search", "error"));
        assert!(has_pair(&args, "--socket-timeout", "15"));
        assert_eq!(args[args.len() - 2..], ["--".to_owned(), "https://example.com/v".to_owned()]);
    }

    #[test]
    fn download_writes_only_into_the_task_folder() {
        let s = spec(Some("137+140"), false);
        let dir = Path::new("/srv/media/downloads/abc");
        let args = DownloadArgs {
            spec: &s,
            output_dir: dir,
            max_filesize_bytes: 1000,
            socket_timeout_secs: 20,
            proxy: None,
            site: None,
        }
        .to_args();
        assert!(!args.iter().any(|a| a == "--proxy"));
        assert!(has_pair(&args, "-P", "home:/srv/media/downloads/abc"));
        assert!(has_pair(&args, "-P", "temp:/srv/media/downloads/abc/.part"));
        assert!(has_pair(&args, "-o", "%(title).100B.%(ext)s"));
        assert!(has_pair(&args, "--max-filesize", "1000"));
        assert!(has_pair(&args, "--print", "after_move:MPFILE %(filepath)s"));
        assert!(has_pair(&args, "--print", "after_move:MPARCH %(extractor_key)s %(id)s"));
        assert!(has_pair(&args, "--socket-timeout", "20"));
        for flag in [
            "--ignore-config",
            "--no-plugin-dirs",
            "--no-exec",
            "--no-playlist",
            "--newline",
            "--restrict-filenames",
        ] {
            assert!(args.iter().any(|a| a == flag), "{flag} missing");
        }
        assert!(args.iter().any(|a| a.starts_with("download:MPPROG ")));
        assert!(args.iter().any(|a| a == "--format=137+140"));
        assert!(!args.iter().any(|a| a.starts_with("--write-subs")));
        assert_eq!(args[args.len() - 2..], ["--".to_owned(), "https://example.com/watch?v=1".to_owned()]);
    }

    #[test]
    fn default_format_is_left_to_yt_dlp_and_subtitles_are_opt_in() {
        let s = spec(None, true);
        let args = DownloadArgs {
            spec: &s,
            output_dir: Path::new("/d"),
            max_filesize_bytes: 1,
            socket_timeout_secs: 20,
            proxy: None,
            site: None,
        }
        .to_args();
        assert!(!args.iter().any(|a| a.starts_with("--format")));
        assert!(args.iter().any(|a| a == "--write-subs"));
        assert!(args.iter().any(|a| a == "--sub-langs=en,zh-CN"));
        assert!(has_pair(&args, "--print", "after_move:MPSUBS %(requested_subtitles)j"));
    }

    #[test]
    fn every_site_profile_option_becomes_its_yt_dlp_flag_before_the_separator() {
        let body: crate::site_profile::SiteProfileBody = serde_json::from_value(serde_json::json!({
            "domains": ["example.com"],
            "user_agent": "Mozilla/5.0 (X11; Linux) MediaPro",
            "headers": {"Referer": "https://example.com/a:b", "X-Token": "t 1"},
            "format_id": "bv*[height<=480]+ba/b",
            "sleep_requests_seconds": 0.5,
            "sleep_interval_seconds": 2.0,
            "upstream_proxy": "http://127.0.0.1:3128"
        }))
        .expect("body");
        let open =
            crate::validate::EgressPolicy { allow_private_networks: true, allowed_networks: Vec::new() };
        let config = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(body.validate(&open))
            .expect("valid");
        let profile = SiteProfile {
            name: "ex".into(),
            domains: config.domains,
            max_concurrent: None,
            min_interval_seconds: None,
            sleep_requests_seconds: config.sleep_requests_seconds,
            sleep_interval_seconds: config.sleep_interval_seconds,
            user_agent: config.user_agent,
            headers: config.headers,
            format_id: config.format_id,
            upstream_proxy: config.upstream_proxy,
            check_url: None,
            cookies: None,
            healthy: None,
            checked_at: None,
            check_error: None,
            created_at: String::new(),
            updated_at: String::new(),
        };
        let cookies = Path::new("/srv/media/downloads/abc/.site-cookies.txt");
        let site = SiteArgs::new(&profile, Some(cookies));
        let s = spec(None, false);
        let dl = |site| {
            DownloadArgs {
                spec: &s,
                output_dir: Path::new("/srv/media/downloads/abc"),
                max_filesize_bytes: 1,
                socket_timeout_secs: 20,
                proxy: Some("http://127.0.0.1:4000"),
                site,
            }
            .to_args()
        };
        let args = dl(Some(&site));
        let sep = args.iter().position(|a| a == "--").expect("separator");
        let before = |a: &str, b: &str| args[..sep].windows(2).any(|w| w[0] == a && w[1] == b);
        assert!(before("--cookies", "/srv/media/downloads/abc/.site-cookies.txt"));
        assert!(before("--user-agent", "Mozilla/5.0 (X11; Linux) MediaPro"));
        assert!(before("--add-headers", "Referer:https://example.com/a:b"));
        assert!(before("--add-headers", "X-Token:t 1"));
        assert!(before("--sleep-requests", "0.5"));
        assert!(before("--sleep-interval", "2"));
        assert!(
            args[..sep].iter().any(|a| a == "--format=bv*[height<=480]+ba/b"),
            "the profile's default format"
        );
        // yt-dlp talks to the egress guard only; the upstream proxy is the guard's business.
        assert!(before("--proxy", "http://127.0.0.1:4000"));
        assert!(!args.iter().any(|a| a.contains("3128")), "{args:?}");
        assert_eq!(args.iter().filter(|a| *a == "--proxy").count(), 1);
        // A format the request names wins over the profile's.
        let named = spec(Some("18"), false);
        let args = DownloadArgs {
            spec: &named,
            output_dir: Path::new("/d"),
            max_filesize_bytes: 1,
            socket_timeout_secs: 20,
            proxy: None,
            site: Some(&site),
        }
        .to_args();
        assert!(args.iter().any(|a| a == "--format=18"));
        assert!(!args.iter().any(|a| a.starts_with("--format=bv")));
        // Without a profile none of it is there.
        let plain = dl(None);
        for flag in ["--cookies", "--user-agent", "--add-headers", "--sleep-requests", "--sleep-interval"] {
            assert!(!plain.iter().any(|a| a == flag), "{flag}");
        }
        // Listings (analyze, collections, checks) and the archive key get the same options, no format.
        let url = SourceUrl::parse("https://www.example.com/v").expect("url");
        let list = crate::ytdlp::ListArgs {
            url: &url,
            items: "1:5",
            socket_timeout_secs: 9,
            proxy: None,
            site: Some(&site),
        }
        .to_args();
        let key = crate::ytdlp::ArchiveKeyArgs {
            url: &url,
            socket_timeout_secs: 9,
            proxy: None,
            site: Some(&site),
        }
        .to_args();
        for args in [list, key] {
            let sep = args.iter().position(|a| a == "--").expect("separator");
            assert!(has_pair(&args[..sep], "--cookies", "/srv/media/downloads/abc/.site-cookies.txt"));
            assert!(has_pair(&args[..sep], "--user-agent", "Mozilla/5.0 (X11; Linux) MediaPro"));
            assert!(has_pair(&args[..sep], "--sleep-requests", "0.5"));
            assert!(!args.iter().any(|a| a.starts_with("--format")));
            assert_eq!(args[args.len() - 1], "https://www.example.com/v");
        }
    }
}
