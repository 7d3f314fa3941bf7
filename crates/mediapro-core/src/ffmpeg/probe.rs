//! ffprobe: what a file is (container, duration, streams), read under the same
//! whitelists as processing with bounded probe size. Its JSON is read into private
//! structs naming only the fields used.

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use super::INPUT_FORMAT_WHITELIST;
use crate::ytdlp::lenient::{Loose, Object};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    Video,
    Audio,
    Subtitle,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamInfo {
    pub index: u64,
    pub kind: StreamKind,
    pub codec: Option<String>,
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub fps: Option<f64>,
    pub channels: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// The part of ffprobe's JSON that is read; everything else is skipped unparsed.
#[derive(Deserialize)]
struct RawProbe {
    /// Must be present (even as `null`): ffprobe prints it for anything it opened.
    #[serde(default, deserialize_with = "present")]
    format: Option<Loose<Object<RawFormat>>>,
    #[serde(default)]
    streams: Loose<Vec<Loose<Object<RawStream>>>>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawFormat {
    format_name: Loose<String>,
    duration: Loose<Decimal>,
    size: Loose<Decimal>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawStream {
    index: Loose<u64>,
    codec_type: Loose<String>,
    codec_name: Loose<String>,
    width: Loose<u64>,
    height: Loose<u64>,
    channels: Loose<u64>,
    avg_frame_rate: Loose<String>,
    r_frame_rate: Loose<String>,
    disposition: Loose<Object<Disposition>>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Disposition {
    attached_pic: Loose<u64>,
}

/// ffprobe prints most numbers as strings (`"4.000000"`); a number is taken too.
#[derive(Deserialize)]
#[serde(untagged)]
enum Decimal {
    Number(f64),
    Text(String),
}

impl Decimal {
    fn value(self) -> Option<f64> {
        match self {
            Decimal::Number(f) => Some(f),
            Decimal::Text(s) => s.parse().ok(),
        }
        .filter(|f: &f64| f.is_finite())
    }
}

/// Tells a field that is present (whatever its value) from one that is missing.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `"30000/1001"` → 29.97; `"0/0"` → None.
fn rate(r: Loose<String>) -> Option<f64> {
    let r = r.get()?;
    let (n, d) = r.split_once('/')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (d > 0.0 && n > 0.0).then(|| n / d)
}

impl From<RawStream> for StreamInfo {
    fn from(s: RawStream) -> StreamInfo {
        let kind = match s.codec_type.as_ref().map(String::as_str) {
            Some("video") => StreamKind::Video,
            Some("audio") => StreamKind::Audio,
            Some("subtitle") => StreamKind::Subtitle,
            _ => StreamKind::Other,
        };
        // Cover art is a one-frame "video" stream; it is not video.
        let attached_pic = s.disposition.or_default().attached_pic.get() == Some(1);
        StreamInfo {
            index: s.index.get().unwrap_or_default(),
            kind: if attached_pic { StreamKind::Other } else { kind },
            codec: s.codec_name.get(),
            width: s.width.get(),
            height: s.height.get(),
            fps: rate(s.avg_frame_rate).or_else(|| rate(s.r_frame_rate)),
            channels: s.channels.get(),
        }
    }
}

pub fn parse_probe_json(stdout: &str) -> Result<MediaProbe, ProbeError> {
    let Object(raw) = serde_json::from_str::<Object<RawProbe>>(stdout).map_err(|_| ProbeError::NotJson)?;
    let format = raw.format.ok_or(ProbeError::NotJson)?.or_default();
    let streams: Vec<StreamInfo> =
        raw.streams.get().unwrap_or_default().into_iter().map(|s| s.or_default().into()).collect();
    if !streams.iter().any(|s| matches!(s.kind, StreamKind::Video | StreamKind::Audio)) {
        return Err(ProbeError::NoMediaStreams);
    }
    Ok(MediaProbe {
        container: format.format_name.get().unwrap_or_default(),
        duration: format.duration.get().and_then(Decimal::value).filter(|d| *d > 0.0),
        size_bytes: format.size.get().and_then(Decimal::value).map(|s| s as u64),
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
    fn captured_mp4_probe_is_parsed_in_full() {
        let p = parse_probe_json(include_str!("../../tests/fixtures/ffprobe-5.1.9-small-mp4.json"))
            .expect("parses");
        let stream = |index, kind, codec: &str, width, height, fps, channels| StreamInfo {
            index,
            kind,
            codec: Some(codec.into()),
            width,
            height,
            fps,
            channels,
        };
        assert_eq!(
            p,
            MediaProbe {
                container: "mov,mp4,m4a,3gp,3g2,mj2".into(),
                duration: Some(4.0),
                size_bytes: Some(353_315),
                streams: vec![
                    stream(0, StreamKind::Video, "h264", Some(320), Some(180), Some(25.0), None),
                    stream(1, StreamKind::Audio, "aac", None, None, None, Some(1)),
                ],
            }
        );
    }

    #[test]
    fn captured_webm_has_an_ntsc_frame_rate() {
        let p = parse_probe_json(include_str!("../../tests/fixtures/ffprobe-5.1.9-webm-ntsc.json"))
            .expect("parses");
        assert_eq!((p.container.as_str(), p.size_bytes), ("matroska,webm", Some(77_861)));
        let v = p.first(StreamKind::Video).expect("video");
        assert_eq!((v.codec.as_deref(), v.width, v.height), (Some("vp8"), Some(320), Some(180)));
        assert!((v.fps.expect("fps") - 30000.0 / 1001.0).abs() < 1e-9);
        let a = p.first(StreamKind::Audio).expect("audio");
        assert_eq!((a.index, a.codec.as_deref(), a.channels), (1, Some("opus"), Some(2)));
    }

    #[test]
    fn captured_cover_art_is_not_video() {
        let p = parse_probe_json(include_str!("../../tests/fixtures/ffprobe-5.1.9-mp3-cover-art.json"))
            .expect("parses");
        assert_eq!(p.container, "mp3");
        assert!(!p.has(StreamKind::Video) && p.has(StreamKind::Audio));
        let art = &p.streams[1];
        assert_eq!((art.kind, art.codec.as_deref(), art.width), (StreamKind::Other, Some("mjpeg"), Some(64)));
        // avg_frame_rate is "0/0", so the rate falls back to r_frame_rate.
        assert_eq!(art.fps, Some(90000.0));
    }

    #[test]
    fn fields_of_unexpected_types_read_as_absent() {
        let raw = r#"{"format":{"format_name":7,"duration":"N/A","size":12},
            "streams":[{"codec_type":"video","index":"0","width":320.0,"codec_name":null,
              "avg_frame_rate":"0/0","r_frame_rate":"30000/1001","disposition":[1]},
              5, {"codec_type":"audio","disposition":{"attached_pic":"1"}}]}"#;
        let p = parse_probe_json(raw).expect("parses");
        assert_eq!((p.container.as_str(), p.duration, p.size_bytes), ("", None, Some(12)));
        let v = &p.streams[0];
        assert_eq!((v.kind, v.index, v.width, v.codec.as_deref()), (StreamKind::Video, 0, None, None));
        assert!((v.fps.expect("fps") - 29.97).abs() < 0.01);
        assert_eq!(p.streams[1].kind, StreamKind::Other);
        assert_eq!(p.streams[2].kind, StreamKind::Audio);
        // A `format` that is not an object is empty, but a missing one means no probe.
        assert!(parse_probe_json(r#"{"format":null,"streams":[{"codec_type":"audio"}]}"#).is_ok());
        assert!(matches!(
            parse_probe_json(r#"{"streams":[{"codec_type":"audio"}]}"#),
            Err(ProbeError::NotJson)
        ));
        assert!(matches!(parse_probe_json(r#"[{"format_name":"x"},[]]"#), Err(ProbeError::NotJson)));
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
