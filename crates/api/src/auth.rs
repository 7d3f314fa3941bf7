//! API-key authentication, decided after routing and denied by default.
//!
//! Every resource is registered through `routes::resource(path, Access)`
//! (`crates/api/src/routes/mod.rs`), which wraps it in [`authorize`]. A resource-level
//! middleware runs only once the router has matched the (percent-decoded) path, so no
//! spelling of a path reaches a handler without passing the check; a path that matches
//! nothing gets the JSON 404 and reaches no handler either.
//!
//! Keys come from `security.api_keys` (full) and `security.read_api_keys` (GET only);
//! an entry is the key or `sha256:<hex>`. Only SHA-256 digests are kept, and a
//! presented key is compared with every one in constant time. With no keys at all the
//! API serves only requests addressed to a loopback host (DNS rebinding), unless
//! `security.allow_anonymous` is set.
//!
//! The module also holds the access log ([`access_log`]), which reads the
//! [`Principal`] the check leaves in the request's extensions and records the
//! request metrics.

use std::{
    net::{IpAddr, Ipv6Addr},
    time::Instant,
};

use actix_web::{
    Error, HttpMessage, HttpResponse, ResponseError,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        Method,
        header::{self, HeaderValue},
    },
    middleware::Next,
    web,
};
use mediapro_core::{Code, metrics::Metrics, settings::SecuritySettings};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::{error::ApiError, state::AppState};

/// What a route needs (declared at registration) and what a request holds
/// ([`Principal::access`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No key needed: health checks and the web UI's static files.
    Open,
    /// A read or full key for `GET`/`HEAD`; any other method on the resource needs a
    /// full key, so a read key never changes anything.
    Read,
    /// A full key, whatever the method.
    Write,
}

/// Who is calling, for handlers, the access log and rate limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// [`key_id`] of the key presented; `None` for anonymous requests.
    pub key_id: Option<String>,
    /// `Write` for a full key (or anonymous access when no key is configured), `Read`
    /// for a read key, `Open` for a request without a valid key on an open route.
    pub access: Access,
}

impl Principal {
    /// `full`, `read` or `anonymous` (`GET /api/whoami`).
    pub fn describe(&self) -> &'static str {
        match (&self.key_id, self.access) {
            (None, _) => "anonymous",
            (Some(_), Access::Write) => "full",
            (Some(_), _) => "read",
        }
    }
}

/// A key's name in logs: the first 8 hex digits of its SHA-256.
pub fn key_id(digest: &[u8; 32]) -> String {
    hex::encode(&digest[..4])
}

struct Key {
    digest: [u8; 32],
    access: Access,
    id: String,
}

/// The configured keys as digests. `Debug` shows only their ids.
pub struct Keyring {
    keys: Vec<Key>,
    allow_anonymous: bool,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<(&str, Access)> = self.keys.iter().map(|k| (k.id.as_str(), k.access)).collect();
        f.debug_struct("Keyring").field("keys", &ids).field("allow_anonymous", &self.allow_anonymous).finish()
    }
}

