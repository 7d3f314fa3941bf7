//! Typed yt-dlp invocations. Every variable token comes from a validated type; the
//! URL always follows `--`, so it can never be read as an option.

use std::path::{Path, PathBuf};

use crate::{requests::DownloadSpec, validate::SourceUrl};

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
        if let Some(format) = &self.spec.format_id {
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
        }
        .to_args();
        assert!(!args.iter().any(|a| a.starts_with("--format")));
        assert!(args.iter().any(|a| a == "--write-subs"));
        assert!(args.iter().any(|a| a == "--sub-langs=en,zh-CN"));
        assert!(has_pair(&args, "--print", "after_move:MPSUBS %(requested_subtitles)j"));
    }
}
