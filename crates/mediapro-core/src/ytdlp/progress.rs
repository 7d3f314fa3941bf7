//! Reading yt-dlp's stdout during a download: progress lines from our
//! `--progress-template`, and the final paths from our `--print` templates.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    command::{ARCHIVE_PREFIX, FILE_PREFIX, POSTPROCESS_PREFIX, PROGRESS_PREFIX, SUBS_PREFIX},
    lenient::{Loose, Object},
};

/// One meaningful stdout line.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputLine {
    Progress {
        finished: bool,
        downloaded: u64,
        /// Exact total if known, else yt-dlp's estimate.
        total: Option<u64>,
        /// `None` for subtitle and thumbnail files.
        format_id: Option<String>,
        /// Bytes per second, when yt-dlp knows it.
        speed: Option<f64>,
        /// Seconds left, when yt-dlp knows it.
        eta: Option<u64>,
    },
    /// A post-processor (e.g. `Merger`, `FixupM3u8`) started or finished.
    PostProcess { postprocessor: String, finished: bool },
    /// The final path of the media file (after any merge/move).
    File(String),
    /// Subtitle files that were written: language → path yt-dlp reported.
    Subtitles(BTreeMap<String, String>),
    /// The download archive's key of the downloaded item: extractor key (lower
    /// case, as yt-dlp's `--download-archive` writes it) and media id.
    Archived { extractor: String, id: String },
}

/// One value of the `requested_subtitles` map our `--print` template writes.
#[derive(Deserialize)]
struct WrittenSubtitle {
    #[serde(default)]
    filepath: Loose<String>,
}

fn field(s: Option<&str>) -> Option<&str> {
    s.filter(|v| *v != "NA" && *v != "None")
}

fn number(s: Option<&str>) -> Option<u64> {
    // yt-dlp prints some byte counts as floats ("1024.0").
    field(s).and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite() && *v >= 0.0).map(|v| v as u64)
}

pub fn parse_output_line(line: &str) -> Option<OutputLine> {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(rest) = line.strip_prefix(PROGRESS_PREFIX) {
        let mut parts = rest.split(' ');
        let status = parts.next()?;
        let downloaded = number(parts.next()).unwrap_or(0);
        let total = number(parts.next());
        let estimate = number(parts.next());
        let format_id = field(parts.next()).map(str::to_owned);
        let speed =
            field(parts.next()).and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite() && *v >= 0.0);
        let eta = number(parts.next());
        return Some(OutputLine::Progress {
            finished: status == "finished",
            downloaded,
            total: total.or(estimate).filter(|t| *t > 0),
            format_id,
            speed,
            eta,
        });
    }
    if let Some(rest) = line.strip_prefix(POSTPROCESS_PREFIX) {
        let (status, postprocessor) = rest.split_once(' ')?;
        return Some(OutputLine::PostProcess {
            postprocessor: postprocessor.trim().to_owned(),
            finished: status == "finished",
        });
    }
    if let Some(path) = line.strip_prefix(FILE_PREFIX) {
        return (!path.is_empty()).then(|| OutputLine::File(path.to_owned()));
    }
    if let Some(rest) = line.strip_prefix(ARCHIVE_PREFIX) {
        let (extractor, id) = crate::store::parse_archive_line(rest)?;
        return (extractor != "na" && id != "NA").then_some(OutputLine::Archived { extractor, id });
    }
    if let Some(json) = line.strip_prefix(SUBS_PREFIX) {
        let written: BTreeMap<String, Loose<Object<WrittenSubtitle>>> = serde_json::from_str(json).ok()?;
        let subs = written
            .into_iter()
            .filter_map(|(lang, info)| Some((lang, info.get()?.0.filepath.get()?)))
            .collect();
        return Some(OutputLine::Subtitles(subs));
    }
    None
}

/// Turns progress lines into one percentage that never goes backwards and stays
/// below 100 until the task is actually complete (a merge or a second format may
/// still follow the first file).
#[derive(Debug, Default)]
pub struct ProgressTracker {
    percent: f64,
}

pub const MAX_RUNNING_PERCENT: f64 = 99.0;

impl ProgressTracker {
    /// Feeds one parsed line; returns the new percentage when it moved.
    pub fn update(&mut self, line: &OutputLine) -> Option<f64> {
        let OutputLine::Progress { downloaded, total: Some(total), format_id: Some(_), .. } = line else {
            return None;
        };
        let pct = (*downloaded as f64 / *total as f64 * 100.0).clamp(0.0, MAX_RUNNING_PERCENT);
        if pct > self.percent {
            self.percent = pct;
            Some(pct)
        } else {
            None
        }
    }

