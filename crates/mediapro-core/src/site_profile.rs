//! Site profiles: per-site settings that every download and analyze of a matching
//! URL uses — cookies, headers, user agent, a default format, yt-dlp's request
//! pacing, an upstream proxy (chained behind the egress guard), the site's job
//! limits (`max_concurrent`, `min_interval_seconds`, enforced across hosts by
//! `crates/queue/src/site_gate.rs`) and a `check_url` whose analyze tells whether
//! the profile still works.
//!
//! A profile names domains; a host matches a domain when it is the domain or a
//! subdomain of it (`example.com` matches `www.example.com`, never
//! `badexample.com`); an IP address matches only itself. Of several matching
//! profiles the one with the longest matching domain wins ([`pick`]).
//!
//! Stored by `store/site_profile.rs` (`migrations/20261204000002_site_profiles.sql`);
//! served by `crates/api/src/routes/site_profiles.rs`.

pub mod cookies;
pub mod run;

use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::{
    Code,
    validate::{EgressPolicy, FormatSelector, SourceUrl, ValidationError},
};

pub use cookies::{CookieError, CookieSummary, parse_cookies};
pub use run::{PrivateCookies, check, check_and_record, check_due};

pub const MAX_NAME_LEN: usize = 64;
pub const MAX_DOMAINS: usize = 32;
pub const MAX_HEADERS: usize = 32;
const MAX_HEADER_NAME: usize = 64;
const MAX_HEADER_VALUE: usize = 1024;
const MAX_USER_AGENT: usize = 512;
const MAX_CONCURRENT: u32 = 1000;
const MAX_INTERVAL_SECONDS: f64 = 86_400.0;
const MAX_SLEEP_SECONDS: f64 = 3_600.0;
/// Headers a profile may not set: the cookies file sets `Cookie`, `user_agent` the
/// user agent, and the rest describe the connection, not the request.
const RESERVED_HEADERS: &[&str] = &[
    "cookie",
    "user-agent",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
];

/// `PUT /api/site-profiles/{name}`: the whole profile (a PUT replaces every field;
/// the uploaded cookies and the health are kept).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteProfileBody {
    /// Domains (and IP addresses) the profile applies to: a domain matches itself
    /// and its subdomains, an IP address only itself. 1 to 32.
    #[serde(default)]
    #[schema(value_type = Vec<String>, required = true, example = json!(["example.com"]))]
    pub domains: Option<Vec<String>>,
    /// Jobs of this site running at once across all workers and hosts (1–1000).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_concurrent: Option<u32>,
    /// Seconds between two job starts for this site, across hosts (0–86400).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 86400)]
    pub min_interval_seconds: Option<f64>,
    /// yt-dlp's `--sleep-requests`: seconds between its requests during extraction (0–3600).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 3600)]
    pub sleep_requests_seconds: Option<f64>,
    /// yt-dlp's `--sleep-interval`: seconds before each download (0–3600).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 3600)]
    pub sleep_interval_seconds: Option<f64>,
    /// The `User-Agent` yt-dlp sends (printable ASCII, at most 512 characters).
    #[serde(default)]
    pub user_agent: Option<String>,
    /// Extra request headers (at most 32; not `Cookie`, `User-Agent`, `Host` or
    /// connection headers).
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// The format selector a download of this site uses when it names none.
    #[serde(default)]
    #[schema(max_length = 128)]
    pub format_id: Option<String>,
    /// `http://host:port` of an HTTP proxy the egress guard connects through
    /// (yt-dlp → egress guard → upstream proxy → site; the guard's policy applies
    /// to both the proxy's address and the site's).
    #[serde(default)]
    pub upstream_proxy: Option<String>,
    /// A URL of the site whose analyze must succeed for the profile to be healthy.
    #[serde(default)]
    pub check_url: Option<String>,
}

impl crate::body::JsonBody for SiteProfileBody {
    const OBJECT_FIELDS: &'static [&'static str] = &["headers"];
}

