//! Collections (playlists, channels, feeds): the flat listing yt-dlp prints with
//! `--flat-playlist` (no entry is extracted, no media is fetched), its parse, and
//! the item selection of a collection download.

use serde::{Deserialize, Serialize};

use super::{
    command::hardening,
    info::{ParseError, clean_text},
    lenient::{Loose, Object},
};
use crate::validate::SourceUrl;

/// `yt-dlp --flat-playlist -J --playlist-items …`: one listing page of a collection
/// (for a single video, its info JSON as analyze reads it).
#[derive(Debug, Clone)]
pub struct ListArgs<'a> {
    pub url: &'a SourceUrl,
    /// Which entries, as yt-dlp's `--playlist-items` reads them (`2:4,7`).
    pub items: &'a str,
    pub socket_timeout_secs: u32,
    /// `http://127.0.0.1:PORT` of the egress guard's proxy.
    pub proxy: Option<&'a str>,
    /// The site profile's options, when the URL's host has one.
    pub site: Option<&'a super::SiteArgs<'a>>,
}

impl ListArgs<'_> {
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::with_capacity(24);
        hardening(&mut args, self.socket_timeout_secs, self.proxy);
        args.extend(
            ["--dump-single-json", "--skip-download", "--flat-playlist", "--playlist-items"]
                .map(String::from),
        );
        args.push(self.items.to_owned());
        args.push("--no-warnings".into());
        super::command::site(&mut args, self.site);
        args.push("--".into());
        args.push(self.url.as_str().into());
        args
    }
}

/// `yt-dlp --print "%(extractor_key)s %(id)s"`: the download archive's key of a
/// URL's item, extracted without downloading (for `skip_archived`).
#[derive(Debug, Clone)]
pub struct ArchiveKeyArgs<'a> {
    pub url: &'a SourceUrl,
    pub socket_timeout_secs: u32,
    pub proxy: Option<&'a str>,
    /// The site profile's options, when the URL's host has one.
    pub site: Option<&'a super::SiteArgs<'a>>,
}

impl ArchiveKeyArgs<'_> {
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::with_capacity(24);
        hardening(&mut args, self.socket_timeout_secs, self.proxy);
        super::command::site(&mut args, self.site);
        args.extend(
            [
                "--simulate",
                "--playlist-items",
                "1",
                "--no-warnings",
                "--print",
                "%(extractor_key)s %(id)s",
                "--",
            ]
            .map(String::from),
        );
        args.push(self.url.as_str().into());
        args
    }
}

/// Entries of a collection a client selects: 1-based positions as ranges,
/// `"1-10,15"`. Kept sorted and merged, so `"7,2-4,3"` is `"2-4,7"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PlaylistItems {
    ranges: Vec<(u32, u32)>,
}

/// Most comma-separated parts a selection may have.
const MAX_PARTS: usize = 64;

impl PlaylistItems {
    /// Parses `"2-4,7"`; the selection may name at most `max` entries.
    pub fn parse(raw: &str, max: u32) -> Result<Self, String> {
        let parts: Vec<&str> = raw.split(',').map(str::trim).collect();
        if raw.trim().is_empty() {
            return Err("must name at least one entry, e.g. \"1-10,15\"".into());
        }
        if parts.len() > MAX_PARTS {
            return Err(format!("at most {MAX_PARTS} comma-separated parts"));
        }
        let number = |s: &str| -> Result<u32, String> {
            match s.trim().parse::<u32>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(format!("'{s}' is not an entry number (1, 2, …)")),
            }
        };
        let mut ranges = Vec::with_capacity(parts.len());
        for part in parts {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => {
                    let n = number(part)?;
                    (n, n)
                }
            };
            if a > b {
                return Err(format!("'{part}': a range goes from the lower to the higher number"));
            }
            ranges.push((a, b));
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        let items = Self { ranges: merged };
        if items.count() > u64::from(max) {
            return Err(format!(
                "selects {} entries; at most {max} (limits.max_playlist_items)",
                items.count()
            ));
        }
        Ok(items)
    }

    /// Entries `first..first + count - 1` (a page, or the first `max` entries).
    pub fn span(first: u32, count: u32) -> Self {
        Self { ranges: vec![(first.max(1), first.max(1).saturating_add(count.max(1) - 1))] }
    }

    /// How many positions the selection names (a collection may have fewer).
    pub fn count(&self) -> u64 {
        self.ranges.iter().map(|(a, b)| u64::from(b - a) + 1).sum()
    }

    /// The highest position named.
    pub fn last(&self) -> u32 {
        self.ranges.last().map_or(0, |r| r.1)
    }

    /// yt-dlp's `--playlist-items` syntax (`2:4,7`).
    pub fn to_ytdlp(&self) -> String {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}:{b}") })
            .collect();
        parts.join(",")
    }

    pub fn contains(&self, index: u64) -> bool {
        self.ranges.iter().any(|&(a, b)| (u64::from(a)..=u64::from(b)).contains(&index))
    }
}