    pub fn percent(&self) -> f64 {
        self.percent
    }
}

/// What a finished download printed about its files.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DownloadOutput {
    pub media_file: Option<String>,
    pub subtitle_files: BTreeMap<String, String>,
    /// `(extractor, id)` for the download archive.
    pub archive_key: Option<(String, String)>,
}

impl DownloadOutput {
    pub fn record(&mut self, line: &OutputLine) {
        match line {
            OutputLine::File(path) => self.media_file = Some(path.clone()),
            OutputLine::Subtitles(subs) => self.subtitle_files.extend(subs.clone()),
            OutputLine::Archived { extractor, id } => {
                self.archive_key = Some((extractor.clone(), id.clone()))
            }
            OutputLine::Progress { .. } | OutputLine::PostProcess { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURED: &str =
        include_str!("../../tests/fixtures/ytdlp-2026.10.26-download-with-subs.stdout.txt");

    #[test]
    fn captured_download_output_gives_rising_progress_and_paths() {
        let mut tracker = ProgressTracker::default();
        let mut output = DownloadOutput::default();
        let mut seen = Vec::new();
        for line in CAPTURED.lines() {
            if let Some(parsed) = parse_output_line(line) {
                if let Some(p) = tracker.update(&parsed) {
                    seen.push(p);
                }
                output.record(&parsed);
            }
        }
        // The subtitle file (format NA) is ignored; the video rises to the cap.
        assert!(seen.len() >= 5, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        assert!(seen[0] < 1.0);
        assert_eq!(tracker.percent(), MAX_RUNNING_PERCENT);
        assert_eq!(output.media_file.as_deref(), Some("/tmp/exp/out/t1/Test_Page_1.mp4"));
        assert_eq!(
            output.subtitle_files.get("en").map(String::as_str),
            Some("/tmp/exp/out/t1/.tmp/Test_Page_1.en.vtt")
        );
    }

    #[test]
    fn unknown_totals_and_float_counts_are_handled() {
        let line = parse_output_line("MPPROG downloading 1024.0 NA 4096 137").expect("progress");
        assert_eq!(
            line,
            OutputLine::Progress {
                finished: false,
                downloaded: 1024,
                total: Some(4096),
                format_id: Some("137".into()),
                speed: None,
                eta: None,
            }
        );
        // The current template adds speed and ETA.
        let Some(OutputLine::Progress { speed, eta, .. }) =
            parse_output_line("MPPROG downloading 1024 4096 NA 137 2048.5 2")
        else {
            panic!("progress")
        };
        assert_eq!((speed, eta), (Some(2048.5), Some(2)));
        assert_eq!(
            parse_output_line("MPPOST started Merger"),
            Some(OutputLine::PostProcess { postprocessor: "Merger".into(), finished: false })
        );
        let line = parse_output_line("MPPROG downloading 10 NA NA 137").expect("progress");
        assert_eq!(ProgressTracker::default().update(&line), None);
        assert_eq!(parse_output_line("[download] 10% of 3MiB"), None);
        assert_eq!(parse_output_line("MPFILE "), None);
    }

    #[test]
    fn subtitle_entries_without_a_path_are_skipped() {
        let line = r#"MPSUBS {"en":{"filepath":"/o/a.en.vtt","ext":"vtt"},"fr":{"filepath":5},"de":null,"es":["/x"]}"#;
        let Some(OutputLine::Subtitles(subs)) = parse_output_line(line) else { panic!("{line}") };
        assert_eq!(subs.into_iter().collect::<Vec<_>>(), [("en".to_owned(), "/o/a.en.vtt".to_owned())]);
        assert_eq!(parse_output_line("MPSUBS null"), None);
        assert_eq!(parse_output_line("MPSUBS NA"), None);
    }

    #[test]
    fn the_archive_key_is_read_as_ytdlp_writes_it() {
        // As yt-dlp 2026.10.26 printed it for a direct mp4 (generic extractor).
        let mut output = DownloadOutput::default();
        let line = parse_output_line("MPARCH Generic v2").expect("parsed");
        assert_eq!(line, OutputLine::Archived { extractor: "generic".into(), id: "v2".into() });
        output.record(&line);
        assert_eq!(output.archive_key, Some(("generic".into(), "v2".into())));
        assert_eq!(parse_output_line("MPARCH NA NA"), None);
        assert_eq!(parse_output_line("MPARCH Youtube"), None);
        assert_eq!(parse_output_line("MPARCH Youtube a b"), None);
    }
}
