//! The ffmpeg invocation for a processing job, planned against the probed input.

use crate::Code;
use std::path::Path;

use super::{
    INPUT_FORMAT_WHITELIST, MAX_PIXELS,
    operations::{Container, Operations},
    probe::{MediaProbe, StreamKind},
};
use crate::validate::ValidationError;

/// Operations checked against the input, with what the output must look like.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessPlan {
    pub ops: Operations,
    pub container: Container,
    /// Seconds; `None` when the input does not state its duration.
    pub expected_duration: Option<f64>,
    pub expected_width: Option<u32>,
    pub expected_height: Option<u32>,
    /// Allowed difference on a side computed from the aspect ratio.
    pub size_slack: u32,
    pub output_has_video: bool,
    /// For a stream copy: the input's video codec, which the output must keep.
    pub copy_codec: Option<String>,
}

fn input_err(message: impl Into<String>) -> ValidationError {
    ValidationError::new("input_file", Code::UnsuitableInput, message)
}

/// The largest output frame (8K UHD), whichever side is scaled.
const MAX_WIDTH: u32 = 7680;
const MAX_HEIGHT: u32 = 4320;

impl ProcessPlan {
    pub fn new(ops: &Operations, input: &MediaProbe) -> Result<Self, ValidationError> {
        let video = input.first(StreamKind::Video);
        let has_audio = input.has(StreamKind::Audio);
        let output_has_video = !ops.audio_only && video.is_some();
        if ops.audio_only && !has_audio {
            return Err(input_err("has no audio stream to extract"));
        }
        if (ops.resize.is_some() || ops.fps.is_some() || ops.quality.is_some()) && video.is_none() {
            return Err(input_err("has no video stream; resize, fps and quality need one"));
        }
        if video.is_some_and(|v| v.width.unwrap_or(0) * v.height.unwrap_or(0) > MAX_PIXELS) {
            return Err(input_err("video is larger than 8K"));
        }
        let mut expected_duration = input.duration;
        if let Some(trim) = ops.trim {
            if let Some(total) = input.duration {
                if trim.start >= total {
                    return Err(ValidationError::new(
                        "operations.trim.start",
                        Code::InvalidOperation,
                        format!("{} s is past the end of the input ({total:.2} s)", trim.start),
                    ));
                }
                let rest = total - trim.start;
                // Longer than the whole input is a mistake (or `1e20`); running past
                // the end from a later start is cut at the end. A little slack:
                // containers round their durations.
                if let Some(d) = trim.duration.filter(|d| *d > total + 0.5) {
                    return Err(ValidationError::new(
                        "operations.trim.duration",
                        Code::InvalidOperation,
                        format!("{d} s is longer than the input ({total:.2} s)"),
                    ));
                }
                expected_duration = Some(trim.duration.map_or(rest, |d| d.min(rest)));
            } else {
                expected_duration = trim.duration;
            }
        }
        let (src_w, src_h) = video.map_or((None, None), |v| (v.width, v.height));
        let (mut expected_width, mut expected_height, mut size_slack) =
            (src_w.map(|w| w as u32), src_h.map(|h| h as u32), 0);
        if let Some(r) = ops.resize {
            let scaled = |given: u32, from: Option<u64>, to: Option<u64>| match (from, to) {
                (Some(f), Some(t)) if f > 0 => {
                    Some(((f64::from(given) * t as f64 / f as f64) / 2.0).round() as u32 * 2)
                }
                _ => None,
            };
            (expected_width, expected_height, size_slack) = match (r.width, r.height) {
                (Some(w), Some(h)) => (Some(w), Some(h), 0),
                (Some(w), None) => (Some(w), scaled(w, src_w, src_h), 2),
                (None, Some(h)) => (scaled(h, src_h, src_w), Some(h), 2),
                (None, None) => (expected_width, expected_height, 0),
            };
        }
        if !output_has_video {
            (expected_width, expected_height) = (None, None);
        }
        // The output is held to 8K too (one side scaled from a thin input can
        // ask ffmpeg for a 59962×4320 frame).
        if let (Some(w), Some(h)) = (expected_width, expected_height)
            && (w > MAX_WIDTH || h > MAX_HEIGHT)
        {
            return Err(ValidationError::new(
                "operations.resize",
                Code::InvalidOperation,
                format!("the output would be {w}x{h}, larger than {MAX_WIDTH}x{MAX_HEIGHT}"),
            ));
        }
        let container = ops.format.unwrap_or(if ops.audio_only {
            Container::M4a
        } else if ops.copy {
            Container::for_copy_of(&input.container)
        } else {
            Container::Mp4
        });
        if container.audio_only() && output_has_video {
            return Err(ValidationError::new(
                "operations.format",
                Code::InvalidOperation,
                format!("{} holds audio only; set audio_only or choose a video format", container.ext()),
            ));
        }
        Ok(ProcessPlan {
            ops: ops.clone(),
            container,
            expected_duration,
            expected_width,
            expected_height,
            size_slack,
            output_has_video,
            copy_codec: if ops.copy { video.and_then(|v| v.codec.clone()) } else { None },
        })
    }
}

