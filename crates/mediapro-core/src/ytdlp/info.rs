//! yt-dlp's info JSON → the analyze response. An allow-list projection: the raw
//! JSON carries request headers, cookies and server paths that must not leak, so it
//! is read into private structs naming only the fields the response carries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::IgnoredAny};

use super::lenient::{Loose, Object};

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("yt-dlp printed something that is not its info JSON")]
    NotJson,
    #[error("the URL is a playlist; submit the URL of a single video")]
    Playlist,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Carries {
    #[serde(rename = "video+audio")]
    VideoAudio,
    #[serde(rename = "video_only")]
    VideoOnly,
    #[serde(rename = "audio_only")]
    AudioOnly,
}

/// The part of yt-dlp's info JSON that is read; everything else is skipped unparsed.
#[derive(Default, Deserialize)]
#[serde(default)]
struct RawInfo {
    #[serde(rename = "_type")]
    kind: Loose<String>,
    id: Loose<String>,
    title: Loose<String>,
    duration: Loose<f64>,
    thumbnail: Loose<String>,
    uploader: Loose<String>,
    extractor_key: Loose<String>,
    webpage_url: Loose<String>,
    formats: Loose<Vec<Loose<Object<RawFormat>>>>,
    subtitles: Loose<BTreeMap<String, IgnoredAny>>,
    automatic_captions: Loose<BTreeMap<String, IgnoredAny>>,
    /// Single-format results carry the format fields at the top level.
    #[serde(flatten)]
    single: RawFormat,
}

/// One entry of `formats`.
#[derive(Default, Deserialize)]
#[serde(default)]
struct RawFormat {
    format_id: Loose<String>,
    format_note: Loose<String>,
    resolution: Loose<String>,
    ext: Loose<String>,
    width: Loose<Count>,
    height: Loose<Count>,
    fps: Loose<f64>,
    vcodec: Loose<String>,
    acodec: Loose<String>,
    filesize: Loose<Count>,
    filesize_approx: Loose<Count>,
    tbr: Loose<f64>,
    protocol: Loose<String>,
}

/// A count yt-dlp may print as `123` or `123.0`; negative is absent.
#[derive(Deserialize)]
#[serde(untagged)]
enum Count {
    Whole(u64),
    Real(f64),
}

fn text(s: Loose<String>) -> Option<String> {
    s.as_ref().map(|s| clean_text(s))
}

fn uint(n: Loose<Count>) -> Option<u64> {
    match n.get()? {
        Count::Whole(n) => Some(n),
        Count::Real(f) => (f.is_finite() && f >= 0.0).then_some(f as u64),
    }
}

fn float(f: Loose<f64>) -> Option<f64> {
    f.get().filter(|f| f.is_finite())
}

/// Metadata is untrusted text: drop control and bidi-override characters.
pub(super) fn clean_text(s: &str) -> String {
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
    let Object(v) =
        serde_json::from_str::<Object<RawInfo>>(stdout.trim()).map_err(|_| ParseError::NotJson)?;
    if v.kind.as_ref().map(String::as_str) == Some("playlist") {
        return Err(ParseError::Playlist);
    }
    let formats = match v.formats.get() {
        Some(list) => list.into_iter().filter_map(|f| parse_format(f.get()?.0)).collect(),
        None => parse_format(v.single).into_iter().collect(),
    };
    Ok(MediaInfo {
        id: text(v.id),
        title: text(v.title),
        duration: float(v.duration),
        thumbnail: text(v.thumbnail),
        uploader: text(v.uploader),
        extractor: text(v.extractor_key),
        webpage_url: text(v.webpage_url),
        formats,
        subtitles: languages(v.subtitles),
        automatic_captions: languages(v.automatic_captions),
    })
}

fn languages(map: Loose<BTreeMap<String, IgnoredAny>>) -> Vec<String> {
    let mut langs: Vec<String> = map.get().unwrap_or_default().keys().map(|k| clean_text(k)).collect();
    langs.sort();
    langs
}

