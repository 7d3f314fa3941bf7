//! The web UI: a handful of static files (`crates/api/ui/`) embedded in the binary
//! and served at `GET /` (the page) and `GET /ui/{file}` (script, style, icon).
//!
//! There is no build step: the files are plain HTML/JS/CSS. Every answer carries a
//! strict Content-Security-Policy (no inline script or style), `nosniff`, no referrer,
//! and a strong `ETag` (SHA-256 of the bytes, computed once) so a browser revalidates
//! cheaply with `If-None-Match` (`Cache-Control: no-cache`) and gets `304`.

use std::sync::LazyLock;

use actix_web::{HttpRequest, HttpResponse, ResponseError, http::header, web};
use sha2::{Digest, Sha256};

use mediapro_core::Code;

use crate::{error::ApiError, routes::resource};

/// `default-src 'self'` forbids inline script/style and other origins. `media-src`
/// additionally allows `blob:` because, with an API key, the player's source is a
/// `URL.createObjectURL` of a fetched result (a `<video src>` cannot send the key).
pub const CSP: &str = "default-src 'self'; media-src 'self' blob:";

/// One embedded file (also the API reference page's, `crates/api/src/openapi.rs`).
pub(crate) struct Asset {
    /// Name under `/ui/` (`index.html` is served at `/`).
    pub(crate) name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// Quoted strong validator, e.g. `"3f1c…"`.
    etag: String,
}

impl Asset {
    pub(crate) fn new(name: &'static str, content_type: &'static str, body: &'static [u8]) -> Self {
        let digest = Sha256::digest(body);
        // 128 bits of the hash are plenty to tell versions apart.
        let etag = format!("\"{}\"", hex::encode(&digest[..16]));
        Self { name, content_type, body, etag }
    }
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    vec![
        Asset::new("index.html", "text/html; charset=utf-8", include_bytes!("../ui/index.html")),
        Asset::new("app.js", "text/javascript; charset=utf-8", include_bytes!("../ui/app.js")),
        Asset::new("app.css", "text/css; charset=utf-8", include_bytes!("../ui/app.css")),
        Asset::new("favicon.svg", "image/svg+xml", include_bytes!("../ui/favicon.svg")),
    ]
});

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// Registers `GET /` and `GET /ui/{file}`, open to all (other methods: JSON 405).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/").route(web::get().to(index)))
        .service(resource("/ui/{file}").route(web::get().to(file)));
}

/// The web UI
#[utoipa::path(
    get,
    path = "/",
    tag = "web UI",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 304, description = "The client's copy (`If-None-Match`) is current"),
    )
)]
pub(crate) async fn index(req: HttpRequest) -> HttpResponse {
    match find("index.html") {
        Some(asset) => serve(&req, asset, CSP),
        None => ApiError::internal("index.html is not embedded").error_response(),
    }
}

/// A file of the web UI (script, style sheet, icon)
#[utoipa::path(
    get,
    path = "/ui/{file}",
    tag = "web UI",
    params(("file" = String, Path, description = "`app.js`, `app.css` or `favicon.svg`")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"),
            (String = "text/css"),
            (String = "image/svg+xml"),
        )),
        (status = 304, description = "The client's copy (`If-None-Match`) is current"),
    )
)]
pub(crate) async fn file(req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    match find(&name).filter(|a| a.name != "index.html") {
        Some(asset) => serve(&req, asset, CSP),
        None => ApiError::new(Code::NotFound, format!("no UI file named '{name}'")).error_response(),
    }
}