/// One ffmpeg run: input → temporary output in the task's folder.
#[derive(Debug, Clone)]
pub struct ProcessArgs<'a> {
    pub input: &'a Path,
    pub output: &'a Path,
    pub plan: &'a ProcessPlan,
    /// `-fs`: ffmpeg stops writing past this size.
    pub max_output_bytes: u64,
    /// `-threads` for decoding, filtering and encoding; 0 = ffmpeg's choice.
    pub threads: u32,
}

impl ProcessArgs<'_> {
    pub fn to_args(&self) -> Vec<String> {
        let plan = self.plan;
        let ops = &plan.ops;
        let mut a: Vec<String> = Vec::with_capacity(64);
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_owned()));
        push(&["-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y"]);
        push(&["-protocol_whitelist", "file", "-format_whitelist", INPUT_FORMAT_WHITELIST]);
        push(&["-probesize", "10M", "-analyzeduration", "10M", "-max_pixels", &MAX_PIXELS.to_string()]);
        // Input options: seek before -i so a trim does not decode from the start.
        if let Some(trim) = ops.trim {
            if trim.start > 0.0 {
                push(&["-ss", &seconds(trim.start)]);
            }
            if let Some(d) = trim.duration {
                push(&["-t", &seconds(d)]);
            }
        }
        push(&["-i", &format!("file:{}", self.input.display())]);
        push(&["-threads", &self.threads.to_string(), "-filter_threads", &self.threads.max(1).to_string()]);
        if ops.audio_only {
            push(&["-map", "0:a:0", "-vn"]);
        } else {
            push(&["-map", "0:v:0?", "-map", "0:a:0?"]);
        }
        push(&["-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1"]);
        if ops.copy {
            push(&["-c", "copy", "-avoid_negative_ts", "make_zero"]);
        } else {
            let filters = video_filters(ops);
            if plan.output_has_video {
                if !filters.is_empty() {
                    push(&["-vf", &filters.join(",")]);
                }
                let crf = ops.quality.unwrap_or(23).to_string();
                match plan.container {
                    Container::Webm => push(&[
                        "-c:v",
                        "libvpx-vp9",
                        "-crf",
                        &crf,
                        "-b:v",
                        "0",
                        "-deadline",
                        "realtime",
                        "-cpu-used",
                        "8",
                        "-row-mt",
                        "1",
                        "-pix_fmt",
                        "yuv420p",
                    ]),
                    _ => {
                        push(&["-c:v", "libx264", "-preset", "veryfast", "-crf", &crf, "-pix_fmt", "yuv420p"])
                    }
                }
            }
            match plan.container {
                Container::Webm | Container::Opus => push(&["-c:a", "libopus", "-b:a", "128k"]),
                Container::Mp3 => push(&["-c:a", "libmp3lame", "-q:a", "2"]),
                _ => push(&["-c:a", "aac", "-b:a", "160k"]),
            }
        }
        if matches!(plan.container, Container::Mp4 | Container::Mov | Container::M4a) {
            push(&["-movflags", "+faststart"]);
        }
        push(&["-max_muxing_queue_size", "1024", "-fs", &self.max_output_bytes.to_string()]);
        push(&["-progress", "pipe:1", "-f", plan.container.muxer()]);
        push(&[&format!("file:{}", self.output.display())]);
        a
    }
}