impl std::fmt::Display for PlaylistItems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, &(a, b)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b { write!(f, "{a}")? } else { write!(f, "{a}-{b}")? }
        }
        Ok(())
    }
}

impl TryFrom<String> for PlaylistItems {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s, u32::MAX)
    }
}

impl From<PlaylistItems> for String {
    fn from(p: PlaylistItems) -> String {
        p.to_string()
    }
}

/// One page of a collection's flat listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Collection {
    pub id: Option<String>,
    pub title: Option<String>,
    pub extractor: Option<String>,
    pub webpage_url: Option<String>,
    /// Entries the site says the collection has (`null` when it does not say).
    pub entry_count: Option<u64>,
    pub entries: Vec<CollectionEntry>,
}

/// One entry of a flat listing: what the collection page says, nothing extracted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CollectionEntry {
    /// 1-based position in the collection (what `playlist.items` selects).
    pub index: u64,
    /// yt-dlp's extractor key of the entry, lower case, when the listing names it
    /// (with `id`, the entry's download archive key).
    pub extractor: Option<String>,
    pub id: Option<String>,
    pub title: Option<String>,
    pub duration: Option<f64>,
    /// The entry's own URL, downloadable as a single video.
    pub url: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawListing {
    #[serde(rename = "_type")]
    kind: Loose<String>,
    id: Loose<String>,
    title: Loose<String>,
    extractor_key: Loose<String>,
    webpage_url: Loose<String>,
    playlist_count: Loose<u64>,
    requested_entries: Loose<Vec<Loose<u64>>>,
    entries: Loose<Vec<Loose<Object<RawEntry>>>>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawEntry {
    id: Loose<String>,
    title: Loose<String>,
    duration: Loose<f64>,
    url: Loose<String>,
    webpage_url: Loose<String>,
    playlist_index: Loose<u64>,
    ie_key: Loose<String>,
    extractor_key: Loose<String>,
}

fn text(s: Loose<String>) -> Option<String> {
    s.as_ref().map(|s| clean_text(s))
}

/// Reads the output of [`ListArgs`]: `Ok(None)` when the URL is a single video
/// (then [`parse_info_json`](super::parse_info_json) reads the same output).
/// `first` is the position of the page's first entry, for listings that do not
/// number their entries.
pub fn parse_listing(stdout: &str, first: u64) -> Result<Option<Collection>, ParseError> {
    let Object(v) =
        serde_json::from_str::<Object<RawListing>>(stdout.trim()).map_err(|_| ParseError::NotJson)?;
    if !matches!(v.kind.as_ref().map(String::as_str), Some("playlist" | "multi_video")) {
        return Ok(None);
    }
    let requested: Vec<Option<u64>> =
        v.requested_entries.get().unwrap_or_default().into_iter().map(Loose::get).collect();
    let raw_entries = v.entries.get().unwrap_or_default();
    let mut entries = Vec::with_capacity(raw_entries.len());
    for (i, raw) in raw_entries.into_iter().enumerate() {
        let Some(Object(e)) = raw.get() else { continue };
        let index = requested
            .get(i)
            .copied()
            .flatten()
            .or(e.playlist_index.get())
            .unwrap_or(first + u64::try_from(i).unwrap_or(u64::MAX));
        let url = text(e.url).or_else(|| text(e.webpage_url)).filter(|u| SourceUrl::parse(u).is_ok());
        let extractor = text(e.ie_key).or_else(|| text(e.extractor_key)).map(|k| k.to_lowercase());
        entries.push(CollectionEntry {
            index,
            extractor,
            id: text(e.id),
            title: text(e.title),
            duration: e.duration.get().filter(|d| d.is_finite() && *d >= 0.0),
            url,
        });
    }
    Ok(Some(Collection {
        id: text(v.id),
        title: text(v.title),
        extractor: text(v.extractor_key),
        webpage_url: text(v.webpage_url),
        entry_count: v.playlist_count.get(),
        entries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_parse_merge_and_render_for_ytdlp() {
        let items = PlaylistItems::parse("7, 2-4,3", 1000).expect("valid");
        assert_eq!(items.to_string(), "2-4,7");
        assert_eq!(items.to_ytdlp(), "2:4,7");
        assert_eq!(items.count(), 4);
        assert_eq!(items.last(), 7);
        assert!(items.contains(3) && items.contains(7) && !items.contains(5));
        assert_eq!(PlaylistItems::parse("1-10,11,15", 1000).expect("valid").to_string(), "1-11,15");
        for bad in ["", "0", "a", "4-2", "1-", "-3", "1,,2", "1.5"] {
            assert!(PlaylistItems::parse(bad, 1000).is_err(), "{bad:?}");
        }
        let err = PlaylistItems::parse("1-20", 10).expect_err("too many");
        assert!(err.contains("limits.max_playlist_items"), "{err}");
        assert_eq!(PlaylistItems::span(51, 50).to_ytdlp(), "51:100");
        let json = serde_json::to_string(&items).expect("json");
        assert_eq!(json, "\"2-4,7\"");
        assert_eq!(serde_json::from_str::<PlaylistItems>(&json).expect("back"), items);
    }

    #[test]
    fn list_args_are_hardened_flat_and_end_with_the_url() {
        let url = SourceUrl::parse("https://example.com/feed.xml").expect("url");
        let args = ListArgs {
            url: &url,
            items: "2:4,7",
            socket_timeout_secs: 9,
            proxy: Some("http://127.0.0.1:1"),
            site: None,
        }
        .to_args();
        for flag in
            ["--ignore-config", "--no-exec", "--flat-playlist", "--dump-single-json", "--skip-download"]
        {
            assert!(args.iter().any(|a| a == flag), "{flag} missing");
        }
        assert!(args.windows(2).any(|w| w[0] == "--playlist-items" && w[1] == "2:4,7"));
        assert!(args.windows(2).any(|w| w[0] == "--proxy" && w[1] == "http://127.0.0.1:1"));
        assert_eq!(args[args.len() - 2..], ["--".to_owned(), "https://example.com/feed.xml".to_owned()]);
    }

    #[test]
    fn a_flat_rss_listing_names_the_selected_entries_by_position() {
        let raw = include_str!("../../tests/fixtures/ytdlp-2026.10.26-rss-flat-items-2-4-7.info.json");
        let c = parse_listing(raw, 1).expect("json").expect("a collection");
        assert_eq!(c.title.as_deref(), Some("Fixture feed"));
        assert_eq!(c.entry_count, Some(12));
        assert_eq!(c.extractor.as_deref(), Some("Generic"));
        let idx: Vec<u64> = c.entries.iter().map(|e| e.index).collect();
        assert_eq!(idx, [2, 3, 4, 7]);
        assert_eq!(c.entries[0].title.as_deref(), Some("Clip 2"));
        assert_eq!(c.entries[0].duration, Some(2.0));
        assert_eq!(c.entries[3].duration, None);
        assert_eq!(c.entries[0].url.as_deref(), Some("http://127.0.0.1:18777/v2.mp4"));

        let tail = include_str!("../../tests/fixtures/ytdlp-2026.10.26-rss-flat-items-11-20.info.json");
        let c = parse_listing(tail, 11).expect("json").expect("a collection");
        assert_eq!(c.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [11, 12]);
    }

    #[test]
    fn a_single_video_is_not_a_collection_and_garbage_is_an_error() {
        let raw = include_str!("../../tests/fixtures/ytdlp-2026.10.26-direct-mp4.info.json");
        assert_eq!(parse_listing(raw, 1).expect("json"), None);
        assert!(matches!(parse_listing("nope", 1), Err(ParseError::NotJson)));
        let c =
            parse_listing(r#"{"_type":"playlist","entries":[{"url":"javascript:x"},null,{"title":"t"}]}"#, 5)
                .expect("json")
                .expect("collection");
        assert_eq!(c.entries.len(), 2);
        assert_eq!(c.entries[0].url, None, "only http(s) URLs are kept");
        assert_eq!(c.entries[1].index, 7, "numbered by position when yt-dlp does not say");
    }
}