/// The asset under the Content-Security-Policy `csp`, or `304 Not Modified` when the
/// client already holds this version.
pub(crate) fn serve(req: &HttpRequest, asset: &Asset, csp: &'static str) -> HttpResponse {
    let fresh = client_has(req, &asset.etag);
    let mut res = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    res.insert_header((header::ETAG, asset.etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if fresh {
        return res.finish();
    }
    res.content_type(asset.content_type).body(asset.body)
}

/// `If-None-Match` lists our ETag (or is `*`). The comparison is the weak one, as
/// RFC 9110 prescribes for `If-None-Match`: a `W/` prefix is ignored.
fn client_has(req: &HttpRequest, etag: &str) -> bool {
    req.headers().get_all(header::IF_NONE_MATCH).filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use actix_web::{App, body::to_bytes, http::StatusCode, test};

    use super::*;

    async fn get(path: &str, if_none_match: Option<&str>) -> actix_web::dev::ServiceResponse {
        let app = test::init_service(App::new().configure(configure)).await;
        let mut req = test::TestRequest::get().uri(path);
        if let Some(tag) = if_none_match {
            req = req.insert_header((header::IF_NONE_MATCH, tag));
        }
        test::call_service(&app, req.to_request()).await
    }

    fn header_of(res: &actix_web::dev::ServiceResponse, name: header::HeaderName) -> &str {
        res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    #[actix_web::test]
    async fn serves_each_file_with_its_type_and_security_headers() {
        for (path, ctype, embedded) in [
            ("/", "text/html; charset=utf-8", &include_bytes!("../ui/index.html")[..]),
            ("/ui/app.js", "text/javascript; charset=utf-8", &include_bytes!("../ui/app.js")[..]),
            ("/ui/app.css", "text/css; charset=utf-8", &include_bytes!("../ui/app.css")[..]),
            ("/ui/favicon.svg", "image/svg+xml", &include_bytes!("../ui/favicon.svg")[..]),
        ] {
            let res = get(path, None).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert_eq!(header_of(&res, header::CONTENT_TYPE), ctype, "{path}");
            assert!(header_of(&res, header::CONTENT_SECURITY_POLICY).starts_with("default-src 'self'"));
            assert_eq!(header_of(&res, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            assert_eq!(header_of(&res, header::REFERRER_POLICY), "no-referrer");
            assert_eq!(header_of(&res, header::CACHE_CONTROL), "no-cache");
            let etag = header_of(&res, header::ETAG).to_owned();
            assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34, "{etag}");
            assert_eq!(to_bytes(res.into_body()).await.unwrap(), embedded, "{path}");
        }
    }

    #[actix_web::test]
    async fn etag_is_the_hash_of_the_bytes() {
        let digest = Sha256::digest(include_bytes!("../ui/app.js"));
        let res = get("/ui/app.js", None).await;
        assert_eq!(header_of(&res, header::ETAG), format!("\"{}\"", hex::encode(&digest[..16])));
        let page = get("/", None).await;
        assert_ne!(header_of(&page, header::ETAG), header_of(&res, header::ETAG));
    }

    #[actix_web::test]
    async fn matching_if_none_match_gets_304_without_body() {
        let etag = header_of(&get("/ui/app.css", None).await, header::ETAG).to_owned();
        for tag in [etag.clone(), format!("W/{etag}"), format!("\"old\", {etag}"), "*".to_owned()] {
            let res = get("/ui/app.css", Some(&tag)).await;
            assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{tag}");
            assert_eq!(header_of(&res, header::ETAG), etag);
            assert!(header_of(&res, header::CONTENT_SECURITY_POLICY).starts_with("default-src 'self'"));
            assert!(to_bytes(res.into_body()).await.unwrap().is_empty());
        }
    }

    #[actix_web::test]
    async fn stale_if_none_match_gets_the_file() {
        let res = get("/", Some("\"0123456789abcdef0123456789abcdef\"")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(!to_bytes(res.into_body()).await.unwrap().is_empty());
    }

    #[actix_web::test]
    async fn unknown_file_is_a_json_404() {
        for path in ["/ui/nope.js", "/ui/index.html", "/ui/..%2Fsrc%2Flib.rs"] {
            let res = get(path, None).await;
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(header_of(&res, header::CONTENT_TYPE).starts_with("application/json"));
            let body: serde_json::Value =
                serde_json::from_slice(&to_bytes(res.into_body()).await.unwrap()).unwrap();
            assert_eq!(body["code"], "not_found");
            assert!(body["error"].as_str().unwrap().contains("no UI file"));
        }
    }

    #[actix_web::test]
    async fn other_methods_get_a_json_405() {
        let app = test::init_service(App::new().configure(configure)).await;
        let res = test::call_service(&app, test::TestRequest::post().uri("/").to_request()).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
