//! The media URL a user submits. Parsed with the WHATWG parser of the `url` crate,
//! which normalises odd IPv4 spellings (`127.1`, `2130706433`, `0x7f000001`) to
//! dotted form, so the address policy sees what yt-dlp will connect to; the
//! normalised string is what is stored and passed on.

use crate::Code;
use std::{fmt, net::IpAddr, time::Duration};

use serde::{Deserialize, Serialize};

use super::{Blocked, EgressPolicy, ValidationError};

const FIELD: &str = "url";
const MAX_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SourceUrl(String);

impl SourceUrl {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let invalid = |msg: &str| ValidationError::new(FIELD, Code::InvalidUrl, msg);
        if raw.is_empty() {
            return Err(invalid("is required"));
        }
        if raw.len() > MAX_LEN {
            return Err(invalid("is longer than 2048 bytes"));
        }
        if raw.starts_with('-') {
            return Err(invalid("must be an http(s) URL, not an option"));
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid("must not contain whitespace or control characters"));
        }
        let mut url = ::url::Url::parse(raw).map_err(|e| invalid(&format!("is not a valid URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ValidationError::new(
                FIELD,
                Code::UnsupportedScheme,
                format!("scheme '{}' is not allowed; use http or https", url.scheme()),
            ));
        }
        if url.host().is_none() {
            return Err(invalid("has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("must not contain credentials"));
        }
        url.set_fragment(None);
        Ok(SourceUrl(url.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host: a lower-case name, or an IP address without brackets.
    pub fn host(&self) -> String {
        match self.parsed().host() {
            Some(::url::Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
            Some(::url::Host::Ipv4(ip)) => ip.to_string(),
            Some(::url::Host::Ipv6(ip)) => ip.to_string(),
            None => String::new(),
        }
    }

    fn parsed(&self) -> ::url::Url {
        // Invariant: self.0 came out of Url::parse + serialisation, so it parses again.
        ::url::Url::parse(&self.0).expect("SourceUrl holds a normalised URL")
    }
}

impl TryFrom<String> for SourceUrl {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SourceUrl::parse(&s)
    }
}

impl From<SourceUrl> for String {
    fn from(u: SourceUrl) -> String {
        u.0
    }
}

impl fmt::Display for SourceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl EgressPolicy {
    /// Checks a submitted URL before anything is queued: an IP literal is judged
    /// directly; a name is resolved (DNS only, nothing is connected to) and refused
    /// when any of its addresses is. This is the early, friendly answer; the egress
    /// guard (`crates/egress`) enforces the same policy at connect time for every
    /// hop (redirects, embedded URLs, manifests), which is what makes it hold.
    pub async fn check_url(&self, url: &SourceUrl) -> Result<(), ValidationError> {
        let parsed = url.parsed();
        let refused = |blocked: Blocked| {
            ValidationError::new(
                FIELD,
                Code::PrivateAddress,
                format!("{blocked}; requests to private networks are disabled"),
            )
        };
        let host = match parsed.host() {
            Some(::url::Host::Ipv4(ip)) => return self.check(IpAddr::V4(ip)).map_err(refused),
            Some(::url::Host::Ipv6(ip)) => return self.check(IpAddr::V6(ip)).map_err(refused),
            Some(::url::Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
            None => return Err(ValidationError::new(FIELD, Code::InvalidUrl, "has no host")),
        };
        if self.allow_private_networks {
            // Names are resolved (and checked) at connect time by the egress guard.
            return Ok(());
        }
        if is_internal_name(&host) {
            return Err(ValidationError::new(
                FIELD,
                Code::PrivateAddress,
                format!("host '{host}' is not a public address; requests to private networks are disabled"),
            ));
        }
        let port = parsed.port_or_known_default().unwrap_or(80);
        let lookup =
            tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((host.as_str(), port)))
                .await;
        let addrs: Vec<_> = match lookup {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(_)) | Err(_) => {
                return Err(ValidationError::new(
                    FIELD,
                    Code::UnresolvableHost,
                    format!("host '{host}' does not resolve"),
                ));
            }
        };
        if addrs.is_empty() {
            return Err(ValidationError::new(
                FIELD,
                Code::UnresolvableHost,
                format!("host '{host}' has no addresses"),
            ));
        }
        for addr in addrs {
            self.check(addr.ip()).map_err(|b| {
                ValidationError::new(
                    FIELD,
                    Code::PrivateAddress,
                    format!("host '{host}' resolves to {b}; requests to private networks are disabled"),
                )
            })?;
        }
        Ok(())
    }
}

/// Names that mean "this machine or its private network" whatever DNS says.
fn is_internal_name(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host.ends_with(".local")
        || host.ends_with(".internal")
        || host.ends_with(".home.arpa")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(raw: &str) -> &'static str {
        SourceUrl::parse(raw).expect_err("must be refused").code.as_str()
    }

    #[test]
    fn options_and_non_http_schemes_are_refused() {
        assert_eq!(code("--version"), "invalid_url");
        assert_eq!(code("--exec=touch /tmp/x"), "invalid_url");
        assert_eq!(code("file:///etc/passwd"), "unsupported_scheme");
        assert_eq!(code("ftp://example.com/a.mp4"), "unsupported_scheme");
        assert_eq!(code("ytsearch:cats"), "unsupported_scheme");
        assert_eq!(code(""), "invalid_url");
        assert_eq!(code("http://exa mple.com/"), "invalid_url");
        assert_eq!(code("http://user:pw@example.com/"), "invalid_url");
        assert_eq!(code(&format!("https://example.com/{}", "a".repeat(2100))), "invalid_url");
    }

    #[test]
    fn odd_ipv4_spellings_are_normalised() {
        for raw in ["http://127.1:8080/x", "http://2130706433:8080/x", "http://0x7f000001:8080/x"] {
            assert_eq!(SourceUrl::parse(raw).expect("parses").as_str(), "http://127.0.0.1:8080/x");
        }
        let u = SourceUrl::parse("https://Example.COM/v.mp4#frag").expect("parses");
        assert_eq!(u.as_str(), "https://example.com/v.mp4");
    }

    #[tokio::test]
    async fn literal_private_addresses_are_refused_without_any_lookup() {
        let policy = EgressPolicy { allow_private_networks: false, allowed_networks: Vec::new() };
        for raw in [
            "http://127.0.0.1:9/x",
            "http://127.1:9/x",
            "http://[::1]:9/x",
            "http://10.1.2.3/x",
            "http://169.254.169.254/latest",
            "http://[::ffff:10.0.0.1]/x",
            "http://localhost:9/x",
            "http://svc.internal/x",
            "http://printer.local/x",
        ] {
            let url = SourceUrl::parse(raw).expect("parses");
            let err = policy.check_url(&url).await.expect_err(raw);
            assert_eq!(err.code, Code::PrivateAddress, "{raw}");
        }
        let allowed = EgressPolicy { allow_private_networks: true, allowed_networks: Vec::new() };
        let url = SourceUrl::parse("http://127.0.0.1:9/x").expect("parses");
        assert!(allowed.check_url(&url).await.is_ok());
        let metadata = SourceUrl::parse("http://169.254.169.254/latest").expect("parses");
        assert!(
            allowed.check_url(&metadata).await.is_err(),
            "metadata is refused even when private is allowed"
        );
        let one = EgressPolicy {
            allow_private_networks: false,
            allowed_networks: crate::validate::parse_networks("127.0.0.1/32").expect("cidr"),
        };
        assert!(one.check_url(&url).await.is_ok());
        let other = SourceUrl::parse("http://127.0.0.2:9/x").expect("parses");
        let err = one.check_url(&other).await.expect_err("127.0.0.2 is not allowed");
        assert!(err.message.contains("127.0.0.2 is a loopback address"), "{err}");
    }

    #[tokio::test]
    async fn public_literal_addresses_pass() {
        let policy = EgressPolicy { allow_private_networks: false, allowed_networks: Vec::new() };
        let url = SourceUrl::parse("http://93.184.215.14/video.mp4").expect("parses");
        assert!(policy.check_url(&url).await.is_ok());
    }
}
