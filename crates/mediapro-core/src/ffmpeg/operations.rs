//! Processing operations: the request body (the sketch's shape, plus what users
//! reach for next), parsed into typed, range-checked values, then checked against
//! the probed input into a [`ProcessPlan`](super::ProcessPlan).

use crate::Code;
use serde::{Deserialize, Serialize};

use crate::validate::ValidationError;

/// A number or a string, as clients send either (the sketch sends strings).
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum NumOrText {
    Num(f64),
    Text(String),
}

/// Seconds as a number or `"SS(.ms)"`, `"MM:SS"`, `"HH:MM:SS(.ms)"`.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrimBody {
    pub start: Option<NumOrText>,
    pub duration: Option<NumOrText>,
}

/// Even sizes, width 16–7680, height 16–4320; one side alone keeps the aspect ratio.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResizeBody {
    pub width: Option<NumOrText>,
    pub height: Option<NumOrText>,
}

/// `operations` of `POST /api/process` (and of a download's `process`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationsBody {
    pub trim: Option<TrimBody>,
    pub resize: Option<ResizeBody>,
    /// x264/VP9 CRF, 0 (lossless) – 51 (worst).
    pub quality: Option<NumOrText>,
    pub fps: Option<NumOrText>,
    /// `mp4` (default), `webm`, `mkv`, `mov`; `mp3`, `m4a`, `opus` (audio only).
    pub format: Option<String>,
    #[serde(default)]
    pub audio_only: bool,
    /// With a trim alone: cut without re-encoding (fast; cuts land on keyframes).
    #[serde(default)]
    pub copy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Trim {
    pub start: f64,
    /// `None` = to the end of the input.
    pub duration: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Resize {
    pub width: Option<u32>,
    pub height: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Container {
    Mp4,
    Webm,
    Mkv,
    Mov,
    Mp3,
    M4a,
    Opus,
}

impl Container {
    const ALL: [Container; 7] = [
        Container::Mp4,
        Container::Webm,
        Container::Mkv,
        Container::Mov,
        Container::Mp3,
        Container::M4a,
        Container::Opus,
    ];

    pub fn ext(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Webm => "webm",
            Container::Mkv => "mkv",
            Container::Mov => "mov",
            Container::Mp3 => "mp3",
            Container::M4a => "m4a",
            Container::Opus => "opus",
        }
    }

    /// ffmpeg's muxer name.
    pub fn muxer(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Webm => "webm",
            Container::Mkv => "matroska",
            Container::Mov => "mov",
            Container::Mp3 => "mp3",
            Container::M4a => "ipod",
            Container::Opus => "opus",
        }
    }

    pub fn audio_only(self) -> bool {
        matches!(self, Container::Mp3 | Container::M4a | Container::Opus)
    }

    fn parse(s: &str) -> Result<Self, ValidationError> {
        Container::ALL.into_iter().find(|c| c.ext() == s.to_ascii_lowercase()).ok_or_else(|| {
            let valid: Vec<_> = Container::ALL.iter().map(|c| c.ext()).collect();
            ValidationError::new(
                "operations.format",
                Code::InvalidOutputFormat,
                format!("'{s}' is not one of {}", valid.join(", ")),
            )
        })
    }

    /// The container a stream copy keeps, from ffprobe's demuxer name.
    pub fn for_copy_of(demuxer: &str) -> Container {
        if demuxer.starts_with("matroska") {
            Container::Mkv
        } else if demuxer.starts_with("mov") {
            Container::Mp4
        } else if demuxer == "mp3" {
            Container::Mp3
        } else if demuxer == "ogg" {
            Container::Opus
        } else {
            Container::Mkv // holds almost any codec
        }
    }
}

/// Validated operations (syntax and ranges); the probed input is checked later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Operations {
    pub trim: Option<Trim>,
    pub resize: Option<Resize>,
    pub quality: Option<u8>,
    pub fps: Option<f64>,
    /// `None` = mp4 (or m4a for audio only, or the input's container for a copy).
    pub format: Option<Container>,
    pub audio_only: bool,
    pub copy: bool,
}

fn bad(field: &'static str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(field, Code::InvalidOperation, message)
}

