//! Subtitle language tags (`en`, `zh-CN`, `pt-BR`): plain BCP-47-like tags only,
//! never yt-dlp's regexes, `all` or `-` exclusions.

use crate::Code;
use serde::{Deserialize, Serialize};

use super::ValidationError;

const FIELD: &str = "subtitle_langs";
pub const MAX_LANGS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubtitleLang(String);

impl SubtitleLang {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let mut parts = raw.split('-');
        let primary = parts.next().unwrap_or_default();
        let primary_ok = (2..=3).contains(&primary.len()) && primary.chars().all(|c| c.is_ascii_alphabetic());
        let subtags: Vec<&str> = parts.collect();
        let subtags_ok = subtags.len() <= 2
            && subtags
                .iter()
                .all(|s| (2..=8).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric()));
        if primary_ok && subtags_ok && !raw.eq_ignore_ascii_case("all") {
            Ok(SubtitleLang(raw.to_owned()))
        } else {
            Err(ValidationError::new(
                FIELD,
                Code::InvalidSubtitleLang,
                format!("'{}' is not a language tag like 'en' or 'zh-CN'", raw.escape_debug()),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SubtitleLang {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SubtitleLang::parse(&s)
    }
}

impl From<SubtitleLang> for String {
    fn from(l: SubtitleLang) -> String {
        l.0
    }
}

/// Up to eight distinct language tags.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubtitleLangs(Vec<SubtitleLang>);

impl SubtitleLangs {
    pub fn parse(raw: &[String]) -> Result<Self, ValidationError> {
        if raw.len() > MAX_LANGS {
            return Err(ValidationError::new(
                FIELD,
                Code::TooManySubtitleLangs,
                format!("at most {MAX_LANGS} languages"),
            ));
        }
        let mut langs: Vec<SubtitleLang> = Vec::with_capacity(raw.len());
        for r in raw {
            let lang = SubtitleLang::parse(r)?;
            if !langs.contains(&lang) {
                langs.push(lang);
            }
        }
        Ok(SubtitleLangs(langs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &SubtitleLang> {
        self.0.iter()
    }

    /// The comma-joined list yt-dlp's `--sub-langs` takes; safe because every tag
    /// was validated to contain no comma or regex syntax.
    pub fn joined(&self) -> String {
        self.0.iter().map(SubtitleLang::as_str).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn langs(v: &[&str]) -> Result<SubtitleLangs, ValidationError> {
        SubtitleLangs::parse(&v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn tags_are_accepted_and_joined() {
        let l = langs(&["zh-CN", "en", "pt-BR", "en", "zh-Hant-TW"]).expect("valid");
        assert_eq!(l.joined(), "zh-CN,en,pt-BR,zh-Hant-TW");
    }

    #[test]
    fn regexes_options_and_lists_are_refused() {
        for bad in
            ["all", "en.*", "-live_chat", "en,--exec=x", "", "e", "english1", "en-", "en--US", "a-b-c-d"]
        {
            assert!(langs(&[bad]).is_err(), "{bad} must be refused");
        }
        assert!(langs(&["en"; 9]).is_err());
    }
}
