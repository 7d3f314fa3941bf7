//! The web UI: a handful of static files (`crates/api/ui/`) embedded in the binary
//! and served at `GET /` (the page) and `GET /ui/{file}` (script, style, icon).
//!
//! There is no build step: the files are plain HTML/JS/CSS, served by
//! `crate::assets` under a strict Content-Security-Policy (no inline script or style)
//! with an `ETag`.

use std::sync::LazyLock;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::{
    assets::{Asset, AssetSet},
    routes::resource,
};

/// `default-src 'self'` forbids inline script/style and other origins. `media-src`
/// additionally allows `blob:` because, with an API key, the player's source is a
/// `URL.createObjectURL` of a fetched result (a `<video src>` cannot send the key).
pub const CSP: &str = "default-src 'self'; media-src 'self' blob:";

static ASSETS: LazyLock<AssetSet> = LazyLock::new(|| {
    AssetSet::new(
        "UI",
        CSP,
        vec![
            Asset::new("index.html", "text/html; charset=utf-8", include_bytes!("../ui/index.html")),
            Asset::new("app.js", "text/javascript; charset=utf-8", include_bytes!("../ui/app.js")),
            Asset::new("app.css", "text/css; charset=utf-8", include_bytes!("../ui/app.css")),
            Asset::new("favicon.svg", "image/svg+xml", include_bytes!("../ui/favicon.svg")),
        ],
    )
});

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
    ASSETS.page(&req)
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
    ASSETS.file(&req, &name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use actix_web::{App, body::to_bytes, http::StatusCode, http::header, test};
    use sha2::{Digest, Sha256};

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