fn parse_format(f: RawFormat) -> Option<FormatInfo> {
    let format_id = text(f.format_id)?;
    let vcodec = text(f.vcodec);
    let acodec = text(f.acodec);
    // yt-dlp's own rule: a codec is present unless it is explicitly "none".
    let has_video = vcodec.as_deref() != Some("none");
    let has_audio = acodec.as_deref() != Some("none");
    let carries = match (has_video, has_audio) {
        (true, true) => Carries::VideoAudio,
        (true, false) => Carries::VideoOnly,
        _ => Carries::AudioOnly,
    };
    Some(FormatInfo {
        format_note: text(f.format_note).or_else(|| text(f.resolution)).unwrap_or_default(),
        ext: text(f.ext),
        width: uint(f.width),
        height: uint(f.height),
        fps: float(f.fps),
        filesize: uint(f.filesize),
        filesize_approx: uint(f.filesize_approx),
        tbr: float(f.tbr),
        protocol: text(f.protocol),
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
    fn captured_html5_page_is_projected_in_full() {
        let raw = include_str!("../../tests/fixtures/ytdlp-2026.10.26-html5-two-sources.info.json");
        let info = parse_info_json(raw).expect("parses");
        let format = |id: &str, height| FormatInfo {
            format_id: id.into(),
            format_note: id.into(),
            ext: Some("mp4".into()),
            width: None,
            height: Some(height),
            fps: None,
            vcodec: None,
            acodec: None,
            filesize: None,
            filesize_approx: None,
            tbr: None,
            protocol: Some("http".into()),
            has_video: true,
            has_audio: true,
            carries: Carries::VideoAudio,
        };
        assert_eq!(
            info,
            MediaInfo {
                id: Some("page-1".into()),
                title: Some("Test Page (1)".into()),
                duration: None,
                thumbnail: Some("http://127.0.0.1:18765/thumb.jpg".into()),
                uploader: None,
                extractor: Some("HTML5MediaEmbed".into()),
                webpage_url: Some("http://127.0.0.1:18765/page.html".into()),
                formats: vec![format("180p", 180), format("360p", 360)],
                subtitles: vec!["en".into()],
                automatic_captions: vec![],
            }
        );
    }

    #[test]
    fn captured_direct_file_format_fields() {
        let raw = include_str!("../../tests/fixtures/ytdlp-2026.10.26-direct-mp4.info.json");
        let info = parse_info_json(raw).expect("parses");
        assert_eq!(
            (info.id.as_deref(), info.extractor.as_deref(), info.webpage_url.as_deref()),
            (Some("small"), Some("Generic"), Some("http://127.0.0.1:18765/small.mp4"))
        );
        assert!(info.subtitles.is_empty() && info.automatic_captions.is_empty());
        let f = &info.formats[0];
        assert_eq!((f.format_id.as_str(), f.format_note.as_str()), ("mp4", ""));
        assert_eq!(
            (f.ext.as_deref(), f.protocol.as_deref(), f.vcodec.as_deref()),
            (Some("mp4"), Some("http"), None)
        );
        assert_eq!((f.carries, f.tbr, f.filesize_approx), (Carries::VideoAudio, None, None));
        let out = serde_json::to_string(&info).expect("serialises");
        assert!(!out.contains("User-Agent") && !out.contains("_filename") && !out.contains("original_url"));
    }

    #[test]
    fn numbers_strings_and_shapes_are_read_as_the_fields_allow() {
        let raw = r#"{"duration":"12","subtitles":["en"],"automatic_captions":{"fr":null,"de\u200e":1},
            "formats":[{"format_id":"a","width":640.0,"height":-1,"fps":"30","filesize":"9",
                        "filesize_approx":1e3,"tbr":1.5,"format_note":null,"resolution":"640x360"},
                       {"format_id":5}, ["b"], null]}"#;
        let info = parse_info_json(raw).expect("parses");
        assert_eq!((info.duration, info.subtitles.len()), (None, 0));
        assert_eq!(info.automatic_captions, ["de", "fr"]);
        let [f] = &info.formats[..] else { panic!("{:?}", info.formats) };
        assert_eq!((f.width, f.height, f.fps, f.filesize), (Some(640), None, None, None));
        assert_eq!((f.filesize_approx, f.tbr, f.format_note.as_str()), (Some(1000), Some(1.5), "640x360"));
        // Without a `formats` list the top level is the one format.
        let single =
            parse_info_json(r#" {"format_id":"x","formats":null,"vcodec":"none"} "#).expect("parses");
        assert_eq!(single.formats[0].carries, Carries::AudioOnly);
        assert!(matches!(parse_info_json(r#"[{"format_id":"x"}]"#), Err(ParseError::NotJson)));
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