/// A site profile as stored and as every GET answers it. Cookie values are never
/// part of it: `cookies` is only a summary of the uploaded file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SiteProfile {
    pub name: String,
    /// Normalised: lower case, no trailing dot, IDNA (punycode), IP addresses in
    /// their canonical form.
    pub domains: Vec<String>,
    pub max_concurrent: Option<u32>,
    pub min_interval_seconds: Option<f64>,
    pub sleep_requests_seconds: Option<f64>,
    pub sleep_interval_seconds: Option<f64>,
    pub user_agent: Option<String>,
    pub headers: BTreeMap<String, String>,
    #[schema(value_type = Option<String>)]
    pub format_id: Option<FormatSelector>,
    #[schema(value_type = Option<String>)]
    pub upstream_proxy: Option<UpstreamProxy>,
    #[schema(value_type = Option<String>)]
    pub check_url: Option<SourceUrl>,
    /// The uploaded cookies file (`PUT …/cookies`), summarised; `null` when none.
    pub cookies: Option<CookieSummary>,
    /// Whether the last analyze of `check_url` succeeded; `null` until checked (or
    /// without `check_url`).
    pub healthy: Option<bool>,
    /// When `check_url` was last checked (RFC 3339).
    #[schema(format = DateTime)]
    pub checked_at: Option<String>,
    /// Why the last check failed.
    pub check_error: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// The part of a profile its `PUT` sets (stored as JSON in `site_profiles.config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteConfig {
    pub domains: Vec<String>,
    pub max_concurrent: Option<u32>,
    pub min_interval_seconds: Option<f64>,
    pub sleep_requests_seconds: Option<f64>,
    pub sleep_interval_seconds: Option<f64>,
    pub user_agent: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub format_id: Option<FormatSelector>,
    pub upstream_proxy: Option<UpstreamProxy>,
    pub check_url: Option<SourceUrl>,
}

impl SiteProfile {
    /// The profile with `config`, the rest (cookies, health, times) as given.
    pub fn config(&self) -> SiteConfig {
        SiteConfig {
            domains: self.domains.clone(),
            max_concurrent: self.max_concurrent,
            min_interval_seconds: self.min_interval_seconds,
            sleep_requests_seconds: self.sleep_requests_seconds,
            sleep_interval_seconds: self.sleep_interval_seconds,
            user_agent: self.user_agent.clone(),
            headers: self.headers.clone(),
            format_id: self.format_id.clone(),
            upstream_proxy: self.upstream_proxy.clone(),
            check_url: self.check_url.clone(),
        }
    }

    /// Of the profile's domains, the length of the longest one `host` matches.
    pub fn matches(&self, host: &str) -> Option<usize> {
        let host = normalize_host(host);
        self.domains.iter().filter(|d| domain_matches(d, &host)).map(String::len).max()
    }
}

/// The profile for `host`: the one with the longest domain `host` matches (equal
/// lengths: the first name in order, so the choice is stable).
pub fn pick<'a>(profiles: &'a [SiteProfile], host: &str) -> Option<&'a SiteProfile> {
    let mut best: Option<(&SiteProfile, usize)> = None;
    for p in profiles {
        if let Some(len) = p.matches(host) {
            let better = match best {
                None => true,
                Some((b, blen)) => len > blen || (len == blen && p.name < b.name),
            };
            if better {
                best = Some((p, len));
            }
        }
    }
    best.map(|(p, _)| p)
}

/// Lower case, no trailing dot, IPv6 without brackets.
fn normalize_host(host: &str) -> String {
    let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let h = h.strip_prefix('[').and_then(|h| h.strip_suffix(']')).map(str::to_owned).unwrap_or(h);
    match h.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => h,
    }
}

/// `domain` (normalised) matches `host` (normalised): equal, or a subdomain of it
/// (a suffix after a dot, never a bare substring). An IP address matches itself only.
pub fn domain_matches(domain: &str, host: &str) -> bool {
    if domain.parse::<IpAddr>().is_ok() || host.parse::<IpAddr>().is_ok() {
        return domain == host;
    }
    host == domain || host.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.'))
}

/// A profile name: 1–64 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            format!(
                "must be 1 to {MAX_NAME_LEN} of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
            ),
        ))
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(field, Code::InvalidSiteProfile, message)
}

/// A domain or IP address of `domains`, normalised.
pub fn normalize_domain(raw: &str) -> Result<String, ValidationError> {
    let bad = |why: &str| invalid("domains", format!("'{raw}' {why}"));
    let trimmed = raw.trim().trim_end_matches('.');
    if trimmed.is_empty() {
        return Err(bad("is empty"));
    }
    if trimmed.contains(['*', '/', ':', '@', '?', '#']) && trimmed.parse::<IpAddr>().is_err() {
        let unbracketed = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
        if let Some(ip) = unbracketed.and_then(|t| t.parse::<IpAddr>().ok()) {
            return Ok(ip.to_string());
        }
        return Err(bad("is not a domain name or IP address (no scheme, port, path or wildcard)"));
    }
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let host = ::url::Host::parse(trimmed).map_err(|e| bad(&format!("is not a host name ({e})")))?;
    let name = match host {
        ::url::Host::Domain(d) => d.to_ascii_lowercase(),
        // `127.1` and other IPv4 spellings: the address itself.
        ::url::Host::Ipv4(ip) => return Ok(ip.to_string()),
        ::url::Host::Ipv6(ip) => return Ok(ip.to_string()),
    };
    let labels_ok = name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if !labels_ok {
        return Err(bad("is not a host name (labels of a-z, 0-9, '-', at most 63 each)"));
    }
    Ok(name)
}

