//! A yt-dlp format selector of bounded syntax. yt-dlp's `-f` is a small language;
//! we accept the useful subset: alternatives separated by `/`, each a `+`-merge of
//! atoms, an atom being a format id or a `b`/`bv`/`ba`/`w`… keyword (optionally with
//! `*`) followed by simple `[key<op>value]` filters. `all`/`mergeall` (download
//! every format) and anything that looks like an option are refused.

use crate::Code;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::ValidationError;

const FIELD: &str = "format_id";
const MAX_LEN: usize = 128;
const FORBIDDEN_ATOMS: &[&str] = &["all", "mergeall", "allvideo", "allaudio"];
const OPERATORS: &[&str] = &["<=", ">=", "!=", "^=", "$=", "*=", "~=", "<", ">", "="];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FormatSelector(String);

impl FormatSelector {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let bad = |msg: String| ValidationError::new(FIELD, Code::InvalidFormatId, msg);
        if raw.is_empty() {
            return Err(bad("must not be empty".into()));
        }
        if raw.len() > MAX_LEN {
            return Err(bad(format!("is longer than {MAX_LEN} characters")));
        }
        if raw.starts_with('-') {
            return Err(bad("must not start with '-'".into()));
        }
        if let Some(c) = raw.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(format!("must not contain whitespace or control characters ({c:?})")));
        }
        for alternative in raw.split('/') {
            for atom in alternative.split('+') {
                check_atom(atom).map_err(|why| bad(format!("'{atom}': {why}")))?;
            }
        }
        Ok(FormatSelector(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_atom(atom: &str) -> Result<(), String> {
    let (base, filters) = match atom.find('[') {
        Some(i) => atom.split_at(i),
        None => (atom, ""),
    };
    let base = base.strip_suffix('*').unwrap_or(base);
    if base.is_empty() && filters.is_empty() {
        return Err("empty format".into());
    }
    if !base.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err("format ids use letters, digits, '_', '.', '-'".into());
    }
    if base.starts_with('-') {
        return Err("must not start with '-'".into());
    }
    if FORBIDDEN_ATOMS.contains(&base.to_ascii_lowercase().as_str()) {
        return Err("downloading every format is not allowed".into());
    }
    let mut rest = filters;
    while !rest.is_empty() {
        let inner_end = rest.find(']').ok_or("unclosed '['")?;
        let filter = rest.get(1..inner_end).ok_or("malformed filter")?;
        check_filter(filter)?;
        rest = &rest[inner_end + 1..];
        if !rest.is_empty() && !rest.starts_with('[') {
            return Err("text after a filter".into());
        }
    }
    Ok(())
}

/// `key<op>value`, e.g. `height<=720`, `ext=mp4`, `filesize<?50M`.
fn check_filter(filter: &str) -> Result<(), String> {
    let key_end =
        filter.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).ok_or("filter needs an operator")?;
    let (key, rest) = filter.split_at(key_end);
    if key.is_empty() {
        return Err("filter needs a field name".into());
    }
    let rest = rest.strip_prefix('!').unwrap_or(rest);
    let op = OPERATORS.iter().find(|op| rest.starts_with(*op)).ok_or("unknown filter operator")?;
    let value = &rest[op.len()..];
    let value = value.strip_prefix('?').unwrap_or(value);
    if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err("filter values use letters, digits, '_', '.', '-'".into());
    }
    Ok(())
}

impl TryFrom<String> for FormatSelector {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        FormatSelector::parse(&s)
    }
}

impl From<FormatSelector> for String {
    fn from(f: FormatSelector) -> String {
        f.0
    }
}

impl fmt::Display for FormatSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_selectors_are_accepted() {
        for ok in [
            "best",
            "137+140",
            "bv*+ba/b",
            "bestvideo[height<=720]+bestaudio/best",
            "18",
            "hls-1080p",
            "180p",
            "b[ext=mp4]",
            "bv[height<=?1080][fps>30]+ba",
            "dash-video_1.2",
            "worst",
            "ba[acodec^=mp4a]",
        ] {
            assert!(FormatSelector::parse(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn dangerous_or_malformed_selectors_are_refused() {
        for bad in [
            "all",
            "mergeall",
            "bv+all",
            "ALL",
            "-f",
            "--exec=touch",
            "best /x",
            "b[height<=720",
            "b[height<=720]x",
            "b[height<=$(id)]",
            "b;id",
            "a,b",
            "",
            "b[]",
            "+",
            "b//",
            &"1".repeat(129),
        ] {
            let err = FormatSelector::parse(bad).expect_err(bad);
            assert_eq!(err.field, "format_id");
        }
    }
}
