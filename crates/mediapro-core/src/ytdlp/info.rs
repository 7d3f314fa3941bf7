//! yt-dlp's info JSON → the analyze response. An allow-list projection: the raw
//! JSON carries request headers, cookies and server paths that must not leak.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("yt-dlp printed something that is not its info JSON")]
    NotJson,
    #[error("the URL is a playlist; submit the URL of a single video")]
    Playlist,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaInfo {
    pub id: Option<String>,
    pub title: Option<String>,
    pub duration: Option<f64>,
    pub thumbnail: Option<String>,
    pub uploader: Option<String>,
    pub extractor: Option<String>,
    pub webpage_url: Option<String>,
    pub formats: Vec<FormatInfo>,
    /// Languages with real subtitles.
    pub subtitles: Vec<String>,
    /// Languages with automatic captions only.
    pub automatic_captions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormatInfo {
    pub format_id: String,
    pub format_note: String,
    pub ext: Option<String>,
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub fps: Option<f64>,
    pub vcodec: Option<String>,
    pub acodec: Option<String>,
    pub filesize: Option<u64>,
    pub filesize_approx: Option<u64>,
    pub tbr: Option<f64>,
    pub protocol: Option<String>,
    pub has_video: bool,
    pub has_audio: bool,
    pub carries: Carries,
}

/// What a format's streams hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Carries {
    #[serde(rename = "video+audio")]
    VideoAudio,
    #[serde(rename = "video_only")]
    VideoOnly,
    #[serde(rename = "audio_only")]
    AudioOnly,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)?.as_str().map(clean_text)
}

fn uint(v: &Value, key: &str) -> Option<u64> {
    let n = v.get(key)?;
    n.as_u64().or_else(|| n.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64))
}

fn float(v: &Value, key: &str) -> Option<f64> {
    v.get(key)?.as_f64().filter(|f| f.is_finite())
}

/// Metadata is untrusted text: drop control and bidi-override characters.
fn clean_text(s: &str) -> String {
    s.chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(*c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .take(1000)
        .collect()
}

/// Parses the output of `yt-dlp --dump-single-json`.
pub fn parse_info_json(stdout: &str) -> Result<MediaInfo, ParseError> {
    let v: Value = serde_json::from_str(stdout.trim()).map_err(|_| ParseError::NotJson)?;
    if !v.is_object() {
        return Err(ParseError::NotJson);
    }
    if v.get("_type").and_then(Value::as_str) == Some("playlist") {
        return Err(ParseError::Playlist);
    }
    let formats = match v.get("formats").and_then(Value::as_array) {
        Some(list) => list.iter().filter_map(parse_format).collect(),
        // Single-format results carry the format fields at the top level.
        None => parse_format(&v).into_iter().collect(),
    };
    Ok(MediaInfo {
        id: text(&v, "id"),
        title: text(&v, "title"),
        duration: float(&v, "duration"),
        thumbnail: text(&v, "thumbnail"),
        uploader: text(&v, "uploader"),
        extractor: text(&v, "extractor_key"),
        webpage_url: text(&v, "webpage_url"),
        formats,
        subtitles: languages(&v, "subtitles"),
        automatic_captions: languages(&v, "automatic_captions"),
    })
}

fn languages(v: &Value, key: &str) -> Vec<String> {
    let mut langs: Vec<String> = v
        .get(key)
        .and_then(Value::as_object)
        .map(|m| m.keys().map(|k| clean_text(k)).collect())
        .unwrap_or_default();
    langs.sort();
    langs
}

fn parse_format(f: &Value) -> Option<FormatInfo> {
    let format_id = text(f, "format_id")?;
    let vcodec = text(f, "vcodec");
    let acodec = text(f, "acodec");
    // yt-dlp's own rule: a codec is present unless it is explicitly "none".
    let has_video = vcodec.as_deref() != Some("none");
    let has_audio = acodec.as_deref() != Some("none");
    let carries = match (has_video, has_audio) {
        (true, true) => Carries::VideoAudio,
        (true, false) => Carries::VideoOnly,
        _ => Carries::AudioOnly,
    };
    Some(FormatInfo {
        format_note: text(f, "format_note").or_else(|| text(f, "resolution")).unwrap_or_default(),
        ext: text(f, "ext"),
        width: uint(f, "width"),
        height: uint(f, "height"),
        fps: float(f, "fps"),
        filesize: uint(f, "filesize"),
        filesize_approx: uint(f, "filesize_approx"),
        tbr: float(f, "tbr"),
        protocol: text(f, "protocol"),
        vcodec,
        acodec,
        has_video,
        has_audio,
        carries,
        format_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_html5_page_lists_both_sources_and_the_subtitle() {
        let raw = include_str!("../../tests/fixtures/ytdlp-2026.10.26-html5-two-sources.info.json");
        let info = parse_info_json(raw).expect("parses");
        assert_eq!(info.title.as_deref(), Some("Test Page (1)"));
        let ids: Vec<_> = info.formats.iter().map(|f| f.format_id.as_str()).collect();
        assert_eq!(ids, ["180p", "360p"]);
        assert_eq!(info.formats[0].height, Some(180));
        assert_eq!(info.formats[0].carries, Carries::VideoAudio);
        assert_eq!(info.subtitles, ["en"]);
        let out = serde_json::to_string(&info).expect("serialises");
        assert!(!out.contains("User-Agent") && !out.contains("http_headers") && !out.contains("_filename"));
    }

    #[test]
    fn captured_direct_file_has_one_format() {
        let raw = include_str!("../../tests/fixtures/ytdlp-2026.10.26-direct-mp4.info.json");
        let info = parse_info_json(raw).expect("parses");
        assert_eq!(info.formats.len(), 1);
        assert_eq!(info.title.as_deref(), Some("small"));
    }

    #[test]
    fn codecs_mark_what_a_format_carries_and_playlists_are_refused() {
        let raw = r#"{"title":"t\u202e","formats":[
            {"format_id":"137","vcodec":"avc1","acodec":"none","height":1080},
            {"format_id":"140","vcodec":"none","acodec":"mp4a.40.2","filesize":123.0}]}"#;
        let info = parse_info_json(raw).expect("parses");
        assert_eq!(info.title.as_deref(), Some("t"));
        assert_eq!(info.formats[0].carries, Carries::VideoOnly);
        assert_eq!(info.formats[1].carries, Carries::AudioOnly);
        assert_eq!(info.formats[1].filesize, Some(123));
        assert!(matches!(parse_info_json(r#"{"_type":"playlist"}"#), Err(ParseError::Playlist)));
        assert!(matches!(parse_info_json("nope"), Err(ParseError::NotJson)));
    }
}
