//! Deciding whether ffmpeg's output is what was asked for. ffmpeg exits 0 on many
//! bad requests (a seek past the end gives a file with no streams), so success is
//! exit 0 *and* a re-probe that matches the plan.

use super::{
    command::ProcessPlan,
    probe::{MediaProbe, StreamKind},
};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VerifyError {
    #[error("output has no {0} stream")]
    MissingStream(&'static str),
    #[error("output has a video stream, but audio only was asked for")]
    UnexpectedVideo,
    #[error("output lasts {actual:.2} s, expected {expected:.2} s")]
    Duration { actual: f64, expected: f64 },
    #[error("output is {actual}, expected {expected}")]
    Size { actual: String, expected: String },
    #[error("output runs at {actual:.2} fps, expected {expected}")]
    FrameRate { actual: f64, expected: f64 },
    #[error("output video codec {actual} differs from the input's {expected} (copy re-encoded)")]
    Codec { actual: String, expected: String },
}

pub fn verify_output(plan: &ProcessPlan, out: &MediaProbe) -> Result<(), VerifyError> {
    let video = out.first(StreamKind::Video);
    if plan.output_has_video && video.is_none() {
        return Err(VerifyError::MissingStream("video"));
    }
    if plan.ops.audio_only {
        if video.is_some() {
            return Err(VerifyError::UnexpectedVideo);
        }
        if !out.has(StreamKind::Audio) {
            return Err(VerifyError::MissingStream("audio"));
        }
    }
    if let Some(expected) = plan.expected_duration {
        let actual = out.duration.unwrap_or(0.0);
        // A stream copy starts at the keyframe before the cut, so it may run long.
        let (below, above) = if plan.ops.copy {
            (0.5, 15.0)
        } else {
            let t = (expected * 0.02).max(0.3);
            (t, t)
        };
        if actual < expected - below || actual > expected + above {
            return Err(VerifyError::Duration { actual, expected });
        }
    }
    if let (Some(v), true) = (video, plan.output_has_video) {
        let (w, h) = (v.width.unwrap_or(0) as i64, v.height.unwrap_or(0) as i64);
        let slack = i64::from(plan.size_slack);
        let off =
            |got: i64, want: Option<u32>| want.is_some_and(|want| (got - i64::from(want)).abs() > slack);
        if off(w, plan.expected_width) || off(h, plan.expected_height) {
            let show = |d: Option<u32>| d.map_or("?".to_owned(), |d| d.to_string());
            return Err(VerifyError::Size {
                actual: format!("{w}x{h}"),
                expected: format!("{}x{}", show(plan.expected_width), show(plan.expected_height)),
            });
        }
        if let (Some(expected), Some(actual)) = (plan.ops.fps, v.fps)
            && (actual - expected).abs() > 0.5
        {
            return Err(VerifyError::FrameRate { actual, expected });
        }
        if let (Some(expected), Some(actual)) = (&plan.copy_codec, &v.codec)
            && expected != actual
        {
            return Err(VerifyError::Codec { actual: actual.clone(), expected: expected.clone() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffmpeg::{Operations, parse_probe_json};

    fn input() -> MediaProbe {
        parse_probe_json(include_str!("../../tests/fixtures/ffprobe-5.1.9-small-mp4.json")).expect("fixture")
    }

    fn plan(json: &str) -> ProcessPlan {
        let ops = Operations::parse(&serde_json::from_str(json).expect("body")).expect("ops");
        ProcessPlan::new(&ops, &input()).expect("plan")
    }

    #[test]
    fn a_matching_output_passes_and_mismatches_are_named() {
        // The fixture is 4 s, 320x180 at 25 fps: a quality-only job keeps all that.
        assert_eq!(verify_output(&plan(r#"{"quality":30}"#), &input()), Ok(()));
        assert!(matches!(
            verify_output(&plan(r#"{"trim":{"start":1,"duration":2}}"#), &input()),
            Err(VerifyError::Duration { .. })
        ));
        assert!(matches!(
            verify_output(&plan(r#"{"resize":{"width":640,"height":360}}"#), &input()),
            Err(VerifyError::Size { .. })
        ));
        assert!(matches!(
            verify_output(&plan(r#"{"fps":10}"#), &input()),
            Err(VerifyError::FrameRate { .. })
        ));
        assert_eq!(
            verify_output(&plan(r#"{"audio_only":true}"#), &input()),
            Err(VerifyError::UnexpectedVideo)
        );
        let mut no_video = input();
        no_video.streams.retain(|s| s.kind != StreamKind::Video);
        assert_eq!(
            verify_output(&plan(r#"{"quality":30}"#), &no_video),
            Err(VerifyError::MissingStream("video"))
        );
    }
}
