//! ffprobe: what a file is (container, duration, streams), read under the same
//! whitelists as processing with bounded probe size.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::INPUT_FORMAT_WHITELIST;

/// `ffprobe … -show_format -show_streams -of json file:<path>`.
#[derive(Debug, Clone)]
pub struct ProbeArgs<'a> {
    pub path: &'a Path,
}

impl ProbeArgs<'_> {
    pub fn to_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "-v",
            "error",
            "-hide_banner",
            "-protocol_whitelist",
            "file",
            "-format_whitelist",
            INPUT_FORMAT_WHITELIST,
            "-probesize",
            "10M",
            "-analyzeduration",
            "10M",
            "-show_format",
            "-show_streams",
            "-of",
            "json",
        ]
        .map(String::from)
        .to_vec();
        args.push(format!("file:{}", self.path.display()));
        args
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    Video,
    Audio,
    Subtitle,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamInfo {
    pub index: u64,
    pub kind: StreamKind,
    pub codec: Option<String>,
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub fps: Option<f64>,
    pub channels: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaProbe {
    /// ffprobe's demuxer name, e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    pub container: String,
    pub duration: Option<f64>,
    pub size_bytes: Option<u64>,
    pub streams: Vec<StreamInfo>,
}

impl MediaProbe {
    pub fn first(&self, kind: StreamKind) -> Option<&StreamInfo> {
        self.streams.iter().find(|s| s.kind == kind)
    }

    pub fn has(&self, kind: StreamKind) -> bool {
        self.first(kind).is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("not a media file ffprobe can read")]
    NotJson,
    #[error("not a media file: no audio or video stream")]
    NoMediaStreams,
}

fn num(v: &Value, key: &str) -> Option<f64> {
    let x = v.get(key)?;
    x.as_f64().or_else(|| x.as_str()?.parse().ok()).filter(|f: &f64| f.is_finite())
}

/// `"30000/1001"` → 29.97; `"0/0"` → None.
fn rate(v: &Value, key: &str) -> Option<f64> {
    let (n, d) = v.get(key)?.as_str()?.split_once('/')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (d > 0.0 && n > 0.0).then(|| n / d)
}

pub fn parse_probe_json(stdout: &str) -> Result<MediaProbe, ProbeError> {
    let v: Value = serde_json::from_str(stdout).map_err(|_| ProbeError::NotJson)?;
    let format = v.get("format").ok_or(ProbeError::NotJson)?;
    let streams: Vec<StreamInfo> = v
        .get("streams")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|s| {
                    let kind = match s.get("codec_type").and_then(Value::as_str) {
                        Some("video") => StreamKind::Video,
                        Some("audio") => StreamKind::Audio,
                        Some("subtitle") => StreamKind::Subtitle,
                        _ => StreamKind::Other,
                    };
                    // Cover art is a one-frame "video" stream; it is not video.
                    let attached_pic =
                        s.pointer("/disposition/attached_pic").and_then(Value::as_u64) == Some(1);
                    StreamInfo {
                        index: s.get("index").and_then(Value::as_u64).unwrap_or_default(),
                        kind: if attached_pic { StreamKind::Other } else { kind },
                        codec: s.get("codec_name").and_then(Value::as_str).map(str::to_owned),
                        width: s.get("width").and_then(Value::as_u64),
                        height: s.get("height").and_then(Value::as_u64),
                        fps: rate(s, "avg_frame_rate").or_else(|| rate(s, "r_frame_rate")),
                        channels: s.get("channels").and_then(Value::as_u64),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if !streams.iter().any(|s| matches!(s.kind, StreamKind::Video | StreamKind::Audio)) {
        return Err(ProbeError::NoMediaStreams);
    }
    Ok(MediaProbe {
        container: format.get("format_name").and_then(Value::as_str).unwrap_or_default().to_owned(),
        duration: num(format, "duration").filter(|d| *d > 0.0),
        size_bytes: num(format, "size").map(|s| s as u64),
        streams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_args_are_whitelisted_and_use_the_file_protocol() {
        let args = ProbeArgs { path: Path::new("/srv/media/a b.mp4") }.to_args();
        assert!(args.windows(2).any(|w| w == ["-protocol_whitelist", "file"]));
        assert!(
            args.windows(2)
                .any(|w| w[0] == "-format_whitelist" && !w[1].contains("hls") && !w[1].contains("concat"))
        );
        assert_eq!(args.last().map(String::as_str), Some("file:/srv/media/a b.mp4"));
    }

    #[test]
    fn captured_mp4_probe_is_parsed() {
        let p = parse_probe_json(include_str!("../../tests/fixtures/ffprobe-5.1.9-small-mp4.json"))
            .expect("parses");
        assert_eq!(p.container, "mov,mp4,m4a,3gp,3g2,mj2");
        assert_eq!(p.duration, Some(4.0));
        let v = p.first(StreamKind::Video).expect("video");
        assert_eq!(
            (v.codec.as_deref(), v.width, v.height, v.fps),
            (Some("h264"), Some(320), Some(180), Some(25.0))
        );
        let a = p.first(StreamKind::Audio).expect("audio");
        assert_eq!((a.codec.as_deref(), a.channels, a.fps), (Some("aac"), Some(1), None));
    }

    #[test]
    fn captured_audio_probe_has_no_video() {
        let p = parse_probe_json(include_str!("../../tests/fixtures/ffprobe-5.1.9-audio-opus.json"))
            .expect("parses");
        assert_eq!(p.container, "ogg");
        assert!(!p.has(StreamKind::Video) && p.has(StreamKind::Audio));
        assert!((p.duration.expect("duration") - 3.0065).abs() < 1e-6);
    }

    #[test]
    fn empty_or_streamless_output_is_not_media() {
        assert!(matches!(parse_probe_json("{\n\n}"), Err(ProbeError::NotJson)));
        assert!(matches!(
            parse_probe_json(r#"{"format":{"format_name":"tty"},"streams":[]}"#),
            Err(ProbeError::NoMediaStreams)
        ));
    }
}