fn number(field: &'static str, v: &NumOrText) -> Result<f64, ValidationError> {
    let n = match v {
        NumOrText::Num(n) => *n,
        NumOrText::Text(t) => t.trim().parse().map_err(|_| bad(field, format!("'{t}' is not a number")))?,
    };
    if n.is_finite() { Ok(n) } else { Err(bad(field, "must be a finite number")) }
}

fn integer_in(field: &'static str, v: &NumOrText, lo: u32, hi: u32) -> Result<u32, ValidationError> {
    let n = number(field, v)?;
    if n.fract() != 0.0 || n < f64::from(lo) || n > f64::from(hi) {
        return Err(bad(field, format!("must be a whole number from {lo} to {hi}")));
    }
    Ok(n as u32)
}

/// Seconds from a number, `"SS(.ms)"`, `"MM:SS(.ms)"` or `"HH:MM:SS(.ms)"`.
pub fn parse_timestamp(field: &'static str, v: &NumOrText) -> Result<f64, ValidationError> {
    let secs = match v {
        NumOrText::Num(n) => *n,
        NumOrText::Text(t) => {
            let t = t.trim();
            let parts: Vec<&str> = t.split(':').collect();
            let well_formed = (1..=3).contains(&parts.len())
                && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.'))
                && parts[..parts.len() - 1].iter().all(|p| !p.contains('.'));
            if !well_formed {
                return Err(bad(field, format!("'{t}' is not a time like 90, \"90.5\" or \"00:01:30.5\"")));
            }
            let mut secs = 0.0;
            for (i, p) in parts.iter().enumerate() {
                let value: f64 = p.parse().map_err(|_| bad(field, format!("'{t}' is not a time")))?;
                if i > 0 && value >= 60.0 {
                    return Err(bad(field, format!("'{t}': minutes and seconds must be below 60")));
                }
                secs = secs * 60.0 + value;
            }
            secs
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad(field, "must be zero or more seconds"));
    }
    Ok(secs)
}

impl Operations {
    pub fn parse(body: &OperationsBody) -> Result<Self, ValidationError> {
        let trim = body
            .trim
            .as_ref()
            .map(|t| {
                let start =
                    t.start.as_ref().map(|s| parse_timestamp("operations.trim.start", s)).transpose()?;
                let duration = t
                    .duration
                    .as_ref()
                    .map(|d| parse_timestamp("operations.trim.duration", d))
                    .transpose()?;
                if duration == Some(0.0) {
                    return Err(bad("operations.trim.duration", "must be more than 0 seconds"));
                }
                Ok(Trim { start: start.unwrap_or(0.0), duration })
            })
            .transpose()?;
        let resize = body
            .resize
            .as_ref()
            .map(|r| {
                let even = |field: &'static str, v: &NumOrText, hi: u32| {
                    let n = integer_in(field, v, 16, hi)?;
                    if n % 2 == 1 {
                        return Err(bad(field, "must be even (4:2:0 video)"));
                    }
                    Ok(n)
                };
                let width = r.width.as_ref().map(|w| even("operations.resize.width", w, 7680)).transpose()?;
                let height =
                    r.height.as_ref().map(|h| even("operations.resize.height", h, 4320)).transpose()?;
                if width.is_none() && height.is_none() {
                    return Err(bad("operations.resize", "give width, height or both"));
                }
                Ok(Resize { width, height })
            })
            .transpose()?;
        let quality = body
            .quality
            .as_ref()
            .map(|q| integer_in("operations.quality", q, 0, 51).map(|q| q as u8))
            .transpose()?;
        let fps = body
            .fps
            .as_ref()
            .map(|f| {
                let fps = number("operations.fps", f)?;
                if !(1.0..=120.0).contains(&fps) {
                    return Err(bad("operations.fps", "must be from 1 to 120"));
                }
                Ok(fps)
            })
            .transpose()?;
        let format = body.format.as_deref().map(Container::parse).transpose()?;
        let audio_only = body.audio_only || format.is_some_and(Container::audio_only);
        if body.copy && (resize.is_some() || quality.is_some() || fps.is_some() || audio_only) {
            return Err(bad(
                "operations.copy",
                "only a trim (and a container change) can be done without re-encoding",
            ));
        }
        if audio_only && (resize.is_some() || fps.is_some() || quality.is_some()) {
            return Err(bad(
                "operations.audio_only",
                "resize, fps and quality apply to video; drop them or audio_only",
            ));
        }
        if trim.is_none()
            && resize.is_none()
            && quality.is_none()
            && fps.is_none()
            && format.is_none()
            && !audio_only
        {
            return Err(bad(
                "operations",
                "ask for at least one operation (trim, resize, quality, fps, format, audio_only)",
            ));
        }
        Ok(Operations { trim, resize, quality, fps, format, audio_only, copy: body.copy })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(json: &str) -> Result<Operations, ValidationError> {
        Operations::parse(&serde_json::from_str(json).expect("body"))
    }