fn video_filters(ops: &Operations) -> Vec<String> {
    let mut filters = Vec::new();
    if let Some(r) = ops.resize {
        // One side alone keeps the aspect ratio (-2: the even size that does).
        let side = |v: Option<u32>| v.map_or("-2".to_owned(), |n| n.to_string());
        filters.push(format!("scale={}:{}", side(r.width), side(r.height)));
        filters.push("setsar=1".to_owned());
    }
    if let Some(fps) = ops.fps {
        filters.push(format!("fps={fps}"));
    }
    filters
}

/// Seconds with millisecond precision, as ffmpeg's time syntax.
fn seconds(s: f64) -> String {
    format!("{s:.3}")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::ffmpeg::{operations::OperationsBody, parse_probe_json};

    fn probe() -> MediaProbe {
        parse_probe_json(include_str!("../../tests/fixtures/ffprobe-5.1.9-small-mp4.json")).expect("fixture")
    }

    fn plan(json: &str) -> Result<ProcessPlan, ValidationError> {
        let body: OperationsBody = serde_json::from_str(json).expect("body");
        ProcessPlan::new(&Operations::parse(&body)?, &probe())
    }

    fn args(json: &str) -> Vec<String> {
        let p = plan(json).expect("plan");
        ProcessArgs {
            input: Path::new("/m/in.mp4"),
            output: Path::new("/m/p/.out.tmp.mp4"),
            plan: &p,
            max_output_bytes: 99,
            threads: 2,
        }
        .to_args()
    }

    fn pos(a: &[String], s: &str) -> usize {
        a.iter().position(|x| x == s).unwrap_or_else(|| panic!("{s} missing in {a:?}"))
    }

    fn pair(a: &[String], k: &str, v: &str) -> bool {
        a.windows(2).any(|w| w[0] == k && w[1] == v)
    }

    #[test]
    fn every_run_is_hardened() {
        let a = args(r#"{"quality":30}"#);
        for flag in ["-nostdin", "-hide_banner", "-nostats", "-sn", "-dn"] {
            pos(&a, flag);
        }
        assert!(pair(&a, "-protocol_whitelist", "file"));
        assert!(pair(&a, "-format_whitelist", INPUT_FORMAT_WHITELIST));
        assert!(pair(&a, "-max_pixels", "35389440"));
        assert!(pair(&a, "-progress", "pipe:1"));
        assert!(pair(&a, "-fs", "99"));
        assert!(pair(&a, "-i", "file:/m/in.mp4"));
        assert!(pair(&a, "-crf", "30"));
        assert_eq!(a.last().map(String::as_str), Some("file:/m/p/.out.tmp.mp4"));
        assert!(pair(&a, "-f", "mp4"));
    }

    #[test]
    fn trim_seeks_before_the_input() {
        let a = args(r#"{"trim":{"start":"2","duration":"3"}}"#);
        assert!(pair(&a, "-ss", "2.000") && pair(&a, "-t", "3.000"));
        assert!(pos(&a, "-ss") < pos(&a, "-i") && pos(&a, "-t") < pos(&a, "-i"));
        assert_eq!(
            plan(r#"{"trim":{"start":"1","duration":"3"}}"#).expect("plan").expected_duration,
            Some(3.0)
        );
        // A duration longer than the input is refused; one running past the end
        // from a later start is cut there.
        let err = plan(r#"{"trim":{"start":3,"duration":30}}"#).expect_err("longer than the input");
        assert_eq!(err.field, "operations.trim.duration");
        assert!(err.message.contains("longer than the input (4.00 s)"), "{err}");
        assert!(plan(r#"{"trim":{"start":"1e20"}}"#).is_err());
        assert!(plan(r#"{"trim":{"start":0,"duration":"1e20"}}"#).is_err());
        assert_eq!(plan(r#"{"trim":{"start":3,"duration":4}}"#).expect("plan").expected_duration, Some(1.0));
    }

    #[test]
    fn an_output_larger_than_8k_is_refused_whichever_side_is_scaled() {
        let thin = include_str!("../../tests/fixtures/ffprobe-5.1.9-small-mp4.json")
            .replace("\"width\": 320", "\"width\": 1388")
            .replace("\"height\": 180", "\"height\": 100");
        let thin = parse_probe_json(&thin).expect("fixture");
        let ops = |json: &str| Operations::parse(&serde_json::from_str(json).expect("body")).expect("ops");
        let err = ProcessPlan::new(&ops(r#"{"resize":{"height":4320}}"#), &thin).expect_err("59962 wide");
        assert_eq!(err.field, "operations.resize");
        assert!(err.message.contains("59962x4320"), "{err}");
        let err = ProcessPlan::new(&ops(r#"{"resize":{"width":7680}}"#), &probe().clone())
            .map(|p| p.expected_height);
        assert_eq!(err.expect("320x180 to 7680 wide is 4320 high"), Some(4320));
        assert!(ProcessPlan::new(&ops(r#"{"resize":{"height":2000}}"#), &thin).is_err());
    }

    #[test]
    fn resize_keeps_the_aspect_ratio_unless_both_sides_are_given() {
        let a = args(r#"{"resize":{"width":160}}"#);
        assert!(pair(&a, "-vf", "scale=160:-2,setsar=1"));
        let p = plan(r#"{"resize":{"width":160}}"#).expect("plan");
        assert_eq!((p.expected_width, p.expected_height, p.size_slack), (Some(160), Some(90), 2));
        let a = args(r#"{"resize":{"height":90}}"#);
        assert!(pair(&a, "-vf", "scale=-2:90,setsar=1"));
        let a = args(r#"{"resize":{"width":320,"height":240}}"#);
        assert!(pair(&a, "-vf", "scale=320:240,setsar=1"));
    }

    #[test]
    fn the_sketch_combination() {
        let a = args(
            r#"{"trim":{"start":2,"duration":3},"resize":{"width":320,"height":180},"quality":30,"fps":15}"#,
        );
        assert!(pair(&a, "-vf", "scale=320:180,setsar=1,fps=15"));
        assert!(pair(&a, "-c:v", "libx264") && pair(&a, "-crf", "30") && pair(&a, "-c:a", "aac"));
        assert!(pair(&a, "-map", "0:v:0?") && pair(&a, "-map", "0:a:0?"));
    }

    #[test]
    fn audio_only_and_containers() {
        let a = args(r#"{"audio_only":true}"#);
        assert!(pair(&a, "-map", "0:a:0") && a.contains(&"-vn".to_owned()) && pair(&a, "-f", "ipod"));
        assert!(!a.iter().any(|x| x == "-c:v"));
        let a = args(r#"{"format":"mp3"}"#);
        assert!(pair(&a, "-c:a", "libmp3lame") && pair(&a, "-f", "mp3"));
        let a = args(r#"{"format":"webm","quality":33}"#);
        assert!(pair(&a, "-c:v", "libvpx-vp9") && pair(&a, "-c:a", "libopus") && pair(&a, "-f", "webm"));
        assert!(plan(r#"{"format":"mp3","resize":{"width":320}}"#).is_err());
    }

    #[test]
    fn copy_reencodes_nothing() {
        let a = args(r#"{"trim":{"start":1,"duration":2},"copy":true}"#);
        assert!(pair(&a, "-c", "copy"));
        assert!(!a.iter().any(|x| x == "-c:v" || x == "-vf" || x == "-crf"));
        let p = plan(r#"{"trim":{"start":1,"duration":2},"copy":true}"#).expect("plan");
        assert_eq!((p.container, p.copy_codec.as_deref()), (Container::Mp4, Some("h264")));
    }

    #[test]
    fn plans_are_checked_against_the_input() {
        assert_eq!(plan(r#"{"trim":{"start":4}}"#).expect_err("past end").field, "operations.trim.start");
        assert_eq!(
            plan(r#"{"trim":{"start":"00:01:00","duration":1}}"#).expect_err("past end").field,
            "operations.trim.start"
        );
        let audio = parse_probe_json(include_str!("../../tests/fixtures/ffprobe-5.1.9-audio-opus.json"))
            .expect("fixture");
        let ops = Operations::parse(&serde_json::from_str(r#"{"resize":{"width":320}}"#).expect("body"))
            .expect("ops");
        assert_eq!(ProcessPlan::new(&ops, &audio).expect_err("no video").field, "input_file");
    }
}
