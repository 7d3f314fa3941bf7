//! What a download may leave behind: a media file with an allowed extension and
//! subtitle files that really are subtitle text. The worker probes the media
//! file with the whitelisted ffprobe too (`crates/worker/src/jobs/download.rs`);
//! these are the pure rules, testable on bytes.

use std::path::Path;

/// Extensions a downloaded media file may have.
pub const MEDIA_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "m4a", "webm", "weba", "mkv", "mka", "mov", "mp3", "ogg", "oga", "ogv", "opus", "flac",
    "wav", "aac", "ts", "flv", "avi", "3gp",
];

/// Extensions a subtitle file may have.
pub const SUBTITLE_EXTENSIONS: &[&str] = &["vtt", "srt", "ass", "ssa"];

fn extension(path: &Path) -> Option<String> {
    path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase)
}

pub fn has_media_extension(path: &Path) -> bool {
    extension(path).is_some_and(|e| MEDIA_EXTENSIONS.contains(&e.as_str()))
}

/// Whether `head` (the first KiB or so of the file) is subtitle text of the
/// kind its extension says: WebVTT, SubRip or (Advanced) SubStation Alpha.
pub fn is_subtitle_text(path: &Path, head: &[u8]) -> bool {
    let Some(ext) = extension(path).filter(|e| SUBTITLE_EXTENSIONS.contains(&e.as_str())) else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head)) else {
        // A cut in the middle of a UTF-8 sequence at the end of `head` is fine.
        return match std::str::from_utf8(&head[..head.len().saturating_sub(3)]) {
            Ok(t) => matches_kind(&ext, t),
            Err(_) => false,
        };
    };
    matches_kind(&ext, text)
}

fn matches_kind(ext: &str, text: &str) -> bool {
    if text.contains('\0') {
        return false;
    }
    let text = text.trim_start_matches('\u{feff}').trim_start();
    match ext {
        "vtt" => text.starts_with("WEBVTT"),
        "srt" => {
            // "1\n00:00:01,000 --> 00:00:02,000"
            let mut lines = text.lines();
            let index = lines.next().unwrap_or_default().trim();
            let timing = lines.next().unwrap_or_default();
            !index.is_empty() && index.chars().all(|c| c.is_ascii_digit()) && timing.contains("-->")
        }
        "ass" | "ssa" => text.starts_with("[Script Info]"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_media_extensions_pass() {
        for ok in ["a.mp4", "b.WEBM", "c.m4a", "d.mkv", "e.opus"] {
            assert!(has_media_extension(Path::new(ok)), "{ok}");
        }
        for bad in ["a.html", "b.txt", "c", "d.mp4.exe", "e.php", "f.vtt"] {
            assert!(!has_media_extension(Path::new(bad)), "{bad}");
        }
    }

    #[test]
    fn subtitles_must_be_the_text_their_extension_names() {
        let vtt = b"WEBVTT\n\n00:00.000 --> 00:01.000\nhello\n";
        assert!(is_subtitle_text(Path::new("a.en.vtt"), vtt));
        assert!(is_subtitle_text(Path::new("a.vtt"), b"\xEF\xBB\xBFWEBVTT - title\n"));
        assert!(is_subtitle_text(Path::new("a.srt"), b"1\r\n00:00:01,000 --> 00:00:02,000\r\nhi\r\n"));
        assert!(is_subtitle_text(Path::new("a.ass"), b"[Script Info]\nTitle: x\n"));
        assert!(!is_subtitle_text(Path::new("a.vtt"), b"<html><body>not found</body></html>"));
        assert!(!is_subtitle_text(Path::new("a.srt"), b"WEBVTT\n"));
        assert!(!is_subtitle_text(Path::new("a.vtt"), b"WEBVTT\0\x01binary"));
        assert!(!is_subtitle_text(Path::new("a.txt"), b"WEBVTT\n"));
        assert!(!is_subtitle_text(Path::new("a.vtt"), b"\xff\xfe\x00garbage"));
    }
}