    fn field(json: &str) -> &'static str {
        ops(json).expect_err(json).field
    }

    #[test]
    fn timestamps_in_every_accepted_form() {
        let t = |v: NumOrText| parse_timestamp("f", &v);
        assert_eq!(t(NumOrText::Num(2.5)), Ok(2.5));
        assert_eq!(t(NumOrText::Text("10".into())), Ok(10.0));
        assert_eq!(t(NumOrText::Text("10.25".into())), Ok(10.25));
        assert_eq!(t(NumOrText::Text("01:30".into())), Ok(90.0));
        assert_eq!(t(NumOrText::Text("01:00:02.5".into())), Ok(3602.5));
        for bad in ["-5", "1:60", "10s", "1:2:3:4", "", "1.5:00", "NaN"] {
            assert!(t(NumOrText::Text(bad.into())).is_err(), "{bad}");
        }
        assert!(t(NumOrText::Num(-1.0)).is_err());
    }

    #[test]
    fn the_sketch_operations_parse() {
        let o = ops(r#"{"trim":{"start":"2","duration":"3"},"resize":{"width":320,"height":180},"quality":30,"fps":15}"#)
            .expect("valid");
        assert_eq!(o.trim, Some(Trim { start: 2.0, duration: Some(3.0) }));
        assert_eq!(o.resize, Some(Resize { width: Some(320), height: Some(180) }));
        assert_eq!(
            (o.quality, o.fps, o.format, o.audio_only, o.copy),
            (Some(30), Some(15.0), None, false, false)
        );
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        assert_eq!(field(r#"{"quality":99}"#), "operations.quality");
        assert_eq!(field(r#"{"quality":23.5}"#), "operations.quality");
        assert_eq!(field(r#"{"fps":0}"#), "operations.fps");
        assert_eq!(field(r#"{"fps":"30; rm"}"#), "operations.fps");
        assert_eq!(field(r#"{"resize":{"width":100000}}"#), "operations.resize.width");
        assert_eq!(field(r#"{"resize":{"width":641}}"#), "operations.resize.width");
        assert_eq!(field(r#"{"resize":{"height":4322}}"#), "operations.resize.height");
        assert_eq!(field(r#"{"resize":{}}"#), "operations.resize");
        assert_eq!(field(r#"{"trim":{"start":-5,"duration":1}}"#), "operations.trim.start");
        assert_eq!(field(r#"{"trim":{"start":1,"duration":0}}"#), "operations.trim.duration");
        assert_eq!(field(r#"{"format":"exe"}"#), "operations.format");
        assert_eq!(field(r#"{"copy":true,"resize":{"width":320}}"#), "operations.copy");
        assert_eq!(field(r#"{"audio_only":true,"fps":10}"#), "operations.audio_only");
        assert_eq!(field(r#"{}"#), "operations");
        assert!(serde_json::from_str::<OperationsBody>(r#"{"filter":"movie=/etc/passwd"}"#).is_err());
    }

    #[test]
    fn audio_containers_imply_audio_only() {
        let o = ops(r#"{"format":"mp3"}"#).expect("valid");
        assert!(o.audio_only);
        assert_eq!(Container::for_copy_of("mov,mp4,m4a,3gp,3g2,mj2"), Container::Mp4);
        assert_eq!(Container::for_copy_of("matroska,webm"), Container::Mkv);
    }
}