/// An upstream HTTP proxy, `http://host:port` (no credentials, path or query).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UpstreamProxy {
    host: String,
    port: u16,
}

impl UpstreamProxy {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let bad = |why: &str| invalid("upstream_proxy", format!("'{raw}' {why}"));
        let url = ::url::Url::parse(raw).map_err(|e| bad(&format!("is not a URL ({e})")))?;
        if url.scheme() != "http" {
            return Err(bad("must be an http:// proxy URL"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not contain credentials"));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must be http://host:port with no path or query"));
        }
        let host = match url.host() {
            Some(::url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(::url::Host::Ipv4(ip)) => ip.to_string(),
            Some(::url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(bad("has no host")),
        };
        let port = url.port_or_known_default().ok_or_else(|| bad("has no port"))?;
        Ok(UpstreamProxy { host, port })
    }

    /// The host (a name or an IP literal without brackets) the guard connects to.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl std::fmt::Display for UpstreamProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "http://{}:{}", self.host, self.port)
        }
    }
}

impl TryFrom<String> for UpstreamProxy {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        UpstreamProxy::parse(&s)
    }
}

impl From<UpstreamProxy> for String {
    fn from(p: UpstreamProxy) -> String {
        p.to_string()
    }
}

fn seconds(field: &'static str, v: Option<f64>, max: f64) -> Result<Option<f64>, ValidationError> {
    match v {
        Some(s) if !s.is_finite() || !(0.0..=max).contains(&s) => {
            Err(invalid(field, format!("must be a number of seconds from 0 to {max}")))
        }
        other => Ok(other),
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn printable(s: &str) -> bool {
    s.chars().all(|c| c == '\t' || (' '..='~').contains(&c))
}

impl SiteProfileBody {
    /// The validated settings; `check_url` is also checked against the egress policy.
    pub async fn validate(self, policy: &EgressPolicy) -> Result<SiteConfig, ValidationError> {
        let raw_domains = self.domains.ok_or_else(|| invalid("domains", "is required"))?;
        if raw_domains.is_empty() || raw_domains.len() > MAX_DOMAINS {
            return Err(invalid("domains", format!("must list 1 to {MAX_DOMAINS} domains")));
        }
        let mut domains = Vec::with_capacity(raw_domains.len());
        for d in &raw_domains {
            let d = normalize_domain(d)?;
            if !domains.contains(&d) {
                domains.push(d);
            }
        }
        if let Some(n) = self.max_concurrent
            && !(1..=MAX_CONCURRENT).contains(&n)
        {
            return Err(invalid("max_concurrent", format!("must be from 1 to {MAX_CONCURRENT}")));
        }
        let min_interval_seconds =
            seconds("min_interval_seconds", self.min_interval_seconds, MAX_INTERVAL_SECONDS)?;
        let sleep_requests_seconds =
            seconds("sleep_requests_seconds", self.sleep_requests_seconds, MAX_SLEEP_SECONDS)?;
        let sleep_interval_seconds =
            seconds("sleep_interval_seconds", self.sleep_interval_seconds, MAX_SLEEP_SECONDS)?;
        if let Some(ua) = &self.user_agent
            && (ua.trim().is_empty() || ua.len() > MAX_USER_AGENT || !printable(ua) || ua.contains('\t'))
        {
            return Err(invalid(
                "user_agent",
                format!("must be 1 to {MAX_USER_AGENT} printable ASCII characters"),
            ));
        }
        let headers = self.headers.unwrap_or_default();
        if headers.len() > MAX_HEADERS {
            return Err(invalid("headers", format!("at most {MAX_HEADERS} headers")));
        }
        for (name, value) in &headers {
            if name.is_empty() || name.len() > MAX_HEADER_NAME || !name.chars().all(is_token_char) {
                return Err(invalid("headers", format!("'{name}' is not a header name")));
            }
            let lower = name.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
                return Err(invalid(
                    "headers",
                    format!("'{name}' may not be set here (cookies: PUT …/cookies; user agent: user_agent)"),
                ));
            }
            if value.len() > MAX_HEADER_VALUE || !printable(value) {
                return Err(invalid(
                    "headers",
                    format!(
                        "the value of '{name}' must be at most {MAX_HEADER_VALUE} printable ASCII characters"
                    ),
                ));
            }
        }
        let format_id = self
            .format_id
            .as_deref()
            .map(FormatSelector::parse)
            .transpose()
            .map_err(|e| ValidationError::new("format_id", e.code, e.message))?;
        let upstream_proxy = self.upstream_proxy.as_deref().map(UpstreamProxy::parse).transpose()?;
        let check_url = match self.check_url.as_deref() {
            None => None,
            Some(raw) => {
                let rename = |e: ValidationError| ValidationError::new("check_url", e.code, e.message);
                let url = SourceUrl::parse(raw).map_err(rename)?;
                policy.check_url(&url).await.map_err(rename)?;
                Some(url)
            }
        };
        Ok(SiteConfig {
            domains,
            max_concurrent: self.max_concurrent,
            min_interval_seconds,
            sleep_requests_seconds,
            sleep_interval_seconds,
            user_agent: self.user_agent,
            headers,
            format_id,
            upstream_proxy,
            check_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str, domains: &[&str]) -> SiteProfile {
        SiteProfile {
            name: name.into(),
            domains: domains.iter().map(|d| normalize_domain(d).expect("domain")).collect(),
            max_concurrent: None,
            min_interval_seconds: None,
            sleep_requests_seconds: None,
            sleep_interval_seconds: None,
            user_agent: None,
            headers: BTreeMap::new(),
            format_id: None,
            upstream_proxy: None,
            check_url: None,
            cookies: None,
            healthy: None,
            checked_at: None,
            check_error: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn a_domain_matches_itself_and_its_subdomains_never_a_substring() {
        let p = profile("ex", &["example.com"]);
        for host in ["example.com", "www.example.com", "a.b.example.com", "EXAMPLE.com.", "Www.Example.Com"] {
            assert_eq!(p.matches(host), Some(11), "{host}");
        }
        for host in
            ["badexample.com", "example.com.evil.org", "example.co", "com", "xexample.com", "127.0.0.1"]
        {
            assert_eq!(p.matches(host), None, "{host}");
        }
    }

    #[test]
    fn an_ip_address_matches_only_itself() {
        let p = profile("local", &["127.0.0.1", "[::1]"]);
        assert!(p.matches("127.0.0.1").is_some());
        assert!(p.matches("::1").is_some());
        assert!(p.matches("[::1]").is_some());
        for host in ["127.0.0.2", "1.127.0.0.1", "127.0.0.10", "x.127.0.0.1", "0:0:0:0:0:0:0:2"] {
            assert_eq!(p.matches(host), None, "{host}");
        }
        // An IPv4 spelling is normalised to the address it names.
        assert_eq!(normalize_domain("127.1").expect("ip"), "127.0.0.1");
        // A domain never matches an address host, even one that ends like it.
        let d = profile("d", &["0.0.1"]);
        assert_eq!(d.domains, ["0.0.0.1"], "0.0.1 is an IPv4 spelling");
    }

    #[test]
    fn pick_takes_the_longest_matching_domain() {
        let profiles = vec![
            profile("wide", &["example.com"]),
            profile("narrow", &["media.example.com"]),
            profile("other", &["example.org", "127.0.0.1"]),
        ];
        let name = |host: &str| pick(&profiles, host).map(|p| p.name.as_str());
        assert_eq!(name("www.example.com"), Some("wide"));
        assert_eq!(name("cdn.media.example.com"), Some("narrow"));
        assert_eq!(name("media.example.com"), Some("narrow"));
        assert_eq!(name("127.0.0.1"), Some("other"));
        assert_eq!(name("badexample.com"), None);
        assert_eq!(name("example.net"), None);
        // A tie is decided by name, whatever the order.
        let tie = vec![profile("b", &["x.com"]), profile("a", &["x.com"])];
        assert_eq!(pick(&tie, "x.com").map(|p| p.name.as_str()), Some("a"));
    }

    #[test]
    fn domains_are_normalised_and_junk_refused() {
        assert_eq!(normalize_domain(" WWW.Example.COM. ").expect("ok"), "www.example.com");
        assert_eq!(normalize_domain("bücher.example").expect("idn"), "xn--bcher-kva.example");
        assert_eq!(normalize_domain("[::1]").expect("v6"), "::1");
        assert_eq!(normalize_domain("localhost").expect("single label"), "localhost");
        for bad in ["", "*.example.com", "http://example.com", "example.com:80", "a..b", "-a.com", "a b.com"]
        {
            let err = normalize_domain(bad).expect_err(bad);
            assert_eq!(err.code, Code::InvalidSiteProfile, "{bad}");
        }
    }

    #[test]
    fn names_are_restricted() {
        for ok in ["example", "ex-1", "a.b_c"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Ex", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    const OPEN: EgressPolicy = EgressPolicy { allow_private_networks: true, allowed_networks: Vec::new() };

    #[tokio::test]
    async fn the_body_is_validated_field_by_field() {
        let body: SiteProfileBody = serde_json::from_value(serde_json::json!({
            "domains": ["Example.com", "example.com", "127.0.0.1"],
            "max_concurrent": 2,
            "min_interval_seconds": 1.5,
            "sleep_requests_seconds": 0.25,
            "user_agent": "Mozilla/5.0 (X11) MediaPro",
            "headers": {"Referer": "https://example.com/", "X-Test": "1"},
            "format_id": "bv*+ba/b",
            "upstream_proxy": "http://127.0.0.1:3128",
            "check_url": "http://127.0.0.1:9/check"
        }))
        .expect("body");
        let c = body.validate(&OPEN).await.expect("valid");
        assert_eq!(c.domains, ["example.com", "127.0.0.1"]);
        assert_eq!(
            c.upstream_proxy.as_ref().map(ToString::to_string).as_deref(),
            Some("http://127.0.0.1:3128")
        );
        assert_eq!(c.format_id.as_ref().map(FormatSelector::as_str), Some("bv*+ba/b"));

        let cases: &[(serde_json::Value, &str, Code)] = &[
            (serde_json::json!({}), "domains", Code::InvalidSiteProfile),
            (serde_json::json!({"domains": []}), "domains", Code::InvalidSiteProfile),
            (
                serde_json::json!({"domains": ["a.com"], "max_concurrent": 0}),
                "max_concurrent",
                Code::InvalidSiteProfile,
            ),
            (
                serde_json::json!({"domains": ["a.com"], "min_interval_seconds": -1.0}),
                "min_interval_seconds",
                Code::InvalidSiteProfile,
            ),
            (
                serde_json::json!({"domains": ["a.com"], "sleep_interval_seconds": 4000.0}),
                "sleep_interval_seconds",
                Code::InvalidSiteProfile,
            ),
            (
                serde_json::json!({"domains": ["a.com"], "user_agent": "a\nb"}),
                "user_agent",
                Code::InvalidSiteProfile,
            ),
            (
                serde_json::json!({"domains": ["a.com"], "headers": {"Cookie": "a=b"}}),
                "headers",
                Code::InvalidSiteProfile,
            ),
            (
                serde_json::json!({"domains": ["a.com"], "headers": {"Proxy-Authorization": "x"}}),
                "headers",
                Code::InvalidSiteProfile,
            ),
            (
                serde_json::json!({"domains": ["a.com"], "headers": {"X": "a\r\nB: c"}}),
                "headers",
                Code::InvalidSiteProfile,
            ),
            (
                serde_json::json!({"domains": ["a.com"], "headers": {"Bad Name": "x"}}),
                "headers",
                Code::InvalidSiteProfile,
            ),
            (
                serde_json::json!({"domains": ["a.com"], "format_id": "--exec"}),
                "format_id",
                Code::InvalidFormatId,
            ),
            (
                serde_json::json!({"domains": ["a.com"], "upstream_proxy": "socks5://127.0.0.1:1080"}),
                "upstream_proxy",
                Code::InvalidSiteProfile,
            ),
            (
                serde_json::json!({"domains": ["a.com"], "upstream_proxy": "http://u:p@127.0.0.1:1"}),
                "upstream_proxy",
                Code::InvalidSiteProfile,
            ),
            (
                serde_json::json!({"domains": ["a.com"], "check_url": "ftp://a.com/"}),
                "check_url",
                Code::UnsupportedScheme,
            ),
        ];
        for (json, field, code) in cases {
            let body: SiteProfileBody = serde_json::from_value(json.clone()).expect("shape");
            let err = body.validate(&OPEN).await.expect_err(&json.to_string());
            assert_eq!((err.field, err.code), (*field, *code), "{json}");
        }
        let closed = EgressPolicy { allow_private_networks: false, allowed_networks: Vec::new() };
        let body = SiteProfileBody {
            domains: Some(vec!["a.com".into()]),
            check_url: Some("http://127.0.0.1/x".into()),
            ..Default::default()
        };
        let err = body.validate(&closed).await.expect_err("private check_url");
        assert_eq!((err.field, err.code), ("check_url", Code::PrivateAddress));
    }
}