impl Keyring {
    /// Digests of the configured keys; fails (naming the list, never the key) on an
    /// entry `SecuritySettings::check` would refuse.
    pub fn new(security: &SecuritySettings) -> Result<Self, String> {
        security.check().map_err(|e| e.to_string())?;
        let mut keys = Vec::new();
        // Full keys first: a key listed in both lists is a full key.
        for (list, entries, access) in [
            ("security.api_keys", &security.api_keys, Access::Write),
            ("security.read_api_keys", &security.read_api_keys, Access::Read),
        ] {
            for (i, entry) in entries.iter().enumerate() {
                let digest = match entry.sha256_hex() {
                    Some(hex) => {
                        let mut digest = [0u8; 32];
                        hex::decode_to_slice(hex, &mut digest)
                            .map_err(|_| format!("{list}: entry {} is not a SHA-256", i + 1))?;
                        digest
                    }
                    None => sha256(&SecretString::from(entry.expose())),
                };
                if !keys.iter().any(|k: &Key| k.digest == digest) {
                    keys.push(Key { digest, access, id: key_id(&digest) });
                }
            }
        }
        Ok(Self { keys, allow_anonymous: security.allow_anonymous })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key with this digest, compared with every configured digest in constant
    /// time (no early exit; digests have one length, so the key's length leaks nothing).
    fn find(&self, presented: &SecretString) -> Option<&Key> {
        let digest = sha256(presented);
        let mut found = 0u32;
        for (i, key) in self.keys.iter().enumerate() {
            let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
            found = u32::conditional_select(&found, &index, key.digest.ct_eq(&digest));
        }
        let found = usize::try_from(found).ok()?;
        found.checked_sub(1).and_then(|i| self.keys.get(i))
    }
}

fn sha256(key: &SecretString) -> [u8; 32] {
    Sha256::digest(key.expose_secret().as_bytes()).into()
}

/// `Authorization: Bearer <key>` (scheme case-insensitive) or `X-API-Key: <key>`.
fn presented_key(req: &ServiceRequest) -> Option<SecretString> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let bearer = header(header::AUTHORIZATION).and_then(|v| {
        let (scheme, rest) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(rest)
    });
    bearer
        .or_else(|| header(header::HeaderName::from_static("x-api-key")))
        .map(|k| SecretString::from(k.trim()))
}

/// The middleware every resource is wrapped in (see the module comment).
pub async fn authorize(
    needed: Access,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let needed = match needed {
        Access::Read if req.method() != Method::GET && req.method() != Method::HEAD => Access::Write,
        other => other,
    };
    let Some(keyring) = req.app_data::<web::Data<Keyring>>().cloned() else {
        // No keyring: only open routes (the UI's unit tests build such an app).
        if needed == Access::Open {
            req.extensions_mut().insert(Principal { key_id: None, access: Access::Open });
            return Ok(next.call(req).await?.map_into_boxed_body());
        }
        return Ok(refuse(req, ApiError::internal("authorize: no keyring")));
    };
    let principal = if keyring.is_empty() {
        if needed != Access::Open && !keyring.allow_anonymous && !addressed_to_loopback(&req) {
            let err = ApiError::new(
                Code::Forbidden,
                "this API has no keys and answers only requests to localhost; \
                 set security.api_keys (or security.allow_anonymous = true)",
            );
            return Ok(refuse(req, err));
        }
        Principal { key_id: None, access: Access::Write }
    } else {
        match presented_key(&req).and_then(|k| keyring.find(&k)) {
            Some(key) => Principal { key_id: Some(key.id.clone()), access: key.access },
            None if needed == Access::Open => Principal { key_id: None, access: Access::Open },
            None => {
                let err = ApiError::new(Code::Unauthorized, "a valid API key is required");
                let mut res = err.error_response();
                res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return Ok(req.into_response(res).map_into_boxed_body());
            }
        }
    };
    let allowed = match needed {
        Access::Open => true,
        Access::Read => matches!(principal.access, Access::Read | Access::Write),
        Access::Write => principal.access == Access::Write,
    };
    if !allowed {
        let key = principal.key_id.clone();
        req.extensions_mut().insert(principal);
        let msg = format!("key {} may only read; this needs a full key", key.as_deref().unwrap_or("-"));
        return Ok(refuse(req, ApiError::new(Code::Forbidden, msg)));
    }
    req.extensions_mut().insert(principal);
    Ok(next.call(req).await?.map_into_boxed_body())
}

fn refuse(req: ServiceRequest, err: ApiError) -> ServiceResponse<BoxBody> {
    let res: HttpResponse = err.error_response();
    req.into_response(res).map_into_boxed_body()
}

/// Every host the request names (the `Host` header and, for HTTP/2 or an
/// absolute-form target, the URI's authority) is a loopback host; a request naming
/// none is refused.
fn addressed_to_loopback(req: &ServiceRequest) -> bool {
    let header = req.headers().get_all(header::HOST).map(|v| v.to_str().ok()).collect::<Vec<_>>();
    let authority = req.uri().authority().map(|a| Some(a.as_str()));
    let hosts: Vec<Option<&str>> = header.into_iter().chain(authority).collect();
    !hosts.is_empty() && hosts.into_iter().all(|h| h.is_some_and(is_loopback_host))
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let port_ok = |p: &str| p.is_empty() || p.strip_prefix(':').is_some_and(|d| d.parse::<u16>().is_ok());
    if let Some(rest) = host.strip_prefix('[') {
        let Some((ip, port)) = rest.split_once(']') else { return false };
        return port_ok(port) && ip.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    let (name, port) = match host.rfind(':') {
        Some(i) => host.split_at(i),
        None => (host, ""),
    };
    if !port_ok(port) {
        return false;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One line per request (target `mediapro_api::access`): method, the matched route
/// pattern (or the raw path when nothing matched), status, duration and the key's id.
/// Never the key; `/healthz` is skipped. The same method, pattern (`unmatched` when
/// nothing matched), status and duration are counted in the metrics
/// (`mediapro_http_requests_total`, `mediapro_http_request_duration_seconds`).
pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    // Owned copies: a clone of the request itself would stop the router from
    // recording the match (it needs the only reference).
    let method = req.method().clone();
    let path = req.path().to_owned();
    let metrics = req.app_data::<web::Data<AppState>>().map(|s| s.metrics.clone()).filter(Metrics::is_on);
    let result = next.call(req).await;
    let (status, pattern, key_id) = match &result {
        Ok(res) => {
            let http = res.request();
            let key_id = http.extensions().get::<Principal>().and_then(|p| p.key_id.clone());
            (res.status(), http.match_pattern(), key_id)
        }
        Err(e) => (e.as_response_error().status_code(), None, None),
    };
    let elapsed = started.elapsed();
    if let Some(metrics) = metrics {
        // The pattern, never the raw path: clients choose paths, not label values.
        let route = pattern.as_deref().and_then(crate::routes::route).map_or("unmatched", |r| r.path);
        metrics.http_request(method_label(&method), route, status.as_u16(), elapsed);
    }
    let route = pattern.unwrap_or(path);
    if route != "/healthz" {
        tracing::info!(
            target: "mediapro_api::access",
            method = %method,
            route = %route,
            status = status.as_u16(),
            duration_ms = elapsed.as_millis() as u64,
            key_id = %key_id.as_deref().unwrap_or("-"),
            "request"
        );
    }
    result
}

/// The method as a metric label: the standard ones, else `OTHER` (clients choose
/// extension methods, not label values).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use mediapro_core::settings::ApiKeyEntry;

    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in
            ["localhost", "localhost:5000", "LOCALHOST", "127.0.0.1", "127.1.2.3:80", "[::1]", "[::1]:5000"]
        {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:5000",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1",
            "[::2]:80",
            "[::1",
            "localhost:x",
            "",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    fn security(full: &[&str], read: &[&str]) -> SecuritySettings {
        SecuritySettings {
            api_keys: full.iter().map(|k| ApiKeyEntry::new(*k)).collect(),
            read_api_keys: read.iter().map(|k| ApiKeyEntry::new(*k)).collect(),
            ..SecuritySettings::default()
        }
    }

    #[test]
    fn keyring_finds_plain_and_hashed_keys() {
        let hashed = format!("sha256:{}", hex::encode(Sha256::digest(b"hashed-key-0123456789")));
        let ring = Keyring::new(&security(&["full-key-0123456789", &hashed], &["read-key-0123456789"]))
            .expect("valid");
        let find = |k: &str| ring.find(&SecretString::from(k)).map(|k| (k.access, k.id.clone()));
        assert_eq!(find("full-key-0123456789").map(|f| f.0), Some(Access::Write));
        assert_eq!(find("hashed-key-0123456789").map(|f| f.0), Some(Access::Write));
        assert_eq!(find("read-key-0123456789").map(|f| f.0), Some(Access::Read));
        assert_eq!(find("full-key-012345678"), None);
        assert_eq!(find(""), None);
        let id = find("read-key-0123456789").map(|f| f.1).unwrap_or_default();
        assert_eq!(id, hex::encode(&Sha256::digest(b"read-key-0123456789")[..4]));
        assert!(!format!("{ring:?}").contains("0123456789"));
    }

    #[test]
    fn a_key_in_both_lists_is_full() {
        let ring =
            Keyring::new(&security(&["both-key-0123456789"], &["both-key-0123456789"])).expect("valid");
        assert_eq!(
            ring.find(&SecretString::from("both-key-0123456789")).map(|k| k.access),
            Some(Access::Write)
        );
    }

    /// Captures what the access log writes.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[actix_web::test]
    async fn checks_after_routing_and_logs_the_route_and_key_id_but_never_the_key() {
        use actix_web::{App, middleware, test};

        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let ring =
            Keyring::new(&security(&["full-key-0123456789"], &["read-key-0123456789"])).expect("valid");
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(ring))
                .wrap(middleware::from_fn(access_log))
                .service(
                    crate::routes::resource("/api/tasks/{task_id}")
                        .route(web::get().to(HttpResponse::Ok))
                        .route(web::delete().to(HttpResponse::Ok)),
                )
                .service(crate::routes::resource("/healthz").route(web::get().to(HttpResponse::Ok))),
        )
        .await;
        let call = |method: Method, uri: &str, key: Option<&str>| {
            let mut req = test::TestRequest::default().method(method).uri(uri);
            if let Some(key) = key {
                req = req.insert_header(("x-api-key", key.to_owned()));
            }
            test::call_service(&app, req.to_request())
        };
        assert_eq!(call(Method::GET, "/%61pi/tasks/7?x=1", None).await.status(), 401);
        assert_eq!(call(Method::GET, "/%61pi/tasks/7", Some("read-key-0123456789")).await.status(), 200);
        assert_eq!(call(Method::DELETE, "/api/tasks/7", Some("read-key-0123456789")).await.status(), 403);
        assert_eq!(call(Method::DELETE, "/api/tasks/7", Some("full-key-0123456789")).await.status(), 200);
        assert_eq!(call(Method::GET, "/healthz", None).await.status(), 200);
        assert_eq!(call(Method::GET, "/nowhere", Some("full-key-0123456789")).await.status(), 404);

        let log = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 5, "{log}");
        assert!(lines.iter().all(|l| l.contains("mediapro_api::access")), "{log}");
        let read_id = hex::encode(&Sha256::digest(b"read-key-0123456789")[..4]);
        let full_id = hex::encode(&Sha256::digest(b"full-key-0123456789")[..4]);
        assert!(lines[0].contains("route=/api/tasks/{task_id}") && lines[0].contains("status=401"), "{log}");
        assert!(lines[1].contains(&format!("key_id={read_id}")) && lines[1].contains("status=200"), "{log}");
        assert!(lines[2].contains("method=DELETE") && lines[2].contains("status=403"), "{log}");
        assert!(lines[3].contains(&format!("key_id={full_id}")), "{log}");
        assert!(lines[4].contains("route=/nowhere") && lines[4].contains("status=404"), "{log}");
        assert!(lines.iter().all(|l| l.contains("duration_ms=")), "{log}");
        assert!(!log.contains("0123456789"), "a key was logged: {log}");
    }

    #[test]
    fn keyring_refuses_bad_entries() {
        let err = Keyring::new(&security(&["sha256:00"], &[])).expect_err("bad hash");
        assert!(err.contains("security.api_keys"), "{err}");
    }
}
